"""Options shared by the commands that call an endpoint: base URL, keys, model, JSON output, timeout.

Each option also reads an environment variable, so a shell set up once needs no flags:
``GENGUARD_BASE_URL`` (or ``OPENAI_BASE_URL``), ``GENGUARD_API_KEY`` (or ``OPENAI_API_KEY``, several keys
separated by commas), ``GENGUARD_MODEL``.
"""

from __future__ import annotations

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


def read_prompt(prompt: str) -> str:
    """PROMPT as given, or standard input for ``-``; an empty one is bad usage (exit 2), never sent.

    >>> read_prompt("a red fox")
    'a red fox'
    """
    if prompt == "-":
        prompt = sys.stdin.read()
        if not prompt.strip():
            fail_usage("PROMPT is '-' but standard input was empty; pipe the prompt in, or give it as text")
    elif not prompt.strip():
        fail_usage("PROMPT is empty; give the text to send, or '-' to read it from standard input")
    return prompt


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
