"""genguard: calls to AI generation APIs that fail loudly, retry correctly and explain themselves.

>>> import genguard
>>> genguard.Outcome.failure("truncated", text="partial").kind
'soft'
"""

from __future__ import annotations

from ._exceptions import (
    CaptureError,
    ConfigError,
    FailureError,
    GenguardError,
    HardFailure,
    SilentFailure,
    SoftFailure,
)
from ._outcome import Attempt, Outcome, ToolCall, Usage
from ._taxonomy import CODES, CodeInfo, code_info, normalise_finish_reason

__version__ = "0.1.0"

__all__ = [
    "CODES",
    "Attempt",
    "CaptureError",
    "CodeInfo",
    "ConfigError",
    "FailureError",
    "GenguardError",
    "HardFailure",
    "Outcome",
    "SilentFailure",
    "SoftFailure",
    "ToolCall",
    "Usage",
    "__version__",
    "code_info",
    "normalise_finish_reason",
]
