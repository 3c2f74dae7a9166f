"""Outcome and its parts: frozen values that say how one call (or one captured exchange) ended.

An :class:`Outcome` is either a usable generation (``ok`` is true) or exactly one failure with a kind, a code,
a retry verdict and a diagnosis. ``to_dict()`` gives exactly the outcome JSON object of docs/failures.md;
``to_dict(full=True)`` and :meth:`Outcome.from_dict` carry everything, for a journal to read back whole.
With ``n > 1`` every choice is kept as a :class:`Choice`; on request the response itself is kept as a
:class:`RawResponse`, its secrets masked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from .exceptions import failure_error
from .secrets import MASK, SECRET_HEADERS, redact
from .taxonomy import Endpoint, Kind, code_info

if TYPE_CHECKING:
    from typing import Self

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_USAGE_KEYS = frozenset(
    {"prompt_tokens", "input_tokens", "completion_tokens", "output_tokens", "total_tokens"}
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them (``None`` where it did not say).

    >>> Usage(prompt_tokens=5, completion_tokens=7, total_tokens=12) + Usage(3, 1, 4)
    Usage(prompt_tokens=8, completion_tokens=8, total_tokens=16, details=None)
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    details: Mapping[str, Any] | None = None

    def __init__(
        self,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        total_tokens: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        # Written by hand for speed, like Outcome.__init__ (see there); the same fields, order and defaults.
        _set_prompt(self, prompt_tokens)
        _set_completion(self, completion_tokens)
        _set_total(self, total_tokens)
        _set_details(self, details)

    @classmethod
    def from_dict(cls, data: object) -> Usage | None:
        """Read an OpenAI-style ``usage`` object (also ``input_tokens``/``output_tokens``); ``None`` if absent."""
        if type(data) is dict:
            # The usual usage object: the three counts as plain ints (bool is not int here), details beside.
            prompt = data.get("prompt_tokens")
            completion = data.get("completion_tokens")
            total = data.get("total_tokens")
            if type(prompt) is int and type(completion) is int and type(total) is int:
                if len(data) == 3:
                    return cls(prompt, completion, total)
                rest = {k: v for k, v in data.items() if k not in _USAGE_KEYS}
                return cls(prompt, completion, total, rest or None)
        if not isinstance(data, Mapping) or not data:
            return None

        def num(*keys: str) -> int | None:
            for k in keys:
                v = data.get(k)
                if isinstance(v, bool):
                    continue
                if isinstance(v, int):
                    return v
                if isinstance(v, float) and math.isfinite(v):
                    return int(v)
            return None

        prompt = num("prompt_tokens", "input_tokens")
        completion = num("completion_tokens", "output_tokens")
        total = num("total_tokens")
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
        details = {k: v for k, v in data.items() if k not in _USAGE_KEYS} or None
        if prompt is None and completion is None and total is None and details is None:
            return None
        return cls(prompt, completion, total, details)

    def __add__(self, other: Usage) -> Usage:
        def add(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return Usage(
            add(self.prompt_tokens, other.prompt_tokens),
            add(self.completion_tokens, other.completion_tokens),
            add(self.total_tokens, other.total_tokens),
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.details:
            d.update(self.details)
        return d


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool (function) call the model asked for; ``arguments`` is the JSON text as the model wrote it."""

    id: str | None
    name: str
    arguments: str
    type: str = "function"

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON; raises ``ValueError`` if the model wrote invalid JSON."""
        try:
            return orjson.loads(self.arguments or "{}")
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"tool call {self.name!r} has arguments that are not JSON: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a call, as kept in :attr:`Outcome.history`: what it ended with and what followed."""

    number: int
    code: str | None
    status: int | None = None
    wait_s: float = 0.0
    model: str | None = None
    request_id: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "code": self.code,
            "status": self.status,
            "wait_s": self.wait_s,
            "model": self.model,
            "request_id": self.request_id,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Choice:
    """One choice of a response that had several (``n > 1``): its text and tool calls, its normalised
    ``finish_reason``, and its own ``code`` and ``kind`` when it failed (``None`` when it is usable).

    >>> Choice(1, "Once upon", finish_reason="length", code="truncated", kind="soft").ok
    False
    """

    index: int
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] | None = None
    finish_reason: str | None = None
    code: str | None = None
    kind: Kind | None = None

    @property
    def ok(self) -> bool:
        """Whether this choice is a usable generation."""
        return self.code is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": self.text,
            "tool_calls": None if self.tool_calls is None else [t.to_dict() for t in self.tool_calls],
            "finish_reason": self.finish_reason,
            "code": self.code,
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Choice:
        """The Choice that :meth:`to_dict` wrote."""
        calls = data.get("tool_calls")
        return cls(
            data["index"],
            data.get("text"),
            None if calls is None else tuple(_tool_call_from(t) for t in calls),
            data.get("finish_reason"),
            data.get("code"),
            data.get("kind"),
        )


