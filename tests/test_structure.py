"""The package's shape: imports run one way (cli -> analysis/sweeps -> training -> measures -> core), no
module imports itself back through another, and every module is what its import path names."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import stability

PACKAGE = Path(stability.__file__).parent

# Floors, from the bottom: a module may import its own floor and the floors below, never one above.
FLOORS = {
    "errors": 0, "config": 0, "checks": 0, "files": 0, "serialize": 0, "functional": 0, "losses": 0,
    "plotting": 0, "commands": 0, "__init__": 0,
    "sensitivity": 1, "curvature": 1, "dynamics": 1, "toy": 1, "data": 1, "models": 1,
    "training": 2,
    "analysis": 3, "sweeps": 3,
    "cli": 4,
}  # fmt: skip
MEASURES = {"sensitivity", "curvature", "dynamics"}


def modules() -> list[str]:
    names = ["stability"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="stability."):
        names.append(info.name)
    return sorted(names)


def source(name: str) -> Path:
    path = PACKAGE.joinpath(*name.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported(name: str) -> set[str]:
    """Every ``stability.*`` module that ``name`` imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source(name).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{name} uses a relative import; the package imports absolutely")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stability"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if _is_module(full) else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("stability")}
    return out


def _is_module(name: str) -> bool:
    return source(name).is_file() if name.startswith("stability.") else False


def room(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


ALL = modules()


def test_every_module_has_a_floor():
    assert {room(m) for m in ALL} <= set(FLOORS)


@pytest.mark.parametrize("name", ALL)
def test_imports_point_down(name):
    mine = FLOORS[room(name)]
    upward = sorted(t for t in imported(name) if FLOORS[room(t)] > mine)
    assert not upward, f"{name} (floor {mine}) imports a higher floor: {upward}"
    if room(name) in {"data", "models"}:
        assert not {room(t) for t in imported(name)} & MEASURES, f"{name} imports a measure"


def test_no_import_cycles():
    """Between modules, and between the rooms (subpackages) they live in."""
    # A package's __init__ importing its own submodules is how a package exports them, not a cycle.
    graph = {m: {t for t in imported(m) if t != m and not t.startswith(m + ".")} for m in ALL}
    rooms: dict[str, set[str]] = {}
    for m, targets in graph.items():
        rooms.setdefault(room(m), set()).update(room(t) for t in targets if room(t) != room(m))
    for g in (graph, rooms):
        assert not _cycle(g), f"import cycle: {' -> '.join(_cycle(g))}"


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


@pytest.mark.parametrize("name", [m for m in ALL if "." in m and not m.endswith("__main__")])
def test_a_module_is_what_its_path_names(name):
    """``import stability.training.train as m`` gives the module: no package attribute shadows a submodule."""
    module = importlib.import_module(name)
    parent, _, leaf = name.rpartition(".")
    assert getattr(importlib.import_module(parent), leaf) is module


def test_the_public_api_resolves_and_is_listed():
    for name in stability.__all__:
        assert getattr(stability, name) is not None, name
    assert sorted(dir(stability)) == sorted(stability.__all__)


def test_docs_api_lists_every_public_name_once():
    text = (PACKAGE.parent / "docs" / "api.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `(\w+)` \|", text, re.M)
    assert sorted(listed) == sorted(n for n in stability.__all__ if n != "__version__")
