"""``genguard batch``: bulk generation from a file that loses nothing, pays once and runs at the provider's limit."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from ._common import (
    EXIT_USAGE,
    connection_options,
    echo_json,
    fail_usage,
    keys_argument,
    otel_hooks,
    otel_option,
)

_EPILOG = """\b
Exit codes: 0 every line ok; 1 the run finished and some lines failed (see errors.jsonl);
2 bad input or usage, nothing sent; 3 the run stopped before the end (quota, refused keys, a provider
not there or answering nothing, a wait asked for past 10 min, its first lines all failing alike, cost cap,
deadline) and resumes with the same command; 130 interrupted (Ctrl-C), resumable too.
"""


def _codes(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if value.strip().lower() in ("", "all"):
        return ()
    from ..core.arguments import codes

    given = tuple(c.strip() for c in value.split(",") if c.strip())
    try:
        codes("--retry-failed", given)
    except ValueError as exc:
        fail_usage(str(exc))
    return given


# --simulate's numeric settings, and how each is read.
_NUMBERS: dict[str, type[int] | type[float]] = {
    "rpm": int, "tpm": int, "seed": int, "ttft_ms": float, "tokens_per_s": float, "rate_window_s": float,
}  # fmt: skip

# Where the limit came from, as the summary says it ("headers" and "429s" as they are).
_FROM = {"given": "--rpm"}


@contextlib.contextmanager
def _simulator(spec: str | None) -> Iterator[str | None]:
    if spec is None:
        yield None
        return
    from ..sim import Simulator

    # The main job's demo: a provider allowing 50 requests a second over one-second windows, with a few
    # failures of each kind a real run meets.
    settings: dict[str, Any] = {
        "rpm": 3000,
        "rate_window_s": 1.0,
        "chaos": "server_error=0.03,rate_limited=0.01,truncated=0.01,content_filtered=0.01",
        "seed": 7,
    }
    if spec:
        for part in spec.split(","):
            name, _, value = part.partition("=")
            name = name.strip().replace("-", "_")
            if name == "chaos":
                # CODE:P;CODE:P (as --help shows) or CODE=P;...: the simulator's own form is CODE=P,CODE=P.
                entries = [e.strip().replace(":", "=", 1) for e in value.split(";") if e.strip()]
                settings["chaos"] = ",".join(entries) if value not in ("", "off", "none") else ""
            elif name in ("rpm_for", "tpm_for"):
                # MODEL:N;MODEL:N, a model's own limit (providers limit each model on its own); a model's name
                # may hold colons (llama3:8b, ft:gpt-4o:org::id), the number none. The simulator reads
                # MODEL=N entries, and names a wrong one.
                entries = [e.strip() for e in value.split(";") if e.strip()]
                settings[name] = [
                    e if "=" in e or ":" not in e else "=".join(e.rpartition(":")[::2]) for e in entries
                ]
            elif name in _NUMBERS:
                try:
                    settings[name] = _NUMBERS[name](value)
                except ValueError:
                    fail_usage(f"--simulate: {name}={value!r} is not a number: e.g. {name}=1200")
            elif name == "headers":
                # A provider that states no limit (a gateway, a local server): genguard finds it from 429s.
                try:
                    settings["ratelimit_headers"] = click.BOOL.convert(value.strip() or "?", None, None)
                except click.BadParameter:
                    fail_usage(f"--simulate: headers={value!r}: use headers=on or headers=off")
            else:
                fail_usage(
                    f"--simulate: unknown setting {name!r}; use rpm=N, tpm=N, rpm_for=MODEL:N;MODEL:N, "
                    "tpm_for=MODEL:N;MODEL:N, chaos=CODE:P;CODE:P, seed=N, ttft_ms=N, headers=off"
                )
    try:
        simulator = Simulator(**settings)
    except (ValueError, TypeError) as exc:
        fail_usage(f"--simulate: {exc}")
    with simulator as sim:
        click.echo(
            f"simulator: {sim.base_url} (rpm {settings.get('rpm')} over one-second windows, "
            f"{'' if settings.get('ratelimit_headers', True) else 'no rate-limit headers, '}"
            f"chaos {settings.get('chaos') or 'off'})",
            err=True,
        )
        yield sim.base_url


@click.command(epilog=_EPILOG)
@click.argument(
    "input_path", metavar="INPUT", required=False, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--out",
    "-o",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="The run's folder: journal, output.jsonl, errors.jsonl, report.html. The same --out resumes. "
    "With a shared --journal: where this worker writes the files if it is the one that sees the run "
    "finish (default ./NAME of --run).",
)
@click.option(
    "--journal",
    metavar="URL",
    help="A shared journal, postgresql://user:password@host:5432/db (?schema=NAME, default genguard): any "
    "number of workers on any number of machines, started with the same INPUT and --run, work one run.",
)
@click.option(
    "--run", "run_name", metavar="NAME", help="The run's name in a shared --journal (needed there)."
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="With a shared --journal: how long a line this worker claimed stays its own unless renewed "
    "(renewed every third of it); a dead worker's lines go to the others after this. Default 60.",
)
@connection_options()
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1, max=4096),
    default=64,
    show_default=True,
    help="Requests in flight at most.",
)
@click.option(
    "--rpm",
    type=click.IntRange(min=1),
    help="Never send more requests per minute than this at any one pace (a model whose answers state limits "
    "of its own gets a pace of its own, as providers limit each model on its own).",
)
@click.option(
    "--tpm",
    type=click.IntRange(min=1),
    help="Never send more (estimated) tokens per minute than this at any one pace.",
)
@click.option(
    "--limiter",
    metavar="URL",
    help="Share one rate limit with every worker given the same URL: redis://host:6379/0?name=NAME "
    "(see docs/scale.md).",
)
@click.option(
    "--max-cost",
    type=click.FloatRange(min=0, min_open=True),
    metavar="USD",
    help="Stop before the run's cost would pass this many dollars (estimates reserved before each send).",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop sending after this many seconds; the rest stays pending for the next run.",
)
@click.option(
    "--retry-failed",
    "retry_failed",
    is_flag=False,
    flag_value="all",
    default=None,
    metavar="[CODES]",
    help="Send the lines that failed again: all of them, or only these comma-separated codes "
    "(e.g. truncated,content_filtered).",
)
@click.option(
    "--skip-invalid", is_flag=True, help="Record bad input lines as failed (invalid_input) and run the rest."
)
@click.option(
    "--rerun-changed",
    is_flag=True,
    help="Lines that ended, and whose request changed in INPUT since, are sent again (default: refuse; lines "
    "not ended take the new request either way).",
)
@click.option(
    "--keep-changed",
    is_flag=True,
    help="Lines that ended keep their answers though INPUT changed their requests: new settings for the lines "
    "not run yet only.",
)
@click.option(
    "--template",
    metavar="TEXT",
    help="Each CSV or JSONL row becomes a chat prompt: 'Classify: {text}' takes the row's text field.",
)
@click.option("--model", "-m", metavar="MODEL", help="The model for --template rows.")
@click.option(
    "--validate",
    "validate",
    multiple=True,
    metavar="SPEC",
    help="Check each chat answer: json, json-schema:PATH, labels:a,b,c, min-words:N, regex:PATTERN.",
)
@click.option(
    "--fallback", multiple=True, metavar="MODEL", help="A model to try when the first is unavailable."
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=6,
    show_default=True,
    help="Attempts per line and model.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds to wait for one response.",
)
@click.option(
    "--progress",
    type=click.Choice(["auto", "plain", "none"]),
    default="auto",
    show_default=True,
    help="A live panel on a terminal, plain lines in a log, or nothing.",
)
@click.option(
    "--export",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Also write every ended line, in input order, to PATH (JSONL).",
)
@click.option(
    "--simulate",
    "simulate",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[SETTINGS]",
    help="Run against the embedded simulator (no key, no network): rpm=3000 by default; "
    "e.g. --simulate 'rpm=1200,chaos=server_error:0.02;truncated:0.01'; headers=off for a provider that "
    "states no rate limit (genguard finds it from the 429s), ttft_ms=N for its latency, "
    "rpm_for=gpt-4o:120 for a model limited on its own.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@otel_option
def batch(
    input_path: Path | None,
    out: Path | None,
    journal: str | None,
    run_name: str | None,
    lease: float | None,
    base_url: str | None,
    api_key: tuple[str, ...],
    concurrency: int,
    rpm: int | None,
    tpm: int | None,
    limiter: str | None,
    max_cost: float | None,
    deadline: float | None,
    retry_failed: str | None,
    skip_invalid: bool,
    rerun_changed: bool,
    keep_changed: bool,
    template: str | None,
    model: str | None,
    validate: tuple[str, ...],
    fallback: tuple[str, ...],
    max_attempts: int,
    timeout: float,
    progress: str,
    export: Path | None,
    simulate: str | None,
    as_json: bool,
    otel: str | None,
) -> None:
    """Run every request of INPUT, at the provider's rate limit, into --out; run it again to resume.

    INPUT is JSONL in the OpenAI Batch shape ({"custom_id", "method", "url", "body"}), one request body per
    line, or a CSV/JSONL table with --template and --model. Every bad line is named before anything is sent.
    Each line ends exactly once, in output.jsonl (usable results) or errors.jsonl (failures, each with its
    code, cause and fix); DIR/report.html shows the run. Rate limits are read from every response; a 429 is
    waited out, never wasted.

    \b
    Examples:
      genguard batch requests.jsonl --out runs/1 --base-url http://127.0.0.1:8000/v1
      genguard batch reviews.csv --template 'Classify: {text}' --model gpt-4o-mini --out runs/2
      genguard batch requests.jsonl --out runs/1 --retry-failed truncated --api-key sk-new
      genguard batch edited.jsonl --out runs/1 --keep-changed   # new settings for lines not run yet
    """
    import sqlite3

    from ..bulk.journal import JOURNAL_FILE, JournalError
    from ..bulk.runner import (
        EXIT_INTERRUPTED,
        EXIT_STOPPED,
        BadInput,
        BatchOptions,
        RunInUse,
        SetupError,
        run_batch,
    )
    from ..bulk.runner import EXIT_USAGE as _USAGE
    from ..client.retry import RetryPolicy
    from ..core.exceptions import ConfigError

    assert _USAGE == EXIT_USAGE
    from ..bulk.journal_pg import check_run_name, is_postgres_url, masked_url

    codes = _codes(retry_failed)
    if template is not None and not model:
        fail_usage("--template needs --model: the model each row's prompt is sent to")
    if rerun_changed and keep_changed:
        fail_usage(
            "--rerun-changed sends the changed lines that ended again and --keep-changed keeps their answers: "
            "give one of them"
        )
    if input_path is not None and not input_path.exists():
        fail_usage(f"{input_path}: no such file")
    if export is not None:
        # Checked before anything is sent: a run of an hour must not end in a traceback at its last step.
        where = export.parent
        if not where.is_dir():
            fail_usage(
                f"--export {export}: the folder {where} does not exist; create it or give another path"
            )
        if not os.access(where, os.W_OK) or (export.exists() and not os.access(export, os.W_OK)):
            fail_usage(f"--export {export}: cannot be written here; give another path")
    if journal is not None:
        if not is_postgres_url(journal):
            fail_usage(
                f"--journal {masked_url(journal)}: give a postgresql:// URL (a run's folder is given with --out)"
            )
        if not run_name:
            fail_usage(
                f"--journal {masked_url(journal)} holds many runs: name this one with --run NAME, the same on "
                "every worker"
            )
        try:
            check_run_name(run_name)
        except ValueError as exc:
            fail_usage(str(exc))
        out = out or Path(run_name)
    elif run_name is not None or lease is not None:
        fail_usage(
            "--run and --lease go with a shared --journal postgresql://...; alone, --out names the run"
        )
    if out is None:
        fail_usage("give --out DIR: the run's folder (journal, output files, report)")
    opts_base: dict[str, Any] = {
        "out": out,
        "journal": journal,
        "run": run_name,
        "lease_s": lease,
        "api_keys": tuple(keys_argument(api_key) or ()),
        "concurrency": concurrency,
        "rpm": rpm,
        "tpm": tpm,
        "limiter": limiter,
        "max_cost": max_cost,
        "deadline": deadline,
        "retry_failed": codes,
        "skip_invalid": skip_invalid,
        "rerun_changed": rerun_changed,
        "keep_changed": keep_changed,
        "template": template,
        "model": model,
        "validate": list(validate) or None,
        "retry": RetryPolicy(max_attempts=max_attempts),
        "fallbacks": tuple(fallback),
        "timeout": timeout,
        "progress": "none" if as_json else progress,
        "hooks": otel_hooks(otel),
    }
    with _simulator(simulate) as sim_url:
        if sim_url is not None:
            base_url = sim_url
            if not opts_base["api_keys"]:
                opts_base["api_keys"] = ("sk-simulated",)
        try:
            opts = BatchOptions(base_url=base_url, **opts_base)
        except ValueError as exc:  # ConfigError too: a --validate spec that is not one
            fail_usage(str(exc))
        try:
            result = run_batch(input_path, opts, handle_signals=True)
        except BadInput as exc:
            click.echo(f"genguard: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM while the input was read (a stop while sending ends in the summary instead):
            # the load was rolled back, and the run's folder is as it was.
            click.echo("\ngenguard: interrupted before anything was sent; run the same command again to go on",
                       err=True)  # fmt: skip
            sys.exit(EXIT_INTERRUPTED)
        except (SetupError, ConfigError, RunInUse, JournalError) as exc:
            # Only what stops a run before it sends: an error in the middle of one is a bug, and must not read
            # as "bad usage, nothing sent".
            fail_usage(str(exc))
        except sqlite3.DatabaseError as exc:
            if _disk_full(exc):
                _stopped_disk_full(out, exc)
            fail_usage(
                f"{out / JOURNAL_FILE} is not a genguard journal or is damaged ({exc}); give another --out"
            )
        except Exception as exc:
            if _disk_full(exc):
                _stopped_disk_full(out, exc)
            if journal is None or not type(exc).__module__.startswith("psycopg"):
                raise
            # The database went away mid-run (restarted, connection cut): what this worker recorded is kept, and
            # the lines it held are the others' once their leases run out.
            from ..core.secrets import redact

            click.echo(
                f"genguard: the journal at {masked_url(journal)} failed: {redact(str(exc).strip())}; this worker "
                "stopped (its lines go to the other workers when its leases run out); run the same command "
                "again to rejoin the run",
                err=True,
            )
            sys.exit(EXIT_STOPPED)
    report = _finish(result, export, opts.api_keys)
    if as_json:
        echo_json(_summary_json(result, report), secrets=opts.api_keys)
    else:
        click.echo(_summary_text(result, report))
    sys.exit(result.exit_code)


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota on it) is full: SQLite's SQLITE_FULL, ENOSPC, EDQUOT."""
    import errno
    import sqlite3

    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _stopped_disk_full(out: Path, exc: BaseException) -> NoReturn:
    # Not "a damaged journal" (which sent users to another --out): what ended is kept, and a torn last line in
    # the output files is cut off when the run resumes.
    click.echo(
        f"genguard: the disk holding {out} is full ({exc}); the run stopped, and what ended is kept: free "
        "some space and run the same command again to resume",
        err=True,
    )
    from ..bulk.runner import EXIT_STOPPED

    sys.exit(EXIT_STOPPED)


