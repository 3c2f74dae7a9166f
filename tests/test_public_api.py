"""The public API is what genguard/__init__.py lists, sorted, and nothing private leaks."""

from __future__ import annotations

import ast
import doctest
import functools
import importlib
import itertools
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import genguard


def test_all_is_sorted_and_matches_the_namespace() -> None:
    # Sorted as ruff's RUF022 sorts: CONSTANTS, then Classes, then functions.
    def order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)

    assert list(genguard.__all__) == sorted(genguard.__all__, key=order)
    public = {n for n in dir(genguard) if n[:1] not in "_@"}
    public -= {"annotations", "cli", "sim", "importlib", "Any", "TYPE_CHECKING"}
    public -= {m.name for m in pkgutil.iter_modules(genguard.__path__)}
    assert public <= set(genguard.__all__) | {"__version__"}
    for name in genguard.__all__:
        assert hasattr(genguard, name), name


def test_docstring_examples_run() -> None:
    failures = 0
    # Every module, the ones inside core/, client/, sim/ and cli/ included.
    for info in pkgutil.walk_packages(genguard.__path__, "genguard."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        failures += doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed
    failures += doctest.testmod(genguard).failed
    assert failures == 0


# -- the import graph, read from the source ---------------------------------------------------------------

SRC = Path(genguard.__file__).parent
# What core must never reach, directly or through another genguard module: it is the sans-I/O failure model.
IO_MODULES = frozenset({"httpx", "httpcore", "h11", "socket", "ssl", "select", "selectors", "sqlite3",
                        "aiohttp", "asyncio", "anyio", "trio", "aiofiles", "requests", "urllib3",
                        "urllib.request", "http.client", "starlette", "uvicorn", "websockets"})  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.Module, name: str, is_package: bool) -> Iterator[tuple[str, tuple[str, ...], int]]:
    """``(module, names, line)`` for every import in the module, function-local ones included (``names`` of a
    ``from module import names``, else empty); the body of an ``if TYPE_CHECKING:`` never runs, so it is left
    out (its ``else`` is not)."""
    package = name if is_package else name.rpartition(".")[0]

    def visit(node: ast.AST) -> Iterator[tuple[str, tuple[str, ...], int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from visit(ast.Module(body=[other], type_ignores=[]))
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, (), child.lineno
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    stem = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*stem, *([child.module] if child.module else [])])
                yield base, tuple(alias.name for alias in child.names), child.lineno
            yield from visit(child)

    yield from visit(tree)


def _runs(target: str, names: tuple[str, ...], importer: str, modules: set[str]) -> Iterator[str]:
    """The genguard modules an import runs: the module (the deepest that exists) and the packages above it,
    except those the importer is inside (they are already running), and each name that is a module of its own."""
    while target not in modules:
        target = target.rpartition(".")[0]
    parts = target.split(".")
    for depth in range(1, len(parts) + 1):
        above = ".".join(parts[:depth])
        if not importer.startswith(above + "."):
            yield above
    for alias in names:
        if f"{target}.{alias}" in modules:
            yield f"{target}.{alias}"


@functools.cache
def _import_graph() -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """genguard's modules: for each, the genguard modules and the outside modules it imports (with a line)."""
    paths = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}
    modules = set(paths)
    inside: dict[str, dict[str, int]] = {}
    outside: dict[str, dict[str, int]] = {}
    for name, path in paths.items():
        inside[name], outside[name] = {}, {}
        tree = ast.parse(path.read_text(), str(path))
        for target, names, line in _imported(tree, name, path.name == "__init__.py"):
            if target.split(".")[0] != "genguard":
                outside[name].setdefault(target, line)
                continue
            for module in _runs(target, names, name, modules):
                if module != name:
                    inside[name].setdefault(module, line)
    return inside, outside


