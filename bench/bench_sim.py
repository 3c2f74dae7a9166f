"""Simulator throughput and round-trip time on loopback against a bare Starlette endpoint returning the same
bytes.

The simulator runs as tests and ``genguard simulate`` run it (``Simulator``, which binds its own socket);
the bare app is served by uvicorn the usual way (``uvicorn.run(app, host=..., port=...)``). Each server runs
in its own process; this process is the client. Two measures:

- throughput: httpx, a fixed number of requests at a fixed concurrency; requests/s, chunks/s and the ratios;
- round trip: one connection kept alive, one request after another (what a test or a sequential app does);
  rounds alternate between the servers, and the ratio is the median of per-round ratios of median times.

    .venv/bin/python bench/bench_sim.py --requests 2000 --streams 300 --concurrency 16 --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import httpx

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me about rivers"}]}

SERVER = r"""
import sys, threading, uvicorn, httpx
from genguard.sim import Simulator
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

kind, port = sys.argv[1], int(sys.argv[2])
if kind == "sim":
    with Simulator(port=port):
        threading.Event().wait()
else:
    # Capture the simulator's own answers once, then serve those exact bytes with no work per request.
    with Simulator() as sim:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me about rivers"}]}
        plain = httpx.post(sim.base_url + "/chat/completions", json=body).content
        stream = httpx.post(sim.base_url + "/chat/completions", json={**body, "stream": True}).content
    events = [e + b"\n\n" for e in stream.split(b"\n\n") if e]

    async def chat(request):
        data = await request.json()
        if data.get("stream"):
            async def gen():
                for e in events:
                    yield e
            return StreamingResponse(gen(), media_type="text/event-stream")
        return Response(plain, media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")
"""


async def _load(url: str, n: int, concurrency: int, stream: bool) -> tuple[float, int]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    chunks = 0
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        queue = iter(range(n))

        async def worker() -> None:
            nonlocal chunks
            for _ in queue:
                if stream:
                    async with client.stream("POST", url, json={**BODY, "stream": True}) as r:
                        async for line in r.aiter_lines():
                            if line.startswith("data: {"):
                                chunks += 1
                else:
                    r = await client.post(url, json=BODY)
                    assert r.status_code == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, chunks


def _round_trip(client: httpx.Client, url: str, n: int) -> float:
    """The median seconds of ``n`` sequential requests on ``client``'s one kept-alive connection."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        r = client.post(url, json=BODY)
        times.append(time.perf_counter() - started)
        assert r.status_code == 200
    return statistics.median(times)


def _serve(kind: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, kind, str(port)])
    for _ in range(200):
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY)
            return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{kind} server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=20, help="round-trip rounds per server (alternating)")
    parser.add_argument("--per-round", type=int, default=50, help="sequential requests per round")
    parser.add_argument("--port", type=int, default=18431)
    args = parser.parse_args()
    kinds = ("bare", "sim")
    urls = {kind: f"http://127.0.0.1:{args.port + i}/v1/chat/completions" for i, kind in enumerate(kinds)}
    procs = [_serve(kind, args.port + i) for i, kind in enumerate(kinds)]
    try:
        results: dict[str, tuple[float, float]] = {}
        for kind in kinds:
            url = urls[kind]
            asyncio.run(_load(url, 100, args.concurrency, False))  # warm-up
            took, _ = asyncio.run(_load(url, args.requests, args.concurrency, False))
            s_took, chunks = asyncio.run(_load(url, args.streams, args.concurrency, True))
            results[kind] = (args.requests / took, chunks / s_took)
        rtt: dict[str, list[float]] = {kind: [] for kind in kinds}
        with httpx.Client(timeout=30) as bare_client, httpx.Client(timeout=30) as sim_client:
            clients = {"bare": bare_client, "sim": sim_client}
            for kind in kinds:
                _round_trip(clients[kind], urls[kind], args.per_round)  # warm-up, and the connection is made
            for i in range(args.rounds):
                order = kinds if i % 2 == 0 else kinds[::-1]
                for kind in order:
                    rtt[kind].append(_round_trip(clients[kind], urls[kind], args.per_round))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    bare, sim = results["bare"], results["sim"]
    print(f"{'':10} {'plain req/s':>12} {'stream chunks/s':>16} {'round trip ms':>14}")
    for kind, (rps, cps) in results.items():
        print(f"{kind:10} {rps:12.0f} {cps:16.0f} {statistics.median(rtt[kind]) * 1000:14.3f}")
    per_round = statistics.median(s / b for s, b in zip(rtt["sim"], rtt["bare"], strict=True))
    print(
        f"{'ratio':10} {sim[0] / bare[0]:12.2f} {sim[1] / bare[1]:16.2f} {per_round:14.2f}"
        "   (simulator / bare; targets >= 0.7, >= 0.7, <= 1.2)"
    )


if __name__ == "__main__":
    main()
