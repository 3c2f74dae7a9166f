"""The batch runner (``genguard.bulk.api.abatch``): goodput at a provider's rate limit, overhead, memory.

Three measures in one run; every server runs in its own process on 127.0.0.1, so its CPU is not the client's.

1. Goodput. The simulator admits R requests a second (``Simulator(rpm=R*60, rate_window_s=1)``: a per-minute
   limit enforced over a one-second window, as providers quantise theirs), once with ``x-ratelimit-*`` headers
   on every answer and once with ``ratelimit_headers=False`` (Retry-After on a 429 is all there is). Over a
   generated JSONL of N chat lines, each contender in turn, the simulator's buckets and stats reset before each:

   - genguard: ``abatch(path, out=..., progress="none")``, not told R (journal and output files included);
   - openai SDK: ``AsyncOpenAI`` (``max_retries`` left at its default, 2) under a semaphore of 64: the code
     users write;
   - cookbook: a runner written the way the OpenAI cookbook's ``api_request_parallel_processor.py`` works,
     given R*60 as its ``max_requests_per_minute`` (it must be told): a request bucket of a minute's budget
     that starts full, one request started per 1 ms loop, no concurrency cap (aiohttp's default connector),
     a 429 pauses the loop for 15 s, a failed request goes back in a queue that is served first, with no
     backoff, up to 5 attempts; results appended to a JSONL file. No token budget (the simulator enforces
     none here).

   The SDK and the cookbook runner read no rate-limit header (the SDK reads Retry-After, which both cases
   send), so they run in the retry-after case only, unless ``--others-in-both``.

   Per contender: successes per second over R (the whole run, first byte of the input to the last result),
   429s per success (counted by the simulator), lines lost (ended failed) and lines unfinished when the
   contender was cut at ``--limit`` seconds (genguard's cut is its own ``deadline``). Targets for genguard:
   goodput/R >= 0.9 (aim 0.95), 429s per success <= 0.05. The simulator's bucket starts full (R requests), so
   a perfect client reaches N / ((N - R) / R) / R, a little above 1, on a run this short.

2. Overhead. No limit: a bare uvicorn + Starlette server answering every request the same chat completion
   (the simulator without rpm still advertises a nominal 10,000 rpm, which genguard would rightly pace to).
   Without rate-limit headers, as a local model server answers, genguard's limiter probes for a limit from
   4 requests a second; a case ending in ``:headers`` has the server state one that never binds (10 million
   a minute, in OpenAI's headers on every answer), so that genguard paces at it from the first answer and
   what is left is the runner's own cost. A case ending in ``:jitter`` (after ``:headers`` or alone) has each
   answer take 0.5-1.5 times the stated time, as a provider's answers vary: with a fixed time the slots stay in
   lock-step, each round of answers coming back together and waiting on the others' CPU. genguard's ``abatch`` against a bare asyncio loop on aiohttp with as many workers
   as genguard's concurrency, each reading input lines, posting their bodies and appending
   ``{"custom_id", "response"}`` to a JSONL file. Lines per second, the whole run each (genguard's journal,
   outputs and its ramp from an unknown limit included), and this process's CPU per line, in alternating
   rounds after an untimed warm-up of each; ratios per round, median over rounds (target >= 0.9). Each case
   of ``--overhead-cases`` runs both contenders on the same event loop (asyncio's, or uvloop, on which
   ``genguard batch`` runs) against a server that answers at once or after a set time: at once, the run is a
   race of CPU per line between two Python programs; a provider takes hundreds of milliseconds. With
   ``--client-loop`` a third contender runs the bare loop with genguard's ``AsyncClient`` in aiohttp's place
   (no journal, no limiter): what the batch adds over the client it sends with. Each round also reports the
   server's CPU a request (its process's, from ``/proc``) and the machine's idle cores while it ran: with the
   server on the same machine, whether the machine or the client's one process bounds the case.

3. Memory. Peak RSS of a fresh subprocess, read by the subprocess itself at its end (``VmHWM``; not
   ``ru_maxrss``, which Linux carries over fork and exec, so a child of this bench would report at least the
   bench's own 100+ MB): the imports alone; a whole batch run of ``--mem-lines`` (10,000) lines against the
   bare server; the runner's load alone of 10,000, 100,000 and ``--big-lines`` (1,000,000) lines. The load
   is ``abatch`` with ``deadline=1e-6``: the runner reads and validates the input, loads it into the journal
   and commits, opens the output files and its client, then stops before it claims a line (the bench checks
   that nothing was sent and every line is pending).

4. Models. Providers limit each model on its own: the simulator admits R requests a second for gpt-4o-mini and
   ``--slow-rate`` (default 2) for gpt-4o (``rpm_for``, one-second windows, headers on), and the input has
   ``--model-lines`` lines (default 400), one in ten asking gpt-4o. genguard (``ModelGates``: a model whose
   answers state other limits gets a pace of its own) against the same runner given one pace for the whole
   run (one limiter for every model, as before): wall time over the least any client could take (each model's
   lines at its own limit, the slowest model's the bound), and 429s per success. Then a limit of the key that
   two models share (a gateway's: ``--lines`` lines, half each, R a second in all), with headers and without,
   where one pace is right: goodput/R and 429s per success for both.

    .venv/bin/python bench/bench_batch.py              # R = 50, N = 1200; about 4 minutes
    .venv/bin/python bench/bench_batch.py --quick      # R = 20, N = 300, smaller runs; about 2 minutes
    .venv/bin/python bench/bench_batch.py --json       # one JSON document on stdout
    .venv/bin/python bench/bench_batch.py --only goodput --rate 100 --lines 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY = "sk-bench-0000000000000000"
MODEL = "gpt-4o-mini"
PARTS = ("goodput", "overhead", "memory", "models")
CONTENDERS = ("genguard", "openai SDK", "cookbook")
MODES = ("headers", "retry-after")

# Servers are scripts run by this interpreter: a fresh process each, which exits when this one dies (even by
# SIGKILL, when no finally runs), and prints its port when it is ready.
_WATCH_PARENT = r"""
import os, threading, time
def _watch(parent=os.getppid()):
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
"""

SIM_SERVER = (
    _WATCH_PARENT
    + r"""
