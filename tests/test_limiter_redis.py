"""The shared limiter over real Redis: the lease script's decisions (on an injected clock where exact, on the
server's where it must be), chunks spent without over-spending across three clients, what one worker learns
(a limit from headers, a cut from 429s, a pause) reaching the others, slots given back, Redis going away and
coming back mid-run, and the batch command's --limiter (a Redis that cannot be reached exits 2, nothing sent,
its password never shown; no API key ever written to Redis).

Each test uses its own key prefix, deleted after it."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from _batch_helpers import lines_of, write_input
from genguard.bulk.limiter_redis import (
    Lease,
    LimiterUnavailable,
    RedisGate,
    default_name,
    limiter_settings,
    open_gate,
)
from genguard.cli import cli
from genguard.sim import Simulator

redis = pytest.importorskip("redis")

KEY = "sk-limiter-redis-Qw3Er5Ty7Ui9"


@pytest.fixture
def prefix() -> Iterator[str]:
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis on 127.0.0.1:6379 ({exc})")
    name = f"genguard-test-{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def _url(prefix: str, name: str = "t", **params: object) -> str:
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    return f"redis://127.0.0.1:6379/0?name={name}&prefix={prefix}{extra}"


def run(make: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(make())  # type: ignore[arg-type]


async def lease(gate: RedisGate, want: int, now: float = 0.0) -> Lease:
    """One lease on the clock ``now`` (0: the server's), its slots counted as spent."""
    await gate._lease(want=want, now=now)
    gate._left, gate._tokens_left = 0, 0.0  # spent: the next lease gives nothing back
    assert gate.last_lease is not None
    return gate.last_lease


# -- the script's decisions ---------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_the_lease_paces_at_the_limit_and_answers_only_the_wait_when_the_pace_is_far_off(prefix: str) -> None:
    async def go() -> list[Lease]:
        gate = await open_gate(_url(prefix, lease_ms=500))
        gate.observe(200, {"x-ratelimit-limit-requests": "600"})  # 10 a second, written with the first lease
        try:
            return [await lease(gate, 5, now=1000.0) for _ in range(6)] + [await lease(gate, 1, now=1002.5)]
        finally:
            await gate.aclose()

    leases = run(go)
    assert [(x.granted, round(x.wait_s, 6), round(x.spacing_s, 6)) for x in leases] == [
        (5, 0.0, 0.1),  # now, ten a second
        (5, 0.45, 0.1),  # after the first five, less the burst allowance (0.05 s)
        (5, 0.95, 0.1),
        (5, 1.45, 0.1),
        (5, 1.95, 0.1),
        (0, 2.45, 0.1),  # further than two leases per worker ahead: the wait alone, nothing booked
        (1, 0.0, 0.1),  # and when that time comes, a slot
    ]
    assert leases[0].server_now == 1000.0


@pytest.mark.timeout(20)
def test_each_worker_paces_at_its_own_cap_in_the_one_shared_line(prefix: str) -> None:
    async def go() -> tuple[Lease, Lease]:
        slow = await open_gate(_url(prefix, lease_ms=1000), rpm=60)  # one a second
        fast = await open_gate(_url(prefix, lease_ms=1000))
        for gate in (slow, fast):
            gate.observe(200, {"x-ratelimit-limit-requests": "600"})  # the provider's: ten a second
        try:
            first = await lease(slow, 2, now=500.0)
            second = await lease(fast, 3, now=500.0)
            return first, second
        finally:
            await slow.aclose()
            await fast.aclose()

    first, second = run(go)
    assert (first.granted, first.wait_s, first.spacing_s) == (2, 0.0, 1.0)
    # Behind the slow worker's two seconds, at its own pace.
    assert (second.granted, round(second.wait_s, 6), round(second.spacing_s, 6)) == (3, 1.95, 0.1)


@pytest.mark.timeout(20)
def test_tokens_are_booked_at_the_lease_and_settled_with_what_the_answers_used(prefix: str) -> None:
    async def go() -> list[Lease]:
        gate = await open_gate(_url(prefix, lease_ms=1000), tpm=6000)  # 100 tokens a second
        gate.observe(200, {"x-ratelimit-limit-requests": "6000"})
        gate._mean_tokens = 50.0
        try:
            first = await lease(gate, 2, now=100.0)
            second = await lease(gate, 2, now=100.0)
            gate._left = 0
            # Two answers that used 10 tokens each of the 50 booked: 80 tokens (0.8 s) come back.
            for _ in range(2):
                gate.observe(200, {}, tokens_used=10, tokens_reserved=50)
            third = await lease(gate, 2, now=100.0)
            return [first, second, third]
        finally:
            await gate.aclose()

    first, second, third = run(go)
    # Two requests of 50 tokens at 100 tokens a second: spaced by the tokens (0.5 s), not the requests (0.01 s).
    assert (first.granted, first.wait_s, first.spacing_s, first.tokens) == (2, 0.0, 0.5, 100.0)
    assert round(second.wait_s, 6) == 0.95  # after the first lease's tokens, less the burst allowance
    assert round(third.wait_s, 6) == round(1.95 - 0.8, 6)


@pytest.mark.timeout(20)
def test_after_a_429_for_tokens_an_answer_gives_back_half_its_excess(prefix: str) -> None:
    async def go() -> float:
        gate = await open_gate(_url(prefix, lease_ms=1000), tpm=6000)  # 100 tokens a second
        gate.observe(200, {"x-ratelimit-limit-requests": "6000"})
        gate._mean_tokens = 50.0
        try:
            await lease(gate, 2, now=100.0)
            gate._left = 0
            # Refused with 3 tokens left where a request books 50: the provider counts more than was used.
            gate.observe(429, {"x-ratelimit-limit-tokens": "6000", "x-ratelimit-remaining-tokens": "3"})
            for _ in range(2):
                gate.observe(200, {}, tokens_used=10, tokens_reserved=50)
            return gate._settle  # what the next lease pays to Redis (negative: given back)
        finally:
            await gate.aclose()

    # Two answers that used 10 tokens each of the 50 booked: half of the 80 comes back, not all of it.
    assert run(go) == pytest.approx(-40.0)


# -- leasing over real time --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_three_clients_spending_chunks_never_pass_the_shared_pace(prefix: str) -> None:
    rate = 40  # a second
    seconds = 2.5
    headers = {"x-ratelimit-limit-requests": str(rate * 60)}

    async def go() -> list[list[float]]:
        gates = [await open_gate(_url(prefix, "chunks")) for _ in range(3)]
        times: list[list[float]] = [[] for _ in gates]
        for g in gates:
            g.observe(200, headers)  # the limit, read from an answer before the run
        t0 = time.monotonic()

        async def worker(i: int, gate: RedisGate) -> None:
            while time.monotonic() - t0 < seconds:
                await gate.acquire(20)
                times[i].append(time.monotonic() - t0)
                await asyncio.sleep(0.01)
                gate.observe(200, headers)

        try:
            await asyncio.gather(*(worker(i, g) for i, g in enumerate(gates) for _ in range(8)))
        finally:
            for g in gates:
                await g.aclose()
        return times

    times = run(go)
    every = sorted(t for each in times for t in each)
    # In any second, no more than the pace, plus the burst allowance and the slots a busy event loop let run
    # late (a slot is spent at most a lease, 0.1 s, after its time; later, it lapses).
    for i, start in enumerate(every):
        window = [t for t in every[i:] if t < start + 1.0]
        assert len(window) <= rate * 1.15 + 2, (start, len(window))
    late = [t for t in every if 0.5 <= t < seconds]
    assert len(late) >= 0.9 * rate * (seconds - 0.5)
    for each in times:  # the three take turns
        assert len([t for t in each if 0.5 <= t < seconds]) >= 0.2 * len(late)


@pytest.mark.timeout(20)
def test_unspent_slots_go_back_when_no_one_leased_after_them_else_they_lapse(prefix: str) -> None:
    async def go() -> tuple[Lease, Lease]:
        a = await open_gate(_url(prefix, lease_ms=500), rpm=600)
        b = await open_gate(_url(prefix, lease_ms=500), rpm=600)
        c = await open_gate(_url(prefix, lease_ms=500), rpm=600)
        for gate in (a, b, c):
            gate.observe(200, {"x-ratelimit-limit-requests": "600"})
        try:
            await a._lease(want=5)
            await a.aclose()  # five unspent, the last booked: back
            assert (
                redis.Redis().zscore(a.workers_key, a.worker) is None
            )  # no longer counted among the workers
            assert redis.Redis().zscore(b.workers_key, b.worker) is not None
            back = await lease(b, 1)
            await c._lease(want=5)
            await lease(b, 5)
            await c.aclose()  # five unspent, but b booked after them: they lapse
            lapsed = await lease(b, 1)
            return back, lapsed
        finally:
            await b.aclose()

    back, lapsed = run(go)
    assert back.wait_s < 0.06
    # b waits behind its own first slot, c's five lapsed ones and its own five: 1.1 s less the burst allowance.
    assert 0.8 < lapsed.wait_s < 1.1  # given back, it would be about 0.55


# -- what one worker learns, the others know --------------------------------------------------------------


@pytest.mark.timeout(20)
def test_a_limit_read_from_headers_by_one_worker_paces_the_others(prefix: str) -> None:
    async def go() -> tuple[Any, Lease, dict[bytes, bytes]]:
        a = await open_gate(_url(prefix), base_url="http://127.0.0.1:9/v1", api_key=KEY)
        b = await open_gate(_url(prefix), base_url="http://127.0.0.1:9/v1", api_key=KEY)
        try:
            a.observe(200, {"x-ratelimit-limit-requests": "120", "x-ratelimit-remaining-requests": "100"})
            await lease(a, 1)  # written with a's next lease
            seen = await lease(b, 1)
            stored = redis.Redis().hgetall(f"{prefix}:t")
            return b.snapshot(), seen, stored
        finally:
            await a.aclose()
            await b.aclose()

    snap, seen, stored = run(go)
    assert (snap.rpm, snap.rpm_source) == (120.0, "headers")
    assert seen.spacing_s == 0.5
    assert stored[b"rpm"] == b"120.000000"
    assert stored[b"rpm_source"] == b"headers"
    assert int(stored[b"version"]) >= 1
    assert not any(KEY.encode() in v for v in stored.values())


@pytest.mark.timeout(20)
def test_a_cut_learned_from_429s_holds_for_all_and_the_measure_counts_every_workers_successes(
    prefix: str,
) -> None:
    async def go() -> dict[str, Any]:
        a = await open_gate(_url(prefix))
        b = await open_gate(_url(prefix))
        try:
            for _ in range(6):
                await a.acquire(0)
                a.observe(200, {})
            before = a.governor.state.rate
            await a.acquire(0)
            # No limit header; a counter showing the bucket empty makes it the limit, not a fault: the governor
            # halves its opening pace.
            a.observe(429, {"x-ratelimit-remaining-requests": "0"})
            cut = a.governor.state.rate
            await lease(a, 1)
            await lease(b, 1)
            after_b = b.governor.state.rate, b.governor.state.learned, b.governor.state.target
            target = a.governor.state.target
            # Successes on b count in a's measure of the limit once both have leased.
            for _ in range(5):
                b.observe(200, {})
            await lease(b, 1)
            await lease(a, 1)
            return {"before": before, "cut": cut, "b": after_b, "a_ok": a.governor.state.ok_since_cut,
                    "target": target}  # fmt: skip
        finally:
            await a.aclose()
            await b.aclose()

    got = run(go)
    assert got["cut"] < 0.6 * got["before"]
    rate, learned, target = got["b"]
    # b paces at a's cut (give or take the governor's own slow rise since), and believes a's measure.
    assert learned is True
    assert target == got["target"] is not None
    assert got["cut"] <= rate < 1.02 * got["cut"]
    assert got["a_ok"] == 5


@pytest.mark.timeout(20)
def test_a_pause_asked_by_one_workers_429_holds_back_the_others(prefix: str) -> None:
    async def go() -> tuple[Lease, float]:
        a = await open_gate(_url(prefix))
        b = await open_gate(_url(prefix))
        try:
            await a.acquire(0)
            a.observe(429, {"retry-after": "2", "x-ratelimit-remaining-requests": "0"})
            await lease(a, 1)
            seen = await lease(b, 1)
            return seen, b.snapshot().paused_s
        finally:
            await a.aclose()
            await b.aclose()

    seen, paused = run(go)
    assert seen.granted == 0
    assert 1.5 < seen.wait_s <= 2.1
    assert 1.5 < paused <= 2.1


# -- Redis away ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_server(port: int, password: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--requirepass", password],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


@pytest.mark.slow
@pytest.mark.timeout(40)
def test_when_redis_goes_away_the_worker_paces_alone_at_its_share_and_shares_again_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = _free_port()
    password = "pw-" + uuid.uuid4().hex
    server = _redis_server(port, password)
    url = f"redis://:{password}@127.0.0.1:{port}/0?name=away"
    caplog.set_level(logging.WARNING, logger="genguard.limiter")

    async def go() -> dict[str, Any]:
        nonlocal server
        headers = {"x-ratelimit-limit-requests": "1200"}  # 20 a second
        gates = [await open_gate(url) for _ in range(2)]
        a = gates[0]
        a.retry_s = 0.3
        for g in gates:
            g.observe(200, headers)
            await g.acquire(0)
            g.observe(200, headers)
        await lease(a, 1)
        server.terminate()
        server.wait(10)
        t0 = time.monotonic()
        for _ in range(12):  # no error: paced alone, at its share (10 a second: two workers were seen)
            await a.acquire(0)
            a.observe(200, headers)
        alone_s = time.monotonic() - t0
        was_shared = a.shared
        server = _redis_server(port, password)
        deadline = time.monotonic() + 10
        while not a.shared and time.monotonic() < deadline:
            await a.acquire(0)
            a.observe(200, headers)
        shared_again = a.shared
        for g in gates:
            await g.aclose()
        return {"alone_s": alone_s, "was_shared": was_shared, "again": shared_again}

    try:
        got = run(go)
    finally:
        server.kill()
        server.wait(10)
    assert got["was_shared"] is False
    assert got["again"] is True
    assert got["alone_s"] >= 0.9  # 12 at 10 a second (the first at once, a burst's worth early)
    text = caplog.text
    assert "unreachable" in text
    assert "answers again" in text
    assert f"127.0.0.1:{port}" in text
    assert password not in text


def test_a_redis_that_cannot_be_reached_is_named_with_its_password_masked() -> None:
    port = _free_port()  # nothing listens there
    with pytest.raises(LimiterUnavailable) as err:
        run(lambda: open_gate(f"redis://:hunter2pw@127.0.0.1:{port}/0?name=x", timeout=1.0))
    text = str(err.value)
    assert f"redis://127.0.0.1:{port}/0?name=x" in text
    assert "cannot be reached" in text
    assert "hunter2pw" not in text


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:6379/0", "only redis://"),
        ("redis://127.0.0.1:6379/0?lease_ms=0", "lease_ms"),
        ("redis://127.0.0.1:6379/0?lease_ms=abc", "lease_ms"),
    ],
)
def test_a_wrong_limiter_url_says_what_to_write(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        limiter_settings(url)


def test_the_url_keeps_redis_own_parameters_and_takes_out_genguards() -> None:
    s = limiter_settings("rediss://:pw@h:6380/3?name=n&prefix=p&lease_ms=20&socket_keepalive=true")
    assert (s.redis_url, s.name, s.prefix, s.lease_s) == ("rediss://:pw@h:6380/3?socket_keepalive=true", "n",
                                                          "p", 0.02)  # fmt: skip
    assert "pw" not in s.display
    assert default_name("http://h/v1", "k1") != default_name("http://h/v1", "k2")
    assert "k1" not in default_name("http://h/v1", "k1")


# -- the batch command ----------------------------------------------------------------------------------------


def _batch(*args: str) -> Any:
    return CliRunner().invoke(cli, ["batch", *args, "--progress", "none", "--api-key", KEY])


@pytest.mark.timeout(60)
def test_batch_with_a_shared_limiter_runs_and_writes_no_key_to_redis(
    sim: Simulator, tmp_path: Path, prefix: str
) -> None:
    src = write_input(tmp_path / "in.jsonl", lines_of(12))
    result = _batch(str(src), "--out", str(tmp_path / "run"), "--base-url", sim.base_url,
                    "--limiter", f"redis://127.0.0.1:6379/0?prefix={prefix}")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "12/12 lines ended: 12 ok" in result.stdout
    client = redis.Redis()
    name = default_name(sim.base_url, KEY)
    keys = sorted(k.decode() for k in client.scan_iter(f"{prefix}:*"))
    assert keys == [f"{prefix}:{name}"]  # the state; the run left the workers' set (empty, so gone)
    state = client.hgetall(f"{prefix}:{name}")
    assert int(state[b"ok"]) == 12  # every success counted in the shared state
    assert state[b"rpm_source"] == b"headers"
    dump = repr(state) + repr(client.zrange(f"{prefix}:{name}:workers", 0, -1))
    assert KEY not in dump
    assert KEY[-8:] not in dump


def test_batch_with_a_limiter_that_cannot_be_reached_exits_2_and_sends_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    src = write_input(tmp_path / "in.jsonl", lines_of(3))
    port = _free_port()
    result = _batch(str(src), "--out", str(tmp_path / "run"), "--base-url", sim.base_url,
                    "--limiter", f"redis://:s3cretpw@127.0.0.1:{port}/0?name=x")  # fmt: skip
    assert result.exit_code == 2
    assert f"redis://127.0.0.1:{port}/0?name=x" in result.stderr
    assert "s3cretpw" not in result.output + result.stderr
    assert sim.stats()["requests"] == 0
    wrong = _batch(str(src), "--out", str(tmp_path / "run2"), "--base-url", sim.base_url,
                   "--limiter", "http://127.0.0.1:6379")  # fmt: skip
    assert wrong.exit_code == 2
    assert "only redis://" in wrong.stderr


# -- the proxy ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_two_proxies_given_one_limiter_share_one_budget(prefix: str) -> None:
    import httpx

    from genguard.proxy import Proxy, ProxyConfig

    rate = 20
    seconds = 4.5
    url = _url(prefix, "proxies")
    with Simulator(rpm=rate * 60, rate_window_s=1.0, ttft_ms=10.0) as upstream:
        config = ProxyConfig(upstream=upstream.base_url, api_keys=(KEY,), open_gate=lambda: open_gate(url))
        with Proxy(config) as one, Proxy(config) as two:
            answers: list[list[tuple[float, int]]] = [[], []]
            t0 = time.monotonic()

            async def hammer(i: int, base: str) -> None:
                async with httpx.AsyncClient(base_url=base, timeout=30) as http:

                    async def caller() -> None:
                        while time.monotonic() - t0 < seconds:
                            r = await http.post("/chat/completions", json={
                                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                                "max_tokens": 8})  # fmt: skip
                            answers[i].append((time.monotonic() - t0, r.status_code))

                    await asyncio.gather(*(caller() for _ in range(8)))

            async def both() -> None:
                await asyncio.gather(hammer(0, one.base_url), hammer(1, two.base_url))

            run(both)
        stats = upstream.stats()
    # Past the first connections and the first answer's headers (the first second and a half).
    each = [
        sum(1 for at, status in a if 1.5 <= at < seconds and status == 200) / (seconds - 1.5) for a in answers
    ]
    assert 0.85 * rate <= sum(each) <= 1.1 * rate, each
    assert min(each) >= 0.3 * rate, each  # the two take turns
    assert stats["by_status"].get("429", 0) <= 0.05 * stats["by_status"]["200"], stats["by_status"]


def test_proxy_with_a_limiter_that_cannot_be_reached_exits_2() -> None:
    port = _free_port()
    result = CliRunner().invoke(cli, ["proxy", "--upstream", "http://127.0.0.1:9/v1", "--api-key", KEY,
                                      "--limiter", f"redis://:pr0xypw@127.0.0.1:{port}/0"])  # fmt: skip
    assert result.exit_code == 2
    assert f"redis://127.0.0.1:{port}/0" in result.stderr
    assert "pr0xypw" not in result.output + result.stderr


@pytest.mark.timeout(60)
def test_the_docs_python_example_runs_against_the_simulator(sim: Simulator, prefix: str) -> None:
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "scale.md").read_text()
    section = page[page.index("\n## One rate limit for every worker") :].split("\n## ", 2)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert (
        len(blocks) == 3
    )  # AsyncClient, then a budget a model, then the blocking Client through ThreadedGate
    spaces: list[dict[str, Any]] = []
    sim.configure(rpm_for={"gpt-4o": 600})  # a provider that limits gpt-4o on its own, and says so
    try:
        for code in blocks:
            code = code.replace("redis://127.0.0.1:6379/0?name=team-a", _url(prefix, "docs"))
            code = code.replace("http://127.0.0.1:8000/v1", sim.base_url)
            spaces.append({})
            exec(compile(code, "docs/scale.md", "exec"), spaces[-1])
    finally:
        sim.configure(rpm_for={})
    assert [o.ok for o in spaces[0]["outcomes"]] == [True, True]
    assert [o.ok for o in spaces[1]["outcomes"]] == [True, True, True]
    assert spaces[2]["outcome"].ok
    r = redis.Redis()
    # One budget for all but gpt-4o: its first answer (let go by the shared budget, counted there as no
    # answer) stated limits of its own, and its second call drew on a budget of its own.
    assert int(r.hgetall(f"{prefix}:docs")[b"ok"]) == 4
    assert int(r.hgetall(f"{prefix}:docs/gpt-4o")[b"ok"]) == 1
    assert not r.exists(f"{prefix}:docs/gpt-4o-mini")
