"""The limiter's start on a fake clock: 429s and successes against hidden limits, and the speed against none.

No server and no sleeping: ``tests/test_bulk_limiter.py``'s fake provider (a token bucket of R requests a second
holding a second's worth) and its driver (64 workers, each waiting its turn, sending, and reporting the answer
after a round trip drawn from a range), on a fake clock. For each R and round trip, with and without a
Retry-After on the 429s (never any rate-limit header): the 429s in the first 5 s and in 10 s, the successes in
10 s and in the first second. Against no limit, the successes show how soon the start reaches the workers'
number on the wire. Deterministic: the same tree prints the same table.

    .venv/bin/python bench/bench_limiter_start.py
    PYTHONPATH=/path/to/other/tree/src .venv/bin/python bench/bench_limiter_start.py   # another version's
    .venv/bin/python bench/bench_limiter_start.py --set start_window=4 window_growth=16      # other constants
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from genguard.bulk.limiter import RateGovernor
from test_bulk_limiter import Clock, FakeProvider, drive, governor

ROUND_TRIPS = {"2-8 ms": (0.002, 0.008), "10-15 ms": (0.01, 0.015), "250 ms": (0.25, 0.25)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[2, 5, 20, 50], help="hidden limits, a second"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="NAME=VALUE", help="try other RateGovernor constants"
    )
    args = parser.parse_args()
    for setting in args.set:
        name, _, value = setting.partition("=")
        if not hasattr(RateGovernor, name):
            parser.error(f"--set: RateGovernor has no constant {name!r}")
        setattr(RateGovernor, name, type(getattr(RateGovernor, name))(value))
    print(
        f"{'R':>6} {'round trip':>10} {'Retry-After':>11} {'429s<5s':>8} {'429s':>6} {'ok':>7} {'ok<1s':>6}"
    )
    for rate in [*args.rates, None]:
        for name, latency in ROUND_TRIPS.items():
            for retry_after in (False, True) if rate is not None else (False,):
                clock = Clock()
                gov = governor(clock)
                provider = FakeProvider(clock, 1e9 if rate is None else rate, headers=retry_after)
                taken = drive(gov, clock, provider, seconds=args.seconds, latency=latency)
                limited = [at for at, status in taken if status == 429]
                ok = [at for at, status in taken if status == 200]
                print(f"{'none' if rate is None else f'{rate:g}':>6} {name:>10} {'yes' if retry_after else 'no':>11}"
                      f" {sum(1 for at in limited if at < 5):>8} {len(limited):>6} {len(ok):>7}"
                      f" {sum(1 for at in ok if at < 1):>6}")  # fmt: skip


if __name__ == "__main__":
    main()
