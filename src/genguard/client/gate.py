"""What a client asks before each attempt and tells after it: the hook a rate limiter plugs into.

A batch run, a proxy or several workers sharing one budget give an :class:`~genguard.AsyncClient` a gate:
before every attempt the client awaits ``acquire(tokens)`` (the limiter decides how long), after every answer
it calls ``observe(status, headers)`` (the limiter learns from rate-limit headers and 429s). ``tokens`` is
:func:`estimate_tokens` of the request body: what a tokens-per-minute budget must reserve.

>>> estimate_tokens({"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50})
158
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Protocol, runtime_checkable

import orjson

from ..core.taxonomy import GENERATION_KEYS

__all__ = [
    "ASKED_MODEL",
    "GENERATION_KEYS",
    "Gate",
    "SyncGate",
    "ThreadedGate",
    "asked_model",
    "estimate_tokens",
    "output_limit",
    "says_in_flight_limit",
    "tell_gate",
]

_DEFAULT_OUTPUT = 256  # what a request without max_tokens is assumed to generate

ASKED_MODEL: contextvars.ContextVar[str | None] = contextvars.ContextVar("genguard_asked_model", default=None)
"""The model of the attempt a gate is asked about: a client sets it before each ``acquire`` and leaves it until
that attempt's ``observe``, in the same task (None for a request that names no model)."""


def asked_model() -> str | None:
    """The model the attempt being gated asks, inside a :class:`Gate`'s ``acquire`` or ``observe`` called by a
    genguard client (a gate that paces each model on its own, such as :class:`genguard.ModelGates`, reads it);
    ``None`` when the request names none or the caller is not a genguard client."""
    return ASKED_MODEL.get()


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


@runtime_checkable
class SyncGate(Protocol):
    """A rate limiter as the blocking :class:`~genguard.Client` sees it: :class:`Gate` with a blocking
    ``acquire`` (:class:`ThreadedGate` makes one of any :class:`Gate`)."""

    def acquire(self, tokens: int) -> None:
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
        """As :meth:`Gate.observe`."""


_UNSET = object()


class ThreadedGate:
    """A :class:`Gate` (asyncio) for the blocking :class:`~genguard.Client`: the gate lives on an event loop
    of its own in a daemon thread, and ``acquire`` blocks the calling thread until the gate lets it go.

    ``gate`` is a Gate, or a zero-argument callable that makes one (or a coroutine that does: a gate holding
    connections must be made on the loop that uses them), such as the shared Redis limiter:

    >>> gate = ThreadedGate(lambda: genguard.open_gate("redis://127.0.0.1:6379/0?name=team-a"))  # doctest: +SKIP
    >>> client = genguard.Client(base_url, gate=gate)  # doctest: +SKIP
    """

    def __init__(self, gate: Gate | Callable[[], Gate | Awaitable[Gate]]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="genguard-gate", daemon=True)
        self._thread.start()

        async def make() -> Gate:
            made: Any = gate if isinstance(gate, Gate) else gate()
            if inspect.isawaitable(made):
                made = await made
            if not isinstance(made, Gate):
                raise TypeError(f"ThreadedGate needs a genguard.Gate (async acquire, observe), got {made!r}")
            return made

        try:
            self.gate: Gate = asyncio.run_coroutine_threadsafe(make(), self._loop).result()
        except BaseException:
            self.close()
            raise

    def acquire(self, tokens: int) -> None:
        """Block until the gate lets a request of ``tokens`` tokens go."""
        # The gate's wait runs in a copy of the calling thread's context, as an asyncio caller's runs in its own:
        # it reads the variables there (the model asked, for a gate that paces each model on its own) and
        # marks the request there for its answer (the probe of a pause, which of a model's gates let it go).
        # What it marked is set back here, where observe copies the context from.
        context = contextvars.copy_context()
        asyncio.run_coroutine_threadsafe(self._acquire(context, tokens), self._loop).result()
        for var, value in context.items():
            if var.get(_UNSET) is not value:
                var.set(value)

    async def _acquire(self, context: contextvars.Context, tokens: int) -> None:
        await self._loop.create_task(self._turn(tokens), context=context)

    async def _turn(self, tokens: int) -> None:
        await self.gate.acquire(tokens)  # any awaitable, as an asyncio caller would await it

    def observe(self, status: int, headers: Mapping[str, str], **kw: Any) -> None:
        """Tell the gate of an answer (on its own loop; this returns at once)."""
        self._loop.call_soon_threadsafe(
            partial(self.gate.observe, status, dict(headers), **kw), context=contextvars.copy_context()
        )

    def close(self) -> None:
        """Close the gate (its connections, if it has an ``aclose``) and stop its thread."""
        if not self._loop.is_running():
            return
        close = getattr(getattr(self, "gate", None), "aclose", None)
        if close is not None:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ThreadedGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def says_in_flight_limit(message: str | None) -> bool:
    """Whether a 429's message says the provider limits the requests in flight, not their rate ("Too many
    concurrent requests", ``concurrent_request_limit_exceeded``, "threshold of concurrent requests"): waiting
    makes no room, fewer at once does.

    LiteLLM's proxy says "Max parallel request limit reached" for its requests-per-minute, tokens-per-minute
    and parallel limits alike, with the counts after it: only a parallel count at its limit, with neither
    per-minute count at its own, is a limit of the requests in flight (as is its global parallel limit, "Hit
    Global Limit"). Its newer limiter names the kind ("Limit type: max_parallel_requests").

    >>> says_in_flight_limit("Too many concurrent requests. Limit: 1 concurrent requests")
    True
    >>> says_in_flight_limit("Rate limit reached for gpt-4o-mini on requests per min (RPM)")
    False
    >>> says_in_flight_limit("LiteLLM Rate Limit Handler for rate limit type = key. Max parallel request limit "
    ...     "reached. current rpm: 3, rpm limit: 100, current tpm: 0, tpm limit: 9000, current "
    ...     "max_parallel_requests: 2, max_parallel_requests: 2")
    True
    """
    if message is None:
        return False
    said = message.lower()
    if "concurren" in said or _LITELLM_KIND in said:
        return True
    if _LITELLM_PARALLEL not in said:
        return False
    if "hit global limit" in said:
        return True
    parallel = _LITELLM_COUNTS.search(said)
    return (
        parallel is not None
        and int(parallel[1]) >= int(parallel[2])
        and not any(int(now) >= int(limit) for now, limit in _LITELLM_PER_MINUTE.findall(said))
    )


