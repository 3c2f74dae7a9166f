"""``genguard image``: generate images, fetch them at once, check they are images, save them."""

from __future__ import annotations

import sys

import click

from ..client.clients import Client
from ..client.retry import RetryPolicy
from ..core.exceptions import ConfigError
from ..core.image_rules import RULES_ENV, ImageRuleBook
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    connection_options,
    echo_json,
    fail_usage,
    keys_argument,
    outcome_json,
    prepare_out,
    read_prompt,
)
from ._render import render_outcome


@click.command()
@click.argument("prompt")
@click.option(
    "--model",
    "-m",
    required=True,
    envvar="GENGUARD_IMAGE_MODEL",
    help="Image model [env: GENGUARD_IMAGE_MODEL].",
)
@click.option("--n", "n", type=click.IntRange(min=1), default=1, show_default=True, help="How many images.")
@click.option("--size", metavar="WxH", help="Image size, e.g. 1024x1024.")
@click.option(
    "--out", type=click.Path(file_okay=False), default=".", show_default=True, help="Folder to save into."
)
@connection_options()
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON (with files).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="Seconds to wait for each response.")  # fmt: skip
@click.option(
    "--max-attempts", type=click.IntRange(min=1), default=4, show_default=True, help="Attempts per call."
)
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False), envvar=RULES_ENV, metavar="FILE",
              help=f"A TOML or JSON file of extra model rules (max_n, rejects, returns, defaults) [env: {RULES_ENV}].")  # fmt: skip
def image(
    prompt: str,
    model: str,
    n: int,
    size: str | None,
    out: str,
    base_url: str | None,
    api_key: tuple[str, ...],
    as_json: bool,
    timeout: float,
    max_attempts: int,
    rules_file: str | None,
) -> None:
    """Generate N images for PROMPT ('-' reads stdin) and save them into --out.

    The model's rules are applied (gpt-image models get no response_format; dall-e-3 and qwen-image are
    asked once per image; --rules adds your own models); an empty result is reported as filtered; every
    file is checked by its bytes.
    Exit 0 when all images were saved, 1 when the generation or a download failed, 2 on bad usage.

    \b
    Example:
      genguard image "a red fox at dawn" --model dall-e-3 --n 2 --out pics
    """
    prompt = read_prompt(prompt)
    rules: ImageRuleBook | None = None
    if rules_file:
        rules = ImageRuleBook()
        try:
            rules.load(rules_file)
        except ValueError as exc:
            fail_usage(str(exc))
    try:
        client = Client(base_url, api_key=keys_argument(api_key), timeout=timeout,
                        retry=RetryPolicy(max_attempts=max_attempts))  # fmt: skip
    except ConfigError as exc:
        fail_usage(str(exc))
    out = prepare_out(out)
    try:
        with client:
            outcome = client.images.generate(prompt, model=model, n=n, size=size, out=out, rules=rules)
    except ConfigError as exc:
        fail_usage(str(exc))
    except KeyboardInterrupt:
        # Downloads write into temporary files that are removed on the way out: nothing half-written.
        click.echo("genguard: interrupted", err=True)
        sys.exit(130)
    if as_json:
        echo_json(outcome_json(outcome), secrets=client.keys)
    elif outcome.ok:
        for path in outcome.extra.get("files", []):
            click.echo(path)
        for revised in outcome.extra.get("revised_prompts", []):
            click.echo(f"revised prompt: {revised}", err=True)
    else:
        click.echo(render_outcome(outcome, color=sys.stderr.isatty()), err=True)
    # invalid_input means nothing was sent (an unreadable rules file, a bad parameter): bad usage.
    sys.exit(EXIT_OK if outcome.ok else EXIT_USAGE if outcome.code == "invalid_input" else EXIT_FAILED)
