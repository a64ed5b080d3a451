{{/* Names ---------------------------------------------------------------------------------- */}}

{{- define "throttle.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource-name prefix. Names built on it ("<fullname>-web", ...) are cut at 63 characters. */}}
{{- define "throttle.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "throttle.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "throttle.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "throttle.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "throttle.configMapName" -}}
{{- include "throttle.fullname" . -}}
{{- end -}}

{{/* The Secret every pod reads: the operator's existingSecret, or the one this chart renders. */}}
{{- define "throttle.secretName" -}}
{{- default (include "throttle.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "throttle.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Labels: call with (dict "root" $ "component" "web") ---------------------------------------- */}}

{{- define "throttle.selectorLabels" -}}
app.kubernetes.io/name: {{ include "throttle.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "throttle.labels" -}}
helm.sh/chart: {{ include "throttle.chart" .root }}
{{ include "throttle.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: throttle
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{- define "throttle.podLabels" -}}
{{ include "throttle.labels" . }}
{{- with .root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Environment ------------------------------------------------------------------------------- */}}

{{/* An env value as a string; whole numbers stay whole (values files give float64: 1e+06). */}}
{{- define "throttle.envValue" -}}
{{- if and (kindIs "float64" .) (eq (. | int64 | float64) .) -}}
{{- . | int64 -}}
{{- else -}}
{{- . | toString -}}
{{- end -}}
{{- end -}}

{{/* ConfigMap data (shared by the release's ConfigMap and the migration hook's copy). */}}
{{- define "throttle.configData" -}}
{{- with .Values.config }}
{{- if .hubspotClientId }}
HUBSPOT_CLIENT_ID: {{ .hubspotClientId | quote }}
{{- end }}
HUBSPOT_API_BASE: {{ .hubspotApiBase | quote }}
HUBSPOT_APP_BASE: {{ .hubspotAppBase | quote }}
{{- if .publicBaseUrl }}
PUBLIC_BASE_URL: {{ .publicBaseUrl | quote }}
{{- end }}
PORT: "8000"
{{- range $key, $value := .extraEnv }}
{{ $key }}: {{ include "throttle.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Secret keys (= environment variable names) and the values they come from. */}}
{{- define "throttle.secretValues" -}}
{{- $s := .Values.secrets -}}
{{- toYaml (dict
  "DATABASE_URL" $s.databaseUrl
  "REDIS_URL" $s.redisUrl
  "HUBSPOT_CLIENT_SECRET" $s.hubspotClientSecret
  "SECRET_KEY" $s.secretKey
  "TOKEN_ENCRYPTION_KEY" $s.tokenEncryptionKey
  "CONFIG_API_TOKEN" $s.configApiToken
  "THROTTLE_METRICS_TOKEN" $s.metricsToken
  "THROTTLE_DASHBOARD_PASSWORD" $s.dashboardPassword) -}}
{{- end -}}

{{/* Secret data, base64; empty values are left out so they don't shadow the app's checks. */}}
{{- define "throttle.secretData" -}}
{{- range $key, $value := (include "throttle.secretValues" . | fromYaml) }}
{{- if $value }}
{{ $key }}: {{ $value | b64enc | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Required secret keys that are still empty (for NOTES.txt); the tokens and the dashboard
password are optional (their endpoints stay closed without them). */}}
{{- define "throttle.missingSecrets" -}}
{{- $missing := list -}}
{{- $optional := list "THROTTLE_DASHBOARD_PASSWORD" "CONFIG_API_TOKEN" "THROTTLE_METRICS_TOKEN" -}}
{{- range $key, $value := (include "throttle.secretValues" . | fromYaml) }}
{{- if and (not $value) (not (has $key $optional)) }}
{{- $missing = append $missing $key }}
{{- end }}
{{- end }}
{{- join ", " $missing -}}
{{- end -}}

{{/* Pods -------------------------------------------------------------------------------------- */}}

{{/* Pod annotations: restart pods when the rendered configuration changes. An existingSecret's
content is invisible to Helm: only its name is summed (roll pods yourself when you rotate it). */}}
{{- define "throttle.podAnnotations" -}}
checksum/config: {{ include "throttle.configData" . | sha256sum }}
{{- if .Values.existingSecret }}
checksum/secret: {{ .Values.existingSecret | sha256sum }}
{{- else }}
checksum/secret: {{ include "throttle.secretData" . | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod-level fields of the release's pods. Pass the root context. */}}
{{- define "throttle.podSpec" -}}
serviceAccountName: {{ include "throttle.serviceAccountName" . }}
{{ include "throttle.podCommon" . }}
{{- end -}}

{{/* Pod-level fields shared by every pod, hooks included (hardening, scheduling, /tmp). */}}
{{- define "throttle.podCommon" -}}
automountServiceAccountToken: false
{{/* Service links would inject <SERVICE>_PORT variables such as THROTTLE_WEB_PORT, which
collide with the THROTTLE_ settings prefix. */ -}}
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ .Values.tmpDir.sizeLimit }}
{{- end -}}

{{/* Container fields shared by every container. Pass the root context. */}}
{{- define "throttle.containerBase" -}}
image: {{ include "throttle.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{/* The release's whole configuration as environment. Pass the root context. */}}
{{- define "throttle.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "throttle.configMapName" . }}
  - secretRef:
      name: {{ include "throttle.secretName" . }}
{{- end -}}

{{/* "<fullname>-<suffix>", cut at 63: call with (dict "root" $ "suffix" "web"). */}}
{{- define "throttle.componentName" -}}
{{- printf "%s-%s" (include "throttle.fullname" .root) .suffix | trunc 63 | trimSuffix "-" -}}
{{- end -}}
