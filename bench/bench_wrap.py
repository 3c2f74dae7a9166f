"""What genguard.wrap costs an application on the official openai SDK: the same calls, bare and wrapped.

The simulator runs in its own process (`genguard simulate --port 0`), so the CPU time measured here
(`time.process_time`) is the client's alone: the SDK's request building and parsing, plus, wrapped, genguard's
transport, retry loop and reading of every answer. Best of ``--repeats``; the ratio is what to watch.

    .venv/bin/python bench/bench_wrap.py            # --calls 300 --streams 100 --repeats 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import openai

import genguard

MESSAGES: Any = [{"role": "user", "content": "Write a paragraph about benchmarks"}]


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "genguard", "simulate", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            return proc, line.split("listening on", 1)[1].strip()
    raise RuntimeError("the simulator did not start")


def best(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    proc, base_url = start_simulator()
    try:
        bare = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
        wrapped = genguard.wrap(openai.OpenAI(base_url=base_url, api_key="sk-bench"))

        def plain(client: openai.OpenAI) -> Callable[[], None]:
            def run() -> None:
                for _ in range(args.calls):
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)

            return run

        def streamed(client: openai.OpenAI) -> Callable[[], None]:
            def run() -> None:
                for _ in range(args.streams):
                    for _chunk in client.chat.completions.create(
                        model="gpt-4o-mini", messages=MESSAGES, max_tokens=200, stream=True
                    ):
                        pass

            return run

        plain(bare)()  # warm both: connections, imports
        plain(wrapped)()
        rows = []
        for name, make, count in (("plain call", plain, args.calls), ("stream", streamed, args.streams)):
            b = best(make(bare), args.repeats) / count * 1000
            w = best(make(wrapped), args.repeats) / count * 1000
            rows.append((name, b, w))
        print(f"{'':22} {'bare SDK ms':>12} {'wrapped ms':>12} {'wrapped/bare':>13}")
        for name, b, w in rows:
            print(f"{name:22} {b:12.3f} {w:12.3f} {w / b:13.2f}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
