"""``genguard demo``: a tour of the failures a user meets, played by the embedded simulator (no key, no network).

The tour is data: each :class:`Step` names the simulator's scenario, the call, and what the outcome must
show. Image and video steps bring their own ``run`` function, which saves files into the demo's folder (a
fresh temporary folder unless ``--out`` names one).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from ..client.clients import Client
from ..client.retry import RetryPolicy
from ..core.outcome import Outcome
from ._common import prepare_out
from ._render import render_outcome

_MSGS = [{"role": "user", "content": "Write one line about harbours."}]
_GOOD_KEY = "sk-demo-good-key-0000000000"
_BAD_KEY = "sk-demo-revoked-key-000000"


@dataclass(frozen=True, slots=True)
class Step:
    """One stop of the tour: the scenario played, the call made, and what the outcome must show."""

    title: str
    story: str
    expect: Callable[[Outcome], bool]
    scenario: str | None = None
    call: dict[str, Any] = field(default_factory=dict)
    client: dict[str, Any] = field(default_factory=dict)
    sim: dict[str, Any] = field(default_factory=dict)
    # Scenario per model, for steps where one model fails and another answers.
    by_model: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    # A media step's own call: (base_url, folder) -> Outcome; chat steps leave it None.
    run: Callable[[str, Path], Outcome] | None = None


def _codes(o: Outcome) -> list[str | None]:
    return [a.code for a in o.history]


STEPS: list[Step] = [
    Step("A plain call", "HTTP 200 and a normal finish: the only kind of success genguard accepts.",
         lambda o: o.ok and o.finish_reason == "stop"),
    Step("Rate limited, then retried", "A 429 with retry-after: genguard waits exactly as long as the server "
         "said, then succeeds.", lambda o: o.ok and _codes(o)[0] == "rate_limited", scenario="rate_limited:1"),
    Step("Quota exhausted", "A 429 that is not a rate limit: waiting cannot help, so it is not retried "
         "(the official SDK retries it).", lambda o: o.code == "quota_exceeded" and o.attempts == 1,
         scenario="quota_exceeded"),
    Step("Content filtered", "HTTP 200, but finish_reason is content_filter: no usable answer.",
         lambda o: o.code == "content_filtered", scenario="content_filtered"),
    Step("Truncated", "HTTP 200, but the answer hit max_tokens and stops mid-sentence.",
         lambda o: o.code == "truncated" and bool(o.text), call={"max_tokens": 6}),
    Step("A stream cut off", "The stream ends without a finish_reason: the partial text is kept and named.",
         lambda o: o.code == "incomplete_stream" and bool(o.text), scenario="incomplete_stream", stream=True,
         client={"retry": RetryPolicy(max_attempts=1)}),
    Step("An error inside a 200 stream", "The server sends an error event mid-stream.",
         lambda o: o.code == "stream_error", scenario="stream_error", stream=True,
         client={"retry": RetryPolicy(max_attempts=1)}),
    Step("Silent: not JSON", "Everything looks fine to HTTP, but the app asked for JSON and got prose.",
         lambda o: o.code == "invalid_json" and o.kind == "silent", scenario="invalid_json",
         call={"validate": "json"}),
    Step("A fallback model", "The first model is overloaded (503) even after retries; the fallback answers.",
         lambda o: o.ok and o.extra.get("model") == "gpt-4o-mini" and "unavailable" in _codes(o),
         by_model={"gpt-4o": "unavailable"}, call={"model": "gpt-4o"},
         client={"fallbacks": ["gpt-4o-mini"], "retry": RetryPolicy(max_attempts=2, backoff_base=0.1)}),
    Step("Key rotation", "The first key was revoked (401); genguard moves to the next key.",
         lambda o: o.ok and _codes(o)[0] == "auth_failed",
         client={"api_key": [_BAD_KEY, _GOOD_KEY]}, sim={"api_keys": (_GOOD_KEY,)}),
]  # fmt: skip


# Media steps: the embedded simulator finishes a video task in _TASK_S seconds, so the tour stays quick.
_TASK_S = 0.6
_FAST_VIDEO: dict[str, Any] = {"poll_interval": 0.1, "deadline": 10.0, "stall_limit": 0.5}


def _media_client(base_url: str, scenario: str | None = None, **kw: Any) -> Client:
    headers = {"x-genguard-scenario": scenario} if scenario else None
    return Client(base_url, api_key=_GOOD_KEY, headers=headers, retry=RetryPolicy(backoff_base=0.1), **kw)


def _image_filtered(base_url: str, out: Path) -> Outcome:
    with _media_client(base_url, "content_filtered") as client:
        outcome: Outcome = client.images.generate(
            "a harbour at dawn", model="dall-e-2", out=out, stem="filtered"
        )
    return outcome


def _images_saved(base_url: str, out: Path) -> Outcome:
    with _media_client(base_url) as client:
        outcome: Outcome = client.images.generate("a harbour at dawn", model="qwen-image", n=2, out=out,
                                                  stem="harbour")  # fmt: skip
    return outcome


def _video_no_reason(base_url: str, out: Path) -> Outcome:
    headers = {"x-genguard-scenario": "generation_failed", "x-genguard-variant": "no_reason"}
    with Client(base_url, api_key=_GOOD_KEY, headers=headers) as client:
        outcome: Outcome = client.videos.generate("boats leaving a harbour", model="kling-v2", out=out,
                                                  **_FAST_VIDEO)  # fmt: skip
    return outcome


def _video_rescued(base_url: str, out: Path) -> Outcome:
    def stick(request: httpx.Request) -> None:
        # Only the first model's submission sits in the queue; the fallback's task runs normally.
        if request.method == "POST" and b"\r\n\r\nrunway-gen4\r\n" in request.content:
            request.headers["x-genguard-scenario"] = "stuck_in_queue"

    http = httpx.Client(event_hooks={"request": [stick]})
    try:
        with Client(base_url, api_key=_GOOD_KEY, http_client=http) as client:
            outcome: Outcome = client.videos.generate(
                "boats leaving a harbour", model="runway-gen4", fallbacks=["kling-v2"], out=out, stem="rescued",
                **_FAST_VIDEO)  # fmt: skip
            return outcome
    finally:
        http.close()


def _video_saved(base_url: str, out: Path) -> Outcome:
    seen: list[float] = []
    with _media_client(base_url) as client:
        outcome: Outcome = client.videos.generate("boats leaving a harbour", model="sora-2", out=out, stem="harbour",
                                         on_progress=lambda s: seen.append(s.progress or 0.0), **_FAST_VIDEO)  # fmt: skip
    return outcome.with_extra(progress_seen=[round(p) for p in seen])


def _files(o: Outcome) -> list[str]:
    files = o.extra.get("files")
    return list(files) if isinstance(files, list) else []


MEDIA_STEPS: list[Step] = [
    Step("An image filtered", "HTTP 200 with an empty data list: the image was filtered, not generated.",
         lambda o: o.code == "content_filtered" and o.endpoint == "image" and not _files(o),
         run=_image_filtered),
    Step("Images saved", "qwen-image takes one image per call: genguard asks twice for n=2, then checks each "
         "file's bytes before saving it.", lambda o: o.ok and len(_files(o)) == 2 and o.attempts == 2,
         run=_images_saved),
    Step("A video fails with no reason", "The task ends 'failed' and the vendor says nothing more: the fix "
         "names the likely cause.", lambda o: o.code == "generation_failed" and "filter" in (o.fix or ""),
         run=_video_no_reason),
    Step("A video stuck in the queue, rescued", "The first model's task never leaves the queue; past the "
         "stall limit genguard gives up on it and the fallback model delivers.",
         lambda o: o.ok and o.extra.get("model") == "kling-v2" and len(_files(o)) == 1
         and _codes(o)[0] == "stuck_in_queue", run=_video_rescued),
    Step("A video saved", "The task is polled at the server's hint until it completes, then downloaded and "
         "checked to be a video.", lambda o: o.ok and len(_files(o)) == 1 and o.extra.get("progress") == 100,
         run=_video_saved),
]  # fmt: skip
STEPS.extend(MEDIA_STEPS)


def _http_for(step: Step) -> httpx.Client | None:
    if not step.by_model:
        return None

    def hook(request: httpx.Request) -> None:
        scenario = step.by_model.get(orjson.loads(request.content).get("model"))
        if scenario:
            request.headers["x-genguard-scenario"] = scenario

    return httpx.Client(event_hooks={"request": [hook]})


def run_step(base_url: str, step: Step, out: Path | None = None) -> Outcome:
    """Play ``step`` against the simulator at ``base_url`` and return the call's Outcome."""
    if step.run is not None:
        return step.run(base_url, out or Path(tempfile.mkdtemp(prefix="genguard-demo-")))
    client_kw: dict[str, Any] = {"api_key": _GOOD_KEY, "retry": RetryPolicy(backoff_base=0.1, jitter=0.05)}
    client_kw.update(step.client)
    headers = {"x-genguard-scenario": step.scenario} if step.scenario else None
    http = _http_for(step)
    call: dict[str, Any] = {"model": "gpt-4o-mini", "messages": _MSGS, **step.call}
    with Client(base_url, headers=headers, stall_timeout=2.0, http_client=http, **client_kw) as client:
        if step.stream:
            with client.stream(**call) as s:
                for _ in s:
                    pass
            outcome = s.outcome
        else:
            outcome = client.chat(**call)
    if http is not None:
        http.close()
    return outcome


