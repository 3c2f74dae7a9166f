"""One rate limit for every worker: the limiter's budget, and what it learns, kept in Redis.

:class:`RedisGate` is a :class:`~genguard.Gate` (as :class:`AsyncRateLimiter` is) whose budget of requests
and tokens per minute lives in Redis, so that every process given the same limiter (``genguard batch
--limiter redis://...``, ``genguard proxy --limiter ...``, or ``AsyncClient(gate=...)``) draws from one.

- **The pace** is a GCRA (a theoretical arrival time per bucket, requests and tokens) run by a Lua script on
  the Redis server, on the server's clock (``TIME``): no two workers' clocks are ever compared.
- **Leases**: a worker takes a small chunk of evenly spaced slots at once (about ``lease_s`` seconds of the
  pace, as many as it has callers waiting) and spends them locally, so a request costs a fraction of a round
  trip. It takes the next chunk only when its last is nearly spent, so the workers take turns and none books
  more than a lease or two ahead (a lease further off than that answers the wait alone). A slot not spent
  within ``lease_s`` of its time lapses (a late burst would break the pace); the unspent ones go back when
  the gate closes, or lapse with a killed worker (a chunk, a tenth of a second). A worker's own ``rpm`` and
  ``tpm`` cap its own leases, never what the others are told.
- **What it learns** is the :class:`RateGovernor`'s, shared: each worker feeds its own governor every answer
  (headers, Retry-After, 429s), with its state first brought up to the shared one; whatever the governor
  decides (the limit read from headers, a cut after a 429, a pause, the probe upwards) is written back with
  the worker's next lease, compare-and-set on a version, and picked up by the others on theirs. The
  governor's clock is the Redis server's, so its times mean the same in every worker, and it counts the
  successes of all workers when it measures the limit from 429s.
- **If Redis goes away** mid-run, the gate goes on alone: the same governor, paced locally at this worker's
  share of the last limit known (the limit over the workers seen in the last 10 s), still slowing on 429s; it
  logs one warning, tries Redis again every ``retry_s`` seconds, and shares again once it answers. Redis
  unreachable at the start is :class:`LimiterUnavailable` (the commands exit 2).

Keys: ``PREFIX:NAME`` (a hash: the pace, the learned limit and its source, a version, who wrote it when) and
``PREFIX:NAME:workers``; both expire a day after their last use. ``NAME`` is ``?name=`` in the URL, else a
hash of the provider's base URL and API key (never the key itself), and ``/MODEL`` after it for the budget of
one model (``open_gate(..., model=...)``: batch runs, the proxy and the Ray stage give one to a model whose answers
state limits of its own).

>>> gate = await open_gate("redis://127.0.0.1:6379/0?name=my-provider", rpm=600)  # doctest: +SKIP
>>> client = genguard.AsyncClient("https://api.example/v1", gate=gate)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..core.exceptions import ConfigError
from ..core.secrets import mask_url
from .limiter import AsyncRateLimiter, RateGovernor, RateSnapshot

__all__ = [
    "Lease",
    "LimiterUnavailable",
    "RedisGate",
    "RedisLimiterSettings",
    "limiter_settings",
    "open_gate",
]

log = logging.getLogger("genguard.limiter")

DEFAULT_PREFIX = "genguard:limiter"
_TTL_S = 86400
_WORKER_SEEN_S = 10.0

# The learned limit, as the governor keeps it: written back compare-and-set on ``version``.
_LEARNED = ("rate", "target", "learned", "starting", "cut_at", "last_cut", "grown_at", "growing",
            "header_rps", "header_tps")  # fmt: skip

# Written only along with a change of another field.
_RIDE_ALONG = frozenset({"grown_at", "growing"})

# KEYS: the state hash, the workers' sorted set. ARGV: see RedisGate._lease (one place builds them).
# Times are Unix seconds on the server's clock (ARGV[1] replaces it in tests), kept as '%.6f' strings: a Lua
# number returned to Redis would be cut to an integer, and tostring() keeps only 14 digits.
_LEASE = r"""
local key, workers = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
if now <= 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local function num(field, default)
  local v = redis.call('HGET', key, field)
  if v then return tonumber(v) end
  return default
