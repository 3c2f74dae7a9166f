"""``genguard proxy``: serve the local gateway until interrupted."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
from typing import Any

import click

from ._common import otel_hooks, otel_option

CLIENT_KEY_ENV = "GENGUARD_PROXY_CLIENT_KEY"


@click.command()
@click.option("--config", "config_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="A TOML file of settings (docs/proxy.md); the options given here override it.")  # fmt: skip
@click.option("--upstream", metavar="URL", help="The provider's base URL, e.g. https://api.openai.com/v1.")
@click.option(
    "--api-key", "api_keys", multiple=True, metavar="KEY",
    help="The proxy's upstream key (repeatable: rotated on auth and quota failures); default "
    "GENGUARD_API_KEY, else OPENAI_API_KEY.",
)  # fmt: skip
@click.option(
    "--client-key", "client_keys", multiple=True, metavar="KEY",
    help=f"A key clients must present as Authorization: Bearer KEY (repeatable; also {CLIENT_KEY_ENV}, "
    "commas between several). Without one, any local client may call.",
)  # fmt: skip
@click.option("--fallback", "fallbacks", multiple=True, metavar="MODEL",
              help="Model tried once the asked one's retries are spent (repeatable).")  # fmt: skip
@click.option("--validate", "validate", multiple=True, metavar="MODEL=SPEC",
              help="A check of a model's answers (json, labels:a,b, min-words:N, regex:P, json-schema:PATH; "
              "MODEL * for every model); under --strict a failing answer is an error (repeatable).")  # fmt: skip
@click.option("--host", help="Interface to listen on.  [default: 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), help="Port; 0 picks a free one.  [default: 8080]")
@click.option("--strict/--no-strict", default=None,
              help="Answer a filtered, truncated, empty or invalid 200 with a 422 error every SDK raises.")  # fmt: skip
@click.option(
    "--max-attempts", type=click.IntRange(1), help="Attempts per model, the first included.  [default: 4]"
)
@click.option("--max-wait", type=click.FloatRange(0),
              help="Longest server wait honoured, in seconds; a longer one is answered at once, with "
              "retry-after-ms.  [default: 600]")  # fmt: skip
@click.option("--deadline", type=click.FloatRange(0, min_open=True),
              help="Seconds for a whole call, waits included (default: none).")  # fmt: skip
@click.option("--forward-client-key/--no-forward-client-key", default=None,
              help="Send the client's own Authorization key upstream instead of the proxy's.")  # fmt: skip
@click.option("--limiter", metavar="URL",
              help="Share one rate limit with every proxy and worker given the same URL: "
              "redis://host:6379/0?name=NAME.")  # fmt: skip
@click.option("--journal", metavar="DIR", type=click.Path(file_okay=False),
              help="Record every exchange in DIR (genguard report DIR shows it). Default: no record.")  # fmt: skip
@otel_option
def proxy(config_file: str | None, upstream: str | None, api_keys: tuple[str, ...], client_keys: tuple[str, ...],
          fallbacks: tuple[str, ...], validate: tuple[str, ...], host: str | None, port: int | None,
          strict: bool | None, max_attempts: int | None, max_wait: float | None, deadline: float | None,
          forward_client_key: bool | None, limiter: str | None, journal: str | None,
          otel: str | None) -> None:  # fmt: skip
    """Serve an OpenAI-compatible gateway that retries right and names every failure.

    Point any SDK or language at the printed base URL. Chat completions, embeddings, images and video tasks
    go through genguard's policy (the server's wait, key rotation, fallbacks) and every answer carries
    x-genguard-code, -kind, -attempts, -model and -request-ids; a final failure says x-should-retry: false so
    the SDK does not retry it again. Everything else is forwarded untouched.

    \b
    Examples:
      genguard proxy --upstream https://api.openai.com/v1 --fallback gpt-4o-mini
      genguard proxy --config proxy.toml --journal runs/proxy
      genguard proxy --upstream http://127.0.0.1:8000/v1 --port 0 --strict --validate '*=json'
    """
    from ..client.keys import resolve_keys
    from ..client.retry import RetryPolicy
    from ..core.exceptions import ConfigError
    from ..proxy import ConfigFileError, Proxy, ProxyConfig, read_config
    from ._common import fail_usage

    settings: dict[str, Any] = {}
    if config_file is not None:
        try:
            settings = read_config(config_file)
        except ConfigFileError as exc:
            fail_usage(str(exc))
    host = host or settings.pop("host", "127.0.0.1")
    port = settings.pop("port", 8080) if port is None else port
    upstream = upstream or settings.get("upstream")
    if not upstream:
        fail_usage('give the provider\'s base URL: --upstream URL (or upstream = "..." in --config FILE)')
    if not upstream.startswith(("http://", "https://")):
        fail_usage(f"--upstream must be an http:// or https:// URL, got {upstream!r}")
    try:
        keys = resolve_keys(list(api_keys or settings.get("api_keys", ())) or None)
    except (ConfigError, ValueError, TypeError) as exc:
        fail_usage(str(exc))
    clients = client_keys or tuple(
        k.strip() for k in os.environ.get(CLIENT_KEY_ENV, "").split(",") if k.strip()
    )
    validators = dict(settings.get("validators", {}))
    for item in validate:
        model, sep, spec = item.partition("=")
        if not sep or not model.strip() or not spec.strip():
            fail_usage(
                f"--validate takes MODEL=SPEC (e.g. gpt-4o-mini=json, or '*=min-words:3'), got {item!r}"
            )
        validators.setdefault(model.strip(), []).append(spec.strip())  # a flag adds to the file's checks
    if validate:
        from ..core.validate import build_validators

        for model, specs in validators.items():
            try:
                build_validators(list(specs))
            except (ConfigError, ValueError, TypeError, OSError) as exc:
                fail_usage(f"--validate {model}=...: {exc}")
    retry = settings.get("retry") or RetryPolicy()
    changes = {"max_attempts": max_attempts, "max_wait": max_wait, "deadline": deadline}
    retry = dataclasses.replace(retry, **{k: v for k, v in changes.items() if v is not None})
    fields: dict[str, Any] = {
        "upstream": upstream,
        "api_keys": keys,
        "client_keys": tuple(clients) or settings.get("client_keys", ()),
        "fallbacks": fallbacks or settings.get("fallbacks", ()),
        "strict": settings.get("strict", False) if strict is None else strict,
        "forward_client_key": settings.get("forward_client_key", False)
        if forward_client_key is None
        else forward_client_key,
        "validators": validators,
        "retry": retry,
        "hooks": otel_hooks(otel),
    }
    limiter = limiter or settings.get("limiter")
    if limiter:
        fields["open_gate"] = _gate_opener(limiter, upstream, keys)
    for name in ("timeout", "stall_timeout"):
        if name in settings:
            fields[name] = float(settings[name])
    folder = journal or settings.get("journal")
    if folder:
        from ..bulk.proxy_journal import ProxyJournal

        try:
            fields["recorder"] = ProxyJournal(folder, upstream=upstream)
        except Exception as exc:  # a folder that cannot hold a journal: say which, before serving
            fail_usage(f"--journal {folder}: cannot record there ({exc})")
    try:
        config = ProxyConfig(**fields)
    except ValueError as exc:
        fail_usage(str(exc))
    server = Proxy(config, host=host, port=port)
    try:
        server.start()
    except RuntimeError as exc:
        fail_usage(f"{exc}; choose another --port, or --port 0 for a free one")
    click.echo(f"listening on {server.base_url}", nl=True)
    sys.stdout.flush()

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # a service manager's stop: finish as Ctrl-C does, not in the middle

    # SIGTERM (systemd, docker stop, kill) stops the proxy as Ctrl-C does: the requests in flight get their
    # grace, and the journal writes what it holds, where the default action would drop both.
    signal.signal(signal.SIGTERM, on_sigterm)
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

    from ..bulk.limiter import ModelGates
    from ..bulk.limiter_redis import LimiterUnavailable, open_gate
    from ._common import fail_usage

    def budget(model: str | None) -> Any:
        # A model whose answers state limits of its own gets a budget of its own (None: the shared one), as in
        # batch runs.
        return open_gate(url, base_url=upstream, api_key=next(iter(keys), None), model=model)

    async def opener() -> ModelGates:
        gates = ModelGates(budget)
        await gates.open(None)
        return gates

    async def check() -> None:
        await (await opener()).aclose()

    try:
        asyncio.run(check())
    except (LimiterUnavailable, ValueError) as exc:
        fail_usage(f"--limiter: {exc}")
    return opener
