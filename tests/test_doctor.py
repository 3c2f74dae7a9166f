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


def media_doctor(base_url: str, *args: str) -> tuple[int, dict[str, dict[str, object]], str]:
    result = CliRunner().invoke(cli, ["doctor", "--base-url", base_url, "--json", "--api-key", KEY,
                                      "--poll-interval", "0.05", *args])  # fmt: skip
    data = orjson.loads(result.stdout)
    return result.exit_code, {c["name"]: c for c in data["checks"]}, result.stdout


IMAGE_LINES = ("image model 'qwen-image' returns images", "image bytes are an image")
VIDEO_LINES = ("video task on 'kling-v2' reaches a final state within 5 s", "video content is a video")


def test_healthy_media_endpoint_passes_image_and_video_checks(sim: Simulator) -> None:
    code, checks, out = media_doctor(sim.base_url, "--image-model", "qwen-image", "--video-model", "kling-v2",
                                     "--video-deadline", "5")  # fmt: skip
    assert code == 0, out
    assert len(checks) == 13
    for name in (*IMAGE_LINES, *VIDEO_LINES):
        assert checks[name]["ok"] is True
    assert "image/png" in str(checks["image bytes are an image"]["detail"])
    assert "video/mp4" in str(checks["video content is a video"]["detail"])
    assert KEY not in out


def test_filtered_image_fails_its_line_with_the_fix(sim: Simulator) -> None:
    sim.configure(scenario="content_filtered")
    code, checks, _ = media_doctor(sim.base_url, "--image-model", "qwen-image")
    assert code == 1
    line = checks[IMAGE_LINES[0]]
    assert line["ok"] is False
    assert "content_filtered" in str(line["detail"])
    assert "prompt" in str(line["fix"]).lower()
    # Nothing came back, so the bytes cannot be judged: that line is not claimed either way.
    assert IMAGE_LINES[1] not in checks


def test_image_url_that_is_not_an_image_fails_the_bytes_line(sim: Simulator) -> None:
    sim.configure(scenario="download_failed")
    code, checks, _ = media_doctor(sim.base_url, "--image-model", "qwen-image")
    assert code == 1
    assert checks[IMAGE_LINES[0]]["ok"] is True
    assert checks[IMAGE_LINES[1]]["ok"] is False
    assert "download_failed" in str(checks[IMAGE_LINES[1]]["detail"])


def test_stuck_video_fails_the_final_state_line_with_the_fix(sim: Simulator) -> None:
    sim.configure(scenario="stuck_in_queue")
    code, checks, _ = media_doctor(sim.base_url, "--video-model", "kling-v2", "--video-deadline", "0.6")
    assert code == 1
    name = "video task on 'kling-v2' reaches a final state within 0.6 s"
    assert checks[name]["ok"] is False
    assert "stuck_in_queue" in str(checks[name]["detail"])
    assert "fallback" in str(checks[name]["fix"]).lower()
    # The chat lines are not affected by a media scenario: only the video line fails.
    assert [n for n, c in checks.items() if not c["ok"]] == [name]


def test_failed_video_reaches_a_final_state_but_gives_no_video(sim: Simulator) -> None:
    sim.configure(scenario="generation_failed")
    code, checks, _ = media_doctor(sim.base_url, "--video-model", "kling-v2", "--video-deadline", "5")
    assert code == 1
    assert checks[VIDEO_LINES[0]]["ok"] is True
    assert checks[VIDEO_LINES[1]]["ok"] is False
    assert "generation_failed" in str(checks[VIDEO_LINES[1]]["detail"])


def test_password_in_the_base_url_is_not_printed(sim: Simulator) -> None:
    # doctor --json printed the base URL as given, user:password@ included.
    with_password = sim.base_url.replace("http://", "http://user:topsecret-pw@")
    _, checks, out = doctor(with_password, "--api-key", KEY)
    assert checks["endpoint reachable"] is True
    assert "topsecret-pw" not in out
    assert f'"base_url":"{sim.base_url}"' in out
