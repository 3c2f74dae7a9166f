"""The words providers use for a state: every vendor's task status, and the envelope codes that mean success.

One vocabulary for everything that asks "did it succeed?" of a word: the task reader, the error-body test (a
``{"code": "success", ...}`` envelope is no error), the clients and the CLI (a task in a final state).

>>> normalise_status("SUCCEED"), normalise_status("THROTTLED"), is_success_code("Success")
('succeeded', 'queued', True)
"""

from __future__ import annotations

from typing import Literal

__all__ = ["FAILED_STATUSES", "FINAL_STATUSES", "TaskStatus", "is_success_code", "normalise_status"]

TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

FINAL_STATUSES: frozenset[TaskStatus] = frozenset({"succeeded", "failed", "cancelled"})
"""A task in one of these states will not change again."""

FAILED_STATUSES: frozenset[TaskStatus] = frozenset({"failed", "cancelled"})
"""The final states without a result."""

_WORDS: dict[TaskStatus, tuple[str, ...]] = {
    # THROTTLED (Runway) waits for a concurrency slot: it has not started, so it is queued.
    "queued": (
        "queued", "submitted", "not_start", "not_started", "pending", "throttled", "starting", "in_queue",
        "preparing", "queueing", "queuing", "waiting", "created", "scheduled",
    ),
    "running": ("in_progress", "processing", "running", "dreaming", "generating", "started"),
    "succeeded": (
        "completed", "complete", "success", "succeed", "succeeded", "successful", "finished", "done",
    ),
    "failed": ("failed", "failure", "fail", "error", "errored", "expired", "rejected"),
    "cancelled": ("cancelled", "canceled", "aborted", "cancel"),
}  # fmt: skip
_STATUS: dict[str, TaskStatus] = {word: status for status, words in _WORDS.items() for word in words}

# An envelope's code for "no error": empty, zero, HTTP 200, "ok", or a word that means succeeded.
_OK_CODES = frozenset({"", "0", "200", "ok"} | {w for w, s in _STATUS.items() if s == "succeeded"})


def _key(word: str) -> str:
    return word.strip().lower().replace(" ", "_").replace("-", "_")


def normalise_status(word: object) -> TaskStatus | None:
    """Map any vendor's task status word to ``queued``, ``running``, ``succeeded``, ``failed`` or
    ``cancelled``; case-insensitive; ``None`` for an unknown word (including DashScope's ``UNKNOWN``).

    >>> normalise_status("SUCCEED"), normalise_status("THROTTLED"), normalise_status("dreaming")
    ('succeeded', 'queued', 'running')
    """
    if not isinstance(word, str):
        return None
    return _STATUS.get(_key(word))


def is_success_code(code: object) -> bool:
    """Whether an envelope's ``code`` says the request succeeded (``0``, ``200``, ``"ok"``, ``"SUCCEED"``...)
    rather than naming an error. A missing code (``None``) is no error either.

    >>> is_success_code(0), is_success_code("succeed"), is_success_code(1301), is_success_code("InvalidParameter")
    (True, True, False, False)
    """
    if code is None:
        return True
    if isinstance(code, bool):
        return code
    if isinstance(code, int | float):
        return code in (0, 200)
    if isinstance(code, str):
        return _key(code) in _OK_CODES
    return False
