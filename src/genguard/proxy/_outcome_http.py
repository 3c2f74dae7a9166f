"""An Outcome as the proxy answers it: the ``x-genguard-*`` headers, the SDK retry headers, OpenAI's error shape.

Pure: no I/O, so the rules of what a client sees are tested without a server.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..core.outcome import Outcome
from ..core.secrets import MIN_SECRET

# Statuses for a failure that has no provider status of its own (no answer came): what a gateway says.
_NO_ANSWER_STATUS = {"timeout": 504, "connection_error": 502}
# A 2xx that genguard judged unusable, under --strict: 422 is an error every official SDK raises
# (UnprocessableEntityError in Python) and none retries, with x-should-retry false besides.
STRICT_STATUS = 422
# A 2xx that is broken (cut, errored, unreadable) rather than well-formed but unusable: the upstream's failure.
BROKEN_2XX = frozenset({"incomplete_stream", "stream_error", "invalid_response"})


def _header_text(value: str) -> str:
    # Header values go out as latin-1: a model name or id with other characters must not fail the answer.
    return value.encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")


def outcome_headers(outcome: Outcome, model: str) -> dict[str, str]:
    """The headers every answer carries; ``model`` is the one asked for, used when none answered.

    A failure is final as far as genguard is concerned (its retries, key rotation and fallbacks are spent or
    do not apply), so it says ``x-should-retry: false``: an SDK's own retries would multiply genguard's.
    """
    answered = outcome.extra.get("model") if outcome.extra else None
    ids = ",".join(_header_text(a.request_id) if a.request_id else "-" for a in outcome.history)
    headers = {
        "x-genguard-code": outcome.code or "ok",
        "x-genguard-kind": outcome.kind or "ok",
        "x-genguard-attempts": str(outcome.attempts),
        "x-genguard-model": _header_text(answered if isinstance(answered, str) and answered else model),
        "x-genguard-request-ids": ids or _header_text(outcome.request_id or "-"),
    }
    if not outcome.ok:
        headers["x-should-retry"] = "false"
        if outcome.retry_after_s is not None:
            # The server's own wait, for an application that schedules the call again later itself.
            headers["retry-after-ms"] = str(round(outcome.retry_after_s * 1000))
    return headers


def error_status(outcome: Outcome) -> int:
    """The status of a failure the proxy answers with a body of its own."""
    status = outcome.status
    if status is not None and status >= 400:
        return status
    if status is not None and 200 <= status < 300:
        # A broken 2xx (cut, errored or unreadable) is the upstream's failure, as a gateway reports one; a
        # well-formed but unusable answer (under strict) is the client's request judged unusable.
        return 502 if outcome.code in BROKEN_2XX else STRICT_STATUS
    return _NO_ANSWER_STATUS.get(outcome.code or "", 502)


def error_body(outcome: Outcome, original: bytes | None = None) -> bytes:
    """OpenAI's error shape, ``{"error": {"message", "type", "code", "param"}}``, with the diagnosis.

    ``error.message`` is the cause and fix (then the provider's own words); ``error.genguard`` holds the
    outcome as JSON and, when the provider answered, its ``original`` body (as JSON when it was JSON).
    """
    parts = [p for p in (outcome.cause, outcome.fix) if p]
    if outcome.message:
        parts.append(f"Provider: {outcome.message}")
    extra: dict[str, Any] = {"outcome": outcome.to_dict()}
    if original is not None:
        try:
            extra["original"] = orjson.loads(original)
        except orjson.JSONDecodeError:
            extra["original"] = original.decode("utf-8", "replace")
    body = {
        "error": {
            "message": " ".join(parts) or (outcome.code or "failure"),
            "type": f"genguard_{outcome.kind or 'hard'}_failure",
            "code": outcome.code,
            "param": outcome.param,
            "genguard": extra,
        }
    }
    return orjson.dumps(body)


# Keys shorter than MIN_SECRET (core.secrets) are not masked in bodies: a local server's dummy key (``none``,
# ``EMPTY``, ``x``) is no secret, and masking it would rewrite the answer's words (or its JSON names).


def mask_keys(data: bytes, keys: tuple[str, ...], status: int | None) -> bytes:
    """An error body (``status`` not 2xx) with every upstream key of ``MIN_SECRET`` characters or more masked:
    a provider may quote the key it refused. An answer (2xx) is passed on as the provider sent it."""
    if status is not None and status < 300:
        return data
    for key in keys:
        if len(key) >= MIN_SECRET:
            raw = key.encode()
            if raw in data:
                data = data.replace(raw, b"***")
    return data
