"""genguard: calls to AI generation APIs that fail loudly, retry correctly and explain themselves.

>>> import genguard
>>> genguard.Outcome.failure("truncated", text="partial").kind
'soft'
>>> genguard.classify_http(429, {"retry-after": "20"}, b'{"error": {"code": "rate_limit_exceeded"}}').code
'rate_limited'

The outcome values and exceptions load with the package; everything else (the clients, the readers) loads on
first use, so `import genguard` and every command start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from . import validators
    from ._aclient import AsyncClient
    from ._capture import Exchange, read_captures
    from ._chat import AsyncChatStream, ChatStream
    from ._classify import classify_error, classify_exception, classify_http
    from ._client import Client
    from ._download import DownloadFailed
    from ._errors import ErrorInfo, read_error, redact
    from ._image_rules import ImageModelRules, ImageRuleBook, load_image_rules, register_image_model
    from ._media import TaskState, parse_task
    from ._retry import RetryPolicy
    from ._sse import ServerSentEvent, SSEDecoder
    from ._stream import ChatStreamReader, read_chat_stream
    from ._testing import is_testing, set_testing
    from ._waits import retry_wait

__version__ = "0.1.0"

# name -> the private module that defines it, imported on first access.
_LAZY: dict[str, str] = {
    "AsyncChatStream": "._chat",
    "AsyncClient": "._aclient",
    "ChatStream": "._chat",
    "ChatStreamReader": "._stream",
    "Client": "._client",
    "DownloadFailed": "._download",
    "ErrorInfo": "._errors",
    "Exchange": "._capture",
    "ImageModelRules": "._image_rules",
    "ImageRuleBook": "._image_rules",
    "RetryPolicy": "._retry",
    "SSEDecoder": "._sse",
    "ServerSentEvent": "._sse",
    "TaskState": "._media",
    "classify_error": "._classify",
    "classify_exception": "._classify",
    "classify_http": "._classify",
    "is_testing": "._testing",
    "load_image_rules": "._image_rules",
    "parse_task": "._media",
    "read_captures": "._capture",
    "read_chat_stream": "._stream",
    "read_error": "._errors",
    "redact": "._errors",
    "register_image_model": "._image_rules",
    "retry_wait": "._waits",
    "set_testing": "._testing",
    "validators": ".validators",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'genguard' has no attribute {name!r}")
    module = importlib.import_module(module_name, __name__)
    value = module if name == "validators" else getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
    "ImageRuleBook",
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
    "load_image_rules",
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
