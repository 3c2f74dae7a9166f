"""Providers that limit as many gateways and self-hosted servers do, coarser than the simulator (whose window
states its waits to the millisecond), for `genguard batch` to run against. ``GET /stats`` counts what each let
through and refused.

    python bench/limited_server.py fixed-window R PORT [bare|retry-after] [LATENCY_S]
        R requests per fixed one-second window; a 429 with no rate-limit header at all (bare) or with a
        whole-second retry-after alone; answers after LATENCY_S (default 0)
    python bench/limited_server.py in-flight N PORT LATENCY_S [RETRY_AFTER]
        N requests at a time, each answered after LATENCY_S; one more is refused with a 429 that says so
        ("Too many concurrent requests"), with RETRY_AFTER if given
    python bench/limited_server.py outage N PORT SECONDS [STATUS] [LATENCY_S]
        serves the first N requests, then answers every request for SECONDS with STATUS (503 by default, "The
        server is overloaded or not ready yet."; 429 for a limit spent), then serves again; each answer after
        LATENCY_S (default 0.05)

    genguard batch IN.jsonl --out DIR --base-url http://127.0.0.1:PORT/v1 --api-key sk-local-12345678 --json
    curl -s 127.0.0.1:PORT/stats
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

ANSWER = {
    "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}  # fmt: skip
ok: dict[int, int] = {}  # by second
refused: dict[int, int] = {}


def _tally(table: dict[int, int]) -> None:
    second = int(time.monotonic())
    table[second] = table.get(second, 0) + 1


def _refuse(message: str, retry_after: str) -> web.Response:
    _tally(refused)
    body = {"error": {"message": message, "type": "requests", "code": "rate_limit_exceeded"}}
    return web.json_response(body, status=429, headers={"retry-after": retry_after} if retry_after else {})


def _answer() -> web.Response:
    _tally(ok)
    return web.json_response(ANSWER)


def fixed_window(rate: int, mode: str, latency_s: float) -> Callable[[web.Request], Awaitable[web.Response]]:
    window = {"at": 0, "used": 0}

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        if latency_s:
            await asyncio.sleep(latency_s)
        now = time.monotonic()
        second = int(now)
        if second != window["at"]:
            window["at"], window["used"] = second, 0
        if window["used"] >= rate:
            wait = str(max(1, round(second + 1 - now))) if mode == "retry-after" else ""
            return _refuse("Rate limit reached for requests", wait)
        window["used"] += 1
        return _answer()

    return chat


def in_flight(
    most: int, latency_s: float, retry_after: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    state = {"in_flight": 0}

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        if state["in_flight"] >= most:
            return _refuse("Too many concurrent requests", retry_after)
        state["in_flight"] += 1
        try:
            await asyncio.sleep(latency_s)
        finally:
            state["in_flight"] -= 1
        return _answer()

    return chat


def outage(
    first: int, seconds: float, status: int, latency_s: float
) -> Callable[[web.Request], Awaitable[web.Response]]:
    state: dict[str, float] = {"seen": 0, "down_at": 0.0}

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        state["seen"] += 1
        if state["seen"] == first + 1:
            state["down_at"] = time.monotonic()
        down = state["seen"] > first and time.monotonic() - state["down_at"] < seconds
        await asyncio.sleep(latency_s)
        if not down:
            return _answer()
        if status == 429:
            return _refuse("You exceeded your current limit for today.", "")
        _tally(refused)
        body = {"error": {"message": "The server is overloaded or not ready yet.", "type": "server_error"}}
        return web.json_response(body, status=status)

    return chat


async def stats(request: web.Request) -> web.Response:
    seconds = sorted(set(ok) | set(refused))
    return web.json_response({
        "ok": sum(ok.values()), "refused": sum(refused.values()),
        "ok_per_s": [ok.get(s, 0) for s in seconds], "refused_per_s": [refused.get(s, 0) for s in seconds],
    })  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] not in ("fixed-window", "in-flight", "outage"):
        raise SystemExit(__doc__)
    kind, number, port, *rest = argv
    if kind == "fixed-window":
        chat = fixed_window(
            int(number), rest[0] if rest else "bare", float(rest[1]) if len(rest) > 1 else 0.0
        )
    elif kind == "outage":
        chat = outage(
            int(number),
            float(rest[0]) if rest else 60.0,
            int(rest[1]) if len(rest) > 1 else 503,
            float(rest[2]) if len(rest) > 2 else 0.05,
        )
    else:
        chat = in_flight(int(number), float(rest[0]) if rest else 0.1, rest[1] if len(rest) > 1 else "")
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=int(port), print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
