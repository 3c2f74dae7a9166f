"""The official Node SDK (npm ``openai``, under the machine's node) through the proxy, for every scenario.

One long-lived ``node tests/node/call.mjs`` process makes the calls: the test configures the simulator, sends
the process one JSON line (base URL, plain or stream), and reads back what the application saw (the answer or
the exception class, status and code, the outcome headers, every HTTP request the SDK made). ``npm ci`` runs
once per session when ``tests/node/node_modules`` does not match ``package-lock.json``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from _proxy_sdk_cases import (
    UPSTREAM_KEY,
    Raised,
    case_for,
    check,
    doc_rows,
    node_class,
    play,
    proxies,
    runs,
)  # fmt: skip
from genguard import RetryPolicy
from genguard.proxy import Proxy
from genguard.sim import Simulator
from genguard.sim._config import DIALECTS

NODE_DIR = Path(__file__).parent / "node"
DOC = Path(__file__).parent.parent / "docs" / "proxy.md"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _lock_matches_install() -> bool:
    # npm writes node_modules/.package-lock.json on every install: equal packages mean nothing to do.
    hidden = NODE_DIR / "node_modules" / ".package-lock.json"
    if not hidden.exists():
        return False

    def packages(path: Path) -> dict[str, tuple[str | None, str | None]]:
        listed = json.loads(path.read_text())["packages"]
        return {name: (p.get("version"), p.get("integrity")) for name, p in listed.items() if name}

    return packages(NODE_DIR / "package-lock.json") == packages(hidden)


@pytest.fixture(scope="session")
def node() -> str:
    """The machine's node, with tests/node's locked packages installed (``npm ci`` when they differ)."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed: the official Node SDK tests of the proxy need node (and npm)")
    folder = hashlib.sha256(str(NODE_DIR).encode()).hexdigest()[:16]  # the same name in every worker
    lock_path = Path(tempfile.gettempdir()) / f"genguard-npm-ci-{folder}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest workers never install into one folder at once
        if not _lock_matches_install():
            npm = shutil.which("npm")
            assert npm is not None, "node is installed but npm is not: install npm (it comes with node)"
            run = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                                 text=True, timeout=300)  # fmt: skip
            assert run.returncode == 0, f"npm ci failed in {NODE_DIR}:\n{run.stdout}\n{run.stderr}"
    return found


