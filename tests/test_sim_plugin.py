"""The pytest plugin: loaded in every pytest run where genguard is installed, so it must cost nothing there
and take no fixture name a project may use for its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def test_loading_the_plugin_imports_no_server() -> None:
    code = (
        "import sys, genguard.sim.pytest_plugin\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow  # two pytest runs in subprocesses
def test_a_project_gets_only_prefixed_fixtures_and_they_work(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import httpx
            import pytest

            @pytest.fixture
            def sim():
                return "the project's own sim"

            def test_own_sim_is_untouched(sim):
                assert sim == "the project's own sim"

            def test_configure(genguard_sim_reset):
                genguard_sim_reset.configure(scenario="server_error")
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                r = httpx.post(genguard_sim_reset.base_url + "/chat/completions", json=body)
                assert r.status_code == 500

            def test_reset_and_restored(genguard_sim_reset, genguard_sim):
                assert genguard_sim_reset is genguard_sim
                assert genguard_sim.config.scenario == "ok"
                assert genguard_sim.stats()["requests"] == 0
            """
        )
    )
    # A project with genguard and nothing else: the other plugins installed here only cost start-up time.
    others = ["-p", "no:hypothesispytest", "-p", "no:anyio", "-p", "no:timeout", "-p", "no:cacheprovider"]
    run = [sys.executable, "-m", "pytest", *others, "-q", str(tmp_path)]
    result = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "3 passed" in result.stdout
    (tmp_path / "test_user.py").unlink()
    (tmp_path / "test_empty.py").write_text("")
    fixtures = subprocess.run(
        [*run, "--fixtures"], capture_output=True, text=True, cwd=tmp_path, check=True
    ).stdout
    # The plugin's section runs from its header to the next section's (or the summary's) line of dashes.
    section = fixtures.split("fixtures defined from genguard.sim.pytest_plugin", 1)[1].splitlines()[1:]
    names = set()
    for line in section:
        if line.startswith(("---", "===")):
            break
        if line[:1].isalpha() and " -- " in line:
            names.add(line.split()[0])
    assert {"genguard_sim", "genguard_sim_reset"} <= names
    assert all(name.startswith("genguard_") for name in names), names
