"""The package layout is the data flow: each stage imports only earlier ones.

Every import of a ``pipeline`` module by another (at module top or inside a
function) is checked against ``pipeline.STAGES``; the two observation-source
packages must not import each other, and the import graph has no cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pipeline

ROOT = Path(pipeline.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Project modules ``path`` imports (``pipeline.*``), wherever the import is."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("pipeline."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pipeline" or node.module.startswith("pipeline."):
                out.add(node.module)
                # ``from pipeline.index import scan`` imports the module ``scan``
                out.update(f"{node.module}.{a.name}" for a in node.names
                           if _is_module(f"{node.module}.{a.name}"))
    return out


def _is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in ROOT.rglob("*.py")}


def _stage(module: str) -> str:
    """``pipeline.sources.events.fog`` -> ``sources``; helpers -> ``''``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in pipeline.STAGES else ""


def test_every_module_belongs_to_a_stage_or_is_a_shared_helper():
    strays = [m for m in _graph() if m != "pipeline" and not _stage(m)
              and m.split(".")[1] not in pipeline.SHARED_HELPERS]
    assert not strays, f"modules outside any stage: {strays}"


def test_imports_go_from_later_stages_to_earlier_ones():
    order = {stage: i for i, stage in enumerate(pipeline.STAGES)}
    wrong = []
    for module, targets in _graph().items():
        for target in targets:
            here, there = _stage(module), _stage(target)
            if not there:                      # a shared helper or the package
                continue
            if not here:
                wrong.append(f"helper {module} imports {target}")
            elif order[there] > order[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there})")
    assert not wrong, "\n".join(wrong)


def test_the_two_sources_do_not_import_each_other():
    for module, targets in _graph().items():
        for a, b in (("events", "sc2"), ("sc2", "events")):
            if module.startswith(f"pipeline.sources.{a}"):
                assert not [t for t in targets if t.startswith(f"pipeline.sources.{b}")], module


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            assert state.get(nxt) != 1, " -> ".join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
