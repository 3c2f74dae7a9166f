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
    public = {n for n in dir(genguard) if n[:1] not in "_@"}
    public -= {"annotations", "cli", "sim", "importlib", "Any", "TYPE_CHECKING"}
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


def test_every_private_module_imports_on_its_own() -> None:
    """Each module must import first, in a fresh interpreter, whatever imports it (no import cycles)."""
    import subprocess
    import sys

    names = [
        i.name for i in pkgutil.walk_packages(genguard.__path__, "genguard.") if "__main__" not in i.name
    ]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    for name in names:
        result = subprocess.run(
            [sys.executable, "-c", code, name], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{name}: {result.stderr[-500:]}"


def test_import_is_light() -> None:
    """`import genguard` must not load the HTTP client: commands like explain start fast."""
    import subprocess
    import sys

    code = "import sys, genguard; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
