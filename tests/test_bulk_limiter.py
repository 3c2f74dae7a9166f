"""The batch limiter's decisions on a fake clock: spacing, limits read from headers, pauses, limits learned from
429s against a fake provider, caps, token bookings, and the asyncio wrapper's order and cancellation.

Nothing here sleeps or reads the wall clock: time moves only when a test moves it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable, Coroutine, Mapping
from email.utils import formatdate
from functools import partial
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genguard.bulk.limiter import (
    AsyncRateLimiter,
    ModelGates,
    RateGovernor,
    RateLimitReading,
    read_rate_limits,
)
from genguard.client.gate import ASKED_MODEL, Gate, says_in_flight_limit

UNIX = 1_700_000_000.0


class Clock:
    """Fake monotonic time, with the Unix time ``UNIX`` seconds ahead, and timers that fire when it moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def __call__(self) -> float:
        return self.now

    def unix(self) -> float:
        return UNIX + self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        self._seq += 1
        timer = _Timer(callback)
        heapq.heappush(self._timers, (self.now + delay, self._seq, timer.fire))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, firing each timer due on the way at its own time."""
        end = self.now + seconds
        while self._timers and self._timers[0][0] <= end:
            at, _, fire = heapq.heappop(self._timers)
            self.now = max(self.now, at)
            fire()
        self.now = end


class _Timer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback

    def fire(self) -> None:
        if self.callback is not None:
            self.callback()

    def cancel(self) -> None:
        self.callback = None


def governor(clock: Clock, **kwargs: Any) -> RateGovernor:
    return RateGovernor(clock=clock, unix_time=clock.unix, **kwargs)


def paced(clock: Clock, rpm: int, **kwargs: Any) -> RateGovernor:
    """A governor that has read a limit of ``rpm`` requests a minute from a response's headers."""
    gov = governor(clock, **kwargs)
    gov.observe(200, {"x-ratelimit-limit-requests": str(rpm)})
    return gov


def send_times(gov: RateGovernor, clock: Clock, n: int, tokens: int = 0) -> list[float]:
    """When ``n`` requests booked back to back at the current time would go."""
    return [clock.now + gov.reserve(tokens) for _ in range(n)]


def most_in_window(times: list[float], window: float) -> int:
    """The most send times that fall in any ``window`` seconds."""
    times = sorted(times)
    best = j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


# A 429 whose counter shows the bucket empty: the limit, believed at once (one without counters may be a fault).
REFUSED = {"x-ratelimit-remaining-requests": "0"}

OPENAI = {
    "x-ratelimit-limit-requests": "1200",
    "x-ratelimit-remaining-requests": "1199",
    "x-ratelimit-reset-requests": "50ms",
    "x-ratelimit-limit-tokens": "600000",
    "x-ratelimit-remaining-tokens": "599900",
    "x-ratelimit-reset-tokens": "10ms",
}


# -- reading the headers ---------------------------------------------------------------------------------


def _iso(offset: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(UNIX + offset, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            OPENAI,
            [
                RateLimitReading("requests", 1200, 1199, 0.05, 60.0),
                RateLimitReading("tokens", 600000, 599900, 0.01, 60.0),
            ],
        ),
        (
            {"X-RateLimit-Limit-Requests": "60", "X-RateLimit-Reset-Requests": "2m59.56s"},
            [RateLimitReading("requests", 60, None, 179.56, 60.0)],
        ),
        (
            {
                "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-requests-remaining": "49",
                "anthropic-ratelimit-requests-reset": _iso(1.5),
                "anthropic-ratelimit-input-tokens-limit": "40000",
                "anthropic-ratelimit-output-tokens-remaining": "7999",
            },
            [
                RateLimitReading("requests", 50, 49, 1.5, 60.0),
                RateLimitReading("tokens", 40000, None, None, 60.0, "input"),
                RateLimitReading("tokens", None, 7999, None, 60.0, "output"),
            ],
        ),
        (
            {"x-ratelimit-limit-requests-day": "14400", "x-ratelimit-remaining-requests-day": "3"},
            [RateLimitReading("requests", 14400, 3, None, 86400.0)],
        ),
        (
            {
                "ratelimit-limit": "100",
                "ratelimit-remaining": "0",
                "ratelimit-reset": "30",
                "ratelimit-policy": "100;w=10",
            },
            [RateLimitReading("requests", 100, 0, 30.0, 10.0)],
        ),
        (
            {"RateLimit": '"default";r=5;t=12', "RateLimit-Policy": '"default";q=100;w=60'},
            [RateLimitReading("requests", 100, 5, 12.0, 60.0)],
        ),
        (
            {"ratelimit": "limit=10, remaining=2, reset=3"},
            [RateLimitReading("requests", 10, 2, 3.0, None)],
        ),
        (
            # GitHub's way: no window, the reset a Unix time.
            {
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "4999",
                "x-ratelimit-reset": str(int(UNIX) + 600),
            },
            [RateLimitReading("requests", 5000, 4999, 600.0, None)],
        ),
        (
            # OpenRouter's way: the reset a Unix time in milliseconds.
            {
                "X-RateLimit-Limit": "20",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int((UNIX + 42.5) * 1000)),
            },
            [RateLimitReading("requests", 20, 0, 42.5, None)],
        ),
        (
            # OpenAI's counter of the tokens answers used, beside the bucket that refuses: not that bucket.
            {
                "x-ratelimit-limit-tokens": "1500000",
                "x-ratelimit-remaining-tokens": "43244",
                "x-ratelimit-reset-tokens": "23h18m29.144s",
                "x-ratelimit-limit-tokens_usage_based": "1500000",
                "x-ratelimit-remaining-tokens_usage_based": "1212010",
                "x-ratelimit-reset-tokens_usage_based": "4h36m28.223s",
            },
            [RateLimitReading("tokens", 1500000, 43244, 83909.144, 60.0)],
        ),
        (
            {
                "x-ratelimit-limit-requests": "soon",
                "x-ratelimit-foo": "1",
                "content-type": "application/json",
            },
            [],
        ),
    ],
)
def test_reads_every_common_form_of_rate_limit_headers(
    headers: dict[str, str], expected: list[RateLimitReading]
) -> None:
    for given_headers in (headers, httpx.Headers(headers)):
        assert read_rate_limits(given_headers, now=UNIX) == expected


@given(st.dictionaries(st.sampled_from(["x-ratelimit-", "ratelimit", "anthropic-ratelimit-"]).flatmap(
    lambda p: st.text(max_size=30).map(lambda s: p + s)), st.text(max_size=40), max_size=8))  # fmt: skip
def test_reading_any_headers_never_raises(headers: dict[str, str]) -> None:
    for r in read_rate_limits(headers, now=UNIX):
        assert r.kind in ("requests", "tokens")


# -- spacing ---------------------------------------------------------------------------------------------


def test_requests_are_spaced_evenly_never_in_a_burst() -> None:
    clock = Clock()
    gov = paced(clock, 600)  # 10 a second
    times = send_times(gov, clock, 100)
    assert times == sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(times[1:])]
    assert all(g == pytest.approx(0.1) for g in gaps)
    # A whole minute's budget is never let out at once: any second holds its tenth, give or take the burst.
    assert most_in_window(times, 1.0) <= 10 + 1
    assert most_in_window(times, 0.1) <= 2


