"""The chat-stream reader: every stream shape real providers send, and properties over any chunking."""

from __future__ import annotations

import doctest
import itertools
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genguard.core.chat_stream
import genguard.core.sse
from genguard import Outcome, ToolCall
from genguard.core.chat_stream import ChatStreamReader, read_chat_stream
from genguard.core.sse import ServerSentEvent

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> bytes:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
    body = {**HEAD, "choices": [choice], **top}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def raw(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"
ROLE = chunk({"role": "assistant", "content": ""})
USAGE = raw(
    {**HEAD, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}
)


def text_chunks(*pieces: str) -> bytes:
    return b"".join(chunk({"content": p}) for p in pieces)


def tool_stream() -> bytes:
    """Two tool calls whose argument fragments interleave by index, split inside JSON tokens."""

    def frag(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, **fields}]}

    return b"".join(
        [
            ROLE,
            chunk(frag(0, id="call_a", type="function", function={"name": "get_weather", "arguments": ""})),
            chunk(frag(0, function={"arguments": '{"ci'})),
            chunk(frag(1, id="call_b", type="function", function={"name": "get_time", "arguments": ""})),
            chunk(frag(1, function={"arguments": '{"tz": "Europe/'})),
            chunk(frag(0, function={"arguments": 'ty": "Par'})),
            chunk(frag(1, function={"arguments": 'Paris"}'})),
            chunk(frag(0, function={"arguments": 'is"}'})),
            chunk({}, "tool_calls"),
            USAGE,
            DONE,
        ]
    )


def test_plain_text_stream_with_usage() -> None:
    body = ROLE + text_chunks("Hel", "lo", " world") + chunk({}, "stop") + USAGE + DONE
    r = ChatStreamReader(headers={"X-Request-Id": "req_1"})
    assert r.feed(body) == ["Hel", "lo", " world"]
    assert (r.text, r.finish_reason, r.done, r.chunks) == ("Hello world", "stop", True, 6)
    o = r.finish()
    assert (o.ok, o.code, o.text, o.finish_reason, o.request_id) == (
        True,
        None,
        "Hello world",
        "stop",
        "req_1",
    )
    assert o.usage is not None
    assert (o.usage.prompt_tokens, o.usage.completion_tokens, o.usage.total_tokens) == (9, 3, 12)


def test_deltas_come_out_as_they_arrive() -> None:
    r = ChatStreamReader()
    body = text_chunks("a", "b")
    cut = body.index(b"\n\n") + 1  # between the two line ends of the first event
    assert r.feed(body[:cut]) == []
    assert r.feed(body[cut : cut + 1]) == ["a"]
    assert r.feed(body[cut + 1 :]) == ["b"]