end
local function fmt(x) return string.format('%.6f', x) end
local worker, want, want_tokens = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local settle, ok_delta = tonumber(ARGV[5]), tonumber(ARGV[6])
local cap_rps, cap_tps, burst = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local expected = tonumber(ARGV[10])
local back_end, back_to = ARGV[11], tonumber(ARGV[12])
local pause_push, tat_r_push, tat_t_push = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local ttl, start_rps, min_rps = tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18])
local horizon, known = tonumber(ARGV[19]), tonumber(ARGV[20])

if redis.call('HEXISTS', key, 'rate') == 0 then
  redis.call('HSET', key, 'rate', fmt(start_rps), 'starting', '1', 'learned', '0', 'growing', '0',
             'version', '0', 'ok', '0', 'ok_at_cut', '0', 'cut_at', fmt(now), 'created_at', fmt(now))
end
-- What the worker learned, compare-and-set: a worker that learned from an older version adopts the newer.
local published = 0
if expected >= 0 and #ARGV > 20 then
  if num('version', 0) == expected then
    for i = 21, #ARGV, 2 do
      if ARGV[i + 1] == '' then redis.call('HDEL', key, ARGV[i]) else redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
    end
    redis.call('HINCRBY', key, 'version', 1)
    redis.call('HSET', key, 'by', worker, 'updated_at', fmt(now))
    published = 1
  end
end
-- Pauses and pushed-back arrival times are facts, whatever the version: the later one wins.
if pause_push > num('pause_until', 0) then redis.call('HSET', key, 'pause_until', fmt(pause_push)) end
if ok_delta ~= 0 then redis.call('HINCRBY', key, 'ok', ok_delta) end

local rps = math.max(math.min(num('rate', start_rps), num('header_rps', math.huge)), min_rps)
local own_cap = cap_rps > 0 and cap_rps < rps
if own_cap then rps = cap_rps end
local tps = num('header_tps', math.huge)
if cap_tps > 0 then tps = math.min(tps, cap_tps) end

local tat_r = num('tat_r', 0)
-- Slots a worker gives back go back only if no one has leased after them; else they lapse.
if back_end ~= '' and redis.call('HGET', key, 'tat_r') == back_end then
  tat_r = math.max(back_to, now)
end
tat_r = math.max(tat_r, tat_r_push)
local tat_t = num('tat_t', 0)
if tps < math.huge then
  if settle ~= 0 then tat_t = math.max(tat_t + settle / tps, now - burst) end
  tat_t = math.max(tat_t, tat_t_push)
end

local interval = 1 / rps
local pace_bound = 0
-- The shared pace holds this worker back (and may be probed upwards) unless its own cap does.
if tat_r > now - interval and not own_cap then pace_bound = 1 end
local start = math.max(now, num('pause_until', 0), tat_r - burst)
local spacing = interval
local tokens = 0
-- Slots are leased only for the near future: a lease of each worker's ahead at most (each leases again only
-- once its chunk is spent, so the workers take turns), and the pace may change before a later one comes.
-- Further off, the reply is the wait alone.
redis.call('ZADD', workers, now, worker)
redis.call('ZREMRANGEBYSCORE', workers, '-inf', now - 10)
local seen = redis.call('ZCARD', workers)
if start - now > 2 * horizon * (seen + 1) then want = 0 end
if want > 0 then
  if tps < math.huge and want_tokens > 0 then
    start = math.max(start, tat_t - burst)
    tat_t = math.max(tat_t, start) + want_tokens / tps
    tokens = want_tokens
    -- Within the chunk the slots are spread at the slower of the two paces; each bucket books its own.
    spacing = math.max(interval, want_tokens / want / tps)
  end
  tat_r = math.max(tat_r, start) + want * interval
end
redis.call('HSET', key, 'tat_r', fmt(tat_r), 'tat_t', fmt(tat_t))
redis.call('EXPIRE', key, ttl)
redis.call('EXPIRE', workers, ttl)
-- The whole state only when it changed since the worker's last look: most leases need the pace alone.
local state
if num('version', 0) == known then
  state = {'tat_r', fmt(tat_r), 'tat_t', fmt(tat_t), 'ok', redis.call('HGET', key, 'ok'),
           'version', redis.call('HGET', key, 'version'), 'pause_until', redis.call('HGET', key, 'pause_until') or '0'}
