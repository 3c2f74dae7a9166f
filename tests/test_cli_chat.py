"""`genguard chat` against the simulator: answers, diagnoses, JSON, streaming and exit codes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import orjson
import pytest
from click.testing import CliRunner

from genguard.cli import cli
from genguard.sim import Simulator

KEY = "sk-cli-secret-0123456789abcdef"


def run(sim: Simulator, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["chat", *args, "--base-url", sim.base_url, "--api-key", KEY])
    return result.exit_code, result.stdout, result.stderr


def test_answer_is_printed_and_exit_0(sim: Simulator) -> None:
    code, out, _ = run(sim, "Hello")
    assert code == 0
    assert out.strip()


def test_stream_prints_the_answer(sim: Simulator) -> None:
    code, out, _ = run(sim, "Hello", "--stream")
    assert code == 0
    assert len(out.split()) > 3


@pytest.mark.parametrize("stream", [[], ["--stream"]])
def test_failure_prints_the_diagnosis_and_exit_1(sim: Simulator, stream: list[str]) -> None:
    sim.configure(scenario="content_filtered")
    code, _, err = run(sim, "Hello", *stream)
    assert code == 1
    assert "content_filtered" in err


def test_json_has_the_taxonomy_fields_and_attempts(sim: Simulator) -> None:
    sim.configure(scenario="server_error:1", retry_after_s=0.01)
    code, out, _ = run(sim, "Hello", "--json")
    data = orjson.loads(out)
    assert code == 0
    assert data["ok"] is True
    assert data["attempts"] == 2
    assert [h["code"] for h in data["history"]] == ["server_error", None]
    for name in ("kind", "code", "retryable", "retry_after_s", "cause", "fix", "usage", "request_id"):
        assert name in data


def test_validate_and_fallback_options(sim: Simulator) -> None:
    sim.configure(scenario="invalid_json")
    code, out, _ = run(sim, "Hello", "--validate", "json", "--json", "--max-attempts", "1")
    assert code == 1
    assert orjson.loads(out)["code"] == "invalid_json"


def test_bad_usage_exits_2(sim: Simulator) -> None:
    code, _, err = run(sim, "Hello", "--validate", "nonsense:x")
    assert code == 2
    assert "validate" in err


def test_missing_key_exits_2_naming_the_variables(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GENGUARD_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    sim.configure(api_keys=("sk-needed-abcdefghijkl",))
    result = CliRunner().invoke(cli, ["chat", "Hi", "--base-url", sim.base_url])
    assert result.exit_code == 2
    assert "GENGUARD_API_KEY" in result.stderr


@pytest.mark.parametrize(
    "command",
    [["chat", "Hi"], ["doctor"], ["image", "Hi", "-m", "dall-e-2"], ["video", "Hi", "-m", "sora-2"]],
)
def test_base_url_without_scheme_exits_2_naming_it(command: list[str]) -> None:
    # Sent as is, it used to end as a retried connection_error with exit 1.
    result = CliRunner().invoke(cli, [*command, "--base-url", "localhost:8000/v1", "--api-key", KEY])
    assert result.exit_code == 2, result.output
    assert "'localhost:8000/v1' from the base_url argument (--base-url)" in result.stderr
    assert KEY not in result.output


def test_key_never_printed(sim: Simulator) -> None:
    sim.configure(api_keys=("sk-other-abcdefghijklmn",))
    for extra in ([], ["--json"], ["--stream"]):
        code, out, err = run(sim, "Hi", *extra)
        assert code == 1
        assert KEY not in out + err


@pytest.mark.parametrize("command", [["chat", "tell me", "--stream"], ["doctor"]])
def test_ctrl_c_exits_130_saying_interrupted(sim: Simulator, command: list[str]) -> None:
    # click printed "Aborted!" and exited 1, the code for a failed generation.
    sim.configure(tokens_per_s=5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "genguard", *command, "--base-url", sim.base_url, "--api-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "genguard: interrupted" in err
    assert "Aborted" not in err
    assert KEY not in out + err
