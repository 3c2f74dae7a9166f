"""Time genguard's SSE decoder and chat-stream reader against a floor and the official openai SDK.

One realistic 10,000-chunk chat stream (bytes) is built once, cut into the same network chunks for every
contender, and each contender is timed over the whole stream, best of several repeats, in CPU time:

- floor: split on ``b"\\n\\n"``, strip ``data: ``, ``orjson.loads`` (no SSE rules at all);
- genguard ``SSEDecoder`` alone (events out, no JSON);
- genguard ``ChatStreamReader`` (decode, JSON, merge text/tool calls/usage, and the final Outcome);
- openai ``SSEDecoder`` alone (``openai._streaming.SSEDecoder().iter_bytes``);
- openai full parsing: that decoder plus each chunk built into ``ChatCompletionChunk`` the way the SDK's
  ``Stream`` does it by default (``openai._models.construct_type``, no validation), and, for reference, with
  ``ChatCompletionChunk.model_validate`` (pydantic's compiled validator, the SDK's strict mode).

Run: ``.venv/bin/python bench/bench_sse.py`` (``--chunks N``, ``--repeats N``).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import orjson
from openai._models import construct_type
from openai._streaming import SSEDecoder as OpenAIDecoder
from openai.types.chat import ChatCompletionChunk

from genguard.core.chat_stream import ChatStreamReader
from genguard.core.sse import SSEDecoder

_WORDS = [
    "The",
    " quick",
    " brown",
    " fox",
    " jumps",
    " over",
    " the",
    " lazy",
    " dog",
    ".",
    " \u00e9t\u00e9",
    " \u4e16\u754c",
    "\n\n",
    " 42",
    ",",
    " naïve",
]


def build_stream(n: int) -> bytes:
    """An OpenAI-shaped stream: role chunk, n content chunks, a finish chunk, the usage chunk, [DONE]."""
    head = {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
    }

    def chunk(delta: dict[str, object], finish: str | None = None, **more: object) -> bytes:
        body = {
            **head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **more,
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    parts = [chunk({"role": "assistant", "content": "", "refusal": None})]
    parts += [chunk({"content": _WORDS[i % len(_WORDS)]}) for i in range(n)]
    parts.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 19, "completion_tokens": n, "total_tokens": n + 19}
    parts.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def split_events(body: bytes) -> list[bytes]:
    """One network chunk per event, as a streaming server flushes them."""
    return [p + b"\n\n" for p in body.split(b"\n\n")[:-1]]


def split_fixed(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


# -- contenders: each consumes the chunks and returns a count, so nothing is optimised away ---------


def floor(chunks: list[bytes]) -> int:
    n = 0
    buf = b""
    loads = orjson.loads
    for c in chunks:
        buf += c
        events = buf.split(b"\n\n")
        buf = events.pop()
        for e in events:
            payload = e[6:] if e.startswith(b"data: ") else e
            if payload != b"[DONE]":
                loads(payload)
                n += 1
    return n


def genguard_decoder(chunks: list[bytes]) -> int:
    d = SSEDecoder()
    n = 0
    for c in chunks:
        n += len(d.feed(c))
    return n + len(d.close())


def genguard_reader(chunks: list[bytes]) -> int:
    r = ChatStreamReader()
    n = 0
    for c in chunks:
        n += len(r.feed(c))
    try:
        outcome = r.finish()
    except ImportError:  # the end-of-stream classifier not installed yet: time the parsing alone
        return n
    assert outcome.ok, outcome
    return n


def openai_decoder(chunks: list[bytes]) -> int:
    return sum(1 for _ in OpenAIDecoder().iter_bytes(iter(chunks)))


def openai_full(chunks: list[bytes]) -> int:
    n = 0
    for sse in OpenAIDecoder().iter_bytes(iter(chunks)):
        if sse.data.startswith("[DONE]"):
            break
        construct_type(type_=ChatCompletionChunk, value=sse.json())
        n += 1
    return n


def openai_validate(chunks: list[bytes]) -> int:
    n = 0
    for sse in OpenAIDecoder().iter_bytes(iter(chunks)):
        if sse.data.startswith("[DONE]"):
            break
        ChatCompletionChunk.model_validate(sse.json())
        n += 1
    return n


def best_time(fn: Callable[[list[bytes]], int], chunks: list[bytes], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.process_time()
        fn(chunks)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    body = build_stream(args.chunks)
    chunkings = {"per event": split_events(body), "64 KiB": split_fixed(body, 65536)}
    contenders = {
        "floor (split + orjson)": floor,
        "genguard SSEDecoder": genguard_decoder,
        "genguard ChatStreamReader": genguard_reader,
        "openai SSEDecoder": openai_decoder,
        "openai decoder + ChatCompletionChunk": openai_full,
        "openai decoder + model_validate": openai_validate,
    }
    print(
        f"stream: {args.chunks:,} content chunks, {len(body) / 1e6:.2f} MB; best of {args.repeats}, CPU time"
    )
    for label, chunks in chunkings.items():
        # Everyone must see the same events; a contender that drops some would look fast.
        counts = {name: fn(chunks) for name, fn in contenders.items()}
        assert counts["genguard SSEDecoder"] == counts["openai SSEDecoder"], counts
        times = {name: best_time(fn, chunks, args.repeats) for name, fn in contenders.items()}
        print(f"\nchunking: {label} ({len(chunks):,} network chunks)")
        print(f"{'contender':<38} {'ms':>8} {'x floor':>8}")
        for name, t in times.items():
            print(f"{name:<38} {t * 1e3:8.2f} {t / times['floor (split + orjson)']:8.2f}")
        dec = times["genguard SSEDecoder"] / times["openai SSEDecoder"]
        full = times["genguard ChatStreamReader"] / times["openai decoder + ChatCompletionChunk"]
        both = times["genguard ChatStreamReader"] / times["openai SSEDecoder"]
        print(f"genguard SSEDecoder / openai SSEDecoder:                       {dec:.2f}")
        print(f"genguard ChatStreamReader / openai SSEDecoder:                 {both:.2f}")
        strict = times["genguard ChatStreamReader"] / times["openai decoder + model_validate"]
        print(f"genguard ChatStreamReader / openai decoder + ChatCompletionChunk: {full:.2f}")
        print(f"genguard ChatStreamReader / openai decoder + model_validate:      {strict:.2f}")


if __name__ == "__main__":
    main()
