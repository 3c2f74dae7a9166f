"""Every chat scenario over real HTTP, plain and streaming, seen through the official openai SDK."""

from __future__ import annotations

import json
import re

import httpx
import jsonschema
import openai
import pytest

from _openai_errors import SDK_ERRORS
from genguard.sim import Simulator
from genguard.sim._config import CHAT_SOFT_SCENARIOS, HARD_SCENARIOS, SILENT_SCENARIOS

MSG = [{"role": "user", "content": "Classify this review"}]


def _client(sim: Simulator, scenario: str) -> openai.OpenAI:
    # A short timeout only where the scenario stalls: a loaded machine can be slow to connect on loopback.
    timeout = 0.5 if scenario == "timeout" else 10.0
    return openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0, timeout=timeout,
                         default_headers={"x-genguard-scenario": scenario})  # fmt: skip


def test_sdk_errors_cover_every_hard_scenario_but_html_200() -> None:
    assert set(SDK_ERRORS) | {"invalid_response"} == set(HARD_SCENARIOS)


@pytest.mark.parametrize("scenario", sorted(SDK_ERRORS))
@pytest.mark.parametrize("stream", [False, True])
def test_hard_scenarios_raise_the_sdks_own_exception(sim: Simulator, scenario: str, stream: bool) -> None:
    client = _client(sim, scenario)

    def call() -> object:
        result = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=stream)  # type: ignore[call-overload]
        return list(result) if stream else result

    with pytest.raises((SDK_ERRORS[scenario], httpx.TransportError)) as info:
        call()
    if stream and scenario in ("timeout", "connection_error"):
        # The stream started fine, then stalled or broke: the SDK lets httpx's own error through.
        assert isinstance(info.value, SDK_ERRORS[scenario] | httpx.ReadTimeout | httpx.RemoteProtocolError)
    else:
        assert isinstance(info.value, SDK_ERRORS[scenario])
    if isinstance(info.value, openai.APIStatusError):
        assert info.value.response.headers["x-request-id"].startswith("req_")
    assert sim.stats()["by_scenario"][scenario]


def test_streams_break_after_some_content(sim: Simulator) -> None:
    got: list[str] = []

    def read() -> None:
        for c in _client(sim, "connection_error").chat.completions.create(
            model="m", messages=MSG, stream=True
        ):
            got.extend(ch.delta.content or "" for ch in c.choices)

    with pytest.raises((openai.APIConnectionError, httpx.RemoteProtocolError)):
        read()
    assert "".join(got).strip()


def test_invalid_response_is_a_200_html_page(sim: Simulator) -> None:
    r = httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSG},
                   headers={"x-genguard-scenario": "invalid_response"})  # fmt: skip
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_rate_limited_says_how_long_to_wait(sim: Simulator) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        _client(sim, "rate_limited").chat.completions.create(model="m", messages=MSG)
    headers = info.value.response.headers
    wait = float(headers["retry-after"])
    assert float(headers["retry-after-ms"]) == pytest.approx(wait * 1000)
    assert re.search(r"Please try again in [\d.]+m?s", info.value.message)
    assert info.value.code == "rate_limit_exceeded"


def _finishes(chunks: list[openai.types.chat.ChatCompletionChunk]) -> list[str]:
    return [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]


@pytest.mark.parametrize(("scenario", "finish"), [("content_filtered", "content_filter"), ("truncated", "length"),
                                                  ("empty_output", "stop"), ("stream_error", "error")])  # fmt: skip
def test_soft_scenarios_plain(sim: Simulator, scenario: str, finish: str) -> None:
    r = _client(sim, scenario).chat.completions.create(model="m", messages=MSG)
    assert r.choices[0].finish_reason == finish
    if scenario == "empty_output":
        assert r.choices[0].message.content == ""
        assert not r.choices[0].message.tool_calls


@pytest.mark.parametrize(("scenario", "finish"), [("content_filtered", ["content_filter"]),
                                                  ("truncated", ["length"]), ("empty_output", ["stop"]),
                                                  ("incomplete_stream", [])])  # fmt: skip
def test_soft_scenarios_streamed(sim: Simulator, scenario: str, finish: list[str]) -> None:
    chunks = list(_client(sim, scenario).chat.completions.create(model="m", messages=MSG, stream=True))
    assert _finishes(chunks) == finish
    text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    assert (text == "") == (scenario == "empty_output")


