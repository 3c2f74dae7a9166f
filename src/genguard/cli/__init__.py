"""The ``genguard`` command line: one module per command, loaded only when that command runs."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from .. import __version__

# name -> "module:function", imported only when that command runs.
_COMMANDS: dict[str, str] = {
    "batch": "genguard.cli.batch:batch",
    "chat": "genguard.cli.chat:chat",
    "demo": "genguard.cli.demo:demo",
    "doctor": "genguard.cli.doctor:doctor",
    "explain": "genguard.cli.explain:explain",
    "image": "genguard.cli.image:image",
    "proxy": "genguard.cli.proxy:proxy",
    "report": "genguard.cli.report:report",
    "simulate": "genguard.cli.simulate:simulate",
    "video": "genguard.cli.video:video",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            from ._common import check_text_arguments

            # Bytes that are not text (a Latin-1 prompt in a UTF-8 shell) are bad usage, exit 2, for every
            # command alike: sent on, they ended in a traceback, or in exit 1 ("the generation failed").
            check_text_arguments(command, rest)
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # click would print "Aborted!" and exit 1, which reads as "the generation failed"; Ctrl-C is 130
            # for every command, as a shell expects.
            click.echo("\ngenguard: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genguard")
def cli() -> None:
    """genguard: AI API calls that fail loudly, retry correctly and explain themselves.

    HTTP 200 is not success: genguard names every failure (filtered, truncated, empty, cut-off streams,
    failed video tasks...) with a cause and a fix. Start with `genguard demo`, which runs against the
    embedded simulator with no key and no network.
    """


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``genguard`` console script."""
    return cli.main(args=argv, prog_name="genguard")
