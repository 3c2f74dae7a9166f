"""genguard: calls to AI generation APIs that fail loudly, retry correctly and explain themselves.

>>> import genguard
>>> genguard.Outcome.failure("truncated", text="partial").kind
'soft'
>>> genguard.classify_http(429, {"retry-after": "20"}, b'{"error": {"code": "rate_limit_exceeded"}}').code
'rate_limited'
"""

from __future__ import annotations

from . import validators
from ._capture import Exchange, read_captures
from ._chat import AsyncChatStream, ChatStream
from ._classify import classify_error, classify_exception, classify_http
from ._client import AsyncClient, Client
from ._download import DownloadFailed
from ._errors import ErrorInfo, read_error, redact
from ._exceptions import (
    CaptureError,
    ConfigError,
    FailureError,
    GenguardError,
    HardFailure,
    SilentFailure,
    SoftFailure,
)
from ._image_rules import ImageModelRules, register_image_model
from ._media import TaskState, parse_task
from ._outcome import Attempt, Outcome, ToolCall, Usage
from ._retry import RetryPolicy
from ._sse import ServerSentEvent, SSEDecoder
from ._stream import ChatStreamReader, read_chat_stream
from ._taxonomy import CODES, CodeInfo, code_info, normalise_finish_reason
from ._testing import is_testing, set_testing
from ._waits import retry_wait

__version__ = "0.1.0"

__all__ = [
    "CODES",
    "AsyncChatStream",
    "AsyncClient",
    "Attempt",
    "CaptureError",
    "ChatStream",
    "ChatStreamReader",
    "Client",
    "CodeInfo",
    "ConfigError",
    "DownloadFailed",
    "ErrorInfo",
    "Exchange",
    "FailureError",
    "GenguardError",
    "HardFailure",
    "ImageModelRules",
    "Outcome",
    "RetryPolicy",
    "SSEDecoder",
    "ServerSentEvent",
    "SilentFailure",
    "SoftFailure",
    "TaskState",
    "ToolCall",
    "Usage",
    "__version__",
    "classify_error",
    "classify_exception",
    "classify_http",
    "code_info",
    "is_testing",
    "normalise_finish_reason",
    "parse_task",
    "read_captures",
    "read_chat_stream",
    "read_error",
    "redact",
    "register_image_model",
    "retry_wait",
    "set_testing",
    "validators",
]
