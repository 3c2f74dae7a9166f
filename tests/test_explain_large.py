"""A huge JSON body is explained from pieces of its file: the same diagnosis as from its bytes, in a peak
memory of about one copy of its text (core/large_json.py)."""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import os
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from genguard import Outcome
from genguard.cli import cli
from genguard.cli import explain as explain_cli
from genguard.cli._render import render_outcome
from genguard.cli._terminal import escape_json_controls
from genguard.core import capture
from genguard.core.capture import read_capture_file, read_captures
from genguard.core.exceptions import CaptureError
from genguard.core.explain import explain_exchange
from genguard.core.large_json import BigText, parse_pieces

MIB = 1 << 20
# Every kind of character a piece may be cut inside: escapes, a surrogate pair written as escapes, UTF-8 of
# two, three and four bytes, a backslash, quotes, controls (DEL and C1 too, which --json escapes itself).
TRICKY = 'a "quoted" C:\\path\\ café 漢字 😀 \U0001f600 \t\n\x01 \x7f \x9b31m \u2028 end. '


def _source(data: bytes, piece: int) -> Any:
    def open_at(offset: int) -> Iterator[bytes]:
        for start in range(offset, len(data), piece):
            yield data[start : start + piece]

    return open_at


def _body(size: int, text: str = TRICKY, *, ascii_only: bool = False, finish: str = "stop") -> bytes:
    doc = {
        "id": "chatcmpl-big",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text * (size // len(text.encode()) + 1)},
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    return json.dumps(doc, ensure_ascii=ascii_only).encode()


def _har(body: bytes, *, mime: str = "application/json") -> bytes:
    entry = {
        "request": {"method": "POST", "url": "https://api.example.com/v1/chat/completions", "headers": []},
        "response": {"status": 200, "headers": [], "content": {"mimeType": mime, "text": body.decode()}},
    }
    return json.dumps({"log": {"version": "1.2", "entries": [entry]}}).encode()


# -- the parser itself ----------------------------------------------------------------------------

_TEXTS = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
_DOCS = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXTS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXTS, inner, max_size=4),
    max_leaves=12,
)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(doc=_DOCS, ascii_only=st.booleans(), piece=st.integers(1, 40), big=st.integers(0, 30))
def test_pieces_parse_as_orjson_does(doc: Any, ascii_only: bool, piece: int, big: int) -> None:
    data = json.dumps(doc, ensure_ascii=ascii_only).encode()
    assert parse_pieces(_source(data, piece), big=big) == orjson.loads(data)


@pytest.mark.parametrize("piece", [1, 2, 3, 5, 7, 13, 4096])
def test_a_huge_string_is_decoded_across_any_cut(piece: int) -> None:
    # Strings past 64 KiB are decoded a part at a time: the parts must meet between characters.
    for ascii_only in (False, True):
        data = json.dumps({"t": TRICKY * 3000, "k": [TRICKY]}, ensure_ascii=ascii_only).encode()
        assert parse_pieces(_source(data, piece * 997), big=100) == orjson.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"t": "' + b"x" * 300 + b"",  # a string never closed
        b'{"t": "' + b"x" * 300 + b"\\",  # nor after a backslash
        b'{"t": "' + b"x" * 300 + b'\xe9"}',  # Latin-1, not UTF-8
        b'{"t": "' + b"x" * 300 + b'\\ud800"}',  # a lone surrogate
        b'{"t": "' + b"x" * 300 + b'"',  # a skeleton that does not parse
        b'{"t": "' + b"x" * 300 + b'\\q"}',  # no such escape
    ],
)
def test_what_is_not_json_is_left_to_the_whole_read(data: bytes) -> None:
    assert parse_pieces(_source(data, 64), big=10) is None


