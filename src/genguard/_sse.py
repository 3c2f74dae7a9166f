"""An incremental server-sent-events decoder that follows the WHATWG rules.

Bytes go in as the network delivers them; whole events come out. Lines end in CRLF, LF or CR (a CRLF may be
split across chunks), a leading BOM is dropped, a blank line dispatches, ``:`` lines are comments, several
``data:`` lines join with ``"\\n"``, ``id`` persists across events, and an event still open when the input
ends is discarded. Only CR and LF end lines: U+2028, NEL and friends inside a value are content. There is no
size cap on a line or an event.

The common case (LF-only, UTF-8, one ``data:`` line per event) runs on a fast path: bytes are joined only
when a line end arrives, each run of complete lines is decoded once, and CRs are folded into LFs in bytes
before that, so the careful rules cost nothing when no CR is present.

>>> d = SSEDecoder()
>>> d.feed(b'event: ping\\ndata: {"a"') + d.feed(b': 1}\\n\\n')
[ServerSentEvent(event='ping', data='{"a": 1}', id='', retry=None)]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]

# (event type, data, last event id, retry) as the hot path hands them out: a tuple is several times
# cheaper to build than a frozen dataclass, and the chat-stream reader needs nothing more.
RawEvent = tuple[str, str, str, int | None]


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

    __slots__ = ("_cr", "_data", "_event", "_id", "_pending", "_reconnect", "_retry", "_started")

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Bytes of a line not yet ended; kept as pieces so a huge line arriving in small chunks is
        # joined once, not re-copied on every chunk.
        self._pending: list[bytes] = []
        # The previous chunk ended in CR: a LF starting the next chunk completes that CRLF.
        self._cr = False
        self._started = False
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
        if self._cr:
            if not chunk:
                return []
            self._cr = False
            if chunk[0] == 10:  # the LF half of a CRLF split across chunks
                chunk = chunk[1:]
        if 13 in chunk:  # an int needle is a plain memchr, several times cheaper than b"\r"
            # A CR ends a line as soon as it is seen, so it can become a LF right now; only a LF that
            # may follow in the next chunk needs remembering.
            self._cr = chunk[-1] == 13
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if chunk and chunk[-1] == 10:  # a server flushing whole events: no remainder to keep
            block = b"".join((*self._pending, chunk)) if self._pending else chunk
            self._pending = []
        else:
            end = chunk.rfind(b"\n")
            if end < 0:
                if chunk:
                    self._pending.append(chunk)
                return []
            self._pending.append(chunk[: end + 1])
            block = b"".join(self._pending)
            self._pending = [chunk[end + 1 :]]
        # Line ends are ASCII and never inside a multi-byte sequence, so decoding whole lines is the
        # same as decoding the stream incrementally.
        text = block.decode("utf-8", "replace")
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        lines = text.split("\n")
        # The text ended in "\n", so the last item is the empty remainder, not a blank line.
        lines.pop()
        out: list[RawEvent] = []
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
        return out

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
