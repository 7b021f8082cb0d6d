"""``make dev``: run the whole shop locally until Ctrl-C.

Checks RabbitMQ and Redis (starting or installing them when needed), starts SecantusDB as
its own process (data kept in .dev/mongo), then every service and the gateway on their
standard ports with prefixed logs. Ctrl-C stops them all; none is left behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from devtools import infra
from devtools.procs import ROOT, die_with_parent
from devtools.prometheus import DEFAULT_PORT as PROMETHEUS_PORT
from devtools.prometheus import LocalPrometheus
from devtools.shop import (
    DEV_ADMIN_EMAIL,
    DEV_ADMIN_PASSWORD,
    SERVICES,
    LocalShop,
    ensure_private_key,
    shop_from_env,
)


def metrics_lines(shop: LocalShop, services: list[str], user_env: dict[str, str]) -> str:
    """Where each service's Prometheus metrics are (its own port, never through the gateway), and tracing."""
    if user_env.get("MICROSHOP_METRICS_ENABLED", "true").lower() in ("0", "false", "no"):
        lines = "  metrics: off (MICROSHOP_METRICS_ENABLED=false)\n"
    else:
        lines = "  metrics (Prometheus):\n" + "".join(
            f"    {name:<10} {shop.url(name)}/metrics\n" for name in services)
    endpoint = user_env.get("MICROSHOP_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    lines += f"  traces: {'OTLP/HTTP to ' + endpoint if endpoint else 'off (set MICROSHOP_OTLP_ENDPOINT)'}\n"
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make dev", description=__doc__)
    parser.add_argument("--fresh", action="store_true", help="start with an empty database")
    parser.add_argument("--without", action="append", default=[], metavar="SERVICE",
                        help="leave a service out (e.g. --without analytics)")
    parser.add_argument("--port-offset", type=int, default=0, metavar="N",
                        help="add N to every port (run a second shop beside the first)")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".dev", metavar="DIR",
                        help="where the dev database and signing key live (default .dev)")
    parser.add_argument("--namespace", default=None, metavar="PREFIX",
                        help="prefix for exchange, queue and Redis key names (MICROSHOP_NAMESPACE)")
    parser.add_argument("--prometheus", action="store_true",
                        help="also run a Prometheus (Debian package `prometheus`) scraping every service, with "
                             "the rules of devtools/prometheus-rules.yml, on port 9090 (+ the port offset)")
    args = parser.parse_args(argv)

    if not infra.ensure_all():
        print("\nmake dev needs RabbitMQ on 127.0.0.1:5672 and Redis on 127.0.0.1:6379; see the messages above.",
              file=sys.stderr)
        return 1

    state: Path = args.state_dir
    storage = state / "mongo"
    if args.fresh and storage.exists():
        import shutil

        shutil.rmtree(storage)
    storage.mkdir(parents=True, exist_ok=True)
    user_env = shop_from_env(os.environ)
    analytics_off = user_env.get("MICROSHOP_ANALYTICS_ENABLED", "true").lower() in ("0", "false", "no")
    services = [s.name for s in SERVICES if s.available and s.name not in args.without]
    if analytics_off and "analytics" in services:
        services.remove("analytics")
    shop = LocalShop(
        key_file=ensure_private_key(state / "jwt-private.pem"),
        mongo=user_env.pop("MICROSHOP_MONGO_URL", None),
        mongo_storage=str(storage),
        ports={s.name: s.port + args.port_offset for s in SERVICES},
        namespace=args.namespace if args.namespace is not None else user_env.pop("MICROSHOP_NAMESPACE", ""),
        env={"MICROSHOP_SEED_DEMO": "true", **user_env},
        services=services,
    )

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    die_with_parent()
    prometheus = None
    if args.prometheus:
        prometheus = LocalPrometheus(targets={name: shop.port(name) for name in services},
                                     state_dir=state / "prometheus", port=PROMETHEUS_PORT + args.port_offset)
        if prometheus.binary is None:
            print("make dev --prometheus needs the prometheus binary: apt-get install prometheus "
                  "(or python -m devtools.infra --prometheus)", file=sys.stderr)
            return 1
    try:
        shop.start(timeout=90)
        if prometheus is not None:
            shop.group.add(prometheus.make_proc()).start().wait_ready(30)
    except RuntimeError as exc:
        print(f"\nmicroshop failed to start: {exc}", file=sys.stderr)
        shop.stop()
        return 1
    print(
        "\n"
        f"  microshop is running: {shop.url('gateway')}/api  (docs: {shop.url('gateway')}/api/docs)\n"
        f"  dev admin (dev only): {DEV_ADMIN_EMAIL} / {DEV_ADMIN_PASSWORD}\n"
        f"  services: {', '.join(services)}\n"
        f"{metrics_lines(shop, services, user_env)}"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )
    if prometheus is not None:
        print(f"  prometheus: {prometheus.url}/graph  (scraping every service; rules: devtools/prometheus-rules.yml)\n",
              flush=True)
    try:
        while not stopping:
            dead = [p.name for p in shop.procs.values() if not p.running]
            if dead:
                print(f"\n{', '.join(dead)} exited; stopping the shop.", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        print("\nstopping microshop ...", flush=True)
        shop.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
