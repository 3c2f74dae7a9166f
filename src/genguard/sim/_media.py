"""The simulator's image and video endpoints, with each model family's quirks and vocabulary.

Images (REFERENCE.md §5): ``POST /v1/images/generations``, ``POST /v1/images/edits`` (JSON or a form).
Videos (REFERENCE.md §6): ``POST /v1/videos`` (multipart form or JSON), ``GET /v1/videos/{id}``,
``GET /v1/videos/{id}/content``. Result URLs point at ``GET /_genguard/files/{name}``, signed links that expire
like a storage bucket's.

>>> [r.path for r in media_routes()][:3]
['/v1/images/generations', '/v1/images/edits', '/v1/videos']
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from genguard.sim._clock import Clock
from genguard.sim._core import ERROR_SCENARIOS, RequestContext, begin
from genguard.sim._mediabytes import HTML_NOT_MEDIA, mp4_bytes, png_bytes
from genguard.sim._videowords import (
    RENDER,
    VIDEO_FAMILIES,
    Task,
    View,
    new_task_id,
    resolved_model,
    video_family,
)

__all__ = ["VIDEO_FAMILIES", "media_routes", "video_family"]

JSON = "application/json"
VARIANT_HEADER = "x-genguard-variant"
_MAX_TASKS = 10_000
_MAX_FILES = 50_000
# Fraction of task_seconds a task spends queued before it starts running.
_QUEUED_SHARE = 0.15
# Where a ``task_timeout`` task's progress stops: visibly started, never near done.
_FROZEN_PROGRESS = 57

# -- state -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _File:
    kind: str  # "png", "mp4" or "html" (the download that is not what it promises)
    seed: str
    ext: str


@dataclass(slots=True)
class _MediaState:
    """Everything the media endpoints remember, kept in the core's ``media`` dict and cleared by a reset."""

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    files: dict[str, _File] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)

    def add_file(self, kind: str, seed: str, ext: str) -> str:
        if len(self.files) >= _MAX_FILES:
            # Oldest first (dicts keep insertion order): their links are long expired in any real use.
            for old in list(self.files)[: _MAX_FILES // 10]:
                del self.files[old]
        token = secrets.token_hex(12)
        self.files[token] = _File(kind, seed, ext)
        return token

    def add_task(self, task: Task) -> None:
        if len(self.tasks) >= _MAX_TASKS:
            for old in list(self.tasks)[: _MAX_TASKS // 10]:
                del self.tasks[old]
                self.polls.pop(old, None)
        self.tasks[task.id] = task


def _state(request: Request) -> _MediaState:
    # Kept in the core's ``media`` dict, which Simulator.reset() clears: a reset forgets tasks and links.
    media: dict[str, Any] = request.app.state.sim.media
    st = media.get("store")
    if st is None:
        st = media["store"] = _MediaState()
    assert isinstance(st, _MediaState)
    return st


# -- shared helpers ----------------------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def _invalid(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> Response:
    # The OpenAI wording of parameter errors, which the official SDK raises as BadRequestError.
    err = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return _json({"error": err}, status)


def _is_hard(code: str) -> bool:
    return code in ERROR_SCENARIOS


def _variant(request: Request, seed: str, choices: tuple[str, str]) -> str:
    asked = request.headers.get(VARIANT_HEADER, "").strip().lower()
    if asked in choices:
        return asked
    # No choice given: pick one per request, deterministically, so chaos runs play both flavours.
    return choices[hashlib.sha256(seed.encode()).digest()[0] & 1]


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.sim.clock
    return clock


def _file_url(request: Request, st: _MediaState, token: str, *, ttl_s: float, expired: bool = False) -> str:
    f = st.files[token]
    # Milliseconds, not whole seconds, so the sub-second TTLs that tests use still mean something.
    now_ms = int(_clock(request).time() * 1000)
    expiry_ms = now_ms - 60_000 if expired else now_ms + int(ttl_s * 1000)
    sig = _sign(st, token, expiry_ms)
    base = str(request.base_url).rstrip("/")
    return f"{base}/_genguard/files/{token}.{f.ext}?se={expiry_ms}&sp=r&sig={sig}"


def _sign(st: _MediaState, token: str, expiry_ms: int) -> str:
    return hmac.new(st.secret, f"{token}:{expiry_ms}".encode(), hashlib.sha256).hexdigest()[:32]


def _bucket_error(status: int, code: str, message: str) -> Response:
    # What S3-style storage answers for a bad or expired signed link: XML, not the API's JSON.
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return Response(body.encode(), status_code=status, media_type="application/xml")


async def serve_file(request: Request) -> Response:
    """``GET /_genguard/files/{name}``: the bytes behind a result URL, while its signature is valid."""
    st = _state(request)
    name = request.path_params["name"]
    token = name.partition(".")[0]
    f = st.files.get(token)
    if f is None:
        return _bucket_error(404, "NoSuchKey", "The specified key does not exist.")
    try:
        expiry_ms = int(request.query_params.get("se", ""))
    except ValueError:
        return _bucket_error(403, "AccessDenied", "Query-string authentication requires the se parameter.")
    if not hmac.compare_digest(request.query_params.get("sig", ""), _sign(st, token, expiry_ms)):
        return _bucket_error(
            403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature."
        )
    if _clock(request).time() * 1000 > expiry_ms:
        return _bucket_error(403, "AccessDenied", "Request has expired")
    return _file_response(f)


def _file_bytes(f: _File) -> bytes:
    if f.kind == "png":
        return png_bytes(f.seed)
    if f.kind == "mp4":
        return mp4_bytes(f.seed)
    return HTML_NOT_MEDIA


def _file_response(f: _File) -> Response:
    # The "html" kind keeps the promised content type: a lying server, caught only by looking at the bytes.
    media_type = "image/png" if f.ext == "png" else "video/mp4"
    return Response(_file_bytes(f), media_type=media_type, headers={"cache-control": "private, max-age=0"})


async def _body(request: Request) -> dict[str, Any] | None:
    """The request's fields, from JSON or a (multipart or urlencoded) form; None when unreadable."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        # An uploaded file (input_reference) is noted by name only: the simulator does not look at it.
        return {k: (v if isinstance(v, str) else getattr(v, "filename", "file")) for k, v in form.items()}
    raw = await request.body()
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


# -- images ------------------------------------------------------------------------------------------

_ONE_IMAGE_MODELS = {
    "dall-e-3": "You must provide n=1 for this model.",
    "qwen-image": "The parameter n must be 1 for model qwen-image: generate one image per request.",
}


def _revise(prompt: str) -> str:
    return f"{prompt.rstrip('. ')}. Rendered in a detailed, photorealistic style with soft natural light."


async def images_generations(request: Request) -> Response:
    """``POST /v1/images/generations`` with each model's parameter rules and the media scenarios."""
    return await _images(request, edit=False)


async def images_edits(request: Request) -> Response:
    """``POST /v1/images/edits``, answered as a generation of the prompt is: as a multipart form (the pictures
    uploaded as ``image`` or ``image[]``, what the official SDKs send), or in its JSON form (GPT image models:
    the pictures named in ``images``, ``{"image_url"}`` or ``{"file_id"}`` each, 1 to 16)."""
    return await _images(request, edit=True)


def _edit_refused(body: dict[str, Any], model: str, *, form: bool) -> Response | None:
    """OpenAI's 400 for an edit it would refuse, or ``None``."""
    if form:
        if not any(k == "image" or k.startswith("image[") for k in body):
            return _invalid(
                "Missing required parameter: 'image'.", param="image", code="missing_required_parameter"
            )
        return None
    if not model.startswith("gpt-image"):
        return _invalid(
            f"Invalid value: '{model}'. JSON image edits support GPT image models only; dall-e-2 edits are "
            "multipart.", param="model", code="invalid_value")  # fmt: skip
    images = body.get("images")
    if not isinstance(images, list) or not images:
        return _invalid(
            "Missing required parameter: 'images'.", param="images", code="missing_required_parameter"
        )
    if len(images) > 16:
        return _invalid(f"Invalid 'images': array too long. Expected an array with maximum length 16, but got an "
                        f"array with length {len(images)} instead.", param="images", code="array_above_max_length")  # fmt: skip
    for i, ref in enumerate(images):
        if not (
            isinstance(ref, dict)
            and (isinstance(ref.get("image_url"), str) or isinstance(ref.get("file_id"), str))
        ):
            return _invalid(f"Invalid 'images[{i}]': expected an object with 'image_url' or 'file_id'.",
                            param=f"images[{i}]", code="invalid_value")  # fmt: skip
    return None


async def _images(request: Request, *, edit: bool) -> Response:
    got = await begin(request, "image")
    if isinstance(got, Response):
        return got
    ctx = got
    body = await _body(request)
    if body is None:
        return _invalid("We could not parse the JSON body of your request.")
    form = request.headers.get("content-type", "").startswith(
        ("multipart/", "application/x-www-form-urlencoded")
    )
    if form and isinstance(body.get("n"), str) and body["n"].isdigit():
        body["n"] = int(body["n"])  # a form's fields are text
    model = str(body.get("model") or ("gpt-image-1" if edit and not form else "dall-e-2"))
    if edit:
        refused = _edit_refused(body, model, form=form)
        if refused is not None:
            return refused
    gpt_image = model.startswith("gpt-image")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return _invalid(
            "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
        )
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        return _invalid(f"Invalid value for 'n': {n!r}. Expected an integer between 1 and 10.", param="n")
    if gpt_image and "response_format" in body:
        return _invalid(
            "Unknown parameter: 'response_format'.", param="response_format", code="unknown_parameter"
        )
    if n > 1 and model in _ONE_IMAGE_MODELS:
        return _invalid(_ONE_IMAGE_MODELS[model], param="n")
    scenario = ctx.scenario
    if scenario == "prompt_blocked" and ctx.dialect == "openai":
        if gpt_image:
            return _json(
                {
                    "error": {
                        "message": "Your request was rejected by the safety system. If you believe this is an error, "
                        "contact us at help.openai.com and include the request ID.",
                        "type": "image_generation_user_error",
                        "param": None,
                        "code": "moderation_blocked",
                    }
                },
                400,
            )
        return _invalid(
            "Your request was rejected as a result of our safety system. Your prompt may contain text that is "
            "not allowed by our safety system.", code="content_policy_violation")  # fmt: skip
    if _is_hard(scenario):
        return ctx.error(scenario, endpoint="image", model=model)
    out: dict[str, Any] = {"created": int(time.time()), "data": []}
    if gpt_image:
        out.update(background="opaque", output_format=body.get("output_format", "png"),
                   quality=body.get("quality", "high"), size=body.get("size", "1024x1024"))  # fmt: skip
        words = len(prompt.split())
        out["usage"] = {
            "input_tokens": words, "input_tokens_details": {"text_tokens": words, "image_tokens": 0},
            "output_tokens": 1056 * n, "total_tokens": words + 1056 * n,
        }  # fmt: skip
    if scenario == "content_filtered":
        return _json(out)
    fmt = "b64_json" if gpt_image else str(body.get("response_format") or "url")
    if fmt not in ("url", "b64_json"):
        return _invalid(
            f"Invalid value: '{fmt}'. Supported values are: 'url' and 'b64_json'.", param="response_format",
            code="invalid_value")  # fmt: skip
    st = _state(request)
    for i in range(n):
        seed = f"{ctx.config.seed}|{model}|{prompt}|{i}"
        broken = _variant(request, seed, ("expired", "html")) if scenario == "download_failed" else ""
        # Inline bytes cannot expire: a broken b64_json result is always bytes that are not an image.
        kind = "html" if broken == "html" or (broken and fmt == "b64_json") else "png"
        item: dict[str, Any] = {}
        if fmt == "b64_json":
            item["b64_json"] = base64.b64encode(png_bytes(seed) if kind == "png" else HTML_NOT_MEDIA).decode()
        else:
            token = st.add_file(kind, seed, "png")
            item["url"] = _file_url(
                request, st, token, ttl_s=ctx.config.image_url_ttl_s, expired=broken == "expired"
            )
        if model == "dall-e-3":
            item["revised_prompt"] = _revise(prompt)
        out["data"].append(item)
    return _json(out)


# -- videos ------------------------------------------------------------------------------------------

_TASK_SCENARIOS = frozenset(
    {"content_filtered", "generation_failed", "task_timeout", "stuck_in_queue", "download_failed"}
)


def _phase(task: Task, now: float) -> tuple[str, int]:
    """``(state, progress)``: state is queued, running, succeeded or failed, in no vendor's words yet."""
    f = (now - task.started) / task.duration if task.duration > 0 else 1.0
    if task.scenario == "stuck_in_queue" or f < _QUEUED_SHARE:
        return "queued", 0
    progress = min(int(100 * (f - _QUEUED_SHARE) / (1 - _QUEUED_SHARE)), 99)
    if task.scenario == "task_timeout":
        return "running", min(progress, _FROZEN_PROGRESS)
    if f < 1.0:
        return "running", progress
    if task.scenario in ("content_filtered", "generation_failed"):
        return "failed", progress
    return "succeeded", 100


def _poll_after_ms(duration: float) -> str:
    # A hint scaled to the task length, so clients of a fast test simulator poll fast too.
    return str(min(max(int(duration * 100), 20), 10_000))


def _blocked(ctx: RequestContext, family: str, model: str) -> Response:
    if family == "kling":
        return _json({"code": 1301, "message": "Trigger the content security policy of the platform, please "
                      "modify the prompt and try again.", "request_id": secrets.token_hex(8)}, 400)  # fmt: skip
    if family == "sora" and ctx.dialect == "openai":
        return _json({"error": {"message": "Your request was blocked by our moderation system.",
                                "type": "invalid_request_error", "param": None,
                                "code": "moderation_blocked"}}, 400)  # fmt: skip
    return ctx.error("prompt_blocked", endpoint="video", model=model)


def _headers(task: Task) -> dict[str, str] | None:
    return {"openai-poll-after-ms": _poll_after_ms(task.duration)} if task.family == "sora" else None


def _render(request: Request, st: _MediaState, task: Task, ttl_s: float) -> dict[str, Any]:
    state, progress = _phase(task, _clock(request).monotonic())

    def result_url() -> str:
        # Each poll signs a fresh link, as Runway and storage-backed vendors do.
        if task.family == "sora":
            return f"{str(request.base_url).rstrip('/')}/v1/videos/{task.id}/content"
        expired = task.scenario == "download_failed" and task.variant == "expired"
        return _file_url(request, st, task.file, ttl_s=ttl_s, expired=expired)

    return RENDER[task.family](View(task, state, progress, result_url))


async def create_video(request: Request) -> Response:
    """``POST /v1/videos``: submit a task; the scenario chosen now stays with the task."""
    got = await begin(request, "video")
    if isinstance(got, Response):
        return got
    ctx = got
    body = await _body(request)
    if body is None:
        return _invalid("We could not parse the JSON body of your request.")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return _invalid(
            "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
        )
    model = str(body.get("model") or "sora-2")
    family = video_family(model)
    if family is None:
        if model not in ctx.config.models:
            return ctx.error("model_not_found", message=f"The model `{model}` does not exist or you do not have "
                             "access to it.", endpoint="video", model=model)  # fmt: skip
        family = "sora"
    scenario = ctx.scenario
    if scenario == "prompt_blocked":
        return _blocked(ctx, family, model)
    if _is_hard(scenario):
        return ctx.error(scenario, endpoint="video", model=model)
    if scenario not in _TASK_SCENARIOS:
        scenario = "ok"
    st = _state(request)
    task_id = new_task_id(family)
    if scenario == "generation_failed":
        variant = _variant(request, task_id, ("reason", "no_reason"))
    elif scenario == "download_failed":
        variant = _variant(request, task_id, ("expired", "html"))
    else:
        variant = ""
    seed = f"{ctx.config.seed}|{model}|{prompt}"
    file = st.add_file("html" if variant == "html" else "mp4", seed, "mp4")
    sora = family == "sora"
    task = Task(
        id=task_id, family=family, model=model, resolved=model if sora else resolved_model(family, model),
        prompt=prompt, size=str(body.get("size") or "720x1280"),
        seconds=str(body.get("seconds") or "4") if sora else "", created_at=int(ctx.state.clock.time()),
        started=ctx.state.clock.monotonic(), duration=ctx.config.task_seconds, scenario=scenario, variant=variant,
        file=file,
    )  # fmt: skip
    st.add_task(task)
    if family == "runway":
        return _json({"id": task.id}, headers=_headers(task))
    return _json(_render(request, st, task, ctx.config.image_url_ttl_s), headers=_headers(task))


def _lookup(request: Request, ctx: RequestContext) -> Task | Response:
    st = _state(request)
    raw = request.path_params["video_id"]
    # A Veo client may poll by the operation name ("models/.../operations/ID"); the id is its last part.
    task_id = raw.rsplit("/operations/", 1)[-1]
    task = st.tasks.get(task_id)
    if task is None:
        return ctx.error(
            "not_found",
            message=f"Video with id '{task_id}' not found.",
            endpoint="video",
            path=request.url.path,
        )
    return task


async def _begin_task(request: Request) -> tuple[RequestContext, Task] | Response:
    """What every request about an existing task does first: auth, limits, the poll's own hard scenario,
    then finding the task; a Response means answer with it as it is."""
    got = await begin(request, "video")
    if isinstance(got, Response):
        return got
    if _is_hard(got.scenario):
        return got.error(got.scenario, endpoint="video", path=request.url.path)
    task = _lookup(request, got)
    return task if isinstance(task, Response) else (got, task)


async def retrieve_video(request: Request) -> Response:
    """``GET /v1/videos/{id}``: the task's state now, in its family's words."""
    got = await _begin_task(request)
    if isinstance(got, Response):
        return got
    ctx, task = got
    st = _state(request)
    polls = st.polls[task.id] = st.polls.get(task.id, 0) + 1
    if task.family == "runway" and polls == 1:
        # An aggregator that has not yet recorded the upstream task answers this; the next poll finds it.
        return _json({"code": "task_not_exist", "message": "task_not_exist", "data": None}, 400)
    return _json(_render(request, st, task, ctx.config.image_url_ttl_s), headers=_headers(task))


async def video_content(request: Request) -> Response:
    """``GET /v1/videos/{id}/content``: the MP4 of a finished task."""
    got = await _begin_task(request)
    if isinstance(got, Response):
        return got
    _, task = got
    state, _ = _phase(task, _clock(request).monotonic())
    if state != "succeeded":
        return _invalid(f"Video '{task.id}' is not ready for download: its status is {state}. "
                        "Poll GET /v1/videos/{id} until it is completed.", param="video_id")  # fmt: skip
    if task.variant == "expired":
        return _bucket_error(403, "AccessDenied", "Request has expired")
    variant = request.query_params.get("variant", "video")
    if variant != "video":
        return _invalid(f"Variant '{variant}' is not available for this video.", param="variant", status=404)
    return _file_response(_state(request).files[task.file])


def media_routes() -> list[Route]:
    """The image, video and file routes, for the simulator's app to mount.

    >>> sorted({m for r in media_routes() for m in (r.methods or ())} - {"HEAD"})
    ['GET', 'POST']
    """
    return [
        Route("/v1/images/generations", images_generations, methods=["POST"]),
        Route("/v1/images/edits", images_edits, methods=["POST"]),
        Route("/v1/videos", create_video, methods=["POST"]),
        Route("/v1/videos/{video_id}/content", video_content, methods=["GET"]),
        Route("/v1/videos/{video_id:path}", retrieve_video, methods=["GET"]),
        Route("/_genguard/files/{name}", serve_file, methods=["GET"]),
    ]
