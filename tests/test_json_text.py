"""Readers given parsed JSON never raise on ints past 64 bits (stdlib json gives them, orjson refuses them)."""

from __future__ import annotations

import json

import pytest

from genguard.core.chat_body import classify_chat_body
from genguard.core.image_body import image_outcome
from genguard.core.json_text import dumps

BIG = 2**70


def test_dumps_keeps_big_ints_exact() -> None:
    assert json.loads(dumps({"a": [BIG, -BIG]})) == {"a": [BIG, -BIG]}


def test_chat_tool_call_arguments_with_a_big_int() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"n": BIG}}}
    body = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"tool_calls": [call]}}]}
    outcome = classify_chat_body(body)
    assert outcome.ok
    assert json.loads(outcome.tool_calls[0].arguments) == {"n": BIG}


def test_anthropic_tool_use_input_with_a_big_int() -> None:
    body = {
        "type": "message",
        "role": "assistant",
        "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"n": -BIG}}],
    }
    outcome = classify_chat_body(body)
    assert outcome.ok
    assert json.loads(outcome.tool_calls[0].arguments) == {"n": -BIG}


@pytest.mark.parametrize("error", [-9223372036854775809, {"message": "boom", "code": BIG}])
def test_image_error_with_a_big_int(error: object) -> None:
    outcome = image_outcome({"error": error})
    assert not outcome.ok
    assert outcome.endpoint == "image"
