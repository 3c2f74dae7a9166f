"""A 2xx chat body judged on its content, and the one decision on a finished chat generation.

:func:`finish_outcome` is shared by plain and streamed chat: filtered, truncated, an error, a refusal or no
output at all are failures; tool calls and text are ok. :func:`classify_chat_body` reads a parsed
``chat.completion`` body (Azure's filter results included, legacy completions, OpenAI's Responses API body, and
the native Anthropic and Gemini bodies users save) into that decision. Both are on the hot path of every chat
call, so they check exact dict types and build the ok Outcome directly.

With ``n > 1`` every choice is judged the same way (:func:`with_choices`): the outcome fails with the code of
the first failing choice (the lowest index), its kind and verdict from that code, while ``text``,
``tool_calls`` and ``finish_reason`` stay choice 0's; every choice is in :attr:`~genguard.Outcome.choices`.

>>> classify_chat_body({"choices": [{"message": {"content": "Hi"}, "finish_reason": "stop"}]}).text
'Hi'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .error_verdict import classify_error, invalid_response
from .headers import request_id as header_request_id
from .json_text import dumps
from .json_values import is_map
from .outcome import Choice, Outcome, ToolCall, Usage
from .taxonomy import Endpoint, code_info, normalise_finish_reason

__all__ = ["choice_code", "classify_chat_body", "finish_outcome", "with_choices"]


def choice_code(
    finish_reason: str | None, text: str | None, tool_calls: object, refusal: str | None
) -> str | None:
    """The failure code of one finished choice (``finish_reason`` already normalised), ``None`` when it is a
    usable generation: the one rule behind :func:`finish_outcome` and every choice of ``n > 1``.

    >>> choice_code("stop", "", None, None), choice_code("tool_calls", None, ("call",), None)
    ('empty_output', None)
    """
    if finish_reason == "content_filter":
        return "content_filtered"
    if finish_reason == "length":
        return "truncated"
    if finish_reason == "error":
        return "stream_error"
    if tool_calls:
        return None
    if refusal:
        return "content_filtered"
    if not text or text.isspace():
        return "empty_output"
    return None


_WHY = {
    "truncated": "stopped at the length limit (finish_reason length)",
    "content_filtered": "was filtered",
    "stream_error": "ended with an error",
    "empty_output": "has no content and no tool call",
    "incomplete_stream": "ended without any finish_reason",
}


def with_choices(
    outcome: Outcome, choices: Sequence[Choice], *, notes: Mapping[int, str] | None = None
) -> Outcome:
    """``outcome`` (choice 0's) with every choice of a response that had several: when choice 0 is usable and
    another is not, the outcome fails with the first failing choice's code (its kind, verdict, cause and fix);
    ``text``, ``tool_calls`` and ``finish_reason`` stay choice 0's. ``notes`` adds what a choice's provider
    said (a refusal) to the message. One choice changes nothing.

    >>> first = finish_outcome(finish_reason="stop", text="Hi", tool_calls=None, usage=None)
    >>> o = with_choices(first, [Choice(0, "Hi", None, "stop"), Choice(1, "Hel", None, "length", "truncated", "soft")])
    >>> (o.code, o.text, o.message, len(o.choices))
    ('truncated', 'Hi', 'choice 1 of 2 stopped at the length limit (finish_reason length)', 2)
    """
    if len(choices) < 2:
        return outcome
    ordered = tuple(sorted(choices, key=lambda c: c.index))
    failing = next((c for c in ordered if c.code is not None), None)
    if not outcome.ok or failing is None or failing.code is None:
        return outcome.replace(choices=ordered)
    info = code_info(failing.code)
    message = f"choice {failing.index} of {len(ordered)} {_WHY.get(failing.code, failing.code)}"
    note = (notes or {}).get(failing.index)
    if note:
        message += f": {note}"
    return outcome.replace(
        ok=False,
        kind=info.kind,
        code=failing.code,
        retryable=info.retryable,
        cause=info.cause_for(outcome.endpoint),
        fix=info.fix_for(outcome.endpoint),
        message=message,
        choices=ordered,
    )


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
    code = choice_code(fr, text, tool_calls, refusal)
    if code == "content_filtered" and refusal:
        message = (message or refusal) if fr == "content_filter" else refusal
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
        if data.get("object") == "response" or (isinstance(data.get("output"), list) and "status" in data):
            return _responses_body(data, usage, status, headers, request_id, secrets)
        if data.get("type") == "message" and isinstance(data.get("content"), list):
            return _anthropic_message(data, usage, status, request_id)
        if "candidates" in data or "promptFeedback" in data:
            return _gemini_response(data, status, request_id)
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
    read = _read_choice(choices[0], 0)
    if isinstance(read, str):
        return invalid_response(read, status, request_id)
    text, calls, refusal, finish, note = read
    outcome = finish_outcome(
        finish_reason=finish,
        text=text,
        tool_calls=calls,
        usage=usage,
        refusal=refusal,
        status=status,
        request_id=request_id,
        message=note,
    )
    if len(choices) > 1:
        return _several(outcome, choices, status, request_id)
    return outcome


_Read = tuple[str | None, tuple[ToolCall, ...] | None, str | None, object, str | None]


def _read_choice(choice: object, position: int) -> _Read | str:
    """``(text, tool_calls, refusal, finish_reason, note)`` of one choice, or what is wrong with it."""
    where = f"'choices[{position}]"
    if not is_map(choice):
        return f"{where}' is not an object"
    message = choice.get("message")
    if message is None and isinstance(choice.get("text"), str):
        message = {"content": choice["text"]}  # a legacy completions choice
    if not is_map(message):
        return f"{where}.message' is missing or not an object"
    valid, text = _content(message.get("content"))
    if not valid:
        return f"{where}.message.content' is neither text nor a list of parts"
    valid, calls = _tool_calls(message)
    if not valid:
        return f"{where}.message.tool_calls' is malformed"
    refusal = message.get("refusal")
    finish = choice.get("finish_reason")
    note = None
    if "content_filter_results" in choice:
        hits = _filtered(choice.get("content_filter_results"))
        if hits:
            note = "the output was filtered: " + ", ".join(hits)
            if not text and not calls:
                finish = "content_filter"
    return text, calls, refusal if isinstance(refusal, str) and refusal else None, finish, note


def _several(first: Outcome, choices: list[Any], status: int, request_id: str | None) -> Outcome:
    """``n > 1``: every choice judged as choice 0 was (see :func:`with_choices`)."""
    built = [_choice_of(choices[0], 0, first.text, first.tool_calls, first.finish_reason, first.code)]
    notes: dict[int, str] = {}
    for position in range(1, len(choices)):
        read = _read_choice(choices[position], position)
        if isinstance(read, str):
            return invalid_response(read, status, request_id)
        text, calls, refusal, finish, note = read
        fr = normalise_finish_reason(finish)
        choice = _choice_of(
            choices[position], position, text, calls, fr, choice_code(fr, text, calls, refusal)
        )
        if refusal or note:
            notes[choice.index] = refusal or note or ""
        built.append(choice)
    return with_choices(first, built, notes=notes)


def _choice_of(
    raw: Mapping[str, Any],
    position: int,
    text: str | None,
    calls: tuple[ToolCall, ...] | None,
    finish: str | None,
    code: str | None,
) -> Choice:
    index = raw.get("index")
    return Choice(
        index if isinstance(index, int) and not isinstance(index, bool) else position,
        text,
        calls,
        finish,
        code,
        code_info(code).kind if code else None,
    )


# What an incomplete response's reason means, as a chat finish_reason.
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _responses_body(
    data: Mapping[str, Any],
    usage: Usage | None,
    status: int,
    headers: Mapping[str, str] | None,
    request_id: str | None,
    secrets: Iterable[str],
) -> Outcome:
    """An OpenAI Responses API body (``object: response``; ``POST /v1/responses``): ``status`` ``completed``,
    ``incomplete`` (``incomplete_details.reason`` ``max_output_tokens`` is truncated, ``content_filter``
    filtered) or ``failed`` (its ``error`` judged as an error body's); the ``output_text`` parts of its
    ``message`` items are the text, ``refusal`` parts a refusal, ``function_call`` items the tool calls.

    >>> _responses_body({"object": "response", "status": "incomplete",
    ...     "incomplete_details": {"reason": "max_output_tokens"}, "output": []}, None, 200, None, None, ()).code
    'truncated'
    """
    state = data.get("status")
    error = data.get("error")
    if state == "failed" or (is_map(error) and error):
        if not is_map(error) or not error:
            error = {"message": "the response failed (status failed) and says no more"}
        return classify_error(status, headers, {"error": error}, secrets=secrets)
    if state not in ("completed", "incomplete", None):
        # queued / in_progress (a background response not finished), cancelled: no generation to judge.
        return invalid_response(
            f"a Responses API body with status {state!r}, not a finished response"
            + (" (a background response: poll it until it is completed)" if state in ("queued", "in_progress")
               else ""),
            status,
            request_id,
        )  # fmt: skip
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[ToolCall] = []
    output = data.get("output")
    for item in output if isinstance(output, list) else ():
        if not is_map(item):
            continue
        kind = item.get("type")
        if kind == "message":
            content = item.get("content")
            for part in content if isinstance(content, list) else ():
                if not is_map(part):
                    continue
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    refusals.append(part["refusal"])
        elif kind == "function_call" and isinstance(item.get("name"), str):
            call_id = item.get("call_id")
            args = item.get("arguments")
            calls.append(
                ToolCall(
                    call_id if isinstance(call_id, str) else None,
                    item["name"],
                    args if isinstance(args, str) else dumps(args if args is not None else {}).decode(),
                )
            )
    finish: str | None = "tool_calls" if calls else "stop"
    message = None
    if state == "incomplete":
        details = data.get("incomplete_details")
        reason = details.get("reason") if is_map(details) else None
        # An incomplete response stopped before its end, whatever the reason given.
        finish = _INCOMPLETE.get(reason, "length") if isinstance(reason, str) else "length"
        message = f"the response is incomplete: {reason or 'no reason given'}"
    return finish_outcome(
        finish_reason=finish,
        text="".join(texts) if texts else None,
        tool_calls=tuple(calls) or None,
        usage=usage,
        refusal=" ".join(refusals) or None,
        status=status,
        request_id=request_id,
        message=message,
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


def _gemini_response(data: Mapping[str, Any], status: int, request_id: str | None) -> Outcome:
    """A native Gemini ``generateContent`` body: ``candidates`` with ``content.parts`` and ``finishReason``,
    ``usageMetadata``; a prompt the safety filters refused has no candidates and a
    ``promptFeedback.blockReason`` (``SAFETY``, ``PROHIBITED_CONTENT``, ``BLOCKLIST``, ``OTHER``...)."""
    meta = data.get("usageMetadata")
    usage = None
    if is_map(meta):
        usage = Usage.from_dict(
            {"prompt_tokens": meta.get("promptTokenCount"), "completion_tokens": meta.get("candidatesTokenCount"),
             "total_tokens": meta.get("totalTokenCount")}
        )  # fmt: skip
    candidates = data.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        feedback = data.get("promptFeedback")
        reason = feedback.get("blockReason") if is_map(feedback) else None
        if isinstance(reason, str) and reason:
            said = feedback.get("blockReasonMessage") if is_map(feedback) else None
            return Outcome.failure(
                "prompt_blocked",
                status=status,
                request_id=request_id,
                usage=usage,
                provider_code=reason,
                message=said
                if isinstance(said, str) and said
                else f"the prompt was blocked: blockReason {reason}",
            )
        return Outcome.failure(
            "empty_output",
            status=status,
            request_id=request_id,
            usage=usage,
            message="a 2xx with no candidates",
        )
    built: list[Choice] = []
    first: Outcome | None = None
    for position, candidate in enumerate(candidates):
        if not is_map(candidate):
            return invalid_response(f"'candidates[{position}]' is not an object", status, request_id)
        texts: list[str] = []
        calls: list[ToolCall] = []
        content = candidate.get("content")
        parts = content.get("parts") if is_map(content) else None
        for part in parts if isinstance(parts, list) else ():
            if not is_map(part) or part.get("thought"):
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            call = part.get("functionCall")
            if is_map(call) and isinstance(call.get("name"), str):
                args = call.get("args")
                calls.append(ToolCall(None, call["name"], dumps(args if args is not None else {}).decode()))
        text = "".join(texts) if texts else None
        tools = tuple(calls) or None
        if first is None:
            first = finish_outcome(
                finish_reason=candidate.get("finishReason"),
                text=text,
                tool_calls=tools,
                usage=usage,
                status=status,
                request_id=request_id,
            )
            built.append(_choice_of(candidate, 0, text, tools, first.finish_reason, first.code))
        else:
            fr = normalise_finish_reason(candidate.get("finishReason"))
            built.append(_choice_of(candidate, position, text, tools, fr, choice_code(fr, text, tools, None)))
    assert first is not None
    return with_choices(first, built)
