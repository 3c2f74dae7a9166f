"""Time genguard's reading of a normal 200 chat completion against orjson alone and the openai SDK's models.

One realistic ``chat.completion`` body (bytes, with headers as a server sends them) is read in a tight loop
by each contender, best of several repeats, in CPU time per call:

- floor: ``orjson.loads`` alone (what any reader must pay);
- genguard ``classify_http(200, headers, body)``: JSON, the error-envelope check, the chat checks (finish
  reason, content, tool calls, filters), usage, request id, and the Outcome;
- its parts: ``Usage.from_dict`` on the body's usage, and building the ok ``Outcome``;
- openai ``construct_type(ChatCompletion, orjson.loads(body))``: what the SDK does for every response by
  default (no validation);
- openai ``ChatCompletion.model_validate(orjson.loads(body))``: the same with pydantic validation.

Run: ``.venv/bin/python bench/bench_classify.py`` (``--calls N``, ``--repeats N``).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import orjson
from openai._models import construct_type
from openai.types.chat import ChatCompletion

from genguard.core.classify import classify_http
from genguard.core.outcome import Outcome, Usage

BODY = orjson.dumps(
    {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "The image shows a wooden boardwalk path running through a lush green field.",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 1117,
            "completion_tokens": 46,
            "total_tokens": 1163,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
    }
)
HEADERS = {
    "content-type": "application/json",
    "x-request-id": "req_5d8f5ba7f0c2b0e0b1a36b6c0b8f2d5e",
    "openai-processing-ms": "1212",
    "x-ratelimit-remaining-requests": "9999",
}
USAGE = orjson.loads(BODY)["usage"]
FLAT_USAGE = {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163}


def per_call(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Best CPU time of one call, in microseconds."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, time.process_time() - start)
    return best / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    outcome = classify_http(200, HEADERS, BODY)
    assert outcome.ok, outcome
    assert outcome.text, outcome
    assert outcome.usage, outcome
    assert outcome.request_id, outcome
    loads = orjson.loads
    contenders: dict[str, Callable[[], object]] = {
        "floor: orjson.loads": lambda: loads(BODY),
        "genguard classify_http": lambda: classify_http(200, HEADERS, BODY),
        "  Usage.from_dict (usage with details)": lambda: Usage.from_dict(USAGE),
        "  Usage.from_dict (three counts)": lambda: Usage.from_dict(FLAT_USAGE),
        "  Outcome(True, ...) (the ok path)": lambda: Outcome(
            True, text="Hi", finish_reason="stop", status=200, request_id="req_1"
        ),
        "  Outcome.failure(code, ...)": lambda: Outcome.failure("truncated", status=200, text="Hi"),
        "openai construct_type(ChatCompletion)": lambda: construct_type(
            type_=ChatCompletion, value=loads(BODY)
        ),
        "openai ChatCompletion.model_validate": lambda: ChatCompletion.model_validate(loads(BODY)),
    }
    print(f"body: {len(BODY)} bytes; {args.calls:,} calls, best of {args.repeats}, CPU time per call")
    times = {name: per_call(fn, args.calls, args.repeats) for name, fn in contenders.items()}
    floor = times["floor: orjson.loads"]
    print(f"{'contender':<42} {'us':>7} {'x floor':>8}")
    for name, t in times.items():
        print(f"{name:<42} {t:7.2f} {t / floor:8.2f}")
    ours = times["genguard classify_http"]
    print(
        f"classify_http / openai construct_type:    {ours / times['openai construct_type(ChatCompletion)']:.2f}"
    )
    print(
        f"classify_http / openai model_validate:    {ours / times['openai ChatCompletion.model_validate']:.2f}"
    )
    print(f"classify_http beyond orjson.loads:        {ours - floor:.2f} us")


if __name__ == "__main__":
    main()
