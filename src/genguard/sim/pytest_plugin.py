"""pytest fixtures giving a test a running simulator (installed as the ``genguard`` pytest plugin).

``genguard_sim`` is one simulator for the whole session; ``genguard_sim_reset`` is the same simulator, reset
before each test, with any ``configure()`` change undone after it::

    def test_my_app_retries(genguard_sim_reset):
        sim = genguard_sim_reset
        sim.configure(scenario="server_error:2")
        answer = my_app.ask(base_url=sim.base_url)
        assert sim.stats()["verdict"]["ok"]

pytest loads this module in every run of every project where genguard is installed: it imports nothing
heavy until a test asks for a fixture, and its fixture names carry the ``genguard_`` prefix so they never
shadow a project's own (a project that wants a short name defines it in its conftest.py)::

    @pytest.fixture
    def sim(genguard_sim_reset):
        return genguard_sim_reset
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._server import Simulator

# Fast defaults so suites stay quick: video tasks finish in a fraction of a second, stalls end soon.
FAST_DEFAULTS: dict[str, Any] = {"task_seconds": 0.3, "stall_s": 5.0, "retry_after_s": 0.05}


@pytest.fixture(scope="session")
def genguard_sim() -> Iterator[Simulator]:
    """A simulator running on 127.0.0.1 for the whole test session."""
    from ._server import Simulator

    with Simulator(**FAST_DEFAULTS) as simulator:
        yield simulator


@pytest.fixture
def genguard_sim_reset(genguard_sim: Simulator) -> Iterator[Simulator]:
    """The session simulator, reset before the test; its settings are restored after it."""
    saved = genguard_sim.config
    genguard_sim.reset()
    try:
        yield genguard_sim
    finally:
        genguard_sim.restore(saved)
