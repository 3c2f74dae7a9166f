"""The values the bulk modules pass between them: frozen, no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

__all__ = ["ENDPOINTS", "AttemptEvent", "Ended", "InputProblem", "Line", "LineState", "line_key"]

# The request URLs a batch line may name, as the OpenAI Batch API spells them, and the endpoint kind each is: a
# Responses API or legacy completions answer is a text generation, judged as a chat answer is.
ENDPOINTS: Mapping[str, Literal["chat", "embedding", "image", "video", "moderation"]] = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "chat",
    "/v1/completions": "chat",
    "/v1/embeddings": "embedding",
    "/v1/images/generations": "image",
    "/v1/images/edits": "image",  # the JSON form: the pictures to edit named by URL or file id in "images"
    "/v1/videos": "video",
    "/v1/moderations": "moderation",
}

LineState = Literal["pending", "in_flight", "ended"]


def line_key(url: str, body: Mapping[str, Any]) -> str:
    """What a line asks for, as a hash of its url and body (keys sorted): a resumed run whose input changed a
    line's body is told apart from one whose body is the same.

    >>> line_key("/v1/chat/completions", {"b": 1, "a": 2}) == line_key("/v1/chat/completions", {"a": 2, "b": 1})
    True
    """
    digest = hashlib.sha256(url.encode() + b"\n" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Line:
    """One request of the input: ``number`` is its 1-based line (or CSV row) in ``source``."""

    custom_id: str
    url: str
    body: Mapping[str, Any]
    number: int
    source: str = ""
    key: str = ""

    @property
    def endpoint(self) -> Literal["chat", "embedding", "image", "video", "moderation"]:
        return ENDPOINTS[self.url]


@dataclass(frozen=True, slots=True)
class InputProblem:
    """A bad input line: where (``source`` and 1-based ``line``; ``custom_id`` when known), what is wrong and
    what to do. ``str()`` is the message a user reads."""

    source: str
    line: int
    what: str
    fix: str
    custom_id: str | None = None

    def __str__(self) -> str:
        return f"{place(self.source, self.line)}: {self.what}; {self.fix}"


# The source of requests given from Python as objects (a list, a generator): their places are items, not lines.
GIVEN = "requests"


def place(source: str, number: int) -> str:
    """Where a line is, for a message: ``file:line``, or ``requests[i]`` (0-based) for requests given from Python.

    >>> place("in.jsonl", 3), place(GIVEN, 3)
    ('in.jsonl:3', 'requests[2]')
    """
    return f"{source}[{number - 1}]" if source == GIVEN else f"{source}:{number}"


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    """One attempt of one line, with the wall-clock time it ended: what the report charts over time."""

    custom_id: str
    number: int
    code: str | None
    status: int | None
    wait_s: float
    at: float
    latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class Ended:
    """A line that ended, as the journal committed it: ``seq`` is its place in the commit order."""

    seq: int
    custom_id: str
    number: int
    url: str
    outcome: Mapping[str, Any]  # Outcome.to_dict(full=True)
    response: Mapping[str, Any] | None = None  # status_code, request_id, body, as the output line wants
    extra: Mapping[str, Any] = field(default_factory=dict)