def test_a_late_caller_may_catch_up_by_the_burst_allowance_only() -> None:
    clock = Clock()
    gov = paced(clock, 600, burst_s=0.2)
    send_times(gov, clock, 5)
    clock.advance(10.0)  # idle: the schedule is far behind
    times = send_times(gov, clock, 20)
    # 1 + 0.2 s worth of 10 a second, not 10 s worth.
    assert sum(1 for t in times if t <= clock.now + 1e-9) == 3


def test_a_run_does_not_start_with_a_burst_before_anything_is_known() -> None:
    clock = Clock()
    gov = governor(clock)
    times = send_times(gov, clock, 64)
    # The start's window of 8 at once, then the cautious pace (4 a second, no answer yet), not 64 at once.
    assert most_in_window(times, 1.0) <= RateGovernor.start_window + 5
    assert gov.snapshot().rpm is None


def test_against_a_server_that_never_limits_the_start_passes_a_thousand_a_second_within_a_second() -> None:
    # A local model server sends no rate-limit headers and never answers 429: the cautious start must not
    # cost a short run its time (it took 2.5-3 s to pass 1,000 a second when each doubling first waited out
    # the interval it replaced, and the pace began at 4 a second).
    clock = Clock()
    gov = governor(clock)
    taken = drive(gov, clock, FakeProvider(clock, 1e9), seconds=1.0)
    assert all(status == 200 for _, status in taken)
    assert sum(1 for at, _ in taken if at >= 0.8) >= 0.2 * 1000
    assert gov.snapshot().requests_per_s >= 1000


def test_against_a_server_that_answers_at_once_the_start_doubles_as_fast_as_the_clock_allows() -> None:
    # The round trip (under a millisecond) is much shorter than the start's interval (250 ms): doubling once
    # per answer would spend an interval on each doubling, half a second before the pace reached 16 a second.
    clock = Clock()
    gov = governor(clock)
    taken = drive(gov, clock, FakeProvider(clock, 1e9), seconds=0.6, latency=(0.0005, 0.001))
    assert all(status == 200 for _, status in taken)
    # 4 a second, 16 doublings a second from the second answer (at 250 ms): past 1,000 a second by 0.55 s.
    assert gov.snapshot().requests_per_s >= 1000


@pytest.mark.parametrize(
    ("latency", "seconds", "most_rps"),
    [
        # With none of its own requests on the wire, the others' may be: no idle pace to double at once.
        ((0.0005, 0.001), 0.6, 100),
        # Its own first answer is one of many: the window belongs to a pace that books them all.
        ((0.25, 0.25), 0.3, 16),
    ],
)
def test_a_shared_pace_keeps_to_doubling_once_per_answer(
    latency: tuple[float, float], seconds: float, most_rps: float
) -> None:
    # A worker of a shared limiter books its own requests only, so it cannot tell what the others send.
    clock = Clock()
    gov = governor(clock)
    gov.sees_all = False
    drive(gov, clock, FakeProvider(clock, 1e9), seconds=seconds, latency=latency)
    assert gov.snapshot().requests_per_s < most_rps


def test_against_a_slow_server_the_first_answer_sets_a_pace_that_keeps_a_window_on_the_wire() -> None:
    # A round trip of 250 ms is as long as the start's interval: doubling once per answer from 4 a second took
    # three round trips to reach what 8 requests on the wire give (32 a second), a second lost in a short run.
    clock = Clock()
    gov = governor(clock)
    drive(gov, clock, FakeProvider(clock, 1e9), seconds=0.3, latency=(0.25, 0.25))
    assert gov.snapshot().requests_per_s >= 0.95 * gov.start_window / 0.25
    clock = Clock()
    gov = governor(clock)
    taken = drive(gov, clock, FakeProvider(clock, 1e9), seconds=2.0, latency=(0.25, 0.25))
    assert len(taken) >= 200  # 99 when the start ignored the round trip


def test_the_start_puts_a_window_on_the_wire_at_once_and_doubles_it_each_round_trip() -> None:
    # A model server of one's own (vLLM, Ollama) sends no rate-limit headers and never limits: before anything
    # is known, 8 requests go at once and each answer lets one more go (one round trip: twice as many), within
    # the clock's bound; the pace from 4 a second sent 2 in the first 0.3 s.
    clock = Clock()
    gov = governor(clock)
    assert [gov.reserve() for _ in range(8)] == [0.0] * 8
    assert gov.delay() > 0.1  # the ninth waits for the pace's next slot or for an answer, whichever is first
    clock.advance(0.005)
    gov.observe(200, {})
    assert gov.delay() == 0.0
    clock = Clock()
    gov = governor(clock)
    taken = drive(gov, clock, FakeProvider(clock, 1e9), seconds=0.3, latency=(0.002, 0.008))
    assert len(taken) >= 2000  # 64 workers, 5 ms a round trip: 3,840 at most
    assert gov.state.window >= 64
    assert gov.snapshot().rpm is None


def test_the_windows_first_429_sets_where_the_pace_heads_from_what_got_through() -> None:
    # A hidden limit of 50 a second (a second's burst) behind a 250 ms round trip: the window finds the burst's
    # end within a round trip or two, and what got through until then says where the limit is, far above the
    # start's pace. From the pace alone, 90 429s in the first 5 s.
    clock = Clock()
    gov = governor(clock)
    taken = drive(gov, clock, FakeProvider(clock, 50, headers=True), seconds=5.0, latency=(0.25, 0.25))
    assert sum(1 for _, status in taken if status == 429) <= 65
    assert sum(1 for _, status in taken if status == 200) >= 0.95 * (50 + 50 * 4.75)
    assert gov.snapshot().rpm == pytest.approx(3000, rel=0.3)


def test_the_window_waits_out_a_pause_and_an_empty_budget() -> None:
    clock = Clock()
    gov = governor(clock)
    gov.reserve()
    gov.observe(503, {"retry-after": "2"})
    # The window has room, but the server asked for a pause: one request probes it a tenth in (a wait in
    # whole seconds says "at most"), the others wait it out.
    assert gov.delay() == pytest.approx(0.2)
    clock.advance(0.2)
    gov.reserve()
    assert gov.booked_probe
    assert gov.delay() == pytest.approx(1.8)
    clock.advance(1.8)
    assert gov.delay() == 0.0
    gov.reserve()
    gov.observe(200, {"x-ratelimit-limit-requests-day": "1000", "x-ratelimit-remaining-requests-day": "0",
                      "x-ratelimit-reset-requests-day": "600"})  # fmt: skip
    assert gov.delay() == pytest.approx(600.0)


def test_an_rpm_given_paces_the_start_without_a_window() -> None:
    clock = Clock()
    gov = governor(clock, rpm=600)
    times = send_times(gov, clock, 8)
    assert most_in_window(times, 0.1) <= 2  # spaced, not 8 at once


