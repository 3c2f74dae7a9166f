"""The adaptive rate limiter: run a batch at the provider's rate limit without being told it.

:class:`RateGovernor` decides (pure: an injected clock, no sleeping, no I/O); :class:`AsyncRateLimiter` sleeps
what it decides, for asyncio workers. Each worker does ``await limiter.acquire(tokens)``, sends, then
``limiter.observe(status, headers)`` with what came back.

Where the limits come from, best first:

1. rate-limit headers on every response (``x-ratelimit-*-requests|tokens``, ``anthropic-ratelimit-*``,
   ``ratelimit-*`` and others, see :func:`read_rate_limits`): the per-minute limit sets the pace, remaining and
   reset say where the provider's bucket stands now;
2. ``Retry-After`` / ``retry-after-ms`` on a 429: everything pauses until then, not only the worker that got it
   (unless the 429 is taken for a fault: the provider's counters show room, or none are sent and it came alone,
   not with enough others among the last answers; then only its own request waits). A short wait in whole
   seconds with no counter beside it is "at most": one request probes the pause a tenth in, and its answer
   ends it (``RateGovernor.booked_probe``, ``observe(probe=True)``);
3. the 429s themselves. Before anything is known, a window of requests goes whatever the pace (8 at once,
   one more for each answer while it is full: twice as many each round trip, within a clock's bound), as TCP's
   slow start does, so that a server that never limits (a model server of one's own) is at full speed within a
   few round trips; beside it a pace starts low and doubles about once per round trip. The first 429 closes the
   window: the pace heads for what got through until then and is halved meanwhile (a 429 after the first
   success or none says nothing yet: the pace goes on probing). After that, the successes counted between two
   429s measure the limit (the provider's
   bucket is empty at both, so everything it let through in between was its refill): each 429 cuts the pace
   just below that measure (by 10% at least, once per round trip), the pace closes in on it again within a
   second or two and then probes above it slowly, a little faster the longer nothing is refused. It rises
   only while it is what holds the workers back.

``rpm``/``tpm`` given by the user always cap the result. Requests are spaced evenly at the pace (with a burst
allowance of ``burst_s`` seconds' worth): providers enforce per-minute limits over windows as short as a
second, so a minute's budget sent at once is refused.

>>> t = [0.0]
>>> gov = RateGovernor(rpm=120, clock=lambda: t[0], burst_s=0.0)
>>> [gov.reserve() for _ in range(3)]
[0.0, 0.5, 1.0]
>>> gov.observe(200, {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59"})
>>> gov.snapshot().rpm, gov.snapshot().rpm_source
(60.0, 'headers')
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

from ..client.gate import ASKED_MODEL, Gate
from ..core.headers import get_header
from ..core.waits import MS_WAIT_HEADERS, parse_reset, wait_from_headers

__all__ = [
    "AsyncRateLimiter",
    "GovernorState",
    "ModelGates",
    "PacedGate",
    "RateGovernor",
    "RateLimitReading",
    "RateSnapshot",
    "read_rate_limits",
]

Kind = Literal["requests", "tokens"]
Source = Literal["given", "headers", "429s"]

# -- reading the headers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateLimitReading:
    """One rate-limit bucket as a response's headers describe it.

    ``limit`` is per ``window_s`` seconds (60 for the per-minute limits OpenAI and Anthropic send, 86400 for a
    ``-day`` one, ``None`` when the headers do not say); ``reset_s`` is seconds from now; ``part`` is
    ``"input"`` or ``"output"`` for Anthropic's split token buckets, else ``""``.
    """

    kind: Kind
    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None
    window_s: float | None = None
    part: str = ""


_FIELDS = frozenset({"limit", "remaining", "reset"})
_PERIODS = {"second": 1.0, "sec": 1.0, "s": 1.0, "minute": 60.0, "min": 60.0, "m": 60.0,
            "hour": 3600.0, "h": 3600.0, "day": 86400.0, "d": 86400.0}  # fmt: skip
_KNOWN_PARTS = _FIELDS | frozenset(
    {"token", "tokens", "requests", "request", "req", "input", "output", "per", *_PERIODS}
)
_PARAM = re.compile(r'([a-z-]+)\s*=\s*"?([^;,"\s]*)"?', re.IGNORECASE)
_POLICY_LEAD = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(?:;|,|$)")

# (kind, part, field, window_s, per_minute_by_name) for each header name seen, as sent; None for names that
# are not a rate-limit field, "structured" and "policy" for the IETF draft's ``ratelimit`` and
# ``ratelimit-policy``. Filled once per name: providers send the same few names on every response.
_Name = tuple[Kind, str, str, float | None, bool] | Literal["structured", "policy"]
_NAMES: dict[str, _Name | None] = {}
_NAMES_CAP = 512


def _describe(raw: str) -> _Name | None:
    name = raw.lower()
    if "ratelimit" not in name:
        return None
    if name in ("ratelimit", "x-ratelimit"):
        return "structured"
    if name in ("ratelimit-policy", "x-ratelimit-policy"):
        return "policy"
    head, sep, rest = name.partition("ratelimit-")
    if not sep or head not in ("", "x-", "anthropic-"):
        return None
    parts = rest.split("-")
    fields = [p for p in parts if p in _FIELDS]
    if len(fields) != 1 or not _KNOWN_PARTS.issuperset(parts):
        # A word we do not know names another counter: OpenAI's ``x-ratelimit-remaining-tokens_usage_based``
        # counts the tokens answers used beside the bucket that refuses, and read as the same bucket its
        # larger count hid an exhausted one.
        return None
    kind: Kind = "requests"
    part = ""
    window: float | None = None
    named = False
    for p in parts:
        if p in ("token", "tokens"):
            kind, named = "tokens", True
        elif p in ("requests", "request", "req"):
            named = True
        elif p in ("input", "output"):
            part = p
        elif p in _PERIODS:
            window = _PERIODS[p]
    # OpenAI's and Anthropic's request/token limits are per minute; a bare ``ratelimit-limit`` says nothing.
    per_minute = named and window is None
    return kind, part, fields[0], window, per_minute


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value < math.inf else None  # NaN fails both


def read_rate_limits(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> list[RateLimitReading]:
    """The rate-limit buckets ``headers`` describe, in any letter case and in the forms providers send:
    ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (OpenAI, Groq, most others; a ``-day`` or
    ``-minute`` suffix names the window), ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-*``,
    ``x-ratelimit-{limit,remaining,reset}`` and the IETF draft's ``ratelimit-*`` / ``ratelimit`` with
    ``ratelimit-policy`` (``100;w=60``). Resets are read by :func:`genguard.core.waits.parse_reset` against
    ``now`` (Unix time). Unknown or unreadable names and values are skipped.

    >>> [r] = read_rate_limits({"X-RateLimit-Limit-Requests": "500", "x-ratelimit-reset-requests": "120ms"})
    >>> r.kind, r.limit, r.reset_s, r.window_s
    ('requests', 500.0, 0.12, 60.0)
    >>> [r] = read_rate_limits({"ratelimit-limit": "100", "ratelimit-remaining": "7", "ratelimit-policy": "100;w=1"})
    >>> r.limit, r.remaining, r.window_s
    (100.0, 7.0, 1.0)
    """
    if not headers:
        return []
    found: dict[tuple[Kind, str, float | None, bool], dict[str, float]] = {}
    policy_window: float | None = None
    current: float | None = now
    for raw_name, raw_value in headers.items():
        if raw_name in _NAMES:
            desc = _NAMES[raw_name]
        else:
            if not isinstance(raw_name, str):
                continue
            desc = _describe(raw_name)
            if len(_NAMES) < _NAMES_CAP:
                _NAMES[raw_name] = desc
        if desc is None:
            continue
        value = str(raw_value)
        if desc == "structured":
            params = {k.lower(): v for k, v in _PARAM.findall(value)}
            entry = found.setdefault(("requests", "", None, False), {})
            for key, field in (("limit", "limit"), ("remaining", "remaining"), ("r", "remaining"),
                               ("reset", "reset"), ("t", "reset")):  # fmt: skip
                number = _number(params.get(key, ""))
                if number is not None:
                    entry[field] = number
            continue
        if desc == "policy":
            params = {k.lower(): v for k, v in _PARAM.findall(value)}
            lead = _POLICY_LEAD.match(value)
            quota = _number(params.get("q", "")) or (float(lead.group(1)) if lead else None)
            policy_window = _number(params.get("w", ""))
            if quota is not None:
                found.setdefault(("requests", "", None, False), {}).setdefault("limit", quota)
            continue
        kind, part, field, window, per_minute = desc
        if field == "reset":
            if current is None:
                current = time.time()
            number = parse_reset(value, now=current)
        else:
            number = _number(value)
        if number is not None:
            found.setdefault((kind, part, window, per_minute), {})[field] = number
    out: list[RateLimitReading] = []
    for (kind, part, window, per_minute), values in found.items():
        if window is None:
            window = 60.0 if per_minute else policy_window
        out.append(RateLimitReading(kind, values.get("limit"), values.get("remaining"), values.get("reset"),
                                    window, part))  # fmt: skip
    return out


# -- the governor ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class GovernorState:
    """Everything a :class:`RateGovernor` knows, as plain numbers: what a governor shared between processes
    stores. Times are on the governor's clock; rates are per second; ``tat_*`` is when the next request (or
    token) is due at the current pace (a theoretical arrival time, as in GCRA)."""

    rate: float
    tat_requests: float = -math.inf
    tat_tokens: float = -math.inf
    pause_until: float = -math.inf
    header_rps: float | None = None
    header_tps: float | None = None
    starting: bool = True
    first_at: float | None = None
    grown_at: float | None = None
    growing: bool = False
    reserved: int = 0
    settled: int = 0
    marker: int = 0
    ok_since_cut: int = 0
    limited_since_cut: int = 0
    cut_at: float = 0.0
    last_cut: float = -math.inf
    target: float | None = None
    limited: int = 0
    learned: bool = False
    mean_tokens: float = 0.0
    refund: float = 1.0
    window: float = 0.0
    bound: bool = False
    refused_at: deque[int] = field(default_factory=deque)
    probe_at: float = math.inf  # during a pause: when one request may go to see whether it is over
    probe_out: bool = False  # that request is on the wire


@dataclass(frozen=True, slots=True)
class RateSnapshot:
    """Where a :class:`RateGovernor` stands, for a progress line and the report.

    ``requests_per_s`` and ``tokens_per_s`` are the pace now (``tokens_per_s`` is ``None`` with no token
    limit); ``rpm``/``tpm`` the limits it believes, per minute, with where each came from (``"given"`` by the
    user, read from ``"headers"``, or learned from ``"429s"``; ``None`` when not known yet); ``rate_limited``
    the 429s seen; ``probing`` whether it is raising the pace to find the limit; ``paused_s`` what is left of a
    pause a server asked for.
    """

    requests_per_s: float
    tokens_per_s: float | None
    rpm: float | None
    rpm_source: Source | None
    tpm: float | None
    tpm_source: Source | None
    rate_limited: int
    probing: bool
    paused_s: float
    in_flight: int

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


def _positive(value: float | None, what: str) -> float | None:
    if value is not None and not value > 0:
        raise ValueError(f"{what} must be a positive number, not {value!r}")
    return value


class RateGovernor:
    """The limiter's decisions, on an injected clock: how long the next request must wait, and what every
    response teaches. Not thread-safe; one per run (its :attr:`state` is what a shared one would store).

    ``reserve(tokens)`` books a request and its estimated tokens (prompt characters / 4 + ``max_tokens``) and
    returns the seconds to wait before sending it; ``delay(tokens)`` says the same without booking;
    ``cancel(tokens)`` gives back a booking that was never sent; ``observe(...)`` is called once per booking
    that was sent, with whatever came back.

    Before anything is known (no limit read, no 429, no ``rpm`` given) a window lets requests go whatever the
    pace: ``start_window`` on the wire at once, one more for each success while it is full (it doubles each
    round trip), at most ``window_growth`` doublings a second. A pause or an empty budget holds it too.
    ``start_rps`` is the pace beside it, for the requests the window does not let go. The first answer's round
    trip raises it to keep ``start_window`` requests on the wire (within the same bound); it then doubles about
    once per round trip (at most ``start_growth`` times a second, and that often when each answer comes back
    before the next slot) while requests wait for it, until the first 429 or the first limit header.
    ``burst_s`` is how early (in seconds) a request may go to catch up with the pace after a late one.

    >>> t = [0.0]
    >>> gov = RateGovernor(clock=lambda: t[0])
    >>> [gov.reserve() for _ in range(9)][-2:]  # the window's eighth, then the pace's next slot (less the burst)
    [0.0, 0.2]
    >>> gov.observe(429, {"retry-after": "3", "x-ratelimit-remaining-requests": "0"})  # the counter: a limit
    >>> round(gov.delay(), 3), gov.snapshot().rate_limited
    (3.0, 1)
    """

    # The controller's constants; a class attribute each so that a test or a bench may try others.
    start_growth: float = 16.0  # doublings per second of the pace while nothing is known
    growth: float = 0.02  # relative rise of the pace per second above the estimated limit, at first...
    growth_doubles_s: float = 10.0  # ...and twice that after this many seconds without a 429
    approach: float = 1.0  # share of the gap to the estimated limit closed per second below it
    decrease: float = 0.9  # the most a 429 leaves of the pace
    min_decrease: float = 0.5  # the least: one round trip never cuts more than half
    margin: float = 0.95  # a cut goes to this share of the limit measured
    min_sample: int = 8  # the successes between two cuts needed to measure the limit
    round_trip_s: float = 10.0  # after this, a 429 counts even if not all sent before the last cut came back
    min_rps: float = 1 / 60  # a floor, so that one bad minute cannot stop a run for hours
    sees_all: bool = True  # whether every request at this pace is booked here (not so for a shared pace)
    start_measure_s: float = 0.25  # the successes before the first 429 are counted over this long at least
    start_window: float = 8.0  # requests on the wire at the start whatever the pace; the first pace's floor
    confirm_answers: int = 48  # a 429 no counter explains is believed with enough others in this many answers
    fault_share: float = 0.01  # enough that faults on this share of answers seldom confirm one another:
    false_cut_s: float = 30.0  # less than once in this many seconds
    window_growth: float = 32.0  # doublings per second of that window, at most, while nothing is known
    probe_share: float = 0.1  # a pause told in whole seconds sends one request this far into it...
    probe_max_s: float = 2.0  # ...when it is this long at most (see _read_headers)

    def __init__(
        self,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        unix_time: Callable[[], float] = time.time,
        start_rps: float = 4.0,
        burst_s: float = 0.05,
    ) -> None:
        self.rpm = _positive(rpm, "rpm")
        self.tpm = _positive(tpm, "tpm")
        self.clock = clock
        self.unix_time = unix_time
        self.burst_s = burst_s
        self._cap_rps = math.inf if rpm is None else rpm / 60.0
        self._cap_tps = math.inf if tpm is None else tpm / 60.0
        start = _positive(start_rps, "start_rps") or 1.0
        self.state = GovernorState(rate=min(start, self._cap_rps), cut_at=clock(), window=self.start_window)
        self.booked_probe = False  # whether the last reserve() booked the request that probes a pause

    # -- the pace ---------------------------------------------------------------------------------------

    def _ceiling(self) -> float:
        s = self.state
        return self._cap_rps if s.header_rps is None else min(self._cap_rps, s.header_rps)

    def _tps(self) -> float:
        s = self.state
        return self._cap_tps if s.header_tps is None else min(self._cap_tps, s.header_tps)

    def delay(self, tokens: int = 0) -> float:
        """Seconds until a request of about ``tokens`` tokens may be sent (0.0: now), booking nothing."""
        return self._delay(self.clock(), tokens)

    def _windowed(self) -> bool:
        """Whether the start's window lets one more request go whatever the pace: before anything is known,
        with no ``rpm`` given, while fewer than ``state.window`` requests booked here are unanswered."""
        s = self.state
        return (
            s.starting and self.sees_all and self._cap_rps == math.inf and s.reserved - s.settled < s.window
        )

    def _probing(self, now: float) -> bool:
        """Whether the next request is the one that probes a pause (see _read_headers)."""
        s = self.state
        return s.probe_at < s.pause_until and s.pause_until > now

    def _delay(self, now: float, tokens: int) -> float:
        s = self.state
        if self._probing(now):
            due = s.probe_at  # one request goes then to see whether the pause is over
        else:
            due = s.pause_until if self._windowed() else max(s.pause_until, s.tat_requests - self.burst_s)
        if tokens > 0 and self._tps() < math.inf:
            due = max(due, s.tat_tokens - self.burst_s)
        return max(0.0, due - now)

    def reserve(self, tokens: int = 0) -> float:
        """Book one request of about ``tokens`` tokens; the seconds the caller must wait before sending it.

        The booking is made now, whatever the wait: callers booking one after another are spaced evenly.
        """
        now = self.clock()
        s = self.state
        self.booked_probe = self._probing(now)
        wait = self._delay(now, tokens)
        send_at = now + wait
        if self.booked_probe:
            # The probe of a pause: the pace's schedule stays where the pause put it.
            s.probe_at = math.inf
            s.probe_out = True
            s.reserved += 1
            return wait
        rps = min(s.rate, self._ceiling())
        if s.first_at is None:
            s.first_at = send_at
            # A cap the user gave (--rpm, --tpm) starts with no credit to go early on (burst_s, for catching up
            # after a late request): the second request went burst_s early, and 601 left in the first minute
            # under --rpm 600.
            if rps >= self._cap_rps:
                s.tat_requests = max(s.tat_requests, send_at + self.burst_s)
            if self._cap_tps < math.inf and self._tps() >= self._cap_tps:
                s.tat_tokens = max(s.tat_tokens, send_at + self.burst_s)
        interval = 1.0 / rps
        # Raise the pace only while it is what holds the workers back: a run limited by its own concurrency
        # or latency learns nothing about the provider's limit.
        pace_bound = s.tat_requests > now - interval
        s.bound = pace_bound
        self._grow(now, pace_bound)
        if not (s.tat_requests - self.burst_s > send_at and self._windowed()):
            # (One the window lets go leaves the pace's schedule as it was.)
            s.tat_requests = max(s.tat_requests, send_at) + interval
        if tokens > 0:
            tps = self._tps()
            if tps < math.inf:
                s.tat_tokens = max(s.tat_tokens, send_at) + tokens / tps
            s.mean_tokens += (tokens - s.mean_tokens) * 0.05 if s.mean_tokens else tokens
        s.reserved += 1
        return wait

    def _grow(self, now: float, pace_bound: bool) -> None:
        s = self.state
        if s.starting:
            return  # raised by the successes themselves, in observe
        last, s.grown_at = s.grown_at, now
        ceiling = self._ceiling()
        if last is None or not pace_bound or s.rate >= ceiling:
            s.growing = False
            return
        dt = min(now - last, 1.0)
        if dt <= 0:
            return
        if s.target is not None and s.rate < s.target:
            rate = s.rate + (s.target - s.rate) * -math.expm1(-self.approach * dt)
            rate = max(rate, s.rate * math.exp(self.growth * dt))
        else:
            # Probe above the last measure slowly, then faster the longer nothing is refused: the limit may
            # have been raised, or measured low.
            growth = self.growth * (1.0 + (now - s.cut_at) / self.growth_doubles_s)
            rate = s.rate * math.exp(growth * dt)
        s.rate = min(rate, ceiling)
        s.growing = True

    def cancel(self, tokens: int = 0) -> None:
        """Give back a booking whose request was never sent (the caller was cancelled while waiting)."""
        now = self.clock()
        s = self.state
        s.reserved -= 1
        s.tat_requests = max(s.tat_requests - 1.0 / min(s.rate, self._ceiling()), now)
        if tokens > 0:
            tps = self._tps()
            if tps < math.inf:
                s.tat_tokens = max(s.tat_tokens - tokens / tps, now)

    # -- what responses teach ---------------------------------------------------------------------------

    def observe(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        *,
        tokens_used: int | None = None,
        tokens_reserved: int | None = None,
        rate_limited: bool | None = None,
        probe: bool = False,
    ) -> None:
        """Learn from one response to a booked request: its HTTP ``status`` (0 when none came: a timeout or a
        dropped connection), its ``headers``, and the tokens it really used (``tokens_used``, from the usage)
        against those booked for it (``tokens_reserved``, what was passed to :meth:`reserve`; the mean booking
        when not given).

        ``rate_limited`` overrides ``status == 429``: a 429 for an exhausted quota or a request larger than the
        whole token limit says nothing about the pace. ``probe``: the request was the one :meth:`reserve`
        booked to probe a pause (``booked_probe``); answered, it ends the pause.
        """
        now = self.clock()
        s = self.state
        s.settled += 1
        if probe and s.probe_out:
            s.probe_out = False
            if 200 <= status < 400 and s.pause_until > now:
                # The pause a whole-second Retry-After asked for is over sooner: go on at the pace from now.
                s.pause_until = now
                s.tat_requests = min(s.tat_requests, now + self.burst_s)
        if tokens_used is not None:
            booked = s.mean_tokens if tokens_reserved is None else tokens_reserved
            tps = self._tps()
            if booked and tps < math.inf:
                # Pay what the request really cost: an estimate too low delays the requests after it, one too
                # high gives back the share ``refund`` of its excess (all of it, until a 429 for tokens says the
                # provider charges more than was used: OpenAI's token limit counts max_tokens whatever the
                # answer's length, Anthropic's gives the unused part back). Without the request's own
                # estimate, the mean one is right on average.
                extra = tokens_used - booked
                # Under a --tpm the user set, the estimates are what it counts ("never more estimated tokens a
                # minute than this"): nothing is given back (given back, a cap of 60,000 let 115,000 through).
                refund = 0.0 if tps == self._cap_tps else s.refund
                s.tat_tokens = max(
                    s.tat_tokens + (extra if extra > 0 else extra * refund) / tps, now - self.burst_s
                )
        limited = status == 429 if rate_limited is None else rate_limited
        readings = read_rate_limits(headers, now=self.unix_time()) if headers else []
        if limited:
            room = self._room(readings)
            # A 429 alone among many answers is not this pace hitting the limit (an upstream's hiccup, a fault):
            # the request that got it waits its Retry-After; pausing or slowing every other request for it
            # would starve the run. A limit refuses again within a few answers (its bucket is empty), so the
            # 429 is believed once others follow it; at once when the counters say the bucket is empty. Counters
            # that show room do not make refusals that keep coming faults: they may count a minute while a
            # limit behind them counts each second, or another key's use (believed only when they showed room,
            # a hidden limit of 20 a second under counters of 6,000 a minute drew 3.3 429s a success, and lost
            # lines to them). Its headers still tell the limit, read as an answer's are.
            if room is not False and not self._confirmed(now):
                s.limited += 1
                if headers:
                    self._read_headers(now, 200, headers, readings)
                return
        if headers:
            self._read_headers(now, status, headers, readings)
        if limited:
            self._limited(now, tokens=any(r.kind == "tokens" and self._short(r) for r in readings))
        elif 200 <= status < 400:
            s.ok_since_cut += 1
            if s.starting:
                self._start_growth(now)

    def _short(self, r: RateLimitReading) -> bool:
        """Whether the bucket ``r`` has no room left for one more request (of the mean booking's tokens)."""
        need = 1.0 if r.kind == "requests" else max(self.state.mean_tokens, 1.0)
        return r.remaining is not None and r.remaining < need

    def _confirmed(self, now: float) -> bool:
        """Whether a 429 that no rate-limit counter explains is believed: one of enough within the last
        ``confirm_answers`` answers. A provider's limit, once reached, refuses again within a few answers (its
        bucket is empty); a fault refuses one request here and there, at any pace: believed, each took a tenth
        off the pace and paused every request for its Retry-After, and 1 request in 100 refused at random held a
        limit of 50 a second to 13. How many are enough grows with the pace: as many as make faults on
        ``fault_share`` of the answers confirm one another less than once per ``false_cut_s`` seconds (2 at a
        few requests a second, 4 at a hundred)."""
        s = self.state
        if not self.sees_all:
            # A worker of a shared pace sees its own share of the answers only: counting refusals among them
            # is slower by as many workers, and waiting for them overshot (three workers sent four times the
            # 429s at the start, and a quarter more than before after it). Every 429 is believed, as before.
            return True
        if s.settled <= s.marker and now - s.last_cut < self.round_trip_s:
            return True  # sent before the last cut: one of the refusals that made it
        recent = s.refused_at
        recent.append(s.settled)
        while recent and s.settled - recent[0] > self.confirm_answers:
            recent.popleft()
        pace = min(s.rate, self._ceiling(), 1e6)
        p, need = self.fault_share, 2
        while pace * p * math.comb(self.confirm_answers, need - 1) * p ** (need - 1) * self.false_cut_s > 1:
            need += 1
        return len(recent) >= need

    def _room(self, readings: list[RateLimitReading]) -> bool | None:
        """Whether every request and token counter read still has room for a request (``None``: the headers
        held no counter)."""
        if all(r.remaining is None for r in readings):
            return None
        return not any(self._short(r) for r in readings)

    def _start_growth(self, now: float) -> None:
        """Before anything is known, each success raises the pace by its share of those in flight, so that
        the pace doubles about once per round trip (as TCP's slow start does) but no faster than
        ``start_growth`` doublings a second: a pace raised on a clock alone would overshoot by the whole
        latency's worth of doublings before the first answer came back."""
        s = self.state
        if s.window and s.reserved - s.settled + 1 >= s.window and s.first_at is not None:
            # The window grows by one a success while it is full, so it doubles once per round trip, and no
            # faster than the clock's bound: against a server that answers in a few milliseconds it would
            # reach the workers' number before a hidden limit's first 429 came back, and all of them would get
            # one.
            bound = self.start_window * math.exp(self.window_growth * math.log(2) * (now - s.first_at))
            s.window = min(s.window + 1.0, max(bound, s.window))
        ceiling = self._ceiling()
        rps = min(s.rate, ceiling)
        # The first answer may raise the pace too, by the time since the run began (``cut_at`` is then its start).
        last, s.grown_at = (s.cut_at if s.grown_at is None else s.grown_at), now
        # Time spent paused raised nothing: the clock's bound counts from the pause's end.
        last = max(last, min(s.pause_until, now))
        # Whether the last request waited for its turn (a shared pace books elsewhere: whether its schedule is
        # still ahead). If not, the pace holds nobody back.
        bound = s.bound if self.sees_all else s.tat_requests >= now - 1.0 / rps
        if rps >= ceiling or not bound:
            s.growing = False
            return
        in_flight = max(s.reserved - s.settled, 0)
        cap = math.exp(self.start_growth * math.log(2) * (now - last))
        # With nothing else on the wire the answer came back before the next slot: the round trip is shorter
        # than the interval, and doubling once per answer would cost an interval a doubling (half a second
        # from 4 a second, against a server that answers at once). The clock's bound alone holds then. A
        # shared pace's worker cannot tell: the others' requests are not booked here.
        alone = in_flight == 0 and self.sees_all
        factor = cap if alone else min(1.0 + 1.0 / (in_flight + 1), cap)
        rate = s.rate * factor
        if s.ok_since_cut == 1 and self.sees_all and s.first_at is not None and now > s.first_at:
            # The first answer measures a round trip: from then on the pace keeps at least ``start_window``
            # requests on the wire, as TCP's slow start begins with a window of several segments, not one:
            # against a server that answers in 250 ms, 32 a second at once, not 4 doubled over three round
            # trips. Still within the clock's bound: a round trip of a few milliseconds would set a pace of
            # thousands a second, and a hidden limit would then take many round trips of 429s to find.
            rate = max(rate, min(self.start_window / (now - s.first_at), s.rate * cap))
        s.rate = min(rate, ceiling)
        # Every doubling would first wait out the interval it replaces (half the start's time, against a server
        # that never limits).
        self._bring_forward(now, rps)
        s.growing = True

    def _bring_forward(self, now: float, old_rps: float) -> None:
        """The next slot was booked at ``old_rps``: move it to the pace now, so that a faster pace begins at
        once. Only a slot still ahead (one already due holds nobody back), and not one a pause or an exhausted
        budget put further out: that wait is the provider's."""
        s = self.state
        rps = min(s.rate, self._ceiling())
        ahead = now - self.burst_s < s.tat_requests <= now + 1.0 / old_rps
        if rps > old_rps and ahead and s.pause_until <= now:
            s.tat_requests = max(s.tat_requests - 1.0 / old_rps + 1.0 / rps, now - self.burst_s)

    def _read_headers(
        self, now: float, status: int, headers: Mapping[str, str], readings: list[RateLimitReading]
    ) -> None:
        """Learn from one answer's headers (``readings``: its rate-limit counters, read once in observe)."""
        s = self.state
        told: float | None = None  # the refused request's own wait: no counter's guess holds longer
        if status == 429 or status >= 500:
            wait = wait_from_headers(headers, now=self.unix_time())
            if wait is not None and wait > 0:
                told = wait
                fresh = s.pause_until <= now  # a pause begins (not one made longer by the refusals after it)
                self._pause(now + wait)
                if fresh:
                    # A wait in whole seconds (Retry-After's own form, RFC 9110) says "at most": a fixed
                    # window refused at its end says 1 s for the 50 ms left, and every request waiting the
                    # whole second cost most of the next window (0.82 of the limit kept, once in 8 s). One
                    # request goes a tenth into a short such pause; answered, the pause ends (observe);
                    # refused, the pause holds, and no other probe goes in it.
                    coarse = (
                        self.sees_all
                        and not readings  # counters, when there are, say when a bucket has room
                        and wait <= self.probe_max_s
                        and all(get_header(headers, name) is None for name in MS_WAIT_HEADERS)
                        and wait == int(wait)
                    )
                    s.probe_at = now + wait * self.probe_share if coarse else math.inf
                    s.probe_out = False
        if not readings:
            return
        old_rps = min(s.rate, self._ceiling())
        holds: list[tuple[RateLimitReading, float | None]] = []
        rps = tps = math.inf
        split_tokens = True
        for r in readings:
            if r.kind == "tokens" and not r.part:
                split_tokens = False
        for r in readings:
            if r.kind == "tokens" and r.part and not split_tokens:
                continue  # Anthropic's combined token bucket is already the more restrictive of the two
            per_s = None
            # A bucket that takes more than a minute to refill is not a per-minute limit, whatever its name
            # (Groq's x-ratelimit-limit-requests counts a day): it is a budget to hold to, not a pace.
            if r.limit and r.window_s and r.window_s <= 60 and (r.reset_s is None or r.reset_s <= 61):
                per_s = r.limit / r.window_s
            if per_s is not None:
                if r.kind == "requests":
                    rps = min(rps, per_s)
                else:
                    tps = min(tps, per_s)
            # A per-minute bucket's count is as old as the request's latency and the pace already keeps to
            # its refill: it decides only when the request was refused. A budget's count decides always.
            if r.remaining is not None and (per_s is None or status == 429):
                holds.append((r, per_s))
        if rps < math.inf:
            s.header_rps = rps
            s.starting = False
            # A limit read from the provider beats any guess: go straight to it, unless 429s have shown that
            # less gets through (a key shared with other clients).
            s.rate = min(self._ceiling(), s.rate if s.learned else math.inf)
            # The slot booked at the start's 4 a second would hold the next request up to 250 ms after the
            # first answer said the limit (a fifth of a 3,000-line run against a fast server).
            self._bring_forward(now, old_rps)
        # After the slot moved: an empty bucket holds the next request back from wherever the pace put it.
        for r, per_s in holds:
            self._hold(now, r, per_s, told)
        if tps < math.inf:
            s.header_tps = tps

    def _hold(self, now: float, r: RateLimitReading, per_s: float | None, told: float | None = None) -> None:
        """Hold the next request back when the provider's bucket has no room left for it (no longer than
        ``told``, the Retry-After of a 429 that said it)."""
        s = self.state
        assert r.remaining is not None
        # The count is as of when the provider took the request; since then its bucket has refilled about as
        # much as the requests sent meanwhile took: it stands for now, with nothing in flight to subtract.
        need = 1.0 if r.kind == "requests" else s.mean_tokens
        short = need - r.remaining
        if short <= 0:
            return
        if per_s is not None:
            # A per-minute bucket refills continuously: wait for the missing part, not for a full reset.
            wait = short / per_s
            if r.reset_s is not None:
                wait = min(wait, r.reset_s)
        elif r.reset_s is not None:
            wait = r.reset_s
            if r.window_s is not None and r.window_s <= 60 and r.limit and r.limit > r.remaining:
                # A bucket named per minute whose reset is minutes away (OpenAI's tokens "6m0s", Groq's daily
                # count under the per-minute names) refills as it is used up, and its reset says when it is
                # full again: room for what is missing comes after that share of it. Held for the whole
                # reset, a run sent 24 requests and then nothing for six minutes. (A -day or -hour count may
                # reset all at once: its reset is waited out.)
                wait = min(wait, short * r.reset_s / (r.limit - r.remaining))
        else:
            return
        if told is not None:
            wait = min(wait, told)
        # As after a pause: the next request goes then, not a burst's worth earlier.
        if r.kind == "requests":
            self._pause(now + wait)  # (a pause: the start's window waits for it too)
        elif self._tps() < math.inf:
            s.tat_tokens = max(s.tat_tokens, now + wait + self.burst_s)
        else:
            self._pause(now + wait)

    def _pause(self, until: float) -> None:
        s = self.state
        s.pause_until = max(s.pause_until, until)
        # After a pause the requests resume at the pace, not in a burst that makes up for it: the bucket
        # that asked for the pause has room for one request then, not for a burst.
        s.tat_requests = max(s.tat_requests, until + self.burst_s)

    def _limited(self, now: float, *, tokens: bool = False) -> None:
        s = self.state
        s.limited += 1
        s.limited_since_cut += 1
        if s.settled <= s.marker and now - s.last_cut < self.round_trip_s:
            # Sent before the last cut: it says nothing about the pace since then. (The clock bounds the wait
            # for those answers, in case a caller never reports one, a dropped connection say.)
            return
        if tokens:
            # Refused for tokens while the bookings were paid back down to the answers' usage: the provider
            # counts more than that. Give back half as much from now on (none after a few such cuts).
            s.refund = 0.0 if s.refund < 0.1 else s.refund * 0.5
        old = min(s.rate, self._ceiling())
        n, elapsed = s.ok_since_cut, now - s.cut_at
        if s.starting and s.window and self.sees_all and n < 2:
            # Refused before the start's window let through enough to measure anything (a provider that allows
            # no burst): close the window and go on probing at the pace, which has not been refused yet. The
            # window's other requests on the wire now say nothing more.
            s.window = 0.0
            s.marker = s.reserved
            s.last_cut = now
            return
        recount = True
        if not s.learned:
            if s.starting:
                # The pace doubles about once a round trip until the first 429: half of it was still
                # accepted a round trip ago.
                s.rate = s.target = max(old * self.min_decrease, self.min_rps)
                if self.sees_all and s.first_at is not None and now > s.first_at:
                    # The window let more go than the pace: what got through since the first request (over a
                    # quarter second at least) is where the pace heads, more than the limit by the provider's
                    # burst: the next cut measures it.
                    accepted = min(n / max(now - s.first_at, self.start_measure_s), self._ceiling())
                    s.target = max(s.target, accepted)
            else:
                s.target = old
                s.rate = max(old * self.decrease, self.min_rps)
        elif n >= self.min_sample and elapsed > 0:
            # The provider's bucket was empty at the last cut and is empty again now: every request it let
            # through in between was paid by its refill, so the successes counted measure the limit itself,
            # whatever the size of the bucket.
            measured = n / elapsed
            # With the limit read from headers, a measure below it is mostly requests the bucket had room
            # for but never got; only one far below says the headers are wrong (a shared key, a day's limit).
            header = s.header_rps
            s.target = header if header is not None and measured >= header * 0.5 else measured
            cut = min(old * self.decrease, s.target * self.margin)
            s.rate = max(old * self.min_decrease, cut, self.min_rps)
        else:
            # Too few successes since the last measure to count: cut by the share refused since then (at
            # least by the least cut), and keep counting from there (the bucket was empty then too).
            refused = s.limited_since_cut / (s.ok_since_cut + s.limited_since_cut)
            factor = min(self.decrease, max(self.min_decrease, 1.0 - refused))
            s.rate = max(old * factor, self.min_rps)
            if s.target is None:
                s.target = old
            recount = False
        if recount:
            s.ok_since_cut = s.limited_since_cut = 0
            s.cut_at = now
        s.marker = s.reserved
        s.last_cut = now
        s.refused_at.clear()  # the refusals at the old pace say nothing of the new one
        s.starting = False
        s.learned = True
        s.growing = False
        # From here on at the new pace, with no credit left to catch up in a burst.
        s.tat_requests = max(s.tat_requests, now + self.burst_s)

    # -- reporting --------------------------------------------------------------------------------------

    def snapshot(self) -> RateSnapshot:
        """The pace, the limits believed and where they came from, the 429s seen, whether it is probing.

        >>> RateGovernor(rpm=600, clock=lambda: 0.0).snapshot().rpm_source
        'given'
        """
        s = self.state
        now = self.clock()
        learned = s.target if s.learned and (s.header_rps is None or s.target != s.header_rps) else None
        rpm, rpm_source = _binding(self.rpm, s.header_rps, learned)
        tpm, tpm_source = _binding(self.tpm, s.header_tps, None)
        tps = self._tps()
        return RateSnapshot(
            requests_per_s=min(s.rate, self._ceiling()),
            tokens_per_s=None if tps == math.inf else tps,
            rpm=rpm,
            rpm_source=rpm_source,
            tpm=tpm,
            tpm_source=tpm_source,
            rate_limited=s.limited,
            probing=s.growing,
            paused_s=max(0.0, s.pause_until - now),
            in_flight=s.reserved - s.settled,
        )


def _binding(
    given: float | None, header_per_s: float | None, learned_per_s: float | None
) -> tuple[float | None, Source | None]:
    """The lowest per-minute limit known, and where it came from."""
    candidates: list[tuple[float, Source]] = []
    if given is not None:
        candidates.append((given, "given"))
    if header_per_s is not None:
        candidates.append((header_per_s * 60.0, "headers"))
    if learned_per_s is not None:
        candidates.append((learned_per_s * 60.0, "429s"))
    if not candidates:
        return None, None
    return min(candidates, key=lambda c: c[0])


# -- the asyncio wrapper ---------------------------------------------------------------------------------


def _mark_probe(probe: bool) -> None:
    """Keep in the task whether its request probes a pause (a retry's booking replaces its first one's)."""
    if probe or _PROBE.get():
        _PROBE.set(probe)


class _Cancellable(Protocol):
    def cancel(self) -> object: ...


CallLater = Callable[[float, Callable[[], None]], _Cancellable]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# Whether the request of this task (each request is sent from a task of its own) was booked to probe a pause
# (RateGovernor.booked_probe): set by AsyncRateLimiter.acquire, read by its observe, which tells the governor.
_PROBE: contextvars.ContextVar[bool] = contextvars.ContextVar("genguard_probe", default=False)


class _Waiter:
    __slots__ = ("fut", "granted", "probe", "tokens")

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.fut: asyncio.Future[None] | None = None
        self.granted = False  # booked by the waiter before it (see AsyncRateLimiter._grant_due)
        self.probe = False  # ...as the probe of a pause


class AsyncRateLimiter:
    """Sleeps what a :class:`RateGovernor` decides, for many asyncio workers: first come, first served.

    Only the first waiter in line books, when its turn to send has come; the others wait behind it. So a pause
    or a slower pace learned while they wait applies to all of them, and a waiter cancelled in line leaves
    nothing booked. ``call_later(delay, callback)`` schedules the wake-ups (the running loop's own unless
    given: a test passes one driven by a fake clock).

    >>> async def worker(limiter):
    ...     await limiter.acquire(tokens=120)
    ...     limiter.observe(200, {"x-ratelimit-limit-requests": "600"})
    >>> limiter = AsyncRateLimiter(RateGovernor())
    >>> asyncio.run(worker(limiter)); limiter.snapshot().rpm
    600.0
    """

    def __init__(self, governor: RateGovernor, *, call_later: CallLater | None = None) -> None:
        self.governor = governor
        self._call_later = call_later
        self._queue: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        """How many callers are waiting in :meth:`acquire`."""
        return len(self._queue)

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for this request's turn and book it (with ``tokens``, its estimated tokens). Cancelling the
        wait books nothing. A request booked to probe a pause (:attr:`RateGovernor.booked_probe`) is marked
        in the task's context, and the task's :meth:`observe` tells the governor."""
        gov = self.governor
        queue = self._queue
        if not queue and gov.delay(tokens) <= 0:
            gov.reserve(tokens)
            _mark_probe(gov.booked_probe)
            return
        loop = asyncio.get_running_loop()
        call_later = self._call_later or loop.call_later
        me = _Waiter(tokens)
        queue.append(me)
        try:
            while True:
                fut: asyncio.Future[None] = loop.create_future()
                me.fut = fut
                timer = None
                if queue[0] is me:
                    wait = gov.delay(tokens)
                    if wait <= 0:
                        gov.reserve(tokens)
                        _mark_probe(gov.booked_probe)
                        return
                    timer = call_later(wait, partial(_wake, fut))
                try:
                    await fut
                finally:
                    if timer is not None:
                        timer.cancel()
                if me.granted:
                    _mark_probe(me.probe)
                    return
        except asyncio.CancelledError:
            if me.granted:
                gov.cancel(tokens)  # booked for this waiter by the one before it, and never to be sent
            raise
        finally:
            if not me.granted:
                if queue and queue[0] is me:
                    queue.popleft()
                    self._grant_due()
                else:
                    queue.remove(me)

    def _grant_due(self) -> None:
        """Book every waiter at the head of the line whose turn has come, in one pass, and wake the first whose
        turn has not (it sets its own timer). Handing the turn on one waiter per event-loop turn left most of
        the line waiting while its slots were already due (bench/README.md, the batch runner's overhead)."""
        gov = self.governor
        queue = self._queue
        while queue:
            head = queue[0]
            if gov.delay(head.tokens) > 0:
                if head.fut is not None:
                    _wake(head.fut)
                return
            gov.reserve(head.tokens)
            head.granted = True
            head.probe = gov.booked_probe
            queue.popleft()
            if head.fut is not None:
                _wake(head.fut)

    def _wake_head(self) -> None:
        fut = self._queue[0].fut
        if fut is not None:
            _wake(fut)

    def observe(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        *,
        tokens_used: int | None = None,
        tokens_reserved: int | None = None,
        rate_limited: bool | None = None,
    ) -> None:
        """:meth:`RateGovernor.observe`, then let the first waiter re-plan its wait with what was learned."""
        probe = _PROBE.get()
        if probe:
            _PROBE.set(False)
        self.governor.observe(status, headers, tokens_used=tokens_used, tokens_reserved=tokens_reserved,
                              rate_limited=rate_limited, probe=probe)  # fmt: skip
        if self._queue:
            self._wake_head()

    def release(self, tokens: int = 0) -> None:
        """Give back a request that :meth:`acquire` booked but that was never sent."""
        self.governor.cancel(tokens)
        if self._queue:
            self._wake_head()

    def snapshot(self) -> RateSnapshot:
        """The governor's :meth:`RateGovernor.snapshot`."""
        return self.governor.snapshot()


# -- a pace per model ------------------------------------------------------------------------------------


class PacedGate(Gate, Protocol):
    """A :class:`~genguard.Gate` that can say where its pace stands and give back a slot never used, as
    :class:`AsyncRateLimiter` and :class:`~genguard.RedisGate` do."""

    def release(self, tokens: int = 0) -> None: ...

    def snapshot(self) -> RateSnapshot: ...


_UNSTATED = 8  # answers without a limit in their headers after which a model stays on the shared pace


def _limits_stated(headers: Mapping[str, str]) -> tuple[tuple[str, str, float | None, float], ...] | None:
    """The limits an answer's rate-limit headers state (not what remains of them): the same for every model
    whose requests draw on one bucket; ``None`` when they state none."""
    stated = tuple(sorted((r.kind, r.part, r.window_s, r.limit) for r in read_rate_limits(headers)
                          if r.limit is not None))  # fmt: skip
    return stated or None


def _seen(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: a failure is the waiters' to raise, not the loop's to log


class ModelGates:
    """A gate that gives a model a pace of its own once its answers show that the provider limits it on its
    own, as OpenAI does (each model has its own requests and tokens per minute, and an answer's
    ``x-ratelimit-*`` headers state the limits of the model that answered).

    Models start on one shared gate, made by ``make(None)``: a gateway's limit of the key, which every model
    draws on, is one pace, as are the models of a provider that states no limit. A model whose answer states
    other limits than the shared gate's first answer did gets a gate of its own, made by ``make(model)``;
    one whose answers state the same limits stays on the shared one. ``make`` returns the gate, or an
    awaitable of it (a shared limiter that connects first, such as ``genguard.open_gate(..., model=model)``).
    A client says which model each attempt asks (:func:`genguard.client.gate.asked_model`, a fallback model's
    own included); each answer goes to the gate that let its request go. Past ``most`` gates (a gateway's
    callers may name any model), the other models stay on the shared one.

    >>> gates = ModelGates(lambda model: AsyncRateLimiter(RateGovernor()))
    >>> async def call(model, limit):
    ...     ASKED_MODEL.set(model)
    ...     await gates.acquire(10)
    ...     gates.observe(200, {"x-ratelimit-limit-requests": limit})
    >>> for model, limit in (("a", "600"), ("b", "600"), ("c", "60"), ("c", "60")):
    ...     asyncio.run(call(model, limit))
    >>> {m: s.rpm for m, s in gates.snapshots().items()}, gates.shared_models()
    ({None: 600.0, 'c': 60.0}, ['a', 'b'])
    """

    def __init__(
        self, make: Callable[[str | None], PacedGate | Awaitable[PacedGate]], *, most: int = 256
    ) -> None:
        self._make = make
        self.most = most
        self.gates: dict[str | None, PacedGate] = {}
        self._opening: dict[str | None, asyncio.Future[PacedGate]] = {}
        # The limits the shared gate's first answer stated; the models placed on it; the models whose requests
        # went through it, in order; a model not placed yet: its answers that stated no limit, and the future
        # its requests waiting at the shared pace watch (done when it gets a gate of its own).
        self._stated: tuple[tuple[str, str, float | None, float], ...] | None = None
        self._shared: dict[str, None] = {}
        self._on_shared: dict[str | None, None] = {}
        self._unstated: dict[str, int] = {}
        self._moves: dict[str, asyncio.Future[None]] = {}
        # The gate that let the current attempt go (its answer goes there, whatever was placed since).
        self._booked: contextvars.ContextVar[PacedGate | None] = contextvars.ContextVar(
            "genguard_booked_gate", default=None
        )

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for the asked model's gate (the shared one, or its own) to let this request go."""
        model = ASKED_MODEL.get()
        gate = self.gates.get(model)
        if gate is None:
            shared = self.gates.get(None)
            if shared is not None and model in self._shared:
                gate = shared  # the usual request: a model placed on the shared gate
            elif model in self._opening:
                gate = await self.open(model)
            else:
                gate = shared if shared is not None else await self.open(None)
                self._on_shared[model] = None
                if model is not None and model not in self._shared:
                    gate = await self._unplaced(model, gate, tokens)
                    self._booked.set(gate)
                    return
        await gate.acquire(tokens)
        self._booked.set(gate)

    async def _unplaced(self, model: str, shared: PacedGate, tokens: int) -> PacedGate:
        """Wait in the shared gate for a model not placed yet; if its own gate is made meanwhile (an answer of
        it stated other limits), wait there instead: held at the shared gate's pace, a queue of its requests
        would go at another model's limit for as long as it lasts."""
        loop = asyncio.get_running_loop()
        moved = self._moves.get(model)
        if moved is None or moved.get_loop() is not loop:
            moved = self._moves[model] = loop.create_future()
        # The turn's own task marks a probe in its context, kept here to be read back (_PROBE).
        context = contextvars.copy_context()
        turn = loop.create_task(shared.acquire(tokens), context=context)
        try:
            await asyncio.wait((turn, moved), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            turn.cancel()
            raise
        if not turn.done():
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn
        if not turn.cancelled():
            turn.result()  # let go (or failed) before it could move
            if context.get(_PROBE):
                _PROBE.set(True)
            return shared
        gate = await self.open(model)
        await gate.acquire(tokens)
        return gate

    async def open(self, model: str | None) -> PacedGate:
        """``model``'s own gate (``None``: the shared one), made now if it is not yet (a shared limiter checks
        its connection as it is made: open one before sending anything to fail early)."""
        gate = self.gates.get(model)
        if gate is not None:
            return gate
        made = self._make(model) if model not in self._opening else None
        if made is not None and not inspect.isawaitable(made):
            self.gates[model] = made
            return made
        opening = self._opening.get(model)
        if opening is None:
            assert made is not None
            opening = self._opening[model] = asyncio.ensure_future(self._open(model, made))
        # Shielded: a caller cancelled while the gate connects leaves it connecting for the others.
        return await asyncio.shield(opening)

    async def _open(self, model: str | None, made: Awaitable[PacedGate]) -> PacedGate:
        try:
            gate = self.gates[model] = await made
            return gate
        finally:
            del self._opening[model]

    def _place(self, model: str, headers: Mapping[str, str]) -> bool:
        """Whether this answer of a model not placed yet gives it a gate of its own: its headers state other
        limits than the shared gate's first answer did (then they are not the shared gate's to learn from)."""
        stated = _limits_stated(headers) if headers else None
        if stated is None:
            seen = self._unstated[model] = self._unstated.get(model, 0) + 1
            if seen >= _UNSTATED:
                self._shared[model] = None  # a provider that states no limit: one pace
                self._moves.pop(model, None)
            return False
        if self._stated is None:
            self._stated = stated
        moved = self._moves.pop(model, None)
        if stated == self._stated or len(self.gates) + len(self._opening) >= self.most:
            self._shared[model] = None  # its requests waiting in the shared gate stay there
            return False
        made = self._make(model)
        if inspect.isawaitable(made):
            opening = self._opening[model] = asyncio.ensure_future(self._open(model, made))
            # A gate that fails to connect is told to the requests that wait for it (open); none may: the
            # model then stays unplaced, and its next answer tries again.
            opening.add_done_callback(_seen)
        else:
            self.gates[model] = made
        if moved is not None and not moved.done():
            moved.set_result(None)  # its requests waiting in the shared gate go to its own
        return True

    def _gate_of(self, model: str | None) -> PacedGate | None:
        booked = self._booked.get()
        if booked is not None:
            return booked
        gate = self.gates.get(model)
        return self.gates.get(None) if gate is None else gate

    def observe(
        self,
        status: int,
        headers: Mapping[str, str],
        *,
        tokens_used: int | None = None,
        tokens_reserved: int | None = None,
        rate_limited: bool | None = None,
    ) -> None:
        """Tell the gate that let the request go of its answer (and place its model, if not placed yet)."""
        model = ASKED_MODEL.get()
        gate = self._gate_of(model)
        if gate is None:
            return
        if model is not None and model not in self._shared:
            own = model in self.gates or model in self._opening
            if own or self._place(model, headers):
                if own and gate is not self.gates.get(None):
                    gate.observe(status, headers, tokens_used=tokens_used, tokens_reserved=tokens_reserved,
                                 rate_limited=rate_limited)  # fmt: skip
                else:
                    # Let go by the shared gate, answered under its model's own limits (its headers, its 429s
                    # and their waits): not the shared pace's to learn from; its slot is free again.
                    gate.observe(0, {}, tokens_reserved=tokens_reserved)
                return
        gate.observe(status, headers, tokens_used=tokens_used, tokens_reserved=tokens_reserved,
                     rate_limited=rate_limited)  # fmt: skip

    def has_own(self, model: str | None) -> bool:
        """Whether ``model`` has a gate of its own (its answers stated limits of its own)."""
        return model is not None and (model in self.gates or model in self._opening)

    def release(self, tokens: int = 0) -> None:
        """Give back a request that the gate let go but that was never sent."""
        gate = self._gate_of(ASKED_MODEL.get())
        if gate is not None:
            gate.release(tokens)

    def shared_models(self) -> list[str]:
        """The models whose requests go through the shared gate (their answers state its limits, or none, or
        none yet), in the order of their first requests; a request that names no model is not counted."""
        return [
            m for m in self._on_shared if m is not None and m not in self.gates and m not in self._opening
        ]

    def snapshots(self) -> dict[str | None, RateSnapshot]:
        """Each gate's :meth:`AsyncRateLimiter.snapshot`: ``None`` the shared one, then the models' own."""
        return {model: gate.snapshot() for model, gate in self.gates.items()}

    def snapshot(self) -> RateSnapshot:
        """The models' snapshots together: paces, limits known and 429s summed, the longest pause; the source
        of the limits is the first model's that has one."""
        snaps = list(self.snapshots().values())
        if len(snaps) == 1:
            return snaps[0]
        rpms = [s.rpm for s in snaps if s.rpm is not None]
        tpms = [s.tpm for s in snaps if s.tpm is not None]
        tps = [s.tokens_per_s for s in snaps if s.tokens_per_s is not None]
        return RateSnapshot(
            requests_per_s=sum(s.requests_per_s for s in snaps),
            tokens_per_s=sum(tps) if tps else None,
            rpm=sum(rpms) if rpms else None,
            rpm_source=next((s.rpm_source for s in snaps if s.rpm_source is not None), None),
            tpm=sum(tpms) if tpms else None,
            tpm_source=next((s.tpm_source for s in snaps if s.tpm_source is not None), None),
            rate_limited=sum(s.rate_limited for s in snaps),
            probing=any(s.probing for s in snaps),
            paused_s=max((s.paused_s for s in snaps), default=0.0),
            in_flight=sum(s.in_flight for s in snaps),
        )

    async def aclose(self) -> None:
        """Close the models' gates that hold connections (an ``aclose`` each)."""
        for opening in list(self._opening.values()):
            opening.cancel()
        for gate in self.gates.values():
            close = getattr(gate, "aclose", None)
            if close is not None:
                await close()
