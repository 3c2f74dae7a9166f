"""Media bodies, sans-I/O: video task objects of every vendor, image responses, and file types by their bytes.

Every function here takes parsed JSON (or bytes, for :func:`sniff`) and returns values; none raises on any
input. Image responses and :func:`sniff` live in ``image_body`` and are importable from here too; the status
words of every vendor live in ``status_words``. A vendor's task object becomes one :class:`TaskState` with a
normalised status; an image response becomes an :class:`ImageResult`; either becomes an
:class:`~genguard.Outcome` through :func:`task_outcome` or :func:`image_outcome`.

>>> state = parse_task({"code": 0, "data": {"task_id": "t1", "task_status": "succeed",
...     "task_result": {"videos": [{"url": "https://cdn.example/v.mp4"}]}}})
>>> (state.vendor, state.status, state.urls)
('kling', 'succeeded', ('https://cdn.example/v.mp4',))
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from .error_body import ErrorInfo, read_error
from .error_verdict import classify_error
from .headers import request_id as header_request_id
from .image_body import ImageItem, ImageResult, image_outcome, parse_image_response, sniff
from .json_values import as_int, as_map, as_str
from .outcome import Outcome
from .status_words import FAILED_STATUSES, FINAL_STATUSES, TaskStatus, is_success_code, normalise_status

__all__ = [
    "ImageItem",
    "ImageResult",
    "TaskState",
    "detect_media",
    "image_outcome",
    "parse_image_response",
    "parse_task",
    "sniff",
    "task_outcome",
]

_SAFETY_WORDS = re.compile(
    r"moderat|safety|content[ _-]?polic|sensitive|nsfw|inappropriate|prohibited|"
    r"\brai\b|raimediafiltered|filtered|violat|guardrail|not allowed|unsafe|harmful|explicit|"
    r"content[ _-]?security|audit|risk[ _-]?control",
    re.IGNORECASE,
)
_NOT_EXIST_WORDS = re.compile(
    r"task_not_exist|not[ _-]?exist|task not found|no such task|not_found|unknown task|invalid task id",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class TaskState:
    """One poll of an asynchronous media task, whatever vendor answered it.

    ``progress`` is 0-100; ``urls`` are the result files; ``safety`` says the failure was a safety filter;
    ``not_exist`` says the server does not (yet) know the task; ``error`` holds an envelope error (a Kling
    ``code`` other than 0, a bare ``{"error": ...}`` body) when the poll itself was refused.

    >>> parse_task({"id": "v1", "status": "in_progress", "progress": 40}).progress
    40.0
    """

    id: str | None = None
    status: TaskStatus | None = None
    raw_status: str | None = None
    progress: float | None = None
    urls: tuple[str, ...] = ()
    file_id: str | None = None
    failure_reason: str | None = None
    failure_code: str | None = None
    safety: bool = False
    not_exist: bool = False
    model: str | None = None
    expires_at: int | None = None
    vendor: str = "unknown"
    error: ErrorInfo | None = None
    raw: Any = None

    @property
    def done(self) -> bool:
        """The task reached a final state (succeeded, failed or cancelled)."""
        return self.status in FINAL_STATUSES


# -- small readers ------------------------------------------------------------------------------------


def _is_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


def _urls_in(value: object, depth: int = 0) -> Iterator[str]:
    """Result URLs wherever a vendor nests them: a string, a list, ``{url}``, ``{uri}``, ``{video: ...}``."""
    if depth > 4:
        return
    if _is_url(value):
        yield value  # type: ignore[misc]
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _urls_in(item, depth + 1)
    elif isinstance(value, Mapping):
        for key in ("url", "uri", "video_url", "video", "file_url", "download_url", "output"):
            if key in value:
                yield from _urls_in(value[key], depth + 1)


def _progress(value: object, *, fraction: bool) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%").strip())
        except ValueError:
            return None
        fraction = False
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    p = float(value)
    # Runway reports a 0-1 fraction; a float at most 1 from anyone else is one too (0.4 is not 0.4%).
    if fraction or (isinstance(value, float) and 0.0 < p <= 1.0 and not p.is_integer()):
        p *= 100.0
    return min(100.0, max(0.0, p))


def _read_error(body: Mapping[str, Any]) -> ErrorInfo | None:
    try:
        return read_error(orjson.dumps(body), None)
    except Exception:
        # The error reader promises never to raise; if the body cannot even be dumped, keep no detail.
        return None


# -- tasks ----------------------------------------------------------------------------------------------


def parse_task(data: object) -> TaskState:
    """Read any vendor's task or operation object (REFERENCE.md §6) into a :class:`TaskState`.

    Understands OpenAI-style ``/v1/videos`` objects, aggregator forms and ``{code, data}`` envelopes, Kling,
    Runway, Google Veo operations, Replicate, fal, Luma, MiniMax and DashScope. Never raises.

    >>> s = parse_task({"id": "t", "status": "FAILED", "failure": "Flagged", "failureCode": "SAFETY.INPUT"})
    >>> (s.vendor, s.status, s.safety)
    ('runway', 'failed', True)
    """
    try:
        return _parse_task(data)
    except Exception:  # pragma: no cover - a last guard; the readers above are total
        return TaskState(raw=data)


def _parse_task(data: object) -> TaskState:
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        data = data[0]
    d = as_map(data)
    if d is None:
        return TaskState(raw=data)

    # Envelopes: {"code": 0, "data": {...}} (Kling and aggregators) and a bare {"data": {...}}.
    vendor = "unknown"
    request_id = as_str(d.get("request_id"))
    if "code" in d and not _has_status(d) and "done" not in d and not is_success_code(d.get("code")):
        return _envelope_error(d)
    # An aggregator names the resolved backend model beside its envelope, not inside the vendor's task.
    outer_model = as_str(d.get("model"))
    inner = as_map(d.get("data"))
    if inner is not None and not _has_status(d) and "done" not in d:
        if "task_status" in inner or "task_result" in inner:
            vendor = "kling"
        elif "code" in d:
            vendor = "aggregator"
        d = inner

    if "done" in d or _is_operation(d):
        return _parse_veo(d)
    if "base_resp" in d:
        return _parse_minimax(d)
    out = as_map(d.get("output"))
    if out is not None and ("task_status" in out or "task_id" in out):
        return _parse_dashscope(d, out)

    err = d.get("error")
    if err and not _has_status(d) and "state" not in d:
        return _envelope_error(d)

    raw = as_str(d.get("status")) or as_str(d.get("task_status")) or as_str(d.get("state"))
    status = normalise_status(raw)
    if vendor == "unknown":
        vendor = _guess_vendor(d, raw)

    urls: list[str] = []
    for key in ("output", "video_url", "url", "video", "videos", "result", "results", "outputs"):
        if key in d:
            urls.extend(_urls_in(d[key]))
    task_result = as_map(d.get("task_result"))
    if task_result is not None:
        urls.extend(_urls_in(task_result.get("videos")))
        urls.extend(_urls_in(task_result.get("images")))
    assets = as_map(d.get("assets"))
    if assets is not None:
        urls.extend(_urls_in(assets.get("video")))
    response = as_map(d.get("response"))
    if response is not None and vendor == "fal":
        urls.extend(_urls_in(response))

    reason, code = _failure_of(d, status, vendor)
    not_exist = (
        _mentions_not_exist(raw)
        or _mentions_not_exist(code)
        or (status is None and _mentions_not_exist(reason))
    )
    return TaskState(
        id=as_str(d.get("id")) or as_str(d.get("task_id")) or as_str(d.get("request_id")) or request_id,
        status=status,
        raw_status=raw,
        progress=_progress(d.get("progress", d.get("progress_percent")), fraction=vendor == "runway"),
        urls=tuple(dict.fromkeys(urls)),
        file_id=as_str(d.get("file_id")),
        failure_reason=reason,
        failure_code=code,
        safety=status in FAILED_STATUSES and _is_safety(reason, code),
        not_exist=not_exist,
        model=as_str(d.get("model")) or outer_model,
        expires_at=as_int(d.get("expires_at")),
        vendor=vendor,
        raw=data,
    )


def _has_status(d: Mapping[str, Any]) -> bool:
    return any(isinstance(d.get(k), str) for k in ("status", "task_status", "state"))


def _is_operation(d: Mapping[str, Any]) -> bool:
    name = d.get("name")
    return isinstance(name, str) and "operations/" in name


def _guess_vendor(d: Mapping[str, Any], raw: str | None) -> str:
    word = raw or ""
    if "failureCode" in d or "failure" in d or word in ("THROTTLED", "PENDING", "RUNNING", "SUCCEEDED"):
        return "runway"
    if "state" in d and ("assets" in d or "failure_reason" in d or word.lower() == "dreaming"):
        return "luma"
    if "version" in d or word in ("starting", "canceled", "aborted") or isinstance(d.get("urls"), Mapping):
        return "replicate"
    if word in ("IN_QUEUE", "COMPLETED") or "queue_position" in d or "response_url" in d:
        return "fal"
    if d.get("object") == "video" or word in ("queued", "in_progress", "completed"):
        return "openai"
    if "task_status" in d:
        return "kling"
    if word.isupper() or "output" in d:
        return "aggregator"
    return "unknown"


def _failure_of(
    d: Mapping[str, Any], status: TaskStatus | None, vendor: str
) -> tuple[str | None, str | None]:
    reason: str | None = None
    code: str | None = as_str(d.get("failureCode")) or as_str(d.get("fail_code"))
    err = d.get("error")
    if isinstance(err, Mapping):
        reason = as_str(err.get("message")) or as_str(err.get("detail"))
        code = code or as_str(err.get("code")) or as_str(err.get("type"))
    elif isinstance(err, str):
        reason = as_str(err)
    reason = (
        reason
        or as_str(d.get("failure"))
        or as_str(d.get("failure_reason"))
        or as_str(d.get("fail_reason"))
        or as_str(d.get("reason"))
    )
    # Kling puts progress chatter in task_status_msg too: only a failed task's message is its reason.
    if reason is None and status in ("failed", "cancelled", None):
        reason = as_str(d.get("task_status_msg")) or as_str(d.get("status_msg"))
        if reason is None and status is not None:
            reason = as_str(d.get("message")) or as_str(d.get("msg"))
    return reason, code


def _is_safety(reason: str | None, code: str | None) -> bool:
    if code and code.upper().startswith("SAFETY"):
        return True
    return any(t is not None and _SAFETY_WORDS.search(t) is not None for t in (reason, code))


def _mentions_not_exist(text: str | None) -> bool:
    return text is not None and _NOT_EXIST_WORDS.search(text) is not None


def _envelope_error(d: Mapping[str, Any]) -> TaskState:
    message = as_str(d.get("message")) or as_str(d.get("msg"))
    err = d.get("error")
    if isinstance(err, Mapping):
        message = message or as_str(err.get("message"))
        code = as_str(err.get("code")) or as_str(err.get("type"))
    else:
        message = message or as_str(err)
        code = as_str(d.get("code"))
    not_exist = _mentions_not_exist(code) or _mentions_not_exist(message) or d.get("status") == 404
    return TaskState(
        id=as_str(d.get("task_id")) or as_str(d.get("id")),
        failure_reason=message,
        failure_code=code,
        safety=code == "1301" or (code != "0" and _is_safety(message, None) and not not_exist),
        not_exist=not_exist,
        vendor="kling" if isinstance(d.get("code"), int) and "request_id" in d else "unknown",
        error=_read_error(d),
        raw=d,
    )


def _parse_veo(d: Mapping[str, Any]) -> TaskState:
    done = d.get("done") is True
    response = as_map(d.get("response")) or {}
    gvr = as_map(response.get("generateVideoResponse")) or response
    samples = gvr.get("generatedSamples") or gvr.get("generated_samples") or gvr.get("videos") or []
    urls = tuple(dict.fromkeys(_urls_in(samples)))
    rai_count = as_int(gvr.get("raiMediaFilteredCount")) or 0
    rai_reasons = gvr.get("raiMediaFilteredReasons")
    rai_text = (
        "; ".join(r for r in rai_reasons if isinstance(r, str)) if isinstance(rai_reasons, list) else None
    )
    err = as_map(d.get("error"))
    reason: str | None = None
    code: str | None = None
    status: TaskStatus
    safety = False
    if not done:
        status = "running"
    elif err is not None:
        status = "failed"
        reason, code = as_str(err.get("message")), as_str(err.get("status")) or as_str(err.get("code"))
        safety = _is_safety(reason, code)
    elif urls:
        status = "succeeded"
    else:
        status = "failed"
        safety = rai_count > 0 or bool(rai_text)
        reason = rai_text or ("the output was filtered by the safety system" if safety else None)
        code = "raiMediaFiltered" if safety else None
    meta = as_map(d.get("metadata")) or {}
    return TaskState(
        id=as_str(d.get("name")),
        status=status,
        raw_status="done" if done else "running",
        urls=urls,
        failure_reason=reason,
        failure_code=code,
        safety=safety,
        not_exist=code is not None and (code == "NOT_FOUND" or _mentions_not_exist(code)),
        model=as_str(meta.get("model")),
        vendor="veo",
        raw=d,
    )


def _parse_minimax(d: Mapping[str, Any]) -> TaskState:
    base = as_map(d.get("base_resp")) or {}
    code = as_int(base.get("status_code"))
    raw = as_str(d.get("status"))
    status = normalise_status(raw)
    reason = as_str(d.get("error_message"))
    if code not in (None, 0):
        # With no task status, a non-zero base_resp is the request's own error (auth, balance, rate limit):
        # left without a status, it is classified as an error envelope rather than a failed task.
        reason = reason or as_str(base.get("status_msg"))
    return TaskState(
        id=as_str(d.get("task_id")),
        status=status,
        raw_status=raw,
        urls=tuple(dict.fromkeys(_urls_in(d.get("video_url") or d.get("download_url")))),
        file_id=as_str(d.get("file_id")),
        failure_reason=reason if status in ("failed", "cancelled", None) else None,
        failure_code=None if code in (None, 0) else str(code),
        safety=status == "failed" and (code == 1026 or _is_safety(reason, None)),
        not_exist=_mentions_not_exist(reason),
        vendor="minimax",
        raw=d,
    )


def _parse_dashscope(d: Mapping[str, Any], out: Mapping[str, Any]) -> TaskState:
    raw = as_str(out.get("task_status"))
    status = normalise_status(raw)
    reason = as_str(out.get("message"))
    code = as_str(out.get("code"))
    urls = [*_urls_in(out.get("video_url")), *_urls_in(out.get("results")), *_urls_in(out.get("url"))]
    return TaskState(
        id=as_str(out.get("task_id")),
        status=status,
        raw_status=raw,
        urls=tuple(dict.fromkeys(urls)),
        failure_reason=reason if status != "succeeded" else None,
        failure_code=code,
        safety=status in FAILED_STATUSES and _is_safety(reason, code),
        not_exist=(raw or "").upper() == "UNKNOWN" or _mentions_not_exist(code),
        model=as_str(d.get("model")),
        vendor="dashscope",
        raw=d,
    )


def task_outcome(
    state: TaskState,
    *,
    status: int | None = 200,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> Outcome:
    """The :class:`~genguard.Outcome` (endpoint ``video``) of one poll of a task.

    A finished task is ok (with ``urls``) or ``content_filtered``/``generation_failed``; a queued or running
    one is ok with its ``task_status`` and ``progress``: one poll of a running task is not a failure.

    >>> task_outcome(parse_task({"id": "t", "status": "failed"})).code
    'generation_failed'
    """
    if request_id is None:
        request_id = header_request_id(headers)
    extra = {
        "task_status": state.status,
        "progress": state.progress,
        "urls": list(state.urls),
        "task_id": state.id,
        "model": state.model,
    }
    if state.status is None and state.raw_status is None and not state.not_exist:
        if state.error is not None or state.failure_reason or state.failure_code:
            return _envelope_outcome(state, status, headers, request_id).with_extra(**extra)
        return Outcome.failure(
            "invalid_response",
            endpoint="video",
            status=status,
            request_id=request_id,
            message="the body is not a task object: no status, state or done field",
        )
    if state.not_exist:
        return Outcome.failure(
            "not_found",
            endpoint="video",
            retryable=True,
            status=status,
            message=state.failure_reason or f"the server does not know task {state.id or ''}".strip(),
            provider_code=state.failure_code or state.raw_status,
            request_id=request_id,
            fix="A fresh task can answer 'not found' for a few seconds: poll again shortly; if it lasts, "
            "the id is wrong or the task expired, so submit it again.",
        ).with_extra(**extra)
    if state.status in FAILED_STATUSES:
        code = "content_filtered" if state.safety else "generation_failed"
        fields: dict[str, Any] = {}
        message = state.failure_reason
        if state.status == "cancelled" and message is None:
            message = "the task was cancelled"
        if code == "generation_failed" and state.failure_reason is None:
            fields["cause"] = "The video task failed and the provider gave no reason."
            fields["fix"] = (
                "With no reason given, a safety filter is the likely cause: try a rephrased prompt (or "
                "another input image), then submit again."
            )
        retryable = None
        if state.failure_code and state.failure_code.upper().startswith("INTERNAL"):
            retryable = True
        return Outcome.failure(
            code,
            endpoint="video",
            retryable=retryable,
            status=status,
            message=message,
            provider_code=state.failure_code,
            request_id=request_id,
            **fields,
        ).with_extra(**extra)
    return Outcome.success(endpoint="video", status=status, request_id=request_id).with_extra(**extra)


def _envelope_outcome(
    state: TaskState, status: int | None, headers: Mapping[str, str] | None, request_id: str | None
) -> Outcome:
    # An envelope error often rides on HTTP 200; the classifier then judges by the body's codes alone.
    outcome = classify_error(status, headers, state.raw, endpoint="video")
    if not outcome.ok:
        if request_id and not outcome.request_id:
            outcome = outcome.replace(request_id=request_id)
        return outcome
    code = "not_found" if state.not_exist else ("prompt_blocked" if state.safety else "bad_request")
    return Outcome.failure(
        code,
        endpoint="video",
        status=status,
        message=state.failure_reason,
        provider_code=state.failure_code,
        request_id=request_id,
    )


# -- recognising ----------------------------------------------------------------------------------------


def detect_media(data: object) -> Literal["image", "video"] | None:
    """Recognise a bare JSON body as an images response or a media task of any vendor; ``None`` otherwise.

    >>> detect_media({"created": 1, "data": []}), detect_media({"done": False, "name": "operations/x"})
    ('image', 'video')
    """
    d = as_map(data)
    if d is None:
        return None
    items = d.get("data")
    if isinstance(items, list):
        if not items:
            return "image" if "created" in d else None
        return "image" if parse_image_response(d) is not None else None
    if "choices" in d or d.get("object") == "response":
        # A chat answer; or a Responses API body, whose status and output are no media task's.
        return None
    if parse_image_response(d) is not None:
        # No images, only the filter's word for them (Fireworks' finishReason CONTENT_FILTERED).
        return "image"
    state = parse_task(d)
    if state.status is not None or state.vendor in ("veo", "dashscope", "minimax", "kling"):
        return "video"
    if state.not_exist and "task_not_exist" in (state.failure_code or "").lower():
        return "video"
    return None
