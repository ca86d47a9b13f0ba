"""The package's layers, read from the source: imports point down only, no cycle, few top-level modules.

An independent reading of every ``import`` in funcgen (module level and inside functions alike), so a
lazy import that runs back up a layer is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "funcgen"

#: the floors, bottom up (ARCHITECTURE: apps -> bench -> train/generator -> methods/nets/data/metrics ->
#: processes/samplers/geometry/viz -> pointset/config/io/rng); a unit may import its own floor or lower ones
FLOORS: list[set[str]] = [
    {"pointset", "config", "io", "rng"},
    {"processes", "geometry", "viz"},
    {"samplers"},
    {"nets", "data", "metrics", "methods"},
    {"generator"},
    {"train"},
    {"bench"},
    {"apps"},
]
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}


def unit_of(module: str) -> str | None:
    """``funcgen.methods.fdp`` -> ``methods``; ``funcgen.pointset`` -> ``pointset``; the package root -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "funcgen" else None


def imports_of(path: Path, root: Path = PACKAGE) -> set[str]:
    """Absolute funcgen modules imported by the file at ``path`` under the package folder ``root``
    (relative imports resolved)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    package = parts[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("funcgen")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("funcgen"):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}  # `from . import x` may name a module
    return out


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        src = unit_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if src in (None, "__init__"):  # funcgen/__init__.py re-exports the public API
            continue
        graph.setdefault(src, set())
        for mod in imports_of(path):
            dst = unit_of(mod)
            if dst is not None and dst != src and dst in FLOOR:
                graph[src].add(dst)
    return graph


def test_every_unit_has_a_floor_and_imports_point_down():
    graph = unit_graph()
    assert set(graph) <= set(FLOOR), f"units without a floor: {sorted(set(graph) - set(FLOOR))}"
    up = [(a, b) for a, deps in graph.items() for b in deps if FLOOR[b] > FLOOR[a]]
    assert not up, f"imports that run up a floor: {up}"


def test_no_import_cycle_between_units():
    graph = unit_graph()
    state: dict[str, int] = {}

    def visit(u: str, stack: list[str]) -> None:
        state[u] = 1
        for v in graph.get(u, ()):
            assert state.get(v) != 1, f"import cycle: {' -> '.join(stack + [u, v])}"
            if v not in state:
                visit(v, stack + [u])
        state[u] = 2

    for u in graph:
        if u not in state:
            visit(u, [])


def test_at_most_six_modules_at_the_top():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert len(top) <= 6, top


def test_the_checker_sees_an_upward_import(tmp_path):
    """The reading above resolves relative imports: ``from ..bench import run`` inside methods/ names bench."""
    path = tmp_path / "funcgen" / "methods" / "fdp.py"
    path.parent.mkdir(parents=True)
    path.write_text("from ..bench import run\nfrom .base import Method\nimport funcgen.apps.cli\n")
    mods = imports_of(path, tmp_path / "funcgen")
    assert {"funcgen.bench", "funcgen.methods.base", "funcgen.apps.cli"} <= mods
    assert {unit_of(m) for m in mods} == {"bench", "methods", "apps"}
