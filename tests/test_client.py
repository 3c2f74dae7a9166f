"""The synchronous Client over real HTTP against the simulator: every soft code, retries, keys, fallbacks,
deadlines, stalls, cut connections, validators, cost, logging and redaction."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import orjson
import pytest

from genguard import ConfigError, HardFailure, SilentFailure, SoftFailure
from genguard.client.clients import Client
from genguard.client.retry import RetryPolicy
from genguard.client.testing import set_testing
from genguard.core.pricing import cost_usd
from genguard.sim import Simulator

MSGS = [{"role": "user", "content": "Tell me about harbours"}]
FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, jitter=0)
KEY = "sk-test-client-0123456789abcdef"


def client_for(sim: Simulator, scenario: str | None = None, **kw: Any) -> Client:
    headers = {"x-genguard-scenario": scenario} if scenario else None
    kw.setdefault("retry", FAST)
    kw.setdefault("api_key", KEY)
    return Client(sim.base_url, headers=headers, **kw)


def scenario_by_model(
    mapping: dict[str, str], seen: list[dict[str, Any]] | None = None, *, first_only: bool = False
) -> httpx.Client:
    """An httpx client that plays a scenario only for the named models (fallback tests need one model to
    fail and another to answer), or only on the first request, and records every body it sends."""
    sent: list[int] = []

    def hook(request: httpx.Request) -> None:
        body = orjson.loads(request.content)
        sent.append(1)
        if seen is not None:
            seen.append(body)
        scenario = mapping.get(body.get("model")) if not first_only or len(sent) == 1 else None
        if scenario:
            request.headers["x-genguard-scenario"] = scenario

    return httpx.Client(event_hooks={"request": [hook]})


# -- a plain success -------------------------------------------------------------------------------


def test_plain_call_returns_text_usage_cost_and_one_attempt(sim: Simulator) -> None:
    with client_for(sim) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)
    assert o.ok, o.summary()
    assert o.finish_reason == "stop"
    assert o.text
    assert o.usage is not None
    assert o.usage.completion_tokens
    assert o.attempts == 1
    assert [a.code for a in o.history] == [None]
    assert o.extra["model"] == "gpt-4o-mini"
    assert o.extra["cost_usd"] == pytest.approx(cost_usd("gpt-4o-mini", o.usage))
    assert o.to_dict()["cost_usd"] > 0


def test_stream_yields_text_and_the_same_outcome(sim: Simulator) -> None:
    with client_for(sim) as c:
        plain = c.chat(model="gpt-4o-mini", messages=MSGS)
        with c.stream(model="gpt-4o-mini", messages=MSGS) as s:
            pieces = list(s)
        via_chat = c.chat(model="gpt-4o-mini", messages=MSGS, stream=True)
    assert len(pieces) > 3
    assert s.outcome.ok
    assert "".join(pieces) == s.outcome.text == via_chat.text
    assert s.outcome.finish_reason == plain.finish_reason == "stop"
    assert s.outcome.usage is not None  # include_usage is asked for by default


def test_unknown_params_pass_through(sim: Simulator) -> None:
    seen: list[dict[str, Any]] = []
    with client_for(sim, http_client=scenario_by_model({}, seen)) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS, max_tokens=4, seed=3, user="u1")
    assert seen[0]["max_tokens"] == 4
    assert seen[0]["seed"] == 3
    assert seen[0]["user"] == "u1"
    assert o.code == "truncated"


def test_tool_calls_are_ok(sim: Simulator) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]  # fmt: skip
    with client_for(sim) as c:
        for stream in (False, True):
            o = c.chat(model="gpt-4o-mini", messages=MSGS, tools=tools, tool_choice="required", stream=stream)
            assert o.ok, o.summary()
            assert o.finish_reason == "tool_calls"
            assert o.tool_calls
            assert o.tool_calls[0].name == "get_weather"
            assert "city" in o.tool_calls[0].parsed_arguments()


# -- soft failures, plain and streaming ------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        ("content_filtered", "content_filtered"),
        ("truncated", "truncated"),
        ("empty_output", "empty_output"),
        ("stream_error", "stream_error"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_soft_failures_are_named(sim: Simulator, scenario: str, code: str, stream: bool) -> None:
    with client_for(sim, scenario, retry=RetryPolicy(max_attempts=1)) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS, stream=stream)
    assert not o.ok
    assert o.kind == "soft"
    assert o.code == code
    assert o.cause
    assert o.fix
    with pytest.raises(SoftFailure) as info:
        o.raise_for_failure()
    assert info.value.outcome is o


def test_incomplete_stream_keeps_the_partial_text(sim: Simulator) -> None:
    c = client_for(sim, "incomplete_stream", retry=RetryPolicy(max_attempts=1))
    with c, c.stream(model="gpt-4o-mini", messages=MSGS) as s:
        pieces = list(s)
    o = s.outcome
    assert o.code == "incomplete_stream"
    assert pieces
    assert o.text == "".join(pieces)


def test_stream_with_text_shown_is_not_retried_but_chat_stream_is(sim: Simulator) -> None:
    with client_for(sim, "incomplete_stream:1") as c:
        with c.stream(model="gpt-4o-mini", messages=MSGS) as s:
            list(s)
        assert s.outcome.code == "incomplete_stream"
        assert s.outcome.attempts == 1
    sim.reset()
    with client_for(sim, "incomplete_stream:1") as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS, stream=True)
    assert o.ok
    assert o.attempts == 2
    assert [a.code for a in o.history] == ["incomplete_stream", None]


def test_closing_a_stream_early_gives_an_outcome(sim: Simulator) -> None:
    with client_for(sim) as c:
        with c.stream(model="gpt-4o-mini", messages=MSGS) as s:
            first = next(iter(s))
        assert s.outcome.code == "incomplete_stream"
        assert first
        assert "closed" in (s.outcome.message or "")


# -- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_flaky_server_error_is_retried_until_it_succeeds(sim: Simulator, stream: bool) -> None:
    with client_for(sim, "server_error:2") as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS, stream=stream)
    assert o.ok
    assert o.attempts == 3
    assert [a.code for a in o.history] == ["server_error", "server_error", None]
    assert all(a.request_id for a in o.history)
    assert o.history[0].wait_s > 0


def test_rate_limit_waits_as_long_as_the_server_says(sim: Simulator) -> None:
    sim.configure(retry_after_s=0.3)
    with client_for(sim, "rate_limited:1") as c:
        t = time.monotonic()
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
        took = time.monotonic() - t
    assert o.ok
    assert o.history[0].code == "rate_limited"
    assert o.history[0].wait_s == pytest.approx(0.3)
    assert took >= 0.3
    assert sim.stats()["verdict"]["ok"]


def test_set_testing_removes_the_waits(sim: Simulator) -> None:
    sim.configure(retry_after_s=5)
    with set_testing(True), client_for(sim, "rate_limited:2") as c:
        t = time.monotonic()
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
        assert time.monotonic() - t < 2
    assert o.ok
    assert o.attempts == 3


def test_wait_beyond_max_wait_fails_at_once_with_the_wait(sim: Simulator) -> None:
    sim.configure(retry_after_s=30)
    with client_for(sim, "rate_limited", retry=RetryPolicy(max_wait=1)) as c:
        t = time.monotonic()
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
    assert time.monotonic() - t < 5
    assert o.code == "rate_limited"
    assert o.retry_after_s == 30
    assert o.attempts == 1
    assert "max_wait" in (o.message or "")
    with pytest.raises(HardFailure):
        o.raise_for_failure()


@pytest.mark.parametrize("scenario", ["quota_exceeded", "content_filtered", "auth_failed", "bad_request"])
def test_what_cannot_succeed_is_not_retried(sim: Simulator, scenario: str) -> None:
    with client_for(sim, scenario) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
    assert o.code == scenario
    assert o.attempts == 1
    assert sim.stats()["requests"] == 1


def test_deadline_bounds_the_whole_call(sim: Simulator) -> None:
    policy = RetryPolicy(max_attempts=10, deadline=0.6, backoff_base=0.01, jitter=0)
    with client_for(sim, "timeout", retry=policy, timeout=5) as c:
        t = time.monotonic()
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
        took = time.monotonic() - t
    assert o.code == "timeout"
    assert took < 3
    assert "deadline" in (o.message or "")


def test_stall_limit_ends_a_silent_stream_with_partial_text(sim: Simulator) -> None:
    with client_for(sim, "timeout", stall_timeout=0.3, retry=RetryPolicy(max_attempts=1)) as c:
        t = time.monotonic()
        with c.stream(model="gpt-4o-mini", messages=MSGS) as s:
            pieces = list(s)
        took = time.monotonic() - t
    assert s.outcome.code == "timeout"
    assert pieces
    assert s.outcome.text == "".join(pieces)
    assert took < 3


def test_connection_cut_mid_stream_is_an_outcome_not_an_exception(sim: Simulator) -> None:
    with client_for(sim, "connection_error", retry=RetryPolicy(max_attempts=1)) as c:
        with c.stream(model="gpt-4o-mini", messages=MSGS) as s:
            pieces = list(s)
        plain = c.chat(model="gpt-4o-mini", messages=MSGS)
    assert s.outcome.code in ("incomplete_stream", "connection_error")
    assert s.outcome.text == "".join(pieces)
    assert pieces
    assert plain.code == "connection_error"


def test_refused_connection_is_an_outcome() -> None:
    with Client("http://127.0.0.1:9/v1", api_key=KEY, retry=RetryPolicy(max_attempts=1)) as c:
        o = c.chat(model="m", messages=MSGS)
    assert o.code == "connection_error"


# -- keys ----------------------------------------------------------------------------------------


def test_refused_key_rotates_to_the_next_and_stays_skipped(sim: Simulator) -> None:
    good = "sk-good-key-abcdefghijkl"
    bad = "sk-bad-key-abcdefghijklm"
    sim.configure(api_keys=(good,))
    with client_for(sim, api_key=[bad, good]) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
        again = c.chat(model="gpt-4o-mini", messages=MSGS)
    assert o.ok
    assert [a.code for a in o.history] == ["auth_failed", None]
    assert again.attempts == 1
    assert bad not in o.to_json()


def test_each_request_carries_its_own_key_and_both_clients_headers(sim: Simulator) -> None:
    good = "sk-good-key-abcdefghijkl"
    bad = "sk-bad-key-abcdefghijklm"
    sim.configure(api_keys=(good,))
    sent: list[httpx.Headers] = []

    def hook(request: httpx.Request) -> None:
        sent.append(httpx.Headers(request.headers))
        request.headers["x-changed-by-hook"] = "1"  # must not reach the next request

    http = httpx.Client(headers={"x-app": "b"}, event_hooks={"request": [hook]})
    with (
        http,
        Client(sim.base_url, api_key=[bad, good], headers={"x-team": "a"}, retry=FAST, http_client=http) as c,
    ):
        first = c.chat(model="gpt-4o-mini", messages=MSGS)
        with c.stream(model="gpt-4o-mini", messages=MSGS) as s:
            list(s)
    assert first.ok
    assert s.outcome.ok
    assert [h["authorization"] for h in sent] == [f"Bearer {bad}", f"Bearer {good}", f"Bearer {good}"]
    assert all((h["x-app"], h["x-team"], h["content-type"]) == ("b", "a", "application/json") for h in sent)
    assert all("x-changed-by-hook" not in h for h in sent)


def test_a_timeout_changed_after_creation_applies_to_the_next_call(sim: Simulator) -> None:
    with client_for(sim, "timeout", timeout=30, retry=RetryPolicy(max_attempts=1)) as c:
        c.timeout = 0.3
        t = time.monotonic()
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
        took = time.monotonic() - t
    assert o.code == "timeout"
    assert took < 3


def test_exhausted_quota_rotates_to_the_next_key(sim: Simulator) -> None:
    sim.configure(quota_tokens=5)
    with client_for(sim, api_key="sk-first-key-abcdefghij") as c:
        c.chat(model="gpt-4o-mini", messages=MSGS)  # spends the first key's quota
    with client_for(sim, api_key=["sk-first-key-abcdefghij", "sk-second-key-abcdefgh"]) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
    assert o.history[0].code == "quota_exceeded"
    assert o.ok


def test_missing_key_when_the_server_wants_one_is_a_config_error(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GENGUARD_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    sim.configure(api_keys=("sk-needed-abcdefghijkl",))
    with Client(sim.base_url, retry=FAST) as c, pytest.raises(ConfigError, match="GENGUARD_API_KEY"):
        c.chat(model="gpt-4o-mini", messages=MSGS)


@pytest.mark.parametrize("stream", [False, True])
def test_a_password_in_the_base_url_never_shows_in_the_missing_key_error(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    for name in ("GENGUARD_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    sim.configure(api_keys=("sk-needed-abcdefghijkl",))
    host = sim.base_url.removeprefix("http://")
    with (
        Client(f"http://admin:pw-hunter2-secret@{host}", retry=FAST) as c,
        pytest.raises(ConfigError) as raised,
    ):
        c.chat(model="gpt-4o-mini", messages=MSGS, stream=stream)
    message = str(raised.value)
    assert "hunter2" not in message
    assert "admin" not in message
    assert "hunter2" not in repr(raised.value.args)
    # The server is still named, and the message says how to give a key from code and from the command line.
    assert f"http://{host}" in message
    for way in ("api_key=...", "--api-key", "GENGUARD_API_KEY", "OPENAI_API_KEY"):
        assert way in message


def test_a_given_http_client_is_used_and_left_open_a_made_one_is_closed(sim: Simulator) -> None:
    seen: list[dict[str, Any]] = []
    http = scenario_by_model({}, seen)
    with client_for(sim, http_client=http) as c:
        assert c.chat(model="gpt-4o-mini", messages=MSGS).ok
    assert len(seen) == 1
    assert not http.is_closed  # the caller's to close
    http.close()
    with client_for(sim) as made:
        assert isinstance(made.http, httpx.Client)
    assert made.http.is_closed


def test_an_async_http_client_is_refused_at_once(sim: Simulator) -> None:
    with pytest.raises(TypeError, match=r"httpx\.Client\b"):
        Client(sim.base_url, api_key=KEY, http_client=httpx.AsyncClient())  # type: ignore[arg-type]


def test_keys_come_from_the_environment(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGUARD_API_KEY", "sk-env-key-abcdefghijk")
    monkeypatch.setenv("GENGUARD_BASE_URL", sim.base_url)
    sim.configure(api_keys=("sk-env-key-abcdefghijk",))
    with Client(retry=FAST) as c:
        assert c.base_url == sim.base_url
        assert c.chat(model="gpt-4o-mini", messages=MSGS).ok


# -- fallbacks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["unavailable", "model_not_found", "server_error"])
def test_fallback_model_rescues_a_failing_one(sim: Simulator, scenario: str) -> None:
    http = scenario_by_model({"big-model": scenario})
    with client_for(sim, fallbacks=["gpt-4o-mini"], http_client=http) as c:
        o = c.chat(model="big-model", messages=MSGS)
    http.close()
    assert o.ok
    assert o.extra["model"] == "gpt-4o-mini"
    assert o.history[0].model == "big-model"
    assert o.history[-1].model == "gpt-4o-mini"
    tries_on_first = sum(1 for a in o.history if a.model == "big-model")
    assert tries_on_first == (FAST.max_attempts if scenario != "model_not_found" else 1)


def test_no_fallback_on_codes_the_policy_does_not_name(sim: Simulator) -> None:
    http = scenario_by_model({"big-model": "prompt_blocked"})
    with client_for(sim, fallbacks=["gpt-4o-mini"], http_client=http) as c:
        o = c.chat(model="big-model", messages=MSGS)
    http.close()
    assert o.code == "prompt_blocked"
    assert o.attempts == 1


# -- validators, re-ask, max_tokens ----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_validator_catches_a_silent_failure_and_logs_the_output(
    sim: Simulator, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="genguard")
    with client_for(sim, "invalid_json") as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS, validate="json", stream=stream)
    assert o.kind == "silent"
    assert o.code == "invalid_json"
    assert o.text
    assert o.attempts == 1
    assert o.text[:20] in caplog.text
    with pytest.raises(SilentFailure):
        o.raise_for_failure()


def test_labels_and_client_level_validators(sim: Simulator) -> None:
    with client_for(sim, validate={"type": "object"}) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS, response_format={"type": "json_object"})
        assert o.ok, o.summary()
        assert isinstance(o.parsed, dict)
        labelled = c.chat(model="gpt-4o-mini", messages=MSGS, labels=["yes", "no"])
    assert labelled.code == "unexpected_label"


def test_reask_appends_the_validation_error(sim: Simulator) -> None:
    seen: list[dict[str, Any]] = []
    http = scenario_by_model({"gpt-4o-mini": "invalid_json"}, seen, first_only=True)
    policy = RetryPolicy(max_attempts=3, reask_on_silent=1)
    with client_for(sim, http_client=http, retry=policy) as c:
        o = c.chat(
            model="gpt-4o-mini", messages=MSGS, validate="json", response_format={"type": "json_object"}
        )
    http.close()
    assert o.ok, o.summary()
    assert [a.code for a in o.history] == ["invalid_json", None]
    asked = seen[1]["messages"]
    assert asked[: len(MSGS)] == MSGS
    assert asked[-2]["role"] == "assistant"
    assert "rejected" in asked[-1]["content"]


def test_truncated_raises_max_tokens_once(sim: Simulator) -> None:
    seen: list[dict[str, Any]] = []
    policy = RetryPolicy(raise_max_tokens_on_truncated=True)
    with client_for(sim, http_client=scenario_by_model({}, seen), retry=policy) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS, max_tokens=2)
    assert [b["max_tokens"] for b in seen] == [2, 4]
    assert o.code == "truncated"
    assert o.attempts == 2
    assert o.usage is not None
    assert o.usage.completion_tokens == 6  # summed over both attempts


# -- logging, hooks and redaction --------------------------------------------------------------------


def test_one_log_line_per_attempt_and_hooks_see_each(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="genguard")
    seen = []
    with client_for(sim, "server_error:1", hooks=[seen.append]) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
    lines = [r.getMessage() for r in caplog.records if r.name == "genguard"]
    assert len(lines) == 2
    assert "code=server_error" in lines[0]
    assert o.history[0].request_id in lines[0]
    assert "code=ok" in lines[1]
    assert [a.number for a in seen] == [1, 2]


def test_key_never_appears_in_any_artifact(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-live-TOPSECRET-abcdefghijklmnop"
    sim.configure(api_keys=("sk-other-abcdefghijklmn",))
    with client_for(sim, api_key=secret) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
        s = c.chat(model="gpt-4o-mini", messages=MSGS, stream=True)
    assert o.code == s.code == "auth_failed"
    with pytest.raises(HardFailure) as info:
        o.raise_for_failure()
    artifacts = [caplog.text, o.to_json(), s.to_json(), str(info.value), repr(o), repr(o.history)]
    for artifact in artifacts:
        assert secret not in artifact
        assert "TOPSECRET" not in artifact


# -- the generic loop other endpoints reuse ------------------------------------------------------------


def test_send_with_retries_drives_any_request(sim: Simulator) -> None:
    from genguard.core.classify import classify_http

    def parse(response: httpx.Response) -> Any:
        return classify_http(response.status_code, response.headers, response.content, endpoint="image")

    with client_for(sim) as c:
        o = c.send_with_retries(
            lambda key, model: c.build_request(
                "POST",
                "/images/generations",
                key=key,
                json={"model": model, "prompt": "a lighthouse"},
                headers={"x-genguard-scenario": "server_error:1"},
            ),
            parse,
            model="gpt-image-1",
            endpoint="image",
        )
    assert o.ok, o.summary()
    assert [a.code for a in o.history] == ["server_error", None]
    assert o.endpoint == "image"


# -- x-should-retry, from the simulator -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "scenario", "attempts"),
    [("false", "server_error", 1), ("true", "bad_request", 3), ("auto", "quota_exceeded", 1),
     ("auto", "unavailable", 3)],
)  # fmt: skip
def test_x_should_retry_is_obeyed(sim: Simulator, value: str, scenario: str, attempts: int) -> None:
    sim.configure(should_retry=value)
    with client_for(sim, scenario) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
    assert o.attempts == attempts
    assert o.code == scenario
    assert sim.stats()["requests"] == attempts
    assert sim.stats()["verdict"]["ok"]