def _cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for target in sorted(graph.get(name, {})):
            found = walk(target, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for name in sorted(graph):
        found = walk(name, [])
        if found:
            return found
    return None


def _reach(graph: dict[str, dict[str, int]], start: str) -> dict[str, list[str]]:
    """Every module ``start`` reaches, with the import path that gets there."""
    paths = {start: [start]}
    todo = [start]
    while todo:
        name = todo.pop()
        for target in sorted(graph[name]):
            if target not in paths:
                paths[target] = [*paths[name], target]
                todo.append(target)
    return paths


def _layer(name: str) -> str:
    return name.split(".")[1] if name.count(".") else ""


def _show(path: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(path)]
    return " -> ".join([*steps, path[-1]])


def test_the_cycle_finder_names_the_circle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": 1}, "b": {}}) is None
    assert _show(["a", "b", "c", "a"], graph) == "a (line 1) -> b (line 2) -> c (line 3) -> a"


def test_imports_inside_functions_count_and_type_checking_ones_do_not() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import keys\n"
        "if TYPE_CHECKING:\n"
        "    from .clients import Client\n"
        "else:\n"
        "    from .retry import RetryPolicy\n"
        "def f():\n"
        "    from ..core.outcome import Outcome\n"
        "    import httpx\n"
    )
    found = {
        (module, names) for module, names, _ in _imported(ast.parse(source), "genguard.client.mod", False)
    }
    assert found >= {("genguard.client", ("keys",)), ("genguard.client.retry", ("RetryPolicy",)),
                     ("genguard.core.outcome", ("Outcome",)), ("httpx", ())}  # fmt: skip
    assert ("genguard.client.clients", ("Client",)) not in found
    modules = {
        "genguard",
        "genguard.client",
        "genguard.client.keys",
        "genguard.core",
        "genguard.core.outcome",
    }
    # The importer's own packages are already running; another package's __init__ runs first.
    assert list(_runs("genguard.client", ("keys",), "genguard.client.mod", modules)) == [
        "genguard.client.keys"
    ]
    assert list(_runs("genguard.core.outcome", ("Outcome",), "genguard.client.mod", modules)) == [
        "genguard.core",
        "genguard.core.outcome",
    ]


def test_the_import_graph_is_read_whole() -> None:
    inside, outside = _import_graph()
    assert "genguard.core.classify" in _reach(inside, "genguard.client.clients")
    assert all(not name.startswith("genguard") for deps in outside.values() for name in deps)
    assert "httpx" in outside["genguard.client.clients"]


def test_genguard_imports_in_no_circle() -> None:
    """No circle among genguard's modules, counting imports inside functions (they hide a circle, they do
    not remove it); only ``if TYPE_CHECKING:`` imports, which never run, are left out."""
    inside, _ = _import_graph()
    cycle = _cycle(inside)
    assert cycle is None, "import circle: " + _show(cycle, inside)


def test_core_reaches_no_io_and_no_upper_layer() -> None:
    """core is the sans-I/O failure model: no module of it reaches, directly or through other genguard
    modules, an I/O library or anything in client, sim or cli."""
    inside, outside = _import_graph()
    problems = []
    for name in sorted(n for n in inside if _layer(n) == "core"):
        for target, path in sorted(_reach(inside, name).items()):
            if _layer(target) in ("client", "sim", "cli"):
                problems.append(_show(path, inside))
            for lib, line in sorted(outside[target].items()):
                if lib in IO_MODULES or lib.split(".")[0] in IO_MODULES:
                    problems.append(f"{_show(path, inside)} imports {lib} (line {line})")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("layer", "above"),
    [("core", ("client", "sim", "cli")), ("client", ("sim", "cli")), ("sim", ("client", "cli"))],
)
def test_imports_run_one_way(layer: str, above: tuple[str, ...]) -> None:
    """cli -> client -> core, and sim -> core: a layer reaches nothing above or beside it, even through others."""
    inside, _ = _import_graph()
    problems = [
        _show(path, inside)
        for name in sorted(n for n in inside if _layer(n) == layer)
        for target, path in sorted(_reach(inside, name).items())
        if _layer(target) in above
    ]
    assert not problems, "\n".join(problems)


def test_import_is_light() -> None:
    """`import genguard` must not load the HTTP client: commands like explain start fast."""
    import subprocess
    import sys

    code = "import sys, genguard; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
