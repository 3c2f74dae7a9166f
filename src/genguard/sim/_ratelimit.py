"""Real rate limits: token buckets per API key for requests and tokens per minute, and a token quota.

>>> limiter = RateLimiter(rpm=2, tpm=None, quota_tokens=None)
>>> [limiter.admit("k", 10, now=0.0).verdict for _ in range(3)]
['ok', 'ok', 'rate_limited']
"""

from __future__ import annotations

from dataclasses import dataclass

from ._dialects import format_wait

# Headers still advertise a limit when none is enforced, as providers always send them.
_NOMINAL_RPM = 10_000
_NOMINAL_TPM = 10_000_000


class Bucket:
    """A token bucket refilled continuously to ``capacity`` over one minute."""

    __slots__ = ("capacity", "last", "level", "rate")

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / 60.0
        self.level = float(capacity)
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
class Admission:
    """The limiter's answer: ``ok``, ``rate_limited`` (with ``retry_after_s``) or ``quota_exceeded``."""

    verdict: str
    retry_after_s: float
    headers: dict[str, str]
    limit: int = 0


class RateLimiter:
    """Buckets per API key; ``admit`` charges a request, ``charge`` adds tokens generated afterwards."""

    def __init__(self, *, rpm: int | None, tpm: int | None, quota_tokens: int | None) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.quota_tokens = quota_tokens
        self._requests: dict[str, Bucket] = {}
        self._tokens: dict[str, Bucket] = {}
        self._used: dict[str, int] = {}

    def _buckets(self, key: str, now: float) -> tuple[Bucket | None, Bucket | None]:
        rb = tb = None
        if self.rpm is not None:
            rb = self._requests.get(key)
            if rb is None:
                rb = self._requests[key] = Bucket(self.rpm, now)
            rb.refill(now)
        if self.tpm is not None:
            tb = self._tokens.get(key)
            if tb is None:
                tb = self._tokens[key] = Bucket(self.tpm, now)
            tb.refill(now)
        return rb, tb

    def admit(self, key: str, tokens: int, *, now: float) -> Admission:
        """Charge one request of about ``tokens`` tokens to ``key``'s buckets, or refuse it."""
        rb, tb = self._buckets(key, now)
        if self.quota_tokens is not None and self._used.get(key, 0) >= self.quota_tokens:
            return Admission("quota_exceeded", 0.0, self._headers(rb, tb))
        wait_r = rb.wait_for(1) if rb is not None else 0.0
        # A request bigger than the whole bucket would never pass; charge what the bucket holds instead.
        wait_t = tb.wait_for(min(tokens, tb.capacity)) if tb is not None else 0.0
        if wait_r > 0 or wait_t > 0:
            limit = (self.rpm or 0) if wait_r >= wait_t else (self.tpm or 0)
            return Admission("rate_limited", max(wait_r, wait_t), self._headers(rb, tb), limit)
        if rb is not None:
            rb.level -= 1
        if tb is not None:
            tb.level -= tokens
        return Admission("ok", 0.0, self._headers(rb, tb))

    def charge(self, key: str, tokens: int) -> None:
        """Count tokens generated after admission against the minute's budget and the quota."""
        if tokens <= 0:
            return
        tb = self._tokens.get(key)
        if tb is not None:
            tb.level -= tokens
        if self.quota_tokens is not None:
            self._used[key] = self._used.get(key, 0) + tokens

    def charge_prompt(self, key: str, tokens: int) -> None:
        """Count admitted prompt tokens against the quota (the bucket was charged in ``admit``)."""
        if self.quota_tokens is not None and tokens > 0:
            self._used[key] = self._used.get(key, 0) + tokens

    def _headers(self, rb: Bucket | None, tb: Bucket | None) -> dict[str, str]:
        if rb is not None:
            req = (str(rb.capacity), str(max(int(rb.level), 0)), format_wait(rb.reset_s()))
        else:
            req = (str(_NOMINAL_RPM), str(_NOMINAL_RPM - 1), "6ms")
        if tb is not None:
            tok = (str(tb.capacity), str(max(int(tb.level), 0)), format_wait(tb.reset_s()))
        else:
            tok = (str(_NOMINAL_TPM), str(_NOMINAL_TPM), "0s")
        return {
            "x-ratelimit-limit-requests": req[0],
            "x-ratelimit-remaining-requests": req[1],
            "x-ratelimit-reset-requests": req[2],
            "x-ratelimit-limit-tokens": tok[0],
            "x-ratelimit-remaining-tokens": tok[1],
            "x-ratelimit-reset-tokens": tok[2],
        }
