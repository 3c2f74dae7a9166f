"""What an application using an official SDK sees through the proxy, for every scenario of the simulator.

One table, read by the Node SDK tests (``test_proxy_node.py``) and the Python SDK tests
(``test_proxy_sdk_async.py``). Every name in the simulator's ``SCENARIOS`` must have a row: a new scenario
fails ``test_every_simulator_scenario_has_a_row`` until someone writes down what an application should see.

The proxies these rows describe retry with ``FAST`` (4 attempts per model, short backoff); ``timeout`` rows use
the ``QUICK`` proxy (1 s read and stall limits, 2 attempts) so the scenario costs seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from genguard import RetryPolicy
from genguard.core.taxonomy import CODES
from genguard.proxy import Proxy
from genguard.sim import Simulator
from genguard.sim._config import SCENARIOS

RETRIED = 4
FAST = RetryPolicy(max_attempts=RETRIED, backoff_base=0.01, backoff_max=0.02)
QUICK_ATTEMPTS = 2
QUICK = RetryPolicy(max_attempts=QUICK_ATTEMPTS, backoff_base=0.01, backoff_max=0.02)
QUICK_LIMIT_S = 1.0
RETRY_AFTER_S = 0.05  # the simulator's advertised wait in the table's rows: retry-after-ms "50"
UPSTREAM_KEY = "sk-proxy-upstream-key-for-sdk-tests"


@dataclass(frozen=True, slots=True)
class Answered:
    """The SDK returned an answer (no exception): its ``finish_reason`` and the ``x-genguard-code`` header
    (``pending`` on a stream the proxy committed to before its outcome was known)."""

    finish: str | None
    code: str = "ok"
    attempts: int = 1
    text: bool = True  # the answer carries text (not an empty one)


@dataclass(frozen=True, slots=True)
class Raised:
    """The SDK raised: for a ``status``, the SDK's exception for that status; for ``status=None``, an in-band
    error event read mid-stream (``APIError``, no status), whose ``error.code`` is ``error_code``.

    ``code`` is ``x-genguard-code``; ``error_code``, when set, is the body's ``error.code`` (the proxy's own
    bodies carry genguard's code there; the provider's keep the provider's).
    """

    status: int | None
    code: str
    attempts: int = 1
    error_code: str | None = None
    retry_after_ms: str | None = None
    bug: str | None = None  # a known proxy defect: the row is what should happen, the test is xfail(strict)
    now: str | None = None  # with a bug: what an application sees meanwhile, in the doc's words

    @property
    def inband(self) -> bool:
        return self.status is None


Seen = Answered | Raised


@dataclass(frozen=True, slots=True)
class Case:
    """One scenario, plain and streamed, as the default proxy and (where it differs) the strict one answer."""

    plain: Seen
    stream: Seen
    strict_plain: Seen | None = None
    strict_stream: Seen | None = None
    quick: bool = False  # played against the QUICK proxy (its read and stall limits are what end it)

    def expected(self, mode: str, *, strict: bool) -> Seen:
        if strict:
            override = self.strict_plain if mode == "plain" else self.strict_stream
            if override is not None:
                return override
        return self.plain if mode == "plain" else self.stream

    def strict_matters(self, mode: str) -> bool:
        """Whether strict mode could change what the application sees in ``mode``: the upstream answered a 2xx
        (an answer, or a stream that failed after its first text), or the row says strict differs."""
        seen = self.plain if mode == "plain" else self.stream
        override = self.strict_plain if mode == "plain" else self.strict_stream
        return isinstance(seen, Answered) or seen.status is None or override is not None


def _same(seen: Seen) -> Case:
    return Case(plain=seen, stream=seen)


_OK = Case(plain=Answered("stop"), stream=Answered("stop", "pending"))  # a stream commits at its first text

CASES: dict[str, Case] = {
    "ok": _OK,
    # Final at once: one attempt, the provider's status and body, x-should-retry false.
    "auth_failed": _same(Raised(401, "auth_failed")),
    "permission_denied": _same(Raised(403, "permission_denied")),
    "model_not_found": _same(Raised(404, "model_not_found")),
    "not_found": _same(Raised(404, "not_found")),
    "bad_request": _same(Raised(400, "bad_request")),
    "context_length_exceeded": _same(Raised(400, "context_length_exceeded")),
    "request_too_large": _same(Raised(413, "request_too_large")),
    "prompt_blocked": _same(Raised(400, "prompt_blocked")),
    "quota_exceeded": _same(Raised(429, "quota_exceeded", error_code="insufficient_quota")),
    "unprocessable": _same(Raised(422, "unprocessable")),
    # Retried by genguard until its attempts are spent, then final for the SDK.
    "rate_limited": _same(
        Raised(429, "rate_limited", RETRIED, retry_after_ms=str(round(RETRY_AFTER_S * 1000)))
    ),
    "request_timeout": _same(Raised(408, "request_timeout", RETRIED)),
    "conflict": _same(Raised(409, "conflict", RETRIED)),
    "server_error": _same(Raised(500, "server_error", RETRIED)),
    "bad_gateway": _same(Raised(502, "bad_gateway", RETRIED)),
    "unavailable": _same(
        Raised(503, "unavailable", RETRIED, retry_after_ms=str(round(RETRY_AFTER_S * 1000)))
    ),
    "gateway_timeout": _same(Raised(504, "gateway_timeout", RETRIED)),
    # No answer, or a broken one: the proxy writes the error itself (502/504, genguard's code in the body);
    # after the first text of a stream, an in-band error event the SDK raises.
    "timeout": Case(
        plain=Raised(504, "timeout", QUICK_ATTEMPTS, error_code="timeout"),
        stream=Raised(None, "pending", error_code="timeout"),
        quick=True,
    ),
    "connection_error": Case(
        plain=Raised(502, "connection_error", RETRIED, error_code="connection_error"),
        stream=Raised(None, "pending", error_code="incomplete_stream"),
    ),
    # A 2xx that is no answer at all (an HTML page) is never passed on, strict or not: no SDK could parse it.
    "invalid_response": _same(Raised(502, "invalid_response", RETRIED, error_code="invalid_response")),
    # 2xx answers genguard judged unusable: passed on with the outcome in the headers; --strict makes them
    # errors (422 before any text, an in-band event after it).
    "content_filtered": Case(
        plain=Answered("content_filter", "content_filtered"),
        stream=Answered("content_filter", "pending"),
        strict_plain=Raised(422, "content_filtered", error_code="content_filtered"),
        strict_stream=Raised(None, "pending", error_code="content_filtered"),
    ),
    "truncated": Case(
        plain=Answered("length", "truncated"),
        stream=Answered("length", "pending"),
        strict_plain=Raised(422, "truncated", error_code="truncated"),
        strict_stream=Raised(None, "pending", error_code="truncated"),
    ),
    "empty_output": Case(
        # Retried (another sample may have text); the stream never reached its commit point.
        plain=Answered("stop", "empty_output", RETRIED, text=False),
        stream=Answered("stop", "empty_output", RETRIED, text=False),
        strict_plain=Raised(422, "empty_output", RETRIED, error_code="empty_output"),
        strict_stream=Raised(422, "empty_output", RETRIED, error_code="empty_output"),
    ),
    "incomplete_stream": Case(
        # A plain body that arrived whole is not a cut stream (finish_reason null, the text as delivered).
        plain=Answered(None),
        stream=Raised(None, "pending", error_code="incomplete_stream"),
    ),
    # A 200 whose finish_reason is "error", or an error event in the stream: genguard's stream_error, the
    # proxy's 502 before any text; after it, genguard's in-band event (the upstream's own is held back).
    "stream_error": Case(
        plain=Raised(502, "stream_error", RETRIED, error_code="stream_error"),
        stream=Raised(None, "pending", error_code="stream_error"),
    ),
    # Silent failures need the application's expectations (labels, a schema), which a chat request through
    # the proxy does not carry: the answer is an ordinary one. Media scenarios leave chat alone.
    **dict.fromkeys(
        ("invalid_json", "schema_mismatch", "unexpected_label", "too_short", "pattern_mismatch"), _OK
    ),
    **dict.fromkeys(("download_failed", "generation_failed", "task_timeout", "stuck_in_queue"), _OK),
}

MODES = ("plain", "stream")

# The exception class each official SDK raises for a status (the SDKs' own documented tables).
NODE_CLASS = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
              404: "NotFoundError", 409: "ConflictError", 422: "UnprocessableEntityError",
              429: "RateLimitError"}  # fmt: skip


def node_class(seen: Raised) -> str:
    """The Node SDK's class name: ``APIError`` for an in-band event and for a status without a class."""
    if seen.status is None:
        return "APIError"
    if seen.status >= 500:
        return "InternalServerError"
    return NODE_CLASS.get(seen.status, "APIError")