def _show(n: int, step: Step, outcome: Outcome, passed: bool) -> None:
    click.echo(click.style(f"\n── {n}. {step.title}", bold=True))
    click.echo(f"   {step.story}")
    if outcome.ok and _files(outcome):
        click.echo(f"   ok: {outcome.extra.get('model')} saved " + ", ".join(_files(outcome)))
    elif outcome.ok:
        click.echo(f"   ok: {(outcome.text or '')[:100]!r}")
    else:
        click.echo("   " + render_outcome(outcome).replace("\n", "\n   "))
    if len(outcome.history) > 1:
        trail = ", ".join(
            f"{a.code or 'ok'} on {a.model}" + (f" (waited {a.wait_s:.2g} s)" if a.wait_s else "")
            for a in outcome.history
        )
        click.echo(f"   attempts: {trail}")
    seen = outcome.extra.get("progress_seen")
    if seen:
        click.echo(f"   progress seen on {len(seen)} polls: " + " → ".join(f"{p}%" for p in seen))
    mark = click.style("✓ as expected", fg="green") if passed else click.style("✗ NOT as expected", fg="red")
    click.echo(f"   {mark}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one outcome object per step instead of text.")
@click.option("--out", type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for the images and videos (default: a new temporary folder).")  # fmt: skip
def demo(as_json: bool, out: str | None) -> None:
    """Tour the failures of AI APIs on the embedded simulator: no key, no network, a few seconds.

    Each step plays one failure as a user meets it (rate limits, exhausted quota, filtered and truncated
    answers, cut streams, silent JSON failures, fallbacks, key rotation, a filtered image, a failed and a
    stuck video) and shows genguard's outcome and diagnosis. Exit 0 when every step showed what it should.
    """
    from ..sim import Simulator

    folder = Path(prepare_out(out)) if out else Path(tempfile.mkdtemp(prefix="genguard-demo-"))
    failures = 0
    with Simulator(retry_after_s=0.5, stall_s=3.0, task_seconds=_TASK_S) as sim:
        for n, step in enumerate(STEPS, 1):
            saved = sim.config
            if step.sim:
                sim.configure(**step.sim)
            try:
                outcome = run_step(sim.base_url, step, folder)
            finally:
                sim.restore(saved)
            passed = step.expect(outcome)
            failures += not passed
            if as_json:
                data = outcome.to_dict()
                data.update(
                    step=step.title, as_expected=passed, history=[a.to_dict() for a in outcome.history]
                )
                click.echo(orjson.dumps(data, default=str).decode())
            else:
                _show(n, step, outcome, passed)
    if not as_json:
        click.echo(f"\n{len(STEPS) - failures}/{len(STEPS)} steps showed what they should.")
        click.echo(f"Images and videos are in {folder}")
    sys.exit(1 if failures else 0)
