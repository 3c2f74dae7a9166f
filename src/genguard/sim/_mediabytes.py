"""Real image and video bytes for the simulator, built from the standard library alone.

A client that checks what it downloaded (magic bytes, PNG chunk CRCs, an MP4 ``ftyp`` box) must see the
same thing it would get from a provider, so these are valid files, not placeholders. Both are
deterministic: the same seed text gives the same bytes, so tests and recorded runs repeat.

>>> png_bytes("a red fox")[:8] == PNG_SIGNATURE
True
>>> mp4_bytes("a red fox")[4:8]
b'ftyp'
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from functools import lru_cache

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The page a misconfigured CDN or an expired signed link answers with 200: the classic "that is not an
# image" download a client must catch by its bytes.
HTML_NOT_MEDIA = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b"<body><h1>Please sign in to continue</h1><p>This content is not available.</p></body></html>\n"
)

_MP4_TIMESCALE = 1000


def _digest(seed: str) -> bytes:
    return hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    # The CRC covers the chunk type and data, not the length: the PNG spec, section 5.3.
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@lru_cache(maxsize=256)
def png_bytes(seed: str, *, width: int = 64, height: int = 64) -> bytes:
    """A valid RGB PNG: a diagonal gradient between two colours taken from ``seed``'s hash.

    >>> png_bytes("x") == png_bytes("x") != png_bytes("y")
    True
    """
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    h = _digest(seed)
    start, end = h[0:3], h[3:6]
    span = max(width + height - 2, 1)
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type 0 (None) for every scanline
        for x in range(width):
            t = (x + y) / span
            rows.extend(int(a + (b - a) * t) & 0xFF for a, b in zip(start, end, strict=True))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit depth, colour type 2 (RGB)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"tEXt", b"Software\x00genguard simulator")
        + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + _png_chunk(b"IEND", b"")
    )


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _mvhd(duration_ms: int) -> bytes:
    # Version 0 movie header: times, timescale, duration, rate 1.0, volume 1.0, unity matrix, next track id.
    matrix = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
    payload = (
        struct.pack(">B3xIIII", 0, 0, 0, _MP4_TIMESCALE, duration_ms)
        + struct.pack(">IH10x", 0x00010000, 0x0100)
        + matrix
        + bytes(24)
        + struct.pack(">I", 2)
    )
    return _box(b"mvhd", payload)


@lru_cache(maxsize=64)
def mp4_bytes(seed: str, *, seconds: float = 4.0, payload_size: int = 4096) -> bytes:
    """A minimal ISO base media (MP4) file: ``ftyp``, ``moov``/``mvhd`` and an ``mdat`` of seeded bytes.

    Sniffers (``file``, browsers, ``mimetypes`` by magic) see an MP4; it carries no playable track.

    >>> data = mp4_bytes("clip", seconds=2)
    >>> data[4:12]
    b'ftypisom'
    """
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41")
    moov = _box(b"moov", _mvhd(max(int(seconds * _MP4_TIMESCALE), 0)))
    h = _digest(seed)
    body = (h * (payload_size // len(h) + 1))[:payload_size]
    return ftyp + moov + _box(b"mdat", body)


def is_png(data: bytes) -> bool:
    """Whether ``data`` starts like a PNG file (its 8-byte signature)."""
    return data[:8] == PNG_SIGNATURE


def is_mp4(data: bytes) -> bool:
    """Whether ``data`` starts like an ISO base media file (a ``ftyp`` box first)."""
    return len(data) >= 12 and data[4:8] == b"ftyp"