_LITELLM_KIND = "limit type: max_parallel_requests"
_LITELLM_PARALLEL = "max parallel request limit reached"
_LITELLM_COUNTS = re.compile(r"current max_parallel_requests: (\d+), max_parallel_requests: (\d+)")
_LITELLM_PER_MINUTE = re.compile(r"current [rt]pm: (\d+), [rt]pm limit: (\d+)")


def tell_gate(
    gate: Gate | SyncGate, status: int, headers: Mapping[str, str], outcome: Any, tokens: int
) -> None:
    """Tell ``gate`` of one answer: the one place that says what a client reports (``outcome`` is the
    answer's :class:`~genguard.Outcome`). A gate that also has an ``answered(outcome)`` method is handed the
    answer's Outcome (the batch runner keeps what each attempt was billed, for a line a stop cuts off)."""
    usage = outcome.usage
    if status == 429 and says_in_flight_limit(outcome.message):
        # A limit of the requests in flight says nothing of the pace, and its Retry-After is the refused
        # request's own (the others on the wire are within the limit): the gate learns nothing, as when no
        # answer came. (The batch runner starts fewer at once instead.)
        gate.observe(0, {}, tokens_reserved=tokens)
    else:
        gate.observe(
            status,
            headers,
            tokens_used=usage.total_tokens if usage else None,
            tokens_reserved=tokens,
            # A 429 that says the quota is gone or the request is too large is no rate limit: waiting would not
            # help, so it must not slow the pace.
            rate_limited=status == 429 and outcome.code == "rate_limited",
        )
    answered = getattr(gate, "answered", None)
    if answered is not None:
        answered(outcome)


def output_limit(body: Mapping[str, Any]) -> Any:
    """The most output tokens a body allows, as it names it (chat ``max_completion_tokens`` or ``max_tokens``,
    the Responses API's ``max_output_tokens``); ``None`` when it names none."""
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if value is not None:
            return value
    return None


def estimate_tokens(body: Mapping[str, Any], *, text: bool | None = None) -> int:
    """Tokens a request may use: its prompt at ~4 characters a token, plus the output it allows
    (``max_tokens``/``max_completion_tokens``/``max_output_tokens``, else 256). Rough by design: it only has to
    reserve budget. ``text`` says whether the request generates text (a chat, a Responses API or a completions
    body); ``None`` tells from the body (an embeddings or images body generates none).

    >>> estimate_tokens({"model": "m", "input": "x" * 40}), estimate_tokens({"model": "m", "input": "x" * 40}, text=True)
    (11, 267)
    """
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
    limit = output_limit(body)
    if text is False or (text is None and "messages" not in body and not GENERATION_KEYS.intersection(body)):
        limit = 0 if limit is None else limit  # embeddings and images generate no text tokens
    output = (
        limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else _DEFAULT_OUTPUT
    )
    return size // 4 + 1 + output
