"""A flaky count (``NAME:N``) follows the conversation: a re-ask and a retry with a raised ``max_tokens`` are
attempts of the same request, so genguard's recovery policies can be shown working against the simulator."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from genguard.client.clients import Client
from genguard.client.retry import RetryPolicy
from genguard.sim import Simulator

QUESTION = {"role": "user", "content": "Is this review positive or negative? 'Loved it.'"}
LABELS = ["positive", "negative"]


def _client(sim: Simulator, retry: RetryPolicy, **headers: str) -> Client:
    return Client(sim.base_url, api_key="sk-test", retry=retry,
                  headers={k.replace("_", "-"): v for k, v in headers.items()})  # fmt: skip


def test_a_re_ask_recovers_from_a_wrong_label(sim: Simulator) -> None:
    policy = RetryPolicy(max_attempts=1, reask_on_silent=1)
    with _client(sim, policy, x_genguard_scenario="unexpected_label:1", x_genguard_reply="positive") as c:
        o = c.chat(model="gpt-4o-mini", messages=[QUESTION], labels=LABELS)
    assert o.ok, o.message
    assert (o.text, o.attempts) == ("positive", 2)
    assert [a.code for a in o.history] == ["unexpected_label", None]
    stats = sim.stats()
    assert stats["by_scenario"] == {"unexpected_label": {"200": 1}, "ok": {"200": 1}}
    # The re-ask changed the body: it is the cure, not a blind retry of a silent failure.
    assert stats["verdict"]["ok"], stats["verdict"]["problems"]
    assert (stats["verdict"]["retries"], stats["verdict"]["max_attempts"]) == (1, 2)


def test_without_the_re_ask_the_wrong_label_stays(sim: Simulator) -> None:
    policy = RetryPolicy(max_attempts=1)
    with _client(sim, policy, x_genguard_scenario="unexpected_label:1", x_genguard_reply="positive") as c:
        first = c.chat(model="gpt-4o-mini", messages=[QUESTION], labels=LABELS)
        again = c.chat(model="gpt-4o-mini", messages=[QUESTION], labels=LABELS)
    assert (first.code, first.attempts) == ("unexpected_label", 1)
    assert (again.ok, again.text) == (True, "positive")  # the second attempt of the same request


@pytest.mark.parametrize("stream", [False, True])
def test_a_raised_max_tokens_recovers_from_a_truncated_answer(sim: Simulator, stream: bool) -> None:
    seen: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> None:
        import orjson

        seen.append(orjson.loads(request.content))

    policy = RetryPolicy(max_attempts=1, raise_max_tokens_on_truncated=True)
    http = httpx.Client(event_hooks={"request": [record]})
    with http, Client(sim.base_url, api_key="sk-test", retry=policy, http_client=http,
                      headers={"x-genguard-scenario": "truncated:1"}) as c:  # fmt: skip
        o = c.chat(model="gpt-4o-mini", messages=[QUESTION], max_tokens=200, stream=stream)
    assert o.ok, o.message
    assert o.attempts == 2
    assert [a.code for a in o.history] == ["truncated", None]
    assert [body["max_tokens"] for body in seen] == [200, 400]
    verdict = sim.stats()["verdict"]
    assert verdict["ok"], verdict["problems"]


def _post(sim: Simulator, messages: list[dict[str, Any]], model: str = "gpt-4o-mini", **extra: Any) -> int:
    r = httpx.post(sim.base_url + "/chat/completions", json={"model": model, "messages": messages, **extra},
                   headers={"x-genguard-scenario": "server_error:1"})  # fmt: skip
    return r.status_code


def test_what_counts_as_the_same_request(sim: Simulator) -> None:
    system = {"role": "system", "content": "Answer with one word."}
    assert _post(sim, [system, QUESTION]) == 500
    # The same start of the conversation, whatever follows it or the other options: attempt 2, answered.
    assert _post(sim, [system, QUESTION, {"role": "assistant", "content": "Hmm"}, {"role": "user", "content": "?"}],
                 max_tokens=50, temperature=0.2, stream=False) == 200  # fmt: skip
    # Another first question, another system prompt or another model: a new request, which fails first.
    assert _post(sim, [system, {"role": "user", "content": "Another review"}]) == 500
    assert _post(sim, [{"role": "system", "content": "Be verbose."}, QUESTION]) == 500
    assert _post(sim, [system, QUESTION], model="gpt-4o") == 500
    # A different scenario header is a different request too.
    assert httpx.post(sim.base_url + "/chat/completions", json={"model": "gpt-4o-mini", "messages": [QUESTION]},
                      headers={"x-genguard-scenario": "server_error:2"}).status_code == 500  # fmt: skip


def test_a_silent_failure_re_sent_unchanged_is_still_blamed(sim: Simulator) -> None:
    body = {"model": "gpt-4o-mini", "messages": [QUESTION]}
    for _ in range(2):
        httpx.post(
            sim.base_url + "/chat/completions", json=body, headers={"x-genguard-scenario": "too_short"}
        )
    verdict = sim.stats()["verdict"]
    assert verdict["retried_non_retryable"] == 1
    assert not verdict["ok"]


def test_a_fallback_model_is_still_a_new_request(sim: Simulator) -> None:
    policy = RetryPolicy(max_attempts=1)
    with _client(sim, policy, x_genguard_scenario="unavailable:1") as c:
        o = c.chat(model="gpt-4o", messages=[QUESTION], fallbacks=["gpt-4o-mini"])
    assert [(a.model, a.code) for a in o.history] == [
        ("gpt-4o", "unavailable"),
        ("gpt-4o-mini", "unavailable"),
    ]
