"""`genguard demo`: every step shows what it should, on the embedded simulator, in seconds."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from genguard.cli import cli
from genguard.cli.demo import STEPS


def test_demo_tours_every_step_and_exits_0() -> None:
    result = CliRunner().invoke(cli, ["demo", "--json"])
    rows = [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert result.exit_code == 0, result.stdout
    assert len(rows) == len(STEPS)
    assert all(r["as_expected"] for r in rows)
    codes = {r["code"] for r in rows}
    for code in ("quota_exceeded", "content_filtered", "truncated", "incomplete_stream", "stream_error",
                 "invalid_json"):  # fmt: skip
        assert code in codes


def test_demo_readable_output() -> None:
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0
    assert f"{len(STEPS)}/{len(STEPS)} steps" in result.stdout
    assert "SOFT FAILURE" in result.stdout
