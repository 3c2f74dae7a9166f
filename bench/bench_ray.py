"""The Ray Data adapter against genguard's own batch runner and a plain asyncio loop, on the same server.

A bare uvicorn + Starlette server (``bench_batch.BARE_SERVER``: every request the same chat completion, no
rate limit, its own process on 127.0.0.1) answers N chat requests from each contender in turn:

- asyncio: one ``genguard.AsyncClient`` in this process, ``asyncio.gather`` over every row (concurrency 64):
  the floor of what genguard's client costs, no journal, no output;
- genguard batch: ``genguard.batch(rows, out=..., progress="none")`` (concurrency 64; its journal and output
  files included);
- ray: ``map_requests(ray.data.from_items(rows), actors=A, batch_size=B).take_all()``, no journal;
- ray + journal: the same with ``journal=`` a SQLite file (every batch loaded and recorded by A actors).

Ray is started once (``ray.init(num_cpus=2, include_dashboard=False)``, timed on its own, with the resident
memory of every Ray process it left running); each Ray run's wall time includes starting its actor pool, as a
pipeline's would. Rows per second per contender and the ratio to the asyncio floor, best of ``--rounds``.

    .venv/bin/python bench/bench_ray.py                 # N = 4000, 2 actors, batches of 64, 2 rounds
    .venv/bin/python bench/bench_ray.py --rows 10000 --actors 2 --batch-size 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import BARE_SERVER, KEY, MODEL, _server


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"custom_id": f"row-{i}", "prompt": f"Name a river, number {i}."} for i in range(n)]


async def _asyncio(url: str, rows: list[dict[str, Any]]) -> int:
    import genguard

    async with genguard.AsyncClient(url, api_key=KEY, max_concurrency=64) as client:
        outcomes = await asyncio.gather(
            *(client.chat(model=MODEL, messages=[{"role": "user", "content": r["prompt"]}]) for r in rows)
        )
    return sum(1 for o in outcomes if o.ok)


def _batch(url: str, rows: list[dict[str, Any]], work: Path) -> int:
    import genguard

    out = Path(tempfile.mkdtemp(dir=work))
    requests = [
        {
            "custom_id": r["custom_id"],
            "body": {"model": MODEL, "messages": [{"role": "user", "content": r["prompt"]}]},
        }
        for r in rows
    ]
    result = genguard.batch(requests, out=out, base_url=url, api_key=KEY, concurrency=64, progress="none")
    return int(result.counts.ok)


def _ray(url: str, rows: list[dict[str, Any]], args: argparse.Namespace, journal: Path | None) -> int:
    import ray

    from genguard.integrations.ray_data import map_requests

    ds = ray.data.from_items(rows)
    out = map_requests(
        ds,
        actors=args.actors,
        batch_size=args.batch_size,
        batches_per_actor=args.batches_per_actor,
        base_url=url,
        api_key=KEY,
        model=MODEL,
        concurrency=64,
        journal=journal,
    ).take_all()
    return sum(1 for r in out if r["ok"])


def _ray_rss_mb() -> float:
    """Resident memory of every Ray process of this user (raylet, GCS, workers...), in MB."""
    ps = subprocess.run(["ps", "-eo", "rss,args"], capture_output=True, text=True, check=True).stdout
    total = 0
    for line in ps.splitlines()[1:]:
        rss, _, cmd = line.strip().partition(" ")
        if "ray" in cmd and ("raylet" in cmd or "gcs_server" in cmd or "ray::" in cmd or "/ray/" in cmd):
            total += int(rss)
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches-per-actor", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = _rows(args.rows)
    result: dict[str, Any] = {
        "rows": args.rows,
        "actors": args.actors,
        "batch_size": args.batch_size,
        "batches_per_actor": args.batches_per_actor,
    }

    t0 = time.perf_counter()
    import ray

    t1 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    t2 = time.perf_counter()
    ray.data.DataContext.get_current().enable_progress_bars = False
    result["ray_import_s"] = round(t1 - t0, 2)
    result["ray_init_s"] = round(t2 - t1, 2)
    result["ray_rss_mb_after_init"] = round(_ray_rss_mb(), 1)

    best: dict[str, float] = {}
    with _server(BARE_SERVER) as url, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n in range(args.rounds):
            runs = {
                "asyncio": lambda: asyncio.run(_asyncio(url, rows)),
                "genguard batch": lambda: _batch(url, rows, work),
                "ray": lambda: _ray(url, rows, args, None),
                "ray + journal": lambda n=n: _ray(url, rows, args, work / f"journal-{n}.sqlite"),
            }
            for name, run in runs.items():
                start = time.perf_counter()
                ok = run()
                wall = time.perf_counter() - start
                if ok != args.rows:
                    raise SystemExit(f"{name}: {ok} of {args.rows} rows ok")
                best[name] = max(best.get(name, 0.0), args.rows / wall)
        result["ray_rss_mb_with_actors"] = round(_ray_rss_mb(), 1)
    ray.shutdown()
    floor = best["asyncio"]
    result["rows_per_s"] = {k: round(v, 1) for k, v in best.items()}
    result["vs_asyncio"] = {k: round(v / floor, 2) for k, v in best.items()}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"ray: import {result['ray_import_s']} s, init {result['ray_init_s']} s, "
          f"{result['ray_rss_mb_after_init']} MB resident after init, "
          f"{result['ray_rss_mb_with_actors']} MB with the actors")  # fmt: skip
    print(
        f"{args.rows} rows, {args.actors} actors, batches of {args.batch_size}, "
        f"{args.batches_per_actor} at once per actor; best of {args.rounds}"
    )
    print(f"{'contender':<16}{'rows/s':>10}{'x asyncio':>11}")
    for name, rate in best.items():
        print(f"{name:<16}{rate:>10.1f}{rate / floor:>11.2f}")


if __name__ == "__main__":
    main()
