"""mer_lib's imports point one way (issue 14): base -> data -> features -> models -> train -> analysis
-> plots, with the command line, the notebooks' helpers, reports, the protocol and the benchmarks on
top. Every import counts, also one inside a function (a lazy import is still a dependency).

A module may import its own layer or any layer below, never one above, and no two modules or
packages may import each other, directly or round a longer loop. A new module gets a line in
`LAYERS`; the test fails for a module that has none.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mer_lib"

# Bottom to top; a module belongs to the layer of the longest prefix listed.
LAYERS = [
    ("base", ["mer_lib", "mer_lib.errors", "mer_lib.paths", "mer_lib.artifacts", "mer_lib.remote",
              "mer_lib.parallel", "mer_lib.distributed", "mer_lib.media", "mer_lib.weights"]),
    ("data", ["mer_lib.data"]),
    ("features", ["mer_lib.features"]),
    ("models", ["mer_lib.models", "mer_lib.ladder"]),
    ("train", ["mer_lib.config", "mer_lib.checkpoints", "mer_lib.metrics", "mer_lib.train", "mer_lib.run_folder",
               "mer_lib.grids", "mer_lib.dimensional"]),
    ("analysis", ["mer_lib.analysis", "mer_lib.ensemble"]),
    ("plots", ["mer_lib.plots"]),
    ("top", ["mer_lib.cli", "mer_lib.course", "mer_lib.notebooks", "mer_lib.report", "mer_lib.predict",
             "mer_lib.stream", "mer_lib.timeline", "mer_lib.explorer", "mer_lib.protocol", "mer_lib.bench"]),
]


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of mer_lib (a package is its __init__)."""
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.with_suffix("").relative_to(ROOT.parent).parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The mer_lib modules that module `name` imports anywhere in its file (names resolved to modules)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            named = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in named:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
    return targets


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer(name: str) -> int:
    """The index in LAYERS of module `name`: the layer of its longest listed prefix; -1 when unlisted."""
    best, level = "", -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
                best, level = prefix, index
    return level


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan): each is a cycle of imports."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def package(name: str) -> str:
    """mer_lib.data.windows -> mer_lib.data; top-level modules are their own package."""
    return ".".join(name.split(".")[:2])


def test_every_module_has_a_layer():
    unlisted = sorted(name for name in modules() if layer(name) < 0)
    assert not unlisted, f"give these modules a layer in tests/test_layers.py LAYERS: {unlisted}"


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})"
              for a, targets in sorted(graph().items()) for b in sorted(targets) if layer(b) > layer(a)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules_or_packages():
    edges = graph()
    packages = defaultdict(set)
    for a, targets in edges.items():
        packages[package(a)] |= {package(b) for b in targets if package(b) != package(a)}
    found = [" <-> ".join(c) for c in cycles(edges) + cycles(packages)]
    assert not found, "import cycles:\n" + "\n".join(found)


@pytest.mark.parametrize("source, upward", [
    ("from mer_lib import train\n", True),  # data imports train
    ("from mer_lib.errors import MerError\n", False),
    ("def later():\n    from mer_lib.analysis import noise\n", True),  # a lazy import counts too
])
def test_the_check_sees_an_upward_import(tmp_path, source, upward):
    path = tmp_path / "probe.py"
    path.write_text(source)
    targets = imports("mer_lib.data.probe", path, modules())
    assert any(layer(t) > layer("mer_lib.data") for t in targets) == upward


def test_the_check_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
