"""`make lint` runs deptry: an import of a package that is only a dependency's dependency, or not
installed at all, fails it (pyproject.toml [tool.deptry])."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPTRY = Path(sys.executable).with_name("deptry")


def deptry(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DEPTRY), "--no-ansi", "."], cwd=project, capture_output=True, text=True, timeout=120,
                          check=False)


def test_the_repository_declares_every_import() -> None:
    checked = deptry(ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_undeclared_import_fails(tmp_path: Path) -> None:
    """The repository's own deptry settings on a copy of its pyproject.toml, with code that imports
    idna (installed only as a dependency of httpx and yarl) and a package that is not installed."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "sneaky.py").write_text("import idna\nimport surely_not_a_package_xyz\n")
    checked = deptry(tmp_path)
    out = checked.stdout + checked.stderr
    assert checked.returncode != 0, out
    assert "DEP003 'idna' imported but it is a transitive dependency" in out, out
    assert "DEP001 'surely_not_a_package_xyz' imported but missing from the dependency definitions" in out, out
