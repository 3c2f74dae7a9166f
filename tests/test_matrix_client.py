"""The client against the simulator, as a matrix: every dialect x every hard and soft chat scenario x plain
and streaming x sync and async, over real HTTP.

Each cell checks what TAXONOMY.md promises: the code and its kind, the retry verdict, the server's wait, that
what may succeed is retried up to the policy and what cannot is sent once (the simulator's own count of
requests must agree with the Outcome's ``attempts``), and that partial text is kept. Waits are switched off
with ``set_testing`` so the retries cost no sleep; the scenarios whose answer does not depend on the dialect
(HTML pages from proxies, stalls, cut connections) run in one dialect only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from genguard.client.clients import AsyncClient, Client
from genguard.client.retry import RetryPolicy
from genguard.client.testing import set_testing
from genguard.core.outcome import Outcome
from genguard.core.taxonomy import CODES
from genguard.sim import Simulator
from genguard.sim._config import CHAT_SOFT_SCENARIOS, DIALECTS, HARD_SCENARIOS

MSGS = [{"role": "user", "content": "Write two sentences about lighthouses"}]
KEY = "sk-matrix-0123456789abcdef"
ATTEMPTS = 2
WAIT = 0.05  # the simulator's advertised wait (the plugin's fast default)
POLICY = RetryPolicy(max_attempts=ATTEMPTS, backoff_base=0.0, jitter=0.0)
# Proxies' HTML pages, stalls and cut connections look the same whatever the provider behind them.
DIALECT_FREE = frozenset(
    {"bad_gateway", "gateway_timeout", "invalid_response", "timeout", "connection_error"}
)
# The simulator advertises a wait on these (retry-after, retry-after-ms); on no other code.
WAITED = frozenset({"rate_limited", "unavailable"})
# Output the generation produced before it went wrong, which the Outcome must keep.
PARTIAL = frozenset({"truncated", "content_filtered", "incomplete_stream", "stream_error"})


def _cells() -> Iterator[Any]:
    for scenario in (*HARD_SCENARIOS, *CHAT_SOFT_SCENARIOS):
        for dialect in ("openai",) if scenario in DIALECT_FREE else DIALECTS:
            for stream in (False, True):
                # incomplete_stream is a stream's failure; a plain answer with finish_reason null is
                # classified elsewhere (see test_plain_answer_without_finish_reason below).
                if scenario == "incomplete_stream" and not stream:
                    continue
                yield pytest.param(
                    dialect, scenario, stream, id=f"{dialect}-{scenario}-{'stream' if stream else 'plain'}"
                )


def _expected_code(scenario: str, stream: bool) -> str:
    # A connection dropped after some chunks ends the stream early: the partial text is kept, and the
    # message names the transport failure.
    if scenario == "connection_error" and stream:
        return "incomplete_stream"
    return scenario


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with set_testing(True):
        yield


def _client_kw(sim: Simulator, dialect: str, scenario: str) -> dict[str, Any]:
    return {
        "base_url": sim.base_url,
        "api_key": KEY,
        "retry": POLICY,
        # Short only where the scenario stalls: on a loaded 2-core machine even a loopback connect can take
        # longer than 0.1 s, which turned other cells into a retried timeout.
        "timeout": 0.1 if scenario == "timeout" else 10.0,
        "stall_timeout": 0.1 if scenario == "timeout" else 10.0,
        "headers": {"x-genguard-scenario": scenario, "x-genguard-dialect": dialect},
    }


def _sync(kw: dict[str, Any], stream: bool) -> Outcome:
    with Client(**kw) as c:
        return c.chat(model="gpt-4o-mini", messages=MSGS, stream=stream)


def _async(kw: dict[str, Any], stream: bool) -> Outcome:
    async def run() -> Outcome:
        async with AsyncClient(**kw) as c:
            return await c.chat(model="gpt-4o-mini", messages=MSGS, stream=stream)

    return asyncio.run(run())


def _check(o: Outcome, sim: Simulator, scenario: str, stream: bool) -> None:
    code = _expected_code(scenario, stream)
    info = CODES[code]
    assert (o.ok, o.code, o.kind) == (False, code, info.kind), o.summary()
    # stream_error is retryable "as the embedded error says": every dialect's in-stream error is a server one.
    assert o.retryable is info.retryable
    if scenario in WAITED:
        assert o.retry_after_s == pytest.approx(WAIT, abs=0.002)
    else:
        assert o.retry_after_s is None
    expected_attempts = ATTEMPTS if info.retryable else 1
    assert o.attempts == expected_attempts
    assert [a.code for a in o.history] == [code] * expected_attempts
    assert sim.stats()["requests"] == expected_attempts
    if info.kind == "soft":
        assert o.status == 200
    elif scenario not in ("timeout", "connection_error"):
        assert o.status is not None
        assert o.status >= 400 or scenario == "invalid_response"
    if scenario in PARTIAL or (stream and scenario in ("timeout", "connection_error")):
        assert o.text, "the partial output must be kept"
    if scenario == "connection_error" and stream:
        assert "connection_error" in (o.message or "")
    assert KEY not in o.to_json()


@pytest.mark.parametrize(("dialect", "scenario", "stream"), list(_cells()))
def test_matrix_sync(sim: Simulator, dialect: str, scenario: str, stream: bool) -> None:
    o = _sync(_client_kw(sim, dialect, scenario), stream)
    _check(o, sim, scenario, stream)


@pytest.mark.parametrize(("dialect", "scenario", "stream"), list(_cells()))
def test_matrix_async(sim: Simulator, dialect: str, scenario: str, stream: bool) -> None:
    o = _async(_client_kw(sim, dialect, scenario), stream)
    _check(o, sim, scenario, stream)


@pytest.mark.parametrize("run", [_sync, _async], ids=["sync", "async"])
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_ok_in_every_dialect(sim: Simulator, run: Any, dialect: str, stream: bool) -> None:
    o = run(_client_kw(sim, dialect, "ok"), stream)
    assert o.ok, o.summary()
    assert (o.code, o.kind, o.retryable, o.finish_reason, o.attempts) == (None, None, False, "stop", 1)
    assert o.text
    assert o.usage is not None
    assert o.usage.total_tokens > 0
    assert sim.stats()["verdict"]["ok"]


@pytest.mark.parametrize("run", [_sync, _async], ids=["sync", "async"])
@pytest.mark.parametrize("scenario", ["server_error", "rate_limited", "unavailable", "empty_output"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_flaky_retryable_recovers_and_the_verdict_is_clean(
    sim: Simulator, run: Any, scenario: str, stream: bool
) -> None:
    with set_testing(False):
        o = run(_client_kw(sim, "openai", f"{scenario}:2") | {"retry": RetryPolicy(
            max_attempts=3, backoff_base=0.01, jitter=0.0)}, stream)  # fmt: skip
    assert o.ok, o.summary()
    assert [a.code for a in o.history] == [scenario, scenario, None]
    verdict = sim.stats()["verdict"]
    assert verdict["ok"], verdict["problems"]
    assert verdict["retries"] == 2


def test_request_too_large_as_openai_429_is_not_retried(sim: Simulator) -> None:
    kw = _client_kw(sim, "openai", "request_too_large")
    kw["headers"]["x-genguard-variant"] = "429"
    o = _sync(kw, False)
    assert (o.status, o.code, o.retryable, o.attempts) == (429, "request_too_large", False, 1)
    assert "Requested 31538" in (o.message or "")
    assert o.provider_code == "rate_limit_exceeded"


def test_a_request_over_the_whole_tpm_budget_is_too_large_not_rate_limited(sim: Simulator) -> None:
    sim.configure(tpm=50)
    long = [{"role": "user", "content": "lighthouse " * 200}]
    with Client(sim.base_url, api_key=KEY, retry=POLICY) as c:
        o = c.chat(model="gpt-4o", messages=long)
        small = c.chat(model="gpt-4o", messages=MSGS)
    assert (o.status, o.code, o.retryable, o.attempts) == (429, "request_too_large", False, 1)
    assert "Limit 50, Requested" in (o.message or "")
    assert small.ok, small.summary()


def test_plain_answer_without_finish_reason_is_delivered_with_its_text(sim: Simulator) -> None:
    # The simulator's incomplete_stream on a plain call is a complete body whose finish_reason is null;
    # genguard treats the text as delivered and reports finish_reason None rather than inventing a failure.
    o = _sync(_client_kw(sim, "openai", "incomplete_stream"), False)
    assert o.text
    assert o.finish_reason is None
