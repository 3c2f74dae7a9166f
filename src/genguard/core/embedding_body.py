"""Embeddings responses: ``{"object": "list", "data": [{"embedding": [...], "index": 0}], "usage": {...}}``.

An embedding is usable when every vector is a non-empty list of finite numbers (or a base64 string, with
``encoding_format: base64``). A 2xx with no vectors is ``empty_output``; one that is not an embeddings list at
all is ``invalid_response``.

>>> embedding_outcome({"object": "list", "data": [{"embedding": [0.1, 0.2], "index": 0}]}).ok
True
>>> embedding_outcome({"object": "list", "data": []}).code
'empty_output'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .error_verdict import invalid_response
from .headers import request_id
from .outcome import Outcome, Usage

__all__ = ["embedding_outcome"]


def _usable(vector: object) -> bool:
    if isinstance(vector, str):
        return bool(vector)  # encoding_format=base64
    if not isinstance(vector, list) or not vector:
        return False
    return all(type(x) in (float, int) and math.isfinite(x) for x in vector)


def embedding_outcome(
    data: Any, *, status: int | None = 200, headers: Mapping[str, str] | None = None
) -> Outcome:
    """The Outcome of a 2xx embeddings body; ``extra["vectors"]`` says how many came back."""
    rid = request_id(headers) if headers else None
    items = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        return invalid_response(
            "a 2xx body that is not an embeddings list (no 'data' array)", status, rid, "embedding"
        )
    usage = Usage.from_dict(data.get("usage"))
    if not items:
        return Outcome.failure(
            "empty_output",
            endpoint="embedding",
            status=status,
            request_id=rid,
            usage=usage,
            message="the response held no embeddings",
        )
    bad = [
        i
        for i, item in enumerate(items)
        if not (isinstance(item, Mapping) and _usable(item.get("embedding")))
    ]
    if bad:
        return invalid_response(
            f"embedding {bad[0]} of {len(items)} is missing or not a list of numbers",
            status,
            rid,
            "embedding",
        )
    return Outcome.success(endpoint="embedding", status=status, request_id=rid, usage=usage).with_extra(
        vectors=len(items)
    )