def test_a_cap_given_is_kept_in_every_minute() -> None:
    # --rpm 600 and --tpm 60,000 (100 tokens a request): never more than 600 requests in any 60 s (a request
    # that went early to catch up with the pace let 601 through). Answers come at once.
    for rpm, tpm, tokens in ((600, None, 0), (None, 60_000, 100)):
        clock = Clock()
        gov = governor(clock, rpm=rpm, tpm=tpm)
        times = []
        for _ in range(1500):
            wait = gov.reserve(tokens)
            clock.advance(wait)
            times.append(clock.now)
            gov.observe(200, {}, tokens_used=tokens or None, tokens_reserved=tokens or None)
        # (The 601st may go 60 s after the first, which float sums put a hair under 60.)
        assert most_in_window(times, 60.0 - 1e-6) <= 600, (rpm, tpm)
        assert most_in_window(times, 60.0 - 1e-6) == 600  # and not fewer


def test_a_shared_pace_has_no_window_and_its_first_429_halves_it() -> None:
    clock = Clock()
    gov = governor(clock)
    gov.sees_all = False  # a worker of a shared limiter: the others' requests are not booked here
    waits = [gov.reserve() for _ in range(3)]
    assert waits[1] > 0  # paced from the first: no window
    start = gov.snapshot().requests_per_s
    gov.observe(429, REFUSED)
    assert gov.snapshot().requests_per_s == pytest.approx(start / 2)


def test_the_window_from_the_first_answer_stays_within_the_clocks_bound() -> None:
    # A round trip of 10 ms would make 8 on the wire 800 a second: against a hidden limit of 2 a second and no
    # Retry-After, finding it again from there costs a hundred 429s (110 in this run when the jump was free).
    clock = Clock()
    gov = governor(clock)
    taken = drive(gov, clock, FakeProvider(clock, 2, headers=False), seconds=5.0, latency=(0.01, 0.015))
    # (21 here: 13 from the pace alone, and a second refusal to tell a limit from a fault on each cut.)
    assert sum(1 for _, status in taken if status == 429) <= 24


# -- limits from headers -----------------------------------------------------------------------------------


def test_the_limit_read_from_headers_sets_the_pace() -> None:
    clock = Clock()
    gov = governor(clock)
    gov.reserve()
    gov.observe(200, OPENAI)
    snap = gov.snapshot()
    assert (snap.rpm, snap.rpm_source, snap.tpm, snap.tpm_source) == (1200, "headers", 600000, "headers")
    assert snap.requests_per_s == pytest.approx(20.0)
    assert snap.tokens_per_s == pytest.approx(10000.0)
    clock.advance(1.0)
    times = send_times(gov, clock, 40)
    assert [b - a for a, b in itertools.pairwise(times[1:])] == pytest.approx([0.05] * 38)


def test_a_limit_read_from_the_first_answer_paces_the_next_request_at_once() -> None:
    # The first request booked the next slot at the start's 4 a second (250 ms on): an answer after 20 ms that
    # states 1,200 a minute must not leave the next request waiting for that slot.
    clock = Clock()
    gov = governor(clock)
    gov.reserve()
    clock.advance(0.02)
    gov.observe(200, OPENAI)
    assert gov.delay() == 0.0
    times = send_times(gov, clock, 4)
    # Now (within the burst allowance after the first request), then every 50 ms.
    assert times[0] == clock.now
    assert [b - a for a, b in itertools.pairwise(times[1:])] == pytest.approx([0.05, 0.05])


def test_a_limit_read_with_an_empty_bucket_still_holds_the_next_request() -> None:
    # The same first answer, but its per-minute bucket is empty and it was refused: the hold stands.
    clock = Clock()
    gov = governor(clock)
    gov.reserve()
    clock.advance(0.02)
    gov.observe(429, {**OPENAI, "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"})
    assert gov.delay() == pytest.approx(0.05)  # a twentieth of a second refills it


def test_anthropic_headers_set_the_pace_too() -> None:
    clock = Clock()
    gov = governor(clock)
    gov.observe(
        200,
        {
            "anthropic-ratelimit-requests-limit": "300",
            "anthropic-ratelimit-requests-remaining": "299",
            "anthropic-ratelimit-requests-reset": _iso(0.2),
            "anthropic-ratelimit-tokens-limit": "60000",
            "anthropic-ratelimit-input-tokens-limit": "50000",
            "anthropic-ratelimit-output-tokens-limit": "10000",
        },
    )
    snap = gov.snapshot()
    # The combined token bucket is the one that counts when it is given.
    assert (snap.rpm, snap.tpm) == (300, 60000)


def test_a_day_budget_is_not_read_as_a_pace_but_is_held_to() -> None:
    clock = Clock()
    gov = governor(clock)
    gov.observe(200, {"x-ratelimit-limit-requests": "14400", "x-ratelimit-reset-requests": "2m59.56s",
                      "x-ratelimit-remaining-requests": "100"})  # fmt: skip
    assert gov.snapshot().rpm is None  # a bucket refilling over minutes is no per-minute limit
    gov.observe(200, {"x-ratelimit-limit-requests-day": "14400", "x-ratelimit-remaining-requests-day": "0",
                      "x-ratelimit-reset-requests-day": "3600"})  # fmt: skip
    assert gov.delay() == pytest.approx(3600.0)


def test_a_bucket_whose_reset_is_minutes_away_is_waited_for_the_missing_part_only() -> None:
    # OpenAI documents x-ratelimit-reset-tokens: 6m0s: the time until the bucket is full again. It refills as
    # it goes: 1,000 tokens short of a 600,000-token bucket that needs 6 minutes for its 600,000 used is 0.6 s
    # away, not six minutes (a run held for the whole reset sent 24 requests, then nothing for six minutes).
    clock = Clock()
    gov = governor(clock)
    gov.observe(200, {"x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "0",
                      "x-ratelimit-reset-requests": "6m0s"})  # fmt: skip
    assert gov.delay() == pytest.approx(360 / 10000)
    # A 429's own Retry-After bounds any wait a counter suggests.
    told = governor(Clock())
    told.observe(429, {"x-ratelimit-limit-requests-day": "14400", "x-ratelimit-remaining-requests-day": "0",
                       "x-ratelimit-reset-requests-day": "3600", "retry-after": "2"})  # fmt: skip
    assert told.delay() == pytest.approx(2.0)


def test_an_exhausted_per_minute_bucket_on_a_429_holds_the_next_request() -> None:
    clock = Clock()
    gov = governor(clock)
    gov.observe(200, OPENAI)
    gov.observe(429, {**OPENAI, "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"})
    # One request's refill at 1200 a minute, not the second to a full bucket.
    assert gov.delay() == pytest.approx(0.05)


# -- Retry-After -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "pause", "probe"),
    [
        ({"retry-after": "2"}, 2.0, True),  # whole seconds, short: "at most", one request probes it
        ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5, False),
        ({"x-ms-retry-after-ms": "1500", "retry-after": "2"}, 1.5, False),  # Azure's services' own
        ({"Retry-After": formatdate(UNIX + 30, usegmt=True)}, 30.0, False),
    ],
)
def test_retry_after_pauses_every_request_then_resumes_at_the_pace(
    headers: dict[str, str], pause: float, probe: bool
) -> None:
    clock = Clock()
    gov = governor(clock, rpm=600)
    send_times(gov, clock, 3)
    gov.observe(429, headers)
    assert gov.snapshot().paused_s == 0.0  # one alone may be a fault: its own request waits, no other
    for _ in range(2):
        gov.observe(429, headers)  # a limit refuses again
    snap = gov.snapshot()
    assert snap.paused_s == pytest.approx(pause)
    assert snap.rate_limited == 3
    times = send_times(gov, clock, 10)
    if probe:
        # A tenth into the pause, the probe (its answer would end the pause: below); the others wait it out.
        assert times[0] == pytest.approx(clock.now + pause / 10)
        times = times[1:]
    assert min(times) == pytest.approx(clock.now + pause)
    # No burst to make up for the pause: the bucket that asked for it has room for one request then.
    assert most_in_window(times, 0.05) == 1


