"""The capture readers: every form recognised by content, secrets never kept, no crash on any bytes."""

from __future__ import annotations

import base64
import gzip
import io
import tracemalloc

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genguard import CaptureError
from genguard.core.capture import (
    PIECE,
    WINDOW,
    Exchange,
    endpoint_hint_for,
    is_sse,
    parse_json_body,
    read_capture_file,
    read_captures,
)
from genguard.core.secrets import mask_url

FAKE_KEY = "sk-proj-FAKEFAKEfake0123456789abcdef"
ERROR_429 = b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}'
STREAM = 'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'


def one(data: bytes, source: str = "cap.txt") -> Exchange:
    [x] = read_captures(data, source=source)
    return x


# -- raw HTTP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize(
    ("status_line", "status"),
    [
        (b"HTTP/1.1 429 Too Many Requests", 429),
        (b"HTTP/2 429", 429),
        (b"HTTP/1.0 503 Service Unavailable", 503),
        (b"HTTP/1.1 400 model_error", 400),
        (b"HTTP/2 200 ", 200),
    ],
)
def test_raw_http_status_headers_body(newline: bytes, status_line: bytes, status: int) -> None:
    head = [status_line, b"Content-Type: application/json", b"Retry-After: 20", b"X-Request-Id: req_1"]
    data = newline.join(head) + newline + newline + ERROR_429
    x = one(data)
    assert x.status == status
    assert x.headers["content-type"] == "application/json"
    assert x.headers["retry-after"] == "20"
    assert x.headers["x-request-id"] == "req_1"
    assert x.body == ERROR_429
    assert x.source == "cap.txt"
    assert x.url is None
    assert x.endpoint_hint is None


def test_raw_http_empty_body_and_leading_whitespace() -> None:
    x = one(b"\n\n  HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
    assert (x.status, x.body) == (400, b"")


def test_raw_http_keeps_the_last_real_response() -> None:
    data = (
        b"HTTP/1.1 200 Connection established\r\n\r\n"
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/2 429\r\nretry-after: 3\r\n\r\n" + ERROR_429
    )
    x = one(data)
    assert x.status == 429
    assert x.headers == {"retry-after": "3"}
    assert x.body == ERROR_429


def test_raw_http_repeated_and_folded_headers() -> None:
    x = one(b"HTTP/1.1 200 OK\nVary: Origin\nvary: Accept\nX-Long: a\n  b\nnot a header line\n\n{}")
    assert x.headers["vary"] == "Origin, Accept"
    assert x.headers["x-long"] == "a b"
    assert x.body == b"{}"


def test_chunked_body_is_dechunked() -> None:
    body = b'7\r\n{"a": \r\n3\r\n12}\r\n0\r\n\r\n'
    x = one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert orjson.loads(x.body) == {"a": 12}


def test_chunked_header_with_an_already_decoded_body_keeps_it() -> None:
    # curl -i shows the header but has already removed the framing.
    x = one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + ERROR_429)
    assert x.body == ERROR_429


def test_gzip_body_is_decompressed() -> None:
    x = one(b"HTTP/2 500\r\ncontent-encoding: gzip\r\n\r\n" + gzip.compress(ERROR_429))
    assert x.body == ERROR_429


def test_curl_verbose_keeps_no_request_header() -> None:
    data = (
        "*   Trying 10.0.0.1:443...\n"
        "> POST /v1/images/generations HTTP/2\n"
        "> Host: gw.example.com\n"
        f"> Authorization: Bearer {FAKE_KEY}\n"
        ">\n"
        "< HTTP/2 100\n"
        "<\n"
        "< HTTP/2 200\n"
        "< content-type: application/json\n"
        "<\n"
        '{"created": 1, "data": []}\n'
        "* Connection #0 to host gw.example.com left intact\n"
    ).encode()
    x = one(data)
    assert x.status == 200
    assert x.body.strip() == b'{"created": 1, "data": []}'
    assert x.url == "https://gw.example.com/v1/images/generations"
    assert x.endpoint_hint == "image"
    assert "authorization" not in x.headers
    assert FAKE_KEY not in repr(x)


