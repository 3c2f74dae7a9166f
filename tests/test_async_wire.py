"""The async path under load, over real HTTP: back-pressure is local, never a failure; the caller's own
session still works; one client survives several event loops."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx
import pytest

from genguard import AsyncClient, RetryPolicy
from genguard.sim import Simulator

pytestmark = pytest.mark.anyio

MSGS = [{"role": "user", "content": "Say something short"}]
KEY = "sk-test-wire-0123456789abcdef"


def _peak_tracer() -> tuple[aiohttp.TraceConfig, dict[str, int]]:
    counts = {"now": 0, "peak": 0, "sent": 0}
    trace = aiohttp.TraceConfig()

    async def start(session: Any, ctx: Any, params: Any) -> None:
        counts["now"] += 1
        counts["sent"] += 1
        counts["peak"] = max(counts["peak"], counts["now"])

    async def end(session: Any, ctx: Any, params: Any) -> None:
        counts["now"] -= 1

    trace.on_request_start.append(start)
    trace.on_request_end.append(end)
    trace.on_request_exception.append(end)
    return trace, counts


async def test_a_thousand_gathered_calls_all_end_ok(sim: Simulator) -> None:
    # httpx's default pool (100 connections) counted the wait for a connection against timeout=10: every
    # call failed as 'timeout' after 4 attempts. Waiting for a slot is local and never a failure: here the
    # queue lasts several answer times, longer than the 1 s timeout each call has.
    sim.configure(ttft_ms=150)
    async with AsyncClient(sim.base_url, api_key=KEY, timeout=1) as client:
        outcomes = await asyncio.gather(
            *(client.chat(model="gpt-4o-mini", messages=MSGS) for _ in range(1000))
        )
    assert sum(o.ok for o in outcomes) == 1000
    assert all(o.attempts == 1 for o in outcomes)
    assert sim.stats()["requests"] == 1000


async def test_max_concurrency_bounds_calls_in_flight_and_the_wait_is_not_a_timeout(sim: Simulator) -> None:
    sim.configure(ttft_ms=60)
    trace, counts = _peak_tracer()
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        # 12 calls through 2 slots take ~6 answer times, far past the 0.2 s read timeout of each call: the
        # queue is not the provider's slowness, so none of them may fail or be retried.
        client = AsyncClient(
            sim.base_url, api_key=KEY, timeout=0.2, http_client=session, max_concurrency=2,
            retry=RetryPolicy(max_attempts=1),
        )  # fmt: skip
        outcomes = await asyncio.gather(*(client.chat(model="m", messages=MSGS) for _ in range(12)))
        await client.aclose()
        assert not session.closed  # the caller's session stays the caller's
    assert [o.code for o in outcomes] == [None] * 12
    assert counts["sent"] == 12
    assert counts["peak"] == 2


async def test_streams_hold_a_slot_and_release_it(sim: Simulator) -> None:
    trace, counts = _peak_tracer()
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = AsyncClient(sim.base_url, api_key=KEY, http_client=session, max_concurrency=3)

        async def one() -> str:
            async with client.stream(model="m", messages=MSGS) as s:
                return "".join([t async for t in s])

        texts = await asyncio.gather(*(one() for _ in range(10)))
        await client.aclose()
    assert all(texts)
    assert counts["peak"] <= 3
    assert counts["now"] == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, "8", True])
def test_max_concurrency_must_be_a_positive_whole_number(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        AsyncClient("http://127.0.0.1:9/v1", api_key=KEY, max_concurrency=bad)


def test_one_client_serves_several_event_loops(genguard_sim: Simulator) -> None:
    client = AsyncClient(genguard_sim.base_url, api_key=KEY)

    async def call() -> bool:
        return (await client.chat(model="m", messages=MSGS)).ok

    assert asyncio.run(call())
    assert asyncio.run(call())  # a session bound to the first, closed loop would fail here
    asyncio.run(client.aclose())


async def test_a_caller_httpx_client_still_carries_the_calls(sim: Simulator) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [hook]}) as http:
        async with AsyncClient(sim.base_url, api_key=KEY, http_client=http) as client:
            plain = await client.chat(model="m", messages=MSGS)
            streamed = await client.chat(model="m", messages=MSGS, stream=True)
        assert not http.is_closed
    assert plain.ok
    assert streamed.ok
    assert seen == ["/v1/chat/completions", "/v1/chat/completions"]


async def test_refused_connection_names_the_url_on_the_aiohttp_path() -> None:
    async with AsyncClient("http://127.0.0.1:9/v1", api_key=KEY, retry=RetryPolicy(max_attempts=1)) as c:
        plain = await c.chat(model="m", messages=MSGS)
        streamed = await c.chat(model="m", messages=MSGS, stream=True)
    for o in (plain, streamed):
        assert o.code == "connection_error"
        assert "http://127.0.0.1:9/v1/chat/completions" in (o.message or "")
        assert KEY not in (o.message or "")


async def test_a_stall_is_a_timeout_with_the_partial_text(sim: Simulator) -> None:
    async with AsyncClient(
        sim.base_url, api_key=KEY, stall_timeout=0.3, retry=RetryPolicy(max_attempts=1),
        headers={"x-genguard-scenario": "timeout"},
    ) as c:  # fmt: skip
        o = await c.chat(model="m", messages=MSGS, stream=True)
    assert o.code == "timeout"


class RecordingGate:
    def __init__(self) -> None:
        self.acquired: list[int] = []
        self.observed: list[tuple[int, str | None, int | None]] = []
        self.flags: list[dict[str, Any]] = []

    async def acquire(self, tokens: int) -> None:
        self.acquired.append(tokens)

    def observe(self, status: int, headers: Any, *, tokens_used: int | None = None, **kw: Any) -> None:
        self.observed.append((status, headers.get("x-ratelimit-limit-requests"), tokens_used))
        self.flags.append(kw)


async def test_the_gate_is_asked_before_every_attempt_and_told_every_answer(sim: Simulator) -> None:
    gate = RecordingGate()
    async with AsyncClient(
        sim.base_url, api_key=KEY, gate=gate, headers={"x-genguard-scenario": "rate_limited:1"},
        retry=RetryPolicy(max_attempts=3, backoff_base=0.01, jitter=0),
    ) as c:  # fmt: skip
        o = await c.chat(model="m", messages=MSGS, max_tokens=100)
    assert o.ok
    assert o.attempts == 2
    assert len(gate.acquired) == 2
    assert gate.acquired[0] == gate.acquired[1] >= 100  # the prompt's estimate plus max_tokens
    assert [status for status, _, _ in gate.observed] == [429, 200]
    assert all(limit is not None for _, limit, _ in gate.observed)  # the rate-limit headers reach the gate
    assert gate.observed[1][2] == o.usage.total_tokens  # type: ignore[union-attr]
    assert [f["rate_limited"] for f in gate.flags] == [True, False]
    assert gate.flags[0]["tokens_reserved"] == gate.acquired[0]


async def test_a_quota_429_does_not_slow_the_gate_and_a_dropped_answer_frees_its_slot(sim: Simulator) -> None:
    gate = RecordingGate()
    async with AsyncClient(
        sim.base_url, api_key=KEY, gate=gate, headers={"x-genguard-scenario": "quota_exceeded"},
        retry=RetryPolicy(max_attempts=1),
    ) as c:  # fmt: skip
        quota = await c.chat(model="m", messages=MSGS)
    async with AsyncClient(
        "http://127.0.0.1:9/v1", api_key=KEY, gate=gate, retry=RetryPolicy(max_attempts=1)
    ) as c:
        refused = await c.chat(model="m", messages=MSGS)
    assert quota.code == "quota_exceeded"
    assert refused.code == "connection_error"
    assert gate.observed[0][0] == 429
    assert gate.flags[0]["rate_limited"] is False  # waiting cannot help an exhausted quota
    assert gate.observed[1][0] == 0  # no answer came


async def test_send_json_returns_the_providers_own_body(sim: Simulator) -> None:
    import orjson

    async with AsyncClient(sim.base_url, api_key=KEY) as c:
        o, raw = await c.send_json("/chat/completions", {"model": "m", "messages": MSGS})
        bad, bad_raw = await c.send_json(
            "chat/completions", {"model": "m", "messages": "not a list"}, retry=RetryPolicy(max_attempts=1)
        )
    assert o.ok
    assert raw is not None
    body = orjson.loads(raw)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == o.text
    assert not bad.ok
    assert bad_raw is not None  # the error body is kept too


def test_send_json_needs_a_model() -> None:
    c = AsyncClient("http://127.0.0.1:9/v1", api_key=KEY)
    with pytest.raises(ValueError, match="model"):
        asyncio.run(c.send_json("/chat/completions", {"messages": MSGS}))


async def test_keep_raw_keeps_the_response_on_every_path(sim: Simulator) -> None:
    from genguard import Client

    async with AsyncClient(sim.base_url, api_key=KEY, keep_raw=True) as c:
        plain = await c.chat(model="m", messages=MSGS)
        streamed = await c.chat(model="m", messages=MSGS, stream=True)
    with Client(sim.base_url, api_key=KEY, keep_raw=True) as s:
        sync_streamed = s.chat(model="m", messages=MSGS, stream=True)
    for o in (plain, streamed, sync_streamed):
        assert o.raw is not None
        assert o.raw.status == 200
        assert o.raw.body
        assert KEY not in repr(o.raw)
    async with AsyncClient(sim.base_url, api_key=KEY) as c:
        assert (await c.chat(model="m", messages=MSGS)).raw is None  # off by default: memory stays flat


async def test_a_stream_passes_the_gate_as_a_plain_call_does(sim: Simulator) -> None:
    gate = RecordingGate()
    async with AsyncClient(
        sim.base_url, api_key=KEY, gate=gate, headers={"x-genguard-scenario": "rate_limited:1"},
        retry=RetryPolicy(max_attempts=3, backoff_base=0.01, jitter=0),
    ) as c:  # fmt: skip
        o = await c.chat(model="m", messages=MSGS, max_tokens=100, stream=True)
        assert o.ok
        assert o.attempts == 2
        assert len(gate.acquired) == 2
        assert gate.acquired[0] >= 100
        assert [status for status, _, _ in gate.observed] == [429, 200]
        assert all(limit is not None for _, limit, _ in gate.observed)
        assert [f["rate_limited"] for f in gate.flags] == [True, False]
        # A stream its reader stops early still tells the gate, so its slot is not held for ever.
        async with c.stream(model="m", messages=MSGS) as s:
            async for _ in s:
                break
        assert len(gate.acquired) == 3
        assert len(gate.observed) == 3


async def test_a_stream_its_reader_stops_frees_its_connection_at_once(sim: Simulator) -> None:
    # One call at a time: the next one can start only once the stopped stream gave its slot back. Kept alive
    # by a reference to the stream, nothing is left to the garbage collector.
    async with AsyncClient(sim.base_url, api_key=KEY, max_concurrency=1) as c:
        s = c.stream(model="m", messages=MSGS)
        async with s:
            async for _ in s:
                break
        assert s.outcome.code == "incomplete_stream"
        o = await asyncio.wait_for(c.chat(model="m", messages=MSGS), timeout=10)
        assert o.ok
