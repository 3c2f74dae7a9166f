"""Trusted downloads of generated media: fetch at once, check the bytes, cap the size, write atomically.

A result URL is fetched as soon as it is known (they expire), its first bytes are checked to be the promised
kind of file (an expired URL often answers 200 with an HTML or XML page), the body is streamed into a
temporary file in the target folder with a size cap, fsynced and then moved into place under a safe name.
On any failure nothing is left behind and :class:`DownloadFailed` is raised; it carries an
:class:`~genguard.Outcome` with code ``download_failed`` whose message says what went wrong.

>>> import httpx, tempfile
>>> # with httpx.Client() as client:
>>> #     path = download_to(client, url, "out", stem="fox", kind="image")
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import IO, Literal

import httpx

from ..core.exceptions import DownloadFailed as DownloadFailed  # still importable from here
from ..core.media_body import sniff
from ..core.outcome import Outcome
from ..core.secrets import redact_url
from .transport import TRANSPORT_ERRORS

MediaKind = Literal["image", "video"]

DEFAULT_MAX_BYTES: dict[MediaKind, int] = {"image": 50 * 1024 * 1024, "video": 2 * 1024 * 1024 * 1024}
"""Size caps when none is given: 50 MiB for an image, 2 GiB for a video."""

_EXT = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/avif": ".avif",
    "image/heic": ".heic",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/quicktime": ".mov",
}
_SNIFF_BYTES = 64
_A = {"image": "an image", "video": "a video"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(text: str, *, default: str = "media", max_len: int = 80) -> str:
    """A file name stem with no path separators, no ``..`` and no surprises.

    >>> safe_stem("../../etc/passwd"), safe_stem("a fox, at dawn!"), safe_stem("...")
    ('etc_passwd', 'a_fox_at_dawn', 'media')
    """
    parts = [p for p in _UNSAFE.split(text) if p.strip(".")]
    stem = re.sub(r"\.{2,}", ".", "_".join(parts)).strip("._-")
    stem = re.sub(r"_{2,}", "_", stem)[:max_len].strip("._-")
    return stem or default


def _fail(
    kind: MediaKind, message: str, *, url: str | None = None, status: int | None = None
) -> DownloadFailed:
    outcome = Outcome.failure("download_failed", endpoint=kind, message=message, status=status)
    if url is not None:
        outcome = outcome.with_extra(url=redact_url(url))
    return DownloadFailed(outcome)


def _describe(head: bytes, content_type: str | None) -> str:
    """What came back instead of the promised file, in words a developer recognises."""
    what = f"{content_type.split(';')[0].strip()} " if content_type else ""
    text = head.lstrip()[:_SNIFF_BYTES]
    if not text:
        return f"an empty {what}body".replace("  ", " ")
    if all(32 <= b < 127 or b in (9, 10, 13) for b in text):
        snippet = text.decode("ascii", "replace").replace("\n", " ").replace("\r", " ")
        label = "an HTML page" if b"<html" in head.lower() or b"<!doctype" in head.lower() else "text"
        if text.startswith(b"<?xml") or b"<Error>" in head:
            label = "an XML error document"
        elif text.startswith((b"{", b"[")):
            label = "JSON"
        return f"{label} ({what.strip() or 'no content-type'}) starting {snippet[:60]!r}"
    return f"{what or 'unknown '}bytes that are not a known image or video format"


class _Sink:
    """Streaming writer shared by the sync and async paths: sniff, cap, write, then publish atomically."""

    def __init__(self, folder: Path, *, stem: str, kind: MediaKind, max_bytes: int, url: str | None) -> None:
        self.folder = folder
        self.stem = safe_stem(stem)
        self.kind = kind
        self.max_bytes = max_bytes
        self.url = url
        self.head = b""
        self.mime: str | None = None
        self.size = 0
        self.content_type: str | None = None
        self.status: int | None = None
        self._file: IO[bytes] | None = None
        self._tmp: Path | None = None

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, name = _create_part(self.folder, self.stem)
        except OSError as exc:
            raise self.fail(f"cannot write into {self.folder}: {exc.strerror or exc}") from None
        self._tmp = name
        self._file = os.fdopen(fd, "wb")

    def fail(self, message: str) -> DownloadFailed:
        return _fail(self.kind, message, url=self.url, status=self.status)

    def check_length(self, declared: str | None) -> None:
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise self.fail(
                f"the {self.kind} is {int(declared):,} bytes, over the size limit of {self.max_bytes:,} bytes"
            )

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise self.fail(
                f"the {self.kind} is over the size limit of {self.max_bytes:,} bytes; stopped reading"
            )
        if self.mime is None:
            self.head += chunk[: _SNIFF_BYTES - len(self.head)]
            if len(self.head) >= _SNIFF_BYTES:
                self._check_kind()
        assert self._file is not None
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise self.fail(f"cannot write the {self.kind}: {exc.strerror or exc}") from None

    def _check_kind(self) -> None:
        mime = sniff(self.head)
        if mime is None or not mime.startswith(self.kind + "/"):
            got = f"a {mime} file" if mime else _describe(self.head, self.content_type)
            raise self.fail(f"expected {_A[self.kind]} but got {got}")
        self.mime = mime

    def finish(self) -> Path:
        if self.mime is None:
            self._check_kind()
        assert self._file is not None
        assert self._tmp is not None
        assert self.mime is not None
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            target = _publish(self._tmp, self.folder, self.stem, _EXT.get(self.mime, ""))
        except OSError as exc:
            raise self.fail(f"cannot save the {self.kind}: {exc.strerror or exc}") from None
        self._tmp = None
        return target

    def discard(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            self._tmp = None


def _create_part(folder: Path, stem: str) -> tuple[int, Path]:
    """A new hidden ``.part`` file in ``folder``, opened for writing. Unlike ``mkstemp`` (always 0600), its
    mode follows the umask, as any file the user saves does: a saved image must be readable by the web
    server or the colleague that the folder is shared with."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = folder / f".{stem}.{secrets.token_hex(6)}.part"
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def _publish(tmp: Path, folder: Path, stem: str, ext: str) -> Path:
    """Move ``tmp`` to a free name; a hard link fails rather than overwrite a file someone else just wrote."""
    for i in range(10_000):
        target = folder / (f"{stem}{ext}" if i == 0 else f"{stem}-{i}{ext}")
        try:
            os.link(tmp, target)
        except FileExistsError:
            continue
        except OSError:
            # No hard links on this filesystem: fall back to a checked replace (atomic, not exclusive).
            if target.exists():
                continue
            os.replace(tmp, target)
            return target
        tmp.unlink()
        _fsync_dir(folder)
        return target
    raise OSError(f"no free file name for {stem}{ext} in {folder}")