RAW_BODY_LIMIT = 65_536
"""How many characters of a body :class:`RawResponse` keeps; the rest is cut, and a marker says how much."""


@dataclass(frozen=True, slots=True)
class RawResponse:
    """The response as it came, for debugging: status, headers (as ``(name, value)`` pairs, in order) and the
    body as text. Credentials are masked: the values of ``authorization``, ``api-key``, ``x-api-key``,
    cookie headers and the like, and any key found in a header value or the body. A body longer than
    :data:`RAW_BODY_LIMIT` characters is cut there and ends with a marker; ``size`` is its full length and
    ``truncated`` says it was cut.

    >>> raw = RawResponse.capture(429, {"retry-after": "2", "set-cookie": "s=1"}, b'{"error": "slow"}')
    >>> raw.headers, raw.body
    ((('retry-after', '2'), ('set-cookie', '***')), '{"error": "slow"}')
    """

    status: int | None
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    size: int = 0
    truncated: bool = False

    @classmethod
    def capture(
        cls,
        status: int | None,
        headers: Mapping[str, str] | None,
        body: bytes | str | object,
        *,
        secrets: Iterable[str] = (),
        size: int | None = None,
    ) -> RawResponse:
        """The masked, capped copy of a response: ``body`` as bytes, text or JSON already parsed; ``size``
        the full length when ``body`` holds only its start (a stream's first bytes)."""
        secrets = tuple(secrets)
        if isinstance(body, bytes | bytearray | memoryview):
            text = bytes(body).decode("utf-8", "replace")
        elif isinstance(body, str):
            text = body
        elif body is None:
            text = ""
        else:
            text = orjson.dumps(body, default=str).decode()
        full = max(len(text), size or 0)
        # Masking before cutting, with room to spare, so that a key split by the cut is still found whole.
        kept = redact(text[: RAW_BODY_LIMIT + 1024], secrets)
        truncated = full > RAW_BODY_LIMIT or len(kept) > RAW_BODY_LIMIT
        if truncated:
            kept = kept[:RAW_BODY_LIMIT] + f"\n… [{full - RAW_BODY_LIMIT} more characters not kept]"
        return cls(status, _masked_headers(headers, secrets), kept, full, truncated)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "headers": [list(pair) for pair in self.headers],
            "body": self.body,
            "size": self.size,
            "truncated": self.truncated,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RawResponse:
        """The RawResponse that :meth:`to_dict` wrote."""
        headers = tuple((str(name), str(value)) for name, value in data.get("headers") or ())
        return cls(
            data.get("status"),
            headers,
            data.get("body", ""),
            data.get("size", 0),
            data.get("truncated", False),
        )