def test_request_then_response_capture() -> None:
    data = (
        "POST /v1/chat/completions?api_key=SECRETSECRET HTTP/1.1\r\n"
        "Host: api.example.com\r\n"
        f"Authorization: Bearer {FAKE_KEY}\r\n\r\n"
        '{"model": "m"}\r\n\r\n'
        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\r\n"
        '{"error": {"message": "bad key"}}'
    ).encode()
    x = one(data)
    assert x.status == 401
    assert x.endpoint_hint == "chat"
    assert x.url is not None
    assert "SECRETSECRET" not in x.url
    assert FAKE_KEY not in repr(x)


# -- bare bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        ERROR_429,
        b'[{"error": {"code": 503, "message": "x", "status": "UNAVAILABLE"}}]',
        b'\xef\xbb\xbf{"a": 1}',
    ],
)
def test_bare_json(body: bytes) -> None:
    x = one(body)
    assert x.status is None
    assert x.content_type == "application/json"
    assert orjson.loads(x.body) == orjson.loads(body.removeprefix(b"\xef\xbb\xbf"))


@pytest.mark.parametrize(
    "body",
    [
        b'data: {"choices": []}\n\ndata: [DONE]\n\n',
        b': OPENROUTER PROCESSING\r\n\r\ndata: {"a": 1}\r\n\r\n',
        b'event: error\ndata: {"type": "error"}\n\n',
        b"id: 1\nretry: 100\ndata\n\n",
    ],
)
def test_sse_transcript(body: bytes) -> None:
    x = one(body)
    assert x.status is None
    assert x.content_type == "text/event-stream"
    assert x.body == body
    assert is_sse(body)


def test_sse_needs_a_field_line() -> None:
    assert not is_sse(b": only a comment\n\n")
    assert not is_sse(b"data: x\nhello world\n")


def test_bare_html_page() -> None:
    x = one(b"<!DOCTYPE html><html><title>502 Bad Gateway</title></html>")
    assert (x.status, x.content_type) == (None, "text/html")


# -- HAR --------------------------------------------------------------------------------------------


def har(*entries: dict[str, object]) -> bytes:
    return orjson.dumps({"log": {"version": "1.2", "creator": {"name": "t"}, "entries": list(entries)}})


def entry(
    status: int, content: dict[str, object], url: str = "https://h/v1/chat/completions"
) -> dict[str, object]:
    return {
        "request": {
            "method": "POST",
            "url": url,
            "headers": [{"name": "Authorization", "value": f"Bearer {FAKE_KEY}"}],
        },
        "response": {
            "status": status,
            "headers": [{"name": "Retry-After", "value": "5"}, {"name": "X-Request-Id", "value": "req_9"}],
            "content": content,
        },
    }


def test_har_entries_in_order_with_base64() -> None:
    plain = {"mimeType": "application/json", "text": '{"choices": []}'}
    encoded = {
        "mimeType": "application/json",
        "text": base64.b64encode(ERROR_429).decode(),
        "encoding": "base64",
    }
    xs = read_captures(har(entry(200, plain), entry(429, encoded, "https://h/v1/videos/abc")), source="f.har")
    assert [x.status for x in xs] == [200, 429]
    assert [x.source for x in xs] == ["f.har#1", "f.har#2"]
    assert [x.index for x in xs] == [0, 1]
    assert xs[0].body == b'{"choices": []}'
    assert xs[1].body == ERROR_429
    assert xs[1].headers["retry-after"] == "5"
    assert xs[0].headers["content-type"] == "application/json"
    assert [x.endpoint_hint for x in xs] == ["chat", "video"]
    assert all(FAKE_KEY not in repr(x) for x in xs)


