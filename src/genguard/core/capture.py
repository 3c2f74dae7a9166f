"""Readers for captured exchanges: whatever a developer saved, turned into status, headers and body.

A capture is recognised by its content, never by its file name:

- a raw HTTP response as ``curl -i`` prints it (``HTTP/1.1 429 Too Many Requests``, ``HTTP/2 200``, CRLF or
  LF, interim ``100 Continue`` or proxy ``200 Connection established`` responses before the real one, a
  chunked body still in its chunks), and the ``< ``-prefixed form of ``curl -v``;
- a bare JSON body (a chat response, an error, an image response, a media task);
- an SSE transcript (a stream's body alone: ``data:``, ``event:`` and ``:`` lines);
- a HAR 1.2 file as browsers and proxies export it, one exchange per API entry (scripts, images, styles,
  fonts, pages and CORS preflights are counted and left out);
- a bare HTML page (a gateway's error page saved on its own).

The bytes may be UTF-8 (with or without a BOM) or UTF-16 (what Windows PowerShell's ``>`` writes). A file is
read from the front: a stream's body is left in the file and handed out in pieces, so a capture of hundreds
of megabytes is diagnosed without being held whole.

Request headers (``authorization``, ``api-key``...) are never kept, and key-like query parameters are masked
in request URLs. Any bytes that are none of these raise :class:`~genguard.CaptureError`, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import io
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import IO, Any, Literal
from urllib.parse import urlsplit

import orjson

from .error_body import is_error_body
from .exceptions import CaptureError
from .large_json import BigText, Source, parse_pieces
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

# How much of a file's start is read to recognise its form, and the piece a stream body is read in: a
# stream larger than the window stays in the file and is read one piece at a time.
WINDOW = 1 << 16
PIECE = 1 << 20
# A head line longer than this is no header: it is cut there rather than read to the end of a huge body.
_LINE_LIMIT = 1 << 20
# A JSON body at least this large, in a file that can be read again, is parsed from pieces of the file
# (core/large_json.py): its bytes are never held whole beside what they parse to.
LARGE = 1 << 23
# ...when its huge strings are most of it: a body with more than a quarter of it in structure and small values
# (numbers, many small strings) is read whole, as reading it in pieces would save little.
_MOSTLY = 4


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A JSON body too large to hold twice, parsed piece by piece from the file it is still in: ``doc`` is
    what ``orjson.loads`` gives for its bytes, and :meth:`read` reads those bytes again, whole.

    >>> ParsedBody({"choices": []}, lambda: b'{"choices": []}').read()
    b'{"choices": []}'
    """

    doc: Any
    reread: Callable[[], bytes]

    def read(self) -> bytes:
        """The body's bytes, read again from where they are."""
        return self.reread()


@dataclass(frozen=True, slots=True)
class Exchange:
    """One captured response: what came back, and where it was found.

    ``status`` is ``None`` when the capture does not say (a bare body); ``headers`` has lower-case names.
    ``body_chunks`` is set only for a stream read from a file and too large for the first window: its body
    is still in the file, to be read once, in pieces (``body`` is then empty); :meth:`iter_body` reads
    either. ``parsed`` is set only for a JSON body of :data:`LARGE` bytes or more read from a file: it is
    already parsed, and ``body`` is empty.

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
    body_chunks: Iterator[bytes] | None = None
    parsed: ParsedBody | None = None

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased (``""`` when unknown)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def iter_body(self, size: int = PIECE) -> Iterator[bytes]:
        """The body in pieces of at most ``size`` bytes: from the file when it was left there, else slices
        of :attr:`body` (so a reader that takes pieces never builds one list over the whole of it)."""
        if self.body_chunks is not None:
            yield from self.body_chunks
            return
        if self.parsed is not None:
            yield from _slices(self.parsed.read(), size)
            return
        yield from _slices(self.body, size)


def _slices(body: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@dataclass(frozen=True, slots=True)
class CaptureFile:
    """What one capture holds: its exchanges, made one at a time as they are taken (a large body is not
    kept beside the next), and the HAR entries left out because they are no API exchange, counted by what
    they are (``{"scripts": 12, "CORS preflights": 2}``).

    >>> c = read_capture_file(io.BytesIO(b'{"error": {"message": "nope"}}'), source="e.json")
    >>> ([x.source for x in c.exchanges], c.skipped)
    (['e.json'], {})
    """

    exchanges: Iterator[Exchange]
    skipped: Mapping[str, int]

    @property
    def skipped_count(self) -> int:
        """How many HAR entries were left out."""
        return sum(self.skipped.values())


def read_captures(data: bytes, *, source: str, status: int | None = None) -> list[Exchange]:
    """Read every exchange in ``data`` (one, or one per API entry of a HAR file), recognising the form by its
    content. ``status`` is the status of a bare body, which has none of its own: with it, a bare JSON body
    that does not parse (cut short when it was copied) is still read, to be judged by that status.

    Raises :class:`~genguard.CaptureError` naming ``source`` when the bytes are not a capture.

    >>> read_captures(b'{"error": {"message": "nope"}}', source="err.json")[0].status is None
    True
    >>> read_captures(b"data: {}\\n\\n", source="s.txt")[0].headers["content-type"]
    'text/event-stream'
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CaptureError(f"{source}: a capture must be bytes, not {type(data).__name__}")
    return list(_read(_Input.of_bytes(bytes(data), source), source, status).exchanges)


