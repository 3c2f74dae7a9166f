"""One batch run worked by 1, 2 and 4 worker processes on a PostgreSQL journal, against one process on SQLite.

Every contender runs ``genguard batch`` as users do (one process per worker, ``python -m genguard``), over the
same generated JSONL of N chat lines, against one server in its own process on 127.0.0.1 that answers every
request the same chat completion after a fixed latency (``--latency-ms``, 50 by default): the provider's time,
which a worker spends waiting, not computing. The requests in flight are ``--in-flight`` (64) in all, split
evenly among the workers (``--per-worker`` gives each worker that many instead, to see how far more workers
go). Per contender, in alternating rounds: the wall time from the first worker's start to the last one's exit
(start-up, loading the input, the run, and the files written at the end), lines per second, and the CPU
seconds of the worker processes (user + system, from ``wait4``; PostgreSQL's own processes are not counted,
nor the server's). Each PostgreSQL run has a schema of its own, dropped after it.

    .venv/bin/python bench/bench_scale.py                       # N = 10,000, 2 rounds; about 3 minutes
    .venv/bin/python bench/bench_scale.py --quick               # N = 2,000, 1 round
    .venv/bin/python bench/bench_scale.py --pg postgresql://postgres@127.0.0.1:5432/test --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

KEY = "sk-bench-0000000000000000"

SERVER = r"""
import asyncio, os, socket, sys, threading, time
import orjson, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

def _watch(parent=os.getppid()):
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=_watch, daemon=True).start()

LATENCY = float(sys.argv[1]) / 1000
ANSWER = orjson.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A river."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17},
})

async def chat(request):
    orjson.loads(await request.body())
    await asyncio.sleep(LATENCY)
    return Response(ANSWER, media_type="application/json", headers={"x-request-id": "req_1"})

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
uvicorn.Server(uvicorn.Config(app, log_level="error", backlog=2048, limit_concurrency=None)).run(sockets=[sock])
"""


@contextmanager
def _server(latency_ms: float) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(latency_ms)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise SystemExit(f"the bench server did not start (exit code {proc.poll()})")
        time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def write_input(path: Path, n: int) -> Path:
    import orjson

    with path.open("wb") as f:
        for i in range(n):
            body = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"Classify item {i}: is it a river or a lake?"}],
                "max_tokens": 64,
            }
            line = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            f.write(orjson.dumps(line) + b"\n")
    return path


@contextmanager
def _schema(pg: str) -> Iterator[str]:
    import psycopg
    from psycopg import sql

    name = f"gg_bench_{uuid.uuid4().hex[:10]}"
    try:
        yield f"{pg}{'&' if '?' in pg else '?'}schema={name}"
    finally:
        with psycopg.connect(pg, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _run(argvs: list[list[str]], lines: int, folder: Path) -> tuple[float, float]:
    """Start these workers together; (wall seconds until the last exits, their CPU seconds). Each worker's
    ``--json`` summary goes to a file: the run must have ended every line ok, and each worker exited 0."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    outs = [folder / f"summary-{uuid.uuid4().hex[:6]}.json" for _ in argvs]
    t0 = time.perf_counter()
    procs = []
    for argv, path in zip(argvs, outs, strict=True):
        with path.open("wb") as f:
            procs.append(subprocess.Popen([*argv, "--json"], stdout=f, stderr=subprocess.DEVNULL, env=env))
    cpu = 0.0
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"a worker exited {os.waitstatus_to_exitcode(status)}: {argvs[0]}")
        cpu += usage.ru_utime + usage.ru_stime
    wall = time.perf_counter() - t0
    summaries = [json.loads(path.read_bytes()) for path in outs]
    if not all(s["ok"] == lines for s in summaries):
        raise SystemExit(f"a run did not end every line ok: {summaries}")
    return wall, cpu


def contender(name: str, *, src: Path, base_url: str, pg: str, in_flight: int, per_worker: bool,
              folder: Path, lines: int) -> tuple[float, float]:  # fmt: skip
    common = ["--base-url", base_url, "--api-key", KEY, "--progress", "none"]
    if name == "sqlite, 1 process":
        out = folder / f"sqlite-{uuid.uuid4().hex[:6]}"
        return _run([[sys.executable, "-m", "genguard", "batch", str(src), "--out", str(out),
                      "--concurrency", str(in_flight), *common]], lines, folder)  # fmt: skip
    workers = int(name.split(",")[1].split()[0])
    each = in_flight if per_worker else max(1, in_flight // workers)
    with _schema(pg) as url:
        argvs = [
            [sys.executable, "-m", "genguard", "batch", str(src), "--journal", url, "--run", "bench",
             "--out", str(folder / f"pg-{uuid.uuid4().hex[:6]}"), "--concurrency", str(each), *common]
            for _ in range(workers)
        ]  # fmt: skip
        return _run(argvs, lines, folder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--per-worker", action="store_true", help="each worker gets --in-flight requests")
    parser.add_argument("--pg", default=os.environ.get("GENGUARD_TEST_POSTGRES",
                                                       "postgresql://postgres@127.0.0.1:5432/test"))  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="2,000 lines, one round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.rounds = 2000, 1
    names = ["sqlite, 1 process", "postgres, 1 worker", "postgres, 2 workers", "postgres, 4 workers"]
    results: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp, _server(args.latency_ms) as base_url:
        folder = Path(tmp)
        src = write_input(folder / "in.jsonl", args.lines)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else list(reversed(names)):
                results[name].append(
                    contender(
                        name,
                        src=src,
                        base_url=base_url,
                        pg=args.pg,
                        in_flight=args.in_flight,
                        per_worker=args.per_worker,
                        folder=folder,
                        lines=args.lines,
                    )
                )
    base = statistics.median(w for w, _ in results[names[0]])
    rows: list[dict[str, Any]] = []
    for name in names:
        wall = statistics.median(w for w, _ in results[name])
        cpu = statistics.median(c for _, c in results[name])
        rows.append({"contender": name, "wall_s": round(wall, 2), "lines_per_s": round(args.lines / wall, 1),
                     "cpu_s": round(cpu, 2), "speed_vs_sqlite": round(base / wall, 2)})  # fmt: skip
    settings = {"lines": args.lines, "rounds": args.rounds, "latency_ms": args.latency_ms,
                "in_flight": args.in_flight, "per_worker": args.per_worker, "cores": os.cpu_count()}  # fmt: skip
    if args.json:
        print(json.dumps({"settings": settings, "results": rows}, indent=2))
        return
    print(f"settings: {settings}")
    print(f"{'contender':<22} {'wall s':>8} {'lines/s':>9} {'CPU s':>7} {'vs sqlite':>9}")
    for row in rows:
        print(f"{row['contender']:<22} {row['wall_s']:>8} {row['lines_per_s']:>9} {row['cpu_s']:>7} "
              f"{row['speed_vs_sqlite']:>9}")  # fmt: skip


if __name__ == "__main__":
    main()
