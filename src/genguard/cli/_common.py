"""Options shared by the commands that call an endpoint: base URL, keys, model, JSON output, timeout.

Each option also reads an environment variable, so a shell set up once needs no flags:
``GENGUARD_BASE_URL`` (or ``OPENAI_BASE_URL``), ``GENGUARD_API_KEY`` (or ``OPENAI_API_KEY``, several keys
separated by commas), ``GENGUARD_MODEL``.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click
import orjson

from ..core.outcome import Outcome, _json_default
from ..core.secrets import redact

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MODEL = "gpt-4o-mini"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _apply(func: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        func = option(func)
    return func


def connection_options(*, repeat_key: bool = True) -> Callable[[F], F]:
    """Decorate a command with ``--base-url`` and ``--api-key``: where to send and with which key(s).

    >>> @click.command()
    ... @connection_options()
    ... def hello(base_url, api_key): ...
    """

    def decorate(func: F) -> F:
        return _apply(
            func,
            [
                click.option(
                    "--base-url",
                    metavar="URL",
                    help="The API's base URL, ending in /v1 [env: GENGUARD_BASE_URL, OPENAI_BASE_URL].",
                ),
                click.option(
                    "--api-key",
                    "api_key",
                    metavar="KEY",
                    multiple=repeat_key,
                    help="API key; repeat to rotate keys on auth or quota failures "
                    "[env: GENGUARD_API_KEY, OPENAI_API_KEY]."
                    if repeat_key
                    else "API key [env: GENGUARD_API_KEY, OPENAI_API_KEY].",
                ),
            ],
        )

    return decorate


def endpoint_options(*, repeat_key: bool = True) -> Callable[[F], F]:
    """Decorate a chat command with :func:`connection_options` plus ``--model``, ``--json`` and ``--timeout``.

    >>> @click.command()
    ... @endpoint_options()
    ... def hello(base_url, api_key, model, as_json, timeout): ...
    """

    def decorate(func: F) -> F:
        return connection_options(repeat_key=repeat_key)(
            _apply(
                func,
                [
                    click.option(
                        "--model",
                        "-m",
                        envvar="GENGUARD_MODEL",
                        default=DEFAULT_MODEL,
                        show_default=True,
                        help="Model name [env: GENGUARD_MODEL].",
                    ),
                    click.option(
                        "--json", "as_json", is_flag=True, help="Print JSON instead of readable text."
                    ),
                    click.option(
                        "--timeout",
                        type=click.FloatRange(min=0, min_open=True),
                        default=60.0,
                        show_default=True,
                        help="Seconds to wait for a response.",
                    ),
                ],
            )
        )

    return decorate


def keys_argument(api_key: Sequence[str] | str | None) -> list[str] | None:
    """The ``api_key`` value for a client: ``None`` (use the environment) when no ``--api-key`` was given."""
    if not api_key:
        return None
    return [api_key] if isinstance(api_key, str) else list(api_key)


def echo_json(data: Any, *, secrets: Sequence[str] = ()) -> None:
    """Print one JSON object on one line, with any key masked."""
    text = orjson.dumps(data, default=_json_default).decode()
    click.echo(redact(text, secrets))


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """The TAXONOMY.md object of ``outcome`` plus its attempt history."""
    data = outcome.to_dict()
    data["history"] = [a.to_dict() for a in outcome.history]
    return data


def fail_usage(message: str) -> NoReturn:
    """Exit 2 with ``message`` on stderr: bad usage or configuration, nothing was generated."""
    click.echo(f"genguard: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _encoding_name(encoding: str) -> str:
    return codecs.lookup(encoding).name.upper()


def _undecodable(raw: bytes, encoding: str) -> str | None:
    """Where ``raw`` stops being text in ``encoding``, said for people; ``None`` when it is text."""
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as exc:
        return f"byte 0x{raw[exc.start]:02x} at position {exc.start} is not {_encoding_name(encoding)}"
    return None


_TEXT_FIX = "give it as {encoding} text (convert a file with e.g. `iconv -f LATIN1 -t UTF-8 FILE`)"
_PATH_FIX = "it could not be shown or reported; rename the file (or link to it) with a {encoding} name"


def _check_text(value: str, what: str, fix: str = _TEXT_FIX) -> None:
    # Bytes that are not text in the locale's encoding reach Python as lone surrogates (PEP 383): they cannot
    # be sent, printed or saved, so they are refused here instead of failing deep inside a request.
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        encoding = sys.getfilesystemencoding()
        where = _undecodable(os.fsencode(value), encoding) or "it holds bytes that are not text"
        fail_usage(f"{what} is not valid text ({where}); " + fix.format(encoding=_encoding_name(encoding)))


def check_text_arguments(command: click.Command, args: Sequence[str]) -> None:
    """Exit 2 naming the argument, option or environment variable whose value is not text (undecodable
    bytes), before ``command`` runs: every command that takes text refuses it the same way.

    >>> check_text_arguments(click.Command("x"), ["fine", "--also=fine"])
    """
    options: dict[str, click.Parameter] = {}
    arguments: list[click.Parameter] = []
    for each in command.params:
        if isinstance(each, click.Option):
            options.update(dict.fromkeys((*each.opts, *each.secondary_opts), each))
        else:
            arguments.append(each)
    pending: str | None = None  # the option whose value is the next arg
    position = 0
    only_arguments = False
    for arg in args:
        param: click.Parameter | None = None
        if pending is not None:
            what, param, pending = f"the value of {pending}", options[pending], None
        elif arg == "--" and not only_arguments:
            only_arguments = True
            continue
        elif arg.startswith("-") and arg != "-" and not only_arguments:
            name, eq, value = arg.partition("=")
            param = options.get(name)
            if param is None and not arg.startswith("--") and len(arg) > 2 and arg[:2] in options:
                name, eq, value = arg[:2], "=", arg[2:]  # -mMODEL
                param = options[name]
            if not (isinstance(param, click.Option) and not param.is_flag and not param.count):
                what = f"the option {name!r}"
            elif eq:
                what, arg = f"the value of {name}", value
            else:
                pending = name
                continue
        elif arguments:
            param = arguments[min(position, len(arguments) - 1)]
            what = (param.name or "argument").upper()
            position += 1
        else:
            what = f"the argument {arg!r}"
        is_path = param is not None and (isinstance(param.type, click.Path) or param.name == "files")
        _check_text(arg, what, _PATH_FIX if is_path else _TEXT_FIX)
    names = {"GENGUARD_API_KEY", "OPENAI_API_KEY", "GENGUARD_BASE_URL", "OPENAI_BASE_URL"}
    for each in command.params:
        envvar = getattr(each, "envvar", None)
        names.update([envvar] if isinstance(envvar, str) else envvar or ())
    for variable in sorted(names):
        setting = os.environ.get(variable)
        if setting:
            _check_text(
                setting, f"the environment variable {variable}", "set it to {encoding} text, or unset it"
            )


def read_prompt(prompt: str) -> str:
    """PROMPT as given, or standard input for ``-``; an empty one is bad usage (exit 2), never sent, and so
    is input that is not text in the terminal's encoding.

    >>> read_prompt("a red fox")
    'a red fox'
    """
    if prompt == "-":
        prompt = _read_stdin()
        if not prompt.strip():
            fail_usage("PROMPT is '-' but standard input was empty; pipe the prompt in, or give it as text")
    elif not prompt.strip():
        fail_usage("PROMPT is empty; give the text to send, or '-' to read it from standard input")
    return prompt


def _read_stdin() -> str:
    stream = sys.stdin
    raw = getattr(stream, "buffer", None)
    if raw is None:
        return stream.read()
    data: bytes = raw.read()
    encoding = stream.encoding or "utf-8"
    where = _undecodable(data, encoding)
    if where is not None:
        fail_usage(
            f"standard input is not valid text ({where}); "
            + _TEXT_FIX.format(encoding=_encoding_name(encoding))
        )
    return data.decode(encoding).removeprefix("\ufeff")  # a BOM is not part of the prompt


def prepare_out(out: str) -> str:
    """Create the ``--out`` folder and check it can be written, before anything is generated: a file
    that cannot be saved is the user's setting to fix (exit 2), not a failed download to retry."""
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        fail_usage(f"cannot create the --out folder {out!r}: {exc.strerror or exc}")
    if not os.access(out, os.W_OK | os.X_OK):
        fail_usage(f"cannot write into the --out folder {out!r}: permission denied")
    return out


def otel_option(func: F) -> F:
    """Decorate a command with ``--otel console|otlp``: trace its calls with OpenTelemetry (the otel extra).

    >>> @click.command()
    ... @otel_option
    ... def hello(otel): ...
    """
    return click.option(
        "--otel",
        type=click.Choice(["console", "otlp"]),
        default=None,
        help="Trace every call with OpenTelemetry (GenAI conventions): spans and metrics to stderr (console) "
        "or over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (otlp). Needs pip install 'genguard[otel]'.",
    )(func)


def otel_hooks(otel: str | None) -> tuple[Any, ...]:
    """The hooks ``--otel`` asks for: none, or one exporting where it says (a usage error if it cannot)."""
    if otel is None:
        return ()
    try:
        from ..integrations.otel import setup
    except ImportError as exc:
        fail_usage(f"--otel needs the otel extra: pip install 'genguard[otel]' ({exc})")
    try:
        return (setup(otel),)
    except ImportError as exc:
        fail_usage(str(exc))
