"""``genguard video``: submit a video task, poll it to the end with a progress bar, download and check it."""

from __future__ import annotations

import sys

import click

from .._client import Client
from .._exceptions import ConfigError
from .._media import TaskState
from ._common import EXIT_FAILED, EXIT_OK, echo_json, fail_usage, keys_argument, outcome_json
from ._render import render_outcome


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
@click.option(
    "--base-url", metavar="URL", help="The API's base URL [env: GENGUARD_BASE_URL, OPENAI_BASE_URL]."
)
@click.option("--api-key", "api_key", metavar="KEY", multiple=True, help="API key; repeat to rotate.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the outcome as JSON (with files, model, task_status, progress)."
)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds to wait for each HTTP response.")  # fmt: skip
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
) -> None:
    """Generate a video for PROMPT ('-' reads stdin), wait for it, and save it into --out.

    Every vendor's status words are understood; a failed task says whether a safety filter stopped it; a
    task past --deadline or stuck in the queue past --stall-limit is reported with its last status.
    Exit 0 when the video was saved, 1 when the generation or download failed, 2 on bad usage.

    \b
    Example:
      genguard video "waves at night" --model sora-2 --seconds 4 --out clips --fallback kling-v2
    """
    if prompt == "-":
        prompt = sys.stdin.read()
    try:
        client = Client(base_url, api_key=keys_argument(api_key), timeout=timeout)
    except ConfigError as exc:
        fail_usage(str(exc))
    show = not as_json and sys.stderr.isatty()
    with (
        click.progressbar(length=100, label="video", file=sys.stderr, show_percent=True)
        if show
        else _Quiet() as bar
    ):
        done = [0]

        def progress(state: TaskState) -> None:
            pct = int(state.progress if state.progress is not None else (100 if state.done else 0))
            if pct > done[0]:
                bar.update(pct - done[0])
                done[0] = pct

        try:
            with client:
                outcome = client.videos.generate(
                    prompt, model=model, size=size, seconds=seconds, out=out, poll_interval=poll_interval,
                    deadline=deadline, stall_limit=stall_limit, fallbacks=fallback, on_progress=progress,
                )  # fmt: skip
        except ConfigError as exc:
            fail_usage(str(exc))
    if as_json:
        echo_json(outcome_json(outcome), secrets=client.keys)
    elif outcome.ok:
        for path in outcome.extra.get("files", []):
            click.echo(path)
    else:
        click.echo(render_outcome(outcome, color=sys.stderr.isatty()), err=True)
    sys.exit(EXIT_OK if outcome.ok else EXIT_FAILED)


class _Quiet:
    """A progress bar that shows nothing (JSON output, or not a terminal)."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None