else
  state = redis.call('HGETALL', key)
end
return {fmt(now), fmt(start - now), fmt(spacing), want, fmt(tokens), pace_bound, published, seen, state}
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """One answer of the lease script: ``granted`` slots, the first ``wait_s`` seconds from ``server_now`` (the
    Redis server's clock), ``spacing_s`` apart, with ``tokens`` estimated tokens; ``workers`` seen in the last
    10 s. ``granted`` is 0 when the pace is further off than a lease or two: ``wait_s`` is then how far."""

    server_now: float
    wait_s: float
    spacing_s: float
    granted: int
    tokens: float
    workers: int


class LimiterUnavailable(ConfigError):
    """The shared limiter's Redis could not be reached or used at the start: nothing was sent. Its message
    names the URL (password masked) and what to do."""


@dataclass(frozen=True, slots=True)
class RedisLimiterSettings:
    """A ``--limiter`` URL, read: the Redis URL to connect to (genguard's own parameters removed), the
    limiter's ``name`` and key ``prefix``, and ``lease_s``, the seconds of the pace a worker leases at once.

    >>> s = limiter_settings("redis://:pw@127.0.0.1:6379/2?name=team-a&lease_ms=50")
    >>> s.name, s.prefix, s.lease_s, s.display
    ('team-a', 'genguard:limiter', 0.05, 'redis://127.0.0.1:6379/2?name=team-a&lease_ms=50')
    """

    redis_url: str
    name: str | None
    prefix: str
    lease_s: float
    display: str


def limiter_settings(url: str) -> RedisLimiterSettings:
    """Read a limiter URL: ``redis://[:password@]host[:port][/db]`` (or ``rediss://``, ``unix://``) with
    optional ``name`` (the shared budget's name), ``prefix`` (of its Redis keys) and ``lease_ms``. A wrong URL
    is a ``ValueError`` that says what to write instead."""
    display = mask_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"limiter URL {display!r} cannot be read ({exc})") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"limiter URL {display!r}: only redis://, rediss:// and unix:// are supported, "
            "e.g. redis://127.0.0.1:6379/0?name=my-provider"
        )
    name: str | None = None
    prefix = DEFAULT_PREFIX
    lease_s = 0.1
    rest: list[tuple[str, str]] = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k == "name":
            name = v.strip() or None
        elif k == "prefix":
            prefix = v.strip() or DEFAULT_PREFIX
        elif k == "lease_ms":
            try:
                lease_s = float(v) / 1000.0
            except ValueError:
                lease_s = -1.0
            if not 0 < lease_s <= 10:
                raise ValueError(
                    f"limiter URL {display!r}: lease_ms must be a number of milliseconds, 1 to 10000"
                )
        else:
            rest.append((k, v))
    redis_url = urlunsplit(parts._replace(query=urlencode(rest)))
    return RedisLimiterSettings(redis_url, name, prefix, lease_s, display)


def default_name(base_url: str | None, api_key: str | None) -> str:
    """The budget's name when none is given: a provider's limit belongs to a key at a base URL, so workers
    with both in common share one. A short hash: neither the key nor the URL is written to Redis.

    >>> default_name("https://api.example/v1", "sk-a") == default_name("https://api.example/v1/", "sk-a")
    True
    """
    text = f"{(base_url or '').rstrip('/')}\n{api_key or ''}"
    return "u-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _f(value: str | bytes | None) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def _fmt(value: float) -> str:
    return f"{value:.6f}"


