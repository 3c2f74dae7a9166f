"""The verdict on a client's retries under concurrency: each retry is judged against the wait its own request
was given, so many callers sending the same request at once are not taken for one client retrying too soon,
and a client that does retry at once is still caught."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from genguard.client.clients import AsyncClient
from genguard.client.retry import RetryPolicy
from genguard.sim import Simulator
from genguard.sim._clock import FakeClock
from genguard.sim._stats import Stats

SAME = [{"role": "user", "content": "Summarise the quarterly report"}]


def _verdict(sim: Simulator) -> dict[str, Any]:
    verdict: dict[str, Any] = sim.stats()["verdict"]
    return verdict


async def _gather(
    sim: Simulator, prompts: list[list[dict[str, str]]], attempts: int = 5, **headers: str
) -> list[Any]:
    policy = RetryPolicy(max_attempts=attempts, backoff_base=0.2, jitter=0)
    async with AsyncClient(sim.base_url, api_key="sk-test", retry=policy, headers=headers or None) as c:
        return await asyncio.gather(*(c.chat(model="gpt-4o-mini", messages=m) for m in prompts))


# -- genguard's own client, 20 calls at once, each waiting as told: a clean verdict -----------------------
# The client sleeps for real here, and the simulator reads the real clock: a retry is sent only after the
# 429 it answers was received, so it always arrives at least the advertised wait after that 429 arrived.


@pytest.mark.parametrize("same_prompt", [True, False], ids=["one prompt", "twenty prompts"])
def test_twenty_concurrent_genguard_calls_that_waited_get_a_clean_verdict(
    sim: Simulator, same_prompt: bool
) -> None:
    sim.configure(retry_after_s=0.2)
    prompts = [SAME if same_prompt else [{"role": "user", "content": f"Report {i}"}] for i in range(20)]
    outcomes = asyncio.run(_gather(sim, prompts, **{"x-genguard-scenario": "rate_limited:1"}))
    assert all(o.ok for o in outcomes), [o.code for o in outcomes]
    stats = sim.stats()
    assert stats["by_scenario"]["rate_limited"] == {"429": 1 if same_prompt else 20}
    verdict = stats["verdict"]
    assert verdict["ok"], verdict["problems"]
    assert verdict["ignored_retry_after"] == 0
    assert verdict["retries"] == (1 if same_prompt else 20)
    assert verdict["max_attempts"] == 2


def test_twenty_concurrent_calls_through_a_real_rate_limit_get_a_clean_verdict(sim: Simulator) -> None:
    sim.configure(rpm=600, rate_window_s=1.0)  # ten at once, then one every 0.1 s
    outcomes = asyncio.run(_gather(sim, [SAME] * 20, attempts=30))  # the ten refused retry as a herd
    assert all(o.ok for o in outcomes), [o.code for o in outcomes]
    stats = sim.stats()
    assert stats["by_status"]["429"] >= 10
    verdict = stats["verdict"]
    assert verdict["ok"], verdict["problems"]
    assert verdict["retries"] == stats["by_status"]["429"]


# -- a client that does not wait: flagged -----------------------------------------------------------------
# Here nothing needs to sleep: on the simulator's fake clock no time passes between two requests.


@pytest.fixture
def clocked(clocked_sim: Simulator) -> Iterator[Simulator]:
    clocked_sim.configure(retry_after_s=1.0)
    # One connection pool for the raw loops: a client per request would spend its time building TLS contexts.
    with httpx.Client() as http:
        _HTTP[clocked_sim.base_url] = http
        yield clocked_sim
        del _HTTP[clocked_sim.base_url]


_HTTP: dict[str, httpx.Client] = {}


def _post(sim: Simulator, messages: Any = SAME, key: str = "sk-a", **headers: str) -> int:
    r = _HTTP[sim.base_url].post(sim.base_url + "/chat/completions", json={"model": "gpt-4o-mini", "messages": messages},
                   headers={"authorization": f"Bearer {key}", **headers})  # fmt: skip
    return r.status_code


@pytest.mark.parametrize("same_prompt", [True, False], ids=["one prompt", "twenty prompts"])
def test_a_raw_loop_that_retries_at_once_is_flagged(clocked: Simulator, same_prompt: bool) -> None:
    flaky = {"x-genguard-scenario": "rate_limited:1"}
    for i in range(20):
        messages = SAME if same_prompt else [{"role": "user", "content": f"Report {i}"}]
        if _post(clocked, messages, **flaky) == 429:
            assert _post(clocked, messages, **flaky) == 200  # at once, retry-after ignored
    verdict = _verdict(clocked)
    assert verdict["ignored_retry_after"] == (1 if same_prompt else 20)
    assert not verdict["ok"]
    assert "came sooner than retry-after said" in verdict["problems"][0]


def test_a_raw_loop_retrying_at_once_then_in_time_is_still_flagged(
    clocked: Simulator, fake_clock: FakeClock
) -> None:
    scenario = {"x-genguard-scenario": "rate_limited"}
    assert [_post(clocked, **scenario), _post(clocked, **scenario)] == [429, 429]
    fake_clock.advance(1.0)
    assert _post(clocked, **scenario) == 429
    verdict = _verdict(clocked)
    assert (verdict["ignored_retry_after"], verdict["retries"]) == (1, 2)


def test_another_caller_s_request_is_not_a_retry_when_the_failed_one_waits(
    clocked: Simulator, fake_clock: FakeClock
) -> None:
    flaky = {"x-genguard-scenario": "rate_limited:1"}
    assert _post(clocked, **flaky) == 429
    assert _post(clocked, **flaky) == 200  # another caller, the same request, at the same moment
    fake_clock.advance(1.0)
    assert _post(clocked, **flaky) == 200  # the first caller's retry, after the wait
    verdict = _verdict(clocked)
    assert verdict["ok"], verdict["problems"]
    # Without that retry, the early request was the only one to follow the 429: it ignored the wait.
    clocked.reset()
    assert [_post(clocked, **flaky), _post(clocked, **flaky)] == [429, 200]
    assert _verdict(clocked)["ignored_retry_after"] == 1


def test_callers_failing_together_and_backing_off_are_no_storm(
    clocked: Simulator, fake_clock: FakeClock
) -> None:
    failing = {"x-genguard-scenario": "server_error"}
    for _ in range(2):
        assert [_post(clocked, **failing) for _ in range(5)] == [500] * 5  # five callers at once
        fake_clock.advance(0.5)
    verdict = _verdict(clocked)
    assert verdict["ok"], verdict["problems"]
    assert (verdict["retries"], verdict["retries_without_backoff"], verdict["max_attempts"]) == (5, 0, 2)


def test_one_caller_hammering_is_a_storm(clocked: Simulator) -> None:
    assert [_post(clocked, **{"x-genguard-scenario": "server_error"}) for _ in range(5)] == [500] * 5
    verdict = _verdict(clocked)
    assert verdict["storm"] is True
    assert (verdict["retries_without_backoff"], verdict["max_attempts"]) == (4, 5)


def test_another_key_need_not_wait_for_the_first_key_s_limit(clocked: Simulator) -> None:
    flaky = {"x-genguard-scenario": "rate_limited:1"}
    assert _post(clocked, key="sk-a", **flaky) == 429
    assert _post(clocked, key="sk-b", **flaky) == 200  # the limit was sk-a's
    verdict = _verdict(clocked)
    assert verdict["ok"], verdict["problems"]
    assert verdict["retries"] == 1


def test_the_verdict_reads_the_entries_it_is_given() -> None:
    stats = Stats()
    first = stats.start("r", "rate_limited", "chat", now=0.0)
    first.status, first.retry_after_s = 429, 2.0
    second = stats.start("r", "rate_limited", "chat", now=0.1)
    second.status, second.retry_after_s = 429, 2.0
    stats.start("r", "ok", "chat", now=2.0).status = 200
    stats.start("r", "ok", "chat", now=2.1).status = 200
    verdict = stats.snapshot()["verdict"]
    assert (verdict["ok"], verdict["retries"], verdict["max_attempts"]) == (True, 2, 2)
