"""Status, headers and body in; one :class:`~genguard.Outcome` out: the dispatcher over every reader.

An error status, or a 2xx body that is an error envelope, goes to the error verdict
(:func:`~genguard.core.error_verdict.classify_error`); any other 2xx body is parsed once and handed to the
reader of its endpoint (chat, images, a media task), found from the body when ``endpoint`` is not given.
Transport exceptions are the client's to map (:func:`genguard.classify_exception`): this module reads bytes.

>>> classify_http(429, {"retry-after": "2"}, b'{"error": {"code": "rate_limit_exceeded", "message": "slow down"}}').code
'rate_limited'
>>> classify_http(200, {}, b'{"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]}').code
'empty_output'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from .chat_body import classify_chat_body
from .embedding_body import embedding_outcome
from .error_body import is_error_body, read_error
from .error_verdict import classify_error, invalid_response
from .headers import request_id
from .image_body import image_outcome
from .json_values import is_map
from .media_body import detect_media, parse_task, task_outcome
from .moderation_body import is_moderation, moderation_outcome
from .outcome import Outcome, RawResponse
from .secrets import redact
from .taxonomy import Endpoint

__all__ = ["classify_document", "classify_http"]


def classify_http(
    status: int,
    headers: Mapping[str, str] | None,
    body: bytes,
    *,
    endpoint: Endpoint | None = None,
    secrets: Iterable[str] = (),
    keep_raw: bool = False,
) -> Outcome:
    """The Outcome of any HTTP exchange: an error status, a 2xx that is not a valid response, or a chat,
    image or video-task body judged on its content. ``endpoint`` ``None`` detects it from the body.
    ``keep_raw`` keeps the response itself (status, headers, body; masked and capped) in
    :attr:`~genguard.Outcome.raw`.

    >>> classify_http(200, {}, b"<html><title>Login</title></html>").code
    'invalid_response'
    >>> classify_http(429, {"authorization": "Bearer sk-x"}, b"{}", keep_raw=True).raw.headers
    (('authorization', '***'),)
    """
    if not keep_raw:
        return _classify(status, headers, body, endpoint, secrets)
    secrets = tuple(secrets)
    outcome = _classify(status, headers, body, endpoint, secrets)
    return outcome.replace(raw=RawResponse.capture(status, headers, body, secrets=secrets))


def _classify(
    status: int,
    headers: Mapping[str, str] | None,
    body: bytes,
    endpoint: Endpoint | None,
    secrets: Iterable[str],
) -> Outcome:
    if not 200 <= status < 300:
        return classify_error(status, headers, body, endpoint=endpoint or "chat", secrets=secrets)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = lenient_json(body, headers)
    if data is NOT_JSON:
        info = read_error(body)
        what = redact(info.message, tuple(secrets)) if info.message else None
        return invalid_response(
            "a 2xx body that is not JSON" + (f": {what}" if what else " (empty)"),
            status,
            request_id(headers),
            endpoint or "chat",
        )
    return classify_document(status, headers, data, endpoint=endpoint, secrets=secrets)


NOT_JSON = object()
BOM = b"\xef\xbb\xbf"


def lenient_json(body: bytes, headers: Mapping[str, str] | None) -> Any:
    """A 2xx body that ``orjson`` refused, read as JSON readers that accept it read it: after a UTF-8 byte-order
    mark (as Python's ``json`` does), and in the charset its content-type names (``charset=iso-8859-1``), or
    with U+FFFD for bytes that are not UTF-8. Retrying a generation that came back whole for its encoding pays
    for it again. :data:`NOT_JSON` when it is not JSON even so. Only ever on the failure path.

    >>> latin = {"content-type": "application/json; charset=iso-8859-1"}
    >>> lenient_json(BOM + b'{"a": 1}', None), lenient_json(b'{"a": "caf\\xe9"}', latin)
    ({'a': 1}, {'a': 'café'})
    """
    text = body[3:] if body.startswith(BOM) else body
    for attempt in (text, _decoded(text, _charset(headers))):
        if attempt is None:
            continue
        try:
            return orjson.loads(attempt)
        except orjson.JSONDecodeError:
            pass
    return NOT_JSON


def as_utf8(body: bytes, headers: Mapping[str, str] | None) -> bytes:
    """``body`` as UTF-8 without a byte-order mark, decoded from the charset its content-type names (or with
    U+FFFD for bytes that are not UTF-8): the bytes a caller keeping an answer's own text (the batch runner's
    output line, where they sit inside JSON) can write as they are. A body already so is returned as it is, at
    the cost of one ASCII check.

    >>> as_utf8(BOM + b'{"a": 1}', None), as_utf8(b'{"a": 1}', None)
    (b'{"a": 1}', b'{"a": 1}')
    """
    if not body.startswith(BOM) and (body.isascii() or _is_utf8(body)):
        return body
    text = body[3:] if body.startswith(BOM) else body
    return _decoded(text, _charset(headers)) or text


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _charset(headers: Mapping[str, str] | None) -> str | None:
    if not headers:
        return None
    kind = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    _, _, charset = kind.lower().partition("charset=")
    return charset.split(";")[0].strip().strip('"') or None


def _decoded(body: bytes, charset: str | None) -> bytes | None:
    if charset and charset.replace("-", "").replace("_", "") != "utf8":
        try:
            return body.decode(charset).encode("utf-8")
        except (LookupError, UnicodeDecodeError):
            pass
    return body.decode("utf-8", "replace").encode("utf-8")


def classify_document(
    status: int,
    headers: Mapping[str, str] | None,
    data: Any,
    *,
    endpoint: Endpoint | None = None,
    secrets: Iterable[str] = (),
) -> Outcome:
    """:func:`classify_http` of a 2xx body already parsed (``data`` is what ``orjson.loads`` gave for it):
    for a body too large to parse twice.

    >>> classify_document(200, {}, {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}).text
    'hi'
    """
    if is_error_body(data):
        return classify_error(status, headers, data, endpoint=endpoint or "chat", secrets=secrets)
    if endpoint is None:
        if is_map(data) and (
            data.get("object") in ("chat.completion", "text_completion", "response")
            or "choices" in data
            or data.get("type") == "message"
            or "candidates" in data
            or "promptFeedback" in data
        ):
            endpoint = "chat"
        elif is_map(data) and data.get("object") == "list" and "data" in data and "created" not in data:
            endpoint = "embedding"
        elif is_moderation(data):
            endpoint = "moderation"
        else:
            endpoint = detect_media(data)
            if endpoint is None:
                return invalid_response(
                    "a 2xx body that is neither a chat completion, an images response nor a media task",
                    status,
                    request_id(headers),
                )
    if endpoint == "chat":
        return classify_chat_body(data, status=status, headers=headers, secrets=secrets)
    if endpoint == "image":
        return image_outcome(data, status=status, headers=headers)
    if endpoint == "embedding":
        return embedding_outcome(data, status=status, headers=headers)
    if endpoint == "moderation":
        return moderation_outcome(data, status=status, headers=headers)
    return task_outcome(parse_task(data), status=status, headers=headers)
