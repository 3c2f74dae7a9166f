"""A testing switch, as stamina has: turn off genguard's waits so users' own test suites run fast.

>>> import genguard
>>> with genguard.set_testing(True):
...     genguard.is_testing()
True
>>> genguard.is_testing()
False
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from ..core import arguments
from ..core.exceptions import ConfigError

__all__ = ["TestingState", "is_testing", "set_testing", "testing_attempts"]


@dataclass(slots=True)
class _State:
    on: bool = False
    attempts: int | None = None


_STATE = _State()


class TestingState:
    """What :func:`set_testing` returns: usable as a context manager that restores the previous setting."""

    __slots__ = ("_previous",)
    __test__ = False  # pytest must not collect this class because of its name

    def __init__(self, previous: tuple[bool, int | None]) -> None:
        self._previous = previous

    def __enter__(self) -> TestingState:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _STATE.on, _STATE.attempts = self._previous


def set_testing(on: bool = True, *, attempts: int | None = None) -> TestingState:
    """Turn testing mode on or off: retries still happen, but nothing sleeps.

    ``attempts`` caps every retry policy while testing: a policy makes ``min(its max_attempts, attempts)``
    attempts per model, so a test can cut retries short but never adds any (``None``: each policy's own).
    Call it plainly to set it for the whole process, or use it as a context manager to scope it:

    >>> with set_testing(True, attempts=1):
    ...     testing_attempts()
    1
    """
    arguments.flag("on", on)
    arguments.whole("attempts", attempts, at_least=1, none_ok=True, error=ConfigError)
    previous = (_STATE.on, _STATE.attempts)
    _STATE.on = bool(on)
    _STATE.attempts = attempts if on else None
    return TestingState(previous)


def is_testing() -> bool:
    """Whether testing mode is on (waits are skipped)."""
    return _STATE.on


def testing_attempts() -> int | None:
    """The cap set by ``set_testing(True, attempts=N)``, else ``None``: an upper bound on every policy's
    ``max_attempts``, never a replacement for it (``RetryPolicy.decide`` takes the smaller)."""
    return _STATE.attempts if _STATE.on else None