@pytest.mark.parametrize("answer", [200, 429])
def test_the_probe_of_a_pause_ends_it_when_answered_and_is_the_only_one_when_refused(answer: int) -> None:
    # A fixed window refused at its end says "retry-after: 1" for the 50 ms left: a tenth in, one request goes;
    # answered, everyone goes on at the pace; refused (the wait was real), the pause holds, with its new
    # Retry-After, and no other request probes it.
    clock = Clock()
    gov = governor(clock, rpm=600)
    send_times(gov, clock, 3)
    for _ in range(3):
        gov.observe(429, {"retry-after": "1"})
    assert gov.snapshot().paused_s == pytest.approx(1.0)
    clock.advance(gov.delay())
    assert clock.now == pytest.approx(0.1)
    assert gov.reserve() == 0.0
    assert gov.booked_probe
    assert gov.delay() == pytest.approx(0.9)  # the others wait on
    clock.advance(0.02)
    if answer == 200:
        gov.observe(200, {}, probe=True)
        assert gov.snapshot().paused_s == 0.0
        times = send_times(gov, clock, 5)
        assert not gov.booked_probe
        assert times[0] == pytest.approx(clock.now)  # at once, then at the pace: no burst
        assert most_in_window(times, 0.05) == 1
    else:
        gov.observe(429, {"retry-after": "1"}, probe=True)
        assert gov.snapshot().paused_s == pytest.approx(1.0)  # from the probe's refusal
        times = send_times(gov, clock, 5)
        assert not gov.booked_probe
        assert min(times) == pytest.approx(clock.now + 1.0)


def test_retry_after_on_a_success_is_ignored() -> None:
    clock = Clock()
    gov = governor(clock)
    gov.observe(200, {"retry-after": "60"})
    assert gov.delay() == 0.0


def test_a_429_that_is_no_rate_limit_teaches_nothing() -> None:
    clock = Clock()
    gov = governor(clock, rpm=600)
    gov.reserve()
    gov.observe(429, {}, rate_limited=False)  # insufficient_quota: no pace gets it through
    snap = gov.snapshot()
    assert (snap.rate_limited, snap.requests_per_s) == (0, 4.0)


_LITELLM = (
    "LiteLLM Rate Limit Handler for rate limit type = key. Max parallel request limit reached. current rpm: {rpm}, "
    "rpm limit: 100, current tpm: {tpm}, tpm limit: 5000, current max_parallel_requests: {par}, "
    "max_parallel_requests: {max_par}"
)


@pytest.mark.parametrize(
    ("message", "in_flight"),
    [
        (_LITELLM.format(rpm=7, tpm=120, par=4, max_par=4), True),
        (_LITELLM.format(rpm=100, tpm=120, par=1, max_par=9223372036854775807), False),  # its rpm limit
        (_LITELLM.format(rpm=7, tpm=5000, par=1, max_par=9223372036854775807), False),  # its tpm limit
        (_LITELLM.format(rpm=100, tpm=120, par=4, max_par=4), False),  # both: waiting is needed anyway
        ("Max parallel request limit reached Hit Global Limit: Limit=10, current: 10", True),
        # A limit of 0: nothing goes through at any number at once.
        (
            "Max parallel request limit reached. Hit limit for key. Current limits: max_parallel_requests: 0, "
            "tpm_limit: 100, rpm_limit: 100",
            False,
        ),
        (
            "Rate limit exceeded for api_key: 5d41. Limit type: max_parallel_requests. Current limit: 2, "
            "Remaining: 0. Limit resets at: 2026-12-04 18:31:00 UTC",
            True,
        ),
        (
            "Rate limit exceeded for api_key: 5d41. Limit type: requests. Current limit: 2, Remaining: 0. Limit "
            "resets at: 2026-12-04 18:31:00 UTC",
            False,
        ),
        (
            "Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): Limit 3",
            False,
        ),
        (None, False),
    ],
)
def test_a_gateways_words_tell_a_limit_of_requests_in_flight_from_one_of_their_rate(
    message: str | None, in_flight: bool
) -> None:
    assert says_in_flight_limit(message) is in_flight


# -- limits learned from 429s ------------------------------------------------------------------------------


class FakeProvider:
    """A provider's token bucket on the fake clock: ``rate`` requests a second, ``window`` seconds' worth at
    most at once (providers enforce per-minute limits over windows as short as a second)."""

    def __init__(self, clock: Clock, rate: float, window: float = 1.0, headers: bool = False) -> None:
        self.clock = clock
        self.rate = rate
        self.capacity = max(rate * window, 1.0)
        self.level = self.capacity
        self.last = clock.now
        self.headers = headers

    def admit(self) -> tuple[int, Mapping[str, str]]:
        now = self.clock.now
        self.level = min(self.capacity, self.level + (now - self.last) * self.rate)
        self.last = now
        if self.level >= 1:
            self.level -= 1
            return 200, {}
        wait = (1 - self.level) / self.rate
        return 429, {"retry-after-ms": str(round(wait * 1000))} if self.headers else {}


def drive(gov: RateGovernor, clock: Clock, provider: FakeProvider, *, seconds: float, workers: int = 64,
          latency: tuple[float, float] = (0.002, 0.008), seed: int = 1) -> list[tuple[float, int]]:  # fmt: skip
    """``workers`` callers, first come first served, each waiting its turn, sending, and observing the answer
    when it comes back (half the latency each way): the (time, status) of every request the provider took."""
    rng = random.Random(seed)
    events: list[tuple[float, int, Callable[[], None]]] = []
    seq = 0
    idle = workers
    taken: list[tuple[float, int]] = []
    timer = 0

    def push(at: float, action: Callable[[], None]) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, action))

    def arrive(probe: bool) -> None:
        status, headers = provider.admit()
        taken.append((clock.now, status))
        push(clock.now + rng.uniform(*latency) / 2, lambda: answer(status, headers, probe))

    def answer(status: int, headers: Mapping[str, str], probe: bool) -> None:
        nonlocal idle
        gov.observe(status, headers, probe=probe)
        idle += 1
        dispatch()

    def dispatch(token: int | None = None) -> None:
        nonlocal idle, timer
        if token is not None and token != timer:
            return  # a wake-up planned before something changed
        timer += 1
        while idle:
            wait = gov.delay()
            if wait > 0:
                mine = timer
                push(clock.now + wait, lambda mine=mine: dispatch(mine))
                return
            gov.reserve()
            idle -= 1
            push(clock.now + rng.uniform(*latency) / 2, partial(arrive, gov.booked_probe))

    dispatch()
    while events and events[0][0] <= seconds:
        at, _, action = heapq.heappop(events)
        clock.now = max(clock.now, at)
        action()
    return taken


