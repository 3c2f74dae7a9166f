"""What a client asks before each attempt and tells after it: the hook a rate limiter plugs into.

A batch run, a proxy or several workers sharing one budget give an :class:`~genguard.AsyncClient` a gate:
before every attempt the client awaits ``acquire(tokens)`` (the limiter decides how long), after every answer
it calls ``observe(status, headers)`` (the limiter learns from rate-limit headers and 429s). ``tokens`` is
:func:`estimate_tokens` of the request body: what a tokens-per-minute budget must reserve.

>>> estimate_tokens({"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50})
158
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import orjson

__all__ = ["Gate", "estimate_tokens"]

_DEFAULT_OUTPUT = 256  # what a request without max_tokens is assumed to generate


@runtime_checkable
class Gate(Protocol):
    """A rate limiter as the client sees it."""

    async def acquire(self, tokens: int) -> None:
        """Return when a request of ``tokens`` estimated tokens may be sent."""

    def observe(
        self,
        status: int,
        headers: Mapping[str, str],
        *,
        tokens_used: int | None = None,
        tokens_reserved: int | None = None,
        rate_limited: bool | None = None,
    ) -> None:
        """Learn from one answer: its status (0 when no answer came) and headers, the tokens it really used
        when known and what ``acquire`` reserved, and whether it was a rate limit (a 429 that says the quota is
        exhausted or the request is too large is not one: waiting would not help, so it must not slow the pace).
        """


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """Tokens a request may use: its prompt at ~4 characters a token, plus the output it allows
    (``max_tokens``/``max_completion_tokens``, else 256). Rough by design: it only has to reserve budget."""
    prompt = body.get("messages")
    if prompt is None:
        prompt = body.get("input", body.get("prompt", ""))
    if isinstance(prompt, str):
        size = len(prompt)
    else:
        try:
            size = len(orjson.dumps(prompt))
        except TypeError:
            size = len(str(prompt))
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if "messages" not in body:
        limit = 0 if limit is None else limit  # embeddings and images generate no text tokens
    output = (
        limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else _DEFAULT_OUTPUT
    )
    return size // 4 + 1 + output