def read_capture_file(file: IO[bytes], *, source: str, status: int | None = None) -> CaptureFile:
    """Read a capture from a binary file object (an open file, standard input), from the front: its start
    is read to recognise the form, a stream's body is then handed out in pieces of :data:`PIECE` bytes as it
    is diagnosed, and anything else is read whole once. Keep the file open while taking the exchanges.

    Raises :class:`~genguard.CaptureError` naming ``source`` when the bytes are not a capture.

    >>> c = read_capture_file(io.BytesIO(b"HTTP/1.1 503\\r\\n\\r\\nbusy"), source="r.http")
    >>> [(x.status, x.body) for x in c.exchanges]
    [(503, b'busy')]
    """
    return _read(_Input(file, source), source, status)


def _read(inp: _Input, source: str, status: int | None) -> CaptureFile:
    inp.decode_text()
    inp.skip_whitespace()
    head = inp.peek(inp.window)
    if not head:
        raise CaptureError(f"{source}: the file is empty; {_EXPECTED}")
    try:
        if head.startswith(b"HTTP/"):
            return CaptureFile(_drain([_read_raw_http_input(inp, source)]), {})
        if is_sse(head):
            if inp.fits(inp.window):
                body = inp.rest()
                chunks = None
            else:
                body, chunks = b"", inp.pieces()
            ctype = _headers({"content-type": "text/event-stream"})
            return CaptureFile(_drain([Exchange(status, ctype, body, source, body_chunks=chunks)]), {})
        if head[:1] in (b"{", b"[") and head[:2] != b"{ ":
            large = _read_large_json(inp, source, status)
            if large is not None:
                return large
        data = inp.rest()
        if _REQUEST_LINE.match(data):
            return CaptureFile(_drain([_read_request_response(data, source)]), {})
        if _is_curl_verbose(data):
            return CaptureFile(_drain([_read_curl_verbose(data, source)]), {})
        if data[:1] in (b"{", b"["):
            return _read_json(data, source, status)
        if _is_html(data):
            html = _headers({"content-type": "text/html"})
            return CaptureFile(_drain([Exchange(status, html, data, source)]), {})
    except CaptureError:
        raise
    except _READER_BUGS as exc:
        raise _reader_bug(source, exc) from None
    start = head[:40].decode("utf-8", "replace").splitlines()[0]
    raise CaptureError(f"{source}: not a capture (it starts with {start!r}); {_EXPECTED}")


# A reader bug on odd bytes must still come out as a clear capture error, never a traceback.
_READER_BUGS = (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError)


def _reader_bug(source: str, exc: BaseException) -> CaptureError:
    return CaptureError(f"{source}: could not read the capture ({exc}); {_EXPECTED}")


def _drain(items: list[Exchange]) -> Iterator[Exchange]:
    # Popped, not iterated: neither the list nor this frame keeps an exchange once it is handed out, so its
    # body can go as soon as the caller is done with it.
    while items:
        yield items.pop(0)


