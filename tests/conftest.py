"""Project-wide test helpers: ``sim``, this suite's short name for the ``genguard_sim_reset`` fixture of
genguard's pytest plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from genguard.sim import Simulator


@pytest.fixture
def sim(genguard_sim_reset: Simulator) -> Simulator:
    return genguard_sim_reset


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
