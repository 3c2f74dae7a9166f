"""``POST /v1/chat/completions``, plain and streaming, playing every chat scenario.

>>> plan = Plan(text="Hi there.", tool_calls=None, finish="stop", tokens=2)
>>> plan.finish
'stop'
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ._cache import FIRST
from ._chatreq import BadRequest, check_chat, prompt_tokens, same_request_key, tool_tokens
from ._config import MEDIA_SCENARIOS
from ._core import (
    ERROR_SCENARIOS,
    ConnectionCut,
    RequestContext,
    abort_connection,
    begin,
    wait_for_disconnect,
)
from ._dialects import JSON, ErrorSpec, context_overflow, stream_error_event
from ._text import count_tokens, value_for_schema, words

_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_FILTER_OK = {"filtered": False, "severity": "safe"}
_AZURE_FILTERS = {"hate": _FILTER_OK, "self_harm": _FILTER_OK, "sexual": _FILTER_OK, "violence": _FILTER_OK}


@dataclass(frozen=True, slots=True)
class Plan:
    """One choice's output, decided before anything is sent."""

    text: str | None
    tool_calls: list[dict[str, Any]] | None
    finish: str | None
    tokens: int


def _parse(req: Any) -> dict[str, Any]:
    check_chat(req)
    n = req.get("n")
    limit = req.get("max_completion_tokens")
    return {"messages": req["messages"], "n": 1 if n is None else n,
            "limit": req.get("max_tokens") if limit is None else limit,
            "tools": req.get("tools") or [], "fmt": req.get("response_format") or {}}  # fmt: skip


