"""genguard for applications on the official openai SDK: :func:`wrap` a client, or :func:`check` what it gave.

:func:`wrap` returns a client that has every attribute and method of the SDK client it was given and returns
the SDK's own types (``ChatCompletion``, the SDK's ``Stream``, ``ImagesResponse``...), with genguard in
charge underneath. Its requests go through an HTTP transport that runs genguard's retry loop (the SDK's own
retries are turned off, so the two never multiply), rotates keys and falls back to other models where
configured, and judges each answer with the failure model. What the SDK raises for (an HTTP error, a broken
connection) it still raises, with its own exception classes; what it lets through (a filtered, truncated or
empty answer, a 200 that is not a valid response, a stream that ends without a finish, a validator's
rejection) raises genguard's failure (:class:`~genguard.SoftFailure`, :class:`~genguard.HardFailure`,
:class:`~genguard.SilentFailure`), carrying the :class:`~genguard.Outcome`. A stream raises at the point of
iteration where the SDK would otherwise have ended quietly.

:func:`check` reads whatever an application already holds (a ``ChatCompletion``, a finished ``Stream`` or
the chunks it yielded, an ``ImagesResponse``, a video, an SDK exception, a dict) into an Outcome.

>>> import openai, genguard  # doctest: +SKIP
>>> client = genguard.wrap(openai.OpenAI(), fallbacks=["gpt-4o-mini"])  # doctest: +SKIP
>>> client.chat.completions.create(model="gpt-4o", messages=[...], labels=["yes", "no"])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any, TypeVar

import orjson

from ..client.keys import resolve_keys
from ..client.loop import CallPlan, Hook, Loop, Send, Sleep, run
from ..client.retry import RetryPolicy
from ..client.testing import is_testing
from ..client.transport import classify_exception, transport_errors
from ..core.chat_stream import ChatStreamReader
from ..core.classify import classify_http
from ..core.exceptions import FailureError, failure_error
from ..core.outcome import Outcome
from ..core.taxonomy import Endpoint

__all__ = ["OUTCOME_KEY", "check", "wrap"]

OUTCOME_KEY = "genguard.outcome"
"""Where a wrapped client keeps a call's final Outcome: in the ``extensions`` of the HTTP response the SDK got
(or of the request, when no answer came), so :func:`check` finds it on an SDK exception or a raw response."""

_C = TypeVar("_C")

# The per-call options a wrapped method takes besides the SDK's own.
_CALL_OPTIONS = ("validate", "labels", "min_words", "pattern", "retry", "fallbacks")

# Which requests are judged, by method and path: everything else is sent with the retry loop (an error
# status is classified and retried as on any endpoint) but its 2xx body is handed over unread.
_ENDPOINTS: tuple[tuple[str, re.Pattern[str], Endpoint], ...] = (
    ("POST", re.compile(r"/chat/completions$"), "chat"),
    # The Responses API, judged as a chat answer (its status, refusals, empty output); not when streamed.
    ("POST", re.compile(r"/responses$"), "chat"),
    ("POST", re.compile(r"/images/(generations|edits|variations)$"), "image"),
    ("POST", re.compile(r"/embeddings$"), "embedding"),
    ("POST", re.compile(r"/moderations$"), "moderation"),
    ("POST", re.compile(r"/videos(/[^/]+/remix)?$"), "video"),
    ("GET", re.compile(r"/videos/[^/]+$"), "video"),
)

_CLOSED_EARLY = "the caller stopped reading the stream before it ended"


def _endpoint(method: str, path: str) -> Endpoint | None:
    for verb, pattern, endpoint in _ENDPOINTS:
        if method == verb and pattern.search(path):
            return endpoint
    return None


# -- one call's options, from the wrap and the call --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Options:
    validators: tuple[Any, ...]
    retry: RetryPolicy
    fallbacks: tuple[str, ...]


class _Call:
    """One call of a wrapped method: its options, and the final Outcome once the transport has it."""

    __slots__ = ("options", "outcome")

    def __init__(self, options: _Options) -> None:
        self.options = options
        self.outcome: Outcome | None = None


# The call in progress: set around each wrapped method, read by the transport the SDK sends through (in the
# same thread, or the same task when async).
_CALL: ContextVar[_Call | None] = ContextVar("genguard_openai_call", default=None)


def _validators(validate: Any, labels: Any, min_words: Any, pattern: Any) -> tuple[Any, ...]:
    if validate is None and labels is None and min_words is None and pattern is None:
        return ()
    from ..core.validate import build_validators

    return tuple(build_validators(validate, labels=labels, min_words=min_words, pattern=pattern))


def _check_retry(retry: Any) -> RetryPolicy | None:
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a genguard.RetryPolicy, got {type(retry).__name__}: {retry!r}")
    return retry


def _check_fallbacks(fallbacks: Any) -> tuple[str, ...]:
    if isinstance(fallbacks, str) or not isinstance(fallbacks, Sequence):
        raise TypeError(
            f"fallbacks must be a list of model names, e.g. fallbacks=['gpt-4o-mini'], got {fallbacks!r}"
        )
    for i, name in enumerate(fallbacks):
        if not isinstance(name, str) or not name:
            raise TypeError(f"fallbacks[{i}] must be a model name, got {name!r}")
    return tuple(fallbacks)


# -- the state one wrap shares with its copies -------------------------------------------------------------


class _Keys:
    __slots__ = ("keys", "own", "start")

    def __init__(self, keys: tuple[str, ...], *, own: bool = False) -> None:
        self.keys = keys
        self.own = own  # the client's own key, not keys given to wrap: a copy with another key has its own
        self.start = 0  # the first key not yet refused: later calls skip the refused ones too

    @classmethod
    def of(cls, client: Any) -> _Keys:
        """The client's own key, alone: never rotated, but masked wherever genguard writes a message."""
        key = getattr(client, "api_key", None)
        return cls((key,) if isinstance(key, str) and key else (), own=True)

    def retire(self, index: int) -> None:
        self.start = max(self.start, index)


