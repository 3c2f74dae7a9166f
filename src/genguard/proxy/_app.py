"""The gateway's ASGI app: chat completions through genguard's policy, everything else forwarded untouched.

>>> app = create_app(ProxyConfig(upstream="http://127.0.0.1:8000/v1", api_keys=("sk-...",)))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..client.clients import AsyncClient
from ..client.gate import Gate
from ..client.retry import RetryPolicy
from ..client.transport import TRANSPORT_ERRORS, classify_exception
from ..core.exceptions import ConfigError
from ..core.outcome import Outcome
from ._outcome_http import error_body, error_status, outcome_headers

_JSON = "application/json"
# Not forwarded either way: they describe one hop, or (authorization) belong to the client, not upstream.
_HOP_REQUEST = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade", "authorization",
     "accept-encoding", "te", "trailer", "proxy-authorization"}
)  # fmt: skip
_HOP_RESPONSE = frozenset(
    {"content-length", "connection", "keep-alive", "transfer-encoding", "content-encoding", "upgrade",
     "trailer"}
)  # fmt: skip
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """What the proxy does: where it sends, with which keys, and how strictly it answers.

    - ``upstream``: the provider's OpenAI-style base URL (``https://api.openai.com/v1``).
    - ``api_keys``: the proxy's own upstream keys, rotated on auth and quota failures (empty: the
      environment's ``GENGUARD_API_KEY`` / ``OPENAI_API_KEY``). A client's key is never sent upstream unless
      ``forward_client_key``.
    - ``fallbacks``: models tried in turn once the asked model's retries are spent.
    - ``strict``: a filtered, truncated or empty 200 becomes an error response (422) every SDK raises.
    - ``retry``: the policy (default ``RetryPolicy()``).
    - ``open_gate``: makes the rate limiter every upstream call passes (called once, in the server's event
      loop): ``lambda: genguard.open_gate("redis://127.0.0.1:6379/0?name=team")`` shares one budget with every
      other proxy and worker given the same limiter.
    """

    upstream: str
    api_keys: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()
    strict: bool = False
    forward_client_key: bool = False
    retry: RetryPolicy | None = None
    timeout: float = 600.0
    stall_timeout: float = 60.0
    open_gate: Callable[[], Awaitable[Gate]] | None = None


def sdk_retry_count(value: str | None) -> int:
    """``x-stainless-retry-count`` as a number (0 when absent or not a number)."""
    if not value:
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0


class _Proxy:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.policy = config.retry or RetryPolicy()
        # A request that is itself an SDK's retry gets one attempt per model: genguard already spent its
        # retries on the first one, so retrying again here would multiply the two loops (4 x 3 attempts).
        self.retry_policy = dataclasses.replace(self.policy, max_attempts=1)
        self.fallbacks: Sequence[str] = config.fallbacks
        self._clients: dict[str | None, AsyncClient] = {}
        self._forward: httpx.AsyncClient | None = None
        self.upstream = config.upstream.rstrip("/")
        self.gate: Gate | None = None

    async def start(self) -> None:
        if self.config.open_gate is not None:
            self.gate = await self.config.open_gate()

    def client(self, key: str | None) -> AsyncClient:
        # One client per upstream key set: the proxy's own, or (forward_client_key) each client's.
        client = self._clients.get(key)
        if client is None:
            api_key: Any = key if key is not None else (list(self.config.api_keys) or None)
            client = AsyncClient(
                self.upstream, api_key=api_key, retry=self.policy, timeout=self.config.timeout,
                stall_timeout=self.config.stall_timeout, gate=self.gate,
            )  # fmt: skip
            self._clients[key] = client
        return client

    def upstream_key(self, request: Request) -> tuple[str | None, Response | None]:
        if not self.config.forward_client_key:
            return None, None
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            failure = Outcome.failure(
                "auth_failed", status=401,
                message="this proxy forwards the client's key and the request carried none (Authorization: Bearer ...)",
            )  # fmt: skip
            return None, _error(failure, "unknown")
        return token.strip(), None

    async def chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(model, str) or not model:
            failure = Outcome.failure(
                "bad_request", status=400,
                message="the body must be a JSON object with a 'model' (a model name) and 'messages'",
            )  # fmt: skip
            return _error(failure, model if isinstance(model, str) else "unknown")
        key, refused = self.upstream_key(request)
        if refused is not None:
            return refused
        client = self.client(key)
        retry_count = sdk_retry_count(request.headers.get("x-stainless-retry-count"))
        policy = self.retry_policy if retry_count else self.policy
        try:
            if body.get("stream"):
                from ._stream import stream_chat

                return await stream_chat(
                    client, body, model, policy, self.fallbacks, strict=self.config.strict
                )
            outcome, data = await client.send_json(
                "/chat/completions", body, endpoint="chat", fallbacks=self.fallbacks, retry=policy
            )
        except ConfigError as exc:  # the upstream wants a key and the proxy has none: the operator's fix
            return _error(Outcome.failure("auth_failed", status=401, message=str(exc)), model)
        return self.answer(outcome, data, model)

    def answer(self, outcome: Outcome, data: bytes | None, model: str) -> Response:
        headers = outcome_headers(outcome, model)
        status = outcome.status
        if (
            data is not None
            and status is not None
            and (status >= 400 or outcome.ok or not self.config.strict)
        ):
            # The provider's own body: its error for an error status, the completion for a 200 (a soft
            # failure too, unless strict), the outcome in the headers either way.
            return Response(data, status_code=status, headers=headers, media_type=_JSON)
        return Response(error_body(outcome, data), status_code=error_status(outcome), headers=headers,
                        media_type=_JSON)  # fmt: skip

    async def forward(self, request: Request) -> Response:
        key, refused = self.upstream_key(request)
        if refused is not None:
            return refused
        if key is None:
            # The key chat calls use now: one refused for good there (auth, quota) is not tried here again.
            client = self.client(None)
            keys = client.keys
            key = keys[min(client._key_start, len(keys) - 1)] if keys else None
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_REQUEST}
        if key:
            headers["authorization"] = f"Bearer {key}"
        http = self._forward
        if http is None:
            http = self._forward = httpx.AsyncClient(timeout=httpx.Timeout(self.config.timeout, pool=None))
        url = self.upstream + "/" + request.path_params["path"]
        outgoing = http.build_request(
            request.method, url, params=request.url.query, headers=headers,
            content=await request.body(),
        )  # fmt: skip
        try:
            reply = await http.send(outgoing, stream=True)
        except TRANSPORT_ERRORS as exc:
            return _error(classify_exception(exc), "unknown")
        out = {k: v for k, v in reply.headers.items() if k not in _HOP_RESPONSE}
        return StreamingResponse(reply.aiter_bytes(), status_code=reply.status_code, headers=out,
                                 background=BackgroundTask(reply.aclose))  # fmt: skip

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        if self._forward is not None:
            await self._forward.aclose()
            self._forward = None
        close = getattr(self.gate, "aclose", None)
        if close is not None:
            await close()
        self.gate = None


def _error(outcome: Outcome, model: str) -> Response:
    return Response(error_body(outcome), status_code=error_status(outcome),
                    headers=outcome_headers(outcome, model), media_type=_JSON)  # fmt: skip


def create_app(config: ProxyConfig) -> Starlette:
    """The proxy as an ASGI app (serve it with uvicorn, or run :class:`genguard.proxy.Proxy`)."""
    proxy = _Proxy(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await proxy.start()
        try:
            yield
        finally:
            await proxy.aclose()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", proxy.chat, methods=["POST"]),
            Route("/v1/{path:path}", proxy.forward, methods=_METHODS),
        ],
        lifespan=lifespan,
    )
    app.state.proxy = proxy
    return app
