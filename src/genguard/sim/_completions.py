"""``POST /v1/completions``: OpenAI's legacy completions, not streamed, playing the chat scenarios.

A completions body is checked as OpenAI checks it, then each prompt is put to the chat planner as one user
message, with ``max_tokens`` (16 when not given, as on OpenAI's legacy endpoint) as the limit, so answers and
every chat scenario come out as they do on ``/v1/chat/completions`` (the same prompt asked there as a user
message gets the same text). There are no tools here: the plan is written as a ``text_completion`` with one
choice for each prompt and each of its ``n`` answers, indexed ``prompt_index * n + answer_index``.

>>> split_prompt("Once upon a time"), split_prompt(["a", "b"]), split_prompt([1, 2, 3])
(['Once upon a time'], ['a', 'b'], [[1, 2, 3]])
>>> prompt_text([15496, 995]), prompt_size([15496, 995]), prompt_size("Once upon a time")
('15496 995', 2, 4)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ._chat import Plan, _plan, _reply, _seed, begin_checked, overflowed
from ._chatreq import (
    BadRequest,
    _check_length,
    _check_number,
    _check_stop,
    _invalid_type,
    _missing,
    check_booleans,
    check_object_and_model,
    estimate_tokens,
    no_stream,
)
from ._config import MEDIA_SCENARIOS
from ._core import ERROR_SCENARIOS
from ._dialects import JSON

__all__ = [
    "check_completions",
    "completions",
    "prompt_size",
    "prompt_text",
    "same_completion_key",
    "split_prompt",
]

PATH = "/v1/completions"
DEFAULT_MAX_TOKENS = 16
"""The ``max_tokens`` of OpenAI's legacy endpoint when the request gives none."""

Prompt = str | list[int]
"""One prompt: a text, or token ids."""

_PROMPT_TYPES = "one of a string, array of strings, array of integers, or array of arrays of integers"
_BOOLEANS: tuple[str, ...] = ("stream", "echo")
_NUMBERS: tuple[str, ...] = ("n", "temperature", "top_p", "presence_penalty", "frequency_penalty", "seed")


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and all(_is_token(t) for t in value)


def _check_prompt(prompt: Any) -> None:
    if isinstance(prompt, str):
        _check_length(prompt, "prompt")
        return
    if not isinstance(prompt, list):
        raise _invalid_type("prompt", _PROMPT_TYPES, prompt)
    if not prompt:
        raise BadRequest("Invalid 'prompt': empty array. Expected an array with minimum length 1, but got an "
                         "empty array instead.", "prompt", "empty_array")  # fmt: skip
    if _is_tokens(prompt):
        return
    for i, item in enumerate(prompt):
        if isinstance(item, str):
            _check_length(item, f"prompt[{i}]")
        elif not _is_tokens(item):
            raise _invalid_type(f"prompt[{i}]", "one of a string or array of integers", item)


def check_completions(req: Any) -> None:
    """Raise ``BadRequest`` as OpenAI would for this legacy completions body (or as the simulator does for
    what it does not serve: ``stream``); return if it would be accepted. ``suffix``, ``logprobs`` and
    ``best_of`` are taken and ignored.

    >>> try:
    ...     check_completions({"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "max_tokens": -1})
    ... except BadRequest as exc:
    ...     print(exc.param, exc.code)
    max_tokens integer_below_min_value
    """
    check_object_and_model(req)
    if req.get("prompt") is None:
        raise _missing("prompt")
    check_booleans(req, _BOOLEANS)
    no_stream(req, PATH)
    _check_number(req, "max_tokens", (True, 0, None))
    for name in _NUMBERS:
        _check_number(req, name)
    _check_stop(req.get("stop"))
    _check_prompt(req["prompt"])


def split_prompt(prompt: Any) -> list[Prompt]:
    """The prompts a checked ``prompt`` holds: a text, a list of texts, one list of token ids, or a list of
    token lists (a list may mix texts and token lists)."""
    if isinstance(prompt, str) or _is_tokens(prompt):
        return [prompt]
    return list(prompt)


