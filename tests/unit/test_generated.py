"""The files generated from the service registry are current (``make generate`` rewrites them)."""

from __future__ import annotations

from devtools import generate
from devtools.generate import ROOT


def test_every_generated_file_is_current() -> None:
    stale = [str(path.relative_to(ROOT)) for path in generate.stale(generate.outputs())]
    assert not stale, f"stale: {', '.join(stale)}; run `make generate`"


def test_generated_files_say_so() -> None:
    for path in generate.outputs():
        assert "devtools.generate" in path.read_text() or "microshop_operator.crd" in path.read_text(), path
