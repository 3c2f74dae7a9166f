"""Image generation on a client: model rules applied, every call retried by the client's policy, results
checked by their bytes and saved atomically.

``client.images.generate(prompt, model=..., n=..., size=..., out=DIR)`` plans the requests the model accepts
(:mod:`genguard.core.image_rules`), sends each through the client's retry loop, and returns one
:class:`~genguard.Outcome` (endpoint ``image``): ok with ``images``, ``revised_prompts`` and ``files`` in its
JSON, or the failure (``content_filtered`` for an empty ``data``, ``prompt_blocked`` for a policy 400,
``download_failed`` when a result could not be fetched or was not an image).

>>> import genguard
>>> with genguard.Client("http://127.0.0.1:8000/v1") as client:  # doctest: +SKIP
...     outcome = client.images.generate("a red fox at dawn", model="qwen-image", n=2, out="pics")
...     outcome.extra["files"]
['pics/a_red_fox_at_dawn-0.png', 'pics/a_red_fox_at_dawn-1.png']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from ..core.image_rules import ImagePlan, ImageRuleBook, plan_image_requests
from ..core.media_body import ImageItem, parse_image_response
from ..core.outcome import Outcome, Usage
from .arguments import check_image
from .download import DownloadFailed, adownload_to, download_to, safe_stem, save_b64
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .clients import AsyncClient, BaseClient, Client

__all__ = ["AsyncImages", "Images"]

logger = logging.getLogger("genguard")


@dataclass(slots=True)
class _Run:
    """What one ``generate`` call gathered across its requests (mutable while the call runs)."""

    items: list[ImageItem] = field(default_factory=list)
    parts: list[Outcome] = field(default_factory=list)
    last: list[ImageItem] = field(default_factory=list)


def _prepare(
    prompt: str, model: str, n: int, params: Mapping[str, Any], rules: ImageRuleBook | None
) -> ImagePlan | Outcome:
    if not isinstance(prompt, str) or not prompt.strip():
        return Outcome.failure("invalid_input", endpoint="image", message="the image prompt is empty")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return Outcome.failure("invalid_input", endpoint="image", message=f"n must be at least 1, not {n!r}")
    try:
        return plan_image_requests(model, {"prompt": prompt, "n": n, **params}, book=rules)
    except ValueError as exc:
        # A malformed GENGUARD_IMAGE_RULES file: nothing was sent, and the message names the file and model.
        return Outcome.failure("invalid_input", endpoint="image", message=str(exc))


def _builder(client: BaseClient, body: Mapping[str, Any]) -> Any:
    def build(key: str | None, model: str) -> httpx.Request:
        return client.build_request("POST", "/images/generations", key=key, json={**body, "model": model})

    return build


def _parser(client: BaseClient, run: _Run) -> Any:
    def parse(response: httpx.Response) -> Outcome:
        outcome = client._classify_response(response, "image")
        if outcome.ok:
            try:
                result = parse_image_response(orjson.loads(response.content))
            except orjson.JSONDecodeError:
                result = None
            run.last = list(result.items) if result is not None else []
        return outcome

    return parse


def _after_request(run: _Run, outcome: Outcome) -> None:
    run.parts.append(outcome)
    if outcome.ok:
        run.items.extend(run.last)
        for item in run.last:
            if item.revised_prompt:
                # The provider rewrote the prompt: the user should know what was actually drawn.
                logger.info("images: the provider revised the prompt to %r", item.revised_prompt)
    run.last = []


def _stem(prompt: str, stem: str | None, index: int) -> str:
    return f"{safe_stem(stem or prompt[:60], default='image')}-{index}"


def _combine(run: _Run, plan: ImagePlan, files: list[str], failure: Outcome | None) -> Outcome:
    usage: Usage | None = None
    for part in run.parts:
        if part.usage is not None:
            usage = part.usage if usage is None else usage + part.usage
    attempts = sum(p.attempts for p in run.parts) or 1
    history = tuple(a for p in run.parts for a in p.history)
    cost = [c for p in run.parts if (c := p.extra.get("cost_usd")) is not None]
    base = failure or next((p for p in run.parts if not p.ok), None) or run.parts[-1]
    images = [it.url or f"b64_json ({len(it.b64_json or '') * 3 // 4} bytes)" for it in run.items]
    extra = {
        **base.extra,
        "images": images,
        "revised_prompts": [it.revised_prompt for it in run.items if it.revised_prompt],
        "files": files,
        "model": next((p.extra.get("model") for p in reversed(run.parts) if p.extra.get("model")), None),
        "cost_usd": sum(cost) if cost else None,
        "notes": list(plan.notes),
    }
    return base.replace(usage=usage, attempts=attempts, history=history, extra=extra)


class Images:
    """``client.images``: image generation on a synchronous :class:`~genguard.Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def generate(
        self,
        prompt: str,
        *,
        model: str,
        n: int = 1,
        size: str | None = None,
        out: str | os.PathLike[str] | None = None,
        stem: str | None = None,
        max_bytes: int | None = None,
        rules: ImageRuleBook | None = None,
        fallbacks: Sequence[str] | None = (),
        retry: RetryPolicy | None = None,
        **params: Any,
    ) -> Outcome:
        """Generate ``n`` images; with ``out`` each is fetched (or decoded) at once, checked to be an image and
        saved as ``<stem>-<i>.<ext>``. Any images-API parameter passes through ``params``.

        >>> client.images.generate("a fox", model="gpt-image-1", out="pics").extra["files"]  # doctest: +SKIP
        ['pics/a_fox-0.png']
        """
        check_image(prompt, model, n, size, out, stem, max_bytes, rules, fallbacks, retry)
        plan = _prepare(prompt, model, n, {"size": size, **params}, rules)
        if isinstance(plan, Outcome):
            return plan
        c = self._client
        run = _Run()
        for body in plan.requests:
            outcome = c.send_with_retries(
                _builder(c, body),
                _parser(c, run),
                model=model,
                endpoint="image",
                fallbacks=fallbacks,
                retry=retry,
            )
            _after_request(run, outcome)
            if not outcome.ok:
                return _combine(run, plan, [], None)
        files: list[str] = []
        if out is not None:
            try:
                for i, item in enumerate(run.items):
                    files.append(str(self._save(item, Path(out), _stem(prompt, stem, i), max_bytes)))
            except DownloadFailed as exc:
                return _combine(run, plan, files, exc.outcome)
        return _combine(run, plan, files, None)

    def _save(self, item: ImageItem, folder: Path, stem: str, max_bytes: int | None) -> Path:
        if item.b64_json:
            return save_b64(item.b64_json, folder, stem=stem, kind="image", max_bytes=max_bytes)
        c = self._client
        headers = (
            c.headers_for(c.keys[0] if c.keys else None)
            if item.url and item.url.startswith(c.base_url)
            else None
        )
        url = c.url(item.url) if item.url else ""  # the API's own links get the default query
        return download_to(c.http, url, folder, stem=stem, kind="image", max_bytes=max_bytes, headers=headers)


class AsyncImages:
    """``client.images`` on an :class:`~genguard.AsyncClient`: :meth:`generate` is awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def generate(
        self,
        prompt: str,
        *,
        model: str,
        n: int = 1,
        size: str | None = None,
        out: str | os.PathLike[str] | None = None,
        stem: str | None = None,
        max_bytes: int | None = None,
        rules: ImageRuleBook | None = None,
        fallbacks: Sequence[str] | None = (),
        retry: RetryPolicy | None = None,
        **params: Any,
    ) -> Outcome:
        """As :meth:`Images.generate`, awaited.

        >>> await client.images.generate("a fox", model="dall-e-3", out="pics")  # doctest: +SKIP
        """
        check_image(prompt, model, n, size, out, stem, max_bytes, rules, fallbacks, retry)
        plan = _prepare(prompt, model, n, {"size": size, **params}, rules)
        if isinstance(plan, Outcome):
            return plan
        c = self._client
        run = _Run()
        for body in plan.requests:
            outcome = await c.send_with_retries(
                _builder(c, body),
                _parser(c, run),
                model=model,
                endpoint="image",
                fallbacks=fallbacks,
                retry=retry,
            )
            _after_request(run, outcome)
            if not outcome.ok:
                return _combine(run, plan, [], None)
        files: list[str] = []
        if out is not None:
            try:
                for i, item in enumerate(run.items):
                    files.append(str(await self._save(item, Path(out), _stem(prompt, stem, i), max_bytes)))
            except DownloadFailed as exc:
                return _combine(run, plan, files, exc.outcome)
        return _combine(run, plan, files, None)

    async def _save(self, item: ImageItem, folder: Path, stem: str, max_bytes: int | None) -> Path:
        if item.b64_json:
            return save_b64(item.b64_json, folder, stem=stem, kind="image", max_bytes=max_bytes)
        c = self._client
        headers = (
            c.headers_for(c.keys[0] if c.keys else None)
            if item.url and item.url.startswith(c.base_url)
            else None
        )
        url = c.url(item.url) if item.url else ""  # the API's own links get the default query
        return await adownload_to(
            c.http, url, folder, stem=stem, kind="image", max_bytes=max_bytes, headers=headers
        )
