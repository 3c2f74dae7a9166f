"""The policy's deadline covers streamed calls too: past it, the call ends as `timeout` with the text so far.

Against a simulator that writes a few tokens a second, a 2 s deadline once let `chat(stream=True)` run 6 s and
`stream()` 3 s, and both ended ok.
"""

from __future__ import annotations

import pytest

from genguard import AsyncClient, Client, RetryPolicy
from genguard.sim import Simulator

MSGS = [{"role": "user", "content": "Tell me a long story about lighthouses and the sea"}]
KEY = "sk-test-deadline-0123456789abcdef"
POLICY = RetryPolicy(deadline=0.6, max_attempts=3, backoff_base=0.01, jitter=0)


@pytest.fixture
def slow(sim: Simulator) -> Simulator:
    sim.configure(tokens_per_s=15)  # a 40-token answer takes ~3 s
    return sim


def _check(o: object) -> None:
    assert o.code == "timeout"  # type: ignore[attr-defined]
    assert o.text  # type: ignore[attr-defined]  # the partial text is kept
    assert "deadline" in (o.message or "")  # type: ignore[attr-defined]


def test_chat_stream_true_stops_at_the_deadline(slow: Simulator) -> None:
    with Client(slow.base_url, api_key=KEY, retry=POLICY) as c:
        o = c.chat(model="m", messages=MSGS, stream=True, max_tokens=40)
    _check(o)
    assert o.attempts == 1  # no retry could fit in what was left


def test_stream_stops_at_the_deadline(slow: Simulator) -> None:
    with (
        Client(slow.base_url, api_key=KEY, retry=POLICY) as c,
        c.stream(model="m", messages=MSGS, max_tokens=40) as s,
    ):
        pieces = list(s)
    _check(s.outcome)
    assert "".join(pieces) == s.outcome.text


@pytest.mark.anyio
async def test_async_streams_stop_at_the_deadline(slow: Simulator) -> None:
    async with AsyncClient(slow.base_url, api_key=KEY, retry=POLICY) as c:
        o = await c.chat(model="m", messages=MSGS, stream=True, max_tokens=40)
        async with c.stream(model="m", messages=MSGS, max_tokens=40) as s:
            pieces = [t async for t in s]
    _check(o)
    _check(s.outcome)
    assert "".join(pieces) == s.outcome.text


def test_a_stream_that_ends_in_time_is_untouched(sim: Simulator) -> None:
    with Client(sim.base_url, api_key=KEY, retry=RetryPolicy(deadline=30)) as c:
        o = c.chat(model="m", messages=MSGS, stream=True)
    assert o.ok