import json, sys, threading
from genguard.sim import Simulator
with Simulator(**json.loads(sys.argv[1])) as sim:
    print(sim.port, flush=True)
    threading.Event().wait()
"""
)

BARE_SERVER = (
    _WATCH_PARENT
    + r"""
import asyncio, random, socket, sys
import orjson, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

ANSWER = orjson.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A river."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17},
})

LATENCY_S = float(sys.argv[1]) / 1000 if len(sys.argv) > 1 else 0.0
# With "jitter" each answer takes 0.5-1.5 times LATENCY_S (seeded), as a provider's answers vary: a fixed time
# keeps every slot in lock-step, so that each round of answers comes back at once.
JITTER = random.Random(1) if "jitter" in sys.argv[2:] else None
HEADERS = {"x-request-id": "req_1"}
if "headers" in sys.argv[2:]:
    # A limit that never binds, stated on every answer as OpenAI states its own.
    HEADERS.update({"x-ratelimit-limit-requests": "10000000", "x-ratelimit-remaining-requests": "9999999",
                    "x-ratelimit-reset-requests": "6ms"})

async def chat(request):
    orjson.loads(await request.body())
    if LATENCY_S:
        await asyncio.sleep(LATENCY_S * (0.5 + JITTER.random()) if JITTER else LATENCY_S)
    return Response(ANSWER, media_type="application/json", headers=HEADERS)

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
config = uvicorn.Config(app, log_level="error", backlog=2048, limit_concurrency=None)
uvicorn.Server(config).run(sockets=[sock])
"""
)


_SERVERS: dict[str, int] = {}  # the process id of each server running, by its base URL
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """The CPU seconds (user and system) process ``pid`` has used so far, from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15 of the whole line


def _idle_s() -> float:
    """The machine's idle CPU seconds so far, over all its cores (``/proc/stat``: idle and iowait)."""
    with open("/proc/stat") as f:
        cpu = f.readline().split()
    return (int(cpu[4]) + int(cpu[5])) / _TICK


@contextmanager
def _server(script: str, *args: str) -> Iterator[str]:
    """Run a server script in its own process; yields its base URL (``.../v1``); stops it on the way out."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    port = ""
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise SystemExit(f"the bench server did not start (exit code {proc.poll()})")
        url = f"http://127.0.0.1:{port}/v1"
        _wait_ready(url)
        _SERVERS[url] = proc.pid
        yield url
    finally:
        _SERVERS.pop(f"http://127.0.0.1:{port}/v1", None)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _http(method: str, url: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("authorization", f"Bearer {KEY}")
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def _wait_ready(url: str) -> None:
    body = json.dumps(_body(0)).encode()
    deadline = time.monotonic() + 30
    while True:
        try:
            _http("POST", url + "/chat/completions", body)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the bench server did not answer within 30 s") from None
            time.sleep(0.05)


def _body(i: int) -> dict[str, Any]:
    # Every line asks something else: the simulator tells retries from new requests by the body.
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Classify item {i}: is it a river or a lake?"}],
        "max_tokens": 64,  # above the simulator's longest generated answer: none ends truncated
    }


def write_input(path: Path, n: int) -> Path:
    """N chat lines in the OpenAI Batch input shape."""
    import orjson

    with path.open("wb") as f:
        chunk: list[bytes] = []
        for i in range(n):
            chunk.append(
                orjson.dumps(
                    {
                        "custom_id": f"req-{i}",
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": _body(i),
                    }
                )
            )
            if len(chunk) == 10_000:
                f.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            f.write(b"\n".join(chunk) + b"\n")
    return path


# -- 1. goodput ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    """How one contender's run ended: lines ok, failed (lost) and unfinished at the cut, its wall time, and the
    simulator's count of what it answered (statuses, 429s)."""

    ok: int = 0
    failed: int = 0
    unfinished: int = 0
    wall_s: float = 0.0
    client_429s: int | None = None
    server: dict[str, int] = field(default_factory=dict)
    note: str = ""


