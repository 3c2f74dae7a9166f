"""`genguard doctor` against the simulator: healthy, wrong key, missing model, unreachable, a dialect."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from genguard.cli import cli
from genguard.sim import Simulator

KEY = "sk-doctor-0123456789abcdef"


def doctor(base_url: str, *args: str) -> tuple[int, dict[str, bool], str]:
    result = CliRunner().invoke(cli, ["doctor", "--base-url", base_url, "--json", *args])
    data = orjson.loads(result.stdout)
    return result.exit_code, {c["name"]: c["ok"] for c in data["checks"]}, result.stdout


def test_healthy_endpoint_passes_every_check(sim: Simulator) -> None:
    code, checks, _ = doctor(sim.base_url, "--api-key", KEY)
    assert code == 0
    assert len(checks) == 9
    assert all(checks.values())


def test_readable_output_lists_each_check(sim: Simulator) -> None:
    result = CliRunner().invoke(cli, ["doctor", "--base-url", sim.base_url, "--api-key", KEY])
    assert result.exit_code == 0
    assert result.stdout.count("PASS") == 9


def test_wrong_key_fails_auth_with_a_fix_and_never_shows_the_key(sim: Simulator) -> None:
    sim.configure(api_keys=("sk-right-abcdefghijklmn",))
    code, checks, out = doctor(sim.base_url, "--api-key", KEY)
    assert code == 1
    assert checks["auth accepted"] is False
    assert KEY not in out
    assert '"fix":"Check the key' in out


def test_missing_model_fails_that_line(sim: Simulator) -> None:
    code, checks, _ = doctor(sim.base_url, "--api-key", KEY, "--model", "no-such-model")
    assert code == 1
    assert checks["model 'no-such-model' listed"] is False


def test_no_key_fails_the_first_line(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GENGUARD_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    code, checks, _ = doctor(sim.base_url)
    assert code == 1
    assert checks["key present, sent as Bearer"] is False


def test_unreachable_endpoint() -> None:
    code, checks, _ = doctor("http://127.0.0.1:9/v1", "--api-key", KEY)
    assert code == 1
    assert checks["endpoint reachable"] is False


def test_broken_streams_and_json_mode_are_caught(sim: Simulator) -> None:
    sim.configure(scenario="incomplete_stream")
    code, checks, _ = doctor(sim.base_url, "--api-key", KEY)
    assert code == 1
    assert checks["stream ends with a finish reason and [DONE]"] is False
    sim.configure(scenario="invalid_json")
    _, checks, _ = doctor(sim.base_url, "--api-key", KEY)
    assert checks["JSON mode honoured"] is False


@pytest.mark.parametrize("dialect", ["anthropic", "azure"])
def test_dialects(sim: Simulator, dialect: str) -> None:
    sim.configure(dialect=dialect)
    code, checks, _ = doctor(sim.base_url, "--api-key", KEY)
    assert checks["endpoint reachable"]
    assert code == (0 if all(checks.values()) else 1)
    assert checks["plain completion ends with stop"]
