"""Logging through ``logging.getLogger("genguard")``: one line per attempt, API keys always masked.

Every message passes through :func:`mask` (:func:`genguard.redact`, the one masking rule) with the client's
keys before it reaches a handler, including a provider's message that echoes the key back.

>>> mask("bad key sk-secret-123", ("sk-secret-123",))
'bad key ***'
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..core.outcome import Attempt, Outcome
from ..core.secrets import redact as mask

__all__ = ["log_attempt", "log_silent", "logger", "mask"]

logger = logging.getLogger("genguard")
# A library must not print through logging's last-resort handler: the application decides where logs go.
logger.addHandler(logging.NullHandler())


def log_attempt(attempt: Attempt, *, action: str, secrets: Sequence[str] = ()) -> None:
    """Log one attempt: number, model, request id, code, status, what follows and the wait."""
    level = logging.INFO if attempt.code is None else logging.WARNING
    if not logger.isEnabledFor(level):
        return
    line = (
        f"attempt {attempt.number} model={attempt.model} request_id={attempt.request_id} "
        f"code={attempt.code or 'ok'} status={attempt.status} next={action} wait={attempt.wait_s:g}s"
    )
    if attempt.message:
        line += f": {attempt.message}"
    logger.log(level, "%s", mask(line, secrets))


def log_silent(outcome: Outcome, *, secrets: Sequence[str] = ()) -> None:
    """Log a silent failure with the whole output, so the rejected text can be read later."""
    if logger.isEnabledFor(logging.WARNING):
        text = mask(f"{outcome.code}: {outcome.message}; output was: {outcome.text!r}", secrets)
        logger.warning("%s", text)