def endpoint_hint_for(url: str | None) -> EndpointHint | None:
    """Which endpoint a request URL (or path) addressed: ``chat``, ``image``, ``video`` or ``None``.

    >>> endpoint_hint_for("https://api.example.com/v1/images/generations")
    'image'
    """
    if not url:
        return None
    path = _path(url)
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


def _path(url: str) -> str:
    return urlsplit(url).path.lower() if "://" in url else url.split("?", 1)[0].lower()


# -- reading a file from the front ----------------------------------------------------------------


class _Input:
    """A capture read from the front: enough of its start to recognise the form and read a head line by
    line, then the rest whole (one read, no copy of what was already looked at) or in pieces."""

    __slots__ = ("_buf", "_eof", "_file", "_seekable", "source", "window")

    def __init__(self, file: IO[bytes] | None, source: str, window: int = WINDOW) -> None:
        self._file: IO[bytes] | _Transcoded | None = file
        self._buf = b""
        self._eof = file is None
        self.source = source
        self.window = window
        try:
            self._seekable = file is not None and file.seekable()
        except (AttributeError, ValueError, OSError):
            self._seekable = False

    @classmethod
    def of_bytes(cls, data: bytes, source: str) -> _Input:
        # Bytes already in memory are their own window: nothing is left to read in pieces.
        inp = cls(None, source, max(len(data), WINDOW))
        inp._buf = data
        return inp

    def _read(self, size: int) -> bytes:
        assert self._file is not None
        try:
            return self._file.read(size) or b""
        except OSError as exc:
            raise CaptureError(f"{self.source}: cannot read it ({exc.strerror or exc})") from None

    def _fill(self, size: int) -> None:
        """Read until the buffer holds ``size`` bytes or the file ends."""
        if len(self._buf) >= size or self._eof:
            return
        parts = [self._buf]
        have = len(self._buf)
        while have < size:
            chunk = self._read(min(max(size - have, WINDOW), PIECE))
            if not chunk:
                self._eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self._buf = b"".join(parts)

    def peek(self, size: int) -> bytes:
        self._fill(size)
        return self._buf[:size]

    def fits(self, size: int) -> bool:
        """Whether all that is left is at most ``size`` bytes (and so is already in the buffer)."""
        self._fill(size + 1)
        return self._eof and len(self._buf) <= size

    def skip_whitespace(self) -> None:
        while True:
            self._fill(WINDOW)
            stripped = self._buf.lstrip()
            if stripped or self._eof:
                self._buf = stripped
                return
            self._buf = b""

    def decode_text(self) -> None:
        """Drop a UTF-8 BOM; turn UTF-16 (with a BOM, or ASCII text with every other byte NUL, as Windows
        PowerShell's ``>`` writes it) into UTF-8 as it is read."""
        start = self.peek(64)
        if start.startswith(b"\xef\xbb\xbf"):
            self._buf = self._buf[3:]
            return
        encoding = None
        if start[:2] in (b"\xff\xfe", b"\xfe\xff"):
            encoding = "utf-16"  # the codec reads the BOM and drops it
        elif len(start) >= 4:
            even, odd = start[0::2], start[1::2]
            if not odd.strip(b"\x00") and even.isascii() and b"\x00" not in even:
                encoding = "utf-16-le"
            elif not even.strip(b"\x00") and odd.isascii() and b"\x00" not in odd:
                encoding = "utf-16-be"
        if encoding is None:
            return
        decoder = codecs.getincrementaldecoder(encoding)("replace")
        if self._file is None:
            self._buf = decoder.decode(self._buf, final=True).encode("utf-8")
            self.window = max(len(self._buf), WINDOW)
            return
        self._file = _Transcoded(self._file, decoder, self._buf)
        self._buf = b""
        self._seekable = False
        self._eof = False

    def readline(self) -> bytes:
        """The next line with its ending (``b""`` at the end); a line is cut at :data:`_LINE_LIMIT`."""
        searched = 0
        while True:
            end = self._buf.find(b"\n", searched, _LINE_LIMIT)
            if end >= 0:
                line, self._buf = self._buf[: end + 1], self._buf[end + 1 :]
                return line
            if self._eof or len(self._buf) >= _LINE_LIMIT:
                line, self._buf = self._buf[:_LINE_LIMIT], self._buf[_LINE_LIMIT:]
                return line
            searched = len(self._buf)
            self._fill(len(self._buf) + WINDOW)

    def rest(self) -> bytes:
        """All that is left, in one piece."""
        if self._eof:
            data, self._buf = self._buf, b""
            return data
        assert self._file is not None
        if self._buf and self._seekable:
            # Step back over what the buffer holds and read it again with the rest, in one read: joining the
            # two would hold the whole file twice.
            try:
                self._file.seek(-len(self._buf), io.SEEK_CUR)
                self._buf = b""
            except (OSError, ValueError):
                self._seekable = False
        data = self._buf + self._read(-1) if self._buf else self._read(-1)
        self._buf = b""
        self._eof = True
        return data

    def region(self) -> tuple[Source, int, Callable[[], None]] | None:
        """All that is left as a :data:`~genguard.core.large_json.Source` read from the file (which can be
        read again from any offset), its size, and what puts the file back as this reader left it; ``None``
        when the file cannot be read twice (a pipe, a transcoded file, bytes)."""
        file = self._file
        if file is None or isinstance(file, _Transcoded) or not self._seekable:
            return None
        try:
            here = file.tell()
            end = file.seek(0, io.SEEK_END)
            file.seek(here)
        except (OSError, ValueError):
            return None
        start = here - len(self._buf)
        size = end - start

        def open_at(offset: int) -> Iterator[bytes]:
            at = start + offset
            while at < end:
                # Sought before each read: a reader of one string may run inside a reader of another.
                file.seek(at)
                chunk = self._read(min(PIECE, end - at))
                if not chunk:
                    return
                at += len(chunk)
                yield chunk

        def restore() -> None:
            file.seek(here)

        return open_at, size, restore

    def pieces(self) -> Iterator[bytes]:
        """All that is left, in pieces of at most :data:`PIECE` bytes, read as they are taken."""
        if self._buf:
            data, self._buf = self._buf, b""
            yield data
        while not self._eof:
            chunk = self._read(PIECE)
            if not chunk:
                self._eof = True
                return
            yield chunk


