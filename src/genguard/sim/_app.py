"""The simulator as a Starlette application.

>>> app = create_app(SimConfig(scenario="rate_limited"))
>>> app.state.sim.config.scenario
'rate_limited'
"""

from __future__ import annotations

import importlib
import importlib.util

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._chat import chat_completions, list_models
from ._clock import SYSTEM_CLOCK, Clock
from ._completions import completions
from ._config import SimConfig
from ._core import HeadersMiddleware, SimState
from ._dialects import JSON, error_response
from ._embeddings import embeddings
from ._moderations import moderations
from ._responses import responses


async def _stats(request: Request) -> Response:
    state: SimState = request.app.state.sim
    return Response(orjson.dumps(state.stats.snapshot()), media_type=JSON)


async def _reset(request: Request) -> Response:
    state: SimState = request.app.state.sim
    state.reset()
    return Response(b'{"reset": true}', media_type=JSON)


async def _not_found(request: Request, exc: Exception) -> Response:
    state: SimState = request.app.state.sim
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    code = "not_found" if status == 404 else "bad_request"
    _, headers, body = error_response(
        state.config.dialect, code, request_id="", path=request.url.path,
        message=None if status == 404 else f"Method {request.method} not allowed for {request.url.path}",
    )  # fmt: skip
    return Response(body, status_code=status, headers=headers)


def _media_routes() -> list[BaseRoute]:
    # The image and video endpoints live in their own module, present in full installs.
    if importlib.util.find_spec("genguard.sim._media") is None:
        return []
    module = importlib.import_module("genguard.sim._media")
    routes: list[BaseRoute] = list(module.media_routes())
    return routes


def create_app(config: SimConfig | None = None, *, clock: Clock = SYSTEM_CLOCK) -> Starlette:
    """An ASGI app serving the simulator under ``/v1`` (and its stats under ``/_genguard``); ``clock`` is
    where it reads the time (see ``Simulator``).

    >>> import uvicorn  # doctest: +SKIP
    >>> uvicorn.run(create_app(SimConfig(dialect="anthropic")), port=8000)  # doctest: +SKIP
    """
    state = SimState(config or SimConfig(), clock=clock)
    routes: list[BaseRoute] = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/moderations", moderations, methods=["POST"]),
        Route("/_genguard/stats", _stats, methods=["GET"]),
        Route("/_genguard/reset", _reset, methods=["POST"]),
        *_media_routes(),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    app.state.sim = state
    app.add_middleware(HeadersMiddleware, state=state)
    return app
