"""`genguard image` and `genguard video` as real subprocesses against a running simulator: exit codes 0/1/2,
files written and checked, the outcome JSON, the progress line on a terminal, and the key never printed."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from genguard.cli import cli
from genguard.core.media_body import sniff
from genguard.sim import Simulator

KEY = "sk-cli-media-secret-0123456789"
VIDEO_FAST = ["--poll-interval", "0.05", "--deadline", "10", "--stall-limit", "5"]


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GENGUARD_", "OPENAI_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "genguard", *args], capture_output=True, text=True, env=full_env, input=stdin,
        timeout=60,
    )  # fmt: skip


def common(sim: Simulator, out: Path) -> list[str]:
    return ["--base-url", sim.base_url, "--api-key", KEY, "--out", str(out)]


def no_key(result: subprocess.CompletedProcess[str]) -> None:
    assert KEY not in result.stdout
    assert KEY not in result.stderr


def test_image_saves_checked_files_and_prints_their_paths(sim: Simulator, tmp_path: Path) -> None:
    got = run("image", "a red fox", "--model", "qwen-image", "--n", "2", *common(sim, tmp_path))
    assert got.returncode == 0, got.stderr
    paths = [Path(p) for p in got.stdout.split()]
    assert len(paths) == 2
    assert all(sniff(p.read_bytes()) == "image/png" for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    no_key(got)


def test_image_revised_prompt_goes_to_stderr(sim: Simulator, tmp_path: Path) -> None:
    got = run("image", "a red fox", "--model", "dall-e-3", *common(sim, tmp_path))
    assert got.returncode == 0, got.stderr
    assert "revised prompt: a red fox. Rendered" in got.stderr


def test_image_filtered_json_exit_1(sim: Simulator, tmp_path: Path) -> None:
    sim.configure(scenario="content_filtered")
    got = run("image", "a red fox", "--model", "dall-e-2", "--json", *common(sim, tmp_path))
    assert got.returncode == 1
    data = orjson.loads(got.stdout)
    assert (data["code"], data["kind"], data["status"], data["files"]) == (
        "content_filtered",
        "soft",
        200,
        [],
    )
    assert list(tmp_path.iterdir()) == []
    no_key(got)


def test_image_readable_failure_goes_to_stderr(sim: Simulator, tmp_path: Path) -> None:
    sim.configure(scenario="prompt_blocked")
    got = run("image", "a red fox", "--model", "gpt-image-1", *common(sim, tmp_path))
    assert got.returncode == 1
    assert got.stdout == ""
    assert "prompt_blocked" in got.stderr
    no_key(got)


def test_image_download_failure_leaves_nothing_behind(sim: Simulator, tmp_path: Path) -> None:
    sim.configure(scenario="download_failed")
    got = run("image", "a red fox", "--model", "dall-e-2", "--n", "2", "--json", *common(sim, tmp_path))
    assert got.returncode == 1
    assert orjson.loads(got.stdout)["code"] == "download_failed"
    assert [p for p in tmp_path.iterdir() if p.suffix == ".part" or p.name.startswith(".")] == []


def test_image_rules_from_a_file_and_from_the_environment(sim: Simulator, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[models."flux-"]\nmax_n = 1\nrejects = ["style"]\n')
    out = tmp_path / "pics"
    base = ["image", "a red fox", "--model", "flux-dev", "--n", "3", "--json"]
    by_flag = run(*base, "--rules", str(rules), *common(sim, out))
    by_env = run(*base, *common(sim, out), env={"GENGUARD_IMAGE_RULES": str(rules)})
    plain = run(*base, *common(sim, out))
    for got in (by_flag, by_env):
        assert got.returncode == 0, got.stderr
        data = orjson.loads(got.stdout)
        assert (data["attempts"], len(data["files"])) == (3, 3)
        assert any("at most n=1" in note for note in data["notes"])
    assert orjson.loads(plain.stdout)["attempts"] == 1


def test_image_bad_usage_exits_2(sim: Simulator, tmp_path: Path) -> None:
    assert run("image", "a fox", "--model", "dall-e-2", "--n", "0", *common(sim, tmp_path)).returncode == 2
    assert run("image", "a fox", *common(sim, tmp_path)).returncode == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[models."x"]\nmax_n = 0\n')
    got = run("image", "a fox", "--model", "x", "--rules", str(bad), *common(sim, tmp_path))
    assert got.returncode == 2
    assert str(bad) in got.stderr
    assert "max_n" in got.stderr


@pytest.mark.parametrize("command", [["image", "-m", "dall-e-2"], ["video", "-m", "sora-2"], ["chat"]])
@pytest.mark.parametrize(("prompt", "stdin", "says"), [
    ("", None, "PROMPT is empty"), ("  ", None, "PROMPT is empty"), ("-", "", "standard input was empty"),
])  # fmt: skip
def test_empty_prompt_is_bad_usage_and_nothing_is_sent(
    sim: Simulator, tmp_path: Path, command: list[str], prompt: str, stdin: str | None, says: str
) -> None:
    # image and video used to exit 1 (invalid_input), chat sent the empty prompt and printed an answer.
    args = [command[0], prompt, *command[1:], "--base-url", sim.base_url, "--api-key", KEY]
    result = CliRunner().invoke(cli, args, input=stdin)
    assert result.exit_code == 2, result.output
    assert says in result.stderr
    assert sim.stats()["requests"] == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command", [["image", "a fox", "-m", "dall-e-2"], ["video", "a fox", "-m", "sora-2"]]
)
def test_out_folder_that_cannot_be_created_is_bad_usage_before_anything_is_sent(
    sim: Simulator, tmp_path: Path, command: list[str]
) -> None:
    # It used to generate the media, then fail as a retryable download_failed with exit 1.
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "pics"
    result = CliRunner().invoke(
        cli, [*command, "--out", str(out), "--base-url", sim.base_url, "--api-key", KEY]
    )
    assert result.exit_code == 2, result.output
    assert f"cannot create the --out folder '{out}'" in result.stderr
    assert sim.stats()["requests"] == 0


def test_video_json_keeps_http_status_and_adds_task_fields(sim: Simulator, tmp_path: Path) -> None:
    got = run("video", "waves", "--model", "sora-2", "--json", *VIDEO_FAST, *common(sim, tmp_path))
    assert got.returncode == 0, got.stderr
    data = orjson.loads(got.stdout)
    assert (data["ok"], data["status"], data["model"]) == (True, 200, "sora-2")
    assert (data["task_status"], data["progress"]) == ("succeeded", 100.0)
    (path,) = data["files"]
    assert sniff(Path(path).read_bytes()) == "video/mp4"
    no_key(got)


def test_video_stuck_everywhere_names_each_model_and_exits_1(sim: Simulator, tmp_path: Path) -> None:
    sim.configure(scenario="stuck_in_queue")
    got = run("video", "waves", "--model", "runway-gen4", "--fallback", "kling-v2", "--json",
              "--poll-interval", "0.05", "--stall-limit", "0.3", *common(sim, tmp_path))  # fmt: skip
    assert got.returncode == 1
    data = orjson.loads(got.stdout)
    assert (data["code"], data["task_status"], data["files"]) == ("stuck_in_queue", "queued", [])
    assert [(a["code"], a["model"]) for a in data["history"]][-2:] == [
        ("stuck_in_queue", "runway-gen4"),
        ("stuck_in_queue", "kling-v2"),
    ]
    assert list(tmp_path.iterdir()) == []


def test_video_failure_readable_with_its_fix(sim: Simulator, tmp_path: Path) -> None:
    sim.configure(scenario="content_filtered")
    got = run("video", "waves", "--model", "seedance-1-pro", *VIDEO_FAST, *common(sim, tmp_path))
    assert got.returncode == 1
    assert "content_filtered" in got.stderr
    assert got.stdout == ""
    no_key(got)


def test_video_bad_usage_and_wrong_key(sim: Simulator, tmp_path: Path) -> None:
    assert run("video", "waves", *common(sim, tmp_path)).returncode == 2
    assert (
        run("video", "waves", "--model", "sora-2", "--seconds", "0", *common(sim, tmp_path)).returncode == 2
    )
    sim.configure(api_keys=("sk-the-right-one-000000000",))
    got = run("video", "waves", "--model", "sora-2", "--json", *VIDEO_FAST, *common(sim, tmp_path))
    assert got.returncode == 1
    assert orjson.loads(got.stdout)["code"] == "auth_failed"
    no_key(got)


def _read_all(fd: int, sink: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        sink.append(chunk)


@pytest.mark.parametrize(("model", "moves"), [("sora-2", "%"), ("kling-v2", "===")])
def test_video_progress_line_on_a_terminal(sim: Simulator, tmp_path: Path, model: str, moves: Any) -> None:
    sim.configure(task_seconds=1.2)
    master, slave = pty.openpty()
    got: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(master, got), daemon=True)
    reader.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENGUARD_", "OPENAI_"))}
    env["COLUMNS"] = "100"
    proc = subprocess.run(
        [sys.executable, "-m", "genguard", "video", "waves", "--model", model, "--poll-interval", "0.1",
         *common(sim, tmp_path)], stdout=subprocess.PIPE, stderr=slave, env=env, timeout=60, text=True,
    )  # fmt: skip
    os.close(slave)
    reader.join(timeout=5)
    os.close(master)
    line = b"".join(got).decode()
    assert proc.returncode == 0, line
    frames = [f for f in line.split("\r") if f.strip()]
    assert len(frames) >= 3, line
    assert moves in "".join(frames[1:-1])
    # It ends complete, on a line of its own, and the saved path is on stdout, not mixed into the bar.
    assert "100%" in frames[-1]
    assert line.rstrip(" ").endswith("\n")
    assert Path(proc.stdout.strip()).exists()
    assert KEY not in line


def test_video_interrupted_exits_130_and_leaves_nothing(sim: Simulator, tmp_path: Path) -> None:
    import signal
    import time

    sim.configure(task_seconds=30)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENGUARD_", "OPENAI_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "genguard", "video", "waves", "--model", "sora-2", *VIDEO_FAST,
         *common(sim, tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    # Wait until the task was submitted, so the interrupt lands while polling.
    deadline = time.monotonic() + 20
    while sim.stats()["requests"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert out == ""
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["image", "video"])
def test_help_names_the_key_variables(command: str) -> None:
    # The docs run these with the key in GENGUARD_API_KEY; --help did not say it is read from there.
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "GENGUARD_API_KEY, OPENAI_API_KEY" in " ".join(result.output.split())
