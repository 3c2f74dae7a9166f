"""``genguard proxy`` as a command: it prints its URL, serves, and stops on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx

from genguard.sim import Simulator


def test_the_command_serves_on_the_printed_url_until_interrupted(sim: Simulator) -> None:
    command = [sys.executable, "-m", "genguard", "proxy", "--upstream", sim.base_url, "--port", "0",
               "--api-key", "sk-cli-proxy-key"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.removeprefix("listening on ")
        reply = httpx.post(
            base_url + "/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert reply.status_code == 200
        assert reply.headers["x-genguard-code"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert "sk-cli-proxy-key" not in err


def test_an_upstream_that_is_not_a_url_is_bad_usage() -> None:
    done = subprocess.run([sys.executable, "-m", "genguard", "proxy", "--upstream", "localhost:8000/v1"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2
    assert "--upstream" in done.stderr
