"""``genguard report``: the summary of a batch run, and its HTML report rebuilt."""

from __future__ import annotations

from pathlib import Path

import click

from ..bulk.journal import JournalError
from ..bulk.report import ReportError, build_report, journal_summary, render_summary, summary
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
@click.argument(
    "directory", metavar="[DIR]", required=False, type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--journal",
    metavar="URL",
    help="The shared journal (postgresql://...) of a run worked by several workers; with --run and --out.",
)
@click.option("--run", "run_name", metavar="NAME", help="The run's name in the shared --journal.")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --journal: the folder to write output.jsonl, errors.jsonl and report.html into (default DIR).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON instead of text.")
def report(
    directory: Path | None, journal: str | None, run_name: str | None, out: Path | None, as_json: bool
) -> None:
    """Summarise the batch run in DIR and write its report, DIR/report.html.

    DIR is the --out directory of `genguard batch`; the run may still be going. The summary gives the lines
    by outcome with each failure code's cause and fix, throughput and 429s, latency, tokens and cost,
    retries, and the requests sent again after a crash. report.html shows the same with charts and sample
    failures, in one file that needs no network. Exit 2 if DIR holds no batch journal.

    A run shared by several workers (genguard batch --journal URL --run NAME) is read from its journal:
    `genguard report --journal URL --run NAME --out DIR` writes output.jsonl and errors.jsonl (the lines
    ended so far, as a single machine's run writes them) and report.html into DIR.
    """
    secrets = _known_keys()
    if journal is not None:
        _shared(journal, run_name, out or directory, as_json, secrets)
        return
    if run_name is not None or out is not None:
        fail_usage("--run and --out go with --journal URL; a run's own folder is given as DIR")
    if directory is None:
        fail_usage("give DIR, the --out folder of a batch run (or --journal URL --run NAME --out DIR)")
    try:
        data = summary(directory, secrets=secrets)
    except (ReportError, JournalError) as exc:
        fail_usage(str(exc))
    path: Path | None = None
    try:
        path = build_report(directory, secrets=secrets, data=data)
    except OSError as exc:
        # A folder that cannot be written (a read-only mount, an archive): the summary is still the run's.
        kept = directory / "report.html"
        click.echo(
            f"genguard: report.html not rebuilt: {directory} cannot be written ({exc.strerror or exc})"
            + ("; the one there is from when the run last stopped" if kept.is_file() else ""),
            err=True,
        )
    if as_json:
        echo_json({**data, "report": None if path is None else str(path)}, secrets=secrets)
        return
    click.echo(render_summary(data))
    if path is not None:
        click.echo(f"report: {path}")


def _shared(
    url: str, run_name: str | None, out: Path | None, as_json: bool, secrets: tuple[str, ...]
) -> None:
    from ..bulk.journal_pg import check_run_name, is_postgres_url, masked_url
    from ..bulk.journals import open_journal
    from ..bulk.runner import output_place, write_outputs

    if not is_postgres_url(url):
        fail_usage(f"--journal {masked_url(url)}: give a postgresql:// URL (a run's folder is given as DIR)")
    if not run_name:
        fail_usage(f"--journal {masked_url(url)} holds many runs: name one with --run NAME")
    try:
        check_run_name(run_name)
    except ValueError as exc:
        fail_usage(str(exc))
    if out is None:
        fail_usage("give --out DIR: the folder to write the run's files into")
    try:
        out.mkdir(parents=True, exist_ok=True)
        journal = open_journal(url, run=run_name, place=output_place(out))
        try:
            if journal.counts().total == 0:
                fail_usage(f"run {run_name!r} in {masked_url(url)} holds no line: check --run and the schema")
            write_outputs(journal, out)
            data = journal_summary(journal, secrets=secrets)
        finally:
            journal.close()
        data["dir"] = str(out)
        path = build_report(out, secrets=secrets, data=data)
    except JournalError as exc:
        fail_usage(str(exc))
    except OSError as exc:
        fail_usage(f"cannot write into {out}: {exc.strerror or exc}")
    if as_json:
        echo_json({**data, "report": str(path)}, secrets=secrets)
        return
    click.echo(render_summary(data))
    click.echo(f"results: {out / 'output.jsonl'}, failures: {out / 'errors.jsonl'}")
    click.echo(f"report: {path}")
