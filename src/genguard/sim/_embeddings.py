"""``POST /v1/embeddings``: OpenAI's embeddings, with its refusals in its words and the scenarios that apply.

Vectors are deterministic: each is seeded by the simulator's seed, the model and the input (a text, or a token
array), so the same input always embeds the same way and a test can compare vectors across calls. They are unit
length, as OpenAI's are, and ``dimensions`` shortens a vector the way ``text-embedding-3`` does: the first
``dimensions`` values of the full vector, normalised again. ``encoding_format: base64`` gives the little-endian
float32 bytes base64-encoded, which is what the official SDK asks for by default and decodes.

>>> vector(b"k", 3) == vector(b"k", 3), len(vector(b"k", 8)), round(sum(x * x for x in vector(b"k", 8)), 5)
(True, 8, 1.0)
"""

from __future__ import annotations

import array
import base64
import hashlib
import math
import sys
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ._chatreq import BadRequest, estimate_tokens, type_name
from ._core import RequestContext
from ._dialects import JSON
from ._plain import begin_json, play, refuse

__all__ = ["embeddings", "vector"]

PATH = "/v1/embeddings"
MAX_INPUTS = 2048
"""The most inputs OpenAI embeds in one request."""
MAX_INPUT_TOKENS = 8192
"""The longest input, in tokens, of OpenAI's embedding models."""

# The full length of each model's vectors (by name prefix); any other model gets DEFAULT_DIMENSIONS.
_DIMENSIONS: tuple[tuple[str, int], ...] = (
    ("text-embedding-3-large", 3072),
    ("text-embedding-3-small", 1536),
    ("text-embedding-ada-002", 1536),
)
DEFAULT_DIMENSIONS = 1536
# Models that have one length only: OpenAI refuses ``dimensions`` for them.
_FIXED = ("text-embedding-ada-002",)
_FORMATS = ("float", "base64")
_BAD_INPUT = (
    "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
)
_SCALE = 1.0 / 2**31
_LITTLE = sys.byteorder == "little"


def native_dimensions(model: str) -> int:
    """The length of ``model``'s vectors when ``dimensions`` is not given.

    >>> native_dimensions("text-embedding-3-large"), native_dimensions("nomic-embed-text")
    (3072, 1536)
    """
    name = model.rpartition("/")[2]
    return next((n for prefix, n in _DIMENSIONS if name.startswith(prefix)), DEFAULT_DIMENSIONS)


def vector(key: bytes, dims: int) -> array.array[float]:
    """A unit vector of ``dims`` float32 values seeded by ``key``. A shorter one is the longer one's start,
    normalised again: SHAKE's output for a length is the prefix of its output for any longer length."""
    raw = array.array("I", hashlib.shake_256(key).digest(4 * dims))
    if not _LITTLE:
        raw.byteswap()
    values = [x * _SCALE - 1.0 for x in raw]
    norm = math.sqrt(math.fsum(v * v for v in values)) or 1.0
    return array.array("f", [v / norm for v in values])