def runs(*, strict: bool) -> list[Any]:
    """``pytest.param(scenario, mode)`` for a parametrize: every scenario of the simulator (one without a row
    too, so it fails, naming what to add), or under ``strict`` those strict mode may change. A row marked with
    a known proxy defect is ``xfail(strict=True)``: it passes the day the proxy is fixed, and then must lose
    its mark."""
    out = []
    for name in sorted(SCENARIOS):
        case = CASES.get(name)
        for mode in MODES:
            if case is not None and strict and not case.strict_matters(mode):
                continue
            seen = case.expected(mode, strict=strict) if case is not None else None
            bug = seen.bug if isinstance(seen, Raised) else None
            marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
            if case is not None and case.quick:
                marks.append(pytest.mark.slow)  # its read and stall limits take a second or two
            out.append(pytest.param(name, mode, marks=marks, id=f"{name}-{mode}"))
    return out


def case_for(name: str) -> Case:
    """The row of ``name``, or a failure saying what to write down for a scenario the table lacks."""
    case = CASES.get(name)
    if case is None:
        raise AssertionError(
            f"the simulator plays {name!r}, which tests/_proxy_sdk_cases.py has no row for: add what an "
            "application should see through the proxy (Answered or Raised, plain and streamed)"
        )
    return case