def _json_tokens(text: str) -> int:
    return max(len(text) // 4, 1)


def _tool_choice(req: dict[str, Any], tools: list[Any]) -> list[dict[str, Any]]:
    """The functions the answer calls: the one ``tool_choice`` names, none for ``"none"``, else every
    tool when several may be called in parallel (``parallel_tool_calls`` is on by default), else the first."""
    choice = req.get("tool_choice", "auto")
    if not tools or choice == "none":
        return []
    funcs = [t["function"] for t in tools]
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        return [dict(f) for f in funcs if f.get("name") == name][:1]
    if req.get("parallel_tool_calls", True) is False:
        return [dict(f) for f in funcs[:1]]
    return [dict(f) for f in funcs]


_WORD = re.compile(r"\S+")


def _first_words(text: str, n: int) -> str:
    # Cut after the n-th word and keep the spacing before it: a fixed reply keeps its own line breaks.
    for i, match in enumerate(_WORD.finditer(text), 1):
        if i == n:
            return text[: match.end()]
    return text


def _reply(ctx: RequestContext, request: Request, model: str) -> str | None:
    """The fixed answer for this request: the ``x-genguard-reply`` header, else the model's own setting,
    else the server-wide one; None for generated text."""
    header = request.headers.get("x-genguard-reply")
    if header is not None:
        try:
            # Header values arrive as Latin-1; a client that sent UTF-8 bytes meant UTF-8 text.
            header = header.encode("latin-1").decode("utf-8")
        except UnicodeError:
            pass
        if header[:1] == '"':
            # A header cannot hold a line break: a JSON string can spell one ("line one\nline two").
            try:
                value = orjson.loads(header)
            except orjson.JSONDecodeError:
                return header
            return value if isinstance(value, str) else header
        return header
    cfg = ctx.config
    return cfg.reply_for.get(model, cfg.reply)


def _mismatch(schema: Any) -> Any:
    # Whatever the schema wants at the top, give the other kind, so no schema can accept it.
    kind = schema.get("type") if isinstance(schema, dict) else None
    return {"unexpected": "shape"} if kind == "array" else ["not", "the", "expected", "shape"]


def _plan(ctx: RequestContext, req: dict[str, Any], parsed: dict[str, Any], rng: random.Random) -> Plan:
    scenario = ctx.scenario
    limit = parsed["limit"]
    fmt = parsed["fmt"]
    chosen = _tool_choice(req, parsed["tools"])
    if chosen:
        calls: list[dict[str, Any]] = []
        tokens = 0
        for tool in chosen:
            schema = tool.get("parameters") or {"type": "object", "properties": {}}
            if scenario == "invalid_json":
                args = '{"' + str(next(iter(schema.get("properties") or {"value": 0}))) + '": '
            elif scenario == "schema_mismatch":
                args = orjson.dumps(_mismatch(schema)).decode()
            else:
                args = orjson.dumps(value_for_schema(schema, rng)).decode()
            calls.append({"id": f"call_{rng.getrandbits(64):016x}", "type": "function",
                          "function": {"name": tool.get("name", "tool"), "arguments": args}})  # fmt: skip
            tokens += _json_tokens(args) + 3
        return Plan(None, calls, "tool_calls", tokens)
    json_mode = fmt.get("type") in ("json_object", "json_schema")
    reply: str | None = parsed["reply"]
    finish: str | None = "stop"
    if scenario == "too_short":
        text = "Ok."
    elif scenario == "unexpected_label":
        text = "Undecided"
    elif scenario == "pattern_mismatch":
        text = "?? no idea ??"
    elif scenario == "empty_output":
        text = ""
    elif scenario == "invalid_json":
        text = 'Sure! Here is the JSON you asked for: {"answer": "' + " ".join(words(rng, 5))
    else:
        schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
        if scenario == "schema_mismatch":
            text = orjson.dumps(_mismatch(schema or {"type": "object"})).decode()
        elif reply is not None:
            text = reply  # as the user wrote it, JSON mode or not: they asked for this answer
        elif schema is not None:
            text = orjson.dumps(value_for_schema(schema, rng)).decode()
        elif json_mode:
            value = {"answer": " ".join(words(rng, 6)), "confidence": round(rng.random(), 2)}
            text = orjson.dumps(value).decode()
        else:
            text = " ".join(words(rng, 12 + rng.randrange(20)))
    tokens = _json_tokens(text) if text[:1] in "{[" else count_tokens(text)
    if scenario == "truncated":
        limit = max(1, tokens // 2) if limit is None else min(limit, max(1, tokens // 2))
    if limit is not None and tokens > limit:
        text = text[: limit * 4] if text[:1] in "{[" else _first_words(text, limit)
        tokens, finish = limit, "length"
    if scenario == "content_filtered":
        text, finish = _first_words(text, max(tokens // 3, 1)), "content_filter"
        tokens = count_tokens(text)
    elif scenario == "stream_error":
        finish = "error"
    elif scenario == "incomplete_stream":
        finish = None
    return Plan(text, None, finish, tokens)


def _seed(ctx: RequestContext, req: dict[str, Any], index: int) -> random.Random:
    # The same question gives the same answer whether streamed or not, whatever the other options.
    key = orjson.dumps([req.get("model"), req.get("messages"), req.get("tools"), req.get("response_format")])
    h = hashlib.blake2b(key, digest_size=8, key=str(ctx.config.seed).encode()[:64])
    h.update(str(req.get("seed", 0)).encode() + index.to_bytes(4, "little"))
    return random.Random(int.from_bytes(h.digest(), "little"))


_NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)


def _refuse(ctx: RequestContext, exc: BadRequest) -> Response:
    ctx.scenario = ctx.entry.scenario = "bad_request"
    spec = ErrorSpec(400, "invalid_request_error", exc.code, str(exc), exc.param)
    return ctx.error("bad_request", spec=spec)


async def begin_checked(
    request: Request, check: Callable[[Any], None], same_request: Callable[[Any], bytes | None]
) -> tuple[RequestContext, dict[str, Any]] | Response:
    """:func:`begin` for a text endpoint, then its body parsed and ``check``-ed: the context and the body, or the
    400 OpenAI gives for a body that is not JSON or that ``check`` refuses (a ``BadRequest``)."""
    ctx = await begin(request, "chat", same_request=same_request)
    if isinstance(ctx, Response):
        return ctx
    try:
        req = ctx.json()
        check(req)
    except orjson.JSONDecodeError:
        return _refuse(ctx, BadRequest(_NOT_JSON))
    except BadRequest as exc:
        return _refuse(ctx, exc)
    return ctx, req


def overflowed(
    ctx: RequestContext,
    model: str,
    *,
    prompt: int,
    tools: int = 0,
    completion: int = 0,
    path: str | None = None,
) -> Response | None:
    """The 400 for a prompt of ``prompt`` + ``tools`` tokens (asking ``completion`` more) past ``model``'s
    window, or for the ``context_length_exceeded`` scenario played on demand (the words of an overflow of the
    model's own window); ``None`` when neither."""
    window = ctx.config.window_of(model)
    too_long = context_overflow(
        ctx.dialect, window=window, messages=prompt, tools=tools, completion=completion
    )
    if too_long is None and ctx.scenario == "context_length_exceeded":
        too_long = context_overflow(
            ctx.dialect, window=window, messages=max(prompt, window + 1024), tools=tools
        )
    if too_long is None:
        return None
    ctx.scenario = ctx.entry.scenario = "context_length_exceeded"
    return ctx.error("context_length_exceeded", message=too_long, model=model, path=path)


def cached_tokens(ctx: RequestContext, model: str, messages: list[Any], tools: list[Any], prompt: int) -> int:
    """The tokens of this ``prompt`` (``messages`` and chat-shaped ``tools``) found in the prompt cache, which
    then holds it too; 0 with ``prompt_cache`` off. Called for an answer only: a refusal neither reads nor
    writes the cache."""
    cfg = ctx.config
    if not cfg.prompt_cache or prompt < FIRST:
        return 0
    state = ctx.state
    return state.prompt_cache.use(ctx.api_key, model, messages, tools, tokens=prompt,
                                  now=state.clock.monotonic(), ttl_s=cfg.prompt_cache_ttl_s)  # fmt: skip


async def chat_completions(request: Request) -> Response:
    ctx = await begin(request, "chat", same_request=same_request_key)
    if isinstance(ctx, Response):
        return ctx
    try:
        req = ctx.json()
        parsed = _parse(req)
    except orjson.JSONDecodeError:
        return _refuse(ctx, BadRequest(_NOT_JSON))
    except BadRequest as exc:
        return _refuse(ctx, exc)
    model = req["model"]
    messages, tools = prompt_tokens(parsed["messages"]), tool_tokens(parsed["tools"])
    refused = overflowed(ctx, model, prompt=messages, tools=tools, completion=parsed["limit"] or 0)
    if refused is not None:
        return refused
    scenario = ctx.scenario
    parsed["reply"] = _reply(ctx, request, model)
    if scenario in MEDIA_SCENARIOS:
        ctx.scenario = ctx.entry.scenario = scenario = "ok"
    stream = bool(req.get("stream"))
    if scenario in ERROR_SCENARIOS and not (stream and scenario in ("timeout", "connection_error")):
        return ctx.error(scenario, model=model)
    plans = [_plan(ctx, req, parsed, _seed(ctx, req, i)) for i in range(parsed["n"])]
    prompt = messages + tools
    completion = sum(p.tokens for p in plans)
    ctx.charge(completion)
    cached = cached_tokens(ctx, model, parsed["messages"], parsed["tools"], prompt)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": cached},
             "completion_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip
    if ctx.dialect == "openrouter":
        # OpenRouter states each answer's cost in credits (a dollar each), on every answer, streamed too.
        usage.update(cost=openrouter_cost(prompt, cached, completion), is_byok=False,
                     cost_details={"upstream_inference_cost": None})  # fmt: skip
    cid = f"chatcmpl-{ctx.request_id[4:]}"
    created = int(time.time())
    if stream:
        include_usage = ctx.dialect == "openrouter" or bool(
            (req.get("stream_options") or {}).get("include_usage")
        )
        return ChatStream(
            ctx, plans, cid=cid, created=created, model=model, usage=usage if include_usage else None
        )
    cfg = ctx.config
    delay = cfg.ttft_ms / 1000 + (completion / cfg.tokens_per_s if cfg.tokens_per_s else 0.0)
    if delay:
        await asyncio.sleep(delay)
    choices = []
    for i, p in enumerate(plans):
        message: dict[str, Any] = {"role": "assistant", "content": p.text, "refusal": None}
        if p.tool_calls:
            message["tool_calls"] = p.tool_calls
        choice: dict[str, Any] = {"index": i, "message": message, "logprobs": None, "finish_reason": p.finish}
        if ctx.dialect == "azure":
            choice["content_filter_results"] = (
                {**_AZURE_FILTERS, "violence": {"filtered": True, "severity": "high"}}
                if p.finish == "content_filter" else _AZURE_FILTERS
            )  # fmt: skip
        if ctx.dialect == "openrouter":
            choice["native_finish_reason"] = p.finish
        choices.append(choice)
    body: dict[str, Any] = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                            "choices": choices, "usage": usage, "system_fingerprint": "fp_genguard_sim"}  # fmt: skip
    if ctx.dialect == "azure":
        body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _AZURE_FILTERS}]
    return Response(orjson.dumps(body), media_type=JSON)


