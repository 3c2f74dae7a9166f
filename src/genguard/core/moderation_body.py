"""Moderation responses: ``{"id": "modr-...", "model": ..., "results": [{"flagged": ..., "categories": {...},
"category_scores": {...}}]}``, one result per input.

A moderation is usable when every result says whether its input was flagged: OpenAI's ``flagged``, or (as
Mistral's results have no ``flagged``) a ``categories`` map of true and false, flagged when any is true. A
flagged input is the answer the caller asked for, not a failure (``extra["flagged"]`` counts them,
``extra["results"]`` counts the results). A 2xx with no results is ``empty_output``; one that is not a
moderation, or a result with no verdict, is ``invalid_response``.

>>> moderation_outcome({"id": "modr-1", "results": [{"flagged": True, "categories": {"violence": True}}]}).extra
{'results': 1, 'flagged': 1}
>>> moderation_outcome({"id": "modr-1", "results": []}).code
'empty_output'
>>> moderation_outcome({"id": "4f1c", "results": [{"categories": {"violence": False, "pii": True}}]}).extra
{'results': 1, 'flagged': 1}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .error_verdict import invalid_response
from .headers import request_id
from .outcome import Outcome, Usage

__all__ = ["is_moderation", "moderation_outcome"]


def is_moderation(data: Any) -> bool:
    """Whether a 2xx body is a moderation (for a body read with no endpoint named: ``explain``)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("results"), list):
        return False
    results = data["results"]
    ident = data.get("id")
    return (isinstance(ident, str) and ident.startswith("modr")) or (
        bool(results) and all(_verdict(r) is not None for r in results)
    )


def _verdict(result: Any) -> bool | None:
    """Whether a result flags its input (``None``: it does not say)."""
    if not isinstance(result, Mapping):
        return None
    flagged = result.get("flagged")
    if isinstance(flagged, bool):
        return flagged
    categories = result.get("categories")
    if (
        isinstance(categories, Mapping)
        and categories
        and all(isinstance(v, bool) for v in categories.values())
    ):
        return any(categories.values())
    return None


def moderation_outcome(
    data: Any, *, status: int | None = 200, headers: Mapping[str, str] | None = None
) -> Outcome:
    """The Outcome of a 2xx moderations body."""
    rid = request_id(headers) if headers else None
    results = data.get("results") if isinstance(data, Mapping) else None
    if not isinstance(results, list):
        return invalid_response(
            "a 2xx body that is not a moderation (no 'results' array)", status, rid, "moderation"
        )
    usage = Usage.from_dict(data.get("usage"))
    if not results:
        return Outcome.failure(
            "empty_output",
            endpoint="moderation",
            status=status,
            request_id=rid,
            usage=usage,
            message="the response held no moderation results",
        )
    verdicts = [_verdict(r) for r in results]
    for i, verdict in enumerate(verdicts):
        if verdict is None:
            return invalid_response(
                f"moderation result {i} of {len(results)} has no verdict (no flagged true or false, and no "
                "categories of true and false)",
                status,
                rid,
                "moderation",
            )
    flagged = sum(1 for v in verdicts if v)
    return Outcome.success(endpoint="moderation", status=status, request_id=rid, usage=usage).with_extra(
        results=len(results), flagged=flagged
    )
