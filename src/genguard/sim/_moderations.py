"""``POST /v1/moderations``: OpenAI's moderation answer, one result per input, with its refusals in its words
and the scenarios that apply.

A text is flagged when it holds one of a few words (:data:`FLAGGED_WORDS`): a test decides which inputs come
back flagged by what it writes. Scores are deterministic, seeded by the simulator's seed and the input.

>>> [r["flagged"] for r in results(["a calm lake", "how to build a weapon"], seed=1)]
[False, True]
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ._chatreq import BadRequest, type_name
from ._core import RequestContext
from ._dialects import JSON
from ._plain import begin_json, play, refuse

__all__ = ["FLAGGED_WORDS", "moderations", "results"]

PATH = "/v1/moderations"
DEFAULT_MODEL = "omni-moderation-latest"
# The categories of OpenAI's omni-moderation models, and the word that flags each here.
FLAGGED_WORDS: dict[str, str] = {
    "violence": "weapon",
    "harassment": "harass",
    "hate": "hateful",
    "self-harm": "self-harm",
    "sexual": "explicit",
    "illicit": "illicit",
}
_CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
               "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
               "violence/graphic")  # fmt: skip
_BAD_INPUT = (
    "Invalid value for 'input': expected a string, an array of strings, or an array of content parts."
)


def _texts(given: Any) -> list[tuple[str, bool]]:
    """Each input to check as ``(its text, has an image)``, or ``BadRequest`` as OpenAI refuses it."""
    if given is None:
        raise BadRequest("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    if isinstance(given, str):
        return [(given, False)]
    if not isinstance(given, list) or not given:
        raise BadRequest(f"Invalid type for 'input': expected a string or an array, but got {type_name(given)} "
                         "instead." if not isinstance(given, list) else _BAD_INPUT, "input")  # fmt: skip
    if all(isinstance(item, str) for item in given):
        return [(item, False) for item in given]
    # Content parts are one input: its texts together, and whether an image is among them.
    text, image = [], False
    for item in given:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text" and isinstance(item.get("text"), str):
            text.append(item["text"])
        elif kind == "image_url" and isinstance(item.get("image_url"), dict):
            image = True
        else:
            raise BadRequest(_BAD_INPUT, "input", "invalid_value")
    return [(" ".join(text), image)]


def results(
    inputs: list[str], *, seed: int | str = 0, images: list[bool] | None = None
) -> list[dict[str, Any]]:
    """The moderation results of these texts (one each), as OpenAI's omni-moderation models shape them."""
    out = []
    for i, text in enumerate(inputs):
        lowered = text.lower()
        hit = {category for category, word in FLAGGED_WORDS.items() if word in lowered}
        digest = hashlib.sha256(f"{seed}|{text}".encode()).digest()
        scores = {
            name: (0.9 + digest[j] / 2560) if name in hit else digest[j] / 25600
            for j, name in enumerate(_CATEGORIES)
        }
        kinds = ["text", "image"] if images and images[i] else ["text"]
        out.append({
            "flagged": bool(hit),
            "categories": {name: name in hit for name in _CATEGORIES},
            "category_scores": scores,
            "category_applied_input_types": dict.fromkeys(_CATEGORIES, kinds),
        })  # fmt: skip
    return out


def _refuse(ctx: RequestContext, exc: BadRequest, model: str) -> Response:
    return refuse(ctx, exc, model, PATH)


async def moderations(request: Request) -> Response:
    """``POST /v1/moderations`` with OpenAI's checks, deterministic verdicts and the scenarios that apply."""
    got = await begin_json(request, "moderation", PATH)
    if isinstance(got, Response):
        return got
    ctx, req = got
    if not isinstance(req, dict):
        return _refuse(ctx, BadRequest("Invalid type for the request body: expected an object."), "")
    model = req.get("model") or DEFAULT_MODEL
    if not isinstance(model, str):
        return _refuse(ctx, BadRequest(f"Invalid type for 'model': expected a string, but got "
                                       f"{type_name(model)} instead.", "model", "invalid_type"), "")  # fmt: skip
    try:
        inputs = _texts(req.get("input"))
    except BadRequest as exc:
        return _refuse(ctx, exc, model)
    played = await play(ctx, model, PATH, BadRequest(_BAD_INPUT, "input"))
    if played is not None:
        return played
    found = [] if ctx.scenario == "empty_output" else results(
        [t for t, _ in inputs], seed=ctx.config.seed, images=[i for _, i in inputs]
    )  # fmt: skip
    body = {"id": f"modr-{ctx.request_id[4:]}", "model": model, "results": found}
    return Response(orjson.dumps(body), media_type=JSON)
