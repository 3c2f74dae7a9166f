"""A JSON document too large to hold twice, parsed from its bytes read in pieces.

A parser holds the bytes it reads, its own copy of them and what it makes: for a chat completion whose text
is 200 MB, ``orjson.loads`` peaks at three times the body. A document that large is nearly always one or a
few huge strings (a completion's text, a HAR entry's body) in a small structure, so it is read in two
passes over its pieces: the first finds the strings longer than :data:`BIG_STRING` and parses the rest (a
skeleton with a placeholder for each) with orjson; the second decodes each huge string a piece at a time,
each piece appended to one growing ``str`` (CPython grows a string with a single reference in place), so
the string is the only full copy ever held. A piece is cut between two characters, never inside an escape
(``\\n``, ``\\u00e9``, a surrogate pair) or a UTF-8 character, and is decoded by orjson itself, so the
result is the one ``orjson.loads`` gives for the whole.

Anything odd (a string never closed, bytes that are not UTF-8, a skeleton that does not parse), or a
skeleton larger than the caller allows (a document of many small values), makes :func:`parse_pieces`
return ``None``: the caller then reads the bytes whole, as it would have anyway.

>>> data = b'{"a": "x\\\\ny", "n": 1}'
>>> parse_pieces(lambda at: iter([data[at : at + 9], data[at + 9 :]]), big=1)
{'a': 'x\\ny', 'n': 1}
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import orjson

__all__ = ["BIG_STRING", "BigText", "Source", "parse_pieces"]

# A string longer than this is left out of the skeleton and decoded on its own.
BIG_STRING = 1 << 18
# How much of a huge string is decoded at once: orjson takes about 15 times a string's size to parse it.
_PART = 1 << 16
# How many parts are appended to a growing string at once (1 MiB).
_BATCH = 16

Source = Callable[[int], Iterator[bytes]]
"""Opens a document's bytes at an offset (``0`` from its start) and yields them in pieces to its end: a
document is read more than once, from a file or from another document's string."""

# The rest of a string's content up to its closing quote, or up to the end of what is there.
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)
# Whole characters of a string's content: a piece may end only after one (a surrogate pair is one).
_UNITS = re.compile(
    rb"(?:[^\\]++"
    rb"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[0-9a-fA-F]{4}"
    rb"|\\u(?![dD][89abAB])[0-9a-fA-F]{4}"
    rb"|\\[^u])*+"
)


class BigText:
    """A huge string of a document, left where it is: its content from offset ``start`` to ``end`` of
    ``source`` (between its quotes, still escaped). It is decoded when asked, once per ask, a piece at a
    time.

    >>> data = b'"caf\\\\u00e9"'
    >>> t = BigText(lambda at: iter([data[at:]]), 1, 10)
    >>> (t.text(), b"".join(t.utf8_pieces()))
    ('café', b'caf\\xc3\\xa9')
    """

    __slots__ = ("end", "source", "start")

    def __init__(self, source: Source, start: int, end: int) -> None:
        self.source = source
        self.start = start
        self.end = end

    @property
    def size(self) -> int:
        """The string's length in the document, escapes and all."""
        return self.end - self.start

    def parts(self) -> Iterator[str]:
        """The decoded string in parts of at most 64 KiB; raises :class:`ValueError` when it does not decode."""
        pending = b""
        at = self.start
        for piece in self.source(self.start):
            take = piece[: self.end - at]
            at += len(take)
            buf = pending + take if pending else take
            done = at >= self.end
            pos = 0
            while len(buf) - pos > _PART or (done and pos < len(buf)):
                window = buf[pos : pos + _PART]
                cut = len(window) if done and pos + _PART >= len(buf) else _safe_cut(window)
                if not cut:
                    raise ValueError("a string of the document holds no character where one is due")
                yield _decode(window[:cut])
                pos += cut
            pending = buf[pos:]
            if done:
                break
        if pending or at < self.end:
            raise ValueError("a string of the document ends unfinished")

    def text(self) -> str:
        """The whole string, built in place: the only full copy held."""
        text = ""
        batch: list[str] = []
        for part in self.parts():
            batch.append(part)
            if len(batch) == _BATCH:
                # One reference, so CPython grows the string where it is instead of copying it. (Under a
                # tracer, a debugger or coverage, it copies: fewer, larger appends keep that bearable.)
                text += "".join(batch)
                batch.clear()
        text += "".join(batch)
        return text

    def utf8_pieces(self) -> Iterator[bytes]:
        """The string as UTF-8 bytes, in pieces (a lone surrogate kept, as ``surrogatepass`` writes it)."""
        for part in self.parts():
            yield part.encode("utf-8", "surrogatepass")

    def source_of_content(self) -> Source:
        """A :data:`Source` over this string's UTF-8 bytes: the string read as a document of its own."""

        def open_at(offset: int) -> Iterator[bytes]:
            skip = offset
            for piece in self.utf8_pieces():
                if skip >= len(piece):
                    skip -= len(piece)
                    continue
                yield piece[skip:] if skip else piece
                skip = 0

        return open_at


