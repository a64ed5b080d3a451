"""gunicorn settings for the web process, taken from throttle_app.config (one place for settings).

gevent workers (throttle_app/ops/web_worker.py: gunicorn's, made fair across keep-alive
connections, with a deadline on request bodies); psycopg2 made cooperative in each worker by
wsgi.py, which every worker imports after the fork (no --preload: SQLAlchemy engines are not fork
safe). Starting the master checks every setting, so a missing secret stops the service with one
line before any worker starts.

Hostile clients: the request line, the number of headers and each header's size are capped
(THROTTLE_LIMIT_REQUEST_*; gunicorn answers 400 or 414 above them), headers must arrive within the
keep-alive timeout, a body within THROTTLE_BODY_READ_TIMEOUT_SECONDS (408), and each worker holds
THROTTLE_WEB_CONNECTIONS connections, so idle clients wait in cheap greenlets while HubSpot's
requests are still accepted and answered.

Metrics: the workers' prometheus_client metrics live in PROMETHEUS_MULTIPROC_DIR (a fresh
temporary directory per master when unset), wiped when the master starts; a dead worker's live
gauges are dropped in `child_exit`. The master must not import prometheus_client before
`on_starting` has set the variable (workers inherit the module, and its mode, from the master).

Logs: gunicorn's error and access loggers go through the service's redaction filter; access lines
are JSON records (telemetry/gunicorn_logs.py), error lines are JSON when THROTTLE_LOG_JSON is on.
"""

import os
import shutil
import tempfile

from throttle_app.config import Settings
from throttle_app.ops.web_worker import FairGeventWorker
from throttle_app.telemetry.gunicorn_logs import ServiceLogger

_settings = Settings.from_env()


class WebWorker(FairGeventWorker):
    """The fair gevent worker with this deployment's body deadline and body cap."""

    body_read_timeout_seconds = _settings.body_read_timeout_seconds
    max_body_bytes = _settings.max_body_bytes


class RedactingLogger(ServiceLogger):
    """gunicorn's logger with this deployment's secrets redacted."""

    secrets = _settings.secrets
    json_errors = _settings.log_json


bind = f"0.0.0.0:{_settings.port}"
worker_class = WebWorker  # gevent, fair across connections, bodies received under a deadline
workers = _settings.web_workers
worker_connections = _settings.web_connections
timeout = _settings.web_timeout_seconds
graceful_timeout = _settings.web_graceful_timeout_seconds
keepalive = 5  # also the longest wait for a request's headers
limit_request_line = _settings.limit_request_line
limit_request_fields = _settings.limit_request_fields
limit_request_field_size = _settings.limit_request_field_size
# No gunicornc control socket: its default path is per user, not per server, so every master on a
# host (tests, benchmarks, a dev stack) would share it; pods are managed through Kubernetes.
control_socket_disable = True
preload_app = False
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
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
