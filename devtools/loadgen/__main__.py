"""``make load``: run the Locust load generator against a running shop.

The traffic is charts/microshop/files/locustfile.py: the chart's optional in-cluster load generator
(``loadGenerator.enabled``) runs the same file in the official Locust image, so it lives in the chart.

    make load                                   # 20 users against http://127.0.0.1:8000 (make dev) for 60 s
    make load ARGS="--host https://shop.example.com --users 50 --run-time 5m"
    make load ARGS=--web                        # Locust's web UI on http://127.0.0.1:8089 (start it there)

Headless runs print a progress line every ``--progress-every`` seconds (default 5: requests, failures,
orders placed, rate-limited answers), stop after ``--run-time`` (default 60 s), print Locust's summary table
and a line of shop counters (orders placed/cancelled, rate-limited answers, WebSocket frames), write the
statistics as CSV (``<csv>_stats.csv``, ``_stats_history.csv``, ``_failures.csv``, ``_exceptions.csv``) and
Locust's HTML report beside them (``<csv>.html``; default prefix ``.dev/load/microshop``), and end by
saying where those files are. Requests go only to ``--host``. Arguments after ``--`` go to ``locust``
unchanged.
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
    parser.add_argument("--progress-every", type=float, default=5, metavar="SECONDS",
                        help="a progress line every SECONDS of a headless run (default 5; 0: none)")
    parser.add_argument("--web", action="store_true", help="Locust's web UI on 127.0.0.1:8089 instead of headless")
    parser.add_argument("extra", nargs="*", help="after --: more locust arguments")
    args = parser.parse_args(argv)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    command = ["locust", "-f", str(LOCUSTFILE), "--host", args.host, "--users", str(args.users),
               "--spawn-rate", str(args.spawn_rate), "--csv", str(args.csv), "--csv-full-history"]
    if args.web:
        command += ["--web-host", "127.0.0.1", "--web-port", "8089"]
    else:
        command += ["--headless", "--run-time", args.run_time, "--only-summary", "--stop-timeout", "5",
                    "--progress-every", str(args.progress_every), "--html", str(html_report(args.csv))]
    return command + args.extra


def html_report(csv: Path) -> Path:
    return csv.with_name(csv.name + ".html")


def _shown(path: Path) -> str:
    """Relative to the current directory when below it (``.dev/load/...``), else absolute."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def results_line(command: list[str]) -> str:
    """Where a run's files are: the CSV prefix's files and the HTML report, as written."""
    csv = Path(command[command.index("--csv") + 1])
    written = sorted(p for p in csv.parent.glob(f"{csv.name}*") if p.suffix in (".csv", ".html"))
    shown = [_shown(p) for p in written] or [f"none under {_shown(csv)}*"]
    return "microshop load: results: " + ", ".join(shown)


def main(argv: list[str] | None = None) -> int:
    command = locust_argv(argv)
    print("microshop load:", " ".join(command[1:]), flush=True)
    locust = Path(sys.executable).with_name("locust")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no __pycache__ inside the chart
    # Our venv's locust, argv from the user. Ctrl-C reaches locust too (same process group): it stops, writes
    # its files, and then the results line says where they are.
    with subprocess.Popen([str(locust), *command[1:]], env=env) as proc:
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            code = proc.wait()
    if "--headless" in command:
        print(results_line(command), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
