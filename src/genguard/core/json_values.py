"""Typed reads of parsed JSON values, shared by the body readers: never raise, ``None`` for the wrong type.

>>> as_str(" t1 "), as_str(12), as_str(True), as_int(3.9), as_map([1]) is None
('t1', '12', None, 3, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

__all__ = ["as_float", "as_int", "as_map", "as_str", "is_map"]


def is_map(value: object) -> TypeGuard[Mapping[str, Any]]:
    """Whether ``value`` is a JSON object (any mapping)."""
    # orjson gives plain dicts: an exact type check skips the ABC machinery on the hot path.
    return type(value) is dict or isinstance(value, Mapping)


def as_map(value: object) -> Mapping[str, Any] | None:
    """``value`` if it is a JSON object, else ``None``."""
    return value if is_map(value) else None


def as_str(value: object) -> str | None:
    """A non-blank string, stripped; numbers as their text; ``None`` for anything else."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return None


def as_int(value: object) -> int | None:
    """An integer (a finite float truncated); ``None`` for booleans and anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def as_float(value: object) -> float | None:
    """A finite number as a float; ``None`` for booleans, NaN, infinities and anything else.

    >>> as_float(3), as_float(float("nan")), as_float("1.5")
    (3.0, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
