"""Streamed chat through the proxy, with a commit point.

The answer is held back until the first text arrives: until then a failure is still retried, failed over, or
answered with a real status, as a plain call's would be. After it, the provider's events are passed on as they
come; a cut, a stall or an error becomes an in-band ``data: {"error": ...}`` event (the official SDKs raise
``APIError`` on it) instead of a quiet end, and every stream ends with the outcome in an SSE comment line
(``: genguard {...}``), which SDKs ignore. The provider's ``data: [DONE]`` is held until the outcome is known:
sent on first, it would end the SDK's reading before the error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from ..client.gate import ASKED_MODEL, estimate_tokens, tell_gate
from ..client.loop import Loop, Send, Sleep
from ..client.testing import is_testing
from ..client.transport import TRANSPORT_ERRORS, classify_exception
from ..core.chat_stream import ChatStreamReader
from ..core.classify import classify_http
from ..core.headers import request_id
from ..core.outcome import Outcome
from ._outcome_http import error_body, error_status, mask_keys, outcome_headers
from ._upstream import KeyRing, Upstream

_SSE = "text/event-stream"
_DONE = b"data: [DONE]"
# Soft failures the provider itself reported in a well-formed stream (its finish_reason or lack of content):
# passed on as sent, the outcome in the comment line, unless strict.
_WELL_FORMED = frozenset({"content_filtered", "truncated", "empty_output"})


# An event ends at its first blank line, in any of SSE's line ends; found left to right in one pass (cutting
# event by event, searching the rest each time, is quadratic in a read that holds hundreds of events).
_BLANK_LINE = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def _events(pending: bytearray) -> list[bytes]:
    """Whole events (each with its blank line) taken from the front of ``pending``; SSE allows LF, CRLF and CR
    line ends, and an event's end is the first blank line in any of them."""
    data = bytes(pending)
    out: list[bytes] = []
    start = 0
    for match in _BLANK_LINE.finditer(data):
        end = match.end()
        out.append(data[start:end])
        start = end
    if start:
        del pending[:start]
    return out


def _is_error_event(event: bytes) -> bool:
    """Whether an event is the upstream's own error (``event: error``, or data that is an object with an
    ``error``): held back, since the SDKs raise on the first error event they read and the client must read
    genguard's, whose code does not depend on the provider's dialect (the upstream's words are in its message).
    """
    data: list[bytes] = []
    for line in event.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field == b"event" and value.strip() == b"error":
            return True
        if field == b"data":
            data.append(value)
    try:
        parsed = orjson.loads(b"\n".join(data)) if data else None
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("error") is not None


def _comment(outcome: Outcome) -> bytes:
    # The text was streamed already: repeated here it would double every stream's size.
    data = {k: v for k, v in outcome.to_dict().items() if k not in ("text", "tool_calls")}
    return b": genguard " + orjson.dumps(data) + b"\n\n"


def _error_event(outcome: Outcome) -> bytes:
    return b"data: " + error_body(outcome) + b"\n\n"


class _Attempt:
    """One attempt's open stream: the reader, the events not yet sent, the bytes held back."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self.stack = stack
        self.reader: Any = None
        self.status = 0
        self.headers: Mapping[str, str] = {}
        self.chunks: AsyncIterator[bytes] | None = None
        self.held = bytearray()  # complete events read before the commit point
        self.pending = bytearray()  # an event not yet complete
        self.done = False
        self.request_id: str | None = None

    def take(self, raw: bytes) -> tuple[bytes, bool]:
        """Feed ``raw``: the whole events it completed (``[DONE]`` held back) and whether text arrived."""
        texts = self.reader.feed(raw)
        pending = self.pending
        pending += raw
        if b"\r" not in pending and _DONE not in pending and b"error" not in pending:
            # The common case, LF line ends, no [DONE] and no error yet: everything up to the last blank line
            # goes on in one piece. Cutting event by event costs a search and a move of the rest per event, which over a
            # read holding hundreds of events is quadratic.
            cut = pending.rfind(b"\n\n")
            if cut < 0:
                return b"", bool(texts)
            whole = bytes(pending[: cut + 2])
            del pending[: cut + 2]
            return whole, bool(texts)
        out = bytearray()
        for event in _events(pending):
            if event.strip(b"\r\n") == _DONE:
                self.done = True
            elif b"error" not in event or not _is_error_event(event):
                out += event
        return bytes(out), bool(texts)

    def flush(self) -> bytes:
        """What is left after the last blank line (a last event sent without one), ended as an event."""
        rest = bytes(self.pending).strip(b"\r\n")
        self.pending.clear()
        if not rest:
            return b""
        if rest == _DONE:
            self.done = True
            return b""
        if b"error" in rest and _is_error_event(rest):
            return b""
        return rest + b"\n\n"


Finished = Callable[[Outcome, int, list[tuple[float, float]]], None]
"""Told the final outcome, the status the client got and each attempt's timings, once the stream ended."""


