"""RetryPolicy: an immutable value that decides what follows a failed attempt.

The policy never parses bytes and never sleeps: it reads an :class:`~genguard.Outcome` (already classified,
with ``retryable`` reflecting any ``x-should-retry`` header and ``retry_after_s`` the server's wait) and says
what to do next: stop, retry after a wait, rotate to the next key, fall back to the next model, re-ask with the
validation error, or raise ``max_tokens`` once. Like urllib3's ``Retry``, each attempt yields a new policy with
a longer :attr:`RetryPolicy.history`.

>>> from genguard import Outcome
>>> policy = RetryPolicy(max_attempts=3, jitter=0.0)
>>> policy.decide(Outcome.failure("rate_limited", retry_after_s=2.0), tries=1).action
'retry'
>>> policy.decide(Outcome.failure("quota_exceeded"), tries=1).action
'stop'
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from typing import Literal

from ..core.outcome import Attempt, Outcome
from ..core.taxonomy import code_info

__all__ = ["DEFAULT_FALLBACK_ON", "Decision", "RetryPolicy"]

Action = Literal["stop", "retry", "rotate_key", "fallback", "reask", "raise_max_tokens"]

# Codes where another key may succeed where this one cannot: they never cost a backoff retry.
_KEY_CODES = frozenset({"auth_failed", "quota_exceeded"})
DEFAULT_FALLBACK_ON: frozenset[str] = frozenset({"unavailable", "model_not_found", "server_error"})


@dataclass(frozen=True, slots=True)
class Decision:
    """What :meth:`RetryPolicy.decide` says to do next; ``outcome`` is the (possibly annotated) outcome."""

    action: Action
    wait_s: float = 0.0
    outcome: Outcome | None = None


def _frozen(codes: Iterable[str] | None) -> frozenset[str] | None:
    return None if codes is None else frozenset(codes)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a call is retried. Immutable: :meth:`increment` returns a new policy with one more attempt.

    - ``max_attempts``: attempts per model (the first one included); fallback models get their own.
    - ``backoff_base``/``backoff_max``: exponential backoff (base, 2x base, 4x base... capped) when the server
      names no wait, plus up to ``jitter`` seconds at random.
    - ``max_wait``: a server wait (``retry_after_s``) is honoured in full up to this; beyond it the call fails
      at once with the wait it would have needed (never silently).
    - ``deadline``: total seconds for the whole call, waits included (``None``: no limit).
    - ``retry_on``: codes to retry (``None``: the taxonomy's retryable ones). ``x-should-retry`` always wins.
    - ``fallback_on``: codes on which the next fallback model is tried, once retries are spent.
    - ``reask_on_silent``: how many times a silent failure is re-asked with the validation error appended.
    - ``raise_max_tokens_on_truncated``: on ``truncated``, send once more with ``max_tokens`` doubled.

    >>> p = RetryPolicy(max_attempts=2).increment(Attempt(1, "server_error"))
    >>> len(p.history), p.max_attempts
    (1, 2)
    """

    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.25
    max_wait: float = 600.0
    deadline: float | None = None
    retry_on: frozenset[str] | None = None
    fallback_on: frozenset[str] = DEFAULT_FALLBACK_ON
    reask_on_silent: int = 0
    raise_max_tokens_on_truncated: bool = False
    history: tuple[Attempt, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        # Accept any iterable for the code sets while keeping the value hashable and immutable.
        object.__setattr__(self, "retry_on", _frozen(self.retry_on))
        object.__setattr__(self, "fallback_on", frozenset(self.fallback_on))
        object.__setattr__(self, "reask_on_silent", int(self.reask_on_silent))
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.jitter < 0 or self.max_wait < 0:
            raise ValueError("backoff_base, backoff_max, jitter and max_wait must not be negative")

    # -- history --------------------------------------------------------------------------------

    def increment(self, attempt: Attempt) -> RetryPolicy:
        """A new policy whose history ends with ``attempt``."""
        # The fields were checked and frozen when this policy was made: copy them slot by slot instead of
        # running __init__ and __post_init__ again, as dataclasses.replace would. A subclass may add fields.
        if type(self) is not RetryPolicy:
            return replace(self, history=(*self.history, attempt))
        new = _new_policy(RetryPolicy)
        for setter, value in zip(_POLICY_SETTERS, _read_policy(self), strict=True):
            setter(new, value)
        _set_history(new, (*self.history, attempt))
        return new

    # -- verdicts -------------------------------------------------------------------------------

    def should_retry(self, outcome: Outcome) -> bool:
        """Whether sending ``outcome``'s request again may help, by this policy's codes and the server's word."""
        if outcome.ok or outcome.code is None:
            return False
        if self.retry_on is None:
            return outcome.retryable
        # The classifier folds x-should-retry into `retryable`; a value that differs from the code's default
        # can only come from that header, and the server's own verdict wins over our list.
        default = code_info(outcome.code).retryable
        if outcome.retryable != default:
            return outcome.retryable
        return outcome.code in self.retry_on

    def backoff(self, retry_number: int, *, rng: random.Random | None = None) -> float:
        """The wait before retry ``retry_number`` (1 for the first retry) when the server named none."""
        base = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, retry_number - 1))
        extra: float = (rng or random).uniform(0.0, self.jitter) if self.jitter else 0.0
        return min(self.backoff_max, base + extra)

    def decide(
        self,
        outcome: Outcome,
        *,
        tries: int,
        elapsed: float = 0.0,
        keys_left: bool = False,
        fallbacks_left: bool = False,
        reasks: int = 0,
        raised_max_tokens: bool = False,
        max_attempts: int | None = None,
        rng: random.Random | None = None,
    ) -> Decision:
        """What follows ``outcome``, the result of attempt ``tries`` on the current model.

        ``keys_left``/``fallbacks_left`` say whether another key or model remains; ``reasks`` and
        ``raised_max_tokens`` what was already done; ``max_attempts`` overrides the policy's (testing mode).
        """
        if outcome.ok:
            return Decision("stop", outcome=outcome)
        code = outcome.code or ""
        limit = max_attempts or self.max_attempts
        if code in _KEY_CODES and keys_left:
            return Decision("rotate_key", outcome=outcome)
        if outcome.kind == "silent" and reasks < self.reask_on_silent:
            return Decision("reask", outcome=outcome)
        if code == "truncated" and self.raise_max_tokens_on_truncated and not raised_max_tokens:
            return Decision("raise_max_tokens", outcome=outcome)
        if self.should_retry(outcome):
            wait = outcome.retry_after_s
            if wait is not None and wait > self.max_wait:
                note = f"the server asked to wait {wait:g} s, longer than max_wait {self.max_wait:g} s: not retried"
                return self._fallback_or_stop(outcome, note, fallbacks_left)
            if tries < limit:
                if wait is None:
                    wait = self.backoff(tries, rng=rng)
                if self.deadline is not None and elapsed + wait > self.deadline:
                    note = (
                        f"not retried: waiting {wait:g} s would pass the deadline of {self.deadline:g} s "
                        f"after {elapsed:.3g} s"
                    )
                    return self._fallback_or_stop(outcome, note, fallbacks_left)
                return Decision("retry", wait_s=wait, outcome=outcome)
        return self._fallback_or_stop(outcome, None, fallbacks_left)

    def _fallback_or_stop(self, outcome: Outcome, note: str | None, fallbacks_left: bool) -> Decision:
        if note is not None:
            outcome = outcome.replace(message=f"{outcome.message} ({note})" if outcome.message else note)
        if fallbacks_left and (outcome.code or "") in self.fallback_on:
            return Decision("fallback", outcome=outcome)
        return Decision("stop", outcome=outcome)


_POLICY_FIELDS = tuple(f.name for f in fields(RetryPolicy) if f.name != "history")
_read_policy = attrgetter(*_POLICY_FIELDS)
# Each slot's own descriptor writes past the frozen __setattr__, as object.__setattr__ does, without the lookup.
_SLOT_SETTERS = {f.name: getattr(RetryPolicy, f.name).__set__ for f in fields(RetryPolicy)}
_POLICY_SETTERS = tuple(_SLOT_SETTERS[name] for name in _POLICY_FIELDS)
_set_history = _SLOT_SETTERS["history"]
_new_policy = object.__new__
