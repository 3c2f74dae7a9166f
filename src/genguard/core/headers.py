"""Response headers, read one way everywhere: a header by name in any letter case, and the request id.

Every reader (error bodies, chat bodies and streams, images, media tasks) and the clients take the request id
from :func:`request_id`, so the same response names the same request whichever path reads it.

>>> get_header({"Retry-After": "5"}, "retry-after")
'5'
>>> request_id({"CF-Ray": "8a1b2c3d4e5f-AMS"})
'8a1b2c3d4e5f-AMS'
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["REQUEST_ID_HEADERS", "get_header", "request_id"]

REQUEST_ID_HEADERS = ("x-request-id", "request-id", "cf-ray")
"""Where a request id is looked for, first hit wins: OpenAI's, Anthropic's, then Cloudflare's ray id (all a
provider behind Cloudflare may give for a support ticket)."""

_REQUEST_ID_CAP = 200

_CASE_INSENSITIVE: dict[type, bool] = {}


def get_header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """The value of header ``name`` (lower case) from ``httpx.Headers`` or any mapping, in any letter case.

    >>> get_header({"Content-Type": "text/html"}, "content-type")
    'text/html'
    >>> get_header(None, "retry-after") is None
    True
    """
    if not headers:
        return None
    cls = type(headers)
    if _CASE_INSENSITIVE.get(cls) is None:
        # httpx's and starlette's Headers already ignore case; checking the type's home once per type keeps
        # httpx out of the import of this pure module (and of `genguard explain`).
        _CASE_INSENSITIVE[cls] = cls.__module__.partition(".")[0] in ("httpx", "starlette")
    if _CASE_INSENSITIVE[cls]:
        value = headers.get(name)
        return None if value is None else str(value)
    value = headers.get(name)
    if value is not None:
        return str(value)
    for key, val in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return str(val)
    return None


def request_id(headers: Mapping[str, str] | None) -> str | None:
    """The request id a response's headers give: ``x-request-id``, else ``request-id``, else ``cf-ray``;
    blank values are skipped and a hostile one is capped at 200 characters.

    >>> request_id({"x-request-id": " req_1 ", "cf-ray": "8a1b"}), request_id({}) is None
    ('req_1', True)
    """
    if not headers:
        return None
    for name in REQUEST_ID_HEADERS:
        value = get_header(headers, name)
        if value:
            value = value.strip()
            if value:
                return value[:_REQUEST_ID_CAP]
    return None
