"""The proxy's side toward the provider: one wire (plain calls on the lean HTTP/1.1 pool, streams on aiohttp),
the keys, the retry loop with the gate around each attempt.

The proxy drives genguard's retry loop (:func:`genguard.client.loop.run`) itself rather than through
``AsyncClient.send_json``: it must hand the client the provider's own headers (rate limits, request id) of the
answer it passes on, share one key ring between plain calls, streams and forwarded paths, and stream raw
events; the loop, the classifier and the gate are the same ones every client uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from ..client.clients import plain_wire, tls_context
from ..client.gate import ASKED_MODEL, Gate, estimate_tokens, tell_gate
from ..client.loop import CallPlan, Hook, Loop, Send, adrive, run
from ..client.retry import RetryPolicy
from ..client.transport import TRANSPORT_ERRORS, classify_exception
from ..core.classify import classify_http
from ..core.exceptions import ConfigError
from ..core.outcome import Outcome
from ..core.taxonomy import Endpoint

__all__ = ["Answer", "KeyRing", "Upstream"]

_NO_KEY = (
    "the upstream wants an API key (it answered 401) and the proxy has none: start it with --api-key, "
    "api_keys in its config file, or GENGUARD_API_KEY / OPENAI_API_KEY set"
)


class KeyRing:
    """Upstream keys and the first one not refused for good: plain calls, streams and forwarded paths share it,
    so a key that failed on one is not tried on the next."""

    __slots__ = ("keys", "start")

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)
        self.start = 0

    def retire(self, index: int) -> None:
        self.start = max(self.start, index)

    @property
    def current(self) -> str | None:
        return self.keys[min(self.start, len(self.keys) - 1)] if self.keys else None


@dataclass(slots=True)
class Answer:
    """How a call ended: the outcome, the last answer's status, headers and body (``None``: no answer came),
    and each attempt's (wall-clock end, latency) for the journal."""

    outcome: Outcome
    status: int | None = None
    headers: Mapping[str, str] | None = None
    body: bytes | None = None
    timings: list[tuple[float, float]] = field(default_factory=list)


def _no_key() -> Exception:
    return ConfigError(_NO_KEY)


class Upstream:
    """The provider behind the proxy (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        stall_timeout: float,
        gate: Gate | None = None,
        max_concurrency: int = 512,
        connect_timeout: float = 10.0,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.stall_timeout = float(stall_timeout)
        self.connect_timeout = float(connect_timeout)
        self.gate = gate
        self.hooks = tuple(hooks)
        self.wire = plain_wire(max_concurrency, ssl_context=tls_context())
        self._headers: dict[tuple[str | None, str], dict[str, str]] = {}
        self._timeouts: dict[float, httpx.Timeout] = {}

    def url(self, path: str) -> str:
        return self.base + "/" + path.lstrip("/")

    def headers(
        self, key: str | None, content_type: str = "application/json", passed: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The headers of one attempt: the client's own that pass (``passed``: OpenAI-Organization,
        OpenAI-Project, OpenAI-Beta, the SDK's own...), then the proxy's content type, accept and key."""
        own = self._own_headers(key, content_type)
        return {**passed, **own} if passed else own

    def _own_headers(self, key: str | None, content_type: str) -> dict[str, str]:
        cached = self._headers.get((key, content_type))
        if cached is None:
            cached = {"content-type": content_type, "accept": "application/json"}
            if key:
                cached["authorization"] = f"Bearer {key}"
            if len(self._headers) > 64:  # forwarded client keys: stay small
                self._headers.clear()
            self._headers[(key, content_type)] = cached
        return cached

    def timeout_for(self, read: float, remaining: float | None) -> httpx.Timeout:
        if remaining is not None:
            read = min(read, remaining)
        cached = self._timeouts.get(read)
        if cached is None:
            cached = httpx.Timeout(read, connect=min(self.connect_timeout, read), pool=None)
            if len(self._timeouts) > 64:
                self._timeouts.clear()
            self._timeouts[read] = cached
        return cached

    def plan(
        self,
        models: Sequence[str],
        ring: KeyRing,
        policy: RetryPolicy,
        *,
        validators: tuple[Any, ...] = (),
        body: Mapping[str, Any] | None = None,
        endpoint: Endpoint = "chat",
        path: str = "chat/completions",
        method: str = "POST",
        stream: bool = False,
    ) -> Loop:
        messages = body.get("messages") if body is not None else None
        return run(
            CallPlan(
                models=tuple(models), keys=ring.keys, policy=policy, key_start=ring.start,
                validators=validators, messages=messages, params=body, retire_key=ring.retire,
                no_key_error=_no_key, hooks=self.hooks,
                # What the call is, for hooks told of each call's end (tracing).
                endpoint=endpoint, url=self.url(path), method=method, stream=stream,
            )
        )  # fmt: skip

    @staticmethod
    def content(action: Send, raw: bytes, body: Mapping[str, Any] | None, model: str) -> bytes:
        """The bytes of one attempt: the client's own when nothing changed (the common case: no re-encoding),
        else its body with the attempt's model and patch."""
        if body is None or (action.model == model and not action.patch):
            return raw
        return orjson.dumps({**body, **action.patch, "model": action.model})

    async def call(
        self,
        method: str,
        path: str,
        raw: bytes,
        body: Mapping[str, Any] | None,
        *,
        endpoint: Endpoint,
        models: Sequence[str],
        ring: KeyRing,
        policy: RetryPolicy,
        validators: tuple[Any, ...] = (),
        content_type: str = "application/json",
        reencode: Callable[[str], tuple[bytes, str]] | None = None,
        passed: Mapping[str, str] | None = None,
    ) -> Answer:
        """One call through the retry loop: what the client gets is the last answer and the final outcome."""
        url = self.url(path)
        wire = self.wire
        gate = self.gate
        tokens = estimate_tokens(body) if gate is not None and body is not None else 0
        secrets = ring.keys
        answer = Answer(Outcome.success())
        model = models[0]
        content: bytes | None = raw if method != "GET" else None

        async def send(action: Send) -> tuple[Outcome, bool]:
            timeout = self.timeout_for(self.timeout, action.timeout)
            data = self.content(action, raw, body, model) if content is not None else None
            ctype = content_type
            if reencode is not None and action.model != model:
                data, ctype = reencode(action.model)  # a form, for a fallback model
            if gate is not None:
                ASKED_MODEL.set(action.model or None)
                await gate.acquire(tokens)
            sent = time.monotonic()
            try:
                status, headers, reply = await wire.exchange(
                    method, url, self.headers(action.key, ctype, passed), data, timeout
                )
            except TRANSPORT_ERRORS as exc:
                if gate is not None:
                    gate.observe(0, {}, tokens_reserved=tokens)
                answer.status = answer.headers = answer.body = None
                answer.timings.append((time.time(), time.monotonic() - sent))
                return classify_exception(exc, endpoint=endpoint, secrets=secrets), False
            answer.timings.append((time.time(), time.monotonic() - sent))
            outcome = classify_http(status, headers, reply, endpoint=endpoint, secrets=secrets)
            if gate is not None:
                tell_gate(gate, status, headers, outcome, tokens)
            answer.status, answer.headers, answer.body = status, headers, reply
            return outcome, False

        loop = self.plan(models, ring, policy, validators=validators, body=body, endpoint=endpoint, path=path,
                         method=method)  # fmt: skip
        answer.outcome = await adrive(loop, send)
        return answer

    async def aclose(self) -> None:
        await self.wire.aclose()