async def stream_chat(
    upstream: Upstream,
    raw: bytes,
    body: dict[str, Any],
    model: str,
    loop: Loop,
    ring: KeyRing,
    *,
    strict: bool = False,
    passed_headers: Callable[[Mapping[str, str] | None], dict[str, str]],
    finished: Finished,
    sent_headers: Mapping[str, str] | None = None,
) -> Response:
    """Answer a ``stream: true`` chat request (see the module's docstring)."""
    if "stream_options" not in body:
        # Usage comes only when asked for in a stream; cost and the journal need it.
        body = {**body, "stream_options": {"include_usage": True}}
        raw = orjson.dumps(body)
    tokens = estimate_tokens(body) if upstream.gate is not None else 0
    last: tuple[Outcome, bytes | None, _Attempt | None] | None = None
    ids: list[str] = []  # every attempt's request id so far, for the committed stream's headers
    timings: list[tuple[float, float]] = []
    try:
        action = next(loop)
        while True:
            if isinstance(action, Sleep):
                if action.seconds > 0 and not is_testing():
                    await asyncio.sleep(action.seconds)
                action = loop.send(None)
                continue
            assert isinstance(action, Send)
            attempt = _Attempt(contextlib.AsyncExitStack())
            sent = time.monotonic()
            content = Upstream.content(action, raw, body, model)
            outcome, data, committed = await _open(
                upstream, action, content, attempt, ring.keys, tokens, sent_headers
            )
            timings.append((time.time(), time.monotonic() - sent))
            if committed:
                return _committed(loop, action, attempt, ids, ring.keys, strict=strict,
                                  passed=passed_headers(attempt.headers), finished=finished,
                                  timings=timings)  # fmt: skip
            ids.append(attempt.request_id or "-")
            if last is not None and last[2] is not None:
                await last[2].stack.aclose()
            last = (outcome, data, attempt if data is None else None)
            if data is not None:
                await attempt.stack.aclose()
            action = loop.send((outcome, False))
    except StopIteration as stop:
        final: Outcome = stop.value
    assert last is not None
    _, data, attempt_left = last
    if attempt_left is not None:
        await attempt_left.stack.aclose()
    headers = passed_headers(attempt.headers if attempt.status else None)
    headers.update(outcome_headers(final, model))
    if data is not None:
        data = mask_keys(data, ring.keys, final.status)
    if data is not None and final.status is not None and final.status >= 300:
        response = Response(data, status_code=final.status, headers=headers, media_type="application/json")
    elif attempt_left is not None and (final.ok or (final.code in _WELL_FORMED and not strict)):
        tail = (b"data: [DONE]\n\n" if attempt_left.done else b"") + _comment(final)
        response = Response(
            bytes(attempt_left.held) + tail, status_code=200, headers=headers, media_type=_SSE
        )
    else:
        response = Response(error_body(final, data), status_code=error_status(final), headers=headers,
                            media_type="application/json")  # fmt: skip
    finished(final, response.status_code, timings)
    return response


