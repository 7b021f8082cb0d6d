# kind + skaffold targets (included by the root Makefile). See docs/kubernetes.md.
KIND_CLUSTER ?= microshop
IMAGE_TAG ?= 0.1.0

.PHONY: kind-up kind-down

kind-up: ## kind cluster + images (make images) + operator + example Shop; prints the URL
	KIND_CLUSTER=$(KIND_CLUSTER) IMAGE_TAG=$(IMAGE_TAG) bash scripts/kind-up.sh

kind-down: ## delete the kind cluster
	KIND_CLUSTER=$(KIND_CLUSTER) bash scripts/kind-down.sh
