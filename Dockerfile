# syntax=docker/dockerfile:1
# eai-hub image: one image for `eai-hub run` (API + flows), `eai-hub worker` and the simulators.
#   docker build -t eai-hub:0.1.0 .
# Multi-stage: the builder makes the project wheel and a venv with the pinned dependencies;
# the final stage gets only that venv, runs as an unprivileged user and has no build tools.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- builder ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/eai-hub

WORKDIR /src

# Dependencies first (pinned in pyproject.toml), so code changes do not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/eai-hub/bin/pip install --requirement /tmp/requirements.txt

# The project itself, built as a wheel and installed without touching the dependencies.
COPY README.md ./
COPY contracts ./contracts
COPY connectors ./connectors
COPY flows ./flows
COPY hub ./hub
RUN /opt/eai-hub/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/eai-hub/bin/pip install --no-deps /wheels/eai_hub-*.whl \
    && /opt/eai-hub/bin/eai-hub --help > /dev/null

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/eai-hub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EAI_HOST=0.0.0.0 \
    EAI_PORT=8080

RUN groupadd --system --gid 10001 eai \
    && useradd --system --uid 10001 --gid eai --home-dir /var/lib/eai-hub --create-home \
        --shell /usr/sbin/nologin eai \
    && mkdir -p /var/lib/eai-hub/var \
    && chown -R eai:eai /var/lib/eai-hub

COPY --from=builder /opt/eai-hub /opt/eai-hub

# Relative paths (./var/eai-hub.db when EAI_DATABASE_URL is unset, simulator databases) live here.
WORKDIR /var/lib/eai-hub
USER 10001:10001

EXPOSE 8080

# Liveness of the admin API. `eai-hub worker` serves no HTTP: disable this check for workers
# (docker-compose.yml does).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('EAI_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["eai-hub"]
CMD ["run"]
