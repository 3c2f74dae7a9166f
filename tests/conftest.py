"""Project-wide test helpers: the hypothesis profiles; ``sim``, this suite's short name for the
``genguard_sim_reset`` fixture of genguard's pytest plugin; and ``clocked_sim``, a second session simulator
whose time moves only when a test calls ``fake_clock.advance(seconds)``, for everything that depends on time
(rate buckets, retry-after verdicts, task progress, link expiry) without sleeps or races with the wall clock;
and ``reference``, a module's simulator with no failures that says what each batch line's answer must be.

Hypothesis runs the ``ci`` profile unless ``HYPOTHESIS_PROFILE`` names another: derandomized, no example
database, so every run on every machine tries the same examples and a failure reproduces. Long randomized
exploration is an explicit opt-in: ``HYPOTHESIS_PROFILE=explore python -m pytest``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from _batch_helpers import Reference
    from genguard.sim import Simulator
    from genguard.sim._clock import FakeClock

settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None, database=None)
# Fresh random examples on every run, many more of them (where a test does not fix its own count), and
# failures remembered in .hypothesis/ so the next run tries them first.
settings.register_profile("explore", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")


@pytest.fixture
def sim(genguard_sim_reset: Simulator) -> Simulator:
    return genguard_sim_reset


@pytest.fixture(scope="session")
def _clocked_session() -> Iterator[tuple[Simulator, FakeClock]]:
    from genguard.sim import Simulator
    from genguard.sim._clock import FakeClock
    from genguard.sim.pytest_plugin import FAST_DEFAULTS

    clock = FakeClock()
    with Simulator(clock=clock, **FAST_DEFAULTS) as simulator:
        yield simulator, clock


@pytest.fixture
def fake_clock(_clocked_session: tuple[Simulator, FakeClock]) -> FakeClock:
    """The clock of ``clocked_sim``: time there moves only by ``advance(seconds)``."""
    return _clocked_session[1]


@pytest.fixture
def clocked_sim(_clocked_session: tuple[Simulator, FakeClock]) -> Iterator[Simulator]:
    """A session simulator on ``fake_clock``, reset before the test, its settings restored after it."""
    simulator = _clocked_session[0]
    saved = simulator.config
    simulator.reset()
    try:
        yield simulator
    finally:
        simulator.restore(saved)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def reference() -> Iterator[Reference]:
    """The answers a simulator with the same seed and no failures gives, one request at a time (a module's)."""
    from _batch_helpers import Reference
    from genguard.sim import Simulator

    with Simulator() as ref:
        r = Reference(ref)
        yield r
        r.close()
