"""``genguard proxy``: serve the local gateway until interrupted."""

from __future__ import annotations

import sys
import threading
from typing import Any

import click


@click.command()
@click.option(
    "--upstream",
    required=True,
    metavar="URL",
    help="The provider's base URL, e.g. https://api.openai.com/v1.",
)
@click.option(
    "--api-key", "api_keys", multiple=True, metavar="KEY",
    help="The proxy's upstream key (repeatable: rotated on auth and quota failures); default "
    "GENGUARD_API_KEY, else OPENAI_API_KEY.",
)  # fmt: skip
@click.option(
    "--fallback",
    "fallbacks",
    multiple=True,
    metavar="MODEL",
    help="Model tried once the asked one's retries are spent (repeatable).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port; 0 picks a free one."
)
@click.option(
    "--strict",
    is_flag=True,
    help="Answer a filtered, truncated or empty 200 with a 422 error every SDK raises.",
)
@click.option("--max-attempts", type=click.IntRange(1), default=4, show_default=True,
              help="Attempts per model, the first included.")  # fmt: skip
@click.option("--max-wait", type=click.FloatRange(0), default=600.0, show_default=True,
              help="Longest server wait honoured, in seconds; a longer one is answered at once, with "
              "retry-after-ms.")  # fmt: skip
@click.option("--deadline", type=click.FloatRange(0, min_open=True),
              help="Seconds for a whole call, waits included (default: none).")  # fmt: skip
@click.option(
    "--limiter",
    metavar="URL",
    help="Share one rate limit with every proxy and worker given the same URL: "
    "redis://host:6379/0?name=NAME.",
)
@click.option(
    "--forward-client-key",
    is_flag=True,
    help="Send the client's own Authorization key upstream instead of the proxy's.",
)
def proxy(host: str, port: int, upstream: str, api_keys: tuple[str, ...], fallbacks: tuple[str, ...], strict: bool,
          forward_client_key: bool, max_attempts: int, max_wait: float, deadline: float | None,
          limiter: str | None) -> None:  # fmt: skip
    """Serve an OpenAI-compatible gateway that retries right and names every failure.

    Point any SDK or language at the printed base URL. Chat completions go through genguard's policy
    (the server's wait, key rotation, fallbacks) and every answer carries x-genguard-code, -kind,
    -attempts, -model and -request-ids; a final failure says x-should-retry: false so the SDK does not
    retry it again. Everything else is forwarded untouched.

    \b
    Examples:
      genguard proxy --upstream https://api.openai.com/v1 --fallback gpt-4o-mini
      genguard proxy --upstream http://127.0.0.1:8000/v1 --port 0 --strict
    """
    from ..client.keys import resolve_keys
    from ..client.retry import RetryPolicy
    from ..core.exceptions import ConfigError
    from ..proxy import Proxy, ProxyConfig
    from ._common import fail_usage

    if not upstream.startswith(("http://", "https://")):
        fail_usage(f"--upstream must be an http:// or https:// URL, got {upstream!r}")
    try:
        keys = resolve_keys(list(api_keys) or None)
    except (ConfigError, ValueError) as exc:
        fail_usage(str(exc))
    config = ProxyConfig(upstream=upstream, api_keys=keys, fallbacks=fallbacks, strict=strict,
                         forward_client_key=forward_client_key,
                         retry=RetryPolicy(max_attempts=max_attempts, max_wait=max_wait, deadline=deadline),
                         open_gate=None if limiter is None else _gate_opener(limiter, upstream, keys))  # fmt: skip
    server = Proxy(config, host=host, port=port)
    try:
        server.start()
    except RuntimeError as exc:
        fail_usage(f"{exc}; choose another --port, or --port 0 for a free one")
    click.echo(f"listening on {server.base_url}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        sys.stdout.flush()


def _gate_opener(url: str, upstream: str, keys: tuple[str, ...]) -> Any:
    """Check now that the shared limiter answers (exit 2 if not, its password masked); the proxy opens its
    own connection in the server's event loop."""
    import asyncio

    from ..bulk.limiter_redis import LimiterUnavailable, open_gate
    from ._common import fail_usage

    def opener() -> Any:
        return open_gate(url, base_url=upstream, api_key=next(iter(keys), None))

    async def check() -> None:
        gate = await opener()
        await gate.aclose()

    try:
        asyncio.run(check())
    except (LimiterUnavailable, ValueError) as exc:
        fail_usage(f"--limiter: {exc}")
    return opener