class _Transcoded:
    """A UTF-16 file read as UTF-8, piece by piece."""

    __slots__ = ("_decoder", "_file", "_pending")

    def __init__(
        self, file: IO[bytes] | _Transcoded, decoder: codecs.IncrementalDecoder, pending: bytes
    ) -> None:
        self._file = file
        self._decoder = decoder
        self._pending = pending

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        raise io.UnsupportedOperation("a transcoded file is read from the front only")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raw, self._pending = self._pending + (self._file.read() or b""), b""
            return self._decoder.decode(raw, final=True).encode("utf-8")
        while True:
            if self._pending:
                raw, self._pending = self._pending, b""
            else:
                raw = self._file.read(size) or b""
            text = self._decoder.decode(raw, final=not raw)
            # An odd byte at the end of a read decodes to nothing yet: read on rather than report the end.
            if text or not raw:
                return text.encode("utf-8")


# -- raw HTTP -------------------------------------------------------------------------------------


def _lines(data: bytes, pos: int) -> tuple[bytes, int]:
    """The line starting at ``pos`` without its ending, and where the next one starts."""
    end = data.find(b"\n", pos)
    if end < 0:
        return data[pos:].rstrip(b"\r"), len(data)
    return data[pos:end].rstrip(b"\r"), end + 1


def _is_status_line(data: bytes, pos: int = 0) -> bool:
    # Only the start is looked at: the line may be the first of a body hundreds of megabytes long.
    end = data.find(b"\n", pos, pos + 256)
    return _STATUS_LINE.match(data[pos : end if end >= 0 else pos + 256].strip()) is not None


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


def _read_heads(data: bytes, source: str) -> tuple[int, dict[str, str], int]:
    status, headers, pos = _read_head(data, 0, source)
    # Keep the last real response: interim 1xx, a proxy's CONNECT answer and followed redirects come first.
    while _is_status_line(data, pos):
        status, headers, pos = _read_head(data, pos, source)
    return status, headers, pos


