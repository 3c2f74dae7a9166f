"""JSON bytes of any value a JSON parser can give, for the readers that must never raise.

orjson refuses integers past 64 bits, which the standard library's ``json.loads`` (and so httpx's
``Response.json()`` and the SDKs' ``model_dump()``) gives without complaint.

>>> dumps({"code": 2**64})
b'{"code": 18446744073709551616}'
>>> dumps({"n": 1})
b'{"n":1}'
"""

from __future__ import annotations

import json

import orjson

__all__ = ["dumps"]


def dumps(value: object) -> bytes:
    """``value`` as JSON bytes; what cannot be encoded becomes its ``str``, and ``b""`` if even that fails."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError included
        try:
            return json.dumps(value, default=str).encode()
        except (ValueError, RecursionError):
            return b""
