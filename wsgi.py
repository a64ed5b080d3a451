"""The web entry point: `gunicorn --config gunicorn.conf.py wsgi:app`.

gevent patching happens here, for the web process only: importing throttle_app never patches,
so RQ workers and the scheduler stay unpatched and fork safely. gunicorn's gevent worker has
already patched by the time it imports this module; the check keeps other servers correct.
"""

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

from psycogreen.gevent import patch_psycopg

patch_psycopg()  # psycopg2 waits cooperatively: one slow query no longer blocks the worker

from throttle_app import create_app  # noqa: E402

app = create_app()
