"""Video tasks on a client: submit, poll with a deadline and a queue stall limit, download and check.

``client.videos.generate(prompt, model=..., out=DIR)`` submits a task (multipart form, as OpenAI-style and
aggregator endpoints expect), polls it at the server's hinted interval (else ``poll_interval`` with jitter)
in whatever vendor words it answers, and returns one :class:`~genguard.Outcome` (endpoint ``video``):
ok with ``files``, or ``content_filtered``, ``generation_failed``, ``task_timeout`` (with the last status
and progress), ``stuck_in_queue`` (then the next of ``fallbacks`` is tried) or ``download_failed``.
A fresh task that answers ``task_not_exist`` is polled again for ``not_exist_grace`` seconds.

>>> with genguard.Client(base_url) as client:  # doctest: +SKIP
...     outcome = client.videos.generate("a fox in snow", model="kling-v2", out="clips", deadline=300)
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from ..core.media_body import TaskState, parse_task, task_outcome
from ..core.outcome import Attempt, Outcome
from .arguments import check_video
from .download import DownloadFailed, adownload_to, download_to, safe_stem
from .retry import RetryPolicy
from .testing import is_testing

if TYPE_CHECKING:
    from .clients import AsyncClient, BaseClient, Client

__all__ = ["AsyncVideos", "ProgressHook", "Videos"]

ProgressHook = Callable[[TaskState], None]
"""Called with each poll's frozen :class:`TaskState` (status and progress 0-100)."""

_FALLBACK_EXTRA = frozenset({"stuck_in_queue"})


@dataclass(frozen=True, slots=True)
class _Options:
    poll_interval: float
    deadline: float
    stall_limit: float
    not_exist_grace: float
    max_bytes: int | None
    on_progress: ProgressHook | None
    retry: RetryPolicy | None


@dataclass(slots=True)
class _Poll:
    state: TaskState | None = None
    hint_s: float | None = None


