"""H1Wire, the lean HTTP/1.1 wire of AsyncClient's plain exchanges, held to what AioWire does: the same cases run
against both wires over real sockets on 127.0.0.1 (``tests/_raw_http.py`` answers each path one way), then
what only the lean wire has (its pool, its request head) and how AsyncClient and the proxy pick it."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _raw_http import BIG, JSON, RawServer, backlog_hangs, full_backlog, serving
from genguard import AsyncClient, RetryPolicy
from genguard.client.h1 import H1Wire, user_agent
from genguard.client.wire import AioWire, HttpxWire

pytestmark = pytest.mark.anyio

KEY = "sk-h1-wire-secret-0123456789abcdef"
AUTH = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
T = httpx.Timeout(5.0, connect=5.0)
SHORT = httpx.Timeout(0.3, connect=5.0)
LONG = httpx.Timeout(60.0, connect=5.0)
WIRES: dict[str, type[AioWire]] = {"aiohttp": AioWire, "h1": H1Wire}


@pytest.fixture(scope="module")
def _server() -> Iterator[RawServer]:
    with serving() as server:
        yield server


@pytest.fixture
def server(_server: RawServer) -> RawServer:
    _server.reset()
    return _server


@pytest.fixture(params=sorted(WIRES))
async def wire(request: pytest.FixtureRequest) -> AsyncIterator[AioWire]:
    w = WIRES[request.param](8)
    try:
        yield w
    finally:
        await w.aclose()


@pytest.fixture
async def h1() -> AsyncIterator[H1Wire]:
    w = H1Wire(8)
    try:
        yield w
    finally:
        await w.aclose()


async def _wait(event: Any) -> None:
    assert await asyncio.to_thread(event.wait, 10), "the server never saw it"


def _texts(exc: BaseException) -> str:
    """Everything an exception says (text and repr), and its chain as a traceback prints it."""
    out: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(out) < 20:
        out += [str(seen), repr(seen)]
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "\n".join(out)


# -- answers read whole, on both wires ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/ok",
        "/chunked",
        "/gzip",
        "/deflate",
        "/raw-deflate",
        "/until-close",
        "/informational",
        "/close",
        "/http10",
    ],
)
async def test_every_framing_and_encoding_reads_to_the_same_body(
    wire: AioWire, server: RawServer, path: str
) -> None:
    status, headers, body = await wire.exchange("POST", server.base + path, AUTH, b"{}", T)
    assert (status, body) == (200, JSON)
    if path == "/informational":  # the 100 and the 103 are skipped, their headers with them
        assert headers["x-final"] == "yes"
        assert "link" not in headers


async def test_answers_without_a_body_and_the_connection_stays_usable(
    wire: AioWire, server: RawServer
) -> None:
    # A HEAD's content-length announces a body that never comes: waiting for it would hang the next request.
    status, headers, body = await wire.exchange("HEAD", server.base + "/ok", AUTH, None, T)
    assert (status, body, headers["content-length"]) == (200, b"", str(len(JSON)))
    assert (await wire.exchange("POST", server.base + "/no-content", AUTH, b"{}", T))[::2] == (204, b"")
    assert (await wire.exchange("POST", server.base + "/not-modified", AUTH, b"{}", T))[::2] == (304, b"")
    assert (await wire.exchange("GET", server.base + "/ok", AUTH, None, T))[::2] == (200, JSON)
    assert server.accepted == 1


async def test_repeated_headers_are_all_kept_and_names_are_case_insensitive(
    wire: AioWire, server: RawServer
) -> None:
    _, headers, _ = await wire.exchange("POST", server.base + "/repeated", AUTH, b"{}", T)
    getall = headers.getall  # type: ignore[attr-defined]
    assert getall("set-cookie") == ["a=1", "b=2"]
    assert getall("X-THING") == ["one", "two"]
    assert headers["CONTENT-LENGTH"] == str(len(JSON))


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
async def test_a_one_megabyte_answer_in_many_reads(wire: AioWire, server: RawServer, path: str) -> None:
    status, _, body = await wire.exchange("GET", server.base + path, AUTH, None, T)
    assert status == 200
    assert body == BIG


async def test_connection_close_and_http_1_0_answers_close_the_connection(
    wire: AioWire, server: RawServer
) -> None:
    await wire.exchange("POST", server.base + "/close", AUTH, b"{}", T)
    await wire.exchange("POST", server.base + "/http10", AUTH, b"{}", T)
    await wire.exchange("POST", server.base + "/ok", AUTH, b"{}", T)
    assert server.accepted == 3
    assert [r.conn for r in server.requests] == [1, 2, 3]


async def test_keep_alive_reuses_one_connection(wire: AioWire, server: RawServer) -> None:
    for _ in range(3):
        assert (await wire.exchange("POST", server.base + "/ok", AUTH, b"{}", T))[0] == 200
    assert server.accepted == 1
    assert [r.conn for r in server.requests] == [1, 1, 1]


async def test_an_empty_post_still_says_its_length(wire: AioWire, server: RawServer) -> None:
    _, _, body = await wire.exchange("POST", server.base + "/echo", AUTH, None, T)
    assert b"\ncontent-length: 0\n" in body.lower()


# -- failures, on both wires: the same httpx exception, never the key ---------------------------------------------

FAILURES = [
    ("/cut", httpx.RemoteProtocolError),  # content-length 100, 12 bytes, close
    ("/cut-chunked", httpx.RemoteProtocolError),
    ("/cut-head", httpx.RemoteProtocolError),  # closed in the middle of the headers
    ("/drop", httpx.RemoteProtocolError),  # closed without a byte
    ("/reset", httpx.ReadError),  # reset without a byte
    ("/reset-mid-body", httpx.RemoteProtocolError),
    ("/garbage", httpx.RemoteProtocolError),
    ("/bad-gzip", httpx.DecodingError),  # whole, but not gzip: a broken answer (invalid_response)
    ("/stall", httpx.ReadTimeout),  # not a byte
    ("/stall-body", httpx.ReadTimeout),  # the head, part of the body, then nothing
]


@pytest.mark.parametrize(("path", "kind"), FAILURES)
async def test_a_broken_answer_is_the_same_httpx_error_on_both_wires(
    wire: AioWire, server: RawServer, path: str, kind: type[Exception]
) -> None:
    with pytest.raises((httpx.TransportError, httpx.DecodingError)) as caught:
        await wire.exchange("POST", server.base + path, AUTH, b'{"k": 1}', SHORT)
    assert type(caught.value) is kind
    assert KEY not in _texts(caught.value)
    assert caught.value.request.url.path == path
    # The wire is fine after it: a broken connection is never handed to the next request.
    assert (await wire.exchange("POST", server.base + "/ok", AUTH, b"{}", T))[::2] == (200, JSON)


async def test_the_read_timeout_bounds_each_wait_not_the_whole_answer(
    wire: AioWire, server: RawServer
) -> None:
    # A byte every 60 ms for 720 ms: no wait is near 0.5 s, the whole answer takes longer.
    status, _, body = await wire.exchange("GET", server.base + "/trickle", AUTH, None, httpx.Timeout(0.5))
    assert (status, body) == (200, b"x" * 12)


async def test_a_refused_connection_is_a_connect_error(wire: AioWire) -> None:
    with pytest.raises(httpx.ConnectError) as caught:
        await wire.exchange("POST", "http://127.0.0.1:9/v1/chat/completions", AUTH, b"{}", T)
    assert KEY not in _texts(caught.value)
    assert str(caught.value.request.url) == "http://127.0.0.1:9/v1/chat/completions"


async def test_a_connection_that_never_completes_is_a_connect_timeout(wire: AioWire) -> None:
    with full_backlog() as (host, port):
        if not backlog_hangs(host, port):
            pytest.skip("this system does not drop connections to a full accept queue")
        with pytest.raises(httpx.ConnectTimeout) as caught:
            await wire.exchange(
                "POST", f"http://{host}:{port}/v1", AUTH, b"{}", httpx.Timeout(5.0, connect=0.2)
            )
    assert KEY not in _texts(caught.value)


async def test_the_wait_for_a_slot_is_not_timed(server: RawServer) -> None:
    # One slot: the second call waits the first's 720 ms for it, longer than its 0.5 s read timeout.
    for kind in WIRES.values():
        wire = kind(1)
        try:
            slow = asyncio.ensure_future(
                wire.exchange("GET", server.base + "/trickle", AUTH, None, httpx.Timeout(0.5))
            )
            await _wait(server.got_request)
            status, _, _ = await wire.exchange("POST", server.base + "/ok", AUTH, b"{}", httpx.Timeout(0.5))
            assert status == 200
            assert (await slow)[0] == 200
        finally:
            await wire.aclose()
        server.reset()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_reused_connection_found_closed_is_retried_only_when_idempotent(
    wire: AioWire, server: RawServer, method: str
) -> None:
    # The server answers a connection's first request and drops its second unanswered: what a server closing
    # an idle connection as a request arrives looks like. A GET goes once more on a new connection; a POST is
    # not sent twice (the server may have acted on it): its failure is the caller's to retry or not.
    url = server.base + "/second-drops"
    assert (await wire.exchange(method, url, AUTH, None, T))[0] == 200
    if method == "GET":
        assert (await wire.exchange(method, url, AUTH, None, T))[0] == 200
        assert [r.conn for r in server.requests] == [1, 1, 2]
    else:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await wire.exchange(method, url, AUTH, None, T)
        assert KEY not in _texts(caught.value)
        assert [r.conn for r in server.requests] == [1, 1]


async def _cancel_a_stalled_call(wire: AioWire, server: RawServer) -> None:
    """A POST the server never answers, cancelled once the server has it (a read timeout far past any wait
    here: only the cancellation can end it)."""
    call = asyncio.ensure_future(wire.exchange("POST", server.base + "/stall", AUTH, b"{}", LONG))
    await _wait(server.got_request)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_a_cancelled_call_closes_its_connection(wire: AioWire, server: RawServer) -> None:
    await _cancel_a_stalled_call(wire, server)
    await _wait(server.conn_closed)  # closed by the client, not left in a pool with an answer still coming
    assert (await wire.exchange("POST", server.base + "/ok", AUTH, b"{}", T))[::2] == (200, JSON)
    assert server.accepted == 2


# -- TLS ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate with")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("name", sorted(WIRES))
async def test_tls_uses_the_context_given_and_checks_the_certificate(
    certificate: tuple[Path, Path], name: str
) -> None:
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    with serving(ssl_context=served) as server:
        url = f"https://127.0.0.1:{server.port}/ok"
        wire = WIRES[name](4, ssl_context=trusting)
        try:
            assert (await wire.exchange("POST", url, AUTH, b"{}", T))[::2] == (200, JSON)
            assert (await wire.exchange("POST", url, AUTH, b"{}", T))[::2] == (200, JSON)
            assert server.accepted == 1
        finally:
            await wire.aclose()
        stranger = WIRES[name](4, ssl_context=ssl.create_default_context())  # the system's roots only
        try:
            with pytest.raises(httpx.ConnectError) as caught:
                await stranger.exchange("POST", url, AUTH, b"{}", T)
            assert KEY not in _texts(caught.value)
        finally:
            await stranger.aclose()


# -- what only the lean wire has ----------------------------------------------------------------------------------


async def test_the_request_head(h1: H1Wire, server: RawServer) -> None:
    await h1.exchange("POST", server.base + "/echo?a=1", AUTH, b"{}", T)
    seen = server.requests[-1]
    headers = {k.lower(): v for k, v in seen.headers}
    assert seen.path == "/echo?a=1"
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["content-length"] == "2"
    assert headers["accept-encoding"] == "gzip, deflate"
    assert headers["user-agent"] == user_agent()
    assert user_agent().startswith("genguard/")
    assert headers["authorization"] == f"Bearer {KEY}"
    assert seen.body == b"{}"
    # The caller's own accept-encoding and user agent win; a length of theirs is replaced by the true one.
    own = {**AUTH, "User-Agent": "mine/1", "Accept-Encoding": "identity", "Content-Length": "999"}
    await h1.exchange("POST", server.base + "/echo", own, b"{}", T)
    seen = server.requests[-1]
    assert [
        (k, v) for k, v in seen.headers if k.lower() in ("user-agent", "accept-encoding", "content-length")
    ] == [
        ("User-Agent", "mine/1"),
        ("Accept-Encoding", "identity"),
        ("content-length", "2"),
    ]
    # A GET without a body says no length.
    await h1.exchange("GET", server.base + "/echo", AUTH, None, T)
    assert not any(k.lower() == "content-length" for k, _ in server.requests[-1].headers)


@pytest.mark.parametrize("bad", [{"x-a": "1\r\nx-injected: 2"}, {"x-a\nx-b": "1"}, {"x-a": "1\rb"}])
async def test_a_line_break_in_a_header_is_refused(
    h1: H1Wire, server: RawServer, bad: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="line break"):
        await h1.exchange("POST", server.base + "/ok", {**AUTH, **bad}, b"{}", T)
    assert server.requests == []


async def test_encodings_other_than_gzip_and_deflate_pass_through(h1: H1Wire, server: RawServer) -> None:
    _, headers, body = await h1.exchange("POST", server.base + "/br", AUTH, b"{}", T)
    assert headers["content-encoding"] == "br"
    assert body == b"\x0b\x02\x80not-decoded"


async def test_a_gzip_body_cut_short_is_a_broken_answer(h1: H1Wire, server: RawServer) -> None:
    # aiohttp hands back the part that decoded ('{"ok": tr'); a cut answer must not pass for a short one.
    with pytest.raises(httpx.RemoteProtocolError, match="ends early"):
        await h1.exchange("POST", server.base + "/short-gzip", AUTH, b"{}", T)


async def test_a_pooled_connection_the_server_closed_is_not_used(h1: H1Wire, server: RawServer) -> None:
    await h1.exchange("POST", server.base + "/idle-close", AUTH, b"{}", T)
    await _wait(server.conn_closed)
    pool = h1.pool()
    for _ in range(1000):  # until this loop has read the server's FIN
        if not any(c.usable() for conns in pool.idle.values() for c in conns):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the closed connection still looks usable")
    # A POST, which is never sent twice: it can only pass if the closed connection is never written to.
    assert (await h1.exchange("POST", server.base + "/ok", AUTH, b"{}", T))[::2] == (200, JSON)
    assert [r.conn for r in server.requests] == [1, 2]


async def test_cancelled_or_failed_connections_never_reach_the_pool(h1: H1Wire, server: RawServer) -> None:
    await _cancel_a_stalled_call(h1, server)
    assert h1.pool().count == 0
    with pytest.raises(httpx.ReadTimeout):
        await h1.exchange("POST", server.base + "/stall-body", AUTH, b"{}", SHORT)
    assert h1.pool().count == 0
    await h1.exchange("POST", server.base + "/ok", AUTH, b"{}", T)
    assert h1.pool().count == 1


async def test_the_idle_pool_is_bounded(server: RawServer) -> None:
    wire = H1Wire(3)
    try:
        # Three calls at once open three connections; three more to another origin (a name for the same
        # server) would make six idle ones: three stay.
        await asyncio.gather(*(wire.exchange("GET", server.base + "/ok", AUTH, None, T) for _ in range(3)))
        assert wire.pool().count == 3
        await asyncio.gather(
            *(wire.exchange("GET", f"http://localhost:{server.port}/ok", AUTH, None, T) for _ in range(3))
        )
        assert server.accepted == 6
        assert wire.pool().count == 3
    finally:
        await wire.aclose()


async def test_aclose_closes_the_idle_connections(server: RawServer) -> None:
    wire = H1Wire(4)
    await wire.exchange("POST", server.base + "/ok", AUTH, b"{}", T)
    await wire.aclose()
    await _wait(server.conn_closed)
    assert server.closed == 1
    # Usable after, as AioWire is: a new pool.
    assert (await wire.exchange("POST", server.base + "/ok", AUTH, b"{}", T))[0] == 200
    await wire.aclose()


def test_one_pool_per_event_loop(server: RawServer) -> None:
    wire = H1Wire(4)
    pools: list[object] = []

    async def call() -> int:
        pools.append(wire.pool())
        return (await wire.exchange("POST", server.base + "/ok", AUTH, b"{}", T))[0]

    assert asyncio.run(call()) == 200
    assert asyncio.run(call()) == 200  # a connection of the first, closed loop would fail here
    asyncio.run(wire.aclose())
    assert pools[0] is not pools[1]
    assert server.accepted == 2


async def test_a_url_the_wire_cannot_send_to(h1: H1Wire) -> None:
    for url in ("ftp://127.0.0.1/x", "http:///x", "http://127.0.0.1:port/x"):
        with pytest.raises(httpx.UnsupportedProtocol):
            await h1.exchange("POST", url, AUTH, b"{}", T)


# -- who uses it ----------------------------------------------------------------------------------------------


async def test_async_client_sends_plain_calls_on_the_lean_wire(server: RawServer) -> None:
    async with AsyncClient(server.base, api_key=KEY) as c:
        assert type(c._wire) is H1Wire
    session_kind = pytest.importorskip("aiohttp").ClientSession
    async with session_kind() as session:
        assert type(AsyncClient(server.base, api_key=KEY, http_client=session)._wire) is AioWire
    async with httpx.AsyncClient() as http:
        assert type(AsyncClient(server.base, api_key=KEY, http_client=http)._wire) is HttpxWire


async def test_without_httptools_aiohttp_carries_plain_calls(
    monkeypatch: pytest.MonkeyPatch, server: RawServer
) -> None:
    monkeypatch.setitem(
        sys.modules, "genguard.client.h1", None
    )  # what a missing httptools makes the import do
    async with AsyncClient(server.base, api_key=KEY, retry=RetryPolicy(max_attempts=1)) as c:
        assert type(c._wire) is AioWire
        o = await c.chat(model="m", messages=[{"role": "user", "content": "hi"}])
    assert o.code is not None  # /v1/chat/completions is no path of this server: a 404, but it went out
    assert server.requests[-1].path == "/chat/completions"


def test_the_proxy_upstream_uses_the_lean_wire() -> None:
    from genguard.proxy._upstream import Upstream

    assert type(Upstream("http://127.0.0.1:9/v1", timeout=5, stall_timeout=5).wire) is H1Wire


def test_the_lean_wire_on_uvloop(server: RawServer) -> None:
    # The proxy runs under uvicorn, on uvloop when installed: its loop has no happy-eyeballs option.
    uvloop = pytest.importorskip("uvloop")
    wire = H1Wire(4)

    async def calls() -> list[int]:
        statuses = [(await wire.exchange("POST", server.base + "/ok", AUTH, b"{}", T))[0] for _ in range(2)]
        with pytest.raises(httpx.ConnectError):
            await wire.exchange("POST", "http://127.0.0.1:9/x", AUTH, b"{}", T)
        await wire.aclose()
        return statuses

    assert uvloop.run(calls()) == [200, 200]
    assert server.accepted == 1
