"""n > 1: every choice is checked, plain and streamed, over real HTTP against the simulator and on the readers.

The rule: the outcome fails with the code of the first failing choice (the lowest index), its kind and verdict
from that code, while ``text``, ``tool_calls`` and ``finish_reason`` stay choice 0's; every choice is in
``Outcome.choices`` (``None`` for a response with one choice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from genguard import Choice, Outcome
from genguard.cli import cli
from genguard.client.clients import Client
from genguard.client.retry import RetryPolicy
from genguard.core.chat_body import classify_chat_body
from genguard.core.chat_stream import ChatStreamReader, read_chat_stream
from genguard.sim import Simulator

ONE_TRY = RetryPolicy(max_attempts=1)
KEY = "sk-test-choices-0123456789abcdef"


def _choice(index: int, text: str | None, finish: str | None, **message: Any) -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": text, **message},
        "finish_reason": finish,
    }


# -- plain bodies ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "second", "code", "kind", "says"),
    [
        ("filtered", _choice(1, "Partial", "content_filter"), "content_filtered", "soft", "choice 1 of 2 was filtered"),
        ("truncated", _choice(1, "Once upon a", "length"), "truncated", "soft", "length limit"),
        ("refused", _choice(1, None, "stop", refusal="I can't help with that."), "content_filtered", "soft",
         "I can't help with that."),
        ("empty", _choice(1, "", "stop"), "empty_output", "soft", "no content"),
        ("errored", _choice(1, "x", "error"), "stream_error", "soft", "error"),
    ],
)  # fmt: skip
def test_a_second_choice_that_failed_fails_the_outcome(
    name: str, second: dict[str, Any], code: str, kind: str, says: str
) -> None:
    body = {"choices": [_choice(0, "Hello there", "stop"), second], "usage": {"prompt_tokens": 3,
            "completion_tokens": 5, "total_tokens": 8}}  # fmt: skip
    o = classify_chat_body(body)
    assert (o.ok, o.code, o.kind) == (False, code, kind), name
    assert (o.text, o.finish_reason) == ("Hello there", "stop")
    assert says in (o.message or "")
    assert o.usage is not None
    assert o.choices is not None
    assert [c.index for c in o.choices] == [0, 1]
    assert o.choices[0] == Choice(0, "Hello there", None, "stop")
    assert (o.choices[1].code, o.choices[1].kind) == (code, kind)


def test_the_first_failing_choice_names_the_code_and_choice_zero_wins_when_it_failed() -> None:
    three = {
        "choices": [_choice(0, "ok", "stop"), _choice(2, "x", "content_filter"), _choice(1, "y", "length")]
    }
    o = classify_chat_body(three)
    assert (o.code, o.text) == ("truncated", "ok")
    assert o.choices is not None
    assert [c.index for c in o.choices] == [0, 1, 2]
    first_bad = classify_chat_body(
        {"choices": [_choice(0, "Once", "length"), _choice(1, "x", "content_filter")]}
    )
    assert (first_bad.code, first_bad.text, first_bad.message) == ("truncated", "Once", None)
    assert first_bad.choices is not None
    assert first_bad.choices[1].code == "content_filtered"


def test_all_choices_ok_is_ok_with_every_choice_kept() -> None:
    o = classify_chat_body({"choices": [_choice(0, "A", "stop"), _choice(1, "B", "stop")]})
    assert (o.ok, o.text) == (True, "A")
    assert o.choices == (Choice(0, "A", None, "stop"), Choice(1, "B", None, "stop"))
    assert [c["text"] for c in o.to_dict()["choices"]] == ["A", "B"]
    assert classify_chat_body({"choices": [_choice(0, "A", "stop")]}).choices is None


def test_tool_calls_and_azure_filters_are_read_per_choice() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    second = {**_choice(1, None, "stop"), "content_filter_results": {"violence": {"filtered": True,
                                                                                  "severity": "high"}}}  # fmt: skip
    o = classify_chat_body({"choices": [_choice(0, None, "tool_calls", tool_calls=[call]), second]})
    assert o.code == "content_filtered"
    assert "violence (high)" in (o.message or "")
    assert o.tool_calls is not None
    assert o.tool_calls[0].name == "f"
    assert o.choices is not None
    assert o.choices[0].tool_calls == o.tool_calls


def test_a_malformed_later_choice_is_an_invalid_response() -> None:
    o = classify_chat_body({"choices": [_choice(0, "A", "stop"), {"index": 1, "message": "nope"}]})
    assert (o.code, o.message) == ("invalid_response", "'choices[1].message' is missing or not an object")


# -- streams, choices interleaved by index -------------------------------------------------------------------


def _chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
    return (
        b"data: "
        + orjson.dumps({"choices": [{"index": index, "delta": delta, "finish_reason": finish}]})
        + b"\n\n"
    )


def test_an_interleaved_stream_judges_every_choice_and_yields_choice_zero() -> None:
    reader = ChatStreamReader()
    parts = [
        _chunk(0, {"role": "assistant", "content": ""}),
        _chunk(1, {"role": "assistant", "content": ""}),
        _chunk(0, {"content": "Hel"}),
        _chunk(1, {"content": "Bad"}),
        _chunk(0, {"content": "lo"}),
        _chunk(1, {}, "content_filter"),
        _chunk(0, {}, "stop"),
        b"data: [DONE]\n\n",
    ]
    printed = [t for p in parts for t in reader.feed(p)]
    assert printed == ["Hel", "lo"]
    o = reader.finish()
    assert (o.code, o.kind, o.text, o.finish_reason) == ("content_filtered", "soft", "Hello", "stop")
    assert o.choices is not None
    assert [(c.index, c.text, c.finish_reason, c.code) for c in o.choices] == [
        (0, "Hello", "stop", None),
        (1, "Bad", "content_filter", "content_filtered"),
    ]


def test_a_stream_choice_that_never_finished_is_incomplete() -> None:
    body = (
        _chunk(0, {"content": "A"})
        + _chunk(1, {"content": "B"})
        + _chunk(0, {}, "stop")
        + b"data: [DONE]\n\n"
    )
    o = read_chat_stream(body)
    assert (o.code, o.retryable, o.text) == ("incomplete_stream", True, "A")
    assert "choice 1 of 2 ended without any finish_reason" in (o.message or "")


def test_tool_calls_of_each_stream_choice_stay_apart() -> None:
    def call(index: int, frag: dict[str, Any]) -> bytes:
        return _chunk(index, {"tool_calls": [frag]})

    body = (
        call(0, {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}})
        + call(1, {"index": 0, "id": "b", "type": "function", "function": {"name": "g", "arguments": ""}})
        + call(1, {"index": 0, "function": {"arguments": '{"y": 2}'}})
        + call(0, {"index": 0, "function": {"arguments": '{"x": 1}'}})
        + _chunk(0, {}, "tool_calls")
        + _chunk(1, {}, "tool_calls")
        + b"data: [DONE]\n\n"
    )
    o = read_chat_stream(body)
    assert o.ok
    assert o.tool_calls is not None
    assert [(t.name, t.arguments) for t in o.tool_calls] == [("f", '{"x": 1}')]
    assert o.choices is not None
    calls = o.choices[1].tool_calls
    assert calls is not None
    assert [(t.name, t.arguments) for t in calls] == [("g", '{"y": 2}')]


def test_the_full_form_round_trips_the_choices_of_a_stream() -> None:
    body = _chunk(0, {"content": "A"}, "stop") + _chunk(1, {"content": "B"}, "length") + b"data: [DONE]\n\n"
    o = read_chat_stream(body)
    back = Outcome.from_dict(orjson.loads(orjson.dumps(o.to_dict(full=True))))
    assert back == o
    assert back.choices == o.choices


# -- over real HTTP: the simulator answers n choices ----------------------------------------------------------------


def _lengths(sim: Simulator, messages: list[dict[str, str]]) -> list[int]:
    """How many tokens (words, in the simulator) each of two choices takes when nothing cuts it."""
    reply = httpx.post(
        f"{sim.base_url}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": messages, "n": 2},
        headers={"authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    return [len(c["message"]["content"].split()) for c in reply.json()["choices"]]


def _prompt_with_a_longer_second_choice(sim: Simulator) -> tuple[list[dict[str, str]], int]:
    for n in range(40):
        messages = [{"role": "user", "content": f"Tell me about harbours, take {n}"}]
        first, second = _lengths(sim, messages)
        if first < second:
            return messages, first
    raise AssertionError("the simulator never answered a longer second choice")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_truncated_second_choice_fails_the_call(sim: Simulator, stream: bool) -> None:
    messages, first = _prompt_with_a_longer_second_choice(sim)
    with Client(sim.base_url, api_key=KEY, retry=ONE_TRY) as c:
        o = c.chat(model="gpt-4o-mini", messages=messages, n=2, max_tokens=first, stream=stream)
    assert (o.ok, o.code, o.kind, o.retryable) == (False, "truncated", "soft", False)
    assert o.finish_reason == "stop"
    assert o.text is not None
    assert len(o.text.split()) == first
    assert o.choices is not None
    assert [(c.index, c.finish_reason, c.code) for c in o.choices] == [
        (0, "stop", None),
        (1, "length", "truncated"),
    ]
    assert o.message == "choice 1 of 2 stopped at the length limit (finish_reason length)"
    assert o.to_dict()["choices"][1]["code"] == "truncated"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_every_choice_ok_over_http(sim: Simulator, stream: bool) -> None:
    with Client(sim.base_url, api_key=KEY, retry=ONE_TRY) as c:
        o = c.chat(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say two things"}], n=3, stream=stream
        )
    assert o.ok, o.summary()
    assert o.choices is not None
    assert [c.index for c in o.choices] == [0, 1, 2]
    assert all(c.ok and c.text for c in o.choices)
    assert o.text == o.choices[0].text


def test_a_filtered_answer_marks_every_choice(sim: Simulator) -> None:
    headers = {"x-genguard-scenario": "content_filtered"}
    with Client(sim.base_url, api_key=KEY, retry=ONE_TRY, headers=headers) as c:
        o = c.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "Something risky"}], n=2)
    assert o.code == "content_filtered"
    assert o.choices is not None
    assert [c.code for c in o.choices] == ["content_filtered", "content_filtered"]


# -- genguard explain shows them -------------------------------------------------------------------------------


def test_explain_shows_a_line_per_choice_and_the_json_field(tmp_path: Path) -> None:
    body = {"id": "x", "object": "chat.completion", "choices": [
        _choice(0, "Harbours shelter ships from the open sea.", "stop"),
        _choice(1, "Harbours are", "length"),
    ]}  # fmt: skip
    path = tmp_path / "n2.json"
    path.write_bytes(orjson.dumps(body))
    readable = CliRunner().invoke(cli, ["explain", str(path)])
    assert readable.exit_code == 0, readable.output
    assert "SOFT FAILURE truncated" in readable.output
    lines = [line for line in readable.output.splitlines() if line.strip().startswith(("choices", "1:"))]
    assert lines[0].split()[:3] == ["choices", "0:", "ok"]
    assert "1: truncated" in readable.output
    assert "Harbours are" in readable.output
    as_json = CliRunner().invoke(cli, ["explain", "--json", str(path)])
    assert as_json.exit_code == 0
    got = orjson.loads(as_json.output)
    assert [c["code"] for c in got["choices"]] == [None, "truncated"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 400), max_size=8))
def test_an_n2_stream_reads_the_same_however_the_network_splits_it(cuts: list[int]) -> None:
    body = (
        _chunk(0, {"role": "assistant", "content": ""})
        + _chunk(1, {"content": "Dé"})
        + _chunk(0, {"content": "Hé"})
        + _chunk(1, {"content": "jà"}, "length")
        + _chunk(0, {"content": "llo"}, "stop")
        + b"data: [DONE]\n\n"
    )
    whole = read_chat_stream(body)
    reader = ChatStreamReader()
    points = sorted({min(c, len(body)) for c in cuts})
    start = 0
    printed: list[str] = []
    for point in [*points, len(body)]:
        printed += reader.feed(body[start:point])
        start = point
    o = reader.finish()
    assert o == whole
    assert "".join(printed) == "Héllo"
    assert (o.code, o.text) == ("truncated", "Héllo")
    assert o.choices is not None
    assert o.choices[1].text == "Déjà"