def test_har_status_zero_and_masked_url() -> None:
    e = entry(
        0,
        {"mimeType": "x-unknown", "size": 0},
        "https://g.example/v1beta/models/m:generate?key=AIzaSyFAKE12345678",
    )
    [x] = read_captures(har(e), source="f.har")
    assert x.status is None
    assert x.body == b""
    assert x.url is not None
    assert "AIzaSyFAKE12345678" not in x.url


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"log": {"entries": []}}, "no entries"),
        ({"log": {"entries": {}}}, "must be a list"),
        ({"log": {"entries": [1]}}, "must be an object"),
        ({"log": {"entries": [{"request": {}}]}}, "no response"),
        ({"log": {"entries": [{"response": {"content": {"text": "@@@", "encoding": "base64"}}}]}}, "base64"),
        ({"log": {"entries": [{"response": {"content": {"text": 5}}}]}}, "must be a string"),
    ],
)
def test_bad_har_names_source_and_entry(doc: object, words: str) -> None:
    with pytest.raises(CaptureError, match=words) as info:
        read_captures(orjson.dumps(doc), source="bad.har")
    assert "bad.har" in str(info.value)


# -- not captures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"  \n\t ", "empty"),
        (b"# a README\n", "not a capture"),
        (b'{"a": ', "does not parse"),
        (b"HTTP/1.1 abc\r\n\r\n", "status line"),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n\r\n{}", "no response"),
    ],
)
def test_not_a_capture(data: bytes, words: str) -> None:
    with pytest.raises(CaptureError, match=words) as info:
        read_captures(data, source="x.bin")
    assert str(info.value).startswith("x.bin")


def test_endpoint_hints() -> None:
    assert endpoint_hint_for("https://h/v1/chat/completions") == "chat"
    assert endpoint_hint_for("/v1/images/generations") == "image"
    assert endpoint_hint_for("/v1/images/edits") == "image"
    assert endpoint_hint_for("https://h/v1/videos/video_123") == "video"
    assert endpoint_hint_for("https://api.klingai.com/v1/videos/text2video/t1") == "video"
    assert endpoint_hint_for("https://api.dev.runwayml.com/v1/tasks/abc") == "video"
    assert endpoint_hint_for("https://h/v1/models") is None
    assert endpoint_hint_for(None) is None


def test_mask_url_drops_a_password_without_a_query() -> None:
    # Only a URL with a query lost its user:password@ before; doctor --json printed the base URL's.
    assert mask_url("http://user:topsecret@h:8000/v1") == "http://h:8000/v1"
    assert mask_url("http://h:8000/v1") == "http://h:8000/v1"


def test_mask_url_keeps_ordinary_parameters() -> None:
    masked = mask_url("https://u:pw@h/x?alt=sse&key=AIzaSECRET&api-key=abc")
    assert "alt=sse" in masked
    assert "AIzaSECRET" not in masked
    assert "abc" not in masked
    assert "pw" not in masked


# -- any bytes --------------------------------------------------------------------------------------