async def run_genguard(url: str, path: Path, out: Path, *, concurrency: int = 64, **kwargs: Any) -> Run:
    from genguard.bulk.api import abatch

    start = time.perf_counter()
    result = await abatch(
        path, out=out, base_url=url, api_key=KEY, concurrency=concurrency, progress="none", **kwargs
    )
    wall = time.perf_counter() - start
    c = result.counts
    note = f"stopped: {result.stopped}" if result.stopped else ""
    return Run(c.ok, c.failed, c.pending + c.in_flight, wall, result.rate_limited, note=note)


async def run_sdk(url: str, path: Path, limit_s: float) -> Run:
    import openai
    import orjson

    lines = [orjson.loads(raw) for raw in path.read_bytes().splitlines() if raw.strip()]
    client = openai.AsyncOpenAI(base_url=url, api_key=KEY)
    semaphore = asyncio.Semaphore(64)
    run = Run()
    failures: dict[str, int] = {}

    async def one(line: dict[str, Any]) -> None:
        async with semaphore:
            try:
                await client.chat.completions.create(**line["body"])
            except openai.OpenAIError as exc:
                run.failed += 1
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            else:
                run.ok += 1

    start = time.perf_counter()
    tasks = [asyncio.ensure_future(one(line)) for line in lines]
    try:
        _, pending = await asyncio.wait(tasks, timeout=limit_s)
        run.wall_s = time.perf_counter() - start
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
    finally:
        await client.close()
    run.unfinished = len(lines) - run.ok - run.failed
    run.note = ", ".join(f"{k} x{v}" for k, v in failures.items())
    return run