def test_a_document_mostly_of_small_values_is_left_to_the_whole_read() -> None:
    data = json.dumps({"t": "x" * 1000, "values": list(range(100))}).encode()
    assert parse_pieces(_source(data, 64), big=100, most=len(data) // 4) is None
    assert parse_pieces(_source(data, 64), big=100, most=len(data) // 2) == orjson.loads(data)


def test_a_big_text_can_be_read_as_a_document_of_its_own() -> None:
    inner = _body(1000)
    outer = json.dumps({"body": inner.decode()}).encode()
    found = parse_pieces(_source(outer, 100), big=10, keep=lambda path: path == ["body"])
    text = found["body"]
    assert isinstance(text, BigText)
    assert b"".join(text.utf8_pieces()) == inner
    assert parse_pieces(text.source_of_content(), big=10) == orjson.loads(inner)


# -- explain: the same diagnosis as from the bytes ------------------------------------------------


# The size from which a body is parsed from its file, made small so the test reads quickly.
LARGE = MIB


def _captures() -> list[tuple[str, bytes, bool, list[list[str]]]]:
    """(name, bytes, whether its body is parsed from the file, the options it is explained with)."""
    body = _body(LARGE + MIB)
    truncated = _body(LARGE + MIB, "plain words\n", ascii_only=True, finish="length")
    sse = b"".join(
        b'data: {"choices":[{"delta":{"content":"' + b"w" * 100 + b'"}}]}\n\n' for _ in range(20_000)
    )
    plain: list[list[str]] = [[], ["--json"]]
    app = json.loads(_har(body))
    app["log"]["entries"][0]["request"]["url"] = "https://app.example.com/api/ask"
    del app["log"]["entries"][0]["response"]["content"]["mimeType"]
    # A stream from the app's own URL, with no media type: the model's words come 60 KB in, still within the
    # 64 KiB its start is judged by.
    pings = b"event: ping\ndata: {}\n\n" * (60_000 // 22)
    app_stream = json.loads(_har(pings + sse, mime=""))
    app_stream["log"]["entries"][0]["request"]["url"] = "https://app.example.com/api/ask"
    b64 = json.loads(_har(b""))
    b64["log"]["entries"][0]["response"]["content"].update(
        text=base64.b64encode(body).decode(), encoding="base64"
    )
    return [
        (
            "big.json",
            body,
            True,
            [
                *plain,
                # Overrides that make it an error or another endpoint, and a validator on the text.
                ["--status", "503"],
                ["--json", "--endpoint", "image"],
                ["--validate", "min-words:3", "--validate", "regex:^nothing$"],
            ],
        ),
        (
            "big.http",
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_1\r\n\r\n" + body,
            True,
            [*plain, ["--header", "content-type: text/event-stream"]],
        ),
        ("big.har", _har(body), True, plain),
        ("length.json", truncated, True, plain),
        ("length.http", b"HTTP/2 200\ncontent-type: application/json\n\n  \n" + truncated, True, plain),
        # A HAR entry from the app's own URL, with no media type: its body's start and whole decide.
        ("app.har", orjson.dumps(app), True, plain),
        ("stream.har", _har(sse, mime="text/event-stream"), False, plain),
        ("appstream.har", orjson.dumps(app_stream), False, plain),
        # An error body is read again whole by explain; the rest never leaves the whole read.
        (
            "error.http",
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\r\n"
            + json.dumps({"error": {"message": "too long " + "x" * LARGE, "type": "invalid"}}).encode(),
            True,
            plain,
        ),
        ("latin1.json", _body(LARGE + MIB, "caf\u00e9 ").replace("é".encode(), b"\xe9"), False, plain),
        ("cut.json", body[:-1000], False, [*plain, ["--status", "200"]]),
        ("utf16.json", body.decode().encode("utf-16"), False, plain),
        (
            "gzip.http",
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n\r\n"
            + gzip.compress(body),
            False,
            plain,
        ),
        ("base64.har", orjson.dumps(b64), False, plain),
        # Mostly structure and numbers: nothing to save by reading it in pieces.
        (
            "embedding.json",
            orjson.dumps(
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.0125] * (LARGE // 5)}],
                }
            ),
            False,
            plain,
        ),
    ]


def _explained(read: Any) -> tuple[list[dict[str, Any]], list[bool]] | str:
    try:
        exchanges = list(read())
    except CaptureError as exc:
        return str(exc)
    return [explain_exchange(x).to_dict() for x in exchanges], [x.parsed is not None for x in exchanges]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_large_capture_reads_as_its_bytes_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture, "LARGE", LARGE)
    for name, data, parsed, options in _captures():
        path = tmp_path / name
        path.write_bytes(data)
        with path.open("rb", buffering=0) as fh:
            large = _explained(lambda: read_capture_file(fh, source=name).exchanges)  # noqa: B023
        whole = _explained(lambda: read_captures(data, source=name))  # noqa: B023
        if isinstance(whole, str):
            assert large == whole, name
        else:
            assert not isinstance(large, str), (name, large)
            assert large[0] == whole[0], name
            assert large[1] == [parsed] * len(large[1]), name
        for flags in options:
            out = CliRunner().invoke(cli, ["explain", *flags, str(path)])
            monkeypatch.setattr(capture, "LARGE", 1 << 62)
            before = CliRunner().invoke(cli, ["explain", *flags, str(path)])
            monkeypatch.setattr(capture, "LARGE", LARGE)
            assert out.stdout_bytes or out.exit_code == 2, (name, flags)
            assert (out.exit_code, out.stdout_bytes, out.stderr_bytes) == (
                before.exit_code,
                before.stdout_bytes,
                before.stderr_bytes,
            ), (name, flags)


def test_a_pipe_is_read_whole_and_a_file_on_stdin_in_pieces(tmp_path: Path) -> None:
    # A pipe cannot be read twice: its JSON is parsed from its bytes, with the same verdict.
    data = _body(capture.LARGE + MIB)
    [x] = read_capture_file(io.BufferedReader(_Pipe(data)), source="<stdin>").exchanges
    assert x.parsed is None
    assert x.body == data
    # `genguard explain - < big.json` gets the file itself, buffered as sys.stdin.buffer is.
    path = tmp_path / "big.json"
    path.write_bytes(b"\n  " + data)
    with path.open("rb") as fh:
        [x] = read_capture_file(fh, source="<stdin>").exchanges
        assert x.parsed is not None
        assert x.body == b""
        assert x.parsed.read() == data
        assert (
            explain_exchange(x).to_dict()
            == explain_exchange(read_captures(data, source="<stdin>")[0]).to_dict()
        )


class _Pipe(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self._data.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


# -- memory ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("form", ["json", "http", "har"])
def test_a_huge_body_is_explained_in_one_copy_of_its_text(
    form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parsed whole, 20 MB took its bytes, orjson's copy, the text and orjson's reservation for what it
    # parses (tracemalloc saw 14 times the file); from pieces, the text is the one full copy: reading,
    # explaining, the readable output and --json stay under 1.5 times the file (1.04-1.19 measured).
    body = _body(20 * MIB, 'The boardwalk runs through a field; café owners say "1998".\n')
    data = {"json": body, "http": b"HTTP/2 200\r\ncontent-type: application/json\r\n\r\n" + body}.get(
        form
    ) or _har(body)
    path = tmp_path / f"big.{form}"
    path.write_bytes(data)
    del body, data
    size = path.stat().st_size
    null = open(os.devnull, "w")  # noqa: SIM115  # closed below
    monkeypatch.setattr(sys, "stdout", null)
    try:
        tracemalloc.start()
        try:
            with path.open("rb", buffering=0) as fh:
                for exchange in read_capture_file(fh, source=path.name).exchanges:
                    outcome = explain_exchange(exchange)
                    del exchange
                    render_outcome(outcome, source=path.name)
                    explain_cli._emit(outcome, path.name, as_json=True, color=False, first=True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        null.close()
    assert outcome.ok
    assert outcome.text is not None
    assert len(outcome.text) > 19 * MIB
    assert peak < 1.5 * size, f"peak {peak / MIB:.1f} MiB for a {size / MIB:.1f} MiB file"


def test_json_writes_a_large_text_in_parts_as_the_whole_line(tmp_path: Path) -> None:
    # The text goes out 64 KiB at a time; the line must be the one dumped and escaped whole, key echoed in
    # it masked (masking sees the whole text, not a part).
    text = (TRICKY * 3000) + " Incorrect API key provided: sk-proj-FAKEkeyFAKEkey0123456789. " + TRICKY * 3000
    outcome = Outcome.success(text=text, finish_reason="stop")
    null = tmp_path / "out.jsonl"
    with null.open("w") as out, contextlib.redirect_stdout(out):
        explain_cli._emit(outcome, "x.json", as_json=True, color=False, first=True)
    whole = orjson.dumps(
        explain_cli._masked(outcome.with_extra(source="x.json").to_dict()),
        default=str,
        option=orjson.OPT_APPEND_NEWLINE,
    )
    written = null.read_bytes()
    assert written == escape_json_controls(whole)
    assert b"\\u009b31m" in written
    assert b"FAKEkey" not in written
