"""``genguard chat``: one chat completion that either answers or says exactly what went wrong."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..client.clients import Client
from ..client.retry import RetryPolicy
from ..core.exceptions import ConfigError
from ..core.outcome import Outcome
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    echo_json,
    endpoint_options,
    fail_usage,
    keys_argument,
    outcome_json,
    read_prompt,
)
from ._render import render_outcome


@click.command()
@click.argument("prompt")
@endpoint_options()
@click.option("--system", "-s", metavar="TEXT", help="A system message sent before the prompt.")
@click.option("--stream", is_flag=True, help="Stream the answer, printing it as it arrives.")
@click.option(
    "--validate",
    "validate",
    multiple=True,
    metavar="SPEC",
    help="Check the answer: json, json-schema:PATH, labels:a,b,c, min-words:N, min-chars:N, regex:PATTERN.",
)
@click.option(
    "--max-attempts", type=click.IntRange(min=1), default=4, show_default=True, help="Attempts per model."
)
@click.option(
    "--stall-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds a stream may stay silent before it counts as a timeout.",
)
@click.option(
    "--fallback", multiple=True, metavar="MODEL", help="A model to try when the first is unavailable."
)
@click.option("--max-tokens", type=click.IntRange(min=1), help="Cap the answer's length.")
def chat(
    prompt: str,
    base_url: str | None,
    api_key: tuple[str, ...],
    model: str,
    as_json: bool,
    timeout: float,
    system: str | None,
    stream: bool,
    validate: tuple[str, ...],
    max_attempts: int,
    stall_timeout: float,
    fallback: tuple[str, ...],
    max_tokens: int | None,
) -> None:
    """Send PROMPT ('-' reads stdin) and print the answer, or the diagnosis of why there is none.

    HTTP 200 is not success: a filtered, truncated, empty or cut-off answer is reported as a failure with
    its cause and fix. Exit 0 when the answer is usable, 1 when the generation failed, 2 on bad usage.

    \b
    Example:
      genguard chat "Name three primes" --base-url http://127.0.0.1:8000/v1 --stream
    """
    prompt = read_prompt(prompt)
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    params: dict[str, Any] = {}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    try:
        client = Client(
            base_url,
            api_key=keys_argument(api_key),
            timeout=timeout,
            stall_timeout=stall_timeout,
            retry=RetryPolicy(max_attempts=max_attempts),
            fallbacks=fallback,
            validate=list(validate) or None,
        )
    except ConfigError as exc:
        fail_usage(str(exc))
    secrets = client.keys
    try:
        with client:
            if stream and not as_json:
                outcome = _stream(client, model, messages, params)
            else:
                outcome = client.chat(model=model, messages=messages, stream=stream, **params)
    except ConfigError as exc:
        fail_usage(str(exc))
    if as_json:
        echo_json(outcome_json(outcome), secrets=secrets)
    elif outcome.ok:
        if not stream:
            click.echo(outcome.text or _tool_calls_text(outcome))
        elif not outcome.text and outcome.tool_calls:
            click.echo(_tool_calls_text(outcome))
    else:
        click.echo(render_outcome(outcome, color=sys.stderr.isatty()), err=True)
    sys.exit(EXIT_OK if outcome.ok else EXIT_FAILED)


def _stream(client: Client, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Outcome:
    wrote = False
    with client.stream(model=model, messages=messages, **params) as s:
        for text in s:
            click.echo(text, nl=False)
            wrote = True
    if wrote:
        click.echo()
    return s.outcome


def _tool_calls_text(outcome: Outcome) -> str:
    calls = outcome.tool_calls or ()
    return "\n".join(f"tool call: {c.name}({c.arguments})" for c in calls)
