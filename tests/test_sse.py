"""The SSE decoder against the WHATWG rules: table tests per rule, and properties over any chunking."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genguard.core.sse import ServerSentEvent, SSEDecoder


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    d = SSEDecoder()
    out: list[ServerSentEvent] = []
    for c in chunks:
        out += d.feed(c)
    return out + d.close()


def spec_events(body: bytes) -> list[ServerSentEvent]:
    """A slow, literal reading of the spec's interpretation algorithm, as an oracle."""
    text = body.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # whatever follows the last line end is an unfinished line: discarded at EOF
    out = []
    data, event, last_id, retry = "", "", "", None
    for line in lines:
        if line == "":
            if data:
                out.append(ServerSentEvent(event or "message", data.removesuffix("\n"), last_id, retry))
            data, event, retry = "", "", None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data += value + "\n"
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and re.fullmatch(r"[0-9]+", value):
            retry = int(value)
    return out


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"data: a\n\n", [("message", "a", "", None)], id="lf"),
        pytest.param(b"data: a\r\n\r\n", [("message", "a", "", None)], id="crlf"),
        pytest.param(b"data: a\r\r", [("message", "a", "", None)], id="cr"),
        pytest.param(
            b"data: a\r\n\ndata: b\r\r\n",
            [("message", "a", "", None), ("message", "b", "", None)],
            id="mixed",
        ),
        pytest.param(b"\xef\xbb\xbfdata: a\n\n", [("message", "a", "", None)], id="bom-dropped"),
        pytest.param(b"data: \xef\xbb\xbfa\n\n", [("message", "\ufeffa", "", None)], id="bom-inside-kept"),
        pytest.param(
            b": keep-alive\n\n: OPENROUTER PROCESSING\n\ndata: x\n\n",
            [("message", "x", "", None)],
            id="comments",
        ),
        pytest.param(b"data:a\n\n", [("message", "a", "", None)], id="no-space"),
        pytest.param(b"data:  a\n\n", [("message", " a", "", None)], id="one-space-removed"),
        pytest.param(b"data: a:b: c\n\n", [("message", "a:b: c", "", None)], id="first-colon-splits"),
        pytest.param(
            b"data: a\ndata: b\ndata\n\n", [("message", "a\nb\n", "", None)], id="multi-line-and-bare"
        ),
        pytest.param(b"data\n\n", [("message", "", "", None)], id="bare-data-dispatches-empty"),
        pytest.param(b"data:\n\n", [("message", "", "", None)], id="empty-data-line-dispatches"),
        pytest.param(b"event: x\n\n", [], id="no-data-no-dispatch"),
        pytest.param(
            b"event: ping\ndata: 1\n\ndata: 2\n\n",
            [("ping", "1", "", None), ("message", "2", "", None)],
            id="event-resets",
        ),
        pytest.param(b"event\ndata: 1\n\n", [("message", "1", "", None)], id="empty-event-is-message"),
        pytest.param(
            b"id: 7\ndata: 1\n\ndata: 2\n\n",
            [("message", "1", "7", None), ("message", "2", "7", None)],
            id="id-persists",
        ),
        pytest.param(b"id: 7\n\ndata: 1\n\n", [("message", "1", "7", None)], id="id-set-without-dispatch"),
        pytest.param(
            b"id: 7\ndata: 1\n\nid: a\x00b\ndata: 2\n\n",
            [("message", "1", "7", None), ("message", "2", "7", None)],
            id="id-nul-ignored",
        ),
        pytest.param(b"id\ndata: 1\n\n", [("message", "1", "", None)], id="bare-id-clears"),
        pytest.param(
            b"retry: 1500\ndata: 1\n\ndata: 2\n\n",
            [("message", "1", "", 1500), ("message", "2", "", None)],
            id="retry",
        ),
        pytest.param(
            b"retry: 15s\ndata: 1\n\nretry: -1\ndata: 2\n\nretry: \xd9\xa3\ndata: 3\n\n",
            [("message", "1", "", None), ("message", "2", "", None), ("message", "3", "", None)],
            id="retry-digits-only",
        ),
        pytest.param(
            b"foo: bar\nDATA: x\ndata: y\n\n", [("message", "y", "", None)], id="unknown-fields-ignored"
        ),
        pytest.param(
            "data: a\u2028b\u2029c\x85d\x0be\x0cf\n\n".encode(),
            [("message", "a\u2028b\u2029c\x85d\x0be\x0cf", "", None)],
            id="unicode-separators-are-content",
        ),
        pytest.param(
            b"data: \xff\xfeok\n\n", [("message", "\ufffd\ufffdok", "", None)], id="invalid-utf8-replaced"
        ),
        pytest.param(
            b"data: a\n\ndata: unfinished\n", [("message", "a", "", None)], id="unterminated-event-discarded"
        ),
        pytest.param(
            b"data: a\n\ndata: unfinished", [("message", "a", "", None)], id="unterminated-line-discarded"
        ),
        pytest.param(b"", [], id="empty"),
    ],
)
def test_rules(body: bytes, expected: list[tuple[str, str, str, int | None]]) -> None:
    assert [(e.event, e.data, e.id, e.retry) for e in decode(body)] == expected
    assert decode(body) == spec_events(body)


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # Were the LF read as a second line end, "data: b" would be dispatched alone after a blank line.
    events = decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert [e.data for e in events] == ["a\nb"]


