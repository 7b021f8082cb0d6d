#!/usr/bin/env bash
# `make images`: build microshop:<tag> (every service) and microshop-operator:<tag> on any Docker
# engine from 20.10 with BuildKit, with or without a registry. Prints each image's size.
#
# Inputs (environment):
#   IMAGE_TAG          tag of both images (0.1.0)
#   SHOP_IMAGE, OPERATOR_IMAGE, SECANTUS_IMAGE   repositories (microshop, microshop-operator,
#                      microshop-secantus: SecantusDB for `make compose-up-host`)
#   TARGETS            which targets ("shop operator"; secantus too for `make compose-up-host`)
#   PYTHON_IMAGE       the base image (python:3.11-slim-bookworm); used when present or pullable.
#   BASE_FALLBACK      when PYTHON_IMAGE can be neither found nor pulled, this local stand-in is used,
#                      built first by scripts/base-image.sh (debootstrap) if missing
#                      (microshop-base/python:3.11-bookworm; empty: fail instead).
#   CA_BUNDLE          CA bundle passed as the BuildKit secret `ca` (default: $SSL_CERT_FILE when it is a
#                      file); needed behind a TLS-intercepting proxy, never stored in an image layer.
#   IMAGE_BUILD_ARGS   extra `docker build` arguments, e.g. "--network host" (added automatically
#                      when the engine has no bridge network).
#   DOCKER             the docker client to use; else the first working one of DOCKER_CANDIDATES
#                      (every `docker` on PATH, then /usr/bin/docker).
# Where no engine answers and none of DOCKER, DOCKER_HOST, DOCKER_CANDIDATES is set,
# scripts/docker-engine.sh installs and starts one first (as root). The base-image stand-in installs debootstrap when it is missing.
# As skaffold's custom builder (skaffold.yaml, one target each): IMAGE is the image to build and
# PUSH_IMAGE=true pushes it (skaffold sets both, and BUILD_CONTEXT).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE_TAG="${IMAGE_TAG:-0.1.0}"
SHOP_IMAGE="${SHOP_IMAGE:-microshop}"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-microshop-operator}"
SECANTUS_IMAGE="${SECANTUS_IMAGE:-microshop-secantus}"
TARGETS="${TARGETS:-shop operator}"
PYTHON_IMAGE="${PYTHON_IMAGE:-python:3.11-slim-bookworm}"
BASE_FALLBACK="${BASE_FALLBACK-microshop-base/python:3.11-bookworm}"
CA_BUNDLE="${CA_BUNDLE-${SSL_CERT_FILE:-}}"
read -r -a EXTRA <<<"${IMAGE_BUILD_ARGS:-}"

say() { echo "[images] $*" >&2; }
die() { echo "[images] error: $*" >&2; exit 1; }

