# syntax=docker/dockerfile:1
# Throttle image: one image for every process; the role is the first argument
# (scripts/entrypoint.sh web|worker|scheduler|migrate|dashboard|flask). The default target is the
# last stage, `runtime`; `sandbox` is the fake HubSpot that docker-compose.yml runs beside it.

# ---- builder: the project and its locked dependencies as wheels, and the SBOM -----------------
# Nothing is fetched unchecked. The build tools (requirements/build.txt) and every runtime
# dependency (requirements/runtime.txt) come from their locks with --require-hashes: each lock
# holds the sha256 of every file PyPI has for each pinned version, so amd64 and arm64 builds check
# theirs alike (`make lock` regenerates the locks from pyproject.toml). Every compiled dependency
# ships manylinux wheels for both (psycopg2-binary, gevent, greenlet, cryptography, MarkupSafe,
# zope.interface, cffi); the sdist-only ones (crontab, psycogreen) are pure Python. Those and the
# project's own wheel build with the locked setuptools (--no-build-isolation: pip would otherwise
# fetch an unpinned one to build them), so no compiler is needed here either.
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The build context is filtered by .dockerignore (no .venv, .git, tests, helm, devtools, caches).
COPY . .

RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes -r requirements/build.txt

RUN /opt/build/bin/pip wheel --require-hashes --no-build-isolation --wheel-dir /wheels \
        -r requirements/runtime.txt \
    && /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# Assemble the application tree the runtime stage copies in one step: the service and its one
# script, nothing of the dev tools (devtools/, fake_hubspot/, the other scripts); the entrypoint
# must be executable whatever the checkout did.
RUN mkdir -p /app/scripts \
    && cp -R wsgi.py gunicorn.conf.py throttle_app migrations workers /app/ \
    && cp scripts/entrypoint.sh /app/scripts/ \
    && find /app -name '__pycache__' -type d -prune -exec rm -rf {} + \
    && chmod -R u=rwX,go=rX /app \
    && chmod 0755 /app/scripts/entrypoint.sh

# The CycloneDX SBOM of the runtime lock, the one `make sbom` builds: every locked runtime package
# (the runtime stage installs those whose markers match Python 3.11 on Linux) with its version,
# purl and the hashes of its files; shipped as /app/sbom.cdx.json.
RUN CYCLONEDX_PY=/opt/build/bin/cyclonedx-py bash scripts/sbom.sh /app/sbom.cdx.json \
    && chmod 0644 /app/sbom.cdx.json

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

# Install from the builder's wheels only (--no-index: nothing is fetched here; they are the locked
# files the builder checked, and the wheels it built from them); the bind mount keeps the wheels
# out of the image's layers. Then the base image's setuptools and wheel go: build tools nothing
# here runs (and Python 3.11's bundled setuptools, 65.5, predates the fix of CVE-2024-6345), so the
# image's Python packages are the SBOM's, the project and pip.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl \
    && pip uninstall --yes setuptools wheel

WORKDIR /app
# Owned by root and read-only for the app user; precompiled because the root filesystem is read-only
# at run time (PYTHONDONTWRITEBYTECODE stops attempts to write .pyc files there).
COPY --from=builder /app/ /app/
RUN python -m compileall -q /app

USER 10001:10001

EXPOSE 8000

ENTRYPOINT ["scripts/entrypoint.sh"]
CMD ["web"]
