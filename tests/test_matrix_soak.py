"""A bounded chaos soak: a few hundred calls from several threads and asyncio tasks against a simulator with
random failures, a real request limit (enforced per half second, so it bites within the run) and short
retry-after waits. Every Outcome must be ok or carry a code, and the simulator's verdict on genguard's
client must be clean; the same load through the official openai SDK must be caught retrying an exhausted
quota."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from genguard.client.clients import AsyncClient, Client
from genguard.client.retry import RetryPolicy
from genguard.core.outcome import Outcome
from genguard.core.taxonomy import CODES
from genguard.sim import Simulator

CHAOS = (
    "rate_limited=0.06,server_error=0.05,unavailable=0.03,quota_exceeded=0.03,bad_gateway=0.02,"
    "incomplete_stream=0.04,stream_error=0.03,empty_output=0.02,truncated=0.02,content_filtered=0.02"
)
POLICY = RetryPolicy(max_attempts=4, backoff_base=0.1, backoff_max=0.3, jitter=0.02)
KEYS = ["sk-soak-first-0123456789", "sk-soak-second-012345678"]
_serial = itertools.count()


@pytest.fixture
def chaos_sim() -> Iterator[Simulator]:
    # rpm 6000 over a 0.5 s window: at most 50 requests at once, then 100 a second; the limiter's own
    # 429s carry the exact wait, so a client that honours retry-after loses nothing.
    with Simulator(chaos=CHAOS, seed=11, rpm=6000, rate_window_s=0.5, retry_after_s=0.05) as sim:
        yield sim


def _messages() -> list[dict[str, Any]]:
    # Every call asks something new: the simulator counts the same body as the same request.
    return [{"role": "user", "content": f"Soak question number {next(_serial)}"}]


def _check_outcomes(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        assert o.ok or o.code in CODES, o.summary()
        if not o.ok:
            assert o.kind == CODES[o.code or ""].kind
        assert o.attempts <= POLICY.max_attempts * len(KEYS)
        for key in KEYS:
            assert key not in o.to_json()


def _check_verdict(sim: Simulator, calls: int) -> dict[str, Any]:
    stats = sim.stats()
    verdict = stats["verdict"]
    assert verdict["ok"], verdict["problems"]
    assert verdict["retried_non_retryable"] == 0
    assert verdict["ignored_retry_after"] == 0
    assert not verdict["storm"]
    assert stats["requests"] >= calls
    return stats


def test_threads_of_sync_clients_under_chaos_keep_a_clean_verdict(chaos_sim: Simulator) -> None:
    calls = 240
    with Client(chaos_sim.base_url, api_key=KEYS, retry=POLICY, timeout=5, stall_timeout=2) as client:

        def one(i: int) -> Outcome:
            return client.chat(model="gpt-4o-mini", messages=_messages(), stream=i % 2 == 1)

        with ThreadPoolExecutor(max_workers=6) as pool:
            outcomes = list(pool.map(one, range(calls)))
    _check_outcomes(outcomes)
    stats = _check_verdict(chaos_sim, calls)
    # The soak met every kind of trouble it was meant to: the limiter, chaos, and retries that recovered.
    assert stats["by_status"].get("429", 0) > 0
    assert sum(o.ok for o in outcomes) > calls // 2
    assert any(o.ok and o.attempts > 1 for o in outcomes)
    assert {o.code for o in outcomes if not o.ok} & {"truncated", "content_filtered"}


def test_asyncio_tasks_under_chaos_keep_a_clean_verdict(chaos_sim: Simulator) -> None:
    calls = 200

    async def run() -> list[Outcome]:
        async with AsyncClient(
            chaos_sim.base_url, api_key=KEYS, retry=POLICY, timeout=5, stall_timeout=2
        ) as c:
            limit = asyncio.Semaphore(20)

            async def one(i: int) -> Outcome:
                async with limit:
                    return await c.chat(
                        model="gpt-4o-mini", messages=_messages(), stream=i % 3 == 0, max_tokens=12
                    )

            return await asyncio.gather(*(one(i) for i in range(calls)))

    outcomes = asyncio.run(run())
    _check_outcomes(outcomes)
    _check_verdict(chaos_sim, calls)


def test_the_verdict_catches_the_openai_sdk_retrying_an_exhausted_quota() -> None:
    # Only failures the SDK meets often enough in a short run: it retries 429 insufficient_quota like a
    # rate limit, which can never succeed.
    with (
        Simulator(chaos="quota_exceeded=0.3,rate_limited=0.1", seed=5, retry_after_s=0.05) as sim,
        openai.OpenAI(base_url=sim.base_url, api_key=KEYS[0], max_retries=2, timeout=5) as sdk,
    ):

        def one(_: int) -> str:
            try:
                sdk.chat.completions.create(model="gpt-4o-mini", messages=_messages())  # type: ignore[arg-type]
            except openai.RateLimitError as exc:
                return str(exc.code)
            return "ok"

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, range(16)))
        verdict = sim.stats()["verdict"]
    assert "insufficient_quota" in results or verdict["retried_non_retryable"] > 0
    assert not verdict["ok"]
    assert verdict["retried_non_retryable"] > 0
    assert any("must not be retried" in p for p in verdict["problems"])
    # It does honour the rate limit's retry-after, so that is not what the verdict blames it for.
    assert verdict["ignored_retry_after"] == 0
