"""The gateway's ASGI app: chat, embeddings, images and video tasks through genguard's policy, the rest forwarded.

>>> app = create_app(ProxyConfig(upstream="http://127.0.0.1:8000/v1", api_keys=("sk-...",)))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import itertools
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..client.keys import resolve_keys
from ..client.retry import RetryPolicy
from ..client.transport import TRANSPORT_ERRORS, classify_exception
from ..core.exceptions import ConfigError
from ..core.outcome import Outcome
from ..core.taxonomy import Endpoint
from ._config import ProxyConfig, ProxyExchange
from ._outcome_http import BROKEN_2XX, error_body, error_status, mask_keys, outcome_headers
from ._upstream import Answer, KeyRing, Upstream

__all__ = ["create_app", "sdk_retry_count"]

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
# Of a provider's answer, not passed on to the client: hop headers, the ones the proxy writes itself (its body
# may be its own), and the provider's retry verdict, which genguard's replaces.
_NOT_PASSED = _HOP_RESPONSE | {"content-type", "date", "server", "x-should-retry", "set-cookie"}
DEFAULT_MODEL = "(default)"
"""The model named in headers and the record for an image or video request that names none."""
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_WHAT = {
    "chat": "a JSON object with a 'model' (a model name) and 'messages'",
    "/responses": "a JSON object with a 'model' (a model name) and 'input'",
    "embedding": "a JSON object with a 'model' (a model name) and 'input'",
    "image": "a JSON object with a 'model' (a model name) and 'prompt'",
    "video": "a JSON object (or a form) with a 'model' (a model name) and 'prompt'",
    "moderation": "a JSON object with an 'input' (and a 'model', or none for the provider's default)",
}


def sdk_retry_count(value: str | None) -> int:
    """``x-stainless-retry-count`` as a number (0 when absent or not a number)."""
    if not value:
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


# Of a client's request, not sent upstream under the policy: hop headers and its key (both in _HOP_REQUEST),
# the body's type and what it accepts (the proxy sets them for each attempt).
_NOT_SENT = _HOP_REQUEST | {"content-type", "accept", "cookie"}


def sent_headers(request: Request) -> dict[str, str]:
    """The client's own headers that go upstream with each attempt under the policy (OpenAI-Organization,
    OpenAI-Project, OpenAI-Beta, an SDK's own): a gateway changes where a request goes, not what it says."""
    return {k: v for k, v in request.headers.items() if k not in _NOT_SENT}


def passed_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The provider's headers a client gets with the answer: rate limits, request id, processing time..."""
    if not headers:
        return {}
    return {k: v for k, v in headers.items() if k.lower() not in _NOT_PASSED}


