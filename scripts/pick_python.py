#!/usr/bin/env python3
"""Print the CPython the virtualenv is built with: the distribution's ``python3.11`` when there is one.

Interpreters of the same version differ a lot in speed, by how they were compiled (profile-guided
optimisation, LTO, a shared ``libpython``). On the development machine Debian's
``/usr/bin/python3.11`` ran a plain loop 1.5x as fast as pyenv's default build (shared, without
``--enable-optimizations``), and the whole shop confirmed 1.3 to 1.4x the orders per second on it
(docs/saga.md, "Throughput"). uv would take the first ``python3.11`` on PATH, often a pyenv shim.

The choice is a rule, not a timing: short timings on a shared machine flipped between runs (a
timed choice once picked the slower build), and a virtualenv should not change with the weather.
``MICROSHOP_PYTHON`` names an interpreter yourself. No distribution interpreter: nothing is printed,
and uv picks one as it would anyway. Standard library only: it runs before the virtualenv exists.
"""

from __future__ import annotations

import os
import subprocess
import sys

SYSTEM = ("/usr/bin/python3.11",)


def usable(interpreter: str) -> bool:
    try:
        out = subprocess.run([interpreter, "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
                             capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip() == "True"


def main() -> int:
    if chosen := os.environ.get("MICROSHOP_PYTHON", "").strip():
        print(chosen)
        return 0
    for interpreter in SYSTEM:
        if os.access(interpreter, os.X_OK) and usable(interpreter):
            print(interpreter)
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