def test_cr_then_empty_chunk_then_lf() -> None:
    events = decode(b"data: a\r", b"", b"\n", b"\n")
    assert [e.data for e in events] == ["a"]


def test_multibyte_split_across_chunks() -> None:
    body = "data: h\u00e9llo \U0001f600 \u4e16\n\n".encode()
    for i in range(len(body) + 1):
        assert [e.data for e in decode(body[:i], body[i:])] == ["h\u00e9llo \U0001f600 \u4e16"]
    assert [e.data for e in decode(*[body[i : i + 1] for i in range(len(body))])] == [
        "h\u00e9llo \U0001f600 \u4e16"
    ]


def test_bom_split_across_chunks_and_only_at_start() -> None:
    events = decode(b"\xef", b"\xbb", b"\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n")
    # The second BOM is not at the start of the stream: it belongs to the line, making an unknown field.
    assert [e.data for e in events] == ["a"]


def test_events_dispatch_as_soon_as_the_blank_line_arrives() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\n") == []
    assert [e.data for e in d.feed(b"\n")] == ["a"]
    assert [e.data for e in d.feed(b"data: b\r")] == []
    assert [e.data for e in d.feed(b"\r")] == ["b"]


def test_no_size_cap() -> None:
    big = b"x" * 3_000_000
    d = SSEDecoder()
    out = []
    for i in range(0, len(big), 1000):
        out += d.feed(b"data: " + big[i : i + 1000] if i == 0 else big[i : i + 1000])
    out += d.feed(b"\n\n")
    assert len(out) == 1
    assert len(out[0].data) == 3_000_000


def test_close_discards_and_resets() -> None:
    d = SSEDecoder()
    d.feed(b"id: 1\nretry: 10\n\ndata: half")
    assert d.last_event_id == "1"
    assert d.retry == 10
    assert d.close() == []
    assert d.last_event_id == ""
    assert [e.data for e in d.feed(b"\n\ndata: new\n\n")] == ["new"]


def test_feed_raw_matches_feed() -> None:
    body = b"id: 3\nevent: e\ndata: a\n\ndata: b\nretry: 5\n\n"
    assert [tuple(e.__getattribute__(f) for f in ("event", "data", "id", "retry")) for e in decode(body)] == (
        SSEDecoder().feed_raw(body)
    )


# -- properties ----------------------------------------------------------------------------------

_pieces = st.sampled_from(
    [
        b"data: ",
        b"data:",
        b"data",
        b"event: ",
        b"id: ",
        b"retry: ",
        b": c",
        b"\n",
        b"\r",
        b"\r\n",
        b"\xef\xbb\xbf",
        "\u00e9".encode(),
        "\U0001f600".encode(),
        "\u2028".encode(),
        b"\x00",
        b"\xff",
        b"12",
        b"x",
        b'{"a": 1}',
        b" ",
        b"[DONE]",
    ]
)
_streams = st.lists(_pieces, max_size=40).map(b"".join) | st.binary(max_size=200)


