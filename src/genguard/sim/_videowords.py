"""Video tasks in each vendor family's own words: the status vocabulary, result fields and ids of REFERENCE.md §6.

A task's state (queued, running, succeeded, failed) is decided by :mod:`genguard.sim._media`; the renderers
here only say it the way Sora, Kling, Runway, Veo or Seedance would.

>>> video_family("kling-v2"), video_family("gen4_turbo"), video_family("gpt-4o")
('kling', 'runway', None)
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["RENDER", "VIDEO_FAMILIES", "Task", "View", "new_task_id", "resolved_model", "video_family"]

VIDEO_FAMILIES: tuple[str, ...] = ("sora", "kling", "runway", "veo", "seedance")


def video_family(model: str) -> str | None:
    """The vendor vocabulary a video model answers in, or None for a model of no known family.

    >>> video_family("kling-v2"), video_family("gen4_turbo"), video_family("gpt-4o")
    ('kling', 'runway', None)
    """
    m = model.lower()
    if m.startswith("sora"):
        return "sora"
    if m.startswith("kling"):
        return "kling"
    if m.startswith(("runway", "gen3", "gen4")):
        return "runway"
    if m.startswith("veo"):
        return "veo"
    if m.startswith(("seedance", "doubao-seedance")):
        return "seedance"
    return None


def resolved_model(family: str, model: str) -> str:
    # Aggregators answer with the backend model they routed to, not the alias the client sent.
    if family == "kling" and not model.endswith(("-master", "-pro", "-std")):
        return model.replace(".", "-") + "-master"
    if family == "runway" and model.startswith("runway-"):
        return model.removeprefix("runway-") + "_turbo"
    if family == "veo" and "generate" not in model:
        return (
            f"{model}.0-generate-001" if model[-1].isdigit() and "." not in model else f"{model}-generate-001"
        )
    if family == "seedance" and not model.startswith("doubao-"):
        return f"doubao-{model}-250528"
    return model


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    family: str
    model: str
    resolved: str
    prompt: str
    size: str
    seconds: str
    created_at: int
    started: float  # the simulator clock's monotonic() at submission: progress is measured from it
    duration: float  # the simulator's task_seconds when the task was submitted
    scenario: str  # ok, content_filtered, generation_failed, task_timeout, stuck_in_queue, download_failed
    variant: str  # which flavour of the scenario: "reason"/"no_reason", "expired"/"html"
    file: str  # the token of its result file


@dataclass(frozen=True, slots=True)
class View:
    """One poll's answer in the model family's own words."""

    task: Task
    state: str
    progress: int
    result_url: Callable[[], str]

    @property
    def safety(self) -> bool:
        return self.state == "failed" and self.task.scenario == "content_filtered"

    @property
    def reason(self) -> bool:
        return self.task.variant != "no_reason"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sora(v: View) -> dict[str, Any]:
    t = v.task
    words = {"queued": "queued", "running": "in_progress", "succeeded": "completed", "failed": "failed"}
    done = v.state in ("succeeded", "failed")
    completed_at = int(t.created_at + t.duration) if done else None
    error = None
    if v.safety:
        error = {
            "code": "moderation_blocked",
            "message": "Your request was blocked by our moderation system.",
        }
    elif v.state == "failed" and v.reason:
        error = {
            "code": "video_generation_failed",
            "message": "Video generation failed due to an internal error.",
        }
    return {
        "id": t.id, "object": "video", "created_at": t.created_at, "status": words[v.state],
        "model": t.resolved, "progress": v.progress, "seconds": t.seconds, "size": t.size,
        "prompt": t.prompt, "completed_at": completed_at,
        "expires_at": completed_at + 3600 if completed_at and v.state == "succeeded" else None,
        "error": error, "remixed_from_video_id": None,
    }  # fmt: skip


def _kling(v: View) -> dict[str, Any]:
    t = v.task
    words = {"queued": "submitted", "running": "processing", "succeeded": "succeed", "failed": "failed"}
    msg = ""
    if v.safety:
        msg = (
            "Failure to pass the risk control system: the content may involve risk, please modify and retry."
        )
    elif v.state == "failed" and v.reason:
        msg = "Video generation failed: internal service error, please try again later."
    data: dict[str, Any] = {
        "task_id": t.id, "task_status": words[v.state], "task_status_msg": msg,
        "created_at": t.created_at * 1000, "updated_at": int(time.time() * 1000),
    }  # fmt: skip
    if v.state == "succeeded":
        data["task_result"] = {
            "videos": [{"id": t.file, "url": v.result_url(), "duration": t.seconds or "5"}]
        }
    return {"code": 0, "message": "SUCCEED", "request_id": secrets.token_hex(8), "data": data,
            "model": t.resolved, "seconds": ""}  # fmt: skip


def _runway(v: View) -> dict[str, Any]:
    t = v.task
    # Runway's queue word for "over your concurrency limit" is what a task stuck in the queue shows.
    queued = "THROTTLED" if t.scenario == "stuck_in_queue" else "PENDING"
    words = {"queued": queued, "running": "RUNNING", "succeeded": "SUCCEEDED", "failed": "FAILED"}
    out: dict[str, Any] = {"id": t.id, "status": words[v.state], "createdAt": _iso(t.created_at),
                           "model": t.resolved, "seconds": ""}  # fmt: skip
    if v.state == "running":
        out["progress"] = round(v.progress / 100, 2)
    if v.safety:
        out["failure"] = "The input text was flagged by our content moderation system."
        out["failureCode"] = "SAFETY.INPUT.TEXT"
    elif v.state == "failed" and v.reason:
        out["failure"] = "An unexpected error occurred while generating the output."
        out["failureCode"] = "INTERNAL.BAD_OUTPUT.CODE01"
    if v.state == "succeeded":
        out["output"] = [v.result_url()]
    return out


def _veo(v: View) -> dict[str, Any]:
    t = v.task
    out: dict[str, Any] = {"name": f"models/{t.resolved}/operations/{t.id}", "id": t.id,
                           "model": t.resolved, "seconds": "",
                           "metadata": {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta."
                                                 "PredictLongRunningMetadata"}}  # fmt: skip
    if v.state in ("queued", "running"):
        out["done"] = False
        return out
    out["done"] = True
    kind = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
    if v.safety:
        gen: dict[str, Any] = {
            "raiMediaFilteredCount": 1,
            "raiMediaFilteredReasons": [
                "Sorry, we can't create videos from prompts that may violate our safety guidelines. "
                "Please rephrase your prompt and try again. Support code: 58061214"
            ],
        }
        out["response"] = {"@type": kind, "generateVideoResponse": gen}
    elif v.state == "failed" and v.reason:
        out["error"] = {"code": 13, "message": "Video generation failed: an internal error occurred."}
    elif v.state == "failed":
        out["response"] = {"@type": kind, "generateVideoResponse": {}}
    else:
        sample = {"video": {"uri": v.result_url()}}
        out["response"] = {"@type": kind, "generateVideoResponse": {"generatedSamples": [sample]}}
    return out


def _seedance(v: View) -> dict[str, Any]:
    t = v.task
    words = {"queued": "SUBMITTED", "running": "IN_PROGRESS", "succeeded": "SUCCESS", "failed": "FAILED"}
    reason = ""
    if v.safety:
        reason = "OutputVideoSensitiveContentDetected: the generated video may contain sensitive content."
    elif v.state == "failed" and v.reason:
        reason = "InternalServiceError: the service encountered an unexpected internal error."
    out: dict[str, Any] = {
        "id": t.id, "task_id": t.id, "object": "video", "model": t.resolved, "status": words[v.state],
        "progress": v.progress, "seconds": "", "size": t.size, "created_at": t.created_at,
        "fail_reason": reason,
    }  # fmt: skip
    if v.state == "succeeded":
        out["output"] = [v.result_url()]
    return out


RENDER: dict[str, Callable[[View], dict[str, Any]]] = {
    "sora": _sora, "kling": _kling, "runway": _runway, "veo": _veo, "seedance": _seedance,
}  # fmt: skip


def new_task_id(family: str) -> str:
    if family == "sora":
        return f"video_{secrets.token_hex(16)}"
    if family == "kling":
        return str(10**17 + secrets.randbelow(9 * 10**17))
    if family == "runway":
        h = secrets.token_hex(16)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
    if family == "seedance":
        return f"cgt-{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)[:5]}"
    return secrets.token_hex(6)
