"""Simulator throughput on loopback against a bare Starlette endpoint returning the same bytes.

Both servers run under the same uvicorn settings, each in its own process; this process is the client
(httpx, a fixed number of requests at a fixed concurrency). Prints requests/s, chunks/s and the ratios.

    .venv/bin/python bench/bench_sim.py --requests 2000 --streams 300 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import httpx

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me about rivers"}]}

SERVER = r"""
import sys, uvicorn, httpx
from genguard.sim import Simulator, create_app
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

kind, port = sys.argv[1], int(sys.argv[2])
if kind == "sim":
    app = create_app()
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
    parser.add_argument("--port", type=int, default=18431)
    args = parser.parse_args()
    results: dict[str, tuple[float, float]] = {}
    for offset, kind in enumerate(("bare", "sim")):
        port = args.port + offset
        proc = _serve(kind, port)
        try:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            asyncio.run(_load(url, 100, args.concurrency, False))  # warm-up
            took, _ = asyncio.run(_load(url, args.requests, args.concurrency, False))
            s_took, chunks = asyncio.run(_load(url, args.streams, args.concurrency, True))
            results[kind] = (args.requests / took, chunks / s_took)
        finally:
            proc.terminate()
            proc.wait(10)
    bare, sim = results["bare"], results["sim"]
    print(f"{'':10} {'plain req/s':>12} {'stream chunks/s':>16}")
    for kind, (rps, cps) in results.items():
        print(f"{kind:10} {rps:12.0f} {cps:16.0f}")
    print(
        f"{'ratio':10} {sim[0] / bare[0]:12.2f} {sim[1] / bare[1]:16.2f}   (simulator / bare; target >= 0.7)"
    )


if __name__ == "__main__":
    main()
