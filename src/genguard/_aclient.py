"""AsyncClient: the asynchronous twin of :class:`~genguard.Client`; all decisions live in BaseClient.

>>> async with AsyncClient("http://127.0.0.1:8000/v1") as c:  # doctest: +SKIP
...     outcome = await c.chat(model="m", messages=[{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from ._client import BaseClient, Hook, _Loop, _Send, _Sleep, tls_context
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

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | Sequence[str] | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        stall_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        fallbacks: Sequence[str] = (),
        validate: Any = None,
        hooks: Sequence[Hook] = (),
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key=api_key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            stall_timeout=stall_timeout,
            retry=retry,
            fallbacks=fallbacks,
            validate=validate,
            hooks=hooks,
            headers=headers,
        )
        self._owns_http = http_client is None
        self.http = http_client or httpx.AsyncClient(
            timeout=self._timeout(self.timeout, None), verify=tls_context()
        )

    @property
    def _http_any(self) -> httpx.AsyncClient:
        return self.http

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
        if stream:
            async with self.stream(
                model=model,
                messages=messages,
                validate=validate,
                labels=labels,
                min_words=min_words,
                pattern=pattern,
                retry=retry,
                fallbacks=fallbacks,
                _interactive=False,
                **params,
            ) as s:
                return await s.finish()
        loop = self._chat_loop(
            model,
            messages,
            params,
            validate=validate,
            labels=labels,
            min_words=min_words,
            pattern=pattern,
            retry=retry,
            fallbacks=fallbacks,
        )
        body = self._chat_body(model, messages, params, stream=False)

        async def send(action: _Send) -> Outcome:
            request = self._chat_request(self.http, action, body, stream=False)
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
        _interactive: bool = True,
        **params: Any,
    ) -> AsyncChatStream:
        """A streamed chat completion: ``async for text in s`` as it arrives, then ``s.outcome``."""
        from ._chat import AsyncChatStream

        loop = self._chat_loop(
            model,
            messages,
            params,
            validate=validate,
            labels=labels,
            min_words=min_words,
            pattern=pattern,
            retry=retry,
            fallbacks=fallbacks,
        )
        return AsyncChatStream(
            self, loop, self._chat_body(model, messages, params, stream=True), interactive=_interactive
        )

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
        validators = self._build_validators(validate) if validate is not None else ()
        loop = self._loop(model, endpoint=endpoint, fallbacks=fallbacks, retry=retry, validators=validators)

        async def send(action: _Send) -> Outcome:
            try:
                request = build(action.key, action.model)
                if action.timeout is not None:
                    request.extensions["timeout"] = self._timeout(self.timeout, action.timeout).as_dict()
                response = await self.http.send(request)
                await response.aread()
            except httpx.HTTPError as exc:
                return self._classify_exception(exc, endpoint)
            return parse(response)

        return await self._drive(loop, send)