# ---- a docker client that can build with BuildKit ----
# Docker 23+ clients build with BuildKit only through the buildx plugin; older clients (Debian's
# 20.10 docker.io) do it themselves with DOCKER_BUILDKIT=1. The legacy builder is never used: it
# has no secret or cache mounts.
pick_client() {
  local candidates=() seen=" " c version major why=()
  if [[ -n "${DOCKER:-}" ]]; then
    candidates=("$DOCKER")
  elif [[ -n "${DOCKER_CANDIDATES:-}" ]]; then
    read -r -a candidates <<<"$DOCKER_CANDIDATES"
  else
    mapfile -t candidates < <(type -a -P docker 2>/dev/null; echo /usr/bin/docker)
  fi
  for c in "${candidates[@]}"; do
    [[ "$seen" == *" $c "* ]] && continue
    seen+="$c "
    if [[ ! -x "$c" ]]; then
      [[ -n "${DOCKER:-}" ]] && why+=("$c: not an executable")
      continue
    fi
    version="$("$c" version --format '{{.Client.Version}}' 2>/dev/null || true)"
    version="${version%%$'\n'*}"
    if "$c" buildx version >/dev/null 2>&1; then
      CLIENT="$c"; BUILD=(buildx build --load); CLIENT_DESC="$c (Docker ${version:-?} client, buildx)"; return 0
    fi
    major="${version%%.*}"
    if [[ "$major" =~ ^[0-9]+$ ]] && (( major >= 20 && major < 23 )); then
      CLIENT="$c"; BUILD=(build); export DOCKER_BUILDKIT=1
      CLIENT_DESC="$c (Docker $version client, DOCKER_BUILDKIT=1)"; return 0
    fi
    if [[ "$major" =~ ^[0-9]+$ ]] && (( major >= 23 )); then
      why+=("$c: Docker $version client without the buildx plugin (Docker 23+ builds with BuildKit only through buildx)")
    else
      why+=("$c: Docker client '${version:-unknown}' is older than 20.10")
    fi
  done
  {
    echo "[images] error: no docker client here can build with BuildKit."
    if ((${#why[@]})); then printf '[images]   %s\n' "${why[@]}"; else echo "[images]   no docker client is installed"; fi
    echo "[images] Install one of: the buildx plugin for your Docker client (docker-buildx-plugin), or a"
    echo "[images] Docker 20.10-22.x client such as Debian's (apt-get install docker.io; /usr/bin/docker);"
    echo "[images] or name a client with DOCKER=/path/to/docker."
  } >&2
  exit 1
}
# ---- an engine: where none answers (and none is named), scripts/docker-engine.sh installs and starts one ----
if [[ -z "${DOCKER:-}${DOCKER_HOST:-}${DOCKER_CANDIDATES:-}" ]]; then
  bash scripts/docker-engine.sh start || die "no Docker engine answers and none could be started (above)"
fi
pick_client
say "client: $CLIENT_DESC"

server="$("$CLIENT" version --format '{{.Server.Version}}' 2>/dev/null || true)"
[[ -n "$server" ]] || die "no Docker engine answers ${DOCKER_HOST:-unix:///var/run/docker.sock}; start dockerd (as root: scripts/docker-engine.sh) or set DOCKER_HOST"
smajor="${server%%.*}"; sminor="${server#*.}"; sminor="${sminor%%.*}"
if [[ "$smajor" =~ ^[0-9]+$ && "$sminor" =~ ^[0-9]+$ ]] && (( smajor < 20 || (smajor == 20 && sminor < 10) )); then
  die "Docker engine $server is too old: 20.10 or later (with BuildKit) is needed"
fi
say "engine: Docker $server"

# ---- the base image: PYTHON_IMAGE when present or pullable, else the Debian-built stand-in ----
if "$CLIENT" image inspect "$PYTHON_IMAGE" >/dev/null 2>&1; then
  say "base: $PYTHON_IMAGE (present)"
elif "$CLIENT" pull -q "$PYTHON_IMAGE" >/dev/null 2>"${TMPDIR:-/tmp}/microshop-pull.$$"; then
  say "base: $PYTHON_IMAGE (pulled)"
else
  reason="$(tail -n1 "${TMPDIR:-/tmp}/microshop-pull.$$" 2>/dev/null || true)"
  rm -f "${TMPDIR:-/tmp}/microshop-pull.$$"
  [[ -n "$BASE_FALLBACK" ]] || die "cannot pull $PYTHON_IMAGE ($reason) and BASE_FALLBACK is empty"
  say "cannot pull $PYTHON_IMAGE (${reason:-no registry}): using the local stand-in $BASE_FALLBACK"
  if ! "$CLIENT" image inspect "$BASE_FALLBACK" >/dev/null 2>&1; then
    say "building $BASE_FALLBACK from Debian packages (scripts/base-image.sh)"
    DOCKER="$CLIENT" bash scripts/base-image.sh "$BASE_FALLBACK" >/dev/null
  fi
  PYTHON_IMAGE="$BASE_FALLBACK"
fi
rm -f "${TMPDIR:-/tmp}/microshop-pull.$$"

# ---- build arguments ----
ARGS=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
if [[ -n "$CA_BUNDLE" ]]; then
  [[ -f "$CA_BUNDLE" ]] || die "CA_BUNDLE=$CA_BUNDLE is not a file"
  ARGS+=(--secret "id=ca,src=$CA_BUNDLE")
  say "CA bundle: $CA_BUNDLE (BuildKit secret, not stored in the image)"
fi
if [[ " ${EXTRA[*]:-} " != *" --network"* ]] && ! "$CLIENT" network inspect bridge >/dev/null 2>&1; then
  say "the engine has no bridge network: building with --network host"
  EXTRA+=(--network host)
fi
ARGS+=("${EXTRA[@]}")

SKAFFOLD_IMAGE=""
if [[ -n "${IMAGE:-}" && -n "${BUILD_CONTEXT:-}" ]]; then
  [[ "$TARGETS" != *" "* ]] || die "skaffold builds one target at a time: set TARGETS"
  SKAFFOLD_IMAGE="$IMAGE"
fi
image_of() { [[ -n "$SKAFFOLD_IMAGE" ]] && { echo "$SKAFFOLD_IMAGE"; return; }
             case "$1" in shop) echo "$SHOP_IMAGE:$IMAGE_TAG" ;; operator) echo "$OPERATOR_IMAGE:$IMAGE_TAG" ;;
                          secantus) echo "$SECANTUS_IMAGE:$IMAGE_TAG" ;;
                          *) die "unknown target $1 (shop, operator, secantus)" ;; esac; }
declare -A SECONDS_OF=()
for target in $TARGETS; do
  image="$(image_of "$target")"
  say "building $image (--target $target)"
  start=$SECONDS
  "$CLIENT" "${BUILD[@]}" --target "$target" -t "$image" "${ARGS[@]}" . \
    || die "building $image failed (output above)"
  SECONDS_OF[$target]=$((SECONDS - start))
done

for target in $TARGETS; do
  image="$(image_of "$target")"
  size="$("$CLIENT" image inspect -f '{{.Size}}' "$image")"
  printf 'image %s %d MB (built in %d s)\n' "$image" "$((size / 1000000))" "${SECONDS_OF[$target]}"
  if [[ -n "$SKAFFOLD_IMAGE" && "${PUSH_IMAGE:-false}" == true ]]; then "$CLIENT" push "$image"; fi
done