def _finish(result: Any, export: Path | None, secrets: tuple[str, ...]) -> Path | None:
    if export is not None:
        from ..bulk.journals import open_journal as _open_journal
        from ..bulk.outputs import export_in_order

        # The output files' shape, in input order, replacing the file whole: a kill leaves the old export.
        source = _open_journal(result.journal or result.out / "journal.sqlite", run=result.run)
        try:
            export_in_order(source, export)
        finally:
            source.close()
    from ..bulk.report import build_report, journal_summary

    if not result.wrote_outputs:
        return None  # a shared run's files and report are the finishing worker's
    if result.journal is None:
        path: Path = build_report(result.out, secrets=secrets)
        return path
    from ..bulk.journals import open_journal

    journal = open_journal(result.journal, run=result.run)
    try:
        data = journal_summary(journal, secrets=secrets)
    finally:
        journal.close()
    data["dir"] = str(result.out)
    return build_report(result.out, secrets=secrets, data=data)


def _summary_json(result: Any, report: Path | None) -> dict[str, Any]:
    c = result.counts
    return {
        "out": str(result.out),
        "exit_code": result.exit_code,
        "finished": result.finished,
        "stopped": result.stopped,
        "total": c.total,
        "ok": c.ok,
        "failed": c.failed,
        "pending": c.pending + c.in_flight,
        "tried": c.tried,  # of the pending: lines a stop cut off after they made attempts
        "absent": result.absent,
        "repeated": result.repeated,
        "renewed": result.renewed,
        "kept_changed": result.kept_changed,
        "by_code": dict(c.by_code),
        "sent": result.sent,
        "resent_after_crash": c.resent,  # the whole run's
        "resent_this_run": result.resent,
        "rate_limited": result.rate_limited,
        "in_flight_refused": result.in_flight_refused,
        "in_flight_limit": result.in_flight_limit,
        "limit_rps": result.limit_rps,
        "limit_source": result.limit_source,
        "limits": {
            model: {"limit_rps": rps, "limit_source": source}
            for model, (rps, source) in result.limits.items()
        },
        "cost_usd": c.cost_usd,
        "tokens": c.total_tokens,
        "elapsed_s": round(result.elapsed_s, 3),
        "report": None if report is None else str(report),
        "output": str(result.out / "output.jsonl"),
        "errors": str(result.out / "errors.jsonl"),
        "run": result.run,
        "worker": result.worker,
        "wrote_outputs": result.wrote_outputs,
        "finished_by": result.finished_by,
        "unpriced": list(result.unpriced),
    }


