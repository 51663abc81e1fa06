"""Check that nanotf's imports go one way: down the layers of DESIGN.md, with no circle.

Every ``import`` of every module under ``nanotf/`` counts, the ones inside functions too. An
import must go to a lower layer or stay in its own layer, and the imports inside one layer must
not form a circle. Run ``python tools/check_layers.py``; it prints each bad import and exits 1,
or prints ``ok`` and exits 0.

Layers, bottom to top (a module's layer is the first prefix that matches its name)::

    0  nanotf.arrays                       what an array is, which module it lives in
    1  nanotf.special, nanotf.checks,      erf; the shared input checks; the CuPy stand-in;
       nanotf.testing, nanotf.counter_rng  the counter-based random generator
    2  nanotf.backend, nanotf (its         the array layer: backend, RNG, dtypes
       __init__ re-exports the backend)
    3  nanotf.functional, nanotf.gradcheck the ops, and the finite-difference check of ops
    4  nanotf.nn                           Parameter, Module, layers
    5  nanotf.models                       whole models
    6  nanotf.optim                        optimizers and schedules
    7  everything else                     data, text, training, decoding, plots, CLI, course
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    ("nanotf.arrays", 0),
    ("nanotf.special", 1),
    ("nanotf.checks", 1),
    ("nanotf.testing", 1),
    ("nanotf.counter_rng", 1),
    ("nanotf.backend", 2),
    ("nanotf.functional", 3),
    ("nanotf.gradcheck", 3),
    ("nanotf.nn", 4),
    ("nanotf.models", 5),
    ("nanotf.optim", 6),
]


def layer(module: str) -> int:
    if module == "nanotf":
        return 2
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return 7


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted((ROOT / "nanotf").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, module) for each nanotf module that ``name`` imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from pkg import sub`` imports the submodule; ``from pkg import name`` the package
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ``import nanotf.nn.layers`` and the like
                target = target.rpartition(".")[0]
            if target.startswith("nanotf") and target != name:
                out.append((node.lineno, target))
    return sorted(set(out))


def main() -> int:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    bad = []
    for name, edges in graph.items():
        for line, target in edges:
            if layer(target) > layer(name):
                bad.append(f"{known[name].relative_to(ROOT)}:{line}: {name} (layer {layer(name)})"
                           f" imports {target} (layer {layer(target)}), a layer above it")
    # circles: a depth-first search over all edges
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for _, target in graph.get(node, []):
            if state.get(target) == 1:
                circle = stack[stack.index(target):] + [target]
                bad.append("import circle: " + " -> ".join(circle))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    for line in bad:
        print(line)
    if not bad:
        print(f"ok: {len(known)} modules, imports only go down, no circle")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
