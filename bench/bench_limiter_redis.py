"""What the shared (Redis) limiter costs per request, against the in-process one and one Redis round trip.

No HTTP: each case runs ``--workers`` asyncio tasks, each doing ``await gate.acquire(tokens)`` then
``gate.observe(200, headers)`` until ``--requests`` requests have passed, with a limit far above what the loop
can reach and a burst allowance of 10 s (so the figures are the limiter's own cost, never a wait). Printed per case: wall and CPU
microseconds per request, Redis round trips (leases) per request, and the ratio to the in-process limiter.

- ``in-process``: :class:`AsyncRateLimiter` (one process, no sharing): the floor;
- ``redis, chunked``: :class:`RedisGate` as shipped (leases of about 0.1 s of the pace, 256 slots at most);
- ``redis, 1 a lease``: the same gate leasing one slot at a time: one round trip per request, what a limiter
  that calls its Lua script per request costs;
- ``redis PING``: one bare round trip to the same Redis, for scale.

    .venv/bin/python bench/bench_limiter_redis.py                      # 20,000 requests, 64 tasks
    .venv/bin/python bench/bench_limiter_redis.py --requests 50000 --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from genguard.bulk.limiter import AsyncRateLimiter, RateGovernor
from genguard.bulk.limiter_redis import RedisGate, open_gate

LIMIT = {"x-ratelimit-limit-requests": "60000000", "x-ratelimit-limit-tokens": "6000000000"}
TOKENS = 120
BURST_S = 10.0


async def _drive(gate: AsyncRateLimiter | RedisGate, requests: int, workers: int) -> tuple[float, float]:
    gate.observe(200, LIMIT)
    left = [requests]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await gate.acquire(TOKENS)
            gate.observe(200, LIMIT, tokens_used=TOKENS - 20, tokens_reserved=TOKENS)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - wall, time.process_time() - cpu


async def _redis_case(url: str, requests: int, workers: int, max_chunk: int) -> tuple[float, float, int]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    gate = await open_gate(f"{url}{'&' if '?' in url else '?'}name={name}&prefix=genguard-bench")
    gate.max_chunk = max_chunk
    gate.burst_s = BURST_S
    try:
        wall, cpu = await _drive(gate, requests, workers)
        return wall, cpu, gate.leases
    finally:
        await gate.aclose()
        import redis.asyncio as aioredis

        client = aioredis.from_url(url)
        await client.delete(f"genguard-bench:{name}", f"genguard-bench:{name}:workers")
        await client.aclose()


async def _ping(url: str, requests: int) -> tuple[float, float]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    await client.ping()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        await client.ping()
    result = time.perf_counter() - wall, time.process_time() - cpu
    await client.aclose()
    return result


def _best(runs: int, make: Callable[[], Awaitable[tuple[float, ...]]]) -> tuple[float, ...]:
    results = [asyncio.run(make()) for _ in range(runs)]  # type: ignore[arg-type]
    return min(results, key=lambda r: r[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs per case")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    n, w = args.requests, args.workers

    def in_process() -> Awaitable[tuple[float, float]]:
        return _drive(AsyncRateLimiter(RateGovernor(burst_s=BURST_S)), n, w)

    floor_wall, floor_cpu = _best(args.runs, in_process)
    rows: list[tuple[str, float, float, float | None]] = [("in-process", floor_wall, floor_cpu, None)]
    wall, cpu, leases = _best(args.runs, lambda: _redis_case(args.redis, n, w, RedisGate.max_chunk))
    rows.append(("redis, chunked", wall, cpu, leases / n))
    one = max(n // 10, 1000)  # one round trip a request: fewer requests, the same per-request figures
    wall, cpu, leases = _best(args.runs, lambda: _redis_case(args.redis, one, w, 1))
    rows.append(("redis, 1 a lease", wall * n / one, cpu * n / one, leases / one))
    wall, cpu = _best(args.runs, lambda: _ping(args.redis, one))
    rows.append(("redis PING", wall * n / one, cpu * n / one, 1.0))
    print(f"{n} requests, {w} tasks, best of {args.runs}")
    print(
        f"{'case':<18} {'wall us/req':>11} {'cpu us/req':>10} {'leases/req':>10} {'wall x':>7} {'cpu x':>6}"
    )
    for label, wall, cpu, per in rows:
        leases_text = "-" if per is None else f"{per:.4f}"
        print(f"{label:<18} {wall / n * 1e6:>11.2f} {cpu / n * 1e6:>10.2f} {leases_text:>10} "
              f"{wall / floor_wall:>7.2f} {cpu / floor_cpu:>6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
