"""client.images against the simulator over real HTTP: model rules, filters, blocks, downloads, sync and async."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from genguard._client import AsyncClient, Client
from genguard._media import sniff


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
