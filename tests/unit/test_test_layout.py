"""The test tree's layout, as the README describes it: tiers that stand alone, helpers in tests/support."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
TIERS = sorted(p.name for p in TESTS.iterdir() if p.is_dir() and p.name != "support" and p.name[0] not in "._")


def layout_table() -> list[str]:
    """The first column of the README's ``| path | owner |`` table, one entry per backticked path."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| path | owner |"):].split("\n\n", 1)[0]
    return [path for row in table.splitlines()[2:] for path in re.findall(r"`([^`]+)`", row.split("|")[1])]


def test_every_tier_has_its_own_conftest_and_the_root_has_none() -> None:
    assert TIERS == ["charts", "cluster", "e2e", "images", "integration", "operator", "unit"]
    assert [t for t in TIERS if not (TESTS / t / "conftest.py").is_file()] == []
    assert not (TESTS / "conftest.py").exists()  # a root conftest would run for every tier
    assert not (TESTS / "support" / "conftest.py").exists()


def test_test_modules_hold_tests_and_helpers_live_in_tests_support() -> None:
    without_tests = [str(p.relative_to(ROOT)) for p in TESTS.rglob("test_*.py")
                     if not re.search(r"^(async )?def test_|^class Test", p.read_text(), re.M)]
    assert without_tests == []
    assert list((TESTS / "support").glob("test_*.py")) == []


def test_the_readme_layout_table_names_every_tests_folder_and_only_existing_paths() -> None:
    paths = layout_table()
    assert {f"tests/{name}" for name in [*TIERS, "support"]} <= set(paths)
    missing = [p for p in paths if not list(ROOT.glob(p.rstrip("/").replace("<name>", "*")))]
    assert missing == []
