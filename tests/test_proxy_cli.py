"""``genguard proxy`` as a command: it prints its URL, serves, and stops on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from genguard.sim import Simulator

KEY = "sk-cli-proxy-key"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@contextmanager
def serve(sim: Simulator, *args: str) -> Iterator[str]:
    command = [sys.executable, "-m", "genguard", "proxy", "--upstream", sim.base_url, "--port", "0",
               "--api-key", KEY, *args]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        yield line.removeprefix("listening on ")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert KEY not in err


def test_the_command_serves_on_the_printed_url_until_interrupted(sim: Simulator) -> None:
    with serve(sim) as base_url:
        reply = httpx.post(base_url + "/chat/completions", json=BODY)
    assert reply.status_code == 200
    assert reply.headers["x-genguard-code"] == "ok"


def test_max_wait_answers_a_longer_server_wait_at_once(sim: Simulator) -> None:
    sim.configure(scenario="rate_limited", retry_after_s=30)
    with serve(sim, "--max-wait", "1") as base_url:
        reply = httpx.post(base_url + "/chat/completions", json=BODY, timeout=10)
    # A 30 s wait is past --max-wait: answered at once with the wait, not slept on.
    assert reply.status_code == 429
    assert reply.headers["x-genguard-attempts"] == "1"
    assert reply.headers["retry-after-ms"] == "30000"
    assert reply.headers["x-should-retry"] == "false"


def test_an_upstream_that_is_not_a_url_is_bad_usage() -> None:
    done = subprocess.run([sys.executable, "-m", "genguard", "proxy", "--upstream", "localhost:8000/v1"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2
    assert "--upstream" in done.stderr
