"""The official openai npm package parses the simulator's successes and raises its own error per scenario."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from genguard.sim import Simulator

NODE_DIR = Path(__file__).parent / "node"

EXPECTED = {
    "auth_failed": "AuthenticationError",
    "permission_denied": "PermissionDeniedError",
    "model_not_found": "NotFoundError",
    "bad_request": "BadRequestError",
    "quota_exceeded": "RateLimitError",
    "rate_limited": "RateLimitError",
    "conflict": "ConflictError",
    "unprocessable": "UnprocessableEntityError",
    "server_error": "InternalServerError",
    "unavailable": "InternalServerError",
    "timeout": "APIConnectionTimeoutError",
    "connection_error": "APIConnectionError",
}


@pytest.fixture(scope="module")
def node_ready() -> str:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed: the npm openai client check needs them")
    if not (NODE_DIR / "node_modules" / "openai").exists():
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True,
                       timeout=300)  # fmt: skip
    return node


@pytest.mark.slow
def test_openai_npm_client(sim: Simulator, node_ready: str) -> None:
    sim.configure(stall_s=5)
    env = {**os.environ, "GENGUARD_SIM_URL": sim.base_url, "GENGUARD_SCENARIOS": json.dumps(sorted(EXPECTED))}
    run = subprocess.run([node_ready, "check.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["models"] == list(sim.config.models)
    assert out["plain"]["finish"] == "stop"
    assert out["plain"]["usage"]["completion_tokens"] == len(out["plain"]["text"].split())
    assert out["stream"]["text"] == out["plain"]["text"]
    assert out["stream"]["finish"] == "stop"
    assert out["stream"]["usage"] == out["plain"]["usage"]
    assert out["tool"]["finish"] == "tool_calls"
    assert out["tool"]["name"] == "lookup"
    assert isinstance(out["tool"]["args"]["q"], str)
    assert out["errors"] == EXPECTED
