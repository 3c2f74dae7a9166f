"""A 2xx chat body judged on its content, and the one decision on a finished chat generation.

:func:`finish_outcome` is shared by plain and streamed chat: filtered, truncated, an error, a refusal or no
output at all are failures; tool calls and text are ok. :func:`classify_chat_body` reads a parsed
``chat.completion`` body (Azure's filter results included) into that decision. Both are on the hot path of
every chat call, so they check exact dict types and build the ok Outcome directly.

>>> classify_chat_body({"choices": [{"message": {"content": "Hi"}, "finish_reason": "stop"}]}).text
'Hi'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .error_verdict import classify_error, invalid_response
from .headers import request_id as header_request_id
from .json_text import dumps
from .json_values import is_map
from .outcome import Outcome, ToolCall, Usage
from .taxonomy import Endpoint, normalise_finish_reason

__all__ = ["classify_chat_body", "finish_outcome"]


def finish_outcome(
    *,
    finish_reason: object,
    text: str | None,
    tool_calls: tuple[ToolCall, ...] | None,
    usage: Usage | None,
    refusal: str | None = None,
    status: int | None = 200,
    request_id: str | None = None,
    endpoint: Endpoint = "chat",
    message: str | None = None,
) -> Outcome:
    """The decision on a finished chat generation, the same for plain and streamed chat: filtered,
    truncated, an error, a refusal, or no output at all are failures; tool calls and text are ok.

    >>> finish_outcome(finish_reason="MAX_TOKENS", text="Once upon", tool_calls=None, usage=None).code
    'truncated'
    >>> finish_outcome(finish_reason="tool_calls", text=None, tool_calls=(ToolCall("c1", "f", "{}"),), usage=None).ok
    True
    """
    fr = normalise_finish_reason(finish_reason)
    code: str | None = None
    if fr == "content_filter":
        code = "content_filtered"
        message = message or refusal
    elif fr == "length":
        code = "truncated"
    elif fr == "error":
        code = "stream_error"
    elif tool_calls:
        code = None
    elif refusal:
        code, message = "content_filtered", refusal
    elif not text or text.isspace():
        code = "empty_output"
    if code is None:
        # The ok path of every chat call: build the value directly, skipping success()'s keyword plumbing.
        return Outcome(
            True,
            endpoint=endpoint,
            text=text,
            tool_calls=tool_calls or None,
            usage=usage,
            finish_reason=fr,
            status=status,
            request_id=request_id,
            message=message,
        )
    return Outcome.failure(
        code,
        endpoint=endpoint,
        text=text,
        tool_calls=tool_calls or None,
        usage=usage,
        finish_reason=fr,
        status=status,
        request_id=request_id,
        message=message,
    )


def _content(value: object) -> tuple[bool, str | None]:
    """``(valid, text)`` of a message's content: a string, null, or a list of text parts."""
    if value is None or isinstance(value, str):
        return True, value
    if isinstance(value, list):
        parts: list[str] = []
        for part in value:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping):
                t = part.get("text")
                if isinstance(t, str):
                    parts.append(t)
            else:
                return False, None
        return True, "".join(parts)
    return False, None


