"""The official Python SDK, async (``AsyncOpenAI``) and sync, through the proxy, for every simulator scenario.

The same table as the Node SDK's (``_proxy_sdk_cases.py``), judged by the same ``check``: each call is turned
into the Node driver's JSON shape (the answer or the exception, the outcome headers, every HTTP request the
SDK sent, counted by httpx event hooks on the SDK's own default client).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from _proxy_sdk_cases import (
    CASES,
    UPSTREAM_KEY,
    Raised,
    case_for,
    check,
    missing_rows,
    node_class,
    play,
    proxies,
    python_class,
    runs,
)  # fmt: skip
from genguard import RetryPolicy
from genguard.proxy import Proxy
from genguard.sim import Simulator

pytestmark = pytest.mark.timeout(120)

HEADERS = ("x-genguard-code", "x-genguard-kind", "x-genguard-attempts", "x-genguard-model",
           "x-genguard-request-ids", "x-should-retry", "retry-after-ms", "content-type")  # fmt: skip
MODEL = "gpt-4o-mini"


def _pick(headers: Any) -> dict[str, str]:
    return {name: headers[name] for name in HEADERS if headers is not None and name in headers}


def _failure(exc: Exception, chunks: int, text: str, headers: Any) -> dict[str, Any]:
    response = getattr(exc, "response", None)
    return {
        "ok": False,
        "chunks": chunks,
        "text": text,
        "error": {
            "class": type(exc).__name__,
            "isAPIError": isinstance(exc, openai.APIError),
            "status": getattr(exc, "status_code", None),
            "code": getattr(exc, "code", None),
            "message": str(exc),
            # An in-band error has no response of its own: the stream's headers are what the app had.
            "headers": _pick(response.headers if response is not None else headers),
        },
    }


def _counting(requests: list[dict[str, Any]]) -> dict[str, list[Any]]:
    def sent(request: httpx.Request) -> None:
        requests.append({"retryCount": request.headers.get("x-stainless-retry-count")})

    def answered(response: httpx.Response) -> None:
        requests[-1]["status"] = response.status_code

    return {"request": [sent], "response": [answered]}


def _async_hooks(requests: list[dict[str, Any]]) -> dict[str, list[Any]]:
    sync = _counting(requests)

    async def sent(request: httpx.Request) -> None:
        sync["request"][0](request)

    async def answered(response: httpx.Response) -> None:
        sync["response"][0](response)

    return {"request": [sent], "response": [answered]}


async def call_async(base_url: str, mode: str, prompt: str, **options: Any) -> dict[str, Any]:
    """One call by an asyncio application with ``AsyncOpenAI``, as the Node driver reports one."""
    requests: list[dict[str, Any]] = []
    http = openai.DefaultAsyncHttpxClient(event_hooks=_async_hooks(requests))
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-python-app", http_client=http,
                                **{"timeout": 20.0, **options})  # fmt: skip
    messages: Any = [{"role": "user", "content": prompt}]
    chunks, text, finish, headers = 0, "", None, None
    raw: Any
    started = time.monotonic()
    try:
        async with client:
            if mode == "stream":
                raw = await client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=messages, stream=True
                )
                headers = raw.headers
                async for chunk in raw.parse():
                    chunks += 1
                    for choice in chunk.choices:
                        text += choice.delta.content or ""
                        finish = choice.finish_reason or finish
            else:
                raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
                headers = raw.headers
                completion = raw.parse()
                text, finish = (
                    completion.choices[0].message.content or "",
                    completion.choices[0].finish_reason,
                )
        out = {"ok": True, "text": text, "finish": finish, "chunks": chunks, "headers": _pick(headers)}
    except Exception as exc:  # what the application would have to catch, whatever it is
        out = _failure(exc, chunks, text, headers)
    return {**out, "requests": requests, "elapsedMs": round((time.monotonic() - started) * 1000)}


def call_sync(base_url: str, mode: str, prompt: str, **options: Any) -> dict[str, Any]:
    """The same call by a plain (threaded) application with ``OpenAI``."""
    requests: list[dict[str, Any]] = []
    http = openai.DefaultHttpxClient(event_hooks=_counting(requests))
    client = openai.OpenAI(base_url=base_url, api_key="sk-python-app", http_client=http,
                           **{"timeout": 20.0, **options})  # fmt: skip
    messages: Any = [{"role": "user", "content": prompt}]
    chunks, text, finish, headers = 0, "", None, None
    raw: Any
    started = time.monotonic()
    try:
        with client:
            if mode == "stream":
                raw = client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=messages, stream=True
                )
                headers = raw.headers
                for chunk in raw.parse():
                    chunks += 1
                    for choice in chunk.choices:
                        text += choice.delta.content or ""
                        finish = choice.finish_reason or finish
            else:
                raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
                headers = raw.headers
                completion = raw.parse()
                text, finish = (
                    completion.choices[0].message.content or "",
                    completion.choices[0].finish_reason,
                )
        out = {"ok": True, "text": text, "finish": finish, "chunks": chunks, "headers": _pick(headers)}
    except Exception as exc:
        out = _failure(exc, chunks, text, headers)
    return {**out, "requests": requests, "elapsedMs": round((time.monotonic() - started) * 1000)}


def call(sdk: str, base_url: str, mode: str, prompt: str, **options: Any) -> dict[str, Any]:
    if sdk == "async":
        return asyncio.run(call_async(base_url, mode, prompt, **options))
    return call_sync(base_url, mode, prompt, **options)


@pytest.fixture(scope="module")
def gateways(genguard_sim: Simulator) -> Iterator[dict[tuple[bool, bool], Proxy]]:
    with proxies(genguard_sim.base_url) as out:
        yield out


def test_every_simulator_scenario_has_a_row() -> None:
    assert not missing_rows(), (
        f"scenarios without a row in tests/_proxy_sdk_cases.py: {sorted(missing_rows())}"
    )


def test_the_python_classes_follow_the_sdks_status_table() -> None:
    # The table names classes by status; the SDK's own mapping must agree (a new SDK release could move one).
    for case in CASES.values():
        for seen in (case.plain, case.stream, case.strict_plain, case.strict_stream):
            if isinstance(seen, Raised) and seen.status is not None:
                assert hasattr(openai, python_class(seen)), python_class(seen)
    assert node_class(Raised(413, "request_too_large")) == "APIError"
    assert python_class(Raised(413, "request_too_large")) == "APIStatusError"
    assert python_class(Raised(None, "pending")) == "APIError"


def _play_case(sdk: str, sim: Simulator, gateways: Any, name: str, mode: str, *, strict: bool) -> None:
    case = case_for(name)
    seen = case.expected(mode, strict=strict)
    play(sim, name)
    got = call(
        sdk, gateways[strict, case.quick].base_url, mode, f"Python {sdk} {name} {mode} strict={strict}"
    )
    check(
        seen, got, sim.stats()["requests"], error_class=python_class(seen) if isinstance(seen, Raised) else ""
    )


@pytest.mark.parametrize("sdk", ["async", "sync"])
@pytest.mark.parametrize(("name", "mode"), runs(strict=False))
def test_what_a_python_app_sees(sdk: str, sim: Simulator, gateways: Any, name: str, mode: str) -> None:
    _play_case(sdk, sim, gateways, name, mode, strict=False)


# Under strict, AsyncOpenAI only: the sync SDK reads the same bytes through the same parser, which the
# default table already shows for every scenario.
@pytest.mark.parametrize(("name", "mode"), runs(strict=True))
def test_what_an_async_python_app_sees_under_strict(
    sim: Simulator, gateways: Any, name: str, mode: str
) -> None:
    _play_case("async", sim, gateways, name, mode, strict=True)


@pytest.mark.parametrize("mode", ["plain", "stream"])
def test_a_429_is_answered_after_the_servers_wait_from_one_async_call(
    sim: Simulator, gateways: Any, mode: str
) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.3)
    got = call("async", gateways[False, False].base_url, mode, f"async wait {mode}")
    assert got["ok"], got
    assert got["elapsedMs"] >= 300
    assert len(got["requests"]) == 1
    assert got["headers"]["x-genguard-attempts"] == "2"
    stats = sim.stats()
    assert stats["by_status"] == {"429": 1, "200": 1}
    assert stats["verdict"]["ignored_retry_after"] == 0


@pytest.mark.slow
def test_async_calls_at_once_each_get_their_answer_and_their_own_outcome(
    sim: Simulator, gateways: Any
) -> None:
    # Twenty concurrent calls of an asyncio app, each its own prompt, the first attempt of each rate limited:
    # every one ends ok after genguard's retry, and none was sent again by the SDK.
    sim.configure(scenario="rate_limited:1", retry_after_s=0.1)
    base_url = gateways[False, False].base_url

    async def many() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(call_async(base_url, "plain", f"caller {i}") for i in range(20))))

    results = asyncio.run(many())
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    assert all(len(r["requests"]) == 1 for r in results)
    assert all(r["headers"]["x-genguard-attempts"] == "2" for r in results)
    assert sim.stats()["by_status"] == {"429": 20, "200": 20}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "stream"])
def test_an_async_retry_after_its_own_timeout_gets_one_attempt(sim: Simulator, mode: str) -> None:
    sim.configure(scenario="rate_limited", retry_after_s=0.4)
    with Proxy(upstream=sim.base_url, api_keys=(UPSTREAM_KEY,)) as proxy:
        got = call("async", proxy.base_url, mode, f"async sdk timeout {mode}", timeout=0.5, max_retries=1)
    assert not got["ok"], got
    assert [r["retryCount"] for r in got["requests"]] == ["0", "1"]
    assert "status" not in got["requests"][0]  # the first one timed out in the SDK
    assert got["error"]["class"] == "RateLimitError"
    assert got["error"]["headers"]["x-genguard-attempts"] == "1"
    assert got["error"]["headers"]["x-should-retry"] == "false"


@pytest.mark.parametrize("sdk", ["async", "sync"])
def test_a_wait_longer_than_max_wait_is_answered_at_once(sim: Simulator, sdk: str) -> None:
    sim.configure(scenario="rate_limited", retry_after_s=30)
    with Proxy(upstream=sim.base_url, api_keys=(UPSTREAM_KEY,), retry=RetryPolicy(max_wait=1.0)) as proxy:
        got = call(sdk, proxy.base_url, "plain", f"{sdk} long wait")
    assert got["error"]["class"] == "RateLimitError"
    assert got["error"]["headers"]["retry-after-ms"] == "30000"
    assert len(got["requests"]) == 1
    assert sim.stats()["requests"] == 1


@pytest.mark.parametrize("key", ["none", "content"])
def test_a_dummy_upstream_key_leaves_the_answer_as_the_upstream_sent_it(sim: Simulator, key: str) -> None:
    reply = "I have none of them, and the content is fine"
    sim.configure(reply=reply)
    with Proxy(upstream=sim.base_url, api_keys=(key,)) as proxy:
        got = call("async", proxy.base_url, "plain", f"async dummy key {key}")
    assert got["ok"], got
    assert got["text"] == reply
