"""``set_testing(True, attempts=N)`` caps every policy's attempts at N and never raises them, over real HTTP."""

from __future__ import annotations

import pytest

from genguard.client.clients import Client
from genguard.client.retry import RetryPolicy
from genguard.client.testing import set_testing, testing_attempts
from genguard.sim import Simulator

MSGS = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(("policy_attempts", "cap", "expected"), [(1, 5, 1), (4, 2, 2), (3, None, 3)])
def test_testing_attempts_caps_the_policy(
    sim: Simulator, policy_attempts: int, cap: int | None, expected: int
) -> None:
    sim.configure(scenario="server_error")
    client = Client(sim.base_url, api_key="sk-test", retry=RetryPolicy(max_attempts=policy_attempts))
    with set_testing(True, attempts=cap), client:
        outcome = client.chat(model="m", messages=MSGS)
    assert outcome.code == "server_error"
    assert outcome.attempts == expected
    assert sim.stats()["requests"] == expected


def test_attempts_below_one_is_refused() -> None:
    with set_testing(False):  # puts the setting back even if the refusal fails to happen
        with pytest.raises(ValueError, match="attempts"):
            set_testing(True, attempts=0)
        assert testing_attempts() is None