async def _open(
    upstream: Upstream,
    action: Send,
    content: bytes,
    attempt: _Attempt,
    secrets: tuple[str, ...],
    tokens: int,
    passed: Mapping[str, str] | None = None,
) -> tuple[Outcome, bytes | None, bool]:
    """Send one attempt and read up to its first text: (outcome, error body, committed)."""
    timeout = upstream.timeout_for(upstream.stall_timeout, action.timeout)
    gate = upstream.gate
    if gate is not None:
        ASKED_MODEL.set(action.model or None)
        await gate.acquire(tokens)
    try:
        reply = await attempt.stack.enter_async_context(
            upstream.wire.stream("POST", upstream.url("/chat/completions"),
                                 upstream.headers(action.key, passed=passed), content, timeout)
        )  # fmt: skip
        attempt.status, attempt.headers = reply.status, reply.headers
        attempt.request_id = request_id(reply.headers)
        if reply.status >= 300 or _SSE not in reply.headers.get("content-type", ""):
            data = b"".join([chunk async for chunk in reply.chunks])
            outcome = classify_http(reply.status, reply.headers, data, endpoint="chat", secrets=secrets)
            if gate is not None:
                tell_gate(gate, reply.status, reply.headers, outcome, tokens)
            return outcome, data, False
        if gate is not None:
            gate.observe(reply.status, reply.headers, tokens_reserved=tokens, rate_limited=False)
        attempt.reader = ChatStreamReader(status=reply.status, headers=reply.headers)
        attempt.chunks = reply.chunks.__aiter__()
        async for raw in attempt.chunks:
            events, has_text = attempt.take(raw)
            attempt.held += events
            if has_text:
                return Outcome.success(), None, True
        attempt.held += attempt.flush()
        return attempt.reader.finish(transport_error=None), None, False
    except TRANSPORT_ERRORS as exc:
        if gate is not None and not attempt.status:
            gate.observe(0, {}, tokens_reserved=tokens)
        error = classify_exception(exc, endpoint="chat", secrets=secrets)
        if attempt.reader is None:
            return error, None, False
        return attempt.reader.finish(transport_error=error), None, False


def _committed(
    loop: Loop, action: Send, attempt: _Attempt, ids: list[str], secrets: tuple[str, ...], *, strict: bool,
    passed: dict[str, str], finished: Finished, timings: list[tuple[float, float]],
) -> Response:  # fmt: skip
    # The outcome is not known yet: the headers say so, and what is known (attempts so far, this model, the
    # request ids); the final outcome is the stream's last line.
    headers = passed
    headers.update({
        "x-genguard-code": "pending",
        "x-genguard-kind": "pending",
        "x-genguard-attempts": str(len(ids) + 1),
        "x-genguard-model": action.model,
        "x-genguard-request-ids": ",".join([*ids, attempt.request_id or "-"]),
    })  # fmt: skip

    async def body() -> AsyncIterator[bytes]:
        final: Outcome | None = None
        try:
            yield bytes(attempt.held)
            error: Outcome | None = None
            assert attempt.chunks is not None
            try:
                async for raw in attempt.chunks:
                    events, _ = attempt.take(raw)
                    if events:
                        yield events
            except TRANSPORT_ERRORS as exc:
                error = classify_exception(exc, endpoint="chat", secrets=secrets)
            rest = attempt.flush()
            if rest:
                yield rest
            outcome = attempt.reader.finish(transport_error=error)
            try:
                loop.send((outcome, True))
                final = outcome  # a committed stream is final: the loop has nothing more to send
                loop.close()
            except StopIteration as stop:
                final = stop.value
            if final.ok or (final.code in _WELL_FORMED and not strict):
                yield (b"data: [DONE]\n\n" if attempt.done else b"") + _comment(final)
            else:
                yield _error_event(final) + _comment(final)
        finally:
            await attempt.stack.aclose()
            if final is None:  # the client went away before the end
                final = Outcome.failure("connection_error", message="the client closed the stream")
            finished(final, 200, timings)

    return StreamingResponse(body(), status_code=200, headers=headers, media_type=_SSE,
                             background=BackgroundTask(attempt.stack.aclose))  # fmt: skip