async def run_cookbook(url: str, path: Path, save: Path, rpm: float, limit_s: float) -> Run:
    """The OpenAI cookbook's api_request_parallel_processor main loop, its request budget and retry queue as
    it has them (no token budget, no logging). A 429 is told by its status (the cookbook looked for "Rate
    limit" in the error's message, then for the code "429"; OpenAI's 429 says "Rate limit reached ...")."""
    import aiohttp

    pause_after_429_s = 15.0
    sleep_each_loop_s = 0.001
    max_attempts = 5
    request_url = url + "/chat/completions"
    header = {"Authorization": f"Bearer {KEY}"}

    @dataclass
    class Status:
        in_progress: int = 0
        succeeded: int = 0
        failed: int = 0
        rate_limit_errors: int = 0
        last_429: float = 0.0

    @dataclass
    class Request:
        custom_id: str
        body: dict[str, Any]
        attempts_left: int
        errors: list[Any] = field(default_factory=list)

    def append_to_jsonl(data: Any) -> None:
        with save.open("a") as f:
            f.write(json.dumps(data) + "\n")

    status = Status()
    retry_queue: asyncio.Queue[Request] = asyncio.Queue()

    async def call_api(session: aiohttp.ClientSession, request: Request) -> None:
        error: Any = None
        try:
            async with session.post(url=request_url, headers=header, json=request.body) as r:
                code = r.status
                response = await r.json()
            if "error" in response:
                error = response
                if code == 429:
                    status.last_429 = time.time()
                    status.rate_limit_errors += 1
        except Exception as exc:  # as the cookbook does: logged, saved and retried
            error = exc
        if error is not None:
            request.errors.append(error)
            if request.attempts_left:
                retry_queue.put_nowait(request)
            else:
                append_to_jsonl([request.body, [str(e) for e in request.errors], request.custom_id])
                status.in_progress -= 1
                status.failed += 1
        else:
            append_to_jsonl([request.body, response, request.custom_id])
            status.in_progress -= 1
            status.succeeded += 1

    capacity = rpm  # a minute's budget, available at once
    last_update = time.time()
    next_request: Request | None = None
    file_not_finished = True
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    cut = start + limit_s
    async with aiohttp.ClientSession() as session:
        with path.open() as file:
            requests = iter(file)
            while time.perf_counter() < cut:
                if next_request is None:
                    if not retry_queue.empty():
                        next_request = retry_queue.get_nowait()
                    elif file_not_finished:
                        try:
                            line = json.loads(next(requests))
                            next_request = Request(line["custom_id"], line["body"], max_attempts)
                            status.in_progress += 1
                        except StopIteration:
                            file_not_finished = False
                now = time.time()
                capacity = min(capacity + rpm * (now - last_update) / 60.0, rpm)
                last_update = now
                if next_request is not None and capacity >= 1:
                    capacity -= 1
                    next_request.attempts_left -= 1
                    task = asyncio.create_task(call_api(session, next_request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    next_request = None
                if status.in_progress == 0:
                    break
                await asyncio.sleep(sleep_each_loop_s)
                since = time.time() - status.last_429
                if since < pause_after_429_s:
                    # The bench's cut may come first: nothing else differs from the cookbook's pause.
                    await asyncio.sleep(min(pause_after_429_s - since, max(cut - time.perf_counter(), 0)))
        wall = time.perf_counter() - start
        for t in list(tasks):
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
    total = sum(1 for raw in path.read_bytes().splitlines() if raw.strip())
    return Run(status.succeeded, status.failed, total - status.succeeded - status.failed, wall,
               status.rate_limit_errors)  # fmt: skip


def _sim_counts(url: str) -> dict[str, int]:
    stats = _http("GET", url.removesuffix("/v1") + "/_genguard/stats")
    return {str(k): int(v) for k, v in stats["by_status"].items()}


def goodput(args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    path = write_input(work / "goodput.jsonl", args.lines)
    rate = args.rate
    out: dict[str, Any] = {
        "rate": rate, "lines": args.lines, "limit_s": args.limit, "latency_ms": args.latency_ms, "modes": {}
    }  # fmt: skip
    for mode in MODES:
        settings = {"rpm": rate * 60, "rate_window_s": 1.0, "ratelimit_headers": mode == "headers"}
        if args.latency_ms:
            settings["ttft_ms"] = args.latency_ms  # a provider that takes a while to answer, as real ones do
        per: dict[str, Any] = {}
        names = [
            n for n in args.contenders if n == "genguard" or mode == "retry-after" or args.others_in_both
        ]
        if not names:
            continue
        with _server(SIM_SERVER, json.dumps(settings)) as url:
            root = url.removesuffix("/v1")
            for name in names:
                _http("POST", root + "/_genguard/reset", b"{}")
                tag = name.replace(" ", "-")
                if name == "genguard":
                    # Its own deadline is the cut: it stops sending, lets what is in flight end, and leaves the
                    # rest pending, as a user's --deadline would.
                    run = asyncio.run(run_genguard(url, path, work / f"gg-{mode}", deadline=args.limit))
                elif name == "openai SDK":
                    run = asyncio.run(run_sdk(url, path, args.limit))
                else:
                    run = asyncio.run(
                        run_cookbook(url, path, work / f"{tag}-{mode}.jsonl", rate * 60.0, args.limit)
                    )
                run.server = _sim_counts(url)
                ok_seen = run.server.get("200", 0)
                limited = run.server.get("429", 0)
                per[name] = {
                    "ok": run.ok,
                    "lost": run.failed,
                    "unfinished": run.unfinished,
                    "wall_s": run.wall_s,
                    "goodput_per_r": run.ok / run.wall_s / rate if run.wall_s else 0.0,
                    "429_per_ok": limited / max(ok_seen, 1),
                    "server": run.server,
                    "client_429s": run.client_429s,
                    "note": run.note,
                }
                log(f"goodput {mode:<11} {name:<10} ok {run.ok:>5} lost {run.failed:>5} "
                    f"unfinished {run.unfinished:>5} in {run.wall_s:5.1f} s; server {run.server}")  # fmt: skip
        out["modes"][mode] = per
    return out


# -- 4. models ---------------------------------------------------------------------------------------------


async def _one_pace(opts: Any) -> Any:
    """The runner's limiter as it was before a pace per model: one governor that every model's answers feed."""
    from genguard.bulk.limiter import AsyncRateLimiter, ModelGates, RateGovernor

    shared = AsyncRateLimiter(RateGovernor(rpm=opts.rpm, tpm=opts.tpm))
    return ModelGates(lambda model: shared)


def models(args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    import orjson

    from genguard.bulk import runner

    slow_model, n = "gpt-4o", args.model_lines
    with (work / "models.jsonl").open("wb") as f:
        for i in range(n):
            body = {**_body(i), "model": slow_model if i % 10 == 0 else MODEL}
            line = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            f.write(orjson.dumps(line) + b"\n")
    n_slow = len(range(0, n, 10))
    # The least any client could take: each model's lines at its own limit (a bucket starts full).
    ideal = max((n_slow - args.slow_rate) / args.slow_rate, (n - n_slow - args.rate) / args.rate)
    settings = {
        "rpm": args.rate * 60,
        "rpm_for": {slow_model: int(args.slow_rate * 60)},
        "rate_window_s": 1.0,
    }
    out: dict[str, Any] = {"rate": args.rate, "slow_rate": args.slow_rate, "lines": n, "slow_lines": n_slow,
                           "ideal_s": ideal, "contenders": {}}  # fmt: skip
    opened = runner._open_limiter

    def both(url: str, path: Path, tag: str) -> dict[str, dict[str, Any]]:
        per: dict[str, dict[str, Any]] = {}
        root = url.removesuffix("/v1")
        for name in ("genguard", "one pace"):
            _http("POST", root + "/_genguard/reset", b"{}")
            runner._open_limiter = opened if name == "genguard" else _one_pace  # type: ignore[assignment]
            try:
                run = asyncio.run(run_genguard(url, path, work / f"{tag}-{name[:3]}"))
            finally:
                runner._open_limiter = opened  # type: ignore[assignment]
            counts = _sim_counts(url)
            per[name] = {
                "ok": run.ok,
                "wall_s": run.wall_s,
                "429_per_ok": counts.get("429", 0) / max(counts.get("200", 0), 1),
                "server": counts,
            }
            log(f"models {tag} {name:<15} ok {run.ok:>5} in {run.wall_s:5.1f} s; server {counts}")
        return per

    with _server(SIM_SERVER, json.dumps(settings)) as url:
        out["contenders"] = both(url, work / "models.jsonl", "per-model")
    for r in out["contenders"].values():
        r["over_ideal"] = r["wall_s"] / ideal if ideal > 0 else None
    # A limit of the key that every model shares (a gateway's), which a pace a model would split: two models, half the
    # lines each, R a second in all; with the limit in the headers (each model's answers state the shared
    # bucket) and without (429s only).
    with (work / "shared.jsonl").open("wb") as f:
        for i in range(args.lines):
            body = {**_body(i), "model": slow_model if i % 2 else MODEL}
            line = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            f.write(orjson.dumps(line) + b"\n")
    out["shared"] = {}
    for mode in MODES:
        shared = {"rpm": args.rate * 60, "rate_window_s": 1.0, "ratelimit_headers": mode == "headers"}
        with _server(SIM_SERVER, json.dumps(shared)) as url:
            per = both(url, work / "shared.jsonl", f"shared-{mode}")
        for r in per.values():
            r["goodput_per_r"] = r["ok"] / r["wall_s"] / args.rate if r["wall_s"] else 0.0
        out["shared"][mode] = per
    return out


# -- 2. overhead --------------------------------------------------------------------------------------------


async def run_bare(url: str, path: Path, save: Path, concurrency: int) -> float:
    """A bare asyncio loop on aiohttp: workers read input lines, post their bodies, append the answers."""
    import aiohttp
    import orjson

    chat_url = url + "/chat/completions"
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        with path.open("rb") as lines, save.open("wb") as results:

            async def worker() -> None:
                for raw in lines:
                    line = orjson.loads(raw)
                    async with session.post(chat_url, data=orjson.dumps(line["body"])) as r:
                        body = orjson.loads(await r.read())
                        status = r.status
                    results.write(
                        orjson.dumps(
                            {
                                "custom_id": line["custom_id"],
                                "response": {"status_code": status, "body": body},
                            }
                        )
                        + b"\n"
                    )

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def run_client_loop(url: str, path: Path, save: Path, concurrency: int) -> float:
    """The bare loop with genguard's ``AsyncClient`` in aiohttp's place (each answer read, classified and
    priced, no journal, no limiter): what the batch runner adds over the client it sends with."""
    import orjson

    from genguard import AsyncClient

    start = time.perf_counter()
    async with AsyncClient(url, api_key=KEY, max_concurrency=concurrency) as client:
        with path.open("rb") as lines, save.open("wb") as results:

            async def worker() -> None:
                for raw in lines:
                    line = orjson.loads(raw)
                    outcome, body = await client.send_json("/chat/completions", line["body"], endpoint="chat")
                    results.write(
                        orjson.dumps(
                            {
                                "custom_id": line["custom_id"],
                                "response": {
                                    "status_code": outcome.status,
                                    "body": orjson.Fragment(body or b"null"),
                                },
                            }
                        )
                        + b"\n"
                    )

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


def _on_loop(kind: str, coro: Any) -> Any:
    """Run ``coro`` on a fresh event loop of ``kind``: ``asyncio`` (the default loop) or ``uvloop``."""
    if kind == "asyncio":
        return asyncio.run(coro)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _overhead_case(
    args: argparse.Namespace,
    work: Path,
    log: Callable[[str], None],
    loop: str,
    latency_ms: float,
    headers: bool = False,
    jitter: bool = False,
) -> dict[str, Any]:
    n = args.overhead_lines
    path = work / "overhead.jsonl"
    names = ("genguard", "bare aiohttp", "client loop")
    rate: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    # The server's CPU a request and the machine's idle cores while each contender ran: at once, whether the
    # machine or the client's one process is the bound.
    server_cpu: dict[str, list[float]] = {name: [] for name in names}
    idle: dict[str, list[float]] = {name: [] for name in names}
    flags = [name for name, on in (("headers", headers), ("jitter", jitter)) if on]
    with _server(BARE_SERVER, str(latency_ms), *flags) as url:
        # One untimed run each first: imports, the server's first connections, the page cache.
        warm = write_input(work / "warm.jsonl", 200)
        _on_loop(loop, run_genguard(url, warm, work / "warm-gg", concurrency=args.concurrency))
        shutil.rmtree(work / "warm-gg", ignore_errors=True)
        _on_loop(loop, run_bare(url, warm, work / "warm-bare.jsonl", args.concurrency))
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                if name == "client loop" and not args.client_loop:
                    continue
                # This process's CPU only: the server's is its own process's.
                pid = _SERVERS[url]
                served, idled = _cpu_s(pid), _idle_s()
                used = time.process_time()
                if name == "genguard":
                    out_dir = work / f"oh-gg-{r}"
                    run = _on_loop(loop, run_genguard(url, path, out_dir, concurrency=args.concurrency))
                    if run.ok != n:
                        raise SystemExit(f"genguard ended {run.ok} of {n} lines ok ({run.note})")
                    wall = run.wall_s
                elif name == "client loop":
                    save = work / f"oh-client-{r}.jsonl"
                    wall = _on_loop(loop, run_client_loop(url, path, save, args.concurrency))
                else:
                    wall = _on_loop(loop, run_bare(url, path, work / f"oh-bare-{r}.jsonl", args.concurrency))
                used = time.process_time() - used
                served, idled = _cpu_s(pid) - served, _idle_s() - idled
                shutil.rmtree(work / f"oh-gg-{r}", ignore_errors=True)
                rate[name].append(n / wall)
                cpu[name].append(used * 1e3 / n)
                server_cpu[name].append(served * 1e3 / n)
                idle[name].append(idled / wall)
                log(
                    f"overhead {_case_name(loop, latency_ms, headers, jitter)}, round {r + 1}: {name:<12} "
                    f"{n / wall:7.0f} lines/s, "
                    f"{used * 1e3 / n:.3f} ms CPU a line (server {served * 1e3 / n:.3f} a request, "
                    f"machine idle {idled / wall:.2f} of {os.cpu_count()} cores)"
                )
    ratios = [g / b for g, b in zip(rate["genguard"], rate["bare aiohttp"], strict=True)]
    cpu_ratios = [g / b for g, b in zip(cpu["genguard"], cpu["bare aiohttp"], strict=True)]
    if not rate["client loop"]:
        del rate["client loop"], cpu["client loop"], server_cpu["client loop"], idle["client loop"]
    return {
        "loop": loop,
        "latency_ms": latency_ms,
        "headers": headers,
        "jitter": jitter,
        "lines_per_s": rate,
        "cpu_ms_per_line": cpu,
        "median_lines_per_s": {k: statistics.median(v) for k, v in rate.items()},
        "median_cpu_ms_per_line": {k: statistics.median(v) for k, v in cpu.items()},
        "median_server_cpu_ms_per_request": {k: statistics.median(v) for k, v in server_cpu.items()},
        "median_idle_cores": {k: statistics.median(v) for k, v in idle.items()},
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "cpu_ratio": statistics.median(cpu_ratios),
    }


def _case_name(loop: str, latency_ms: float, headers: bool, jitter: bool = False) -> str:
    stated = ", a limit in its headers" if headers else ", no rate-limit headers"
    when = f"{latency_ms * 0.5:g}-{latency_ms * 1.5:g} ms" if jitter and latency_ms else f"{latency_ms:g} ms"
    return f"{loop}, server answers after {when}{stated}"


def overhead(args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    write_input(work / "overhead.jsonl", args.overhead_lines)
    cases = []
    for case in args.overhead_cases.split(","):
        loop, _, rest = case.partition(":")
        latency, *flags = rest.split(":")
        if loop not in ("asyncio", "uvloop") or not set(flags) <= {"headers", "jitter"}:
            raise SystemExit(
                f"--overhead-cases: {case!r}: each case is LOOP:MS with :headers, :jitter or both after it, the "
                "loop asyncio or uvloop (e.g. uvloop:0, asyncio:50:headers, asyncio:20:headers:jitter)"
            )
        try:
            ms = float(latency or 0)
        except ValueError:
            raise SystemExit(
                f"--overhead-cases: {case!r}: {latency!r} is not a number of milliseconds"
            ) from None
        cases.append(
            _overhead_case(args, work, log, loop, ms, headers="headers" in flags, jitter="jitter" in flags)
        )
    return {
        "lines": args.overhead_lines,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "cases": cases,
    }


# -- 3. memory ----------------------------------------------------------------------------------------------


def _child(spec: dict[str, Any]) -> None:
    """In a fresh process: do one thing, then print its peak RSS (its own: no server is its child)."""
    exec(_WATCH_PARENT)  # a 1M-line load must not go on for a minute after the bench is killed
    start = time.perf_counter()
    report: dict[str, Any] = {}
    if spec["what"] != "imports":
        from genguard.bulk.api import abatch

        deadline = 1e-6 if spec["what"] == "load" else None
        result = asyncio.run(
            abatch(
                spec["input"],
                out=spec["out"],
                base_url=spec["url"],
                api_key=KEY,
                deadline=deadline,
                progress="none",
            )
        )
        c = result.counts
        report = {"sent": result.sent, "ok": c.ok, "pending": c.pending, "total": c.total}
    else:
        import genguard.bulk.api  # noqa: F401

    report["wall_s"] = time.perf_counter() - start
    report["maxrss_mb"] = _peak_rss_kb() / 1024
    print(json.dumps(report), flush=True)


def _peak_rss_kb() -> float:
    # The process's own high-water mark. Not ru_maxrss: Linux carries it over fork and exec, so a child of this
    # bench (100+ MB with the SDK, aiohttp and the goodput runs) would report at least the bench's size.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the memory run {spec['what']} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def memory(args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    small = write_input(work / "mem-small.jsonl", args.mem_lines)
    cases: dict[str, dict[str, Any]] = {}
    loads: dict[int, dict[str, Any]] = {}
    with _server(BARE_SERVER) as url:
        cases["imports"] = _measure({"what": "imports"})
        cases["run"] = _measure({"what": "run", "input": str(small), "out": str(work / "m-run"), "url": url})
        if cases["run"]["ok"] != args.mem_lines:
            raise SystemExit(f"the {args.mem_lines}-line run did not end every line ok: {cases['run']}")
        # Three sizes of load, so that the page cache's fill (SQLite's, 32 MiB at most) shows apart from growth.
        for n in sorted({args.mem_lines, max(args.big_lines // 10, args.mem_lines), args.big_lines}):
            log(f"memory: loading {n} lines")
            path = small if n == args.mem_lines else write_input(work / f"mem-{n}.jsonl", n)
            case = _measure(
                {"what": "load", "input": str(path), "out": str(work / f"m-load-{n}"), "url": url}
            )
            if case["sent"] != 0 or case["pending"] != n:
                raise SystemExit(
                    f"the {n}-line load sent {case['sent']} requests, left {case['pending']} pending"
                )
            loads[n] = case
            if path != small:
                path.unlink()
            shutil.rmtree(work / f"m-load-{n}", ignore_errors=True)
    for name, case in [*cases.items(), *((f"load {n}", c) for n, c in loads.items())]:
        log(f"memory {name:<14} {case['maxrss_mb']:7.1f} MB in {case['wall_s']:6.1f} s")
    big = loads[args.big_lines]["maxrss_mb"]
    return {
        "mem_lines": args.mem_lines,
        "big_lines": args.big_lines,
        "cases": cases,
        "loads": {str(n): c for n, c in loads.items()},
        "ratio_big_load_over_run": big / cases["run"]["maxrss_mb"],
        "ratio_big_load_over_small_load": big / loads[args.mem_lines]["maxrss_mb"],
    }


# -- the report ---------------------------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    lines: list[str] = []
    if "goodput" in report:
        g = report["goodput"]
        lines.append(
            f"goodput: R = {g['rate']}/s (one-second window), N = {g['lines']} lines, each contender cut at "
            f"{g['limit_s']:.0f} s"
            + (f", answers after {g['latency_ms']:g} ms" if g.get("latency_ms") else "")
        )
        lines.append(
            f"{'server sends':<12} {'contender':<11} {'goodput/R':>9} {'429/ok':>7} {'ok':>6} {'lost':>6} "
            f"{'unfin.':>6} {'wall s':>7}"
        )
        for mode, per in g["modes"].items():
            for name, r in per.items():
                lines.append(
                    f"{mode:<12} {name:<11} {r['goodput_per_r']:>9.3f} {r['429_per_ok']:>7.3f} {r['ok']:>6} "
                    f"{r['lost']:>6} {r['unfinished']:>6} {r['wall_s']:>7.1f}"
                )
        lines.append(
            "targets for genguard: goodput/R >= 0.9 (aim 0.95), 429/ok <= 0.05; 429s as the server counted"
        )
    if "overhead" in report:
        o = report["overhead"]
        lines.append(
            f"\noverhead: {o['lines']} lines, concurrency {o['concurrency']}, no rate limit, {o['rounds']} rounds "
            "alternating; both contenders on the same event loop"
        )
        for case in o["cases"]:
            m, c = case["median_lines_per_s"], case["median_cpu_ms_per_line"]
            lines.append(
                f"{_case_name(case['loop'], case['latency_ms'], case['headers'], case.get('jitter', False))}:"
            )
            srv, idle = case["median_server_cpu_ms_per_request"], case["median_idle_cores"]
            for name in m:
                lines.append(
                    f"  {name:<14} {m[name]:7.0f} lines/s  {c[name]:6.3f} ms CPU a line; server "
                    f"{srv[name]:.3f} ms a request, machine idle {idle[name]:.2f} cores (medians)"
                )
            per = ", ".join(f"{x:.2f}" for x in case["ratios"])
            lines.append(
                f"  genguard/bare: throughput {case['ratio']:.2f} (per round {per}; target >= 0.9), "
                f"CPU a line {case['cpu_ratio']:.2f}"
            )
    if "memory" in report:
        mem = report["memory"]
        lines.append("\nmemory: peak RSS of a fresh process (VmHWM)")
        rows = [
            ("imports only", mem["cases"]["imports"]),
            (f"run, {mem['mem_lines']:,} lines", mem["cases"]["run"]),
        ]
        rows += [(f"load only, {int(n):,} lines", case) for n, case in mem["loads"].items()]
        for label, case in rows:
            lines.append(f"{label:<28} {case['maxrss_mb']:7.1f} MB  {case['wall_s']:6.1f} s")
        lines.append(
            f"{mem['big_lines']:,}-line load over the {mem['mem_lines']:,}-line run: "
            f"{mem['ratio_big_load_over_run']:.2f}, over the {mem['mem_lines']:,}-line load: "
            f"{mem['ratio_big_load_over_small_load']:.2f}"
        )
    if "models" in report:
        md = report["models"]
        lines.append(
            f"\nmodels: {md['lines']} lines, {md['slow_lines']} of them for gpt-4o (limited to {md['slow_rate']:g}/s), "
            f"the rest for gpt-4o-mini ({md['rate']}/s); the least any client could take: {md['ideal_s']:.1f} s"
        )
        for name, r in md["contenders"].items():
            lines.append(
                f"  {name:<15} ok {r['ok']:>5}  {r['wall_s']:6.1f} s  x{r['over_ideal']:.2f} of the least  "
                f"{r['429_per_ok']:.3f} 429s per success"
            )
        for mode, per in md.get("shared", {}).items():
            lines.append(
                f"a limit of the key both models share ({md['rate']}/s), half the lines each, server sends {mode}:"
            )
            for name, r in per.items():
                lines.append(
                    f"  {name:<15} ok {r['ok']:>5}  {r['wall_s']:6.1f} s  goodput/R {r['goodput_per_r']:.3f}  "
                    f"{r['429_per_ok']:.3f} 429s per success"
                )
    load = ", ".join(f"{x:.1f}" for x in report["load_average"])
    lines.append(f"\n{report['command']}  ({report['wall_s']:.0f} s; load average at the end {load})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="the parts to run")
    parser.add_argument("--rate", type=int, help="R: requests a second the simulator admits (default 50)")
    parser.add_argument("--lines", type=int, help="N: lines of the goodput input (default 1200)")
    parser.add_argument(
        "--limit", type=float, help="seconds after which a goodput contender is cut (default 30)"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="goodput: the simulator answers after this many ms (default 0)",
    )
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument(
        "--others-in-both",
        action="store_true",
        help="run the SDK and the cookbook runner in the headers case too (they read no rate-limit header, so "
        "by default they run in the retry-after case only)",
    )
    parser.add_argument("--overhead-lines", type=int, help="lines per overhead run (default 3000)")
    parser.add_argument(
        "--client-loop",
        action="store_true",
        help="overhead: also run the bare loop with genguard's AsyncClient in aiohttp's place (no journal, no "
        "limiter): what the batch runner adds over the client it sends with",
    )
    parser.add_argument("--rounds", type=int, help="overhead rounds (default 3)")
    parser.add_argument(
        "--overhead-cases",
        default="asyncio:0,uvloop:0,asyncio:20,asyncio:50,asyncio:50:headers",
        help="overhead: LOOP:MS[:headers][:jitter],... each an event loop (asyncio or uvloop) for both "
        "contenders, the bare server's answer time in ms, with :headers a limit that never binds stated in "
        "OpenAI's rate-limit headers on every answer, with :jitter each answer's time drawn from 0.5-1.5 times "
        "MS (default asyncio:0,uvloop:0,asyncio:20,asyncio:50,asyncio:50:headers)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="overhead: genguard's and the bare loop's"
    )
    parser.add_argument("--model-lines", type=int, help="models: lines of the input (default 400)")
    parser.add_argument(
        "--slow-rate", type=float, help="models: requests a second admitted for gpt-4o (default 2)"
    )
    parser.add_argument("--mem-lines", type=int, help="the memory run's lines (default 10,000)")
    parser.add_argument("--big-lines", type=int, help="the large load's lines (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: smaller defaults throughout")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    defaults: dict[str, Any] = (
        {"rate": 20, "lines": 300, "limit": 20.0, "overhead_lines": 1500, "rounds": 2, "mem_lines": 10_000,
         "big_lines": 100_000, "model_lines": 200, "slow_rate": 2.0}
        if args.quick
        else {"rate": 50, "lines": 1200, "limit": 30.0, "overhead_lines": 3000, "rounds": 3, "mem_lines": 10_000,
              "big_lines": 1_000_000, "model_lines": 400, "slow_rate": 2.0}
    )  # fmt: skip
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    command = shlex.join([".venv/bin/python", "bench/bench_batch.py", *sys.argv[1:]])

    def log(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    # A SIGTERM (a CI timeout) runs the finally blocks, which stop the servers and remove the work folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="genguard-bench-batch-"))
    report: dict[str, Any] = {"command": command, "python": sys.version.split()[0]}
    with suppress(Exception):
        import genguard

        report["genguard_version"] = genguard.__version__
    start = time.perf_counter()
    try:
        for part, fn in (
            ("goodput", goodput),
            ("overhead", overhead),
            ("memory", memory),
            ("models", models),
        ):
            if part in args.only:
                report[part] = fn(args, work, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["wall_s"] = time.perf_counter() - start
    report["load_average"] = os.getloadavg()
    print(json.dumps(report, indent=2) if args.json else table(report))


if __name__ == "__main__":
    main()
