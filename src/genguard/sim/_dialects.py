"""Error bodies and in-stream errors shaped like each provider family (REFERENCE.md §1 and §4).

>>> status, headers, body = error_response("openai", "rate_limited", request_id="req_1")
>>> status, headers["retry-after"]
(429, '1')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

JSON = "application/json"
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """What a provider of the OpenAI family answers for one failure code."""

    status: int
    type: str | None
    code: str | None
    message: str
    param: str | None = None


# The OpenAI wording, with the waits in it; other dialects re-shape or re-word these.
_SPECS: dict[str, ErrorSpec] = {
    "auth_failed": ErrorSpec(401, "invalid_request_error", "invalid_api_key",
                             "Incorrect API key provided. You can find your API key in your account settings."),
    "permission_denied": ErrorSpec(403, "invalid_request_error", "permission_denied",
                                   "You are not allowed to sample from this model with this key."),
    "model_not_found": ErrorSpec(404, "invalid_request_error", "model_not_found",
                                 "The model `{model}` does not exist or you do not have access to it."),
    "not_found": ErrorSpec(404, "invalid_request_error", None, "Invalid URL (POST {path})"),
    "bad_request": ErrorSpec(400, "invalid_request_error", None,
                             "Invalid value for 'messages': the request could not be understood.", "messages"),
    "context_length_exceeded": ErrorSpec(
        400, "invalid_request_error", "context_length_exceeded",
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 "
        "tokens. Please reduce the length of the messages.", "messages"),
    "request_too_large": ErrorSpec(
        413, "tokens", "request_too_large",
        "Request too large for {model} on tokens per min (TPM): Limit 30000, Requested 31538. "
        "The input or output tokens must be reduced in order to run successfully."),
    "prompt_blocked": ErrorSpec(
        400, "invalid_request_error", "content_policy_violation",
        "Your request was rejected as a result of our safety system. Your prompt may contain text that is "
        "not allowed by our safety system."),
    "quota_exceeded": ErrorSpec(
        429, "insufficient_quota", "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details."),
    "rate_limited": ErrorSpec(
        429, "requests", "rate_limit_exceeded",
        "Rate limit reached for {model} on requests per min (RPM): Limit {limit}, Used {limit}, "
        "Requested 1. Please try again in {wait}."),
    "request_timeout": ErrorSpec(408, "timeout", "request_timeout", "Request timed out."),
    "conflict": ErrorSpec(409, "invalid_request_error", "conflict",
                          "Another request with the same idempotency key is still in progress."),
    "unprocessable": ErrorSpec(422, "invalid_request_error", "unprocessable_entity",
                               "The request was well-formed but could not be processed."),
    "server_error": ErrorSpec(500, "server_error", None,
                              "The server had an error while processing your request. Sorry about that!"),
    "unavailable": ErrorSpec(503, "server_error", "overloaded",
                             "The engine is currently overloaded, please try again later."),
}  # fmt: skip

# OpenAI's other way to say it: a 429 that is not a rate limit, since no wait lets a request this big pass.
_TOO_LARGE_429 = ErrorSpec(
    429, "tokens", "rate_limit_exceeded",
    "Request too large for {model} in organization org-genguard-sim on tokens per min (TPM): Limit {tpm}, "
    "Requested {requested}. The input or output tokens must be reduced in order to run successfully. "
    "Visit https://platform.openai.com/account/rate-limits to learn more.")  # fmt: skip

VARIANTS: dict[str, tuple[str, ...]] = {"request_too_large": ("413", "429")}
"""The flavours of a chat scenario that ``x-genguard-variant`` can ask for (the first is the default)."""

# Proxies in front of providers answer these with HTML pages, whatever the provider's dialect.
_HTML_PAGES: dict[str, tuple[int, str]] = {
    "bad_gateway": (
        502,
        "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
        "</h1></center><hr><center>cloudflare</center></body></html>",
    ),
    "gateway_timeout": (
        504,
        "<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 "
        "Gateway Time-out</h1></center><hr><center>nginx</center></body></html>",
    ),
    "invalid_response": (
        200,
        "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
        "<p>Checking your browser before accessing the API.</p></body></html>",
    ),
}

ERROR_CODES: frozenset[str] = frozenset(_SPECS) | frozenset(_HTML_PAGES)
"""The hard codes answered with an error status (``timeout``/``connection_error`` are played otherwise)."""

_ANTHROPIC: dict[str, tuple[int, str, str | None]] = {
    "auth_failed": (401, "authentication_error", "invalid x-api-key"),
    "permission_denied": (
        403,
        "permission_error",
        "Your API key does not have permission to use this model.",
    ),
    "model_not_found": (404, "not_found_error", "model: {model}"),
    "not_found": (404, "not_found_error", "Not found"),
    "bad_request": (400, "invalid_request_error", "messages: field required"),
    "context_length_exceeded": (
        400,
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum",
    ),
    "request_too_large": (413, "request_too_large", "Request exceeds the maximum allowed number of bytes."),
    "prompt_blocked": (
        400,
        "invalid_request_error",
        "Input blocked by our content policy: the prompt was flagged.",
    ),
    "quota_exceeded": (
        402,
        "billing_error",
        "Your credit balance is too low to access the API. "
        "Please go to Plans & Billing to upgrade or purchase credits.",
    ),
    "rate_limited": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization "
        "of {limit} requests per minute. Please try again in {wait}.",
    ),
    "unavailable": (529, "overloaded_error", "Overloaded"),
    "server_error": (500, "api_error", "Internal server error"),
}

_GOOGLE_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED", 409: "ABORTED", 413: "INVALID_ARGUMENT", 422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip


def format_wait(seconds: float) -> str:
    """A wait as providers write it: ``20s``, ``1.574s``, ``6m0s``, ``12ms``.

    >>> format_wait(360), format_wait(0.012), format_wait(1.5)
    ('6m0s', '12ms', '1.5s')
    """
    if seconds < 1:
        return f"{max(round(seconds * 1000), 0)}ms"
    minutes, secs = divmod(seconds, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def _retry_headers(seconds: float) -> dict[str, str]:
    whole = f"{seconds:.3f}".rstrip("0").rstrip(".") or "0"
    return {"retry-after": whole, "retry-after-ms": str(round(seconds * 1000))}


def error_response(
    dialect: str,
    code: str,
    *,
    request_id: str,
    message: str | None = None,
    model: str = "gpt-4o-mini",
    path: str = "/v1/chat/completions",
    retry_after_s: float = 1.0,
    limit: int = 60,
    variant: str = "",
    tpm: int = 30000,
    requested: int = 31538,
    spec: ErrorSpec | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of the error ``code`` as ``dialect`` sends it.

    ``variant`` picks another flavour where a code has several (``VARIANTS``): ``request_too_large`` is a 413
    by default and OpenAI's 429 "Request too large ... Requested N" with ``"429"`` (Anthropic has only 413).
    ``spec`` replaces the OpenAI status, type, code, param and message the code has by default (a refused
    parameter names its own), and each dialect shapes it as it shapes the rest.
    """
    if code in _HTML_PAGES:
        status, page = _HTML_PAGES[code]
        return status, {"content-type": HTML}, page.encode()
    if spec is not None:
        message = message or spec.message  # already in its final words: not a template
    else:
        spec = _SPECS[code]
        if code == "request_too_large" and variant == "429" and dialect != "anthropic":
            spec = _TOO_LARGE_429
    wait = format_wait(retry_after_s)
    fill = {"model": model, "path": path, "wait": wait, "limit": limit, "tpm": tpm, "requested": requested}
    headers: dict[str, str] = {"content-type": JSON}
    if code in ("rate_limited", "unavailable"):
        headers.update(_retry_headers(retry_after_s))
    status = spec.status
    text = message or spec.message.format(**fill)
    body: Any
    if dialect == "azure":
        body = _azure(code, spec, text, retry_after_s)
    elif dialect == "anthropic":
        status, atype, amsg = _ANTHROPIC.get(code, (spec.status, "api_error", None))
        text = message or (amsg.format(**fill) if amsg else text)
        body = {"type": "error", "error": {"type": atype, "message": text}, "request_id": request_id}
    elif dialect == "google":
        if code == "quota_exceeded":
            text = message or "You exceeded your current quota, please check your plan and billing details."
        body = [{"error": {"code": status, "message": text, "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}}]
    elif dialect == "openrouter":
        body = _openrouter(code, spec, text)
        status = body["error"]["code"]
    elif dialect in ("vllm", "mistral"):
        body = {"object": "error", "message": text, "type": spec.type or "BadRequestError", "param": spec.param,
                "code": status if dialect == "vllm" else spec.code}  # fmt: skip
    elif dialect == "ollama":
        if code == "model_not_found":
            text = message or f'model "{model}" not found, try pulling it first'
        body = {"error": text}
    else:
        body = {"error": {"message": text, "type": spec.type, "param": spec.param, "code": spec.code}}
    return status, headers, orjson.dumps(body)


# Dialects whose servers check the prompt alone against the window; the others add max_tokens to it.
_INPUT_ONLY = frozenset({"google", "mistral", "ollama"})


def context_overflow(
    dialect: str, *, window: int, messages: int, tools: int = 0, completion: int = 0
) -> str | None:
    """The message ``dialect`` refuses a prompt of ``messages`` + ``tools`` tokens with, asking for
    ``completion`` more, in a model of ``window`` tokens; None when it fits. OpenAI and the servers that copy
    it count ``max_tokens`` in; Google, Mistral and Ollama check the input alone.

    >>> context_overflow("anthropic", window=200000, messages=150000, completion=60000)
    'input length and `max_tokens` exceed context limit: 150000 + 60000 > 200000, decrease input length or `max_tokens` and try again'
    >>> context_overflow("openai", window=128000, messages=1000, completion=4000) is None
    True
    """
    prompt = messages + tools
    asked = prompt if dialect in _INPUT_ONLY else prompt + completion
    if asked <= window:
        return None
    if dialect == "anthropic":
        if prompt > window:
            return f"prompt is too long: {prompt} tokens > {window} maximum"
        return (f"input length and `max_tokens` exceed context limit: {prompt} + {completion} > {window}, "
                "decrease input length or `max_tokens` and try again")  # fmt: skip
    if dialect == "google":
        return f"The input token count ({prompt}) exceeds the maximum number of tokens allowed ({window})."
    if dialect == "mistral":
        return (f"Prompt contains {prompt} tokens and 0 draft tokens, too large for model with {window} maximum "
                "context length")  # fmt: skip
    if dialect == "ollama":
        return f"prompt too long; exceeded max context length by {prompt - window} tokens"
    if dialect == "openrouter":
        return (f"This endpoint's maximum context length is {window} tokens. However, you requested about "
                f"{asked} tokens ({prompt} of text input, {completion} in the output). Please reduce the length "
                'of either one, or use the "middle-out" transform to compress your prompt automatically.')  # fmt: skip
    head = f"This model's maximum context length is {window} tokens. However, "
    parts = [f"{messages} in the messages"]
    if tools:
        parts.append(f"{tools} in the functions")
    if completion:
        parts.append(f"{completion} in the completion")
    if len(parts) == 1:
        return (
            head + f"your messages resulted in {messages} tokens. Please reduce the length of the messages."
        )
    names = [p.split(" in the ")[1] for p in parts]
    said = "resulted in" if not completion else "requested"
    who = "your messages" if not completion else "you"
    joined = f"{names[0]} or {names[1]}" if len(names) == 2 else f"{names[0]}, {names[1]}, or {names[2]}"
    return (f"{head}{who} {said} {asked} tokens ({', '.join(parts)}). Please reduce the length of the "
            f"{joined}.")  # fmt: skip


def _azure(code: str, spec: ErrorSpec, text: str, retry_after_s: float) -> dict[str, Any]:
    if code == "prompt_blocked":
        filtered = {"filtered": False, "severity": "safe"}
        return {"error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                       "management policy. Please modify your prompt and retry.",
            "type": None, "param": "prompt", "code": "content_filter", "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                "hate": filtered, "sexual": filtered, "self_harm": filtered,
                "violence": {"filtered": True, "severity": "high"},
                "jailbreak": {"filtered": False, "detected": False}}}}}  # fmt: skip
    if code == "rate_limited":
        return {"error": {"code": "429", "message": (
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have "
            f"exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after "
            f"{max(round(retry_after_s), 1)} seconds.")}}  # fmt: skip
    if code == "auth_failed":
        return {
            "error": {
                "code": "401",
                "message": "Access denied due to invalid subscription key or wrong "
                "API endpoint. Make sure to provide a valid key.",
            }
        }
    return {"error": {"message": text, "type": spec.type, "param": spec.param, "code": spec.code}}


