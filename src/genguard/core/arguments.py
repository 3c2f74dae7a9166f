"""Checks for the arguments of genguard's public entry points: a wrong type or value fails at the call with a
message naming the parameter, what it got and what it takes.

Without them a mistake surfaces far from its cause, or not at all: a str given where a list of str is wanted
is iterated into letters (``fallbacks="gpt-4o-mini"`` tried twelve one-letter models), a misspelt failure code
never matches, a negative timeout fails inside the socket layer. Type mistakes raise :class:`TypeError`; values
out of range raise :class:`ValueError`, or the ``error`` given (:class:`~genguard.ConfigError`, itself a
ValueError, where the value is configuration).

These are the building blocks; ``genguard.client.arguments`` combines them per entry point. Each check costs
O(size of the argument) and copies nothing deep, and runs once per call, never once per attempt.

>>> str_items("fallbacks", ["gpt-4o-mini"])
('gpt-4o-mini',)
>>> str_items("fallbacks", "gpt-4o-mini")
Traceback (most recent call last):
...
TypeError: fallbacks must be a list of str, got the str 'gpt-4o-mini', which would be read letter by letter; pass fallbacks=['gpt-4o-mini']
>>> codes("retry_on", ["rate_limted"])
Traceback (most recent call last):
...
ValueError: unknown failure code 'rate_limted' in retry_on; did you mean 'rate_limited'?
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from .taxonomy import CODES

__all__ = [
    "callables",
    "codes",
    "flag",
    "function",
    "instance",
    "items",
    "number",
    "one_of",
    "shown",
    "str_items",
    "str_mapping",
    "text",
    "whole",
]

ErrorType = type[ValueError]


def shown(value: object, *, secret: bool = False) -> str:
    """``value`` for an error message: its type and a short repr (only the type when it may be a secret).

    >>> shown(-1), shown("x" * 80)[:12], shown(b"sk-123", secret=True)
    ('the int -1', "the str 'xxx", 'a bytes value')
    """
    if value is None:
        return "None"
    kind = type(value).__name__
    if secret:
        return f"an {kind} value" if kind[0] in "aeiou" else f"a {kind} value"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"the {kind} {text}"


def _type_error(name: str, wanted: str, value: object, hint: str = "", *, secret: bool = False) -> NoReturn:
    raise TypeError(f"{name} must be {wanted}, got {shown(value, secret=secret)}{hint}")


def _is_number(value: object) -> bool:
    # bool is an int to Python, but True as a timeout or a count is a mistake, not a number.
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(
    name: str,
    value: Any,
    *,
    above: float | None = None,
    at_least: float | None = None,
    unit: str = "",
    none_ok: bool = False,
    finite: bool = True,
    error: ErrorType = ValueError,
) -> float | None:
    """``value`` as a float: a real number (not a bool, not a str) above ``above`` or at least ``at_least``.

    >>> number("timeout", 2, above=0, unit="seconds")
    2.0
    >>> number("timeout", -1, above=0, unit="seconds")
    Traceback (most recent call last):
    ...
    ValueError: timeout must be a number of seconds above 0, got the int -1
    """
    if value is None and none_ok:
        return None
    of = f"a number of {unit}" if unit else "a number"
    if above is not None:
        wanted = f"{of} above {above:g}"
    elif at_least == 0:
        wanted = f"{of}, 0 or more (not negative)"
    elif at_least is not None:
        wanted = f"{of} of at least {at_least:g}"
    else:
        wanted = of
    if not finite:
        wanted += " (inf for no limit)"
    if none_ok:
        wanted += ", or None"
    if not _is_number(value):
        _type_error(name, wanted, value)
    v = float(value)
    if (
        math.isnan(v)
        or (finite and math.isinf(v))
        or (above is not None and v <= above)
        or (at_least is not None and v < at_least)
    ):
        raise error(f"{name} must be {wanted}, got {shown(value)}")
    return v


def whole(
    name: str, value: Any, *, at_least: int = 0, none_ok: bool = False, error: ErrorType = ValueError
) -> int | None:
    """``value`` as an int of at least ``at_least`` (a float such as 2.0 or a str such as "2" is refused).

    >>> whole("n", "2", at_least=1)
    Traceback (most recent call last):
    ...
    TypeError: n must be a whole number of at least 1, got the str '2'
    """
    if value is None and none_ok:
        return None
    wanted = f"a whole number of at least {at_least}" + (", or None" if none_ok else "")
    if isinstance(value, bool) or not isinstance(value, int):
        _type_error(name, wanted, value)
    if value < at_least:
        raise error(f"{name} must be {wanted}, got {shown(value)}")
    return int(value)


def flag(name: str, value: Any) -> bool:
    """``value`` when it is ``True`` or ``False``: a str such as "false" would read as true.

    >>> flag("stream", "false")
    Traceback (most recent call last):
    ...
    TypeError: stream must be True or False, got the str 'false'
    """
    if value is True or value is False:
        return bool(value)
    _type_error(name, "True or False", value)


def text(
    name: str,
    value: Any,
    *,
    none_ok: bool = False,
    empty_ok: bool = False,
    example: str = "",
    error: ErrorType = ValueError,
) -> str | None:
    """``value`` when it is a str (non-blank unless ``empty_ok``); ``example`` shows a good value.

    >>> text("model", "", example="gpt-4o-mini")
    Traceback (most recent call last):
    ...
    ValueError: model must be a non-empty str, e.g. model='gpt-4o-mini', got the str ''
    """
    if value is None and none_ok:
        return None
    wanted = "a str" if empty_ok else "a non-empty str"
    if example:
        wanted += f", e.g. {name}={example!r}"
    if none_ok:
        wanted += ", or None"
    if not isinstance(value, str):
        _type_error(name, wanted, value)
    if not empty_ok and not value.strip():
        raise error(f"{name} must be {wanted}, got {shown(value)}")
    return value


def _items(name: str, value: Any, wanted: str, *, example: str, secret: bool = False) -> tuple[Any, ...]:
    # The container rule every list-taking argument shares: a str or bytes would be iterated into letters, a
    # mapping into its keys, so neither is ever taken for a list.
    if isinstance(value, list | tuple):
        return tuple(value)
    if isinstance(value, str):
        hint = "" if secret else f", which would be read letter by letter; pass {name}=[{value!r}]"
        _type_error(name, wanted, value, hint, secret=secret)
    if isinstance(value, bytes | bytearray | Mapping) or not hasattr(value, "__iter__"):
        _type_error(name, wanted, value, f"; pass e.g. {name}={example}" if example else "", secret=secret)
    return tuple(value)  # a set, a generator: read once, here


def items(name: str, value: Any, *, example: str = "") -> tuple[Any, ...]:
    """``value``'s items as a tuple: a list, tuple, set or other iterable, never a str, bytes or a mapping.

    >>> items("labels", "positive")
    Traceback (most recent call last):
    ...
    TypeError: labels must be a list, got the str 'positive', which would be read letter by letter; pass labels=['positive']
    """
    return _items(name, value, "a list", example=example)


def str_items(
    name: str,
    value: Any,
    *,
    none_ok: bool = False,
    empty_ok: bool = True,
    blank_ok: bool = False,
    example: str = "",
    error: ErrorType = ValueError,
) -> tuple[str, ...] | None:
    """``value`` as a tuple of str: a list, tuple, set or other iterable of str, never a str itself.

    ``empty_ok`` allows no items; ``blank_ok`` allows items that are empty or whitespace.

    >>> str_items("fallbacks", ("a", 1))
    Traceback (most recent call last):
    ...
    TypeError: fallbacks[1] must be a str, got the int 1
    """
    if value is None and none_ok:
        return None
    wanted = "a list of str" + (", or None" if none_ok else "")
    items = _items(name, value, wanted, example=example or "['...']")
    if not items and not empty_ok:
        raise error(f"{name} must not be empty; pass e.g. {name}={example or ['...']}")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            _type_error(f"{name}[{i}]", "a str", item)
        if not blank_ok and not item.strip():
            raise error(f"{name}[{i}] must be a non-empty str, got {shown(item)}")
    return items


def codes(
    name: str, value: Any, *, none_ok: bool = False, error: ErrorType = ValueError
) -> frozenset[str] | None:
    """``value`` as a frozenset of failure codes, each one of :data:`genguard.CODES`; an unknown one is refused
    with the closest real code.

    >>> sorted(codes("fallback_on", {"unavailable", "server_error"}))
    ['server_error', 'unavailable']
    """
    if value is None and none_ok:
        return None
    items = str_items(name, value, none_ok=none_ok, example="['rate_limited', 'server_error']", error=error)
    assert items is not None
    for code in items:
        if code not in CODES:
            close = difflib.get_close_matches(code, CODES, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "genguard.CODES lists them (docs/failures.md)"
            raise error(f"unknown failure code {code!r} in {name}; {hint}")
    # A frozenset given is kept as it is: a policy copied with dataclasses.replace stays identical, repr too.
    return value if type(value) is frozenset else frozenset(items)


def str_mapping(
    name: str,
    value: Any,
    *,
    none_ok: bool = False,
    secret_values: bool = False,
    example: str = "",
    error: ErrorType = ValueError,
) -> dict[str, str] | None:
    """``value`` as a dict of str to str (a copy, one level deep); ``secret_values`` keeps values out of
    messages (headers may carry keys).

    >>> str_mapping("default_query", {"api-version": 2024})
    Traceback (most recent call last):
    ...
    TypeError: default_query['api-version'] must be a str, got the int 2024
    """
    if value is None and none_ok:
        return None
    if not isinstance(value, Mapping):
        wanted = "a dict of str to str" + (", or None" if none_ok else "")
        _type_error(name, wanted, value, f"; pass e.g. {name}={example}" if example else "")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            _type_error(f"a key of {name}", "a str", key)
        if not key.strip():
            raise error(f"a key of {name} is empty; every name needs at least one character")
        if not isinstance(item, str):
            _type_error(f"{name}[{key!r}]", "a str", item, secret=secret_values)
        out[key] = item
    return out


def function(name: str, value: Any, *, none_ok: bool = False, takes: str = "") -> Any:
    """``value`` when it is callable; ``takes`` says what it is called with.

    >>> function("parse", None)
    Traceback (most recent call last):
    ...
    TypeError: parse must be a function, got None
    """
    if value is None and none_ok:
        return None
    if not callable(value):
        wanted = "a function" + (f" of {takes}" if takes else "") + (", or None" if none_ok else "")
        _type_error(name, wanted, value)
    return value


def callables(name: str, value: Any, *, takes: str = "") -> tuple[Callable[..., Any], ...]:
    """``value`` as a tuple of callables; a single callable is refused with the list it belongs in.

    >>> callables("hooks", print)
    Traceback (most recent call last):
    ...
    TypeError: hooks must be a list of functions, got the builtin_function_or_method <built-in function print>; pass hooks=[print]
    """
    wanted = "a list of functions" + (f" of {takes}" if takes else "")
    if callable(value) and not isinstance(value, list | tuple):
        label = getattr(value, "__name__", "hook")
        _type_error(name, wanted, value, f"; pass {name}=[{label}]")
    items = _items(name, value, wanted, example="[my_hook]")
    for i, item in enumerate(items):
        if not callable(item):
            _type_error(f"{name}[{i}]", "a function" + (f" of {takes}" if takes else ""), item)
    return items


def instance(name: str, value: Any, kind: Any, wanted: str, *, none_ok: bool = False, hint: str = "") -> Any:
    """``value`` when it is a ``kind`` (a class, a tuple or union of classes; ``wanted`` names it for people),
    else a TypeError ending in ``hint``.

    >>> instance("retry", {"max_attempts": 2}, int, "an int")
    Traceback (most recent call last):
    ...
    TypeError: retry must be an int, got the dict {'max_attempts': 2}
    """
    if value is None and none_ok:
        return None
    if not isinstance(value, kind):
        _type_error(name, wanted + (", or None" if none_ok else ""), value, hint)
    return value


def one_of(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` when it is one of ``choices``.

    >>> one_of("endpoint", "images", ("chat", "image", "video"))
    Traceback (most recent call last):
    ...
    ValueError: endpoint must be one of 'chat', 'image', 'video', got the str 'images'
    """
    if not isinstance(value, str):
        _type_error(name, "one of " + ", ".join(map(repr, choices)), value)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {shown(value)}")
    return value