class _Proxy:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.policy = config.retry or RetryPolicy()
        # A request that is itself an SDK's retry gets one attempt per model: genguard already spent its
        # retries on the first one, so retrying again here would multiply the two loops (4 x 3 attempts).
        self.retry_policy = dataclasses.replace(self.policy, max_attempts=1)
        self.fallbacks = tuple(config.fallbacks)
        self.ring = KeyRing(resolve_keys(list(config.api_keys) or None))
        self.client_keys = tuple(k.encode() for k in config.client_keys)
        self.upstream = Upstream(
            config.upstream, timeout=config.timeout, stall_timeout=config.stall_timeout, gate=config.gate,
            max_concurrency=config.max_concurrency, hooks=config.hooks,
        )  # fmt: skip
        self.validators: dict[str, tuple[Any, ...]] = {}
        if config.validators:
            from ..core.validate import build_validators

            self.validators = {m: tuple(build_validators(spec)) for m, spec in config.validators.items()}
        self.recorder = config.recorder
        self._forward: httpx.AsyncClient | None = None
        # Exchange ids: unique across restarts (the start time) and cheap (a counter, no random source).
        self._prefix = f"px_{int(time.time() * 1000):x}_"
        self._ids = itertools.count(1)

    # -- who may call, with which upstream key --

    def refuse(self, request: Request) -> Response | None:
        """A 401 when client keys are set and the request does not present one of them."""
        if not self.client_keys:
            return None
        token = (_bearer(request) or "").encode()
        ok = False
        for key in self.client_keys:  # every key compared, in constant time: no timing says which matched
            ok |= hmac.compare_digest(token, key)
        if ok:
            return None
        failure = Outcome.failure(
            "auth_failed", status=401,
            message="this proxy wants a client key: send Authorization: Bearer <one of its --client-key values> "
            "(the api_key of your SDK)",
        )  # fmt: skip
        response = _error(failure, "unknown")
        response.headers["www-authenticate"] = "Bearer"
        return response

    def ring_for(self, request: Request) -> KeyRing | Response:
        """The keys this request goes upstream with, or the 401 that says why it cannot."""
        if not self.config.forward_client_key:
            return self.ring
        token = _bearer(request)
        if token is None:
            failure = Outcome.failure(
                "auth_failed", status=401,
                message="this proxy forwards the client's key and the request carried none (Authorization: Bearer ...)",
            )  # fmt: skip
            return _error(failure, "unknown")
        return KeyRing((token,))

    def admit(self, request: Request) -> KeyRing | Response:
        """:meth:`refuse`, then :meth:`ring_for`: the keys a request goes upstream with, or the 401."""
        return self.refuse(request) or self.ring_for(request)

    def policy_for(self, request: Request) -> RetryPolicy:
        retried = sdk_retry_count(request.headers.get("x-stainless-retry-count"))
        return self.retry_policy if retried else self.policy

    def validators_for(self, model: str) -> tuple[Any, ...]:
        if not self.validators:
            return ()
        found = self.validators.get(model)
        return self.validators.get("*", ()) if found is None else found

    # -- the endpoints with genguard's policy --

    async def chat(self, request: Request) -> Response:
        return await self.call(request, "chat", "/chat/completions")

    async def embeddings(self, request: Request) -> Response:
        return await self.call(request, "embedding", "/embeddings")

    async def responses(self, request: Request) -> Response:
        # A Responses API answer is judged as a chat answer is (incomplete, refused, empty, failed); a streamed
        # one is a sequence of typed events, not chat chunks: it is forwarded as it comes.
        raw = await request.body()
        if b'"stream"' in raw:  # parsed here only when it may stream: call() parses the body anyway
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict) and parsed.get("stream"):
                return await self.forward(request, "responses")
        return await self.call(request, "chat", "/responses")

    async def images(self, request: Request) -> Response:
        return await self.call(request, "image", request.url.path.removeprefix("/v1"))

    async def videos(self, request: Request) -> Response:
        return await self.call(request, "video", "/videos")

    async def moderations(self, request: Request) -> Response:
        return await self.call(request, "moderation", "/moderations")

    async def call(self, request: Request, endpoint: Endpoint, path: str) -> Response:
        started = time.monotonic()
        refused = self.refuse(request)
        if refused is not None:
            return refused
        raw = await request.body()
        content_type = request.headers.get("content-type", _JSON)
        body: dict[str, Any] | None = None
        reencode = None
        fallbacks = self.fallbacks
        if content_type.startswith("multipart/"):
            # A form (the official SDKs send video tasks and image edits as forms): sent as it came, and
            # written again with the fallback's model only when one is tried.
            async with request.form() as form:
                named = form.get("model")
                if fallbacks:
                    reencode = await _form_encoder(form)
            model = named if isinstance(named, str) and named else None
            well_formed = True
        else:
            content_type = _JSON
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
            well_formed = isinstance(parsed, dict)
            named = parsed.get("model") if isinstance(parsed, dict) else None
            model = named if isinstance(named, str) and named else None
            body = parsed if well_formed else None
        if model is None and well_formed and endpoint in ("image", "video", "moderation") and named is None:
            # Images, video tasks and moderations may leave the model to the provider's default: sent as they
            # came (a fallback names its model), labelled DEFAULT_MODEL in the headers and the record.
            model = DEFAULT_MODEL
        if model is None:
            failure = Outcome.failure(
                "bad_request",
                status=400,
                endpoint=endpoint,
                message=f"the body must be {_WHAT.get(path, _WHAT[endpoint])}",
            )
            return _error(failure, "unknown")
        ring = self.ring_for(request)
        if isinstance(ring, Response):
            return ring
        policy = self.policy_for(request)
        exchange_id = f"{self._prefix}{next(self._ids)}"
        stream = (
            endpoint == "chat"
            and path == "/chat/completions"
            and body is not None
            and bool(body.get("stream"))
        )
        validators = self.validators_for(model) if endpoint == "chat" else ()
        url_path = request.scope["path"]
        asked: str = model

        def finished(outcome: Outcome, status: int, timings: list[tuple[float, float]]) -> None:
            if self.recorder is not None:
                self.recorder.add(ProxyExchange(exchange_id, url_path, asked, stream, outcome, status,
                                          time.monotonic() - started, tuple(timings)))  # fmt: skip

        try:
            if stream:
                from ._stream import stream_chat

                assert body is not None
                loop = self.upstream.plan(
                    (model, *fallbacks), ring, policy, validators=validators, body=body, stream=True
                )
                response = await stream_chat(
                    self.upstream, raw, body, model, loop, ring, strict=self.config.strict,
                    passed_headers=passed_headers, finished=finished, sent_headers=sent_headers(request),
                )  # fmt: skip
                response.headers["x-genguard-exchange-id"] = exchange_id
                return response
            answer = await self.upstream.call(
                "POST", path, raw, body, endpoint=endpoint, models=(model, *fallbacks), ring=ring,
                policy=policy, validators=validators, content_type=content_type, reencode=reencode,
                passed=sent_headers(request),
            )  # fmt: skip
        except ConfigError as exc:  # the upstream wants a key and the proxy has none: the operator's fix
            failure = Outcome.failure("auth_failed", status=401, endpoint=endpoint, message=str(exc))
            finished(failure, 401, [])
            return _error(failure, model)
        if model == DEFAULT_MODEL and answer.outcome.extra.get("model") == DEFAULT_MODEL:
            named = _model_in(answer.body)  # the provider's default, when its answer says which
            if named is not None:
                model = named
                answer.outcome = answer.outcome.with_extra(model=named)
        response = self.answer(answer, model, exchange_id, ring.keys)
        finished(answer.outcome, response.status_code, answer.timings)
        return response

    async def poll_video(self, request: Request) -> Response:
        """``GET /v1/videos/{id}``: the task's state, retried on rate limits and server errors; a failed task
        is a soft failure (an error under strict)."""
        started = time.monotonic()
        ring = self.admit(request)
        if isinstance(ring, Response):
            return ring
        path = "/videos/" + request.path_params["video_id"]
        if request.url.query:
            path += "?" + request.url.query
        exchange_id = f"{self._prefix}{next(self._ids)}"
        try:
            answer = await self.upstream.call(
                "GET", path, b"", None, endpoint="video", models=("unknown",), ring=ring,
                policy=self.policy_for(request), passed=sent_headers(request),
            )  # fmt: skip
        except ConfigError as exc:
            return _error(
                Outcome.failure("auth_failed", status=401, endpoint="video", message=str(exc)), "unknown"
            )
        model = _model_in(answer.body) or "unknown"
        answer.outcome = answer.outcome.with_extra(model=model)
        response = self.answer(answer, model, exchange_id, ring.keys)
        if self.recorder is not None:
            self.recorder.add(ProxyExchange(exchange_id, request.url.path, model, False, answer.outcome,
                                      response.status_code, time.monotonic() - started, tuple(answer.timings)))  # fmt: skip
        return response

    def answer(self, answer: Answer, model: str, exchange_id: str, keys: tuple[str, ...] = ()) -> Response:
        outcome = answer.outcome
        headers = passed_headers(answer.headers)
        headers.update(outcome_headers(outcome, model))
        headers["x-genguard-exchange-id"] = exchange_id
        data = answer.body
        status = outcome.status
        if data is not None and keys:
            data = mask_keys(data, keys, answer.status)
        if (
            data is not None
            and status is not None
            and (status >= 400 or outcome.ok or (not self.config.strict and outcome.code not in BROKEN_2XX))
        ):
            # The provider's own body: its error for an error status, the answer for a 200 (a soft or silent
            # failure too, unless strict), the outcome in the headers either way. A 2xx that is no answer of
            # the endpoint (an HTML page) is never passed on: no SDK could read it, so it is the proxy's 502.
            return Response(data, status_code=status, headers=headers, media_type=_JSON)
        return Response(error_body(outcome, data), status_code=error_status(outcome), headers=headers,
                        media_type=_JSON)  # fmt: skip

    # -- everything else, forwarded --

    async def forward(self, request: Request, path: str | None = None) -> Response:
        ring = self.admit(request)
        if isinstance(ring, Response):
            return ring
        # The key plain calls use now: one refused for good there (auth, quota) is not tried here again.
        key = ring.current
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_REQUEST}
        if key:
            headers["authorization"] = f"Bearer {key}"
        http = self._forward
        if http is None:
            from ..client.clients import tls_context

            http = self._forward = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout, pool=None), verify=tls_context()
            )
        url = self.upstream.url(request.path_params["path"] if path is None else path)
        outgoing = http.build_request(
            request.method, url, params=request.url.query, headers=headers,
            content=await request.body(),
        )  # fmt: skip
        try:
            reply = await http.send(outgoing, stream=True)
        except TRANSPORT_ERRORS as exc:
            return _error(classify_exception(exc, secrets=ring.keys), "unknown")
        out = {k: v for k, v in reply.headers.items() if k not in _HOP_RESPONSE}
        return StreamingResponse(reply.aiter_bytes(), status_code=reply.status_code, headers=out,
                                 background=BackgroundTask(reply.aclose))  # fmt: skip

    async def start(self) -> None:
        """What must be made in the server's event loop: the shared limiter's connection."""
        if self.config.open_gate is not None and self.upstream.gate is None:
            self.upstream.gate = await self.config.open_gate()

    async def aclose(self) -> None:
        await self.upstream.aclose()
        if self.config.open_gate is not None:
            close = getattr(self.upstream.gate, "aclose", None)
            if close is not None:
                await close()
            self.upstream.gate = None
        if self._forward is not None:
            await self._forward.aclose()
            self._forward = None
        if self.recorder is not None:
            self.recorder.close()


