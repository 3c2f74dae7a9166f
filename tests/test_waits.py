"""The waits a server asks for: Retry-After, rate-limit resets and hints in messages (table-driven)."""

from __future__ import annotations

from email.utils import formatdate

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genguard.core.headers import get_header
from genguard.core.waits import (
    parse_duration,
    parse_retry_after,
    reset_wait,
    retry_wait,
    wait_from_headers,
    wait_from_message,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("2m59.56s", 179.56),
        ("1h2m3s", 3723.0),
        ("20s", 20.0),
        ("1.574s", 1.574),
        ("0.5", 0.5),
        ("7", 7.0),
        ("  3s ", 3.0),
        ("500us", 0.0005),
        ("1H", 3600.0),
        ("", None),
        ("soon", None),
        ("s", None),
        ("1.5.5", None),
        ("-1s", None),
        ("3 days", None),
        ("20s later", None),
    ],
)
def test_parse_duration(text: str, expected: float | None) -> None:
    assert parse_duration(text) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (" 30 ", 30.0),
        (formatdate(NOW + 42, usegmt=True), 42.0),
        (formatdate(NOW - 100, usegmt=True), 0.0),  # a date in the past: go now, never a negative wait
        ("Fri, 31 Dec 1999 23:59:59 GMT", 0.0),
        ("5s", 5.0),  # not standard, but sent by some servers
        ("-5", None),
        ("soon", None),
        ("", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    got = parse_retry_after(value, now=NOW)
    assert got == (None if expected is None else pytest.approx(expected, abs=1e-6))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250", "retry-after": "20"}, 0.25),  # -ms wins
        ({"Retry-After": "20"}, 20.0),
        ({"RETRY-AFTER-MS": "1500"}, 1.5),
        ({"x-ms-retry-after-ms": "1500", "retry-after": "2"}, 1.5),  # Azure's services' own
        ({"retry-after-ms": "250", "x-ms-retry-after-ms": "1500"}, 0.25),
        ({"x-ms-retry-after-ms": "junk", "retry-after": "3"}, 3.0),
        ({"retry-after-ms": "junk", "retry-after": "3"}, 3.0),
        (httpx.Headers({"Retry-After": "9"}), 9.0),
        ({}, None),
        (None, None),
        ({"x-other": "1"}, None),
    ],
)
def test_wait_from_headers(headers: dict[str, str] | None, expected: float | None) -> None:
    assert wait_from_headers(headers, now=NOW) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Rate limit reached for gpt-4o on tokens per min. Please try again in 20s. Visit ...", 20.0),
        ("in 1.574s", 1.574),
        ("Please try again in 1.574s.", 1.574),
        ("Limit 200, Used 200, Requested 1. Please try again in 9m38.016s.", 578.016),
        ("Please try again in 120ms.", 0.12),
        ("Too many requests, retry after 30 seconds", 30.0),
        ("Quota exceeded. Try again in 2 minutes.", 120.0),
        ("Please retry after 5 sec", 5.0),
        ("Please retry in 38.47s.", 38.47),
        ("Please wait 1 hour", None),  # "wait" needs "for"/"in": too vague otherwise
        ("wait for 1 hour and 30 minutes", 5400.0),
        ("Retry after 10", 10.0),
        ("The request finished in 5s", None),
        ("Something went wrong", None),
        ("", None),
        (None, None),
    ],
)
def test_wait_from_message(message: str | None, expected: float | None) -> None:
    got = wait_from_message(message)
    assert got == (None if expected is None else pytest.approx(expected))


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "12ms",
             "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"},
            360.0,
        ),
        (
            # the tokens bucket still has room: only the requests reset counts
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2m59.56s",
             "x-ratelimit-remaining-tokens": "500", "x-ratelimit-reset-tokens": "6m0s"},
            179.56,
        ),
        ({"x-ratelimit-remaining-tokens": "12", "x-ratelimit-reset-tokens": "1s"}, None),
        ({"x-ratelimit-remaining-tokens": "0"}, None),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": str(int(NOW + 30))}, 30.0),
        (
            {"anthropic-ratelimit-tokens-remaining": "0", "anthropic-ratelimit-tokens-reset": _iso(NOW + 15),
             "anthropic-ratelimit-requests-remaining": "3", "anthropic-ratelimit-requests-reset": _iso(NOW + 99)},
            15.0,
        ),
        (
            {"anthropic-ratelimit-output-tokens-remaining": "0",
             "anthropic-ratelimit-output-tokens-reset": _iso(NOW - 5)},
            0.0,
        ),
        ({"anthropic-ratelimit-tokens-remaining": "0", "anthropic-ratelimit-tokens-reset": "garbage"}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_reset_wait(headers: dict[str, str], expected: float | None) -> None:
    got = reset_wait(headers, now=NOW)
    assert got == (None if expected is None else pytest.approx(expected, abs=1e-3))


@pytest.mark.parametrize(
    ("headers", "message", "expected"),
    [
        ({"retry-after-ms": "100", "retry-after": "5"}, "try again in 20s", 0.1),
        ({"retry-after": "5"}, "try again in 20s", 5.0),
        ({}, "Please try again in 20s", 20.0),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "3s"}, "slow down", 3.0),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "3s"}, "try again in 1s", 1.0),
        ({"retry-after": formatdate(NOW - 60, usegmt=True)}, None, 0.0),
        ({}, None, None),
    ],
)
def test_retry_wait_order(headers: dict[str, str], message: str | None, expected: float | None) -> None:
    got = retry_wait(headers, message, now=NOW)
    assert got == (None if expected is None else pytest.approx(expected))


def test_get_header_any_case_and_type() -> None:
    assert get_header({"X-Request-ID": "a"}, "x-request-id") == "a"
    assert get_header(httpx.Headers({"X-Request-ID": "b"}), "x-request-id") == "b"
    assert get_header({"x-request-id": "c"}, "x-request-id") == "c"
    assert get_header({"other": "d"}, "x-request-id") is None
    assert get_header(None, "x-request-id") is None


@given(st.text(max_size=80))
def test_waits_never_negative_or_raise(text: str) -> None:
    for value in (
        parse_duration(text),
        parse_retry_after(text, now=NOW),
        wait_from_message(text),
        wait_from_headers({"retry-after": text, "retry-after-ms": text}, now=NOW),
        reset_wait({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": text}, now=NOW),
        retry_wait({"retry-after": text}, text, now=NOW),
    ):
        assert value is None or value >= 0.0


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.sampled_from(["s", "ms", "m", "h"]))
def test_duration_round_trip(value: float, unit: str) -> None:
    factor = {"s": 1.0, "ms": 1e-3, "m": 60.0, "h": 3600.0}[unit]
    text = f"{value:.3f}{unit}"
    assert parse_duration(text) == pytest.approx(float(f"{value:.3f}") * factor, rel=1e-9, abs=1e-9)