class RedisGate:
    """A :class:`~genguard.Gate` drawing from one budget in Redis, shared by every worker given the same
    ``name`` (see the module's docstring). ``redis`` is a ``redis.asyncio.Redis``; :func:`open_gate` makes one
    from a URL and checks it answers. ``rpm``/``tpm`` cap this worker's pace (each worker may give its own);
    without them the limit is read from the provider's headers and 429s, as :class:`AsyncRateLimiter` does.

    >>> gate = await open_gate("redis://127.0.0.1:6379/0?name=batch-7")  # doctest: +SKIP
    >>> await gate.acquire(120)  # doctest: +SKIP
    >>> gate.observe(200, {"x-ratelimit-limit-requests": "600"})  # doctest: +SKIP
    >>> await gate.aclose()  # doctest: +SKIP
    """

    max_chunk: int = 256  # slots leased at once at most
    retry_s: float = 5.0  # how often a worker that lost Redis tries it again

    def __init__(
        self,
        redis: Any,
        *,
        name: str,
        prefix: str = DEFAULT_PREFIX,
        rpm: float | None = None,
        tpm: float | None = None,
        lease_s: float = 0.1,
        burst_s: float = 0.05,
        start_rps: float = 4.0,
        worker: str | None = None,
        display: str = "redis",
    ) -> None:
        self.redis = redis
        self.name = name
        self.key = f"{prefix}:{name}"
        self.workers_key = f"{self.key}:workers"
        self.lease_s = lease_s
        self.burst_s = burst_s
        self.start_rps = start_rps
        self.display = display
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        # The governor's clock is the Redis server's, estimated from the last lease: its times are shared.
        self._offset = time.time() - time.monotonic()
        # The governor learns the provider's limit, the one it shares: this worker's own rpm/tpm cap only its
        # own leases (in the script) and its snapshot, never what the others are told.
        self.governor = RateGovernor(clock=self._server_now, burst_s=burst_s, start_rps=start_rps)
        self.governor.sees_all = False  # the other workers' requests are paced here too
        self.rpm, self.tpm = rpm, tpm
        self._cap_rps = math.inf if rpm is None else rpm / 60.0
        self._cap_tps = math.inf if tpm is None else tpm / 60.0
        self._script = redis.register_script(_LEASE)
        self._lease_lock = asyncio.Lock()
        # The chunk in hand: ``_left`` slots, the next at ``_next_at`` (monotonic), ``_spacing`` apart.
        self._left = 0
        self._next_at = 0.0
        self._spacing = 0.0
        self._unspent = 0  # slots of the last chunk dropped unspent, to give back
        self._chunk_end = ""  # the pace's arrival time right after this chunk, to give it back
        self._epoch = 0  # bumped when the chunk in hand is dropped: callers sleeping on a slot of it re-plan
        self._waiting = 0
        self._used = 0  # slots of the last chunk spent: how many the next lease asks for
        self._tokens_left = 0.0  # estimated tokens of the chunk in hand not yet booked by a request
        self._settle = 0.0  # tokens to pay (or give back) with the next lease
        self._ok = 0  # successes not yet counted in Redis
        self._ok_total = 0  # the successes of all workers, as of the last lease
        self._ok_at_cut = 0
        self._mean_tokens = 0.0
        self._version = -1
        self._sent_learned: dict[str, str] = {}
        self._pushed_pause = 0.0
        self._pushed_tat_r = 0.0
        self._pushed_tat_t = 0.0
        self.workers_seen = 0
        self._local: AsyncRateLimiter | None = None  # set while Redis is away
        self._retry_at = 0.0
        self.leases = 0
        self.last_lease: Lease | None = None

    # -- the clock --------------------------------------------------------------------------------------

    def _server_now(self) -> float:
        return time.monotonic() + self._offset

    # -- Gate ---------------------------------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """False while Redis is away and this worker paces alone."""
        return self._local is None

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for this request's slot in the shared pace and book ``tokens`` estimated tokens."""
        if tokens > 0:
            self._mean_tokens += (tokens - self._mean_tokens) * 0.05 if self._mean_tokens else tokens
        self._waiting += 1
        try:
            while True:
                local = self._local
                if local is not None and (time.monotonic() < self._retry_at or not await self._lease()):
                    await local.acquire(tokens)
                    return
                now = time.monotonic()
                self._lapse(now)
                if self._left <= 0:
                    # The chunk is spent (or the pace is further off than a lease): lease the next one only
                    # when its time is near, so that a worker books no more than a lease or two ahead and
                    # the workers take turns.
                    ahead = self._next_at - now - self.lease_s
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                    await self._lease()
                    continue
                at, epoch = self._next_at, self._epoch
                self._left -= 1
                self._used += 1
                self._next_at += self._spacing
                self._tokens_left -= tokens
                if at > now:
                    await asyncio.sleep(at - now)
                    if epoch != self._epoch:
                        continue  # a 429 or a pause dropped the chunk this slot came from: plan again
                self.governor.state.reserved += 1
                return
        finally:
            self._waiting -= 1

    def _lapse(self, now: float) -> None:
        # A slot spent long after its time would add a burst to the pace that came after it.
        late = now - max(self.lease_s, self.burst_s)
        if self._left > 0 and self._next_at < late:
            gone = min(self._left, int((late - self._next_at) / self._spacing) + 1)
            self._left -= gone
            self._next_at += gone * self._spacing

    def observe(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        *,
        tokens_used: int | None = None,
        tokens_reserved: int | None = None,
        rate_limited: bool | None = None,
    ) -> None:
        """Learn from one answer with the shared governor (see :meth:`RateGovernor.observe`); what it decides
        is written to Redis with the next lease."""
        if self._local is not None:
            self._local.observe(status, headers, tokens_used=tokens_used, tokens_reserved=tokens_reserved,
                                rate_limited=rate_limited)  # fmt: skip
            return
        gov = self.governor
        s = gov.state
        before = (s.rate, s.pause_until, s.last_cut)
        if tokens_used is not None:
            # Paid (or given back) in Redis with the next lease, not on this worker's own clock.
            booked = self._mean_tokens if tokens_reserved is None else tokens_reserved
            extra = tokens_used - booked  # an excess given back only in the share the governor still trusts
            self._settle += extra if extra > 0 else extra * s.refund
        # The governor counts successes since its last cut; in Redis they are all workers'. Its mean booking
        # says whether a 429's token count leaves room for a request.
        s.ok_since_cut = max(self._ok_total + self._ok - self._ok_at_cut, 0)
        s.mean_tokens = self._mean_tokens
        gov.observe(status, headers, rate_limited=rate_limited)
        limited = status == 429 if rate_limited is None else rate_limited
        if 200 <= status < 400 and not limited:
            self._ok += 1
        if s.last_cut != before[2]:
            self._ok_at_cut = self._ok_total + self._ok - s.ok_since_cut
        if s.rate < before[0] or s.pause_until > before[1] or s.last_cut != before[2]:
            self._drop()

    def _drop(self) -> None:
        """Stop spending the chunk in hand: it was leased at a pace now known to be too fast (it goes back
        with the next lease)."""
        self._unspent += self._left
        self._left = 0
        self._epoch += 1

    def release(self, tokens: int = 0) -> None:
        """Give back a request that :meth:`acquire` let go but that was never sent."""
        if self._local is not None:
            self._local.release(tokens)
            return
        self.governor.state.reserved -= 1
        self._tokens_left += tokens

    def snapshot(self) -> RateSnapshot:
        """The shared governor's :meth:`RateGovernor.snapshot` as this worker last saw it, within its own
        ``rpm``/``tpm``."""
        snap = self.governor.snapshot()
        rpm, rpm_source, tpm, tpm_source = snap.rpm, snap.rpm_source, snap.tpm, snap.tpm_source
        if self.rpm is not None and (rpm is None or self.rpm <= rpm):
            rpm, rpm_source = self.rpm, "given"
        if self.tpm is not None and (tpm is None or self.tpm <= tpm):
            tpm, tpm_source = self.tpm, "given"
        tps = min(snap.tokens_per_s or math.inf, self._cap_tps)
        return dataclasses.replace(
            snap, requests_per_s=min(snap.requests_per_s, self._cap_rps), tokens_per_s=None if tps == math.inf
            else tps, rpm=rpm, rpm_source=rpm_source, tpm=tpm, tpm_source=tpm_source,
        )  # fmt: skip

    # -- the lease ------------------------------------------------------------------------------------

    def _learned(self) -> dict[str, str]:
        s = self.governor.state
        out: dict[str, str] = {}
        for field in _LEARNED:
            value = getattr(s, field)
            if isinstance(value, bool):
                out[field] = "1" if value else "0"
            elif value is None or value == -math.inf:
                out[field] = ""
            else:
                out[field] = _fmt(float(value))
        out["ok_at_cut"] = str(self._ok_at_cut)
        return out

    def _described(self) -> dict[str, str]:
        # For whoever reads the hash (redis-cli HGETALL): the limit believed and where it came from.
        snap = self.governor.snapshot()
        out: dict[str, str] = {}
        out["rpm"] = "" if snap.rpm is None else _fmt(snap.rpm)
        out["rpm_source"] = snap.rpm_source or ""
        out["tpm"] = "" if snap.tpm is None else _fmt(snap.tpm)
        out["tpm_source"] = snap.tpm_source or ""
        return out

    async def _lease(self, *, want: int | None = None, now: float = 0.0) -> bool:
        """Lease the next chunk (and write back what was learned since the last one): one round trip. False
        when Redis did not answer: the gate then paces alone until it does. ``now`` replaces the server's
        clock (tests)."""
        async with self._lease_lock:
            if want is None:
                if self._local is None and (
                    self._left > 0 or self._next_at - time.monotonic() > self.lease_s
                ):
                    return True  # another caller leased while this one waited for the lock
                if self._local is not None and time.monotonic() < self._retry_at:
                    return False  # another caller just found Redis still away
            gov = self.governor
            s = gov.state
            if want is None:
                # The pace the last lease was given (the local one may be ahead of it, or behind).
                rps = 1.0 / self._spacing if self._spacing > 0 else min(s.rate, gov._ceiling(), self._cap_rps)
                by_rate = max(1, min(self.max_chunk, int(rps * self.lease_s)))
                want = max(1, min(by_rate, max(self._waiting, self._used * 2)))
            learned = self._learned()
            changed = {k: v for k, v in learned.items() if self._sent_learned.get(k) != v}
            if not changed.keys() - _RIDE_ALONG:
                changed = {}  # the probe's clock moved, the pace did not: no news
            pending_settle = self._settle
            # Tokens leased but booked by no request go back; those booked beyond the lease are paid.
            settle = pending_settle - self._tokens_left
            back_end, back_to = "", 0.0
            unspent = self._unspent + self._left
            if unspent and self._chunk_end:
                back_end = self._chunk_end
                back_to = float(self._chunk_end) - unspent * self._spacing
            pause = s.pause_until if s.pause_until > self._pushed_pause else 0.0
            tat_r = s.tat_requests if s.tat_requests > self._pushed_tat_r else 0.0
            tat_t = s.tat_tokens if s.tat_tokens > self._pushed_tat_t else 0.0
            tokens = want * self._mean_tokens
            args: list[Any] = [
                _fmt(now), self.worker, want, _fmt(tokens), _fmt(settle), self._ok,
                _fmt(0.0 if self._cap_rps == math.inf else self._cap_rps),
                _fmt(0.0 if self._cap_tps == math.inf else self._cap_tps),
                _fmt(self.burst_s), self._version if changed and self._version >= 0 else -1, back_end,
                _fmt(back_to), _fmt(max(pause, 0.0)), _fmt(max(tat_r, 0.0)), _fmt(max(tat_t, 0.0)), _TTL_S,
                _fmt(self.start_rps), _fmt(gov.min_rps), _fmt(self.lease_s), self._version,
            ]  # fmt: skip
            if changed:
                for k, v in (changed | self._described()).items():
                    args += [k, v]
            ok = self._ok
            sent_at = time.monotonic()
            try:
                reply = await self._script(keys=[self.key, self.workers_key], args=args)
            except Exception as exc:  # redis.RedisError, OSError, a timeout: Redis is away
                if not _is_redis_error(exc):
                    raise
                self._go_local(exc)
                return False
            got_at = time.monotonic()
            self.leases += 1
            self._settle -= pending_settle
            self._ok -= ok
            self._unspent = 0
            self._pushed_pause = max(self._pushed_pause, pause)
            self._pushed_tat_r = max(self._pushed_tat_r, tat_r)
            self._pushed_tat_t = max(self._pushed_tat_t, tat_t)
            server_now, pace_bound = self._apply(reply, sent_at, got_at, changed, learned, fixed=now > 0)
            if self._local is not None:
                self._back_to_shared()
            if not s.starting:
                gov._grow(server_now, pace_bound)  # the governor's own probe upwards, once a lease
            return True

    def _apply(self, reply: Any, sent_at: float, got_at: float, changed: dict[str, str],
               learned: dict[str, str], *, fixed: bool = False) -> tuple[float, bool]:  # fmt: skip
        server_now_s, wait, spacing, granted, tokens, pace_bound, published, workers, raw = reply
        server_now = float(server_now_s)
        if not fixed:
            self._offset = server_now - (sent_at + got_at) / 2
        self.workers_seen = int(workers)
        self.last_lease = Lease(
            server_now, float(wait), float(spacing), int(granted), float(tokens), int(workers)
        )
        fields = {_s(raw[i]): _s(raw[i + 1]) for i in range(0, len(raw), 2)}
        if int(published):
            self._sent_learned.update(changed)
        self._adopt(fields, learned)
        self._left = int(granted)
        self._used = 0
        self._spacing = float(spacing)
        self._next_at = got_at + float(wait)
        self._chunk_end = fields.get("tat_r", "")
        self._tokens_left = float(tokens)
        return server_now, bool(int(pace_bound))

    def _adopt(self, fields: dict[str, str], learned_at_send: dict[str, str]) -> None:
        """Bring the governor up to the shared state. What this worker learned that did not make it (another
        wrote first) is kept to be written with the next lease when it is the more careful (a slower pace, a
        limit read from headers); else the shared state wins."""
        s = self.governor.state
        self._ok_total = int(fields.get("ok", "0"))
        s.tat_requests = _f(fields.get("tat_r")) or -math.inf
        s.tat_tokens = _f(fields.get("tat_t")) or -math.inf
        s.pause_until = max(s.pause_until, _f(fields.get("pause_until")) or -math.inf)
        self._pushed_pause = max(self._pushed_pause, s.pause_until)
        self._pushed_tat_r = max(self._pushed_tat_r, s.tat_requests)
        self._pushed_tat_t = max(self._pushed_tat_t, s.tat_tokens)
        version = int(fields.get("version", "0"))
        if version == self._version:
            return
        self._version = version
        mine = self._learned()
        if mine != learned_at_send:
            return  # learned more while the lease was out: written with the next one
        unsent = {k: v for k, v in mine.items() if self._sent_learned.get(k) != v}
        if unsent and self._more_careful(fields):
            self._sent_learned = {k: fields.get(k, "") for k in mine}  # so that all of it is written next
            return
        last_cut = _f(fields.get("last_cut"))
        if last_cut is not None and last_cut > s.last_cut:
            # Another worker cut the pace: answers to what this one sent before are no news.
            s.marker = s.reserved
            s.limited_since_cut = 0
        s.rate = _f(fields.get("rate")) or s.rate
        s.target = _f(fields.get("target"))
        s.learned = fields.get("learned") == "1"
        s.starting = fields.get("starting", "1") == "1"
        s.growing = fields.get("growing") == "1"
        s.cut_at = _f(fields.get("cut_at")) or s.cut_at
        s.last_cut = last_cut if last_cut is not None else -math.inf
        s.grown_at = _f(fields.get("grown_at"))
        s.header_rps = _f(fields.get("header_rps"))
        s.header_tps = _f(fields.get("header_tps"))
        self._ok_at_cut = int(fields.get("ok_at_cut") or 0)
        s.ok_since_cut = max(self._ok_total + self._ok - self._ok_at_cut, 0)
        self._sent_learned = {k: fields.get(k, "") for k in mine}

    def _more_careful(self, fields: dict[str, str]) -> bool:
        s = self.governor.state
        theirs = min(_f(fields.get("rate")) or math.inf, _f(fields.get("header_rps")) or math.inf)
        mine = min(s.rate, s.header_rps or math.inf)
        new_header = s.header_rps is not None and not fields.get("header_rps")
        return mine < theirs * 0.999 or new_header

    # -- without Redis --------------------------------------------------------------------------------

    def _go_local(self, exc: BaseException) -> None:
        if self._local is None:
            share = max(self.workers_seen, 1)
            gov = self.governor
            rps = min(gov.state.rate, gov._ceiling())
            gov._cap_rps = min(self._cap_rps, rps / share)
            gov._cap_tps = min(self._cap_tps, gov._tps() / share)
            gov.state.tat_requests = min(gov.state.tat_requests, self._server_now())
            self._local = AsyncRateLimiter(gov)
            self._drop()
            log.warning(
                "genguard: the shared rate limiter at %s is unreachable (%s); pacing this worker alone at "
                "%.2f requests/s (its share of %d workers) until it answers again",
                self.display, type(exc).__name__, gov._cap_rps, share,
            )  # fmt: skip
        self._retry_at = time.monotonic() + self.retry_s

    def _back_to_shared(self) -> None:
        gov = self.governor
        gov._cap_rps = gov._cap_tps = math.inf
        self._local = None
        log.warning("genguard: the shared rate limiter at %s answers again; sharing its budget", self.display)

    # -- lifetime ---------------------------------------------------------------------------------------

    async def start(self) -> RedisGate:
        """Check that Redis answers and load the script: :class:`LimiterUnavailable` if not."""
        try:
            await self.redis.ping()
            sent_at = time.monotonic()
            reply = await self._script(keys=[self.key, self.workers_key], args=self._probe_args())
        except Exception as exc:
            if not _is_redis_error(exc):
                raise
            raise LimiterUnavailable(
                f"the shared rate limiter at {self.display} cannot be reached ({_reason(exc)}); start Redis "
                "there, or fix --limiter (redis://[:password@]host:port/db?name=...)"
            ) from None
        self._apply(reply, sent_at, time.monotonic(), {}, self._learned())
        return self

    def _probe_args(self) -> list[Any]:
        # A lease of nothing: creates the state if new, registers the worker, grants no slot.
        return ["0", self.worker, 0, "0", "0", 0, "0", "0", _fmt(self.burst_s), -1, "", "0", "0", "0", "0",
                _TTL_S, _fmt(self.start_rps), _fmt(self.governor.min_rps), _fmt(self.lease_s), -1]  # fmt: skip

    async def aclose(self) -> None:
        """Give the unspent slots back, write what was learned, leave the workers seen, and close the
        connection."""
        try:
            if self._local is None and await self._lease(want=0):
                await self.redis.zrem(self.workers_key, self.worker)
        except Exception as exc:
            if not _is_redis_error(exc):
                raise
        finally:
            await self.redis.aclose()

    async def __aenter__(self) -> RedisGate:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_redis_error(exc: BaseException) -> bool:
    import redis

    return isinstance(exc, redis.RedisError | OSError | asyncio.TimeoutError)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return mask_url(text) if "://" in text else text


