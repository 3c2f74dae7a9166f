"""Trusted downloads over real HTTP: a tiny Starlette app on 127.0.0.1 serves good files and every bad answer."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from genguard.client.download import (
    DownloadFailed,
    adownload_to,
    download_to,
    safe_stem,
    save_b64,
    save_bytes,
)
from genguard.core.media_body import sniff
from genguard.core.secrets import redact_url


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0\0\0\0")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


PNG = _png()
MP4 = (
    struct.pack(">I", 24)
    + b"ftypisom"
    + b"\x00\x00\x02\x00isomiso2"
    + struct.pack(">I", 8)
    + b"mdat"
    + bytes(4000)
)
LIMIT = 64 * 1024


async def _png_route(request: Request) -> Response:
    return Response(PNG, media_type="image/png")


async def _mp4_route(request: Request) -> Response:
    return Response(MP4, media_type="video/mp4")


async def _html_route(request: Request) -> Response:
    return Response("<!DOCTYPE html><html><body>Sign in to continue</body></html>", media_type="text/html")


async def _expired_route(request: Request) -> Response:
    body = (
        '<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>'
    )
    return Response(body, status_code=403, media_type="application/xml")


async def _big_route(request: Request) -> Response:
    return Response(PNG + bytes(LIMIT * 4), media_type="image/png")


async def _big_stream_route(request: Request) -> StreamingResponse:
    # No content-length: the limit must be enforced while reading, and reading must stop there.
    async def body() -> AsyncIterator[bytes]:
        yield PNG
        for _ in range(10_000):
            yield bytes(16 * 1024)
            await asyncio.sleep(0)

    return StreamingResponse(body(), media_type="image/png")


async def _redirect_route(request: Request) -> RedirectResponse:
    return RedirectResponse("/img.png")


async def _cut_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"video/mp4"), (b"content-length", b"100000")],
        }
    )
    await send({"type": "http.response.body", "body": MP4[:1000], "more_body": True})
    raise RuntimeError("upstream went away")


def _app() -> Any:
    app = Starlette(
        routes=[
            Route("/img.png", _png_route),
            Route("/clip.mp4", _mp4_route),
            Route("/html", _html_route),
            Route("/expired.png", _expired_route),
            Route("/big.png", _big_route),
            Route("/bigstream.png", _big_stream_route),
            Route("/redirect", _redirect_route),
        ]
    )

    async def router(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/cut.mp4":
            await _cut_app(scope, receive, send)
        else:
            await app(scope, receive, send)

    return router


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    config = uvicorn.Config(_app(), host="127.0.0.1", port=0, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_png_is_saved_with_sniffed_extension(base_url: str, client: httpx.Client, tmp_path: Path) -> None:
    path = download_to(client, f"{base_url}/img.png", tmp_path / "out", stem="a fox/../at dawn", kind="image")
    assert path.parent == tmp_path / "out"
    assert path.name == "a_fox_at_dawn.png"
    assert path.read_bytes() == PNG
    assert _leftovers(tmp_path / "out") == ["a_fox_at_dawn.png"]


def test_second_download_does_not_overwrite(base_url: str, client: httpx.Client, tmp_path: Path) -> None:
    first = download_to(client, f"{base_url}/img.png", tmp_path, stem="img", kind="image")
    second = download_to(client, f"{base_url}/redirect", tmp_path, stem="img", kind="image")
    assert (first.name, second.name) == ("img.png", "img-1.png")
    assert second.read_bytes() == PNG


def test_mp4_is_a_video_not_an_image(base_url: str, client: httpx.Client, tmp_path: Path) -> None:
    path = download_to(client, f"{base_url}/clip.mp4", tmp_path, stem="clip", kind="video")
    assert path.name == "clip.mp4"
    assert path.read_bytes() == MP4
    with pytest.raises(DownloadFailed) as info:
        download_to(client, f"{base_url}/clip.mp4", tmp_path / "img", stem="clip", kind="image")
    assert "expected an image but got a video/mp4 file" in (info.value.outcome.message or "")
    assert _leftovers(tmp_path / "img") == []


def test_html_with_200_is_not_an_image(base_url: str, client: httpx.Client, tmp_path: Path) -> None:
    with pytest.raises(DownloadFailed) as info:
        download_to(client, f"{base_url}/html", tmp_path, stem="x", kind="image")
    outcome = info.value.outcome
    assert (outcome.code, outcome.kind, outcome.endpoint, outcome.retryable) == (
        "download_failed",
        "hard",
        "image",
        True,
    )
    assert "an HTML page (text/html)" in (outcome.message or "")
    assert "Sign in" in (outcome.message or "")
    assert _leftovers(tmp_path) == []


def test_expired_url_says_so_and_hides_the_signature(
    base_url: str, client: httpx.Client, tmp_path: Path
) -> None:
    url = f"{base_url}/expired.png?X-Amz-Signature=s3cr3t&X-Amz-Expires=3600"
    with pytest.raises(DownloadFailed) as info:
        download_to(client, url, tmp_path, stem="x", kind="image")
    outcome = info.value.outcome
    assert outcome.status == 403
    assert "expired" in (outcome.message or "")
    assert "fresh URL" in (outcome.message or "")
    assert "s3cr3t" not in outcome.to_json()
    assert outcome.extra["url"] == f"{base_url}/expired.png"
    assert "s3cr3t" not in str(info.value)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("route", ["big.png", "bigstream.png"])
def test_size_limit(base_url: str, client: httpx.Client, tmp_path: Path, route: str) -> None:
    with pytest.raises(DownloadFailed) as info:
        download_to(client, f"{base_url}/{route}", tmp_path, stem="big", kind="image", max_bytes=LIMIT)
    assert "size limit" in (info.value.outcome.message or "")
    assert _leftovers(tmp_path) == []


def test_connection_cut_mid_body(base_url: str, client: httpx.Client, tmp_path: Path) -> None:
    with pytest.raises(DownloadFailed) as info:
        download_to(client, f"{base_url}/cut.mp4", tmp_path, stem="cut", kind="video")
    message = info.value.outcome.message or ""
    assert "connection failed after" in message
    assert info.value.outcome.endpoint == "video"
    assert _leftovers(tmp_path) == []


def test_missing_server_and_bad_url(client: httpx.Client, tmp_path: Path) -> None:
    with pytest.raises(DownloadFailed) as info:
        download_to(client, "ftp://example/a.png", tmp_path, stem="x", kind="image")
    assert "not an http(s) URL" in (info.value.outcome.message or "")
    with socket_closed_port() as port, pytest.raises(DownloadFailed) as refused:
        download_to(client, f"http://127.0.0.1:{port}/a.png", tmp_path, stem="x", kind="image")
    assert "connection failed after 0 bytes" in (refused.value.outcome.message or "")
    assert _leftovers(tmp_path) == []


class socket_closed_port:
    """A port on 127.0.0.1 that nothing listens on."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port: int = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_download_and_failures(base_url: str, tmp_path: Path) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        path = await adownload_to(client, f"{base_url}/clip.mp4", tmp_path, stem="v", kind="video")
        assert path.read_bytes() == MP4
        with pytest.raises(DownloadFailed) as info:
            await adownload_to(client, f"{base_url}/expired.png", tmp_path, stem="e", kind="image")
        assert info.value.outcome.status == 403
        with pytest.raises(DownloadFailed):
            await adownload_to(client, f"{base_url}/cut.mp4", tmp_path, stem="c", kind="video")
        with pytest.raises(DownloadFailed):
            await adownload_to(
                client, f"{base_url}/bigstream.png", tmp_path, stem="b", kind="image", max_bytes=LIMIT
            )
    assert _leftovers(tmp_path) == ["v.mp4"]