# The price the simulator states in OpenRouter's dialect, whatever the model, in dollars a token: prompt, cached
# prompt, completion. Not any real model's price (a client that priced the tokens from a table would get another
# number).
OPENROUTER_PRICE = (0.2e-6, 0.05e-6, 0.8e-6)


def openrouter_cost(prompt: int, cached: int, completion: int) -> float:
    """The cost the simulator states in OpenRouter's ``usage.cost`` for these tokens."""
    fresh, read, out = OPENROUTER_PRICE
    return round((prompt - cached) * fresh + cached * read + completion * out, 12)


def _pieces(p: Plan) -> list[str]:
    if not p.text:
        return []
    if p.text[:1] in "{[":
        return [p.text[i : i + 16] for i in range(0, len(p.text), 16)]
    parts = p.text.split(" ")
    return [parts[0], *(" " + w for w in parts[1:])]


class ChatStream(Response):
    """Server-sent chat chunks, paced by ``--ttft-ms``/``--tokens-per-s``, broken as the scenario says."""

    def __init__(self, ctx: RequestContext, plans: list[Plan], *, cid: str, created: int, model: str,
                 usage: dict[str, Any] | None) -> None:  # fmt: skip
        self.ctx = ctx
        self.plans = plans
        self.usage = usage
        self.base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "system_fingerprint": "fp_genguard_sim"}  # fmt: skip
        # Every content chunk shares this prefix; only the index and text change.
        head = orjson.dumps(self.base)[:-1]
        self.prefix = b"data: " + head + b',"choices":[{"index":'

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        broke = False
        try:
            async for data in self._events(receive):
                await send({"type": "http.response.body", "body": data, "more_body": True})
        except _Broken:
            broke = True
        if not broke or self.ctx.scenario != "connection_error":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if not await abort_connection(receive):
            raise ConnectionCut("stream cut on purpose by the connection_error scenario")

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        if finish is not None and self.ctx.dialect == "openrouter":
            choice["native_finish_reason"] = finish
        return b"data: " + orjson.dumps({**self.base, "choices": [choice]}) + b"\n\n"

    async def _events(self, receive: Receive) -> AsyncIterator[bytes]:
        ctx = self.ctx
        cfg = ctx.config
        scenario = ctx.scenario
        breaks = scenario in ("timeout", "connection_error", "incomplete_stream", "stream_error")
        gap = 1.0 / cfg.tokens_per_s if cfg.tokens_per_s else 0.0
        if cfg.ttft_ms:
            await asyncio.sleep(cfg.ttft_ms / 1000)
        if ctx.dialect == "azure":
            yield (b"data: " + orjson.dumps({"id": "", "object": "", "created": 0, "model": "", "choices": [],
                   "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _AZURE_FILTERS}]})
                   + b"\n\n")  # fmt: skip
        prefix = self.prefix
        for i, p in enumerate(self.plans):
            yield self._chunk(i, {"role": "assistant", "content": "" if p.tool_calls is None else None,
                                  "refusal": None}, None)  # fmt: skip
            pieces = _pieces(p)
            if p.tool_calls:
                # Each call opens with its id and name; the argument fragments then interleave by index.
                frags = []
                for k, call in enumerate(p.tool_calls):
                    first = {"index": k, "id": call["id"], "type": "function",
                             "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
                    yield self._chunk(i, {"tool_calls": [first]}, None)
                    args = call["function"]["arguments"]
                    frags.append([args[j : j + 12] for j in range(0, len(args), 12)])
                for step in range(max(map(len, frags))):
                    for k, parts in enumerate(frags):
                        if step < len(parts):
                            delta = {"tool_calls": [{"index": k, "function": {"arguments": parts[step]}}]}
                            yield self._chunk(i, delta, None)
                            if gap:
                                await asyncio.sleep(gap)
                pieces = []
            cut_at = len(pieces) // 2 if breaks and i == len(self.plans) - 1 else None
            index_bytes = str(i).encode()
            for k, piece in enumerate(pieces):
                if cut_at is not None and k == cut_at:
                    break
                yield (prefix + index_bytes + b',"delta":{"content":' + orjson.dumps(piece)
                       + b'},"logprobs":null,"finish_reason":null}]}\n\n')  # fmt: skip
                if gap:
                    await asyncio.sleep(gap)
            if cut_at is not None:
                if scenario == "stream_error":
                    yield stream_error_event(ctx.dialect, chunk_base=self.base)
                elif scenario == "timeout":
                    await wait_for_disconnect(receive, cfg.stall_s)
                if scenario == "connection_error":
                    raise _Broken
                return
            yield self._chunk(i, {}, p.finish)
        if self.usage is not None:
            yield b"data: " + orjson.dumps({**self.base, "choices": [], "usage": self.usage}) + b"\n\n"
        yield b"data: [DONE]\n\n"


class _Broken(Exception):
    pass


async def list_models(request: Request) -> Response:
    ctx = await begin(request, "models")
    if isinstance(ctx, Response):
        return ctx
    if ctx.scenario in ERROR_SCENARIOS:
        return ctx.error(ctx.scenario, path="/v1/models")
    data = [
        {"id": m, "object": "model", "created": 1700000000, "owned_by": "genguard-sim"}
        for m in ctx.config.models
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON)
