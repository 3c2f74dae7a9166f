"""The async wire: how :class:`~genguard.AsyncClient` moves bytes, chosen by measurement.

At 64 calls in flight on a 2-core machine, bare aiohttp answers about ten times as many requests per second as
httpx's async pool (whose pool scan grows with concurrency), so the async path left httpx; and aiohttp's own
work per request (its request and response objects, stream reader and timers) is then most of a plain call's
client CPU, so a plain call (one request, one whole answer) goes over genguard's lean HTTP/1.1 wire,
:class:`~genguard.client.h1.H1Wire` (an asyncio Protocol and ``httptools``' parser, keep-alive connections of
its own), while streams stay on aiohttp (``bench/bench_async.py`` has the figures). Without ``httptools``,
:class:`AioWire` carries plain calls too (:func:`genguard.client.clients.plain_wire` picks). A caller may still
pass an :class:`httpx.AsyncClient` (its proxies, mounts, event hooks) or an :class:`aiohttp.ClientSession` of
their own, which then carries everything; each sits behind the same small interface:

- :meth:`Wire.exchange` sends one request and reads the whole answer;
- :meth:`Wire.stream` sends one request and yields the answer's body as it arrives;
- every transport failure comes out as the matching :mod:`httpx` exception (one vocabulary for the one place
  that classifies them: :func:`genguard.classify_exception`), the same one whichever wire carried it (tests
  run the same cases against AioWire and H1Wire).

Back-pressure is local and never a provider failure: a call waits for one of ``max_concurrency`` slots before
its clock starts, and no timeout counts the wait for a pooled connection (aiohttp's ``connect`` and ``total``
stay unset; only ``sock_connect`` and ``sock_read`` apply, and H1Wire bounds the same two steps).

httpx's own ``AsyncClient`` stays available on top, for the media helpers that build ``httpx.Request`` values
(images, videos, downloads): :class:`WireTransport` carries those over the same wire's aiohttp session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AioWire", "HttpxWire", "Reply", "Wire", "WireTransport", "default_max_concurrency"]

# 1,000 calls gathered at once must just work: they queue here, locally, instead of timing out in a pool.
# 128 connections keep a local server and this process both busy without one starving the other (see
# bench/bench_async.py for throughput at 16, 64 and 256 in flight).
DEFAULT_MAX_CONCURRENCY = 128


def default_max_concurrency() -> int:
    """The number of calls an AsyncClient sends at once when not told otherwise."""
    return DEFAULT_MAX_CONCURRENCY


@dataclass(frozen=True, slots=True)
class Reply:
    """A streamed answer's head; ``chunks`` yields its body as it arrives (bounded by the read timeout)."""

    status: int
    headers: Mapping[str, str]
    chunks: AsyncIterator[bytes]