def missing_rows() -> set[str]:
    """Scenarios the simulator plays that the table has no row for."""
    return set(SCENARIOS) - set(CASES)


@contextlib.contextmanager
def proxies(upstream: str) -> Iterator[dict[tuple[bool, bool], Proxy]]:
    """The proxies the table describes, keyed by (strict, quick), all in front of ``upstream``."""
    with contextlib.ExitStack() as stack:
        out: dict[tuple[bool, bool], Proxy] = {}
        for strict in (False, True):
            out[strict, False] = stack.enter_context(
                Proxy(upstream=upstream, api_keys=(UPSTREAM_KEY,), retry=FAST, strict=strict)
            )
            out[strict, True] = stack.enter_context(
                Proxy(upstream=upstream, api_keys=(UPSTREAM_KEY,), retry=QUICK, strict=strict,
                      timeout=QUICK_LIMIT_S, stall_timeout=QUICK_LIMIT_S),
            )  # fmt: skip
        yield out


def play(sim: Simulator, name: str) -> None:
    """Make every chat request the simulator gets play ``name``, with the table's advertised wait."""
    sim.configure(scenario=name, retry_after_s=RETRY_AFTER_S)


def python_class(seen: Raised) -> str:
    """The Python SDK's class name: as Node's, but ``APIStatusError`` for a status without a class."""
    name = node_class(seen)
    return "APIStatusError" if name == "APIError" and seen.status is not None else name


def check(seen: Seen, got: dict[str, Any], sim_requests: int, *, error_class: str) -> None:
    """Judge one call as the application saw it (the Node driver's JSON shape, which the Python tests build
    too) against its row: the answer or the exception, the outcome headers, and how many requests the SDK and
    the proxy sent."""
    where = json.dumps(got)[:3000]
    assert len(got["requests"]) == 1, f"the SDK sent the call more than once: {where}"
    headers: dict[str, str] = got["headers"] if got["ok"] else got["error"]["headers"]
    code = headers.get("x-genguard-code")
    assert code == seen.code, where
    kind = headers.get("x-genguard-kind")
    assert kind == (code if code in ("ok", "pending") else CODES[code].kind), where
    assert headers.get("x-genguard-attempts") == str(seen.attempts), where
    # genguard's attempts are all the upstream saw: no SDK retry multiplied them.
    assert sim_requests == seen.attempts, where
    if code in ("ok", "pending"):
        assert "x-should-retry" not in headers, where
    else:
        assert headers.get("x-should-retry") == "false", where
    if isinstance(seen, Answered):
        assert got["ok"], where
        assert got["finish"] == seen.finish, where
        assert bool(got["text"]) == seen.text, where
        return
    assert not got["ok"], where
    error = got["error"]
    assert error["class"] == error_class, where
    assert error["status"] == seen.status, where
    if seen.error_code is not None:
        assert error["code"] == seen.error_code, where
    if seen.inband:
        # Text reached the application first: the cut is raised, not a quiet end with half an answer.
        assert got["text"], where
        assert got["chunks"] > 0, where
    else:
        assert got["chunks"] == 0, where
        assert headers.get("retry-after-ms") == seen.retry_after_ms, where


# The table of docs/proxy.md ("What each failure looks like from Node and from Python") is rendered from the
# rows above, and a test holds the doc to it, so the doc says what the tests prove.


def cell(seen: Seen) -> str:
    """What the application sees, in the doc's words."""
    retried = "; retried by genguard first" if seen.attempts > 1 else ""
    if isinstance(seen, Answered):
        words = "the answer"
        if seen.finish != "stop":
            words += f", `finish_reason: {seen.finish or 'null'}`"
        if not seen.text:
            words += ", no text"
        if seen.code not in ("ok", "pending"):
            words += f", `x-genguard-code: {seen.code}`"
        return words + retried
    if seen.now:
        return seen.now
    if seen.inband:
        return f"text, then `APIError` / `openai.APIError` mid-stream, `code: {seen.error_code}`"
    words = f"`{node_class(seen)}` / `openai.{python_class(seen)}`, {seen.status}"
    if seen.retry_after_ms:
        words += ", `retry-after-ms`"
    return words + retried


def strict_cell(case: Case) -> str:
    parts = []
    if case.strict_plain is not None and case.strict_plain != case.plain:
        parts.append(f"plain: {cell(case.strict_plain)}")
    if case.strict_stream is not None and case.strict_stream != case.stream:
        parts.append(f"streamed: {cell(case.strict_stream)}")
    return "; ".join(parts) or "the same"


def doc_rows() -> list[str]:
    """The markdown rows, scenarios that look alike to an application sharing one."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for name, case in CASES.items():
        plain, stream = cell(case.plain), cell(case.stream)
        key = (plain, "the same" if stream == plain else stream, strict_cell(case))
        groups.setdefault(key, []).append(name)
    return [
        "| " + ", ".join(f"`{n}`" for n in names) + " | " + " | ".join(key) + " |"
        for key, names in groups.items()
    ]
