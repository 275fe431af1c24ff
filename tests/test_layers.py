"""The house's shape, held against the code (docs/development.md, "Module map").

- Layers, imports going one way: options → results → work / views, the CLI (``cli``, ``__main__``,
  the root ``__init__``) on top; ``errors`` is the base every layer may import.
- Inside work, lowest first: stopping/environment/data → cluster → grid → sim → tune → execution → run
  → scale, predict. A module imports only its own subpackage and lower ones; no command (run, scale,
  predict) imports another.
- No import cycle (function-level and ``TYPE_CHECKING`` imports included).
- Only ``__init__``, ``__main__``, ``cli`` and ``errors`` at the root; every folder with modules has an
  ``__init__.py`` holding only a docstring, imports and ``__all__``; no two modules share a name.
- No module over 650 lines, class over 200 or function over 80.

Each check is a function of a package folder or of its import graph, so that the tests at the end can
show each one failing on a tree that breaks its rule.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rayscale"
ROOT_MODULES = {"__init__", "__main__", "cli", "errors"}
MAY_IMPORT = {  # what each layer may import besides itself
    "errors": set(),
    "options": {"errors"},
    "results": {"errors", "options"},
    "work": {"errors", "options", "results"},
    "views": {"errors", "options", "results"},
    "cli": {"errors", "options", "results", "work", "views"},
}
# Work, lowest first; names that share a rank are peers, which import none of each other.
WORK_ORDER = [
    "stopping environment data",
    "cluster",
    "grid",
    "sim",
    "tune",
    "execution",
    "run",
    "scale predict",
]
WORK_RANKS = {f"work.{name}": rank for rank, names in enumerate(WORK_ORDER) for name in names.split()}
WORK_RANKS["work"] = len(WORK_ORDER)  # the package itself: whoever imports it could reach anything in it
COMMANDS = {"work.run", "work.scale", "work.predict"}
MIN_MODULES = 40
MAX_LINES = {"module": 650, "class": 200, "function": 80}


def modules(root: Path) -> dict[str, Path]:
    """Dotted name ("work.grid.runners", "work.grid" for its __init__, "__init__" at the root) → file."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)] = path
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the rayscale modules (or packages: the deepest that exists) it imports, anywhere in it."""
    known = modules(root)

    def resolve(dotted: list[str]) -> str:
        for end in range(len(dotted), 0, -1):
            if ".".join(dotted[:end]) in known:
                return ".".join(dotted[:end])
        return "__init__"

    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = list(path.relative_to(root).parent.parts)
        targets: list[list[str]] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets += [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "rayscale"]
            elif isinstance(node, ast.ImportFrom):
                module = (node.module or "").split(".")
                if node.level:  # relative: level 1 is this module's package
                    base = package[: len(package) - node.level + 1] + module
                elif module[0] == "rayscale":
                    base = module[1:]
                else:
                    continue
                base = [part for part in base if part]
                targets += [[*base, alias.name] for alias in node.names]  # a submodule, or a name in base
        graph[name] = {resolve(target) for target in targets} - {name}
    return graph


def layer(module: str) -> str:
    return "cli" if module in {"cli", "__main__", "__init__"} else module.split(".")[0]


def work_unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def cycle_problems(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph.get(module, ())):
            if state.get(other) == 1:
                found.append(" -> ".join([*path[path.index(other) :], module, other]))
            elif other not in state:
                visit(other, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def layer_problems(graph: dict[str, set[str]]) -> list[str]:
    wrong = [
        f"{module}: no layer {layer(module)!r}" for module in sorted(graph) if layer(module) not in MAY_IMPORT
    ]
    return wrong + [
        f"{module} ({layer(module)}) imports {other} ({layer(other)})"
        for module, others in sorted(graph.items())
        for other in sorted(others)
        if layer(module) in MAY_IMPORT and layer(other) not in {layer(module), *MAY_IMPORT[layer(module)]}
    ]


def rank_problems(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, others in sorted(graph.items()):
        mine = work_unit(module)
        for other in sorted(o for o in others if layer(o) == layer(module) == "work"):
            theirs = work_unit(other)
            if theirs == mine:
                continue
            if unranked := {mine, theirs} - WORK_RANKS.keys():
                wrong.append(f"{module} imports {other}: no rank for {', '.join(sorted(unranked))}")
            elif WORK_RANKS[theirs] >= WORK_RANKS[mine] or {mine, theirs} <= COMMANDS:
                wrong.append(f"{module} ({WORK_RANKS[mine]}) imports {other} ({WORK_RANKS[theirs]})")
    return wrong


def layout_problems(root: Path) -> list[str]:
    wrong = [f"{p.name} at the root" for p in root.glob("*.py") if p.stem not in ROOT_MODULES]
    for folder, _, files in os.walk(root):
        if any(f.endswith(".py") for f in files) and "__init__.py" not in files:
            wrong.append(f"{Path(folder).relative_to(root)} has no __init__.py")
    stems: dict[str, list[str]] = {}
    for name, path in modules(root).items():
        if path.stem not in {"__init__", "__main__"}:
            stems.setdefault(path.stem, []).append(name)
    return wrong + [f"{', '.join(names)} share a name" for names in stems.values() if len(names) > 1]


def init_problems(root: Path) -> list[str]:
    wrong = []
    for path in sorted(root.rglob("__init__.py")):
        parsed, where = ast.parse(path.read_text(encoding="utf-8")), path.relative_to(root)
        doc = ast.get_docstring(parsed)
        if doc is None or not doc.strip():
            wrong.append(f"{where}: {'no' if doc is None else 'an empty'} docstring")
        for node in parsed.body[doc is not None :]:
            is_all = isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["__all__"]
            if not (isinstance(node, ast.Import | ast.ImportFrom) or is_all):
                wrong.append(f"{where}:{node.lineno}: {ast.unparse(node).splitlines()[0]}")
    return wrong


def size_problems(root: Path) -> list[str]:
    wrong = []
    for name, path in modules(root).items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_LINES["module"]:
            wrong.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_LINES[kind]:
                    wrong.append(f"{name}:{node.name}: {kind} of {size} lines")
    return wrong


def count_problems(root: Path, floor: int = MIN_MODULES) -> list[str]:
    """The walk above against an independent count of the files, and a floor: never a silent zero."""
    counted = sum(f.endswith(".py") for _, _, files in os.walk(root) for f in files)
    walked = len(import_graph(root))
    wrong = [f"walked {walked} modules, counted {counted}"] if walked != counted else []
    return wrong + ([f"{walked} modules, fewer than {floor}"] if walked < floor else [])


def on_graph(check: Callable[[dict[str, set[str]]], list[str]]) -> Callable[[Path], list[str]]:
    return lambda root: check(import_graph(root))


CYCLES, LAYERS, RANKS = on_graph(cycle_problems), on_graph(layer_problems), on_graph(rank_problems)
CHECKS = {
    "every-module-walked": count_problems,
    "no-import-cycle": CYCLES,
    "imports-follow-the-layers": LAYERS,
    "work-imports-its-own-and-lower-ranks": RANKS,
    "layout": layout_problems,
    "inits-hold-a-docstring-imports-and-all": init_problems,
    "no-module-class-or-function-too-long": size_problems,
}


@pytest.mark.parametrize("check", CHECKS.values(), ids=CHECKS.keys())
def test_the_package(check: Callable[[Path], list[str]]) -> None:
    problems = check(PACKAGE)
    assert not problems, "\n".join(problems)


DOC = '"""A docstring."""\n'
GOOD = {"__init__.py": DOC, **{f"{p}/__init__.py": DOC for p in ["options", "results", "work", "work/grid"]}}
BAD = [  # (files that break a rule, on top of GOOD; its check; what the check must say)
    ({"options/a.py": "from rayscale.results import b\n", "results/b.py": ""}, LAYERS, "options.a"),
    ({"work/data.py": "import rayscale\n"}, LAYERS, "work.data (work) imports __init__ (cli)"),
    ({"errors.py": "from rayscale.options import a\n", "options/a.py": ""}, LAYERS, "errors (errors)"),
    ({"extra/a.py": ""}, LAYERS, "no layer 'extra'"),
    ({"work/grid/a.py": "from ...work import run\n", "work/run.py": ""}, RANKS, "a (2) imports"),
    ({"work/scale.py": "from rayscale.work.run import x\n", "work/run.py": ""}, RANKS, "(7) imports"),
    ({"work/data.py": "import rayscale.work.stopping\n", "work/stopping.py": ""}, RANKS, "(0) imports"),
    ({"work/new/a.py": "from rayscale.work.data import x\n", "work/data.py": ""}, RANKS, "no rank"),
    ({"options/a.py": "from . import b\n", "options/b.py": "from .a import x\n"}, CYCLES, "b -> "),
    ({"helpers.py": ""}, layout_problems, "helpers.py at the root"),
    ({"work/sim/slots.py": ""}, layout_problems, "work/sim has no __init__.py"),
    ({"options/stats.py": "", "results/stats.py": ""}, layout_problems, "share a name"),
    ({"work/grid/__init__.py": DOC + "def f():\n    pass\n"}, init_problems, "def f"),
    ({"work/grid/__init__.py": "__all__ = []\n"}, init_problems, "no docstring"),
    ({"work/grid/__init__.py": '""" """\n'}, init_problems, "empty docstring"),
    ({"options/a.py": "x = 1\n" * 651}, size_problems, "651 lines"),
    ({"options/a.py": "class A:\n" + "    x = 1\n" * 200}, size_problems, "class of 201"),
    ({"options/a.py": "def f():\n" + "    x = 1\n" * 80}, size_problems, "function of 81"),
    ({}, count_problems, "5 modules, fewer than 40"),
]


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(("files", "check", "expected"), BAD, ids=[bad[2] for bad in BAD])
def test_each_check_fails_on_a_tree_that_breaks_its_rule(
    tmp_path: Path, files: dict[str, str], check: Callable[[Path], list[str]], expected: str
) -> None:
    if files:  # the same check passes on the good tree alone
        assert not check(tree(tmp_path / "good" / "rayscale", GOOD))
    problems = check(tree(tmp_path / "bad" / "rayscale", {**GOOD, **files}))
    assert any(expected in problem for problem in problems), problems
