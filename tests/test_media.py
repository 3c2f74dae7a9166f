"""Media bodies: every vendor's task words and shapes, image responses, and file types by their bytes."""

from __future__ import annotations

import base64
import struct
import zlib

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from genguard.core.media_body import (
    TaskState,
    detect_media,
    image_outcome,
    parse_image_response,
    parse_task,
    sniff,
    task_outcome,
)
from genguard.core.status_words import normalise_status


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        # OpenAI-style
        ("queued", "queued"),
        ("in_progress", "running"),
        ("completed", "succeeded"),
        ("failed", "failed"),
        # aggregators
        ("SUBMITTED", "queued"),
        ("IN_PROGRESS", "running"),
        ("SUCCESS", "succeeded"),
        ("FAILED", "failed"),
        ("ERROR", "failed"),
        ("NOT_START", "queued"),
        # Kling
        ("submitted", "queued"),
        ("processing", "running"),
        ("succeed", "succeeded"),
        # Runway
        ("PENDING", "queued"),
        ("THROTTLED", "queued"),
        ("RUNNING", "running"),
        ("SUCCEEDED", "succeeded"),
        ("CANCELLED", "cancelled"),
        # Replicate
        ("starting", "queued"),
        ("succeeded", "succeeded"),
        ("canceled", "cancelled"),
        ("aborted", "cancelled"),
        # fal
        ("IN_QUEUE", "queued"),
        ("COMPLETED", "succeeded"),
        # Luma
        ("dreaming", "running"),
        # MiniMax
        ("Preparing", "queued"),
        ("Queueing", "queued"),
        ("Processing", "running"),
        ("Success", "succeeded"),
        ("Fail", "failed"),
        # DashScope
        ("CANCELED", "cancelled"),
        ("UNKNOWN", None),
        # not words at all
        ("banana", None),
        ("", None),
        (None, None),
        (3, None),
        (["queued"], None),
    ],
)
def test_normalise_status_knows_every_vendor_word(word: object, expected: str | None) -> None:
    assert normalise_status(word) == expected


def test_openai_video_running_is_ok_with_progress() -> None:
    body = {
        "id": "video_1",
        "object": "video",
        "status": "in_progress",
        "progress": 33,
        "model": "sora-2",
        "expires_at": 1700000000,
    }
    state = parse_task(body)
    assert (state.vendor, state.status, state.progress, state.model, state.expires_at) == (
        "openai",
        "running",
        33.0,
        "sora-2",
        1700000000,
    )
    outcome = task_outcome(state)
    assert outcome.ok
    assert outcome.extra["task_status"] == "running"
    assert outcome.extra["progress"] == 33.0


def test_openai_video_failed_for_moderation_is_content_filtered() -> None:
    body = {
        "id": "video_1",
        "object": "video",
        "status": "failed",
        "error": {
            "code": "moderation_blocked",
            "message": "Your request was blocked by our moderation system.",
        },
    }
    state = parse_task(body)
    assert state.safety
    outcome = task_outcome(state)
    assert (outcome.code, outcome.kind, outcome.retryable) == ("content_filtered", "soft", False)
    assert outcome.message == "Your request was blocked by our moderation system."
    assert outcome.provider_code == "moderation_blocked"
    assert outcome.endpoint == "video"


def test_failure_with_no_reason_says_a_filter_is_likely() -> None:
    outcome = task_outcome(parse_task({"id": "v", "status": "FAILED"}))
    assert outcome.code == "generation_failed"
    assert outcome.retryable
    assert outcome.fix is not None
    assert "safety filter" in outcome.fix
    with_reason = task_outcome(parse_task({"id": "v", "status": "FAILED", "fail_reason": "GPU fell over"}))
    assert with_reason.message == "GPU fell over"
    assert with_reason.cause != outcome.cause


