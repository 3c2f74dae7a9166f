"""``genguard simulate`` as a user runs it: a real process, a free port, a clear error for bad options."""

from __future__ import annotations

import subprocess
import sys

import httpx
from click.testing import CliRunner

from genguard.cli import cli


def test_simulate_serves_until_stopped() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "genguard", "simulate", "--port", "0", "--scenario", "rate_limited", "--rpm", "5"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        base = line.removeprefix("listening on ")
        r = httpx.post(
            base + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 429
        assert r.headers["x-ratelimit-limit-requests"] == "5"
    finally:
        proc.terminate()
        proc.wait(10)


def test_bad_options_give_clear_errors() -> None:
    runner = CliRunner()
    for args, needle in ((["--scenario", "nope"], "valid scenarios"), (["--chaos", "rate_limited=3"], "between 0 and 1"),
                         (["--dialect", "x"], "openai"), (["--rpm", "0"], "--rpm"),
                         (["--should-retry", "maybe"], "auto"), (["--rate-window", "0"], "--rate-window"),
                         (["--rate-window", "61"], "--rate-window")):  # fmt: skip
        result = runner.invoke(cli, ["simulate", *args])
        assert result.exit_code == 2
        assert needle in result.output


def test_help_lists_every_flag() -> None:
    result = CliRunner().invoke(cli, ["simulate", "--help"])
    for flag in ("--scenario", "--chaos", "--seed", "--dialect", "--rpm", "--tpm", "--quota-tokens", "--api-key",
                 "--ttft-ms", "--tokens-per-s", "--task-seconds", "--port", "--host", "--rate-window",
                 "--no-ratelimit-headers", "--should-retry"):  # fmt: skip
        assert flag in result.output