def _chunked(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=300, deadline=None)
@given(_streams, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_chunking_gives_the_same_events(body: bytes, cuts: list[int]) -> None:
    whole = decode(body)
    assert decode(*_chunked(body, cuts)) == whole
    assert whole == spec_events(body)


@settings(max_examples=100, deadline=None)
@given(_streams)
def test_byte_by_byte_equals_whole(body: bytes) -> None:
    assert decode(*[body[i : i + 1] for i in range(len(body))]) == decode(body)


# -- the fast paths and where they meet the careful one ---------------------------------------------------


def payloads(*chunks: bytes) -> list[tuple[str, str]]:
    """(event, data) pairs as feed_payloads gives them, raw values decoded the documented way."""
    d = SSEDecoder()
    out: list[tuple[str, str]] = []
    for c in chunks:
        for item in d.feed_payloads(c):
            out.append(("message", item.decode("utf-8", "replace")) if isinstance(item, bytes) else item[:2])
    return out


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([b"data: a\n", b"\n", b"data: b\n\n"], [("message", "a", ""), ("message", "b", "")],
                     id="split-exactly-at-the-blank-line"),
        pytest.param([b"data: a\n\n", b"data: b\r\r", b"data: c\n\n"],
                     [("message", "a", ""), ("message", "b", ""), ("message", "c", "")], id="cr-arrives-later"),
        pytest.param([b"data: a\n\n", b"data: b\r\n\n", b"data: c\rd\n\n"],
                     [("message", "a", ""), ("message", "b", ""), ("message", "c", "")], id="cr-inside-a-whole-looking-chunk"),
        pytest.param([b"data: a\n\n", b"data: b\r", b"\ndata: c\n\n"],
                     [("message", "a", ""), ("message", "b\nc", "")], id="crlf-split-then-a-whole-looking-chunk"),
        pytest.param([b"data: a\n\nevent: x\n", b"data: b\n\n"], [("message", "a", ""), ("x", "b", "")],
                     id="event-field-before-a-whole-looking-chunk"),
        pytest.param([b"id: 7\n", b"data: a\n\n", b"data: b\n\n"], [("message", "a", "7"), ("message", "b", "7")],
                     id="id-field-then-fast-events"),
        pytest.param([b"data: a\n", b"data: b\n\n"], [("message", "a\nb", "")], id="open-event-continues"),
        pytest.param([b"data: a\n\n", b"data: b\n\n\n", b"data: c\n\n"],
                     [("message", "a", ""), ("message", "b", ""), ("message", "c", "")], id="extra-blank-line"),
        pytest.param([b"\xef\xbb\xbfdata: a\n\n", b"data: b\n\n"], [("message", "a", ""), ("message", "b", "")],
                     id="bom-first"),
        pytest.param([b"data: a\n\n", b"\xef\xbb\xbfdata: b\n\n", b"data: c\n\n"],
                     [("message", "a", ""), ("message", "c", "")], id="bom-later-is-part-of-the-line"),
        pytest.param([b": ping\n\n", b"data: a\n\n: ping\n\ndata: b\n\n"], [("message", "a", ""), ("message", "b", "")],
                     id="keep-alive-comments"),
        pytest.param([b"data: a\n\ndata: b\ndata: c\n\ndata: d\n\nevent: e\ndata: f\n\ndata: g\n"],
                     [("message", "a", ""), ("message", "b\nc", ""), ("message", "d", ""), ("e", "f", "")],
                     id="one-read-mixing-shapes"),
        pytest.param([b"data: a\n\ndata: b\n\ndata: c\n", b"\ndata: d\n\n"],
                     [("message", "a", ""), ("message", "b", ""), ("message", "c", ""), ("message", "d", "")],
                     id="regular-read-with-a-tail"),
        pytest.param([b"data: a\n\ndata:b\n\nretry: 9\n", b"data: c\n\ndata: d\n\n"],
                     [("message", "a", ""), ("message", "b", ""), ("message", "c", ""), ("message", "d", "")],
                     id="retry-then-fast"),
    ],
)  # fmt: skip
def test_fast_and_careful_paths_meet(chunks: list[bytes], expected: list[tuple[str, str, str]]) -> None:
    events = decode(*chunks)
    assert [(e.event, e.data, e.id) for e in events] == expected
    assert events == spec_events(b"".join(chunks))
    assert payloads(*chunks) == [(e, d) for e, d, _ in expected]


def test_retry_field_before_a_whole_looking_chunk_is_kept() -> None:
    d = SSEDecoder()
    assert d.feed(b"retry: 250\n") == []
    assert d.feed(b"data: a\n\n") == [ServerSentEvent("message", "a", "", 250)]
    assert d.feed(b"data: b\n\n") == [ServerSentEvent("message", "b", "", None)]


def test_feed_payloads_hands_out_raw_bytes_for_one_line_events() -> None:
    d = SSEDecoder()
    # Invalid UTF-8 stays as it came: the reader decides what to do with bytes orjson rejects.
    assert d.feed_payloads(b'data: {"a": "\xff"}\n\n') == [b'{"a": "\xff"}']
    assert d.feed_payloads(b"id: 1\nevent: e\ndata: x\n\n") == [("e", "x", "1", None)]
    assert d.feed_payloads(b"data: y\n\n") == [b"y"]


# SSE-shaped blocks rather than free bytes, so that every fast path is taken often and meets the others.
_blocks = st.sampled_from(
    [
        b'data: {"a": 1}\n\n',
        b'data: {"a": 1}\n\n' * 3,
        "data: h\u00e9llo \U0001f600\n\n".encode(),
        b"data: \xff\xfe\n\n",
        b"data: [DONE]\n\n",
        b"data: \n\n",
        b": keep-alive\n\n",
        b":\n\n",
        b"data:x\n\n",
        b"data: a\n",
        b"event: e\n",
        b"id: 7\n",
        b"retry: 10\n",
        b"\n",
        b"\r\n",
        b"\r",
        b"\xef\xbb\xbf",
        b"data: a\r\n\r\n",
        b"data: a\rdata: b\r\r",
        b"data: a\r\n\n",
        b"data: a\rb\n\n",
    ]
)
_sse_streams = st.lists(_blocks, max_size=25).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(_sse_streams, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_sse_shaped_streams_any_chunking(body: bytes, cuts: list[int]) -> None:
    whole = decode(body)
    assert whole == spec_events(body)
    chunks = _chunked(body, cuts)
    assert decode(*chunks) == whole
    assert payloads(*chunks) == [(e.event, e.data) for e in whole]


@settings(max_examples=100, deadline=None)
@given(_sse_streams)
def test_sse_shaped_streams_byte_by_byte(body: bytes) -> None:
    singles = [body[i : i + 1] for i in range(len(body))]
    assert decode(*singles) == decode(body)
    assert payloads(*singles) == payloads(body)