def test_aggregator_forms() -> None:
    done = parse_task({"status": "SUCCESS", "output": ["https://cdn.example/v.mp4"]})
    assert (done.status, done.urls) == ("succeeded", ("https://cdn.example/v.mp4",))
    ok = task_outcome(done)
    assert ok.ok
    assert ok.extra["urls"] == ["https://cdn.example/v.mp4"]
    wrapped = parse_task(
        {
            "code": "success",
            "message": "",
            "data": {"task_id": "a", "status": "IN_PROGRESS", "progress": "40%"},
        }
    )
    assert (wrapped.id, wrapped.status, wrapped.progress) == ("a", "running", 40.0)
    bare = parse_task({"data": {"status": "queued", "id": "q"}})
    assert (bare.id, bare.status) == ("q", "queued")


def test_kling_success_and_failures() -> None:
    ok = parse_task(
        {
            "code": 0,
            "message": "SUCCEED",
            "request_id": "r",
            "data": {
                "task_id": "k1",
                "task_status": "succeed",
                "task_status_msg": "",
                "task_result": {
                    "videos": [{"id": "1", "url": "https://kling.example/1.mp4", "duration": "5"}]
                },
            },
        }
    )
    assert (ok.vendor, ok.id, ok.status, ok.urls) == (
        "kling",
        "k1",
        "succeeded",
        ("https://kling.example/1.mp4",),
    )
    risk = parse_task(
        {
            "code": 0,
            "data": {
                "task_id": "k2",
                "task_status": "failed",
                "task_status_msg": "Failure to pass the risk control system",
            },
        }
    )
    assert task_outcome(risk).code == "content_filtered"
    plain = parse_task(
        {"code": 0, "data": {"task_id": "k3", "task_status": "failed", "task_status_msg": "internal error"}}
    )
    assert task_outcome(plain).code == "generation_failed"
    # A running task's status message is chatter, not a failure reason.
    running = parse_task(
        {"code": 0, "data": {"task_id": "k4", "task_status": "processing", "task_status_msg": "working"}}
    )
    assert running.failure_reason is None


def test_kling_envelope_error_is_not_ok() -> None:
    state = parse_task({"code": 1301, "message": "content security policy", "request_id": "r1", "data": None})
    assert state.status is None
    assert state.failure_code == "1301"
    outcome = task_outcome(state, status=400)
    assert not outcome.ok
    assert outcome.code == "prompt_blocked"


def test_runway_progress_is_a_fraction_and_safety_codes() -> None:
    running = parse_task({"id": "r1", "status": "RUNNING", "progress": 0.42, "createdAt": "2024"})
    assert running.vendor == "runway"
    assert running.progress == pytest.approx(42.0)
    safety = parse_task(
        {"id": "r1", "status": "FAILED", "failure": "Flagged", "failureCode": "SAFETY.INPUT.TEXT"}
    )
    assert task_outcome(safety).code == "content_filtered"
    internal = parse_task(
        {"id": "r1", "status": "FAILED", "failure": "bad output", "failureCode": "INTERNAL.BAD_OUTPUT.CODE01"}
    )
    outcome = task_outcome(internal)
    assert (outcome.code, outcome.retryable, outcome.provider_code) == (
        "generation_failed",
        True,
        "INTERNAL.BAD_OUTPUT.CODE01",
    )
    throttled = parse_task({"id": "r2", "status": "THROTTLED"})
    assert throttled.status == "queued"


def test_task_not_exist_is_not_found_but_retryable() -> None:
    state = parse_task({"code": "task_not_exist", "message": "task_not_exist", "data": None})
    assert state.not_exist
    outcome = task_outcome(state, status=200)
    assert outcome.code == "not_found"
    assert detect_media({"code": "task_not_exist", "message": "task_not_exist", "data": None}) == "video"
    gone = parse_task({"request_id": "d", "output": {"task_id": "t", "task_status": "UNKNOWN"}})
    assert gone.not_exist
    assert gone.status is None


def test_veo_operations() -> None:
    running = parse_task({"name": "models/veo-3/operations/abc", "done": False})
    assert (running.vendor, running.status, running.id) == ("veo", "running", "models/veo-3/operations/abc")
    assert task_outcome(running).ok
    ok = parse_task(
        {
            "name": "operations/abc",
            "done": True,
            "response": {
                "generateVideoResponse": {
                    "generatedSamples": [{"video": {"uri": "https://generativelanguage.example/v"}}]
                }
            },
        }
    )
    assert (ok.status, ok.urls) == ("succeeded", ("https://generativelanguage.example/v",))
    filtered = parse_task(
        {
            "name": "operations/abc",
            "done": True,
            "response": {
                "generateVideoResponse": {
                    "raiMediaFilteredCount": 1,
                    "raiMediaFilteredReasons": ["celebrity likeness"],
                }
            },
        }
    )
    out = task_outcome(filtered)
    assert (out.code, out.message) == ("content_filtered", "celebrity likeness")
    err = parse_task({"name": "operations/abc", "done": True, "error": {"code": 13, "message": "internal"}})
    assert task_outcome(err).code == "generation_failed"


