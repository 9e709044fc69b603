"""The house rules of docs/ARCHITECTURE.md, checked on the code: no import points up a layer, no circles."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "supporttune"

# lowest first; a module may import its own package or anything in a lower layer (docs/ARCHITECTURE.md)
LAYERS = [
    {"core", "suitedir", "metrics"},
    {"config", "models", "prompting"},
    {"data", "rundir", "cliopts"},
    {"train", "rate"},
    {"inference", "report"},
    {"evaluate", "serve", "export", "bench", "pairs"},
    {"suite"},
    {"tune"},
    {"cli", "entry", "__main__", "__init__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _unit(path: Path) -> str:
    """The package (or loose module) a file belongs to: 'train' for train/stage.py, 'rundir' for rundir.py."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The units a file imports (relative and absolute imports of supporttune)."""
    out = set()
    depth = len(path.relative_to(SRC).parts) - 1
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level <= depth:  # within its own package
                    continue
                parts = (node.module or "").split(".")
                if parts[0]:
                    out.add(parts[0])
                else:
                    out.update(a.name for a in node.names)
            elif (node.module or "").startswith("supporttune."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("supporttune."))
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        unit = _unit(path)
        graph.setdefault(unit, set()).update(u for u in _imports(path) if u != unit)
    return graph


def test_every_unit_has_a_layer():
    assert set(_graph()) <= set(LAYER), set(_graph()) - set(LAYER)


def test_no_import_points_up_a_layer():
    up = [f"{a} (layer {LAYER[a]}) imports {b} (layer {LAYER[b]})"
          for a, targets in _graph().items() for b in targets if b in LAYER and LAYER[b] > LAYER[a]]
    assert not up, up


def test_no_import_circles_between_packages():
    graph = _graph()
    seen, stack = set(), []

    def visit(node):
        if node in stack:
            raise AssertionError("import circle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in seen:
            return
        stack.append(node)
        for nxt in graph.get(node, ()):
            visit(nxt)
        stack.pop()
        seen.add(node)

    for node in graph:
        visit(node)


def test_few_loose_modules():
    loose = [p.name for p in SRC.glob("*.py")]
    assert len(loose) <= 12, loose


def test_suite_and_eval_file_names_have_one_owner():
    names = ('"suite_status.json"', '"failed.json"', '"metrics.json"', '"predictions.jsonl"', '"suite_entry.json"',
             '"predictions.partial.jsonl"', '"results.json"')
    owners = {name: sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if name in p.read_text())
              for name in names}
    assert all(files == ["suitedir.py"] for files in owners.values()), owners
