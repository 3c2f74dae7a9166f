"""Readers for captured exchanges: whatever a developer saved, turned into status, headers and body.

A capture is recognised by its content, never by its file name:

- a raw HTTP response as ``curl -i`` prints it (``HTTP/1.1 429 Too Many Requests``, ``HTTP/2 200``, CRLF or
  LF, interim ``100 Continue`` or proxy ``200 Connection established`` responses before the real one, a
  chunked body still in its chunks), and the ``< ``-prefixed form of ``curl -v``;
- a bare JSON body (a chat response, an error, an image response, a media task);
- an SSE transcript (a stream's body alone: ``data:``, ``event:`` and ``:`` lines);
- a HAR 1.2 file as browsers and proxies export it, one exchange per entry;
- a bare HTML page (a gateway's error page saved on its own).

Request headers (``authorization``, ``api-key``...) are never kept, and key-like query parameters are masked
in request URLs. Any bytes that are none of these raise :class:`~genguard.CaptureError`, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from .exceptions import CaptureError
from .secrets import SECRET_HEADERS, mask_url

EndpointHint = Literal["chat", "image", "video"]

_EXPECTED = (
    "expected a raw HTTP response (as `curl -i` prints it), a JSON body, an SSE transcript "
    "(`data:` lines) or a HAR file"
)
_STATUS_LINE = re.compile(rb"^HTTP/(\d(?:\.\d)?)[ \t]+(\d{3})(?:[ \t]+(.*))?$")
_CURL_REQUEST = re.compile(rb"^> ([A-Z]+) (\S+) HTTP/[\d.]+$")
_REQUEST_LINE = re.compile(rb"^(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) \S+ HTTP/[\d.]+\r?\n")
_SSE_FIELD = re.compile(rb"^(?:data|event|id|retry)(?::|$)")
_HEX_SIZE = re.compile(rb"^([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?$")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One captured response: what came back, and where it was found.

    ``status`` is ``None`` when the capture does not say (a bare body); ``headers`` has lower-case names.

    >>> [x] = read_captures(b"HTTP/2 429\\r\\nretry-after: 2\\r\\n\\r\\n{}", source="a.txt")
    >>> (x.status, x.headers["retry-after"], x.body)
    (429, '2', b'{}')
    """

    status: int | None
    headers: Mapping[str, str]
    body: bytes
    source: str
    index: int = 0
    url: str | None = None
    endpoint_hint: EndpointHint | None = None

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased (``""`` when unknown)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def read_captures(data: bytes, *, source: str) -> list[Exchange]:
    """Read every exchange in ``data`` (one, or one per HAR entry), recognising the form by its content.

    Raises :class:`~genguard.CaptureError` naming ``source`` when the bytes are not a capture.

    >>> read_captures(b'{"error": {"message": "nope"}}', source="err.json")[0].status is None
    True
    >>> read_captures(b"data: {}\\n\\n", source="s.txt")[0].headers["content-type"]
    'text/event-stream'
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CaptureError(f"{source}: a capture must be bytes, not {type(data).__name__}")
    raw = bytes(data)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    text = raw.lstrip()
    if not text:
        raise CaptureError(f"{source}: the file is empty; {_EXPECTED}")
    try:
        if text.startswith(b"HTTP/"):
            return [_read_raw_http(text, source)]
        if _REQUEST_LINE.match(text):
            return [_read_request_response(text, source)]
        if _is_curl_verbose(text):
            return [_read_curl_verbose(text, source)]
        if text[:1] in (b"{", b"["):
            return _read_json(text, source)
        if is_sse(text):
            return [Exchange(None, _headers({"content-type": "text/event-stream"}), text, source)]
        if _is_html(text):
            return [Exchange(None, _headers({"content-type": "text/html"}), text, source)]
    except CaptureError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        # A reader bug on odd bytes must still come out as a clear capture error, never a traceback.
        raise CaptureError(f"{source}: could not read the capture ({exc}); {_EXPECTED}") from None
    start = text[:40].decode("utf-8", "replace").splitlines()[0] if text else ""
    raise CaptureError(f"{source}: not a capture (it starts with {start!r}); {_EXPECTED}")


def endpoint_hint_for(url: str | None) -> EndpointHint | None:
    """Which endpoint a request URL (or path) addressed: ``chat``, ``image``, ``video`` or ``None``.

    >>> endpoint_hint_for("https://api.example.com/v1/images/generations")
    'image'
    """
    if not url:
        return None
    path = urlsplit(url).path.lower() if "://" in url else url.split("?", 1)[0].lower()
    if "/chat/completions" in path or path.endswith(("/completions", "/messages")):
        return "chat"
    if "/images/" in path or path.endswith("/images"):
        return "image"
    if any(
        part in path
        for part in (
            "/videos",
            "/video",
            "text2video",
            "image2video",
            "image_to_video",
            "text_to_video",
            "/tasks/",
            "/operations/",
            "/predictions",
            "/generations/",
            "video_generation",
        )
    ):
        return "video"
    return None


# -- raw HTTP -------------------------------------------------------------------------------------


def _lines(data: bytes, pos: int) -> tuple[bytes, int]:
    """The line starting at ``pos`` without its ending, and where the next one starts."""
    end = data.find(b"\n", pos)
    if end < 0:
        return data[pos:].rstrip(b"\r"), len(data)
    return data[pos:end].rstrip(b"\r"), end + 1


def _read_head(data: bytes, pos: int, source: str) -> tuple[int, dict[str, str], int]:
    line, pos = _lines(data, pos)
    m = _STATUS_LINE.match(line.strip())
    if m is None:
        raise CaptureError(f"{source}: the status line {line[:60]!r} is not `HTTP/<version> <code> [reason]`")
    status = int(m.group(2))
    headers: dict[str, str] = {}
    last = ""
    while pos < len(data):
        line, pos = _lines(data, pos)
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t") and last:
            # An obsolete folded header line continues the previous header.
            headers[last] += " " + line.strip().decode("latin-1")
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            continue
        key = name.strip().decode("latin-1").lower()
        val = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {val}" if key in headers else val
        last = key
    return status, headers, pos


def _read_raw_http(data: bytes, source: str) -> Exchange:
    pos = 0
    status, headers, pos = _read_head(data, pos, source)
    # Keep the last real response: interim 1xx, a proxy's CONNECT answer and followed redirects come first.
    while _STATUS_LINE.match(_lines(data, pos)[0].strip()):
        status, headers, pos = _read_head(data, pos, source)
    return _exchange(status, headers, data[pos:], source, url=None)


def _read_request_response(data: bytes, source: str) -> Exchange:
    """A whole exchange as proxies save it: the request (kept only for its URL), then the response."""
    first, _ = _lines(data, 0)
    path = first.split(b" ")[1].decode("latin-1")
    host = re.search(rb"(?im)^host:[ \t]*(\S+)\r?$", data[: data.find(b"\n\n") + 1 or len(data)])
    m = re.search(rb"(?m)^HTTP/\d(?:\.\d)?[ \t]+\d{3}", data)
    if m is None:
        raise CaptureError(
            f"{source}: the capture holds a request but no response (no `HTTP/... <code>` line)"
        )
    response = _read_raw_http(data[m.start() :], source)
    url = path if "://" in path or host is None else f"https://{host.group(1).decode('latin-1')}{path}"
    safe = mask_url(url)
    return Exchange(
        response.status, response.headers, response.body, source, 0, safe, endpoint_hint_for(safe)
    )


def _exchange(
    status: int | None, headers: dict[str, str], body: bytes, source: str, *, url: str | None, index: int = 0
) -> Exchange:
    headers = _drop_request_secrets(headers)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    body = _decompress(body, headers.get("content-encoding", ""))
    safe_url = mask_url(url) if url else None
    return Exchange(status, _headers(headers), body, source, index, safe_url, endpoint_hint_for(safe_url))


def _headers(headers: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(headers)


def _drop_request_secrets(headers: dict[str, str]) -> dict[str, str]:
    # Responses do not carry these, but a hand-assembled or proxy capture may echo them back.
    for name in SECRET_HEADERS:
        headers.pop(name, None)
    return headers


def _dechunk(body: bytes) -> bytes:
    """The body without chunked framing; unchanged when it is not framed (``curl -i`` already removed it)."""
    out = bytearray()
    pos = 0
    while True:
        line, nxt = _lines(body, pos)
        m = _HEX_SIZE.match(line.strip())
        if m is None or nxt > len(body) or (nxt == len(body) and not body.endswith(b"\n")):
            return body
        size = int(m.group(1), 16)
        if size == 0:
            return bytes(out)
        chunk = body[nxt : nxt + size]
        if len(chunk) != size:
            return body
        out += chunk
        pos = nxt + size
        if body.startswith(b"\r\n", pos):
            pos += 2
        elif body.startswith(b"\n", pos):
            pos += 1
        elif pos < len(body):
            return body


def _decompress(body: bytes, encoding: str) -> bytes:
    enc = encoding.strip().lower()
    if enc not in ("gzip", "x-gzip", "deflate") or not body:
        return body
    # curl -i without --compressed leaves the bytes compressed; a capture already decoded is kept as is.
    try:
        if body[:2] == b"\x1f\x8b":
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if enc == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error:
        return body
    return body


def _is_curl_verbose(data: bytes) -> bool:
    return re.search(rb"(?m)^< HTTP/\d", data) is not None and data[:2] in (b"* ", b"> ", b"< ", b"{ ", b"} ")


def _read_curl_verbose(data: bytes, source: str) -> Exchange:
    heads: list[bytes] = []
    body_lines: list[bytes] = []
    method_path: str | None = None
    host: str | None = None
    in_body = False
    for raw in data.splitlines(keepends=True):
        line = raw.rstrip(b"\r\n")
        if line.startswith(b"< ") or line == b"<":
            content = line[2:]
            if content.startswith(b"HTTP/"):
                # A later response (after a 100 Continue or a redirect) replaces the one before.
                heads, body_lines, in_body = [], [], False
            if in_body:
                continue
            heads.append(content)
            in_body = not content.strip()
            continue
        if line.startswith(b"> "):
            m = _CURL_REQUEST.match(line)
            if m:
                method_path = m.group(2).decode("latin-1")
            elif line[2:].lower().startswith(b"host:"):
                host = line[7:].strip().decode("latin-1")
            continue
        if line.startswith((b"* ", b"{ ", b"} ")) or line == b"*":
            continue
        if in_body:
            body_lines.append(raw)
    status, headers, _ = _read_head(b"\n".join(heads), 0, source)
    url = None
    if method_path:
        url = method_path if "://" in method_path or not host else f"https://{host}{method_path}"
    return _exchange(status, headers, b"".join(body_lines), source, url=url)


# -- JSON, HAR, SSE, HTML -------------------------------------------------------------------------


def _read_json(data: bytes, source: str) -> list[Exchange]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CaptureError(f"{source}: looks like JSON but does not parse ({exc}); {_EXPECTED}") from None
    if isinstance(doc, dict) and isinstance(doc.get("log"), dict) and "entries" in doc["log"]:
        return _read_har(doc["log"], source)
    return [Exchange(None, _headers({"content-type": "application/json"}), data, source)]


def _read_har(log: dict[str, Any], source: str) -> list[Exchange]:
    entries = log.get("entries")
    if not isinstance(entries, list):
        raise CaptureError(f"{source}: a HAR file's log.entries must be a list")
    if not entries:
        raise CaptureError(f"{source}: the HAR file has no entries; export it again with the requests in it")
    out: list[Exchange] = []
    for i, entry in enumerate(entries):
        where = f"{source}#{i + 1}"
        if not isinstance(entry, dict):
            raise CaptureError(f"{where}: a HAR entry must be an object")
        response = entry.get("response")
        if not isinstance(response, dict):
            raise CaptureError(f"{where}: the HAR entry has no response object")
        status_raw = response.get("status")
        status = status_raw if isinstance(status_raw, int) and 100 <= status_raw <= 999 else None
        headers: dict[str, str] = {}
        for h in response.get("headers") or ():
            if isinstance(h, dict) and isinstance(h.get("name"), str):
                key = h["name"].strip().lower()
                val = str(h.get("value", ""))
                headers[key] = f"{headers[key]}, {val}" if key in headers else val
        content = response.get("content")
        body = b""
        if isinstance(content, dict):
            body = _har_text(content, where)
            mime = content.get("mimeType")
            if "content-type" not in headers and isinstance(mime, str) and mime:
                headers["content-type"] = mime
        # Browsers record the decoded body, so the framing and encoding headers no longer apply to it.
        headers.pop("content-encoding", None)
        headers.pop("transfer-encoding", None)
        request = entry.get("request")
        url = request.get("url") if isinstance(request, dict) else None
        out.append(
            _exchange(status, headers, body, where, url=url if isinstance(url, str) else None, index=i)
        )
    return out


def _har_text(content: dict[str, Any], where: str) -> bytes:
    text = content.get("text")
    if text is None:
        return b""
    if not isinstance(text, str):
        raise CaptureError(f"{where}: response.content.text must be a string")
    if str(content.get("encoding", "")).lower() == "base64":
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise CaptureError(
                f"{where}: response.content.text is marked base64 but does not decode"
            ) from None
    return text.encode("utf-8", "surrogatepass")


def is_sse(data: bytes) -> bool:
    """Whether ``data`` reads as a server-sent-events body (``data:``/``event:`` lines, ``:`` comments)."""
    saw_field = False
    for line in data[:8192].splitlines()[:50]:
        stripped = line.strip()
        if not stripped:
            continue
        if line.startswith(b":"):
            continue
        if not _SSE_FIELD.match(line):
            return False
        saw_field = True
    return saw_field


def _is_html(data: bytes) -> bool:
    head = data[:15].lower()
    return head.startswith((b"<!doctype html", b"<html"))
