"""A small HTTP/1.1 server on 127.0.0.1 for wire tests: each path answers one way (chunked, gzip, until close,
1xx first, cut mid-body, stalled, garbage...), on its own event loop in a thread, so tests on any loop (and
tests that run several loops) can use it. It counts the connections it accepted and closed and keeps every
request it read."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

JSON = b'{"ok": true}'
CHAT = (
    '{"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [{"index": 0, '
    '"message": {"role": "assistant", "content": "caf\u00e9"}, "finish_reason": "stop"}], '
    '"usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}'
).encode()
BIG = bytes(range(256)) * 4096  # 1 MiB
# /NAME/v1/chat/completions for each NAME: a server taking two requests at a time refuses a third in these words.
_TWO_AT_ONCE = {
    "/two-at-once/v1/chat/completions": (
        b'{"error": {"message": "Too many concurrent requests. Limit: 2 concurrent requests", '
        b'"type": "rate_limit_error", "code": "concurrent_request_limit_exceeded"}}'
    ),
    # LiteLLM's proxy: the same words for its per-minute and parallel limits, the counts after them.
    "/litellm-two-at-once/v1/chat/completions": (
        b'{"error": {"message": "LiteLLM Rate Limit Handler for rate limit type = key. Max parallel request '
        b"limit reached. current rpm: 7, rpm limit: 100000, current tpm: 120, tpm limit: 9223372036854775807, "
        b'current max_parallel_requests: 2, max_parallel_requests: 2", "type": "None", "param": "None", '
        b'"code": "429"}}'
    ),
    # Its newer limiter names the kind of limit.
    "/litellm-v3-two-at-once/v1/chat/completions": (
        b'{"error": {"message": "Rate limit exceeded for api_key: 5d41402abc4b2a76. Limit type: '
        b'max_parallel_requests. Current limit: 2, Remaining: 0. Limit resets at: 2026-12-04 18:31:00 UTC", '
        b'"type": "None", "param": "None", "code": "429"}}'
    ),
}


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    conn: int  # which accepted connection carried it (1 for the first)


@dataclass
class RawServer:
    host: str = "127.0.0.1"
    port: int = 0
    accepted: int = 0
    closed: int = 0
    requests: list[Seen] = field(default_factory=list)
    got_request: threading.Event = field(default_factory=threading.Event)
    conn_closed: threading.Event = field(default_factory=threading.Event)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    epoch: int = 0  # one per reset(): a connection counts only in the epoch it was accepted in
    # /two-at-once: the requests being answered now, and those refused
    in_flight: int = 0
    refused: int = 0

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        self.epoch += 1
        self.accepted = self.closed = 0
        self.in_flight = self.refused = 0
        self.requests.clear()
        self.got_request.clear()
        self.conn_closed.clear()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        number = self.accepted
        epoch = self.epoch
        served = 0
        self.writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                line, *rest = head.decode("latin-1").split("\r\n")
                method, path, _ = line.split(" ", 2)
                headers = [tuple(h.split(": ", 1)) for h in rest if h]
                length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
                body = await reader.readexactly(length)
                served += 1
                self.requests.append(Seen(method, path, headers, body, number))  # type: ignore[arg-type]
                self.got_request.set()
                if not await self.answer(method, path, served, reader, writer):
                    return
        finally:
            self.writers.discard(writer)
            writer.close()
            # A connection of an earlier test (a pool it closed as it ended) may be seen closing after the next
            # test's reset(): it counts for none, and wakes no one.
            if epoch == self.epoch:
                self.closed += 1
                self.conn_closed.set()

    async def answer(
        self, method: str, path: str, served: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Write the answer ``path`` asks for; False: the connection ends here."""
        w = writer.write

        def plain(body: bytes, *extra: str, status: str = "200 OK", version: str = "1.1") -> None:
            head = [f"HTTP/{version} {status}", f"content-length: {len(body)}", *extra]
            w(("\r\n".join(head) + "\r\n\r\n").encode() + (b"" if method == "HEAD" else body))

        name = path.split("?")[0]
        if name == "/ok":
            plain(JSON, "content-type: application/json")
        elif name == "/echo":
            seen = self.requests[-1]
            text = "\n".join(f"{k}: {v}" for k, v in seen.headers).encode()
            plain(f"{seen.method} {seen.path}\n".encode() + text + b"\n\n" + seen.body)
        elif name == "/chunked":
            w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for piece in (b'{"ok"', b": ", b"true}"):
                w(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await writer.drain()
            w(b"0\r\n\r\n")
        elif name == "/gzip":
            plain(gzip.compress(JSON), "content-encoding: gzip")
        elif name == "/deflate":
            plain(zlib.compress(JSON), "content-encoding: deflate")
        elif name == "/raw-deflate":
            d = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            plain(d.compress(JSON) + d.flush(), "content-encoding: deflate")
        elif name == "/short-gzip":
            plain(gzip.compress(JSON)[:-12], "content-encoding: gzip")
        elif name == "/bom/v1/chat/completions":
            # A whole chat completion after a UTF-8 byte-order mark, with a word in UTF-8 beyond ASCII.
            plain(b"\xef\xbb\xbf" + CHAT, "content-type: application/json; charset=utf-8")
        elif name == "/latin1/v1/chat/completions":
            plain(
                CHAT.replace("\u00e9".encode(), b"\xe9"), "content-type: application/json; charset=iso-8859-1"
            )
        elif name in _TWO_AT_ONCE:
            # A server that takes two requests at a time (each answered after 30 ms) and refuses a third with
            # a 429 that says so, as gateways and self-hosted servers do ("max concurrent requests"), in the
            # words of the gateway the path names.
            if self.in_flight >= 2:
                self.refused += 1
                plain(_TWO_AT_ONCE[name], "content-type: application/json", status="429 Too Many Requests")
            else:
                self.in_flight += 1
                try:
                    await asyncio.sleep(0.03)
                finally:
                    self.in_flight -= 1
                plain(CHAT, "content-type: application/json")
        elif name == "/bad-gzip/v1/chat/completions":
            plain(b"\x1f\x8b" + b"\x00" * 30, "content-type: application/json", "content-encoding: gzip")
        elif name == "/bad-gzip":
            plain(b"\x1f\x8b" + b"\x00" * 30, "content-encoding: gzip")
        elif name == "/br":
            plain(b"\x0b\x02\x80not-decoded", "content-encoding: br")
        elif name == "/until-close":
            w(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + JSON[:5])
            await writer.drain()
            w(JSON[5:])
            return False
        elif name == "/informational":
            w(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n")
            await writer.drain()
            plain(JSON, "x-final: yes")
        elif name == "/idle-close":  # keep-alive by its headers, closed right after anyway
            plain(JSON)
            await writer.drain()
            return False
        elif name == "/close":
            plain(JSON, "connection: close")
            return False
        elif name == "/http10":
            plain(JSON, version="1.0")
            return False
        elif name == "/no-content":
            w(b"HTTP/1.1 204 No Content\r\n\r\n")
        elif name == "/not-modified":
            w(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 99\r\n\r\n")
        elif name == "/repeated":
            plain(JSON, "set-cookie: a=1", "X-Thing: one", "set-cookie: b=2", "x-thing: two")
        elif name == "/big":
            w(f"HTTP/1.1 200 OK\r\ncontent-length: {len(BIG)}\r\n\r\n".encode())
            for i in range(0, len(BIG), 7000):  # many reads, many on_body pieces
                w(BIG[i : i + 7000])
                await writer.drain()
        elif name == "/big-chunked":
            w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(0, len(BIG), 5000):
                piece = BIG[i : i + 5000]
                w(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await writer.drain()
            w(b"0\r\n\r\n")
        elif name == "/cut":
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + JSON)
            await writer.drain()
            return False
        elif name == "/cut-chunked":
            w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await writer.drain()
            return False
        elif name == "/cut-head":
            w(b"HTTP/1.1 200 OK\r\ncontent-le")
            await writer.drain()
            return False
        elif name == "/drop":
            return False
        elif name == "/reset":
            _reset(writer)
            return False
        elif name == "/reset-mid-body":
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + JSON)
            await writer.drain()
            await asyncio.sleep(0.05)  # the head reaches the client before the reset does
            _reset(writer)
            return False
        elif name == "/garbage":
            w(b"SURELY NOT HTTP\r\n\r\n")
            await writer.drain()
            await reader.read()  # until the client hangs up
            return False
        elif name == "/stall":
            await reader.read()  # never answers; returns when the client closes
            return False
        elif name == "/stall-body":
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + JSON)
            await writer.drain()
            await reader.read()
            return False
        elif name == "/trickle":
            # A byte every 60 ms, 720 ms in all: each wait is short, the whole answer is long.
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n")
            for _ in range(12):
                await writer.drain()
                await asyncio.sleep(0.06)
                w(b"x")
        elif name == "/second-drops":
            # Answers the first request of a connection; drops the second unanswered, as a server closing an
            # idle connection at the instant a request arrives on it.
            if served >= 2:
                return False
            plain(JSON)
        else:
            plain(b"no such path", status="404 Not Found")
        await writer.drain()
        return True


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.contextmanager
def serving(ssl_context: ssl.SSLContext | None = None) -> Iterator[RawServer]:
    server = RawServer()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, asyncio.Server] = {}

    async def start() -> None:
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=ssl_context)
        holder["srv"] = srv
        server.port = srv.sockets[0].getsockname()[1]
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield server
    finally:

        async def stop() -> None:
            holder["srv"].close()
            for writer in list(server.writers):  # stalled handlers wake on the close and end
                writer.transport.abort()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:
                await asyncio.wait(others, timeout=5)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def full_backlog() -> Iterator[tuple[str, int]]:
    """A listening socket whose accept queue is full: a new connection's SYN is dropped, so connecting hangs
    (Linux drops SYNs to a listener whose accept queue is full)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        yield "127.0.0.1", port
    finally:
        for s in fillers:
            s.close()
        listener.close()


def backlog_hangs(host: str, port: int) -> bool:
    """Whether connecting to ``host:port`` really hangs (the test that needs it is skipped where it does not)."""
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect((host, port))
    except TimeoutError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False
