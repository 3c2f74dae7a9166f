"""Any error body a provider sends, read into one :class:`ErrorInfo`; and the test of whether a body is one.

Providers put the message, type and code in many places (REFERENCE.md §1): under ``error``, at the top level
with ``object: error``, in a list, Google's ``status``, Anthropic's envelope, Azure's ``innererror``, a
gateway's ``metadata.raw`` string, FastAPI's ``detail`` list, Kling's ``{code, message}`` envelope, or an HTML
page. :func:`read_error` looks in all of them and never raises. :func:`is_error_body` tells an error envelope
from a response that merely mentions an error (a failed media task, a success envelope).

>>> info = read_error(b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}')
>>> (info.message, info.code, info.type)
('Rate limit reached', 'rate_limit_exceeded', 'requests')
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .headers import request_id
from .status_words import is_success_code, normalise_status
from .waits import parse_duration

__all__ = ["ErrorInfo", "is_error_body", "read_error"]

MESSAGE_CAP = 1000
# Only this much of a non-JSON body is looked at: enough for any title, heading or sentence.
_TEXT_SCAN = 65_536
_MAX_DEPTH = 6

_WS_RE = re.compile(r"\s+")
_TAG_RE = re.compile(r"<[^<>]{0,500}>")
# Opening and closing tags are searched separately (each a linear scan) so that a hostile page full of
# unclosed tags cannot make the reader quadratic.
_TEXT_TAGS = tuple(
    (re.compile(rf"<{t}\b[^<>]{{0,200}}>", re.IGNORECASE), re.compile(rf"</{t}\s*>", re.IGNORECASE))
    for t in ("title", "h1", "h2", "h3")
)
_HTML_HINT_RE = re.compile(r"<(?:!doctype|html|head|body|title|h1|center)\b", re.IGNORECASE)
_SCRIPT_RE = re.compile(r"<(script|style)[^<>]{0,200}>.{0,4000}?</\1\s*>", re.IGNORECASE | re.DOTALL)
_REQUEST_ID_RE = re.compile(r"request[ _-]?id\s*(?:is|:|=)?\s*[\"'`]?([A-Za-z0-9][\w.:-]{5,})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an error body says, wherever the provider put it. Fields it did not say are ``None``.

    ``code`` is always a string (``"400"``, ``"1301"``); ``status_hint`` is a numeric HTTP status found in the
    body (Google's ``"code": 503``); ``raw`` is the parsed JSON, or the text when the body was not JSON.

    >>> read_error('{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}').type
    'overloaded_error'
    """

    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None
    request_id: str | None = None
    status_hint: int | None = None
    provider: str | None = None
    inner_code: str | None = None
    filter_results: Mapping[str, Any] | None = None
    raw: object = None
    is_json: bool = False
    retry_delay_s: float | None = None
    """A wait found in the body's own fields: Google's ``RetryInfo.retryDelay``, Hugging Face's
    ``estimated_time``, a ``retry_after`` (``retry_after_seconds``, ``retryAfter``, ``retry_after_ms``)."""
    quota_ids: tuple[str, ...] = ()
    """The names of the quotas the body says were exceeded (Google's ``QuotaFailure`` ``quotaId`` and
    ``quotaMetric``, ``ErrorInfo.metadata.quota_limit``, ``errors[].reason``): they tell a daily quota from a
    per-minute one when the message does not."""


def _cap(text: str) -> str:
    text = text.strip()
    if len(text) > MESSAGE_CAP:
        return text[: MESSAGE_CAP - 3].rstrip() + "..."
    return text


def _scalar(value: object) -> str | None:
    """A code, type or param as a string: numbers stringified, empties and containers dropped."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        return value[:200] or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return None


def _status_of(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit() and len(value) == 3:
        value = int(value)
    if isinstance(value, int) and 100 <= value <= 599:
        return value
    return None


def _loc(loc: object) -> str:
    if isinstance(loc, list | tuple):
        return ".".join(str(p) for p in loc[:20])
    return str(loc)


def _text(value: object, depth: int = 0) -> str | None:
    """Readable text from a message that may be a string, an object or a list (a validation ``detail``)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return str(value)
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(value, Mapping):
        msg = None
        for key in ("msg", "message", "detail", "error", "description", "reason"):
            if key in value:
                msg = _text(value.get(key), depth + 1)
                if msg:
                    break
        if msg is None:
            return _compact(value)
        loc = value.get("loc")
        return f"{_loc(loc)}: {msg}" if loc else msg
    if isinstance(value, list | tuple):
        parts = [t for t in (_text(v, depth + 1) for v in value[:20]) if t]
        return "; ".join(parts) or None
    return None