def _multipart(fields: dict[str, str], file: tuple[str, bytes, str] | None) -> tuple[bytes, str]:
    """A multipart/form-data body even with no file (httpx would send a urlencoded form then)."""
    boundary = f"genguard-{secrets.token_hex(12)}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        parts.append(value.encode() + b"\r\n")
    if file is not None:
        fname, data, mime = file
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="input_reference"; filename="{fname}"\r\n'
        )
        parts.append(f"{head}Content-Type: {mime}\r\n\r\n".encode())
        parts.append(data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _reference(
    input_reference: str | os.PathLike[str] | bytes | None,
) -> tuple[str, bytes, str] | Outcome | None:
    if input_reference is None:
        return None
    if isinstance(input_reference, bytes):
        data, name = input_reference, "reference"
    else:
        try:
            data, name = Path(input_reference).read_bytes(), Path(input_reference).name
        except OSError as exc:
            return Outcome.failure(
                "invalid_input",
                endpoint="video",
                message=f"cannot read input_reference {input_reference}: {exc}",
            )
    from ..core.media_body import sniff

    return name, data, sniff(data) or "application/octet-stream"


def _submit_builder(client: BaseClient, fields: dict[str, str], file: tuple[str, bytes, str] | None) -> Any:
    def build(key: str | None, model: str) -> httpx.Request:
        body, ctype = _multipart({**fields, "model": model}, file)
        request = client.build_request("POST", "/videos", key=key, content=body)
        request.headers["content-type"] = ctype
        return request

    return build


def _poll_builder(client: BaseClient, task_id: str) -> Any:
    def build(key: str | None, model: str) -> httpx.Request:
        return client.build_request("GET", f"/videos/{task_id}", key=key)

    return build


def _parser(client: BaseClient, poll: _Poll, *, submitted: bool) -> Any:
    def parse(response: httpx.Response) -> Outcome:
        hint = response.headers.get("openai-poll-after-ms")
        poll.hint_s = int(hint) / 1000 if hint and hint.isdigit() else None
        try:
            state = parse_task(orjson.loads(response.content))
        except orjson.JSONDecodeError:
            return client._classify_response(response, "video")
        if submitted and state.not_exist:
            poll.state = state
            return Outcome.success(endpoint="video", status=response.status_code)
        if not response.is_success:
            return client._classify_response(response, "video")
        if (
            not submitted
            and state.id
            and state.status is None
            and state.raw_status is None
            and not (state.failure_code or state.failure_reason)
        ):
            # Runway answers a submission with the id alone: the task is queued.
            state = replace(state, status="queued", raw_status="submitted")
        if state.status is None and state.raw_status is None:
            return client._classify_response(response, "video")
        poll.state = state
        return Outcome.success(endpoint="video", status=response.status_code)

    return parse


class _Tracker:
    """The pure polling decisions: what a poll means, when to stop, how long to wait."""

    def __init__(self, model: str, opts: _Options) -> None:
        self.model = model
        self.opts = opts
        self.start = time.monotonic()
        self.left_queue = False
        self.last: TaskState | None = None
        self.attempts = 0
        self.polls = 0

    def judge(self, state: TaskState) -> Outcome | None:
        """The final Outcome if the task is over (or must be given up), else None (poll again)."""
        now = time.monotonic() - self.start
        if state.not_exist:
            if now <= self.opts.not_exist_grace:
                return None
            return task_outcome(state)
        self.last = state
        if self.opts.on_progress is not None:
            self.opts.on_progress(state)
        if state.done:
            return task_outcome(state)
        if state.status != "queued" and state.status is not None:
            self.left_queue = True
        if not self.left_queue and now > self.opts.stall_limit:
            return self._give_up("stuck_in_queue", f"the task stayed queued for {now:.1f} s (stall limit "
                                 f"{self.opts.stall_limit:g} s)")  # fmt: skip
        if now > self.opts.deadline:
            return self._give_up("task_timeout", f"the task did not finish within the deadline of "
                                 f"{self.opts.deadline:g} s")  # fmt: skip
        return None

    def _give_up(self, code: str, message: str) -> Outcome:
        s = self.last or TaskState()
        status = s.raw_status or s.status
        progress = f", {s.progress:.0f}% done" if s.progress is not None else ""
        return Outcome.failure(
            code, endpoint="video", message=f"{message}; last status {status}{progress}"
        ).with_extra(task_status=s.status, progress=s.progress, task_id=s.id, urls=list(s.urls))

    def wait(self, hint: float | None) -> float:
        if is_testing():
            return 0.0
        base = hint if hint is not None else self.opts.poll_interval * random.uniform(0.9, 1.1)
        elapsed = time.monotonic() - self.start
        left = self.opts.deadline - elapsed
        if not self.left_queue:
            # A poll interval longer than the stall limit would otherwise keep a stuck task (and the
            # fallback waiting behind it) for a whole interval past the limit the user chose.
            left = min(left, self.opts.stall_limit - elapsed)
        return max(0.0, min(base, left + 0.05))


def _download_plan(client: BaseClient, state: TaskState) -> tuple[str, dict[str, str] | None] | None:
    url = state.urls[0] if state.urls else None
    if url is None and state.id and state.vendor in ("openai", "aggregator", "unknown"):
        url = client.url(f"/videos/{state.id}/content")
    if url is None:
        return None
    # Only our own API wants the key: never send it to a storage bucket or CDN.
    own = url.startswith(client.base_url)
    # client.url adds the default query (Azure's api-version) to the API's own links, and leaves others alone.
    return client.url(url), (client.headers_for(client.keys[0] if client.keys else None) if own else None)


def _finish(
    outcome: Outcome, model: str, state: TaskState | None, attempts: int, files: list[str]
) -> Outcome:
    s = state or TaskState()
    return outcome.replace(attempts=max(attempts, 1)).with_extra(
        files=files,
        model=model,
        resolved_model=s.model,
        task_id=s.id,
        task_status=s.status,
        vendor_status=s.raw_status,
        progress=100.0 if s.status == "succeeded" else s.progress,
    )


def _after_fallbacks(outcome: Outcome, given_up: list[tuple[str, Outcome]]) -> Outcome:
    """``outcome`` with the models given up on before it first in its history, so a rescue shows why."""
    earlier = [(m, o) for m, o in given_up if o is not outcome]
    if not earlier:
        return outcome
    model = outcome.extra.get("model")
    own = outcome.history or (Attempt(1, outcome.code, outcome.status, model=model, message=outcome.message),)
    tried = [Attempt(0, o.code, o.status, model=m, message=o.message) for m, o in earlier]
    history = tuple(replace(a, number=i) for i, a in enumerate((*tried, *own), 1))
    attempts = outcome.attempts + sum(o.attempts for _, o in earlier)
    return outcome.replace(history=history, attempts=attempts)


class Videos:
    """``client.videos``: video tasks on a synchronous :class:`~genguard.Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def generate(
        self,
        prompt: str,
        *,
        model: str,
        size: str | None = None,
        seconds: int | str | None = None,
        input_reference: str | os.PathLike[str] | bytes | None = None,
        out: str | os.PathLike[str] | None = None,
        stem: str | None = None,
        poll_interval: float = 10.0,
        deadline: float = 600.0,
        stall_limit: float = 300.0,
        not_exist_grace: float = 30.0,
        fallbacks: Sequence[str] = (),
        on_progress: ProgressHook | None = None,
        max_bytes: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> Outcome:
        """Submit, poll until done, download to ``out``; each of ``fallbacks`` is tried in turn when a model's
        task is stuck in the queue or the model fails with a code of the retry policy's ``fallback_on``.

        >>> client.videos.generate("waves", model="sora-2", out="clips").extra["files"]  # doctest: +SKIP
        ['clips/waves.mp4']
        """
        check_video(prompt, model, size, seconds, input_reference, out, stem, poll_interval, deadline, stall_limit,
                    not_exist_grace, fallbacks, on_progress, max_bytes, retry)  # fmt: skip
        ref = _reference(input_reference)
        if isinstance(ref, Outcome):
            return ref
        if not isinstance(prompt, str) or not prompt.strip():
            return Outcome.failure("invalid_input", endpoint="video", message="the video prompt is empty")
        fields = {"prompt": prompt}
        if size:
            fields["size"] = size
        if seconds is not None:
            fields["seconds"] = str(seconds)
        opts = _Options(poll_interval, deadline, stall_limit, not_exist_grace, max_bytes, on_progress, retry)
        policy = retry or self._client.retry
        outcome = Outcome.failure("invalid_input", endpoint="video", message="no model given")
        given_up: list[tuple[str, Outcome]] = []
        for m in (model, *fallbacks):
            outcome = self._one(m, fields, ref, opts, out, stem or prompt[:60])
            if outcome.ok or outcome.code not in policy.fallback_on | _FALLBACK_EXTRA:
                break
            given_up.append((m, outcome))
        return _after_fallbacks(outcome, given_up)

    def _one(
        self, model: str, fields: dict[str, str], ref: Any, opts: _Options, out: Any, stem: str
    ) -> Outcome:
        c = self._client
        poll = _Poll()
        sent = c.send_with_retries(
            _submit_builder(c, fields, ref), _parser(c, poll, submitted=False), model=model, endpoint="video",
            retry=opts.retry)  # fmt: skip
        tracker = _Tracker(model, opts)
        tracker.attempts = sent.attempts
        if not sent.ok or poll.state is None:
            return _finish(sent, model, None, tracker.attempts, [])
        state = poll.state
        task_id = state.id or ""
        verdict = tracker.judge(state)
        refetched = False
        while True:
            while verdict is None:
                time.sleep(tracker.wait(poll.hint_s))
                poll.state = None
                got = c.send_with_retries(_poll_builder(c, task_id), _parser(c, poll, submitted=True), model=model,
                                          endpoint="video", retry=opts.retry)  # fmt: skip
                tracker.attempts += got.attempts - 1
                tracker.polls += 1
                if not got.ok or poll.state is None:
                    return _finish(got, model, tracker.last, tracker.attempts, [])
                verdict = tracker.judge(poll.state)
            state = tracker.last or state
            if not verdict.ok or out is None:
                return _finish(verdict, model, state, tracker.attempts, [])
            target = _download_plan(c, state)
            if target is None:
                return _finish(verdict, model, state, tracker.attempts, [])
            try:
                path = download_to(c.http, target[0], out, stem=safe_stem(stem, default="video"), kind="video",
                                   max_bytes=opts.max_bytes, headers=target[1])  # fmt: skip
            except DownloadFailed as exc:
                # Vendors sign a fresh URL on each poll: one more poll may cure an expired link.
                if refetched or exc.outcome.status not in (401, 403, 404, 410):
                    return _finish(exc.outcome, model, state, tracker.attempts, [])
                refetched, verdict = True, None
                continue
            return _finish(verdict, model, state, tracker.attempts, [str(path)])


class AsyncVideos:
    """``client.videos`` on an :class:`~genguard.AsyncClient`: :meth:`generate` is awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def generate(
        self,
        prompt: str,
        *,
        model: str,
        size: str | None = None,
        seconds: int | str | None = None,
        input_reference: str | os.PathLike[str] | bytes | None = None,
        out: str | os.PathLike[str] | None = None,
        stem: str | None = None,
        poll_interval: float = 10.0,
        deadline: float = 600.0,
        stall_limit: float = 300.0,
        not_exist_grace: float = 30.0,
        fallbacks: Sequence[str] = (),
        on_progress: ProgressHook | None = None,
        max_bytes: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> Outcome:
        """As :meth:`Videos.generate`, awaited.

        >>> await client.videos.generate("waves", model="veo-3", out="clips")  # doctest: +SKIP
        """
        check_video(prompt, model, size, seconds, input_reference, out, stem, poll_interval, deadline, stall_limit,
                    not_exist_grace, fallbacks, on_progress, max_bytes, retry)  # fmt: skip
        ref = _reference(input_reference)
        if isinstance(ref, Outcome):
            return ref
        if not isinstance(prompt, str) or not prompt.strip():
            return Outcome.failure("invalid_input", endpoint="video", message="the video prompt is empty")
        fields = {"prompt": prompt}
        if size:
            fields["size"] = size
        if seconds is not None:
            fields["seconds"] = str(seconds)
        opts = _Options(poll_interval, deadline, stall_limit, not_exist_grace, max_bytes, on_progress, retry)
        policy = retry or self._client.retry
        outcome = Outcome.failure("invalid_input", endpoint="video", message="no model given")
        given_up: list[tuple[str, Outcome]] = []
        for m in (model, *fallbacks):
            outcome = await self._one(m, fields, ref, opts, out, stem or prompt[:60])
            if outcome.ok or outcome.code not in policy.fallback_on | _FALLBACK_EXTRA:
                break
            given_up.append((m, outcome))
        return _after_fallbacks(outcome, given_up)

    async def _one(
        self, model: str, fields: dict[str, str], ref: Any, opts: _Options, out: Any, stem: str
    ) -> Outcome:
        c = self._client
        poll = _Poll()
        sent = await c.send_with_retries(
            _submit_builder(c, fields, ref), _parser(c, poll, submitted=False), model=model, endpoint="video",
            retry=opts.retry)  # fmt: skip
        tracker = _Tracker(model, opts)
        tracker.attempts = sent.attempts
        if not sent.ok or poll.state is None:
            return _finish(sent, model, None, tracker.attempts, [])
        state = poll.state
        task_id = state.id or ""
        verdict = tracker.judge(state)
        refetched = False
        while True:
            while verdict is None:
                await asyncio.sleep(tracker.wait(poll.hint_s))
                poll.state = None
                got = await c.send_with_retries(_poll_builder(c, task_id), _parser(c, poll, submitted=True),
                                                model=model, endpoint="video", retry=opts.retry)  # fmt: skip
                tracker.attempts += got.attempts - 1
                tracker.polls += 1
                if not got.ok or poll.state is None:
                    return _finish(got, model, tracker.last, tracker.attempts, [])
                verdict = tracker.judge(poll.state)
            state = tracker.last or state
            if not verdict.ok or out is None:
                return _finish(verdict, model, state, tracker.attempts, [])
            target = _download_plan(c, state)
            if target is None:
                return _finish(verdict, model, state, tracker.attempts, [])
            try:
                path = await adownload_to(c.http, target[0], out, stem=safe_stem(stem, default="video"),
                                          kind="video", max_bytes=opts.max_bytes, headers=target[1])  # fmt: skip
            except DownloadFailed as exc:
                if refetched or exc.outcome.status not in (401, 403, 404, 410):
                    return _finish(exc.outcome, model, state, tracker.attempts, [])
                refetched, verdict = True, None
                continue
            return _finish(verdict, model, state, tracker.attempts, [str(path)])
