"""client.images against the simulator over real HTTP: model rules, filters, blocks, downloads, sync and async."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from genguard.client.clients import AsyncClient, Client
from genguard.core.media_body import sniff


def _client(sim: Any, scenario: str | None = None) -> Client:
    headers = {"x-genguard-scenario": scenario} if scenario else None
    return Client(sim.base_url, api_key="sk-test", headers=headers)


@pytest.mark.parametrize(
    ("model", "n", "calls"),
    [("qwen-image", 3, 3), ("dall-e-3", 2, 2), ("dall-e-2", 2, 1), ("gpt-image-1", 2, 1)],
)
def test_each_model_gets_requests_it_accepts(
    sim: Any, tmp_path: Path, model: str, n: int, calls: int
) -> None:
    with _client(sim) as client:
        outcome = client.images.generate("a red fox", model=model, n=n, out=tmp_path, response_format="url")
    assert outcome.ok, outcome.summary()
    files = outcome.extra["files"]
    assert len(files) == n
    assert all(sniff(Path(f).read_bytes()) == "image/png" for f in files)
    assert outcome.attempts == calls
    assert outcome.extra["model"] == model
    if model == "gpt-image-1":
        assert any("response_format" in note for note in outcome.extra["notes"])
        assert outcome.usage is not None
    if model == "dall-e-3":
        assert len(outcome.extra["revised_prompts"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(f).name for f in files)


def test_empty_data_is_content_filtered(sim: Any, tmp_path: Path) -> None:
    with _client(sim, "content_filtered") as client:
        outcome = client.images.generate("a red fox", model="dall-e-2", out=tmp_path)
    assert (outcome.code, outcome.kind, outcome.endpoint, outcome.attempts) == (
        "content_filtered",
        "soft",
        "image",
        1,
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model", ["dall-e-3", "gpt-image-1"])
def test_policy_400_is_prompt_blocked_and_not_retried(sim: Any, model: str) -> None:
    with _client(sim, "prompt_blocked") as client:
        outcome = client.images.generate("a red fox", model=model)
    assert (outcome.code, outcome.retryable, outcome.attempts) == ("prompt_blocked", False, 1)


@pytest.mark.parametrize("model", ["dall-e-2", "gpt-image-1"])
def test_bad_result_is_download_failed_and_nothing_is_left(sim: Any, tmp_path: Path, model: str) -> None:
    with _client(sim, "download_failed") as client:
        outcome = client.images.generate("a red fox", model=model, out=tmp_path)
    assert outcome.code == "download_failed"
    assert outcome.endpoint == "image"
    assert outcome.message
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_retries_then_succeeds(sim: Any, tmp_path: Path) -> None:
    with _client(sim, "server_error:2") as client:
        outcome = client.images.generate("a red fox", model="dall-e-2", out=tmp_path)
    assert outcome.ok
    assert outcome.attempts == 3
    assert [a.code for a in outcome.history] == ["server_error", "server_error", None]


def test_empty_prompt_is_invalid_input(sim: Any) -> None:
    with _client(sim) as client:
        assert client.images.generate("  ", model="dall-e-2").code == "invalid_input"
        assert client.images.generate("x", model="dall-e-2", n=0).code == "invalid_input"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_images(sim: Any, tmp_path: Path) -> None:
    async with AsyncClient(sim.base_url, api_key="sk-test") as client:
        outcome = await client.images.generate("a red fox", model="qwen-image", n=2, out=tmp_path)
        assert outcome.ok, outcome.summary()
        assert len(outcome.extra["files"]) == 2
    async with AsyncClient(
        sim.base_url, api_key="sk-test", headers={"x-genguard-scenario": "content_filtered"}
    ) as client:
        filtered = await client.images.generate("a red fox", model="dall-e-2", out=tmp_path)
        assert filtered.code == "content_filtered"


def test_revised_prompt_is_logged_and_kept(sim: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="genguard"), _client(sim) as client:
        outcome = client.images.generate("a red fox", model="dall-e-3")
    (revised,) = outcome.extra["revised_prompts"]
    assert revised.startswith("a red fox.")
    assert any(revised in r.getMessage() and "revised" in r.getMessage() for r in caplog.records)


def test_rules_from_the_environment_apply_to_every_call(
    sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text('{"models": {"house-model": {"max_n": 2, "rejects": ["quality"]}}}')
    monkeypatch.setenv("GENGUARD_IMAGE_RULES", str(rules))
    with _client(sim) as client:
        outcome = client.images.generate("a red fox", model="house-model-v3", n=3, quality="hd")
    assert outcome.ok, outcome.summary()
    assert outcome.attempts == 2
    assert any("dropped quality" in note for note in outcome.extra["notes"])


def test_a_malformed_rules_file_is_invalid_input_and_nothing_is_sent(
    sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[models."bad-"]\nreturns = "gif"\n')
    monkeypatch.setenv("GENGUARD_IMAGE_RULES", str(rules))
    with _client(sim) as client:
        outcome = client.images.generate("a red fox", model="dall-e-2")
    assert outcome.code == "invalid_input"
    assert str(rules) in (outcome.message or "")
    assert sim.stats()["requests"] == 0


def test_the_first_images_stay_when_a_later_download_fails(sim: Any, tmp_path: Path) -> None:
    # qwen-image is asked once per image; only the second answer is broken.
    calls = {"n": 0}

    def second_broken(request: httpx.Request) -> None:
        if request.url.path.endswith("/images/generations"):
            calls["n"] += 1
            if calls["n"] == 2:
                request.headers["x-genguard-scenario"] = "download_failed"
                request.headers["x-genguard-variant"] = "html"

    http = httpx.Client(event_hooks={"request": [second_broken]})
    with Client(sim.base_url, api_key="sk-test", http_client=http) as client:
        outcome = client.images.generate("a red fox", model="qwen-image", n=2, out=tmp_path)
    http.close()
    assert outcome.code == "download_failed"
    (kept,) = outcome.extra["files"]
    assert sniff(Path(kept).read_bytes()) == "image/png"
    # Only complete, checked files remain: no temporary or half-written file.
    assert [p.name for p in tmp_path.iterdir()] == [Path(kept).name]
