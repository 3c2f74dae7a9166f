"""Bytes that are not UTF-8 text, in an argument, an option, an environment variable or standard input, are bad
usage for every command: exit 2 with what was wrong and how to fix it, never a traceback and never exit 1
(which says "the generation failed")."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from genguard.cli import _COMMANDS, cli
from genguard.sim import Simulator

KEY = "sk-cli-text-0123456789abcdef"
LATIN1 = "café au lait".encode("latin-1")  # what a Latin-1 file or terminal hands over


def run(args: list[str | bytes], *, stdin: bytes | None = None, env: dict[str, str | bytes] | None = None,
        ) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    full_env: dict[str, str | bytes] = {
        k: v for k, v in os.environ.items() if not k.startswith(("GENGUARD_", "OPENAI_"))
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "genguard", *args], input=stdin, capture_output=True, env=full_env, timeout=60
    )  # type: ignore[call-overload]


def refused(proc: subprocess.CompletedProcess[bytes], name: str) -> str:
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert f"{name} is not valid text" in err, err
    assert "UTF-8" in err
    assert ("iconv" in err) or ("rename" in err) or ("set it" in err), err  # how to fix it
    assert KEY not in err
    return err


CONNECT: list[str | bytes] = ["--base-url", "http://127.0.0.1:9/v1", "--api-key", KEY]


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["chat", b"\xff\xfe", *CONNECT], "PROMPT"),
        (["chat", "hi", "--system", LATIN1, *CONNECT], "the value of --system"),
        (["chat", "hi", b"--system=\xe9", *CONNECT], "the value of --system"),
        (["chat", "hi", "--validate", b"labels:\xe9,b", *CONNECT], "the value of --validate"),
        (["image", b"\xff\xfe", "-m", "dall-e-2", *CONNECT], "PROMPT"),
        (["image", "a fox", b"-m\xff", *CONNECT], "the value of -m"),
        (["video", LATIN1, "-m", "sora-2", *CONNECT], "PROMPT"),
        (["explain", "--header", b"X-Note: \xe9", "-"], "the value of --header"),
        (["doctor", "--model", b"\xff", *CONNECT], "the value of --model"),
        (["simulate", "--scenario", b"\xff"], "the value of --scenario"),
        (["simulate", "--api-key", b"sk-\xff"], "the value of --api-key"),
    ],
)
def test_undecodable_argv_exits_2_naming_it(args: list[str | bytes], name: str) -> None:
    refused(run(args, stdin=b""), name)


@pytest.mark.parametrize(
    ("command", "data"),
    [
        (["chat", "-"], b"\xff\xfe"),
        (["chat", "-"], LATIN1),
        (["chat", "-"], b"fine start, then \x80 a stray byte\n"),
        (["image", "-", "-m", "dall-e-2"], LATIN1),
        (["video", "-", "-m", "sora-2"], b"\xff\xfe"),
    ],
)
def test_undecodable_stdin_exits_2(command: list[str | bytes], data: bytes, tmp_path: Path) -> None:
    extra: list[str | bytes] = ["--out", str(tmp_path)] if command[0] != "chat" else []
    err = refused(run([*command, *CONNECT, *extra], stdin=data), "standard input")
    assert "byte 0x" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("variable", "command"),
    [
        ("GENGUARD_MODEL", ["chat", "hi"]),
        ("GENGUARD_IMAGE_MODEL", ["image", "a fox"]),
        ("GENGUARD_API_KEY", ["chat", "hi", "--base-url", "http://127.0.0.1:9/v1"]),
        ("OPENAI_BASE_URL", ["doctor"]),
    ],
)
def test_undecodable_environment_exits_2_naming_the_variable(
    variable: str, command: list[str | bytes]
) -> None:
    refused(run(command, env={variable: b"x\xff"}), f"the environment variable {variable}")


def test_a_non_utf8_file_name_is_refused_with_a_rename_hint(tmp_path: Path) -> None:
    err = refused(run(["explain", os.fsencode(tmp_path) + b"/capture-\xff.http"]), "FILES")
    assert "rename" in err


def test_utf8_text_with_accents_and_a_bom_still_works(sim: Simulator) -> None:
    connect = ["--base-url", sim.base_url, "--api-key", KEY]
    assert run(["chat", "café ☕ naïve", *connect]).returncode == 0
    assert run(["chat", "-", "--system", "réponds en français", *connect],
               stdin="\ufeffcafé ☕\n".encode()).returncode == 0  # fmt: skip


def _value_params() -> list[tuple[str, str, list[str]]]:
    """Every command's every parameter that takes a value, with the arguments that give it bad bytes."""
    cases = []
    for name in sorted(_COMMANDS):
        module, attr = _COMMANDS[name].split(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        for param in command.params:
            bad = "x\udcff"  # what the bytes b"x\xff" become in sys.argv
            if isinstance(param, click.Argument):
                cases.append((name, (param.name or "").upper(), [name, bad]))
            elif isinstance(param, click.Option) and not param.is_flag and not param.count:
                cases.append((name, f"the value of {param.opts[0]}", [name, param.opts[0], bad]))
    return cases


@pytest.mark.parametrize(("command", "name", "args"), _value_params())
def test_every_value_of_every_command_is_checked(command: str, name: str, args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert f"{name} is not valid text (byte 0xff at position 1 is not UTF-8)" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
