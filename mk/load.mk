# The load generator (included by the root Makefile). docs/observability.md, "Load".
#   make load                 Locust, headless, 20 users for 60 s against http://127.0.0.1:8000 (make dev)
#   make load ARGS=--web      Locust's web UI on http://127.0.0.1:8089
#   make load ARGS="--host URL --users N --run-time 5m --csv PREFIX"
.PHONY: load

load: setup ## generate load against a running shop (Locust; ARGS=--web for its UI, --host URL, --users N)
	$(UV) run --frozen python -m devtools.loadgen $(ARGS)
