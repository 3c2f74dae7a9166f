"""``genguard simulate``: serve the OpenAI-compatible simulator until interrupted."""

from __future__ import annotations

import sys
import threading

import click

from ..sim._config import (
    DIALECTS,
    MAX_BODY_BYTES,
    SHOULD_RETRY,
    ScenarioError,
    SimConfig,
    parse_chaos,
    parse_pairs,
    parse_scenario,
)


def _scenario(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_scenario(value)
    except ScenarioError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _chaos(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, float]:
    try:
        return parse_chaos(",".join(value))
    except ScenarioError as exc:
        raise click.BadParameter(str(exc)) from None


def _pairs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    try:
        return parse_pairs(value, what=f"--{(param.name or '').replace('_', '-')}")
    except ScenarioError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--scenario",
    default="ok",
    show_default=True,
    callback=_scenario,
    help="Failure every request plays: a code of docs/failures.md (rate_limited, server_error, timeout, "
    "incomplete_stream, invalid_json...), or NAME:N to fail the first N attempts of each request.",
)
@click.option(
    "--chaos",
    multiple=True,
    callback=_chaos,
    metavar="NAME=RATE,...",
    help='Random failures, e.g. "rate_limited=0.05,server_error=0.02" (repeatable).',
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Seed for chaos dice and generated text."
)
@click.option(
    "--dialect",
    default="openai",
    show_default=True,
    type=click.Choice(DIALECTS),
    help="Provider family whose error bodies and stream errors to imitate.",
)
@click.option("--rpm", type=click.IntRange(1), help="Requests per minute per API key (token bucket).")
@click.option("--tpm", type=click.IntRange(1), help="Tokens per minute per API key (token bucket).")
@click.option(
    "--rpm-for",
    multiple=True,
    callback=_pairs,
    metavar="MODEL=N",
    help="Requests per minute of MODEL per API key, in buckets of its own, as OpenAI limits each model on "
    "its own (repeatable; wins over --rpm for MODEL).",
)
@click.option(
    "--tpm-for",
    multiple=True,
    callback=_pairs,
    metavar="MODEL=N",
    help="Tokens per minute of MODEL per API key, in buckets of its own, as OpenAI limits each model on "
    "its own (repeatable; wins over --tpm for MODEL).",
)
@click.option(
    "--rate-window",
    "rate_window_s",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0, 60, min_open=True),
    help="Seconds over which --rpm/--tpm are enforced: 1 lets only rpm/60 requests through at once.",
)
@click.option(
    "--quota-tokens", type=click.IntRange(1), help="Tokens a key may use in all; then 429 insufficient_quota."
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="Accepted API key (repeatable); other keys get 401. None given: any key works.",
)
@click.option(
    "--ttft-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Delay before the first token.",
)
@click.option(
    "--tokens-per-s",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Generation speed; 0 is as fast as possible.",
)
@click.option(
    "--task-seconds",
    default=8.0,
    show_default=True,
    type=click.FloatRange(0),
    help="How long a video task takes to finish.",
)
@click.option(
    "--image-url-ttl",
    "image_url_ttl_s",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds before an image URL expires (then 403).",
)
@click.option(
    "--retry-after",
    "retry_after_s",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Wait the rate_limited and unavailable scenarios advertise, in seconds.",
)
@click.option(
    "--stall-s",
    default=300.0,
    show_default=True,
    type=click.FloatRange(0),
    help="How long the timeout scenario stalls before answering 504.",
)
@click.option(
    "--ratelimit-headers/--no-ratelimit-headers",
    default=True,
    show_default=True,
    help="Send x-ratelimit-* (anthropic-ratelimit-* in the anthropic dialect) on every response.",
)
@click.option(
    "--should-retry",
    default="off",
    show_default=True,
    type=click.Choice(SHOULD_RETRY),
    help="Send x-should-retry on errors: auto (the taxonomy's verdict per code), true, false, or off.",
)
@click.option("--model", "models", multiple=True, help="Model listed by GET /v1/models (repeatable).")
@click.option(
    "--reply", metavar="TEXT", help="Answer every chat request with this text instead of generated words."
)
@click.option(
    "--reply-for",
    multiple=True,
    callback=_pairs,
    metavar="MODEL=TEXT",
    help="Answer requests for MODEL with TEXT (repeatable; wins over --reply).",
)
@click.option(
    "--context-window",
    type=click.IntRange(1),
    help="Tokens a prompt plus max_tokens may take, for every model (default: each model family's own).",
)
@click.option(
    "--context-window-for",
    multiple=True,
    callback=_pairs,
    metavar="MODEL=N",
    help="The context window of MODEL (repeatable; wins over --context-window).",
)
@click.option(
    "--prompt-cache/--no-prompt-cache",
    default=True,
    show_default=True,
    help="Report the prefix of a prompt of 1024+ tokens that the same key sent to the same model recently as "
    "cached tokens (usage.prompt_tokens_details.cached_tokens), as OpenAI caches prompts.",
)
@click.option(
    "--prompt-cache-ttl",
    "prompt_cache_ttl_s",
    default=600.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Seconds a cached prompt prefix is kept after its last use.",
)
@click.option(
    "--max-body-bytes",
    default=MAX_BODY_BYTES,
    show_default=True,
    type=click.IntRange(1),
    help="Largest request body accepted; a larger one gets 413.",
)
def simulate(host: str, port: int, models: tuple[str, ...], **settings: object) -> None:
    """Serve an OpenAI-compatible API that plays any failure, on demand or at random.

    Point any client at the printed base URL. Choose a failure per request with the header
    `x-genguard-scenario: NAME`; see what your client did at GET /_genguard/stats.

    \b
    Examples:
      genguard simulate --port 0
      genguard simulate --scenario server_error:2 --dialect anthropic
      genguard simulate --chaos rate_limited=0.05,incomplete_stream=0.01 --seed 7 --rpm 60
      genguard simulate --tpm 30000 --should-retry auto --no-ratelimit-headers
      genguard simulate --rpm 600 --rpm-for gpt-4o=60 --tpm-for gpt-4o=30000
    """
    from ..sim._server import Simulator

    try:
        config = SimConfig(**({"models": models} if models else {}), **settings)  # type: ignore[arg-type]
    except (ScenarioError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    sim = Simulator(config, host=host, port=port)
    try:
        sim.start()
    except RuntimeError as exc:
        hint = "; choose another --port, or --port 0 for a free one" if "in use" in str(exc) else ""
        click.echo(f"Error: {exc}{hint}", err=True)
        sys.exit(2)
    click.echo(f"listening on {sim.base_url}", err=False)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
