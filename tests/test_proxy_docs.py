"""docs/proxy.md's examples run: the TOML file reads as the page says, the Python example serves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genguard.proxy import read_config
from genguard.sim import Simulator

PAGE = Path(__file__).parent.parent / "docs" / "proxy.md"

pytestmark = pytest.mark.timeout(60)


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_documented_config_file_reads(tmp_path: Path) -> None:
    [toml] = blocks("toml")
    path = tmp_path / "proxy.toml"
    path.write_text(toml)
    env = {"OPENAI_API_KEY": "sk-a", "OPENAI_API_KEY_SPARE": "sk-b", "PROXY_CLIENT_KEY": "gg-c"}
    got = read_config(path, env)
    assert got["api_keys"] == ("sk-a", "sk-b")
    assert got["client_keys"] == ("gg-c",)
    assert got["retry"].deadline == 120
    assert set(got["validators"]) == {"gpt-4o-mini", "*"}


def test_the_documented_python_example_serves(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [example] = [b for b in blocks("python") if "genguard.Proxy(" in b]
    monkeypatch.chdir(tmp_path)
    code = example.replace("http://127.0.0.1:8000/v1", sim.base_url)
    exec(compile(code, "docs/proxy.md", "exec"), {})
    assert (tmp_path / "runs" / "proxy" / "journal.sqlite").exists()