def test_incomplete_stream_has_no_done_marker(sim: Simulator) -> None:
    with httpx.stream("POST", sim.base_url + "/chat/completions", json={"model": "m", "messages": MSG, "stream": True},
                      headers={"x-genguard-scenario": "incomplete_stream"}) as r:  # fmt: skip
        body = r.read()
    assert r.status_code == 200
    assert body.count(b"data: ") >= 2
    assert b"[DONE]" not in body
    assert b'"finish_reason":"' not in body


def test_stream_error_raises_inside_the_stream(sim: Simulator) -> None:
    with pytest.raises(openai.APIError, match="server had an error"):
        list(_client(sim, "stream_error").chat.completions.create(model="m", messages=MSG, stream=True))


SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["positive", "negative"]}},
    "required": ["label"],
}


def _check_silent(scenario: str, text: str) -> None:
    if scenario == "invalid_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    elif scenario == "schema_mismatch":
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(json.loads(text), SCHEMA)
    elif scenario == "unexpected_label":
        assert text.strip().lower() not in {"positive", "negative", "neutral", "yes", "no"}
        assert len(text.split()) == 1
    elif scenario == "too_short":
        assert len(text.split()) <= 1
    else:
        assert not re.fullmatch(r"[\w .,'-]+", text)


@pytest.mark.parametrize("scenario", SILENT_SCENARIOS)
@pytest.mark.parametrize("stream", [False, True])
def test_silent_scenarios_look_fine_but_fail_the_check(sim: Simulator, scenario: str, stream: bool) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "label", "schema": SCHEMA}}
    client = _client(sim, scenario)
    if stream:
        chunks = list(
            client.chat.completions.create(model="m", messages=MSG, response_format=fmt, stream=True)
        )  # type: ignore[arg-type]
        text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
        assert _finishes(chunks) == ["stop"]
    else:
        r = client.chat.completions.create(model="m", messages=MSG, response_format=fmt)  # type: ignore[arg-type]
        assert r.choices[0].finish_reason == "stop"
        text = r.choices[0].message.content or ""
    _check_silent(scenario, text)


def test_soft_and_silent_lists_are_all_tested() -> None:
    assert set(CHAT_SOFT_SCENARIOS) == {"content_filtered", "truncated", "empty_output", "incomplete_stream",
                                        "stream_error"}  # fmt: skip
    assert len(SILENT_SCENARIOS) == 5


def test_unknown_scenario_header_is_a_clear_400(sim: Simulator) -> None:
    r = httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSG},
                   headers={"x-genguard-scenario": "made_up"})  # fmt: skip
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "made_up" in message
    assert "rate_limited" in message


def test_flaky_fails_the_first_attempts_then_succeeds(sim: Simulator) -> None:
    sim.configure(scenario="server_error:2")
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-a", max_retries=0)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=MSG)
    assert client.chat.completions.create(model="m", messages=MSG).choices[0].message.content
    # Another body is another request: it fails its own first attempts.
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "other"}])


def test_flaky_lets_the_sdks_own_retries_succeed(sim: Simulator) -> None:
    sim.configure(scenario="unavailable:2", retry_after_s=0.01)
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-a", max_retries=2)
    assert client.chat.completions.create(model="m", messages=MSG).choices[0].finish_reason == "stop"
    stats = sim.stats()
    assert stats["by_scenario"] == {"unavailable": {"503": 2}, "ok": {"200": 1}}
    assert stats["verdict"]["retries"] == 2


def _chaos_run(sim: Simulator) -> list[int]:
    sim.reset()
    return [httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSG}).status_code
            for _ in range(40)]  # fmt: skip


def test_chaos_is_random_but_repeatable_with_a_seed(sim: Simulator) -> None:
    sim.configure(chaos="rate_limited=0.3,server_error=0.2", seed=7)
    first = _chaos_run(sim)
    assert first == _chaos_run(sim)
    assert {200, 429, 500} <= set(first)
    sim.configure(seed=8)
    assert _chaos_run(sim) != first


def test_media_scenarios_do_not_break_chat(sim: Simulator) -> None:
    r = _client(sim, "generation_failed").chat.completions.create(model="m", messages=MSG)
    assert r.choices[0].finish_reason == "stop"
