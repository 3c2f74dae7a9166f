"""The simulator's legacy ``POST /v1/completions`` over real HTTP: the ``text_completion`` body, the default
``max_tokens`` of 16, the chat scenarios in its terms, OpenAI's refusals, several prompts and ``n``, seeded
answers, and what genguard's classifier reads from it; read by the official SDK too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from _sim_refusals import GONE, check_not_json, check_refusal
from genguard.core.classify import classify_http
from genguard.sim import Simulator

MODEL = "gpt-3.5-turbo-instruct"
LONG = " ".join(f"word{i}" for i in range(40))


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers={"authorization": "Bearer sk-test"}, timeout=10) as client:
        yield client


def complete(http: httpx.Client, scenario: str | None = None, headers: dict[str, str] | None = None,
             **body: Any) -> httpx.Response:  # fmt: skip
    sent = {"x-genguard-scenario": scenario} if scenario else {}
    return http.post("/v1/completions", json={"model": MODEL, **body}, headers={**sent, **(headers or {})})


def classify(r: httpx.Response) -> Any:
    return classify_http(r.status_code, dict(r.headers), r.content)


def assert_usage_adds_up(body: dict[str, Any]) -> None:
    usage = body["usage"]
    assert set(usage) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


# -- the answer -----------------------------------------------------------------------------------------


def test_a_plain_answer_is_a_text_completion(http: httpx.Client) -> None:
    r = complete(http, prompt="Once upon a time", max_tokens=100)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"].startswith("req_")
    body = r.json()
    assert set(body) == {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
    assert body["id"].startswith("cmpl-")
    assert body["object"] == "text_completion"
    assert isinstance(body["created"], int)
    assert body["model"] == MODEL
    assert body["system_fingerprint"] == "fp_genguard_sim"
    [choice] = body["choices"]
    assert set(choice) == {"text", "index", "logprobs", "finish_reason"}
    assert (choice["index"], choice["logprobs"], choice["finish_reason"]) == (0, None, "stop")
    assert choice["text"].strip()
    assert_usage_adds_up(body)
    assert body["usage"]["prompt_tokens"] == 4  # "Once upon a time": 16 characters, four a token
    assert body["usage"]["completion_tokens"] == len(choice["text"].split())  # a word a token, as on chat
    outcome = classify(r)
    assert outcome.ok
    assert outcome.text == choice["text"]


def test_the_official_sdk_reads_the_completion(sim: Simulator) -> None:
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0, timeout=10) as client:
        completion = client.completions.create(model=MODEL, prompt="Say hello.", max_tokens=50)
    assert completion.object == "text_completion"
    [choice] = completion.choices
    assert choice.text.strip()
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_the_default_max_tokens_of_16_cuts_a_long_answer(http: httpx.Client) -> None:
    r = complete(http, headers={"x-genguard-reply": LONG}, prompt="Count.")
    body = r.json()
    [choice] = body["choices"]
    assert choice["finish_reason"] == "length"
    assert choice["text"] == " ".join(LONG.split()[:16])
    assert body["usage"]["completion_tokens"] == 16
    assert_usage_adds_up(body)
    assert classify(r).code == "truncated"
    whole = complete(http, headers={"x-genguard-reply": LONG}, prompt="Count.", max_tokens=100).json()
    assert whole["choices"][0]["text"] == LONG
    assert whole["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_0_generates_nothing(http: httpx.Client) -> None:
    body = complete(http, prompt="Once upon a time", max_tokens=0).json()
    assert [(c["text"], c["finish_reason"]) for c in body["choices"]] == [("", "length")]
    assert body["usage"]["completion_tokens"] == 0


def test_the_same_prompt_gives_the_same_text(http: httpx.Client) -> None:
    first = complete(http, prompt="Tell me about falcons.").json()
    again = complete(http, prompt="Tell me about falcons.", max_tokens=100).json()
    first_text, again_text = first["choices"][0]["text"], again["choices"][0]["text"]
    assert again_text.startswith(first_text)  # the same answer, cut at 16 the first time
    assert first["id"] != again["id"]
    other = complete(http, prompt="Tell me about owls.", max_tokens=100).json()
    assert other["choices"][0]["text"] != again_text


def test_the_same_prompt_gets_the_chat_endpoint_s_answer(http: httpx.Client) -> None:
    r = complete(http, prompt="Tell me about falcons.", max_tokens=100)
    chat = http.post("/v1/chat/completions",
                     json={"model": MODEL, "messages": [{"role": "user", "content": "Tell me about falcons."}]})  # fmt: skip
    assert r.json()["choices"][0]["text"] == chat.json()["choices"][0]["message"]["content"]


def test_n_gives_that_many_choices(http: httpx.Client) -> None:
    body = complete(http, prompt="Name a bird.", n=2, max_tokens=100).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    texts = [c["text"] for c in body["choices"]]
    assert all(texts)
    assert texts[0] != texts[1]
    assert body["usage"]["completion_tokens"] == sum(len(t.split()) for t in texts)
    assert_usage_adds_up(body)


def test_a_choice_for_each_prompt_and_each_answer(http: httpx.Client) -> None:
    body = complete(http, prompt=["Name a bird.", "Name a tree."], n=2, max_tokens=100).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    alone = complete(http, prompt="Name a tree.", n=2, max_tokens=100).json()
    # prompt_index * n + answer_index: the second prompt's answers are choices 2 and 3.
    assert [c["text"] for c in body["choices"][2:]] == [c["text"] for c in alone["choices"]]
    assert body["usage"]["prompt_tokens"] == 6  # 12 characters each, four a token
    assert_usage_adds_up(body)


def test_token_prompts_count_a_token_an_id(http: httpx.Client) -> None:
    one = complete(http, prompt=[15496, 995, 11]).json()
    assert len(one["choices"]) == 1
    assert one["usage"]["prompt_tokens"] == 3
    several = complete(http, prompt=[[15496, 995], [11]]).json()
    assert len(several["choices"]) == 2
    assert several["usage"]["prompt_tokens"] == 3


def test_echo_puts_the_prompt_before_the_text(http: httpx.Client) -> None:
    plain = complete(http, prompt="Once upon a time", suffix="The end.", logprobs=None, best_of=1).json()
    echoed = complete(http, prompt="Once upon a time", echo=True).json()
    assert echoed["choices"][0]["text"] == "Once upon a time" + plain["choices"][0]["text"]
    assert echoed["usage"] == plain["usage"]


def test_a_fixed_reply_is_the_text(http: httpx.Client) -> None:
    r = complete(http, headers={"x-genguard-reply": "positive"}, prompt="Review: Loved it.\nSentiment:")
    assert r.json()["choices"][0]["text"] == "positive"
    assert r.json()["usage"]["completion_tokens"] == 1


# -- scenarios --------------------------------------------------------------------------------------------


def test_truncated_ends_with_length(http: httpx.Client) -> None:
    r = complete(http, "truncated", headers={"x-genguard-reply": LONG}, prompt="Count.", max_tokens=100)
    assert r.status_code == 200
    [choice] = r.json()["choices"]
    assert choice["finish_reason"] == "length"
    assert LONG.startswith(choice["text"])
    assert 0 < len(choice["text"].split()) < len(LONG.split())
    assert r.json()["usage"]["completion_tokens"] == len(choice["text"].split())
    assert classify(r).code == "truncated"


def test_content_filtered_ends_with_content_filter_and_the_partial_text(http: httpx.Client) -> None:
    r = complete(
        http, "content_filtered", headers={"x-genguard-reply": LONG}, prompt="Count.", max_tokens=100
    )
    [choice] = r.json()["choices"]
    assert choice["finish_reason"] == "content_filter"
    assert LONG.startswith(choice["text"])
    assert 0 < len(choice["text"].split()) < len(LONG.split())
    assert_usage_adds_up(r.json())
    assert classify(r).code == "content_filtered"


def test_empty_output_is_an_empty_text_that_stops(http: httpx.Client) -> None:
    r = complete(http, "empty_output", prompt="hi")
    [choice] = r.json()["choices"]
    assert (choice["text"], choice["finish_reason"]) == ("", "stop")
    assert r.json()["usage"]["completion_tokens"] == 0
    assert classify(r).code == "empty_output"


@pytest.mark.parametrize("scenario", ["stream_error", "incomplete_stream"])
def test_a_stream_only_failure_is_a_normal_answer(http: httpx.Client, scenario: str) -> None:
    normal = complete(http, prompt="hi", max_tokens=100).json()
    r = complete(http, scenario, prompt="hi", max_tokens=100)
    [choice] = r.json()["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["text"] == normal["choices"][0]["text"]
    assert classify(r).ok


def test_a_silent_scenario_plays_over_the_text(http: httpx.Client) -> None:
    assert complete(http, "too_short", prompt="hi").json()["choices"][0]["text"] == "Ok."


def test_rate_limited_is_a_429_with_the_usual_body(http: httpx.Client) -> None:
    r = complete(http, "rate_limited", prompt="hi")
    assert r.status_code == 429
    assert float(r.headers["retry-after"]) > 0
    error = r.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith(f"Rate limit reached for {MODEL} on requests per min (RPM)")
    assert classify(r).code == "rate_limited"


def test_server_error_is_a_500(http: httpx.Client) -> None:
    r = complete(http, "server_error", prompt="hi")
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error"
    assert classify(r).code == "server_error"


def test_not_found_names_the_completions_path(http: httpx.Client) -> None:
    r = complete(http, "not_found", prompt="hi")
    assert r.status_code == 404
    assert "/v1/completions" in r.json()["error"]["message"]


def test_context_length_exceeded_as_on_chat(http: httpx.Client) -> None:
    played = complete(http, "context_length_exceeded", prompt="hi")
    assert played.status_code == 400
    assert played.json()["error"]["code"] == "context_length_exceeded"
    too_long = complete(http, prompt="x" * 600_000)  # 150,000 tokens by the estimate, over 128,000
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"


def test_a_failure_then_success_is_one_request_in_the_stats(sim: Simulator, http: httpx.Client) -> None:
    first = complete(http, "server_error:1", prompt="Once more.")
    again = complete(http, "server_error:1", prompt="Once more.", max_tokens=500)
    assert (first.status_code, again.status_code) == (500, 200)
    stats = sim.stats()
    assert stats["requests"] == 2
    assert stats["verdict"]["retries"] == 1
    assert stats["by_endpoint"] == {"chat": 2}


# -- refusals ---------------------------------------------------------------------------------------------


# (what the body changes, param, code, the start of the message)
REFUSALS: list[tuple[dict[str, Any], str | None, str | None, str]] = [
    ({"prompt": GONE}, "prompt", "missing_required_parameter", "Missing required parameter: 'prompt'."),
    ({"model": GONE}, None, None, "you must provide a model parameter"),
    ({"model": ""}, None, None, "you must provide a model parameter"),
    ({"model": 4}, "model", "invalid_type", "Invalid type for 'model': expected a string, but got an integer"),
    ({"max_tokens": -1}, "max_tokens", "integer_below_min_value",
     "Invalid 'max_tokens': integer below minimum value. Expected a value >= 0, but got -1 instead."),
    ({"max_tokens": 1.5}, "max_tokens", "invalid_type", "Invalid type for 'max_tokens': expected an integer"),
    ({"n": 0}, "n", "integer_below_min_value", "Invalid 'n': integer below minimum value."),
    ({"n": 129}, "n", "integer_above_max_value", "Invalid 'n': integer above maximum value."),
    ({"stream": True}, "stream", "unsupported_value", "The simulator's /v1/completions does not stream"),
    ({"echo": "yes"}, "echo", "invalid_type", "Invalid type for 'echo': expected a boolean"),
    ({"prompt": 7}, "prompt", "invalid_type", "Invalid type for 'prompt'"),
    ({"prompt": []}, "prompt", "empty_array", "Invalid 'prompt': empty array."),
    ({"prompt": ["hi", {"text": "hi"}]}, "prompt[1]", "invalid_type", "Invalid type for 'prompt[1]'"),
    ({"temperature": 3}, "temperature", "decimal_above_max_value", "Invalid 'temperature'"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "param", "code", "message"), REFUSALS)
def test_refusals_in_openai_s_words(http: httpx.Client, change: dict[str, Any], param: str | None,
                                    code: str | None, message: str) -> None:  # fmt: skip
    check_refusal(http, "/v1/completions", {"model": MODEL, "prompt": "hi"}, change, param, code, message)


def test_a_body_that_is_not_json_or_not_an_object_is_refused(http: httpx.Client) -> None:
    check_not_json(http, "/v1/completions")


def test_the_sdk_raises_bad_request_for_a_refusal(sim: Simulator) -> None:
    with (
        openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0, timeout=10) as client,
        pytest.raises(openai.BadRequestError) as info,
    ):
        client.completions.create(model=MODEL, prompt="hi", max_tokens=-1)
    assert info.value.code == "integer_below_min_value"
