"""``POST /v1/responses``: OpenAI's Responses API, not streamed, playing the chat scenarios.

A Responses body is checked as OpenAI checks it, then turned into what the chat planner takes (``instructions``
as a system message, ``input`` as messages, flat function tools in the chat shape, ``text.format`` as a
``response_format``, ``max_output_tokens`` as the limit), so answers, tool calls, JSON output and every chat
scenario come out as they do on ``/v1/chat/completions``. The plan is then written as a Response object: one
``message`` item holding an ``output_text`` part, or a ``function_call`` item for each call.

>>> to_messages("Be brief.", "hi")
[{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'hi'}]
>>> to_tools([{"type": "function", "name": "f", "parameters": {}}, {"type": "web_search"}])
[{'type': 'function', 'function': {'name': 'f', 'parameters': {}}}]
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ._chat import Plan, _plan, _reply, _seed, begin_checked, cached_tokens, overflowed
from ._chatreq import (
    BadRequest,
    _check_length,
    _check_number,
    _invalid_type,
    _invalid_value,
    _missing,
    check_booleans,
    no_stream,
    prompt_tokens,
    tool_tokens,
    type_name,
)
from ._config import MEDIA_SCENARIOS
from ._core import ERROR_SCENARIOS
from ._dialects import JSON

__all__ = ["check_responses", "responses", "same_response_key", "to_messages", "to_tools"]

PATH = "/v1/responses"
MIN_OUTPUT_TOKENS = 16
"""The smallest ``max_output_tokens`` OpenAI takes."""

_ROLES: tuple[str, ...] = ("user", "assistant", "system", "developer")
_PART_TYPES: tuple[str, ...] = (
    "input_text", "output_text", "input_image", "input_file", "input_audio", "refusal",
)  # fmt: skip
_TEXT_PARTS: tuple[str, ...] = ("input_text", "output_text")
_TOOL_CHOICES: tuple[str, ...] = ("none", "auto", "required")
_FORMATS: tuple[str, ...] = ("text", "json_object", "json_schema")
_BOOLEANS: tuple[str, ...] = ("stream", "background", "parallel_tool_calls", "store")
_NO_BACKGROUND = (
    "The simulator's /v1/responses does not run in the background: leave 'background' out (or false)."
)
_FAILED = "The model produced an error while generating the response."


def _check_content(content: Any, where: str) -> None:
    if content is None:
        raise _missing(f"{where}.content")
    if isinstance(content, str):
        _check_length(content, f"{where}.content")
        return
    if not isinstance(content, list):
        raise _invalid_type(f"{where}.content", "one of a string or array of objects", content)
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise _invalid_type(at, "an object", part)
        kind = part.get("type")
        if kind is None:
            raise _missing(f"{at}.type")
        if kind not in _PART_TYPES:
            raise _invalid_value(f"{at}.type", kind, _PART_TYPES)
        if kind in _TEXT_PARTS:
            text = part.get("text")
            if text is None:
                raise _missing(f"{at}.text")
            if not isinstance(text, str):
                raise _invalid_type(f"{at}.text", "a string", text)
            _check_length(text, f"{at}.text")


def _is_message(item: dict[str, Any]) -> bool:
    return bool(item.get("type", "message") == "message")


def _check_input(value: Any) -> None:
    if isinstance(value, str):
        _check_length(value, "input")
        return
    if not isinstance(value, list):
        raise _invalid_type("input", "one of a string or array of objects", value)
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _invalid_type(where, "an object", item)
        kind = item.get("type")
        if kind is not None and not isinstance(kind, str):
            raise _invalid_type(f"{where}.type", "a string", kind)
        if not _is_message(item):
            continue  # function_call_output, reasoning, ...: taken as they are
        role = item.get("role")
        if role is None:
            raise _missing(f"{where}.role")
        if role not in _ROLES:
            raise _invalid_value(f"{where}.role", role, _ROLES)
        _check_content(item.get("content"), where)


def _check_tools(req: dict[str, Any]) -> None:
    tools = req.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _invalid_type("tools", "an array of objects", tools)
    names = []
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise _invalid_type(f"tools[{i}]", "an object", tool)
        kind = tool.get("type")
        if kind is None:
            raise _missing(f"tools[{i}].type")
        if kind == "function":
            name = tool.get("name")
            if not name:
                raise _missing(f"tools[{i}].name")  # a chat-shaped tool ({"function": {...}}) ends here
            if not isinstance(name, str):
                raise _invalid_type(f"tools[{i}].name", "a string", name)
            names.append(name)
    choice = req.get("tool_choice")
    if choice is None or (isinstance(choice, str) and choice in _TOOL_CHOICES):
        return
    if isinstance(choice, str):
        raise _invalid_value("tool_choice", choice, _TOOL_CHOICES)
    if not isinstance(choice, dict):
        raise _invalid_type("tool_choice", "one of a string or object", choice)
    if choice.get("type") == "function":
        name = choice.get("name")
        if name is None:
            raise _missing("tool_choice.name")
        if name not in names:
            raise BadRequest(f"Invalid 'tool_choice': no function named {name!r} in 'tools'.", "tool_choice")


def _check_text(req: dict[str, Any]) -> None:
    text = req.get("text")
    if text is None:
        return
    if not isinstance(text, dict):
        raise _invalid_type("text", "an object", text)
    fmt = text.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise _invalid_type("text.format", "an object", fmt)
    kind = fmt.get("type")
    if kind is None:
        raise _missing("text.format.type")
    if kind not in _FORMATS:
        raise _invalid_value("text.format.type", kind, _FORMATS)
    if kind == "json_schema":
        if not fmt.get("name"):
            raise _missing("text.format.name")
        if not isinstance(fmt.get("schema"), dict):
            raise _missing("text.format.schema")


def check_responses(req: Any) -> None:
    """Raise ``BadRequest`` as OpenAI would for this Responses body (or as the simulator does for what it does
    not serve: ``stream``, ``background``); return if it would be accepted.

    >>> try:
    ...     check_responses({"model": "gpt-4o", "input": "hi", "max_output_tokens": 5})
    ... except BadRequest as exc:
    ...     print(exc.param, exc.code)
    max_output_tokens integer_below_min_value
    """
    if not isinstance(req, dict):
        raise BadRequest(f"Invalid type for the request body: expected an object, but got {type_name(req)} "
                         "instead.", None, "invalid_type")  # fmt: skip
    model = req.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str):
        raise _invalid_type("model", "a string", model)
    if not model:
        raise BadRequest("Invalid 'model': empty string. Expected a string with minimum length 1, but got an "
                         "empty string instead.", "model", "empty_string")  # fmt: skip
    if "input" not in req or req["input"] is None:
        raise _missing("input")
    check_booleans(req, _BOOLEANS)
    no_stream(req, PATH)
    if req.get("background"):
        raise BadRequest(_NO_BACKGROUND, "background", "unsupported_value")
    _check_number(req, "max_output_tokens", (True, MIN_OUTPUT_TOKENS, None))
    _check_number(req, "temperature")
    _check_number(req, "top_p")
    instructions = req.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _invalid_type("instructions", "a string", instructions)
        _check_length(instructions, "instructions")
    _check_input(req["input"])
    _check_tools(req)
    _check_text(req)


def _chat_content(content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # Text parts joined into one text; with a picture or a file, chat parts the prompt count knows.
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part["type"]
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        elif kind == "input_image":
            parts.append({"type": "image_url", "image_url": {"url": part.get("image_url") or ""}})
        else:
            parts.append(part)
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def to_messages(instructions: str | None, value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat messages a checked Responses ``instructions`` and ``input`` stand for; an item that is not a
    message (a ``function_call_output``, say) becomes one whose content is the item's JSON.

    >>> to_messages(None, [{"role": "user", "content": [{"type": "input_text", "text": "a"},
    ...                                                  {"type": "input_text", "text": "b"}]}])
    [{'role': 'user', 'content': 'a\\nb'}]
    """
    messages: list[dict[str, Any]] = []
    if instructions is not None:
        messages.append({"role": "system", "content": instructions})
    if isinstance(value, str):
        return [*messages, {"role": "user", "content": value}]
    for item in value:
        if _is_message(item):
            messages.append({"role": item["role"], "content": _chat_content(item["content"])})
        else:
            role = "tool" if str(item.get("type")).endswith("_output") else "assistant"
            messages.append({"role": role, "content": orjson.dumps(item).decode()})
    return messages