def test_replicate_fal_luma_minimax_dashscope() -> None:
    rep = parse_task(
        {
            "id": "p",
            "status": "succeeded",
            "version": "v",
            "output": ["https://r.example/o.mp4"],
            "urls": {"get": "https://api.replicate.example/p", "cancel": "https://api/x"},
        }
    )
    assert (rep.vendor, rep.urls) == ("replicate", ("https://r.example/o.mp4",))
    rep_failed = parse_task({"id": "p", "status": "failed", "version": "v", "error": "NSFW content detected"})
    assert task_outcome(rep_failed).code == "content_filtered"
    fal = parse_task({"status": "IN_QUEUE", "request_id": "f1", "queue_position": 2})
    assert (fal.vendor, fal.status, fal.id) == ("fal", "queued", "f1")
    luma = parse_task({"id": "l", "state": "completed", "assets": {"video": "https://luma.example/v.mp4"}})
    assert (luma.vendor, luma.status, luma.urls) == ("luma", "succeeded", ("https://luma.example/v.mp4",))
    luma_bad = parse_task({"id": "l", "state": "failed", "failure_reason": "prompt not allowed"})
    assert task_outcome(luma_bad).code == "content_filtered"
    mm = parse_task(
        {
            "task_id": "m",
            "status": "Success",
            "file_id": "123",
            "base_resp": {"status_code": 0, "status_msg": "success"},
        }
    )
    assert (mm.vendor, mm.status, mm.file_id, mm.failure_reason) == ("minimax", "succeeded", "123", None)
    mm_fail = parse_task(
        {"task_id": "m", "status": "Fail", "base_resp": {"status_code": 0, "status_msg": "ok"}}
    )
    assert task_outcome(mm_fail).code == "generation_failed"
    ds = parse_task(
        {
            "request_id": "d",
            "output": {
                "task_id": "t",
                "task_status": "FAILED",
                "code": "DataInspectionFailed",
                "message": "inappropriate",
            },
        }
    )
    assert (ds.vendor, ds.status, ds.failure_code, ds.safety) == (
        "dashscope",
        "failed",
        "DataInspectionFailed",
        True,
    )
    ds_ok = parse_task(
        {"output": {"task_id": "t", "task_status": "SUCCEEDED", "video_url": "https://d/v.mp4"}}
    )
    assert ds_ok.urls == ("https://d/v.mp4",)


def test_cancelled_without_reason_says_so() -> None:
    outcome = task_outcome(parse_task({"id": "x", "status": "CANCELLED"}))
    assert outcome.code == "generation_failed"
    assert outcome.message == "the task was cancelled"


def test_not_a_task_is_invalid_response() -> None:
    for body in (None, 3, "text", [], {}, {"hello": "world"}):
        outcome = task_outcome(parse_task(body))
        assert outcome.code == "invalid_response", body


def test_request_id_from_headers() -> None:
    outcome = task_outcome(
        TaskState(id="t", status="running", raw_status="running"), headers={"X-Request-Id": "req_9"}
    )
    assert outcome.request_id == "req_9"


