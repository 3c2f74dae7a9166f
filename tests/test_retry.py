"""RetryPolicy: a pure value; every decision is checked on classified outcomes, no I/O."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genguard import Attempt, Outcome
from genguard.client.retry import RetryPolicy
from genguard.core.taxonomy import CODES


def test_policy_is_immutable_and_increment_returns_a_longer_history() -> None:
    p = RetryPolicy()
    q = p.increment(Attempt(1, "server_error"))
    r = q.increment(Attempt(2, None))
    assert p.history == ()
    assert [a.number for a in r.history] == [1, 2]
    with pytest.raises(AttributeError):
        p.max_attempts = 9  # type: ignore[misc]


@given(
    max_attempts=st.integers(1, 9),
    jitter=st.floats(0, 3),
    deadline=st.none() | st.floats(0, 100),
    retry_on=st.none() | st.frozensets(st.sampled_from(sorted(CODES))),
    reask=st.integers(0, 3),
    raise_tokens=st.booleans(),
)
def test_increment_keeps_every_setting_as_dataclasses_replace_does(
    max_attempts: int,
    jitter: float,
    deadline: float | None,
    retry_on: frozenset[str] | None,
    reask: int,
    raise_tokens: bool,
) -> None:
    p = RetryPolicy(
        max_attempts=max_attempts,
        jitter=jitter,
        deadline=deadline,
        retry_on=retry_on,
        fallback_on={"timeout"},
        reask_on_silent=reask,
        raise_max_tokens_on_truncated=raise_tokens,
    ).increment(Attempt(1, "timeout"))
    attempt = Attempt(2, "server_error", 503)
    q = p.increment(attempt)
    assert q == dataclasses.replace(p, history=(*p.history, attempt))
    assert q.history == (Attempt(1, "timeout"), attempt)
    assert repr(q) == repr(dataclasses.replace(p, history=q.history))


def test_increment_on_a_subclass_keeps_the_subclass_and_its_fields() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Tagged(RetryPolicy):
        tag: str = "x"

    q = Tagged(max_attempts=2, tag="y").increment(Attempt(1, "timeout"))
    assert type(q) is Tagged
    assert (q.tag, q.max_attempts, len(q.history)) == ("y", 2, 1)


def test_retryable_codes_retry_with_the_server_wait_in_full() -> None:
    p = RetryPolicy(max_attempts=3)
    d = p.decide(Outcome.failure("rate_limited", retry_after_s=7.5), tries=1)
    assert (d.action, d.wait_s) == ("retry", 7.5)


@pytest.mark.parametrize("code", sorted(c for c, i in CODES.items() if not i.retryable))
def test_codes_that_cannot_succeed_are_not_retried(code: str) -> None:
    d = RetryPolicy(max_attempts=5).decide(Outcome.failure(code), tries=1)
    assert d.action == "stop"


def test_quota_is_not_retried_but_rotates_to_another_key() -> None:
    p = RetryPolicy()
    assert p.decide(Outcome.failure("quota_exceeded", status=429), tries=1).action == "stop"
    assert (
        p.decide(Outcome.failure("quota_exceeded", status=429), tries=1, keys_left=True).action
        == "rotate_key"
    )
    assert (
        p.decide(Outcome.failure("auth_failed", status=401), tries=1, keys_left=True).action == "rotate_key"
    )


def test_attempts_are_bounded() -> None:
    p = RetryPolicy(max_attempts=2)
    o = Outcome.failure("server_error", status=500)
    assert p.decide(o, tries=1).action == "retry"
    assert p.decide(o, tries=2).action == "stop"
    assert p.decide(o, tries=1, max_attempts=1).action == "stop"


def test_wait_longer_than_max_wait_fails_at_once_and_says_so() -> None:
    p = RetryPolicy(max_wait=60)
    d = p.decide(Outcome.failure("rate_limited", retry_after_s=3600, message="slow down"), tries=1)
    assert d.action == "stop"
    assert d.outcome is not None
    assert d.outcome.code == "rate_limited"
    assert d.outcome.retry_after_s == 3600
    assert "max_wait" in (d.outcome.message or "")
    assert "slow down" in (d.outcome.message or "")


def test_deadline_stops_a_wait_that_would_pass_it() -> None:
    p = RetryPolicy(deadline=5.0)
    o = Outcome.failure("rate_limited", retry_after_s=4.0)
    assert p.decide(o, tries=1, elapsed=0.5).action == "retry"
    d = p.decide(o, tries=1, elapsed=2.0)
    assert d.action == "stop"
    assert "deadline" in (d.outcome.message or "") if d.outcome else False


def test_x_should_retry_overrides_the_code_and_the_retry_on_list() -> None:
    told_no = Outcome.failure("server_error", retryable=False)
    told_yes = Outcome.failure("bad_request", retryable=True)
    assert RetryPolicy().decide(told_no, tries=1).action == "stop"
    assert RetryPolicy(retry_on={"server_error"}).decide(told_no, tries=1).action == "stop"
    assert RetryPolicy(retry_on={"server_error"}).decide(told_yes, tries=1).action == "retry"
    assert RetryPolicy().decide(told_yes, tries=1).action == "retry"


def test_retry_on_narrows_the_codes() -> None:
    p = RetryPolicy(retry_on=["rate_limited"])
    assert p.decide(Outcome.failure("server_error"), tries=1).action == "stop"
    assert p.decide(Outcome.failure("rate_limited"), tries=1).action == "retry"


def test_fallback_on_named_codes_once_retries_are_spent() -> None:
    p = RetryPolicy(max_attempts=2)
    o = Outcome.failure("server_error")
    assert p.decide(o, tries=1, fallbacks_left=True).action == "retry"
    assert p.decide(o, tries=2, fallbacks_left=True).action == "fallback"
    assert p.decide(Outcome.failure("model_not_found"), tries=1, fallbacks_left=True).action == "fallback"
    assert p.decide(Outcome.failure("bad_request"), tries=1, fallbacks_left=True).action == "stop"
    assert p.decide(o, tries=2, fallbacks_left=False).action == "stop"


def test_reask_and_raise_max_tokens_are_opt_in_and_bounded() -> None:
    silent = Outcome.failure("invalid_json", text="{oops")
    truncated = Outcome.failure("truncated", text="abc")
    assert RetryPolicy().decide(silent, tries=1).action == "stop"
    p = RetryPolicy(reask_on_silent=1, raise_max_tokens_on_truncated=True)
    assert p.decide(silent, tries=1).action == "reask"
    assert p.decide(silent, tries=2, reasks=1).action == "stop"
    assert p.decide(truncated, tries=1).action == "raise_max_tokens"
    assert p.decide(truncated, tries=2, raised_max_tokens=True).action == "stop"


def test_ok_stops() -> None:
    assert RetryPolicy().decide(Outcome.success(text="x"), tries=1).action == "stop"


@given(
    base=st.floats(0, 10),
    cap=st.floats(0, 100),
    jitter=st.floats(0, 5),
    n=st.integers(1, 60),
)
def test_backoff_grows_and_never_passes_its_cap(base: float, cap: float, jitter: float, n: int) -> None:
    p = RetryPolicy(backoff_base=base, backoff_max=cap, jitter=jitter)
    rng = random.Random(n)
    w = p.backoff(n, rng=rng)
    assert 0 <= w <= cap
    no_jitter = RetryPolicy(backoff_base=base, backoff_max=cap, jitter=0)
    assert no_jitter.backoff(n) <= no_jitter.backoff(n + 1)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(max_wait=-1)
