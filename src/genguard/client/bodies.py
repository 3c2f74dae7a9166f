"""What a chat call puts in its request body, and how the retry loop changes it between attempts.

Pure functions over plain dicts, shared by :class:`~genguard.Client` and :class:`~genguard.AsyncClient`:
the body of the first attempt (:func:`chat_body`), and the two changes a :class:`~genguard.RetryPolicy` may
ask for: re-asking with the validation error (:func:`reask_messages`) and a larger token limit after a
truncated answer (:func:`raised_max_tokens`).

>>> body = chat_body("m", [{"role": "user", "content": "Hi"}], {"max_tokens": 50}, stream=True)
>>> body["stream_options"], raised_max_tokens(body, Outcome.failure("truncated"))
({'include_usage': True}, {'max_tokens': 100})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core.outcome import Outcome

__all__ = ["chat_body", "raised_max_tokens", "reask_messages", "reask_patch"]


def chat_body(
    model: str, messages: Sequence[Any], params: Mapping[str, Any], *, stream: bool
) -> dict[str, Any]:
    """The chat-completions body: ``params`` as given, the model, the messages and the stream flag.

    >>> chat_body("m", [], {"stream": True}, stream=False)
    {'model': 'm', 'messages': []}
    """
    body: dict[str, Any] = {**params, "model": model, "messages": list(messages)}
    if stream:
        body["stream"] = True
        # Usage comes only when asked for in a stream; cost and the usage sum need it.
        body.setdefault("stream_options", {"include_usage": True})
    else:
        body.pop("stream", None)
    return body


def reask_messages(messages: Sequence[Any] | None, patch: Mapping[str, Any], outcome: Outcome) -> list[Any]:
    """The conversation so far (``patch``'s, after an earlier re-ask), the rejected answer, and the reason.

    >>> reask_messages([], {}, Outcome.failure("invalid_json", text="{", message="not JSON"))[-1]["content"]
    'Your answer was rejected: not JSON. Answer again, correcting this, and reply with the answer only.'
    """
    # As instructor does: show the model its answer and the validation error, then ask again.
    base = list(patch.get("messages", messages or ()))
    return [
        *base,
        {"role": "assistant", "content": outcome.text or ""},
        {
            "role": "user",
            "content": f"Your answer was rejected: {outcome.message}. "
            "Answer again, correcting this, and reply with the answer only.",
        },
    ]


def _responses_body(params: Mapping[str, Any] | None) -> bool:
    # A Responses API body: its prompt is "input", its limit "max_output_tokens" (an embeddings body has input
    # too, but is never re-asked nor truncated).
    return params is not None and "input" in params and "messages" not in params


def reask_patch(
    messages: Sequence[Any] | None,
    params: Mapping[str, Any] | None,
    patch: Mapping[str, Any],
    outcome: Outcome,
) -> dict[str, Any]:
    """The body change of a re-ask: the conversation with the rejected answer and the reason appended, as
    ``messages`` for a chat body, as ``input`` items for a Responses API body (its string input becoming the
    first user message).

    >>> reask_patch(None, {"model": "m", "input": "Hi"}, {}, Outcome.failure("too_short", text="Ok", message="short"))["input"][:2]
    [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Ok'}]
    """
    if messages is None and _responses_body(params):
        assert params is not None
        given = patch.get("input", params["input"])
        base = [{"role": "user", "content": given}] if isinstance(given, str) else list(given)
        return {"input": reask_messages(base, {}, outcome)}
    return {"messages": reask_messages(messages, patch, outcome)}


def raised_max_tokens(params: Mapping[str, Any], outcome: Outcome) -> dict[str, Any]:
    """Twice the token limit the call set (under the name it used), else twice what the answer used, else 1024.

    >>> raised_max_tokens({"max_completion_tokens": 300}, Outcome.failure("truncated"))
    {'max_completion_tokens': 600}
    >>> raised_max_tokens({"model": "m", "input": "Hi", "max_output_tokens": 100}, Outcome.failure("truncated"))
    {'max_output_tokens': 200}
    """
    if "max_completion_tokens" in params:
        name = "max_completion_tokens"
    elif "max_output_tokens" in params or _responses_body(params):
        name = "max_output_tokens"
    else:
        name = "max_tokens"
    current = params.get(name)
    if not isinstance(current, int) or current <= 0:
        used = outcome.usage.completion_tokens if outcome.usage else None
        current = used or 512
    return {name: current * 2}
