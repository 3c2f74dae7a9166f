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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Literal

from ..core import arguments
from ..core.exceptions import ConfigError
from ..core.outcome import Attempt, Outcome
from ..core.taxonomy import code_info

__all__ = ["DEFAULT_FALLBACK_ON", "Decision", "RetryPolicy", "RetryState"]

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


_NO_PATCH: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RetryState:
    """Where a call stands between two attempts: an immutable value, one per attempt.

    ``tries`` counts the attempts on the current model, ``attempts`` all of them; ``patch`` holds the body
    fields a re-ask or a raised ``max_tokens`` changed; ``history`` one :class:`~genguard.Attempt` each.

    >>> s = RetryState.start(("big", "small"), key_count=2)
    >>> (s.model, s.keys_left, s.fallbacks_left)
    ('big', True, True)
    """

    models: tuple[str, ...]
    key_count: int = 0
    model_index: int = 0
    key_index: int = 0
    tries: int = 0
    attempts: int = 0
    reasks: int = 0
    raised_max_tokens: bool = False
    elapsed: float = 0.0
    patch: Mapping[str, Any] = field(default_factory=lambda: _NO_PATCH)
    history: tuple[Attempt, ...] = ()

    @classmethod
    def start(cls, models: Iterable[str], key_count: int = 0, *, key_index: int = 0) -> RetryState:
        """The state before the first attempt; ``key_index`` is the first key not yet refused."""
        return cls(tuple(models), key_count, key_index=min(key_index, max(0, key_count - 1)))

    @property
    def model(self) -> str:
        """The model the next attempt goes to."""
        return self.models[self.model_index]

    @property
    def keys_left(self) -> bool:
        """Whether a key after the current one remains."""
        return self.key_index + 1 < self.key_count

    @property
    def fallbacks_left(self) -> bool:
        """Whether a model after the current one remains."""
        return self.model_index + 1 < len(self.models)

    def evolve(self, **changes: Any) -> RetryState:
        """A copy with ``changes``."""
        return replace(self, **changes)


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
        # Checked once here: increment() copies a checked policy without running this again. The code sets take
        # any iterable of codes (never a str, which would become a set of letters) and are kept as frozensets,
        # so the value stays hashable and immutable.
        fail = ConfigError
        arguments.whole("max_attempts", self.max_attempts, at_least=1, error=fail)
        for name in ("backoff_base", "backoff_max", "jitter"):
            arguments.number(name, getattr(self, name), at_least=0, unit="seconds", error=fail)
        arguments.number("max_wait", self.max_wait, at_least=0, unit="seconds", finite=False, error=fail)
        arguments.number(
            "deadline", self.deadline, at_least=0, unit="seconds", none_ok=True, finite=False, error=fail
        )
        object.__setattr__(
            self, "retry_on", arguments.codes("retry_on", self.retry_on, none_ok=True, error=fail)
        )
        object.__setattr__(self, "fallback_on", arguments.codes("fallback_on", self.fallback_on, error=fail))
        arguments.whole("reask_on_silent", self.reask_on_silent, at_least=0, error=fail)
        arguments.flag("raise_max_tokens_on_truncated", self.raise_max_tokens_on_truncated)

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
        ``raised_max_tokens`` what was already done; ``max_attempts`` caps the policy's (testing mode).
        """
        if outcome.ok:
            return Decision("stop", outcome=outcome)
        code = outcome.code or ""
        limit = self.max_attempts if max_attempts is None else min(self.max_attempts, max_attempts)
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

    def step(
        self,
        outcome: Outcome,
        state: RetryState,
        *,
        final: bool = False,
        elapsed: float | None = None,
        max_attempts: int | None = None,
        rng: random.Random | None = None,
    ) -> tuple[Decision, RetryState]:
        """Decide what follows ``outcome`` (the result of the attempt ``state`` was waiting for) and return the
        decision with the next state, whose history ends with this attempt's record.

        ``final`` forces a stop (a stream whose text already reached the caller cannot be taken back);
        ``elapsed`` is the call's time so far (else the state's).

        >>> p = RetryPolicy(jitter=0.0)
        >>> d, s = p.step(Outcome.failure("server_error"), RetryState.start(["m"]))
        >>> (d.action, d.wait_s, s.tries, s.attempts, [a.code for a in s.history])
        ('retry', 0.5, 1, 1, ['server_error'])
        """
        tries = state.tries + 1
        if elapsed is None:
            elapsed = state.elapsed
        decision = self.decide(
            outcome,
            tries=tries,
            elapsed=elapsed,
            keys_left=state.keys_left,
            fallbacks_left=state.fallbacks_left,
            reasks=state.reasks,
            raised_max_tokens=state.raised_max_tokens,
            max_attempts=max_attempts,
            rng=rng,
        )
        if final and decision.action != "stop":
            decision = Decision("stop", outcome=decision.outcome)
        attempt = Attempt(
            state.attempts + 1,
            outcome.code,
            outcome.status,
            decision.wait_s,
            state.model,
            outcome.request_id,
            outcome.message,
        )
        action = decision.action
        # Built field by field (dataclasses.replace costs several microseconds, and this runs per attempt).
        return decision, RetryState(
            state.models,
            state.key_count,
            state.model_index + 1 if action == "fallback" else state.model_index,
            state.key_index + 1 if action == "rotate_key" else state.key_index,
            0 if action == "fallback" else tries,
            attempt.number,
            state.reasks + 1 if action == "reask" else state.reasks,
            state.raised_max_tokens or action == "raise_max_tokens",
            elapsed,
            state.patch,
            (*state.history, attempt),
        )

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