def to_tools(tools: list[Any]) -> list[dict[str, Any]]:
    """The function tools of a Responses request in the chat shape; other tool types are left out."""
    keys = ("name", "description", "parameters", "strict")
    return [{"type": "function", "function": {k: t[k] for k in keys if k in t}}
            for t in tools if t.get("type") == "function"]  # fmt: skip


def _chat_request(req: dict[str, Any], messages: list[dict[str, Any]], tools: list[Any]) -> dict[str, Any]:
    # Only what the request gives, so the same question asked of chat gets the same (seeded) answer.
    chat: dict[str, Any] = {"model": req["model"], "messages": messages}
    if tools:
        chat["tools"] = tools
    choice = req.get("tool_choice")
    if isinstance(choice, dict):
        # A hosted tool forced (web search, say) calls no function here.
        named = choice.get("type") == "function"
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}} if named else "none"
    elif choice is not None:
        chat["tool_choice"] = choice
    if req.get("parallel_tool_calls") is False:
        chat["parallel_tool_calls"] = False
    fmt = (req.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    return chat


def same_response_key(req: Any) -> bytes | None:
    """What makes two Responses bodies "the same request": the model, the ``instructions`` and the input (a
    text, or the items up to and including the first user message), as on chat; None when the body is not a
    Responses request.

    >>> a = same_response_key({"model": "m", "input": [{"role": "user", "content": "hi"}]})
    >>> a == same_response_key({"model": "m", "max_output_tokens": 99, "input": [
    ...     {"role": "user", "content": "hi"}, {"role": "assistant", "content": "?"}]})
    True
    >>> a == same_response_key({"model": "m", "input": "hi"})  # a text input is one user message
    True
    """
    if not isinstance(req, dict):
        return None
    value = req.get("input")
    if isinstance(value, str):
        # A re-ask turns a text input into items (the text as the first user message): the same request.
        value = [{"role": "user", "content": value}]
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict) and item.get("role") == "user" and _is_message(item):
                value = value[: i + 1]
                break
    else:
        return None
    try:
        return orjson.dumps(["responses", req.get("model"), req.get("instructions"), value])
    except TypeError:
        return None