class NodeApp:
    """``node call.mjs`` kept running: one JSON line in per call, one JSON line out."""

    def __init__(self, node: str, stderr: IO[str]) -> None:
        self._stderr = stderr
        self._proc = subprocess.Popen([node, "call.mjs"], cwd=NODE_DIR, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=stderr, text=True)  # fmt: skip
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def call(self, base_url: str, mode: str, *, read_within: float = 60.0, **more: Any) -> dict[str, Any]:
        """One call by the Node app; ``more`` goes to it as is (``prompt``, ``timeout`` in ms, ``maxRetries``)."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"baseURL": base_url, "mode": mode, **more}) + "\n")
        self._proc.stdin.flush()
        try:
            line = self._lines.get(timeout=read_within)
        except queue.Empty:
            pytest.fail(f"node gave no answer in {read_within} s")
        if line is None:
            self._stderr.seek(0)
            pytest.fail(f"node exited ({self._proc.wait()}):\n{self._stderr.read()}")
        out: dict[str, Any] = json.loads(line)
        assert "driverError" not in out, out["driverError"]
        return out

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)


@pytest.fixture(scope="module")
def app(node: str) -> Iterator[NodeApp]:
    with tempfile.TemporaryFile("w+") as stderr:
        running = NodeApp(node, stderr)
        try:
            yield running
        finally:
            running.close()


@pytest.fixture(scope="module")
def gateways(genguard_sim: Simulator) -> Iterator[dict[tuple[bool, bool], Proxy]]:
    with proxies(genguard_sim.base_url) as out:
        yield out


def _play_case(app: NodeApp, sim: Simulator, gateways: dict[tuple[bool, bool], Proxy], name: str, mode: str,
               *, strict: bool) -> None:  # fmt: skip
    case = case_for(name)
    seen = case.expected(mode, strict=strict)
    play(sim, name)
    got = app.call(gateways[strict, case.quick].base_url, mode, prompt=f"Node {name} {mode} strict={strict}")
    check(
        seen, got, sim.stats()["requests"], error_class=node_class(seen) if isinstance(seen, Raised) else ""
    )


@pytest.mark.parametrize(("name", "mode"), runs(strict=False))
def test_what_a_node_app_sees(app: NodeApp, sim: Simulator, gateways: Any, name: str, mode: str) -> None:
    _play_case(app, sim, gateways, name, mode, strict=False)


@pytest.mark.parametrize(("name", "mode"), runs(strict=True))
def test_what_a_node_app_sees_under_strict(app: NodeApp, sim: Simulator, gateways: Any, name: str,
                                           mode: str) -> None:  # fmt: skip
    _play_case(app, sim, gateways, name, mode, strict=True)


def test_a_cut_stream_ends_quietly_in_node_without_the_proxy_and_raises_through_it(
    app: NodeApp, sim: Simulator, gateways: Any
) -> None:
    # The failure the proxy exists for: straight from the upstream, the Node SDK ends a stream that stops
    # without a finish_reason or [DONE] as if it were whole.
    sim.configure(scenario="incomplete_stream")
    direct = app.call(sim.base_url, "stream", prompt="cut, straight from the upstream")
    assert direct["ok"], direct
    assert direct["text"]
    assert direct["finish"] is None
    through = app.call(gateways[False, False].base_url, "stream", prompt="cut, through the proxy")
    assert not through["ok"], through
    assert through["error"]["class"] == "APIError"
    assert through["error"]["code"] == "incomplete_stream"
    assert through["text"]  # the partial answer reached the app, then the error


@pytest.mark.parametrize("mode", ["plain", "stream"])
def test_a_429_is_answered_after_the_servers_wait_from_one_node_call(
    app: NodeApp, sim: Simulator, gateways: Any, mode: str
) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.3)
    got = app.call(gateways[False, False].base_url, mode, prompt=f"wait {mode}")
    assert got["ok"], got
    assert got["text"]
    assert got["elapsedMs"] >= 300
    assert len(got["requests"]) == 1
    assert got["headers"]["x-genguard-attempts"] == "2"
    assert len(got["headers"]["x-genguard-request-ids"].split(",")) == 2
    stats = sim.stats()
    assert stats["by_status"] == {"429": 1, "200": 1}
    assert stats["verdict"]["ignored_retry_after"] == 0


def test_a_node_responses_call_is_judged_through_the_proxy(
    app: NodeApp, sim: Simulator, gateways: Any
) -> None:
    # client.responses.create from Node: retried after the server's wait, an incomplete answer named in the
    # headers (and an error under --strict), as a chat call is.
    sim.configure(scenario="rate_limited:1", retry_after_s=0.2)
    got = app.call(gateways[False, False].base_url, "responses", prompt="Node responses wait")
    assert (got["ok"], got["finish"], bool(got["text"])) == (True, "completed", True), got
    assert (len(got["requests"]), got["headers"]["x-genguard-attempts"]) == (1, "2")
    sim.configure(scenario="truncated")
    got = app.call(gateways[False, False].base_url, "responses", prompt="Node responses cut")
    assert (got["ok"], got["finish"], got["incomplete"]) == (True, "incomplete", "max_output_tokens"), got
    assert (got["headers"]["x-genguard-code"], got["headers"]["x-genguard-kind"]) == ("truncated", "soft")
    got = app.call(gateways[True, False].base_url, "responses", prompt="Node responses cut strict")
    assert not got["ok"]
    assert (got["error"]["status"], got["error"]["code"]) == (422, "truncated")
    assert len(got["requests"]) == 1  # a 422 the proxy marks final: the SDK does not retry it


@pytest.mark.parametrize("mode", ["plain", "stream"])
def test_a_wait_longer_than_max_wait_is_answered_at_once_with_retry_after_ms(
    app: NodeApp, sim: Simulator, mode: str
) -> None:
    sim.configure(scenario="rate_limited", retry_after_s=30)
    policy = RetryPolicy(max_wait=1.0)
    with Proxy(upstream=sim.base_url, api_keys=(UPSTREAM_KEY,), retry=policy) as proxy:
        got = app.call(proxy.base_url, mode, prompt=f"long wait {mode}")
    assert not got["ok"], got
    assert got["error"]["class"] == "RateLimitError"
    assert got["error"]["status"] == 429
    headers = got["error"]["headers"]
    assert headers["retry-after-ms"] == "30000"  # the server's wait, for the app to reschedule on
    assert headers["x-should-retry"] == "false"
    assert headers["x-genguard-attempts"] == "1"
    assert len(got["requests"]) == 1  # the Node SDK did not wait 30 s and send it again either
    assert sim.stats()["requests"] == 1


@pytest.mark.parametrize("mode", ["plain", "stream"])
def test_a_node_retry_after_its_own_timeout_gets_one_attempt(app: NodeApp, sim: Simulator, mode: str) -> None:
    # genguard waits out 429s longer than the SDK's 0.5 s timeout: the SDK gives up and sends the call again,
    # saying so in x-stainless-retry-count; that request gets one attempt, so the loops do not multiply.
    sim.configure(scenario="rate_limited", retry_after_s=0.4)
    with Proxy(upstream=sim.base_url, api_keys=(UPSTREAM_KEY,)) as proxy:
        got = app.call(proxy.base_url, mode, prompt=f"sdk timeout {mode}", timeout=500, maxRetries=1)
    assert not got["ok"], got
    assert [r["retryCount"] for r in got["requests"]] == ["0", "1"]
    assert "status" not in got["requests"][0]  # the first one timed out in the SDK
    assert got["error"]["class"] == "RateLimitError"
    assert got["error"]["headers"]["x-genguard-attempts"] == "1"
    assert got["error"]["headers"]["x-should-retry"] == "false"


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("scenario", ["stream_error", "incomplete_stream"])
def test_a_stream_broken_after_text_raises_in_node_in_every_dialect(
    app: NodeApp, sim: Simulator, gateways: Any, dialect: str, scenario: str
) -> None:
    # The upstream's own in-stream error event (data: {"error"}, Anthropic's event: error, OpenRouter's
    # error chunk...) or a plain stop: the Node app raises either way, after the text it got.
    sim.configure(scenario=scenario, dialect=dialect)
    got = app.call(gateways[False, False].base_url, "stream", prompt=f"{scenario} in {dialect}")
    assert not got["ok"], got
    assert got["error"]["isAPIError"], got
    assert got["error"]["status"] is None  # raised in-band, mid-stream
    assert got["text"]
    assert len(got["requests"]) == 1
    assert sim.stats()["requests"] == 1
    if scenario == "incomplete_stream":
        assert got["error"]["code"] == "incomplete_stream"


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_an_upstreams_in_stream_error_reaches_node_as_genguards_stream_error(
    app: NodeApp, sim: Simulator, gateways: Any, dialect: str
) -> None:
    # The upstream's event (data: {"error"}, Anthropic's event: error, OpenRouter's error chunk, Ollama's
    # string...) is held back: the SDK raises on genguard's, whose code is the same from every provider.
    sim.configure(scenario="stream_error", dialect=dialect)
    got = app.call(gateways[False, False].base_url, "stream", prompt=f"genguard's event in {dialect}")
    assert got["text"]
    assert got["error"]["code"] == "stream_error", got["error"]
    assert got["error"]["type"] == "genguard_soft_failure"


def _doc_section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(title)
    # The next heading of level 2 or 3 (a shell comment in a code block is "# ...", never one of them).
    ends = [at for at in (text.find("\n## ", start + 1), text.find("\n### ", start + 1)) if at >= 0]
    return text[start : min(ends, default=len(text))]


def _doc_block(title: str, lang: str) -> str:
    found = re.findall(rf"```{lang}\n(.*?)```", _doc_section(title), re.S)
    assert len(found) == 1, f"one ```{lang} block under {title!r} in {DOC}"
    return str(found[0])


def test_the_docs_table_is_the_table_the_tests_prove() -> None:
    section = _doc_section("### What each failure looks like from Node and from Python")
    marker = section.index("<!-- sdk-table")
    rows = [line for line in section[marker:].splitlines()[3:] if line.startswith("| ")]
    assert rows == doc_rows(), "regenerate the table from tests/_proxy_sdk_cases.py doc_rows()"


SAFE_COMPLETE = [
    # (scenario, stream, strict, what safeComplete returns: the fields the doc's table names)
    ("ok", False, False, {"ok": True, "attempts": 1}),
    ("ok", True, False, {"ok": True, "attempts": 1}),
    ("rate_limited:1", False, False, {"ok": True, "attempts": 2}),
    ("rate_limited:1", True, False, {"ok": True, "attempts": 2}),
    ("quota_exceeded", False, False, {"ok": False, "code": "quota_exceeded", "kind": "hard", "status": 429}),
    ("rate_limited", False, False, {"ok": False, "code": "rate_limited", "status": 429, "retryAfterMs": 50}),
    ("quota_exceeded", True, False, {"ok": False, "code": "quota_exceeded", "kind": "hard", "status": 429}),
    ("truncated", False, False, {"ok": False, "code": "truncated", "kind": "soft", "status": 200}),
    ("truncated", True, False, {"ok": False, "code": "truncated", "kind": "soft", "status": 200}),
    ("truncated", False, True, {"ok": False, "code": "truncated", "kind": "soft", "status": 422}),
    ("truncated", True, True, {"ok": False, "code": "truncated", "kind": "soft", "status": None}),
    (
        "incomplete_stream",
        True,
        False,
        {"ok": False, "code": "incomplete_stream", "kind": "soft", "status": None},
    ),
    ("timeout", False, False, {"ok": False, "code": "timeout", "kind": "hard", "status": 504}),
    # No proxy listening: the SDK's own connection error, after its own retries.
    (None, False, False, {"ok": False, "code": "connection_error", "kind": "hard", "status": None}),
]


@pytest.mark.parametrize(("scenario", "stream", "strict", "expected"), SAFE_COMPLETE)
def test_the_docs_safe_complete_returns_every_outcome_as_a_value(
    node: str,
    sim: Simulator,
    gateways: Any,
    scenario: str | None,
    stream: bool,
    strict: bool,
    expected: dict[str, Any],
) -> None:
    code = _doc_block("### `safeComplete`", "js")
    if scenario is None:
        with socket.socket() as free:  # a port nothing listens on once it is closed
            free.bind(("127.0.0.1", 0))
            base_url = f"http://127.0.0.1:{free.getsockname()[1]}/v1"
    else:
        sim.configure(scenario=scenario, retry_after_s=0.05)
        base_url = gateways[strict, scenario == "timeout"].base_url
    env = {**os.environ, "GENGUARD_PROXY_URL": base_url}
    # Evaluated as a module from tests/node, so `import "openai"` finds the locked package there.
    run = subprocess.run([node, "--input-type=module", "-e", code, "--", *(["--stream"] if stream else [])],
                         cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert {k: result.get(k) for k in expected} == expected, result
    if result["ok"]:
        assert result["text"]
        assert result["model"] == "gpt-4o-mini"
    else:
        assert isinstance(result["message"], str)
        # Text that arrived before a failure is kept: a truncated answer or a stream broken mid-way has some,
        # an error before any text has none.
        midway = result["status"] == 200 or (result["status"] is None and scenario is not None)
        assert bool(result["partial"]) == midway, result


def test_the_docs_curl_examples(sim: Simulator, gateways: Any) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed: the docs' curl examples need it")
    script = _doc_block("### curl", "sh").replace("http://127.0.0.1:8080/v1", gateways[False, False].base_url)
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "x-genguard-code: ok" in [line.strip().lower() for line in lines]
    assert "data: [DONE]" in lines
    comment = [line for line in lines if line.startswith(": genguard ")]
    assert len(comment) == 1
    assert json.loads(comment[0].removeprefix(": genguard "))["ok"] is True
    assert sim.stats()["requests"] == 2


TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    },
}


@pytest.mark.parametrize("mode", ["plain", "stream"])
def test_a_tool_call_reaches_node_whole(app: NodeApp, sim: Simulator, gateways: Any, mode: str) -> None:
    # A streamed answer of tool calls only has no text to commit on: the proxy holds it to its end and sends it
    # whole, and the Node SDK joins the argument pieces as from any provider.
    got = app.call(gateways[False, False].base_url, mode, prompt=f"tool {mode}", tools=[TOOL])
    assert got["ok"], got
    assert got["finish"] == "tool_calls"
    assert [c["name"] for c in got["toolCalls"]] == ["lookup"]
    assert isinstance(json.loads(got["toolCalls"][0]["arguments"])["q"], str)
    assert got["headers"]["x-genguard-code"] == "ok"  # held to its end: the outcome was known when sent
    assert len(got["requests"]) == 1
    assert sim.stats()["requests"] == 1


@pytest.mark.parametrize("key", ["none", "content"])
def test_a_dummy_upstream_key_leaves_the_answer_as_the_upstream_sent_it(
    app: NodeApp, sim: Simulator, key: str
) -> None:
    # Local servers (vLLM, Ollama...) take any key, and "none" or "EMPTY" is what their guides use.
    reply = "I have none of them, and the content is fine"
    sim.configure(reply=reply)
    with Proxy(upstream=sim.base_url, api_keys=(key,)) as proxy:
        got = app.call(proxy.base_url, "plain", prompt=f"dummy key {key}")
    assert got["ok"], got
    assert got.get("text") == reply, got  # no text at all: the SDK found no content field
