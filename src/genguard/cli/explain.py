"""`genguard explain`: diagnose captured responses offline."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..core.capture import read_captures
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


def _read_file(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as fh:
            return fh.read()
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
    "--endpoint", type=click.Choice(["chat", "image", "video"]), help="Which endpoint the capture came from."
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
            exchanges = read_captures(_read_file(name), source=source)
        except CaptureError as exc:
            _fail(str(exc))
            failed = True
            continue
        for exchange in exchanges:
            outcome = explain_exchange(
                exchange, status=status, headers=headers, endpoint=where, validators=validators
            )
            _emit(outcome, exchange.source, as_json=as_json, color=color, first=first)
            first = False
    if failed:
        sys.exit(2)


def _emit(outcome: Outcome, source: str, *, as_json: bool, color: bool, first: bool) -> None:
    if as_json:
        line = redact(outcome.with_extra(source=source).to_json()).encode() + b"\n"
        sys.stdout.flush()
        sys.stdout.buffer.write(escape_json_controls(line))
        sys.stdout.buffer.flush()
        return
    if not first:
        click.echo()
    click.echo(render_outcome(outcome, source=source, color=color), color=color)
