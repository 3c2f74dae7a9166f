"""``genguard doctor``: the debugging checklist, run live against an endpoint."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
import httpx
import orjson

from ..client.clients import Client
from ..client.keys import resolve_base_url, resolve_keys
from ..client.transport import TRANSPORT_ERRORS, classify_exception
from ..core.chat_stream import ChatStreamReader
from ..core.classify import classify_http
from ..core.exceptions import ConfigError
from ..core.media_body import sniff
from ..core.outcome import Outcome
from ..core.secrets import mask_url, redact
from ..core.status_words import FINAL_STATUSES
from ._common import EXIT_FAILED, EXIT_OK, echo_json, endpoint_options, fail_usage

_PROMPT = [{"role": "user", "content": "Reply with one short sentence."}]
_IMAGE_PROMPT = "A small red circle on a plain white background."
_VIDEO_PROMPT = "A red ball rolling slowly across a white floor."


@dataclass(frozen=True, slots=True)
class MediaOptions:
    """Which media checks to run: an image model, a video model, and how long a video task may take."""

    image_model: str | None = None
    video_model: str | None = None
    video_deadline: float = 300.0
    poll_interval: float = 5.0


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the checklist: what was checked, whether it passed, what was seen, how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": None if self.ok else self.fix}


class _Doctor:
    def __init__(
        self, base_url: str, key: str | None, model: str, timeout: float, media: MediaOptions | None = None
    ) -> None:
        self.base_url = base_url
        self.key = key
        self.model = model
        self.media = media or MediaOptions()
        # Raw requests (no retries: the checks must see what the server does) through the client's own HTTP
        # setup, its certificate store and timeouts; the media checks use the same client's images and videos.
        self.client = Client(base_url, api_key=[key] if key else [], timeout=timeout)
        self.checks: list[Check] = []
        self.secrets = (key,) if key else ()

    def add(self, name: str, ok: bool, detail: str, fix: str | None = None) -> bool:
        self.checks.append(Check(name, ok, redact(detail, self.secrets), fix))
        return ok

    def post(self, body: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        request = self.client.build_request(
            "POST", "/chat/completions", key=self.key, json={"model": self.model, **body}
        )
        return self.client.http.send(request, stream=stream)

    def why(self, outcome: Outcome) -> str:
        return redact(outcome.summary(), self.secrets)

    def run(self) -> list[Check]:
        if not self.add(
            "key present, sent as Bearer",
            self.key is not None,
            "an API key is set and sent as 'Authorization: Bearer ...'" if self.key else "no API key is set",
            "Set GENGUARD_API_KEY (or OPENAI_API_KEY), or pass --api-key.",
        ):
            pass  # keep going: a local server may not need one, and the rest still tells a lot
        try:
            models = self.client.http.send(self.client.build_request("GET", "/models", key=self.key))
        except TRANSPORT_ERRORS as exc:
            self.add("endpoint reachable", False, self.why(classify_exception(exc)),
                     "Check --base-url (it usually ends in /v1), that the server runs, and the network path.")  # fmt: skip
            return self.checks
        self.add("endpoint reachable", True, f"GET /models answered HTTP {models.status_code}")
        auth_ok = models.status_code not in (401, 403)
        self.add("auth accepted", auth_ok, f"GET /models answered HTTP {models.status_code}"
                 + ("" if auth_ok else ": " + self.why(classify_http(models.status_code, models.headers,
                                                                    models.content, secrets=self.secrets))),
                 "Check the key belongs to this base URL and is not revoked; set the right one.")  # fmt: skip
        if not auth_ok:
            return self.checks
        self._check_model_listed(models)
        self._check(self._plain)
        self._check(self._stream)
        self._check(self._json_mode)
        if self.media.image_model:
            self._check(self._image)
        if self.media.video_model:
            self._check(self._video)
        return self.checks

    def _image(self) -> None:
        model = self.media.image_model
        with tempfile.TemporaryDirectory(prefix="genguard-doctor-") as tmp:
            o = self.client.images.generate(_IMAGE_PROMPT, model=model or "", n=1, out=tmp)
            got = o.ok or o.code == "download_failed"
            self.add(f"image model {model!r} returns images", got,
                     f"{len(o.extra.get('images') or [])} image(s) in the answer" if got else self.why(o),
                     o.fix or "The image endpoint did not answer with images.")  # fmt: skip
            if not got:
                return
            kinds = [_sniff_file(f) for f in o.extra.get("files", [])]
            ok = o.ok and bool(kinds) and all(k and k.startswith("image/") for k in kinds)
            self.add("image bytes are an image", ok,
                     f"saved {len(kinds)} file(s): {', '.join(str(k) for k in kinds)}" if ok else self.why(o),
                     o.fix or "The image bytes are not an image: the URL expired or the server lies about it.")  # fmt: skip

    def _video(self) -> None:
        model, deadline = self.media.video_model, self.media.video_deadline
        with tempfile.TemporaryDirectory(prefix="genguard-doctor-") as tmp:
            o = self.client.videos.generate(_VIDEO_PROMPT, model=model or "", out=tmp, deadline=deadline,
                                            stall_limit=deadline, poll_interval=self.media.poll_interval)  # fmt: skip
            status = o.extra.get("task_status")
            final = status in FINAL_STATUSES
            word = o.extra.get("vendor_status") or status
            self.add(f"video task on {model!r} reaches a final state within {deadline:g} s", final,
                     f"the task ended {word!r}" if final else self.why(o),
                     o.fix or "The video task never finished.")  # fmt: skip
            if not final:
                return
            files = o.extra.get("files", [])
            kind = _sniff_file(files[0]) if files else None
            ok = o.ok and bool(kind and kind.startswith("video/"))
            self.add("video content is a video", ok, f"saved a {kind} file" if ok else self.why(o),
                     o.fix or "The finished task gave no video to download.")  # fmt: skip

    def _check(self, step: Callable[[], None]) -> None:
        try:
            step()
        except TRANSPORT_ERRORS as exc:
            name = step.__name__.strip("_").replace("_", " ")
            self.add(
                name, False, self.why(classify_exception(exc)), "Check the server is up and answers in time."
            )

    def _check_model_listed(self, models: httpx.Response) -> None:
        try:
            ids = [m.get("id") for m in orjson.loads(models.content).get("data", [])]
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            ids = []
        self.add(f"model {self.model!r} listed", self.model in ids,
                 f"GET /models lists {len(ids)} models" + ("" if self.model in ids else f", not {self.model!r}"),
                 "Pick a model from GET /models (--model), or pull/enable it on the server.")  # fmt: skip

    def _plain(self) -> None:
        response = self.post({"messages": _PROMPT})
        o = classify_http(response.status_code, response.headers, response.content, secrets=self.secrets)
        self.add("plain completion ends with stop", o.ok and o.finish_reason == "stop",
                 f"finish_reason {o.finish_reason!r}" if o.ok else self.why(o),
                 o.fix or "The server does not finish a simple completion normally.")  # fmt: skip
        self.add("usage reported", o.usage is not None and o.usage.total_tokens is not None,
                 "usage present" if o.usage else "no usage in the response",
                 "The server does not report token usage: costs and token limits cannot be tracked.")  # fmt: skip
        names = [h for h in response.headers if h.startswith(("x-ratelimit-", "anthropic-ratelimit-"))]
        self.add("rate-limit headers present", bool(names),
                 f"{len(names)} rate-limit headers" if names else "no x-ratelimit-* headers",
                 "Without rate-limit headers a client cannot pace itself: rely on retry-after and backoff, "
                 "and keep concurrency low.")  # fmt: skip

    def _stream(self) -> None:
        body = {"messages": _PROMPT, "stream": True, "stream_options": {"include_usage": True}}
        response = self.post(body, stream=True)
        try:
            if response.status_code >= 300:
                response.read()
                o = classify_http(
                    response.status_code, response.headers, response.content, secrets=self.secrets
                )
                self.add("stream ends with a finish reason and [DONE]", False, self.why(o), o.fix)
                return
            reader = ChatStreamReader(status=response.status_code, headers=response.headers)
            for chunk in response.iter_bytes():
                reader.feed(chunk)
        finally:
            response.close()
        o = reader.finish()
        ok = reader.finish_reason is not None and reader.done
        detail = f"finish_reason {reader.finish_reason!r}, [DONE] {'seen' if reader.done else 'missing'}"
        self.add("stream ends with a finish reason and [DONE]", ok, detail if ok else f"{detail}: {self.why(o)}",
                 "The server cuts streams short: expect incomplete_stream; use stall limits and retries.")  # fmt: skip

    def _json_mode(self) -> None:
        body = {"messages": [{"role": "user", "content": "Reply with a JSON object with a key 'answer'."}],
                "response_format": {"type": "json_object"}}  # fmt: skip
        response = self.post(body)
        o = classify_http(response.status_code, response.headers, response.content, secrets=self.secrets)
        ok = False
        if o.ok and o.text:
            try:
                ok = isinstance(orjson.loads(o.text), dict)
            except orjson.JSONDecodeError:
                ok = False
        detail = (
            "the answer is a JSON object" if ok else (self.why(o) if not o.ok else "the answer is not JSON")
        )
        self.add("JSON mode honoured", ok, detail,
                 "This server or model ignores response_format: validate output with validate='json'.")  # fmt: skip


def _sniff_file(path: str) -> str | None:
    with open(path, "rb") as f:
        return sniff(f.read(64))


@click.command()
@endpoint_options(repeat_key=False)
@click.option("--image-model", metavar="M", help="Also check image generation with this model.")
@click.option("--video-model", metavar="M", help="Also check a video task with this model.")
@click.option("--video-deadline", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Seconds the video task may take, queue included.")  # fmt: skip
@click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Seconds between video polls when the server gives no hint.")  # fmt: skip
def doctor(
    base_url: str | None,
    api_key: str | None,
    model: str,
    as_json: bool,
    timeout: float,
    image_model: str | None,
    video_model: str | None,
    video_deadline: float,
    poll_interval: float,
) -> None:
    """Run the debugging checklist live against an endpoint; each line passes or fails with the fix.

    Checks: key present and sent as Bearer; endpoint reachable; auth accepted; model listed; a plain
    completion ends with stop and reports usage; a stream ends with a finish reason and [DONE]; JSON mode is
    honoured; rate-limit headers present. With --image-model: an image comes back and its bytes are an
    image. With --video-model: a video task reaches a final state within --video-deadline and its content
    is a video. Exit 0 only if every check passes.

    \b
    Example:
      genguard doctor --base-url http://127.0.0.1:8000/v1 --model gpt-4o-mini
      genguard doctor --image-model gpt-image-1 --video-model sora-2 --video-deadline 600
    """
    media = MediaOptions(image_model, video_model, video_deadline, poll_interval)
    try:
        keys = resolve_keys(api_key)
        url = resolve_base_url(base_url)
    except ConfigError as exc:
        fail_usage(str(exc))
    doc = _Doctor(url, keys[0] if keys else None, model, timeout, media)
    try:
        checks = doc.run()
    finally:
        doc.client.close()
    passed = all(c.ok for c in checks)
    if as_json:
        echo_json({"ok": passed, "base_url": mask_url(doc.base_url), "model": model, "image_model": image_model,
                   "video_model": video_model,
                   "checks": [c.to_dict() for c in checks]}, secrets=doc.secrets)  # fmt: skip
    else:
        color = sys.stdout.isatty()
        for c in checks:
            mark = click.style("PASS", fg="green") if c.ok and color else ("PASS" if c.ok else "FAIL")
            if not c.ok and color:
                mark = click.style("FAIL", fg="red")
            click.echo(f"{mark}  {c.name}: {c.detail}")
            if not c.ok and c.fix:
                click.echo(f"      fix: {c.fix}")
        click.echo(f"{sum(c.ok for c in checks)}/{len(checks)} checks passed")
    sys.exit(EXIT_OK if passed else EXIT_FAILED)
