#!/usr/bin/env bash
# Delete the kind cluster made by kind-up (everything in it goes with it, volumes included).
set -euo pipefail
KIND_CLUSTER="${KIND_CLUSTER:-microshop}"
command -v kind >/dev/null || { echo "kind-down: kind is not installed" >&2; exit 1; }
kind delete cluster --name "$KIND_CLUSTER"
