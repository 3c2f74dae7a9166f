"""What a chat completion request must be, checked as OpenAI checks it, in OpenAI's words.

A request OpenAI refuses gets the same 400 here, with OpenAI's message, ``param`` and ``code`` (each dialect
then puts them in its own error shape), so a test against the simulator learns what the provider will say.
Parameters the simulator does not know are accepted and ignored: other providers take extra ones.

>>> try:
...     check_chat({"model": "gpt-4o", "messages": ["hi"]})
... except BadRequest as exc:
...     print(exc, exc.param, exc.code)
Invalid type for 'messages[0]': expected an object, but got a string instead. messages[0] invalid_type
"""

from __future__ import annotations

import math
from typing import Any

import orjson

_ROLES: tuple[str, ...] = ("system", "assistant", "user", "function", "tool", "developer")
_PART_TYPES: tuple[str, ...] = ("text", "image_url", "input_audio", "refusal", "audio", "file")
_TOOL_CHOICES: tuple[str, ...] = ("none", "auto", "required")
_FORMATS: tuple[str, ...] = ("json_object", "json_schema", "text")
MAX_N = 128
MAX_STRING = 10 * 1024 * 1024
"""The longest text OpenAI takes in one message (or part), in characters, whatever the model's window."""

# Numeric parameters: (integer?, minimum, maximum); None is no bound.
_NUMBERS: dict[str, tuple[bool, float | None, float | None]] = {
    "n": (True, 1, MAX_N),
    "max_tokens": (True, 1, None),
    "max_completion_tokens": (True, 1, None),
    "temperature": (False, 0, 2),
    "top_p": (False, 0, 1),
    "presence_penalty": (False, -2, 2),
    "frequency_penalty": (False, -2, 2),
    "seed": (True, None, None),
    "top_logprobs": (True, 0, 20),
}
_BOOLEANS: tuple[str, ...] = ("stream", "logprobs", "parallel_tool_calls", "store")
_STRINGS: tuple[str, ...] = ("user",)
_MAX_STOP = 4

# A picture costs what a 1024x1024 image in high detail does, whatever its bytes: a data URL's length says
# nothing about the tokens a provider counts for it.
IMAGE_TOKENS = 765


class BadRequest(Exception):
    """A request OpenAI refuses with a 400: its message, and the ``param`` and ``code`` it names."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def type_name(value: Any) -> str:
    """How OpenAI names the type of a JSON value in its messages.

    >>> type_name(1.5), type_name(True), type_name(None)
    ('a decimal number', 'a boolean', 'null')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _quoted(values: tuple[str, ...], last: str) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", {last} " + quoted[-1]


def _invalid_type(param: str, expected: str, value: Any) -> BadRequest:
    return BadRequest(f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
                      param, "invalid_type")  # fmt: skip


def _invalid_value(param: str, value: Any, allowed: tuple[str, ...]) -> BadRequest:
    return BadRequest(f"Invalid value: '{value}'. Supported values are: {_quoted(allowed, 'and')}.", param,
                      "invalid_value")  # fmt: skip


