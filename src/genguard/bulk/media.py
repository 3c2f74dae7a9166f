"""The images of a batch line, kept as files beside the output instead of inside it.

An images answer holds each picture as a ``url`` that expires within hours, or as ``b64_json``: megabytes of
base64 per image for the gpt-image models, which would make ``output.jsonl`` (and the journal) mostly base64.
So when an image line ends ok, each picture is fetched or decoded at once, checked to be an image by its bytes,
and saved atomically as ``DIR/images/<custom_id>-<i>.<ext>`` (never over another file: a name taken gets a
``-1`` suffix). The body kept for the output line has each picture's data replaced by its file, relative to
``DIR``::

    {"created": ..., "data": [{"file": "images/cat-0.png", "revised_prompt": "..."}], "usage": ...}

and the line's outcome carries the same paths as ``files``. A picture that cannot be kept (an expired link, a
page that is not an image, a file over the size limit) fails the line as ``download_failed`` (retryable: the
images are generated again), its item saying why; the pictures that could be kept are kept and listed all
the same, since they were paid for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from ..client.clients import AsyncClient
from ..client.download import DownloadFailed, adownload_to, safe_stem, save_b64
from ..core.media_body import parse_image_response
from ..core.outcome import Outcome

__all__ = ["IMAGES_DIR", "keep_image_answer", "keep_images"]

IMAGES_DIR = "images"
"""The folder, inside a run's output folder, that a run's images are saved in."""

_DATA_KEYS = ("b64_json", "url")


async def keep_images(
    body: Mapping[str, Any], *, out_dir: Path, custom_id: str, client: AsyncClient
) -> tuple[Mapping[str, Any], list[str], Outcome | None]:
    """Save every picture of the images answer ``body`` under ``out_dir/images``; return the body with each
    picture's data replaced by ``{"file": "images/...", ...}`` (its other fields kept), the files saved
    (relative to ``out_dir``), and the ``download_failed`` outcome of the first picture that could not be kept
    (``None`` when all were).

    >>> # body, files, failed = await keep_images(answer, out_dir=Path("run"), custom_id="cat", client=client)
    >>> # files == ["images/cat-0.png"]; body["data"][0] == {"file": "images/cat-0.png"}
    """
    items = body.get("data")
    if not isinstance(items, list):
        return body, [], None
    parsed = parse_image_response(body)
    # The pictures the safety filter left (a flagged one may carry a placeholder that is no answer), in order.
    usable = list(parsed.items) if parsed is not None else []
    out_dir = Path(out_dir)
    folder = out_dir / IMAGES_DIR
    stem = safe_stem(custom_id, default="line")
    files: list[str] = []
    failures: list[Outcome] = []
    data: list[Any] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            data.append(item)
            continue
        kept = {k: v for k, v in item.items() if k not in _DATA_KEYS}
        url, b64 = _text(item.get("url")), _text(item.get("b64_json"))
        if not usable or (usable[0].url, usable[0].b64_json) != (url, b64):
            data.append(kept)  # filtered: its placeholder bytes are not worth a file, nor the output's room
            continue
        usable.pop(0)
        try:
            if b64 is not None:
                # Decoding and fsyncing megabytes would stall every other line's request on this loop.
                path = await asyncio.to_thread(save_b64, b64, folder, stem=f"{stem}-{i}", kind="image")
            else:
                path = await _download(client, url or "", folder, f"{stem}-{i}")
        except DownloadFailed as exc:
            failures.append(exc.outcome)
            data.append({"file": None, **kept, "error": exc.outcome.message})
            continue
        relative = path.relative_to(out_dir).as_posix()
        files.append(relative)
        data.append({"file": relative, **kept})
    kept_body = {**body, "data": data}
    if not failures:
        return kept_body, files, None
    failure = failures[0]
    if len(failures) > 1:
        failure = failure.replace(
            message=f"{failure.message} ({len(failures)} of {len(items)} images failed)"
        )
    return kept_body, files, failure


def _text(value: Any) -> str | None:
    # As parse_image_response reads an item's url and b64_json: a non-empty string, or nothing.
    return value if isinstance(value, str) and value else None


async def _download(client: AsyncClient, url: str, folder: Path, stem: str) -> Path:
    # The API key goes only to the API's own links, never to a storage bucket or a CDN.
    headers = (
        client.headers_for(client.keys[0] if client.keys else None)
        if url.startswith(client.base_url)
        else None
    )
    return await adownload_to(client.http, client.url(url), folder, stem=stem, kind="image", headers=headers)


async def keep_image_answer(
    outcome: Outcome, raw: bytes | None, *, out_dir: Path, custom_id: str, client: AsyncClient
) -> tuple[Outcome, bytes | None]:
    """The outcome and raw body of an image line once its pictures are kept (:func:`keep_images`): ok with
    ``files``, or ``download_failed`` with the answer's own status, request id, usage, attempts and cost (the
    response came, and was paid for). A failed answer is returned as it is.

    >>> # outcome, raw = await keep_image_answer(outcome, raw, out_dir=opts.out, custom_id="cat", client=c)
    """
    if not outcome.ok or raw is None:
        return outcome, raw
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return outcome, raw
    if not isinstance(body, dict):
        return outcome, raw
    kept, files, failure = await keep_images(body, out_dir=out_dir, custom_id=custom_id, client=client)
    raw = orjson.dumps(kept)
    if failure is None:
        return outcome.with_extra(files=files), raw
    extra = {**outcome.extra, **failure.extra, "files": files}
    if failure.status is not None:
        extra["download_status"] = failure.status
    merged = failure.replace(
        status=outcome.status,
        request_id=outcome.request_id,
        usage=outcome.usage,
        attempts=outcome.attempts,
        history=outcome.history,
        extra=extra,
    )
    return merged, raw