def _read_raw_http(data: bytes, source: str) -> Exchange:
    status, headers, pos = _read_heads(data, source)
    return _exchange(status, headers, data[pos:], source, url=None)


def _read_raw_http_input(inp: _Input, source: str) -> Exchange:
    """A raw response read from the front: its heads line by line, then the body, left in the file when it
    is a stream larger than the window."""
    head = bytearray()
    while True:
        line = inp.readline()
        head += line
        # A blank line ends a head; another response may follow it (after a 100 Continue, a redirect).
        if not line.strip() and (not line or not _is_status_line(inp.peek(256))):
            break
    status, headers, _ = _read_heads(bytes(head), source)
    start = inp.peek(inp.window)
    if not inp.fits(inp.window) and _streams_in_pieces(headers, start):
        return _exchange(status, headers, b"", source, url=None, chunks=inp.pieces())
    if (
        start.lstrip()[:1] in (b"{", b"[")
        and not headers.get("content-encoding", "").strip()
        and "chunked" not in headers.get("transfer-encoding", "").lower()
    ):
        large = _large_body(inp)
        if large is not None:
            doc, reread = large
            return _exchange(status, headers, b"", source, url=None, parsed=ParsedBody(doc, reread))
    return _exchange(status, headers, inp.rest(), source, url=None)


def _large_body(inp: _Input) -> tuple[Any, Callable[[], bytes]] | None:
    """What is left of ``inp`` parsed as JSON piece by piece, and how to read its bytes again, when it is
    :data:`LARGE` or more and in a file that can be read again; ``None`` (the file as it was) otherwise."""
    region = inp.region()
    if region is None:
        return None
    source, size, restore = region
    if size < LARGE:
        return None
    doc = parse_pieces(source, keep=_is_har_body, most=size // _MOSTLY)
    if doc is None:
        restore()
        return None
    return doc, lambda: b"".join(source(0))


def _is_har_body(path: list[Any]) -> bool:
    # A HAR entry's body is read as a document of its own when its exchange is made, never decoded whole.
    return len(path) == 6 and path[:2] == ["log", "entries"] and path[3:] == ["response", "content", "text"]


def _read_large_json(inp: _Input, source: str, status: int | None) -> CaptureFile | None:
    large = _large_body(inp)
    if large is None:
        return None
    doc, reread = large
    if isinstance(doc, dict) and isinstance(doc.get("log"), dict) and "entries" in doc["log"]:
        return _read_har(doc["log"], source)
    return CaptureFile(_drain([Exchange(status, _JSON, b"", source, parsed=ParsedBody(doc, reread))]), {})


def _streams_in_pieces(headers: Mapping[str, str], start: bytes) -> bool:
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "text/event-stream" and not (ctype in ("", "text/plain") and is_sse(start)):
        return False
    # A compressed or still-framed stream is rare (curl removes both unless told not to): it is read whole.
    if start[:2] == b"\x1f\x8b" or headers.get("content-encoding", "").strip().lower() == "deflate":
        return False
    framed = "chunked" in headers.get("transfer-encoding", "").lower()
    return not (framed and _HEX_SIZE.match(_lines(start, 0)[0].strip()))


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
    status: int | None,
    headers: dict[str, str],
    body: bytes,
    source: str,
    *,
    url: str | None,
    index: int = 0,
    chunks: Iterator[bytes] | None = None,
    parsed: ParsedBody | None = None,
) -> Exchange:
    headers = _drop_request_secrets(headers)
    if chunks is None and parsed is None:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = _dechunk(body)
        body = _decompress(body, headers.get("content-encoding", ""))
    safe_url = mask_url(url) if url else None
    return Exchange(
        status, _headers(headers), body, source, index, safe_url, endpoint_hint_for(safe_url), chunks, parsed
    )


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
        # A size line is short: a body whose first line is not one is not framed, however long that line.
        end = body.find(b"\n", pos, pos + 1024)
        if end < 0:
            return body
        m = _HEX_SIZE.match(body[pos:end].rstrip(b"\r").strip())
        if m is None:
            return body
        nxt = end + 1
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

