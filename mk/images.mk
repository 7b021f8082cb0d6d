# Images and compose (included by the root Makefile). README "Images" and docs/kubernetes.md.
#   make images        build microshop:$(IMAGE_TAG) and microshop-operator:$(IMAGE_TAG) (scripts/build-images.sh:
#                      any Docker 20.10+ engine with BuildKit; no registry needed, see PYTHON_IMAGE below)
#   make compose-up       the shop in containers without Kubernetes, infrastructure from registry images
#                         (compose.yaml + compose.override.yaml): app + MongoDB, RabbitMQ, Redis
#   make compose-up-host  the same without a registry (compose.yaml + compose.host.yaml): host networking
#                         on 127.0.0.1, this host's RabbitMQ/Redis (make infra), SecantusDB built here
#   make compose-down     remove what either made: containers, networks, volumes
# Both `up`s build what they need, wait for /api/health and print the URL (scripts/compose-shop.sh).
# Inputs: IMAGE_TAG; PYTHON_IMAGE (base image; a Debian-built stand-in is made when it cannot be pulled);
# CA_BUNDLE (BuildKit secret for TLS-intercepting proxies; default $SSL_CERT_FILE); IMAGE_BUILD_ARGS
# (extra `docker build` arguments, e.g. --network host); DOCKER (the docker client).
IMAGE_TAG ?= 0.1.0

.PHONY: images compose-up compose-up-host compose-down

images: ## build the shop and operator images, first the base image from Debian packages when no registry serves one (Docker 20.10+ with BuildKit)
	IMAGE_TAG=$(IMAGE_TAG) bash scripts/build-images.sh

compose-up: ## the shop in containers, MongoDB/RabbitMQ/Redis pulled from a registry (compose.yaml); waits for /api/health
	IMAGE_TAG=$(IMAGE_TAG) bash scripts/compose-shop.sh up registry

compose-up-host: infra ## the shop in containers without a registry: host network on 127.0.0.1, this host's RabbitMQ/Redis, SecantusDB
	IMAGE_TAG=$(IMAGE_TAG) bash scripts/compose-shop.sh up host

compose-down: setup ## remove what compose-up or compose-up-host made: containers, networks, volumes
	IMAGE_TAG=$(IMAGE_TAG) bash scripts/compose-shop.sh down