def _fsync_dir(folder: Path) -> None:
    # The directory entry must reach the disk too, or a crash can lose a file we reported as saved.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _status_failure(sink: _Sink, response: httpx.Response) -> DownloadFailed:
    code = response.status_code
    sink.status = code
    if code in (401, 403, 404, 410):
        return sink.fail(
            f"the {sink.kind} URL answered HTTP {code}: it has expired or is not public "
            "(result URLs last from an hour to a day); fetch the task again for a fresh URL, or generate again"
        )
    return sink.fail(f"the {sink.kind} URL answered HTTP {code}")


def _transport_failure(sink: _Sink, exc: Exception) -> DownloadFailed:
    if isinstance(exc, httpx.TimeoutException):
        return sink.fail(f"timed out fetching the {sink.kind} after {sink.size:,} bytes")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return sink.fail(f"the {sink.kind} URL is not an http(s) URL")
    return sink.fail(
        f"the connection failed after {sink.size:,} bytes of the {sink.kind}: {type(exc).__name__}"
    )


def _check_url(url: str, kind: MediaKind) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _fail(kind, f"the {kind} URL is not an http(s) URL")


def download_to(
    client: httpx.Client,
    url: str,
    folder: str | os.PathLike[str],
    *,
    stem: str,
    kind: MediaKind,
    max_bytes: int | None = None,
    headers: dict[str, str] | None = None,
) -> Path:
    """Fetch ``url`` into ``folder`` as ``<stem>.<ext>`` (the extension from the sniffed type) and return
    the path; raise :class:`DownloadFailed` if the URL answers an error, the bytes are not ``kind``, or the
    body passes ``max_bytes``. Nothing half-written is left behind.

    >>> # with httpx.Client() as c: download_to(c, url, "out", stem="img-0", kind="image")
    """
    _check_url(url, kind)
    sink = _Sink(Path(folder), stem=stem, kind=kind, max_bytes=max_bytes or DEFAULT_MAX_BYTES[kind], url=url)
    try:
        with client.stream("GET", url, headers=headers, follow_redirects=True) as response:
            if not response.is_success:
                raise _status_failure(sink, response)
            sink.status = response.status_code
            sink.content_type = response.headers.get("content-type")
            sink.check_length(response.headers.get("content-length"))
            sink.open()
            for chunk in response.iter_bytes():
                sink.write(chunk)
        return sink.finish()
    except TRANSPORT_ERRORS as exc:
        raise _transport_failure(sink, exc) from None
    finally:
        sink.discard()


