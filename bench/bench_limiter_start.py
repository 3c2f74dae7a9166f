"""The limiter's start on a fake clock: 429s and successes against hidden limits and none, and random faults.

No server and no sleeping: ``tests/test_bulk_limiter.py``'s fake provider (a token bucket of R requests a second
holding a second's worth) and its driver (64 workers, each waiting its turn, sending, and reporting the answer
after a round trip drawn from a range), on a fake clock. For each R and round trip, with and without a
Retry-After on the 429s (never any rate-limit header): the 429s in the first 5 s and in all, the successes in
all and in the first second, and the successes a second after the first 5 s over what was possible (R, or the
workers' number over the round trip). Against no limit, the successes show how soon the start reaches the
workers' number on the wire. ``--faults 0.01`` has the provider also refuse that share of the requests at
random (with a Retry-After of a second) whatever the pace: an upstream's hiccups, which must not drag the pace
down. Deterministic: the same tree prints the same table.

    .venv/bin/python bench/bench_limiter_start.py
    PYTHONPATH=/path/to/other/tree/src .venv/bin/python bench/bench_limiter_start.py   # another version's
    .venv/bin/python bench/bench_limiter_start.py --set start_window=4 window_growth=16      # other constants
    .venv/bin/python bench/bench_limiter_start.py --faults 0.01 --rates 5 50 200 --seconds 30  # random 429s
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from genguard.bulk.limiter import RateGovernor
from test_bulk_limiter import Clock, FakeProvider, FaultyProvider, drive, governor

ROUND_TRIPS = {"2-8 ms": (0.002, 0.008), "10-15 ms": (0.01, 0.015), "250 ms": (0.25, 0.25)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[2, 5, 20, 50], help="hidden limits, a second"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--faults", type=float, default=0.0, help="share of requests refused at random")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="NAME=VALUE", help="try other RateGovernor constants"
    )
    args = parser.parse_args()
    for setting in args.set:
        name, _, value = setting.partition("=")
        if not hasattr(RateGovernor, name):
            parser.error(f"--set: RateGovernor has no constant {name!r}")
        setattr(RateGovernor, name, type(getattr(RateGovernor, name))(value))
    print(f"{'R':>6} {'round trip':>10} {'Retry-After':>11} {'429s<5s':>8} {'429s':>6} {'ok':>7} {'ok<1s':>6}"
          f" {'late':>5}")  # fmt: skip
    for rate in [*args.rates, None]:
        for name, latency in ROUND_TRIPS.items():
            # (With faults, every 429 of theirs carries a Retry-After; the limit's carry one too.)
            for retry_after in (False, True) if rate is not None and not args.faults else (True,):
                clock = Clock()
                gov = governor(clock)
                limit = 1e9 if rate is None else rate
                provider = (
                    FaultyProvider(clock, limit, share=args.faults)
                    if args.faults
                    else FakeProvider(clock, limit, headers=retry_after)
                )
                taken = drive(gov, clock, provider, seconds=args.seconds, latency=latency)
                limited = [at for at, status in taken if status == 429]
                ok = [at for at, status in taken if status == 200]
                late = sum(1 for at in ok if at >= 5) / max(args.seconds - 5, 1e-9)
                possible = min(limit, 64 / (sum(latency) / 2))
                print(f"{'none' if rate is None else f'{rate:g}':>6} {name:>10} {'yes' if retry_after else 'no':>11}"
                      f" {sum(1 for at in limited if at < 5):>8} {len(limited):>6} {len(ok):>7}"
                      f" {sum(1 for at in ok if at < 1):>6} {late / possible:>5.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
