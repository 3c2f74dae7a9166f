"""Project-wide test helpers: the hypothesis profiles, and ``sim``, this suite's short name for the
``genguard_sim_reset`` fixture of genguard's pytest plugin.

Hypothesis runs the ``ci`` profile unless ``HYPOTHESIS_PROFILE`` names another: derandomized, no example
database, so every run on every machine tries the same examples and a failure reproduces. Long randomized
exploration is an explicit opt-in: ``HYPOTHESIS_PROFILE=explore python -m pytest``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from genguard.sim import Simulator

settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None, database=None)
# Fresh random examples on every run, many more of them (where a test does not fix its own count), and
# failures remembered in .hypothesis/ so the next run tries them first.
settings.register_profile("explore", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")


@pytest.fixture
def sim(genguard_sim_reset: Simulator) -> Simulator:
    return genguard_sim_reset


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
