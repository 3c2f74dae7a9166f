"""A provider that admits R requests per fixed one-second window and states nothing: a 429 with no rate-limit
header at all (``bare``), or with a whole-second ``retry-after`` alone (``retry-after``), after ``latency``
seconds. It counts what it let through and refused, each second (``GET /stats``). The simulator's own window
states its waits to the millisecond; this one is coarser, as many gateways are.

    python bench/fixed_window_server.py R PORT [bare|retry-after] [LATENCY_S]
    genguard batch IN.jsonl --out DIR --base-url http://127.0.0.1:PORT/v1 --api-key sk-local-12345678
    curl -s 127.0.0.1:PORT/stats
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiohttp import web

R = int(sys.argv[1])
PORT = int(sys.argv[2])
MODE = sys.argv[3] if len(sys.argv) > 3 else "bare"
LATENCY_S = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
ANSWER = {
    "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}  # fmt: skip
REFUSAL = {
    "error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}
}
window = {"at": 0, "n": 0}
ok: dict[int, int] = {}
refused: dict[int, int] = {}


async def chat(request: web.Request) -> web.Response:
    await request.read()
    if LATENCY_S:
        await asyncio.sleep(LATENCY_S)
    now = time.monotonic()
    second = int(now)
    if second != window["at"]:
        window["at"], window["n"] = second, 0
    if window["n"] >= R:
        refused[second] = refused.get(second, 0) + 1
        headers = {"retry-after": str(max(1, round(second + 1 - now)))} if MODE == "retry-after" else {}
        return web.json_response(REFUSAL, status=429, headers=headers)
    window["n"] += 1
    ok[second] = ok.get(second, 0) + 1
    return web.json_response(ANSWER)


async def stats(request: web.Request) -> web.Response:
    seconds = sorted(set(ok) | set(refused))
    return web.json_response({
        "ok": sum(ok.values()), "refused": sum(refused.values()),
        "ok_per_s": [ok.get(s, 0) for s in seconds], "refused_per_s": [refused.get(s, 0) for s in seconds],
    })  # fmt: skip


app = web.Application()
app.router.add_post("/v1/chat/completions", chat)
app.router.add_get("/stats", stats)
web.run_app(app, host="127.0.0.1", port=PORT, print=None)
