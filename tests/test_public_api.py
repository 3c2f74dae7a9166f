"""The public API is what genguard/__init__.py lists, sorted, and nothing private leaks."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import genguard


def test_all_is_sorted_and_matches_the_namespace() -> None:
    # Sorted as ruff's RUF022 sorts: CONSTANTS, then Classes, then functions.
    def order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)

    assert list(genguard.__all__) == sorted(genguard.__all__, key=order)
    public = {n for n in dir(genguard) if n[:1] not in "_@"} - {"annotations", "cli", "sim"}
    public -= {m.name for m in pkgutil.iter_modules(genguard.__path__)}
    assert public <= set(genguard.__all__) | {"__version__"}
    for name in genguard.__all__:
        assert hasattr(genguard, name), name


def test_docstring_examples_run() -> None:
    failures = 0
    for info in pkgutil.iter_modules(genguard.__path__, "genguard."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        failures += doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed
    failures += doctest.testmod(genguard).failed
    assert failures == 0
