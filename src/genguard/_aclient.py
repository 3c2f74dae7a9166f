"""AsyncClient: the asynchronous twin of :class:`~genguard.Client`; all decisions live in BaseClient.

>>> async with AsyncClient("http://127.0.0.1:8000/v1") as c:  # doctest: +SKIP
...     outcome = await c.chat(model="m", messages=[{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from ._client import BaseClient, _Loop, _Send, _Sleep
from ._outcome import Outcome
from ._retry import RetryPolicy
from ._taxonomy import Endpoint
from ._testing import is_testing

if TYPE_CHECKING:
    from typing import Self

    from ._chat import AsyncChatStream

__all__ = ["AsyncClient"]


class AsyncClient(BaseClient):
    """The asynchronous twin of :class:`Client`: ``await client.chat(...)``, ``async with client.stream(...)``.

    >>> async with AsyncClient("http://127.0.0.1:8000/v1") as c:  # doctest: +SKIP
    ...     outcome = await c.chat(model="m", messages=[{"role": "user", "content": "Hi"}])
    """

    _is_async = True

    http: httpx.AsyncClient  # made by BaseClient, or the http_client given (an httpx.AsyncClient)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections (only those of an ``http_client`` this client created)."""
        if self._owns_http:
            await self.http.aclose()

    async def _drive(self, loop: _Loop, send: Callable[[_Send], Awaitable[Outcome]]) -> Outcome:
        try:
            action = next(loop)
            while True:
                if type(action) is _Sleep:
                    if action.seconds > 0 and not is_testing():
                        await asyncio.sleep(action.seconds)
                    action = loop.send(None)
                else:
                    assert isinstance(action, _Send)
                    action = loop.send((await send(action), False))
        except StopIteration as stop:
            result: Outcome = stop.value
            return result

    async def chat(
        self,
        *,
        model: str,
        messages: Sequence[Any],
        stream: bool = False,
        validate: Any = None,
        labels: Sequence[str] | None = None,
        min_words: int | None = None,
        pattern: str | None = None,
        retry: RetryPolicy | None = None,
        fallbacks: Sequence[str] | None = None,
        **params: Any,
    ) -> Outcome:
        """One chat completion, as :meth:`Client.chat`, awaited."""
        loop, body = self._chat_loop(
            model, messages, params, validate, labels, min_words, pattern, retry, fallbacks, stream=stream
        )
        if stream:
            from ._chat import AsyncChatStream

            async with AsyncChatStream(self, loop, body, interactive=False) as s:
                return await s.finish()

        async def send(action: _Send) -> Outcome:
            request = self._chat_request(action, body, stream=False)
            try:
                response = await self.http.send(request)
            except httpx.HTTPError as exc:
                return self._classify_exception(exc, "chat")
            return self._classify_response(response, "chat")

        return await self._drive(loop, send)

    def stream(
        self,
        *,
        model: str,
        messages: Sequence[Any],
        validate: Any = None,
        labels: Sequence[str] | None = None,
        min_words: int | None = None,
        pattern: str | None = None,
        retry: RetryPolicy | None = None,
        fallbacks: Sequence[str] | None = None,
        **params: Any,
    ) -> AsyncChatStream:
        """A streamed chat completion: ``async for text in s`` as it arrives, then ``s.outcome``."""
        from ._chat import AsyncChatStream

        loop, body = self._chat_loop(
            model, messages, params, validate, labels, min_words, pattern, retry, fallbacks, stream=True
        )
        return AsyncChatStream(self, loop, body)

    async def send_with_retries(
        self,
        build: Callable[[str | None, str], httpx.Request],
        parse: Callable[[httpx.Response], Outcome],
        *,
        model: str,
        endpoint: Endpoint = "chat",
        fallbacks: Sequence[str] | None = (),
        retry: RetryPolicy | None = None,
        validate: Any = None,
    ) -> Outcome:
        """As :meth:`Client.send_with_retries`, awaited (``parse`` stays a plain function)."""
        loop = self._retry_loop(model, endpoint, fallbacks, retry, validate)

        async def send(action: _Send) -> Outcome:
            try:
                response = await self.http.send(self._retry_request(build, action))
                await response.aread()
            except httpx.HTTPError as exc:
                return self._classify_exception(exc, endpoint)
            return parse(response)

        return await self._drive(loop, send)
