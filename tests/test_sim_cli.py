"""``genguard simulate`` as a user runs it: a real process, a free port, a clear error for bad options."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner

from genguard.cli import cli
from genguard.sim import Simulator


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


def test_port_in_use_says_so_and_exits_2() -> None:
    # It used to print uvicorn's log line, then "could not start ...: [SystemExit(3)]", and exit 1.
    with Simulator() as running:
        result = subprocess.run(
            [sys.executable, "-m", "genguard", "simulate", "--port", str(running.port)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{running.port}: Address already in use" in result.stderr
    assert "--port 0" in result.stderr
    assert "SystemExit" not in result.stderr
    assert result.stdout == ""


def test_ipv6_host_gives_a_bracketed_base_url() -> None:
    try:
        sim = Simulator(host="::1").start()
    except RuntimeError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert sim.base_url == f"http://[::1]:{sim.port}/v1"
        assert httpx.get(sim.base_url + "/models").status_code == 200
    finally:
        sim.stop()
