"""What genguard proxy costs: added latency, throughput at 64 in flight, and CPU per streamed chunk.

Everything runs on loopback in separate processes, so that the client, the upstream and each proxy do not share
one interpreter: the genguard simulator (a fixed reply) is the upstream; the contenders are

- direct: the client talks to the simulator;
- genguard: ``genguard proxy`` (uvicorn; uvloop and httptools when installed, as uvicorn picks them);
- bare: a minimal pass-through written here (aiohttp server and client, no policy, no parsing): the floor any
  proxy in Python pays for a second hop.

Measures:
1. added latency: many sequential plain chat calls (one keep-alive connection), direct and through each proxy,
   interleaved in blocks so drift hits all alike; p50 and p99 of each, and the proxy's minus direct's.
2. throughput: N plain calls with 64 in flight (aiohttp client), requests per second, ratio to direct.
3. per streamed chunk: S streamed calls of a long reply through genguard and through bare; the proxy process's
   CPU time (user + system, from /proc) divided by the chunks the client received.
4. the proxy's own logic per plain call (parse, retry loop, classification, headers), the network taken out.

Run: ``.venv/bin/python bench/bench_proxy.py`` (``--calls``, ``--throughput``, ``--streams``, ``--loop``).
The machine may be shared: figures are noisy; the ratios in one run are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

KEY = "sk-bench-proxy-key"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}
REPLY = "Hello there, this is a fixed reply."


# -- the processes ----------------------------------------------------------------------------------------


@contextmanager
def serve(args: list[str]) -> Iterator[tuple[str, int]]:
    """Start a server process that prints ``... http://127.0.0.1:PORT/v1`` on its first line."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        url = line[line.index("http://") :]
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_genguard(upstream: str, loop: str, http: str) -> None:
    import uvicorn

    from genguard.proxy import ProxyConfig, create_app

    app = create_app(ProxyConfig(upstream=upstream, api_keys=(KEY,)))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False, loop=loop,
                            http=http, lifespan="on", proxy_headers=False, server_header=False)  # fmt: skip
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"listening on http://127.0.0.1:{port}/v1", flush=True)
        await task

    if loop == "auto":  # as uvicorn's own run() picks it
        try:
            import uvloop

            loop = "uvloop"
        except ImportError:
            loop = "asyncio"
    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def serve_bare(upstream: str) -> None:
    """A pass-through with nothing but the second hop: the request body in, the answer's chunks out."""
    from aiohttp import ClientSession, TCPConnector, web

    session: ClientSession | None = None
    base = upstream.rstrip("/")

    async def handle(request: web.Request) -> web.StreamResponse:
        assert session is not None
        body = await request.read()
        headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
        async with session.post(base + request.path.removeprefix("/v1"), data=body, headers=headers) as up:
            response = web.StreamResponse(status=up.status)
            response.content_type = up.content_type
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def main() -> None:
        nonlocal session
        session = ClientSession(connector=TCPConnector(limit=512))
        app = web.Application()
        app.router.add_route("POST", "/v1/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"listening on http://127.0.0.1:{port}/v1", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the measures -----------------------------------------------------------------------------------------


def latency(urls: dict[str, str], calls: int, block: int = 50) -> dict[str, list[float]]:
    clients = {name: httpx.Client(base_url=url, timeout=30) for name, url in urls.items()}
    content = orjson.dumps(BODY)
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    times: dict[str, list[float]] = {name: [] for name in urls}
    for client in clients.values():  # warm: connections open, code paths imported
        for _ in range(20):
            client.post("/chat/completions", content=content, headers=headers).raise_for_status()
    done = 0
    while done < calls:
        for name, client in clients.items():
            for _ in range(block):
                started = time.perf_counter()
                reply = client.post("/chat/completions", content=content, headers=headers)
                times[name].append(time.perf_counter() - started)
                assert reply.status_code == 200, reply.text
        done += block
    for client in clients.values():
        client.close()
    return times


async def _throughput(url: str, n: int, in_flight: int) -> float:
    import aiohttp

    content = orjson.dumps(BODY)
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:
        queue = iter(range(n))

        async def worker() -> None:
            for _ in queue:
                async with session.post(url + "/chat/completions", data=content, headers=headers) as reply:
                    await reply.read()
                    assert reply.status == 200

        for _ in range(2):  # warm
            async with session.post(url + "/chat/completions", data=content, headers=headers) as reply:
                await reply.read()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return n / (time.perf_counter() - started)


async def _streams(url: str, n: int) -> int:
    import aiohttp

    content = orjson.dumps({**BODY, "stream": True, "max_tokens": 4000})
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    events = 0
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            async with session.post(url + "/chat/completions", data=content, headers=headers) as reply:
                assert reply.status == 200
                data = await reply.read()
                events += data.count(b"data: ")
    return events


def logic_cost(n: int = 20000) -> float:
    """CPU seconds per call of what the proxy itself does (parse the request, the retry loop, classify the
    answer, the headers) with the network taken out: an upstream that answers at once from memory."""
    from genguard.client.retry import RetryPolicy
    from genguard.proxy._app import passed_headers
    from genguard.proxy._outcome_http import outcome_headers
    from genguard.proxy._upstream import KeyRing, Upstream

    reply = orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13},
    })  # fmt: skip
    headers = {"content-type": "application/json", "x-request-id": "req_1", "openai-processing-ms": "5"}

    class Memory:
        async def exchange(self, *args: Any) -> tuple[int, dict[str, str], bytes]:
            return 200, headers, reply

    upstream = Upstream("http://127.0.0.1:9/v1", timeout=60, stall_timeout=30)
    upstream.wire = Memory()  # type: ignore[assignment]
    ring, policy, raw = KeyRing((KEY,)), RetryPolicy(), orjson.dumps(BODY)

    async def run() -> float:
        started = time.process_time()
        for _ in range(n):
            body = orjson.loads(raw)
            answer = await upstream.call("POST", "/chat/completions", raw, body, endpoint="chat",
                                         models=(BODY["model"],), ring=ring, policy=policy)  # fmt: skip
            passed_headers(answer.headers).update(outcome_headers(answer.outcome, "gpt-4o-mini"))
        return (time.process_time() - started) / n

    return asyncio.run(run())


