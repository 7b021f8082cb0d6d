#!/usr/bin/env python3
"""Print the CPython 3.11 the virtualenv is built with: the fastest one on this machine.

Interpreters of the same version differ a lot in speed, by how they were compiled (profile-guided
optimisation, LTO, a shared ``libpython``). On the development machine Debian's
``/usr/bin/python3.11`` ran a plain loop 1.5x as fast as pyenv's default build (shared, without
``--enable-optimizations``), and the whole shop confirmed 1.4x the orders per second on it
(docs/saga.md, "Throughput"). Every
``python3.11`` on PATH, plus the usual system locations, is timed on the same loop (about 0.5 s, in
three interleaved rounds, the best round counting), and the fastest wins: this runs once, at the
first ``make`` of a checkout.

The choice is kept in ``.tools/python`` so the virtualenv is not rebuilt because a later timing came
out differently. Delete that file to choose again, or set ``MICROSHOP_PYTHON`` to name an interpreter
yourself. Nothing found: nothing is printed, and uv picks an interpreter as it would anyway.
Standard library only: it runs before the virtualenv exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHOICE = ROOT / ".tools" / "python"
NAME = "python3.11"
PROBE = (
    "import os, sys, time\n"
    "t = time.perf_counter(); x = 0\n"
    "for i in range(3_000_000): x += i % 7\n"
    "print(os.path.realpath(sys.executable), time.perf_counter() - t)\n"
)
ROUNDS = 3


def candidates() -> list[str]:
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]
    found: list[str] = []
    for directory in dirs:
        path = Path(directory or ".") / NAME
        if os.access(path, os.X_OK) and os.path.realpath(path) not in found:
            found.append(os.path.realpath(path))  # /bin and /usr/bin are often one directory
    return found


def timed(interpreter: str) -> tuple[str, float] | None:
    """(the interpreter's real executable, its best loop time), or None when it does not run."""
    try:
        out = subprocess.run([interpreter, "-c", PROBE], capture_output=True, text=True, timeout=30, check=True)
        executable, seconds = out.stdout.split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return executable, float(seconds)


def main() -> int:
    if chosen := os.environ.get("MICROSHOP_PYTHON", "").strip():
        print(chosen)
        return 0
    if CHOICE.is_file() and (kept := CHOICE.read_text().strip()) and os.access(kept, os.X_OK):
        print(kept)
        return 0
    # Rounds interleave the candidates, so a burst of other load on the machine hurts them alike;
    # an interpreter's time is its best round.
    timings: dict[str, float] = {}
    for _ in range(ROUNDS):
        for interpreter in candidates():
            result = timed(interpreter)
            if result is not None:  # a shim and its target are one interpreter
                timings[result[0]] = min(result[1], timings.get(result[0], float("inf")))
    if not timings:
        return 0
    fastest = min(timings, key=timings.__getitem__)
    if len(timings) > 1:
        print("[setup] " + ", ".join(f"{exe} {seconds * 1000:.0f} ms" for exe, seconds in sorted(timings.items()))
              + f": the virtualenv uses {fastest} (.tools/python; delete it to choose again)", file=sys.stderr)
    CHOICE.parent.mkdir(parents=True, exist_ok=True)
    CHOICE.write_text(fastest + "\n")
    print(fastest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
