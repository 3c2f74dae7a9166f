"""The official openai SDK against the simulator on the cases real applications use beyond the basics:
n > 1, a named tool_choice, parallel tool calls (plain, and interleaved in a stream with usage), strict
json_schema with nested objects, enums and arrays, max_completion_tokens, raw response headers, the async
SDK, and every hard scenario raising the SDK's own exception from a stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import orjson
import pytest

from _openai_errors import SDK_ERRORS
from genguard.sim import Simulator
from genguard.sim._config import HARD_SCENARIOS

MSG: Any = [{"role": "user", "content": "Describe a pet"}]
WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city", "unit"], "additionalProperties": False}}}  # fmt: skip
TIME: Any = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}, "hours": {"type": "integer", "minimum": 0,
    "maximum": 23}}, "required": ["zone", "hours"], "additionalProperties": False}}}  # fmt: skip
PET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "kind": {"type": "string", "enum": ["cat", "dog", "parrot"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "owner": {
            "type": "object",
            "properties": {
                "age": {"type": "integer", "minimum": 18, "maximum": 99},
                "email": {"type": ["string", "null"]},
                "pets_before": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"kind": {"type": "string", "enum": ["cat", "dog"]}},
                        "required": ["kind"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["age", "email", "pets_before"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "kind", "tags", "owner"],
    "additionalProperties": False,
}


@pytest.fixture
def client(sim: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-sdk-test", max_retries=0, timeout=2.0) as c:
        yield c


def test_n_choices_are_distinct_and_usage_counts_them_all(client: openai.OpenAI) -> None:
    one = client.chat.completions.create(model="gpt-4o", messages=MSG)
    r = client.chat.completions.create(model="gpt-4o", messages=MSG, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) == 3
    assert r.choices[0].message.content == one.choices[0].message.content
    assert r.usage is not None
    assert one.usage is not None
    assert r.usage.prompt_tokens == one.usage.prompt_tokens
    assert r.usage.completion_tokens > one.usage.completion_tokens


def test_n_choices_stream_each_to_its_own_finish(client: openai.OpenAI) -> None:
    texts: dict[int, str] = {}
    finishes: dict[int, str | None] = {}
    stream = client.chat.completions.create(model="gpt-4o", messages=MSG, n=2, stream=True)
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason:
                finishes[c.index] = c.finish_reason
    plain = client.chat.completions.create(model="gpt-4o", messages=MSG, n=2)
    assert finishes == {0: "stop", 1: "stop"}
    assert [texts[0], texts[1]] == [c.message.content for c in plain.choices]


def test_tool_choice_naming_one_function_calls_that_one(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o", messages=MSG, tools=[WEATHER, TIME],
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})  # fmt: skip
    calls = r.choices[0].message.tool_calls or []
    assert r.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in calls] == ["get_time"]  # type: ignore[union-attr]
    jsonschema.validate(orjson.loads(calls[0].function.arguments), TIME["function"]["parameters"])  # type: ignore[union-attr]


def test_tool_choice_naming_a_missing_function_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="no tool named"):
        client.chat.completions.create(model="gpt-4o", messages=MSG, tools=[WEATHER],
                                       tool_choice={"type": "function", "function": {"name": "nope"}})  # fmt: skip


def test_parallel_tool_calls_one_per_tool_unless_turned_off(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o", messages=MSG, tools=[WEATHER, TIME], tool_choice="required"
    )
    calls = r.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert len({c.id for c in calls}) == 2
    for call, tool in zip(calls, (WEATHER, TIME), strict=True):
        jsonschema.validate(orjson.loads(call.function.arguments), tool["function"]["parameters"])  # type: ignore[union-attr]
    single = client.chat.completions.create(model="gpt-4o", messages=MSG, tools=[WEATHER, TIME],
                                            parallel_tool_calls=False)  # fmt: skip
    assert len(single.choices[0].message.tool_calls or []) == 1


def test_parallel_tool_calls_stream_interleaved_with_usage(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="gpt-4o", messages=MSG, tools=[WEATHER, TIME])
    stream = client.chat.completions.create(model="gpt-4o", messages=MSG, tools=[WEATHER, TIME], stream=True,
                                            stream_options={"include_usage": True})  # fmt: skip
    calls: dict[int, dict[str, str]] = {}
    order: list[int] = []
    usage = finish = None
    for chunk in stream:
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
        for c in chunk.choices:
            finish = c.finish_reason or finish
            for frag in c.delta.tool_calls or []:
                slot = calls.setdefault(frag.index, {"id": "", "name": "", "args": ""})
                slot["id"] += frag.id or ""
                slot["name"] += (frag.function and frag.function.name) or ""
                if frag.function and frag.function.arguments:
                    slot["args"] += frag.function.arguments
                    order.append(frag.index)
    assert finish == "tool_calls"
    expected = [
        (c.id, c.function.name, c.function.arguments) for c in plain.choices[0].message.tool_calls or []
    ]  # type: ignore[union-attr]
    assert [(s["id"], s["name"], s["args"]) for _, s in sorted(calls.items())] == expected
    # Fragments of the two calls alternate rather than arriving one call after the other.
    assert order[:2] == [0, 1]
    assert usage is not None
    assert plain.usage is not None
    assert usage.completion_tokens == plain.usage.completion_tokens


def test_strict_json_schema_with_nested_objects_enums_and_arrays(client: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "pet", "strict": True, "schema": PET}}
    for seed in range(5):
        r = client.chat.completions.create(model="gpt-4o", messages=MSG, response_format=fmt, seed=seed)
        value = orjson.loads(r.choices[0].message.content or "")
        jsonschema.validate(value, PET)
        assert r.choices[0].finish_reason == "stop"


def test_sdk_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    from pydantic import BaseModel

    class Owner(BaseModel):
        age: int
        email: str | None

    class Pet(BaseModel):
        name: str
        tags: list[str]
        owner: Owner

    r = client.chat.completions.parse(model="gpt-4o", messages=MSG, response_format=Pet)
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Pet)
    assert isinstance(parsed.owner, Owner)


def test_max_completion_tokens_bounds_the_output(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o", messages=MSG, max_completion_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None
    assert r.usage.completion_tokens == 3
    assert len((r.choices[0].message.content or "").split()) == 3


def test_stream_options_without_stream_is_refused_as_openai_does(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="stream_options"):
        client.chat.completions.create(model="gpt-4o", messages=MSG, stream_options={"include_usage": True})


def test_raw_response_headers(sim: Simulator, client: openai.OpenAI) -> None:
    sim.configure(rpm=100, tpm=100_000)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    h = raw.headers
    assert h["x-request-id"].startswith("req_")
    assert raw.parse().choices[0].message.content
    assert h["x-ratelimit-limit-requests"] == "100"
    assert h["x-ratelimit-remaining-requests"] == "99"
    assert h["x-ratelimit-limit-tokens"] == "100000"
    assert int(h["x-ratelimit-remaining-tokens"]) < 100_000
    assert h["x-ratelimit-reset-requests"].endswith("s")
    again = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    assert again.headers["x-request-id"] != h["x-request-id"]


@pytest.mark.parametrize("scenario", [s for s in HARD_SCENARIOS if s != "invalid_response"])
def test_each_hard_scenario_raises_the_sdk_exception_from_a_stream(sim: Simulator, scenario: str) -> None:
    def consume(c: openai.OpenAI) -> None:
        stream = c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                           extra_headers={"x-genguard-scenario": scenario})  # fmt: skip
        for _ in stream:
            pass

    with (
        openai.OpenAI(
            base_url=sim.base_url,
            api_key="sk-sdk-test",
            max_retries=0,
            timeout=0.3 if scenario == "timeout" else 10.0,
        ) as c,
        pytest.raises(SDK_ERRORS[scenario]) as info,
    ):
        consume(c)
    if isinstance(info.value, openai.APIStatusError):
        assert info.value.status_code >= 400
        assert info.value.response.headers["x-request-id"].startswith("req_")


def test_invalid_response_stream_gives_the_sdk_nothing_and_genguard_names_it(sim: Simulator) -> None:
    from genguard.client.clients import Client

    with openai.OpenAI(base_url=sim.base_url, api_key="sk-sdk-test", max_retries=0) as c:
        chunks = list(c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                                extra_headers={"x-genguard-scenario": "invalid_response"}))  # fmt: skip
    assert chunks == []  # the SDK's silence, which is the failure genguard exists to name
    with Client(
        sim.base_url, api_key="sk-sdk-test", headers={"x-genguard-scenario": "invalid_response"}
    ) as g:
        from genguard.client.retry import RetryPolicy

        o = g.chat(model="gpt-4o", messages=MSG, stream=True, retry=RetryPolicy(max_attempts=1))
    assert o.code == "invalid_response"


@pytest.mark.anyio
async def test_async_sdk_streams_choices_tools_and_usage(sim: Simulator) -> None:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-sdk-test", max_retries=0) as c:
        stream = await c.chat.completions.create(model="gpt-4o", messages=MSG, n=2, stream=True,
                                                 stream_options={"include_usage": True})  # fmt: skip
        chunks = [chunk async for chunk in stream]
        assert chunks[-1].usage is not None
        assert {ch.index for chunk in chunks for ch in chunk.choices} == {0, 1}
        r = await c.chat.completions.create(model="gpt-4o", messages=MSG, tools=[WEATHER, TIME])
        assert len(r.choices[0].message.tool_calls or []) == 2
        with pytest.raises(openai.RateLimitError) as info:
            await c.chat.completions.create(model="gpt-4o", messages=MSG,
                                            extra_headers={"x-genguard-scenario": "quota_exceeded"})  # fmt: skip
        assert info.value.code == "insufficient_quota"

        async def consume_cut() -> None:
            s = await c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                                extra_headers={"x-genguard-scenario": "connection_error"})  # fmt: skip
            async for _ in s:
                pass

        with pytest.raises(openai.APIConnectionError):
            await consume_cut()