def test_tool_calls_interleaved_by_index_are_merged() -> None:
    o = read_chat_stream(tool_stream())
    assert o.ok
    assert o.finish_reason == "tool_calls"
    assert o.tool_calls == (
        ToolCall("call_a", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_b", "get_time", '{"tz": "Europe/Paris"}'),
    )
    assert [t.parsed_arguments() for t in o.tool_calls] == [{"city": "Paris"}, {"tz": "Europe/Paris"}]


def test_tool_call_fragments_without_index() -> None:
    body = (
        chunk(
            {"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a"'}}]}
        )
        + chunk({"tool_calls": [{"function": {"arguments": ": 1}"}}]})
        + chunk({"tool_calls": [{"id": "c2", "function": {"name": "g", "arguments": {"b": 2}}}]})
        + chunk({}, "tool_calls")
        + DONE
    )
    o = read_chat_stream(body)
    assert o.tool_calls == (ToolCall("c1", "f", '{"a": 1}'), ToolCall("c2", "g", '{"b":2}'))


def test_azure_prompt_filter_chunk_first() -> None:
    azure = raw({"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": [
        {"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}}}
    ]})  # fmt: skip
    o = read_chat_stream(azure + ROLE + text_chunks("ok") + chunk({}, "stop") + DONE)
    assert (o.ok, o.text) == (True, "ok")


def test_choice_zero_is_the_text_and_every_choice_is_judged() -> None:
    # Until n > 1 was read whole, choice 1 here was ignored and the outcome was ok: a truncated choice passed.
    other = raw({**HEAD, "choices": [{"index": 1, "delta": {"content": "SECOND"}, "finish_reason": None}]})
    both = raw({**HEAD, "choices": [
        {"index": 1, "delta": {"content": "X"}, "finish_reason": "length"},
        {"index": 0, "delta": {"content": "first"}, "finish_reason": "stop"},
    ]})  # fmt: skip
    o = read_chat_stream(other + both + DONE)
    assert (o.ok, o.code, o.text, o.finish_reason) == (False, "truncated", "first", "stop")
    assert o.choices is not None
    assert [(c.index, c.text, c.finish_reason, c.code) for c in o.choices] == [
        (0, "first", "stop", None),
        (1, "SECONDX", "length", "truncated"),
    ]


@pytest.mark.parametrize(
    ("body", "code", "retryable", "text"),
    [
        pytest.param(text_chunks("Once upon") + chunk({}, "length") + DONE, "truncated", False, "Once upon", id="length"),
        pytest.param(text_chunks("Once") + chunk({}, "MAX_TOKENS") + DONE, "truncated", False, "Once", id="max-tokens"),
        pytest.param(chunk({"content": None}, "content_filter") + DONE, "content_filtered", False, None, id="content-filter"),
        pytest.param(ROLE + chunk({}, "stop") + DONE, "empty_output", True, None, id="empty"),
        pytest.param(ROLE + text_chunks("  \n") + chunk({}, "stop") + DONE, "empty_output", True, "  \n", id="whitespace"),
        pytest.param(ROLE + text_chunks("partial"), "incomplete_stream", True, "partial", id="eof-no-done"),
        pytest.param(ROLE + text_chunks("partial") + DONE, "incomplete_stream", True, "partial", id="done-no-finish"),
        pytest.param(b"", "incomplete_stream", True, None, id="nothing"),
        pytest.param(b": keep-alive\n\n: OPENROUTER PROCESSING\n\n", "incomplete_stream", True, None, id="only-comments"),
    ],
)  # fmt: skip
def test_stream_endings(body: bytes, code: str, retryable: bool, text: str | None) -> None:
    o = read_chat_stream(body)
    assert (o.ok, o.code, o.retryable, o.text) == (False, code, retryable, text)
    assert o.kind == "soft"


def test_incomplete_stream_messages_say_how_it_ended() -> None:
    eof = read_chat_stream(ROLE + text_chunks("a", "b"))
    assert eof.message == "the stream ended without [DONE] and without any finish_reason after 3 chunks"
    done = read_chat_stream(text_chunks("a") + DONE)
    assert done.message == "the stream sent [DONE] without any finish_reason after 1 chunk"


def test_refusal_is_content_filtered_with_the_refusal_as_message() -> None:
    body = (
        chunk({"role": "assistant", "content": None, "refusal": ""})
        + chunk({"refusal": "I can't help "})
        + chunk({"refusal": "with that."})
        + chunk({}, "stop")
        + DONE
    )
    o = read_chat_stream(body)
    assert (o.code, o.message) == ("content_filtered", "I can't help with that.")


def test_usage_is_kept_on_a_truncated_stream() -> None:
    o = read_chat_stream(text_chunks("x") + chunk({}, "length") + USAGE + DONE)
    assert o.code == "truncated"
    assert o.usage is not None
    assert o.usage.total_tokens == 12


# -- errors inside a 200 stream ----------------------------------------------------------------------


def test_openai_style_error_object_then_done() -> None:
    body = (
        text_chunks("Hel")
        + raw({"error": {"message": "The server had an error", "type": "server_error", "code": None}})
        + DONE
    )
    o = read_chat_stream(body, headers={"x-request-id": "req_9"})
    assert (o.code, o.kind, o.retryable, o.text) == ("stream_error", "soft", True, "Hel")
    assert (o.message, o.provider_type, o.request_id) == ("The server had an error", "server_error", "req_9")


def test_openrouter_error_chunk_with_finish_reason_error() -> None:
    err = {**HEAD, "error": {"code": "server_error", "message": "Provider disconnected"},
           "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}]}  # fmt: skip
    o = read_chat_stream(text_chunks("par", "tial") + raw(err) + DONE)
    assert (o.code, o.retryable, o.text, o.message) == (
        "stream_error",
        True,
        "partial",
        "Provider disconnected",
    )
    assert o.provider_code == "server_error"
    assert o.finish_reason == "error"


def test_embedded_error_that_cannot_succeed_is_not_retryable() -> None:
    err = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "code": "context_length_exceeded",
        }
    }
    o = read_chat_stream(raw(err) + DONE)
    assert (o.code, o.retryable, o.provider_code) == ("stream_error", False, "context_length_exceeded")


def test_anthropic_style_event_error() -> None:
    body = text_chunks("Hi") + raw(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"
    )
    o = read_chat_stream(body)
    assert (o.code, o.retryable, o.message, o.provider_type, o.text) == (
        "stream_error",
        True,
        "Overloaded",
        "overloaded_error",
        "Hi",
    )


def test_event_error_with_plain_text_data() -> None:
    o = read_chat_stream(text_chunks("Hi") + b"event: error\ndata: upstream exploded\n\n")
    assert (o.code, o.retryable, o.message) == ("stream_error", True, "upstream exploded")


def test_finish_reason_error_without_error_object() -> None:
    o = read_chat_stream(text_chunks("a") + chunk({}, "abort") + DONE)
    assert (o.code, o.retryable, o.text) == ("stream_error", True, "a")
    assert o.message is not None
    assert "abort" in o.message


def test_error_wins_over_a_later_finish_reason() -> None:
    body = raw({"error": {"message": "boom"}}) + chunk({}, "stop") + DONE
    o = read_chat_stream(body)
    assert (o.code, o.message) == ("stream_error", "boom")


# -- Anthropic Messages streams passed through a gateway ----------------------------------------------


def anthropic_stream(stop_reason: str = "end_turn", stop: bool = True) -> bytes:
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "role": "assistant", "content": [], "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "check."}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ]  # fmt: skip
    if stop:
        events += [
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": {"output_tokens": 15}}),
            ("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
    return b"".join(raw(obj, name) for name, obj in events)


def test_anthropic_messages_stream() -> None:
    r = ChatStreamReader()
    assert r.feed(anthropic_stream("tool_use")) == ["Let me ", "check."]
    assert r.done
    o = r.finish()
    assert (o.ok, o.text, o.finish_reason) == (True, "Let me check.", "tool_calls")
    assert o.tool_calls == (ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),)
    assert o.usage is not None
    assert (o.usage.prompt_tokens, o.usage.completion_tokens, o.usage.total_tokens) == (25, 15, 40)


@pytest.mark.parametrize(
    ("stop_reason", "code"),
    [("max_tokens", "truncated"), ("refusal", "content_filtered"), ("end_turn", None)],
)
def test_anthropic_stop_reasons(stop_reason: str, code: str | None) -> None:
    assert read_chat_stream(anthropic_stream(stop_reason)).code == code


def test_anthropic_stream_cut_before_message_delta() -> None:
    o = read_chat_stream(anthropic_stream(stop=False))
    assert (o.code, o.text) == ("incomplete_stream", "Let me check.")


# -- transport errors the client saw ------------------------------------------------------------------


def test_transport_error_after_finish_reason_is_ignored() -> None:
    r = ChatStreamReader()
    r.feed(text_chunks("done") + chunk({}, "stop"))
    o = r.finish(transport_error=Outcome.failure("connection_error", message="peer closed"))
    assert (o.ok, o.text) == (True, "done")


def test_timeout_mid_stream_keeps_the_partial_output() -> None:
    r = ChatStreamReader()
    r.feed(text_chunks("par") + USAGE)
    stall = Outcome.failure("timeout", message="no chunk for 5.0s")
    o = r.finish(transport_error=stall)
    assert (o.code, o.kind, o.message, o.text) == ("timeout", "hard", "no chunk for 5.0s", "par")
    assert o.usage is not None


def test_connection_drop_mid_stream_is_incomplete_stream_naming_it() -> None:
    r = ChatStreamReader()
    r.feed(text_chunks("par", "tial"))
    o = r.finish(transport_error=Outcome.failure("connection_error", message="peer closed connection"))
    assert (o.code, o.retryable, o.text) == ("incomplete_stream", True, "partial")
    assert o.message == "the connection failed (connection_error: peer closed connection) after 2 chunks"


def test_extra_native_finish_reason_and_reasoning() -> None:
    body = (
        chunk({"reasoning_content": "think "}) + chunk({"reasoning": "more"}) + text_chunks("a")
        + raw({**HEAD, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "native_finish_reason": "STOP_SEQUENCE"}]})
        + DONE
    )  # fmt: skip
    o = read_chat_stream(body)
    assert o.ok
    assert o.to_dict()["native_finish_reason"] == "STOP_SEQUENCE"
    assert o.extra["reasoning"] == "think more"


def test_feed_event_and_properties() -> None:
    r = ChatStreamReader()
    data = orjson.dumps({"choices": [{"index": 0, "delta": {"content": "x"}}]}).decode()
    assert r.feed_event(ServerSentEvent(data=data)) == "x"
    assert r.feed_event(ServerSentEvent(data="[DONE]")) is None
    assert (r.text, r.done, r.chunks, r.tool_calls, r.usage, r.finish_reason) == (
        "x",
        True,
        1,
        (),
        None,
        None,
    )


def test_captured_stream_missing_its_final_blank_line() -> None:
    body = text_chunks("ok") + chunk({}, "stop") + b"data: [DONE]"
    assert read_chat_stream(body).ok
    assert read_chat_stream(body.replace(b"\n", b"\r\n")).ok


def test_doctests() -> None:
    for module in (genguard.core.sse, genguard.core.chat_stream):
        result = doctest.testmod(module)
        assert result.attempted > 0
        assert result.failed == 0


# -- properties -----------------------------------------------------------------------------------------

STREAMS = [
    ROLE
    + text_chunks("h\u00e9llo ", "\U0001f600 \u4e16\u754c", "\u2028end")
    + chunk({}, "stop")
    + USAGE
    + DONE,
    tool_stream(),
    anthropic_stream("tool_use"),
    text_chunks("a") + raw({"type": "error", "error": {"type": "api_error", "message": "x"}}, "error"),
    (ROLE + text_chunks("crlf") + chunk({}, "length") + DONE).replace(b"\n", b"\r\n"),
]


def _chunked(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    return [body[a:b] for a, b in itertools.pairwise([0, *points, len(body)])]


def _run(chunks: list[bytes]) -> tuple[list[str], dict[str, Any]]:
    r = ChatStreamReader()
    deltas = [d for c in chunks for d in r.feed(c)]
    return deltas, r.finish().to_dict()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(STREAMS), st.lists(st.integers(min_value=0, max_value=100_000), max_size=30))
def test_any_chunking_gives_the_same_outcome(body: bytes, cuts: list[int]) -> None:
    deltas, outcome = _run(_chunked(body, cuts))
    assert (deltas, outcome) == _run([body])
    assert "".join(deltas) == (outcome["text"] or "")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["choices", "delta", "content", "index", "tool_calls", "function", "arguments", "name",
                         "id", "finish_reason", "usage", "error", "type", "message", "refusal", "partial_json",
                         "text", "stop_reason", "content_block", "native_finish_reason", "reasoning"]),
        inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, "error", "message_delta"]), _json_values), max_size=6))
