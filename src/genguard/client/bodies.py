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

__all__ = ["chat_body", "raised_max_tokens", "reask_messages"]


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


def raised_max_tokens(params: Mapping[str, Any], outcome: Outcome) -> dict[str, Any]:
    """Twice the token limit the call set (under the name it used), else twice what the answer used, else 1024.

    >>> raised_max_tokens({"max_completion_tokens": 300}, Outcome.failure("truncated"))
    {'max_completion_tokens': 600}
    """
    name = "max_completion_tokens" if "max_completion_tokens" in params else "max_tokens"
    current = params.get(name)
    if not isinstance(current, int) or current <= 0:
        used = outcome.usage.completion_tokens if outcome.usage else None
        current = used or 512
    return {name: current * 2}
