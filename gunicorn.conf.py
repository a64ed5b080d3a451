"""gunicorn settings for the web process, taken from throttle_app.config (one place for settings).

gevent workers (throttle_app/ops/web_worker.py: gunicorn's, made fair across keep-alive
connections); psycopg2 made cooperative in each worker by wsgi.py, which every worker imports
after the fork (no --preload: SQLAlchemy engines are not fork safe). Starting the master checks
every setting, so a missing secret stops the service with one line before any worker starts.

Metrics: the workers' prometheus_client metrics live in PROMETHEUS_MULTIPROC_DIR (a fresh
temporary directory per master when unset), wiped when the master starts; a dead worker's live
gauges are dropped in `child_exit`. The master must not import prometheus_client before
`on_starting` has set the variable (workers inherit the module, and its mode, from the master).

Logs: gunicorn's error and access loggers go through the service's redaction filter, and error
lines are JSON when THROTTLE_LOG_JSON is on (the access line format below is already JSON).
"""

import os
import shutil
import tempfile

from gunicorn.glogging import Logger

from throttle_app.config import Settings
from throttle_app.telemetry.logs import JsonFormatter, redacting_filter

_settings = Settings.from_env()

bind = f"0.0.0.0:{_settings.port}"
worker_class = "throttle_app.ops.web_worker.FairGeventWorker"  # gevent, fair across connections
workers = _settings.web_workers
worker_connections = _settings.web_connections
timeout = _settings.web_timeout_seconds
graceful_timeout = _settings.web_graceful_timeout_seconds
keepalive = 5
# No gunicornc control socket: its default path is per user, not per server, so every master on a
# host (tests, benchmarks, a dev stack) would share it; pods are managed through Kubernetes.
control_socket_disable = True
preload_app = False
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
access_log_format = (
    '{"type":"access","remote":"%(h)s","method":"%(m)s","path":"%(U)s","status":%(s)s,'
    '"bytes":"%(B)s","duration_us":%(D)s,"request_id":"%({X-Request-Id}o)s","agent":"%(a)s"}'
)


class RedactingLogger(Logger):
    """gunicorn's logger with the redaction filter on its handlers (re-applied on reload)."""

    def setup(self, cfg):
        super().setup(cfg)
        redact = redacting_filter()
        redact.set_secrets(_settings.secrets)
        for handler in self.error_log.handlers + self.access_log.handlers:
            if redact not in handler.filters:
                handler.addFilter(redact)
        if _settings.log_json:
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())


logger_class = RedactingLogger


def on_starting(server):
    """Master start: a clean multiprocess metrics directory, before any worker forks."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="throttle-prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        server.throttle_owned_metrics_dir = path
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def child_exit(server, worker):
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
    except Exception as exc:  # metrics bookkeeping must never take the master down
        server.log.warning("could not mark worker %s dead for metrics: %s", worker.pid, exc)


def on_exit(server):
    owned = getattr(server, "throttle_owned_metrics_dir", None)
    if owned:
        shutil.rmtree(owned, ignore_errors=True)
