"""The blocking Client and a rate limiter: a SyncGate asked before every attempt and told every answer (plain
chat, streams, images), and ThreadedGate, which gives the blocking client any asyncio Gate (the batch runner's
limiter, the shared Redis one). Over real HTTP against the simulator."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pytest

import genguard
from genguard import Client, RetryPolicy, SyncGate, ThreadedGate
from genguard.bulk.limiter import AsyncRateLimiter, RateGovernor
from genguard.sim import Simulator

KEY = "sk-test-sync-gate-0123456789"
MSGS: Any = [{"role": "user", "content": "Say something short"}]
RETRY = RetryPolicy(max_attempts=3, backoff_base=0.01, jitter=0)

pytestmark = pytest.mark.timeout(60)


class RecordingGate:
    """A blocking gate that lets everything go and remembers what it was asked and told."""

    def __init__(self) -> None:
        self.acquired: list[int] = []
        self.observed: list[tuple[int, str | None, bool | None]] = []

    def acquire(self, tokens: int) -> None:
        self.acquired.append(tokens)

    def observe(self, status: int, headers: Mapping[str, str], **kw: Any) -> None:
        self.observed.append((status, headers.get("x-ratelimit-limit-requests"), kw.get("rate_limited")))


def test_every_attempt_of_the_blocking_client_passes_the_gate(sim: Simulator) -> None:
    gate = RecordingGate()
    assert isinstance(gate, SyncGate)
    with Client(sim.base_url, api_key=KEY, gate=gate, retry=RETRY,
                headers={"x-genguard-scenario": "rate_limited:1"}) as client:  # fmt: skip
        plain = client.chat(model="m", messages=MSGS, max_tokens=100)
        other: Any = [{"role": "user", "content": "Another request"}]  # the simulator's 429 is per request
        streamed = client.chat(model="m", messages=other, max_tokens=100, stream=True)
    assert plain.ok
    assert streamed.ok
    assert plain.attempts == streamed.attempts == 2
    assert len(gate.acquired) == 4
    assert all(t >= 100 for t in gate.acquired)  # the prompt's estimate plus max_tokens
    # Each call: a 429 the limiter must learn from, then a 200; the rate-limit headers reach the gate.
    assert [(s, r) for s, _, r in gate.observed] == [(429, True), (200, False)] * 2
    assert all(limit is not None for _, limit, _ in gate.observed)


def test_a_stream_stopped_early_and_an_image_tell_the_gate_too(sim: Simulator) -> None:
    gate = RecordingGate()
    with Client(sim.base_url, api_key=KEY, gate=gate) as client:
        with client.stream(model="m", messages=MSGS) as s:
            for _ in s:
                break  # the slot must not be held for ever
        assert len(gate.acquired) == len(gate.observed) == 1
        result = client.images.generate(model="gpt-image-1", prompt="a red fox")
    assert result.ok
    assert len(gate.acquired) == len(gate.observed) == 2
    assert gate.observed[1][0] == 200


def test_a_quota_429_does_not_slow_the_gate(sim: Simulator) -> None:
    gate = RecordingGate()
    with Client(sim.base_url, api_key=KEY, gate=gate, headers={"x-genguard-scenario": "quota_exceeded"}) as c:
        outcome = c.chat(model="m", messages=MSGS)
    assert outcome.code == "quota_exceeded"
    assert gate.observed == [(429, gate.observed[0][1], False)]


def test_an_asyncio_gate_is_refused_with_the_way_to_use_it() -> None:
    with pytest.raises(TypeError, match="ThreadedGate"):
        Client("http://127.0.0.1:9/v1", api_key=KEY, gate=AsyncRateLimiter(RateGovernor()))  # type: ignore[arg-type]


def test_threaded_gate_runs_the_batch_limiter_for_the_blocking_client(sim: Simulator) -> None:
    governor = RateGovernor(rpm=60_000)
    with ThreadedGate(AsyncRateLimiter(governor)) as gate, Client(sim.base_url, api_key=KEY, gate=gate) as c:
        outcomes = [c.chat(model="m", messages=MSGS) for _ in range(3)]
        assert all(o.ok for o in outcomes)
        snap = gate.gate.snapshot()  # type: ignore[attr-defined]
    # The limiter booked and heard every request, and read the simulator's limit from its headers.
    assert governor.state.reserved == 3
    assert snap.rpm_source == "headers"


def test_threaded_gate_paces_each_model_on_its_own_for_the_blocking_client(tmp_path: Any) -> None:
    # The model each attempt asks crosses to the gate's own thread: a pace per model, each with its own limit.
    gates = genguard.ModelGates(lambda model: AsyncRateLimiter(RateGovernor()))
    with (
        Simulator(rpm=6000, rpm_for={"gpt-4o": 600}) as sim,
        ThreadedGate(gates) as gate,
        Client(sim.base_url, api_key=KEY, gate=gate) as c,
    ):
        for model in ("gpt-4o", "gpt-4o-mini", "gpt-4o"):
            assert c.chat(model=model, messages=MSGS).ok
            with c.stream(model=model, messages=MSGS) as s:
                assert "".join(s)
            assert s.outcome.ok
        snaps = gates.snapshots()
    # gpt-4o answered first, on the shared gate; gpt-4o-mini's answers stated other limits: a gate of its own.
    assert gates.shared_models() == ["gpt-4o"]
    assert {m: (s.rpm, s.rpm_source) for m, s in snaps.items()} == {
        None: (600, "headers"),
        "gpt-4o-mini": (6000, "headers"),
    }


def test_threaded_gate_shares_the_redis_budget_with_every_worker(sim: Simulator) -> None:
    redis = pytest.importorskip("redis")
    server = redis.Redis(host="127.0.0.1", port=6379)
    try:
        server.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis does not answer on 127.0.0.1:6379 ({exc}); .ci/run starts it")
    prefix = f"genguard-test-{uuid.uuid4().hex[:12]}"
    url = f"redis://127.0.0.1:6379/0?name=sync&prefix={prefix}"
    try:
        with (
            ThreadedGate(lambda: genguard.open_gate(url)) as gate,
            Client(sim.base_url, api_key=KEY, gate=gate) as c,
        ):
            for _ in range(4):
                assert c.chat(model="m", messages=MSGS).ok
        shared = {k.decode(): v.decode() for k, v in server.hgetall(f"{prefix}:sync").items()}
        assert int(shared["ok"]) == 4  # every success counted in the shared budget
        assert KEY not in str(shared)
    finally:
        for key in server.scan_iter(f"{prefix}*"):
            server.delete(key)
        server.close()


def test_threaded_gate_carries_what_the_gate_marks_to_the_answer(sim: Simulator) -> None:
    # A whole-second Retry-After pauses the pace; a tenth in, one request goes to probe the pause, and its answer
    # ends it. The gate marks the probe in the context of the request's acquire, and the answer's observe must
    # see it there: run on the gate's own thread, the mark was lost, and a blocking client waited out every
    # such pause in full. (The pace's clock is a fake one, stopped a tenth into the pause.)
    now = [0.0]
    governor = RateGovernor(rpm=600, clock=lambda: now[0], unix_time=lambda: 1_700_000_000.0 + now[0])
    for _ in range(3):
        governor.reserve()
    for _ in range(3):
        governor.observe(429, {"retry-after": "1"})  # three: a limit, not a fault
    assert governor.snapshot().paused_s == pytest.approx(1.0)
    now[0] = 0.1
    with ThreadedGate(AsyncRateLimiter(governor)) as gate, Client(sim.base_url, api_key=KEY, gate=gate) as c:
        assert c.chat(model="m", messages=MSGS).ok  # the probe, let go at once and answered
        assert governor.state.reserved == 4
    # Closed: its loop ran what it was told before it stopped.
    assert governor.snapshot().paused_s == 0.0
