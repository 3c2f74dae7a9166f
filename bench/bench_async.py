"""Async throughput and client CPU: genguard's AsyncClient vs bare aiohttp, bare httpx and the openai SDK.

AsyncClient sends plain calls on genguard's lean HTTP/1.1 wire (``H1Wire``, on ``httptools``) and streams on
aiohttp; the "genguard wire" contender is that wire alone in a bare loop (``H1Wire.exchange``, ``orjson.loads``,
the same check as the bare aiohttp loop), so the cost of AsyncClient's own work (retry loop, classification,
Outcome) is the difference between the "genguard" and "genguard wire" rows.

A bare uvicorn + Starlette server runs in another process on 127.0.0.1 (uvicorn's defaults plus
``backlog=2048`` and ``limit_concurrency=None``) and answers every client the same chat completion, or the
same stream of ``--chunks`` chunks for ``"stream": true``. This process is the client; its CPU is
``time.process_time()`` here, so the server's is not counted.

Each contender makes plain chat calls, then streamed calls read to the end, with 16, 64 and 256 calls in
flight (as many worker tasks over a fixed number of calls). At each level every contender gets a fresh
client sized for that level and the same warm-up, then rounds: each round times every contender once, the
order rotated from round to round so no one always runs first or last, and each timed batch starts from a
pool refilled (untimed) to the level, since uvicorn closes connections idle for 5 s. Reported: the median
round's requests/s and client CPU per request, and the per-round ratio genguard/other (median over rounds;
the two figures of one round were taken seconds apart, under the same load).

``--gather N`` (1,000 by default) then starts N chat calls at once on a fresh genguard client
(``timeout=10``) and a fresh SDK client (``timeout=10``, its default connection limits and retries), and
reports how many ended well and how long it took; calls still open after ``--gather-limit`` s are cut and
counted, so a client that does not honour its timeout cannot hold the run.

    .venv/bin/python bench/bench_async.py [--levels 16,64,256] [--calls 256] [--streams 96] [--rounds 3]
    .venv/bin/python bench/bench_async.py --quick      # a smoke run, about 30 s
    .venv/bin/python bench/bench_async.py --json       # one JSON document on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import openai
import orjson

import genguard

MODEL = "gpt-4o-mini"
MSGS = [{"role": "user", "content": "hi"}]
KEY = "sk-bench-0000000000000000"
PLAIN_TEXT = "Hello there, friend."
# No batch may hang the run: a contender that stalls fails the run, named, after this long.
BATCH_LIMIT_S = 120.0

Op = Callable[[], Awaitable[None]]


def _serve(port: int, chunks: int) -> None:
    import threading

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    parent = os.getppid()

    def watch_parent() -> None:
        # If the bench dies without its finally (SIGKILL), the server must not outlive it.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()

    plain = orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": PLAIN_TEXT},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    })  # fmt: skip
    head = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,'
    events = [head + b'"delta":{"content":"tok "},"finish_reason":null}]}\n\n' for _ in range(chunks)]
    events.append(head + b'"delta":{},"finish_reason":"stop"}]}\n\n')
    events.append(
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":%d,"total_tokens":%d}}\n\ndata: [DONE]\n\n'
        % (chunks, chunks + 5)
    )

    async def chat(request: Request) -> Response:
        req = orjson.loads(await request.body())
        if req.get("stream"):

            async def gen():  # type: ignore[no-untyped-def]
                for e in events:
                    yield e

            return StreamingResponse(gen(), media_type="text/event-stream")
        return Response(plain, media_type="application/json", headers={"x-request-id": "req_1"})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", backlog=2048, limit_concurrency=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: multiprocessing.Process) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise RuntimeError(f"the bench server exited with code {proc.exitcode}")
        try:
            httpx.post(url + "/chat/completions", content=b"{}", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the bench server did not answer within 30 s")


@dataclass
class Contender:
    name: str
    plain: Op
    stream: Op
    close: Callable[[], Awaitable[None]]


def _gg_kwargs(concurrency: int | None) -> dict[str, Any]:
    # Pass a level only to a client that takes one, so the bench measures AsyncClient as it is today.
    if concurrency is not None and "max_concurrency" in inspect.signature(genguard.AsyncClient).parameters:
        return {"max_concurrency": concurrency}
    return {}


def _sse_text(line: bytes | str, out: list[str]) -> None:
    # The least a bare client must do with a stream line to get the text: what genguard and the SDK do too.
    if line[:6] in (b"data: ", "data: ") and line[6:12] not in (b"[DONE]", "[DONE]"):
        choices = orjson.loads(line[6:])["choices"]
        if choices and choices[0]["delta"].get("content"):
            out.append(choices[0]["delta"]["content"])


def _contenders(url: str, concurrency: int, chunks: int) -> list[Contender]:
    chat_url = url + "/chat/completions"
    stream_text = "tok " * chunks
    plain_body = {"model": MODEL, "messages": MSGS}
    stream_body = {"model": MODEL, "messages": MSGS, "stream": True}
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), headers=headers)

    async def aio_plain() -> None:
        async with session.post(chat_url, data=orjson.dumps(plain_body)) as r:
            data = orjson.loads(await r.read())
        if r.status != 200 or data["choices"][0]["message"]["content"] != PLAIN_TEXT:
            raise RuntimeError(f"aiohttp: HTTP {r.status}")

    async def aio_stream() -> None:
        out: list[str] = []
        async with session.post(chat_url, data=orjson.dumps(stream_body)) as r:
            async for line in r.content:
                _sse_text(line.rstrip(b"\r\n"), out)
        if r.status != 200 or "".join(out) != stream_text:
            raise RuntimeError(f"aiohttp: HTTP {r.status}, stream text differs")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    hx = httpx.AsyncClient(limits=limits, headers=headers, timeout=30)

    async def hx_plain() -> None:
        r = await hx.post(chat_url, content=orjson.dumps(plain_body))
        if r.status_code != 200 or orjson.loads(r.content)["choices"][0]["message"]["content"] != PLAIN_TEXT:
            raise RuntimeError(f"httpx: HTTP {r.status_code}")

    async def hx_stream() -> None:
        out: list[str] = []
        async with hx.stream("POST", chat_url, content=orjson.dumps(stream_body)) as r:
            async for line in r.aiter_lines():
                _sse_text(line, out)
        if r.status_code != 200 or "".join(out) != stream_text:
            raise RuntimeError(f"httpx: HTTP {r.status_code}, stream text differs")

    sdk = openai.AsyncOpenAI(
        base_url=url,
        api_key=KEY,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    )

    async def sdk_plain() -> None:
        r = await sdk.chat.completions.create(model=MODEL, messages=MSGS)  # type: ignore[arg-type]
        if r.choices[0].message.content != PLAIN_TEXT:
            raise RuntimeError("openai SDK: wrong text")

    async def sdk_stream() -> None:
        out: list[str] = []
        async for chunk in await sdk.chat.completions.create(model=MODEL, messages=MSGS, stream=True):  # type: ignore[arg-type]
            if chunk.choices and chunk.choices[0].delta.content:
                out.append(chunk.choices[0].delta.content)
        if "".join(out) != stream_text:
            raise RuntimeError("openai SDK: stream text differs")

    gg = genguard.AsyncClient(url, api_key=KEY, **_gg_kwargs(concurrency))

    async def gg_plain() -> None:
        o = await gg.chat(model=MODEL, messages=MSGS)
        if not o.ok or o.text != PLAIN_TEXT:
            raise RuntimeError(f"genguard: {o.summary()}")

    async def gg_stream() -> None:
        async with gg.stream(model=MODEL, messages=MSGS) as s:
            async for _ in s:
                pass
        if not s.outcome.ok or s.outcome.text != stream_text:
            raise RuntimeError(f"genguard: {s.outcome.summary()}")

    contenders = [
        Contender("aiohttp", aio_plain, aio_stream, session.close),
        Contender("httpx", hx_plain, hx_stream, hx.aclose),
        Contender("openai SDK", sdk_plain, sdk_stream, sdk.close),
        Contender("genguard", gg_plain, gg_stream, gg.aclose),
    ]
    wire = _lean_wire(concurrency)
    if wire is not None:
        # The lean wire alone, in a loop as bare as aiohttp's: what AsyncClient's own work adds is the
        # difference between this row and genguard's. Its streams are aiohttp's (inherited).
        timeout = httpx.Timeout(30.0)

        async def gw_plain() -> None:
            status, _, raw = await wire.exchange("POST", chat_url, headers, orjson.dumps(plain_body), timeout)
            if status != 200 or orjson.loads(raw)["choices"][0]["message"]["content"] != PLAIN_TEXT:
                raise RuntimeError(f"genguard wire: HTTP {status}")

        async def gw_stream() -> None:
            out: list[str] = []
            rest = b""
            async with wire.stream("POST", chat_url, headers, orjson.dumps(stream_body), timeout) as reply:
                async for chunk in reply.chunks:
                    *lines, rest = (rest + chunk).split(b"\n")
                    for line in lines:
                        _sse_text(line.rstrip(b"\r"), out)
            if reply.status != 200 or "".join(out) != stream_text:
                raise RuntimeError(f"genguard wire: HTTP {reply.status}, stream text differs")

        contenders.append(Contender("genguard wire", gw_plain, gw_stream, wire.aclose))
    return contenders


def _lean_wire(concurrency: int) -> Any:
    """genguard's lean HTTP/1.1 wire (H1Wire), or None in a genguard that has none."""
    try:
        from genguard.client.h1 import H1Wire
    except ImportError:
        return None
    return H1Wire(concurrency)


