"""The batch limiter against the simulator's real rate limit: goodput and 429s per success, not told the limit.

The simulator admits R requests a second (``--rpm R*60`` enforced over a one-second window, as providers
quantise their per-minute limits) and runs in its own process; this process runs 64 workers, each doing
``await limiter.acquire(tokens)``, one POST over aiohttp, ``limiter.observe(status, headers)``, again, for
``--seconds`` a case. Three cases per R, as a provider may answer:

- ``headers``: ``x-ratelimit-*`` on every answer, Retry-After on a 429 (OpenAI's way);
- ``retry-after``: no rate-limit headers (``ratelimit_headers=False``), Retry-After still on a 429;
- ``nothing``: the same server, but the limiter is shown no header at all: it learns from 429s alone.

Printed per case: goodput / R (successes per second over the whole run, and after the first 5 s), 429s per
success (same two spans), and the limit the limiter believes at the end. The targets: goodput / R >= 0.9
(aim 0.95), 429s per success <= 0.05.

    .venv/bin/python bench/bench_limiter.py                    # R = 20 and 100, 20 s a case
    .venv/bin/python bench/bench_limiter.py --rates 50 --seconds 60 --ttft-ms 400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import aiohttp

from genguard.bulk.limiter import AsyncRateLimiter, RateGovernor
from genguard.client.gate import estimate_tokens

BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Tell me about rivers"}],
    "max_tokens": 32,
}

SERVER = r"""
import json, sys, threading
from genguard.sim import Simulator
settings = json.loads(sys.argv[1])
with Simulator(**settings):
    print("ready", flush=True)
    threading.Event().wait()
"""

MODES = ("headers", "retry-after", "nothing")
WARMUP_S = 5.0


@dataclass
class Tally:
    ok: int = 0
    limited: int = 0
    other: int = 0
    ok_late: int = 0
    limited_late: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    # Per second of the run: successes, 429s, and the pace at the end of it.
    seconds: list[list[float]] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(settings: dict[str, object]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, json.dumps(settings)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit("the simulator did not start")
    return proc


async def _drive(url: str, mode: str, seconds: float, workers: int) -> tuple[Tally, dict[str, object]]:
    governor = RateGovernor()
    limiter = AsyncRateLimiter(governor)
    tally = Tally()
    tokens = estimate_tokens(BODY)
    payload = json.dumps(BODY).encode()
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(
        connector=connector, headers={"content-type": "application/json"}
    ) as http:
        start = time.monotonic()
        end = start + seconds

        async def worker() -> None:
            while True:
                await limiter.acquire(tokens)
                now = time.monotonic()
                if now >= end:
                    limiter.release(tokens)
                    return
                async with http.post(url, data=payload) as r:
                    await r.read()
                    status, headers = r.status, r.headers
                limiter.observe(status, {} if mode == "nothing" else headers)
                elapsed = time.monotonic() - start
                late = elapsed >= WARMUP_S
                second = int(elapsed)
                while len(tally.seconds) <= second:
                    tally.seconds.append([0, 0, 0.0])
                row = tally.seconds[second]
                row[0] += status == 200
                row[1] += status == 429
                row[2] = governor.snapshot().requests_per_s
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
                if status == 200:
                    tally.ok += 1
                    tally.ok_late += late
                elif status == 429:
                    tally.limited += 1
                    tally.limited_late += late
                else:
                    tally.other += 1

        await asyncio.gather(*(worker() for _ in range(workers)))
    return tally, limiter.snapshot().to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", type=int, nargs="+", default=[20, 100], help="R: requests a second admitted"
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each case")
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="the simulator's latency per request")
    parser.add_argument("--trace", action="store_true", help="print each second: successes, 429s, pace")
    args = parser.parse_args()
    print(
        f"{'R':>5} {'case':<12} {'goodput/R':>9} {'after 5s':>8} {'429/ok':>7} {'after 5s':>8}  limit believed"
    )
    for rate in args.rates:
        for mode in args.modes:
            port = _free_port()
            settings = {"port": port, "rpm": rate * 60, "rate_window_s": 1.0, "ttft_ms": args.ttft_ms,
                        "ratelimit_headers": mode == "headers"}  # fmt: skip
            proc = _serve(settings)
            try:
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                tally, snap = asyncio.run(_drive(url, mode, args.seconds, args.workers))
            finally:
                proc.terminate()
                proc.wait(10)
            late_s = max(args.seconds - WARMUP_S, 1e-9)
            goodput = tally.ok / args.seconds / rate
            goodput_late = tally.ok_late / late_s / rate
            per_ok = tally.limited / max(tally.ok, 1)
            per_ok_late = tally.limited_late / max(tally.ok_late, 1)
            believed = f"{snap['rpm']:.0f} rpm from {snap['rpm_source']}" if snap["rpm"] else "unknown"
            other = f"  (other statuses: {tally.other})" if tally.other else ""
            print(f"{rate:>5} {mode:<12} {goodput:>9.3f} {goodput_late:>8.3f} {per_ok:>7.3f} {per_ok_late:>8.3f}"
                  f"  {believed}{other}")  # fmt: skip
            if args.trace:
                for i, (ok, limited, pace) in enumerate(tally.seconds):
                    print(f"      {i:>3}s  ok {ok:>4.0f}  429 {limited:>4.0f}  pace {pace:7.1f}/s")


if __name__ == "__main__":
    main()