_PREFIXES = st.sampled_from(
    [
        b"",
        b"HTTP/1.1 ",
        b"HTTP/2 200\r\n",
        b"< HTTP/2 ",
        b"* x\n< HTTP/1.1 200\n",
        b"POST / HTTP/1.1\n",
        b"{",
        b'{"log": {"entries": [',
        b"data:",
        b"<!doctype html",
        b"HTTP/1.1 200\r\ntransfer-encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200\r\ncontent-encoding: gzip\r\n\r\n\x1f\x8b",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=_PREFIXES, rest=st.binary(max_size=300))
def test_any_bytes_give_exchanges_or_capture_error(prefix: bytes, rest: bytes) -> None:
    try:
        xs = read_captures(prefix + rest, source="h")
    except CaptureError as exc:
        message = str(exc)
        xs = None
    if xs is None:
        assert message.startswith("h: ")
    else:
        assert xs
        assert all(isinstance(x.body, bytes) for x in xs)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "log",
                    "entries",
                    "response",
                    "request",
                    "status",
                    "headers",
                    "content",
                    "text",
                    "encoding",
                    "url",
                    "name",
                    "value",
                    "mimeType",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(doc=_JSONISH)
def test_any_har_shaped_json_gives_exchanges_or_capture_error(doc: object) -> None:
    data = orjson.dumps({"log": {"entries": doc}} if not isinstance(doc, dict) else {"log": doc})
    try:
        xs = read_captures(data, source="h.har")
    except CaptureError:
        return
    assert xs


# -- HAR: only the API exchanges ---------------------------------------------------------------------


def browser_entry(
    method: str,
    url: str,
    status: int,
    mime: str,
    text: str = "",
    *,
    resource: str | None = None,
    base64_body: bool = False,
    accept: str = "*/*",
    post: str | None = None,
) -> dict[str, object]:
    content: dict[str, object] = {"size": len(text), "mimeType": mime, "text": text}
    if base64_body:
        content["encoding"] = "base64"
    request: dict[str, object] = {
        "method": method,
        "url": url,
        "headers": [{"name": "Accept", "value": accept}],
    }
    if post is not None:
        request["postData"] = {"mimeType": "application/json", "text": post}
    e: dict[str, object] = {
        "request": request,
        "response": {
            "status": status,
            "headers": [{"name": "Content-Type", "value": mime}],
            "content": content,
        },
    }
    if resource is not None:
        e["_resourceType"] = resource
    return e


API = "https://api.example.com/v1"
PAGE = "https://app.example.com"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()
CHAT_OK = '{"object": "chat.completion", "choices": [{"index": 0, "message": {"content": "ok"}, "finish_reason": "stop"}]}'
BROWSER_HAR = [
    # Chrome: every entry says what it is (_resourceType).
    browser_entry("GET", f"{PAGE}/", 200, "text/html", "<!DOCTYPE html><html></html>", resource="document", accept="text/html,*/*"),
    browser_entry("GET", f"{PAGE}/assets/index-4f2a.js", 200, "application/javascript", "console.log(1)", resource="script"),
    browser_entry("GET", f"{PAGE}/assets/index-9c1d.css", 200, "text/css", "body{}", resource="stylesheet"),
    browser_entry("GET", f"{PAGE}/logo.png", 200, "image/png", PNG, resource="image", base64_body=True),
    browser_entry("GET", f"{PAGE}/fonts/inter.woff2", 200, "font/woff2", "d09GMgABAAAA", resource="font", base64_body=True),
    browser_entry("OPTIONS", f"{API}/chat/completions", 204, "x-unknown", resource="preflight"),
    browser_entry("POST", f"{API}/chat/completions", 200, "application/json", CHAT_OK, resource="fetch"),
    browser_entry("GET", f"{PAGE}/api/me", 200, "application/json", '{"name": "Ada"}', resource="fetch"),
    # Firefox: no resource types, only the media types.
    browser_entry("OPTIONS", f"{API}/chat/completions", 204, ""),
    browser_entry("POST", f"{API}/chat/completions", 429, "application/json", ERROR_429.decode()),
    browser_entry("POST", f"{API}/chat/completions", 200, "text/event-stream", STREAM),
    browser_entry("POST", f"{API}/embeddings", 502, "text/html", "<html><title>502 Bad Gateway</title></html>"),
    browser_entry("GET", f"{PAGE}/app.js", 200, "text/javascript; charset=utf-8", "export {}"),
    browser_entry("GET", f"{PAGE}/settings", 200, "text/html", "<!doctype html><html></html>", accept="text/html"),
    browser_entry(
        "POST",
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
        503,
        "application/json; charset=UTF-8",
        '{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}',
    ),
    # The app's own gateway: the URL says nothing, the request asks a model.
    browser_entry("POST", f"{PAGE}/api/llm", 200, "application/json", CHAT_OK, post='{"model": "m", "messages": []}'),
    browser_entry("GET", f"{PAGE}/video/intro.mp4", 206, "video/mp4", "AAAA", base64_body=True),
]  # fmt: skip


def test_har_keeps_the_api_exchanges_and_counts_the_rest() -> None:
    capture = read_capture_file(io.BytesIO(har(*BROWSER_HAR)), source="app.har")
    xs = list(capture.exchanges)
    assert [x.source for x in xs] == [f"app.har#{n}" for n in (7, 10, 11, 12, 15, 16)]
    assert [x.status for x in xs] == [200, 429, 200, 502, 503, 200]
    assert dict(capture.skipped) == {
        "page": 2, "script": 2, "stylesheet": 1, "image": 1, "font": 1, "CORS preflight": 2,
        "other request": 1, "media file": 1,
    }  # fmt: skip
    assert capture.skipped_count == 11
    # read_captures, the list form, leaves the same entries out.
    assert [x.source for x in read_captures(har(*BROWSER_HAR), source="app.har")] == [x.source for x in xs]


def test_har_json_from_an_api_url_is_kept_whatever_it_says() -> None:
    odd = browser_entry(
        "GET", f"{API}/videos/v_1", 404, "application/json", '{"detail": "nope"}', resource="fetch"
    )
    page = browser_entry(
        "POST", f"{API}/images/generations", 200, "application/json", '"<html>"', resource="document"
    )
    xs = read_captures(har(odd, page), source="a.har")
    assert [x.source for x in xs] == ["a.har#1", "a.har#2"]


def test_har_without_any_api_exchange_is_not_a_capture() -> None:
    only_assets = har(BROWSER_HAR[1], BROWSER_HAR[3], BROWSER_HAR[5])
    with pytest.raises(
        CaptureError, match=r"none of its 3 entries is an API exchange \(1 script, 1 image, 1 CORS"
    ):
        read_captures(only_assets, source="assets.har")


# -- text encodings -----------------------------------------------------------------------------------

RAW_429 = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 20\r\n\r\n" + ERROR_429
)


