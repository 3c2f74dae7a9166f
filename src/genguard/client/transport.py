"""The one boundary where transport exceptions become failures, as httpx's ``map_httpcore_exceptions`` is.

Every place that sends (the clients, streams, downloads, ``genguard doctor``) catches :data:`TRANSPORT_ERRORS`
and nothing wider, and turns what it caught into an :class:`~genguard.Outcome` with
:func:`classify_exception`: refused, reset, closed mid-body, DNS or TLS is ``connection_error``; a connect,
read, write or pool timeout is ``timeout``. Anything else is a bug and propagates. The async wire on aiohttp
raises the matching httpx exceptions, so this table is the only one. The same table reads ``httpx2``'s twins
of these exceptions (what newer openai SDKs send with), and the official openai SDK's own exceptions:
``APIStatusError`` by its response, ``APITimeoutError`` and ``APIConnectionError`` as transport failures, an
``APIError`` raised from inside a stream as ``stream_error``.

>>> import httpx
>>> classify_exception(httpx.ConnectError("[Errno 111] Connection refused")).code
'connection_error'
>>> classify_exception(httpx.ReadTimeout("timed out"), endpoint="video").retryable
True
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import httpx
import orjson

from ..core.outcome import Outcome
from ..core.secrets import redact
from ..core.taxonomy import Endpoint

__all__ = ["TRANSPORT_ERRORS", "classify_exception", "never_connected"]

TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TransportError,
    httpx.DecodingError,
    httpx.TooManyRedirects,
)
"""What a send may raise when the request, not the code, failed: catch these, and only these."""

# The step that failed, which the exception's own text (often just an errno) does not say. By class name, so
# that httpx2's classes of the same names read the same.
_WHAT: tuple[tuple[str, str], ...] = (
    ("ConnectTimeout", "could not connect in time"),
    ("ReadTimeout", "the server sent nothing for too long"),
    ("WriteTimeout", "could not send the request in time"),
    ("PoolTimeout", "no free connection in the pool in time"),
    ("ConnectError", "could not connect"),
    ("ReadError", "the connection failed while reading"),
    ("WriteError", "the connection failed while sending"),
    ("RemoteProtocolError", "the server broke the HTTP protocol (closed mid-answer?)"),
)


def never_connected(message: str | None) -> bool:
    """Whether a transport failure's message (as :func:`classify_exception` wrote it: the exception's class name
    first) says no connection was made, so that no byte of the request reached the server: refused, unresolved,
    or not connected in time.

    >>> never_connected(classify_exception(httpx.ConnectError("[Errno 111] Connection refused")).message)
    True
    >>> never_connected(classify_exception(ConnectionRefusedError(111, "Connection refused")).message)
    True
    >>> never_connected(classify_exception(httpx.ReadTimeout("timed out")).message)
    False
    """
    return message is not None and message.startswith(
        ("ConnectError:", "ConnectTimeout:", "ConnectionRefusedError:")
    )


def transport_errors(module: ModuleType) -> tuple[type[Exception], ...]:
    """:data:`TRANSPORT_ERRORS` of an httpx-like ``module`` (``httpx``, or ``httpx2`` which newer openai
    SDKs send with): what a send through that module may raise when the request, not the code, failed."""
    return (module.TransportError, module.DecodingError, module.TooManyRedirects)


def _httpx_family(exc: BaseException) -> ModuleType | None:
    # httpx2 is looked up, never imported: an exception of it exists only when something imported it.
    for name in ("httpx", "httpx2"):
        module = httpx if name == "httpx" else sys.modules.get(name)
        if module is not None and isinstance(exc, module.HTTPError):
            return module
    return None


def classify_exception(
    exc: BaseException, *, endpoint: Endpoint = "chat", secrets: Iterable[str] = ()
) -> Outcome:
    """The Outcome of a transport failure: ``timeout`` for timeouts, ``connection_error`` for refused, reset,
    closed or broken connections, ``invalid_response`` for an undecodable body or a redirect loop. The message
    names what failed and where (the URL without query or credentials). The official openai SDK's exceptions
    are read too: an ``APIStatusError`` by its response (as :func:`genguard.classify_http` reads it), an
    ``APITimeoutError`` as ``timeout``, an ``APIConnectionError`` as ``connection_error``, an ``APIError`` the
    SDK raised from an error inside a stream as ``stream_error``. Anything else raises ``TypeError``: a bug
    must not pass for a network fault.

    >>> import httpx
    >>> classify_exception(httpx.ConnectError("[Errno 111] Connection refused")).code
    'connection_error'
    """
    family = _httpx_family(exc)
    if family is None:
        sdk = _openai_error(exc, endpoint, secrets)
        if sdk is not None:
            return sdk
    if isinstance(exc, TimeoutError) or (family is not None and isinstance(exc, family.TimeoutException)):
        code = "timeout"
    elif family is not None and isinstance(exc, family.DecodingError | family.TooManyRedirects):
        code = "invalid_response"
    elif isinstance(exc, ConnectionError) or (family is not None and isinstance(exc, family.TransportError)):
        code = "connection_error"
    else:
        raise TypeError(f"not a transport failure: {type(exc).__name__}: {exc}") from exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    what = next((v for k, v in _WHAT if k in names), None)
    detail = str(exc).strip()
    parts = [type(exc).__name__]
    target = _target(exc)
    if what:
        parts.append(f"{what} to {target}" if target else what)
    elif target:
        parts.append(target)
    if detail:
        parts.append(detail)
    message = redact(": ".join(parts)[:1000], tuple(secrets))
    return Outcome.failure(code, endpoint=endpoint, message=message)


def _openai_error(exc: BaseException, endpoint: Endpoint, secrets: Iterable[str]) -> Outcome | None:
    """The Outcome of an exception of the official openai SDK, ``None`` for any other. The SDK is looked up,
    never imported: its exceptions exist only when the application imported it."""
    openai: Any = sys.modules.get("openai")
    if openai is None or not isinstance(exc, openai.OpenAIError):
        return None
    secrets = tuple(secrets)
    if isinstance(exc, openai.APIStatusError):
        from ..core.classify import classify_http

        response = exc.response
        try:
            body = response.content
        except Exception:  # a streamed response nobody read: the status and headers still say much
            body = b""
        return classify_http(response.status_code, response.headers, body, endpoint=endpoint, secrets=secrets)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        if cause is not None and _httpx_family(cause) is not None:
            return classify_exception(cause, endpoint=endpoint, secrets=secrets)
        code = "timeout" if isinstance(exc, openai.APITimeoutError) else "connection_error"
        target = _target(exc)
        message = type(exc).__name__ + (f": {target}" if target else "") + f": {exc}"
        return Outcome.failure(code, endpoint=endpoint, message=redact(message[:1000], secrets))
    if isinstance(exc, openai.APIError) and getattr(exc, "body", None) is not None:
        # The SDK raises a bare APIError for an error event inside a 2xx stream: read it as the stream reader
        # reads that event, so the code and verdict are the embedded error's own.
        from ..core.chat_stream import ChatStreamReader

        reader = ChatStreamReader()
        reader.feed(b"data: " + orjson.dumps({"error": exc.body}, default=str) + b"\n\n")
        outcome = reader.finish()
        return outcome.replace(message=redact(outcome.message, secrets)) if outcome.message else outcome
    raise TypeError(
        f"not a failure genguard can read: {type(exc).__name__}: {exc} (an openai SDK exception with no "
        "response, no connection failure and no error body)"
    ) from exc


def _target(exc: BaseException) -> str | None:
    """Where the failed request was going, without query or credentials: a refused connection to a default
    or mistyped base URL is only fixable when the message says which URL it was."""
    try:
        url = exc.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is attached
        return None
    try:
        host = f"[{url.host}]" if ":" in url.host else url.host
        port = f":{url.port}" if url.port else ""
        return f"{url.scheme}://{host}{port}{url.path}" if host else None
    except AttributeError:
        return None
