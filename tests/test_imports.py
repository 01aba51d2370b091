"""memkit's modules import one another without a circle: every import (at the top of a module or inside a
function) drawn as an edge, the graph has no cycle; and each module imports first in an interpreter where no
other memkit module is loaded."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def modules() -> dict[str, Path]:
    """{dotted name: file} of every module in memkit (a package by its ``__init__``)."""
    out = {}
    for file in sorted((ROOT / "memkit").rglob("*.py")):
        parts = file.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return out


def imported(file: Path, known: dict) -> set[str]:
    """The memkit modules ``file`` imports anywhere in it, except under ``if TYPE_CHECKING:`` (never run).
    ``from a.b import c`` is module ``a.b.c`` when that is a module, else ``a.b`` (a package's ``__init__``);
    the parents a module's import runs first are not edges (every package would be a circle with its parts)."""
    tree = ast.parse(file.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for stmt in node.body for n in ast.walk(stmt)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m in known}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), and modules importing themselves."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on.discard(group[-1])
            if len(group) > 1 or v in graph[v]:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    known = modules()
    graph = {name: imported(file, known) - {name} for name, file in known.items()}
    assert "memkit.models.memory_lm" in graph["memkit.models"]  # the graph sees imports
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.slow  # ~30 s: each of the ~50 modules imported afresh
def test_every_module_imports_first():
    """In one interpreter, for each module: every memkit module unloaded, then that one imported first."""
    names = sorted(modules())
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'memkit' or m.startswith('memkit.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('ok', len(" + repr(names) + "))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"ok {len(names)}"