def powershell(data: bytes, encoding: str = "utf-16") -> bytes:
    """What Windows PowerShell's `curl.exe -i ... > reply.http` writes: every line re-ended with CRLF, the
    whole in UTF-16 LE with a BOM."""
    lines = data.decode("utf-8").splitlines()
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


@pytest.mark.parametrize(
    "data",
    [
        powershell(RAW_429),
        powershell(RAW_429.replace(b"\r\n", b"\n")),
        b"\xfe\xff" + RAW_429.decode().encode("utf-16-be"),
        RAW_429.decode().encode("utf-16-le"),
        b"\xef\xbb\xbf" + RAW_429,
    ],
    ids=["powershell-crlf", "powershell-lf", "utf16-be-bom", "utf16-le-no-bom", "utf8-bom"],
)
def test_utf16_and_bom_captures_are_read(data: bytes) -> None:
    for x in (one(data), next(read_capture_file(io.BytesIO(data), source="cap.txt").exchanges)):
        assert (x.status, x.headers["retry-after"]) == (429, "20")
        assert orjson.loads(x.body) == orjson.loads(ERROR_429)


def test_utf16_stream_and_json_bodies() -> None:
    sse = b'data: {"choices": []}\n\ndata: [DONE]\n\n'
    assert one(sse.decode().encode("utf-16")).content_type == "text/event-stream"
    assert orjson.loads(one(ERROR_429.decode().encode("utf-16")).body) == orjson.loads(ERROR_429)
    # A non-ASCII character survives, and a UTF-16 file larger than the window is read in pieces too.
    big = ("HTTP/2 200\r\ncontent-type: text/event-stream\r\n\r\n" + 'data: {"x": "é"}\n\n' * 8000).encode(
        "utf-16"
    )
    [x] = read_capture_file(io.BytesIO(big), source="big.txt").exchanges
    assert b"".join(x.iter_body()).decode() == 'data: {"x": "é"}\n\n' * 8000


