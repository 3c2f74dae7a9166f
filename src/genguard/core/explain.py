"""A captured exchange in, its :class:`~genguard.Outcome` out: the diagnosis behind ``genguard explain``.

Pure, like the rest of the failure model: whoever holds a parsed :class:`~genguard.Exchange` (the CLI, the
batch runner, the proxy) gets the same verdict. A stream is read as a stream, in pieces; anything else by
:func:`~genguard.classify_http`. A bare body with no status is judged an error only when it is one, a bare
page that is not JSON keeps its status unknown, and a JSON body that does not parse (cut short when it was
saved) is judged by its status with a message that says so.

>>> from genguard.core.capture import read_captures
>>> [x] = read_captures(b'{"error": {"code": "rate_limit_exceeded", "message": "slow down"}}', source="e.json")
>>> o = explain_exchange(x)
>>> (o.code, o.status)
('rate_limited', None)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from .capture import Exchange, is_sse, parse_json_body
from .chat_stream import ChatStreamReader
from .classify import classify_document, classify_http
from .error_body import is_error_body, read_error
from .error_verdict import classify_error, invalid_response
from .headers import request_id
from .media_body import detect_media
from .moderation_body import is_moderation
from .outcome import Outcome
from .secrets import redact
from .taxonomy import Endpoint
from .validate import Validator, apply_validators

__all__ = ["explain_exchange"]

# The provider's message in a JSON body cut short: enough of it is usually there to read.
_PARTIAL_MESSAGE = re.compile(rb'"message"\s*:\s*"((?:[^"\\]|\\.){1,400})')
_SHOWN = 200
_JSON_START = re.compile(rb"\s*[{\[]")


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
    streamed = exchange.body_chunks is not None
    parsed = exchange.parsed
    if parsed is not None and (
        ctype == "text/event-stream" or not (code is None or 200 <= code < 300) or is_error_body(parsed.doc)
    ):
        # An error, or a body the overrides make a stream: read as any other, from its bytes (rarely large).
        body, parsed = parsed.read(), None
    if parsed is not None:
        # A large JSON body already parsed from its file: judged from that, its bytes never held.
        where = where or _kind_of(parsed.doc) or "chat"
        outcome = classify_document(200 if code is None else code, merged, parsed.doc, endpoint=where)
        return apply_validators(outcome, validators) if validators else outcome
    if code is None and exchange.url is not None and not streamed and (not body or body.isspace()):
        # Only a HAR entry has a URL but no status: status 0, the browser or proxy never got a response.
        return Outcome.failure(
            "connection_error",
            endpoint=where or "chat",
            message="the capture holds no response: the connection failed or was aborted before one came",
        )
    if streamed or ctype == "text/event-stream" or (ctype in ("", "text/plain") and is_sse(body)):
        outcome = _read_stream(exchange, 200 if code is None else code, merged)
    else:
        outcome = _read_body(body, code, merged, where)
    return apply_validators(outcome, validators) if validators else outcome


def _read_stream(exchange: Exchange, status: int, headers: Mapping[str, str]) -> Outcome:
    # Fed in pieces, from the file when it was left there: a stream of any length takes the memory of its
    # text, not of its bytes.
    reader = ChatStreamReader(status=status, headers=headers)
    for piece in exchange.iter_body():
        reader.feed(piece)
    # As read_chat_stream does: the file may have lost the blank line after the last event the server sent.
    reader.feed(b"\n\n")
    return reader.finish()


def _read_body(body: bytes, code: int | None, headers: Mapping[str, str], where: Endpoint | None) -> Outcome:
    try:
        error, media, body = _shape(body)
    except orjson.JSONDecodeError as exc:
        if _JSON_START.match(body):
            return _broken_json(body, code, headers, where or "chat", exc)
        if code is None:
            # A page saved on its own (a gateway's, a login's) says nothing of its status: it stays unknown.
            said = read_error(body).message
            message = "a body that is not JSON" + (f": {redact(said)}" if said else " (empty)")
            return invalid_response(message, None, request_id(headers), where or "chat")
        return classify_http(code, headers, body, endpoint=where or "chat")
    where = where or media or "chat"
    if code is None and error:
        # A bare error body: its status is unknown, not 200, so the verdict rests on what it says.
        return classify_error(None, headers, body, endpoint=where)
    return classify_http(200 if code is None else code, headers, body, endpoint=where)


def _shape(body: bytes) -> tuple[bool, Endpoint | None, bytes]:
    """Whether ``body`` is an error body, which media endpoint its shape names, and the bytes to read it
    from (repaired when they were not UTF-8). The parsed document is dropped here, before the reader parses
    the body again: a large body is held parsed once, not twice."""
    doc, body = parse_json_body(body)
    return is_error_body(doc), _kind_of(doc), body


def _kind_of(doc: object) -> Endpoint | None:
    """The endpoint a 2xx body's shape names when it is not a chat answer: a media answer or task, or a
    moderation (``None``: read it as a chat answer)."""
    return detect_media(doc) or ("moderation" if is_moderation(doc) else None)


def _broken_json(
    body: bytes, code: int | None, headers: Mapping[str, str], where: Endpoint, exc: orjson.JSONDecodeError
) -> Outcome:
    """A body that starts as JSON but does not parse: the verdict comes from the status (an error status's
    code, ``invalid_response`` for a 2xx), the message says the body was cut short and shows what it held."""
    found = _PARTIAL_MESSAGE.search(body[:65536])
    if found is not None:
        said = found.group(1).decode("utf-8", "replace").replace('\\"', '"') + "…"
    else:
        said = body[:_SHOWN].decode("utf-8", "replace").strip() + ("…" if len(body) > _SHOWN else "")
    reason = str(exc).split(":", 1)[0]
    cut = "end of data" in reason or "EOF" in reason
    how = (
        f"the body was cut short: its JSON stops unfinished after {len(body)} bytes"
        if cut
        else f"the body is not valid JSON ({reason})"
    )
    message = redact(f"{said} [{how}]")
    if code is None or 200 <= code < 300:
        return invalid_response(message, code, request_id(headers), where)
    return classify_error(code, headers, body, endpoint=where).replace(message=message)