def _missing(param: str) -> BadRequest:
    return BadRequest(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _check_number(
    req: dict[str, Any], name: str, bounds: tuple[bool, float | None, float | None] | None = None
) -> None:
    # ``bounds`` (integer?, minimum, maximum) for a parameter of another endpoint; else the chat one's.
    value = req.get(name)
    if value is None:
        return
    integer, lo, hi = _NUMBERS[name] if bounds is None else bounds
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and isinstance(value, float))
    ):
        raise _invalid_type(name, "an integer" if integer else "a decimal", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid_type(name, "a decimal", value)
    kind = "integer" if integer else "decimal"
    if lo is not None and value < lo:
        raise BadRequest(f"Invalid '{name}': {kind} below minimum value. Expected a value >= {_number(lo)}, but "
                         f"got {_number(value)} instead.", name, f"{kind}_below_min_value")  # fmt: skip
    if hi is not None and value > hi:
        raise BadRequest(f"Invalid '{name}': {kind} above maximum value. Expected a value <= {_number(hi)}, but "
                         f"got {_number(value)} instead.", name, f"{kind}_above_max_value")  # fmt: skip


def _check_length(text: str, param: str) -> None:
    if len(text) > MAX_STRING:
        raise BadRequest(f"Invalid '{param}': string too long. Expected a string with maximum length {MAX_STRING}, "
                         f"but got a string with length {len(text)} instead.", param,
                         "string_above_max_length")  # fmt: skip


def _check_content(content: Any, where: str) -> None:
    if content is None:
        return
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
        if kind == "text":
            text = part.get("text")
            if text is None:
                raise _missing(f"{at}.text")
            if not isinstance(text, str):
                raise _invalid_type(f"{at}.text", "a string", text)
            _check_length(text, f"{at}.text")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array of objects", messages)
    if not messages:
        raise BadRequest("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
                         "empty array instead.", "messages", "empty_array")  # fmt: skip
    calls_open = False
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _invalid_type(where, "an object", m)
        role = m.get("role")
        if role is None:
            raise _missing(f"{where}.role")
        if not isinstance(role, str):
            raise _invalid_type(f"{where}.role", f"one of {_quoted(_ROLES, 'or')}", role)
        if role not in _ROLES:
            raise _invalid_value(f"{where}.role", role, _ROLES)
        _check_content(m.get("content"), where)
        calls = m.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise _invalid_type(f"{where}.tool_calls", "an array of objects", calls)
            if not calls:
                raise BadRequest(f"Invalid '{where}.tool_calls': empty array. Expected an array with minimum "
                                 "length 1, but got an empty array instead.", f"{where}.tool_calls",
                                 "empty_array")  # fmt: skip
        if role == "tool":
            if not calls_open:
                # OpenAI's own spelling ("preceeding"), kept so that a search for the message finds it.
                raise BadRequest("Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                                 "message with 'tool_calls'.", f"messages.[{i}].role")  # fmt: skip
            if m.get("tool_call_id") is None:
                raise _missing(f"{where}.tool_call_id")
        elif role == "function" and not m.get("name"):
            raise BadRequest("Missing parameter 'name': messages with role 'function' must have a 'name'.",
                             f"{where}.name", "missing_required_parameter")  # fmt: skip
        else:
            calls_open = role == "assistant" and bool(m.get("tool_calls"))


# What may stand in for an assistant message's content; another role needs content whatever else it carries.
_INSTEAD_OF_CONTENT: tuple[str, ...] = ("tool_calls", "function_call", "refusal", "audio")


def _check_content_given(messages: list[dict[str, Any]]) -> None:
    # OpenAI checks this last of all, after every other fault in any message or parameter.
    for i, m in enumerate(messages):
        if m.get("content") is not None:
            continue
        if m["role"] == "assistant" and any(m.get(k) is not None for k in _INSTEAD_OF_CONTENT):
            continue
        if m["role"] == "developer":  # its own schema, its own words
            if "content" not in m:
                raise _missing(f"messages[{i}].content")
            raise _invalid_type(f"messages[{i}].content", "one of a string or array of objects", None)
        raise BadRequest(
            "Invalid value for 'content': expected a string, got null.", f"messages.[{i}].content"
        )


def _check_tools(req: dict[str, Any]) -> None:
    tools = req.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _invalid_type("tools", "an array of objects", tools)
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise _invalid_type(f"tools[{i}]", "an object", tool)
        function = tool.get("function")
        if function is None:
            raise _missing(f"tools[{i}].function")
        if not isinstance(function, dict):
            raise _invalid_type(f"tools[{i}].function", "an object", function)
        if not function.get("name"):
            raise _missing(f"tools[{i}].function.name")
    choice = req.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, dict):
        function = choice.get("function")
        if function is None:
            raise _missing("tool_choice.function")
        if not isinstance(function, dict):
            raise _invalid_type("tool_choice.function", "an object", function)
        name = function.get("name")
        if name is None:
            raise _missing("tool_choice.function.name")
        if not any(isinstance(t, dict) and t["function"].get("name") == name for t in tools or ()):
            raise BadRequest(f"Invalid 'tool_choice': no tool named {name!r} in 'tools'.", "tool_choice")
        return
    if not isinstance(choice, str):
        raise _invalid_type("tool_choice", f"one of one of {_quoted(_TOOL_CHOICES, 'or')} or object", choice)
    if choice not in _TOOL_CHOICES:
        raise _invalid_value("tool_choice", choice, _TOOL_CHOICES)
    if not tools:
        raise BadRequest("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
                         "specified.", "tool_choice")  # fmt: skip


def _check_format(req: dict[str, Any]) -> None:
    fmt = req.get("response_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise _invalid_type("response_format", "an object", fmt)
    kind = fmt.get("type")
    if kind is None:
        raise _missing("response_format.type")
    if kind not in _FORMATS:
        raise _invalid_value("response_format.type", kind, _FORMATS)
    if kind == "json_schema" and not isinstance(fmt.get("json_schema"), dict):
        raise _missing("response_format.json_schema")


def _check_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _invalid_type("stop", "one of a string or array of strings", stop)
    if len(stop) > _MAX_STOP:
        raise BadRequest(f"Invalid 'stop': array too long. Expected an array with maximum length {_MAX_STOP}, but "
                         f"got an array with length {len(stop)} instead.", "stop",
                         "array_above_max_length")  # fmt: skip


def check_object_and_model(req: Any) -> None:
    """What chat and completions bodies are checked for first: a JSON object, naming its model by a string."""
    if not isinstance(req, dict):
        raise BadRequest(f"Invalid type for the request body: expected an object, but got {type_name(req)} "
                         "instead.", None, "invalid_type")  # fmt: skip
    model = req.get("model")
    if model is None or model == "":
        raise BadRequest("you must provide a model parameter")
    if not isinstance(model, str):
        raise _invalid_type("model", "a string", model)


def check_booleans(req: dict[str, Any], names: tuple[str, ...]) -> None:
    """Refuse as OpenAI does a value of one of ``names`` that is given and is not a boolean."""
    for name in names:
        value = req.get(name)
        if value is not None and not isinstance(value, bool):
            raise _invalid_type(name, "a boolean", value)


def no_stream(req: dict[str, Any], path: str) -> None:
    """Refuse ``stream`` on an endpoint the simulator answers whole only."""
    if req.get("stream"):
        raise BadRequest(
            f"The simulator's {path} does not stream: leave 'stream' out (or false), or stream from "
            "/v1/chat/completions.",
            "stream",
            "unsupported_value",
        )


def check_chat(req: Any) -> None:
    """Raise ``BadRequest`` as OpenAI would for this chat completion body; return if it would be accepted.

    >>> check_chat({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 1})
    """
    check_object_and_model(req)
    messages = req.get("messages")
    if messages is None:
        raise _missing("messages")
    for name in _NUMBERS:
        _check_number(req, name)
    check_booleans(req, _BOOLEANS)
    for name in _STRINGS:
        value = req.get(name)
        if value is not None and not isinstance(value, str):
            raise _invalid_type(name, "a string", value)
    _check_stop(req.get("stop"))
    _check_messages(messages)
    if req.get("stream_options") is not None and not req.get("stream"):
        # OpenAI refuses this combination rather than ignoring it.
        raise BadRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                         "stream_options")  # fmt: skip
    _check_tools(req)
    _check_format(req)
    _check_content_given(messages)


def estimate_tokens(text: str) -> int:
    """The simulator's estimate of a text's tokens: a token for every four characters, rounded up.

    >>> estimate_tokens("hello"), estimate_tokens("")
    (2, 0)
    """
    return -(-len(text) // 4)


def prompt_tokens(messages: list[Any]) -> int:
    """The prompt's tokens by the simulator's estimate: each text at four characters a token, each image at
    ``IMAGE_TOKENS``, tool calls by their JSON, and three tokens a message plus three to prime the answer."""
    total = 3
    for m in messages:
        total += 3
        content = m.get("content")
        if isinstance(content, str):
            total += estimate_tokens(content)
        elif isinstance(content, list):
            for part in content:
                kind = part.get("type")
                if kind == "text":
                    total += estimate_tokens(part.get("text") or "")
                elif kind == "image_url":
                    total += IMAGE_TOKENS
                else:
                    total += estimate_tokens(orjson.dumps(part).decode())
        if m.get("tool_calls"):
            total += estimate_tokens(orjson.dumps(m["tool_calls"]).decode())
    return total


def tool_tokens(tools: list[Any]) -> int:
    """The tokens the tool definitions add to the prompt (their JSON at four characters a token)."""
    return estimate_tokens(orjson.dumps(tools).decode()) if tools else 0


def same_request_key(req: Any) -> bytes | None:
    """What makes two chat bodies "the same request": the model, and the conversation up to and including its
    first user message (a system prompt before it counts). A re-ask appends messages and a retry may raise
    ``max_tokens``, and both stay the same request; another model (a fallback) is a new one. None when the
    body is not a chat request at all (then the bytes themselves are the key).

    >>> a = same_request_key({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    >>> a == same_request_key({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"},
    ...                        {"role": "assistant", "content": "?"}, {"role": "user", "content": "again"}]})
    True
    """
    if not isinstance(req, dict):
        return None
    messages = req.get("messages")
    if not isinstance(messages, list):
        return None
    head = messages
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            head = messages[: i + 1]
            break
    try:
        return orjson.dumps([req.get("model"), head])
    except TypeError:
        return None
