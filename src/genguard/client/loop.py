"""The retry loop as values: a frozen :class:`RetryState`, the actions a client performs, and the loop itself.

The loop is a generator of actions. It yields :class:`Send` (send one attempt with this key, model and body
patch) or :class:`Sleep`, receives ``(outcome, committed)`` for each Send, and returns the final
:class:`~genguard.Outcome`. It never touches the network or the clock's sleep, so :class:`~genguard.Client`
and :class:`~genguard.AsyncClient` (and the streams) drive the same decisions with their own I/O.

Each attempt is one step of the policy: ``RetryPolicy.step(outcome, state)`` returns the
:class:`~genguard.client.retry.Decision` and the next state, as urllib3's ``Retry.increment`` does. What is left
here is what the policy does not own: validators, the body patch for a re-ask or a raised ``max_tokens``,
usage and cost (a :class:`Spend`), the log line and the hooks, which receive the attempt's frozen record.
A hook that also has a ``call_ended`` method is handed a :class:`CallRecord` once the call ended: what was
asked, the final Outcome, and when the call and each attempt began and ended (tracing builds its spans
from it).

>>> from genguard import Outcome
>>> plan = CallPlan(models=("m",), keys=(), policy=RetryPolicy(jitter=0.0))
>>> loop = run(plan)
>>> send = next(loop); (send.model, send.number)
('m', 1)
>>> sleep = loop.send((Outcome.failure("server_error"), False)); sleep.seconds
0.5
>>> send = loop.send(None); send.number
2
>>> try:
...     loop.send((Outcome.success(text="hi", finish_reason="stop"), False))
... except StopIteration as stop:
...     (stop.value.ok, stop.value.attempts, [a.code for a in stop.value.history])
(True, 2, ['server_error', None])
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

from ..core.outcome import Attempt, Outcome, Usage
from ..core.pricing import cost_usd
from .bodies import raised_max_tokens, reask_patch
from .log import log_attempt, log_silent, logger, mask
from .retry import RetryPolicy, RetryState
from .testing import is_testing, testing_attempts

__all__ = ["CallEnded", "CallPlan", "CallRecord", "Hook", "Loop", "Send", "Sleep", "Spend", "adrive", "run"]

Hook = Callable[[Attempt], None]
"""A hook receives each attempt's frozen :class:`~genguard.Attempt` record (for metrics, tracing...).

A hook object may also have a ``call_ended(record)`` method (:class:`CallEnded`): it is then handed each
call's :class:`CallRecord` when the call ends."""

