"""Models have a context window, and the simulator a body size limit: a prompt too long for the model is refused
in each dialect's words (which genguard reads as ``context_length_exceeded``), and an upload past the limit
gets a 413 without the simulator keeping it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from genguard.client.clients import Client
from genguard.client.retry import RetryPolicy
from genguard.core.classify import classify_http
from genguard.sim import Simulator
from genguard.sim._chatreq import prompt_tokens
from genguard.sim._config import DIALECTS, MAX_BODY_BYTES, SimConfig, family_window


def _messages(chars: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "word " * (chars // 5)}]


def _post(sim: Simulator, messages: list[dict[str, Any]], *, model: str = "gpt-4o", dialect: str = "openai",
          **extra: Any) -> httpx.Response:  # fmt: skip
    return httpx.post(sim.base_url + "/chat/completions", timeout=60,
                      json={"model": model, "messages": messages, **extra},
                      headers={"x-genguard-dialect": dialect})  # fmt: skip


def _error(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body: dict[str, Any] = r.json()["error"]
    return body


def test_a_prompt_past_the_model_s_window_is_refused_as_openai_refuses_it(sim: Simulator) -> None:
    long = _messages(520_000)  # 130,000 tokens at four characters a token
    tokens = prompt_tokens(long)
    err = _error(_post(sim, long))
    assert err == {"message": f"This model's maximum context length is 128000 tokens. However, your messages "
                              f"resulted in {tokens} tokens. Please reduce the length of the messages.",
                   "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}  # fmt: skip
    assert _post(sim, long, model="gpt-4.1").status_code == 200  # a family with a larger window
    assert sim.stats()["by_scenario"]["context_length_exceeded"] == {"400": 1}


def test_max_tokens_counts_against_the_window_as_openai_counts_it(sim: Simulator) -> None:
    prompt = _messages(400_000)
    tokens = prompt_tokens(prompt)
    assert _post(sim, prompt).status_code == 200
    err = _error(_post(sim, prompt, max_tokens=30_000))
    assert err["message"] == (f"This model's maximum context length is 128000 tokens. However, you requested "
                              f"{tokens + 30_000} tokens ({tokens} in the messages, 30000 in the completion). "
                              "Please reduce the length of the messages or completion.")  # fmt: skip
    assert _post(sim, prompt, max_completion_tokens=30_000).status_code == 400
    assert _post(sim, prompt, max_completion_tokens=128_000 - tokens).status_code == 200


def test_tool_definitions_count_as_the_functions(sim: Simulator) -> None:
    sim.configure(context_window=200)
    tool = {"type": "function", "function": {"name": "f", "description": "d" * 1000, "parameters": {}}}
    err = _error(_post(sim, [{"role": "user", "content": "hi"}], tools=[tool]))
    assert "in the functions). Please reduce the length of the messages or functions." in err["message"]


def test_the_count_in_the_refusal_is_the_count_usage_reports(sim: Simulator) -> None:
    prompt = _messages(2_000)
    usage = _post(sim, prompt).json()["usage"]["prompt_tokens"]
    assert usage == prompt_tokens(prompt)
    sim.configure(context_window=usage - 1)
    assert f"resulted in {usage} tokens" in _error(_post(sim, prompt))["message"]
    sim.configure(context_window=usage)
    assert _post(sim, prompt).status_code == 200


def test_the_window_is_configurable_for_every_model_and_per_model(sim: Simulator) -> None:
    prompt = _messages(8_000)  # about 2,000 tokens
    sim.configure(context_window=1_000)
    assert "maximum context length is 1000 tokens" in _error(_post(sim, prompt))["message"]
    sim.configure(context_window_for={"gpt-4o": 4_000})
    assert _post(sim, prompt).status_code == 200
    assert _post(sim, prompt, model="gpt-4o-mini").status_code == 400
    with Simulator(context_window_for=["gpt-4o=1500"]) as other:
        assert "is 1500 tokens" in _error(_post(other, prompt))["message"]


def test_family_windows() -> None:
    assert [family_window(m) for m in ("gpt-4o-mini", "gpt-4.1-mini", "o3-mini", "claude-sonnet-4",
                                       "gemini-2.5-pro", "openai/gpt-4o", "gpt-4", "my-model")] == [
        128_000, 1_047_576, 200_000, 200_000, 1_048_576, 128_000, 8_192, 128_000]  # fmt: skip
    assert SimConfig(context_window=10).window_of("gpt-4.1") == 10
    for bad in ({"context_window": 0}, {"context_window_for": ["gpt-4o=lots"]}, {"max_body_bytes": 0}):
        with pytest.raises(ValueError, match=r"context_window|max_body_bytes"):
            SimConfig(**bad)


# Each dialect's words, and what part of the request it counts (Google, Mistral and Ollama the input alone).
WORDS = {
    "openai": "This model's maximum context length is 1000 tokens. However, you requested",
    "azure": "This model's maximum context length is 1000 tokens. However, you requested",
    "vllm": "This model's maximum context length is 1000 tokens. However, you requested",
    "openrouter": "This endpoint's maximum context length is 1000 tokens. However, you requested about",
    "anthropic": "prompt is too long: ",
    "google": "The input token count (",
    "mistral": "Prompt contains ",
    "ollama": "prompt too long; exceeded max context length by ",
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_dialect_words_it_its_way_and_genguard_reads_every_one(sim: Simulator, dialect: str) -> None:
    sim.configure(context_window=1_000)
    r = _post(sim, _messages(6_000), dialect=dialect, max_tokens=10)
    assert r.status_code == 400
    assert WORDS[dialect] in r.text
    outcome = classify_http(r.status_code, r.headers, r.content, endpoint="chat")
    assert (outcome.code, outcome.retryable) == ("context_length_exceeded", False)
    if dialect == "google":
        assert r.json()[0]["error"]["status"] == "INVALID_ARGUMENT"
        assert "exceeds the maximum number of tokens allowed (1000)." in r.text


@pytest.mark.parametrize("dialect", DIALECTS)
def test_max_tokens_pushes_past_the_window_where_the_dialect_counts_it(sim: Simulator, dialect: str) -> None:
    sim.configure(context_window=1_000)
    r = _post(sim, _messages(2_000), dialect=dialect, max_tokens=900)  # about 500 + 900 tokens
    if dialect in ("google", "mistral", "ollama"):
        assert r.status_code == 200
    else:
        assert r.status_code == 400
        assert classify_http(r.status_code, r.headers, r.content).code == "context_length_exceeded"
    if dialect == "anthropic":
        assert "input length and `max_tokens` exceed context limit: " in r.text


def test_the_sdk_raises_bad_request_and_genguard_does_not_retry(sim: Simulator) -> None:
    sim.configure(context_window=1_000)
    sdk = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="gpt-4o", messages=_messages(8_000), stream=True)  # type: ignore[arg-type]
    assert info.value.code == "context_length_exceeded"
    with Client(sim.base_url, api_key="sk-test", retry=RetryPolicy(max_attempts=3)) as c:
        o = c.chat(model="gpt-4o", messages=_messages(8_000))
    assert (o.code, o.attempts) == ("context_length_exceeded", 1)


def test_the_scenario_speaks_of_the_model_s_own_window(sim: Simulator) -> None:
    r = httpx.post(sim.base_url + "/chat/completions", headers={"x-genguard-scenario": "context_length_exceeded"},
                   json={"model": "gpt-4.1", "messages": _messages(100)})  # fmt: skip
    assert "maximum context length is 1047576 tokens" in _error(r)["message"]


def test_a_message_longer_than_openai_takes_is_refused_whatever_the_window(sim: Simulator) -> None:
    sim.configure(context_window=10**9)
    text = "x" * (10 * 1024 * 1024 + 1)
    err = _error(_post(sim, [{"role": "user", "content": text}], model="gemini-2.5-pro"))
    assert err["code"] == "string_above_max_length"
    assert err["message"] == ("Invalid 'messages[0].content': string too long. Expected a string with maximum "
                              f"length 10485760, but got a string with length {len(text)} instead.")  # fmt: skip


def test_a_52_mb_prompt_is_not_answered(sim: Simulator) -> None:
    r = _post(sim, [{"role": "user", "content": "y" * 52_000_000}])
    assert r.status_code == 400
    assert classify_http(r.status_code, r.headers, r.content).code == "context_length_exceeded"
    big = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "' + b"z" * MAX_BODY_BYTES + b'"}]}'
    r = httpx.post(sim.base_url + "/chat/completions", content=big, timeout=60,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 413
    assert classify_http(r.status_code, r.headers, r.content).code == "request_too_large"


# -- the body size limit ---------------------------------------------------------------------------------


@pytest.fixture
def small(sim: Simulator) -> Simulator:
    sim.configure(max_body_bytes=100_000)
    return sim


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_body_past_the_limit_gets_a_413_in_each_dialect(small: Simulator, dialect: str) -> None:
    r = _post(small, _messages(150_000), dialect=dialect)
    assert r.status_code == 413
    outcome = classify_http(r.status_code, r.headers, r.content)
    assert (outcome.code, outcome.retryable) == ("request_too_large", False)
    if dialect == "openai":
        assert r.json()["error"]["code"] == "request_too_large"
        assert "more than the 100000 bytes" in r.json()["error"]["message"]
    assert small.stats()["by_scenario"] == {"request_too_large": {"413": 1}}
    assert _post(small, _messages(90_000), dialect=dialect).status_code == 200


def test_a_chunked_upload_past_the_limit_gets_a_413_too(small: Simulator) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        for _ in range(50):
            yield b"a" * 10_000
        yield b'"}]}'

    r = httpx.post(
        small.base_url + "/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    # The header variant cannot turn a body that is too large into a rate limit.
    r = httpx.post(small.base_url + "/chat/completions", content=b"{" * 200_000,
                   headers={"x-genguard-variant": "429"})  # fmt: skip
    assert r.status_code == 413


def test_the_sdk_and_genguard_see_the_413(small: Simulator) -> None:
    sdk = openai.OpenAI(base_url=small.base_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model="gpt-4o", messages=_messages(150_000))  # type: ignore[arg-type]
    assert info.value.status_code == 413
    with Client(small.base_url, api_key="sk-test", retry=RetryPolicy(max_attempts=3)) as c:
        o = c.chat(model="gpt-4o", messages=_messages(150_000))
    assert (o.code, o.attempts) == ("request_too_large", 1)


def _peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the server's peak memory from /proc")
def test_simulate_flags_and_a_huge_upload_costs_the_server_no_memory() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "genguard", "simulate", "--port", "0", "--context-window", "1000",
         "--context-window-for", "gpt-4.1=5000", "--max-body-bytes", "1000000"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip().removeprefix("listening on ")
        url = base + "/chat/completions"
        body = {"messages": _messages(8_000)}
        assert httpx.post(url, json={"model": "gpt-4o", **body}).status_code == 400
        assert httpx.post(url, json={"model": "gpt-4.1", **body}).status_code == 200
        before = _peak_rss_kb(proc.pid)

        def upload() -> Iterator[bytes]:
            yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
            for _ in range(300):  # 300 MB, sent without ever being whole on either side
                yield b"b" * 1_000_000
            yield b'"}]}'

        started = time.monotonic()
        r = httpx.post(url, content=upload(), headers={"content-type": "application/json"}, timeout=120)
        assert r.status_code == 413, time.monotonic() - started
        assert _peak_rss_kb(proc.pid) - before < 50_000  # kB: the 300 MB were drained, not kept
    finally:
        proc.terminate()
        proc.wait(10)


def test_help_lists_the_context_flags() -> None:
    from click.testing import CliRunner

    from genguard.cli import cli

    out = CliRunner().invoke(cli, ["simulate", "--help"]).output
    for flag in ("--context-window", "--context-window-for", "--max-body-bytes"):
        assert flag in out


def test_json_bodies_stay_readable_after_the_bounded_read(sim: Simulator) -> None:
    # The body is read once, in bounded pieces: the handlers still see all of it.
    r = _post(sim, [{"role": "user", "content": "é" * 30_000}], max_tokens=5)
    assert r.status_code == 200
    assert orjson.loads(r.content)["usage"]["completion_tokens"] == 5


def test_a_media_upload_past_the_limit_gets_a_413_too(small: Simulator) -> None:
    files = {"input_reference": ("ref.png", b"\x89PNG" + b"0" * 200_000, "image/png")}
    r = httpx.post(small.base_url + "/videos", data={"model": "sora-2", "prompt": "a cat"}, files=files)
    assert r.status_code == 413
    assert (
        httpx.post(small.base_url + "/videos", data={"model": "sora-2", "prompt": "a cat"}).status_code == 200
    )