class Wire:
    """What AsyncClient needs of an HTTP client: one exchange, one stream, a close."""

    def __init__(self, max_concurrency: int) -> None:
        self.max_concurrency = max_concurrency
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None

    def slots(self) -> asyncio.Semaphore:
        """The concurrency limit of this client, made for the running event loop."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots = asyncio.Semaphore(self.max_concurrency)
            self._slots_loop = loop
        return self._slots

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, timeout: httpx.Timeout
    ) -> tuple[int, Mapping[str, str], bytes]:
        raise NotImplementedError

    def stream(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, timeout: httpx.Timeout
    ) -> contextlib.AbstractAsyncContextManager[Reply]:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class HttpxWire(Wire):
    """A caller's own :class:`httpx.AsyncClient` behind the Wire interface (closing it is the caller's part)."""

    def __init__(self, client: httpx.AsyncClient, max_concurrency: int, *, owned: bool = False) -> None:
        super().__init__(max_concurrency)
        self.client = client
        self._owned = owned

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, timeout: httpx.Timeout
    ) -> tuple[int, Mapping[str, str], bytes]:
        request = self.client.build_request(method, url, headers=headers, content=content, timeout=timeout)
        async with self.slots():
            response = await self.client.send(request)
            await response.aread()
        return response.status_code, response.headers, response.content

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, timeout: httpx.Timeout
    ) -> AsyncIterator[Reply]:
        request = self.client.build_request(method, url, headers=headers, content=content, timeout=timeout)
        async with self.slots():
            response = await self.client.send(request, stream=True)
            try:
                yield Reply(response.status_code, response.headers, response.aiter_bytes())
            finally:
                await response.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self.client.aclose()


class AioWire(Wire):
    """aiohttp behind the Wire interface: one session per event loop, made on first use inside that loop."""

    def __init__(
        self,
        max_concurrency: int,
        *,
        session: aiohttp.ClientSession | None = None,
        ssl_context: Any = None,
    ) -> None:
        super().__init__(max_concurrency)
        self._given = session
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = session
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[tuple[float | None, float | None], Any] = {}
        global _aiohttp
        if _aiohttp is None:
            import aiohttp as module

            _aiohttp = module

    def session(self) -> aiohttp.ClientSession:
        """The session for the running loop; a client used from a second ``asyncio.run`` gets a new one."""
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or self._session_loop is not loop or session.closed:
            connector = _aiohttp.TCPConnector(limit=self.max_concurrency, ssl=self._ssl or True)
            # Response bodies are read whole by exchange(); nothing here needs aiohttp's cookie jar.
            session = _aiohttp.ClientSession(connector=connector, cookie_jar=_aiohttp.DummyCookieJar())
            self._session = session
            self._session_loop = loop
        return session

    def _timeout(self, timeout: httpx.Timeout) -> Any:
        key = (timeout.connect, timeout.read)
        cached = self._timeouts.get(key)
        if cached is None:
            # sock_connect and sock_read only: the wait for a pooled connection is not the provider's time.
            cached = _aiohttp.ClientTimeout(total=None, connect=None, sock_connect=key[0], sock_read=key[1])
            if len(self._timeouts) >= 16:
                self._timeouts.clear()
            self._timeouts[key] = cached
        return cached

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, timeout: httpx.Timeout
    ) -> tuple[int, Mapping[str, str], bytes]:
        session = self.session()
        async with self.slots():
            try:
                async with session.request(
                    method, url, headers=headers, data=content, timeout=self._timeout(timeout)
                ) as response:
                    body = await response.read()
            except (_aiohttp.ClientError, TimeoutError) as exc:
                # Not chained: an aiohttp error's repr holds the request's headers, the API key among them.
                # Its text is the httpx error's own.
                raise as_httpx_error(exc, method, url) from None
        return response.status, response.headers, body

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, timeout: httpx.Timeout
    ) -> AsyncIterator[Reply]:
        session = self.session()
        async with self.slots():
            try:
                response = await session.request(
                    method, url, headers=headers, data=content, timeout=self._timeout(timeout)
                )
            except (_aiohttp.ClientError, TimeoutError) as exc:
                raise as_httpx_error(exc, method, url) from None
            try:
                yield Reply(response.status, response.headers, _chunks(response, method, url))
            finally:
                response.release()

    async def aclose(self) -> None:
        if self._given is None and self._session is not None and not self._session.closed:
            session = self._session
            self._session = None
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing left to close
                await session.close()


async def _chunks(response: aiohttp.ClientResponse, method: str, url: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except (_aiohttp.ClientError, TimeoutError) as exc:
        raise as_httpx_error(exc, method, url) from None


_aiohttp: Any = None


def as_httpx_error(exc: BaseException, method: str, url: str) -> httpx.TransportError | httpx.DecodingError:
    """The httpx exception that says what ``exc`` (an aiohttp or timeout error) says, most specific first.

    aiohttp's own names differ from httpx's; translating at this one boundary lets one classifier name every
    transport failure, whichever client carried the request.
    """
    a = _aiohttp
    request = httpx.Request(method, url)
    text = str(exc) or type(exc).__name__
    kind: type[httpx.TransportError | httpx.DecodingError]
    if isinstance(exc, a.ClientPayloadError) and "content-encoding" in str(exc.__cause__ or exc).lower():
        kind = (
            httpx.DecodingError
        )  # a body that came whole but does not decode: a broken answer, not the network
    elif isinstance(exc, a.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(exc, TimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, a.ClientConnectorError | a.ServerFingerprintMismatch):
        kind = httpx.ConnectError
    elif isinstance(exc, a.ServerDisconnectedError | a.ClientPayloadError | a.ClientResponseError):
        kind = httpx.RemoteProtocolError
    elif isinstance(exc, a.InvalidURL):
        kind = httpx.UnsupportedProtocol
    elif isinstance(exc, a.ClientOSError | a.ClientConnectionError):
        kind = httpx.ReadError
    else:
        kind = httpx.TransportError
    return kind(text, request=request)


class WireTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends over an :class:`AioWire`: httpx's API for the media helpers, aiohttp's
    speed and pool underneath, and the same exception translation as the chat path."""

    def __init__(self, wire: AioWire) -> None:
        self.wire = wire

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        limits = httpx.Timeout(timeout.get("read"), connect=timeout.get("connect"))
        body = await request.aread()
        manager = self.wire.stream(request.method, str(request.url), request.headers, body or None, limits)
        reply = await manager.__aenter__()
        return httpx.Response(
            reply.status,
            headers=list(reply.headers.items()),
            stream=_ReplyStream(reply, manager),
            request=request,
        )

    async def aclose(self) -> None:
        await self.wire.aclose()


class _ReplyStream(httpx.AsyncByteStream):
    def __init__(self, reply: Reply, manager: contextlib.AbstractAsyncContextManager[Reply]) -> None:
        self._reply = reply
        self._manager = manager

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._reply.chunks:
            yield chunk

    async def aclose(self) -> None:
        await self._manager.__aexit__(None, None, None)