async def _run(op: Op, n: int, concurrency: int) -> tuple[float, float, int, str]:
    """Wall seconds, client CPU seconds, errors and the first error for ``n`` calls, ``concurrency`` at a time."""
    left = n
    errors = 0
    first = ""

    async def worker() -> None:
        nonlocal left, errors, first
        while left > 0:
            left -= 1
            try:
                await op()
            except Exception as e:  # counted and shown: one failed call must not end the run
                errors += 1
                if not first:
                    cause = f" (from {type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
                    first = f"{type(e).__name__}: {e}{cause}"[:300]

    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(min(concurrency, n)))), BATCH_LIMIT_S)
    return time.perf_counter() - wall, time.process_time() - cpu, errors, first


# (contender, compared with, label): the per-round ratios reported.
_RATIOS = (
    ("genguard", "aiohttp", "aiohttp"),
    ("genguard", "openai SDK", "sdk"),
    ("genguard wire", "aiohttp", "aiohttp"),
)


def _log(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


async def _level(url: str, concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    contenders = _contenders(url, concurrency, args.chunks)
    names = [c.name for c in contenders]
    # Enough calls that the level is really reached and held for a while: 1.5 times the level plain, the
    # level in streams at least.
    kinds = (("plain", max(args.calls, concurrency * 3 // 2)), ("stream", max(args.streams, concurrency)))
    rounds: dict[str, dict[str, list[tuple[float, float, int, str]]]] = {
        kind: {n: [] for n in names} for kind, _ in kinds
    }
    try:
        # The same warm-up for all: as many plain calls as the level, all at once, so every pool opens the
        # connections it will use, then a few streams, so the stream code paths are imported and hot too.
        for c in contenders:
            for kind, op, n in (("plain", c.plain, concurrency), ("stream", c.stream, 8)):
                _w, _c, errors, first = await _run(op, n, concurrency)
                if errors:
                    raise RuntimeError(f"{c.name} {kind} warm-up at {concurrency}: {errors} errors, {first}")
        for r in range(args.rounds):
            for c in contenders[r % len(contenders) :] + contenders[: r % len(contenders)]:
                # uvicorn closes a connection idle for 5 s, and each contender idles while the others run:
                # untimed, as many calls of the batch's kind as the level refill its pool, so every timed batch
                # starts from open connections, and none meets a connection the server is closing at that
                # instant. Of the kind: genguard's plain calls and streams go over two pools (its lean wire,
                # aiohttp's), and a refill by plain calls alone left its streams reconnecting in their batch.
                for kind, n in kinds:
                    op = c.plain if kind == "plain" else c.stream
                    await _run(op, concurrency, concurrency)
                    rounds[kind][c.name].append(await _run(op, n, concurrency))
    finally:
        for c in contenders:
            await c.close()

    out: dict[str, Any] = {}
    for kind, n in kinds:
        per: dict[str, Any] = {}
        for name in names:
            rs = rounds[kind][name]
            per[name] = {
                "rps": [n / w for w, _c, _e, _f in rs],
                "cpu_ms_per_request": [c * 1e3 / n for _w, c, _e, _f in rs],
                "errors": sum(e for _w, _c, e, _f in rs),
                "first_error": next((f for *_x, f in rs if f), ""),
            }
            per[name]["median_rps"] = statistics.median(per[name]["rps"])
            per[name]["median_cpu_ms_per_request"] = statistics.median(per[name]["cpu_ms_per_request"])
        ratios: dict[str, float] = {}
        for who, other, label in _RATIOS:
            if who not in per:
                continue
            g, o = per[who], per[other]
            ratios[f"{who}/{label} throughput"] = statistics.median(
                a / b for a, b in zip(g["rps"], o["rps"], strict=True)
            )
            ratios[f"{who}/{label} cpu"] = statistics.median(
                a / b for a, b in zip(g["cpu_ms_per_request"], o["cpu_ms_per_request"], strict=True)
            )
        out[kind] = {"calls_per_round": n, "contenders": per, "ratios": ratios}
    return out


async def _gather(url: str, n: int, limit: float) -> dict[str, Any]:
    """``n`` chat calls at once on a fresh client of each kind; calls still open after ``limit`` s are cut."""

    async def gg_call(gg: genguard.AsyncClient) -> str | None:
        try:
            o = await gg.chat(model=MODEL, messages=MSGS)
        except Exception as e:  # chat returns failures as Outcomes: a raise is a finding of its own
            return f"raised {type(e).__name__}"
        return None if o.ok else str(o.code)

    async def sdk_call(sdk: openai.AsyncOpenAI) -> str | None:
        try:
            await sdk.chat.completions.create(model=MODEL, messages=MSGS)  # type: ignore[arg-type]
        except Exception as e:  # the kind of failure is the finding
            return type(e).__name__
        return None

    result: dict[str, Any] = {"calls": n, "limit_s": limit}
    for name in ("genguard", "openai SDK"):
        client: Any = (
            genguard.AsyncClient(url, api_key=KEY, timeout=10)
            if name == "genguard"
            else openai.AsyncOpenAI(base_url=url, api_key=KEY, timeout=10)
        )
        call = gg_call if name == "genguard" else sdk_call
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        tasks = [asyncio.ensure_future(call(client)) for _ in range(n)]
        try:
            done, pending = await asyncio.wait(tasks, timeout=limit)
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10)
        finally:
            await asyncio.wait_for(client.aclose() if name == "genguard" else client.close(), 10)
        # A task ends with a failure name (a genguard code, an SDK exception) or None for a good answer.
        failures = Counter(t.result() for t in done if t.result() is not None)
        result[name] = {
            "ok": len(done) - sum(failures.values()),
            "unfinished": len(pending),
            "wall_s": wall,
            "cpu_ms_per_request": cpu * 1e3 / n,
            "failures": dict(failures),
        }
    return result


def _table(report: dict[str, Any]) -> str:
    levels = report["levels"]
    names = list(next(iter(levels.values()))["plain"]["contenders"])
    lines = [
        f"genguard {report['genguard_version']} (AsyncClient{' with max_concurrency' if report['max_concurrency'] else ''}); "
        f"{report['rounds']} rounds, order rotated; {report['chunks']}-chunk streams; {report['wall_s']:.0f} s"
    ]
    for kind, title in (("plain", "plain chat"), ("stream", "streamed chat")):
        per_round = ", ".join(f"{levels[lvl][kind]['calls_per_round']} at {lvl}" for lvl in levels)
        lines.append(
            f"\n{title}, calls per contender per round: {per_round}; medians of req/s and client CPU ms/req"
        )
        head = f"{'in flight':<22}" + "".join(f"{lvl + ':':>8}{'req/s':>7}{'ms/req':>8}" for lvl in levels)
        lines.append(head)
        for name in names:
            row = f"{name:<22}"
            for lvl in levels:
                c = levels[lvl][kind]["contenders"][name]
                flag = "!" if c["errors"] else " "
                row += f"{flag:>8}{c['median_rps']:>7.0f}{c['median_cpu_ms_per_request']:>8.3f}"
            lines.append(row)
        for who, _other, label in _RATIOS:
            if f"{who}/{label} throughput" not in next(iter(levels.values()))[kind]["ratios"]:
                continue
            row = f"{who + '/' + ('SDK' if label == 'sdk' else label):<22}"
            for lvl in levels:
                r = levels[lvl][kind]["ratios"]
                row += f"{'':>8}{r[f'{who}/{label} throughput']:>6.2f}x{r[f'{who}/{label} cpu']:>7.2f}x"
            lines.append(row)
        for lvl in levels:
            for name in names:
                c = levels[lvl][kind]["contenders"][name]
                if c["errors"]:
                    lines.append(f"! {name} at {lvl}: {c['errors']} errors, first: {c['first_error']}")
    lines.append("ratios: per round, median over rounds; throughput > 1 and CPU < 1 favour genguard")
    if report.get("gather"):
        g = report["gather"]
        lines.append(f"\n{g['calls']} chat calls started at once (timeout=10, default limits and retries)")
        for name in ("genguard", "openai SDK"):
            r = g[name]
            fails = [f"{k} x{v}" for k, v in r["failures"].items()]
            if r["unfinished"]:
                fails.append(f"{r['unfinished']} still open at {g['limit_s']:.0f} s, cut")
            lines.append(
                f"{name:<18} ok {r['ok']:>5}/{g['calls']}  wall {r['wall_s']:6.2f} s  "
                f"CPU {r['cpu_ms_per_request']:.3f} ms/req  ({', '.join(fails) or 'none failed'})"
            )
    return "\n".join(lines)


async def _main(url: str, args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "genguard_version": getattr(genguard, "__version__", "?"),
        "max_concurrency": bool(_gg_kwargs(1)),
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "httpx": httpx.__version__,
        "openai": openai.__version__,
        "rounds": args.rounds,
        "chunks": args.chunks,
        "levels": {},
    }
    wall = time.perf_counter()
    for level in args.levels:
        start = time.perf_counter()
        report["levels"][str(level)] = await _level(url, level, args)
        _log(args.json, f"{level} in flight: {time.perf_counter() - start:.0f} s")
    if args.gather:
        start = time.perf_counter()
        report["gather"] = await _gather(url, args.gather, args.gather_limit)
        _log(args.json, f"{args.gather} at once: {time.perf_counter() - start:.0f} s")
    report["wall_s"] = time.perf_counter() - wall
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", help="calls in flight, comma-separated (default 16,64,256)")
    parser.add_argument(
        "--calls",
        type=int,
        help="plain calls per contender per round, at least 1.5 times the level (default 256)",
    )
    parser.add_argument(
        "--streams", type=int, help="streams per contender per round, at least the level (default 96)"
    )
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream (default 20)")
    parser.add_argument("--rounds", type=int, help="timed rounds per level; medians reported (default 3)")
    parser.add_argument("--gather", type=int, help="chat calls started at once, 0 to skip (default 1000)")
    parser.add_argument(
        "--gather-limit",
        type=float,
        default=45.0,
        help="seconds before the calls still open are cut (default 45: 4 attempts of 10 s and the backoff)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: smaller defaults throughout")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args()
    # --quick changes only the defaults: a figure given on the command line wins.
    defaults = {"levels": "16,64", "calls": 64, "streams": 32, "rounds": 2, "gather": 200} if args.quick else {
        "levels": "16,64,256", "calls": 256, "streams": 96, "rounds": 3, "gather": 1000
    }  # fmt: skip
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.levels = [int(x) for x in str(args.levels).split(",") if x.strip()]
    if min([*args.levels, args.calls, args.streams, args.rounds, args.chunks]) < 1 or args.gather < 0:
        parser.error(
            "levels, --calls, --streams, --rounds and --chunks must be at least 1; --gather at least 0"
        )

    port = _free_port()
    proc = multiprocessing.Process(target=_serve, args=(port, args.chunks), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(url, proc)
        report = asyncio.run(_main(url, args))
    finally:
        proc.terminate()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    print(json.dumps(report, indent=2) if args.json else _table(report))


if __name__ == "__main__":
    main()