def test_image_response_ok_filtered_and_malformed() -> None:
    b64 = base64.b64encode(_png()).decode()
    body = {
        "created": 1,
        "data": [
            {"b64_json": b64, "revised_prompt": "a red fox, photo"},
            {"url": "https://img.example/b.png"},
        ],
        "usage": {"input_tokens": 10, "output_tokens": 20},
    }
    result = parse_image_response(body)
    assert result is not None
    assert len(result.items) == 2
    assert result.created == 1
    outcome = image_outcome(body)
    assert outcome.ok
    assert outcome.endpoint == "image"
    assert outcome.extra["images"] == [f"b64_json ({len(_png())} bytes)", "https://img.example/b.png"]
    assert outcome.extra["revised_prompts"] == ["a red fox, photo"]
    assert outcome.usage is not None
    assert outcome.usage.total_tokens == 30

    filtered = image_outcome({"created": 2, "data": []})
    assert (filtered.code, filtered.kind, filtered.endpoint) == ("content_filtered", "soft", "image")

    for bad in ({"created": 1}, {"data": [{"nothing": 1}]}, {"data": "x"}, [1], "html"):
        assert image_outcome(bad).code == "invalid_response", bad


def test_image_error_body_is_classified() -> None:
    pytest.importorskip("genguard.core.classify")
    body = {
        "error": {
            "message": "Your request was rejected by the safety system.",
            "type": "invalid_request_error",
            "code": "content_policy_violation",
            "param": None,
        }
    }
    outcome = image_outcome(body, status=400)
    assert outcome.code == "prompt_blocked"
    assert outcome.endpoint == "image"