def test_any_json_events_never_crash(events: list[tuple[str | None, Any]]) -> None:
    r = ChatStreamReader()
    for name, obj in events:
        r.feed(raw(obj, name))
    o = r.finish()
    assert o.ok or o.code in {
        "incomplete_stream",
        "stream_error",
        "empty_output",
        "truncated",
        "content_filtered",
    }
    assert isinstance(r.text, str)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_any_bytes_never_crash(a: bytes, b: bytes) -> None:
    r = ChatStreamReader()
    r.feed(a)
    r.feed(b"data: " + b + b"\n\n")
    assert isinstance(r.finish(), Outcome)


# -- end to end: real streams from the simulator over loopback HTTP ----------------------------------------


def _stream_from(sim: Any, scenario: str, dialect: str = "openai", **body: Any) -> tuple[Outcome, str]:
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me about rivers"}],
               "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 40, **body}  # fmt: skip
    headers = {"x-genguard-scenario": scenario, "x-genguard-dialect": dialect}
    with (
        httpx.Client(timeout=10) as http,
        http.stream("POST", sim.base_url + "/chat/completions", json=request, headers=headers) as resp,
    ):
        reader = ChatStreamReader(status=resp.status_code, headers=resp.headers)
        printed = []
        try:
            for raw_chunk in resp.iter_raw(97):  # small reads, so events and characters split across them
                printed += reader.feed(raw_chunk)
        except httpx.TransportError as exc:
            return reader.finish(
                transport_error=Outcome.failure("connection_error", message=str(exc))
            ), "".join(printed)
    return reader.finish(), "".join(printed)


