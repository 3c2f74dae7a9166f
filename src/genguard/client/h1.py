"""The lean HTTP/1.1 wire: AsyncClient's plain exchanges on an asyncio Protocol and ``httptools``' parser.

A plain call is one request and one whole answer. aiohttp's own work per request (its request and response
objects, its stream reader, its timers) is most of what a client spends on such a call at 64 in flight, so
:class:`H1Wire` sends plain exchanges over keep-alive connections of its own, parsed by ``httptools`` (the
llhttp parser uvicorn uses), and keeps everything else on aiohttp: streams (and the media helpers'
:class:`~genguard.client.wire.WireTransport`, which streams) are :class:`~genguard.client.wire.AioWire`'s.
``bench/bench_async.py`` has the figures.

What an exchange promises is :class:`AioWire`'s, and tests hold the two wires to the same cases:

- the wait for one of ``max_concurrency`` slots comes before any clock;
- ``timeout.connect`` bounds connecting (TCP and TLS): :class:`httpx.ConnectTimeout`; a refused or unresolvable
  host is :class:`httpx.ConnectError`;
- ``timeout.read`` bounds each wait for bytes of the answer (aiohttp's ``sock_read``): :class:`httpx.ReadTimeout`;
- a server that closes before or during its answer, or answers what is not HTTP, is
  :class:`httpx.RemoteProtocolError`; a reset is :class:`httpx.ReadError` once the answer began;
- headers come back as a case-insensitive multi-mapping (repeated headers kept); gzip and deflate bodies are
  decoded, other encodings passed on as they came; 1xx answers are skipped.

A connection goes back to the pool only after a whole answer that lets it stay open; one whose exchange failed
or was cancelled is closed. An idempotent request that meets a reused connection the server had already closed
(nothing of an answer came) is sent once more on a new connection, as aiohttp and RFC 9112 (9.3.1) do; a POST
is never sent twice by the wire: the server may have acted on it, and whether to send it again is the retry
policy's decision, made with that failure in hand.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httptools
import httpx
from multidict import CIMultiDict, CIMultiDictProxy

from .wire import AioWire

__all__ = ["H1Wire", "user_agent"]


@functools.cache
def user_agent() -> str:
    """What the wire sends as ``user-agent`` when the caller's headers name none."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = f"genguard/{version('genguard')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        ours = "genguard"
    return f"{ours} python/{sys.version_info[0]}.{sys.version_info[1]}"


