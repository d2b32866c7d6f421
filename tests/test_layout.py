"""The package's import graph, read from the source with ``ast``: imports point down the layers
and never form a cycle.  This guards the layout described in CONTRIBUTING.md.

Layers, top to bottom (a module may import its own layer or any layer below it):

    4  rnnkit.cli                      the ``rnnkit`` command: parsing, dispatch, messages
    3  rnnkit.tasks                    one package per task + the kind registry
       rnnkit.serve                    the HTTP server around a task's service
    2  rnnkit.train, rnnkit.text, rnnkit.inspect, rnnkit.decode, rnnkit.metrics,
       rnnkit.interop, rnnkit.distributed   task-agnostic machinery
    1  rnnkit.nn                       the NumPy engine: cells, layers, losses, modules
    0  rnnkit, rnnkit.errors, rnnkit.checks

``rnnkit.inspect`` sits beside ``rnnkit.train`` (the trainer's ``--inspect-every`` uses its
gate and spectrum monitors); what it needs from a task comes from ``rnnkit.tasks.load_model``,
called by the command line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rnnkit"
LAYERS = {
    "rnnkit.cli": 4,
    "rnnkit.tasks": 3, "rnnkit.serve": 3, "rnnkit.deploy": 3,
    "rnnkit.train": 2, "rnnkit.text": 2, "rnnkit.inspect": 2, "rnnkit.decode": 2,
    "rnnkit.metrics": 2, "rnnkit.interop": 2, "rnnkit.distributed": 2,
    "rnnkit.nn": 1,
    "rnnkit": 0, "rnnkit.errors": 0, "rnnkit.checks": 0,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return LAYERS[best]


def imports(module: str) -> set[str]:
    """The rnnkit modules ``module`` imports, anywhere in its body (lazy imports included)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:  # ``from pkg import submodule`` imports the submodule
                sub = f"{target}.{a.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m in MODULES}


GRAPH = {m: imports(m) - {m} for m in MODULES}


def test_every_module_is_in_a_layer():
    assert set(MODULES) >= set(LAYERS)  # no stale layer names
    for m in MODULES:
        layer(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    up = sorted(t for t in GRAPH[module] if layer(t) > layer(module))
    assert not up, f"{module} (layer {layer(module)}) imports upward: {up}"


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m, path):
        state[m] = 1
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                cycles.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_command_line_code_stays_in_the_command_layer():
    """argparse and option definitions live in rnnkit.cli, in each task's ``*cli`` modules and
    in rnnkit.train.options (the training options every training command shares)."""
    for m, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        in_cli = (m.startswith("rnnkit.cli") or m.rsplit(".", 1)[-1].endswith("cli")
                  or m == "rnnkit.train.options")
        if not in_cli:
            assert "import argparse" not in text, f"{m} imports argparse"
            assert "add_argument(" not in text, f"{m} defines command-line options"


def test_import_rnnkit_needs_numpy_only():
    code = ("import sys, rnnkit, rnnkit.nn, rnnkit.nn.recurrent, rnnkit.tasks; "
            "print(sorted(m for m in ('matplotlib', 'torch', 'tqdm', 'numba', 'argparse') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
