#!/usr/bin/env bash
# Create a kind cluster, build and load the images, install the operator chart, apply the example
# Shop, wait until it is Ready and print its URL. Idempotent: re-running upgrades in place.
set -euo pipefail
cd "$(dirname "$0")/.."
KIND_CLUSTER="${KIND_CLUSTER:-microshop}"
IMAGE_TAG="${IMAGE_TAG:-0.1.0}"
OPERATOR_NAMESPACE="${OPERATOR_NAMESPACE:-microshop-system}"
WAIT_TIMEOUT="${WAIT_TIMEOUT:-15m}"

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool is required (see docs/kubernetes.md)" >&2; exit 1; }
done
HELM="$(command -v helm || python3 -m devtools.helm)"

if ! kind get clusters | grep -qx "$KIND_CLUSTER"; then
  kind create cluster --name "$KIND_CLUSTER" --config kind-config.yaml
fi
kubectl config use-context "kind-${KIND_CLUSTER}"

if ! pgrep -x cloud-provider-kind >/dev/null; then
  echo "kind-up: cloud-provider-kind is not running; start it in another terminal (it serves Ingress):" >&2
  echo "         sudo cloud-provider-kind --enable-lb-port-mapping" >&2
fi

IMAGE_TAG="$IMAGE_TAG" bash scripts/build-images.sh   # what `make images` runs
kind load docker-image --name "$KIND_CLUSTER" "microshop:${IMAGE_TAG}" "microshop-operator:${IMAGE_TAG}"

# The operator serves only the namespaces it is given (default: its own); the example Shop lives in default.
"$HELM" upgrade --install microshop-operator charts/microshop-operator \
  --namespace "$OPERATOR_NAMESPACE" --create-namespace \
  --set image.tag="$IMAGE_TAG" --set 'watchNamespaces={default}' --wait --timeout 5m

# The example Shop with this build's tag.
sed "s/^    tag: .*/    tag: \"${IMAGE_TAG}\"/" examples/shop.yaml | kubectl apply -f -
kubectl wait shop/microshop --for=condition=Ready --timeout="$WAIT_TIMEOUT"

URL="$(kubectl get shop/microshop -o jsonpath='{.status.url}')"
echo
echo "microshop is ready: ${URL:-http://microshop.127.0.0.1.nip.io}/api/health"
echo "admin password: kubectl get secret microshop-admin -o jsonpath='{.data.password}' | base64 -d"
