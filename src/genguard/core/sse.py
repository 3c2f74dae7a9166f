"""An incremental server-sent-events decoder that follows the WHATWG rules.

Bytes go in as the network delivers them; whole events come out. Lines end in CRLF, LF or CR (a CRLF may be
split across chunks), a leading BOM is dropped, a blank line dispatches, ``:`` lines are comments, several
``data:`` lines join with ``"\\n"``, ``id`` persists across events, and an event still open when the input
ends is discarded. Only CR and LF end lines: U+2028, NEL and friends inside a value are content. There is no
size cap on a line or an event.

The common case runs on fast paths that give the same events: bytes are joined only when a line end
arrives, CRs are folded into LFs in bytes (so the CR rules cost one ``memchr`` when no CR is present), and
while no event is open, a block that is one ``data: `` line and its blank line is cut out of the bytes
directly, alone (a server flushing each event) or many at once (a large read), without splitting lines
or decoding anything else. Everything else (fields, comments, several data lines, an event open across
reads, the start of the stream) is read line by line. :meth:`SSEDecoder.feed_payloads` hands those
one-line values out as bytes, so a JSON reader can give them to orjson undecoded.

>>> d = SSEDecoder()
>>> d.feed(b'event: ping\\ndata: {"a"') + d.feed(b': 1}\\n\\n')
[ServerSentEvent(event='ping', data='{"a": 1}', id='', retry=None)]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter

__all__ = ["SSEDecoder", "ServerSentEvent"]

# (event type, data, last event id, retry) as the hot path hands them out: a tuple is several times
# cheaper to build than a frozen dataclass, and the chat-stream reader needs nothing more.
RawEvent = tuple[str, str, str, int | None]

_startswith = bytes.startswith
_value = itemgetter(slice(6, None))  # a "data: ..." line's value, as a C callable for map()


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event.

    ``id`` is the last event id seen so far in the stream (it persists across events, per the spec);
    ``retry`` is the reconnection time in milliseconds if this event's block carried a valid ``retry:``.

    >>> ServerSentEvent(data="[DONE]").event
    'message'
    """

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None


# The generated __init__ of a frozen dataclass goes through object.__setattr__ once per field; writing the
# slots through their descriptors builds the same value in about half the time, once per event.
_new = object.__new__


def _slot_setter(name: str) -> Callable[[ServerSentEvent, object], None]:
    setter: Callable[[ServerSentEvent, object], None] = getattr(ServerSentEvent, name).__set__
    return setter


_set_event = _slot_setter("event")
_set_data = _slot_setter("data")
_set_id = _slot_setter("id")
_set_retry = _slot_setter("retry")


def _event(event: str, data: str, last_id: str, retry: int | None) -> ServerSentEvent:
    sse: ServerSentEvent = _new(ServerSentEvent)
    _set_event(sse, event)
    _set_data(sse, data)
    _set_id(sse, last_id)
    _set_retry(sse, retry)
    return sse


