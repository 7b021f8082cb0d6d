# syntax=docker/dockerfile:1.7
#
# Two images from one build:
#   --target shop      (default) every microshop service; `python -m <service>` picks one, so the chart
#                      runs the same image six times with a different argument (one build, one scan,
#                      one cache; the services share all dependencies and the shopkit code).
#   --target operator  the kopf operator with a pinned helm and the shop chart it renders.
#
# No compilers in any final stage: every dependency installs from wheels in the `deps` stage, and the
# final stages copy only the virtualenv and the source.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.8 AS uv

# ---- dependencies (uv.lock, frozen; no dev dependencies, the project itself is not a package) ----
FROM ${PYTHON_IMAGE} AS deps
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# ---- helm for the operator: the official release, binary checked against a pinned digest ----
FROM ${PYTHON_IMAGE} AS helm
ARG HELM_VERSION=4.1.4
# SHA-256 of the linux-amd64 `helm` binary of that release (the same digest devtools/helm.py pins).
ARG HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
ARG TARGETARCH=amd64
RUN test "${TARGETARCH}" = amd64 || { echo "helm digest is pinned for amd64 only; pass HELM_SHA256 for ${TARGETARCH}" >&2; exit 1; }; \
    python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], '/tmp/helm.tgz')" \
        "https://get.helm.sh/helm-v${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" \
    && mkdir /out && tar -xzf /tmp/helm.tgz -C /tmp \
    && mv "/tmp/linux-${TARGETARCH}/helm" /out/helm \
    && echo "${HELM_SHA256}  /out/helm" | sha256sum -c - \
    && /out/helm version --short

# ---- the common runtime base: non-root user, the virtualenv, no caches ----
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 microshop \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin microshop
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app

# ---- the operator ----
FROM runtime AS operator
COPY --from=helm /out/helm /usr/local/bin/helm
COPY operator/ /app/operator/
COPY charts/microshop/ /opt/microshop/charts/microshop/
RUN python -m compileall -q /app/operator
# helm needs a HOME; the root filesystem is read-only in the cluster, /tmp is an emptyDir.
ENV PYTHONPATH=/app/operator \
    HOME=/tmp \
    MICROSHOP_OPERATOR_CHART=/opt/microshop/charts/microshop
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "microshop_operator"]

# ---- the services (last stage: the default target) ----
FROM runtime AS shop
COPY services/ /app/services/
RUN python -m compileall -q /app/services
ENV PYTHONPATH=/app/services \
    MICROSHOP_HOST=0.0.0.0 \
    MICROSHOP_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8000 8001 8002 8003 8004 8005
# Kubernetes probes (/health/live, /health/ready) replace a Docker HEALTHCHECK.
ENTRYPOINT ["python", "-m"]
CMD ["gateway"]