# RFC 9110 9.2.2; aiohttp's list too. Only these are sent again after a reused connection turned out closed.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Sent with a content-length even when empty, as aiohttp does: some servers want one on every POST.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Written by the wire itself: a caller's own would contradict what is sent (length) or how (no chunking).
_OURS = frozenset({"content-length", "transfer-encoding", "connection"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Bodies up to this size go out in the same write as the head: one send instead of two, one copy.
_ONE_WRITE = 65536


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a URL goes: the pool key, the host and port to connect to, the Host header, the request target."""

    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    authority: str
    path: str
    basic: str | None  # an Authorization value from user:password in the URL


def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port that is not a number, an unbalanced bracket
        raise _Invalid(f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _Invalid(f"not an http or https URL (scheme {scheme!r})")
    host = parts.hostname or ""
    if not host:
        raise _Invalid("a URL without a host")
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    authority = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS[scheme]:
        authority += f":{port}"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if not path.isascii() or " " in path:
        path = quote(path, safe="/%:@!$&'()*+,;=-._~?")
    basic = None
    if parts.username is not None:
        import base64

        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        basic = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return _Target((scheme, host, port), host, port, scheme == "https", authority, path, basic)


class _Invalid(Exception):
    """A URL the wire cannot send to."""


class _Failed(Exception):
    """How an exchange on one connection failed, told to the coroutine waiting on it; ``answered``: some byte of
    an answer had come (then the request was surely processed, and is never sent again by the wire)."""

    def __init__(self, kind: type[httpx.TransportError], text: str, *, answered: bool) -> None:
        super().__init__(text)
        self.kind = kind
        self.answered = answered


class _Conn(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer gathered whole, then back to the pool."""

    __slots__ = (
        "body",
        "closed",
        "got",
        "head_only",
        "headers",
        "headers_done",
        "keep",
        "last_read",
        "loop",
        "parser",
        "read_timeout",
        "stale_parser",
        "status",
        "timer",
        "transport",
        "waiter",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.parser = httptools.HttpResponseParser(self)
        self.stale_parser = False
        self.waiter: asyncio.Future[None] | None = None
        self.head_only = False
        self.got = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.headers_done = False
        self.keep = False
        self.read_timeout: float | None = None
        self.last_read = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # -- the exchange's side ----------------------------------------------------------------------------------

    def send(
        self, data: bytes, more: bytes | None, head_only: bool, read_timeout: float | None
    ) -> asyncio.Future[None]:
        """Write one request; the future ends when its whole answer is in (or with a :class:`_Failed`)."""
        if self.stale_parser:  # after a HEAD, whose body llhttp would still wait for
            self.parser = httptools.HttpResponseParser(self)
            self.stale_parser = False
        self.head_only = head_only
        self.got = False
        self.status = 0
        self.headers = []
        self.body = []
        self.headers_done = False
        self.keep = False
        waiter = self.waiter = self.loop.create_future()
        self.read_timeout = read_timeout
        if read_timeout is not None:
            self.last_read = now = self.loop.time()
            self.timer = self.loop.call_at(now + read_timeout, self._on_timer)
        transport = self.transport
        assert transport is not None
        transport.write(data)
        if more:
            transport.write(more)
        return waiter

    def close(self) -> None:
        self._stop_timer()
        self.waiter = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if transport.get_write_buffer_size():
                # A request not yet all sent (a stalled server that stopped reading): close() would wait for
                # it to drain, for ever; nothing more of it is wanted.
                transport.abort()
            else:
                transport.close()

    def usable(self) -> bool:
        transport = self.transport
        return not self.closed and transport is not None and not transport.is_closing()

    # -- asyncio's side ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: this connection is fit for nothing more
            self._spoil()
            return
        self.got = True
        if self.read_timeout is not None:
            self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError, "the server switched protocols, which was not asked for")
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError, f"invalid HTTP answer: {exc}")

    def eof_received(self) -> bool | None:
        return None  # close: connection_lost decides whether the answer was whole

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        waiter = self.waiter
        if waiter is None:
            return
        if self.headers_done and not self.head_only and not self._framed():
            # No content-length and not chunked: the body was everything up to the close.
            self._finish(keep=False)
            return
        self.waiter = None
        if waiter.done():
            return
        answered = self.got
        # What aiohttp says of the same: a body cut short is a broken answer; a reset before the headers ended,
        # a failed read; a clean close before them, a server that hung up.
        if self.headers_done:
            reason = f" ({exc})" if exc is not None else ""
            failure = _Failed(
                httpx.RemoteProtocolError, f"the server closed the connection before the whole body came{reason}",
                answered=True,
            )  # fmt: skip
        elif exc is not None:
            failure = _Failed(
                httpx.ReadError, f"the connection broke before an answer came: {exc}", answered=answered
            )
        else:
            failure = _Failed(
                httpx.RemoteProtocolError, "the server closed the connection without a whole answer",
                answered=answered,
            )  # fmt: skip
        waiter.set_exception(failure)

    # -- httptools' callbacks ----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.waiter is None:  # a second answer to one request
            self._spoil()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: the answer follows
            return
        self.status = status
        self.headers_done = True
        if self.head_only:
            # llhttp does not know the request was a HEAD and would wait for the body the headers announce.
            self.stale_parser = True
            self._finish(keep=self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.waiter is None:
            self._spoil()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:
            self.headers = []
            return
        if self.waiter is not None:
            self._finish(keep=self.parser.should_keep_alive())

    # -- helpers ----------------------------------------------------------------------------------------------

    def _framed(self) -> bool:
        # Whether the answer said where its body ends (RFC 9112 6.3): a length, or chunked as the last coding.
        for name, value in self.headers:
            low = name.lower()
            if low == "content-length" or (
                low == "transfer-encoding" and value.rstrip(" \t").lower().endswith("chunked")
            ):
                return True
        return self.status in (204, 304)

    def _finish(self, *, keep: bool) -> None:
        self._stop_timer()
        self.keep = keep
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, kind: type[httpx.TransportError], text: str) -> None:
        waiter = self.waiter
        answered = self.got
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(_Failed(kind, text, answered=answered))

    def _spoil(self) -> None:
        self.keep = False
        transport = self.transport
        if transport is not None:
            transport.abort()

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        timeout = self.read_timeout
        if self.waiter is None or timeout is None:
            return
        due = self.last_read + timeout
        if self.loop.time() < due:  # bytes came since: wait what is left of the timeout from the last of them
            self.timer = self.loop.call_at(due, self._on_timer)
            return
        self._fail(httpx.ReadTimeout, f"no bytes of the answer for {timeout:g} s")


class _Pool:
    """The idle keep-alive connections of one event loop, by (scheme, host, port); the most recent is reused
    first (the least likely to have been closed by the server), and at most ``limit`` are kept."""

    __slots__ = ("closed", "connect_options", "count", "idle", "limit", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        # aiohttp's happy eyeballs delay: an unreachable IPv6 address does not cost a whole connect timeout.
        # asyncio's loop has the option; uvloop's (the proxy under uvicorn) does not.
        self.connect_options: dict[str, Any] = (
            {"happy_eyeballs_delay": 0.25} if isinstance(loop, asyncio.BaseEventLoop) else {}
        )
        self.limit = limit
        self.idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self.count = 0
        self.closed = False

    def take(self, key: tuple[str, str, int]) -> _Conn | None:
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            self.count -= 1
            if conn.usable():
                return conn
            conn.close()
        return None

    def give(self, key: tuple[str, str, int], conn: _Conn) -> None:
        if self.closed or not conn.usable():
            conn.close()
            return
        if self.count >= self.limit:
            self._prune()
            if self.count >= self.limit:
                conn.close()
                return
        self.idle.setdefault(key, []).append(conn)
        self.count += 1

    def _prune(self) -> None:
        for key, conns in self.idle.items():
            kept = [c for c in conns if c.usable()]
            self.count -= len(conns) - len(kept)
            self.idle[key] = kept

    def close(self) -> None:
        self.closed = True
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()
        self.count = 0


def _request(method: str, url: str) -> httpx.Request | None:
    try:
        return httpx.Request(method, url)
    except Exception:  # a URL httpx cannot read either: the exception goes without one
        return None


def _error(
    kind: type[httpx.TransportError | httpx.DecodingError], text: str, method: str, url: str
) -> httpx.TransportError | httpx.DecodingError:
    return kind(text, request=_request(method, url))


class H1Wire(AioWire):
    """Plain exchanges on genguard's own keep-alive HTTP/1.1 pool (see the module docstring); streams on
    aiohttp, as :class:`AioWire` carries them."""

    def __init__(self, max_concurrency: int, *, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(max_concurrency, ssl_context=ssl_context)
        self._pool: _Pool | None = None
        self._targets: dict[str, _Target] = {}
        self._ssl_default: ssl.SSLContext | None = None
        self._user_agent = f"user-agent: {user_agent()}"

    def pool(self) -> _Pool:
        """The pool of the running loop; a client used from a second ``asyncio.run`` gets a new one."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop:
            if pool is not None and not pool.loop.is_closed():
                # Another loop that still runs: its connections are its own to close, never from here.
                pool.loop.call_soon_threadsafe(pool.close)
            # The connections of a loop already closed cannot be closed through it; their sockets close when
            # their transports are collected, as an abandoned aiohttp session's do.
            pool = self._pool = _Pool(loop, self.max_concurrency)
        return pool

    def _where(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            target = _target(url)
            if len(self._targets) >= 256:  # callers that build a new URL each call (ids in paths): stay small
                self._targets.clear()
            self._targets[url] = target
        return target

    def _head(self, method: str, target: _Target, headers: Mapping[str, str], content: bytes | None) -> bytes:
        lines = [f"{method} {target.path} HTTP/1.1"]
        seen: set[str] = set()
        for name, value in headers.items():
            low = name.lower()
            if low in _OURS:
                continue
            seen.add(low)
            lines.append(f"{name}: {value}")
        given = "\r\n".join(lines)
        # A CR or LF inside the method, a name or a value would start a header (or a request) of its own:
        # refused, as aiohttp refuses it. The only line breaks in what the caller gave are the ones joined in.
        breaks = len(lines) - 1
        if given.count("\n") != breaks or given.count("\r") != breaks:
            raise ValueError("a header name or value (or the method) holds a line break (CR or LF)")
        lines = [given]
        if "host" not in seen:
            lines.append(f"host: {target.authority}")
        if target.basic is not None and "authorization" not in seen:
            lines.append(f"authorization: {target.basic}")
        if "accept" not in seen:
            lines.append("accept: */*")
        if "accept-encoding" not in seen:
            lines.append("accept-encoding: gzip, deflate")
        if "user-agent" not in seen:
            lines.append(self._user_agent)
        if content is not None or method in _BODY_METHODS:
            lines.append(f"content-length: {len(content) if content else 0}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is not None:
            return self._ssl  # type: ignore[no-any-return]
        if self._ssl_default is None:
            self._ssl_default = ssl.create_default_context()
        return self._ssl_default

    async def _connect(
        self, pool: _Pool, target: _Target, limit: float | None, method: str, url: str
    ) -> _Conn:
        loop = pool.loop
        tls = self._tls() if target.tls else None
        try:
            async with asyncio.timeout(limit):
                _, conn = await loop.create_connection(
                    lambda: _Conn(loop),
                    target.host,
                    target.port,
                    ssl=tls,
                    server_hostname=target.host if tls is not None else None,
                    **pool.connect_options,
                )
        except TimeoutError:
            raise _error(
                httpx.ConnectTimeout, f"no connection to {target.authority} within {limit:g} s", method, url
            ) from None
        except OSError as exc:  # refused, unreachable, unresolvable; TLS failures are OSErrors too
            raise _error(
                httpx.ConnectError, f"cannot connect to {target.authority}: {exc}", method, url
            ) from exc
        return conn

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, timeout: httpx.Timeout
    ) -> tuple[int, Mapping[str, str], bytes]:
        method = method.upper()
        pool = self.pool()
        async with self.slots():
            try:
                target = self._where(url)
            except _Invalid as exc:
                raise _error(httpx.UnsupportedProtocol, str(exc), method, url) from None
            head = self._head(method, target, headers, content)
            more: bytes | None = None
            if content:
                if len(content) <= _ONE_WRITE:
                    head += content
                else:
                    more = content
            again = method in _IDEMPOTENT
            while True:
                conn = pool.take(target.key)
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(pool, target, timeout.connect, method, url)
                try:
                    await conn.send(head, more, method == "HEAD", timeout.read)
                except _Failed as failed:
                    conn.close()
                    if reused and again and not failed.answered:
                        again = False  # the server had closed it while idle: once more, on a new connection
                        continue
                    raise _error(failed.kind, str(failed), method, url) from None
                except BaseException:
                    conn.close()  # cancelled mid-answer: what is left of it must not meet the next request
                    raise
                status, pairs, chunks = conn.status, conn.headers, conn.body
                if conn.keep:
                    pool.give(target.key, conn)
                else:
                    conn.close()
                break
        replied = CIMultiDictProxy(CIMultiDict(pairs))
        body = b"".join(chunks)
        encoding = replied.get("content-encoding")
        if encoding is not None and body:
            body = _decoded(encoding, body, method, url)
        return status, replied, body

    async def aclose(self) -> None:
        pool = self._pool
        self._pool = None
        if pool is not None:
            if pool.loop is asyncio.get_running_loop():
                pool.close()
            elif not pool.loop.is_closed():
                pool.loop.call_soon_threadsafe(pool.close)
        await super().aclose()


def _decoded(encoding: str, body: bytes, method: str, url: str) -> bytes:
    """``body`` without its content-encoding when it is gzip or deflate (what the wire asks for), else as it
    came. A body that does not decode came whole over a sound connection: a broken answer (``DecodingError``,
    ``invalid_response``, as httpx says it), not a network fault."""
    name = encoding.strip().lower()
    try:
        if name in ("gzip", "x-gzip"):
            return _inflate(body, 16 + zlib.MAX_WBITS)
        if name == "deflate":
            try:
                return _inflate(body, zlib.MAX_WBITS)
            except zlib.error:  # deflate without the zlib wrapper, which some servers send
                return _inflate(body, -zlib.MAX_WBITS)
    except zlib.error as exc:
        # Cut short, the answer is a broken transfer, as a connection closed mid-body is; otherwise it came whole
        # and does not decode.
        kind = httpx.RemoteProtocolError if "ends early" in str(exc) else httpx.DecodingError
        raise _error(kind, f"cannot decode the {name} body: {exc}", method, url) from None
    return body


def _inflate(body: bytes, wbits: int) -> bytes:
    out: list[bytes] = []
    while True:
        d = zlib.decompressobj(wbits)
        out.append(d.decompress(body))
        out.append(d.flush())
        if not d.eof:
            raise zlib.error("the compressed body ends early")
        body = d.unused_data
        if not body or wbits != 16 + zlib.MAX_WBITS:  # only gzip may hold several members
            break
    return b"".join(out)
