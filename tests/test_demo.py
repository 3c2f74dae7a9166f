"""`genguard demo`: every step shows what it should, on the embedded simulator, in seconds."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from genguard.cli import cli
from genguard.cli.demo import MEDIA_STEPS, STEPS
from genguard.core.media_body import sniff


def test_demo_tours_every_step_and_exits_0(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--json", "--out", str(tmp_path)])
    rows = [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert result.exit_code == 0, result.stdout
    assert len(rows) == len(STEPS)
    assert all(r["as_expected"] for r in rows)
    codes = {r["code"] for r in rows}
    for code in ("quota_exceeded", "content_filtered", "truncated", "incomplete_stream", "stream_error",
                 "invalid_json", "generation_failed"):  # fmt: skip
        assert code in codes
    by_title = {r["step"]: r for r in rows}
    media = [by_title[s.title] for s in MEDIA_STEPS]
    assert [r["code"] for r in media] == ["content_filtered", None, "generation_failed", None, None]
    # Every file a step reports is in the chosen folder and is what it claims to be, by its bytes.
    saved = [Path(f) for r in media for f in r.get("files") or []]
    assert len(saved) == 4
    assert sorted(p.name for p in saved) == sorted(p.name for p in tmp_path.iterdir())
    assert [sniff(p.read_bytes()) for p in saved] == ["image/png", "image/png", "video/mp4", "video/mp4"]
    rescued = by_title["A video stuck in the queue, rescued"]
    first = rescued["history"][0]
    assert (first["code"], first["model"]) == ("stuck_in_queue", "runway-gen4")
    assert rescued["model"] == "kling-v2"
    assert by_title["A video saved"]["progress_seen"][-1] == 100


def test_demo_readable_output(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0
    assert f"{len(STEPS)}/{len(STEPS)} steps" in result.stdout
    assert "SOFT FAILURE" in result.stdout
    assert "stuck_in_queue on runway-gen4, ok on kling-v2" in result.stdout
    assert f"Images and videos are in {tmp_path}" in result.stdout


def test_out_that_cannot_be_created_exits_2_before_the_tour(tmp_path: Path) -> None:
    # It used to run the whole tour and fail three media steps as download_failed, exit 1.
    (tmp_path / "a-file").write_text("x")
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "a-file" / "media")])
    assert result.exit_code == 2
    assert "cannot create the --out folder" in result.stderr
    assert result.stdout == ""
