"""``genguard report``: the summary of a batch run, and its HTML report rebuilt."""

from __future__ import annotations

from pathlib import Path

import click

from ..bulk.journal import JournalError
from ..bulk.report import ReportError, build_report, render_summary, summary
from ..client.keys import resolve_keys
from ..core.exceptions import ConfigError
from ._common import echo_json, fail_usage


def _known_keys() -> tuple[str, ...]:
    # The run's keys came from the environment most often: mask them even where they are not key-shaped.
    try:
        return resolve_keys(None)
    except (ConfigError, TypeError, ValueError):
        return ()


@click.command()
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON instead of text.")
def report(directory: Path, as_json: bool) -> None:
    """Summarise the batch run in DIR and write its report, DIR/report.html.

    DIR is the --out directory of `genguard batch`; the run may still be going. The summary gives the lines
    by outcome with each failure code's cause and fix, throughput and 429s, latency, tokens and cost,
    retries, and the requests sent again after a crash. report.html shows the same with charts and sample
    failures, in one file that needs no network. Exit 2 if DIR holds no batch journal.
    """
    secrets = _known_keys()
    try:
        data = summary(directory, secrets=secrets)
        path = build_report(directory, secrets=secrets, data=data)
    except (ReportError, JournalError) as exc:
        fail_usage(str(exc))
    except OSError as exc:
        fail_usage(f"cannot write {directory / 'report.html'}: {exc.strerror or exc}")
    if as_json:
        echo_json({**data, "report": str(path)}, secrets=secrets)
        return
    click.echo(render_summary(data))
    click.echo(f"report: {path}")