def _openrouter(code: str, spec: ErrorSpec, text: str) -> dict[str, Any]:
    if code == "context_length_exceeded":
        return {"error": {"code": 400, "message": text}}  # OpenRouter's own check, before any provider
    if code == "auth_failed":
        return {"error": {"code": 401, "message": "No auth credentials found"}}
    if code == "quota_exceeded":
        return {
            "error": {
                "code": 402,
                "message": "Insufficient credits. Add more using https://openrouter.ai/credits",
            }
        }
    raw = orjson.dumps({"error": {"message": text, "type": spec.type, "code": spec.code}}).decode()
    return {"error": {"code": spec.status, "message": "Provider returned error",
                      "metadata": {"raw": raw, "provider_name": "OpenAI"}}}  # fmt: skip


def stream_error_event(dialect: str, *, chunk_base: dict[str, Any] | None = None) -> bytes:
    """The server-sent event(s) a ``dialect`` sends when an error breaks a 2xx stream (then the stream ends)."""
    message = "The server had an error while processing your request. Sorry about that!"
    err: dict[str, Any]
    if dialect == "anthropic":
        err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return b"event: error\ndata: " + orjson.dumps(err) + b"\n\n"
    if dialect == "openrouter":
        chunk = dict(chunk_base or {})
        chunk["error"] = {"code": 502, "message": "Upstream provider error: connection reset",
                          "metadata": {"provider_name": "OpenAI"}}  # fmt: skip
        chunk["choices"] = [{"index": 0, "delta": {"content": ""}, "finish_reason": "error",
                             "native_finish_reason": "error"}]  # fmt: skip
        return b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
    if dialect == "google":
        err = {"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}}
    elif dialect == "ollama":
        err = {"error": "an error was encountered while running the model: unexpected EOF"}
    else:
        err = {"error": {"message": message, "type": "server_error", "param": None, "code": "server_error"}}
    return b"data: " + orjson.dumps(err) + b"\n\ndata: [DONE]\n\n"