class SSEDecoder:
    """Turn a byte stream into :class:`ServerSentEvent` values, chunk by chunk.

    Invalid UTF-8 becomes U+FFFD; nothing the decoder is fed makes it raise.

    >>> d = SSEDecoder()
    >>> [e.data for e in d.feed(b"data: a\\r\\ndata: b\\r")]
    []
    >>> [e.data for e in d.feed(b"\\n\\r\\n")]
    ['a\\nb']
    >>> d.close()
    []
    """

    __slots__ = (
        "_cr",
        "_data",
        "_event",
        "_id",
        "_open",
        "_pending",
        "_plain",
        "_reconnect",
        "_retry",
        "_started",
    )

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Bytes of a line not yet ended; kept as pieces so a huge line arriving in small chunks is
        # joined once, not re-copied on every chunk.
        self._pending: list[bytes] = []
        # The previous chunk ended in CR: a LF starting the next chunk completes that CRLF.
        self._cr = False
        self._started = False
        # Lines of an event not yet dispatched have been read (data, event or retry is set).
        self._open = False
        # Started, nothing pending, no CR to pair, no event open: a whole one-line event may take the
        # shortest path.
        self._plain = False
        self._data: list[str] = []
        self._event = ""
        self._id = ""
        self._retry: int | None = None
        self._reconnect: int | None = None

    @property
    def last_event_id(self) -> str:
        """The last event id the stream set (what a client sends back as ``Last-Event-ID``)."""
        return self._id

    @property
    def retry(self) -> int | None:
        """The reconnection time (ms) the stream last asked for, even in a block that did not dispatch."""
        return self._reconnect

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode ``chunk`` and return the events it completed, in order."""
        return [_event(e, d, i, r) for e, d, i, r in self.feed_raw(chunk)]

    def close(self) -> list[ServerSentEvent]:
        """End of input: a line or event not yet completed is discarded (per the spec). Resets the decoder.

        Always returns an empty list: a CR or LF dispatches as soon as it arrives, so nothing complete
        is ever held back. It is a list so callers can treat it like :meth:`feed`.
        """
        self._reset()
        return []

    def feed_raw(self, chunk: bytes) -> list[RawEvent]:
        """Like :meth:`feed`, but each event is a plain ``(event, data, id, retry)`` tuple (the hot path)."""
        return self.feed_payloads(chunk, True)  # type: ignore[return-value]

    def feed_payloads(self, chunk: bytes, _decode: bool = False) -> list[bytes | RawEvent]:
        """Like :meth:`feed_raw`, but an event whose block is one ``data: `` line comes out as that line's
        value in raw bytes: not decoded, not checked as UTF-8 (``.decode("utf-8", "replace")`` gives the
        ``data`` that :meth:`feed_raw` would give; its type is ``"message"``). Any other event is a tuple.

        This is for a JSON reader: orjson reads the bytes directly, and only what it rejects needs decoding.

        >>> SSEDecoder().feed_payloads(b'data: {"a": 1}\\n\\nevent: e\\ndata: x\\n\\n')
        [b'{"a": 1}', ('e', 'x', '', None)]
        """
        # (_decode is private: feed_raw's tuples come from this same pass, without a second call per chunk.)
        if self._plain and 13 not in chunk:
            # Nothing held back and no event open, and the chunk is exactly one "data: ..." line and its
            # blank line (a server flushing each event): that line's value is the event's data. An int
            # needle is a plain memchr, several times cheaper than a bytes one.
            value = chunk[6:-2]
            if 10 not in value and chunk[-2:] == b"\n\n" and chunk[:6] == b"data: ":
                if _decode:
                    return [("message", value.decode("utf-8", "replace"), self._id, None)]
                return [value]
        return self._feed(chunk, _decode)

    def _feed(self, chunk: bytes, decode: bool) -> list[bytes | RawEvent]:
        if self._cr:
            if not chunk:
                return []
            self._cr = False
            if chunk[0] == 10:  # the LF half of a CRLF split across chunks
                chunk = chunk[1:]
        if 13 in chunk:
            # A CR ends a line as soon as it is seen, so it can become a LF right now; only a LF that
            # may follow in the next chunk needs remembering.
            self._cr = chunk[-1] == 13
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if chunk and chunk[-1] == 10:  # whole lines: no remainder to keep
            if self._pending:
                block = b"".join((*self._pending, chunk))
                self._pending = []
            else:
                block = chunk
        else:
            end = chunk.rfind(b"\n")
            if end < 0:
                if chunk:
                    self._pending.append(chunk)
                    self._plain = False
                return []
            self._pending.append(chunk[: end + 1])
            block = b"".join(self._pending)
            self._pending = [chunk[end + 1 :]]
        # From here on, block is a run of whole lines: it starts at a line start and ends with "\n".
        if not self._started:
            self._started = True
            if block.startswith(b"\xef\xbb\xbf"):
                block = block[3:]
        out: list[bytes | RawEvent] = []
        size = len(block)
        pos = 0
        if self._open:
            # An event is open: read carefully up to its blank line, after which none is.
            if block[0] == 10:
                pos = 1
            else:
                pos = block.find(b"\n\n")
                pos = size if pos < 0 else pos + 2
            self._lines(block[:pos], out)
        startswith = block.startswith
        if pos < size and startswith(b"data: ", pos):
            # Reads of many events at once (64 KiB from a fast server) are usually nothing but pairs of a
            # "data: ..." line and a blank line: one split and two C-level passes check that and cut out
            # every value, without a Python step per event. Anything else goes to the loop below.
            lines = (block[pos:] if pos else block).split(b"\n")
            lines.pop()  # the empty remainder after the final "\n"
            tail = lines.pop() if len(lines) & 1 else b""  # a line still waiting for its blank line
            values = lines[0::2]
            if not any(lines[1::2]) and all(map(_startswith, values, repeat(b"data: "))):
                if decode:
                    last_id = self._id
                    out += [
                        ("message", v.decode("utf-8", "replace"), last_id, None) for v in map(_value, values)
                    ]
                else:
                    out += map(_value, values)
                if tail:
                    self._lines(tail + b"\n", out)
                pos = size
        find = block.find
        # No event is open at a line start, so a block that is one "data: ..." line ended by a blank line
        # dispatches a message whose data is the rest of that line, whatever came before; a lone comment
        # line does nothing. One memchr for the line end tells them apart; nothing else is decoded or split.
        while pos < size:
            nl = find(10, pos)
            if nl + 1 < size and block[nl + 1] == 10:
                if startswith(b"data: ", pos):
                    if decode:
                        out.append(
                            ("message", block[pos + 6 : nl].decode("utf-8", "replace"), self._id, None)
                        )
                    else:
                        out.append(block[pos + 6 : nl])
                elif block[pos] != 58:  # not a ":" comment
                    self._lines(block[pos : nl + 2], out)
                pos = nl + 2
            else:
                # Several lines (or lines still waiting for their blank line): the careful reading.
                end = find(b"\n\n", pos)
                end = size if end < 0 else end + 2
                self._lines(block[pos:end], out)
                pos = end
        self._plain = not (self._cr or self._pending or self._open)
        return out

    def _lines(self, block: bytes, out: list[bytes | RawEvent]) -> None:
        # Line ends are ASCII and never inside a multi-byte sequence, so decoding whole lines is the
        # same as decoding the stream incrementally.
        lines = block.decode("utf-8", "replace").split("\n")
        # The block ended in "\n", so the last item is the empty remainder, not a blank line.
        lines.pop()
        data = self._data
        for line in lines:
            if not line:
                if data:
                    out.append((self._event or "message", "\n".join(data), self._id, self._retry))
                    data = self._data = []
                self._event = ""
                self._retry = None
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line[0] != ":":
                self._field(line)
        self._open = bool(self._data) or bool(self._event) or self._retry is not None

    def _field(self, line: str) -> None:
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":  # "data:x" or a bare "data" (the fast path took "data: x")
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = self._reconnect = int(value)
