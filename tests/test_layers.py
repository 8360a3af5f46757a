"""The package's layers hold: every import of every module, read with ``ast`` (at any level:
``TYPE_CHECKING`` blocks and imports inside functions count), goes down the layers, and no
two modules import each other round a circle.

    core        imports nothing else of the package
    store       core, store's own modules
    braintrust  core, store.base, braintrust's own modules
    delivery    core, store.base, delivery's own modules
    judging     core, store.base, judging's own modules
    web         core, store.base, web's own modules
    plugin, cli, testing, stores, models (the public re-export), the package itself: anything

``errors`` (the exception base) may be imported by any module, and imports nothing.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import pytest_evalrows

PACKAGE = "pytest_evalrows"
ROOT = Path(pytest_evalrows.__file__).parent

LAYERS = ("core", "store", "braintrust", "delivery", "judging", "web", "plugin")
# Above the layers: they put the pieces together, and may import anything.
TOP = ("cli", "cli_judging", "cli_reports", "cli_web", "testing", "stores", "models")
ALLOWED = {
    "errors": (),
    "core": ("core",),
    "store": ("core", "store"),
    "braintrust": ("core", "store.base", "braintrust"),
    "delivery": ("core", "store.base", "delivery"),
    "judging": ("core", "store.base", "judging"),
    "web": ("core", "store.base", "web"),
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module of the package it imports
    line: int


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root`` (a package's own name for its __init__)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(module: str, path: Path, modules: dict[str, Path], package: str) -> list[Import]:
    """The package's modules that ``module`` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = []

    def add(target: str, node: ast.stmt) -> None:
        if target == package or target.startswith(package + "."):
            # A name taken from a package, not a module of it: the package's __init__.
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            found.append(Import(module, target, node.lineno))

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                add(submodule if submodule in modules else origin, node)
    return found


def layer_of(module: str, package: str) -> str:
    if module == package:
        return "top"
    first = module.split(".")[1]
    if first == "errors" or first in LAYERS:
        return first
    if first in TOP:
        return "top"
    raise AssertionError(f"{module} is in no layer: put it in one, or name it in TOP")


def allowed(target: str, layer: str, package: str) -> bool:
    relative = target.removeprefix(package + ".")
    if relative == "errors":
        return True
    return any(relative == place or relative.startswith(place + ".") for place in ALLOWED[layer])


