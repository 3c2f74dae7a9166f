"""client.videos against the simulator over real HTTP: every vendor vocabulary, filters, stalls, downloads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from genguard.client.clients import AsyncClient, Client
from genguard.core.media_body import TaskState, sniff

FAST = {"poll_interval": 0.03, "deadline": 10.0, "stall_limit": 5.0}


def _client(sim: Any, scenario: str | None = None) -> Client:
    headers = {"x-genguard-scenario": scenario} if scenario else None
    return Client(sim.base_url, api_key="sk-test", headers=headers)


@pytest.mark.parametrize("model", ["sora-2", "kling-v2", "runway-gen4", "veo-3", "seedance-1"])
def test_every_vendor_vocabulary_succeeds_and_downloads(sim: Any, tmp_path: Path, model: str) -> None:
    seen: list[TaskState] = []
    with _client(sim) as client:
        outcome = client.videos.generate(
            "a fox in snow", model=model, out=tmp_path, on_progress=seen.append, **FAST
        )
    assert outcome.ok, outcome.summary()
    (path,) = outcome.extra["files"]
    assert sniff(Path(path).read_bytes()) == "video/mp4"
    assert outcome.extra["task_status"] == "succeeded"
    assert outcome.extra["model"] == model
    assert seen[-1].status == "succeeded"
    assert {s.status for s in seen} >= {"succeeded"}
    assert [p.name for p in tmp_path.iterdir()] == [Path(path).name]


@pytest.mark.parametrize("model", ["sora-2", "kling-v2", "runway-gen4", "veo-3", "seedance-1"])
def test_safety_failure_is_content_filtered(sim: Any, model: str) -> None:
    with _client(sim, "content_filtered") as client:
        outcome = client.videos.generate("a fox", model=model, **FAST)
    assert (outcome.code, outcome.endpoint, outcome.retryable) == ("content_filtered", "video", False)


@pytest.mark.parametrize("model", ["sora-2", "runway-gen4", "seedance-1"])
def test_other_failure_is_generation_failed(sim: Any, model: str) -> None:
    with _client(sim, "generation_failed") as client:
        outcome = client.videos.generate("a fox", model=model, **FAST)
    assert outcome.code == "generation_failed"
    assert outcome.fix


def test_deadline_gives_task_timeout_with_last_progress(sim: Any) -> None:
    with _client(sim, "task_timeout") as client:
        outcome = client.videos.generate(
            "a fox", model="sora-2", poll_interval=0.03, deadline=0.8, stall_limit=5
        )
    assert outcome.code == "task_timeout"
    assert outcome.extra["task_status"] == "running"
    assert outcome.extra["progress"] is not None
    assert "last status in_progress" in (outcome.message or "")


def test_stuck_in_queue_falls_back_to_the_next_model(sim: Any, tmp_path: Path) -> None:
    with _client(sim, "stuck_in_queue") as client:
        stuck = client.videos.generate(
            "a fox", model="runway-gen4", poll_interval=0.03, deadline=5, stall_limit=0.5
        )
    assert stuck.code == "stuck_in_queue"
    assert "THROTTLED" in (stuck.message or "")

    # Only the first model's submission is stuck: the fallback model's task runs normally.
    def stick_runway(request: httpx.Request) -> None:
        if request.method == "POST" and b"runway-gen4" in request.content:
            request.headers["x-genguard-scenario"] = "stuck_in_queue"

    http = httpx.Client(event_hooks={"request": [stick_runway]})
    with Client(sim.base_url, api_key="sk-test", http_client=http) as client:
        ok = client.videos.generate(
            "a fox",
            model="runway-gen4",
            fallbacks=["kling-v2"],
            poll_interval=0.03,
            deadline=5,
            stall_limit=0.5,
        )
    http.close()
    assert ok.ok, ok.summary()
    assert ok.extra["model"] == "kling-v2"


def test_expired_or_wrong_bytes_is_download_failed(sim: Any, tmp_path: Path) -> None:
    with _client(sim, "download_failed") as client:
        outcome = client.videos.generate("a fox", model="kling-v2", out=tmp_path, **FAST)
    assert outcome.code == "download_failed"
    assert outcome.endpoint == "video"
    assert list(tmp_path.iterdir()) == []


def test_prompt_blocked_at_submission(sim: Any) -> None:
    with _client(sim, "prompt_blocked") as client:
        outcome = client.videos.generate("a fox", model="kling-v2", **FAST)
    assert (outcome.code, outcome.attempts) == ("prompt_blocked", 1)


def test_unreadable_reference_is_invalid_input(sim: Any, tmp_path: Path) -> None:
    with _client(sim) as client:
        outcome = client.videos.generate("a fox", model="sora-2", input_reference=tmp_path / "missing.png")
    assert outcome.code == "invalid_input"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("model", ["sora-2", "runway-gen4"])
async def test_async_videos(sim: Any, tmp_path: Path, model: str) -> None:
    async with AsyncClient(sim.base_url, api_key="sk-test") as client:
        outcome = await client.videos.generate("a fox", model=model, out=tmp_path, **FAST)
    assert outcome.ok, outcome.summary()
    assert sniff(Path(outcome.extra["files"][0]).read_bytes()) == "video/mp4"
    async with AsyncClient(
        sim.base_url, api_key="sk-test", headers={"x-genguard-scenario": "content_filtered"}
    ) as client:
        filtered = await client.videos.generate("a fox", model=model, **FAST)
    assert filtered.code == "content_filtered"


def test_cli_image_and_video_json(sim: Any, tmp_path: Path) -> None:
    import orjson
    from click.testing import CliRunner

    from genguard.cli.image import image
    from genguard.cli.video import video

    runner = CliRunner()
    common = ["--out", str(tmp_path), "--base-url", sim.base_url, "--api-key", "sk-cli-secret", "--json"]
    got = runner.invoke(image, ["a fox", "--model", "qwen-image", "--n", "2", *common])
    assert got.exit_code == 0, got.output
    data = orjson.loads(got.stdout)
    assert len(data["files"]) == 2
    got = runner.invoke(video, ["a fox", "--model", "runway-gen4", "--poll-interval", "0.03", *common])
    assert got.exit_code == 0, got.output
    data = orjson.loads(got.stdout)
    assert (data["model"], data["task_status"], data["progress"]) == ("runway-gen4", "succeeded", 100.0)
    assert "sk-cli-secret" not in got.output
    sim.configure(scenario="content_filtered")
    got = runner.invoke(video, ["a fox", "--model", "kling-v2", "--poll-interval", "0.03", *common])
    assert got.exit_code == 1
    assert orjson.loads(got.stdout)["code"] == "content_filtered"


def test_failure_with_no_reason_says_a_filter_is_the_likely_cause(sim: Any) -> None:
    headers = {"x-genguard-scenario": "generation_failed", "x-genguard-variant": "no_reason"}
    with Client(sim.base_url, api_key="sk-test", headers=headers) as client:
        outcome = client.videos.generate("a fox", model="kling-v2", **FAST)
    assert outcome.code == "generation_failed"
    assert "no reason" in (outcome.cause or "")
    assert "safety filter is the likely cause" in (outcome.fix or "")


def test_task_not_exist_is_not_yet_within_the_grace_period_only(sim: Any) -> None:
    # The simulator's runway tasks answer task_not_exist on their first poll.
    with _client(sim) as client:
        patient = client.videos.generate("a fox", model="runway-gen4", **FAST)
        impatient = client.videos.generate("a fox", model="runway-gen4", not_exist_grace=0, **FAST)
    assert patient.ok, patient.summary()
    assert (impatient.code, impatient.retryable) == ("not_found", True)


def test_server_poll_hint_beats_a_long_default_interval(sim: Any) -> None:
    # Sora answers with openai-poll-after-ms; without honouring it a 30 s interval would pass the deadline.
    with _client(sim) as client:
        outcome = client.videos.generate("a fox", model="sora-2", poll_interval=30, deadline=3, stall_limit=3)
    assert outcome.ok, outcome.summary()


def test_stall_limit_shorter_than_the_poll_interval_is_not_overshot(sim: Any) -> None:
    # `genguard video --stall-limit 3` with the default 10 s interval used to give up after 10 s, not 3.
    with _client(sim, "stuck_in_queue") as client:
        started = time.monotonic()
        outcome = client.videos.generate(
            "a fox", model="kling-v2", poll_interval=5, deadline=20, stall_limit=0.3
        )
        took = time.monotonic() - started
    assert outcome.code == "stuck_in_queue"
    assert took < 2.0
    assert "stall limit 0.3 s" in (outcome.message or "")


def test_rescue_keeps_the_given_up_model_in_history(sim: Any) -> None:
    def stick(request: httpx.Request) -> None:
        if request.method == "POST" and b"sora-2" in request.content:
            request.headers["x-genguard-scenario"] = "stuck_in_queue"

    http = httpx.Client(event_hooks={"request": [stick]})
    with Client(sim.base_url, api_key="sk-test", http_client=http) as client:
        outcome = client.videos.generate("a fox", model="sora-2", fallbacks=["seedance-1-pro"],
                                         poll_interval=0.03, deadline=5, stall_limit=0.3)  # fmt: skip
    http.close()
    assert outcome.ok, outcome.summary()
    assert (outcome.history[0].code, outcome.history[0].model) == ("stuck_in_queue", "sora-2")
    assert outcome.history[-1].model == "seedance-1-pro"
    assert [a.number for a in outcome.history] == list(range(1, len(outcome.history) + 1))


def test_progress_callback_sees_progress_rise(sim: Any) -> None:
    seen: list[TaskState] = []
    sim.configure(task_seconds=0.6)
    with _client(sim) as client:
        outcome = client.videos.generate("a fox", model="seedance-1-pro", on_progress=seen.append, **FAST)
    assert outcome.ok
    progress = [s.progress for s in seen if s.progress is not None]
    assert progress == sorted(progress)
    assert len(set(progress)) >= 3
    assert seen[0].status == "queued"
