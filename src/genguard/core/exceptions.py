"""genguard's exceptions, split by where the failure happened.

    GenguardError
    ├── FailureError            a call ended in a failed Outcome (raised by Outcome.raise_for_failure)
    │   ├── HardFailure         no generation: HTTP error, transport failure, invalid response
    │   │   └── DownloadFailed  a generated image or video could not be fetched or saved
    │   ├── SoftFailure         HTTP success but no usable generation: filtered, truncated, cut off...
    │   └── SilentFailure       the output failed the application's validator
    ├── ConfigError             genguard was set up wrongly (no API key, a bad option); nothing was sent
    └── CaptureError            `explain` could not read a capture (not a capture, unreadable)

Every FailureError carries the :class:`~genguard.Outcome` it came from as ``.outcome``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .outcome import Outcome


class GenguardError(Exception):
    """The base of every exception genguard raises."""


class FailureError(GenguardError):
    """A call ended in a failure; ``outcome`` holds the whole diagnosis."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        text = outcome.summary()
        if outcome.fix:
            text += f". Fix: {outcome.fix}"
        super().__init__(text)

    @property
    def code(self) -> str | None:
        return self.outcome.code

    @property
    def retryable(self) -> bool:
        return self.outcome.retryable


class HardFailure(FailureError):
    """The request produced no generation (HTTP error, transport failure, invalid response)."""


class DownloadFailed(HardFailure):
    """Fetching or saving a generated file failed; ``outcome`` (code ``download_failed``) says why.

    >>> from genguard.core.outcome import Outcome
    >>> DownloadFailed(Outcome.failure("download_failed", endpoint="image", message="expired")).code
    'download_failed'
    """


class SoftFailure(FailureError):
    """HTTP said success, but there was no usable generation."""


class SilentFailure(FailureError):
    """The output looked fine to HTTP but failed the application's check."""


class ConfigError(GenguardError, ValueError):
    """genguard was configured wrongly; the message says which setting and how to fix it."""


class CaptureError(GenguardError, ValueError):
    """A capture could not be read; the message names the file and what was expected."""


def failure_error(outcome: Outcome) -> FailureError:
    """The exception of the right class for a failed ``outcome``."""
    cls = {"hard": HardFailure, "soft": SoftFailure, "silent": SilentFailure}.get(
        outcome.kind or "", FailureError
    )
    return cls(outcome)
