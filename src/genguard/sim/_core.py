"""The per-request core every simulator endpoint shares: auth, rate limits, scenario choice, stats.

An endpoint handler starts with ``begin`` and either sends the ``Response`` it got (401, 429, a bad
scenario header) or plays the request under ``ctx.scenario``::

    async def generate(request):
        ctx = await begin(request, "image")
        if isinstance(ctx, Response):
            return ctx
        if ctx.scenario in ERROR_SCENARIOS:          # any generic hard code, incl. timeout/connection_error
            return ctx.error(ctx.scenario, endpoint="image")
        ...                                          # media-specific scenarios, then the normal answer
        ctx.charge(tokens)                           # optional: tokens produced, for --tpm and --quota-tokens

Response headers (``x-request-id``, ``x-ratelimit-*``) are added by the app's middleware, and the status
each request ends with is recorded in the stats automatically when the response starts; ``ctx.record(status)``
overrides it (e.g. for a response sent outside the normal path). ``ctx.state.media`` is a dict the media
endpoints may keep their state in: ``Simulator.reset()`` clears it, and calls every function in
``ctx.state.reset_hooks``.

Choosing the scenario: the ``x-genguard-scenario`` header, else the server-wide ``--scenario``; a ``NAME:N``
spec fails the first N attempts of "the same request" and then succeeds; else ``--chaos`` rolls its dice
(seeded by ``--seed``); else the server-wide scenario. ``x-genguard-variant`` picks a flavour of the scenario
where there are several (``_dialects.VARIANTS``; the media endpoints read it too).

"The same request" is, on the chat endpoint, the same model and the same conversation up to and including its
first user message; elsewhere, the same body; in both, sent to the same endpoint with the same scenario
header, whatever the API key. A retry, a retry with the next key after ``auth_failed`` or ``quota_exceeded``,
a re-ask (messages appended) and a retry with a raised ``max_tokens`` are attempts of one request; a fallback
to another model is a new request.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.taxonomy import CODES
from ._cache import PromptCache
from ._clock import SYSTEM_CLOCK, Clock
from ._config import DIALECTS, SHOULD_RETRY, ScenarioError, SimConfig, parse_scenario
from ._dialects import ERROR_CODES, JSON, ErrorSpec, error_response
from ._ratelimit import RateLimiter
from ._stats import Entry, Stats

ERROR_SCENARIOS: frozenset[str] = ERROR_CODES | {"timeout", "connection_error"}
"""Scenarios ``ctx.error`` plays as they are on any endpoint."""

_SCOPE_KEY = "genguard"
_UNPARSED: Any = object()

SameRequest = Callable[[Any], bytes | None]
"""What of a parsed JSON body makes "the same request" on an endpoint (None: the body as sent)."""


def _limits_of(cfg: SimConfig) -> tuple[Any, ...]:
    return cfg.rpm, cfg.tpm, dict(cfg.rpm_for), dict(cfg.tpm_for), cfg.quota_tokens, cfg.rate_window_s


class SimState:
    """Everything a running simulator remembers; one per app, at ``app.state.sim``; ``clock`` is where all of
    it reads the time (the system's clocks unless a test gives a fake one)."""

    def __init__(self, config: SimConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        self.media: dict[str, Any] = {}
        self.reset_hooks: list[Callable[[], None]] = []
        self._ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Forget stats, flaky counters, rate buckets, chaos dice, cached prompts and media state."""
        cfg = self.config
        self.limiter = self._limiter(cfg)
        # Replaced, not cleared: reset() may run on another thread while a request is using the old one.
        self.prompt_cache = PromptCache()
        self.stats = Stats()
        self.flaky: dict[str, int] = {}
        self.rng = random.Random(cfg.seed)
        self.media.clear()
        for hook in list(self.reset_hooks):
            hook()

    def set_config(self, config: SimConfig) -> None:
        old, self.config = self.config, config
        if _limits_of(old) != _limits_of(config):
            self.limiter = self._limiter(config)
        if (old.seed, dict(old.chaos)) != (config.seed, dict(config.chaos)):
            self.rng = random.Random(config.seed)

    def _limiter(self, cfg: SimConfig) -> RateLimiter:
        return RateLimiter(rpm=cfg.rpm, tpm=cfg.tpm, rpm_for=cfg.rpm_for, tpm_for=cfg.tpm_for,
                           quota_tokens=cfg.quota_tokens, window_s=cfg.rate_window_s,
                           clock=self.clock.monotonic)  # fmt: skip

    def request_id(self) -> str:
        return f"req_{next(self._ids):012x}{id(self) & 0xFFFF:04x}"


class RequestContext:
    """One request being played: the chosen ``scenario`` (``"ok"`` when none), its key, dialect and body, and
    the ``model`` the body names where ``begin`` read it (else None): its rate limits are that model's."""

    __slots__ = ("_parsed", "api_key", "body", "config", "dialect", "endpoint", "entry", "model",
                 "request_id", "scenario", "should_retry", "state", "too_large", "variant")  # fmt: skip

    def __init__(self, state: SimState, *, scenario: str, api_key: str, dialect: str, endpoint: str,
                 body: bytes, request_id: str, entry: Entry, variant: str = "",
                 should_retry: str = "off", model: str | None = None) -> None:  # fmt: skip
        self.state = state
        self.model = model
        self.variant = variant
        self.should_retry = should_retry
        # (tpm, requested) when the rate limiter refused the request as larger than the whole budget.
        self.too_large: tuple[int, int] | None = None
        self.config = state.config
        self.scenario = scenario
        self.api_key = api_key
        self.dialect = dialect
        self.endpoint = endpoint
        self.body = body
        self.request_id = request_id
        self.entry = entry
        # The body as begin() parsed it (or the error it raised), so that a handler does not parse it again.
        self._parsed: Any = _UNPARSED

    def json(self) -> Any:
        """The request body parsed as JSON (raises ``orjson.JSONDecodeError``)."""
        parsed = self._parsed
        if parsed is _UNPARSED:
            parsed = self._parsed = orjson.loads(self.body)
        elif isinstance(parsed, orjson.JSONDecodeError):
            raise parsed
        return parsed

    def error(self, code: str, *, message: str | None = None, endpoint: str = "chat",
              model: str | None = None, path: str | None = None, spec: ErrorSpec | None = None) -> Response:  # fmt: skip
        """The dialect-shaped response for hard ``code``; ``timeout`` stalls, ``connection_error`` cuts;
        ``spec`` gives the status, type, code, param and message in OpenAI's words instead of the code's own.
        The message names ``model`` (by default the request's own) and that model's limits."""
        if code == "timeout":
            return StallResponse(self.config.stall_s, self)
        if code == "connection_error":
            return CutResponse()
        cfg = self.config
        model = model or self.model or "gpt-4o-mini"
        if path is None:
            path = {"chat": "/v1/chat/completions", "image": "/v1/images/generations"}.get(
                endpoint, "/v1/videos"
            )
        tpm, requested = self.too_large or (cfg.tpm_of(model) or 30000, 31538)
        variant = "429" if self.too_large else self.variant
        status, headers, body = error_response(
            self.dialect, code, request_id=self.request_id, message=message, model=model, path=path,
            retry_after_s=cfg.retry_after_s, limit=cfg.rpm_of(model) or 60, variant=variant, tpm=tpm,
            requested=requested, spec=spec,
        )  # fmt: skip
        if "retry-after" in headers:
            self.entry.retry_after_s = cfg.retry_after_s
        verdict = self.should_retry
        if verdict != "off":
            if verdict == "auto":
                info = CODES.get(code)
                verdict = "true" if info is not None and info.retryable else "false"
            headers["x-should-retry"] = verdict
            self.entry.should_retry = verdict == "true"
        return Response(body, status_code=status, headers=headers)

    def record(self, status: int | None) -> None:
        """Record the status this request ended with (the middleware does it when the response starts)."""
        self.entry.status = status

    def charge(self, tokens: int) -> None:
        """Count ``tokens`` generated for this request against ``--tpm`` and ``--quota-tokens``."""
        self.state.limiter.charge(self.api_key, tokens, model=self.model)


class StallResponse(Response):
    """Sends nothing until the client gives up (or ``stall_s`` passes, then a 504): a real timeout."""

    def __init__(self, stall_s: float, ctx: RequestContext) -> None:
        self.stall_s = stall_s
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await wait_for_disconnect(receive, self.stall_s)
        ctx = self.ctx
        status, headers, body = error_response(ctx.dialect, "gateway_timeout", request_id=ctx.request_id)
        await Response(body, status_code=status, headers=headers)(scope, receive, send)


async def wait_for_disconnect(receive: Receive, limit_s: float) -> bool:
    """Wait until the client disconnects (True) or ``limit_s`` passes (False)."""
    with anyio.move_on_after(limit_s):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return True
    return False


class ConnectionCut(Exception):
    """Raised on purpose after a response has started, so the server drops the connection mid-body."""


class CutResponse(Response):
    """Drops the connection without an answer: the client sees a real transport error."""

    def __init__(self) -> None:
        pass

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await abort_connection(receive):
            return
        # No transport to drop: announce a body, send a piece, and fail so the server closes mid-body.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", JSON.encode()), (b"content-length", b"2048")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": True})
        raise ConnectionCut("connection cut on purpose by the connection_error scenario")


async def abort_connection(receive: Receive) -> bool:
    """Abort the TCP connection under this request, if the server lets us reach it (uvicorn does)."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    abort = getattr(transport, "abort", None)
    if abort is None:
        return False
    abort()
    # Let the server see the connection is gone before the app returns, so it sends nothing more.
    for _ in range(3):
        await anyio.sleep(0)
    return True


class _QuietCuts(logging.Filter):
    # The server logs every deliberate cut as an application error; these are not errors.
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, ConnectionCut):
                return False
            if isinstance(exc, BaseExceptionGroup) and any(
                isinstance(e, ConnectionCut) for e in exc.exceptions
            ):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


logging.getLogger("uvicorn.error").addFilter(_QuietCuts())


def _api_key(request: Request) -> str:
    headers = request.headers
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else auth.strip()
    return headers.get("api-key") or headers.get("x-api-key") or headers.get("x-goog-api-key") or ""


@lru_cache(maxsize=256)
def _parse(spec: str) -> tuple[str, int | None]:
    return parse_scenario(spec)


def _identity(endpoint: str, content_type: str, body: bytes) -> str:
    # The key is left out on purpose: rotating to the next key is another attempt of the same request.
    if content_type.startswith("multipart/"):
        # Each multipart request picks a fresh boundary; a retry of the same form must hash the same.
        _, _, boundary = content_type.partition("boundary=")
        if boundary:
            body = body.replace(boundary.strip('"').encode(), b"")
    h = hashlib.blake2b(body, digest_size=10)
    h.update(endpoint.encode())
    return h.hexdigest()


def _key_tag(key: str) -> str:
    # The stats tell keys apart (a rotation is not a blind retry) without keeping the keys themselves.
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


def _estimate_tokens(body: bytes) -> int:
    # About four bytes a token, as providers estimate before counting.
    return max(len(body) // 4, 1)


async def read_body(request: Request, limit: int) -> bytes | int:
    """The request body; or, past ``limit`` bytes, its size: the rest is read and dropped, so a huge upload
    costs no memory and the client, still sending, gets to read the answer."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif chunks:
            chunks.clear()
    if size > limit:
        return size
    body = b"".join(chunks)
    request._body = body  # where Starlette keeps a body read once, for the handler's own body() or form()
    return body


def _body_too_large(fail: Callable[..., Response], dialect: str, size: int, limit: int) -> Response:
    # A gateway's 413 (Anthropic words it its own way, which error_response knows).
    if dialect == "anthropic":
        return fail("request_too_large", spec=None)
    message = (f"Request body too large: {size} bytes, more than the {limit} bytes this server accepts. "
               "Send less (fewer or smaller images or files, a shorter prompt).")  # fmt: skip
    return fail(
        "request_too_large", spec=ErrorSpec(413, "invalid_request_error", "request_too_large", message)
    )


async def begin(request: Request, endpoint: str, *, same_request: SameRequest | None = None,
                ) -> RequestContext | Response:  # fmt: skip
    """Authenticate, rate-limit, choose the scenario and open the stats entry of one request.

    ``same_request`` picks, from the parsed JSON body, what makes two requests one (for ``NAME:N`` counts and
    the verdict): the chat endpoint keys by model and the conversation's start, so a re-ask or a raised
    ``max_tokens`` stays the same request. Without it, the body as sent is the key."""
    state: SimState = request.app.state.sim
    cfg = state.config
    request_id = state.request_id()
    hdrs = request.headers
    dialect = hdrs.get("x-genguard-dialect") or cfg.dialect
    scope_info: dict[str, Any] = {"request_id": request_id}
    request.scope[_SCOPE_KEY] = scope_info
    if dialect not in DIALECTS:
        dialect = cfg.dialect
    got = await read_body(request, cfg.max_body_bytes)
    too_big = isinstance(got, int)
    body = b"" if isinstance(got, int) else got
    key = _api_key(request)
    spec = hdrs.get("x-genguard-scenario")
    parsed: Any = _UNPARSED
    same: bytes | None = None
    # Read here where the body decides something: "the same request", or which model's buckets to charge.
    if (same_request is not None or state.limiter.per_model) and not too_big:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            parsed = exc
        else:
            if same_request is not None:
                same = same_request(parsed)
    model = parsed.get("model") if isinstance(parsed, dict) else None
    if not isinstance(model, str):
        model = None
    # A different scenario header makes a different request; a retry repeats the header too.
    ctype = hdrs.get("content-type", "")
    as_sent = _identity(endpoint + (spec or ""), ctype, str(got).encode() if too_big else body)
    identity = as_sent if same is None else _identity(endpoint + (spec or ""), "", same)
    key_tag = _key_tag(key)
    variant = hdrs.get("x-genguard-variant", "").strip().lower()
    should_retry = hdrs.get("x-genguard-should-retry", "").strip().lower()
    if should_retry not in SHOULD_RETRY:
        should_retry = cfg.should_retry
    now = state.clock.monotonic()

    def fail(code: str, *, retry_after: float | None = None, message: str | None = None,
             status: int | None = None, too_large: tuple[int, int] | None = None,
             spec: ErrorSpec | None = None) -> Response:  # fmt: skip
        entry = state.stats.start(identity, code, endpoint, now=now, key=key_tag, version=as_sent)
        scope_info["entry"] = entry
        ctx = RequestContext(state, scenario=code, api_key=key, dialect=dialect, endpoint=endpoint, body=body,
                             request_id=request_id, entry=entry, variant="" if spec else variant,
                             should_retry=should_retry, model=model)  # fmt: skip
        ctx.too_large = too_large
        if status is not None:
            payload = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": "invalid_scenario"}}  # fmt: skip
            return Response(orjson.dumps(payload), status_code=status, media_type=JSON)
        if retry_after is not None:
            old = ctx.config
            ctx.config = old.replace(retry_after_s=round(retry_after, 3))
        return ctx.error(code, message=message, endpoint=endpoint, spec=spec)

    if isinstance(got, int):
        return _body_too_large(fail, dialect, got, cfg.max_body_bytes)
    if cfg.api_keys and key not in cfg.api_keys:
        return fail("auth_failed")
    try:
        name, flaky_n = _parse(spec or cfg.scenario)
    except ScenarioError as exc:
        return fail("bad_request", status=400, message=f"x-genguard-scenario: {exc}")
    admission = state.limiter.admit(key, _estimate_tokens(body), model=model, now=now)
    if cfg.ratelimit_headers:
        scope_info["headers"] = admission.limits.headers(dialect, unix_time=state.clock.time)
    if admission.verdict != "ok":
        retry = max(admission.retry_after_s, 0.001) if admission.verdict == "rate_limited" else None
        too_large = (
            (admission.limit, admission.requested) if admission.verdict == "request_too_large" else None
        )
        return fail(admission.verdict, retry_after=retry, too_large=too_large)
    state.limiter.charge_prompt(key, _estimate_tokens(body))
    if flaky_n is not None:
        seen = state.flaky[identity] = state.flaky.get(identity, 0) + 1
        scenario = name if seen <= flaky_n else "ok"
    elif spec:
        scenario = name
    else:
        scenario = name
        if cfg.chaos:
            roll = state.rng.random()
            for code, rate in cfg.chaos.items():
                if roll < rate:
                    scenario = code
                    break
                roll -= rate
    entry = state.stats.start(identity, scenario, endpoint, now=now, key=key_tag, version=as_sent)
    scope_info["entry"] = entry
    ctx = RequestContext(state, scenario=scenario, api_key=key, dialect=dialect, endpoint=endpoint, body=body,
                         request_id=request_id, entry=entry, variant=variant,
                         should_retry=should_retry, model=model)  # fmt: skip
    ctx._parsed = parsed
    return ctx


class HeadersMiddleware:
    """Adds ``x-request-id`` and ``x-ratelimit-*`` to every response and records its status in the stats."""

    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                info = scope.get(_SCOPE_KEY)
                if info is None:
                    info = scope[_SCOPE_KEY] = {"request_id": self.state.request_id()}
                extra = [(b"x-request-id", info["request_id"].encode())]
                headers = info.get("headers")
                if headers:
                    extra.extend((k.encode(), v.encode()) for k, v in headers.items())
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
                entry = info.get("entry")
                if entry is not None and entry.status is None:
                    entry.status = message["status"]
            await send(message)

        await self.app(scope, receive, send_with_headers)
