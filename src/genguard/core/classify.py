"""Status, headers and body (or a transport exception) in; one :class:`~genguard.Outcome` out.

The hard codes follow TAXONOMY.md's table: the HTTP status first, then the provider's code, type or message,
with the specific verdicts (a missing model, a too-long context, an exhausted quota, a policy block) winning
over the status's generic one. :func:`finish_outcome` is the one decision on a finished chat generation, shared
by plain and streamed chat; it and the chat-body reader live in ``_chat_body`` and are importable from here.

>>> classify_http(429, {"retry-after": "2"}, b'{"error": {"code": "rate_limit_exceeded", "message": "slow down"}}').code
'rate_limited'
>>> classify_http(200, {}, b'{"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]}').code
'empty_output'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from .chat_body import _invalid, _is_map, _request_id, classify_chat_body, finish_outcome
from .error_body import ErrorInfo, read_error, redact
from .outcome import Outcome
from .taxonomy import Endpoint
from .waits import get_header, retry_wait

__all__ = [
    "classify_chat_body",
    "classify_error",
    "classify_exception",
    "classify_http",
    "code_for_error",
    "finish_outcome",
]

# -- the provider's words ------------------------------------------------------------------------------

_BY_CODE_OR_TYPE: dict[str, str] = {
    # OpenAI and most compatible servers
    "invalid_api_key": "auth_failed", "invalid_authentication": "auth_failed", "unauthorized": "auth_failed",
    "authentication_error": "auth_failed", "unauthenticated": "auth_failed", "invalid_key": "auth_failed",
    "permission_error": "permission_denied", "permission_denied": "permission_denied",
    "forbidden": "permission_denied", "unsupported_country_region_territory": "permission_denied",
    "not_found_error": "not_found", "not_found": "not_found",
    "invalid_request_error": "bad_request", "invalid_argument": "bad_request", "bad_request": "bad_request",
    "failed_precondition": "bad_request", "out_of_range": "bad_request", "invalid_parameter": "bad_request",
    "rate_limit_exceeded": "rate_limited", "rate_limit_error": "rate_limited", "rate_limited": "rate_limited",
    "too_many_requests": "rate_limited", "resource_exhausted": "rate_limited", "requests": "rate_limited",
    "tokens": "rate_limited",
    "request_too_large": "request_too_large", "payload_too_large": "request_too_large",
    "billing_error": "quota_exceeded",
    "overloaded_error": "unavailable", "overloaded": "unavailable", "unavailable": "unavailable",
    "service_unavailable": "unavailable", "engine_overloaded": "unavailable",
    "api_error": "server_error", "server_error": "server_error", "internal": "server_error",
    "internal_error": "server_error", "internal_server_error": "server_error", "unknown": "server_error",
    "timeout_error": "gateway_timeout", "deadline_exceeded": "gateway_timeout", "timeout": "gateway_timeout",
    "aborted": "conflict", "conflict": "conflict", "already_exists": "conflict",
    "unprocessable_entity": "unprocessable",
}  # fmt: skip

_MODEL_CODES = frozenset(
    {"model_not_found", "model_not_available", "model_not_supported", "model_deprecated",
     "model_decommissioned", "DeploymentNotFound", "dedicated_endpoint_not_running"}
)  # fmt: skip
_CONTEXT_CODES = frozenset({
    "context_length_exceeded", "string_above_max_length", "context_window_exceeded", "exceed_context_size_error",
})  # fmt: skip
_QUOTA_CODES = frozenset({
    "insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "insufficient_balance",
    "insufficient_credits", "payment_required", "quota_exceeded", "billing_error", "arrearage",
    "insufficient_user_quota", "budget_exceeded",
})  # fmt: skip
_BLOCK_CODES = frozenset({
    "content_filter", "content_policy_violation", "moderation_blocked", "responsibleaipolicyviolation",
    "contentfilter", "content_filtered", "safety", "data_inspection_failed", "prompt_blocked",
    "sensitive_content", "input_moderation", "flagged",
})  # fmt: skip

_MODEL_RE = re.compile(
    r"\bmodels?\b[^.;\n]{0,160}?(?:does not exist|doesn't exist|not found|is not available|not available|"
    r"decommissioned|no longer (?:available|supported)|is not a valid model|unknown model)"
    r"|not found, try pulling|\bunknown model\b|\binvalid model\b|\bno such model\b|is not a valid model"
    r"|no endpoints found|no models? (?:are |is )?loaded|模型不存在",
    re.IGNORECASE,
)
_CONTEXT_RE = re.compile(
    r"maximum context length|context[_ ]length[_ ]exceeded|context window|prompt is too long"
    r"|exceeds the maximum number of tokens|input token count.{0,40}exceeds|exceeds? (?:the )?context"
    r"|longer than the model's (?:maximum )?context|reduce the length of the (?:messages|prompt)"
    r"|max_new_tokens. must be <=|too many (?:input )?tokens for (?:the )?model"
    r"|exceeds the available context size|context (?:length|size|window) of only|larger context length",
    re.IGNORECASE,
)
_QUOTA_RE = re.compile(
    r"insufficient[_ ](?:balance|credits?|quota|funds)|exceeded your current quota|credit balance is too low"
    r"|out of credits|\bbilling\b|resource pack|payment required|balance is (?:not enough|insufficient)"
    r"|quota (?:has been |is )?exhausted|余额不足|额度不足|资源包"
    r"|spending limit|(?:purchase|buy) (?:more )?credits|budget has been exceeded|exceeded (?:your |the )?budget"
    r"|reached your (?:specified )?(?:api )?usage limits?",
    re.IGNORECASE,
)
_TOO_LARGE_RE = re.compile(
    r"request too large|request (?:entity|payload|body) (?:is )?too large", re.IGNORECASE
)
_BLOCK_RE = re.compile(
    r"moderation|guardrail|content management policy|content[ _]polic(?:y|ies)|safety system"
    r"|flagged (?:as|by|for)|violat\w* (?:our |the )?(?:usage|content|safety) polic|responsible ?ai",
    re.IGNORECASE,
)
_AUTH_RE = re.compile(
    r"api key not valid|invalid api[ -]?key|incorrect api key|invalid x-api-key|invalid authentication"
    r"|api key (?:is )?(?:missing|invalid|expired|revoked)|no api key provided|missing (?:api key|bearer)",
    re.IGNORECASE,
)
_OVERLOAD_RE = re.compile(
    r"overload|over capacity|at capacity|too busy|server (?:is )?busy|saturated|负载已饱和|负载过高|繁忙",
    re.IGNORECASE,
)
_RATE_RE = re.compile(r"rate[ _-]?limit|too many requests", re.IGNORECASE)
_TIMEOUT_RE = re.compile(r"timed? ?out|deadline exceeded", re.IGNORECASE)

_STATUS: dict[int, str] = {
    400: "bad_request", 401: "auth_failed", 402: "quota_exceeded", 403: "permission_denied",
    404: "not_found", 405: "bad_request", 408: "request_timeout", 409: "conflict", 410: "not_found",
    413: "request_too_large", 422: "unprocessable", 429: "rate_limited",
    500: "server_error", 502: "bad_gateway", 503: "unavailable", 504: "gateway_timeout",
    520: "server_error", 524: "gateway_timeout", 529: "unavailable",
}  # fmt: skip


def _norm(word: str) -> str:
    # "RESOURCE_EXHAUSTED", "resource-exhausted", "ResourceExhausted" are one word to us.
    return word.lower().replace("_", "").replace("-", "").replace(" ", "")


_BY_CODE_OR_TYPE = {_norm(k): v for k, v in _BY_CODE_OR_TYPE.items()} | {
    "throttling": "rate_limited", "throttled": "rate_limited", "invalidparameter": "bad_request",
}  # fmt: skip
_MODEL_CODES = frozenset(_norm(w) for w in _MODEL_CODES)
_CONTEXT_CODES = frozenset(_norm(w) for w in _CONTEXT_CODES)
_QUOTA_CODES = frozenset(_norm(w) for w in _QUOTA_CODES)
_BLOCK_CODES = frozenset(_norm(w) for w in _BLOCK_CODES)


def _kling(code: str | None) -> str | None:
    if code is None or not code.isdigit() or len(code) != 4:
        return None
    n = int(code)
    if 1000 <= n <= 1004:
        return "auth_failed"
    if 1100 <= n <= 1102:
        return "quota_exceeded"
    if n == 1103:
        return "permission_denied"
    if 1200 <= n <= 1203:
        return "bad_request"
    if n == 1301:
        return "prompt_blocked"
    if n in (1302, 1303):
        return "rate_limited"
    if 5000 <= n <= 5002:
        return "server_error"
    return None


def _low(value: str | None) -> str:
    return _norm(value) if value else ""


def code_for_error(status: int | None, info: ErrorInfo) -> str:
    """The hard failure code for an error ``status`` (``None``: an error embedded in a stream or a 2xx body)
    and what the body said.

    >>> code_for_error(400, read_error(b'{"error": {"message": "This model\\'s maximum context length is 8192 tokens."}}'))
    'context_length_exceeded'
    >>> code_for_error(None, read_error(b'{"type": "error", "error": {"type": "overloaded_error"}}'))
    'unavailable'
    """
    code, typ, inner = _low(info.code), _low(info.type), _low(info.inner_code)
    message = info.message or ""
    words = (code, typ, inner)
    server_side = status is not None and status >= 500

    # Verdicts that hold on any status: the model, the context, and Kling's business codes.
    # (A 5xx "model not available" is a model busy for now, so only its code counts there.)
    if _MODEL_CODES.intersection(words) or (message and not server_side and _MODEL_RE.search(message)):
        return "model_not_found"
    if _CONTEXT_CODES.intersection(words) or (message and _CONTEXT_RE.search(message)):
        return "context_length_exceeded"
    kling = _kling(info.code) if info.provider != "MiniMax" else None
    if kling is not None:
        return kling

    if not server_side:
        if _BLOCK_CODES.intersection(words):
            return "prompt_blocked"
        if _QUOTA_CODES.intersection(words) or status == 402:
            return "quota_exceeded"
        if message and _QUOTA_RE.search(message) and not _is_rate_hint(info):
            return "quota_exceeded"
        if status == 413 or code == "requesttoolarge" or typ == "requesttoolarge":
            return "request_too_large"
        if status in (None, 400, 429) and message and _TOO_LARGE_RE.search(message):
            return "request_too_large"
        if status in (None, 400, 403, 422) and message and _BLOCK_RE.search(message):
            return "prompt_blocked"
        if status in (None, 400, 403) and (
            code in ("invalidapikey", "apikeyinvalid") or _AUTH_RE.search(message)
        ):
            return "auth_failed"

    if status is not None:
        return _from_status(status, code, typ, message)
    return _from_words(info, code, typ, message)


def _is_rate_hint(info: ErrorInfo) -> bool:
    # Google words per-minute limits like an exhausted quota ("You exceeded your current quota") but says when
    # to retry; a quota that only money cures never comes with a wait.
    return info.retry_delay_s is not None or bool(info.message and _RETRY_IN_RE.search(info.message))


_RETRY_IN_RE = re.compile(r"(?:retry|try again) in \d|per[ _-]?min(?:ute)?\b|perminute", re.IGNORECASE)


def _from_status(status: int, code: str, typ: str, message: str) -> str:
    if 500 <= status < 600:
        if status in (502, 504, 524):
            return _STATUS[status]
        if (
            _OVERLOAD_RE.search(message)
            or code in ("overloaded", "overloadederror")
            or typ in ("overloadederror", "overloaded", "unavailable", "serviceunavailable")
        ):
            return "unavailable"
        return _STATUS.get(status, "server_error")
    if status == 403:
        return "prompt_blocked" if _BLOCK_RE.search(message) else "permission_denied"
    if status in (404, 410) and "model" in message.lower():
        return "model_not_found"
    hit = _STATUS.get(status)
    if hit is not None:
        return hit
    if 400 <= status < 500:
        return "bad_request"
    # 1xx and 3xx: the server did not answer with an API response at all (a redirect the client did not follow).
    return "invalid_response"


def _from_words(info: ErrorInfo, code: str, typ: str, message: str) -> str:
    for word in (code, typ):
        hit = _BY_CODE_OR_TYPE.get(word)
        if hit is not None:
            if hit == "not_found" and "model" in message.lower():
                return "model_not_found"
            return hit
    if info.status_hint is not None and info.status_hint >= 400:
        return _from_status(info.status_hint, code, typ, message)
    if "invalid" in code or "invalid" in typ:
        return "bad_request"
    if message:
        if _OVERLOAD_RE.search(message):
            return "unavailable"
        if _RATE_RE.search(message):
            return "rate_limited"
        if _TIMEOUT_RE.search(message):
            return "gateway_timeout"
    return "server_error"


# -- errors -------------------------------------------------------------------------------------------


def _should_retry(headers: Mapping[str, str] | None) -> bool | None:
    value = get_header(headers, "x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    return True if value == "true" else (False if value == "false" else None)


def classify_error(
    status: int | None,
    headers: Mapping[str, str] | None,
    body: bytes | str | object,
    *,
    endpoint: Endpoint = "chat",
    secrets: Iterable[str] = (),
) -> Outcome:
    """The hard-failure :class:`~genguard.Outcome` of an error response (or an error embedded in a 2xx body or
    stream, with ``status`` ``None`` or 2xx): code, message (redacted), provider code and type, request id,
    the wait the server asked for, and ``x-should-retry`` applied.

    >>> o = classify_error(429, {"x-request-id": "req_1"}, b'{"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}}')
    >>> (o.code, o.retryable, o.request_id)
    ('quota_exceeded', False, 'req_1')
    """
    info = read_error(body, headers)
    verdict_status = status if status is not None and not 200 <= status < 300 else None
    code = code_for_error(verdict_status, info)
    wait = retry_wait(headers, info.message)
    if wait is None:
        wait = info.retry_delay_s
    secrets = tuple(secrets)
    message = redact(info.message, secrets) if info.message else None
    extra: dict[str, Any] = {}
    if info.provider:
        extra["provider"] = info.provider
    outcome = Outcome.failure(
        code,
        endpoint=endpoint,
        retryable=_should_retry(headers),
        status=status,
        message=message,
        param=redact(info.param, secrets) if info.param else None,
        provider_code=info.code if info.code is not None else info.inner_code,
        provider_type=info.type,
        request_id=info.request_id,
        retry_after_s=wait,
    )
    return outcome.with_extra(**extra) if extra else outcome


def classify_exception(
    exc: BaseException, *, endpoint: Endpoint = "chat", secrets: Iterable[str] = ()
) -> Outcome:
    """The Outcome of a transport failure: ``timeout`` for timeouts, ``connection_error`` for refused, reset,
    closed or broken connections. Anything else raises ``TypeError``: a bug must not pass for a network fault.

    >>> import httpx
    >>> classify_exception(httpx.ConnectError("[Errno 111] Connection refused")).code
    'connection_error'
    """
    import httpx  # here, not at the top: reading captures (explain) never needs the HTTP client

    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        code = "timeout"
    elif isinstance(exc, httpx.DecodingError | httpx.TooManyRedirects):
        code = "invalid_response"
    elif isinstance(exc, httpx.TransportError | ConnectionError):
        code = "connection_error"
    else:
        raise TypeError(f"not a transport failure: {type(exc).__name__}: {exc}") from exc
    what = next((v for k, v in _transport_names(httpx).items() if isinstance(exc, k)), None)
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


def _is_error_envelope(data: Mapping[str, Any]) -> bool:
    if data.get("error"):
        # A media task that failed carries its own error ({"status": "failed", "error": ...}): it is read as a
        # task, whose failure may be a safety filter, not as a request error.
        return not _is_task_word(data.get("status"))
    if data.get("object") == "error":
        return True
    code = data.get("code")
    # Kling and similar envelopes: {"code": 1301, "message": ...}; code 0 means success.
    if isinstance(code, int) and not isinstance(code, bool) and code != 0 and code != 200:
        return "choices" not in data
    if isinstance(code, str) and "message" in data and "choices" not in data and "data" not in data:
        # DashScope-style {"code": "InvalidParameter", "message": ...}.
        return code.strip().lower() not in _OK_WORDS
    return False


def _is_task_word(value: object) -> bool:
    if not isinstance(value, str):
        return False
    from .media_body import normalise_status

    return normalise_status(value) is not None


_OK_WORDS = frozenset({"", "0", "200", "ok", "success", "succeed", "succeeded"})


def classify_http(
    status: int,
    headers: Mapping[str, str] | None,
    body: bytes,
    *,
    endpoint: Endpoint | None = None,
    secrets: Iterable[str] = (),
) -> Outcome:
    """The Outcome of any HTTP exchange: an error status, a 2xx that is not a valid response, or a chat,
    image or video-task body judged on its content. ``endpoint`` ``None`` detects it from the body.

    >>> classify_http(200, {}, b"<html><title>Login</title></html>").code
    'invalid_response'
    """
    if not 200 <= status < 300:
        return classify_error(status, headers, body, endpoint=endpoint or "chat", secrets=secrets)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        info = read_error(body)
        what = redact(info.message, tuple(secrets)) if info.message else None
        return _invalid(
            "a 2xx body that is not JSON" + (f": {what}" if what else " (empty)"),
            status,
            _request_id(headers),
            endpoint or "chat",
        )
    if _is_map(data) and _is_error_envelope(data):
        return classify_error(status, headers, data, endpoint=endpoint or "chat", secrets=secrets)
    if endpoint is None:
        if _is_map(data) and (
            data.get("object") == "chat.completion" or "choices" in data or data.get("type") == "message"
        ):
            endpoint = "chat"
        else:
            from .media_body import detect_media

            endpoint = detect_media(data)
            if endpoint is None:
                return _invalid(
                    "a 2xx body that is neither a chat completion, an images response nor a media task",
                    status,
                    _request_id(headers),
                )
    if endpoint == "chat":
        return classify_chat_body(data, status=status, headers=headers, secrets=secrets)
    from .media_body import image_outcome, parse_task, task_outcome

    if endpoint == "image":
        return image_outcome(data, status=status, headers=headers)
    return task_outcome(parse_task(data), status=status, headers=headers)


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


@functools.cache
def _transport_names(httpx: Any) -> dict[type[BaseException], str]:
    return {
        httpx.ConnectTimeout: "could not connect in time",
        httpx.ReadTimeout: "the server sent nothing for too long",
        httpx.WriteTimeout: "could not send the request in time",
        httpx.PoolTimeout: "no free connection in the pool in time",
        httpx.ConnectError: "could not connect",
        httpx.ReadError: "the connection failed while reading",
        httpx.WriteError: "the connection failed while sending",
        httpx.RemoteProtocolError: "the server broke the HTTP protocol (closed mid-answer?)",
    }
