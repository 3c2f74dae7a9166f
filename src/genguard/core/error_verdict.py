"""The verdict on an error: the hard failure code of what an error body (or an error embedded in a 2xx body
or a stream) says, and the failure :class:`~genguard.Outcome` of it.

The hard codes follow TAXONOMY.md's table: the HTTP status first, then the provider's code, type or message,
with the specific verdicts (a missing model, a too-long context, an exhausted quota, a policy block) winning
over the status's generic one; a server's ``x-should-retry`` header overrides the retry verdict. Every body
reader (chat, images, media tasks, streams) and the dispatcher :func:`genguard.classify_http` come here for
errors; this module reads no success body.

>>> classify_error(429, {"retry-after": "2"}, b'{"error": {"code": "rate_limit_exceeded", "message": "slow down"}}').code
'rate_limited'
>>> code_for_error(None, read_error(b'{"type": "error", "error": {"type": "overloaded_error"}}'))
'unavailable'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .error_body import ErrorInfo, read_error
from .headers import get_header
from .outcome import Outcome, RawResponse
from .phrases import says
from .secrets import redact
from .taxonomy import Endpoint
from .waits import retry_wait

__all__ = ["classify_error", "code_for_error", "invalid_response", "should_retry"]

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
    "tokens_too_long", "characters_too_long",
})  # fmt: skip
_QUOTA_CODES = frozenset({
    "insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "insufficient_balance",
    "insufficient_credits", "payment_required", "quota_exceeded", "billing_error", "arrearage",
    "insufficient_user_quota", "budget_exceeded",
})  # fmt: skip
_BLOCK_CODES = frozenset({
    "content_filter", "content_policy_violation", "moderation_blocked", "responsibleaipolicyviolation",
    "contentfilter", "content_filtered", "safety", "data_inspection_failed", "prompt_blocked",
    "sensitive_content", "input_moderation", "flagged", "sensitive_words_detected",
})  # fmt: skip

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
    if _MODEL_CODES.intersection(words) or (not server_side and says("model_not_found", message)):
        return "model_not_found"
    if _CONTEXT_CODES.intersection(words) or says("context_length_exceeded", message):
        return "context_length_exceeded"
    kling = _kling(info.code) if info.provider != "MiniMax" else None
    if kling is not None:
        return kling

    if not server_side:
        if _BLOCK_CODES.intersection(words):
            return "prompt_blocked"
        if _QUOTA_CODES.intersection(words) or status == 402:
            return "quota_exceeded"
        if says("quota_exceeded", message) and not _is_short_window(info):
            return "quota_exceeded"
        if status == 413 or code == "requesttoolarge" or typ == "requesttoolarge":
            return "request_too_large"
        if status in (None, 400, 429) and says("request_too_large", message):
            return "request_too_large"
        if status in (None, 403, 429) and _is_periodic(info):
            return "quota_exceeded"
        if status in (None, 400, 403, 422) and says("prompt_blocked", message):
            return "prompt_blocked"
        if status in (None, 400, 403) and (
            code in ("invalidapikey", "apikeyinvalid") or says("auth_failed", message)
        ):
            return "auth_failed"

    if status is not None:
        return _from_status(status, code, typ, message)
    return _from_words(info, code, typ, message)


def _is_short_window(info: ErrorInfo) -> bool:
    # Google words per-minute limits like an exhausted quota ("You exceeded your current quota") but says when
    # to retry; a quota that only money cures never comes with a wait.
    return info.retry_delay_s is not None or says("short_window", info.message)


# A daily quota is not out of money: the general quota sentences would send the user to billing for nothing.
_PERIODIC_CAUSE = (
    "A quota counted per day (or per month) is used up: this is not a per-minute rate limit, and it refills "
    "only when the period turns."
)
_PERIODIC_FIX = (
    "Wait for the reset (retry_after_s, when the provider named one) before sending again, or rotate to "
    "another key or project; raise the quota in the provider's console if you need more."
)


def _is_periodic(info: ErrorInfo) -> bool:
    # A quota counted per day (or month) is spent until the period turns, whatever short wait the body names:
    # Google sends a RetryInfo of seconds with its daily free-tier quota, OpenAI and Groq a rolling figure.
    return says("periodic_quota", info.message) or any(says("periodic_quota", q) for q in info.quota_ids)


def _from_status(status: int, code: str, typ: str, message: str) -> str:
    if 500 <= status < 600:
        if status in (502, 504, 524):
            return _STATUS[status]
        if (
            says("unavailable", message)
            or code in ("overloaded", "overloadederror")
            or typ in ("overloadederror", "overloaded", "unavailable", "serviceunavailable")
        ):
            return "unavailable"
        return _STATUS.get(status, "server_error")
    if status == 403:
        return "prompt_blocked" if says("prompt_blocked", message) else "permission_denied"
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
        if says("unavailable", message):
            return "unavailable"
        if says("rate_limited", message):
            return "rate_limited"
        if says("gateway_timeout", message):
            return "gateway_timeout"
    return "server_error"


# -- the verdict -------------------------------------------------------------------------------------------


def should_retry(headers: Mapping[str, str] | None) -> bool | None:
    """A server's ``x-should-retry: true|false`` verdict, which overrides the taxonomy's; ``None`` when absent
    or unreadable.

    >>> should_retry({"X-Should-Retry": "false"}), should_retry({}) is None
    (False, True)
    """
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
    keep_raw: bool = False,
) -> Outcome:
    """The hard-failure :class:`~genguard.Outcome` of an error response (or an error embedded in a 2xx body or
    stream, with ``status`` ``None`` or 2xx): code, message (redacted), provider code and type, request id,
    the wait the server asked for, and ``x-should-retry`` applied. ``keep_raw`` keeps the response itself,
    masked and capped, in :attr:`~genguard.Outcome.raw`.

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
    said: dict[str, str] = {}
    if code == "quota_exceeded" and _is_periodic(info):
        said = {"cause": _PERIODIC_CAUSE, "fix": _PERIODIC_FIX}
    outcome = Outcome.failure(
        code,
        endpoint=endpoint,
        retryable=should_retry(headers),
        status=status,
        message=message,
        param=redact(info.param, secrets) if info.param else None,
        provider_code=info.code if info.code is not None else info.inner_code,
        provider_type=info.type,
        request_id=info.request_id,
        retry_after_s=wait,
        raw=RawResponse.capture(status, headers, body, secrets=secrets) if keep_raw else None,
        **said,
    )
    return outcome.with_extra(**extra) if extra else outcome


def invalid_response(
    message: str, status: int | None, request_id: str | None, endpoint: Endpoint = "chat"
) -> Outcome:
    """The ``invalid_response`` failure of a 2xx body that is not what its endpoint must return.

    >>> invalid_response("a 2xx body that is not JSON", 200, "req_1").retryable
    True
    """
    return Outcome.failure(
        "invalid_response", endpoint=endpoint, status=status, request_id=request_id, message=message
    )
