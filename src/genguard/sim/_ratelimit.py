"""Real rate limits: token buckets per API key for requests and tokens per minute, and a token quota.

A request whose own estimate is larger than the whole ``--tpm`` budget can never pass, however long it
waits: as OpenAI does, it is refused at once as ``request_too_large`` (a 429 "Request too large ...").
The limits are advertised in the headers of the request's dialect: ``x-ratelimit-*`` with duration resets
(OpenAI and most others), or ``anthropic-ratelimit-*`` with RFC 3339 reset times.

>>> limiter = RateLimiter(rpm=2, tpm=None, quota_tokens=None)
>>> [limiter.admit("k", 10, now=0.0).verdict for _ in range(3)]
['ok', 'ok', 'rate_limited']

Time comes from ``clock`` (``time.monotonic`` unless given) or from each call's ``now``: tests pass a fake one.

>>> t = [0.0]
>>> limiter = RateLimiter(rpm=60, tpm=None, quota_tokens=None, window_s=1, clock=lambda: t[0])
>>> [limiter.admit("k", 1).verdict for _ in range(2)]
['ok', 'rate_limited']
>>> t[0] += 1.0; limiter.admit("k", 1).verdict
'ok'
>>> RateLimiter(rpm=None, tpm=100, quota_tokens=None).admit("k", 500, now=0.0).verdict
'request_too_large'

As OpenAI limits each model on its own, a model named in ``rpm_for`` or ``tpm_for`` has buckets of its own
per key (its limit, else ``rpm``/``tpm``); the models named in neither share the key's buckets.

>>> limiter = RateLimiter(rpm=600, tpm=None, quota_tokens=None, rpm_for={"gpt-4o": 1})
>>> [limiter.admit("k", 1, model=m, now=0.0).verdict for m in ("gpt-4o", "gpt-4o", "gpt-4o-mini")]
['ok', 'rate_limited', 'ok']
>>> limiter.admit("k", 1, model="gpt-4o", now=0.0).limits.requests[0]
1
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ._dialects import format_wait

# Headers still advertise a limit when none is enforced, as providers always send them.
_NOMINAL_RPM = 10_000
_NOMINAL_TPM = 10_000_000


class Bucket:
    """A token bucket holding ``limit`` per minute, refilled continuously.

    ``window_s`` below 60 enforces the limit over shorter windows, as providers do ("60 RPM may be enforced
    as 1 request per second"): the bucket then holds only ``limit * window_s / 60`` at once.
    """

    __slots__ = ("capacity", "last", "level", "limit", "rate")

    def __init__(self, limit: int, now: float, window_s: float = 60.0) -> None:
        self.limit = limit
        self.capacity = max(limit * min(window_s, 60.0) / 60.0, 1.0)
        self.rate = limit / 60.0
        self.level = self.capacity
        self.last = now

    def refill(self, now: float) -> None:
        if now > self.last:
            self.level = min(self.capacity, self.level + (now - self.last) * self.rate)
            self.last = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 if it is now)."""
        missing = amount - self.level
        return 0.0 if missing <= 0 else missing / self.rate

    def reset_s(self) -> float:
        return max(self.capacity - self.level, 0.0) / self.rate


@dataclass(frozen=True, slots=True)
class Limits:
    """The buckets as they stand after one request: limit, remaining and seconds to a full reset, each."""

    requests: tuple[int, int, float]
    tokens: tuple[int, int, float]

    def headers(
        self, dialect: str = "openai", *, unix_time: Callable[[], float] = time.time
    ) -> dict[str, str]:
        """The rate-limit headers ``dialect`` sends (Anthropic's own names and timestamps, the reset times
        counted from ``unix_time()``; else OpenAI's)."""
        if dialect == "anthropic":
            return self._anthropic(unix_time())
        (rl, rr, rs), (tl, tr, ts) = self.requests, self.tokens
        return {
            "x-ratelimit-limit-requests": str(rl),
            "x-ratelimit-remaining-requests": str(rr),
            "x-ratelimit-reset-requests": format_wait(rs),
            "x-ratelimit-limit-tokens": str(tl),
            "x-ratelimit-remaining-tokens": str(tr),
            "x-ratelimit-reset-tokens": format_wait(ts),
        }

    def _anthropic(self, now: float) -> dict[str, str]:
        out: dict[str, str] = {}
        (rl, rr, rs), (tl, tr, ts) = self.requests, self.tokens
        # Anthropic splits tokens into input and output buckets; the simulator has one, shown under all three.
        for bucket, (limit, remaining, reset) in (
            ("requests", (rl, rr, rs)),
            ("tokens", (tl, tr, ts)),
            ("input-tokens", (tl, tr, ts)),
            ("output-tokens", (tl, tr, ts)),
        ):
            out[f"anthropic-ratelimit-{bucket}-limit"] = str(limit)
            out[f"anthropic-ratelimit-{bucket}-remaining"] = str(remaining)
            out[f"anthropic-ratelimit-{bucket}-reset"] = rfc3339(now + reset)
        return out


def rfc3339(unix: float) -> str:
    """A Unix time as an RFC 3339 UTC timestamp with milliseconds, as Anthropic's reset headers carry it.

    >>> rfc3339(0.25)
    '1970-01-01T00:00:00.250Z'
    """
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Admission:
    """The limiter's answer: ``ok``, ``rate_limited`` (with ``retry_after_s``), ``quota_exceeded`` or
    ``request_too_large`` (``requested`` tokens over a ``limit`` that can never hold them)."""

    verdict: str
    retry_after_s: float
    limits: Limits
    limit: int = 0
    requested: int = 0


class RateLimiter:
    """Buckets per API key (and per model for the models ``rpm_for``/``tpm_for`` name); ``admit`` charges a
    request, ``charge`` adds tokens generated afterwards. The quota is the key's, across all models."""

    def __init__(self, *, rpm: int | None, tpm: int | None, quota_tokens: int | None,
                 window_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 rpm_for: Mapping[str, int] | None = None,
                 tpm_for: Mapping[str, int] | None = None) -> None:  # fmt: skip
        self.window_s = window_s
        self.clock = clock
        self.rpm = rpm
        self.tpm = tpm
        self.rpm_for = dict(rpm_for or {})
        self.tpm_for = dict(tpm_for or {})
        self.quota_tokens = quota_tokens
        # By (API key, model); the model is None for the buckets that models without limits of their own share.
        self._requests: dict[tuple[str, str | None], Bucket] = {}
        self._tokens: dict[tuple[str, str | None], Bucket] = {}
        self._used: dict[str, int] = {}

    @property
    def per_model(self) -> bool:
        """Whether some model has buckets of its own (then a request's model decides which it charges)."""
        return bool(self.rpm_for or self.tpm_for)

    def _own(self, model: str | None) -> str | None:
        # The model whose buckets a request of ``model`` uses: itself if it has its own, else None (shared).
        return model if model is not None and (model in self.rpm_for or model in self.tpm_for) else None

    def _buckets(self, key: str, model: str | None, now: float) -> tuple[Bucket | None, Bucket | None]:
        rpm = self.rpm if model is None else self.rpm_for.get(model, self.rpm)
        tpm = self.tpm if model is None else self.tpm_for.get(model, self.tpm)
        rb = tb = None
        if rpm is not None:
            rb = self._requests.get((key, model))
            if rb is None:
                rb = self._requests[key, model] = Bucket(rpm, now, self.window_s)
            rb.refill(now)
        if tpm is not None:
            tb = self._tokens.get((key, model))
            if tb is None:
                tb = self._tokens[key, model] = Bucket(tpm, now, self.window_s)
            tb.refill(now)
        return rb, tb

    def admit(
        self, key: str, tokens: int, *, model: str | None = None, now: float | None = None
    ) -> Admission:
        """Charge one request of about ``tokens`` tokens for ``model`` to ``key``'s buckets, or refuse it, at
        ``now`` (by default the limiter's clock); the answer's limits are those of the buckets it charged."""
        rb, tb = self._buckets(key, self._own(model), self.clock() if now is None else now)
        if self.quota_tokens is not None and self._used.get(key, 0) >= self.quota_tokens:
            return Admission("quota_exceeded", 0.0, self._limits(rb, tb))
        if tb is not None and tokens > tb.capacity:
            # Bigger than the whole minute's budget: no wait can make it pass, so it is not a rate limit.
            return Admission("request_too_large", 0.0, self._limits(rb, tb), int(tb.capacity), tokens)
        wait_r = rb.wait_for(1) if rb is not None else 0.0
        wait_t = tb.wait_for(tokens) if tb is not None else 0.0
        if wait_r > 0 or wait_t > 0:
            empty = rb if wait_r >= wait_t else tb
            limit = empty.limit if empty is not None else 0
            return Admission("rate_limited", max(wait_r, wait_t), self._limits(rb, tb), limit)
        if rb is not None:
            rb.level -= 1
        if tb is not None:
            tb.level -= tokens
        return Admission("ok", 0.0, self._limits(rb, tb))

    def charge(self, key: str, tokens: int, *, model: str | None = None) -> None:
        """Count tokens generated after admission against the minute's budget of ``model`` and the quota."""
        if tokens <= 0:
            return
        tb = self._tokens.get((key, self._own(model)))
        if tb is not None:
            tb.level -= tokens
        if self.quota_tokens is not None:
            self._used[key] = self._used.get(key, 0) + tokens

    def charge_prompt(self, key: str, tokens: int) -> None:
        """Count admitted prompt tokens against the quota (the bucket was charged in ``admit``)."""
        if self.quota_tokens is not None and tokens > 0:
            self._used[key] = self._used.get(key, 0) + tokens

    def _limits(self, rb: Bucket | None, tb: Bucket | None) -> Limits:
        if rb is not None:
            req = (rb.limit, max(int(rb.level), 0), rb.reset_s())
        else:
            req = (_NOMINAL_RPM, _NOMINAL_RPM - 1, 0.006)
        if tb is not None:
            tok = (tb.limit, max(int(tb.level), 0), tb.reset_s())
        else:
            tok = (_NOMINAL_TPM, _NOMINAL_TPM, 0.0)
        return Limits(req, tok)