def test_save_b64_and_bytes(tmp_path: Path) -> None:
    path = save_b64(base64.b64encode(PNG).decode(), tmp_path, stem="fox-0")
    assert path.name == "fox-0.png"
    assert sniff(path.read_bytes()) == "image/png"
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert save_b64(data_uri, tmp_path, stem="fox-0").name == "fox-0-1.png"
    with pytest.raises(DownloadFailed) as info:
        save_b64(base64.b64encode(b"<html>nope</html>").decode(), tmp_path, stem="bad")
    assert "an HTML page" in (info.value.outcome.message or "")
    with pytest.raises(DownloadFailed):
        save_b64("!!!not base64!!!=", tmp_path, stem="bad")
    with pytest.raises(DownloadFailed) as big:
        save_b64(base64.b64encode(PNG + bytes(5000)).decode(), tmp_path, stem="big", max_bytes=1000)
    assert "size limit" in (big.value.outcome.message or "")
    with pytest.raises(DownloadFailed):
        save_bytes(PNG, tmp_path, stem="vid", kind="video")
    assert _leftovers(tmp_path) == ["fox-0-1.png", "fox-0.png"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "etc_passwd"),
        ("..", "media"),
        ("a/b\\c", "a_b_c"),
        ("ok-name_1.x", "ok-name_1.x"),
        ("", "media"),
        ("日本", "media"),
        ("x" * 300, "x" * 80),
    ],
)
def test_safe_stem(raw: str, expected: str) -> None:
    stem = safe_stem(raw)
    assert stem == expected
    assert "/" not in stem
    assert ".." not in stem


def test_redact_url() -> None:
    assert redact_url("https://u:p@cdn.example:8443/a/b.mp4?sig=1#x") == "https://cdn.example:8443/a/b.mp4"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_saved_files_follow_the_umask(base_url: str, client: httpx.Client, tmp_path: Path, mask: int) -> None:
    # They used to be 0600 whatever the umask (mkstemp's mode), unreadable to a web server or a shared folder.
    old = os.umask(mask)
    try:
        fetched = download_to(client, f"{base_url}/img.png", tmp_path, stem="fetched", kind="image")
        decoded = save_b64(base64.b64encode(PNG).decode(), tmp_path, stem="decoded", kind="image")
    finally:
        os.umask(old)
    for path in (fetched, decoded):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask
