"""Deterministic output: words from a seed, and JSON values valid against a JSON Schema.

One word is one token, so usage figures match the text exactly.

>>> words(random.Random(1), 4) == words(random.Random(1), 4)
True
>>> value_for_schema({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}},
...                   "required": ["n"]}, random.Random(0))["n"] >= 3
True
"""

from __future__ import annotations

import math
import random
import string
from typing import Any

_WORDS: tuple[str, ...] = (
    "the",
    "a",
    "simulated",
    "answer",
    "arrives",
    "here",
    "with",
    "steady",
    "tokens",
    "that",
    "test",
    "how",
    "clients",
    "read",
    "every",
    "part",
    "of",
    "a",
    "response",
    "stream",
    "model",
    "server",
    "request",
    "retry",
    "limit",
    "budget",
    "careful",
    "quiet",
    "bright",
    "river",
    "stone",
    "signal",
    "orbit",
    "garden",
    "window",
    "paper",
    "lantern",
    "copper",
    "meadow",
    "harbor",
    "thunder",
    "velvet",
    "echo",
    "pixel",
    "canvas",
    "marble",
    "ember",
    "summit",
    "falcon",
    "willow",
    "crystal",
    "compass",
    "anchor",
    "beacon",
    "cedar",
    "delta",
    "fable",
    "glacier",
    "horizon",
    "island",
    "jasmine",
    "kernel",
)


def words(rng: random.Random, n: int) -> list[str]:
    """``n`` words drawn from a fixed vocabulary; the first is capitalised, the last ends a sentence."""
    if n <= 0:
        return []
    out = rng.choices(_WORDS, k=n)
    out[0] = out[0].capitalize()
    out[-1] += "."
    return out


def count_tokens(text: str) -> int:
    """The simulator's token count: whitespace-separated words."""
    return len(text.split())


def value_for_schema(schema: Any, rng: random.Random, *, root: Any = None, depth: int = 0) -> Any:
    """A value valid against ``schema`` (the common subset: types, properties, required, items, enum,
    const, bounds, anyOf/oneOf/allOf, local ``$ref``)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 12:
        return None if depth > 12 else "value"
    if "$ref" in schema:
        return value_for_schema(_resolve(root, schema["$ref"]), rng, root=root, depth=depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            # The first branch that is not null gives the more useful value.
            branches = [b for b in schema[key] if not (isinstance(b, dict) and b.get("type") == "null")]
            return value_for_schema((branches or schema[key])[0], rng, root=root, depth=depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve(root, part["$ref"]) if isinstance(part, dict) and "$ref" in part else part
            if isinstance(part, dict):
                for k, v in part.items():
                    if k in ("properties",) and k in merged:
                        merged[k] = {**merged[k], **v}
                    elif k == "required" and k in merged:
                        merged[k] = [*merged[k], *v]
                    else:
                        merged[k] = v
        return value_for_schema(merged, rng, root=root, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        return _object(schema, rng, root, depth)
    if kind == "array":
        lo = int(schema.get("minItems", 1))
        hi = int(schema.get("maxItems", max(lo, 3)))
        n = max(lo, min(hi, 2))
        items = schema.get("items", {"type": "string"})
        return [value_for_schema(items, rng, root=root, depth=depth + 1) for _ in range(n)]
    if kind == "string":
        return _string(schema, rng)
    if kind in ("integer", "number"):
        return _number(schema, rng, integer=kind == "integer")
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def _resolve(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref.lstrip("#/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _object(schema: dict[str, Any], rng: random.Random, root: Any, depth: int) -> dict[str, Any]:
    props: dict[str, Any] = schema.get("properties") or {}
    required = schema.get("required")
    names = list(props) if required is None else [n for n in props if n in required or rng.random() < 0.5]
    out = {name: value_for_schema(props[name], rng, root=root, depth=depth + 1) for name in names}
    for name in required or ():
        if name not in out:
            out[name] = value_for_schema(
                schema.get("additionalProperties") or {}, rng, root=root, depth=depth + 1
            )
    lo = int(schema.get("minProperties", 0))
    extra = schema.get("additionalProperties", True)
    while len(out) < lo and extra is not False:
        out[f"extra_{len(out)}"] = value_for_schema(
            extra if isinstance(extra, dict) else {}, rng, root=root, depth=depth + 1
        )
    return out


def _string(schema: dict[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2025-01-15T10:30:00Z"
    if fmt == "date":
        return "2025-01-15"
    if fmt == "email":
        return "someone@example.com"
    if fmt in ("uri", "url"):
        return "https://example.com/item"
    if fmt == "uuid":
        return "123e4567-e89b-12d3-a456-426614174000"
    lo = int(schema.get("minLength", 0))
    hi = int(schema.get("maxLength", max(lo, 40)))
    text = " ".join(rng.choices(_WORDS, k=4))
    while len(text) < lo:
        text += " " + rng.choice(_WORDS)
    text = text[:hi]
    if len(text) < lo:
        text += "".join(rng.choices(string.ascii_lowercase, k=lo - len(text)))
    return text


def _number(schema: dict[str, Any], rng: random.Random, *, integer: bool) -> int | float:
    lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    hi = schema.get("maximum", schema.get("exclusiveMaximum", lo + 100))
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        lo = schema["exclusiveMinimum"] + (1 if integer else 0.5)
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        hi = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    if hi < lo:
        hi = lo
    if integer:
        low, high = math.ceil(lo), math.floor(hi)
        value: int | float = rng.randint(low, high) if high >= low else low
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            value = (int(value) // step) * step
            if value < lo:
                value += step
        return value
    return round(rng.uniform(lo, hi), 2) if hi > lo else lo
