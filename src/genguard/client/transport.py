"""The one boundary where transport exceptions become failures, as httpx's ``map_httpcore_exceptions`` is.

Every place that sends (the clients, streams, downloads, ``genguard doctor``) catches :data:`TRANSPORT_ERRORS`
and nothing wider, and turns what it caught into an :class:`~genguard.Outcome` with
:func:`classify_exception`: refused, reset, closed mid-body, DNS or TLS is ``connection_error``; a connect,
read, write or pool timeout is ``timeout``. Anything else is a bug and propagates. The async wire on aiohttp
raises the matching httpx exceptions, so this table is the only one.

>>> import httpx
>>> classify_exception(httpx.ConnectError("[Errno 111] Connection refused")).code
'connection_error'
>>> classify_exception(httpx.ReadTimeout("timed out"), endpoint="video").retryable
True
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from ..core.outcome import Outcome
from ..core.secrets import redact
from ..core.taxonomy import Endpoint

__all__ = ["TRANSPORT_ERRORS", "classify_exception"]

TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TransportError,
    httpx.DecodingError,
    httpx.TooManyRedirects,
)
"""What a send may raise when the request, not the code, failed: catch these, and only these."""

# The step that failed, which the exception's own text (often just an errno) does not say.
_WHAT: tuple[tuple[type[BaseException], str], ...] = (
    (httpx.ConnectTimeout, "could not connect in time"),
    (httpx.ReadTimeout, "the server sent nothing for too long"),
    (httpx.WriteTimeout, "could not send the request in time"),
    (httpx.PoolTimeout, "no free connection in the pool in time"),
    (httpx.ConnectError, "could not connect"),
    (httpx.ReadError, "the connection failed while reading"),
    (httpx.WriteError, "the connection failed while sending"),
    (httpx.RemoteProtocolError, "the server broke the HTTP protocol (closed mid-answer?)"),
)


def classify_exception(
    exc: BaseException, *, endpoint: Endpoint = "chat", secrets: Iterable[str] = ()
) -> Outcome:
    """The Outcome of a transport failure: ``timeout`` for timeouts, ``connection_error`` for refused, reset,
    closed or broken connections, ``invalid_response`` for an undecodable body or a redirect loop. The message
    names what failed and where (the URL without query or credentials). Anything else raises ``TypeError``:
    a bug must not pass for a network fault.

    >>> import httpx
    >>> classify_exception(httpx.ConnectError("[Errno 111] Connection refused")).code
    'connection_error'
    """
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        code = "timeout"
    elif isinstance(exc, httpx.DecodingError | httpx.TooManyRedirects):
        code = "invalid_response"
    elif isinstance(exc, httpx.TransportError | ConnectionError):
        code = "connection_error"
    else:
        raise TypeError(f"not a transport failure: {type(exc).__name__}: {exc}") from exc
    what = next((v for k, v in _WHAT if isinstance(exc, k)), None)
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