@pytest.mark.parametrize("rate", [5, 20, 100])
@pytest.mark.parametrize("retry_after", [True, False])
def test_the_limit_is_found_from_429s_alone(rate: int, retry_after: bool) -> None:
    clock = Clock()
    gov = governor(clock)
    answers = drive(gov, clock, FakeProvider(clock, rate, headers=retry_after), seconds=60.0)
    late = [status for at, status in answers if at >= 20.0]
    ok, limited = late.count(200), late.count(429)
    assert ok / 40.0 >= 0.9 * rate  # goodput near the hidden limit...
    # ...with few 429s. (At 5 a second, 0.055: with no counter, each cut waits for a second refusal to tell
    # the limit from a fault, one more 429 a cut; 0.045 when one was believed alone.)
    assert limited / ok <= (0.06 if rate < 10 else 0.05)
    snap = gov.snapshot()
    assert snap.rpm_source == "429s"
    assert snap.rpm == pytest.approx(rate * 60, rel=0.15)
    assert snap.rate_limited == sum(1 for _, s in answers if s == 429)


class FixedWindowProvider(FakeProvider):
    """A provider counting ``rate`` requests in each fixed second, that says "retry-after" in whole seconds
    (RFC 9110's own form: refused at a window's end, 1 s for the few ms left) or nothing (``headers=False``).
    With ``penalty``, a refusal blocks the key for the whole second it says."""

    def __init__(self, clock: Clock, rate: float, headers: bool = True, penalty: bool = False) -> None:
        super().__init__(clock, rate, headers=headers)
        self.second, self.used, self.penalty, self.blocked = 0, 0, penalty, -1.0

    def admit(self) -> tuple[int, Mapping[str, str]]:
        now = self.clock.now
        if int(now) != self.second:
            self.second, self.used = int(now), 0
        if now >= self.blocked and self.used < self.rate:
            self.used += 1
            return 200, {}
        if self.penalty and now >= self.blocked:
            self.blocked = now + 1.0
        wait = max(1, round(self.second + 1 - now)) if not self.penalty else 1
        return 429, {"retry-after": str(wait)} if self.headers else {}


@pytest.mark.parametrize("latency", [0.01, 0.3])
@pytest.mark.parametrize("kind", ["window", "penalty", "bare"])
def test_a_fixed_window_that_says_whole_seconds_is_kept_near_its_limit(latency: float, kind: str) -> None:
    # 50 a second in fixed windows, "retry-after: 1" on a refusal: every request waiting the whole second
    # cost most of the next window, once in 8 s (0.84 of the limit). The probe of the pause finds it over.
    # Where the second was real (a penalty) the probe costs one 429 a pause and nothing else; with no header
    # at all there is no pause to probe.
    clock = Clock()
    gov = governor(clock)
    provider = FixedWindowProvider(clock, 50, headers=kind != "bare", penalty=kind == "penalty")
    answers = drive(gov, clock, provider, seconds=120.0, latency=(latency, latency))
    late = [status for at, status in answers if at >= 20.0]
    ok, limited = late.count(200), late.count(429)
    assert ok / 100.0 >= (0.9 if kind != "penalty" else 0.72) * 50
    assert limited / ok <= 0.05


class FaultyProvider(FakeProvider):
    """A provider that also refuses one request in ``1 / share`` at random, whatever the pace, with a
    Retry-After of a second: an upstream's hiccup, not its limit (and no counter to tell them apart)."""

    def __init__(self, clock: Clock, rate: float, share: float, seed: int = 3) -> None:
        super().__init__(clock, rate, headers=True)
        self.share = share
        self.rng = random.Random(seed)

    def admit(self) -> tuple[int, Mapping[str, str]]:
        if self.rng.random() < self.share:
            return 429, {"retry-after": "1"}
        return super().admit()


@pytest.mark.parametrize("rate", [5, 50])
def test_random_429s_neither_pause_the_run_nor_drag_the_pace_down(rate: int) -> None:
    # Believed, each took a tenth off the pace and paused every request for a second: one request in a hundred
    # refused at random held a limit of 50 a second to 13, of 5 to 4.
    clock = Clock()
    gov = governor(clock)
    answers = drive(gov, clock, FaultyProvider(clock, rate, share=0.01), seconds=60.0)
    late = [status for at, status in answers if at >= 20.0]
    assert late.count(200) / 40.0 >= 0.9 * rate


def test_a_shared_pace_believes_every_429() -> None:
    # Its worker sees its own share of the answers only: waiting for refusals among them overshot (three
    # workers over Redis sent a quarter of their successes in 429s, against 7-8 % when each was believed).
    clock = Clock()
    gov = paced(clock, 600)
    gov.sees_all = False
    gov.state.header_rps = None
    for _ in range(60):
        clock.advance(gov.reserve() + 0.1)
        gov.observe(200, {})
    before = gov.snapshot().requests_per_s
    gov.reserve()
    gov.observe(429, {"retry-after": "5"})
    assert gov.snapshot().paused_s == pytest.approx(5.0)
    assert gov.snapshot().requests_per_s < before


def test_a_lone_429_without_counters_waits_for_another_before_it_is_believed() -> None:
    clock = Clock()
    gov = paced(clock, 600)
    gov.state.header_rps = None  # as if learned: no counter will explain a 429

    def answer(status: int, n: int = 1) -> None:
        for _ in range(n):
            clock.advance(gov.reserve() + 0.1)
            gov.observe(status, {"retry-after": "5"} if status == 429 else {})

    answer(200, 60)
    before = gov.snapshot().requests_per_s
    answer(429)
    assert gov.snapshot().requests_per_s >= before  # not cut...
    assert gov.snapshot().paused_s == 0.0  # ...nor paused: only its own request waits its Retry-After
    answer(429, 2)
    assert gov.snapshot().paused_s == pytest.approx(5.0)
    assert gov.snapshot().requests_per_s < before
    assert gov.snapshot().rate_limited == 3
    answer(200, 60)  # the next one, far from those: alone again
    answer(429)
    assert gov.snapshot().paused_s == 0.0


def test_the_limit_is_found_when_the_provider_allows_no_burst_at_all() -> None:
    clock = Clock()
    gov = governor(clock)
    answers = drive(gov, clock, FakeProvider(clock, 20, window=0.05), seconds=60.0)
    late = [status for at, status in answers if at >= 20.0]
    assert late.count(200) / 40.0 >= 0.85 * 20
    assert late.count(429) / late.count(200) <= 0.05


def test_a_cut_comes_once_per_round_trip_not_once_per_429() -> None:
    clock = Clock()
    gov = governor(clock, rpm=6000)
    for _ in range(50):
        gov.reserve()
    gov.observe(429, REFUSED)
    first = gov.snapshot().requests_per_s
    for _ in range(20):  # the rest of those sent before the cut, refused too
        gov.observe(429, REFUSED)
    assert gov.snapshot().requests_per_s == first
    gov.reserve()
    for _ in range(30):
        gov.observe(200, {})
    gov.observe(429, REFUSED)  # one sent after the cut
    assert gov.snapshot().requests_per_s < first


def test_answers_never_reported_do_not_block_cuts_for_ever() -> None:
    clock = Clock()
    gov = governor(clock)
    for _ in range(10):
        gov.reserve()
    gov.observe(429, REFUSED)
    first = gov.snapshot().requests_per_s
    clock.advance(1.0)
    gov.observe(429, REFUSED)  # nine of the ten never come back: the caller lost them
    assert gov.snapshot().requests_per_s == first
    clock.advance(RateGovernor.round_trip_s)
    gov.observe(429, REFUSED)
    assert gov.snapshot().requests_per_s < first