@pytest.mark.parametrize("dialect", ["openai", "azure", "openrouter"])
def test_simulator_ok_stream(sim: Any, dialect: str) -> None:
    o, printed = _stream_from(sim, "ok", dialect)
    assert (o.ok, o.finish_reason) == (True, "stop")
    assert o.text
    assert printed == o.text
    assert o.usage is not None
    assert o.usage.completion_tokens


def test_simulator_tool_call_stream(sim: Any) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
    o, _ = _stream_from(sim, "ok", tools=[tool])
    assert (o.ok, o.finish_reason) == (True, "tool_calls")
    assert o.tool_calls is not None
    assert o.tool_calls[0].name == "get_weather"
    assert "city" in o.tool_calls[0].parsed_arguments()


@pytest.mark.parametrize(
    ("scenario", "code"),
    [("truncated", "truncated"), ("content_filtered", "content_filtered"), ("empty_output", "empty_output"),
     ("incomplete_stream", "incomplete_stream")],
)  # fmt: skip
def test_simulator_soft_failures(sim: Any, scenario: str, code: str) -> None:
    o, printed = _stream_from(sim, scenario)
    assert o.code == code
    assert (o.text or "") == printed


@pytest.mark.parametrize("dialect", ["openai", "openrouter", "anthropic", "azure", "vllm"])
def test_simulator_stream_error_in_each_dialect(sim: Any, dialect: str) -> None:
    o, printed = _stream_from(sim, "stream_error", dialect)
    assert (o.code, o.kind) == ("stream_error", "soft")
    assert o.message
    assert o.text == printed
    assert printed  # the partial text before the error is kept


