"""A provider that takes N requests at a time, each answered after LATENCY_S, and refuses one more with a 429
that says so ("Too many concurrent requests"), with a whole-second Retry-After if asked: a gateway's or a
self-hosted server's limit. Its capacity is N / LATENCY_S requests a second. ``GET /stats`` counts.

    python bench/in_flight_server.py N PORT LATENCY_S [RETRY_AFTER]
    genguard batch IN.jsonl --out DIR --base-url http://127.0.0.1:PORT/v1 --api-key sk-local-12345678 --json
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

N = int(sys.argv[1])
PORT = int(sys.argv[2])
LATENCY_S = float(sys.argv[3])
RETRY_AFTER = sys.argv[4] if len(sys.argv) > 4 else ""
ANSWER = {
    "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}  # fmt: skip
REFUSAL = {
    "error": {"message": "Too many concurrent requests", "type": "requests", "code": "rate_limit_exceeded"}
}
state = {"in_flight": 0, "ok": 0, "refused": 0}


async def chat(request: web.Request) -> web.Response:
    await request.read()
    if state["in_flight"] >= N:
        state["refused"] += 1
        headers = {"retry-after": RETRY_AFTER} if RETRY_AFTER else {}
        return web.json_response(REFUSAL, status=429, headers=headers)
    state["in_flight"] += 1
    try:
        await asyncio.sleep(LATENCY_S)
    finally:
        state["in_flight"] -= 1
    state["ok"] += 1
    return web.json_response(ANSWER)


async def stats(request: web.Request) -> web.Response:
    return web.json_response(state)


app = web.Application()
app.router.add_post("/v1/chat/completions", chat)
app.router.add_get("/stats", stats)
web.run_app(app, host="127.0.0.1", port=PORT, print=None)