def breaches(graph: dict[str, list[Import]], package: str) -> list[str]:
    found = []
    for module, edges in graph.items():
        layer = layer_of(module, package)
        if layer not in ALLOWED:
            continue
        for edge in edges:
            if edge.target != module and not allowed(edge.target, layer, package):
                found.append(
                    f"{module} (layer {layer}) imports {edge.target} "
                    f"(layer {layer_of(edge.target, package)}) at line {edge.line}"
                )
    return found


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """One circle per strongly connected group of modules (Tarjan), as a path a -> ... -> a."""
    targets = {module: sorted({e.target for e in edges}) for module, edges in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in targets.get(module, []):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 or module in targets.get(module, []):
                groups.append(sorted(group))

    for module in sorted(targets):
        if module not in index:
            visit(module)
    return [circle(group, targets) for group in groups]


def circle(group: list[str], targets: dict[str, list[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = group[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        module = queue.pop(0)
        for target in targets[module]:
            if target == start:
                return [*paths[module], start]
            if target in group and target not in paths:
                paths[target] = [*paths[module], target]
                queue.append(target)
    raise AssertionError(f"no circle in {group}")


def import_graph(root: Path, package: str) -> dict[str, list[Import]]:
    modules = module_names(root, package)
    return {name: imports_of(name, path, modules, package) for name, path in modules.items()}


def check(root: Path, package: str) -> list[str]:
    graph = import_graph(root, package)
    problems = breaches(graph, package)
    problems += ["import cycle: " + " -> ".join(c) for c in cycles(graph)]
    return problems


def test_the_package_keeps_its_layers_and_has_no_import_cycle() -> None:
    problems = check(ROOT, PACKAGE)
    assert not problems, "\n".join(problems)


def test_every_module_is_in_a_layer_and_every_layer_has_modules() -> None:
    graph = import_graph(ROOT, PACKAGE)
    layers = {layer_of(module, PACKAGE) for module in graph}
    assert layers == {*LAYERS, "errors", "top"}
    # The graph is read, not empty: the plugin reaches the recorder and the core.
    targets = {e.target for e in graph[f"{PACKAGE}.plugin"]}
    assert f"{PACKAGE}.core.row" in targets


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_names_a_breach_and_a_cycle(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    write(
        root,
        {
            "__init__.py": "from .core.a import A\n",
            "errors.py": "",
            "core/__init__.py": "",
            # A breach hidden in a function, one under TYPE_CHECKING, and a cycle in core.
            "core/a.py": (
                "from typing import TYPE_CHECKING\n"
                "from . import b\n"
                "from ..errors import E\n"
                "if TYPE_CHECKING:\n"
                "    from ..delivery.d import D\n"
                "def f():\n"
                "    from ..plugin import hooks\n"
            ),
            "core/b.py": "import pkg.core.a\n",
            "store/__init__.py": "",
            "store/base.py": "from ..core.a import A\n",
            "store/sqlite.py": "from .base import S\n",
            "braintrust/__init__.py": "",
            "braintrust/client.py": "from ..store.base import S\nfrom ..store import sqlite\n",
            "delivery/__init__.py": "",
            "delivery/d.py": "from ..store.base import S\n",
            "plugin/__init__.py": "from . import hooks\n",
            "plugin/hooks.py": "from .. import cli\n",
            "cli.py": "from .plugin import hooks\n",
        },
    )
    problems = check(root, "pkg")
    assert sorted(problems) == sorted(
        [
            "pkg.core.a (layer core) imports pkg.delivery.d (layer delivery) at line 5",
            "pkg.core.a (layer core) imports pkg.plugin.hooks (layer plugin) at line 7",
            "pkg.braintrust.client (layer braintrust) imports pkg.store.sqlite (layer store) "
            "at line 2",
            "import cycle: pkg.cli -> pkg.plugin.hooks -> pkg.cli",
            "import cycle: pkg.core.a -> pkg.core.b -> pkg.core.a",
        ]
    )


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("pytest_evalrows.core.row", "core"),
        ("pytest_evalrows.store.base", "store"),
        ("pytest_evalrows.braintrust.client", "braintrust"),
        ("pytest_evalrows.plugin", "plugin"),
        ("pytest_evalrows.cli", "top"),
        ("pytest_evalrows", "top"),
    ],
)
def test_modules_map_to_their_layer(module: str, layer: str) -> None:
    assert layer_of(module, PACKAGE) == layer


def test_the_core_imports_no_pytest() -> None:
    found = []
    for module, path in module_names(ROOT, PACKAGE).items():
        if layer_of(module, PACKAGE) != "core":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("pytest", "_pytest", "pluggy"):
                    found.append(f"{module} imports {name} at line {node.lineno}")
    assert not found, "\n".join(found)


def test_the_test_helpers_import_no_test_module() -> None:
    """``tests/support`` is imported by the tests, never the other way round: a helper that
    imported a test module would run that module's collection-time code wherever it is used."""
    support = Path(__file__).parent / "support"
    tests = {path.stem for path in Path(__file__).parent.glob("test_*.py")} | {"conftest"}
    found = []
    for path in sorted(support.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if not node.level else []
            else:
                continue
            found += [
                f"{path.name}:{node.lineno} imports {name}"
                for name in names
                if name.split(".")[0] in tests or name.startswith("tests")
            ]
    assert support.is_dir() and found == []


# A class past this many lines mixes responsibilities that want classes of their own.
MAX_CLASS_LINES = 250


def long_classes(root: Path) -> list[str]:
    """``path:Class (N lines)`` of every class under ``root`` longer than MAX_CLASS_LINES."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    found.append(f"{path.relative_to(root)}:{node.name} ({lines} lines)")
    return found


def test_no_class_of_the_package_is_over_250_lines() -> None:
    assert long_classes(ROOT) == []


def test_the_class_length_check_names_a_long_class(tmp_path: Path) -> None:
    body = "\n".join(f"    a{number} = {number}" for number in range(MAX_CLASS_LINES))
    (tmp_path / "big.py").write_text(f"class Big:\n{body}\n\n\nclass Small:\n    pass\n")
    assert long_classes(tmp_path) == [f"big.py:Big ({MAX_CLASS_LINES + 1} lines)"]
