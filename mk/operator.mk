# Operator targets (included by the root Makefile).
#   make operator-test   the operator under kopf against the kmock emulator (no cluster needed)
#   make operator-crd    regenerate the Shop CRD from charts/microshop's values schema
#   make e2e             kind cluster + image + CRD + operator, then tests/e2e against it
E2E_CLUSTER   ?= microshop-e2e
E2E_NAMESPACE ?= microshop-system
E2E_TAG       ?= e2e
HELM          ?= $(shell $(UV) run --frozen python -m devtools.helm)

.PHONY: operator-test operator-crd operator-lint e2e e2e-down

operator-test: setup ## the operator under kopf against the kmock emulator (no cluster)
	$(UV) run --frozen pytest tests/operator --confcutdir=tests/operator -q

operator-crd: setup ## regenerate the Shop CRD from the chart's values schema
	$(UV) run --frozen python -m microshop_operator.crd > charts/microshop-operator/crds/shops.microshop.dev.yaml

operator-lint: setup ## ruff over the operator and its tests, mypy over the operator
	$(UV) run --frozen ruff check operator tests/operator tests/e2e
	$(UV) run --frozen mypy operator

# Needs docker and kind. Reuses the cluster when it exists; `make e2e-down` removes it.
e2e: setup ## kind cluster + images + operator, then tests/e2e against it (docker, kind)
	kind get clusters | grep -qx $(E2E_CLUSTER) || kind create cluster --name $(E2E_CLUSTER) --config tests/e2e/kind-config.yaml
	$(MAKE) --no-print-directory images IMAGE_TAG=$(E2E_TAG)
	kind load docker-image microshop:$(E2E_TAG) microshop-operator:$(E2E_TAG) --name $(E2E_CLUSTER)
	kubectl config use-context kind-$(E2E_CLUSTER)
	$(HELM) upgrade --install microshop-operator charts/microshop-operator --namespace $(E2E_NAMESPACE) \
	  --create-namespace --set image.tag=$(E2E_TAG) --set image.pullPolicy=Never --wait --timeout 5m
	KUBECONFIG=$${KUBECONFIG:-$$HOME/.kube/config} OPERATOR_NAMESPACE=$(E2E_NAMESPACE) E2E_IMAGE_TAG=$(E2E_TAG) \
	  $(UV) run --frozen pytest tests/e2e --confcutdir=tests/e2e -v

e2e-down: ## delete the e2e kind cluster
	kind delete cluster --name $(E2E_CLUSTER)