def test_simulator_connection_cut_mid_stream(sim: Any) -> None:
    o, printed = _stream_from(sim, "connection_error")
    assert (o.code, o.retryable) == ("incomplete_stream", True)
    assert o.message is not None
    assert "connection_error" in o.message
    assert o.text == printed


# -- the lean path for common chunks against the general one ------------------------------------------------


def _careful(chunks: list[bytes]) -> tuple[list[str], dict[str, Any]]:
    """The same stream read event by event through feed_event: decoded text, no lean path anywhere."""
    r = ChatStreamReader()
    d = genguard.core.sse.SSEDecoder()
    deltas = [p for c in chunks for e in d.feed(c) if (p := r.feed_event(e))]
    return deltas, r.finish().to_dict()


def _choice(delta: Any, **more: Any) -> bytes:
    return raw({**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": None, **more}]})


# Chunks that look like the common one but differ in one thing the lean path must notice.
_chat_blocks = st.sampled_from(
    [
        chunk({"content": "a"}),
        chunk({"content": "\u00e9\U0001f600"}),
        chunk({"content": ""}),
        chunk({"content": None}),
        chunk({"content": 5}),
        chunk({"content": "r", "role": "assistant"}),
        chunk({"content": "t", "reasoning_content": "why"}),
        chunk({"content": "", "refusal": "I can't"}),
        chunk({"content": "f"}, "stop"),
        chunk({"content": "L"}, "length"),
        chunk({"content": "u"}, usage=None),
        chunk({"content": "u"}, usage={"prompt_tokens": 1, "completion_tokens": 2}),
        chunk({"content": "e"}, error={"message": "boom"}),
        chunk({"content": "e"}, error=None),
        chunk({"reasoning": "think"}),
        chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}),
        _choice({"content": "no-index"}, index=None),
        raw({**HEAD, "choices": [{"index": 1, "delta": {"content": "one"}, "finish_reason": None}]}),
        raw({**HEAD, "choices": [{"delta": {"content": "x"}}]}),
        raw({"choices": "abc"}),
        raw({"choices": {"0": {"delta": {"content": "d"}}}}),
        raw({"choices": [["delta"]]}),
        raw({"choices": [{"delta": ["content"]}]}),
        raw(["not", "a", "dict"]),
        raw("a string"),
        raw({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "anth"}}),
        raw({"error": {"message": "late"}}, "error"),
        b'data: {"choices":[{"index":0,"delta":{"content":"bad \xff utf8"},"finish_reason":null}]}\n\n',
        b"data: [DONE]\n\n",
        b": keep-alive\n\n",
        b"event: message\n" + chunk({"content": "ev"}),
        chunk({"content": "crlf"}).replace(b"\n", b"\r\n"),
        b"data: not json\n\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_chat_blocks, max_size=12).map(b"".join),
    st.sampled_from([b"", chunk({}, "stop") + DONE]),  # with a finish, reasoning and refusals show
    st.lists(st.integers(0, 100_000), max_size=20),
)
def test_lean_path_reads_like_the_general_one(body: bytes, end: bytes, cuts: list[int]) -> None:
    body += end
    chunks = _chunked(body, cuts)
    assert _run(chunks) == _careful(chunks) == _careful([body])


