"""`genguard explain` on a corpus of captures written from what real providers send.

Each capture under ``tests/captures/<provider>/`` has a sidecar ``<name>.expected.json`` holding the verdict a
developer needs from it: kind, code, retryable, the wait, the status, the provider's code, the text or the
tool calls' names, words the message must carry, and a secret that must not appear in the output. The bodies
and headers come from providers' documentation, official SDKs' fixtures and users' bug reports; every form
`explain` reads is here (curl -i with HTTP/1.1 and HTTP/2, CRLF and LF, bare JSON, SSE, HAR).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from genguard.cli import cli

CORPUS = Path(__file__).resolve().parent / "captures"
SIDE = ".expected.json"
CAPTURES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and not p.name.endswith(SIDE))

# The fields compared exactly when the sidecar names them.
EXACT = ("ok", "kind", "code", "retryable", "retry_after_s", "status", "provider_code", "provider_type",
         "request_id", "text", "message")  # fmt: skip


def _expected(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.with_name(path.name + SIDE).read_bytes())
    return data


def _params() -> list[Any]:
    params = []
    for path in CAPTURES:
        exp = _expected(path)
        marks = []
        if exp.get("xfail"):
            marks.append(pytest.mark.xfail(strict=True, reason=exp["xfail"]))
        params.append(pytest.param(path, id=str(path.relative_to(CORPUS)), marks=marks))
    return params


def _explain(path: Path, args: list[str]) -> tuple[list[dict[str, Any]], str]:
    result = CliRunner().invoke(cli, ["explain", "--json", *args, str(path)])
    assert result.exit_code == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()], result.stdout


def _check(got: dict[str, Any], exp: dict[str, Any]) -> None:
    wanted = {k: exp[k] for k in EXACT if k in exp}
    if "ok" not in exp:
        wanted["ok"] = False
    if "tool_calls" in exp:
        calls = got.get("tool_calls") or []
        assert [c["function"]["name"] for c in calls] == exp["tool_calls"]
    if "message_contains" in exp:
        assert exp["message_contains"] in (got.get("message") or "")
    assert {k: got.get(k) for k in wanted} == wanted


def test_the_corpus_is_broad() -> None:
    providers = {p.parent.name for p in CAPTURES}
    assert len(CAPTURES) >= 80
    assert len(providers) >= 25


@pytest.mark.parametrize("path", _params())
def test_capture(path: Path) -> None:
    exp = _expected(path)
    results, raw = _explain(path, list(exp.get("args", [])))
    wanted = exp.get("multi", [exp])
    assert len(results) == len(wanted)
    for got, one in zip(results, wanted, strict=True):
        _check(got, one)
    if exp.get("secret"):
        assert exp["secret"] not in raw
        # Not even a long fragment of the key survives.
        assert exp["secret"][8:24] not in raw


def test_readable_output_in_a_real_process() -> None:
    """One real subprocess over a slice of the corpus: exit 0, a headline per capture, no secret."""
    picks = [p for p in CAPTURES if p.suffix in (".http", ".har") and "openai" in p.parts][:6]
    proc = subprocess.run(
        [sys.executable, "-m", "genguard", "explain", *map(str, picks)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    assert out.count("FAILURE") + out.count("OK (") >= len(picks)
    for path in picks:
        secret = _expected(path).get("secret")
        if secret:
            assert secret not in out
