"""`genguard explain`: diagnose captured responses offline."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import click
import orjson

from ..core.capture import Exchange, is_sse, read_captures
from ..core.exceptions import CaptureError, ConfigError
from ..core.outcome import Outcome
from ..core.status_words import normalise_status
from ..core.taxonomy import Endpoint
from ..core.validate import Validator, apply_validators, parse_validate_spec
from ._render import render_outcome


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r} is not `Name: value`", param_hint="'--header'")
    return name.strip().lower(), value.strip()


def _looks_like_error(doc: object) -> bool:
    """Whether a bare JSON body is an error body (then its status is unknown rather than 200)."""
    if isinstance(doc, list) and doc:
        doc = doc[0]
    if not isinstance(doc, Mapping):
        return False
    if doc.get("error") and "choices" not in doc:
        # A failed media task ({"status": "failed", "error": {...}}) is a task body that came with a 200.
        return normalise_status(doc.get("status")) is None
    if doc.get("object") == "error" or doc.get("type") == "error":
        return True
    if "detail" in doc and not ({"choices", "data", "id", "status"} & doc.keys()):
        return True
    code = doc.get("code")
    # A Kling-style envelope: code 0 is success; any other code without data is the error itself.
    return isinstance(code, int) and code != 0 and not doc.get("data") and "message" in doc


def _endpoint_from_body(body: bytes) -> Endpoint | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    from ..core.media_body import detect_media

    try:
        return detect_media(doc)
    except Exception:
        return None


def explain_exchange(
    exchange: Exchange,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    endpoint: Endpoint | None = None,
    validators: tuple[Validator, ...] = (),
) -> Outcome:
    """The Outcome of one captured exchange; ``status``, ``headers`` and ``endpoint`` override the capture's.

    >>> [x] = read_captures(b'{"choices": [{"message": {"content": "hi"}, "finish_reason": "length"}]}',
    ...                     source="a.json")
    >>> explain_exchange(x).code
    'truncated'
    """
    merged: dict[str, str] = dict(exchange.headers)
    merged.update(headers or {})
    code = status if status is not None else exchange.status
    body = exchange.body
    ctype = merged.get("content-type", "").split(";", 1)[0].strip().lower()
    where = endpoint or exchange.endpoint_hint
    if code is None and exchange.url is not None and not body.strip():
        # Only a HAR entry has a URL but no status: status 0, the browser or proxy never got a response.
        return Outcome.failure(
            "connection_error",
            endpoint=where or "chat",
            message="the capture holds no response: the connection failed or was aborted before one came",
        )
    if ctype == "text/event-stream" or (ctype in ("", "text/plain") and is_sse(body)):
        from ..core.chat_stream import read_chat_stream

        outcome = read_chat_stream(body, status=code if code is not None else 200, headers=merged)
    else:
        from ..core.classify import classify_http
        from ..core.error_verdict import classify_error

        where = where or _endpoint_from_body(body) or "chat"
        if code is None:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            if _looks_like_error(doc):
                outcome = classify_error(None, merged, body, endpoint=where)
            else:
                outcome = classify_http(200, merged, body, endpoint=where)
        else:
            outcome = classify_http(code, merged, body, endpoint=where)
    return apply_validators(outcome, validators) if validators else outcome


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
    from ..core.secrets import redact

    click.echo(f"Error: {redact(message)}", err=True)


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
    from ..core.secrets import redact

    if as_json:
        click.echo(redact(outcome.with_extra(source=source).to_json()))
        return
    if not first:
        click.echo()
    click.echo(render_outcome(outcome, source=source, color=color), color=color)