def test_detect_media() -> None:
    assert detect_media({"created": 1, "data": []}) == "image"
    assert detect_media({"created": 1, "data": [{"url": "https://a/b.png"}]}) == "image"
    assert detect_media({"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]}) is None
    assert detect_media({"id": "v", "object": "video", "status": "queued"}) == "video"
    assert detect_media({"code": 0, "data": {"task_id": "k", "task_status": "submitted"}}) == "video"
    assert detect_media({"output": {"task_id": "t", "task_status": "RUNNING"}}) == "video"
    assert detect_media({"choices": [], "id": "chatcmpl"}) is None
    assert detect_media({"error": {"message": "no", "code": 400}}) is None
    assert detect_media({"data": []}) is None
    assert detect_media("nope") is None


def test_sniff() -> None:
    assert sniff(_png()) == "image/png"
    assert sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "image/jpeg"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"GIF89a\x01\x00") == "image/gif"
    assert sniff(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00") == "video/mp4"
    assert sniff(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00") == "video/quicktime"
    assert sniff(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm") == "video/webm"
    assert sniff(b"<!DOCTYPE html><html>") is None
    assert sniff(b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>') is None
    assert sniff(b"") is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "status",
                    "task_status",
                    "state",
                    "done",
                    "data",
                    "code",
                    "output",
                    "error",
                    "progress",
                    "response",
                    "name",
                    "base_resp",
                    "id",
                    "url",
                    "failure",
                    "failureCode",
                    "message",
                    "task_result",
                    "videos",
                    "generateVideoResponse",
                    "generatedSamples",
                    "created",
                    "b64_json",
                    "assets",
                    "video",
                    "uri",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(_json)
# Past 64 bits: the stdlib's json.loads (and so httpx's Response.json()) gives such ints, orjson refuses them.
@example({"error": -9223372036854775809})
def test_readers_never_raise(data: object) -> None:
    state = parse_task(data)
    outcome = task_outcome(state)
    assert outcome.endpoint == "video"
    if state.progress is not None:
        assert 0.0 <= state.progress <= 100.0
    detect_media(data)
    image = image_outcome(data)
    assert image.endpoint == "image"
    parse_image_response(data)


@given(st.binary(max_size=80))
def test_sniff_never_raises(data: bytes) -> None:
    assert sniff(data) in (
        None,
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        "image/avif",
        "image/heic",
        "video/mp4",
        "video/webm",
        "video/x-matroska",
        "video/quicktime",
    )


def test_envelope_errors_on_http_200_use_the_classifier() -> None:
    pytest.importorskip("genguard.core.classify")
    blocked = task_outcome(
        parse_task({"code": 1301, "message": "content security", "request_id": "r", "data": None})
    )
    assert (blocked.code, blocked.endpoint, blocked.status) == ("prompt_blocked", "video", 200)
    busy = task_outcome(
        parse_task({"code": 1303, "message": "parallel task over resource pack limit", "request_id": "r2"})
    )
    assert (busy.code, busy.retryable) == ("rate_limited", True)
    quota = task_outcome(
        parse_task({"error": {"message": "insufficient balance", "code": "insufficient_quota"}})
    )
    assert quota.code == "quota_exceeded"


def test_aggregator_model_beside_a_kling_envelope_is_kept() -> None:
    from genguard.core.media_body import parse_task

    body = {
        "code": 0,
        "message": "SUCCEED",
        "request_id": "r1",
        "model": "kling-v2-1-master",
        "data": {
            "task_id": "t1",
            "task_status": "succeed",
            "task_result": {"videos": [{"url": "https://cdn.example/v.mp4"}]},
        },
    }
    state = parse_task(body)
    assert (state.vendor, state.status, state.model) == ("kling", "succeeded", "kling-v2-1-master")


# -- images a safety filter flagged ---------------------------------------------------------------------------

FLAGGED = [
    ("per-image is_nsfw, no url, no bytes", {"created": 1, "data": [{"url": None, "b64_json": None, "is_nsfw": True}]},
     "is_nsfw"),
    ("fal/diffusers flag list", {"created": 1, "data": [{"url": "https://fal.example/black.png"}],
                                 "nsfw_content_detected": [True]}, "nsfw_content_detected"),
    ("fal has_nsfw_concepts", {"data": [{"url": "https://fal.example/black.jpg"}], "has_nsfw_concepts": [True]},
     "has_nsfw_concepts"),
    ("finish_reason content_filter, no image", {"created": 1, "data": [{"finish_reason": "content_filter"}]},
     "finish_reason content_filter"),
    ("revised_prompt and nothing else", {"created": 1, "data": [{"revised_prompt": "a fox in a field"}]},
     "revised_prompt"),
    ("Together/Fireworks finishReason", {"created": 1, "data": [{"b64_json": None, "finishReason": "CONTENT_FILTERED"}]},
     "finishReason CONTENT_FILTERED"),
    ("Fireworks, no data list at all", {"finishReason": "CONTENT_FILTERED", "seed": 42}, "CONTENT_FILTERED"),
    ("Azure content_filter_results", {"created": 1, "data": [{"url": None, "content_filter_results": {
        "sexual": {"filtered": True, "severity": "high"}, "violence": {"filtered": False, "severity": "safe"}}}]},
     "content_filter_results: sexual"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "said"), FLAGGED, ids=[f[0] for f in FLAGGED])
def test_an_image_flagged_by_the_safety_filter_is_content_filtered(name: str, body: dict, said: str) -> None:
    outcome = image_outcome(body)
    assert (outcome.code, outcome.kind, outcome.endpoint, outcome.retryable) == (
        "content_filtered",
        "soft",
        "image",
        False,
    ), name
    assert said in (outcome.message or "")
    assert outcome.extra["images_filtered"] == 1
    assert detect_media(body) == "image"
    pytest.importorskip("genguard.core.classify")
    from genguard.core.classify import classify_http

    assert classify_http(200, {}, orjson.dumps(body)).code == "content_filtered"


def test_some_images_flagged_keeps_the_real_ones_and_counts_the_rest() -> None:
    body = {
        "created": 1,
        "data": [
            {"url": "https://img.example/a.png", "is_nsfw": False},
            {"url": None, "b64_json": None, "is_nsfw": True},
            {"url": "https://img.example/c.png"},
            {"url": "https://fal.example/black.png"},
        ],
        "nsfw_content_detected": [False, False, False, True],
    }
    result = parse_image_response(body)
    assert result is not None
    assert [it.url for it in result.items] == ["https://img.example/a.png", "https://img.example/c.png"]
    assert result.filtered == 2
    outcome = image_outcome(body)
    assert outcome.ok
    assert outcome.extra["images"] == ["https://img.example/a.png", "https://img.example/c.png"]
    assert outcome.extra["images_filtered"] == 2
    assert "images_filtered" not in image_outcome({"data": [{"url": "https://img.example/a.png"}]}).extra


def test_false_flags_and_a_success_word_keep_the_image() -> None:
    body = {
        "data": [{"b64_json": "aGk=", "is_nsfw": False, "finish_reason": "SUCCESS"}],
        "has_nsfw_concepts": [False],
    }
    outcome = image_outcome(body)
    assert outcome.ok
    assert outcome.extra["images"] == ["b64_json (2 bytes)"]
