"""No service sends ``findAndModify``: SecantusDB, the stand-in database every local run uses, runs it as a scan
of the whole collection whatever its filter (an ``_id`` included), so its cost grows with every document
stored. A read by ``_id`` and a guarded update (two indexed statements) do the same work at a constant cost
(docs/saga.md, "Statements that scan")."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
SCANNING = {"find_one_and_update", "find_one_and_delete", "find_one_and_replace", "find_and_modify"}


def calls_of(path: Path, root: Path = SERVICES) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{path.relative_to(root)}:{node.lineno} {node.func.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SCANNING]


def test_no_service_sends_find_and_modify() -> None:
    found = [call for path in sorted(SERVICES.rglob("*.py")) for call in calls_of(path)]
    assert found == []


def test_the_check_sees_a_find_and_modify(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("async def f(c):\n    await c.find_one_and_update({'_id': 1}, {'$set': {'a': 1}})\n")
    assert calls_of(probe, tmp_path) == ["probe.py:2 find_one_and_update"]
