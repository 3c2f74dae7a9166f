"""pytest fixtures giving a test a running simulator (installed as the ``genguard`` pytest plugin).

``genguard_sim`` is one simulator for the whole session; ``sim`` is the same simulator, reset before each
test, with any ``configure()`` change undone after it::

    def test_my_app_retries(sim):
        sim.configure(scenario="server_error:2")
        answer = my_app.ask(base_url=sim.base_url)
        assert sim.stats()["verdict"]["ok"]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ._server import Simulator

# Fast defaults so suites stay quick: video tasks finish in a fraction of a second, stalls end soon.
FAST_DEFAULTS: dict[str, Any] = {"task_seconds": 0.3, "stall_s": 5.0, "retry_after_s": 0.05}


@pytest.fixture(scope="session")
def genguard_sim() -> Iterator[Simulator]:
    """A simulator running on 127.0.0.1 for the whole test session."""
    with Simulator(**FAST_DEFAULTS) as simulator:
        yield simulator


@pytest.fixture
def sim(genguard_sim: Simulator) -> Iterator[Simulator]:
    """The session simulator, reset before the test; its settings are restored after it."""
    saved = genguard_sim.config
    genguard_sim.reset()
    try:
        yield genguard_sim
    finally:
        genguard_sim.restore(saved)
