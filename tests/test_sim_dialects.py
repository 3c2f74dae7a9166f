"""Each dialect's error bodies and in-stream errors, read back by genguard's own failure model."""

from __future__ import annotations

import httpx
import orjson
import pytest

from genguard.core.classify import classify_http
from genguard.sim import Simulator
from genguard.sim._config import DIALECTS
from genguard.sim._dialects import ERROR_CODES

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def _post(sim: Simulator, dialect: str, scenario: str, **extra: object) -> httpx.Response:
    return httpx.post(sim.base_url + "/chat/completions", json={**BODY, **extra},
                      headers={"x-genguard-scenario": scenario, "x-genguard-dialect": dialect})  # fmt: skip


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("scenario", sorted(ERROR_CODES))
def test_every_error_in_every_dialect_reads_back_as_its_code(
    sim: Simulator, dialect: str, scenario: str
) -> None:
    r = _post(sim, dialect, scenario)
    outcome = classify_http(r.status_code, r.headers, r.content, endpoint="chat")
    assert outcome.code == scenario, (r.status_code, r.text)
    assert outcome.message or scenario in ("bad_gateway", "gateway_timeout", "invalid_response")


def _json(r: httpx.Response) -> object:
    return orjson.loads(r.content)


def test_dialect_shapes(sim: Simulator) -> None:
    anthropic = _json(_post(sim, "anthropic", "unavailable"))
    assert anthropic == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
                         "request_id": anthropic["request_id"]}  # type: ignore[index]  # fmt: skip
    assert _post(sim, "anthropic", "unavailable").status_code == 529
    google = _json(_post(sim, "google", "rate_limited"))
    assert isinstance(google, list)
    assert google[0]["error"]["status"] == "RESOURCE_EXHAUSTED"
    azure = _json(_post(sim, "azure", "prompt_blocked"))["error"]  # type: ignore[index]
    assert azure["code"] == "content_filter"
    assert azure["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert azure["innererror"]["content_filter_result"]["violence"]["filtered"] is True
    router = _json(_post(sim, "openrouter", "server_error"))["error"]  # type: ignore[index]
    assert router["metadata"]["provider_name"] == "OpenAI"
    assert "server had an error" in orjson.loads(router["metadata"]["raw"])["error"]["message"]
    for dialect in ("vllm", "mistral"):
        body = _json(_post(sim, dialect, "bad_request"))
        assert body["object"] == "error"  # type: ignore[index]
        assert "error" not in body  # type: ignore[operator]
    ollama = _json(_post(sim, "ollama", "model_not_found"))
    assert ollama == {"error": 'model "gpt-4o-mini" not found, try pulling it first'}


def _stream(sim: Simulator, dialect: str) -> bytes:
    with httpx.stream("POST", sim.base_url + "/chat/completions", json={**BODY, "stream": True},
                      headers={"x-genguard-scenario": "stream_error", "x-genguard-dialect": dialect}) as r:  # fmt: skip
        assert r.status_code == 200
        return r.read()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_stream_errors_per_dialect(sim: Simulator, dialect: str) -> None:
    body = _stream(sim, dialect)
    events = [e for e in body.split(b"\n\n") if e]
    last = events[-1] if dialect == "anthropic" else events[-2]
    assert b'"delta":{"content":' in body
    if dialect == "anthropic":
        assert last.startswith(b"event: error\ndata: ")
        assert b"[DONE]" not in body
    else:
        assert events[-1] == b"data: [DONE]"
        data = orjson.loads(last.removeprefix(b"data: "))
        assert "error" in data
        if dialect == "openrouter":
            assert data["choices"][0]["finish_reason"] == "error"


def test_azure_success_carries_filter_results(sim: Simulator) -> None:
    r = httpx.post(sim.base_url + "/chat/completions", json=BODY, headers={"x-genguard-dialect": "azure"})
    body = r.json()
    assert body["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert "content_filter_results" in body["choices"][0]


def test_server_wide_dialect(sim: Simulator) -> None:
    sim.configure(dialect="anthropic", scenario="rate_limited")
    r = httpx.post(sim.base_url + "/chat/completions", json=BODY)
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert "Please try again in" in r.json()["error"]["message"]
