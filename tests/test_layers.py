"""The house's shape, held against the code: options → work → results → views, no import cycle,
no module over 650 lines, no function over 80 (docs/development.md, "Module map")."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rayscale"
LAYERS = {
    "options": {"errors", "layout", "space", "tasks", "options"},
    "results": {
        "stats",
        "models",
        "schema",
        "outcomes",
        "forecast",
        "bundle",
        "scaling",
        "compare",
        "panels",
    },
    "views": {"tables", "plots", "report"},
    "cli": {"cli", "__main__", "__init__"},
}
# What each layer may import (besides itself); every module not listed above is work.
MAY_IMPORT = {
    "options": set(),
    "results": {"options"},
    "work": {"options", "results"},
    "views": {"options", "results"},
    "cli": {"options", "results", "work", "views"},
}


def layer(module: str) -> str:
    return next((name for name, members in LAYERS.items() if module in members), "work")


def imports() -> dict[str, set[str]]:
    """Module → the rayscale modules it imports, anywhere in it."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rayscale"):
                parts = node.module.split(".")
                if len(parts) > 1:
                    names.add(parts[1])
                else:  # from rayscale import x
                    names |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
            elif isinstance(node, ast.Import):
                names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("rayscale.")}
        found[path.stem] = names - {path.stem}
    return found


def test_the_import_graph_has_no_cycle() -> None:
    graph = imports()
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph.get(module, ())):
            assert state.get(other) != 1, "import cycle: " + " -> ".join([*path, module, other])
            if other not in state:
                visit(other, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_imports_follow_the_layers() -> None:
    wrong = [
        f"{module} ({layer(module)}) imports {other} ({layer(other)})"
        for module, others in sorted(imports().items())
        for other in sorted(others)
        if layer(other) != layer(module) and layer(other) not in MAY_IMPORT[layer(module)]
    ]
    assert not wrong, "; ".join(wrong)


def test_no_module_over_650_lines_and_no_function_over_80() -> None:
    long = []
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 650:
            long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > 80:
                    long.append(f"{path.name}:{node.name}: {size} lines")
    assert not long, "; ".join(long)
