"""A captured exchange in, its :class:`~genguard.Outcome` out: the diagnosis behind ``genguard explain``.

Pure, like the rest of the failure model: whoever holds a parsed :class:`~genguard.Exchange` (the CLI, the
batch runner, the proxy) gets the same verdict. A stream is read as a stream, anything else by
:func:`~genguard.classify_http`; a bare body with no status is judged an error only when it is one.

>>> from genguard.core.capture import read_captures
>>> [x] = read_captures(b'{"error": {"code": "rate_limit_exceeded", "message": "slow down"}}', source="e.json")
>>> o = explain_exchange(x)
>>> (o.code, o.status)
('rate_limited', None)
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from .capture import Exchange, is_sse
from .chat_stream import read_chat_stream
from .classify import classify_http
from .error_body import is_error_body
from .error_verdict import classify_error
from .media_body import detect_media
from .outcome import Outcome
from .taxonomy import Endpoint
from .validate import Validator, apply_validators

__all__ = ["explain_exchange"]


def explain_exchange(
    exchange: Exchange,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    endpoint: Endpoint | None = None,
    validators: tuple[Validator, ...] = (),
) -> Outcome:
    """The Outcome of one captured exchange; ``status``, ``headers`` and ``endpoint`` override the capture's,
    and ``validators`` judge an ok output.

    >>> from genguard.core.capture import read_captures
    >>> [x] = read_captures(b'{"choices": [{"message": {"content": "hi"}, "finish_reason": "length"}]}',
    ...                     source="a.json")
    >>> explain_exchange(x).code
    'truncated'
    """
    merged: dict[str, str] = dict(exchange.headers)
    merged.update(headers or {})
    code = status if status is not None else exchange.status
    body = exchange.body
    ctype = merged.get("content-type", "").split(";", 1)[0].strip().lower()
    where = endpoint or exchange.endpoint_hint
    if code is None and exchange.url is not None and not body.strip():
        # Only a HAR entry has a URL but no status: status 0, the browser or proxy never got a response.
        return Outcome.failure(
            "connection_error",
            endpoint=where or "chat",
            message="the capture holds no response: the connection failed or was aborted before one came",
        )
    if ctype == "text/event-stream" or (ctype in ("", "text/plain") and is_sse(body)):
        outcome = read_chat_stream(body, status=code if code is not None else 200, headers=merged)
    else:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        where = where or detect_media(doc) or "chat"
        if code is None and is_error_body(doc):
            # A bare error body: its status is unknown, not 200, so the verdict rests on what it says.
            outcome = classify_error(None, merged, body, endpoint=where)
        else:
            outcome = classify_http(200 if code is None else code, merged, body, endpoint=where)
    return apply_validators(outcome, validators) if validators else outcome
