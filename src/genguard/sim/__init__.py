"""The simulator: an OpenAI-compatible server that plays every failure, on demand or at random.

>>> from genguard.sim import Simulator
>>> with Simulator(scenario="rate_limited") as sim:  # doctest: +SKIP
...     print(sim.base_url)
"""

from ._app import create_app
from ._config import SCENARIOS, SimConfig
from ._server import Simulator

__all__ = ["SCENARIOS", "SimConfig", "Simulator", "create_app"]