def _httpx_module(http: Any) -> ModuleType:
    """The httpx-like module the SDK sends with (``httpx2`` for newer SDKs, ``httpx`` for older ones)."""
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is not None and isinstance(http, module.Client | module.AsyncClient):
            return module
    raise TypeError(
        f"the client's HTTP client is neither an httpx nor an httpx2 client: {type(http).__name__}"
    )


class _Guard:
    """What a wrapped client needs to run genguard's loop under the SDK: the SDK client as it was given (its
    HTTP client sends every attempt), the keys, the wrap's options and the hooks."""

    def __init__(
        self, original: Any, keys: _Keys, options: _Options, hooks: tuple[Hook, ...], *, is_async: bool
    ) -> None:
        self.original = original
        self.http: Any = original._client
        self.module = _httpx_module(self.http)
        self.errors = transport_errors(self.module)
        self.keys = keys
        self.options = options
        self.hooks = hooks
        self.is_async = is_async
        sdk_key = getattr(original, "api_key", None)
        # The key the SDK already puts in its own header (its own way: Bearer, Azure's api-key...).
        self.sdk_key: str | None = sdk_key if isinstance(sdk_key, str) and sdk_key else None
        self.secrets = tuple(k for k in (*keys.keys, self.sdk_key or "") if k)

    # -- the loop of one request ---------------------------------------------------------------------

    def start(self, request: Any) -> tuple[Loop, Endpoint | None, dict[str, Any] | None, _Call | None]:
        call = _CALL.get()
        options = call.options if call is not None else self.options
        endpoint = _endpoint(request.method, request.url.path)
        body = _json_body(request.content) if endpoint is not None else None
        responses = endpoint == "chat" and not request.url.path.endswith("/chat/completions")
        if responses and body is not None and body.get("stream") is True:
            # Typed events, not chat chunks: sent with the retry loop, the stream handed over unread.
            endpoint, body = None, None
        model = body.get("model") if body is not None else None
        if isinstance(model, str) and model:
            models: tuple[str, ...] = (model, *options.fallbacks)
        else:
            body, models = None, ("",)  # no model to fall back from: the body is sent as it came
        chat = endpoint == "chat" and body is not None
        plan = CallPlan(
            models=models,
            keys=self.keys.keys,
            policy=options.retry,
            key_start=self.keys.start,
            validators=options.validators if chat else (),
            hooks=self.hooks,
            messages=body.get("messages") if chat and body is not None else None,
            params=body if chat else None,
            retire_key=self.keys.retire,
            # What the call is, for hooks told of each call's end (tracing).
            endpoint=endpoint or "chat",
            url=str(request.url.copy_with(query=None)),
            method=request.method,
            stream=body is not None and body.get("stream") is True,
        )
        return run(plan), endpoint, body, call

    def attempt(self, request: Any, action: Send, body: dict[str, Any] | None) -> Any:
        """The request of one attempt: the SDK's, with this attempt's key, model and body changes."""
        headers = request.headers.copy()
        if action.key is not None and action.key != self.sdk_key:
            if "api-key" in headers:  # Azure's header
                headers["api-key"] = action.key
            else:
                headers["authorization"] = f"Bearer {action.key}"
        if "x-stainless-retry-count" in headers:
            headers["x-stainless-retry-count"] = str(action.number - 1)
        content = request.content
        if body is not None and (action.patch or action.model != body.get("model")):
            content = orjson.dumps({**body, **action.patch, "model": action.model})
            headers["content-length"] = str(len(content))
        extensions = dict(request.extensions)
        if action.timeout is not None:
            left = action.timeout
            limits = extensions.get("timeout") or {}
            extensions["timeout"] = {
                k: (v if k == "pool" else (left if v is None else min(v, left))) for k, v in limits.items()
            } or {"connect": left, "read": left, "write": left, "pool": None}
        return self.module.Request(
            request.method, request.url, headers=headers, content=content, extensions=extensions
        )

    def what(self, endpoint: Endpoint | None, response: Any, streamed: bool) -> str:
        """How an answer is taken: ``"stream"`` (a chat stream, judged as it is read), ``"pass"`` (a 2xx of an
        endpoint genguard does not judge, handed over unread) or ``"read"``."""
        if response.status_code >= 300:
            return "read"
        event_stream = "text/event-stream" in response.headers.get("content-type", "")
        if event_stream and streamed:
            return "stream"
        if endpoint is None or event_stream:
            return "pass"
        return "read"

    def judge(self, endpoint: Endpoint | None, response: Any) -> Outcome:
        outcome: Outcome = classify_http(
            response.status_code,
            response.headers,
            response.content,
            endpoint=endpoint or "chat",
            secrets=self.secrets,
        )
        return outcome

    def transport_failure(self, exc: BaseException, endpoint: Endpoint | None) -> Outcome:
        return classify_exception(exc, endpoint=endpoint or "chat", secrets=self.secrets)

    def conclude(
        self, request: Any, response: Any, error: BaseException | None, final: Outcome, call: _Call | None
    ) -> Any:
        if call is not None:
            call.outcome = final
        if response is None:
            request.extensions[OUTCOME_KEY] = final
            assert error is not None
            # The SDK's own exception follows (APIConnectionError, APITimeoutError), as without genguard.
            raise error
        response.extensions[OUTCOME_KEY] = final
        return response

    def stream_response(self, request: Any, response: Any, loop: Loop, call: _Call | None) -> Any:
        reader = ChatStreamReader(status=response.status_code, headers=response.headers)
        # The bytes handed on are decoded already: the response must not claim an encoding or a length.
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length")
        ]
        stream = _stream_class(self.module, self.is_async)(self, response, reader, loop, call)
        outer = self.module.Response(
            response.status_code,
            headers=headers,
            stream=stream,
            request=request,
            extensions=dict(response.extensions),
        )
        stream.outer = outer
        return outer

    # -- the wrapped methods ---------------------------------------------------------------------------

    def call_options(self, kwargs: dict[str, Any]) -> _Options:
        if not any(name in kwargs for name in _CALL_OPTIONS):
            return self.options
        validate, labels = kwargs.pop("validate", None), kwargs.pop("labels", None)
        min_words, pattern = kwargs.pop("min_words", None), kwargs.pop("pattern", None)
        retry = _check_retry(kwargs.pop("retry", None))
        fallbacks = kwargs.pop("fallbacks", None)
        validators = _validators(validate, labels, min_words, pattern)
        return _Options(
            validators=validators or self.options.validators,
            retry=retry or self.options.retry,
            fallbacks=self.options.fallbacks if fallbacks is None else _check_fallbacks(fallbacks),
        )

    def method(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call_(*args: Any, **kwargs: Any) -> Any:
            call = _Call(self.call_options(kwargs))
            token = _CALL.set(call)
            try:
                result = fn(*args, **kwargs)
            finally:
                _CALL.reset(token)
            if inspect.isawaitable(result):
                # An async method (or a sync one returning a coroutine, as the SDK's argument checks do): its
                # request is sent when awaited, so the call's options must be in force then.
                return _awaited(call, result)
            _raise_if_failed(call)
            return result

        return call_


async def _awaited(call: _Call, pending: Awaitable[Any]) -> Any:
    token = _CALL.set(call)
    try:
        result = await pending
    finally:
        _CALL.reset(token)
    _raise_if_failed(call)
    return result


def _raise_if_failed(call: _Call) -> None:
    # Only what the SDK let through reaches here: for an error status it has raised its own exception.
    outcome = call.outcome
    if outcome is not None and not outcome.ok:
        raise failure_error(outcome)


def _json_body(content: bytes) -> dict[str, Any] | None:
    if not content or content[:1] != b"{":
        return None
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _end_stream(loop: Loop, outcome: Outcome) -> Outcome:
    # The stream's text already reached the caller: the attempt is final, the loop only records it.
    try:
        loop.send((outcome, True))
    except StopIteration as stop:
        final: Outcome = stop.value
        return final
    loop.close()
    return outcome


# -- the transports: genguard's loop under the SDK ---------------------------------------------------------


class _SyncTransport:
    def __init__(self, guard: _Guard) -> None:
        self.guard = guard

    def handle_request(self, request: Any) -> Any:
        guard = self.guard
        request.read()  # each attempt sends the body again
        loop, endpoint, body, call = guard.start(request)
        streamed = body is not None and body.get("stream") is True
        response: Any = None
        error: BaseException | None = None
        try:
            action = next(loop)
            while True:
                if isinstance(action, Sleep):
                    if action.seconds > 0 and not is_testing():
                        time.sleep(action.seconds)
                    action = loop.send(None)
                    continue
                response, error = None, None
                try:
                    response = guard.http.send(guard.attempt(request, action, body), stream=True)
                except guard.errors as exc:
                    error = exc
                    outcome = guard.transport_failure(exc, endpoint)
                else:
                    how = guard.what(endpoint, response, streamed)
                    if how == "stream":
                        return guard.stream_response(request, response, loop, call)
                    if how == "pass":
                        outcome = Outcome.success(status=response.status_code)
                    else:
                        response.read()
                        outcome = guard.judge(endpoint, response)
                action = loop.send((outcome, False))
        except StopIteration as stop:
            final: Outcome = stop.value
        except BaseException:
            loop.close()  # cut short (interrupted): the hooks hear of the end now
            if response is not None:
                response.close()
            raise
        return guard.conclude(request, response, error, final, call)

    def close(self) -> None:
        self.guard.http.close()


class _AsyncTransport:
    def __init__(self, guard: _Guard) -> None:
        self.guard = guard

    async def handle_async_request(self, request: Any) -> Any:
        guard = self.guard
        await request.aread()
        loop, endpoint, body, call = guard.start(request)
        streamed = body is not None and body.get("stream") is True
        response: Any = None
        error: BaseException | None = None
        try:
            action = next(loop)
            while True:
                if isinstance(action, Sleep):
                    if action.seconds > 0 and not is_testing():
                        await asyncio.sleep(action.seconds)
                    action = loop.send(None)
                    continue
                response, error = None, None
                try:
                    response = await guard.http.send(guard.attempt(request, action, body), stream=True)
                except guard.errors as exc:
                    error = exc
                    outcome = guard.transport_failure(exc, endpoint)
                else:
                    how = guard.what(endpoint, response, streamed)
                    if how == "stream":
                        return guard.stream_response(request, response, loop, call)
                    if how == "pass":
                        outcome = Outcome.success(status=response.status_code)
                    else:
                        await response.aread()
                        outcome = guard.judge(endpoint, response)
                action = loop.send((outcome, False))
        except StopIteration as stop:
            final: Outcome = stop.value
        except BaseException:
            loop.close()  # cut short (cancelled): the hooks hear of the end now
            if response is not None:
                await response.aclose()
            raise
        return guard.conclude(request, response, error, final, call)

    async def aclose(self) -> None:
        await self.guard.http.aclose()


class _GuardedStreamBase:
    """A chat stream's bytes on their way to the SDK, read by genguard as they pass; at the end, the loop
    records the attempt, and a failure is raised where the SDK would have ended quietly."""

    def __init__(
        self, guard: _Guard, inner: Any, reader: ChatStreamReader, loop: Loop, call: _Call | None
    ) -> None:
        self.guard = guard
        self.inner = inner
        self.reader = reader
        self.loop = loop
        self.call = call
        self.outer: Any = None
        self.final: Outcome | None = None
        # The exception the caller was already handling when reading began (reading inside an except block):
        # at close, only another one in flight means the stream is being left because of it.
        self.ambient: BaseException | None = None

    def _leaving(self) -> bool:
        current = sys.exc_info()[1]
        return current is not None and current is not self.ambient

    def _settle(self, outcome: Outcome, *, record: bool = True) -> Outcome:
        final = _end_stream(self.loop, outcome) if record else outcome
        self.final = final
        if self.outer is not None:
            self.outer.extensions[OUTCOME_KEY] = final
            # The SDK's own exception raised from the stream (an error event) names the request only.
            self.outer.request.extensions[OUTCOME_KEY] = final
        if self.call is not None:
            self.call.outcome = final
        return final

    def _on_error(self, exc: BaseException) -> Outcome:
        return self._settle(self.reader.finish(transport_error=self.guard.transport_failure(exc, "chat")))

    def _on_end(self) -> Outcome:
        return self._settle(self.reader.finish())

    def _on_close(self) -> Outcome | None:
        """The SDK closes the response when it reads ``[DONE]`` (newer SDKs stop there without reading on):
        judge the stream then. A stream the caller left before its end is only recorded, never raised; nor is
        a failure while an exception (the SDK's own, for an error event; the caller's) is on its way out."""
        if self.final is not None:
            return None
        if self.reader.done:
            return self._on_end()
        self.loop.close()
        text = self.reader.text or None
        self._settle(
            Outcome.failure("incomplete_stream", text=text, message=_CLOSED_EARLY, retryable=False),
            record=False,
        )
        return None


class _SyncGuardedStream(_GuardedStreamBase):
    def __iter__(self) -> Iterator[bytes]:
        self.ambient = sys.exc_info()[1]
        feed = self.reader.feed
        try:
            for chunk in self.inner.iter_bytes():
                feed(chunk)
                yield chunk
        except self.guard.errors as exc:
            if self.final is not None:
                raise
            if self._on_error(exc).ok:  # the generation had finished: the drop after it lost nothing
                return
            raise  # the SDK's own APIConnectionError/APITimeoutError follows; check() on it gives the Outcome
        if self.final is None:
            final = self._on_end()
            if not final.ok:
                raise failure_error(final)

    def close(self) -> None:
        try:
            final = self._on_close()
            if final is not None and not final.ok and not self._leaving():
                raise failure_error(final)
        finally:
            self.inner.close()


class _AsyncGuardedStream(_GuardedStreamBase):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.ambient = sys.exc_info()[1]
        feed = self.reader.feed
        try:
            async for chunk in self.inner.aiter_bytes():
                feed(chunk)
                yield chunk
        except self.guard.errors as exc:
            if self.final is not None:
                raise
            if self._on_error(exc).ok:
                return
            raise
        if self.final is None:
            final = self._on_end()
            if not final.ok:
                raise failure_error(final)

    async def aclose(self) -> None:
        try:
            final = self._on_close()
            if final is not None and not final.ok and not self._leaving():
                raise failure_error(final)
        finally:
            await self.inner.aclose()


@functools.cache
def _transport_class(module: ModuleType, is_async: bool) -> Any:
    # The SDK's HTTP client wants its own module's base classes (httpx or httpx2): made once per module.
    if is_async:
        return type("GenguardAsyncTransport", (_AsyncTransport, module.AsyncBaseTransport), {})
    return type("GenguardTransport", (_SyncTransport, module.BaseTransport), {})


@functools.cache
def _stream_class(module: ModuleType, is_async: bool) -> Any:
    if is_async:
        return type("GenguardAsyncStream", (_AsyncGuardedStream, module.AsyncByteStream), {})
    return type("GenguardStream", (_SyncGuardedStream, module.SyncByteStream), {})


# -- the wrapped client ----------------------------------------------------------------------------------


def _is_resource(value: object) -> bool:
    # The SDK's resources (client.chat, .completions, .images...), their with_raw_response and
    # with_streaming_response views, and the client's own such views.
    cls = type(value)
    return cls.__module__.startswith("openai.resources.") or (
        cls.__module__.startswith("openai.")
        and cls.__name__.endswith(("WithRawResponse", "WithStreamedResponse"))
    )


class _Guarded:
    """A wrapped SDK client or one of its resources: every attribute is the SDK's; methods of resources take
    genguard's per-call options and raise genguard's failures for what the SDK lets through."""

    __slots__ = ("_genguard", "_target")

    _genguard: _Guard
    _target: Any

    def __init__(self, target: Any, guard: _Guard) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_genguard", guard)

    def __getattr__(self, name: str) -> Any:
        target = self._target
        value = getattr(target, name)
        if name in ("with_options", "copy") and not _is_resource(target):
            return functools.partial(_copy, self._genguard)
        if _is_resource(value):
            return _Guarded(value, self._genguard)
        if (
            callable(value)
            and not name.startswith("_")
            and _is_resource(target)
            and not isinstance(value, type)
        ):
            return self._genguard.method(value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    @property  # type: ignore[misc]
    def __class__(self) -> type[Any]:
        # isinstance(wrapped, openai.OpenAI) holds, as libraries that take an SDK client check it.
        return type(self._target)

    def __dir__(self) -> list[str]:
        return dir(self._target)

    def __repr__(self) -> str:
        return f"genguard.wrap({self._target!r})"

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._target.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._target.close()


def _build(original: Any, keys: _Keys, options: _Options, hooks: tuple[Hook, ...], *, is_async: bool) -> Any:
    guard = _Guard(original, keys, options, hooks, is_async=is_async)
    module = guard.module
    transport = _transport_class(module, is_async)(guard)
    http_cls = module.AsyncClient if is_async else module.Client
    http = http_cls(transport=transport, timeout=guard.http.timeout)
    # max_retries=0: genguard's policy retries, once; the SDK retrying too would multiply the attempts.
    inner = original.with_options(http_client=http, max_retries=0)
    return _Guarded(inner, guard)


def _copy(guard: _Guard, **options: Any) -> Any:
    """``with_options``/``copy`` of a wrapped client: the SDK's copy, wrapped the same way. ``max_retries=N``
    becomes genguard's policy with N + 1 attempts, as the SDK counts them."""
    max_retries = options.pop("max_retries", None)
    settings = guard.options
    if max_retries is not None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a whole number of at least 0, got {max_retries!r}")
        from dataclasses import replace

        settings = replace(settings, retry=replace(settings.retry, max_attempts=max_retries + 1, history=()))
    original = guard.original.with_options(**options)
    keys = _Keys.of(original) if guard.keys.own else guard.keys
    return _build(original, keys, settings, guard.hooks, is_async=guard.is_async)


def wrap(
    client: _C,
    *,
    api_key: str | Sequence[str] | None = None,
    retry: RetryPolicy | None = None,
    fallbacks: Sequence[str] = (),
    validate: Any = None,
    labels: Sequence[str] | None = None,
    min_words: int | None = None,
    pattern: str | None = None,
    hooks: Sequence[Hook] = (),
) -> _C:
    """``client`` (an ``openai.OpenAI`` or ``openai.AsyncOpenAI``) with genguard in charge of its calls.

    The result has the client's attributes and methods and returns the SDK's own types. Underneath, every
    request runs genguard's retry loop (``retry``, default :class:`~genguard.RetryPolicy`; the SDK's own
    retries are off), rotates through ``api_key`` (several keys; default: the client's own key, not rotated)
    on ``auth_failed``/``quota_exceeded``, and moves to the next of ``fallbacks`` on the policy's
    ``fallback_on`` codes. Chat answers are checked by ``validate``, ``labels``, ``min_words`` and ``pattern``
    (as :meth:`genguard.Client.chat` checks them). ``hooks`` receive each attempt's record.

    The SDK still raises its own exceptions for HTTP errors and broken connections (after genguard's
    retries); :func:`check` on one gives its Outcome with every attempt. What the SDK would let through raises
    genguard's failure carrying the Outcome: :class:`~genguard.SoftFailure` for a filtered, truncated or empty
    answer or a stream that ended without a finish (raised from the iteration where the stream ends),
    :class:`~genguard.SilentFailure` for a validator's rejection, :class:`~genguard.HardFailure` for a 2xx
    that is not a valid response. Every method of a resource takes the same options per call
    (``validate=``, ``labels=``, ``min_words=``, ``pattern=``, ``retry=``, ``fallbacks=``).

    >>> import openai, genguard  # doctest: +SKIP
    >>> client = genguard.wrap(openai.OpenAI(base_url=url, api_key="sk-..."), fallbacks=["gpt-4o-mini"])  # doctest: +SKIP
    >>> client.chat.completions.create(model="gpt-4o", messages=msgs, labels=["yes", "no"]).choices[0]  # doctest: +SKIP
    """
    openai: Any = sys.modules.get("openai")
    if isinstance(client, _Guarded):
        raise TypeError("this client is already wrapped by genguard.wrap; wrap the SDK client once")
    if openai is None or not isinstance(client, openai.OpenAI | openai.AsyncOpenAI):
        raise TypeError(
            f"genguard.wrap takes an openai.OpenAI or openai.AsyncOpenAI client, got {type(client).__name__}"
            " (for genguard's own client use genguard.Client)"
        )
    for i, hook in enumerate(hooks):
        if not callable(hook):
            raise TypeError(f"hooks[{i}] must be a callable that takes a genguard.Attempt, got {hook!r}")
    keys = _Keys(resolve_keys(api_key)) if api_key is not None else _Keys.of(client)
    options = _Options(
        validators=_validators(validate, labels, min_words, pattern),
        retry=_check_retry(retry) or RetryPolicy(),
        fallbacks=_check_fallbacks(fallbacks),
    )
    wrapped: _C = _build(client, keys, options, tuple(hooks), is_async=isinstance(client, openai.AsyncOpenAI))
    return wrapped


# -- check: what an application already holds ------------------------------------------------------------

# The SDK's result types, by class name, and the endpoint each comes from.
_TYPES: dict[str, Endpoint] = {
    "ChatCompletion": "chat",
    "ImagesResponse": "image",
    "Video": "video",
    "CreateEmbeddingResponse": "embedding",
    "ModerationCreateResponse": "moderation",
}


def _as_dict(model: Any) -> Any:
    # What came over the wire: the fields the server set, under their API names.
    to_dict = getattr(model, "to_dict", None)
    if callable(to_dict):
        return to_dict(mode="json")
    return model.model_dump(mode="json", exclude_unset=True, by_alias=True)


def _sse(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data, default=str) + b"\n\n"


def _read_chunks(chunks: Iterable[Any], secrets: tuple[str, ...]) -> Outcome:
    reader = ChatStreamReader(secrets=secrets)
    openai: Any = sys.modules.get("openai")
    try:
        for chunk in chunks:
            reader.feed(_sse(chunk if isinstance(chunk, dict) else _as_dict(chunk)))
    except FailureError as exc:  # a stream of a wrapped client, which judged itself
        return exc.outcome
    except Exception as exc:
        if openai is None or not isinstance(exc, openai.APIError):
            raise
        if isinstance(exc, openai.APIConnectionError):
            return reader.finish(transport_error=classify_exception(exc, secrets=secrets))
        if isinstance(exc, openai.APIStatusError):
            return classify_exception(exc, secrets=secrets)
        # An error event inside the stream, which the SDK raised: read as the event it was.
        reader.feed(_sse({"error": getattr(exc, "body", None) or {"message": str(exc)}}))
    return reader.finish()


def _kept(*holders: Any) -> Outcome | None:
    """The Outcome a wrapped client left on a response or request, if one of ``holders`` has it."""
    for holder in holders:
        extensions = getattr(holder, "extensions", None)
        if isinstance(extensions, Mapping):
            outcome = extensions.get(OUTCOME_KEY)
            if isinstance(outcome, Outcome):
                return outcome
    return None


def _response_of(obj: Any) -> Any:
    """The httpx(2) response behind an SDK stream, a raw response or an exception, if it has one."""
    for name in ("http_response", "response"):
        value = getattr(obj, name, None)
        if value is not None and hasattr(value, "status_code") and hasattr(value, "headers"):
            return value
    return None


_ACCEPTED = (
    "a ChatCompletion, an SDK Stream (finished, or unread) or the list of chunks it yielded, an "
    "ImagesResponse, a Video, a CreateEmbeddingResponse, a raw response (with_raw_response), an httpx "
    "response, an SDK exception, a dict, or an Outcome"
)


def check(obj: object, *, secrets: Iterable[str] = ()) -> Outcome:
    """The :class:`~genguard.Outcome` of something an application on the openai SDK already holds.

    ``obj`` may be a ``ChatCompletion`` (a filtered, truncated or empty answer is a failure here, where the
    SDK returned it as a success), an SDK ``Stream`` (an unread one is read to its end; a finished one from a
    :func:`wrap`-ped client gives the Outcome it ended with) or the chunks a stream yielded, an
    ``ImagesResponse``, a ``Video``, a ``CreateEmbeddingResponse``, a raw response from ``with_raw_response``,
    an httpx response, an SDK exception (``APIStatusError`` by its response, ``APIConnectionError`` and
    ``APITimeoutError`` as transport failures), or a response body as a dict. An object that came through a
    wrapped client gives the call's whole Outcome, attempts included. ``secrets`` are masked in messages.
    Anything else raises ``TypeError`` naming what it got.

    >>> check({"choices": [{"message": {"content": "Hi"}, "finish_reason": "length"}]}).code
    'truncated'
    >>> check([{"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}]).code
    'incomplete_stream'
    """
    masked = tuple(secrets)
    if isinstance(obj, Outcome):
        return obj
    if isinstance(obj, FailureError):
        return obj.outcome
    if isinstance(obj, BaseException):
        kept = _kept(_response_of(obj), getattr(obj, "request", None))
        if kept is not None:
            return kept
        completion = getattr(obj, "completion", None)
        if completion is not None and not isinstance(completion, BaseException):
            # LengthFinishReasonError, ContentFilterFinishReasonError: chat.completions.parse() raises them
            # with the completion they could not parse.
            return check(completion, secrets=masked)
        return classify_exception(obj, secrets=masked)
    if isinstance(obj, dict):
        return classify_http(200, None, orjson.dumps(obj, default=str), secrets=masked)
    if isinstance(obj, list | tuple):
        return _read_chunks(obj, masked)
    if isinstance(obj, str | bytes | bytearray):
        raise TypeError(
            f"genguard.check reads objects, not text ({type(obj).__name__}): for a response body use "
            "genguard.classify_http(status, headers, body), for a streamed body genguard.read_chat_stream(body)"
        )
    names = [cls.__name__ for cls in type(obj).__mro__]
    if "Stream" in names or "AsyncStream" in names:
        return _check_stream(obj, masked, is_async="AsyncStream" in names)
    if "ChatCompletionChunk" in names:
        return _read_chunks([obj], masked)
    endpoint = next((_TYPES[n] for n in names if n in _TYPES), None)
    if endpoint is not None or (hasattr(obj, "model_dump") and type(obj).__module__.startswith("openai.")):
        body = orjson.dumps(_as_dict(obj), default=str)
        outcome: Outcome = classify_http(200, None, body, endpoint=endpoint, secrets=masked)
        return outcome
    response = _response_of(obj)
    if response is None and hasattr(obj, "status_code") and hasattr(obj, "headers") and hasattr(obj, "read"):
        response = obj  # an httpx or httpx2 response
    if response is not None:
        kept = _kept(response)
        if kept is not None:
            return kept
        if inspect.iscoroutinefunction(getattr(response, "aread", None)) and not _is_read(response):
            raise TypeError(
                "genguard.check got an async response whose body was not read yet: await response.aread() first"
            )
        outcome = classify_http(response.status_code, response.headers, response.read(), secrets=masked)
        return outcome
    raise TypeError(
        f"genguard.check cannot read a {type(obj).__module__}.{type(obj).__qualname__}; it reads {_ACCEPTED}"
    )


def _is_read(response: Any) -> bool:
    try:
        response.content  # noqa: B018 - raises when the body was not read
    except Exception:
        return False
    return True


def _check_stream(stream: Any, secrets: tuple[str, ...], *, is_async: bool) -> Outcome:
    response = getattr(stream, "response", None)
    kept = _kept(response)
    if kept is not None:
        return kept
    if response is not None and (response.is_stream_consumed or response.is_closed):
        raise ValueError(
            "genguard.check got an SDK Stream that was already read, and the SDK keeps none of its chunks: "
            "collect the chunks as you read them and pass the list (genguard.check(chunks)), pass the stream "
            "before reading it (check reads it for you), or use a client made by genguard.wrap, whose streams "
            "keep their Outcome"
        )
    if is_async:
        raise TypeError(
            "genguard.check cannot read an unread AsyncStream without awaiting: read it (async for chunk in "
            "stream) collecting the chunks and pass the list, or use a client made by genguard.wrap"
        )
    outcome = _read_chunks(stream, secrets)
    # A wrapped client's stream, read here, kept the call's whole Outcome (attempts, history) as it ended.
    return _kept(response) or outcome
