"""Streamed chat completions: iterate for text as it arrives, then read the same Outcome a plain call gives.

A stream is read with the stall limit (no bytes for ``stall_timeout`` seconds ends it as ``timeout``, the
partial text kept); a connection dropped mid-stream becomes an Outcome, never a raw transport exception.
Attempts that fail before any text reached the caller are retried like plain calls; once text was handed out,
the stream's outcome is final (a new attempt would repeat or contradict what the caller already showed).

>>> with client.stream(model="m", messages=[{"role": "user", "content": "Hi"}]) as s:  # doctest: +SKIP
...     for text in s:
...         print(text, end="", flush=True)
>>> s.outcome.code  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from ..core.outcome import Outcome
from .gate import ASKED_MODEL, Gate, SyncGate, estimate_tokens, tell_gate
from .loop import Sleep
from .testing import is_testing
from .transport import TRANSPORT_ERRORS

if TYPE_CHECKING:
    from typing import Self

    from .clients import AsyncClient, Client
    from .loop import Loop, Send

__all__ = ["AsyncChatStream", "ChatStream"]


def _is_event_stream(response: httpx.Response) -> bool:
    return "text/event-stream" in response.headers.get("content-type", "")


def _reader(client: Client, response: httpx.Response) -> Any:
    return _new_reader(client, response.status_code, response.headers)


def _new_reader(client: Client | AsyncClient, status: int, headers: Mapping[str, str]) -> Any:
    from ..core.chat_stream import ChatStreamReader

    if client._keep_raw:
        return ChatStreamReader(status=status, headers=headers, keep_raw=True, secrets=client.keys)
    return ChatStreamReader(status=status, headers=headers)


_CLOSED_EARLY = "the caller closed the stream before it ended"


def _past_deadline(left: float) -> Outcome:
    return Outcome.failure(
        "timeout",
        message=f"the retry policy's deadline passed while the stream was read ({left:.3g} s were left)",
    )


class _StreamBase:
    def __init__(self, loop: Loop, body: dict[str, Any], *, interactive: bool) -> None:
        self._loop = loop
        self._body = body
        # A stream nobody reads live (chat(stream=True)) may be retried even after partial text.
        self._interactive = interactive
        self._outcome: Outcome | None = None
        self._partial: Outcome | None = None
        self._chunks: list[str] = []

    @property
    def outcome(self) -> Outcome:
        """The final Outcome; available once the stream was read to its end (or closed)."""
        if self._outcome is None:
            raise RuntimeError("the stream has not ended yet: iterate it to the end, or call finish()")
        return self._outcome

    @property
    def text(self) -> str:
        """The text received so far in the current attempt."""
        return "".join(self._chunks)

    def _closed_outcome(self) -> Outcome:
        partial = self._partial
        text = self.text or None
        if partial is not None and not partial.ok:
            return partial
        return Outcome.failure("incomplete_stream", text=text, message=_CLOSED_EARLY, retryable=False)


class ChatStream(_StreamBase):
    """A synchronous streamed chat completion; made by :meth:`genguard.Client.stream`."""

    def __init__(self, client: Client, loop: Loop, body: dict[str, Any], *, interactive: bool = True) -> None:
        super().__init__(loop, body, interactive=interactive)
        self._client = client
        self._iter: Iterator[str] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        if self._iter is None:
            self._iter = self._run()
        return self._iter

    def finish(self) -> Outcome:
        """Read whatever is left (discarding the text) and return the Outcome."""
        for _ in self:
            pass
        return self.outcome

    def close(self) -> None:
        """Stop reading; an unfinished stream ends as ``incomplete_stream`` with the text so far."""
        if self._iter is not None and self._outcome is None:
            self._iter.close()  # type: ignore[attr-defined]
        if self._outcome is None:
            self._loop.close()
            self._outcome = self._closed_outcome()

    def _run(self) -> Iterator[str]:
        loop = self._loop
        try:
            action = next(loop)
            while True:
                if isinstance(action, Sleep):
                    if action.seconds > 0 and not is_testing():
                        time.sleep(action.seconds)
                    action = loop.send(None)
                    continue
                self._chunks = []
                self._partial = None
                committed = False
                outcome: Outcome | None = None
                attempt = self._attempt(action)
                try:
                    for item in attempt:
                        if isinstance(item, str):
                            if self._interactive:
                                committed = True
                                yield item
                        else:
                            outcome = item
                finally:
                    attempt.close()  # a reader that stops early frees the connection and the gate's slot now
                assert outcome is not None
                self._partial = outcome
                action = loop.send((outcome, committed))
        except StopIteration as stop:
            self._outcome = stop.value

    def _attempt(self, action: Send) -> Generator[str | Outcome, None, None]:
        gate = self._client.gate
        return self._on_wire(action, []) if gate is None else self._gated(action, gate)

    def _gated(self, action: Send, gate: SyncGate) -> Generator[str | Outcome, None, None]:
        # As the async stream's: the gate asked before the attempt, told after it (or when its reader stops it).
        tokens = estimate_tokens(self._body)
        ASKED_MODEL.set(action.model or None)
        gate.acquire(tokens)
        seen: list[Any] = []
        outcome: Outcome | None = None
        wire = self._on_wire(action, seen)
        try:
            for item in wire:
                if not isinstance(item, str):
                    outcome = item
                yield item
        finally:
            wire.close()
            status, headers = seen if seen else (0, {})
            ASKED_MODEL.set(action.model or None)  # its reader may have asked a gate for another stream since
            if outcome is None:
                gate.observe(status, headers, tokens_reserved=tokens)
            else:
                tell_gate(gate, status, headers, outcome, tokens)

    def _on_wire(self, action: Send, seen: list[Any]) -> Generator[str | Outcome, None, None]:
        client = self._client
        request = client._chat_request(action, self._body, stream=True)
        reader = None
        response: httpx.Response | None = None
        try:
            response = client.http.send(request, stream=True)
            seen[:] = (response.status_code, response.headers)
            if response.status_code >= 300 or not _is_event_stream(response):
                response.read()
                yield client._classify_response(response, "chat")
                return
            reader = _reader(client, response)
            chunks = self._chunks
            # The policy's deadline covers the whole call: a stream still trickling when it passes ends as
            # `timeout` with its text kept. (A silent server is cut sooner by the read timeout, which is
            # already at most what is left of the deadline.)
            left = action.timeout
            stop_at = None if left is None else time.monotonic() + left
            for raw in response.iter_bytes():
                for text in reader.feed(raw):
                    chunks.append(text)
                    yield text
                if stop_at is not None and left is not None and time.monotonic() >= stop_at:
                    yield reader.finish(transport_error=_past_deadline(left))
                    return
            yield reader.finish(transport_error=None)
        except TRANSPORT_ERRORS as exc:
            error = client._classify_exception(exc, "chat")
            yield error if reader is None else reader.finish(transport_error=error)
        finally:
            if response is not None:
                response.close()


class AsyncChatStream(_StreamBase):
    """An asynchronous streamed chat completion; made by :meth:`genguard.AsyncClient.stream`."""

    def __init__(
        self, client: AsyncClient, loop: Loop, body: dict[str, Any], *, interactive: bool = True
    ) -> None:
        super().__init__(loop, body, interactive=interactive)
        self._client = client
        self._iter: AsyncIterator[str] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iter is None:
            self._iter = self._run()
        return self._iter

    async def finish(self) -> Outcome:
        """Read whatever is left (discarding the text) and return the Outcome."""
        async for _ in self:
            pass
        return self.outcome

    async def aclose(self) -> None:
        """Stop reading; an unfinished stream ends as ``incomplete_stream`` with the text so far."""
        if self._iter is not None and self._outcome is None:
            await self._iter.aclose()  # type: ignore[attr-defined]
        if self._outcome is None:
            self._loop.close()
            self._outcome = self._closed_outcome()

    async def _run(self) -> AsyncIterator[str]:
        loop = self._loop
        try:
            action = next(loop)
            while True:
                if isinstance(action, Sleep):
                    if action.seconds > 0 and not is_testing():
                        await asyncio.sleep(action.seconds)
                    action = loop.send(None)
                    continue
                self._chunks = []
                self._partial = None
                committed = False
                outcome: Outcome | None = None
                attempt = self._attempt(action)
                try:
                    async for item in attempt:
                        if isinstance(item, str):
                            if self._interactive:
                                committed = True
                                yield item
                        else:
                            outcome = item
                finally:
                    # Closed now, not when collected: a reader that stops early frees the connection and the
                    # gate's slot at once.
                    await attempt.aclose()
                assert outcome is not None
                self._partial = outcome
                action = loop.send((outcome, committed))
        except StopIteration as stop:
            self._outcome = stop.value

    def _attempt(self, action: Send) -> AsyncGenerator[str | Outcome, None]:
        gate = self._client.gate
        return self._on_wire(action, []) if gate is None else self._gated(action, gate)

    async def _gated(self, action: Send, gate: Gate) -> AsyncGenerator[str | Outcome, None]:
        # The gate (a rate limiter) sees a stream as it sees a plain call: asked before the attempt, told after
        # it with the answer's status, headers and usage; an attempt cut off by its reader frees its slot too.
        tokens = estimate_tokens(self._body)
        ASKED_MODEL.set(action.model or None)
        await gate.acquire(tokens)
        seen: list[Any] = []
        outcome: Outcome | None = None
        wire = self._on_wire(action, seen)
        try:
            async for item in wire:
                if not isinstance(item, str):
                    outcome = item
                yield item
        finally:
            await wire.aclose()
            status, headers = seen if seen else (0, {})
            ASKED_MODEL.set(action.model or None)  # its reader may have asked a gate for another stream since
            if outcome is None:  # cut off by its reader: no answer to learn from, the slot is free again
                gate.observe(status, headers, tokens_reserved=tokens)
            else:
                tell_gate(gate, status, headers, outcome, tokens)

    async def _on_wire(self, action: Send, seen: list[Any]) -> AsyncGenerator[str | Outcome, None]:
        client = self._client
        content = client._chat_content(action, self._body)
        timeout = client._timeout(client.stall_timeout, action.timeout)
        headers = client.headers_for(action.key)
        reader = None
        try:
            async with client._wire.stream("POST", client._chat_url, headers, content, timeout) as reply:
                seen[:] = (reply.status, reply.headers)
                if reply.status >= 300 or "text/event-stream" not in reply.headers.get("content-type", ""):
                    data = b"".join([chunk async for chunk in reply.chunks])
                    yield client._classify_reply(reply.status, reply.headers, data, "chat")
                    return
                reader = _new_reader(client, reply.status, reply.headers)
                chunks = self._chunks
                if action.timeout is None:
                    async for raw in reply.chunks:
                        for text in reader.feed(raw):
                            chunks.append(text)
                            yield text
                else:
                    # The deadline covers the whole call, each wait for the next chunk included: past it,
                    # the stream ends as `timeout` with its text kept.
                    clock = asyncio.get_running_loop().time
                    stop_at = clock() + action.timeout
                    pending = reply.chunks.__aiter__()
                    while True:
                        try:
                            async with asyncio.timeout(stop_at - clock()):
                                raw = await anext(pending)
                        except StopAsyncIteration:
                            break
                        except TimeoutError:
                            yield reader.finish(transport_error=_past_deadline(action.timeout))
                            return
                        for text in reader.feed(raw):
                            chunks.append(text)
                            yield text
            yield reader.finish(transport_error=None)
        except TRANSPORT_ERRORS as exc:
            error = client._classify_exception(exc, "chat")
            yield error if reader is None else reader.finish(transport_error=error)
