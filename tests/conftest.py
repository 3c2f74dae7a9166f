"""Project-wide test helpers; the ``sim`` and ``genguard_sim`` fixtures come from genguard's pytest plugin."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