def _output(plan: Plan, status: str, ids: str) -> list[dict[str, Any]]:
    if plan.tool_calls:
        return [{"type": "function_call", "id": f"fc_{ids}{k:04x}", "call_id": call["id"],
                 "name": call["function"]["name"], "arguments": call["function"]["arguments"],
                 "status": "completed"} for k, call in enumerate(plan.tool_calls)]  # fmt: skip
    if not plan.text:
        return []
    return [{"type": "message", "id": f"msg_{ids}", "status": status, "role": "assistant",
             "content": [{"type": "output_text", "text": plan.text, "annotations": []}]}]  # fmt: skip


async def responses(request: Request) -> Response:
    """``POST /v1/responses`` (not streamed) with OpenAI's checks, answered by the chat planner."""
    opened = await begin_checked(request, check_responses, same_response_key)
    if isinstance(opened, Response):
        return opened
    ctx, req = opened
    model: str = req["model"]
    messages = to_messages(req.get("instructions"), req["input"])
    tools = to_tools(req.get("tools") or [])
    chat = _chat_request(req, messages, tools)
    limit = req.get("max_output_tokens")
    parsed: dict[str, Any] = {"messages": messages, "n": 1, "limit": limit, "tools": tools,
                              "fmt": chat.get("response_format") or {}}  # fmt: skip
    asked, tool_count = prompt_tokens(messages), tool_tokens(tools)
    refused = overflowed(ctx, model, prompt=asked, tools=tool_count, completion=limit or 0, path=PATH)
    if refused is not None:
        return refused
    scenario = ctx.scenario
    parsed["reply"] = _reply(ctx, request, model)
    if scenario in MEDIA_SCENARIOS:
        ctx.scenario = ctx.entry.scenario = scenario = "ok"
    if scenario in ERROR_SCENARIOS:
        return ctx.error(scenario, model=model, path=PATH)
    plan = _plan(ctx, chat, parsed, _seed(ctx, chat, 0))
    status, incomplete, error = "completed", None, None
    if plan.finish in ("length", "content_filter"):
        status = "incomplete"
        incomplete = {"reason": "max_output_tokens" if plan.finish == "length" else "content_filter"}
    elif plan.finish == "error":
        status, error = "failed", {"code": "server_error", "message": _FAILED}
    if status == "failed" or not (plan.text or plan.tool_calls):
        plan = Plan(None, None, plan.finish, 0)  # nothing delivered, nothing counted
    prompt, completion = asked + tool_count, plan.tokens
    cached = cached_tokens(ctx, model, messages, tools, prompt)
    ctx.charge(completion)
    cfg = ctx.config
    delay = cfg.ttft_ms / 1000 + (completion / cfg.tokens_per_s if cfg.tokens_per_s else 0.0)
    if delay:
        await asyncio.sleep(delay)
    ids = ctx.request_id[4:]
    body = {
        "id": f"resp_{ids}", "object": "response", "created_at": int(time.time()), "status": status,
        "error": error, "incomplete_details": incomplete, "instructions": req.get("instructions"),
        "max_output_tokens": limit, "model": model, "output": _output(plan, status, ids),
        "parallel_tool_calls": True, "temperature": 1.0, "tool_choice": "auto", "tools": req.get("tools") or [],
        "top_p": 1.0, "text": {"format": {"type": "text"}}, "truncation": "disabled",
        "usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                  "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": prompt + completion},
        "metadata": {},
    }  # fmt: skip
    return Response(orjson.dumps(body), media_type=JSON)