async def adownload_to(
    client: httpx.AsyncClient,
    url: str,
    folder: str | os.PathLike[str],
    *,
    stem: str,
    kind: MediaKind,
    max_bytes: int | None = None,
    headers: dict[str, str] | None = None,
) -> Path:
    """The async form of :func:`download_to`.

    >>> # async with httpx.AsyncClient() as c: await adownload_to(c, url, "out", stem="v", kind="video")
    """
    _check_url(url, kind)
    sink = _Sink(Path(folder), stem=stem, kind=kind, max_bytes=max_bytes or DEFAULT_MAX_BYTES[kind], url=url)
    try:
        async with client.stream("GET", url, headers=headers, follow_redirects=True) as response:
            if not response.is_success:
                raise _status_failure(sink, response)
            sink.status = response.status_code
            sink.content_type = response.headers.get("content-type")
            sink.check_length(response.headers.get("content-length"))
            sink.open()
            async for chunk in response.aiter_bytes():
                sink.write(chunk)
        return sink.finish()
    except TRANSPORT_ERRORS as exc:
        raise _transport_failure(sink, exc) from None
    finally:
        sink.discard()


def save_bytes(
    data: bytes,
    folder: str | os.PathLike[str],
    *,
    stem: str,
    kind: MediaKind,
    max_bytes: int | None = None,
) -> Path:
    """Check ``data`` is a ``kind`` file and write it atomically as ``<stem>.<ext>``; raise
    :class:`DownloadFailed` otherwise.

    >>> # save_bytes(png_bytes, "out", stem="fox", kind="image")  -> Path("out/fox.png")
    """
    sink = _Sink(Path(folder), stem=stem, kind=kind, max_bytes=max_bytes or DEFAULT_MAX_BYTES[kind], url=None)
    try:
        sink.check_length(str(len(data)))
        sink.head = bytes(data[:_SNIFF_BYTES])
        sink._check_kind()
        sink.open()
        sink.write(data)
        return sink.finish()
    finally:
        sink.discard()


def save_b64(
    b64: str,
    folder: str | os.PathLike[str],
    *,
    stem: str,
    kind: MediaKind = "image",
    max_bytes: int | None = None,
) -> Path:
    """Decode a ``b64_json`` result (a ``data:`` URI prefix is allowed) and save it like :func:`save_bytes`.

    >>> # save_b64(item.b64_json, "out", stem="fox-0")  -> Path("out/fox-0.png")
    """
    limit = max_bytes or DEFAULT_MAX_BYTES[kind]
    text = b64.split(",", 1)[1] if b64.startswith("data:") and "," in b64[:100] else b64
    # Checked before decoding, so a huge string is refused without allocating its bytes.
    if len(text) * 3 // 4 > limit + 3:
        raise _fail(kind, f"the {kind} is over the size limit of {limit:,} bytes")
    try:
        data = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise _fail(kind, f"the b64_json {kind} is not valid base64") from None
    return save_bytes(data, folder, stem=stem, kind=kind, max_bytes=limit)
