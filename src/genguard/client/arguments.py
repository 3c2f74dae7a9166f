"""The argument checks of the clients' public entry points, one function per entry point.

Each runs once at the call (never per attempt) and raises :class:`TypeError` for a wrong type, ``ValueError``
for a value out of range on a call, or :class:`~genguard.ConfigError` (a ValueError) for a client's settings,
always naming the parameter, what it got and what it takes. The building blocks are in
:mod:`genguard.core.arguments`; the base URL and the keys are checked where they are resolved
(:mod:`genguard.client.keys`), a policy's fields by :class:`~genguard.RetryPolicy` itself, validators by their
builders.

>>> check_messages("hello there")
Traceback (most recent call last):
...
TypeError: messages must be a list of message dicts, each with a role, e.g. messages=[{"role": "user", "content": "..."}]; got the str 'hello there' (to send that text: messages=[{"role": "user", "content": "hello there"}])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import orjson

from ..core import arguments as a
from ..core.exceptions import ConfigError
from ..core.image_rules import ImageRuleBook
from ..core.taxonomy import ENDPOINTS
from .retry import RetryPolicy

__all__ = ["check_chat", "check_client", "check_image", "check_messages", "check_send", "check_video"]

_HOW = 'messages=[{"role": "user", "content": "..."}]'


def _retry(value: Any) -> None:
    if value is None or isinstance(value, RetryPolicy):
        return
    hint = ""
    if isinstance(value, Mapping):
        fields = ", ".join(f"{k}={v!r}" for k, v in value.items())
        hint = f"; pass retry=RetryPolicy({fields})"
    a.instance("retry", value, RetryPolicy, "a genguard.RetryPolicy", none_ok=True, hint=hint)


def check_messages(messages: Any) -> None:
    """A chat call's ``messages``: a non-empty list of dicts, each with a ``role``."""
    if not isinstance(messages, list | tuple):
        hint = ""
        if isinstance(messages, str):
            text = orjson.dumps(messages[:40]).decode()
            hint = f' (to send that text: messages=[{{"role": "user", "content": {text}}}])'
        elif isinstance(messages, Mapping):
            hint = " (one message: put it in a list, messages=[{...}])"
        raise TypeError(
            f"messages must be a list of message dicts, each with a role, e.g. {_HOW}; "
            f"got {a.shown(messages)}{hint}"
        )
    if not messages:
        raise ValueError(f"messages is empty; a chat call needs at least one message, e.g. {_HOW}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TypeError(
                f'messages[{i}] must be a dict with a role, e.g. {{"role": "user", "content": "..."}}, '
                f"got {a.shown(message)}"
            )
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise ValueError(
                f"messages[{i}] has no role (got {a.shown(role)}); every message needs one of 'system', "
                f"'user', 'assistant' or 'tool', e.g. {_HOW}"
            )


def check_client(
    *,
    timeout: Any,
    connect_timeout: Any,
    stall_timeout: Any,
    retry: Any,
    fallbacks: Any,
    hooks: Any,
    headers: Any,
    default_query: Any,
) -> None:
    """A client's settings (``base_url`` and ``api_key`` are checked where they are resolved, in keys.py)."""
    for name, value in (
        ("timeout", timeout),
        ("connect_timeout", connect_timeout),
        ("stall_timeout", stall_timeout),
    ):
        a.number(name, value, above=0, unit="seconds", error=ConfigError)
    _retry(retry)
    a.str_items("fallbacks", fallbacks, example="['gpt-4o-mini']", error=ConfigError)
    a.callables("hooks", hooks, takes="one genguard.Attempt")
    a.str_mapping("headers", headers, none_ok=True, secret_values=True, example="{'x-team': 'search'}",
                  error=ConfigError)  # fmt: skip
    a.str_mapping("default_query", default_query, none_ok=True, example="{'api-version': '2024-10-21'}",
                  error=ConfigError)  # fmt: skip


