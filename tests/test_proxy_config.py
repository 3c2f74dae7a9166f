"""``genguard proxy --config FILE``: the TOML file, its errors (file, line, key; exit 2 before binding), and flags
that override it; the command served over real HTTP with the official openai SDK."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from click.testing import CliRunner

from genguard.cli import cli
from genguard.proxy import ConfigFileError, read_config
from genguard.sim import Simulator

UPSTREAM_KEY = "sk-config-file-upstream-key-24680"
CLIENT_KEY = "gg-config-file-client-key-13579"
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY, "CLIENT_KEY": CLIENT_KEY}
MSG: Any = [{"role": "user", "content": "hi"}]

pytestmark = pytest.mark.timeout(60)

GOOD = """\
upstream = "http://127.0.0.1:9/v1"
api_keys = ["env:UPSTREAM_KEY"]
client_keys = ["env:CLIENT_KEY"]
fallbacks = ["gpt-4o"]
strict = true
port = 0
timeout = 30

[retry]
max_attempts = 2
max_wait = 5

[validators]
"gpt-4o-mini" = ["json", "min-words:2"]
"*" = "labels:yes,no"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    return path


def test_a_file_gives_every_setting_and_keys_come_from_the_environment(tmp_path: Path) -> None:
    got = read_config(write(tmp_path, GOOD), ENV)
    assert got["api_keys"] == (UPSTREAM_KEY,)
    assert got["client_keys"] == (CLIENT_KEY,)
    assert got["fallbacks"] == ("gpt-4o",)
    assert got["strict"] is True
    assert got["port"] == 0
    assert got["retry"].max_attempts == 2
    assert got["retry"].max_wait == 5
    assert dict(got["validators"]) == {"gpt-4o-mini": ["json", "min-words:2"], "*": ["labels:yes,no"]}


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        (
            'upstream = "http://h/v1"\napi_keys = ["sk-literal-key-in-a-file"]\n',
            2,
            'api_keys: api_keys[0] is not an "env:NAME"',
        ),
        (
            'upstream = "http://h/v1"\n\napi_keys = ["env:NOT_SET_ANYWHERE"]\n',
            3,
            "NOT_SET_ANYWHERE, which is not set",
        ),
        ('upstream = "http://h/v1"\nstrikt = true\n', 2, "strikt: unknown setting"),
        (
            'upstream = "http://h/v1"\n[retry]\nmax_attempts = 0\n',
            3,
            "retry.max_attempts: must be a whole number",
        ),
        ('upstream = "http://h/v1"\n[retry]\nmax_tries = 3\n', 3, "retry.max_tries: unknown setting"),
        ('upstream = "http://h/v1"\nstrict = "yes"\n', 2, "strict: must be true or false"),
        ('upstream = "h:8000/v1"\n', 1, "upstream: must be an http:// or https:// URL"),
        ('upstream = "http://h/v1"\n[validators]\n"m" = "labels"\n', 3, 'validators."m"'),
        ('upstream = "http://h/v1"\nport = 70000\n', 2, "port: must be a port number"),
    ],
)
def test_a_bad_file_names_its_line_and_key(tmp_path: Path, text: str, line: int, says: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as info:
        read_config(path, ENV)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ")
    assert says in message
    assert "sk-literal-key-in-a-file" not in message  # a literal key is refused without being shown


def test_a_toml_syntax_error_gives_its_position(tmp_path: Path) -> None:
    path = write(tmp_path, 'upstream = "http://h/v1"\nstrict = \n')
    with pytest.raises(ConfigFileError, match=r"not valid TOML: .*line 2"):
        read_config(path, ENV)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--config", "{missing}"], "cannot be read"),
        (["--config", "{bad}"], "strikt: unknown setting"),
        ([], "give the provider's base URL"),
        (["--upstream", "http://h/v1", "--validate", "gpt-4o"], "--validate takes MODEL=SPEC"),
        (["--upstream", "http://h/v1", "--validate", "m=labels"], "--validate m=..."),
        (["--upstream", "http://h/v1", "--client-key", "a", "--forward-client-key"], "exclude each other"),
    ],
)
def test_bad_settings_exit_2_before_binding(tmp_path: Path, args: list[str], says: str) -> None:
    bad = write(tmp_path, 'upstream = "http://h/v1"\nstrikt = true\n')
    argv = [a.format(missing=tmp_path / "nope.toml", bad=bad) for a in args]
    result = CliRunner().invoke(cli, ["proxy", "--api-key", "sk-x", *argv])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "listening" not in result.output


@pytest.mark.slow
def test_the_command_serves_what_the_file_says_and_flags_override_it(sim: Simulator, tmp_path: Path) -> None:
    sim.configure(api_keys=(UPSTREAM_KEY,), reply="maybe")
    path = write(tmp_path, GOOD.replace("http://127.0.0.1:9/v1", sim.base_url))
    command = [sys.executable, "-m", "genguard", "proxy", "--config", str(path),
               "--max-attempts", "1", "--validate", "gpt-4o=labels:maybe"]  # fmt: skip
    env = {**os.environ, **ENV}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip().removeprefix("listening on ")
        assert base_url.startswith("http://127.0.0.1:")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url, api_key=UPSTREAM_KEY, timeout=10).models.list()
        client = openai.OpenAI(base_url=base_url, api_key=CLIENT_KEY, timeout=10)
        # strict and the file's validators: "maybe" is no JSON for gpt-4o-mini, and no label of "*".
        with pytest.raises(openai.UnprocessableEntityError) as info:
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert info.value.code == "invalid_json"
        assert info.value.response.headers["x-genguard-attempts"] == "1"  # --max-attempts over the file's 2
        with pytest.raises(openai.UnprocessableEntityError) as info:
            client.chat.completions.create(model="o3-mini", messages=MSG)
        assert info.value.code == "unexpected_label"
        # --validate added a check for gpt-4o that this answer passes.
        assert (
            client.chat.completions.create(model="gpt-4o", messages=MSG).choices[0].message.content == "maybe"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert UPSTREAM_KEY not in err
    assert CLIENT_KEY not in err