def test_the_pace_rises_only_while_it_holds_the_callers_back() -> None:
    clock = Clock()
    gov = governor(clock)
    gov.observe(429, {})
    base = gov.snapshot().requests_per_s
    for _ in range(30):  # one request every 10 s: far below the pace, which has nothing to learn from
        clock.advance(10.0)
        gov.reserve()
        gov.observe(200, {})
    assert gov.snapshot().requests_per_s == base
    assert not gov.snapshot().probing


# -- caps --------------------------------------------------------------------------------------------------


def test_user_caps_apply_on_top_of_the_headers() -> None:
    clock = Clock()
    gov = governor(clock, rpm=60, tpm=6000)
    gov.observe(200, OPENAI)  # the provider allows 1200 a minute and 600,000 tokens
    snap = gov.snapshot()
    assert (snap.rpm, snap.rpm_source, snap.tpm, snap.tpm_source) == (60, "given", 6000, "given")
    assert snap.requests_per_s == pytest.approx(1.0)
    gov2 = governor(clock, rpm=6000)
    gov2.observe(200, OPENAI)
    assert (gov2.snapshot().rpm, gov2.snapshot().rpm_source) == (1200, "headers")


def test_an_rpm_cap_is_never_exceeded_while_probing() -> None:
    clock = Clock()
    gov = governor(clock, rpm=120)
    answers = drive(gov, clock, FakeProvider(clock, 1000), seconds=30.0)
    assert most_in_window([at for at, _ in answers], 1.0) <= 2 + 1
    assert {s for _, s in answers} == {200}


def test_token_bookings_pace_by_tokens_per_minute() -> None:
    clock = Clock()
    gov = governor(clock, tpm=600)  # 10 tokens a second
    times = send_times(gov, clock, 4, tokens=50)
    assert [b - a for a, b in itertools.pairwise(times[1:])] == pytest.approx([5.0, 5.0])
    assert gov.delay(0) < gov.delay(50)  # a request with no tokens is held by the request pace only


TOKENS_600 = {"x-ratelimit-limit-tokens": "600", "x-ratelimit-remaining-tokens": "600",
              "x-ratelimit-reset-tokens": "0s"}  # fmt: skip


def test_actual_usage_reconciles_the_token_bookings() -> None:
    clock = Clock()
    gov = governor(clock, burst_s=0.0)
    gov.observe(200, TOKENS_600)  # the provider's limit: 600 tokens a minute
    gov.reserve(100)
    gov.reserve(100)
    before = gov.delay(100)
    gov.observe(200, {}, tokens_used=20, tokens_reserved=100)  # 80 tokens booked too many come back
    assert before - gov.delay(100) == pytest.approx(8.0)
    gov.observe(200, {}, tokens_used=160, tokens_reserved=100)  # 60 too few are paid now
    assert gov.delay(100) - (before - 8.0) == pytest.approx(6.0)


def test_under_a_tpm_the_user_set_the_estimates_are_what_counts() -> None:
    # "Never send more (estimated) tokens per minute than this": what an answer did not use is not given back
    # (it was, and a cap of 60,000 let 115,000 estimated tokens a minute through).
    clock = Clock()
    gov = governor(clock, tpm=600, burst_s=0.0)
    gov.reserve(100)
    gov.reserve(100)
    before = gov.delay(100)
    gov.observe(200, {}, tokens_used=20, tokens_reserved=100)
    assert gov.delay(100) == pytest.approx(before)
    gov.observe(200, {}, tokens_used=160, tokens_reserved=100)  # too few are still paid
    assert gov.delay(100) - before == pytest.approx(6.0)


def test_a_429_for_tokens_halves_what_an_answer_gives_back() -> None:
    # OpenAI's token limit counts max_tokens whatever the answer used: giving the unused part back paced the run
    # too fast for it, one 429 every few seconds (8 of 128 requests against the simulator's tpm).
    clock = Clock()
    gov = governor(clock, burst_s=0.0)
    gov.observe(200, TOKENS_600)
    for _ in range(3):
        gov.reserve(100)
    gov.observe(429, {"x-ratelimit-limit-tokens": "600", "x-ratelimit-remaining-tokens": "12"})
    before = gov.delay(100)
    gov.observe(200, {}, tokens_used=20, tokens_reserved=100)
    assert before - gov.delay(100) == pytest.approx(4.0)  # half of the 80 unused tokens, at 10 a second
    # A 429 for requests with tokens to spare takes nothing more off.
    gov.reserve(100)
    clock.advance(20.0)
    gov.observe(429, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "500"})
    assert gov.state.refund == 0.5


def test_a_booking_given_back_frees_its_turn() -> None:
    clock = Clock()
    gov = governor(clock, rpm=60, burst_s=0.0)
    assert send_times(gov, clock, 3) == [0.0, 1.0, 2.0]
    gov.cancel()
    assert send_times(gov, clock, 1) == [2.0]
    assert gov.snapshot().in_flight == 3


# -- the asyncio wrapper -------------------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


async def settle() -> None:
    """Let every task that can run, run (the fake clock does not move meanwhile)."""
    for _ in range(20):
        await asyncio.sleep(0)


def start_senders(
    limiter: AsyncRateLimiter, clock: Clock, n: int
) -> tuple[list[float], list[asyncio.Task[None]]]:
    """``n`` tasks that each wait their turn and note when it came (in ``sent``)."""
    sent: list[float] = []

    async def sender() -> None:
        await limiter.acquire()
        sent.append(clock.now)

    return sent, [asyncio.create_task(sender()) for _ in range(n)]


def test_the_async_limiter_is_a_client_gate() -> None:
    assert isinstance(AsyncRateLimiter(RateGovernor()), Gate)


def test_waiters_go_first_come_first_served_at_the_pace() -> None:
    async def main() -> None:
        clock = Clock()
        limiter = AsyncRateLimiter(governor(clock, rpm=60, burst_s=0.0), call_later=clock.call_later)
        order: list[tuple[int, float]] = []

        async def worker(i: int) -> None:
            await limiter.acquire()
            order.append((i, clock.now))

        tasks = [asyncio.create_task(worker(i)) for i in range(5)]
        await settle()
        assert order == [(0, 0.0)]
        assert limiter.waiting == 4
        for _ in range(4):
            clock.advance(1.0)
            await settle()
        assert order == [(i, float(i)) for i in range(5)]
        await asyncio.gather(*tasks)

    run(main())


def test_an_answer_lets_the_next_waiter_through_the_starts_window_at_once() -> None:
    async def main() -> None:
        clock = Clock()
        limiter = AsyncRateLimiter(governor(clock), call_later=clock.call_later)
        sent, tasks = start_senders(limiter, clock, 12)
        await settle()
        assert sent == [0.0] * 8  # the window; the others wait for the pace (0.2 s) or an answer
        clock.advance(0.01)
        await settle()
        assert len(sent) == 8
        limiter.observe(200, {})
        await settle()
        # The answer's place and the window's growth by one, now: not at the pace's next slot.
        assert sent[8:] == [pytest.approx(0.01)] * 2
        for _ in range(3):
            limiter.observe(200, {})
        await settle()
        assert len(sent) == 12
        await asyncio.gather(*tasks)

    run(main())


