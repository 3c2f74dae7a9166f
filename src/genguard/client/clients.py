"""Client and AsyncClient: chat calls that end in one Outcome, with retries, key rotation and fallbacks.

Layout, as httpx does it: :class:`BaseClient` holds every pure part (configuration, request building and the
retry loop as a generator of actions); :class:`Client` and :class:`AsyncClient` only perform those actions
(send a request, sleep), so the decisions are written once.

The retry loop is reusable by any endpoint (images and videos build on it) through
:meth:`Client.send_with_retries` / :meth:`AsyncClient.send_with_retries`::

    outcome = client.send_with_retries(
        build=lambda key, model: client.build_request("POST", "/images/generations", key=key,
                                                      json={"model": model, "prompt": "a cat"}),
        parse=lambda response: classify_images(response),   # response already read -> Outcome
        model="gpt-image-1",
        endpoint="image",
        fallbacks=["dall-e-3"],
    )

One request is sent per attempt. ``build(key, model)`` makes the :class:`httpx.Request` for the current key
(``None`` when the client has none) and model; ``parse(response)`` turns the read response into an Outcome
(transport errors never reach it: they become ``timeout`` / ``connection_error`` outcomes). The loop rotates
keys on ``auth_failed``/``quota_exceeded``, retries what the :class:`~genguard.RetryPolicy` says with the
server's wait, moves to the next fallback model on the policy's ``fallback_on`` codes, and returns the final
Outcome with ``attempts``, ``history`` (one :class:`~genguard.Attempt` each), usage summed over attempts, and
``model`` and ``cost_usd`` in ``extra``. It never raises for a failed call (only :class:`~genguard.ConfigError`
when the server wants a key and none is configured).

>>> import genguard
>>> with genguard.Client("http://127.0.0.1:9/v1", api_key="sk-test") as client:  # doctest: +SKIP
...     outcome = client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
...     print(outcome.ok, outcome.text)
"""

from __future__ import annotations

import inspect
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import lru_cache
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from ..core.exceptions import ConfigError
from ..core.outcome import Outcome
from ..core.taxonomy import Endpoint
from .arguments import check_chat, check_client, check_send
from .bodies import chat_body
from .gate import ASKED_MODEL, Gate, SyncGate, estimate_tokens, tell_gate
from .keys import ENV_KEYS, resolve_base, resolve_keys, with_query
from .loop import CallPlan, Hook, Loop, Send, Sleep, adrive
from .loop import run as run_loop
from .retry import RetryPolicy
from .testing import is_testing
from .transport import TRANSPORT_ERRORS, classify_exception
from .wire import AioWire, HttpxWire, Wire, WireTransport, default_max_concurrency

if TYPE_CHECKING:
    from typing import Self

    import aiohttp

    from .images import AsyncImages, Images
    from .streams import AsyncChatStream, ChatStream
    from .videos import AsyncVideos, Videos

__all__ = ["AsyncClient", "BaseClient", "Client", "Hook"]

