"""The suite gives the same result on every run and every machine (hypothesis included)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.skipif(
    os.environ.get("HYPOTHESIS_PROFILE", "ci") not in ("", "ci"), reason="another profile was asked for"
)
def test_hypothesis_is_derandomized_without_a_database_by_default() -> None:
    assert settings.default.derandomize is True
    assert settings.default.database is None
    assert settings.default.deadline is None


_SEEN: list[list[int]] = []


@given(st.lists(st.integers(), max_size=5))
@settings(max_examples=20)
def _draws(xs: list[int]) -> None:
    _SEEN[-1].append(len(xs) * 1000 + sum(xs) % 1000)


@pytest.mark.skipif(
    os.environ.get("HYPOTHESIS_PROFILE", "ci") not in ("", "ci"), reason="another profile was asked for"
)
def test_the_same_examples_on_every_run() -> None:
    for _ in range(2):
        _SEEN.append([])
        _draws()
    assert _SEEN[0] == _SEEN[1]
