"""``genguard video``: submit a video task, poll it to the end with a progress bar, download and check it."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

import click

from ..client.clients import Client
from ..client.retry import RetryPolicy
from ..core.exceptions import ConfigError
from ..core.media_body import TaskState
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    connection_options,
    echo_json,
    fail_usage,
    keys_argument,
    outcome_json,
    prepare_out,
    read_prompt,
)
from ._render import render_outcome

EXIT_INTERRUPTED = 130


@click.command()
@click.argument("prompt")
@click.option(
    "--model",
    "-m",
    required=True,
    envvar="GENGUARD_VIDEO_MODEL",
    help="Video model [env: GENGUARD_VIDEO_MODEL].",
)
@click.option("--size", metavar="WxH", help="Video size, e.g. 720x1280.")
@click.option("--seconds", type=click.IntRange(min=1), help="Duration in seconds.")
@click.option(
    "--out", type=click.Path(file_okay=False), default=".", show_default=True, help="Folder to save into."
)
@click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds between polls when the server gives no hint.")  # fmt: skip
@click.option("--deadline", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="Seconds to wait for the task to finish.")  # fmt: skip
@click.option("--stall-limit", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Seconds a task may stay queued before it counts as stuck.")  # fmt: skip
@click.option("--fallback", multiple=True, metavar="MODEL", help="A model to try when the task is stuck.")
@connection_options()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the outcome as JSON (with files, model, task_status, progress).",
)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds to wait for each HTTP response.")  # fmt: skip
@click.option(
    "--max-attempts", type=click.IntRange(min=1), default=4, show_default=True, help="Attempts per request."
)
def video(
    prompt: str,
    model: str,
    size: str | None,
    seconds: int | None,
    out: str,
    poll_interval: float,
    deadline: float,
    stall_limit: float,
    fallback: tuple[str, ...],
    base_url: str | None,
    api_key: tuple[str, ...],
    as_json: bool,
    timeout: float,
    max_attempts: int,
) -> None:
    """Generate a video for PROMPT ('-' reads stdin), wait for it, and save it into --out.

    Every vendor's status words are understood; a failed task says whether a safety filter stopped it; a
    task past --deadline or stuck in the queue past --stall-limit is reported with its last status.
    On a terminal a progress line shows the model, the vendor's status word, the progress and the time.
    Exit 0 when the video was saved, 1 when the generation or download failed, 2 on bad usage.

    \b
    Example:
      genguard video "waves at night" --model sora-2 --seconds 4 --out clips --fallback kling-v2
    """
    prompt = read_prompt(prompt)
    try:
        client = Client(base_url, api_key=keys_argument(api_key), timeout=timeout,
                        retry=RetryPolicy(max_attempts=max_attempts))  # fmt: skip
    except ConfigError as exc:
        fail_usage(str(exc))
    out = prepare_out(out)
    line = ProgressLine(sys.stderr) if not as_json and sys.stderr.isatty() else None
    try:
        with client, line or _NoLine():
            outcome = client.videos.generate(
                prompt, model=model, size=size, seconds=seconds, out=out, poll_interval=poll_interval,
                deadline=deadline, stall_limit=stall_limit, fallbacks=fallback,
                on_progress=line.update if line is not None else None,
            )  # fmt: skip
    except ConfigError as exc:
        fail_usage(str(exc))
    except KeyboardInterrupt:
        # The download writes into a temporary file that is removed on the way out: nothing half-written.
        click.echo("genguard: interrupted; the task may still run on the server", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if as_json:
        echo_json(outcome_json(outcome), secrets=client.keys)
    elif outcome.ok:
        for path in outcome.extra.get("files", []):
            click.echo(path)
    else:
        click.echo(render_outcome(outcome, color=sys.stderr.isatty()), err=True)
    # invalid_input means nothing was sent (an unreadable rules file, a bad parameter): bad usage.
    sys.exit(EXIT_OK if outcome.ok else EXIT_USAGE if outcome.code == "invalid_input" else EXIT_FAILED)


class _NoLine:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class ProgressLine:
    """One self-redrawing terminal line for a video task: model, bar, percent, the vendor's word, time.

    Polls can be ten seconds apart, so a ticker redraws the clock between them; a vendor that reports no
    percentage (Kling, Veo) gets a moving marker instead of a bar stuck at 0 %. A new task id (a fallback
    model took over) starts the bar and the clock again.

    >>> import io
    >>> out = io.StringIO()
    >>> with ProgressLine(out, tick_s=0) as line:
    ...     line.update(TaskState(id="t", status="running", raw_status="in_progress", progress=40.0))
    >>> "40%" in out.getvalue() and out.getvalue().endswith("\\n")
    True
    """

    def __init__(self, stream: TextIO, *, tick_s: float = 0.25) -> None:
        self._stream = stream
        self._tick_s = tick_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state: TaskState | None = None
        self._start = time.monotonic()
        self._shown = False

    def __enter__(self) -> ProgressLine:
        if self._tick_s > 0:
            self._thread = threading.Thread(target=self._tick, name="genguard-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._shown:
                self._draw()
                self._stream.write("\n")
                self._stream.flush()

    def update(self, state: TaskState) -> None:
        """Record one poll's state and redraw (the ``on_progress`` hook of ``videos.generate``)."""
        with self._lock:
            if self._state is not None and state.id != self._state.id:
                self._start = time.monotonic()
            self._state = state
            self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(self._tick_s):
            with self._lock:
                if self._state is not None:
                    self._draw()

    def _draw(self) -> None:
        s = self._state
        if s is None:
            return
        elapsed = time.monotonic() - self._start
        done = s.status == "succeeded"
        pct = 100.0 if done else s.progress
        word = s.raw_status or s.status or "?"
        head = f"video {s.model or ''}".rstrip()
        tail = f"{'' if pct is None else f'{pct:3.0f}%'}  {word}  {_clock(elapsed)}"
        columns = shutil.get_terminal_size((80, 24)).columns
        width = max(10, min(40, columns - len(head) - len(tail) - 6))
        if pct is not None:
            filled = int(width * min(max(pct, 0.0), 100.0) / 100)
            bar = "#" * filled + "-" * (width - filled)
        elif s.status == "running":
            # No percentage from this vendor: a marker that sweeps with time shows the task is alive.
            at = int(elapsed * 4) % (2 * (width - 3))
            at = at if at < width - 3 else 2 * (width - 3) - at
            bar = "-" * at + "===" + "-" * (width - 3 - at)
        else:
            bar = "-" * width
        text = f"{head}  [{bar}] {tail}"[: max(columns - 1, 20)]
        self._stream.write("\r" + text + "\x1b[K")
        self._stream.flush()
        self._shown = True


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"