Validators = tuple[Any, ...]


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The certificate store every genguard client shares: loading it costs about 25 ms, so once per process.

    Built as httpx builds its default (``SSL_CERT_FILE``/``SSL_CERT_DIR``, else certifi's bundle).
    """
    return httpx.create_ssl_context()


_classify_module: Any = None


def _import_classify() -> Any:
    # Imported on first use (it pulls in the whole failure model), then kept: an import statement per call
    # still walks the import machinery.
    global _classify_module
    if _classify_module is None:
        from ..core import classify as _classify

        _classify_module = _classify
    return _classify_module


class BaseClient:
    """Configuration and every pure decision shared by :class:`Client` and :class:`AsyncClient`."""

    _is_async = False  # which twin of httpx's client and of the media helpers to build

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
        http_client: Any = None,
        default_query: Mapping[str, str] | None = None,
        keep_raw: bool = False,
    ) -> None:
        check_client(timeout=timeout, connect_timeout=connect_timeout, stall_timeout=stall_timeout, retry=retry,
                     fallbacks=fallbacks, hooks=hooks, headers=headers, default_query=default_query)  # fmt: skip
        # A query in the base URL moves into default_query: glued in front of each path, it broke every request.
        self.base_url, self.default_query = resolve_base(base_url, default_query)
        self.keys: tuple[str, ...] = resolve_keys(api_key)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.stall_timeout = float(stall_timeout)
        self.retry = retry or RetryPolicy()
        self.fallbacks: tuple[str, ...] = tuple(fallbacks)
        self.hooks: tuple[Hook, ...] = tuple(hooks)
        self._extra_headers = dict(headers or {})
        self._validate = validate
        self._validators: Validators = self._build_validators(validate) if validate is not None else ()
        # Index of the first key not yet refused: a key that failed for good is skipped by later calls too.
        self._key_start = 0
        self._headers_by_key: dict[str | None, dict[str, str]] = {}
        # Per-call work done once: httpx parses a URL given as text on every request (about half of what
        # build_request costs) and copies a dict of headers into its own type each time.
        self._chat_url = with_query(self.base_url + "/chat/completions", self.default_query)
        self._chat_target: httpx.URL | None = None
        self._httpx_headers_by_key: dict[str | None, httpx.Headers] = {}
        self._timeouts: dict[tuple[float, float], httpx.Timeout] = {}
        self._images: Any = None
        self._videos: Any = None
        self._owns_http = http_client is None
        # Off by default: a kept response (its headers and up to 65,536 characters of body) on every outcome
        # is memory most callers do not want.
        self._keep_raw = bool(keep_raw)
        self._init_http(http_client)

    def _init_http(self, http_client: Any) -> None:
        if http_client is not None and not isinstance(http_client, httpx.Client):
            # Sent through the wrong twin, a request would fail far from here with an unawaited coroutine.
            raise TypeError(f"{type(self).__name__} needs http_client to be an httpx.Client")
        self.http: httpx.Client | httpx.AsyncClient = http_client or httpx.Client(
            timeout=self._timeout(self.timeout, None), verify=tls_context()
        )

    # -- pure helpers ---------------------------------------------------------------------------

    @staticmethod
    def _build_validators(validate: Any = None, **kw: Any) -> Validators:
        if validate is None and not any(v is not None for v in kw.values()):
            return ()
        from ..core.validate import build_validators

        return tuple(build_validators(validate, **kw))

    def headers_for(self, key: str | None) -> dict[str, str]:
        """The request headers for ``key``: ``Authorization: Bearer`` plus the client's own headers."""
        cached = self._headers_by_key.get(key)
        if cached is None:
            cached = {"content-type": "application/json", "accept": "application/json", **self._extra_headers}
            if key:
                cached["authorization"] = f"Bearer {key}"
            self._headers_by_key[key] = cached
        return cached

    def url(self, path: str) -> str:
        """``path`` joined to the base URL, with the default query; an absolute URL is returned as it is, with
        the default query added when it is under the base URL (the API's own links)."""
        if path.startswith(("http://", "https://")):
            if self.default_query and path.startswith(self.base_url):
                return with_query(path, self.default_query)
            return path
        return with_query(self.base_url + "/" + path.lstrip("/"), self.default_query)

    def _timeout(self, read: float, remaining: float | None) -> httpx.Timeout:
        if remaining is not None:
            # What is left of a deadline differs on every attempt: nothing worth keeping.
            read = min(read, remaining)
            return httpx.Timeout(read, connect=min(self.connect_timeout, read), pool=None)
        key = (read, self.connect_timeout)
        cached = self._timeouts.get(key)
        if cached is None:
            # pool=None: waiting for a free connection is back-pressure in this process, not the provider's
            # slowness; it is never a timeout, never classified, never retried.
            cached = httpx.Timeout(read, connect=min(self.connect_timeout, read), pool=None)
            if len(self._timeouts) >= 16:  # callers of build_request may pass many values: stay small
                self._timeouts.clear()
            self._timeouts[key] = cached
        return cached

    def _httpx_headers(self, key: str | None) -> httpx.Headers:
        cached = self._httpx_headers_by_key.get(key)
        if cached is None:
            # httpx merges these into a copy for each request; this one is never handed out to change.
            cached = self._httpx_headers_by_key[key] = httpx.Headers(self.headers_for(key))
        return cached

    def _no_key_error(self) -> ConfigError:
        # A password in the base URL (user:pw@host) is a credential too: never print it.
        from ..core.secrets import mask_url

        names = " or ".join(ENV_KEYS)
        return ConfigError(
            f"The server at {mask_url(self.base_url)} wants an API key (it answered 401) and none is set: "
            f"pass api_key=... (or --api-key on the command line), or set {names}."
        )

    # -- the retry loop (pure: see loop.py) -----------------------------------------------------

    def _retire_key(self, index: int) -> None:
        # A key refused for good is skipped by later calls too.
        self._key_start = max(self._key_start, index)

    def _plan(
        self,
        model: str,
        *,
        fallbacks: Sequence[str] | None,
        retry: RetryPolicy | None,
        validators: Validators = (),
        messages: Sequence[Any] | None = None,
        params: Mapping[str, Any] | None = None,
        endpoint: str = "chat",
        url: str | None = None,
        stream: bool = False,
    ) -> Loop:
        plan = CallPlan(
            models=(model, *(self.fallbacks if fallbacks is None else fallbacks)),
            keys=self.keys,
            policy=retry or self.retry,
            key_start=self._key_start,
            validators=validators,
            hooks=self.hooks,
            messages=messages,
            params=params,
            retire_key=self._retire_key,
            no_key_error=self._no_key_error,
            endpoint=endpoint,
            url=url or self.base_url,
            # send_with_retries' builder chooses the method; chat and send_json always POST
            method="POST" if url else None,
            stream=stream,
        )
        return run_loop(plan)

    def _chat_loop(
        self,
        model: str,
        messages: Sequence[Any],
        params: Mapping[str, Any],
        validate: Any,
        labels: Sequence[str] | None,
        min_words: int | None,
        pattern: str | None,
        retry: RetryPolicy | None,
        fallbacks: Sequence[str] | None,
        *,
        stream: bool,
    ) -> tuple[Loop, dict[str, Any]]:
        # Positional, in the order chat() and stream() take them, so each call of it stays one line.
        check_chat(model, messages, stream, retry, fallbacks)
        if validate is None and labels is None and min_words is None and pattern is None:
            validators = self._validators
        else:
            validators = self._build_validators(validate, labels=labels, min_words=min_words, pattern=pattern)
        loop = self._plan(
            model, fallbacks=fallbacks, retry=retry, validators=validators, messages=messages, params=params,
            url=self._chat_url, stream=stream,
        )  # fmt: skip
        return loop, chat_body(model, messages, params, stream=stream)

    def _retry_loop(
        self,
        model: str,
        endpoint: Endpoint,
        fallbacks: Sequence[str] | None,
        retry: RetryPolicy | None,
        validate: Any,
    ) -> Loop:
        # send_with_retries' loop: validators only when asked for, never the client's chat ones.
        validators = self._build_validators(validate) if validate is not None else ()
        return self._plan(model, fallbacks=fallbacks, retry=retry, validators=validators, endpoint=endpoint)

    def _retry_request(self, build: Callable[[str | None, str], httpx.Request], send: Send) -> httpx.Request:
        request = build(send.key, send.model)
        if send.timeout is not None:
            request.extensions["timeout"] = self._timeout(self.timeout, send.timeout).as_dict()
        return request

    def _chat_request(self, send: Send, body: dict[str, Any], *, stream: bool) -> httpx.Request:
        if send.patch:
            body = {**body, **send.patch}
        body["model"] = send.model
        target = self._chat_target
        if target is None:
            # Parsed at the first call, not in __init__, so a bad base URL fails where it always did.
            target = self._chat_target = httpx.URL(self._chat_url)
        return self.http.build_request(
            "POST",
            target,
            content=orjson.dumps(body),
            headers=self._httpx_headers(send.key),
            timeout=self._timeout(self.stall_timeout if stream else self.timeout, send.timeout),
        )

    def _chat_content(self, send: Send, body: dict[str, Any]) -> bytes:
        if send.patch:
            body = {**body, **send.patch}
        body["model"] = send.model
        return orjson.dumps(body)

    def _classify_reply(
        self, status: int, headers: Mapping[str, str], body: bytes, endpoint: Endpoint
    ) -> Outcome:
        outcome: Outcome = _import_classify().classify_http(
            status, headers, body, endpoint=endpoint, secrets=self.keys, keep_raw=self._keep_raw
        )
        return outcome

    def _classify_response(self, response: httpx.Response, endpoint: Endpoint) -> Outcome:
        classify = _import_classify()
        outcome: Outcome = classify.classify_http(
            response.status_code,
            response.headers,
            response.content,
            endpoint=endpoint,
            secrets=self.keys,
            keep_raw=self._keep_raw,
        )
        return outcome

    def _classify_exception(self, exc: BaseException, endpoint: Endpoint) -> Outcome:
        return classify_exception(exc, endpoint=endpoint, secrets=self.keys)

    def build_request(
        self,
        method: str,
        path: str,
        *,
        key: str | None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> httpx.Request:
        """An :class:`httpx.Request` to ``path`` (relative to the base URL) carrying ``key`` as Bearer.

        For :meth:`send_with_retries` builders; ``kwargs`` go to ``httpx.Client.build_request`` (``files``,
        ``data``, ``params``...). A multipart body gets its own content type.
        """
        merged = {**self.headers_for(key), **(headers or {})}
        if self.default_query and kwargs.get("params") is not None:
            # httpx replaces a URL's query with params instead of adding to it.
            kwargs["params"] = httpx.QueryParams(self.default_query).merge(kwargs["params"])
        if json is not None:
            kwargs["content"] = orjson.dumps(json)
        elif "files" in kwargs or "data" in kwargs:
            merged.pop("content-type", None)
        return self.http.build_request(
            method,
            self.url(path),
            headers=merged,
            timeout=self._timeout(timeout or self.timeout, None),
            **kwargs,
        )


class Client(BaseClient):
    """A synchronous client: every call returns an :class:`~genguard.Outcome`, never a silent success.

    Keys come from ``api_key`` (one or several, rotated on ``auth_failed``/``quota_exceeded``), else
    ``GENGUARD_API_KEY``, else ``OPENAI_API_KEY``; the base URL from ``base_url``, else ``GENGUARD_BASE_URL``
    or ``OPENAI_BASE_URL``. ``stall_timeout`` bounds the silence between two bytes of a stream. Requests go
    through ``http_client`` when one is given (an :class:`httpx.Client`; closing it is then the caller's part).
    ``gate`` (a :class:`genguard.SyncGate`, such as :class:`genguard.ThreadedGate` over a shared limiter) is
    asked before every attempt and told every answer.

    >>> with Client("http://127.0.0.1:8000/v1", api_key=["sk-a", "sk-b"], fallbacks=["small"]) as c:  # doctest: +SKIP
    ...     outcome = c.chat(model="big", messages=[{"role": "user", "content": "Say hi"}], temperature=0)
    ...     outcome.raise_for_failure().text
    'Hi!'
    """

    http: httpx.Client  # made by BaseClient, or the http_client given

    def __init__(self, base_url: str | None = None, *, gate: SyncGate | None = None, **options: Any) -> None:
        if gate is not None and (not isinstance(gate, SyncGate) or inspect.iscoroutinefunction(gate.acquire)):
            raise TypeError(
                f"gate takes a genguard.SyncGate (a blocking acquire(tokens) and observe(...)), got {gate!r}; "
                "for an asyncio gate such as genguard.open_gate's, give genguard.ThreadedGate(lambda: gate_maker())"
            )
        self.gate: SyncGate | None = gate
        super().__init__(base_url, **options)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def images(self) -> Images:
        """Image generation on this client (:class:`genguard.Images`), created on first use."""
        if self._images is None:
            from .images import Images

            self._images = Images(self)
        return self._images  # type: ignore[no-any-return]

    @property
    def videos(self) -> Videos:
        """Video tasks on this client (:class:`genguard.Videos`), created on first use."""
        if self._videos is None:
            from .videos import Videos

            self._videos = Videos(self)
        return self._videos  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the HTTP connections (only those of an ``http_client`` this client created)."""
        if self._owns_http:
            self.http.close()

    def _drive(self, loop: Loop, send: Callable[[Send], Outcome]) -> Outcome:
        try:
            action = next(loop)
            while True:
                if type(action) is Sleep:
                    if action.seconds > 0 and not is_testing():
                        time.sleep(action.seconds)
                    action = loop.send(None)
                else:
                    assert isinstance(action, Send)
                    action = loop.send((send(action), False))
        except StopIteration as stop:
            result: Outcome = stop.value
            return result
        finally:
            # A call cut short (cancelled, interrupted) ends its loop now, not when it is collected: its hooks
            # are told of the end at the moment it came.
            loop.close()

    def chat(
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
        """One chat completion, retried as the policy says; ``params`` pass through to the API.

        ``stream=True`` streams underneath (with the stall limit) and returns the same Outcome; use
        :meth:`stream` to read the text as it arrives. ``validate`` (``"json"``, a JSON Schema, a pydantic
        model, a regex or a callable), ``labels``, ``min_words`` and ``pattern`` add silent-failure checks.

        >>> client.chat(model="m", messages=[{"role": "user", "content": "2+2?"}], max_tokens=5)  # doctest: +SKIP
        """
        loop, body = self._chat_loop(
            model, messages, params, validate, labels, min_words, pattern, retry, fallbacks, stream=stream
        )
        if stream:
            from .streams import ChatStream

            # Nobody reads this stream live, so an attempt may be retried even after partial text.
            with ChatStream(self, loop, body, interactive=False) as s:
                return s.finish()

        gate = self.gate
        tokens = estimate_tokens(body) if gate is not None else 0

        def send(action: Send) -> Outcome:
            request = self._chat_request(action, body, stream=False)
            if gate is not None:
                ASKED_MODEL.set(action.model or None)
                gate.acquire(tokens)
            try:
                response = self.http.send(request)
            except TRANSPORT_ERRORS as exc:
                if gate is not None:
                    gate.observe(0, {}, tokens_reserved=tokens)  # no answer: the slot is free again
                return self._classify_exception(exc, "chat")
            outcome = self._classify_response(response, "chat")
            if gate is not None:
                tell_gate(gate, response.status_code, response.headers, outcome, tokens)
            return outcome

        return self._drive(loop, send)

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
    ) -> ChatStream:
        """A streamed chat completion: iterate for text as it arrives, then read ``.outcome``.

        >>> with client.stream(model="m", messages=msgs) as s:  # doctest: +SKIP
        ...     for text in s:
        ...         print(text, end="")
        >>> s.outcome.ok  # doctest: +SKIP
        True
        """
        from .streams import ChatStream

        loop, body = self._chat_loop(
            model, messages, params, validate, labels, min_words, pattern, retry, fallbacks, stream=True
        )
        return ChatStream(self, loop, body)

    def send_with_retries(
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
        """Run the retry loop for any endpoint: one ``build(key, model)`` request per attempt, ``parse`` of
        the read response to an Outcome; see the module docstring. ``fallbacks=None`` uses the client's."""
        check_send(build, parse, model, endpoint, fallbacks, retry)
        loop = self._retry_loop(model, endpoint, fallbacks, retry, validate)

        gate = self.gate

        def send(action: Send) -> Outcome:
            request = self._retry_request(build, action)
            if gate is not None:
                ASKED_MODEL.set(action.model or None)
                gate.acquire(0)  # a request of unknown size: it takes a request's place, no tokens
            try:
                response = self.http.send(request)
                response.read()
            except TRANSPORT_ERRORS as exc:
                if gate is not None:
                    gate.observe(0, {})
                return self._classify_exception(exc, endpoint)
            outcome = parse(response)
            if gate is not None:
                tell_gate(gate, response.status_code, response.headers, outcome, 0)
            return outcome

        return self._drive(loop, send)


class AsyncClient(BaseClient):
    """The asynchronous twin of :class:`Client`: ``await client.chat(...)``, ``async with client.stream(...)``.

    >>> async with AsyncClient("http://127.0.0.1:8000/v1") as c:  # doctest: +SKIP
    ...     outcome = await c.chat(model="m", messages=[{"role": "user", "content": "Hi"}])
    """

    _is_async = True

    # For the media helpers: over the wire's aiohttp session, or the http_client given.
    http: httpx.AsyncClient
    _wire: Wire  # what chat calls and streams go through

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
        http_client: httpx.AsyncClient | aiohttp.ClientSession | None = None,
        max_concurrency: int | None = None,
        gate: Gate | None = None,
        default_query: Mapping[str, str] | None = None,
        keep_raw: bool = False,
    ) -> None:
        """``max_concurrency`` calls are sent at once (default 128); the others wait their turn in this
        process, a wait that never counts against ``timeout`` and is never a failure. ``http_client`` may be
        an :class:`httpx.AsyncClient` or an :class:`aiohttp.ClientSession` of the caller's (proxies, TLS,
        mounts); closing it stays the caller's part. ``gate`` (a rate limiter, see :class:`genguard.Gate`) is
        asked before every attempt and told every answer's status and headers."""
        if max_concurrency is None:
            max_concurrency = default_max_concurrency()
        elif isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a whole number of at least 1, got {max_concurrency!r}")
        self.max_concurrency = max_concurrency
        self.gate = gate
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
            http_client=http_client,
            default_query=default_query,
            keep_raw=keep_raw,
        )

    def _init_http(self, http_client: Any) -> None:
        if isinstance(http_client, httpx.AsyncClient):
            self._wire = HttpxWire(http_client, self.max_concurrency)
            self.http = http_client
            return
        if http_client is not None and not type(http_client).__module__.startswith("aiohttp"):
            # Sent through the wrong twin, a request would fail far from here with an unawaited coroutine.
            raise TypeError(
                "AsyncClient needs http_client to be an httpx.AsyncClient or an aiohttp.ClientSession"
            )
        wire = (
            plain_wire(self.max_concurrency, ssl_context=tls_context())
            if http_client is None
            else AioWire(self.max_concurrency, session=http_client, ssl_context=tls_context())
        )
        self._wire = wire
        # Ours either way: closing it closes the wire's own session, never one the caller gave.
        self._owns_http = True
        self.http = httpx.AsyncClient(
            transport=WireTransport(wire), timeout=self._timeout(self.timeout, None)
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def images(self) -> AsyncImages:
        """Image generation on this client (:class:`genguard.AsyncImages`), created on first use."""
        if self._images is None:
            from .images import AsyncImages

            self._images = AsyncImages(self)
        return self._images  # type: ignore[no-any-return]

    @property
    def videos(self) -> AsyncVideos:
        """Video tasks on this client (:class:`genguard.AsyncVideos`), created on first use."""
        if self._videos is None:
            from .videos import AsyncVideos

            self._videos = AsyncVideos(self)
        return self._videos  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the HTTP connections (only those of an ``http_client`` this client created)."""
        if self._owns_http:
            await self.http.aclose()

    async def _drive(self, loop: Loop, send: Callable[[Send], Awaitable[Outcome]]) -> Outcome:
        async def attempt(action: Send) -> tuple[Outcome, bool]:
            return await send(action), False

        return await adrive(loop, attempt)

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
            from .streams import AsyncChatStream

            async with AsyncChatStream(self, loop, body, interactive=False) as s:
                return await s.finish()

        outcome, _ = await self._exchange_loop(loop, self._chat_url, body, "chat", keep_body=False)
        return outcome

    async def _exchange_loop(
        self, loop: Loop, url: str, body: dict[str, Any], endpoint: Endpoint, *, keep_body: bool
    ) -> tuple[Outcome, bytes | None]:
        # The one send path of JSON calls on the wire: the gate before each attempt and after each answer.
        wire = self._wire
        gate = self.gate
        tokens = estimate_tokens(body, text=endpoint == "chat") if gate is not None else 0
        classify_http = _import_classify().classify_http
        as_utf8 = _import_classify().as_utf8
        secrets = self.keys
        keep_raw = self._keep_raw
        last: list[bytes | None] = [None]

        async def send(action: Send) -> Outcome:
            timeout = self._timeout(self.timeout, action.timeout)
            content = self._chat_content(action, body)
            if gate is not None:
                ASKED_MODEL.set(action.model or None)
                await gate.acquire(tokens)
            try:
                status, headers, data = await wire.exchange(
                    "POST", url, self.headers_for(action.key), content, timeout
                )
            except TRANSPORT_ERRORS as exc:
                if gate is not None:
                    gate.observe(0, {}, tokens_reserved=tokens)  # no answer: the slot is free again
                return self._classify_exception(exc, endpoint)
            outcome: Outcome = classify_http(
                status, headers, data, endpoint=endpoint, secrets=secrets, keep_raw=keep_raw
            )
            if gate is not None:
                tell_gate(gate, status, headers, outcome, tokens)
            if keep_body:
                # Kept to be written inside JSON (the batch runner's output line): UTF-8, no byte-order mark.
                last[0] = as_utf8(data, headers)
            return outcome

        return await self._drive(loop, send), last[0]

    async def send_json(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        endpoint: Endpoint = "chat",
        fallbacks: Sequence[str] | None = (),
        retry: RetryPolicy | None = None,
        validate: Any = None,
    ) -> tuple[Outcome, bytes | None]:
        """POST ``body`` (JSON) to ``path`` with the retry loop; return the Outcome and the last answer's raw
        body, in UTF-8 without a byte-order mark (``None`` when no answer came). ``body["model"]`` is the first model, ``fallbacks`` the others.

        For callers that keep the provider's own response (the batch runner's output file, a proxy):

        >>> outcome, raw = await client.send_json("/embeddings", {"model": "m", "input": "hi"}, endpoint="embedding")  # doctest: +SKIP
        """
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ValueError(f"send_json needs body['model'] to be a model name, got {model!r}")
        validators = self._build_validators(validate) if validate is not None else ()
        messages = body.get("messages") if endpoint == "chat" else None
        loop = self._plan(
            model,
            fallbacks=fallbacks,
            retry=retry,
            validators=validators,
            messages=messages,
            params=body if endpoint == "chat" else None,
            endpoint=endpoint,
            url=(url := self.url(path)),
        )
        return await self._exchange_loop(loop, url, dict(body), endpoint, keep_body=True)

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
        from .streams import AsyncChatStream

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
        check_send(build, parse, model, endpoint, fallbacks, retry)
        loop = self._retry_loop(model, endpoint, fallbacks, retry, validate)

        gate = self.gate

        async def send(action: Send) -> Outcome:
            request = self._retry_request(build, action)
            if gate is not None:
                ASKED_MODEL.set(action.model or None)
                await gate.acquire(0)  # a request of unknown size: it takes a request's place, no tokens
            try:
                response = await self.http.send(request)
                await response.aread()
            except TRANSPORT_ERRORS as exc:
                if gate is not None:
                    gate.observe(0, {})
                return self._classify_exception(exc, endpoint)
            outcome = parse(response)
            if gate is not None:
                tell_gate(gate, response.status_code, response.headers, outcome, 0)
            return outcome

        return await self._drive(loop, send)


def plain_wire(max_concurrency: int, *, ssl_context: Any = None) -> AioWire:
    """The wire of a client given no HTTP client of its own: plain exchanges on the lean HTTP/1.1 wire
    (:class:`~genguard.client.h1.H1Wire`) when ``httptools`` imports, else everything on aiohttp."""
    try:
        from .h1 import H1Wire
    except ImportError:  # httptools missing: aiohttp carries plain calls too, as before the lean wire
        return AioWire(max_concurrency, ssl_context=ssl_context)
    return H1Wire(max_concurrency, ssl_context=ssl_context)