def test_a_cancelled_waiter_books_nothing_and_keeps_the_line_moving() -> None:
    async def main() -> None:
        clock = Clock()
        gov = governor(clock, rpm=60, burst_s=0.0)
        limiter = AsyncRateLimiter(gov, call_later=clock.call_later)
        done: list[int] = []

        async def worker(i: int) -> None:
            await limiter.acquire()
            done.append(i)

        tasks = [asyncio.create_task(worker(i)) for i in range(4)]
        await settle()
        assert (done, limiter.waiting) == ([0], 3)
        tasks[1].cancel()  # the first in line, waiting for its turn
        tasks[2].cancel()  # one behind it
        await settle()
        assert (gov.state.reserved, limiter.waiting) == (1, 1)
        clock.advance(1.0)
        await settle()
        # The turn worker 1 gave up goes to worker 3, at the time it was due.
        assert (done, gov.state.reserved, limiter.waiting) == ([0, 3], 2, 0)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [type(r).__name__ for r in results] == [
            "NoneType",
            "CancelledError",
            "CancelledError",
            "NoneType",
        ]

    run(main())


def test_a_pause_learned_while_waiting_holds_every_waiter() -> None:
    async def main() -> None:
        clock = Clock()
        limiter = AsyncRateLimiter(governor(clock, rpm=600, burst_s=0.0), call_later=clock.call_later)
        sent, tasks = start_senders(limiter, clock, 3)
        await settle()
        assert sent == [0.0]
        limiter.observe(429, {"retry-after": "5", **REFUSED})  # the first one's answer
        await settle()
        clock.advance(1.0)  # past when the second was due before the pause
        await settle()
        assert sent == [0.0]
        clock.advance(4.0)
        await settle()
        assert sent == [0.0, 5.0]
        gap = 1 / limiter.snapshot().requests_per_s
        clock.advance(gap)
        await settle()
        assert sent == pytest.approx([0.0, 5.0, 5.0 + gap])
        await asyncio.gather(*tasks)

    run(main())


def test_the_async_limiter_runs_on_a_real_loop() -> None:
    async def main() -> None:
        limiter = AsyncRateLimiter(RateGovernor(start_rps=2000))
        await asyncio.gather(*(limiter.acquire(10) for _ in range(20)))
        for _ in range(20):
            limiter.observe(200, OPENAI, tokens_used=8)
        snap = limiter.snapshot()
        assert (snap.in_flight, snap.rpm, snap.rpm_source) == (0, 1200, "headers")

    run(main())


def test_a_lone_429_while_the_counters_show_room_neither_pauses_nor_slows_the_pace() -> None:
    # A provider (or a gateway's upstream) may refuse one request now and then while its own counters have room:
    # that is not the pace hitting the limit. Cutting the pace for each such 429 once starved a run to an eighth
    # of the limit.
    t = [0.0]
    g = RateGovernor(clock=lambda: t[0], unix_time=lambda: 1_000_000.0)
    room = {"x-ratelimit-limit-requests": "3000", "x-ratelimit-remaining-requests": "40",
            "x-ratelimit-reset-requests": "20ms", "retry-after": "1"}  # fmt: skip
    g.reserve()
    g.observe(200, room)
    before = g.snapshot().requests_per_s
    for i in range(1, 501):
        t[0] += 0.02
        g.reserve()
        g.observe(429 if i % 100 == 0 else 200, room)  # one in a hundred
    snap = g.snapshot()
    assert snap.requests_per_s == before
    assert snap.rate_limited == 5
    assert g.state.pause_until <= t[0]  # no pause of everything for the second each asked
    # And a first answer that is such a 429 still tells the limit.
    fresh = RateGovernor(clock=lambda: t[0], unix_time=lambda: 1_000_000.0)
    fresh.reserve()
    fresh.observe(429, room)
    assert fresh.snapshot().rpm == 3000


class RoomyProvider(FakeProvider):
    """A hidden limit of ``rate`` a second behind counters that always show room: 6,000 a minute stated, most of
    it remaining (a per-minute count in front of a per-second limit, or a gateway's counters in front of its
    upstream's)."""

    def admit(self) -> tuple[int, Mapping[str, str]]:
        status, headers = super().admit()
        return status, {**headers, "x-ratelimit-limit-requests": "6000", "x-ratelimit-remaining-requests": "5000",
                        "x-ratelimit-reset-requests": "1s"}  # fmt: skip


@pytest.mark.parametrize("rate", [5, 20, 100])
def test_refusals_that_keep_coming_are_believed_though_the_counters_show_room(rate: int) -> None:
    clock = Clock()
    gov = governor(clock)
    answers = drive(gov, clock, RoomyProvider(clock, rate, headers=True), seconds=60.0)
    late = [status for at, status in answers if at >= 20.0]
    ok, limited = late.count(200), late.count(429)
    assert ok / 40.0 >= 0.9 * rate
    assert limited / ok <= 0.06


def test_every_waiter_whose_turn_has_come_is_let_go_in_one_pass() -> None:
    # Handing the turn on one waiter per event-loop turn left most of a line of 64 waiting while their slots
    # were already due: the batch runner ran at a fraction of the wire's speed with no limit in sight.
    async def main() -> None:
        clock = Clock()
        gov = governor(clock, rpm=6_000_000, start_rps=100_000, burst_s=0.05)
        limiter = AsyncRateLimiter(gov, call_later=clock.call_later)
        for _ in range(6_000):  # more than the burst allows at this pace: the next ones wait their turn
            gov.reserve()
        done: list[int] = []

        async def worker(i: int) -> None:
            await limiter.acquire()
            done.append(i)

        tasks = [asyncio.create_task(worker(i)) for i in range(6)]
        await settle()
        assert (done, limiter.waiting) == ([], 6)
        clock.advance(1.0)  # now every slot is due
        await asyncio.sleep(0)  # the head's timer fired: it books, leaves, and books for all the others
        await asyncio.sleep(0)
        assert limiter.waiting == 0
        await asyncio.gather(*tasks)
        assert done == [0, 1, 2, 3, 4, 5]

    run(main())


# -- a pace per model ------------------------------------------------------------------------------------


def per_model(clock: Clock, made: list[str | None], **kwargs: Any) -> ModelGates:
    """Gates on the fake clock; ``made`` lists the gates made (None: the shared one), in order."""

    def make(model: str | None) -> AsyncRateLimiter:
        made.append(model)
        return AsyncRateLimiter(governor(clock, **kwargs), call_later=clock.call_later)

    return ModelGates(make)


def limit(rpm: int, remaining: int = 9) -> dict[str, str]:
    return {"x-ratelimit-limit-requests": str(rpm), "x-ratelimit-remaining-requests": str(remaining)}


async def answered(
    gates: ModelGates,
    model: str | None,
    status: int = 200,
    headers: Any = None,
    *,
    clock: Clock | None = None,
) -> None:
    """One request of ``model`` let go and answered, in one task as a client does (the fake clock moved on
    while it waits its turn)."""

    async def attempt() -> None:
        ASKED_MODEL.set(model)
        await gates.acquire()
        gates.observe(status, {} if headers is None else headers)

    task = asyncio.create_task(attempt())
    await settle()
    while clock is not None and not task.done():
        clock.advance(1.0)
        await settle()
    await task


