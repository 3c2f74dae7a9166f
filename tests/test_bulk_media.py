"""Image and embedding lines of a batch over real HTTP against the simulator: each picture (b64_json or URL)
is checked by its bytes and saved under DIR/images, the output line names the files and holds no base64, a
picture that cannot be kept fails its line as download_failed (retryable), and embeddings come back whole."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from genguard.bulk.api import abatch
from genguard.bulk.media import keep_images
from genguard.bulk.runner import EXIT_FAILED, EXIT_OK
from genguard.client.clients import AsyncClient
from genguard.core.media_body import sniff
from genguard.sim import Simulator
from genguard.sim._mediabytes import png_bytes

KEY = "sk-bulk-media-0123456789abcdef"
IMAGES = "/v1/images/generations"
# What the base64 of every PNG starts with: no output line may hold one.
PNG_B64 = base64.b64encode(png_bytes("x")[:6]).decode()[:8]

pytestmark = pytest.mark.anyio


def image_line(custom_id: str, **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": IMAGES, "body": body}


def records(out: Path, name: str) -> dict[str, dict[str, Any]]:
    path = out / name
    if not path.exists():
        return {}
    return {r["custom_id"]: r for r in map(orjson.loads, path.read_bytes().splitlines())}


def assert_image(path: Path) -> None:
    assert path.is_file()
    assert sniff(path.read_bytes()[:64]) == "image/png"


async def run(lines: list[dict[str, Any]] | None, out: Path, sim: Simulator, **kw: Any) -> Any:
    return await abatch(
        lines, out=out, base_url=sim.base_url, api_key=KEY, concurrency=4, progress="none", timeout=10, **kw
    )


@pytest.fixture
def client(sim: Simulator) -> AsyncClient:
    return AsyncClient(sim.base_url, api_key=KEY, timeout=10)


async def test_images_become_files_named_on_their_lines(sim: Simulator, tmp_path: Path) -> None:
    out = tmp_path / "run"
    lines = [
        image_line("gpt", model="gpt-image-1", prompt="a red fox at dawn", n=2),  # b64_json
        image_line("sea/1", model="dall-e-3", prompt="a lighthouse"),  # url, with a revised prompt
        image_line("sea_1", model="dall-e-2", prompt="a boat", response_format="b64_json"),
        image_line("url-2", model="dall-e-2", prompt="a bridge", n=2),
    ]
    result = await run(lines, out, sim)
    assert result.exit_code == EXIT_OK, records(out, "errors.jsonl")
    assert result.counts.ok == 4
    written = records(out, "output.jsonl")
    assert set(written) == {"gpt", "sea/1", "sea_1", "url-2"}
    every_file: list[str] = []
    for record in written.values():
        data = record["response"]["body"]["data"]
        files = [item["file"] for item in data]
        assert record["genguard"]["ok"]
        assert record["genguard"]["files"] == files
        for item in data:
            assert "b64_json" not in item
            assert "url" not in item
        for name in files:
            assert name.startswith("images/")
            assert_image(out / name)
        every_file += files
    assert len(written["gpt"]["genguard"]["files"]) == 2
    assert written["gpt"]["genguard"]["files"] == ["images/gpt-0.png", "images/gpt-1.png"]
    assert written["gpt"]["response"]["body"]["usage"]["output_tokens"] == 2112  # the rest of the body stays
    revised = written["sea/1"]["response"]["body"]["data"][0]["revised_prompt"]
    assert revised.startswith("a lighthouse")
    # Two custom_ids with the same safe name never overwrite each other's pictures.
    assert len(set(every_file)) == len(every_file) == 6
    assert {written["sea/1"]["genguard"]["files"][0], written["sea_1"]["genguard"]["files"][0]} == {
        "images/sea_1-0.png",
        "images/sea_1-0-1.png",
    }
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(Path(f).name for f in every_file)
    text = (out / "output.jsonl").read_text()
    assert PNG_B64 not in text
    assert "b64_json (" in text  # genguard's summary of what came back, not the bytes
    assert PNG_B64.encode() not in (out / "journal.sqlite").read_bytes()
    assert not (out / "errors.jsonl").read_bytes()
    # The pictures differ: each file is its own image, not one copied around.
    assert len({(out / f).read_bytes() for f in every_file}) == 6


async def test_a_finished_run_fetches_nothing_again(sim: Simulator, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = await run([image_line("a", model="gpt-image-1", prompt="a cat")], out, sim)
    assert first.exit_code == EXIT_OK
    before = sorted((out / "images").iterdir())
    again = await run(None, out, sim)
    assert again.exit_code == EXIT_OK
    assert again.sent == 0
    assert sorted((out / "images").iterdir()) == before
    assert sim.stats()["requests"] == 1


async def test_an_expired_url_fails_the_line_as_download_failed(sim: Simulator, tmp_path: Path) -> None:
    out = tmp_path / "run"
    sim.configure(scenario="download_failed")
    prompts = [f"a harbour, take {i}" for i in range(6)]
    lines = [image_line(f"u{i}", model="dall-e-2", prompt=p) for i, p in enumerate(prompts)]
    lines.append(image_line("b64", model="gpt-image-1", prompt="a teapot"))
    result = await run(lines, out, sim)
    assert result.exit_code == EXIT_FAILED
    assert result.counts.failed == 7
    assert not (out / "output.jsonl").read_bytes()
    failed = records(out, "errors.jsonl")
    assert set(failed) == {*(f"u{i}" for i in range(6)), "b64"}
    messages = []
    for record in failed.values():
        gg = record["genguard"]
        assert (gg["code"], gg["kind"], gg["retryable"]) == ("download_failed", "hard", True)
        assert gg["files"] == []
        assert gg["cause"]
        assert gg["fix"]
        # The provider answered 200 and was paid: its response is on the line, the picture's failure in it.
        assert record["response"]["status_code"] == 200
        assert record["error"] is None
        item = record["response"]["body"]["data"][0]
        assert item["file"] is None
        assert item["error"] == gg["message"]
        assert "url" not in item
        assert "b64_json" not in item
        messages.append(gg["message"])
    expired = [m for m in messages if "expired" in m]
    assert expired, messages  # the simulator's "expired" flavour: a 403 from the storage bucket
    assert all("HTTP 403" in m for m in expired)
    assert all("expected an image" in m for m in messages if m not in expired)
    assert "expected an image but got an HTML page" in failed["b64"]["genguard"]["message"]
    assert any(failed[f"u{i}"]["genguard"].get("download_status") == 403 for i in range(6))
    assert not list((out / "images").glob("*.png"))
    assert not list((out / "images").glob(".*.part"))  # nothing half-written left behind
    assert PNG_B64 not in (out / "errors.jsonl").read_text()

    # Retryable: the same lines run again once the provider serves real pictures.
    sim.configure(scenario="ok")
    again = await run(None, out, sim, retry_failed=True)
    assert again.exit_code == EXIT_OK
    assert again.counts.ok == 7
    for record in records(out, "output.jsonl").values():
        for name in record["genguard"]["files"]:
            assert_image(out / name)


async def test_embedding_lines_come_back_whole(sim: Simulator, tmp_path: Path) -> None:
    out = tmp_path / "run"
    lines = [
        {
            "custom_id": "e1",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": "hi"},
        },
        {
            "custom_id": "e2",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-large", "input": ["a", "b", "c"], "dimensions": 8},
        },
        {"custom_id": "img", "url": IMAGES, "body": {"model": "gpt-image-1", "prompt": "a cat"}},
    ]
    result = await run(lines, out, sim)
    assert result.exit_code == EXIT_OK
    written = records(out, "output.jsonl")
    e1 = written["e1"]["response"]["body"]
    assert e1["object"] == "list"
    assert len(e1["data"][0]["embedding"]) == 1536
    assert written["e1"]["genguard"]["vectors"] == 1
    e2 = written["e2"]["response"]["body"]
    assert [len(item["embedding"]) for item in e2["data"]] == [8, 8, 8]
    assert written["e2"]["genguard"]["usage"]["prompt_tokens"] == 3
    assert "files" not in written["e2"]["genguard"]  # only image lines keep files
    assert_image(out / written["img"]["genguard"]["files"][0])
    assert sim.stats()["by_endpoint"] == {"embedding": 2, "image": 1}


async def test_an_embedding_line_the_provider_refuses_is_named(sim: Simulator, tmp_path: Path) -> None:
    out = tmp_path / "run"
    body = {"model": "text-embedding-3-small", "input": "hi", "dimensions": 4096}  # over its 1536
    lines = [{"custom_id": "bad", "url": "/v1/embeddings", "body": body}]
    result = await run(lines, out, sim)
    assert result.exit_code == EXIT_FAILED
    record = records(out, "errors.jsonl")["bad"]
    assert record["genguard"]["code"] == "bad_request"
    assert record["response"]["status_code"] == 400
    assert record["response"]["body"]["error"]["param"] == "dimensions"


async def test_keep_images_keeps_what_it_can_and_names_what_it_could_not(
    sim: Simulator, tmp_path: Path, client: AsyncClient
) -> None:
    async with client:
        served = await client.http.post(
            f"{sim.base_url}/images/generations",
            json={"model": "dall-e-2", "prompt": "a kite"},
            headers={"authorization": f"Bearer {KEY}"},
        )
        url = served.json()["data"][0]["url"]
        good = base64.b64encode(png_bytes("one")).decode()
        page = base64.b64encode(b"<!DOCTYPE html><html><body>Not found</body></html>").decode()
        body = {
            "created": 1,
            "data": [
                {"b64_json": good, "revised_prompt": "a kite, rendered"},
                {"b64_json": page},
                {"b64_json": good, "is_nsfw": True},  # flagged: a placeholder, not an answer
                {"url": url},
                {"url": url.replace("sig=", "sig=0")},  # a tampered link: 403 from the bucket
            ],
        }
        kept, files, failure = await keep_images(body, out_dir=tmp_path, custom_id="kite", client=client)
    assert files == ["images/kite-0.png", "images/kite-3.png"]
    for name in files:
        assert_image(tmp_path / name)
    data = kept["data"]
    assert data[0] == {"file": "images/kite-0.png", "revised_prompt": "a kite, rendered"}
    assert data[1]["file"] is None
    assert "expected an image" in data[1]["error"]
    assert data[2] == {"is_nsfw": True}
    assert data[3] == {"file": "images/kite-3.png"}
    assert data[4]["file"] is None
    assert "HTTP 403" in data[4]["error"]
    assert kept["created"] == 1
    assert body["data"][0]["b64_json"] == good  # the caller's body is left as it was
    assert failure is not None
    assert failure.code == "download_failed"
    assert failure.retryable
    assert failure.message is not None
    assert failure.message.endswith("(2 of 5 images failed)")


async def test_a_body_without_images_is_left_alone(tmp_path: Path, client: AsyncClient) -> None:
    async with client:
        body = {"object": "list", "data": []}
        assert await keep_images(body, out_dir=tmp_path, custom_id="x", client=client) == (
            {"object": "list", "data": []},
            [],
            None,
        )
        odd = {"created": 1}
        assert await keep_images(odd, out_dir=tmp_path, custom_id="x", client=client) == (odd, [], None)
    assert not (tmp_path / "images").exists()


async def test_image_edits_in_their_json_form_become_files_like_generations(
    sim: Simulator, tmp_path: Path
) -> None:
    # The Batch API's /v1/images/edits lines: the pictures to edit named by URL (a data URL too) or file id,
    # with a mask or without; each answer's pictures saved as files, as a generation's are.
    out = tmp_path / "run"
    edits = "/v1/images/edits"
    lines = [
        {"custom_id": "sky", "method": "POST", "url": edits, "body": {
            "model": "gpt-image-1", "prompt": "make the sky red",
            "images": [{"image_url": "https://example.com/a.png"}, {"file_id": "file-b"}]}},
        {"custom_id": "cat", "method": "POST", "url": edits, "body": {
            "model": "gpt-image-1", "prompt": "add a cat", "n": 2, "images": [{"file_id": "file-c"}],
            "mask": {"image_url": "data:image/png;base64,iVBORw0KGgo="}}},
        # A bare body: a prompt and pictures to edit go to the edits url.
        {"model": "gpt-image-1", "prompt": "paint it blue", "images": [{"file_id": "file-d"}]},
    ]  # fmt: skip
    result = await run(lines, out, sim)
    assert result.exit_code == EXIT_OK, records(out, "errors.jsonl")
    written = records(out, "output.jsonl")
    assert set(written) == {"sky", "cat", "3"}
    assert written["cat"]["genguard"]["files"] == ["images/cat-0.png", "images/cat-1.png"]
    for record in written.values():
        for name in record["genguard"]["files"]:
            assert_image(out / name)
    assert PNG_B64 not in (out / "output.jsonl").read_text()
    # Each went to the edits url: the simulator's image requests, none of them refused.
    stats = sim.stats()
    assert stats["requests"] == 3
    assert stats["by_status"] == {"200": 3}


async def test_an_edit_the_provider_refuses_ends_failed_with_its_message(
    sim: Simulator, tmp_path: Path
) -> None:
    # A model that takes no JSON edit: checked by the provider, not guessed here. The line ends failed with
    # the provider's 400, and is not retried.
    out = tmp_path / "run"
    line = {"custom_id": "old", "method": "POST", "url": "/v1/images/edits",
            "body": {"model": "dall-e-2", "prompt": "a hat", "images": [{"file_id": "file-a"}]}}  # fmt: skip
    result = await run([line], out, sim)
    assert result.exit_code == EXIT_FAILED
    failed = records(out, "errors.jsonl")["old"]
    assert failed["response"]["status_code"] == 400
    assert "JSON image edits support GPT image models only" in failed["genguard"]["message"]
    assert failed["genguard"]["attempts"] == 1