# -- bare bodies that are broken ---------------------------------------------------------------------


def test_bare_json_cut_short_is_read_when_its_status_is_known() -> None:
    cut = b'{"error": {"message": "Rate limit reac'
    with pytest.raises(CaptureError, match="--status"):
        one(cut)
    [x] = read_captures(cut, source="cut.json", status=429)
    assert (x.status, x.body, x.content_type) == (429, cut, "application/json")
    # A HAR file cut short is still not a capture, whatever the status.
    with pytest.raises(CaptureError, match="does not parse"):
        read_captures(b'{"log": {"entries": [', source="cut.har", status=429)


def test_json_that_is_not_utf8_is_read_with_replacement() -> None:
    body = b'{"error": {"type": "rate_limit_error", "message": "caf\xe9"}}'
    assert one(body).body == body
    doc, repaired = parse_json_body(body)
    assert doc["error"] == {"type": "rate_limit_error", "message": "caf\ufffd"}
    assert repaired == '{"error": {"type": "rate_limit_error", "message": "caf\ufffd"}}'.encode()
    with pytest.raises(orjson.JSONDecodeError):
        parse_json_body(b'{"a": "\xe9')


# -- large captures are read from the front ----------------------------------------------------------


class GeneratedFile(io.RawIOBase):
    """A file whose bytes are made as they are read, never held whole; it records every read's size."""

    def __init__(self, head: bytes, event: bytes, count: int, tail: bytes) -> None:
        self._parts = iter([head, *([event] * count), tail])
        self._pending = b""
        self.sizes: list[int] = []
        self.size = len(head) + len(event) * count + len(tail)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.sizes.append(len(buffer))
        while len(self._pending) < len(buffer):
            part = next(self._parts, None)
            if part is None:
                break
            self._pending += part
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def long_stream(head: bytes = b"") -> GeneratedFile:
    pad = "x" * 2000
    delta = '"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": null}]'
    event = f'data: {{"id": "{pad}", {delta}}}\n\n'.encode()
    tail = b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    return GeneratedFile(head, event, 10_000, tail)  # about 20 MB


@pytest.mark.parametrize(
    "head", [b"", b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"], ids=["sse", "curl-i"]
)
def test_a_long_stream_is_read_in_bounded_pieces(head: bytes) -> None:
    from genguard.core.explain import explain_exchange

    f = long_stream(head)
    assert f.size > 20_000_000
    tracemalloc.start()
    try:
        [x] = read_capture_file(f, source="long.sse").exchanges
        assert x.body == b""
        assert x.body_chunks is not None
        outcome = explain_exchange(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (outcome.ok, outcome.finish_reason, outcome.text) == (True, "stop", "a" * 10_000)
    # Every read asked for at most one piece, never for the rest of the file; and what was held at once is a
    # few pieces (the one being read, the events cut from it), however long the file.
    assert f.sizes
    assert max(f.sizes) <= PIECE
    assert peak < 8 * PIECE < f.size / 2


def test_a_small_or_compressed_stream_is_read_whole() -> None:
    small = one(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + STREAM.encode())
    assert (small.body, small.body_chunks) == (STREAM.encode(), None)
    big = STREAM.encode() * 4000
    gz = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n\r\n"
        + gzip.compress(big)
    )
    padded = gz + b"\0" * WINDOW  # larger than the window even compressed
    [x] = read_capture_file(io.BytesIO(padded), source="gz.http").exchanges
    assert x.body_chunks is None
    assert x.body.startswith(big)


def test_a_large_json_body_is_read_in_one_piece() -> None:
    body = (
        b'{"choices": [{"index": 0, "message": {"content": "'
        + b"w " * 600_000
        + b'"}, "finish_reason": "stop"}]}'
    )
    f = GeneratedFile(
        b"HTTP/2 200\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n", body, 1, b""
    )
    [x] = read_capture_file(f, source="big.http").exchanges
    assert x.body == body
    assert x.body_chunks is None
