# Images and compose (included by the root Makefile). README "Images" and docs/kubernetes.md.
#   make images        build microshop:$(IMAGE_TAG) and microshop-operator:$(IMAGE_TAG) (scripts/build-images.sh:
#                      any Docker 20.10+ engine with BuildKit; no registry needed, see PYTHON_IMAGE below)
#   make compose-up    the shop in containers without Kubernetes (compose.yaml): app + MongoDB, RabbitMQ, Redis
#   make compose-down  stop and remove them (COMPOSE_ARGS=-v also removes the volumes)
# Inputs: IMAGE_TAG; PYTHON_IMAGE (base image; a Debian-built stand-in is made when it cannot be pulled);
# CA_BUNDLE (BuildKit secret for TLS-intercepting proxies; default $SSL_CERT_FILE); IMAGE_BUILD_ARGS
# (extra `docker build` arguments, e.g. --network host); DOCKER (the docker client).
# COMPOSE_FILES picks the files: COMPOSE_FILES="compose.yaml compose.host.yaml" runs the app on this host's
# own MongoDB/RabbitMQ/Redis (see compose.host.yaml).
IMAGE_TAG ?= 0.1.0
COMPOSE_FILES ?= compose.yaml compose.override.yaml

.PHONY: images compose-up compose-down

images: ## build the shop and operator images (Docker 20.10+ with BuildKit; works with no registry)
	IMAGE_TAG=$(IMAGE_TAG) bash scripts/build-images.sh

compose-up: ## the shop in containers without Kubernetes (compose.yaml; builds the image first)
	TARGETS=shop IMAGE_TAG=$(IMAGE_TAG) bash scripts/build-images.sh
	MICROSHOP_IMAGE=microshop:$(IMAGE_TAG) bash scripts/compose.sh $(COMPOSE_FILES) -- up -d
	@echo "microshop: http://127.0.0.1:$${GATEWAY_PORT:-8000}/api/health  (make compose-down to stop)"

compose-down: ## stop the compose shop (COMPOSE_ARGS=-v also removes its volumes)
	MICROSHOP_IMAGE=microshop:$(IMAGE_TAG) bash scripts/compose.sh $(COMPOSE_FILES) -- down $(COMPOSE_ARGS)
