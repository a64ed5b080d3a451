"""gunicorn settings for the web process, taken from throttle_app.config (one place for settings).

gevent workers; psycopg2 made cooperative in each worker (post_fork); no --preload, because
SQLAlchemy engines are not fork safe. Starting the master checks every setting, so a missing
secret stops the service with one line before any worker starts.
"""

from throttle_app.config import Settings

_settings = Settings.from_env()

bind = f"0.0.0.0:{_settings.port}"
worker_class = "gevent"
workers = _settings.web_workers
worker_connections = _settings.web_connections
timeout = _settings.web_timeout_seconds
graceful_timeout = _settings.web_graceful_timeout_seconds
keepalive = 5
preload_app = False
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
access_log_format = (
    '{"type":"access","remote":"%(h)s","method":"%(m)s","path":"%(U)s","status":%(s)s,'
    '"bytes":"%(B)s","duration_us":%(D)s,"request_id":"%({X-Request-Id}o)s","agent":"%(a)s"}'
)


def post_fork(server, worker):
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()
