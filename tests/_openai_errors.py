"""The exception the official openai SDK raises for each hard scenario, shared by the SDK compatibility tests."""

from __future__ import annotations

import openai

SDK_ERRORS: dict[str, type[Exception]] = {
    "auth_failed": openai.AuthenticationError,
    "permission_denied": openai.PermissionDeniedError,
    "model_not_found": openai.NotFoundError,
    "not_found": openai.NotFoundError,
    "bad_request": openai.BadRequestError,
    "context_length_exceeded": openai.BadRequestError,
    "request_too_large": openai.APIStatusError,
    "prompt_blocked": openai.BadRequestError,
    "quota_exceeded": openai.RateLimitError,
    "rate_limited": openai.RateLimitError,
    "request_timeout": openai.APIStatusError,
    "conflict": openai.ConflictError,
    "unprocessable": openai.UnprocessableEntityError,
    "server_error": openai.InternalServerError,
    "bad_gateway": openai.InternalServerError,
    "unavailable": openai.InternalServerError,
    "gateway_timeout": openai.InternalServerError,
    "timeout": openai.APITimeoutError,
    "connection_error": openai.APIConnectionError,
}