def test_invalid_utf8_in_a_lean_looking_chunk_is_replaced_not_dropped() -> None:
    r = ChatStreamReader()
    assert r.feed(
        b'data: {"choices":[{"index":0,"delta":{"content":"a\xffb"},"finish_reason":null}]}\n\n'
    ) == ["a\ufffdb"]
    assert r.chunks == 1


def test_usage_null_on_every_chunk_then_the_usage_chunk() -> None:
    # OpenAI with include_usage sends "usage": null on every chunk before the last one.
    body = ROLE + chunk({"content": "Hi"}, usage=None) + chunk({}, "stop", usage=None) + USAGE + DONE
    o = read_chat_stream(body)
    assert (o.ok, o.text, o.usage.total_tokens if o.usage else None) == (True, "Hi", 12)


def test_chunks_counts_lean_and_general_chunks() -> None:
    r = ChatStreamReader()
    r.feed(ROLE + text_chunks("a", "b") + b": ping\n\n")
    r.feed(chunk({"content": "c"}, "stop") + DONE)
    assert (r.chunks, r.text) == (4, "abc")


def test_text_beside_reasoning_or_refusal_is_not_read_as_text_alone() -> None:
    body = chunk({"content": "t", "reasoning_content": "why"}) + chunk({}, "stop") + DONE
    assert read_chat_stream(body).to_dict()["reasoning"] == "why"
    o = read_chat_stream(chunk({"content": "", "refusal": "I can't"}) + chunk({}, "stop") + DONE)
    assert (o.code, o.message) == ("content_filtered", "I can't")