def _model_in(body: bytes | None) -> str | None:
    """The ``model`` a JSON answer names, if any."""
    if not body:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    named = data.get("model") if isinstance(data, dict) else None
    return named if isinstance(named, str) and named else None


async def _form_encoder(form: Any) -> Callable[[str], tuple[bytes, str]]:
    """How to write ``form`` again with another model: (the bytes, their content type with its boundary)."""
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, tuple[str | None, bytes, str | None]]] = []
    for name, value in form.multi_items():
        if isinstance(value, str):
            fields.append((name, value))
        else:
            files.append((name, (value.filename, await value.read(), value.content_type)))

    def encode(model: str) -> tuple[bytes, str]:
        data: dict[str, list[str]] = {"model": [model]}
        for k, v in fields:
            if k != "model":
                data.setdefault(k, []).append(v)
        request = httpx.Request("POST", "http://form.invalid/", data=data, files=files or None)
        return request.read(), request.headers["content-type"]

    return encode


def _error(outcome: Outcome, model: str) -> Response:
    return Response(error_body(outcome), status_code=error_status(outcome),
                    headers=outcome_headers(outcome, model), media_type=_JSON)  # fmt: skip


def create_app(config: ProxyConfig) -> Starlette:
    """The proxy as an ASGI app (serve it with uvicorn, or run :class:`genguard.Proxy`).

    >>> app = create_app(ProxyConfig(upstream="http://127.0.0.1:8000/v1", api_keys=("sk-test",)))
    >>> sorted(r.path for r in app.routes)[:2]
    ['/v1/chat/completions', '/v1/embeddings']
    """
    proxy = _Proxy(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The price table loads on first use (~1 s): at start, not in the first client's answer.
        from ..core.outcome import Usage
        from ..core.pricing import cost_usd

        cost_usd("gpt-4o-mini", Usage(prompt_tokens=1, completion_tokens=1))
        await proxy.start()
        try:
            yield
        finally:
            await proxy.aclose()

    # The calls under the policy are answered straight from here: Starlette's exception middleware, router
    # and endpoint wrapper cost a measurable share of a proxied call's CPU (bench/bench_proxy.py) and add
    # nothing to these handlers, which answer every failure themselves. Errors still reach the outer
    # ServerErrorMiddleware; every other path, and the lifespan, go through the router.
    fast = {
        "/v1/chat/completions": proxy.chat,
        "/v1/embeddings": proxy.embeddings,
        "/v1/responses": proxy.responses,
        "/v1/images/generations": proxy.images,
        "/v1/videos": proxy.videos,
    }

    class FastPath:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["method"] == "POST":
                handler = fast.get(scope["path"])
                if handler is not None:
                    response = await handler(Request(scope, receive))
                    await response(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    app = Starlette(
        middleware=[Middleware(FastPath)],
        routes=[
            Route("/v1/chat/completions", proxy.chat, methods=["POST"]),
            Route("/v1/embeddings", proxy.embeddings, methods=["POST"]),
            Route("/v1/responses", proxy.responses, methods=["POST"]),
            Route("/v1/images/generations", proxy.images, methods=["POST"]),
            Route("/v1/images/edits", proxy.images, methods=["POST"]),
            Route("/v1/images/variations", proxy.images, methods=["POST"]),
            Route("/v1/videos", proxy.videos, methods=["POST"]),
            Route("/v1/moderations", proxy.moderations, methods=["POST"]),
            Route("/v1/videos/{video_id}", proxy.poll_video, methods=["GET"]),
            Route("/v1/{path:path}", proxy.forward, methods=_METHODS),
        ],
        lifespan=lifespan,
    )
    app.state.proxy = proxy
    return app
