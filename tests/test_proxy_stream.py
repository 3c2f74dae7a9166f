"""Streamed chat through genguard proxy: the commit point, in-band errors the SDK raises, the outcome comment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from genguard.proxy import Proxy
from genguard.sim import Simulator

MSG: Any = [{"role": "user", "content": "Describe a pet"}]
MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def _proxy(genguard_sim: Simulator) -> Iterator[Proxy]:
    with Proxy(upstream=genguard_sim.base_url, api_keys=("sk-proxy-stream-key",)) as proxy:
        yield proxy


@pytest.fixture
def proxy(sim: Simulator, _proxy: Proxy) -> Proxy:
    return _proxy


def sdk(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key="sk-client", timeout=10.0)


def raw_stream(proxy: Proxy) -> tuple[httpx.Response, str]:
    body = {"model": MODEL, "messages": MSG, "stream": True}
    with httpx.stream("POST", proxy.base_url + "/chat/completions", json=body, timeout=10) as reply:
        return reply, reply.read().decode()


def outcome_comment(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith(": genguard ")]
    assert len(lines) == 1
    outcome: dict[str, Any] = orjson.loads(lines[0].removeprefix(": genguard "))
    return outcome


def test_an_ok_stream_reads_in_the_sdk_and_ends_with_the_outcome(sim: Simulator, proxy: Proxy) -> None:
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in sdk(proxy).chat.completions.create(model=MODEL, messages=MSG, stream=True)
        if chunk.choices
    )
    assert text
    reply, body = raw_stream(proxy)
    assert reply.status_code == 200
    assert "data: [DONE]" in body
    assert outcome_comment(body)["ok"] is True


def test_a_stream_cut_after_content_raises_in_the_sdk(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(scenario="incomplete_stream")
    seen: list[Any] = []
    with pytest.raises(openai.APIError) as info:
        seen.extend(sdk(proxy).chat.completions.create(model=MODEL, messages=MSG, stream=True))
    assert seen  # content arrived before the cut: the stream was committed, then the error came in-band
    assert info.value.code == "incomplete_stream"
    assert sim.stats()["requests"] == 1  # once content was sent on, nothing is sent again
    _, body = raw_stream(proxy)
    assert "data: [DONE]" not in body
    assert outcome_comment(body)["code"] == "incomplete_stream"


def test_a_rate_limit_before_content_is_retried_behind_the_commit_point(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.2)
    stream = sdk(proxy).chat.completions.with_raw_response.create(model=MODEL, messages=MSG, stream=True)
    chunks = list(stream.parse())
    assert chunks
    assert stream.headers["x-genguard-attempts"] == "2"
    assert len(stream.headers["x-genguard-request-ids"].split(",")) == 2
    assert sim.stats()["by_status"] == {"429": 1, "200": 1}


def test_quota_before_content_is_a_real_status_the_sdk_does_not_retry(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(scenario="quota_exceeded")
    with pytest.raises(openai.RateLimitError) as info:
        sdk(proxy).chat.completions.create(model=MODEL, messages=MSG, stream=True)
    assert info.value.response.headers["x-should-retry"] == "false"
    assert sim.stats()["requests"] == 1


def test_a_filtered_stream_passes_through_with_its_outcome(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(scenario="content_filtered")
    reply, body = raw_stream(proxy)
    assert reply.status_code == 200
    assert outcome_comment(body)["code"] == "content_filtered"


def test_strict_turns_a_filtered_stream_into_an_error_the_sdk_raises(sim: Simulator) -> None:
    sim.configure(scenario="content_filtered")
    with (
        Proxy(upstream=sim.base_url, api_keys=("sk-proxy-stream-key",), strict=True) as strict,
        pytest.raises(openai.APIError) as info,
    ):
        list(sdk(strict).chat.completions.create(model=MODEL, messages=MSG, stream=True))
    assert info.value.code == "content_filtered"
    assert sim.stats()["requests"] == 1


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_events_are_passed_on_whole_in_every_line_ending_and_done_is_held(end: str) -> None:
    import contextlib

    from genguard.core.chat_stream import ChatStreamReader
    from genguard.proxy._stream import _Attempt

    chunk = '{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}'
    wire = f"data: {chunk}{end}{end}: keep-alive{end}{end}data: [DONE]{end}{end}".encode()
    attempt = _Attempt(contextlib.AsyncExitStack())
    attempt.reader = ChatStreamReader(status=200, headers={})
    sent = b""
    has_text = False
    for i in range(0, len(wire), 7):  # cut anywhere, as the network does
        events, text = attempt.take(wire[i : i + 7])
        sent += events
        has_text = has_text or text
    sent += attempt.flush()
    assert has_text
    assert sent == f"data: {chunk}{end}{end}: keep-alive{end}{end}".encode()
    assert attempt.done


def test_a_last_event_without_its_blank_line_is_still_passed_on() -> None:
    import contextlib

    from genguard.core.chat_stream import ChatStreamReader
    from genguard.proxy._stream import _Attempt

    attempt = _Attempt(contextlib.AsyncExitStack())
    attempt.reader = ChatStreamReader(status=200, headers={})
    assert attempt.take(b'data: {"choices":[]}')[0] == b""
    assert attempt.flush() == b'data: {"choices":[]}\n\n'
    assert attempt.take(b"data: [DONE]")[0] == b""
    assert attempt.flush() == b""
    assert attempt.done


def test_a_stream_that_stalls_after_content_raises_in_the_sdk(sim: Simulator) -> None:
    # The simulator sends its first words at once, then one word per 10 s: past the proxy's 2 s stall limit.
    sim.configure(tokens_per_s=0.1)
    seen: list[Any] = []
    with (
        Proxy(upstream=sim.base_url, api_keys=("sk-proxy-stream-key",), stall_timeout=2.0) as proxy,
        pytest.raises(openai.APIError) as info,
    ):
        seen.extend(sdk(proxy).chat.completions.create(model=MODEL, messages=MSG, stream=True))
    assert seen
    assert info.value.code == "timeout"


def test_a_streamed_request_that_is_an_sdk_retry_gets_one_attempt(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.2)
    body = {"model": MODEL, "messages": MSG, "stream": True}
    reply = httpx.post(
        proxy.base_url + "/chat/completions", json=body, headers={"x-stainless-retry-count": "2"}
    )
    assert reply.status_code == 429
    assert reply.headers["x-genguard-attempts"] == "1"
    assert reply.headers["x-should-retry"] == "false"
    assert reply.headers["retry-after-ms"] == "200"
    assert sim.stats()["requests"] == 1


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "google", "vllm"])
def test_an_upstream_error_after_content_reaches_the_sdk_as_genguards_stream_error(
    sim: Simulator, proxy: Proxy, dialect: str
) -> None:
    # The upstream's own error event is held back: the SDK raises on the first error event it reads, and its
    # code must not depend on the provider's dialect.
    sim.configure(scenario="stream_error", dialect=dialect)
    seen: list[Any] = []
    with pytest.raises(openai.APIError) as info:
        seen.extend(sdk(proxy).chat.completions.create(model=MODEL, messages=MSG, stream=True))
    assert seen
    assert info.value.code == "stream_error"
    _, body = raw_stream(proxy)
    errors = [line for line in body.splitlines() if line.startswith("data: ") and '"error"' in line]
    assert len(errors) == 1  # genguard's only
    assert outcome_comment(body)["code"] == "stream_error"


@pytest.mark.parametrize(
    ("event", "is_error"),
    [
        (b'data: {"error": {"message": "boom", "code": 500}}\n\n', True),
        (b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error"}}\n\n', True),
        (b"event: error\r\ndata: not json\r\n\r\n", True),
        (b'data: {"choices": [{"delta": {"content": "an error in the text"}}]}\n\n', False),
        (b'data: {"error": null, "choices": []}\n\n', False),
        (b"data: error\n\n", False),
    ],
)
def test_error_events_are_told_from_text_that_mentions_errors(event: bytes, is_error: bool) -> None:
    from genguard.proxy._stream import _is_error_event

    assert _is_error_event(event) is is_error
