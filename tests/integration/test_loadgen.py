"""`make load` (devtools.loadgen): a short headless run against the session shop shows its progress while it
runs, writes the CSVs and Locust's HTML report, and says where they are."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from devtools.shop import LocalShop
from tests.support.saga import create_product

PROGRESS = re.compile(r"^microshop load: (\d+) s, (\d+) requests \([\d.]+/s\), (\d+) failures, "
                      r"(\d+) orders placed, (\d+) rate-limited$", re.M)


async def test_make_load_shows_progress_and_writes_csv_and_html(
        shop: LocalShop, api: httpx.AsyncClient, admin_token: str, tmp_path: Path) -> None:
    await create_product(api, admin_token, stock=1000)  # something to order
    prefix = tmp_path / "load" / "run"
    out = subprocess.run(
        [sys.executable, "-m", "devtools.loadgen", "--host", shop.url("gateway"), "--users", "4",
         "--spawn-rate", "4", "--run-time", "10s", "--progress-every", "2", "--csv", str(prefix)],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = PROGRESS.findall(out.stdout)
    assert len(lines) >= 3, out.stdout[-3000:]  # every 2 s of a 10 s run
    seconds = [int(line[0]) for line in lines]
    requests = [int(line[1]) for line in lines]
    assert seconds == sorted(seconds) and requests == sorted(requests) and requests[-1] > 0, lines
    html = prefix.with_name("run.html")
    assert html.is_file() and "<html" in html.read_text().lower()
    assert (prefix.parent / "run_stats.csv").is_file()
    results = next(line for line in out.stdout.splitlines() if line.startswith("microshop load: results: "))
    assert html.name in results and "run_stats.csv" in results, results
    # The run ended after the progress lines: the summary's shop counters come last, then where the files are.
    assert out.stdout.rindex("orders cancelled") > out.stdout.rindex(" rate-limited\n"), out.stdout[-2000:]