def _tool_calls(message: Mapping[str, Any]) -> tuple[bool, tuple[ToolCall, ...] | None]:
    raw = message.get("tool_calls")
    if raw is None:
        legacy = message.get("function_call")
        if legacy is None:
            return True, None
        raw = [{"id": None, "type": "function", "function": legacy}]
    if not isinstance(raw, list):
        return False, None
    calls: list[ToolCall] = []
    for item in raw:
        fn = item.get("function") if isinstance(item, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            return False, None
        args = fn.get("arguments")
        if args is None:
            args = ""
        elif not isinstance(args, str):
            # Some servers send the arguments already decoded; keep the contract of JSON text.
            args = dumps(args).decode()
        call_id = item.get("id")
        kind = item.get("type")
        calls.append(
            ToolCall(
                call_id if isinstance(call_id, str) else None,
                fn["name"],
                args,
                kind if isinstance(kind, str) else "function",
            )
        )
    return True, tuple(calls) or None


def _filtered(results: object) -> list[str]:
    """The categories an Azure ``content_filter_results`` object marks as filtered."""
    if not isinstance(results, Mapping):
        return []
    hits = []
    for name, verdict in results.items():
        if isinstance(verdict, Mapping) and verdict.get("filtered") is True:
            severity = verdict.get("severity")
            hits.append(f"{name} ({severity})" if isinstance(severity, str) else str(name))
    return hits


def _prompt_filtered(data: Mapping[str, Any]) -> list[str]:
    hits: list[str] = []
    pfr = data.get("prompt_filter_results")
    if isinstance(pfr, list):
        for item in pfr:
            if isinstance(item, Mapping):
                hits.extend(_filtered(item.get("content_filter_results")))
    return hits


def classify_chat_body(
    data: object,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> Outcome:
    """The Outcome of a parsed 2xx ``chat.completion`` body: ok, a soft failure, or ``invalid_response``.

    >>> classify_chat_body({"choices": [{"message": {"content": "Hi"}, "finish_reason": "stop"}]}).text
    'Hi'
    >>> classify_chat_body({"choices": []}).code
    'empty_output'
    """
    request_id = header_request_id(headers)
    if not is_map(data):
        return invalid_response("a 2xx chat body that is not a JSON object", status, request_id)
    if data.get("error"):
        return classify_error(status, headers, data, secrets=secrets)
    choices = data.get("choices")
    usage = Usage.from_dict(data.get("usage"))
    if not choices:
        if choices is not None and not isinstance(choices, list):
            return invalid_response("'choices' is not a list", status, request_id)
        if data.get("type") == "message" and isinstance(data.get("content"), list):
            return _anthropic_message(data, usage, status, request_id)
        blocked = _prompt_filtered(data)
        if blocked:
            return Outcome.failure(
                "content_filtered", status=status, request_id=request_id, usage=usage,
                message="the prompt was filtered: " + ", ".join(blocked),
            )  # fmt: skip
        return Outcome.failure(
            "empty_output", status=status, request_id=request_id, usage=usage, message="a 2xx with no choices"
        )
    if not isinstance(choices, list):
        return invalid_response("'choices' is not a list", status, request_id)
    choice = choices[0]
    if not is_map(choice):
        return invalid_response("'choices[0]' is not an object", status, request_id)
    message = choice.get("message")
    if message is None and isinstance(choice.get("text"), str):
        message = {"content": choice["text"]}  # a legacy completions choice
    if not is_map(message):
        return invalid_response("'choices[0].message' is missing or not an object", status, request_id)
    valid, text = _content(message.get("content"))
    if not valid:
        return invalid_response(
            "'choices[0].message.content' is neither text nor a list of parts", status, request_id
        )
    valid, calls = _tool_calls(message)
    if not valid:
        return invalid_response("'choices[0].message.tool_calls' is malformed", status, request_id)
    refusal = message.get("refusal")
    finish = choice.get("finish_reason")
    note = None
    if "content_filter_results" in choice:
        hits = _filtered(choice.get("content_filter_results"))
        if hits:
            note = "the output was filtered: " + ", ".join(hits)
            if not text and not calls:
                finish = "content_filter"
    return finish_outcome(
        finish_reason=finish,
        text=text,
        tool_calls=calls,
        usage=usage,
        refusal=refusal if isinstance(refusal, str) and refusal else None,
        status=status,
        request_id=request_id,
        message=note,
    )


def _anthropic_message(
    data: Mapping[str, Any], usage: Usage | None, status: int, request_id: str | None
) -> Outcome:
    """A native Anthropic Messages body (``type: message``, content blocks, ``stop_reason``), saved by users
    who call Anthropic directly: text blocks are the text, ``tool_use`` blocks the tool calls."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in data["content"]:
        if not is_map(block):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use" and isinstance(block.get("name"), str):
            call_id = block.get("id")
            args = block.get("input")
            calls.append(
                ToolCall(
                    call_id if isinstance(call_id, str) else None,
                    block["name"],
                    dumps(args if args is not None else {}).decode(),
                )
            )
    stop = data.get("stop_reason")
    return finish_outcome(
        finish_reason="content_filter" if stop == "refusal" else stop,
        text="".join(texts) if texts else None,
        tool_calls=tuple(calls) or None,
        usage=usage,
        status=status,
        request_id=request_id,
    )
