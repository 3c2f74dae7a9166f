"""`genguard simulate` without serving: the config each command line builds, for tests of its options."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from genguard.cli import cli
from genguard.sim import _server as sim_server
from genguard.sim._config import SimConfig


def configs_of(monkeypatch: pytest.MonkeyPatch, *argvs: list[str]) -> list[SimConfig]:
    """The SimConfig each ``genguard simulate`` command line builds (the Simulator is stood in for, so nothing
    is served); each command's output must say so."""
    built: list[SimConfig] = []

    class NoServe:
        def __init__(self, config: SimConfig, **_: Any) -> None:
            built.append(config)

        def start(self) -> NoServe:
            raise RuntimeError("not served in a test")

    monkeypatch.setattr(sim_server, "Simulator", NoServe)
    for argv in argvs:
        result = CliRunner().invoke(cli, ["simulate", *argv])
        assert "not served in a test" in result.output, result.output
    return built
