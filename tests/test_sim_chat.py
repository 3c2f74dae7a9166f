"""The official openai SDK, as an ordinary client, parses every kind of chat success from the simulator."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from genguard.sim import Simulator

MSG = [{"role": "user", "content": "Tell me about rivers"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 2},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"enum": ["c", "f"]},
            },
            "required": ["city", "days", "unit"],
            "additionalProperties": False,
        },
    },
}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "address": {"$ref": "#/$defs/address"},
    },
    "required": ["name", "age", "tags", "address"],
    "additionalProperties": False,
    "$defs": {"address": {"type": "object", "properties": {"zip": {"type": "string", "maxLength": 5}},
                          "required": ["zip"]}},
}  # fmt: skip


@pytest.fixture
def client(sim: Simulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)


def test_models_list(client: openai.OpenAI, sim: Simulator) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == list(sim.config.models)


def test_plain_chat_has_consistent_usage_and_is_deterministic(client: openai.OpenAI) -> None:
    a = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    b = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    text = a.choices[0].message.content
    assert text
    assert text == b.choices[0].message.content
    assert a.choices[0].finish_reason == "stop"
    assert a.usage is not None
    assert a.usage.completion_tokens == len(text.split())
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens
    other = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, seed=99)
    assert other.choices[0].message.content != text


def test_stream_with_usage_matches_plain(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == plain.choices[0].message.content
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split())


def test_n_choices_and_max_tokens_give_length(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, n=3, max_tokens=5)
    assert [c.index for c in r.choices] == [0, 1, 2]
    for c in r.choices:
        assert c.finish_reason == "length"
        assert len((c.message.content or "").split()) == 5
    assert r.usage is not None
    assert r.usage.completion_tokens == 15
    r2 = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_completion_tokens=1000)
    assert r2.choices[0].finish_reason == "stop"


def test_streamed_n_choices_each_finish(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=MSG, n=2, stream=True, max_tokens=3))
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
            if ch.finish_reason:
                finishes[ch.index] = ch.finish_reason
    assert finishes == {0: "length", 1: "length"}
    assert all(len(t.split()) == 3 for t in texts.values())


def test_tool_call_arguments_satisfy_the_schema(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o", messages=MSG, tools=[WEATHER])  # type: ignore[list-item]
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER["function"]["parameters"])  # type: ignore[union-attr, index]


def test_streamed_tool_call_reassembles(client: openai.OpenAI) -> None:
    args = ""
    name = None
    finish = None
    for c in client.chat.completions.create(model="m", messages=MSG, tools=[WEATHER], stream=True):  # type: ignore[list-item]
        for ch in c.choices:
            for tc in ch.delta.tool_calls or []:
                name = name or (tc.function.name if tc.function else None)
                args += (tc.function.arguments or "") if tc.function else ""
            finish = ch.finish_reason or finish
    assert name == "get_weather"
    assert finish == "tool_calls"
    jsonschema.validate(json.loads(args), WEATHER["function"]["parameters"])  # type: ignore[index]


def test_tool_choice_none_gives_text(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=MSG, tools=[WEATHER], tool_choice="none")  # type: ignore[list-item]
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content


def test_json_schema_output_is_valid(client: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    r = client.chat.completions.create(model="m", messages=MSG, response_format=fmt)
    jsonschema.validate(json.loads(r.choices[0].message.content or ""), PERSON)
    r2 = client.chat.completions.create(model="m", messages=MSG, response_format={"type": "json_object"})
    assert isinstance(json.loads(r2.choices[0].message.content or ""), dict)


def test_pydantic_parse_helper_accepts_the_output(client: openai.OpenAI) -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        title: str
        score: int

    r = client.chat.completions.parse(model="m", messages=MSG, response_format=Answer)  # type: ignore[arg-type]
    assert isinstance(r.choices[0].message.parsed, Answer)


def test_bad_request_bodies_get_clear_400s(sim: Simulator) -> None:
    url = sim.base_url + "/chat/completions"
    cases = [
        (b"{not json", "parse"),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": [1], "n": 0}', "'n'"),
    ]
    for body, needle in cases:
        r = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert needle in r.json()["error"]["message"]
    assert httpx.get(sim.url + "/v1/nowhere").status_code == 404


def test_latency_settings_slow_streams_down(sim: Simulator) -> None:
    import time

    sim.configure(ttft_ms=100, tokens_per_s=200)
    client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
    started = time.monotonic()
    stamps = []
    for _ in client.chat.completions.create(model="m", messages=MSG, stream=True, max_tokens=20):
        stamps.append(time.monotonic() - started)
    assert stamps[0] >= 0.09
    # Counted from the request, not from the first chunk: pacing only ever delays, but a client busy when the
    # first chunk came would stamp it late and shrink the gap to the last one.
    assert stamps[-1] >= 0.1 + 19 / 200 * 0.8
