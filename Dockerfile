# syntax=docker/dockerfile:1
# Throttle image: one image for every process; the role is the first argument
# (scripts/entrypoint.sh web|worker|scheduler|migrate|dashboard|flask). The default target is the
# last stage, `runtime`; `sandbox` is the fake HubSpot that docker-compose.yml runs beside it.

# ---- builder: wheels for the project and all of its pinned dependencies -------------------------
# Every compiled dependency ships manylinux wheels for amd64 and arm64 (psycopg2-binary, gevent,
# greenlet, cryptography, SQLAlchemy, MarkupSafe); the few sdist-only ones are pure Python. So no
# compiler is needed here either.
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The build context is filtered by .dockerignore (no .venv, .git, tests, helm, devtools, caches).
COPY . .

RUN pip wheel . --wheel-dir /wheels

# Assemble the application tree the runtime stage copies in one step: the service and its one
# script, nothing of the dev tools (devtools/, fake_hubspot/, the other scripts); the entrypoint
# must be executable whatever the checkout did.
RUN mkdir -p /app/scripts \
    && cp -R wsgi.py gunicorn.conf.py throttle_app migrations workers /app/ \
    && cp scripts/entrypoint.sh /app/scripts/ \
    && find /app -name '__pycache__' -type d -prune -exec rm -rf {} + \
    && chmod -R u=rwX,go=rX /app \
    && chmod 0755 /app/scripts/entrypoint.sh

# ---- sandbox: the fake HubSpot for docker-compose.yml (dev only, never in the runtime image) -----
# `docker build --target sandbox` (compose's fake-hubspot service does). Standard library only, so
# nothing but Python and fake_hubspot/. Kept above `runtime`, which stays the default target.
FROM python:3.11-slim-bookworm AS sandbox

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /sandbox
COPY fake_hubspot/ fake_hubspot/
USER 10001:10001
EXPOSE 8099
ENTRYPOINT ["python", "-m", "fake_hubspot"]

# ---- runtime: the wheels and the application files, no build tools ------------------------------
FROM python:3.11-slim-bookworm AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLASK_APP=throttle_app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Fixed ids so Kubernetes' runAsUser/runAsGroup/fsGroup (10001) match the image's user.
RUN groupadd --system --gid 10001 throttle \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin throttle

# Install from the builder's wheels only (--no-index: nothing is fetched here); the bind mount keeps
# the wheels out of the image's layers.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl

WORKDIR /app
# Owned by root and read-only for the app user; precompiled because the root filesystem is read-only
# at run time (PYTHONDONTWRITEBYTECODE stops attempts to write .pyc files there).
COPY --from=builder /app/ /app/
RUN python -m compileall -q /app

USER 10001:10001

EXPOSE 8000

ENTRYPOINT ["scripts/entrypoint.sh"]
CMD ["web"]
