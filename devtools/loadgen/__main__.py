"""``make load``: run the Locust load generator against a running shop.

The traffic is charts/microshop/files/locustfile.py: the chart's optional in-cluster load generator
(``loadGenerator.enabled``) runs the same file in the official Locust image, so it lives in the chart.

    make load                                   # 20 users against http://127.0.0.1:8000 (make dev) for 60 s
    make load ARGS="--host https://shop.example.com --users 50 --run-time 5m"
    make load ARGS=--web                        # Locust's web UI on http://127.0.0.1:8089 (start it there)

Headless runs stop after ``--run-time`` (default 60 s), print Locust's summary table and a line of shop
counters (orders placed/cancelled, rate-limited answers, WebSocket frames), and write the statistics as CSV
(``<csv>_stats.csv``, ``_stats_history.csv``, ``_failures.csv``, ``_exceptions.csv``). Requests go only to
``--host``. Arguments after ``--`` go to ``locust`` unchanged.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from devtools.procs import ROOT

LOCUSTFILE = ROOT / "charts" / "microshop" / "files" / "locustfile.py"
DEFAULT_CSV = ROOT / ".dev" / "load" / "microshop"


def locust_argv(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(prog="make load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="the shop's gateway (default: make dev's)")
    parser.add_argument("--users", type=int, default=20, help="simulated users (default 20)")
    parser.add_argument("--spawn-rate", type=float, default=5, help="users started per second (default 5)")
    parser.add_argument("--run-time", default="60s", help="how long a headless run lasts (default 60s)")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, metavar="PREFIX",
                        help=f"CSV files prefix (default {DEFAULT_CSV.relative_to(ROOT)})")
    parser.add_argument("--web", action="store_true", help="Locust's web UI on 127.0.0.1:8089 instead of headless")
    parser.add_argument("extra", nargs="*", help="after --: more locust arguments")
    args = parser.parse_args(argv)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    command = ["locust", "-f", str(LOCUSTFILE), "--host", args.host, "--users", str(args.users),
               "--spawn-rate", str(args.spawn_rate), "--csv", str(args.csv), "--csv-full-history"]
    if args.web:
        command += ["--web-host", "127.0.0.1", "--web-port", "8089"]
    else:
        command += ["--headless", "--run-time", args.run_time, "--only-summary", "--stop-timeout", "5"]
    return command + args.extra


def main(argv: list[str] | None = None) -> int:
    command = locust_argv(argv)
    print("microshop load:", " ".join(command[1:]), flush=True)
    locust = Path(sys.executable).with_name("locust")
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ inside the chart
    os.execv(str(locust), [str(locust), *command[1:]])  # noqa: S606 - our venv's locust, argv from the user
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