def _decode(chunk: bytes) -> str:
    text: str = orjson.loads(b'"' + chunk + b'"')
    return text


def _safe_cut(buf: bytes) -> int:
    """Where ``buf`` (a string's content from a character's start) can be cut: after its last whole
    character."""
    match = _UNITS.match(buf)
    end = match.end() if match is not None else 0
    if end and buf[end - 1] >= 0x80:
        # The last run of plain bytes may stop inside a UTF-8 character: step back to its first byte.
        lead = end - 1
        while lead > 0 and end - lead < 4 and buf[lead] & 0xC0 == 0x80:
            lead -= 1
        first = buf[lead]
        size = 2 if 0xC0 <= first < 0xE0 else 3 if 0xE0 <= first < 0xF0 else 4 if first >= 0xF0 else 1
        if end - lead < size:
            end = lead
    return end


def scan(
    pieces: Iterator[bytes], big: int = BIG_STRING, most: int | None = None
) -> tuple[bytes, list[tuple[int, int]], str] | None:
    """The document's skeleton (every string longer than ``big`` bytes replaced by a placeholder), the
    spans of those strings' content, and the placeholders' prefix; ``None`` when a string never ends or
    the skeleton grows past ``most`` bytes."""
    token = f"\x00genguard-big-{secrets.token_hex(8)}-"
    mark = orjson.dumps(token)[:-1]
    skeleton = bytearray()
    spans: list[tuple[int, int]] = []
    small = bytearray()
    in_string = is_big = False
    start = offset = 0
    carry = b""
    for raw in pieces:
        piece = carry + raw if carry else raw
        base = offset - len(carry)
        offset += len(raw)
        carry = b""
        pos, n = 0, len(piece)
        while pos < n:
            if not in_string:
                quote = piece.find(b'"', pos)
                if quote < 0:
                    skeleton += piece[pos:]
                    break
                skeleton += piece[pos:quote]
                in_string, is_big, start, pos = True, False, base + quote + 1, quote + 1
                small.clear()
                continue
            end = _STRING_REST.match(piece, pos).end()  # type: ignore[union-attr]  # always matches
            if end < n and piece[end] == 0x22:
                if is_big:
                    skeleton += mark + b'%d"' % len(spans)
                    spans.append((start, base + end))
                else:
                    skeleton += b'"' + small + piece[pos:end] + b'"'
                in_string, pos = False, end + 1
                continue
            if end < n - 1:
                return None  # never: the pattern stops only at a quote or at a backslash ending the piece
            if not is_big:
                small += piece[pos:end]
                if len(small) > big:
                    is_big = True
                    small = bytearray()
            # A backslash at the piece's end escapes the next piece's first byte: read it with that piece.
            carry = piece[end:]
            break
        if most is not None and len(skeleton) > most:
            return None
    if in_string or carry:
        return None
    return bytes(skeleton), spans, token


def parse_pieces(
    source: Source,
    *,
    big: int = BIG_STRING,
    keep: Callable[[list[Any]], bool] | None = None,
    most: int | None = None,
) -> Any:
    """The document ``source`` holds, parsed with each huge string decoded in place; ``None`` when it is
    not JSON (or not UTF-8), or when more than ``most`` bytes of it are not in huge strings (a document of
    many small values saves nothing read this way), for the caller to read it whole instead.

    ``keep``, when given, is called with the path (keys and indexes) of each huge string: when it returns
    true the string is left as a :class:`BigText`, not decoded.
    """
    found = scan(source(0), big, most)
    if found is None:
        return None
    skeleton, spans, token = found
    try:
        doc = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        return None
    del skeleton
    try:
        return _resolve(doc, [], token, [BigText(source, s, e) for s, e in spans], keep)
    except ValueError:
        return None


def _resolve(
    value: Any, path: list[Any], token: str, big: list[BigText], keep: Callable[[list[Any]], bool] | None
) -> Any:
    if isinstance(value, str):
        if not value.startswith(token):
            return value
        text = big[int(value[len(token) :])]
        if keep is None or not keep(path):
            return text.text()
        # Left in place, but checked now: a string that does not decode makes the document no JSON.
        for _ in text.parts():
            pass
        return text
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            name = _resolve(key, path, token, big, None) if key.startswith(token) else key
            out[name] = _resolve(item, [*path, name], token, big, keep)
        return out
    if isinstance(value, list):
        return [_resolve(item, [*path, i], token, big, keep) for i, item in enumerate(value)]
    return value