_JSON = _headers({"content-type": "application/json"})
_HAR_START = re.compile(rb'^\{\s*"log"\s*:')


def parse_json_body(body: bytes) -> tuple[Any, bytes]:
    """``body`` parsed as JSON, and the bytes it was parsed from. Bytes that are not UTF-8 (a Latin-1
    ``é``, a character cut in two) are read with U+FFFD in their place, so an error body keeps its type and
    code; the bytes returned are then the repaired ones. Raises :class:`orjson.JSONDecodeError` when the body
    is not JSON even so.

    >>> parse_json_body(b'{"error": {"message": "caf\\xe9"}}')[0]["error"]["message"]
    'caf\ufffd'
    """
    try:
        return orjson.loads(body), body
    except orjson.JSONDecodeError as exc:
        if "UTF-8" not in str(exc):
            raise
    repaired = body.decode("utf-8", "replace").encode("utf-8")
    return orjson.loads(repaired), repaired


def _read_json(data: bytes, source: str, status: int | None) -> CaptureFile:
    try:
        doc, _ = parse_json_body(data)
    except orjson.JSONDecodeError as exc:
        if status is not None and not _HAR_START.match(data):
            # A body cut short when it was copied: its status still says what happened, and the verdict
            # says the body is broken.
            return CaptureFile(_drain([Exchange(status, _JSON, data, source)]), {})
        raise CaptureError(
            f"{source}: looks like JSON but does not parse ({exc}); a body cut short can still be judged "
            f"by its status (`--status N`); {_EXPECTED}"
        ) from None
    if isinstance(doc, dict) and isinstance(doc.get("log"), dict) and "entries" in doc["log"]:
        return _read_har(doc["log"], source)
    return CaptureFile(_drain([Exchange(status, _JSON, data, source)]), {})


def _read_har(log: dict[str, Any], source: str) -> CaptureFile:
    entries = log.get("entries")
    if not isinstance(entries, list):
        raise CaptureError(f"{source}: a HAR file's log.entries must be a list")
    if not entries:
        raise CaptureError(f"{source}: the HAR file has no entries; export it again with the requests in it")
    kept: list[int] = []
    skipped: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"{source}#{i + 1}"
        if not isinstance(entry, dict):
            raise CaptureError(f"{where}: a HAR entry must be an object")
        if not isinstance(entry.get("response"), dict):
            raise CaptureError(f"{where}: the HAR entry has no response object")
        what = _not_an_api_exchange(entry, where)
        if what is None:
            kept.append(i)
        else:
            skipped[what] = skipped.get(what, 0) + 1
    if not kept:
        counts = ", ".join(f"{n} {what}" for what, n in skipped.items())
        raise CaptureError(
            f"{source}: none of its {len(entries)} entries is an API exchange ({counts}); record the "
            "page's API calls again (the Fetch/XHR requests) and export the HAR file"
        )
    return CaptureFile(_har_exchanges(entries, kept, source), MappingProxyType(skipped))


def _har_exchanges(entries: list[Any], kept: list[int], source: str) -> Iterator[Exchange]:
    for i in kept:
        where = f"{source}#{i + 1}"
        try:
            made = [_har_exchange(entries[i], i, where)]
        except CaptureError:
            raise
        except _READER_BUGS as exc:
            raise _reader_bug(where, exc) from None
        # Neither the entry (its body text) nor this frame outlives the exchange handed out.
        entries[i] = None
        yield made.pop()


