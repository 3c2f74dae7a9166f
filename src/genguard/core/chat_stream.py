"""Chat-completion streams: chunks in, text as it arrives, and one Outcome at the end.

:class:`ChatStreamReader` reads OpenAI-style ``chat.completion.chunk`` streams and their variants (tool-call
fragments interleaved by index, the ``include_usage`` chunk, Azure's prompt-filter chunk, errors inside a 200
stream in the OpenAI, OpenRouter and Anthropic shapes), and Anthropic Messages streams that gateways pass
through. A stream that ends before any ``finish_reason`` is ``incomplete_stream``, never a silent success.
With ``n > 1`` the choices interleave by index; each is read and judged (every choice must finish, see
:func:`~genguard.core.chat_body.with_choices`), while the text returned as it arrives is choice 0's.

>>> r = ChatStreamReader()
>>> r.feed(b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\\n\\n')
['Hi']
>>> r.finish().code
'incomplete_stream'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from .chat_body import choice_code, finish_outcome, with_choices
from .error_body import read_error
from .error_verdict import code_for_error
from .headers import request_id as header_request_id
from .outcome import RAW_BODY_LIMIT, Choice, Outcome, RawResponse, ToolCall, Usage
from .sse import ServerSentEvent, SSEDecoder
from .taxonomy import code_info, normalise_finish_reason
from .waits import wait_from_message

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError

__all__ = ["ChatStreamReader", "read_chat_stream"]

# Anthropic stop reasons that normalise_finish_reason does not know (its table covers the rest).
_ANTHROPIC_STOP = {"refusal": "content_filter", "pause_turn": "stop"}


class _ToolCallParts:
    __slots__ = ("args", "id", "name", "type")

    def __init__(self, call_id: str | None, name: str, call_type: str) -> None:
        self.id = call_id
        self.name = name
        self.type = call_type
        self.args: list[str] = []


def _merge_tools(tools: dict[int, _ToolCallParts], fragments: object) -> None:
    """Tool-call fragments into ``tools`` by index: the first names the call, the rest append arguments."""
    if type(fragments) is not list:
        return
    for frag in fragments:
        if type(frag) is not dict:
            continue
        fn = frag.get("function")
        if type(fn) is not dict:
            fn = {}
        call_id = frag.get("id")
        index = frag.get("index")
        if type(index) is not int:
            # Some servers omit the index: a new id starts a call, anything else continues the last.
            known = next((i for i, t in tools.items() if call_id and t.id == call_id), None)
            if known is not None:
                index = known
            elif call_id or not tools:
                index = max(tools, default=-1) + 1
            else:
                index = max(tools)
        parts = tools.get(index)
        if parts is None:
            parts = tools[index] = _ToolCallParts(None, "", "function")
        if call_id and not parts.id:
            parts.id = str(call_id)
        name = fn.get("name")
        if name and not parts.name:
            parts.name = str(name)
        ftype = frag.get("type")
        if ftype and type(ftype) is str:
            parts.type = ftype
        args = fn.get("arguments")
        if args:
            parts.args.append(args if type(args) is str else orjson.dumps(args).decode())


def _calls(tools: dict[int, _ToolCallParts]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(p.id, p.name, "".join(p.args), p.type) for _, p in sorted(tools.items()))


class _OtherChoice:
    """A choice other than 0 of an ``n > 1`` stream, gathered as it interleaves with the rest."""

    __slots__ = ("finish_raw", "refusal", "text", "tools")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.tools: dict[int, _ToolCallParts] = {}
        self.finish_raw: str | None = None

    def read(self, choice: dict[str, Any]) -> None:
        finish = choice.get("finish_reason")
        if finish:
            self.finish_raw = str(finish)
        delta = choice.get("delta")
        if type(delta) is not dict:
            delta = choice.get("message")
            if type(delta) is not dict:
                return
        content = delta.get("content")
        if content and type(content) is str:
            self.text.append(content)
        refusal = delta.get("refusal")
        if refusal and type(refusal) is str:
            self.refusal.append(refusal)
        if delta.get("tool_calls"):
            _merge_tools(self.tools, delta["tool_calls"])

    def choice(self, index: int) -> tuple[Choice, str | None]:
        text = "".join(self.text) or None
        tools = _calls(self.tools) or None
        refusal = "".join(self.refusal) or None
        finish = normalise_finish_reason(self.finish_raw)
        code = "incomplete_stream" if finish is None else choice_code(finish, text, tools, refusal)
        kind = code_info(code).kind if code else None
        return Choice(index, text, tools, finish, code, kind), refusal


class ChatStreamReader:
    """Read a chat stream incrementally and decide its :class:`~genguard.Outcome` when it ends.

    ``feed`` returns choice 0's text deltas as they arrive so a client can print them; with ``n > 1`` the other
    choices are gathered too, and every one of them is judged when the stream ends. :meth:`finish` gives the
    Outcome. ``keep_raw`` keeps the stream's first :data:`~genguard.core.outcome.RAW_BODY_LIMIT` characters and
    the headers in :attr:`~genguard.Outcome.raw`, masked (``secrets`` are masked too).

    >>> r = ChatStreamReader()
    >>> r.feed(b'data: {"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":"stop"}]}\\n\\n'
    ...        b"data: [DONE]\\n\\n")
    ['Hello']
    >>> o = r.finish()
    >>> (o.ok, o.text, o.finish_reason)
    (True, 'Hello', 'stop')
    """

    __slots__ = (
        "_chunks",
        "_decode",
        "_done",
        "_error",
        "_finish_raw",
        "_headers",
        "_native_finish",
        "_others",
        "_raw",
        "_raw_size",
        "_reasoning",
        "_refusal",
        "_request_id",
        "_secrets",
        "_status",
        "_text",
        "_tools",
        "_usage",
    )

    def __init__(
        self,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        keep_raw: bool = False,
        secrets: Iterable[str] = (),
    ) -> None:
        # Bound once: feed runs per network chunk, and an attribute lookup there is a measurable share.
        self._decode = SSEDecoder().feed_payloads
        self._status = status
        self._request_id = request_id or header_request_id(headers)
        self._text: list[str] = []
        self._refusal: list[str] = []
        self._reasoning: list[str] = []
        self._tools: dict[int, _ToolCallParts] = {}
        self._usage: dict[str, Any] | None = None
        self._finish_raw: str | None = None
        self._native_finish: Any = None
        self._error: dict[str, Any] | None = None
        self._done = False
        self._chunks = 0
        self._others: dict[int, _OtherChoice] | None = None
        # Kept only when asked: the stream's start, its headers, and how much arrived in all.
        self._raw: list[bytes] | None = [] if keep_raw else None
        self._raw_size = 0
        self._headers = headers if keep_raw else None
        self._secrets: tuple[str, ...] = tuple(secrets) if keep_raw else ()

    # -- reading -------------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[str]:
        """Decode ``chunk`` (bytes as the network gave them); return the text deltas it completed, in order."""
        # Every text delta read is appended to _text and nothing else is, so what this chunk added is the
        # deltas to return: one slice at the end instead of a second list kept item by item.
        text = self._text
        start = len(text)
        lean = 0
        if self._raw is not None:
            self._keep_raw(chunk)
        for item in self._decode(chunk):
            if isinstance(item, bytes):
                # The common event, one "data: {...}" line: its bytes go straight to orjson. What orjson
                # rejects ([DONE], invalid UTF-8, a keep-alive) is decoded and read the careful way.
                try:
                    obj = _loads(item)
                except _JSONDecodeError:
                    self._on_event("message", item.decode("utf-8", "replace"))
                    continue
            else:
                self._on_event(item[0], item[1])
                continue
            # Nearly every chunk is choices[0] at index 0, no finish reason, a delta of text alone, no
            # error, no usage: subscripts check all that at once (a miss raises, and a try costs nothing
            # when nothing does); anything else takes the general path.
            try:
                choices = obj["choices"]
                choice = choices[0]
                delta = choice["delta"]
                content = delta["content"]
                if (
                    type(content) is str
                    and len(delta) == 1
                    and len(choices) == 1
                    and not choice["finish_reason"]
                    and choice["index"] == 0
                    and "error" not in obj
                    and ("usage" not in obj or not obj["usage"])
                ):
                    lean += 1
                    if content:
                        text.append(content)
                    continue
            except (KeyError, IndexError, TypeError):
                pass
            self._on_json("message", obj)
        self._chunks += lean
        return text[start:]

    def _keep_raw(self, chunk: bytes) -> None:
        assert self._raw is not None
        kept = self._raw_size
        self._raw_size += len(chunk)
        # A margin past the limit, so that masking before the cut sees a key that straddles it whole.
        room = RAW_BODY_LIMIT + 1024 - kept
        if room > 0:
            self._raw.append(bytes(chunk[:room]))

    def feed_event(self, event: ServerSentEvent) -> str | None:
        """Read one already-decoded event; return its text delta, if any."""
        return self._on_event(event.event, event.data) or None

    def _on_event(self, event: str, data: str) -> str | None:
        try:
            obj = _loads(data)
        except _JSONDecodeError:
            # [DONE] is not JSON, so testing for it here keeps that test off the per-chunk path.
            if data.strip() == "[DONE]":
                self._done = True
            elif event == "error":
                self._record_error({"error": {"message": data}} if data.strip() else {})
            return None  # otherwise a keep-alive or a stray non-JSON line: not part of the generation
        return self._on_json(event, obj)

    def _on_json(self, event: str, obj: Any) -> str | None:
        if type(obj) is not dict:
            if event == "error":
                self._record_error({"error": obj})
            return None
        self._chunks += 1
        if event == "error":
            self._record_error(obj)
            return None
        choices = obj.get("choices")
        if choices is None:
            kind = obj.get("type")
            if kind is not None and type(kind) is str:
                return self._anthropic(kind, obj)
        if obj.get("error"):
            self._record_error(obj)
        usage = obj.get("usage")
        if usage:
            self._usage = usage
        if not choices or type(choices) is not list:
            return None
        choice = choices[0]
        if len(choices) > 1 or type(choice) is not dict or choice.get("index", 0) != 0:
            return self._several(choices)
        return self._on_choice(choice)

    def _several(self, choices: list[Any]) -> str | None:
        # n > 1: a chunk may carry any of the choices (usually one, by its index); only choice 0's text is
        # handed back as it arrives.
        delta: str | None = None
        for choice in choices:
            if type(choice) is not dict:
                continue
            index = choice.get("index", 0)
            if type(index) is not int or index == 0:
                delta = self._on_choice(choice) or delta
                continue
            others = self._others
            if others is None:
                others = self._others = {}
            other = others.get(index)
            if other is None:
                other = others[index] = _OtherChoice()
            other.read(choice)
        return delta

    def _on_choice(self, choice: dict[str, Any]) -> str | None:
        finish = choice.get("finish_reason")
        if finish:
            self._finish_raw = finish
            native = choice.get("native_finish_reason")
            if native:
                self._native_finish = native
        delta = choice.get("delta")
        if type(delta) is not dict:
            delta = choice.get("message")  # a few servers send whole messages in stream chunks
            if type(delta) is not dict:
                return None
        content = delta.get("content")
        # Nearly every chunk's delta is {"content": "..."} alone: only look for the rest when there is more.
        if content is None or len(delta) > 1:
            self._delta_extras(delta)
        if content and type(content) is str:
            self._text.append(content)
            return content
        return None

    def _delta_extras(self, delta: dict[str, Any]) -> None:
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            _merge_tools(self._tools, tool_calls)
        refusal = delta.get("refusal")
        if refusal and type(refusal) is str:
            self._refusal.append(refusal)
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and type(reasoning) is str:
            self._reasoning.append(reasoning)

    def _anthropic(self, kind: str, obj: dict[str, Any]) -> str | None:
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if type(delta) is not dict:
                return None
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text")
                if text and type(text) is str:
                    self._text.append(text)
                    return text
            elif dtype == "input_json_delta":
                part = delta.get("partial_json")
                index = obj.get("index")
                parts = self._tools.get(index) if type(index) is int else None
                if parts is not None and part and type(part) is str:
                    parts.args.append(part)
            elif dtype == "thinking_delta":
                thinking = delta.get("thinking")
                if thinking and type(thinking) is str:
                    self._reasoning.append(thinking)
        elif kind == "content_block_start":
            block = obj.get("content_block")
            index = obj.get("index")
            if type(block) is dict and block.get("type") == "tool_use" and type(index) is int:
                call_id = block.get("id")
                name = str(block.get("name") or "")
                self._tools[index] = _ToolCallParts(
                    None if call_id is None else str(call_id), name, "function"
                )
            elif type(block) is dict and block.get("type") == "text" and block.get("text"):
                text = block["text"]
                if type(text) is str:
                    self._text.append(text)
                    return text
        elif kind == "message_delta":
            delta = obj.get("delta")
            if type(delta) is dict and delta.get("stop_reason"):
                reason = str(delta["stop_reason"])
                self._finish_raw = _ANTHROPIC_STOP.get(reason, reason)
            self._merge_usage(obj.get("usage"))
        elif kind == "message_start":
            message = obj.get("message")
            if type(message) is dict:
                self._merge_usage(message.get("usage"))
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            self._record_error(obj)
        return None

    def _merge_usage(self, usage: object) -> None:
        # Anthropic reports input tokens at the start and a running output count in message_delta.
        if isinstance(usage, dict) and usage:
            self._usage = {**(self._usage or {}), **{k: v for k, v in usage.items() if v is not None}}

    def _record_error(self, chunk: dict[str, Any]) -> None:
        # The whole chunk goes to the error reader: request ids and gateway metadata sit beside "error".
        if self._error is None:
            self._error = chunk

    # -- state -----------------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The content text received so far."""
        return "".join(self._text)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls received so far, fragments merged, in index order."""
        return _calls(self._tools)

    @property
    def usage(self) -> Usage | None:
        """Token usage, if the stream reported it (the ``include_usage`` chunk, or Anthropic's counts)."""
        return Usage.from_dict(self._usage)

    @property
    def finish_reason(self) -> str | None:
        """The normalised finish reason, or ``None`` while none has arrived."""
        return normalise_finish_reason(self._finish_raw)

    @property
    def done(self) -> bool:
        """Whether the stream's end marker arrived (``[DONE]``, or Anthropic's ``message_stop``)."""
        return self._done

    @property
    def chunks(self) -> int:
        """How many JSON chunks were read (``[DONE]`` and comments not counted)."""
        return self._chunks

    # -- the verdict -----------------------------------------------------------------------------------

    def finish(self, *, transport_error: Outcome | None = None) -> Outcome:
        """The Outcome of the stream as it stands: call it when the stream ended, however it ended.

        ``transport_error`` is the failure the client saw when the connection dropped or stalled; it is
        ignored when a finish reason had already arrived (the generation was complete). With ``n > 1`` every
        choice is in :attr:`~genguard.Outcome.choices`, and a choice that did not finish well fails the
        outcome even when choice 0 did.

        >>> r = ChatStreamReader()
        >>> _ = r.feed(b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\\n\\n')
        >>> o = r.finish()
        >>> (o.code, o.text, o.retryable)
        ('incomplete_stream', 'Hel', True)
        """
        outcome = self._finish(transport_error)
        if self._others:
            outcome = self._with_others(outcome)
        if self._raw is not None:
            body = b"".join(self._raw)
            size = max(self._raw_size, len(body))
            raw = RawResponse.capture(self._status, self._headers, body, secrets=self._secrets, size=size)
            outcome = outcome.replace(raw=raw)
        return outcome

    def _with_others(self, outcome: Outcome) -> Outcome:
        assert self._others is not None
        built = [
            Choice(0, outcome.text, outcome.tool_calls, outcome.finish_reason, outcome.code, outcome.kind)
        ]
        notes: dict[int, str] = {}
        for index, other in self._others.items():
            choice, refusal = other.choice(index)
            built.append(choice)
            if refusal:
                notes[index] = refusal
        return with_choices(outcome, built, notes=notes)

    def _finish(self, transport_error: Outcome | None) -> Outcome:
        text = self.text or None
        tools = self.tool_calls or None
        usage = self.usage
        kept: dict[str, Any] = {"text": text, "tool_calls": tools, "usage": usage}
        finish = self.finish_reason
        if self._error is not None or finish == "error":
            return self._stream_error(finish, kept)
        if finish is None:
            if transport_error is not None:
                if transport_error.code == "timeout":
                    return transport_error.replace(**kept)
                how = f"the connection failed ({transport_error.code}"
                how += f": {transport_error.message})" if transport_error.message else ")"
            elif self._done:
                how = "the stream sent [DONE] without any finish_reason"
            else:
                how = "the stream ended without [DONE] and without any finish_reason"
            return Outcome.failure(
                "incomplete_stream",
                status=self._status,
                request_id=self._request_id,
                message=f"{how} after {self._chunks} chunk{'s' if self._chunks != 1 else ''}",
                **kept,
            )
        outcome = finish_outcome(
            finish_reason=finish,
            text=text,
            tool_calls=tools,
            usage=usage,
            refusal="".join(self._refusal) or None,
            status=self._status,
            request_id=self._request_id,
        )
        extra: dict[str, Any] = {}
        if self._native_finish is not None and self._native_finish != self._finish_raw:
            extra["native_finish_reason"] = self._native_finish
        if self._reasoning:
            extra["reasoning"] = "".join(self._reasoning)
        return outcome.with_extra(**extra) if extra else outcome

    def _stream_error(self, finish: str | None, kept: dict[str, Any]) -> Outcome:
        fields: dict[str, Any] = {"status": self._status, "request_id": self._request_id, **kept}
        if finish is not None:
            fields["finish_reason"] = finish
        if self._error is None:
            return Outcome.failure(
                "stream_error",
                message=f"the stream ended with finish_reason {self._finish_raw!r} after {self._chunks} chunks",
                **fields,
            )
        info = read_error(self._error)
        # The verdict is the embedded error's own ("server_error", retryable, when it says nothing useful).
        retryable = code_info(code_for_error(None, info)).retryable
        fields["request_id"] = self._request_id or info.request_id
        # A wait the embedded error names ("Please try again in 20s", a RetryInfo, estimated_time) is a wait.
        wait = wait_from_message(info.message)
        fields["retry_after_s"] = info.retry_delay_s if wait is None else wait
        return Outcome.failure(
            "stream_error",
            retryable=retryable,
            message=info.message
            or f"the stream carried an error with no message after {self._chunks} chunks",
            provider_code=info.code,
            provider_type=info.type,
            param=info.param,
            **fields,
        )


def read_chat_stream(
    body: bytes,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    keep_raw: bool = False,
    secrets: Iterable[str] = (),
) -> Outcome:
    """The Outcome of a whole captured chat stream (an SSE body).

    A capture whose tool dropped the final blank line still has its last event read: the server did send
    it, only the file lost the line end.

    >>> read_chat_stream(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\\n\\n'
    ...                  b"data: [DONE]").code
    'truncated'
    """
    reader = ChatStreamReader(status=status, headers=headers, keep_raw=keep_raw, secrets=secrets)
    reader.feed(body)
    # The line end the file lost is not part of what the server sent: it stays out of the raw copy.
    kept, reader._raw = reader._raw, None
    reader.feed(b"\n\n")
    reader._raw = kept
    return reader.finish()
