# The load generator (included by the root Makefile). docs/observability.md, "Load".
#   make load                 Locust, headless, 20 users for 60 s against http://127.0.0.1:8000 (make dev):
#                             a progress line every 5 s, then the CSVs and an HTML report in .dev/load/
#   make load ARGS=--web      Locust's web UI on http://127.0.0.1:8089
#   make load ARGS="--host URL --users N --run-time 5m --csv PREFIX"
.PHONY: load

load: setup ## Locust against a running shop: 60 s, progress every 5 s, CSVs + HTML report in .dev/load/ (ARGS=--web, --host URL, --users N)
	$(UV) run --frozen python -m devtools.loadgen $(ARGS)
