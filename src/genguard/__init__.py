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

from .core.exceptions import (
    CaptureError,
    ConfigError,
    DownloadFailed,
    FailureError,
    GenguardError,
    HardFailure,
    SilentFailure,
    SoftFailure,
)
from .core.outcome import Attempt, Choice, Outcome, RawResponse, ToolCall, Usage
from .core.taxonomy import CODES, CodeInfo, code_info, normalise_finish_reason

if TYPE_CHECKING:
    from . import validators
    from .bulk.api import abatch, batch
    from .bulk.journal import BatchCounts
    from .bulk.limiter import ModelGates, PacedGate, RateSnapshot
    from .bulk.limiter_redis import LimiterUnavailable, RedisGate, open_gate
    from .bulk.model import InputProblem
    from .bulk.proxy_journal import ProxyJournal
    from .bulk.runner import BadInput, BatchResult, RunInUse, SetupError
    from .client.clients import AsyncClient, Client
    from .client.gate import Gate, SyncGate, ThreadedGate
    from .client.images import AsyncImages, Images
    from .client.loop import Hook
    from .client.retry import Decision, RetryPolicy, RetryState
    from .client.streams import AsyncChatStream, ChatStream
    from .client.testing import TestingState, is_testing, set_testing
    from .client.transport import classify_exception
    from .client.videos import AsyncVideos, ProgressHook, Videos
    from .core.capture import Exchange, ParsedBody, read_captures
    from .core.chat_stream import ChatStreamReader, read_chat_stream
    from .core.classify import classify_http
    from .core.error_body import ErrorInfo, read_error
    from .core.error_verdict import classify_error
    from .core.explain import explain_exchange
    from .core.image_rules import ImageModelRules, ImageRuleBook, load_image_rules, register_image_model
    from .core.media_body import TaskState, parse_task
    from .core.secrets import redact
    from .core.sse import ServerSentEvent, SSEDecoder
    from .core.waits import retry_wait
    from .integrations.openai_sdk import check, wrap
    from .proxy._config import ProxyConfig, ProxyExchange, ProxyRecorder
    from .proxy._server import Proxy

__version__ = "0.1.0"

# name -> the private module that defines it, imported on first access.
_LAZY: dict[str, str] = {
    "abatch": ".bulk.api",
    "batch": ".bulk.api",
    "AsyncChatStream": ".client.streams",
    "AsyncClient": ".client.clients",
    "AsyncImages": ".client.images",
    "AsyncVideos": ".client.videos",
    "ChatStream": ".client.streams",
    "ChatStreamReader": ".core.chat_stream",
    "Client": ".client.clients",
    "Decision": ".client.retry",
    "ErrorInfo": ".core.error_body",
    "Exchange": ".core.capture",
    "ParsedBody": ".core.capture",
    "BatchCounts": ".bulk.journal",
    "BatchResult": ".bulk.runner",
    "BadInput": ".bulk.runner",
    "RunInUse": ".bulk.runner",
    "SetupError": ".bulk.runner",
    "Gate": ".client.gate",
    "SyncGate": ".client.gate",
    "ThreadedGate": ".client.gate",
    "Hook": ".client.loop",
    "ImageModelRules": ".core.image_rules",
    "ImageRuleBook": ".core.image_rules",
    "Images": ".client.images",
    "InputProblem": ".bulk.model",
    "LimiterUnavailable": ".bulk.limiter_redis",
    "ModelGates": ".bulk.limiter",
    "PacedGate": ".bulk.limiter",
    "RateSnapshot": ".bulk.limiter",
    "RedisGate": ".bulk.limiter_redis",
    "open_gate": ".bulk.limiter_redis",
    "ProgressHook": ".client.videos",
    "Proxy": ".proxy._server",
    "ProxyConfig": ".proxy._config",
    "ProxyExchange": ".proxy._config",
    "ProxyJournal": ".bulk.proxy_journal",
    "ProxyRecorder": ".proxy._config",
    "RetryPolicy": ".client.retry",
    "RetryState": ".client.retry",
    "SSEDecoder": ".core.sse",
    "ServerSentEvent": ".core.sse",
    "TaskState": ".core.media_body",
    "TestingState": ".client.testing",
    "Videos": ".client.videos",
    "check": ".integrations.openai_sdk",
    "classify_error": ".core.error_verdict",
    "classify_exception": ".client.transport",
    "classify_http": ".core.classify",
    "explain_exchange": ".core.explain",
    "is_testing": ".client.testing",
    "load_image_rules": ".core.image_rules",
    "parse_task": ".core.media_body",
    "read_captures": ".core.capture",
    "read_chat_stream": ".core.chat_stream",
    "read_error": ".core.error_body",
    "redact": ".core.secrets",
    "register_image_model": ".core.image_rules",
    "retry_wait": ".core.waits",
    "set_testing": ".client.testing",
    "validators": ".validators",
    "wrap": ".integrations.openai_sdk",
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
    "AsyncImages",
    "AsyncVideos",
    "Attempt",
    "BadInput",
    "BatchCounts",
    "BatchResult",
    "CaptureError",
    "ChatStream",
    "ChatStreamReader",
    "Choice",
    "Client",
    "CodeInfo",
    "ConfigError",
    "Decision",
    "DownloadFailed",
    "ErrorInfo",
    "Exchange",
    "FailureError",
    "Gate",
    "GenguardError",
    "HardFailure",
    "Hook",
    "ImageModelRules",
    "ImageRuleBook",
    "Images",
    "InputProblem",
    "LimiterUnavailable",
    "ModelGates",
    "Outcome",
    "PacedGate",
    "ParsedBody",
    "ProgressHook",
    "Proxy",
    "ProxyConfig",
    "ProxyExchange",
    "ProxyJournal",
    "ProxyRecorder",
    "RateSnapshot",
    "RawResponse",
    "RedisGate",
    "RetryPolicy",
    "RetryState",
    "RunInUse",
    "SSEDecoder",
    "ServerSentEvent",
    "SetupError",
    "SilentFailure",
    "SoftFailure",
    "SyncGate",
    "TaskState",
    "TestingState",
    "ThreadedGate",
    "ToolCall",
    "Usage",
    "Videos",
    "__version__",
    "abatch",
    "batch",
    "check",
    "classify_error",
    "classify_exception",
    "classify_http",
    "code_info",
    "explain_exchange",
    "is_testing",
    "load_image_rules",
    "normalise_finish_reason",
    "open_gate",
    "parse_task",
    "read_captures",
    "read_chat_stream",
    "read_error",
    "redact",
    "register_image_model",
    "retry_wait",
    "set_testing",
    "validators",
    "wrap",
]