NO_PATCH: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Send:
    """Send one attempt with this key and model; ``patch`` overrides body fields (re-ask...)."""

    key: str | None
    model: str
    number: int
    patch: Mapping[str, Any]
    timeout: float | None  # what is left of the deadline, if one is set


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this long before the next attempt (skipped in testing mode)."""

    seconds: float


Loop = Generator["Send | Sleep", "tuple[Outcome, bool] | None", Outcome]


@dataclass(frozen=True, slots=True)
class Spend:
    """Usage and cost summed over a call's attempts; each :meth:`add` returns a new value."""

    usage: Usage | None = None
    cost_usd: float | None = None

    def add(self, model: str, usage: Usage | None) -> Spend:
        if usage is None:
            return self
        total = usage if self.usage is None else self.usage + usage
        cost = cost_usd(model, usage)
        if cost is not None and self.cost_usd is not None:
            cost += self.cost_usd
        return Spend(total, self.cost_usd if cost is None else cost)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call as it ended, for hooks with a ``call_ended`` method: what was asked, how it ended, and when.

    Times are wall-clock nanoseconds since the epoch (what tracing wants), measured on the monotonic clock
    from the call's start. ``attempt_times[i]`` is when attempt ``attempts[i]`` was handed to the client to
    send and when its outcome came back (a stream's: when it was read to its end). ``outcome`` is ``None``
    when the caller stopped the call before it ended (a stream closed early). No API key is in it.
    """

    endpoint: str
    model: str
    url: str | None
    method: str | None
    stream: bool
    messages: Sequence[Any] | None
    params: Mapping[str, Any] | None
    outcome: Outcome | None
    attempts: tuple[Attempt, ...]
    started_ns: int
    ended_ns: int
    attempt_times: tuple[tuple[int, int], ...]


class CallEnded(Protocol):
    """A hook that is also told of each call's end (see :class:`CallRecord`)."""

    def __call__(self, attempt: Attempt) -> None: ...

    def call_ended(self, record: CallRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What one call is made of: the models to try in order, the keys, the policy and the checks.

    ``key_start`` is the first key not yet refused; ``retire_key(i)`` is told when key ``i`` becomes the one to
    use, so later calls skip the refused ones too. ``no_key_error`` makes the error raised when the server
    wants a key and none is configured. ``messages`` and ``params`` are what a re-ask or a raised
    ``max_tokens`` rewrites. ``endpoint``, ``url``, ``method`` and ``stream`` say what the call is, for the
    :class:`CallRecord`.
    """

    models: tuple[str, ...]
    keys: tuple[str, ...]
    policy: RetryPolicy
    key_start: int = 0
    validators: tuple[Any, ...] = ()
    hooks: tuple[Hook, ...] = ()
    messages: Sequence[Any] | None = None
    params: Mapping[str, Any] | None = None
    retire_key: Callable[[int], None] | None = None
    no_key_error: Callable[[], Exception] | None = field(default=None, compare=False)
    endpoint: str = "chat"
    url: str | None = None
    method: str | None = "POST"
    stream: bool = False


def run(plan: CallPlan) -> Loop:
    """The retry loop of one call; see the module docstring."""
    enders = [end for end in (getattr(h, "call_ended", None) for h in plan.hooks) if end is not None]
    if enders:
        return _timed(plan, _loop(plan), enders)
    return _loop(plan)


def _loop(plan: CallPlan) -> Loop:
    policy = plan.policy
    state = RetryState.start(plan.models, len(plan.keys), key_index=plan.key_start)
    secrets = plan.keys
    spend = Spend()
    cap = testing_attempts()
    # A successful attempt logs at INFO, which is off unless asked for: ask once per call, not per attempt.
    log_ok = logger.isEnabledFor(logging.INFO)
    start = time.monotonic()
    deadline = policy.deadline
    outcome: Outcome | None = None
    while True:
        elapsed = time.monotonic() - start
        remaining = None if deadline is None else deadline - elapsed
        if remaining is not None and remaining <= 0 and outcome is not None:
            note = f"the deadline of {deadline:g} s passed after {state.attempts} attempts"
            outcome = outcome.replace(message=f"{outcome.message} ({note})" if outcome.message else note)
            break
        key = plan.keys[state.key_index] if plan.keys else None
        model = state.model
        result = yield Send(key, model, state.attempts + 1, state.patch, remaining)
        assert result is not None
        outcome, committed = result
        if outcome.ok and plan.validators:
            from ..core.validate import apply_validators

            outcome = apply_validators(outcome, plan.validators)
            if outcome.kind == "silent":
                log_silent(outcome, secrets=secrets)
        spend = spend.add(model, outcome.usage)
        if key is None and outcome.code == "auth_failed" and outcome.status == 401 and plan.no_key_error:
            raise plan.no_key_error()
        # Text already reached the caller when committed: another attempt would repeat or contradict it.
        decision, state = policy.step(
            outcome, state, final=committed, elapsed=time.monotonic() - start, max_attempts=cap
        )
        attempt = state.history[-1]
        if log_ok or attempt.code is not None:
            log_attempt(attempt, action=decision.action, secrets=secrets)
        for hook in plan.hooks:
            hook(attempt)
        action = decision.action
        if action == "stop":
            outcome = decision.outcome or outcome
            break
        if action == "retry":
            yield Sleep(decision.wait_s)
        elif action == "rotate_key":
            if plan.retire_key is not None:
                plan.retire_key(state.key_index)
        elif action == "reask":
            state = state.evolve(
                patch={**state.patch, **reask_patch(plan.messages, plan.params, state.patch, outcome)}
            )
        elif action == "raise_max_tokens":
            state = state.evolve(patch={**state.patch, **raised_max_tokens(plan.params or {}, outcome)})
    return _final(outcome, state, spend, secrets)


def _timed(plan: CallPlan, inner: Loop, enders: Sequence[Callable[[CallRecord], None]]) -> Loop:
    """``inner`` with its attempts timed; each of ``enders`` is handed the call's record when it ends, or
    when the caller closes it early (the attempts then as far as they went)."""
    wall0, mono0 = time.time_ns(), time.monotonic_ns()
    times: list[tuple[int, int]] = []
    attempts: list[Attempt] = []

    def now() -> int:
        return wall0 + time.monotonic_ns() - mono0

    def ended(outcome: Outcome | None) -> None:
        record = CallRecord(
            plan.endpoint, plan.models[0], plan.url, plan.method, plan.stream, plan.messages, plan.params,
            outcome, outcome.history if outcome is not None else tuple(attempts), wall0, now(), tuple(times),
        )  # fmt: skip
        for end in enders:
            end(record)

    reply: Any = None
    began = 0
    action: Send | Sleep | None = None
    try:
        while True:
            try:
                action = inner.send(reply)
            except StopIteration as stop:
                final: Outcome = stop.value
                ended(final)
                return final
            if type(action) is Sleep and attempts:
                attempts[-1] = replace(attempts[-1], wait_s=action.seconds)
            began = now()
            reply = yield action
            if type(action) is Send:
                times.append((began, now()))
                got: Outcome = reply[0]
                attempts.append(
                    Attempt(action.number, got.code, got.status, 0.0, action.model, got.request_id)
                )
            action = None
    except GeneratorExit:
        inner.close()
        if type(action) is Send:  # closed while this attempt was under way
            times.append((began, now()))
            attempts.append(Attempt(action.number, None, None, 0.0, action.model))
        ended(None)
        raise


def _final(outcome: Outcome, state: RetryState, spend: Spend, secrets: Sequence[str]) -> Outcome:
    fields: dict[str, Any] = {"attempts": state.attempts, "history": state.history}
    if spend.usage is not None and state.attempts > 1:
        fields["usage"] = spend.usage
    if outcome.message and secrets:
        fields["message"] = mask(outcome.message, secrets)
    # One copy instead of two (replace, then with_extra): the same fields and extra.
    fields["extra"] = {**outcome.extra, "model": state.model, "cost_usd": spend.cost_usd}
    return outcome.replace(**fields)


async def adrive(loop: Loop, send: Callable[[Send], Awaitable[tuple[Outcome, bool]]]) -> Outcome:
    """Perform a loop's actions on asyncio: ``send`` each attempt (its Outcome, and whether the caller already
    has part of it, a stream's text say), sleep each wait (none under :func:`genguard.set_testing`). The one
    driver of the async client, the proxy and the wrapped SDK's async transport."""
    try:
        action = next(loop)
        while True:
            if type(action) is Sleep:
                if action.seconds > 0 and not is_testing():
                    await asyncio.sleep(action.seconds)
                action = loop.send(None)
            else:
                assert isinstance(action, Send)
                action = loop.send(await send(action))
    except StopIteration as stop:
        result: Outcome = stop.value
        return result
    finally:
        # A call cut short (cancelled, interrupted) ends its loop now, not when it is collected: its hooks are
        # told of the end at the moment it came.
        loop.close()
