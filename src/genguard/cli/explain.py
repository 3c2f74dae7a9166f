"""`genguard explain`: diagnose captured responses offline."""

from __future__ import annotations

import contextlib
import secrets
import sys
from collections.abc import Mapping
from typing import IO, Any

import click
import orjson

from ..core.capture import read_capture_file
from ..core.exceptions import CaptureError, ConfigError
from ..core.explain import explain_exchange
from ..core.outcome import Outcome
from ..core.secrets import redact
from ..core.validate import parse_validate_spec
from ._render import render_outcome
from ._terminal import escape_json_controls, printable


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r} is not `Name: value`", param_hint="'--header'")
    return name.strip().lower(), value.strip()


def _open(name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
    if name == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    try:
        # Unbuffered: the reader reads the start, then the rest in one read or a stream in pieces of its own.
        return open(name, "rb", buffering=0)
    except FileNotFoundError:
        raise CaptureError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CaptureError(f"{name}: is a directory, not a capture file") from None
    except OSError as exc:
        raise CaptureError(f"{name}: cannot read it ({exc.strerror or exc})") from None


def _fail(message: str) -> None:
    click.echo(f"Error: {printable(redact(message))}", err=True)


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON outcome (docs/failures.md) per exchange and line."
)
@click.option(
    "--status", type=click.IntRange(100, 999), help="The HTTP status, for a bare body that lacks it."
)
@click.option(
    "--header", "header_args", multiple=True, metavar="'Name: value'", help="Add or override a header."
)
@click.option(
    "--validate",
    "validate_specs",
    multiple=True,
    metavar="SPEC",
    help="Check ok output: json, json-schema:PATH, labels:a,b,c, min-words:N, min-chars:N, regex:PATTERN.",
)
@click.option(
    "--endpoint",
    type=click.Choice(["chat", "image", "video", "embedding", "moderation"]),
    help="Which endpoint the capture came from (read from the body when not given).",
)
def explain(
    files: tuple[str, ...],
    as_json: bool,
    status: int | None,
    header_args: tuple[str, ...],
    validate_specs: tuple[str, ...],
    endpoint: str | None,
) -> None:
    """Diagnose captured responses offline: what happened, why, and what to do.

    FILE is a raw HTTP response as `curl -i` (or `curl -v`) prints it, a bare JSON body, an SSE transcript
    (a stream's body alone), or a HAR file; `-` reads standard input. The form is recognised by content.

    \b
    Examples:
      curl -si https://api.example.com/v1/chat/completions ... > reply.http
      genguard explain reply.http
      genguard explain --json capture.har
      pbpaste | genguard explain --status 429 -

    Exit status: 0 when every input was understood (whatever its outcome), 2 when one was not.
    """
    headers = dict(_parse_header(h) for h in header_args)
    try:
        validators = tuple(parse_validate_spec(s) for s in validate_specs)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="'--validate'") from None
    color = not as_json and sys.stdout.isatty()
    where: Any = endpoint
    failed = False
    first = True
    for name in files:
        source = "<stdin>" if name == "-" else name
        try:
            with _open(name) as fh:
                capture = read_capture_file(fh, source=source, status=status)
                skipped = capture.skipped_count
                for exchange in capture.exchanges:
                    outcome = explain_exchange(
                        exchange, status=status, headers=headers, endpoint=where, validators=validators
                    )
                    if skipped:
                        outcome = outcome.with_extra(entries_skipped=skipped)
                    shown_as = exchange.source
                    # The body is read; let it go before the outcome is written (a large one is not held twice).
                    del exchange
                    _emit(outcome, shown_as, as_json=as_json, color=color, first=first)
                    first = False
        except CaptureError as exc:
            _fail(str(exc))
            failed = True
            continue
        if skipped and not as_json:
            click.echo(f"\n{printable(source)}: {_skipped_line(capture.skipped)}")
    if failed:
        sys.exit(2)


def _skipped_line(skipped: Mapping[str, int]) -> str:
    total = sum(skipped.values())
    what = ", ".join(f"{n} {name}{'s' if n != 1 else ''}" for name, n in skipped.items())
    return f"{total} {'entries' if total != 1 else 'entry'} skipped, not API exchanges ({what})"


def _emit(outcome: Outcome, source: str, *, as_json: bool, color: bool, first: bool) -> None:
    if as_json:
        # Written as bytes, every string masked on its own: a large text is neither copied into a str of the
        # whole line nor encoded again on the way out.
        data = _masked(outcome.with_extra(source=source).to_dict())
        text = data.get("text")
        big = isinstance(text, str) and len(text) > _TEXT_PART
        mark = f"\x00{secrets.token_hex(8)}\x00"
        if big:
            # A large text is written a part at a time, in the place a mark holds for it in the line.
            data["text"] = mark
        line = orjson.dumps(data, default=str, option=orjson.OPT_APPEND_NEWLINE)
        del data
        sys.stdout.flush()
        out = sys.stdout.buffer
        if big:
            before, _, after = line.partition(orjson.dumps(mark))
            out.write(escape_json_controls(before) + b'"')
            for start in range(0, len(text), _TEXT_PART):
                # orjson escapes a character at a time: the parts' escapes are the whole text's.
                out.write(escape_json_controls(orjson.dumps(text[start : start + _TEXT_PART])[1:-1]))
            out.write(b'"' + escape_json_controls(after))
        else:
            out.write(escape_json_controls(line))
        out.flush()
        return
    if not first:
        click.echo()
    click.echo(render_outcome(outcome, source=source, color=color), color=color)


# A text longer than this is written to --json in parts of this many characters, never dumped whole.
_TEXT_PART = 1 << 16


def _masked(value: Any) -> Any:
    """``value`` ready for JSON with every string in it masked (a string with nothing to mask comes back as
    itself, so a large text is not copied)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item) for item in value]
    to_dict: Any = getattr(value, "to_dict", None)
    return _masked(to_dict()) if callable(to_dict) else value
