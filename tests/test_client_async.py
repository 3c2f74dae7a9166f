"""The AsyncClient over real HTTP against the simulator: the same behaviour as the sync client."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import orjson
import pytest

from genguard import ConfigError, Outcome
from genguard.client.clients import AsyncClient
from genguard.client.retry import RetryPolicy
from genguard.sim import Simulator

pytestmark = pytest.mark.anyio

MSGS = [{"role": "user", "content": "Tell me about lighthouses"}]
FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, jitter=0)
KEY = "sk-test-async-0123456789abcdef"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def aclient(sim: Simulator, scenario: str | None = None, **kw: Any) -> AsyncClient:
    kw.setdefault("retry", FAST)
    kw.setdefault("api_key", KEY)
    return AsyncClient(sim.base_url, headers={"x-genguard-scenario": scenario} if scenario else None, **kw)


def by_model(mapping: dict[str, str], seen: list[dict[str, Any]] | None = None) -> httpx.AsyncClient:
    async def hook(request: httpx.Request) -> None:
        body = orjson.loads(request.content)
        if seen is not None:
            seen.append(body)
        if mapping.get(body.get("model")):
            request.headers["x-genguard-scenario"] = mapping[body["model"]]

    return httpx.AsyncClient(event_hooks={"request": [hook]})


async def test_plain_and_stream_agree(sim: Simulator) -> None:
    async with aclient(sim) as c:
        plain = await c.chat(model="gpt-4o-mini", messages=MSGS)
        async with c.stream(model="gpt-4o-mini", messages=MSGS) as s:
            pieces = [t async for t in s]
    assert plain.ok
    assert s.outcome.ok
    assert "".join(pieces) == s.outcome.text
    assert s.outcome.usage is not None
    assert plain.extra["cost_usd"] is not None


@pytest.mark.parametrize(
    "scenario", ["content_filtered", "truncated", "empty_output", "stream_error", "incomplete_stream"]
)
async def test_soft_failures_streaming(sim: Simulator, scenario: str) -> None:
    async with aclient(sim, scenario, retry=RetryPolicy(max_attempts=1)) as c:
        o = await c.chat(model="gpt-4o-mini", messages=MSGS, stream=True)
        p = await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert o.code == scenario
    assert o.kind == "soft"
    if scenario != "incomplete_stream":
        assert p.code == scenario


async def test_retries_then_success_with_history(sim: Simulator) -> None:
    async with aclient(sim, "bad_gateway:2") as c:
        o = await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert o.ok
    assert [a.code for a in o.history] == ["bad_gateway", "bad_gateway", None]


async def test_quota_not_retried_and_max_wait(sim: Simulator) -> None:
    async with aclient(sim, "quota_exceeded") as c:
        q = await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert q.code == "quota_exceeded"
    assert q.attempts == 1
    sim.configure(retry_after_s=100)
    async with aclient(sim, "rate_limited", retry=RetryPolicy(max_wait=2)) as c:
        r = await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert r.code == "rate_limited"
    assert r.retry_after_s == 100
    assert r.attempts == 1


async def test_key_rotation(sim: Simulator) -> None:
    good = "sk-good-async-abcdefghijk"
    sim.configure(api_keys=(good,))
    async with aclient(sim, api_key=["sk-wrong-async-abcdefghij", good]) as c:
        o = await c.chat(model="gpt-4o-mini", messages=MSGS, stream=True)
    assert o.ok
    assert [a.code for a in o.history] == ["auth_failed", None]


async def test_missing_key_is_a_config_error(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GENGUARD_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    sim.configure(api_keys=("sk-needed-abcdefghijkl",))
    async with AsyncClient(sim.base_url) as c:
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            await c.chat(model="gpt-4o-mini", messages=MSGS)


async def test_a_password_in_the_base_url_never_shows_in_the_missing_key_error(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GENGUARD_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    sim.configure(api_keys=("sk-needed-abcdefghijkl",))
    host = sim.base_url.removeprefix("http://")
    async with AsyncClient(f"http://admin:pw-hunter2-secret@{host}", retry=FAST) as c:
        for stream in (False, True):
            with pytest.raises(ConfigError) as raised:
                await c.chat(model="gpt-4o-mini", messages=MSGS, stream=stream)
            message = str(raised.value)
            assert "hunter2" not in message
            assert "admin" not in message
            assert f"http://{host}" in message
            assert "--api-key" in message


async def test_a_given_http_client_is_used_and_left_open_a_made_one_is_closed(sim: Simulator) -> None:
    seen: list[dict[str, Any]] = []
    http = by_model({}, seen)
    async with aclient(sim, http_client=http) as c:
        assert (await c.chat(model="gpt-4o-mini", messages=MSGS)).ok
    assert len(seen) == 1
    assert not http.is_closed  # the caller's to close
    await http.aclose()
    async with aclient(sim) as made:
        assert isinstance(made.http, httpx.AsyncClient)
    assert made.http.is_closed


async def test_a_sync_http_client_is_refused_at_once(sim: Simulator) -> None:
    with httpx.Client() as sync_http, pytest.raises(TypeError, match=r"httpx\.AsyncClient\b"):
        AsyncClient(sim.base_url, api_key=KEY, http_client=sync_http)  # type: ignore[arg-type]


async def test_fallback(sim: Simulator) -> None:
    http = by_model({"big-model": "unavailable"})
    async with aclient(sim, fallbacks=["gpt-4o-mini"], http_client=http) as c:
        o = await c.chat(model="big-model", messages=MSGS)
    await http.aclose()
    assert o.ok
    assert o.extra["model"] == "gpt-4o-mini"
    assert [a.model for a in o.history].count("big-model") == FAST.max_attempts


async def test_stall_and_cut_streams_become_outcomes(sim: Simulator) -> None:
    async with aclient(sim, "timeout", stall_timeout=0.3, retry=RetryPolicy(max_attempts=1)) as c:
        t = time.monotonic()
        async with c.stream(model="gpt-4o-mini", messages=MSGS) as s:
            pieces = [x async for x in s]
        assert time.monotonic() - t < 3
    assert s.outcome.code == "timeout"
    assert s.outcome.text == "".join(pieces)
    c2 = aclient(sim, "connection_error", retry=RetryPolicy(max_attempts=1))
    async with c2, c2.stream(model="gpt-4o-mini", messages=MSGS) as s2:
        cut = [x async for x in s2]
    assert s2.outcome.code in ("incomplete_stream", "connection_error")
    assert s2.outcome.text == "".join(cut)


async def test_deadline(sim: Simulator) -> None:
    policy = RetryPolicy(max_attempts=10, deadline=0.5)
    async with aclient(sim, "timeout", retry=policy) as c:
        t = time.monotonic()
        o = await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert o.code == "timeout"
    assert time.monotonic() - t < 3
    assert "deadline" in (o.message or "")


async def test_validators_reask_and_redaction(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with aclient(sim, "invalid_json") as c:
        o = await c.chat(model="gpt-4o-mini", messages=MSGS, validate="json", stream=True)
    assert o.code == "invalid_json"
    assert o.text
    seen: list[dict[str, Any]] = []
    policy = RetryPolicy(reask_on_silent=2)
    http = by_model({"gpt-4o-mini": "invalid_json"}, seen)
    async with aclient(sim, http_client=http, retry=policy) as c:
        r = await c.chat(model="gpt-4o-mini", messages=MSGS, validate="json")
    await http.aclose()
    assert r.code == "invalid_json"
    assert r.attempts == 3
    assert len(seen[2]["messages"]) == len(MSGS) + 4
    assert KEY not in caplog.text
    assert KEY not in r.to_json()


async def test_send_with_retries(sim: Simulator) -> None:
    from genguard.core.classify import classify_http

    async with aclient(sim) as c:
        o = await c.send_with_retries(
            lambda key, model: c.build_request(
                "GET", "/models", key=key, headers={"x-genguard-scenario": "unavailable:1"}
            ),
            lambda r: (
                Outcome.success(status=r.status_code, text=r.json()["data"][0]["id"])
                if r.is_success
                else classify_http(r.status_code, r.headers, r.content)
            ),
            model="gpt-4o-mini",
        )
    assert [a.code for a in o.history] == ["unavailable", None]
    assert o.ok
    assert o.text