def _limit_found(rps: float | None, source: str | None) -> str:
    if not rps:
        return ""
    named = _FROM.get(source or "", source)
    return f"~{rps:.1f} req/s" + (f" (from {named})" if named else "")


def _limits_found(result: Any) -> str:
    """The summary's ", limit found ~N req/s (from ...)"; with several models, each model's own."""
    known = {model: _limit_found(*limit) for model, limit in result.limits.items()}
    if len(known) > 1:
        found = ", ".join(f"{model or '(no model)'} {text}" for model, text in known.items() if text)
        return f", limits found per model: {found}" if found else ""
    text = _limit_found(result.limit_rps, result.limit_source)
    return f", limit found {text}" if text else ""


def _summary_text(result: Any, report: Path | None) -> str:
    c = result.counts
    lines = [f"{c.ended}/{c.total} lines ended: {c.ok} ok, {c.failed} failed"]
    if c.total == 0:
        lines.append("the input holds no request line: nothing was sent")
    if result.repeated:
        lines.append(
            (
                "1 line repeats a custom_id of an earlier line: left out"
                if result.repeated == 1
                else f"{result.repeated} lines repeat a custom_id of an earlier line: left out"
            )
            + " (--skip-invalid), the first line of each id ran"
        )
    if result.absent:
        lines.append(
            f"{result.absent} of them are not in this input (an earlier input's, run into the same --out): they "
            "stay in its results; another --out keeps runs apart"
        )
    if result.renewed:
        lines.append(f"{result.renewed} lines not ended yet took the changed requests this input gives them")
    if result.kept_changed:
        lines.append(
            f"{result.kept_changed} lines that ended kept their answers, though this input changed their requests "
            "(--keep-changed): the journal holds the requests they answered"
        )
    if c.failed:
        codes = ", ".join(
            f"{code} {n}" for code, n in sorted(c.by_code.items(), key=lambda kv: -kv[1]) if code
        )
        lines.append(f"failures by code: {codes} (each with its cause and fix in errors.jsonl)")
    # Lines a stop cut off while they waited for a retry were sent: they are tried already, not "not sent yet",
    # and the resumed run goes on with their attempts.
    tried = min(c.tried, c.pending)
    tried_words = f", {tried} of them tried already (their attempts go on when resumed)" if tried else ""
    if c.in_flight and result.journal is None:
        # Alone, a line left in flight was cut off after its request left (a second Ctrl-C, a provider that
        # stopped answering): the resumed run sends it again.
        waiting = f"{c.pending} lines to resume{tried_words}" if tried else f"{c.pending} lines not sent yet"
        lines.append(
            f"{waiting}, {c.in_flight} cut off on the wire (sent again when resumed: they may be billed twice): "
            "run the same command again to resume"
        )
    elif tried:
        lines.append(
            f"{c.pending + c.in_flight} lines to resume{tried_words}: run the same command again to resume"
        )
    elif c.pending or c.in_flight:
        lines.append(f"{c.pending + c.in_flight} lines not sent yet: run the same command again to resume")
    if result.stopped:
        lines.append(f"stopped: {result.stopped}")
    if result.journal is not None and not result.wrote_outputs:
        if result.finished_by:
            lines.append(f"the run's files were written by worker {result.finished_by}, in its --out")
        else:
            lines.append(
                "the run is not finished: the workers still running end it (or start one with the same command); "
                f"`genguard report --journal URL --run {result.run} --out DIR` writes the files so far"
            )
    if result.sent:
        lines.append(
            f"this run: {result.sent} requests in {result.elapsed_s:.1f} s, {result.rate_limited} answered 429"
            + _limits_found(result)
        )
    if result.in_flight_refused:
        lines.append(
            f"{result.in_flight_refused} 429s said the provider limits the requests in flight: the run kept "
            f"{result.in_flight_limit} at once after them (--concurrency {result.in_flight_limit} starts there)"
        )
    if c.resent:
        # The whole run's count, as the lines and the cost above are: a resumed run that sent them says so.
        again = (
            f"; {result.resent} of them by this run" if result.resent and result.resent != c.resent else ""
        )
        lines.append(
            f"{c.resent} requests were sent again after a crash over the whole run{again} (they may have been "
            "billed twice)"
        )
    if c.cost_usd:
        lines.append(f"cost ${c.cost_usd:.4f}, {c.total_tokens} tokens")
    if result.unpriced:
        lines.append(
            f"--max-cost could not count the lines of {', '.join(result.unpriced)}: no price table knows the "
            "model and its answers state no cost"
        )
    if result.wrote_outputs:
        lines.append(f"results: {result.out / 'output.jsonl'}, failures: {result.out / 'errors.jsonl'}")
    if report is not None:
        lines.append(f"report: {report}")
    return "\n".join(lines)
