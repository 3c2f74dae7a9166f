"""The simulator: an OpenAI-compatible server that plays every failure, on demand or at random.

>>> from genguard.sim import Simulator
>>> with Simulator(scenario="rate_limited") as sim:  # doctest: +SKIP
...     print(sim.base_url)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app
    from ._config import SCENARIOS, SimConfig
    from ._server import Simulator

__all__ = ["SCENARIOS", "SimConfig", "Simulator", "create_app"]

# Loaded on first use: the pytest plugin imports this package in every pytest run of every project that has
# genguard installed, and must not pull in starlette and uvicorn there.
_LAZY: dict[str, str] = {
    "SCENARIOS": "._config",
    "SimConfig": "._config",
    "Simulator": "._server",
    "create_app": "._app",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'genguard.sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