def prompt_text(prompt: Prompt) -> str:
    """What the planner is asked: the text itself, or the token ids written out."""
    return prompt if isinstance(prompt, str) else " ".join(str(t) for t in prompt)


def prompt_size(prompt: Prompt) -> int:
    """A prompt's tokens: a text's by the simulator's estimate (four characters a token), a token id each."""
    return estimate_tokens(prompt) if isinstance(prompt, str) else len(prompt)


def same_completion_key(req: Any) -> bytes | None:
    """What makes two completions bodies "the same request": the model and the prompt, whatever
    ``max_tokens`` and the other parameters; None when the body is not a completions request.

    >>> same_completion_key({"model": "m", "prompt": "hi"}) == same_completion_key(
    ...     {"model": "m", "prompt": "hi", "max_tokens": 99})
    True
    """
    if not isinstance(req, dict):
        return None
    prompt = req.get("prompt")
    if not isinstance(prompt, str | list):
        return None
    try:
        return orjson.dumps(["completions", req.get("model"), prompt])
    except TypeError:
        return None


def _finish(plan: Plan, limit: int) -> tuple[str, str, int]:
    # (text, finish_reason, tokens) of one choice: the stream-only failures answer normally.
    text, finish, tokens = plan.text or "", plan.finish, plan.tokens
    if limit == 0:
        # Nothing may be generated: the planner cuts after at least one word, OpenAI gives none.
        return "", "content_filter" if finish == "content_filter" else ("length" if text else "stop"), 0
    if finish not in ("length", "content_filter"):
        finish = "stop"
    return text, finish, tokens if text else 0  # nothing delivered, nothing counted


async def completions(request: Request) -> Response:
    """``POST /v1/completions`` (not streamed) with OpenAI's checks, answered by the chat planner."""
    opened = await begin_checked(request, check_completions, same_completion_key)
    if isinstance(opened, Response):
        return opened
    ctx, req = opened
    model: str = req["model"]
    prompts = split_prompt(req["prompt"])
    n: int = req.get("n") or 1
    limit: int = DEFAULT_MAX_TOKENS if req.get("max_tokens") is None else req["max_tokens"]
    sizes = [prompt_size(p) for p in prompts]
    refused = overflowed(ctx, model, prompt=max(sizes), completion=limit, path=PATH)
    if refused is not None:
        return refused
    scenario = ctx.scenario
    reply = _reply(ctx, request, model)
    if scenario in MEDIA_SCENARIOS:
        ctx.scenario = ctx.entry.scenario = scenario = "ok"
    if scenario in ERROR_SCENARIOS:
        return ctx.error(scenario, model=model, path=PATH)
    echo = bool(req.get("echo"))
    choices: list[dict[str, Any]] = []
    completion = 0
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt_text(prompt)}]
        chat: dict[str, Any] = {"model": model, "messages": messages}
        if req.get("seed") is not None:
            chat["seed"] = req["seed"]
        parsed: dict[str, Any] = {"messages": messages, "n": n, "limit": limit, "tools": [], "fmt": {},
                                  "reply": reply}  # fmt: skip
        for j in range(n):
            text, finish, tokens = _finish(_plan(ctx, chat, parsed, _seed(ctx, chat, j)), limit)
            if echo and isinstance(prompt, str):
                text = prompt + text
            completion += tokens
            choices.append({"text": text, "index": len(choices), "logprobs": None, "finish_reason": finish})
    prompt_tokens = sum(sizes)
    ctx.charge(completion)
    cfg = ctx.config
    delay = cfg.ttft_ms / 1000 + (completion / cfg.tokens_per_s if cfg.tokens_per_s else 0.0)
    if delay:
        await asyncio.sleep(delay)
    body = {
        "id": f"cmpl-{ctx.request_id[4:]}", "object": "text_completion", "created": int(time.time()),
        "model": model, "system_fingerprint": "fp_genguard_sim", "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                  "total_tokens": prompt_tokens + completion},
    }  # fmt: skip
    return Response(orjson.dumps(body), media_type=JSON)
