"""Requests OpenAI refuses are refused by the simulator too: a 400 with OpenAI's message, param and code, in
each dialect's own error shape, raised by the official openai SDK as ``BadRequestError`` and read back by
genguard as ``bad_request``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from genguard.core.classify import classify_http
from genguard.sim import Simulator
from genguard.sim._config import DIALECTS

USER = {"role": "user", "content": "Classify this review"}
BASE: dict[str, Any] = {"model": "gpt-4o", "messages": [USER]}
_GONE = object()

# (what the body changes, param, code, message): OpenAI's own words for each refusal.
REFUSALS: list[tuple[dict[str, Any], str | None, str | None, str]] = [
    ({"model": _GONE}, None, None, "you must provide a model parameter"),
    ({"model": None}, None, None, "you must provide a model parameter"),
    ({"model": 4}, "model", "invalid_type", "Invalid type for 'model': expected a string, but got an integer instead."),
    ({"messages": _GONE}, "messages", "missing_required_parameter", "Missing required parameter: 'messages'."),
    ({"messages": None}, "messages", "missing_required_parameter", "Missing required parameter: 'messages'."),
    ({"messages": "hi"}, "messages", "invalid_type",
     "Invalid type for 'messages': expected an array of objects, but got a string instead."),
    ({"messages": USER}, "messages", "invalid_type",
     "Invalid type for 'messages': expected an array of objects, but got an object instead."),
    ({"messages": []}, "messages", "empty_array",
     "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."),
    ({"messages": ["hi", "there"]}, "messages[0]", "invalid_type",
     "Invalid type for 'messages[0]': expected an object, but got a string instead."),
    ({"messages": [USER, 7]}, "messages[1]", "invalid_type",
     "Invalid type for 'messages[1]': expected an object, but got an integer instead."),
    ({"messages": [{"content": "hi"}]}, "messages[0].role", "missing_required_parameter",
     "Missing required parameter: 'messages[0].role'."),
    ({"messages": [{"role": "bot", "content": "hi"}]}, "messages[0].role", "invalid_value",
     "Invalid value: 'bot'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and "
     "'developer'."),
    ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content", "invalid_type",
     "Invalid type for 'messages[0].content': expected one of a string or array of objects, but got an integer "
     "instead."),
    ({"messages": [{"role": "user", "content": {"text": "hi"}}]}, "messages[0].content", "invalid_type",
     "Invalid type for 'messages[0].content': expected one of a string or array of objects, but got an object "
     "instead."),
    ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages[0].content[0]", "invalid_type",
     "Invalid type for 'messages[0].content[0]': expected an object, but got a string instead."),
    ({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}, "messages[0].content[0].type",
     "missing_required_parameter", "Missing required parameter: 'messages[0].content[0].type'."),
    ({"messages": [USER, {"role": "tool", "content": "42", "tool_call_id": "call_1"}]}, "messages.[1].role", None,
     "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."),
    ({"messages": [{"role": "user"}]}, "messages.[0].content", None,
     "Invalid value for 'content': expected a string, got null."),
    ({"messages": [USER, {"role": "assistant", "content": None}]}, "messages.[1].content", None,
     "Invalid value for 'content': expected a string, got null."),
    ({"messages": [{"role": "user"}, {"role": "user", "content": 7}]}, "messages[1].content", "invalid_type",
     "Invalid type for 'messages[1].content': expected one of a string or array of objects, but got an integer "
     "instead."),
    ({"messages": [USER, {"role": "developer"}]}, "messages[1].content", "missing_required_parameter",
     "Missing required parameter: 'messages[1].content'."),
    ({"messages": [USER, {"role": "assistant", "content": "x", "tool_calls": []}]}, "messages[1].tool_calls",
     "empty_array", "Invalid 'messages[1].tool_calls': empty array. Expected an array with minimum length 1, but "
     "got an empty array instead."),
    ({"n": 0}, "n", "integer_below_min_value",
     "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead."),
    ({"n": -3}, "n", "integer_below_min_value",
     "Invalid 'n': integer below minimum value. Expected a value >= 1, but got -3 instead."),
    ({"n": 129}, "n", "integer_above_max_value",
     "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 129 instead."),
    ({"n": "2"}, "n", "invalid_type", "Invalid type for 'n': expected an integer, but got a string instead."),
    ({"max_tokens": -5}, "max_tokens", "integer_below_min_value",
     "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got -5 instead."),
    ({"max_tokens": 0}, "max_tokens", "integer_below_min_value",
     "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead."),
    ({"max_tokens": 10.5}, "max_tokens", "invalid_type",
     "Invalid type for 'max_tokens': expected an integer, but got a decimal number instead."),
    ({"max_tokens": "100"}, "max_tokens", "invalid_type",
     "Invalid type for 'max_tokens': expected an integer, but got a string instead."),
    ({"max_completion_tokens": 0}, "max_completion_tokens", "integer_below_min_value",
     "Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead."),
    ({"temperature": 2.5}, "temperature", "decimal_above_max_value",
     "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 instead."),
    ({"temperature": 3}, "temperature", "decimal_above_max_value",
     "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead."),
    ({"temperature": -0.1}, "temperature", "decimal_below_min_value",
     "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got -0.1 instead."),
    ({"temperature": "hot"}, "temperature", "invalid_type",
     "Invalid type for 'temperature': expected a decimal, but got a string instead."),
    ({"top_p": 1.5}, "top_p", "decimal_above_max_value",
     "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, but got 1.5 instead."),
    ({"presence_penalty": -3}, "presence_penalty", "decimal_below_min_value",
     "Invalid 'presence_penalty': decimal below minimum value. Expected a value >= -2, but got -3 instead."),
    ({"seed": 1.5}, "seed", "invalid_type",
     "Invalid type for 'seed': expected an integer, but got a decimal number instead."),
    ({"stream": "yes"}, "stream", "invalid_type",
     "Invalid type for 'stream': expected a boolean, but got a string instead."),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length",
     "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length 5 "
     "instead."),
    ({"tools": "none"}, "tools", "invalid_type",
     "Invalid type for 'tools': expected an array of objects, but got a string instead."),
    ({"tools": [{"type": "function"}]}, "tools[0].function", "missing_required_parameter",
     "Missing required parameter: 'tools[0].function'."),
    ({"tool_choice": "bogus", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_choice",
     "invalid_value", "Invalid value: 'bogus'. Supported values are: 'none', 'auto', and 'required'."),
    ({"tool_choice": "auto"}, "tool_choice", None,
     "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."),
    ({"response_format": "json"}, "response_format", "invalid_type",
     "Invalid type for 'response_format': expected an object, but got a string instead."),
    ({"response_format": {}}, "response_format.type", "missing_required_parameter",
     "Missing required parameter: 'response_format.type'."),
    ({"response_format": {"type": "yaml"}}, "response_format.type", "invalid_value",
     "Invalid value: 'yaml'. Supported values are: 'json_object', 'json_schema', and 'text'."),
]  # fmt: skip
IDS = [f"{next(iter(change))}={next(iter(change.values()))!r}"[:60] for change, *_ in REFUSALS]


def _body(change: dict[str, Any]) -> dict[str, Any]:
    body = {**BASE, **change}
    return {k: v for k, v in body.items() if v is not _GONE}


def _post(sim: Simulator, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(sim.base_url + "/chat/completions", content=orjson.dumps(body),
                      headers={"content-type": "application/json", **headers})  # fmt: skip


@pytest.fixture
def client(sim: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


@pytest.mark.parametrize(("change", "param", "code", "message"), REFUSALS, ids=IDS)
def test_openai_refusals_in_openai_s_words(
    sim: Simulator, change: dict[str, Any], param: str | None, code: str | None, message: str
) -> None:
    r = _post(sim, _body(change))
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"message": message, "type": "invalid_request_error", "param": param,
                                  "code": code}}  # fmt: skip
    assert classify_http(r.status_code, r.headers, r.content).code == "bad_request"
    assert sim.stats()["by_scenario"] == {"bad_request": {"400": 1}}


@pytest.mark.parametrize(("change", "param", "code", "message"), REFUSALS, ids=IDS)
def test_the_openai_sdk_raises_bad_request_for_each(
    client: openai.OpenAI, change: dict[str, Any], param: str | None, code: str | None, message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/chat/completions", body=_body(change), cast_to=httpx.Response)
    assert info.value.message.endswith(message)
    assert (info.value.param, info.value.code) == (param, code)


def test_the_sdk_s_own_create_call_is_refused_too(client: openai.OpenAI) -> None:
    # What an application really writes: the SDK passes these through unchecked, OpenAI refuses them.
    with pytest.raises(openai.BadRequestError, match=r"'messages\[0\]': expected an object"):
        client.chat.completions.create(model="gpt-4o", messages=["hi"])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError, match="integer below minimum value"):
        client.chat.completions.create(model="gpt-4o", messages=[USER], n=0)  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError, match="decimal above maximum value"):
        client.chat.completions.create(model="gpt-4o", messages=[USER], temperature=2.1)  # type: ignore[list-item]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_refusal_takes_each_dialect_s_shape(sim: Simulator, dialect: str) -> None:
    r = _post(sim, {**BASE, "messages": ["hi"]}, **{"x-genguard-dialect": dialect})
    assert r.status_code == 400
    assert classify_http(r.status_code, r.headers, r.content).code == "bad_request"
    wanted = "Invalid type for 'messages[0]': expected an object, but got a string instead."
    assert wanted in r.text
    body = r.json()
    if dialect == "anthropic":
        assert body["type"] == "error"
        assert body["error"] == {"type": "invalid_request_error", "message": wanted}
    elif dialect == "google":
        assert body[0]["error"] == {"code": 400, "message": wanted, "status": "INVALID_ARGUMENT"}
    elif dialect == "ollama":
        assert body == {"error": wanted}
    elif dialect in ("vllm", "mistral"):
        assert (body["object"], body["message"], body["param"]) == ("error", wanted, "messages[0]")
    elif dialect == "openrouter":
        assert orjson.loads(body["error"]["metadata"]["raw"])["error"]["code"] == "invalid_type"
    else:
        assert (body["error"]["param"], body["error"]["code"]) == ("messages[0]", "invalid_type")


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "developer", "content": "Be brief."}, USER]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                     {"type": "image_url", "image_url": {"url": "x"}}]}]},
        {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"}]},
        {"messages": [USER, {"role": "assistant", "refusal": "I can't help with that."}, USER]},
        {"temperature": 0, "top_p": 1, "n": 128, "max_tokens": 1, "seed": -4, "stop": "END", "user": "u1"},
        {"temperature": None, "max_tokens": None, "tools": None, "response_format": None},
        {"made_up_vendor_option": {"top_k": 3}},
    ],
)  # fmt: skip
def test_what_openai_accepts_is_accepted(sim: Simulator, change: dict[str, Any]) -> None:
    r = _post(sim, _body(change))
    assert r.status_code == 200, r.text


def test_a_body_that_is_not_json_says_so(sim: Simulator) -> None:
    r = httpx.post(sim.base_url + "/chat/completions", content=b"{model: gpt-4o",
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("We could not parse the JSON body of your request.")
    r = _post(sim, ["not", "an", "object"])
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_type"
