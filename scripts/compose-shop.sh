#!/usr/bin/env bash
# `make compose-up`, `make compose-up-host` and `make compose-down`: the shop in containers, one command a route.
#
#   scripts/compose-shop.sh up registry   compose.yaml + compose.override.yaml: MongoDB, RabbitMQ and Redis
#                                         from registry images, the gateway published on 127.0.0.1
#   scripts/compose-shop.sh up host       compose.yaml + compose.host.yaml: no registry; host networking on
#                                         127.0.0.1, this host's RabbitMQ and Redis, SecantusDB built here
#   scripts/compose-shop.sh down          removes what `up` made (containers, networks, volumes), either route
#
# `up` builds the images it needs first (scripts/build-images.sh; BuildKit's cache makes a rebuild of an
# unchanged tree take seconds), starts the project, waits until the gateway's /api/health answers 200 and
# prints the URL and the dev admin. The route is remembered in .dev/compose-<project>.route for `down`.
# The host route names its queues and keys with MICROSHOP_NAMESPACE (default `compose.`, apart from
# `make dev` on the same broker); `down` deletes that namespace's queues and exchanges again.
# Inputs: COMPOSE_PROJECT_NAME (microshop), IMAGE_TAG (0.1.0), GATEWAY_PORT (8000), COMPOSE_WAIT_SECONDS
# (300), COMPOSE_BUILD (1; 0 uses the images as they are), and what compose.yaml and the route's file read.
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-microshop}"
IMAGE_TAG="${IMAGE_TAG:-0.1.0}"
export MICROSHOP_IMAGE="${MICROSHOP_IMAGE:-microshop:$IMAGE_TAG}"
export MICROSHOP_SECANTUS_IMAGE="${MICROSHOP_SECANTUS_IMAGE:-microshop-secantus:$IMAGE_TAG}"
GATEWAY="http://127.0.0.1:${GATEWAY_PORT:-8000}/api"
RECORD=".dev/compose-$COMPOSE_PROJECT_NAME.route"

say() { echo "[compose] $*" >&2; }
die() { echo "[compose] error: $*" >&2; exit 1; }

files_of() {
  case "$1" in
    registry) echo "compose.yaml compose.override.yaml" ;;
    host) echo "compose.yaml compose.host.yaml" ;;
    *) die "unknown route '$1' (registry, host)" ;;
  esac
}

up() {
  local route="$1" targets files deadline
  files="$(files_of "$route")"
  targets="shop"
  [[ "$route" == host ]] && targets="shop secantus"
  if [[ "${COMPOSE_BUILD:-1}" != 0 ]]; then
    TARGETS="$targets" IMAGE_TAG="$IMAGE_TAG" bash scripts/build-images.sh
  fi
  if [[ "$route" == host ]]; then
    # Its own prefix for queue, exchange and key names on this host's broker and Redis, apart from `make dev`.
    export MICROSHOP_NAMESPACE="${MICROSHOP_NAMESPACE:-compose.}"
  fi
  if [[ "$route" == registry ]]; then
    # The infrastructure images first, so that without a registry nothing is created (no network, no volume).
    for image in $(sed -n 's/^    image: *//p' compose.override.yaml); do
      "${DOCKER:-docker}" image inspect "$image" >/dev/null 2>&1 && continue
      say "pulling $image"
      "${DOCKER:-docker}" pull -q "$image" >/dev/null \
        || die "cannot pull $image (no registry here?); nothing was started. Without a registry: make compose-up-host"
    done
  fi
  mkdir -p .dev
  echo "$route ${MICROSHOP_NAMESPACE:-}" >"$RECORD"
  say "starting $COMPOSE_PROJECT_NAME ($files)"
  # shellcheck disable=SC2086 # the route's files, one word each
  bash scripts/compose.sh $files -- up -d
  say "waiting for $GATEWAY/health (up to ${COMPOSE_WAIT_SECONDS:-300} s)"
  deadline=$((SECONDS + ${COMPOSE_WAIT_SECONDS:-300}))
  until python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)" "$GATEWAY/health" \
        2>/dev/null; do
    if ((SECONDS > deadline)); then
      # shellcheck disable=SC2086
      bash scripts/compose.sh $files -- ps >&2 || true
      die "the shop did not answer $GATEWAY/health in time (make compose-down removes it)"
    fi
    sleep 2
  done
  echo "microshop: $GATEWAY  (docs: $GATEWAY/docs; dev admin: ${MICROSHOP_ADMIN_EMAIL:-admin@example.com} /" \
       "${MICROSHOP_ADMIN_PASSWORD:-microshop-dev-admin}; make compose-down removes it)"
}

down() {
  local route="registry" namespace="" files
  [[ -f "$RECORD" ]] && read -r route namespace <"$RECORD"
  files="$(files_of "$route")"
  say "removing $COMPOSE_PROJECT_NAME ($files): containers, networks, volumes"
  # shellcheck disable=SC2086
  bash scripts/compose.sh $files -- down --volumes --remove-orphans --timeout 10
  if [[ -n "$namespace" ]]; then
    # The host route's queues and exchanges on this host's RabbitMQ (quorum queues outlive their consumers).
    "${PYTHON:-.venv/bin/python}" -m devtools.broker_cleanup "$namespace" \
      "${HOST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/}" \
      || say "could not delete the queues under '$namespace' (rabbitmqctl list_queues shows them)"
  fi
  rm -f "$RECORD"
}

case "${1:-}" in
  up) up "${2:-registry}" ;;
  down) down ;;
  *) die "usage: $0 up registry|host, or $0 down" ;;
esac