def _inputs(req: dict[str, Any]) -> list[str | list[int]]:
    """The inputs to embed, as OpenAI reads ``input``: a text, a token array, or a list of either."""
    given = req.get("input")
    if given is None:
        raise BadRequest("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    if isinstance(given, str):
        items: list[Any] = [given]
    elif isinstance(given, list) and given and all(_is_token(t) for t in given):
        items = [given]
    elif isinstance(given, list):
        items = given
    else:
        raise BadRequest(f"Invalid type for 'input': expected a string or an array, but got {type_name(given)} "
                         "instead.", "input", "invalid_type")  # fmt: skip
    if not items or len(items) > MAX_INPUTS:
        raise BadRequest(_BAD_INPUT)
    for item in items:
        if isinstance(item, str):
            if not item:
                raise BadRequest(_BAD_INPUT)
        elif not (isinstance(item, list) and item and all(_is_token(t) for t in item)):
            raise BadRequest(_BAD_INPUT)
    return items


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _dimensions(req: dict[str, Any], model: str) -> int:
    native = native_dimensions(model)
    dims = req.get("dimensions")
    if dims is None:
        return native
    if isinstance(dims, bool) or not isinstance(dims, int):
        raise BadRequest(f"Invalid type for 'dimensions': expected an integer, but got {type_name(dims)} "
                         "instead.", "dimensions", "invalid_type")  # fmt: skip
    if model.rpartition("/")[2].startswith(_FIXED):
        raise BadRequest("This model does not support specifying dimensions.", "dimensions")
    if dims < 1:
        raise BadRequest(f"Invalid 'dimensions': integer below minimum value. Expected a value >= 1, but got "
                         f"{dims} instead.", "dimensions", "integer_below_min_value")  # fmt: skip
    if dims > native:
        raise BadRequest(f"Invalid 'dimensions': integer above maximum value. Expected a value <= {native}, but "
                         f"got {dims} instead.", "dimensions", "integer_above_max_value")  # fmt: skip
    return dims


def _check(req: Any) -> tuple[str, list[str | list[int]], int, str]:
    """``(model, inputs, dimensions, encoding_format)``, or ``BadRequest`` as OpenAI refuses the body."""
    if not isinstance(req, dict):
        raise BadRequest(f"Invalid type for the request body: expected an object, but got {type_name(req)} "
                         "instead.", None, "invalid_type")  # fmt: skip
    model = req.get("model")
    if model is None or model == "":
        raise BadRequest("you must provide a model parameter")
    if not isinstance(model, str):
        raise BadRequest(f"Invalid type for 'model': expected a string, but got {type_name(model)} instead.",
                         "model", "invalid_type")  # fmt: skip
    items = _inputs(req)
    dims = _dimensions(req, model)
    fmt = req.get("encoding_format")
    fmt = "float" if fmt is None else fmt
    if fmt not in _FORMATS:
        raise BadRequest(f"Invalid value: '{fmt}'. Supported values are: 'float' and 'base64'.",
                         "encoding_format", "invalid_value")  # fmt: skip
    return model, items, dims, fmt


def _tokens(item: str | list[int]) -> int:
    return estimate_tokens(item) if isinstance(item, str) else len(item)


def _too_long(tokens: int) -> str:
    # OpenAI's words for an embeddings input past the window (a chat overflow is worded otherwise).
    return (f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however you requested {tokens} "
            f"tokens ({tokens} in your prompt; 0 for the completion). Please reduce your prompt; or completion "
            "length.")  # fmt: skip


def _refuse(ctx: RequestContext, exc: BadRequest, model: str, code: str = "bad_request") -> Response:
    return refuse(ctx, exc, model, PATH, code)


def _item(index: int, key: bytes, dims: int, fmt: str) -> dict[str, Any]:
    values = vector(key, dims)
    if fmt == "base64":
        if not _LITTLE:
            values.byteswap()
        embedding: Any = base64.b64encode(values.tobytes()).decode()
    else:
        embedding = values.tolist()
    return {"object": "embedding", "index": index, "embedding": embedding}


async def embeddings(request: Request) -> Response:
    """``POST /v1/embeddings`` with OpenAI's checks, deterministic vectors and the scenarios that apply."""
    got = await begin_json(request, "embedding", PATH)
    if isinstance(got, Response):
        return got
    ctx, req = got
    try:
        model, items, dims, fmt = _check(req)
    except BadRequest as exc:
        return _refuse(ctx, exc, str(req.get("model") or "") if isinstance(req, dict) else "")
    counts = [_tokens(item) for item in items]
    longest = max(counts)
    scenario = ctx.scenario
    if longest > MAX_INPUT_TOKENS or scenario == "context_length_exceeded":
        asked = max(longest, MAX_INPUT_TOKENS + 1024)
        return _refuse(ctx, BadRequest(_too_long(asked)), model, "context_length_exceeded")
    played = await play(ctx, model, PATH, BadRequest(_BAD_INPUT))
    if played is not None:
        return played
    data: list[dict[str, Any]] = []
    if ctx.scenario != "empty_output":
        seed = f"{ctx.config.seed}|{model}|".encode()
        for i, item in enumerate(items):
            text = item.encode() if isinstance(item, str) else orjson.dumps(item)
            data.append(_item(i, seed + text, dims, fmt))
    prompt = sum(counts)
    body = {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}  # fmt: skip
    return Response(orjson.dumps(body), media_type=JSON)