def check_chat(model: Any, messages: Any, stream: Any, retry: Any, fallbacks: Any) -> None:
    """A chat call's own arguments (``validate``, ``labels``, ``min_words`` and ``pattern`` are checked by the
    validators' builders)."""
    if type(model) is not str or not model.strip():
        a.text("model", model, example="gpt-4o-mini")
    check_messages(messages)
    if stream is not False and stream is not True:
        a.flag("stream", stream)
    if retry is not None:
        _retry(retry)
    if fallbacks is not None and fallbacks != ():
        a.str_items("fallbacks", fallbacks, example="['gpt-4o-mini']")


def check_send(build: Any, parse: Any, model: Any, endpoint: Any, fallbacks: Any, retry: Any) -> None:
    """``send_with_retries``' arguments."""
    a.function("build", build, takes="(key, model) returning an httpx.Request")
    a.function("parse", parse, takes="(httpx.Response) returning an Outcome")
    a.text("model", model, example="gpt-image-1")
    a.one_of("endpoint", endpoint, ENDPOINTS)
    a.str_items("fallbacks", fallbacks, none_ok=True, example="['dall-e-3']")
    _retry(retry)


def _media(prompt: Any, model: Any, out: Any, stem: Any, max_bytes: Any, retry: Any) -> None:
    # An empty prompt stays an invalid_input Outcome (nothing sent), as it always was; its type is checked here.
    a.instance("prompt", prompt, str, "a str")
    a.text("model", model)
    a.instance("out", out, str | os.PathLike, "a folder path (a str or a pathlib.Path)", none_ok=True)
    a.text("stem", stem, none_ok=True)
    a.whole("max_bytes", max_bytes, at_least=1, none_ok=True)
    _retry(retry)


def check_image(
    prompt: Any, model: Any, n: Any, size: Any, out: Any, stem: Any, max_bytes: Any, rules: Any, fallbacks: Any,
    retry: Any,
) -> None:  # fmt: skip
    """``images.generate``'s arguments; ``n`` below 1 stays an ``invalid_input`` Outcome, as it always was."""
    _media(prompt, model, out, stem, max_bytes, retry)
    if isinstance(n, bool) or not isinstance(n, int):
        a.whole("n", n, at_least=1)
    a.text("size", size, none_ok=True, example="1024x1024")
    a.instance("rules", rules, ImageRuleBook, "a genguard.ImageRuleBook", none_ok=True)
    a.str_items("fallbacks", fallbacks, none_ok=True, example="['dall-e-3']")


def check_video(
    prompt: Any, model: Any, size: Any, seconds: Any, input_reference: Any, out: Any, stem: Any,
    poll_interval: Any, deadline: Any, stall_limit: Any, not_exist_grace: Any, fallbacks: Any, on_progress: Any,
    max_bytes: Any, retry: Any,
) -> None:  # fmt: skip
    """``videos.generate``'s arguments."""
    _media(prompt, model, out, stem, max_bytes, retry)
    a.text("size", size, none_ok=True, example="720x1280")
    if isinstance(seconds, str):
        a.text("seconds", seconds, example="4")
    else:
        a.whole("seconds", seconds, at_least=1, none_ok=True)
    a.instance("input_reference", input_reference, str | os.PathLike | bytes,
               "a file path (a str or a pathlib.Path) or the file's bytes", none_ok=True)  # fmt: skip
    a.number("poll_interval", poll_interval, above=0, unit="seconds")
    a.number("deadline", deadline, above=0, unit="seconds", finite=False)
    a.number("stall_limit", stall_limit, above=0, unit="seconds", finite=False)
    a.number("not_exist_grace", not_exist_grace, at_least=0, unit="seconds")
    a.str_items("fallbacks", fallbacks, example="['kling-v2']")
    a.function("on_progress", on_progress, none_ok=True, takes="one genguard.TaskState")
