"""Client CPU per plain call and per streamed chunk: genguard vs the official openai SDK vs raw httpx + orjson.

A bare Starlette server runs in another process (so its CPU is not counted) on 127.0.0.1 and answers every
client the same chat completion, or the same 500-chunk stream. CPU is ``time.process_time()`` in this process.

Fairness: every contender is warmed up the same way (same number of plain calls and streams, so connection
pools, imports and caches are hot for all), then the contenders are timed in many short rounds, each round
timing every contender once, with the order rotated each round (genguard, SDK, raw; SDK, raw, genguard; ...)
so no one always runs first or last. A round times ``--calls`` plain calls, then ``--streams`` streams, per
contender. Short rounds matter on a shared machine: what else runs changes within seconds, and a round of a
tenth of a second per contender puts all three under the same conditions. The best round is what the
code costs when the machine leaves it alone; the median shows the spread; the per-round ratio (genguard's
time over the other's in the same round, median over rounds) is the steadiest comparison on a busy machine.

    .venv/bin/python bench/bench_client.py [--calls 60] [--streams 1] [--rounds 30] [--warmup 100]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import socket
import statistics
import time
from collections.abc import Callable

import httpx
import orjson

CHUNKS = 500
MSGS = [{"role": "user", "content": "hi"}]
KEY = "sk-bench-0000000000000000"


def _serve(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    plain = orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, friend."},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    })  # fmt: skip
    base = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,'
    body = b"".join(base + b'"delta":{"content":"tok "},"finish_reason":null}]}\n\n' for _ in range(CHUNKS))
    body += base + b'"delta":{},"finish_reason":"stop"}]}\n\n'
    body += (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],'
    )
    body += b'"usage":{"prompt_tokens":5,"completion_tokens":500,"total_tokens":505}}\n\ndata: [DONE]\n\n'
    events = [body[i : i + 120] for i in range(0, len(body), 120)]  # many small network writes

    async def chat(request: Request) -> Response:
        req = orjson.loads(await request.body())
        if req.get("stream"):

            async def gen():  # type: ignore[no-untyped-def]
                for e in events:
                    yield e

            return StreamingResponse(gen(), media_type="text/event-stream")
        return Response(plain, media_type="application/json", headers={"x-request-id": "req_1"})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu(fn: Callable[[], object], n: int) -> float:
    """CPU seconds per call of ``fn``, over ``n`` calls, starting from a clean garbage collector."""
    gc.collect()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n


def _contenders(url: str) -> list[tuple[str, Callable[[], object], Callable[[], object], Callable[[], None]]]:
    import openai

    import genguard.client.clients as gc_

    sdk = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
    gg = gc_.Client(url, api_key=KEY)
    raw = httpx.Client(headers={"authorization": f"Bearer {KEY}"})
    chat_url = url + "/chat/completions"

    def raw_plain() -> object:
        r = raw.post(chat_url, content=orjson.dumps({"model": "gpt-4o-mini", "messages": MSGS}),
                     headers={"content-type": "application/json"})  # fmt: skip
        data = orjson.loads(r.content)
        return data["choices"][0]["message"]["content"]

    def raw_stream() -> object:
        text = []
        body = orjson.dumps({"model": "gpt-4o-mini", "messages": MSGS, "stream": True})
        with raw.stream("POST", chat_url, content=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    choices = orjson.loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        text.append(choices[0]["delta"]["content"])
        return "".join(text)

    def sdk_plain() -> object:
        return sdk.chat.completions.create(model="gpt-4o-mini", messages=MSGS).choices[0].message.content  # type: ignore[arg-type]

    def sdk_stream() -> object:
        out = []
        for chunk in sdk.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True):  # type: ignore[arg-type]
            if chunk.choices and chunk.choices[0].delta.content:
                out.append(chunk.choices[0].delta.content)
        return "".join(out)

    def gg_plain() -> object:
        o = gg.chat(model="gpt-4o-mini", messages=MSGS)
        assert o.ok, o.summary()
        return o.text

    def gg_stream() -> object:
        with gg.stream(model="gpt-4o-mini", messages=MSGS) as s:
            out = list(s)
        assert s.outcome.ok, s.outcome.summary()
        return "".join(out)

    assert gg_plain() == sdk_plain() == raw_plain()
    assert gg_stream() == sdk_stream() == raw_stream()
    return [
        ("genguard", gg_plain, gg_stream, gg.close),
        ("openai SDK", sdk_plain, sdk_stream, sdk.close),
        ("raw httpx+orjson", raw_plain, raw_stream, raw.close),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=60, help="plain calls per contender per round")
    parser.add_argument("--streams", type=int, default=1, help="500-chunk streams per contender per round")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (best and median reported)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed plain calls per contender first")
    args = parser.parse_args()
    port = _free_port()
    proc = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(200):
            try:
                httpx.post(url + "/chat/completions", content=b"{}")
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        contenders = _contenders(url)
        # The same warm-up for all, interleaved, so none profits from another's warm caches or a quiet moment.
        for _ in range(args.warmup // 10):
            for _name, plain, _stream, _close in contenders:
                for _ in range(10):
                    plain()
        for _ in range(2):
            for _name, _plain, stream, _close in contenders:
                stream()
        plains: dict[str, list[float]] = {c[0]: [] for c in contenders}
        chunks: dict[str, list[float]] = {c[0]: [] for c in contenders}
        wall = time.perf_counter()
        for r in range(args.rounds):
            order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
            for name, plain, _stream, _close in order:
                plains[name].append(_cpu(plain, args.calls))
            for name, _plain, stream, _close in order:
                chunks[name].append(_cpu(stream, args.streams) / CHUNKS)
        wall = time.perf_counter() - wall
        for _name, _plain, _stream, close in contenders:
            close()
    finally:
        proc.terminate()
        proc.join(5)

    names = [c[0] for c in contenders]
    best_p = {n: min(plains[n]) for n in names}
    med_p = {n: statistics.median(plains[n]) for n in names}
    best_c = {n: min(chunks[n]) for n in names}
    med_c = {n: statistics.median(chunks[n]) for n in names}
    print(
        f"{args.rounds} rounds of {args.calls} plain calls and {args.streams} streams x {CHUNKS} chunks per "
        f"contender, order rotated each round; {wall:.1f} s timed"
    )
    print(f"{'client':<18} {'plain best':>11} {'median':>9} {'chunk best':>11} {'median':>9}")
    for n in names:
        print(
            f"{n:<18} {best_p[n] * 1e6:>8.0f} us {med_p[n] * 1e6:>6.0f} us "
            f"{best_c[n] * 1e6:>8.2f} us {med_c[n] * 1e6:>6.2f} us"
        )
    g, s, r = names

    def paired(times: dict[str, list[float]], other: str) -> float:
        # Each round's two figures were taken within a fraction of a second of each other, under the same load:
        # the median of the per-round ratios is the figure a busy machine disturbs least.
        return statistics.median(a / b for a, b in zip(times[g], times[other], strict=True))

    print("ratios: per-round (median of each round's ratio), best (best / best), median (median / median)")
    for label, other, plain_target, chunk_target in (("SDK", s, 0.7, 0.5), ("raw httpx", r, 1.2, 1.5)):
        print(
            f"genguard / {label:<9}: plain {paired(plains, other):.2f} per-round, {best_p[g] / best_p[other]:.2f} "
            f"best, {med_p[g] / med_p[other]:.2f} median (target <= {plain_target}); "
            f"chunk {paired(chunks, other):.2f} per-round, {best_c[g] / best_c[other]:.2f} best, "
            f"{med_c[g] / med_c[other]:.2f} median (target <= {chunk_target})"
        )


if __name__ == "__main__":
    main()
