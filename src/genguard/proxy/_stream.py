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
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from ..client.clients import AsyncClient
from ..client.loop import Loop, Send, Sleep
from ..client.retry import RetryPolicy
from ..client.streams import _new_reader
from ..client.testing import is_testing
from ..client.transport import TRANSPORT_ERRORS
from ..core.headers import request_id
from ..core.outcome import Outcome
from ._outcome_http import error_body, error_status, outcome_headers

_SSE = "text/event-stream"
_DONE = b"data: [DONE]"
# Soft failures the provider itself reported in a well-formed stream (its finish_reason or lack of content):
# passed on as sent, the outcome in the comment line, unless strict.
_WELL_FORMED = frozenset({"content_filtered", "truncated", "empty_output"})


_BLANK_LINES = (b"\n\n", b"\r\n\r\n", b"\r\r")


def _events(pending: bytearray) -> list[bytes]:
    """Whole events (each with its blank line) taken from the front of ``pending``; SSE allows LF, CRLF and CR
    line ends, and an event's end is the first blank line in any of them."""
    out: list[bytes] = []
    while True:
        cut = -1
        for blank in _BLANK_LINES:
            at = pending.find(blank)
            if at >= 0 and (cut < 0 or at + len(blank) < cut):
                cut = at + len(blank)
        if cut < 0:
            return out
        out.append(bytes(pending[:cut]))
        del pending[:cut]


def _comment(outcome: Outcome) -> bytes:
    # The text was streamed already: repeated here it would double every stream's size.
    data = {k: v for k, v in outcome.to_dict().items() if k not in ("text", "tool_calls")}
    return b": genguard " + orjson.dumps(data) + b"\n\n"


def _error_event(outcome: Outcome) -> bytes:
    return b"data: " + error_body(outcome) + b"\n\n"


class _Attempt:
    """One attempt's open stream: the reader, the events not yet sent, the bytes held back."""

    def __init__(self, client: AsyncClient, stack: contextlib.AsyncExitStack) -> None:
        self.client = client
        self.stack = stack
        self.reader: Any = None
        self.chunks: AsyncIterator[bytes] | None = None
        self.held = bytearray()  # complete events read before the commit point
        self.pending = bytearray()  # an event not yet complete
        self.done = False
        self.request_id: str | None = None

    def take(self, raw: bytes) -> tuple[bytes, bool]:
        """Feed ``raw``: the whole events it completed (``[DONE]`` held back) and whether text arrived."""
        texts = self.reader.feed(raw)
        self.pending += raw
        out = bytearray()
        for event in _events(self.pending):
            if event.strip(b"\r\n") == _DONE:
                self.done = True
            else:
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
        return rest + b"\n\n"


async def stream_chat(
    client: AsyncClient, body: dict[str, Any], model: str, policy: RetryPolicy, fallbacks: Sequence[str],
    *, strict: bool = False,
) -> Response:  # fmt: skip
    """Answer a ``stream: true`` chat request (see the module's docstring)."""
    messages: Any = body.get("messages")
    params = {k: v for k, v in body.items() if k not in ("model", "messages")}
    try:
        loop, send_body = client._chat_loop(
            model, messages, params, None, None, None, None, policy, fallbacks, stream=True
        )
    except (TypeError, ValueError) as exc:
        failure = Outcome.failure("bad_request", status=400, message=str(exc))
        return Response(error_body(failure), status_code=400, headers=outcome_headers(failure, model),
                        media_type="application/json")  # fmt: skip
    last: tuple[Outcome, bytes | None, _Attempt | None] | None = None
    ids: list[str] = []  # every attempt's request id so far, for the committed stream's headers
    try:
        action = next(loop)
        while True:
            if isinstance(action, Sleep):
                if action.seconds > 0 and not is_testing():
                    await asyncio.sleep(action.seconds)
                action = loop.send(None)
                continue
            assert isinstance(action, Send)
            stack = contextlib.AsyncExitStack()
            attempt = _Attempt(client, stack)
            outcome, data, committed = await _open(client, action, send_body, attempt)
            if committed:
                return _committed(loop, action, attempt, ids, strict=strict)
            ids.append(attempt.request_id or "-")
            if last is not None and last[2] is not None:
                await last[2].stack.aclose()
            last = (outcome, data, attempt if data is None else None)
            if data is not None:
                await stack.aclose()
            action = loop.send((outcome, False))
    except StopIteration as stop:
        final: Outcome = stop.value
    assert last is not None
    _, data, attempt_left = last
    if attempt_left is not None:
        await attempt_left.stack.aclose()
    headers = outcome_headers(final, model)
    if data is not None and final.status is not None and final.status >= 300:
        return Response(data, status_code=final.status, headers=headers, media_type="application/json")
    if attempt_left is not None and (final.ok or (final.code in _WELL_FORMED and not strict)):
        tail = (b"data: [DONE]\n\n" if attempt_left.done else b"") + _comment(final)
        return Response(bytes(attempt_left.held) + tail, status_code=200, headers=headers, media_type=_SSE)
    return Response(error_body(final, data), status_code=error_status(final), headers=headers,
                    media_type="application/json")  # fmt: skip


async def _open(
    client: AsyncClient, action: Send, body: dict[str, Any], attempt: _Attempt
) -> tuple[Outcome, bytes | None, bool]:
    """Send one attempt and read up to its first text: (outcome, error body, committed)."""
    content = client._chat_content(action, body)
    timeout = client._timeout(client.stall_timeout, action.timeout)
    headers = client.headers_for(action.key)
    try:
        reply = await attempt.stack.enter_async_context(
            client._wire.stream("POST", client._chat_url, headers, content, timeout)
        )
        attempt.request_id = request_id(reply.headers)
        if reply.status >= 300 or _SSE not in reply.headers.get("content-type", ""):
            data = b"".join([chunk async for chunk in reply.chunks])
            return client._classify_reply(reply.status, reply.headers, data, "chat"), data, False
        attempt.reader = _new_reader(client, reply.status, reply.headers)
        attempt.chunks = reply.chunks.__aiter__()
        async for raw in attempt.chunks:
            events, has_text = attempt.take(raw)
            attempt.held += events
            if has_text:
                return Outcome.success(), None, True
        attempt.held += attempt.flush()
        return attempt.reader.finish(transport_error=None), None, False
    except TRANSPORT_ERRORS as exc:
        error = client._classify_exception(exc, "chat")
        if attempt.reader is None:
            return error, None, False
        return attempt.reader.finish(transport_error=error), None, False


def _committed(loop: Loop, action: Send, attempt: _Attempt, ids: list[str], *, strict: bool) -> Response:
    # The outcome is not known yet: the headers say so, and what is known (attempts so far, this model, the
    # request ids); the final outcome is the stream's last line.
    headers = {
        "x-genguard-code": "pending",
        "x-genguard-kind": "pending",
        "x-genguard-attempts": str(len(ids) + 1),
        "x-genguard-model": action.model,
        "x-genguard-request-ids": ",".join([*ids, attempt.request_id or "-"]),
    }

    async def body() -> AsyncIterator[bytes]:
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
                error = attempt.client._classify_exception(exc, "chat")
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

    return StreamingResponse(body(), status_code=200, headers=headers, media_type=_SSE,
                             background=BackgroundTask(attempt.stack.aclose))  # fmt: skip
