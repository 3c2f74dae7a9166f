"""Simulator behaviours real providers have and clients must meet: OpenAI's 429 "Request too large",
Anthropic's rate-limit headers, x-should-retry, an endpoint with no rate-limit headers (and doctor's check
of it), and "the same request" across key rotation and fallbacks."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from genguard.cli import cli
from genguard.client.clients import Client
from genguard.client.retry import RetryPolicy
from genguard.core.classify import classify_http
from genguard.core.waits import reset_wait
from genguard.sim import Simulator
from genguard.sim._config import DIALECTS, ScenarioError, SimConfig

KEY = "sk-gaps-0123456789abcdef"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, jitter=0.0)


def post(sim: Simulator, *, key: str = KEY, body: Any = None, **headers: str) -> httpx.Response:
    hdrs = {"authorization": f"Bearer {key}", **{k.replace("_", "-"): v for k, v in headers.items()}}
    return httpx.post(f"{sim.base_url}/chat/completions", json=body or BODY, headers=hdrs)


# -- request_too_large as OpenAI's 429 ------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_request_too_large_429_variant_in_every_dialect(sim: Simulator, dialect: str) -> None:
    r = post(
        sim, x_genguard_scenario="request_too_large", x_genguard_variant="429", x_genguard_dialect=dialect
    )
    # Anthropic has no such 429: its request_too_large is always a 413.
    assert r.status_code == (413 if dialect == "anthropic" else 429)
    assert "retry-after" not in r.headers
    o = classify_http(r.status_code, r.headers, r.content)
    assert (o.code, o.retryable) == ("request_too_large", False)


def test_default_request_too_large_is_a_413(sim: Simulator) -> None:
    r = post(sim, x_genguard_scenario="request_too_large")
    assert r.status_code == 413


def test_openai_429_too_large_body_is_openai_s(sim: Simulator) -> None:
    r = post(sim, x_genguard_scenario="request_too_large", x_genguard_variant="429")
    err = orjson.loads(r.content)["error"]
    assert (err["type"], err["code"], err["param"]) == ("tokens", "rate_limit_exceeded", None)
    assert err["message"].startswith("Request too large for gpt-4o in organization ")
    assert "Requested 31538" in err["message"]


def test_a_prompt_over_the_tpm_limit_says_how_many_tokens_it_asked_for(sim: Simulator) -> None:
    sim.configure(tpm=100)
    big = {**BODY, "messages": [{"role": "user", "content": "word " * 400}]}
    r = post(sim, body=big)
    assert r.status_code == 429
    message = orjson.loads(r.content)["error"]["message"]
    assert "Limit 100, Requested " in message
    assert int(message.split("Requested ")[1].split(".")[0]) > 100
    assert post(sim).status_code == 200  # a small request still passes: nothing was charged
    assert sim.stats()["by_scenario"]["request_too_large"] == {"429": 1}


# -- rate-limit headers ----------------------------------------------------------------------------------


def test_anthropic_dialect_sends_anthropic_ratelimit_headers_with_rfc3339_resets(sim: Simulator) -> None:
    sim.configure(rpm=2, dialect="anthropic")
    before = time.time()
    first = post(sim)
    post(sim)
    limited = post(sim)
    h = first.headers
    for bucket in ("requests", "tokens", "input-tokens", "output-tokens"):
        assert f"anthropic-ratelimit-{bucket}-limit" in h
        assert f"anthropic-ratelimit-{bucket}-remaining" in h
        reset = datetime.fromisoformat(h[f"anthropic-ratelimit-{bucket}-reset"])
        assert reset.tzinfo is not None
        assert reset.timestamp() >= before - 1
        assert h[f"anthropic-ratelimit-{bucket}-reset"].endswith("Z")
    assert not [k for k in h if k.startswith("x-ratelimit-")]
    assert (h["anthropic-ratelimit-requests-limit"], h["anthropic-ratelimit-requests-remaining"]) == (
        "2",
        "1",
    )
    assert limited.status_code == 429
    assert limited.headers["anthropic-ratelimit-requests-remaining"] == "0"
    # genguard reads the wait back from the timestamps alone, about the half minute one request takes.
    wait = reset_wait({k: v for k, v in limited.headers.items() if k.startswith("anthropic-")})
    assert wait is not None
    assert 20 < wait <= 61


def test_headers_follow_the_per_request_dialect(sim: Simulator) -> None:
    assert "anthropic-ratelimit-requests-limit" in post(sim, x_genguard_dialect="anthropic").headers
    assert "x-ratelimit-limit-requests" in post(sim).headers


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_rate_limit_headers_can_be_left_out(sim: Simulator, dialect: str) -> None:
    sim.configure(ratelimit_headers=False, rpm=1, dialect=dialect)
    ok, limited = post(sim), post(sim)
    assert ok.status_code == 200
    assert limited.status_code == 429
    for r in (ok, limited):
        assert not [k for k in r.headers if "ratelimit" in k]
        assert r.headers["x-request-id"].startswith("req_")
    assert "retry-after" in limited.headers  # the limit still says how long to wait


def test_doctor_fails_the_rate_limit_line_when_headers_are_missing(sim: Simulator) -> None:
    sim.configure(ratelimit_headers=False)
    result = CliRunner().invoke(cli, ["doctor", "--base-url", sim.base_url, "--json", "--api-key", KEY])
    checks = {c["name"]: c for c in orjson.loads(result.stdout)["checks"]}
    assert result.exit_code == 1
    line = checks["rate-limit headers present"]
    assert line["ok"] is False
    assert line["fix"]
    assert all(c["ok"] for name, c in checks.items() if name != "rate-limit headers present")


def test_doctor_accepts_anthropic_rate_limit_headers(sim: Simulator) -> None:
    sim.configure(dialect="anthropic")
    result = CliRunner().invoke(cli, ["doctor", "--base-url", sim.base_url, "--json", "--api-key", KEY])
    checks = {c["name"]: c["ok"] for c in orjson.loads(result.stdout)["checks"]}
    assert checks["rate-limit headers present"] is True


def test_a_short_rate_window_lets_only_its_share_through_at_once(sim: Simulator) -> None:
    sim.configure(rpm=120, rate_window_s=1.0)  # 2 a second, at most 2 at once
    first, second, third = post(sim), post(sim), post(sim)
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["x-ratelimit-limit-requests"] == "120"
    assert 0 < float(third.headers["retry-after"]) <= 0.5
    time.sleep(float(third.headers["retry-after"]))
    assert post(sim).status_code == 200


# -- x-should-retry --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "scenario", "header"),
    [("auto", "rate_limited", "true"), ("auto", "quota_exceeded", "false"), ("auto", "prompt_blocked", "false"),
     ("false", "server_error", "false"), ("true", "bad_request", "true"), ("off", "server_error", None)],
)  # fmt: skip
def test_should_retry_header(sim: Simulator, setting: str, scenario: str, header: str | None) -> None:
    sim.configure(should_retry=setting)
    r = post(sim, x_genguard_scenario=scenario)
    assert r.headers.get("x-should-retry") == header
    assert post(sim).headers.get("x-should-retry") is None  # never on a success


def test_should_retry_per_request_header_overrides_the_setting(sim: Simulator) -> None:
    r = post(sim, x_genguard_scenario="server_error", x_genguard_should_retry="false")
    assert r.headers["x-should-retry"] == "false"


def test_verdict_follows_the_server_s_should_retry(sim: Simulator) -> None:
    # The server said "do not retry" on a 500: a client that retries anyway is blamed for it.
    sim.configure(should_retry="false")
    post(sim, x_genguard_scenario="server_error")
    time.sleep(0.12)
    post(sim, x_genguard_scenario="server_error")
    verdict = sim.stats()["verdict"]
    assert verdict["retried_non_retryable"] == 1
    assert not verdict["ok"]


def test_should_retry_setting_is_validated() -> None:
    with pytest.raises(ScenarioError, match="should_retry"):
        SimConfig(should_retry="maybe")
    with pytest.raises(ScenarioError, match="rate_window_s"):
        SimConfig(rate_window_s=0)


# -- the same request ------------------------------------------------------------------------------------


def test_flaky_counts_a_key_rotation_as_an_attempt_of_the_same_request(sim: Simulator) -> None:
    good, refused = "sk-good-0123456789abcd", "sk-refused-0123456789ab"
    sim.configure(api_keys=(good,))
    policy = RetryPolicy(max_attempts=4, backoff_base=0.11, jitter=0.0)
    with Client(sim.base_url, api_key=[refused, good], retry=policy,
                headers={"x-genguard-scenario": "server_error:2"}) as c:  # fmt: skip
        o = c.chat(model="gpt-4o-mini", messages=BODY["messages"])
    # The 401 on the refused key is turned away at the door and plays no scenario; the second key then
    # meets the request's two failures, and a change of key does not start the count again.
    assert [a.code for a in o.history] == ["auth_failed", "server_error", "server_error", None]
    verdict = sim.stats()["verdict"]
    assert verdict["ok"], verdict["problems"]
    assert verdict["key_rotations"] == 1
    assert verdict["max_attempts"] == 4


def test_the_same_key_after_quota_is_blamed_another_key_is_not(sim: Simulator) -> None:
    post(sim, x_genguard_scenario="quota_exceeded")
    time.sleep(0.12)
    post(sim, key="sk-another-key-0123456789", x_genguard_scenario="quota_exceeded")
    verdict = sim.stats()["verdict"]
    assert (verdict["key_rotations"], verdict["retried_non_retryable"]) == (1, 0)
    post(sim, key="sk-another-key-0123456789", x_genguard_scenario="quota_exceeded")
    assert sim.stats()["verdict"]["retried_non_retryable"] == 1


def test_a_fallback_model_is_a_new_request(sim: Simulator) -> None:
    with Client(sim.base_url, api_key=KEY, retry=RetryPolicy(max_attempts=1),
                headers={"x-genguard-scenario": "unavailable:1"}) as c:  # fmt: skip
        o = c.chat(model="gpt-4o", messages=BODY["messages"], fallbacks=["gpt-4o-mini"])
    # The fallback's body names another model: a new request, whose own first attempt fails too.
    assert [(a.model, a.code) for a in o.history] == [
        ("gpt-4o", "unavailable"),
        ("gpt-4o-mini", "unavailable"),
    ]
    assert sim.stats()["verdict"]["retries"] == 0