def test_model_gates_is_a_client_gate() -> None:
    assert isinstance(ModelGates(lambda model: AsyncRateLimiter(RateGovernor())), Gate)


def test_models_whose_answers_state_the_same_limits_share_one_pace() -> None:
    # A gateway's limit of the key (every model draws on it) states the same limit on every model's answers;
    # a pace each would send twice the limit.
    async def main() -> None:
        clock = Clock()
        made: list[str | None] = []
        gates = per_model(clock, made)
        for model in ("gpt-4o", "gpt-4o-mini", "gpt-4o", "o3-mini"):
            await answered(gates, model, headers=limit(600), clock=clock)
        assert made == [None]
        assert gates.shared_models() == ["gpt-4o", "gpt-4o-mini", "o3-mini"]
        assert {m: s.rpm for m, s in gates.snapshots().items()} == {None: 600}

    run(main())


def test_a_model_whose_answers_state_other_limits_gets_a_pace_of_its_own() -> None:
    async def main() -> None:
        clock = Clock()
        made: list[str | None] = []
        gates = per_model(clock, made)
        await answered(gates, "gpt-4o-mini", headers=limit(6000), clock=clock)
        await answered(gates, "gpt-4o", headers=limit(500), clock=clock)  # OpenAI states each model's own
        assert made == [None, "gpt-4o"]
        # That answer's limit was gpt-4o's, not the shared pace's to learn.
        assert gates.snapshots()[None].rpm == 6000
        await answered(gates, "gpt-4o", headers=limit(500), clock=clock)
        assert {m: s.rpm for m, s in gates.snapshots().items()} == {None: 6000, "gpt-4o": pytest.approx(500)}
        assert gates.shared_models() == ["gpt-4o-mini"]
        total = gates.snapshot()
        assert (total.rpm, total.rpm_source) == (pytest.approx(6500), "headers")

    run(main())


def test_a_model_on_its_own_pace_paused_by_its_429_leaves_the_others_at_theirs() -> None:
    async def main() -> None:
        clock = Clock()
        gates = per_model(clock, [], burst_s=0.0)
        await answered(gates, "gpt-4o-mini", headers=limit(600), clock=clock)
        await answered(gates, "gpt-4o", headers=limit(60), clock=clock)
        await answered(gates, "gpt-4o", 429, {"retry-after": "30", **limit(60, 0)}, clock=clock)
        paused_at = clock.now
        sent: list[tuple[str, float]] = []

        async def call(model: str) -> None:
            ASKED_MODEL.set(model)
            await gates.acquire()
            sent.append((model, clock.now))
            gates.observe(200, limit(600 if model == "gpt-4o-mini" else 60))

        waiting = asyncio.create_task(call("gpt-4o"))
        others = [asyncio.create_task(call("gpt-4o-mini")) for _ in range(3)]
        for _ in range(20):  # each waiter sets its timer when the one before it goes
            clock.advance(0.1)
            await settle()
        assert [m for m, _ in sent] == ["gpt-4o-mini"] * 3
        assert not waiting.done()  # gpt-4o waits out the 30 s it was asked to
        clock.advance(29.0)
        await settle()
        model, at = sent[-1]
        assert model == "gpt-4o"
        assert paused_at + 30.0 <= at <= paused_at + 31.0  # when the clock's step past the pause let it go
        await asyncio.gather(waiting, *others)
        snaps = gates.snapshots()
        assert (snaps["gpt-4o"].rate_limited, snaps[None].rate_limited) == (1, 0)

    run(main())


def test_a_provider_that_states_no_limit_keeps_one_pace() -> None:
    async def main() -> None:
        made: list[str | None] = []
        gates = per_model(Clock(), made)
        for _ in range(10):
            for model in ("a", "b"):
                await answered(gates, model)
        assert (made, gates.shared_models()) == ([None], ["a", "b"])

    run(main())


def test_a_gate_that_connects_first_is_made_once_for_many_callers() -> None:
    async def main() -> None:
        made: list[str | None] = []
        release = asyncio.Event()

        async def connect(model: str | None) -> AsyncRateLimiter:
            made.append(model)
            await release.wait()  # a shared limiter's connection, slow to come
            return AsyncRateLimiter(RateGovernor(start_rps=1000))

        gates = ModelGates(connect)

        async def call() -> None:
            ASKED_MODEL.set("m")
            await gates.acquire()

        first = asyncio.create_task(call())
        await settle()
        first.cancel()  # a caller gone while the gate connects leaves it connecting for the others
        callers = [asyncio.create_task(call()) for _ in range(5)]
        await settle()
        release.set()
        await asyncio.gather(*callers)
        assert made == [None]
        await gates.aclose()

    run(main())


def test_an_answer_and_a_slot_given_back_go_to_the_gate_that_let_the_request_go() -> None:
    async def main() -> None:
        clock = Clock()
        gates = per_model(clock, [])
        await answered(gates, "a", headers=limit(6_000_000), clock=clock)  # no wait for the next ones
        ASKED_MODEL.set("b")
        await gates.acquire()  # through the shared gate, b not placed yet
        gates.release()  # its request never left: the shared gate's slot comes back
        shared = gates.gates[None]
        assert isinstance(shared, AsyncRateLimiter)
        assert shared.governor.state.reserved == 1
        await gates.acquire()
        gates.observe(
            200, limit(60)
        )  # b's own limit: b gets a gate of its own, this answer settles the shared
        assert (shared.governor.state.reserved, shared.governor.state.settled) == (2, 2)
        assert list(gates.snapshots()) == [None, "b"]

    run(main())


def test_models_past_the_most_stay_on_the_shared_gate() -> None:
    # A gateway's callers may name any model: the gates (and a shared limiter's connections) stay bounded.
    async def main() -> None:
        made: list[str | None] = []
        gates = ModelGates(lambda model: made.append(model) or AsyncRateLimiter(RateGovernor()), most=2)
        for model, rpm in (("a", 6_000_000), ("b", 600_000), ("c", 300_000), ("d", 100_000)):
            await answered(gates, model, headers=limit(rpm))
        assert made == [None, "b"]
        assert gates.shared_models() == ["a", "c", "d"]

    run(main())


def test_requests_waiting_at_the_shared_pace_move_when_their_model_gets_its_own() -> None:
    # The first answer was the slow model's: the shared pace is its 1 a second. Queued behind it, the other
    # model's requests would go at that pace for as long as the queue lasts; its first answer says it has
    # its own limit, and they go at once to its own gate.
    async def main() -> None:
        clock = Clock()
        gates = per_model(clock, [])
        await answered(gates, "slow", headers=limit(60), clock=clock)
        sent: list[float] = []

        async def call() -> None:
            ASKED_MODEL.set("fast")
            await gates.acquire()
            sent.append(clock.now)
            gates.observe(200, limit(600_000))

        queued = [asyncio.create_task(call()) for _ in range(11)]
        await settle()
        while not sent:
            clock.advance(0.25)
            await settle()
        # The shared gate let the first go at its pace; its answer gave fast a gate of its own, and the ten
        # queued behind it moved there and went at once, not one a second for ten seconds.
        clock.advance(0.01)
        await settle()
        assert len(sent) == 11, sent
        assert sent[-1] - sent[0] < 0.1
        await asyncio.gather(*queued)
        assert gates.shared_models() == ["slow"]

    run(main())
