"""How long the server asks us to wait: ``Retry-After`` headers, rate-limit resets and hints in messages.

Every function here is pure: headers (an ``httpx.Headers`` or any mapping, in any letter case) and text in,
seconds out. A wait is never negative; ``None`` means the server did not say.

>>> wait_from_message("Rate limit reached. Please try again in 9m38.016s.")
578.016
>>> retry_wait({"Retry-After-Ms": "1500"}, None)
1.5
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

from .headers import get_header

__all__ = [
    "MS_WAIT_HEADERS",
    "parse_duration",
    "parse_reset",
    "parse_retry_after",
    "reset_wait",
    "retry_wait",
    "wait_from_headers",
    "wait_from_message",
]

# Go-style durations as OpenAI and Groq send them in x-ratelimit-reset-*: "6m0s", "12ms", "2m59.56s".
_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"
_GO_UNIT = r"(?:h|ms|m|s|us|µs|μs|ns)"
_DURATION_RE = re.compile(rf"(?:{_NUM}\s*{_GO_UNIT}\s*)+")
_DURATION_PART_RE = re.compile(rf"({_NUM})\s*({_GO_UNIT})")
_BARE_NUMBER_RE = re.compile(rf"{_NUM}")
_GO_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}

# Wording units, longest first so that "ms" is not read as "m" then "s", and "min" not as "m".
_WORD_UNITS: dict[str, float] = {
    "milliseconds": 1e-3, "millisecond": 1e-3, "msecs": 1e-3, "msec": 1e-3, "ms": 1e-3,
    "hours": 3600.0, "hour": 3600.0, "hrs": 3600.0, "hr": 3600.0, "h": 3600.0,
    "minutes": 60.0, "minute": 60.0, "mins": 60.0, "min": 60.0, "m": 60.0,
    "seconds": 1.0, "second": 1.0, "secs": 1.0, "sec": 1.0, "s": 1.0,
}  # fmt: skip
_WORD_UNIT_RE = "|".join(_WORD_UNITS)
_HINT_RE = re.compile(
    r"(?:(?:try(?:ing)?\s+again|retry(?:ing)?|wait(?:ing)?)\s+(?:(?:in|after|for)\s+)+|^\s*(?:in|after)\s+)"
    r"(?:about\s+|approximately\s+|~\s*)?"
    rf"(?P<d>(?:{_NUM}\s*(?:{_WORD_UNIT_RE})(?![a-z])\s*(?:and\s+)?)+|{_NUM}(?![\d.]))",
    re.IGNORECASE,
)
_HINT_PART_RE = re.compile(rf"({_NUM})\s*({_WORD_UNIT_RE})(?![a-z])", re.IGNORECASE)

# A reset given as a bare number this large is a Unix timestamp, not a number of seconds.
_EPOCH_THRESHOLD = 1e9
_EPOCH_MS_THRESHOLD = 1e12


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (``"6m0s"``, ``"12ms"``, ``"2m59.56s"``) or a bare number of seconds.

    >>> parse_duration("2m59.56s")
    179.56
    >>> parse_duration("soon") is None
    True
    """
    if not isinstance(text, str):
        return None
    if len(text) > 64:
        text = text.strip()  # the cache keeps short values only: a server's odd ones cannot fill memory
        if len(text) > 64:
            return None
    return _duration(text)


@functools.lru_cache(maxsize=1024)
def _duration(text: str) -> float | None:
    # Cached: a limiter reads two reset headers on every answer, and their values repeat ("6ms", "0s"); the
    # regular expressions cost 2 us a value, a quarter of reading a response's rate-limit headers.
    s = text.strip().lower()
    if not s or len(s) > 64:
        return None
    if _BARE_NUMBER_RE.fullmatch(s):
        return _finite(float(s))
    if not _DURATION_RE.fullmatch(s):
        return None
    total = 0.0
    for num, unit in _DURATION_PART_RE.findall(s):
        total += float(num) * _GO_SECONDS[unit]
    return _finite(round(total, 9))


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: a (possibly fractional) number of seconds or an HTTP date.

    A date in the past gives ``0.0``; anything unreadable gives ``None``.

    >>> parse_retry_after("1.5")
    1.5
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    """
    if not isinstance(value, str):
        return None
    s = value.strip()
    if not s or len(s) > 100:
        return None
    if _BARE_NUMBER_RE.fullmatch(s):
        return _finite(float(s))
    try:
        when = parsedate_to_datetime(s)
    except (TypeError, ValueError, IndexError, OverflowError):
        # Not a date: some servers send a duration such as "5s"; read it rather than drop it.
        return parse_duration(s)
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


# Waits in milliseconds, read before Retry-After: OpenAI's and Azure OpenAI's, and the one other Azure services
# send (Azure's SDKs read all three).
MS_WAIT_HEADERS = ("retry-after-ms", "x-ms-retry-after-ms")


def wait_from_headers(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``x-ms-retry-after-ms`` (first) or ``retry-after``; ``None`` when none
    is readable.

    >>> wait_from_headers({"retry-after": "20", "retry-after-ms": "250"})
    0.25
    """
    for name in MS_WAIT_HEADERS:
        ms = get_header(headers, name)
        if ms is not None:
            s = ms.strip()
            if _BARE_NUMBER_RE.fullmatch(s):
                value = _finite(float(s) / 1000.0)
                if value is not None:
                    return value
    ra = get_header(headers, "retry-after")
    if ra is not None:
        return parse_retry_after(ra, now=now)
    return None


