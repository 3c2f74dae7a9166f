"""What the simulator's endpoints that generate no text share (embeddings, moderations): OpenAI's 400 for a
body it refuses, and the scenarios such an endpoint can play."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ._chatreq import BadRequest
from ._core import ERROR_SCENARIOS, RequestContext, begin
from ._dialects import ErrorSpec

__all__ = ["NOT_JSON", "PLAYED", "begin_json", "play", "refuse"]

NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)
"""OpenAI's words for a body that is not JSON."""

# Scenarios that only a generation can play (a finish_reason, a stream, a validator, a media file): a request
# to an endpoint that generates nothing is answered normally under one of them.
PLAYED = ERROR_SCENARIOS | {"empty_output"}


def refuse(
    ctx: RequestContext, exc: BadRequest, model: str, path: str, code: str = "bad_request"
) -> Response:
    """OpenAI's 400 (``invalid_request_error``) with the refusal's message, param and code, counted as
    ``code`` in the stats."""
    ctx.scenario = ctx.entry.scenario = code
    spec = ErrorSpec(400, "invalid_request_error", exc.code, str(exc), exc.param)
    return ctx.error(code, spec=spec, model=model, path=path)


async def play(ctx: RequestContext, model: str, path: str, bad_request: BadRequest) -> Response | None:
    """The scenario's error (``bad_request`` refused with this refusal), or ``None`` once the answer's delay
    has passed: ``ctx.scenario`` then says what the answer plays, ``ok`` or ``empty_output``."""
    scenario = ctx.scenario
    if scenario == "bad_request":
        return refuse(ctx, bad_request, model, path)
    if scenario in ERROR_SCENARIOS:
        return ctx.error(scenario, model=model, path=path)
    if scenario not in PLAYED:
        ctx.scenario = ctx.entry.scenario = "ok"
    delay = ctx.config.ttft_ms / 1000
    if delay:
        await asyncio.sleep(delay)
    return None


async def begin_json(request: Request, endpoint: str, path: str) -> tuple[RequestContext, Any] | Response:
    """:func:`begin`, then the body parsed: ``(ctx, body)``, or the response to send (a refusal, or OpenAI's
    400 for a body that is not JSON)."""
    ctx = await begin(request, endpoint)
    if isinstance(ctx, Response):
        return ctx
    try:
        return ctx, ctx.json()
    except orjson.JSONDecodeError:
        return refuse(ctx, BadRequest(NOT_JSON), "", path)
