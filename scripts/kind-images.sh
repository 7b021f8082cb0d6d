#!/usr/bin/env bash
# Build the two images microshop runs: microshop:<tag> (all services) and microshop-operator:<tag>.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE_TAG="${IMAGE_TAG:-0.1.0}"
command -v docker >/dev/null || { echo "docker is required to build images" >&2; exit 1; }
export DOCKER_BUILDKIT=1
docker build --target shop -t "microshop:${IMAGE_TAG}" .
docker build --target operator -t "microshop-operator:${IMAGE_TAG}" .
