"""The simulator's ``POST /v1/responses`` over real HTTP: OpenAI's Response object, the chat scenarios played
in its terms (incomplete, failed, empty output, the hard errors), tools and JSON output, OpenAI's refusals,
seeded answers, and the stats; read by the official SDK too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import orjson
import pytest

from _sim_refusals import GONE, check_not_json, check_refusal
from genguard.sim import Simulator

MODEL = "gpt-4o-mini"
LONG = " ".join(f"word{i}" for i in range(40))
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "days"],
        "additionalProperties": False,
    },
}
REVIEW = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["positive", "negative"]},
        "score": {"type": "number"},
    },
    "required": ["label", "score"],
    "additionalProperties": False,
}


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers={"authorization": "Bearer sk-test"}, timeout=10) as client:
        yield client


def respond(http: httpx.Client, scenario: str | None = None, headers: dict[str, str] | None = None,
            **body: Any) -> httpx.Response:  # fmt: skip
    sent = {"x-genguard-scenario": scenario} if scenario else {}
    return http.post("/v1/responses", json={"model": MODEL, **body}, headers={**sent, **(headers or {})})


def text_of(body: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in body["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def assert_usage_adds_up(body: dict[str, Any]) -> None:
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}


# -- the answer -----------------------------------------------------------------------------------------


def test_a_plain_answer_is_a_completed_response_with_one_message(http: httpx.Client) -> None:
    r = respond(http, input="Summarise the plot of Hamlet.", instructions="Be brief.")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"].startswith("req_")
    assert "x-ratelimit-remaining-requests" in r.headers
    body = r.json()
    assert body["id"].startswith("resp_")
    assert body["object"] == "response"
    assert isinstance(body["created_at"], int)
    assert body["status"] == "completed"
    assert body["error"] is None
    assert body["incomplete_details"] is None
    assert body["instructions"] == "Be brief."
    assert body["max_output_tokens"] is None
    assert body["model"] == MODEL
    assert body["tools"] == []
    assert body["text"] == {"format": {"type": "text"}}
    assert body["truncation"] == "disabled"
    assert body["metadata"] == {}
    [item] = body["output"]
    assert item["type"] == "message"
    assert item["id"].startswith("msg_")
    assert (item["status"], item["role"]) == ("completed", "assistant")
    [part] = item["content"]
    assert part["type"] == "output_text"
    assert part["annotations"] == []
    assert part["text"].strip()
    assert_usage_adds_up(body)
    assert body["usage"]["output_tokens"] == len(part["text"].split())  # a word a token, as on chat
    assert body["usage"]["input_tokens"] > 0


def test_the_official_sdk_reads_the_response(sim: Simulator) -> None:
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0, timeout=10) as client:
        response = client.responses.create(model=MODEL, input="hi", instructions="Answer in one line.")
    assert response.status == "completed"
    assert response.output_text.strip()
    assert response.usage is not None
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_message_items_with_parts_and_other_items_are_taken(http: httpx.Client) -> None:
    r = respond(http, input=[
        {"role": "developer", "content": "Answer tersely."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is the weather?"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"temperature": 3}'},
        {"role": "assistant", "content": [{"type": "output_text", "text": "It is 3 degrees."}]},
        {"role": "user", "content": "And tomorrow?"},
    ])  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed"
    assert text_of(r.json())


def test_the_same_input_gives_the_same_text(http: httpx.Client) -> None:
    first = respond(http, input="Tell me about falcons.").json()
    again = respond(http, input="Tell me about falcons.").json()
    assert text_of(first) == text_of(again)
    assert first["id"] != again["id"]
    other = respond(http, input="Tell me about owls.").json()
    assert text_of(other) != text_of(first)


def test_the_same_question_gets_the_chat_endpoint_s_answer(http: httpx.Client) -> None:
    r = respond(http, input="Tell me about falcons.")
    chat = http.post("/v1/chat/completions",
                     json={"model": MODEL, "messages": [{"role": "user", "content": "Tell me about falcons."}]})  # fmt: skip
    assert text_of(r.json()) == chat.json()["choices"][0]["message"]["content"]


def test_a_fixed_reply_is_the_output_text(http: httpx.Client) -> None:
    r = respond(http, headers={"x-genguard-reply": "positive"}, input="Loved it.")
    assert text_of(r.json()) == "positive"
    assert r.json()["usage"]["output_tokens"] == 1


def test_max_output_tokens_cuts_a_long_answer(http: httpx.Client) -> None:
    r = respond(http, headers={"x-genguard-reply": LONG}, input="Count.", max_output_tokens=16)
    body = r.json()
    assert r.status_code == 200
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["max_output_tokens"] == 16
    assert body["output"][0]["status"] == "incomplete"
    assert text_of(body) == " ".join(LONG.split()[:16])
    assert body["usage"]["output_tokens"] == 16
    assert_usage_adds_up(body)


# -- tools and JSON ---------------------------------------------------------------------------------------


def test_a_function_tool_is_called_with_arguments_valid_against_its_schema(http: httpx.Client) -> None:
    r = respond(http, input="Weather in Oslo for three days?", tools=[WEATHER, {"type": "web_search"}])
    body = r.json()
    assert body["status"] == "completed"
    assert body["tools"] == [WEATHER, {"type": "web_search"}]
    [call] = body["output"]
    assert call["type"] == "function_call"
    assert call["id"].startswith("fc_")
    assert call["call_id"].startswith("call_")
    assert (call["name"], call["status"]) == ("get_weather", "completed")
    assert isinstance(call["arguments"], str)
    jsonschema.validate(orjson.loads(call["arguments"]), WEATHER["parameters"])
    assert body["usage"]["output_tokens"] > 0
    assert_usage_adds_up(body)


def test_tool_choice_none_answers_in_text_and_a_named_function_is_the_one_called(http: httpx.Client) -> None:
    none = respond(http, input="Weather?", tools=[WEATHER], tool_choice="none").json()
    assert [item["type"] for item in none["output"]] == ["message"]
    other = {**WEATHER, "name": "get_time", "parameters": {"type": "object", "properties": {}}}
    named = respond(http, input="Weather?", tools=[WEATHER, other],
                    tool_choice={"type": "function", "name": "get_time"}).json()  # fmt: skip
    assert [(item["type"], item["name"]) for item in named["output"]] == [("function_call", "get_time")]
    both = respond(http, input="Weather?", tools=[WEATHER, other], tool_choice="required").json()
    assert [item["name"] for item in both["output"]] == ["get_weather", "get_time"]


def test_a_json_schema_format_gives_json_valid_against_it(http: httpx.Client) -> None:
    fmt = {"type": "json_schema", "name": "review", "schema": REVIEW, "strict": True}
    body = respond(http, input="Loved it.", text={"format": fmt}).json()
    assert body["status"] == "completed"
    jsonschema.validate(orjson.loads(text_of(body)), REVIEW)


def test_a_json_object_format_gives_json(http: httpx.Client) -> None:
    body = respond(http, input="Answer in JSON.", text={"format": {"type": "json_object"}}).json()
    assert isinstance(orjson.loads(text_of(body)), dict)


# -- scenarios --------------------------------------------------------------------------------------------


def test_truncated_is_incomplete_for_max_output_tokens(http: httpx.Client) -> None:
    whole = respond(http, headers={"x-genguard-reply": LONG}, input="Count.").json()
    r = respond(http, "truncated", headers={"x-genguard-reply": LONG}, input="Count.")
    body = r.json()
    assert r.status_code == 200
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"
    assert LONG.startswith(text_of(body))
    assert 0 < len(text_of(body)) < len(text_of(whole))
    assert body["usage"]["output_tokens"] == len(text_of(body).split())


def test_content_filtered_is_incomplete_with_the_partial_text(http: httpx.Client) -> None:
    body = respond(http, "content_filtered", headers={"x-genguard-reply": LONG}, input="Count.").json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "content_filter"}
    assert body["error"] is None
    assert LONG.startswith(text_of(body))
    assert 0 < len(text_of(body).split()) < len(LONG.split())
    assert_usage_adds_up(body)


def test_empty_output_is_completed_with_no_output(http: httpx.Client) -> None:
    body = respond(http, "empty_output", input="hi").json()
    assert body["status"] == "completed"
    assert body["incomplete_details"] is None
    assert body["output"] == []
    assert body["usage"]["output_tokens"] == 0
    assert_usage_adds_up(body)


def test_stream_error_is_a_failed_response(http: httpx.Client) -> None:
    r = respond(http, "stream_error", input="hi")
    body = r.json()
    assert r.status_code == 200
    assert body["status"] == "failed"
    assert body["error"] == {
        "code": "server_error",
        "message": "The model produced an error while generating the response.",
    }
    assert body["output"] == []
    assert body["incomplete_details"] is None
    assert body["usage"]["output_tokens"] == 0
    assert_usage_adds_up(body)


def test_incomplete_stream_is_a_normal_answer_when_not_streamed(http: httpx.Client) -> None:
    normal = respond(http, input="hi").json()
    body = respond(http, "incomplete_stream", input="hi").json()
    assert body["status"] == "completed"
    assert text_of(body) == text_of(normal)


def test_rate_limited_is_a_429_with_the_usual_body(http: httpx.Client) -> None:
    r = respond(http, "rate_limited", input="hi")
    assert r.status_code == 429
    assert float(r.headers["retry-after"]) > 0
    error = r.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith(f"Rate limit reached for {MODEL} on requests per min (RPM)")
    assert set(error) == {"message", "type", "param", "code"}


def test_server_error_is_a_500(http: httpx.Client) -> None:
    r = respond(http, "server_error", input="hi")
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error"


def test_not_found_names_the_responses_path(http: httpx.Client) -> None:
    r = respond(http, "not_found", input="hi")
    assert r.status_code == 404
    assert "/v1/responses" in r.json()["error"]["message"]


def test_a_silent_scenario_plays_over_the_text(http: httpx.Client) -> None:
    assert text_of(respond(http, "too_short", input="hi").json()) == "Ok."


def test_context_length_exceeded_as_on_chat(http: httpx.Client) -> None:
    played = respond(http, "context_length_exceeded", input="hi")
    assert played.status_code == 400
    assert played.json()["error"]["code"] == "context_length_exceeded"
    too_long = respond(http, input="x" * 600_000)  # 150,000 tokens by the estimate, over 128,000
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"


def test_a_failure_then_success_is_one_request_in_the_stats(sim: Simulator, http: httpx.Client) -> None:
    first = respond(http, "server_error:1", input="Once more.")
    again = respond(http, "server_error:1", input="Once more.", max_output_tokens=500)
    assert (first.status_code, again.status_code) == (500, 200)
    stats = sim.stats()
    assert stats["requests"] == 2
    assert stats["verdict"]["retries"] == 1


def test_the_stats_count_the_requests(sim: Simulator, http: httpx.Client) -> None:
    respond(http, input="one")
    respond(http, "rate_limited", input="two")
    respond(http, input="three", max_output_tokens=5)
    stats = httpx.get(sim.url + "/_genguard/stats").json()
    assert stats["requests"] == 3
    assert stats["by_endpoint"] == {"chat": 3}
    assert stats["by_status"] == {"200": 1, "429": 1, "400": 1}
    assert stats["by_scenario"] == {"ok": {"200": 1}, "rate_limited": {"429": 1}, "bad_request": {"400": 1}}


# -- refusals ---------------------------------------------------------------------------------------------


# (what the body changes, param, code, the start of the message)
REFUSALS: list[tuple[dict[str, Any], str | None, str | None, str]] = [
    ({"input": GONE}, "input", "missing_required_parameter", "Missing required parameter: 'input'."),
    ({"model": GONE}, "model", "missing_required_parameter", "Missing required parameter: 'model'."),
    ({"model": ""}, "model", "empty_string", "Invalid 'model': empty string."),
    ({"model": 4}, "model", "invalid_type", "Invalid type for 'model': expected a string, but got an integer"),
    ({"max_output_tokens": 5}, "max_output_tokens", "integer_below_min_value",
     "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 5 instead."),
    ({"max_output_tokens": "20"}, "max_output_tokens", "invalid_type",
     "Invalid type for 'max_output_tokens': expected an integer"),
    ({"stream": True}, "stream", "unsupported_value", "The simulator's /v1/responses does not stream"),
    ({"background": True}, "background", "unsupported_value",
     "The simulator's /v1/responses does not run in the background"),
    ({"input": 7}, "input", "invalid_type", "Invalid type for 'input'"),
    ({"input": ["hi"]}, "input[0]", "invalid_type",
     "Invalid type for 'input[0]': expected an object, but got a string instead."),
    ({"input": [{"role": "bot", "content": "hi"}]}, "input[0].role", "invalid_value", "Invalid value: 'bot'."),
    ({"input": [{"role": "user"}]}, "input[0].content", "missing_required_parameter",
     "Missing required parameter: 'input[0].content'."),
    ({"input": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, "input[0].content[0].type",
     "invalid_value", "Invalid value: 'text'."),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools[0].name",
     "missing_required_parameter", "Missing required parameter: 'tools[0].name'."),
    ({"text": {"format": {"type": "json_schema", "schema": REVIEW}}}, "text.format.name",
     "missing_required_parameter", "Missing required parameter: 'text.format.name'."),
    ({"temperature": 3}, "temperature", "decimal_above_max_value", "Invalid 'temperature'"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "param", "code", "message"), REFUSALS)
def test_refusals_in_openai_s_words(http: httpx.Client, change: dict[str, Any], param: str | None,
                                    code: str | None, message: str) -> None:  # fmt: skip
    check_refusal(http, "/v1/responses", {"model": MODEL, "input": "hi"}, change, param, code, message)


def test_a_body_that_is_not_json_or_not_an_object_is_refused(http: httpx.Client) -> None:
    check_not_json(http, "/v1/responses")


def test_the_sdk_raises_bad_request_for_a_refusal(sim: Simulator) -> None:
    with (
        openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0, timeout=10) as client,
        pytest.raises(openai.BadRequestError) as info,
    ):
        client.responses.create(model=MODEL, input="hi", max_output_tokens=5)
    assert info.value.code == "integer_below_min_value"
