"""Client CPU per plain call and per streamed chunk: genguard vs the official openai SDK vs raw httpx + orjson.

A bare Starlette server runs in another process (so its CPU is not counted) and answers every client the
same chat completion, or the same 500-chunk stream. CPU is ``time.process_time()`` in this process.

    .venv/bin/python bench/bench_client.py [--calls 300] [--streams 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import time
from collections.abc import Callable

import httpx
import orjson

CHUNKS = 500
MSGS = [{"role": "user", "content": "hi"}]


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
    for _ in range(min(20, n)):
        fn()  # warm up connections and caches
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--streams", type=int, default=20)
    args = parser.parse_args()
    port = _free_port()
    proc = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(200):
        try:
            httpx.post(url + "/chat/completions", content=b"{}")
            break
        except httpx.HTTPError:
            time.sleep(0.05)

    import openai

    import genguard._client as gc

    key = "sk-bench-0000000000000000"
    sdk = openai.OpenAI(base_url=url, api_key=key, max_retries=0)
    gg = gc.Client(url, api_key=key)
    raw = httpx.Client(headers={"authorization": f"Bearer {key}"})

    def raw_plain() -> object:
        r = raw.post(url + "/chat/completions", content=orjson.dumps({"model": "gpt-4o-mini", "messages": MSGS}),
                     headers={"content-type": "application/json"})  # fmt: skip
        data = orjson.loads(r.content)
        return data["choices"][0]["message"]["content"]

    def raw_stream() -> object:
        text = []
        body = orjson.dumps({"model": "gpt-4o-mini", "messages": MSGS, "stream": True})
        with raw.stream("POST", url + "/chat/completions", content=body) as r:
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

    assert gg_stream() == sdk_stream() == raw_stream()
    rows = []
    for name, plain, stream in (("genguard", gg_plain, gg_stream), ("openai SDK", sdk_plain, sdk_stream),
                                ("raw httpx+orjson", raw_plain, raw_stream)):  # fmt: skip
        per_call = _cpu(plain, args.calls)
        per_chunk = _cpu(stream, args.streams) / CHUNKS
        rows.append((name, per_call, per_chunk))
    proc.terminate()
    g, s, r = rows
    print(f"{'client':<18} {'CPU/plain call':>15} {'CPU/stream chunk':>17}")
    for name, pc, ch in rows:
        print(f"{name:<18} {pc * 1e6:>12.0f} us {ch * 1e6:>14.2f} us")
    print(
        f"genguard / SDK:  plain {g[1] / s[1]:.2f} (target <= 0.7), stream {g[2] / s[2]:.2f} (target <= 0.5)"
    )
    print(
        f"genguard / raw:  plain {g[1] / r[1]:.2f} (target <= 1.2), chunk  {g[2] / r[2]:.2f} (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