def _masked_headers(
    headers: Mapping[str, str] | None, secrets: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    if not headers:
        return ()
    multi = getattr(headers, "multi_items", None)  # httpx keeps repeated headers apart
    items = multi() if callable(multi) else headers.items()
    return tuple(
        (str(name), MASK if str(name).lower() in SECRET_HEADERS else redact(str(value), secrets))
        for name, value in items
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one call ended: a usable generation, or one failure with a diagnosis.

    >>> o = Outcome.failure("rate_limited", status=429, retry_after_s=2.0)
    >>> (o.ok, o.kind, o.retryable, o.retry_after_s)
    (False, 'hard', True, 2.0)
    >>> Outcome.success(text="hi", finish_reason="stop").to_dict()["text"]
    'hi'
    """

    ok: bool
    kind: Kind | None = None
    code: str | None = None
    retryable: bool = False
    retry_after_s: float | None = None
    status: int | None = None
    message: str | None = None
    param: str | None = None
    provider_code: str | None = None
    provider_type: str | None = None
    request_id: str | None = None
    finish_reason: str | None = None
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] | None = None
    usage: Usage | None = None
    attempts: int = 1
    cause: str | None = None
    fix: str | None = None
    # Beyond the JSON contract: which endpoint, per-command fields, attempt history, parsed output.
    endpoint: Endpoint = "chat"
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    history: tuple[Attempt, ...] = ()
    parsed: Any = None
    # Every choice when the response had several (None for one); the response itself when asked for.
    choices: tuple[Choice, ...] | None = None
    raw: RawResponse | None = None

    # -- construction ----------------------------------------------------------------------------

    def __init__(
        self,
        ok: bool,
        kind: Kind | None = None,
        code: str | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
        status: int | None = None,
        message: str | None = None,
        param: str | None = None,
        provider_code: str | None = None,
        provider_type: str | None = None,
        request_id: str | None = None,
        finish_reason: str | None = None,
        text: str | None = None,
        tool_calls: tuple[ToolCall, ...] | None = None,
        usage: Usage | None = None,
        attempts: int = 1,
        cause: str | None = None,
        fix: str | None = None,
        endpoint: Endpoint = "chat",
        extra: Mapping[str, Any] = _EMPTY,
        history: tuple[Attempt, ...] = (),
        parsed: Any = None,
        choices: tuple[Choice, ...] | None = None,
        raw: RawResponse | None = None,
    ) -> None:
        # An Outcome is built for every call and every stream. The __init__ that dataclass generates for a
        # frozen class goes through object.__setattr__ once per field; writing each slot through its
        # descriptor builds the same value in about half the time. dataclass keeps an __init__ the class
        # defines; a test holds its fields, order and defaults equal to the declared ones.
        _set_ok(self, ok)
        _set_kind(self, kind)
        _set_code(self, code)
        _set_retryable(self, retryable)
        _set_retry_after_s(self, retry_after_s)
        _set_status(self, status)
        _set_message(self, message)
        _set_param(self, param)
        _set_provider_code(self, provider_code)
        _set_provider_type(self, provider_type)
        _set_request_id(self, request_id)
        _set_finish_reason(self, finish_reason)
        _set_text(self, text)
        _set_tool_calls(self, tool_calls)
        _set_usage(self, usage)
        _set_attempts(self, attempts)
        _set_cause(self, cause)
        _set_fix(self, fix)
        _set_endpoint(self, endpoint)
        _set_extra(self, extra)
        _set_history(self, history)
        _set_parsed(self, parsed)
        _set_choices(self, choices)
        _set_raw(self, raw)

    @classmethod
    def success(cls, *, endpoint: Endpoint = "chat", **fields: Any) -> Outcome:
        """An ok outcome; ``fields`` are any of the dataclass fields (``text``, ``usage``...)."""
        return cls(ok=True, endpoint=endpoint, **fields)

    @classmethod
    def failure(
        cls,
        code: str,
        *,
        endpoint: Endpoint = "chat",
        retryable: bool | None = None,
        **fields: Any,
    ) -> Outcome:
        """A failed outcome for ``code``; kind, cause and fix come from the taxonomy for ``endpoint``.

        ``retryable`` defaults to the code's verdict; pass it to apply a server's ``x-should-retry``.
        """
        info = code_info(code)
        fields.setdefault("cause", info.cause_for(endpoint))
        fields.setdefault("fix", info.fix_for(endpoint))
        retry_after = fields.get("retry_after_s")
        if retry_after is not None:
            fields["retry_after_s"] = max(0.0, float(retry_after))
        return cls(
            ok=False,
            kind=info.kind,
            code=code,
            retryable=info.retryable if retryable is None else retryable,
            endpoint=endpoint,
            **fields,
        )

    def replace(self, **changes: Any) -> Outcome:
        """A copy with ``changes`` applied (the outcome itself is frozen).

        >>> Outcome.failure("timeout").replace(attempts=3).attempts
        3
        """
        # What dataclasses.replace does, in a third of the time (clients call it on every call): all
        # fields read in one C call, the changed ones put in place, positional construction.
        values = list(_read_fields(self))
        for name, value in changes.items():
            index = _FIELD_INDEX.get(name)
            if index is None:
                raise TypeError(f"Outcome has no field {name!r}")
            values[index] = value
        return Outcome(*values)

    def with_extra(self, **fields: Any) -> Outcome:
        """A copy whose JSON gains (or overrides) per-command fields such as ``files`` or ``model``."""
        return self.replace(extra={**self.extra, **fields})

    # -- reading ---------------------------------------------------------------------------------

    @property
    def failed(self) -> bool:
        return not self.ok

    def raise_for_failure(self) -> Self:
        """Return ``self`` if ok, else raise :class:`HardFailure`, :class:`SoftFailure` or
        :class:`SilentFailure` carrying this outcome.

        >>> Outcome.success(text="fine").raise_for_failure().text
        'fine'
        """
        if self.ok:
            return self
        raise failure_error(self)

    def summary(self) -> str:
        """One line: ``ok`` or ``kind/code`` with status and the provider's message."""
        if self.ok:
            return f"ok ({self.finish_reason})" if self.finish_reason else "ok"
        parts = [f"{self.kind}/{self.code}"]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.message:
            parts.append(self.message)
        return ": ".join(parts[:1]) + (" (" + ", ".join(parts[1:]) + ")" if len(parts) > 1 else "")

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """The outcome JSON object (docs/failures.md), then ``choices`` when the response had several, then
        any per-command fields from :attr:`extra`.

        ``full=True`` adds what the JSON contract leaves out (``endpoint``, ``history``, ``parsed``, and
        ``raw`` when it was kept), so that :meth:`from_dict` gives back an equal Outcome: what a journal stores.

        >>> o = Outcome.failure("rate_limited", status=429, history=(Attempt(1, "rate_limited"),))
        >>> Outcome.from_dict(o.to_dict(full=True)) == o
        True
        """
        d: dict[str, Any] = {
            "ok": self.ok,
            "kind": self.kind,
            "code": self.code,
            "retryable": self.retryable,
            "retry_after_s": self.retry_after_s,
            "status": self.status,
            "message": self.message,
            "param": self.param,
            "provider_code": self.provider_code,
            "provider_type": self.provider_type,
            "request_id": self.request_id,
            "finish_reason": self.finish_reason,
            "text": self.text,
            "tool_calls": None if self.tool_calls is None else [t.to_dict() for t in self.tool_calls],
            "usage": None if self.usage is None else self.usage.to_dict(),
            "attempts": self.attempts,
            "cause": self.cause,
            "fix": self.fix,
        }
        if self.choices:
            d["choices"] = [c.to_dict() for c in self.choices]
        for k, v in self.extra.items():
            d[k] = v
        if full:
            d["endpoint"] = self.endpoint
            d["history"] = [a.to_dict() for a in self.history]
            d["parsed"] = self.parsed
            if self.raw is not None:
                d["raw"] = self.raw.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        """The Outcome that :meth:`to_dict` (best with ``full=True``) wrote; keys that are not fields become
        :attr:`extra`. ``parsed`` comes back as the JSON data it was written as.

        >>> Outcome.from_dict({"ok": True, "text": "hi", "finish_reason": "stop", "model": "m"}).extra["model"]
        'm'
        """
        if not isinstance(data, Mapping) or "ok" not in data:
            raise ValueError("an outcome object needs at least the field 'ok'")
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key not in _FROM_DICT_FIELDS:
                extra[key] = value
            elif key == "tool_calls":
                values[key] = None if value is None else tuple(_tool_call_from(t) for t in value)
            elif key == "usage":
                values[key] = None if value is None else _usage_from(value)
            elif key == "history":
                values[key] = tuple(Attempt(**a) for a in value)
            elif key == "choices":
                values[key] = None if value is None else tuple(Choice.from_dict(c) for c in value)
            elif key == "raw":
                values[key] = None if value is None else RawResponse.from_dict(value)
            else:
                values[key] = value
        if extra:
            values["extra"] = extra
        return cls(**values)

    def to_json(self) -> str:
        """``to_dict()`` as one line of JSON."""
        return orjson.dumps(self.to_dict(), default=_json_default).decode()


def _slot_setters(cls: type) -> list[Any]:
    """Each field's slot descriptor ``__set__``, in field order (what the hand-written __init__s call)."""
    return [getattr(cls, f.name).__set__ for f in fields(cls)]


_set_prompt, _set_completion, _set_total, _set_details = _slot_setters(Usage)
(
    _set_ok,
    _set_kind,
    _set_code,
    _set_retryable,
    _set_retry_after_s,
    _set_status,
    _set_message,
    _set_param,
    _set_provider_code,
    _set_provider_type,
    _set_request_id,
    _set_finish_reason,
    _set_text,
    _set_tool_calls,
    _set_usage,
    _set_attempts,
    _set_cause,
    _set_fix,
    _set_endpoint,
    _set_extra,
    _set_history,
    _set_parsed,
    _set_choices,
    _set_raw,
) = _slot_setters(Outcome)


_FIELD_INDEX = {f.name: i for i, f in enumerate(fields(Outcome))}
_read_fields = attrgetter(*_FIELD_INDEX)


_FROM_DICT_FIELDS = frozenset(_FIELD_INDEX) - {"extra"}


def _tool_call_from(data: Mapping[str, Any]) -> ToolCall:
    function = data.get("function") or {}
    return ToolCall(
        data.get("id"), function.get("name", ""), function.get("arguments", ""), data.get("type", "function")
    )


def _usage_from(data: Mapping[str, Any]) -> Usage:
    # Exactly what Usage.to_dict wrote: no totals worked out, no other spellings (Usage.from_dict does those).
    details = {k: v for k, v in data.items() if k not in _USAGE_KEYS}
    return Usage(
        data.get("prompt_tokens"), data.get("completion_tokens"), data.get("total_tokens"), details or None
    )


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)
