"""The ground floor imports nothing else of ours: every room (streams, models, outreach, the
DAGs and plugins, the console and the simulator) may build on ``forewarn``, never the other
way round (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = (
    *("streams", "models", "outreach", "dags", "plugins"),
    *("console", "simulator", "importer", "expectations"),
)
MODULES = sorted((ROOT / "forewarn").rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):  # function-level imports count too
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_forewarn_imports_no_other_room(path):
    upstairs = {name for name in _imports(path) if name.split(".")[0] in ROOMS}
    assert not upstairs, f"{path.relative_to(ROOT)} imports {sorted(upstairs)}"


def test_the_scan_sees_imports():
    assert "forewarn.events" in _imports(ROOT / "forewarn" / "lake.py")
    assert len(MODULES) >= 8