def wait_from_message(message: str | None) -> float | None:
    """Seconds from a hint in a provider's message ("Please try again in 1.574s", "retry after 30 seconds").

    >>> wait_from_message("Please try again in 2 minutes.")
    120.0
    >>> wait_from_message("Something broke") is None
    True
    """
    if not message or not isinstance(message, str):
        return None
    m = _HINT_RE.search(message)
    if m is None:
        return None
    d = m.group("d")
    parts = _HINT_PART_RE.findall(d)
    if not parts:
        return _finite(float(d))
    total = 0.0
    for num, unit in parts:
        total += float(num) * _WORD_UNITS[unit.lower()]
    return _finite(round(total, 9))


_OPENAI_BUCKETS = ("requests", "tokens")
_ANTHROPIC_BUCKETS = ("requests", "tokens", "input-tokens", "output-tokens")


def _is_zero(text: str | None) -> bool:
    if text is None:
        return False
    try:
        return float(text.strip()) <= 0
    except ValueError:
        return False


def _reset_seconds(value: str, current: float) -> float | None:
    s = value.strip()
    seconds = parse_duration(s)
    if seconds is not None:
        # Some servers give the reset as a Unix time rather than a countdown, and some in milliseconds
        # (OpenRouter's X-RateLimit-Reset): a number past 1e12 seconds would be 30,000 years from now.
        if seconds > _EPOCH_MS_THRESHOLD:
            return seconds / 1000.0 - current
        return seconds - current if seconds > _EPOCH_THRESHOLD else seconds
    return _timestamp_wait(s, current)


def _timestamp_wait(value: str, current: float) -> float | None:
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp() - current


def parse_reset(value: str, *, now: float | None = None) -> float | None:
    """Seconds until a rate-limit bucket resets, from one reset header's value in any form providers send: a
    Go-style duration or a number of seconds (``x-ratelimit-reset-*``, ``ratelimit-reset``), a Unix time in
    seconds or milliseconds (OpenRouter's ``X-RateLimit-Reset``), or an RFC 3339 timestamp
    (``anthropic-ratelimit-*-reset``). Never negative; ``None`` when unreadable.

    >>> parse_reset("6m0s"), parse_reset("2024-01-01T00:00:30Z", now=1704067200.0)
    (360.0, 30.0)
    >>> parse_reset("1704067212500", now=1704067200.0)
    12.5
    """
    if not isinstance(value, str):
        return None
    seconds = _reset_seconds(value, time.time() if now is None else now)
    return None if seconds is None else max(0.0, seconds)


def reset_wait(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds until an exhausted rate-limit bucket resets: the longest of the buckets whose remaining is 0.

    Reads ``x-ratelimit-{remaining,reset}-{requests,tokens}`` (durations) and
    ``anthropic-ratelimit-*-{remaining,reset}`` (RFC 3339 timestamps).

    >>> reset_wait({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"})
    360.0
    """
    if not headers:
        return None
    current = time.time() if now is None else now
    best: float | None = None
    for bucket in _OPENAI_BUCKETS:
        if _is_zero(get_header(headers, f"x-ratelimit-remaining-{bucket}")):
            reset = get_header(headers, f"x-ratelimit-reset-{bucket}")
            wait = None if reset is None else _reset_seconds(reset, current)
            if wait is not None and (best is None or wait > best):
                best = wait
    for bucket in _ANTHROPIC_BUCKETS:
        if _is_zero(get_header(headers, f"anthropic-ratelimit-{bucket}-remaining")):
            reset = get_header(headers, f"anthropic-ratelimit-{bucket}-reset")
            wait = None if reset is None else _timestamp_wait(reset, current)
            if wait is not None and (best is None or wait > best):
                best = wait
    return None if best is None else max(0.0, best)


def retry_wait(
    headers: Mapping[str, str] | None, message: str | None, *, now: float | None = None
) -> float | None:
    """The wait a server asked for: ``retry-after-ms``, ``retry-after``, a hint in ``message``, then the
    rate-limit reset headers. Never negative; ``None`` when nothing says.

    >>> retry_wait({}, "Please try again in 20s.")
    20.0
    """
    for wait in (wait_from_headers(headers, now=now), wait_from_message(message)):
        if wait is not None:
            return max(0.0, wait)
    return reset_wait(headers, now=now)
