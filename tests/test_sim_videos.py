"""The simulator's video tasks over real HTTP: each vendor's words, progress over time, scenarios, bytes."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from genguard.core.error_verdict import classify_error
from genguard.core.media_body import parse_task
from genguard.sim import Simulator
from genguard.sim._clock import FakeClock
from genguard.sim._mediabytes import is_mp4, mp4_bytes

KEY = "sk-sim-videos"

# The installed SDK warns that the hosted Sora API is being retired; the simulator keeps speaking it.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
TASK_S = 0.15

FAMILIES = {
    # model: (queued word, running word, done word, failed word)
    "sora-2": ("queued", "in_progress", "completed", "failed"),
    "kling-v2": ("submitted", "processing", "succeed", "failed"),
    "runway-gen4": ("PENDING", "RUNNING", "SUCCEEDED", "FAILED"),
    "veo-3": (False, False, True, True),
    "seedance-1-pro": ("SUBMITTED", "IN_PROGRESS", "SUCCESS", "FAILED"),
}


@pytest.fixture
def sim(clocked_sim: Simulator) -> Simulator:
    # Task progress runs on a fake clock here: a test moves time instead of sleeping, so a busy machine
    # cannot push a poll into the next phase.
    return clocked_sim


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    sim.configure(task_seconds=TASK_S)
    with httpx.Client(base_url=sim.url, headers={"authorization": f"Bearer {KEY}"}, timeout=10) as client:
        yield client


@pytest.fixture
def client(sim: Simulator) -> Iterator[openai.OpenAI]:
    sim.configure(task_seconds=TASK_S)
    with openai.OpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0, timeout=10) as c:
        yield c


def submit(http: httpx.Client, model: str, scenario: str | None = None, variant: str | None = None) -> str:
    headers = {}
    if scenario:
        headers["x-genguard-scenario"] = scenario
    if variant:
        headers["x-genguard-variant"] = variant
    r = http.post("/v1/videos", data={"model": model, "prompt": "a paper boat on a river", "seconds": "4"},
                  headers=headers)  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    return str(body["data"]["task_id"] if "data" in body else body["id"])


def word(model: str, body: dict[str, Any]) -> Any:
    if model.startswith("kling"):
        return body["data"]["task_status"]
    if model.startswith("veo"):
        return body["done"]
    return body["status"]


def poll(http: httpx.Client, task_id: str) -> dict[str, Any]:
    r = http.get(f"/v1/videos/{task_id}")
    if r.status_code == 400 and r.json().get("code") == "task_not_exist":
        r = http.get(f"/v1/videos/{task_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def finish(clock: FakeClock, http: httpx.Client, task_id: str, model: str) -> dict[str, Any]:
    clock.advance(TASK_S + 0.05)
    return poll(http, task_id)


# -- bytes -------------------------------------------------------------------------------------------


def test_mp4_bytes_are_iso_media_boxes() -> None:
    data = mp4_bytes("clip", seconds=3)
    assert is_mp4(data)
    boxes, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        assert size >= 8
        boxes.append(kind)
        pos += size
    assert pos == len(data)
    assert boxes == [b"ftyp", b"moov", b"mdat"]
    assert data[8:12] == b"isom"
    assert mp4_bytes("clip", seconds=3) == data != mp4_bytes("other", seconds=3)


# -- the official SDK against sora-2 -----------------------------------------------------------------


def test_sdk_create_retrieve_download_sora(client: openai.OpenAI, fake_clock: FakeClock) -> None:
    raw = client.videos.with_raw_response.create(
        model="sora-2", prompt="a paper boat", seconds="4", size="720x1280"
    )
    assert int(raw.headers["openai-poll-after-ms"]) > 0
    video = raw.parse()
    assert video.status == "queued"
    assert video.progress == 0
    assert video.seconds == "4"
    seen = [video.status]
    progress = [video.progress]
    deadline = time.monotonic() + 5
    while video.status not in ("completed", "failed") and time.monotonic() < deadline:
        fake_clock.advance(0.03)
        video = client.videos.retrieve(video.id)
        seen.append(video.status)
        progress.append(video.progress)
    assert video.status == "completed"
    assert "in_progress" in seen
    assert progress == sorted(progress)
    assert video.expires_at is not None
    assert video.completed_at is not None
    content = client.videos.download_content(video.id)
    assert is_mp4(content.content)


def test_sdk_create_and_poll(genguard_sim_reset: Simulator) -> None:
    # The SDK waits between polls in real time, so this one runs on the real clock.
    genguard_sim_reset.configure(task_seconds=TASK_S)
    with openai.OpenAI(
        base_url=genguard_sim_reset.base_url, api_key=KEY, max_retries=0, timeout=10
    ) as client:
        video = client.videos.create_and_poll(model="sora-2", prompt="a kite", poll_interval_ms=30)
    assert video.status == "completed"
    assert video.progress == 100


def test_json_submission_is_accepted(http: httpx.Client) -> None:
    r = http.post("/v1/videos", json={"model": "sora-2", "prompt": "a kite", "seconds": "8"})
    assert r.status_code == 200
    assert r.json()["seconds"] == "8"


# -- every family's words ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", FAMILIES)
def test_each_family_speaks_its_own_words_and_serves_real_mp4(
    sim: Simulator, http: httpx.Client, model: str, fake_clock: FakeClock
) -> None:
    # Long enough that the queued and running phases are each wide enough to poll on a busy machine.
    task_s = 0.6
    sim.configure(task_seconds=task_s)
    queued, running, done, _ = FAMILIES[model]
    task_id = submit(http, model)
    first = poll(http, task_id)
    assert word(model, first) == queued
    fake_clock.advance(task_s * 0.5)
    assert word(model, poll(http, task_id)) == running
    fake_clock.advance(task_s * 0.5 + 0.05)
    final = poll(http, task_id)
    assert word(model, final) == done
    state = parse_task(final)
    assert state.status == "succeeded"
    # Sora names no URL: its bytes are at /content, like OpenAI's; the others point at a file.
    assert bool(state.urls) != model.startswith("sora")
    if state.urls:
        got = http.get(state.urls[0])
        assert got.status_code == 200
        assert is_mp4(got.content)
    content = http.get(f"/v1/videos/{task_id}/content")
    assert is_mp4(content.content)
    if not model.startswith("sora"):
        # Aggregators name the backend model they routed to, and leave seconds empty.
        assert final["model"] != model
        assert final["seconds"] == ""


def test_runway_first_poll_is_task_not_exist(http: httpx.Client) -> None:
    task_id = submit(http, "runway-gen4")
    r = http.get(f"/v1/videos/{task_id}")
    assert r.status_code == 400
    assert r.json()["code"] == "task_not_exist"
    assert parse_task(r.json()).not_exist
    assert http.get(f"/v1/videos/{task_id}").status_code == 200


def test_veo_polls_by_operation_name(http: httpx.Client) -> None:
    r = http.post("/v1/videos", json={"model": "veo-3", "prompt": "waves"})
    name = r.json()["name"]
    assert name.startswith("models/veo-3.0-generate-001/operations/")
    polled = http.get(f"/v1/videos/{name}")
    assert polled.status_code == 200
    assert polled.json()["name"] == name


def test_progress_advances_with_time(http: httpx.Client, fake_clock: FakeClock) -> None:
    task_id = submit(http, "seedance-1-pro")
    values = []
    for _ in range(6):
        values.append(poll(http, task_id)["progress"])
        fake_clock.advance(TASK_S / 6)
    assert values == sorted(values)
    assert values[0] < values[-1]


# -- scenarios ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", FAMILIES)
def test_content_filtered_fails_for_safety_in_the_vendors_words(
    http: httpx.Client, model: str, fake_clock: FakeClock
) -> None:
    task_id = submit(http, model, "content_filtered")
    final = finish(fake_clock, http, task_id, model)
    assert word(model, final) == FAMILIES[model][3]
    state = parse_task(final)
    assert state.status in ("failed", "succeeded")  # a Veo operation that filtered everything is "done"
    assert state.safety
    assert not state.urls


def test_content_filtered_markers(http: httpx.Client, fake_clock: FakeClock) -> None:
    ids = {model: submit(http, model, "content_filtered") for model in FAMILIES}
    fake_clock.advance(TASK_S + 0.05)
    final = {model: poll(http, task_id) for model, task_id in ids.items()}
    assert final["runway-gen4"]["failureCode"] == "SAFETY.INPUT.TEXT"
    assert final["veo-3"]["response"]["generateVideoResponse"]["raiMediaFilteredCount"] == 1
    assert final["sora-2"]["error"]["code"] == "moderation_blocked"
    assert "risk" in final["kling-v2"]["data"]["task_status_msg"]
    assert final["seedance-1-pro"]["fail_reason"]


@pytest.mark.parametrize("model", FAMILIES)
def test_generation_failed_with_and_without_a_reason(
    http: httpx.Client, model: str, fake_clock: FakeClock
) -> None:
    with_id = submit(http, model, "generation_failed", "reason")
    bare_id = submit(http, model, "generation_failed", "no_reason")
    fake_clock.advance(TASK_S + 0.05)
    with_reason = parse_task(poll(http, with_id))
    assert with_reason.status == "failed"
    assert not with_reason.safety
    assert with_reason.failure_reason or with_reason.failure_code
    bare = parse_task(poll(http, bare_id))
    assert not bare.safety
    assert not bare.urls
    assert not bare.failure_reason
    assert not bare.failure_code


@pytest.mark.parametrize("model", FAMILIES)
def test_task_timeout_stays_running_with_progress_frozen(
    http: httpx.Client, model: str, fake_clock: FakeClock
) -> None:
    task_id = submit(http, model, "task_timeout")
    first = finish(fake_clock, http, task_id, model)
    fake_clock.advance(TASK_S)
    second = poll(http, task_id)
    assert word(model, second) == FAMILIES[model][1]
    a, b = parse_task(first), parse_task(second)
    assert a.status == b.status == "running"
    assert a.progress == b.progress
    assert b.progress is None or b.progress < 100


@pytest.mark.parametrize("model", FAMILIES)
def test_stuck_in_queue_never_leaves_the_queue(http: httpx.Client, model: str, fake_clock: FakeClock) -> None:
    task_id = submit(http, model, "stuck_in_queue")
    final = finish(fake_clock, http, task_id, model)
    # A Veo operation has no queue word: it is just not done.
    assert parse_task(final).status == ("running" if model.startswith("veo") else "queued")
    if model.startswith("runway"):
        assert final["status"] == "THROTTLED"
    elif not model.startswith("veo"):
        assert word(model, final) == FAMILIES[model][0]


@pytest.mark.parametrize("model", ["sora-2", "kling-v2", "runway-gen4", "veo-3", "seedance-1-pro"])
def test_download_failed_expired(http: httpx.Client, model: str, fake_clock: FakeClock) -> None:
    task_id = submit(http, model, "download_failed", "expired")
    final = finish(fake_clock, http, task_id, model)
    state = parse_task(final)
    assert state.status == "succeeded"
    url = state.urls[0] if state.urls else f"/v1/videos/{task_id}/content"
    got = http.get(url)
    assert got.status_code == 403
    assert "expired" in got.text


@pytest.mark.parametrize("model", ["sora-2", "kling-v2", "seedance-1-pro"])
def test_download_failed_bytes_are_not_mp4(http: httpx.Client, model: str, fake_clock: FakeClock) -> None:
    task_id = submit(http, model, "download_failed", "html")
    state = parse_task(finish(fake_clock, http, task_id, model))
    url = state.urls[0] if state.urls else f"/v1/videos/{task_id}/content"
    got = http.get(url)
    assert got.status_code == 200
    assert not is_mp4(got.content)


def test_sora_content_through_the_sdk_with_download_failed(
    client: openai.OpenAI, fake_clock: FakeClock
) -> None:
    video = client.videos.create(
        model="sora-2",
        prompt="x",
        extra_headers={"x-genguard-scenario": "download_failed", "x-genguard-variant": "expired"},
    )
    fake_clock.advance(TASK_S + 0.05)
    assert client.videos.retrieve(video.id).status == "completed"
    with pytest.raises(openai.PermissionDeniedError):
        client.videos.download_content(video.id)


def test_prompt_blocked_refuses_the_submission(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.videos.create(
            model="sora-2", prompt="x", extra_headers={"x-genguard-scenario": "prompt_blocked"}
        )
    assert err.value.code == "moderation_blocked"
    r = http.post(
        "/v1/videos",
        json={"model": "kling-v2", "prompt": "x"},
        headers={"x-genguard-scenario": "prompt_blocked"},
    )
    assert r.status_code == 400
    assert r.json()["code"] == 1301
    for model in ("sora-2", "kling-v2", "runway-gen4"):
        r = http.post(
            "/v1/videos",
            json={"model": model, "prompt": "x"},
            headers={"x-genguard-scenario": "prompt_blocked"},
        )
        assert classify_error(r.status_code, r.headers, r.content, endpoint="video").code == "prompt_blocked"


@pytest.mark.parametrize(
    ("code", "exc"),
    [("rate_limited", openai.RateLimitError), ("unavailable", openai.InternalServerError),
     ("model_not_found", openai.NotFoundError), ("permission_denied", openai.PermissionDeniedError)],
)  # fmt: skip
def test_hard_scenarios_on_submission(
    client: openai.OpenAI, code: str, exc: type[openai.APIStatusError]
) -> None:
    with pytest.raises(exc):
        client.videos.create(model="sora-2", prompt="x", extra_headers={"x-genguard-scenario": code})


def test_a_poll_can_carry_its_own_hard_scenario(http: httpx.Client, fake_clock: FakeClock) -> None:
    task_id = submit(http, "kling-v2")
    r = http.get(f"/v1/videos/{task_id}", headers={"x-genguard-scenario": "bad_gateway"})
    assert r.status_code == 502
    # The task itself is unharmed: the next plain poll sees it finish.
    assert finish(fake_clock, http, task_id, "kling-v2")["data"]["task_status"] == "succeed"


def test_the_scenario_is_chosen_at_submission_and_kept(
    sim: Simulator, http: httpx.Client, fake_clock: FakeClock
) -> None:
    task_id = submit(http, "sora-2", "content_filtered")
    sim.configure(scenario="ok")
    assert finish(fake_clock, http, task_id, "sora-2")["status"] == "failed"


def test_unknown_task_and_unknown_model(http: httpx.Client) -> None:
    assert http.get("/v1/videos/video_nope").status_code == 404
    r = http.post("/v1/videos", json={"model": "not-a-video-model", "prompt": "x"})
    assert r.status_code == 404
    assert classify_error(r.status_code, r.headers, r.content, endpoint="video").code == "model_not_found"


def test_content_before_completion_is_refused(http: httpx.Client) -> None:
    task_id = submit(http, "sora-2")
    r = http.get(f"/v1/videos/{task_id}/content")
    assert r.status_code == 400
    assert "not ready" in r.json()["error"]["message"]


def test_reset_forgets_tasks(sim: Simulator, http: httpx.Client) -> None:
    task_id = submit(http, "sora-2")
    sim.reset()
    assert http.get(f"/v1/videos/{task_id}").status_code == 404