async def open_gate(
    url: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    timeout: float = 2.0,
    model: str | None = None,
) -> RedisGate:
    """Connect to the shared limiter at ``url`` (see :func:`limiter_settings`) and check that it answers.

    The budget's name is the URL's ``?name=``, else a hash of ``base_url`` and ``api_key`` (the provider's
    limit belongs to a key); with ``model``, that name and ``/MODEL``: the budget of one model, as providers
    limit each model on its own (``genguard batch``, ``genguard proxy`` and the Ray stage give one to a model
    whose answers state limits of its own, see :class:`~genguard.ModelGates`). Raises :class:`LimiterUnavailable` (the URL's password masked) when Redis
    does not answer, ``ValueError`` for a wrong URL.

    >>> gate = await open_gate("redis://127.0.0.1:6379/0?name=team-a", rpm=3000)  # doctest: +SKIP
    >>> gates = ModelGates(lambda model: open_gate("redis://127.0.0.1:6379/0?name=team-a", model=model))  # doctest: +SKIP
    """
    try:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError:
        raise LimiterUnavailable(
            "a shared rate limiter needs the redis package: pip install 'genguard[redis]'"
        ) from None
    settings = limiter_settings(url)
    name = settings.name or default_name(base_url, api_key)
    if model is not None:
        name = f"{name}/{model}"
    try:
        client = aioredis.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1), decode_responses=False,
        )  # fmt: skip
    except ValueError as exc:
        raise ValueError(f"limiter URL {settings.display!r}: {_reason(exc)}") from None
    gate = RedisGate(client, name=name, prefix=settings.prefix, rpm=rpm, tpm=tpm, lease_s=settings.lease_s,
                     display=settings.display)  # fmt: skip
    try:
        return await gate.start()
    except BaseException:
        await client.aclose()
        raise