def _compact(value: object) -> str | None:
    try:
        text = orjson.dumps(value, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        return None
    return None if text in ("{}", "[]", "null") else text[:300]


def _html_text(fragment: str) -> str:
    return _WS_RE.sub(" ", html.unescape(_TAG_RE.sub(" ", fragment))).strip()


def _read_text(text: str) -> str | None:
    """The useful line of a non-JSON body: an HTML page's title or first heading, or the text itself."""
    head = text[:_TEXT_SCAN]
    if _HTML_HINT_RE.search(head[:4096]):
        for opening, closing in _TEXT_TAGS:
            m = opening.search(head)
            end = None if m is None else closing.search(head, m.end())
            if m is not None and end is not None:
                found = _html_text(head[m.end() : min(end.start(), m.end() + 4000)])
                if found:
                    return _cap(found)
        found = _html_text(_SCRIPT_RE.sub(" ", head[:8192]))
        return _cap(found) if found else None
    found = _WS_RE.sub(" ", head[: MESSAGE_CAP * 4]).strip()
    return _cap(found) if found else None


@dataclass(slots=True)
class _Found:
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None
    request_id: str | None = None
    status_hint: int | None = None
    provider: str | None = None
    inner_code: str | None = None
    filter_results: Mapping[str, Any] | None = None
    retry_delay_s: float | None = None
    quota_ids: tuple[str, ...] = ()


# Wait fields providers put beside the error, in seconds unless named in milliseconds. Hugging Face's
# "estimated_time" is how long a cold model takes to load: the wait before it can answer.
_WAIT_FIELDS = (
    ("retry_after", 1.0), ("retry_after_seconds", 1.0), ("retryAfter", 1.0), ("estimated_time", 1.0),
    ("retry_after_ms", 1e-3), ("retryAfterMs", 1e-3),
)  # fmt: skip
_QUOTA_KEYS = ("quotaId", "quotaMetric", "quota_limit", "quota_metric", "quota_id")


def _seconds(value: object, unit: float) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds: float | None = float(value)
    elif isinstance(value, str):
        seconds = parse_duration(value)
    else:
        return None
    if seconds is None:
        return None
    seconds *= unit
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _body_wait(obj: Mapping[str, Any]) -> float | None:
    for key, unit in _WAIT_FIELDS:
        if key in obj:
            seconds = _seconds(obj[key], unit)
            if seconds is not None:
                return seconds
    return None


def _read_details(details: object, out: _Found) -> None:
    """Google's ``details``: the ``RetryInfo`` wait ({"retryDelay": "38s"}) and the names of the quotas a
    ``QuotaFailure`` (``violations[].quotaId``) or an ``ErrorInfo`` (``metadata.quota_limit``) says ran out."""
    if not isinstance(details, list):
        return
    ids: list[str] = list(out.quota_ids)
    for item in details[:20]:
        if not isinstance(item, Mapping):
            continue
        delay = item.get("retryDelay")
        if out.retry_delay_s is None and isinstance(delay, str):
            out.retry_delay_s = parse_duration(delay)
        violations = item.get("violations")
        for holder in [*(violations[:20] if isinstance(violations, list) else ()), item.get("metadata")]:
            if isinstance(holder, Mapping):
                ids.extend(v for key in _QUOTA_KEYS if isinstance(v := holder.get(key), str) and v)
    out.quota_ids = tuple(dict.fromkeys(ids))[:20]


def _read_reasons(errors: object, out: _Found) -> None:
    # Google's older APIs list {"reason": "dailyLimitExceeded" | "rateLimitExceeded", ...} under "errors".
    if isinstance(errors, list):
        reasons = [r for e in errors[:20] if isinstance(e, Mapping) and isinstance(r := e.get("reason"), str)]
        if reasons:
            out.quota_ids = tuple(dict.fromkeys([*out.quota_ids, *reasons]))[:20]


# MiniMax's business codes, as the words the classifier already knows; its numbers collide with Kling's.
_MINIMAX_TYPES = {
    1000: "unknown", 1001: "timeout", 1002: "rate_limited", 1004: "authentication_error",
    1008: "insufficient_balance", 1013: "internal_error", 1026: "content_policy_violation",
    1027: "content_filter", 1039: "rate_limited", 2013: "invalid_parameter", 2049: "invalid_api_key",
}  # fmt: skip


def _read_base_resp(base: Mapping[str, Any], out: _Found) -> None:
    # MiniMax: {"base_resp": {"status_code": 1008, "status_msg": "insufficient balance"}}; 0 is success.
    code = base.get("status_code")
    if not isinstance(code, int) or isinstance(code, bool) or code == 0:
        return
    out.code = str(code)
    out.message = out.message or _text(base.get("status_msg"), 1)
    out.type = out.type or _MINIMAX_TYPES.get(code)
    out.provider = out.provider or "MiniMax"


def _embedded(message: str, out: _Found, depth: int) -> None:
    """A message that carries the upstream's whole error body as JSON (Google's OpenAI-compatible endpoint
    nests its own error as a string; LiteLLM quotes the provider's bytes): read the inner one, it is the
    useful one."""
    start = message.find("{")
    end = message.rfind("}")
    if start < 0 or end <= start or depth >= _MAX_DEPTH:
        return
    try:
        inner_doc = orjson.loads(message[start : end + 1])
    except orjson.JSONDecodeError:
        return
    if not isinstance(inner_doc, Mapping) or not ({"error", "message", "type"} & inner_doc.keys()):
        return
    inner = _Found()
    _read_json(inner_doc, inner, depth + 1)
    if not inner.message:
        return
    out.message = inner.message
    out.type = inner.type or out.type
    out.code = out.code or inner.code
    out.inner_code = out.inner_code or inner.inner_code
    out.status_hint = out.status_hint or inner.status_hint
    out.request_id = out.request_id or inner.request_id
    out.retry_delay_s = out.retry_delay_s or inner.retry_delay_s
    out.quota_ids = out.quota_ids or inner.quota_ids


def _read_error_object(e: Mapping[str, Any], out: _Found, depth: int) -> None:
    """Fill ``out`` from one error object (the thing holding message/type/code)."""
    out.message = _text(e.get("message"), 1) or _text(e.get("msg"), 1) or _text(e.get("detail"), 1)
    if out.message is None:
        out.message = _text(e.get("error_message"), 1) or _text(e.get("description"), 1)
    out.type = _scalar(e.get("type"))
    code = e.get("code")
    if code is None:
        # Baidu Qianfan: {"error_code": 17, "error_msg": "Open api daily request limit reached"}.
        code = e.get("error_code")
    out.code = _scalar(code)
    out.status_hint = _status_of(code) or _status_of(e.get("status"))
    if out.type is None:
        # Google names the canonical status in words: "UNAVAILABLE", "RESOURCE_EXHAUSTED".
        status = e.get("status")
        if isinstance(status, str) and not status.isdigit():
            out.type = _scalar(status)
    param = e.get("param")
    out.param = _scalar(param) if not isinstance(param, list | tuple) else _loc(param)
    out.request_id = _scalar(e.get("request_id")) or _scalar(e.get("requestId"))
    _read_details(e.get("details"), out)
    _read_reasons(e.get("errors"), out)
    if out.retry_delay_s is None:
        out.retry_delay_s = _body_wait(e)
    inner = e.get("innererror")
    if not isinstance(inner, Mapping):
        inner = e.get("inner_error")
    if isinstance(inner, Mapping):
        out.inner_code = _scalar(inner.get("code"))
        results = inner.get("content_filter_result")
        if not isinstance(results, Mapping):
            results = inner.get("content_filter_results")
        if isinstance(results, Mapping):
            out.filter_results = results
    if out.filter_results is None:
        results = e.get("content_filter_results") or e.get("content_filter_result")
        if isinstance(results, Mapping):
            out.filter_results = results
    base = e.get("base_resp")
    if isinstance(base, Mapping):
        _read_base_resp(base, out)
    if out.message is not None and "{" in out.message:
        _embedded(out.message, out, depth)
    metadata = e.get("metadata")
    if isinstance(metadata, Mapping):
        out.provider = _scalar(metadata.get("provider_name"))
        _read_gateway_raw(metadata.get("raw"), out, depth)


def _read_gateway_raw(raw: object, out: _Found, depth: int) -> None:
    """A gateway's copy of the upstream error: its message is the useful one, its code/type more specific."""
    if raw is None or depth >= _MAX_DEPTH:
        return
    parsed: object = raw
    if isinstance(raw, str):
        stripped = raw.strip()
        if not stripped:
            return
        parsed = None
        if stripped[0] in "{[":
            try:
                parsed = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                parsed = None
        if parsed is None:
            out.message = _read_text(stripped) or out.message
            return
    inner = _Found()
    _read_json(parsed, inner, depth + 1)
    out.message = inner.message or out.message
    out.code = inner.code or out.code
    out.type = inner.type or out.type
    out.param = out.param or inner.param
    out.inner_code = inner.inner_code or out.inner_code
    out.filter_results = inner.filter_results or out.filter_results
    out.status_hint = out.status_hint or inner.status_hint
    out.request_id = out.request_id or inner.request_id
    out.retry_delay_s = out.retry_delay_s or inner.retry_delay_s
    out.quota_ids = out.quota_ids or inner.quota_ids


def _read_json(data: object, out: _Found, depth: int) -> None:
    if depth >= _MAX_DEPTH:
        return
    if isinstance(data, list):
        # Google's OpenAI-compatible endpoint wraps the error object in a list.
        for item in data[:20]:
            if isinstance(item, Mapping):
                _read_json(item, out, depth + 1)
                return
        out.message = _text(data, depth)
        return
    if not isinstance(data, Mapping):
        out.message = _text(data, depth)
        return
    err = data.get("error")
    if isinstance(err, Mapping):
        _read_error_object(err, out, depth)
        if out.message is None:
            out.message = _text(data.get("message"), 1)
        if out.type is None:
            # Anthropic's envelope type is just "error"; keep it only when nothing better exists.
            out.type = None if data.get("type") == "error" else _scalar(data.get("type"))
    elif isinstance(err, str | list) and err:
        out.message = _text(err, 1)
        out.type = _scalar(data.get("type")) or _scalar(data.get("error_type"))
        code = data.get("code")
        out.code = _scalar(code)
        out.status_hint = _status_of(code) or _status_of(data.get("status"))
        if out.message and isinstance(data.get("message"), str) and data["message"].strip():
            # {"error": "Bad Request", "message": "the real reason"} (Spring, NestJS...): say both.
            out.message = f"{out.message}: {data['message'].strip()}"
    elif "detail" in data and "message" not in data:
        out.message = _text(data.get("detail"), 1)
        out.type = _scalar(data.get("type"))
        out.status_hint = _status_of(data.get("status"))
        if out.message is None:
            out.message = _text(data.get("title"), 1)
    else:
        # Top-level error objects: vLLM/Mistral ("object": "error"), Kling envelopes, RFC 7807, and others.
        _read_error_object(data, out, depth)
        if out.message is None:
            out.message = _text(data.get("title"), 1) or _text(data.get("error_msg"), 1)
        if out.code is not None and out.code == "0" and isinstance(data.get("code"), int | str):
            # A Kling-style envelope whose code 0 means success carries no error code.
            out.code = None
        if out.message is None and not any((out.code, out.type)):
            out.message = _compact(data)
    if out.request_id is None:
        out.request_id = _scalar(data.get("request_id")) or _scalar(data.get("requestId"))
    if out.retry_delay_s is None:
        # Beside the error rather than in it: {"error": "Model x is currently loading", "estimated_time": 20.0}.
        out.retry_delay_s = _body_wait(data)


def _decode(body: bytes | bytearray | memoryview) -> str:
    text = bytes(body).decode("utf-8", "replace")
    return text[1:] if text.startswith("\ufeff") else text


def _find_request_id(headers: Mapping[str, str] | None, found: str | None, message: str | None) -> str | None:
    from_headers = request_id(headers)
    if from_headers:
        return from_headers
    if found:
        return found
    if message:
        m = _REQUEST_ID_RE.search(message)
        if m is not None:
            return m.group(1).rstrip(".:")
    return None


def read_error(body: bytes | str | object, headers: Mapping[str, str] | None = None) -> ErrorInfo:
    """Read any error body into an :class:`ErrorInfo`. Never raises, whatever ``body`` is.

    ``body`` may be bytes, text, or JSON already parsed (a dict from a stream chunk). Request ids come from
    the ``x-request-id``, ``request-id`` or ``cf-ray`` header, else the body, else the message.

    >>> read_error(b'<html><title>502 Bad Gateway</title></html>').message
    '502 Bad Gateway'
    >>> read_error('[{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}]').status_hint
    503
    """
    try:
        return _read_error(body, headers)
    except Exception:
        # A last guard: the readers above are meant to be total, but an error reader must never add an error.
        return ErrorInfo(raw=body, request_id=_safe_request_id(headers))


def _safe_request_id(headers: Mapping[str, str] | None) -> str | None:
    try:
        return request_id(headers)
    except Exception:
        return None


def _read_error(body: object, headers: Mapping[str, str] | None) -> ErrorInfo:
    text: str | None = None
    if isinstance(body, bytes | bytearray | memoryview):
        raw_bytes = bytes(body)
        data: object = None
        try:
            data = orjson.loads(raw_bytes)
            parsed = True
        except orjson.JSONDecodeError:
            parsed = False
        if not parsed:
            text = _decode(raw_bytes)
    elif isinstance(body, str):
        stripped = body.strip().lstrip("\ufeff")
        parsed = False
        if stripped[:1] in ("{", "[") or stripped in ("null", "true", "false") or stripped[:1].isdigit():
            try:
                data = orjson.loads(stripped)
                parsed = True
            except orjson.JSONDecodeError:
                parsed = False
        if not parsed:
            text = body
    elif body is None:
        text = ""
        parsed = False
    else:
        data, parsed = body, True

    if not parsed:
        message = _read_text(text or "")
        return ErrorInfo(
            message=message,
            request_id=_find_request_id(headers, None, message),
            raw=text or "",
            is_json=False,
        )
    found = _Found()
    _read_json(data, found, 0)
    message = _cap(found.message) if found.message else None
    # Every field the reader found passes on as it is, so a field added to both records cannot be dropped here.
    copied: dict[str, Any] = {name: getattr(found, name) for name in _Found.__slots__}
    copied.update(message=message or None, request_id=_find_request_id(headers, found.request_id, message))
    return ErrorInfo(raw=data, is_json=True, **copied)


# -- is it one? -----------------------------------------------------------------------------------


def is_error_body(doc: object) -> bool:
    """Whether a parsed JSON body is an error envelope rather than a response of some endpoint: it has an
    ``error`` (and is no chat completion or media task carrying one), says ``object``/``type`` ``error``, is a bare FastAPI
    ``detail``, or is an envelope whose ``code`` names an error (Kling's ``1301``, DashScope's
    ``"InvalidParameter"``; ``0``, ``200`` or ``"success"`` mean success), or Baidu's ``error_code`` with
    ``error_msg``. A list is judged by its first item.

    >>> is_error_body({"error": {"message": "nope"}}), is_error_body({"code": 0, "data": {"task_id": "t"}})
    (True, False)
    >>> is_error_body({"id": "v1", "status": "failed", "error": {"message": "filtered"}})
    False
    """
    if type(doc) is not dict:  # every 2xx chat body asks: orjson's dicts skip the ABC checks
        if isinstance(doc, list):
            doc = doc[0] if doc else None
        if not isinstance(doc, Mapping):
            return False
    if doc.get("error"):
        # A chat completion that carries an error (OpenRouter's 200 with "choices": null) is a response of its
        # endpoint, and so is a media task that failed ({"status": "failed", "error": ...}): read as a task, its
        # failure may be a safety filter, not a request error.
        return "choices" not in doc and normalise_status(doc.get("status")) is None
    if doc.get("object") == "error" or doc.get("type") == "error":
        return True
    if "detail" in doc and not ({"choices", "data", "id", "status"} & doc.keys()):
        return True
    code = doc.get("code")
    if code is None and "error_msg" in doc:
        # Baidu Qianfan answers HTTP 200 with {"error_code": 17, "error_msg": ...}.
        code = doc.get("error_code")
        return isinstance(code, int) and not isinstance(code, bool) and code != 0 and "choices" not in doc
    # Kling and similar envelopes: {"code": 1301, "message": ...}.
    if isinstance(code, int) and not isinstance(code, bool) and not is_success_code(code):
        return "choices" not in doc
    if isinstance(code, str) and "message" in doc and "choices" not in doc and "data" not in doc:
        # DashScope-style {"code": "InvalidParameter", "message": ...}.
        return not is_success_code(code)
    return False
