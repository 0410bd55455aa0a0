"""Imports go one way: the IR core imports no pass, backend or model; passes import no backend."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder, banned", [
    ("compiler/ir", ("sparsecc.passes", "sparsecc.backends", "sparsecc.models")),
    ("compiler/capture", ("sparsecc.passes", "sparsecc.backends", "sparsecc.models")),
    ("passes", ("sparsecc.backends", "sparsecc.models")),
    ("backends", ("sparsecc.passes", "sparsecc.models")),
    ("models", ("sparsecc.passes", "sparsecc.backends", "sparsecc.ir", "sparsecc.capture")),
])
def test_imports_go_one_way(folder, banned):
    files = list((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}"
    for f in files:
        bad = [m for m in _imports(f) if m.startswith(banned)]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
