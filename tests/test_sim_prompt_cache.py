"""Prompt caching over HTTP, as OpenAI does it: the prefix of a prompt of 1024 tokens or more that the same key
sent to the same model recently comes back as ``cached_tokens``, in steps of 128 from 1024; nothing else does.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest
from click.testing import CliRunner

from _sim_cli import configs_of
from genguard.cli import cli
from genguard.sim import Simulator
from genguard.sim._cache import FIRST, STEP, PromptCache, _layout
from genguard.sim._chatreq import prompt_tokens, tool_tokens
from genguard.sim._clock import FakeClock
from genguard.sim._config import ScenarioError, SimConfig

# 8,000 characters: 2,000 tokens by the simulator's estimate, with its framing the first 2,006 of a prompt.
RULES = "You label customer reviews as positive, negative or mixed. Answer with the label only. "
SYSTEM = (RULES * 94)[:8000]
SHARED = 1920  # the largest boundary within the 2,006 tokens two such prompts share


@pytest.fixture
def sim(clocked_sim: Simulator) -> Simulator:
    # The cache ages on a fake clock: only the TTL test moves it.
    return clocked_sim


def _messages(question: str, system: str = SYSTEM) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def _chat(sim: Simulator, question: str, *, key: str = "sk-a", model: str = "gpt-4o-mini",
          system: str = SYSTEM, headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
    return httpx.post(sim.base_url + "/chat/completions", json={"model": model, "messages": _messages(question, system)},
                      headers={"authorization": f"Bearer {key}", **(headers or {})}, timeout=30)  # fmt: skip


def _cached(sim: Simulator, question: str, **kwargs: Any) -> int:
    r = _chat(sim, question, **kwargs)
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    cached: int = usage["prompt_tokens_details"]["cached_tokens"]
    assert cached <= usage["prompt_tokens"]
    return cached


def test_a_shared_system_prompt_is_cached_for_the_same_key_and_model(sim: Simulator) -> None:
    first = _chat(sim, "Review 1: loved it.").json()["usage"]
    assert first["prompt_tokens"] == 2000 + 3 + 3 + 5 + 3
    assert first["prompt_tokens_details"] == {"cached_tokens": 0}
    second = _chat(sim, "Review 2: it broke after a week.").json()["usage"]
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert cached % STEP == 0
    assert FIRST <= cached <= second["prompt_tokens"]
    assert cached == SHARED
    # Everything else is as without a cache: prompt_tokens counts the cached ones too.
    assert second["prompt_tokens"] == 2000 + 3 + 3 + 8 + 3
    assert second["completion_tokens_details"] == {"reasoning_tokens": 0}
    # Per key and per model.
    assert _cached(sim, "Review 3: meh.", key="sk-b") == 0
    assert _cached(sim, "Review 3: meh.", model="gpt-4o") == 0
    assert _cached(sim, "Review 3: meh.") == SHARED
    # The same prompt again: as far as its last boundary (of 2,013 tokens).
    assert _cached(sim, "Review 3: meh.") == 1920


def test_a_prompt_that_differs_early_shares_nothing(sim: Simulator) -> None:
    assert _cached(sim, "Review 1") == 0
    assert _cached(sim, "Review 1", system="Be brief. " + SYSTEM[10:]) == 0
    # Differing at token 1,100: the 1024 boundary is shared, 1152 is not.
    late = SYSTEM[: 4 * 1097] + "X" + SYSTEM[4 * 1097 + 1 :]
    assert _cached(sim, "Review 1", system=late) == 1024


def test_a_prompt_under_1024_tokens_is_never_cached(sim: Simulator) -> None:
    short = SYSTEM[:4000]
    for _ in range(3):
        r = _chat(sim, "hi", system=short)
        usage = r.json()["usage"]
        assert usage["prompt_tokens"] < FIRST
        assert usage["prompt_tokens_details"] == {"cached_tokens": 0}


def test_an_entry_expires_after_the_ttl_and_on_reset(sim: Simulator, fake_clock: FakeClock) -> None:
    sim.configure(prompt_cache_ttl_s=60)
    assert _cached(sim, "a") == 0
    fake_clock.advance(30)
    assert _cached(sim, "b") == SHARED
    fake_clock.advance(59)  # idle 59 s since its last use
    assert _cached(sim, "c") == SHARED
    fake_clock.advance(61)  # idle past the TTL (not at it: the session clock's sum of floats is not exact)
    assert _cached(sim, "d") == 0
    assert _cached(sim, "e") == SHARED
    sim.reset()
    assert _cached(sim, "f") == 0
    assert _cached(sim, "g") == SHARED


def test_the_cache_can_be_turned_off(sim: Simulator) -> None:
    sim.configure(prompt_cache=False)
    assert [_cached(sim, q) for q in ("a", "b", "c")] == [0, 0, 0]
    # Nothing was kept while it was off.
    sim.configure(prompt_cache=True)
    assert [_cached(sim, q) for q in ("d", "e")] == [0, SHARED]


def test_a_refused_or_failed_request_neither_reads_nor_writes_the_cache(sim: Simulator) -> None:
    for scenario in ("server_error", "rate_limited", "context_length_exceeded"):
        r = _chat(sim, "a", headers={"x-genguard-scenario": scenario})
        assert r.status_code >= 400
    assert _cached(sim, "b") == 0
    assert _chat(sim, "c", headers={"x-genguard-scenario": "server_error"}).status_code == 500
    assert _cached(sim, "d") == SHARED
    # A 429 from the rate limiter, before any scenario plays.
    other = "Other rules. " + SYSTEM
    sim.configure(rpm=1)
    assert _chat(sim, "e").status_code == 200
    assert _chat(sim, "f", system=other).status_code == 429
    sim.configure(rpm=None)
    assert _cached(sim, "g", system=other) == 0


def test_the_responses_api_reports_input_tokens_details(sim: Simulator) -> None:
    def respond(text: str, key: str = "sk-a") -> dict[str, Any]:
        r = httpx.post(sim.base_url + "/responses", json={"model": "gpt-4o-mini", "instructions": SYSTEM,
                       "input": text}, headers={"authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        usage: dict[str, Any] = r.json()["usage"]
        assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
        return usage

    first = respond("Review 1: loved it.")
    assert first["input_tokens_details"] == {"cached_tokens": 0}
    second = respond("Review 2: it broke.")
    assert second["input_tokens_details"] == {"cached_tokens": SHARED}
    assert second["input_tokens"] == 2000 + 3 + 3 + 5 + 3
    assert respond("Review 2: it broke.", key="sk-b")["input_tokens_details"] == {"cached_tokens": 0}


def test_a_stream_reports_it_in_its_usage_chunk(sim: Simulator) -> None:
    assert _cached(sim, "first") == 0
    body = {"model": "gpt-4o-mini", "messages": _messages("second"), "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with httpx.stream("POST", sim.base_url + "/chat/completions", json=body, timeout=30,
                      headers={"authorization": "Bearer sk-a"}) as r:  # fmt: skip
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    last = orjson.loads(events[-2])
    assert last["choices"] == []
    assert last["usage"]["prompt_tokens_details"] == {"cached_tokens": SHARED}
    # The stream wrote the cache too.
    assert _cached(sim, "third") == SHARED


def test_the_openai_sdk_reads_it(sim: Simulator) -> None:
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-sdk", max_retries=0) as client:
        answers = [
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
            )
            for q in ("Review 1", "Review 2")
        ]
    details = [a.usage.prompt_tokens_details for a in answers if a.usage is not None]
    assert [d.cached_tokens for d in details if d is not None] == [0, SHARED]


# -- the cache itself ---------------------------------------------------------------------------------------

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 900}}
CALLS = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
CALLED = [{"role": "user", "content": "é" * 4001}, {"role": "assistant", "content": None, "tool_calls": CALLS},
          {"role": "tool", "tool_call_id": "call_1", "content": "done"}]  # fmt: skip


@pytest.mark.parametrize(
    ("messages", "tools"),
    [
        (_messages("hi"), []),
        (_messages("hi"), TOOLS),
        ([{"role": "user", "content": [{"type": "text", "text": "look" * 300}, IMAGE, IMAGE]}], []),
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x" * 5000}}]}], []),
        (CALLED, TOOLS),
    ],
)
def test_the_layout_counts_what_prompt_tokens_counts(messages: list[Any], tools: list[Any]) -> None:
    # Token positions are those of the reported prompt_tokens, so cached_tokens never passes it.
    laid_out = sum(count for count, _, _ in _layout(messages, tools))
    assert laid_out == prompt_tokens(messages) + tool_tokens(tools)


def _use(cache: PromptCache, messages: list[Any], *, key: str = "k", now: float = 0.0) -> int:
    return cache.use(key, "m", messages, [], tokens=prompt_tokens(messages), now=now, ttl_s=600)


@pytest.mark.parametrize("differ_at", [1000, 1023, 1024, 1027, 1151, 1152, 1500, 2005])
def test_prompts_share_the_largest_boundary_before_they_differ(differ_at: int) -> None:
    # One user message of 2,500 tokens: its text starts at token 3, and differs from token `differ_at` on.
    cache = PromptCache()
    text = "abcd" * 2500
    assert _use(cache, [{"role": "user", "content": text}]) == 0
    at = 4 * (differ_at - 3)
    other = text[:at] + "Z" + text[at + 1 :]
    expected = 0 if differ_at < FIRST else FIRST + (differ_at - FIRST) // STEP * STEP
    assert _use(cache, [{"role": "user", "content": other}]) == expected


def test_the_cache_keeps_at_most_its_limit() -> None:
    cache = PromptCache(max_entries=10)
    long = [{"role": "user", "content": "q" * 8000}]  # 2,006 tokens: 8 boundaries
    assert _use(cache, long) == 0
    assert len(cache) == 8
    assert _use(cache, [{"role": "user", "content": "r" * 8000}]) == 0
    assert len(cache) == 10
    # The oldest went first: the first prompt lost its shortest prefixes, kept its longest.
    assert _use(cache, long) == 1920


def test_prompt_cache_ttl_must_be_positive() -> None:
    assert SimConfig().prompt_cache is True
    assert SimConfig().prompt_cache_ttl_s == 600.0
    for bad in (0, -1, float("nan")):
        with pytest.raises(ScenarioError, match="prompt_cache_ttl_s must be a positive number"):
            SimConfig(prompt_cache_ttl_s=bad)


def test_the_cli_options_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    default, off = configs_of(monkeypatch, [], ["--no-prompt-cache", "--prompt-cache-ttl", "300"])
    assert (default.prompt_cache, default.prompt_cache_ttl_s) == (True, 600.0)
    assert (off.prompt_cache, off.prompt_cache_ttl_s) == (False, 300.0)
    refused = CliRunner().invoke(cli, ["simulate", "--prompt-cache-ttl", "0"])
    assert refused.exit_code == 2
    assert "--prompt-cache-ttl" in refused.output