def _har_exchange(entry: dict[str, Any], i: int, where: str) -> Exchange:
    response = entry["response"]
    status_raw = response.get("status")
    status = status_raw if isinstance(status_raw, int) and 100 <= status_raw <= 999 else None
    headers = _har_headers(response)
    content = response.get("content")
    body = b""
    big: BigText | None = None
    if isinstance(content, dict):
        big = _big_har_text(content)
        if big is None:
            body = _har_text(content, where)
        mime = content.get("mimeType")
        if "content-type" not in headers and isinstance(mime, str) and mime:
            headers["content-type"] = mime
    # Browsers record the decoded body, so the framing and encoding headers no longer apply to it.
    headers.pop("content-encoding", None)
    headers.pop("transfer-encoding", None)
    request = entry.get("request")
    url = request.get("url") if isinstance(request, dict) else None
    url = url if isinstance(url, str) else None
    if big is None:
        return _exchange(status, headers, body, where, url=url, index=i)
    # A body too large to hold twice: a stream is read from the file in pieces, JSON is parsed from them.
    head = _big_head(big)
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "text/event-stream" or (ctype in ("", "text/plain") and is_sse(head)):
        return _exchange(status, headers, b"", where, url=url, index=i, chunks=big.utf8_pieces())
    if head.lstrip()[:1] in (b"{", b"["):
        doc = parse_pieces(big.source_of_content(), most=big.size // _MOSTLY)
        if doc is not None:
            parsed = ParsedBody(doc, lambda: b"".join(big.utf8_pieces()))
            return _exchange(status, headers, b"", where, url=url, index=i, parsed=parsed)
    return _exchange(status, headers, _big_bytes(big), where, url=url, index=i)


def _big_har_text(content: dict[str, Any]) -> BigText | None:
    """The HAR body left in the file (a huge one, not base64), else ``None``."""
    text = content.get("text")
    if isinstance(text, BigText) and str(content.get("encoding", "")).lower() != "base64":
        return text
    return None


def _big_head(big: BigText) -> bytes:
    """The first :data:`WINDOW` bytes of a body left in the file: what its form is told by."""
    head = b""
    for piece in big.utf8_pieces():
        head += piece
        if len(head) >= WINDOW:
            break
    return head[:WINDOW]


def _big_bytes(big: BigText) -> bytes:
    return b"".join(big.utf8_pieces())


def _har_headers(message: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for h in message.get("headers") or ():
        if isinstance(h, dict) and isinstance(h.get("name"), str):
            key = h["name"].strip().lower()
            val = str(h.get("value", ""))
            headers[key] = f"{headers[key]}, {val}" if key in headers else val
    return headers


def _har_text(content: dict[str, Any], where: str) -> bytes:
    text = content.get("text")
    if text is None:
        return b""
    if isinstance(text, BigText):
        if str(content.get("encoding", "")).lower() != "base64":
            return _big_bytes(text)
        text = text.text()
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


# -- which HAR entries are API exchanges ----------------------------------------------------------

# A browser records everything a page loads. What is skipped is named by the browser's resource type (Chrome
# writes one) or else by the response's media type; the names are singular, counted by the caller.
_RESOURCE_TYPES = {
    "script": "script",
    "stylesheet": "stylesheet",
    "image": "image",
    "font": "font",
    "media": "media file",
    "document": "page",
    "preflight": "CORS preflight",
}
_ASSETS = frozenset({"script", "stylesheet", "image", "font", "media file"})
# API paths beyond the endpoints genguard reads bodies of: their errors are diagnosed all the same.
_MORE_API_PATHS = ("generatecontent", "/audio/")
_MORE_API_ENDINGS = ("/embeddings", "/responses", "/moderations")
# Google's custom methods on a model (``/models/gemini-2.0-flash:generateContent``, ``:predict``), and an API
# key in the query string: no page asset is fetched with either.
_MODEL_METHOD = re.compile(r"/models/[^/]+:[a-z]+")
_KEY_PARAMETER = re.compile(r"(?:^|&)(?:key|api[-_]?key)=", re.IGNORECASE)
_API_KEY_HEADERS = frozenset({"api-key", "x-api-key", "x-goog-api-key"})
# Words only a model's stream carries: a stream from a URL of the app's own is kept when it has one.
_STREAM_WORDS = (b'"choices"', b'"delta"', b"content_block", b'"candidates"', b'"error"')


def _not_an_api_exchange(entry: dict[str, Any], where: str) -> str | None:
    """``None`` for an API exchange, else what the entry is (``"script"``, ``"CORS preflight"``...).

    Kept: every JSON or SSE response from an API-looking URL, error pages included; a gateway's HTML error
    page answering an API call; an API URL that got no response. Skipped: preflights, assets, the app's own
    pages, and JSON from other URLs unless the request asked a model or the body is an error or a
    completion.
    """
    request = entry.get("request")
    request = request if isinstance(request, dict) else {}
    resource = str(entry.get("_resourceType") or "").lower()
    method = request.get("method")
    if (isinstance(method, str) and method.upper() == "OPTIONS") or resource == "preflight":
        return "CORS preflight"
    url = request.get("url")
    api = (isinstance(url, str) and _is_api_url(url)) or not _API_KEY_HEADERS.isdisjoint(
        _har_headers(request)
    )
    response = entry["response"]
    content = response.get("content")
    content = content if isinstance(content, dict) else {}
    kind = _media_kind(_har_headers(response).get("content-type") or str(content.get("mimeType") or ""))
    body = None
    big = _big_har_text(content)
    if not kind:
        # Of a body left in the file, its start says what it is.
        body = _big_head(big) if big is not None else _har_text(content, where)
        kind = "json" if body.lstrip()[:1] in (b"{", b"[") else "sse" if is_sse(body) else ""
    named = _RESOURCE_TYPES.get(resource) or (kind if kind in _ASSETS else None)
    if kind in ("json", "sse"):
        said = big if big is not None else _har_text(content, where) if body is None else body
        if api or _speaks_api(request, said, kind):
            return None
        return named or "other request"
    if kind in _ASSETS or named in _ASSETS:
        return named or kind
    if kind == "html" and (not api or resource in ("document", "iframe") or _is_navigation(request)):
        return "page"
    if api:
        return None
    return named or ("page" if kind == "html" else "other request")


def _is_api_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    path = parts.path.lower()
    return (
        endpoint_hint_for(path) is not None
        or any(part in path for part in _MORE_API_PATHS)
        or path.rstrip("/").endswith(_MORE_API_ENDINGS)
        or _MODEL_METHOD.search(path) is not None
        or _KEY_PARAMETER.search(parts.query) is not None
    )


def _media_kind(content_type: str) -> str:
    """``json``, ``sse``, ``html``, an asset's name, ``other``, or ``""`` when the type says nothing."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in ("", "text/plain", "application/octet-stream", "binary/octet-stream", "x-unknown"):
        return ""
    if ctype == "text/event-stream":
        return "sse"
    if "json" in ctype:
        return "json"
    if ctype in ("text/html", "application/xhtml+xml"):
        return "html"
    if "javascript" in ctype or "ecmascript" in ctype:
        return "script"
    if ctype == "text/css":
        return "stylesheet"
    if ctype.startswith("image/"):
        return "image"
    if ctype.startswith("font/") or "font" in ctype:
        return "font"
    if ctype.startswith(("video/", "audio/")):
        return "media file"
    return "other"


def _speaks_api(request: dict[str, Any], body: bytes | BigText, kind: str) -> bool:
    """Whether JSON or a stream from a URL that does not look like an API is one all the same (an app's own
    gateway): the request asked a model, or the body is an error or a completion."""
    if kind == "sse":
        start = (_big_head(body) if isinstance(body, BigText) else body)[:WINDOW]
        return any(word in start for word in _STREAM_WORDS)
    post = request.get("postData")
    sent = post.get("text") if isinstance(post, dict) else None
    if isinstance(sent, str) and any(f'"{key}"' in sent for key in ("model", "messages", "prompt")):
        return True
    if isinstance(body, BigText):
        # Parsed from the HAR's string, as the exchange will be: never decoded whole.
        doc = parse_pieces(body.source_of_content(), most=body.size // _MOSTLY)
        if doc is None:
            try:
                doc, _ = parse_json_body(_big_bytes(body))
            except orjson.JSONDecodeError:
                return False
    else:
        try:
            doc, _ = parse_json_body(body)
        except orjson.JSONDecodeError:
            return False
    if is_error_body(doc):
        return True
    return isinstance(doc, dict) and (
        "choices" in doc
        or "candidates" in doc
        or doc.get("object") in ("chat.completion", "text_completion")
        or doc.get("type") == "message"
    )


def _is_navigation(request: dict[str, Any]) -> bool:
    """A page the browser loaded (address bar, link), not a call the page's code made."""
    if str(request.get("method") or "GET").upper() != "GET":
        return False
    accept = _har_headers(request).get("accept", "")
    return accept.lstrip().lower().startswith("text/html")


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