def throughput_behind_latency(args: argparse.Namespace, sim_args: list[str]) -> None:
    """Throughput at 64 in flight against an upstream that takes ``--upstream-ms`` to answer, as a provider
    does: direct is then bound by the latency, not by the simulator's CPU, and what a proxy costs shows as its
    share of that bound rather than as a third process competing for two cores with an upstream that answers
    at once."""
    me = [sys.executable, os.path.abspath(__file__)]
    with (
        serve([*sim_args, "--ttft-ms", str(args.upstream_ms)]) as (sim_url, _),
        serve([*me, "--serve-genguard", sim_url, "--loop", args.loop, "--http", args.http]) as (gg_url, _),
        serve([*me, "--serve-bare", sim_url]) as (bare_url, _),
    ):
        urls = {"direct": sim_url, "genguard": gg_url, "bare": bare_url}
        print(
            f"\nthroughput: {args.throughput} calls, 64 in flight, the upstream answering in {args.upstream_ms:g} ms"
        )
        rates: dict[str, float] = {}
        for name, url in urls.items():
            rates[name] = asyncio.run(_throughput(url, args.throughput, 64))
            print(f"{name:<10} {rates[name]:9.0f} req/s  {rates[name] / rates['direct']:.2f}x direct")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per contender")
    parser.add_argument("--throughput", type=int, default=4000, help="calls per contender at 64 in flight")
    parser.add_argument("--streams", type=int, default=20, help="streamed calls of ~2,000 chunks")
    parser.add_argument("--upstream-ms", type=float, default=50.0,
                        help="throughput again against an upstream that takes this long to answer (0: skip)")  # fmt: skip
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    parser.add_argument("--http", default="auto", choices=["auto", "h11", "httptools"])
    parser.add_argument("--serve-genguard", metavar="UPSTREAM", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", metavar="UPSTREAM", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_genguard:
        return serve_genguard(args.serve_genguard, args.loop, args.http)
    if args.serve_bare:
        return serve_bare(args.serve_bare)

    py = sys.executable
    long_reply = " ".join(["word"] * 2000)
    sim_args = [py, "-m", "genguard", "simulate", "--port", "0", "--reply", REPLY, "--reply-for",
                f"gpt-4o={long_reply}", "--no-ratelimit-headers"]  # fmt: skip
    with serve(sim_args) as (sim_url, sim_pid):
        me = [py, os.path.abspath(__file__)]
        with (
            serve([*me, "--serve-genguard", sim_url, "--loop", args.loop, "--http", args.http]) as (
                gg_url,
                gg_pid,
            ),
            serve([*me, "--serve-bare", sim_url]) as (bare_url, bare_pid),
        ):
            urls = {"direct": sim_url, "genguard": gg_url, "bare": bare_url}
            print(f"loop={args.loop} http={args.http}; {args.calls} sequential calls each, interleaved")
            pids = {"direct": sim_pid, "genguard": gg_pid, "bare": bare_pid}
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            times = latency(urls, args.calls)
            # Each server's CPU over the phase, per call it served (direct's simulator served them all).
            served = {"direct": 3 * (args.calls + 20), "genguard": args.calls + 20, "bare": args.calls + 20}
            cpu = {name: (cpu_seconds(pid) - cpu0[name]) / served[name] for name, pid in pids.items()}
            print(
                f"{'contender':<10} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} {'added p99':>10} {'CPU/call':>9}"
            )
            base50, base99 = percentile(times["direct"], 0.5), percentile(times["direct"], 0.99)
            for name, values in times.items():
                p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
                print(f"{name:<10} {p50 * 1e3:8.3f} {p99 * 1e3:8.3f} {(p50 - base50) * 1e3:10.3f} "
                      f"{(p99 - base99) * 1e3:10.3f} {cpu[name] * 1e6:6.0f} us")  # fmt: skip
            print(f"\nthroughput: {args.throughput} calls, 64 in flight")
            rates: dict[str, float] = {}
            for name, url in urls.items():
                before = cpu_seconds(pids[name])
                rates[name] = asyncio.run(_throughput(url, args.throughput, 64))
                cpu = (cpu_seconds(pids[name]) - before) / (args.throughput + 2)
                what = "the simulator's" if name == "direct" else "the proxy's"
                print(f"{name:<10} {rates[name]:9.0f} req/s  {rates[name] / rates['direct']:.2f}x direct;  "
                      f"{what} CPU {cpu * 1e6:.0f} us per call")  # fmt: skip
            stream_model = {"genguard": gg_url, "bare": bare_url}
            print(f"\nstreams: {args.streams} streamed calls of a 2,000-word reply")
            BODY["model"] = "gpt-4o"
            per_chunk: dict[str, float] = {}
            for name, url in stream_model.items():
                pid = gg_pid if name == "genguard" else bare_pid
                before = cpu_seconds(pid)
                chunks = asyncio.run(_streams(url, args.streams))
                used = cpu_seconds(pid) - before
                per_chunk[name] = used / chunks
                print(
                    f"{name:<10} {chunks} chunks, {used:.2f} s CPU, {per_chunk[name] * 1e6:.1f} µs per chunk"
                )
            print(f"genguard / bare per chunk: {per_chunk['genguard'] / per_chunk['bare']:.2f}x")
    if args.upstream_ms > 0:
        BODY["model"] = "gpt-4o-mini"
        throughput_behind_latency(args, sim_args)
    print(f"\nthe proxy's own logic, no network: {logic_cost() * 1e6:.0f} us CPU per plain call")


if __name__ == "__main__":
    main()
