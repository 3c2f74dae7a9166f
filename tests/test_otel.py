"""OpenTelemetry over real HTTP: the client, the stream, the batch runner and the proxy against the simulator,
their spans and metrics read back from the SDK's in-memory exporters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import genguard
from genguard import AsyncClient, Client
from genguard.integrations.otel import (
    CAPTURE_CONTENT_ENV,
    DURATION_BUCKETS,
    GENGUARD_ATTRIBUTES,
    TOKEN_BUCKETS,
    OtelHook,
    instrument,
    provider_name,
)
from genguard.proxy import Proxy
from genguard.sim import Simulator

KEY = "sk-otel-test-key-0123456789"
MODEL = "gpt-4o-mini"
MSG: Any = [{"role": "user", "content": "Describe a pet"}]


class Telemetry:
    """A hook on its own in-memory tracer and meter providers, and ways to read what it recorded."""

    def __init__(self, **options: Any) -> None:
        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[self.reader])
        self.hook = OtelHook(tracer_provider=tracer_provider, meter_provider=meter_provider, **options)

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def calls(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.parent is None]

    def call(self) -> ReadableSpan:
        calls = self.calls()
        assert len(calls) == 1, [s.name for s in self.spans()]
        return calls[0]

    def attempts(self, call: ReadableSpan) -> list[ReadableSpan]:
        kids = [s for s in self.spans() if s.parent is not None and s.parent.span_id == call.context.span_id]
        return sorted(kids, key=lambda s: int(str((s.attributes or {})["genguard.attempt.number"])))

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found += [(metric, p) for p in metric.data.data_points]
        return found


@pytest.fixture
def tel() -> Telemetry:
    return Telemetry()


def _port(sim: Simulator) -> int:
    port = urlsplit(sim.base_url).port
    assert port is not None
    return port


def _client(sim: Simulator, tel: Telemetry, scenario: str | None = None, **kw: Any) -> Client:
    headers = {"x-genguard-scenario": scenario} if scenario else None
    return Client(sim.base_url, api_key=KEY, hooks=[tel.hook], headers=headers, **kw)


def _check_timing(call: ReadableSpan, attempts: list[ReadableSpan]) -> None:
    assert call.start_time is not None
    assert call.end_time is not None
    previous_end = call.start_time
    for span in attempts:
        assert span.start_time is not None
        assert span.end_time is not None
        assert previous_end <= span.start_time <= span.end_time <= call.end_time
        previous_end = span.end_time


# -- the five cases, sync client ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_ok_call_is_one_client_span_with_the_conventions_attributes_and_both_metrics(
    sim: Simulator, tel: Telemetry
) -> None:
    with _client(sim, tel) as client:
        outcome = client.chat(model=MODEL, messages=MSG, max_tokens=50, temperature=0.5)
    assert outcome.ok
    assert outcome.usage is not None
    call = tel.call()
    assert call.name == f"chat {MODEL}"
    assert call.kind is SpanKind.CLIENT
    assert call.status.status_code is StatusCode.UNSET
    a = dict(call.attributes or {})
    assert a == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": MODEL,
        "gen_ai.request.stream": False,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.response.model": MODEL,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": outcome.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": outcome.usage.completion_tokens,
        "server.address": "127.0.0.1",
        "server.port": _port(sim),
        "genguard.attempts": 1,
        "genguard.outcome.ok": True,
        "genguard.request_id": outcome.request_id,
        "genguard.cost_usd": pytest.approx(outcome.extra["cost_usd"]),
    }
    [attempt] = tel.attempts(call)
    assert attempt.name == "POST"
    assert attempt.kind is SpanKind.CLIENT
    assert dict(attempt.attributes or {}) == {
        "http.request.method": "POST",
        "url.full": f"{sim.base_url}/chat/completions",
        "server.address": "127.0.0.1",
        "server.port": _port(sim),
        "http.response.status_code": 200,
        "gen_ai.request.model": MODEL,
        "genguard.attempt.number": 1,
        "genguard.request_id": outcome.request_id,
    }
    _check_timing(call, [attempt])

    [(duration, point)] = tel.points("gen_ai.client.operation.duration")
    assert duration.unit == "s"
    assert point.count == 1
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    assert call.end_time is not None
    assert call.start_time is not None
    assert point.sum == pytest.approx((call.end_time - call.start_time) / 1e9)
    assert dict(point.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
        "server.address": "127.0.0.1",
        "server.port": _port(sim),
    }
    tokens = {p.attributes["gen_ai.token.type"]: (m, p) for m, p in tel.points("gen_ai.client.token.usage")}
    assert set(tokens) == {"input", "output"}
    assert tokens["input"][0].unit == "{token}"
    assert tuple(tokens["input"][1].explicit_bounds) == TOKEN_BUCKETS
    assert tokens["input"][1].sum == outcome.usage.prompt_tokens
    assert tokens["output"][1].sum == outcome.usage.completion_tokens


@pytest.mark.timeout(30)
def test_a_retried_rate_limit_is_one_call_span_with_an_attempt_span_each(
    sim: Simulator, tel: Telemetry
) -> None:
    sim.configure(retry_after_s=0.2)
    with _client(sim, tel, "rate_limited:1") as client:
        outcome = client.chat(model=MODEL, messages=MSG)
    assert outcome.ok
    assert outcome.attempts == 2
    call = tel.call()
    a = call.attributes or {}
    assert "error.type" not in a
    assert a["genguard.attempts"] == 2
    assert call.status.status_code is StatusCode.UNSET
    first, second = tel.attempts(call)
    assert first.attributes is not None
    assert second.attributes is not None
    assert "http.request.resend_count" not in first.attributes  # the conventions: only on a resend
    assert first.attributes["http.response.status_code"] == 429
    assert first.attributes["error.type"] == "rate_limited"
    assert first.attributes["genguard.outcome.code"] == "rate_limited"
    assert first.status.status_code is StatusCode.ERROR
    # The server's wait (retry-after 0.2 s), as the policy decided it, on the attempt it followed.
    assert first.attributes["genguard.retry.wait_s"] == outcome.history[0].wait_s == pytest.approx(0.2)
    assert first.attributes["genguard.request_id"] == outcome.history[0].request_id
    assert second.attributes["http.request.resend_count"] == 1
    assert second.attributes["http.response.status_code"] == 200
    assert "error.type" not in second.attributes
    assert (
        second.attributes["genguard.request_id"]
        == outcome.request_id
        != first.attributes["genguard.request_id"]
    )
    _check_timing(call, [first, second])
    # The wait lies between the two attempts, inside the call's span.
    assert first.end_time is not None
    assert second.start_time is not None
    assert second.start_time - first.end_time >= 0.15e9
    [(_, point)] = tel.points("gen_ai.client.operation.duration")
    assert "error.type" not in point.attributes


@pytest.mark.timeout(30)
def test_a_quota_failure_sets_error_type_to_the_code_and_is_not_retried(
    sim: Simulator, tel: Telemetry
) -> None:
    with _client(sim, tel, "quota_exceeded") as client:
        outcome = client.chat(model=MODEL, messages=MSG)
    assert outcome.code == "quota_exceeded"
    call = tel.call()
    a = call.attributes or {}
    assert a["error.type"] == "quota_exceeded"
    assert a["genguard.outcome.code"] == "quota_exceeded"
    assert a["genguard.outcome.kind"] == "hard"
    assert a["genguard.outcome.retryable"] is False
    assert a["genguard.outcome.ok"] is False
    assert a["genguard.attempts"] == 1
    assert "gen_ai.usage.input_tokens" not in a
    assert call.status.status_code is StatusCode.ERROR
    assert call.status.description == outcome.summary()
    [attempt] = tel.attempts(call)
    assert attempt.attributes is not None
    assert attempt.attributes["http.response.status_code"] == 429
    assert attempt.attributes["error.type"] == "quota_exceeded"
    assert "genguard.retry.wait_s" not in attempt.attributes
    [(_, point)] = tel.points("gen_ai.client.operation.duration")
    assert point.attributes["error.type"] == "quota_exceeded"
    assert tel.points("gen_ai.client.token.usage") == []


def _own_attributes(tel: Telemetry) -> set[str]:
    return {k for span in tel.spans() for k in span.attributes or {} if k.startswith("genguard.")}


@pytest.mark.timeout(30)
def test_genguard_attributes_are_the_ones_the_page_lists(sim: Simulator, tel: Telemetry) -> None:
    sim.configure(retry_after_s=0.05)
    with _client(sim, tel, "quota_exceeded") as client:
        client.chat(model=MODEL, messages=MSG)
    with _client(sim, tel, "rate_limited:1") as client:
        client.chat(model=MODEL, messages=MSG)
    page = (Path(__file__).resolve().parents[1] / "docs" / "observability.md").read_text()
    assert _own_attributes(tel) == set(GENGUARD_ATTRIBUTES) - {"genguard.fallback_model"}
    for name in GENGUARD_ATTRIBUTES:
        assert f"`{name}`" in page or f"`{name.rsplit('.', 1)[0]}." in page, name


@pytest.mark.timeout(30)
def test_a_filtered_answer_is_a_200_whose_call_span_names_the_filter(sim: Simulator, tel: Telemetry) -> None:
    with _client(sim, tel, "content_filtered") as client:
        outcome = client.chat(model=MODEL, messages=MSG)
    assert outcome.code == "content_filtered"
    call = tel.call()
    a = call.attributes or {}
    assert a["error.type"] == "content_filtered"
    assert a["genguard.outcome.kind"] == "soft"
    assert a["gen_ai.response.finish_reasons"] == ("content_filter",)
    assert call.status.status_code is StatusCode.ERROR
    [attempt] = tel.attempts(call)
    assert attempt.attributes is not None
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["error.type"] == "content_filtered"


@pytest.mark.timeout(30)
def test_a_cut_stream_ends_its_span_when_the_stream_ends_with_error_type(
    sim: Simulator, tel: Telemetry
) -> None:
    with _client(sim, tel, "incomplete_stream") as client, client.stream(model=MODEL, messages=MSG) as stream:
        chunks = iter(stream)
        first = next(chunks)
        assert first
        assert tel.spans() == ()  # the call is under way: no span yet
        for _ in chunks:
            pass
    assert stream.outcome.code == "incomplete_stream"
    call = tel.call()
    a = call.attributes or {}
    assert a["gen_ai.request.stream"] is True
    assert a["error.type"] == "incomplete_stream"
    assert a["genguard.outcome.kind"] == stream.outcome.kind == "soft"
    assert "gen_ai.response.finish_reasons" not in a
    [attempt] = tel.attempts(call)
    assert attempt.attributes is not None
    assert attempt.attributes["error.type"] == "incomplete_stream"
    _check_timing(call, [attempt])


@pytest.mark.timeout(30)
def test_a_stream_the_caller_closes_early_still_ends_its_span(sim: Simulator, tel: Telemetry) -> None:
    with _client(sim, tel) as client, client.stream(model=MODEL, messages=MSG) as stream:
        for _ in stream:
            break
    assert stream.outcome.code == "incomplete_stream"
    call = tel.call()
    a = call.attributes or {}
    assert a["error.type"] == "incomplete_stream"
    assert a["genguard.outcome.kind"] == stream.outcome.kind
    assert call.status.status_code is StatusCode.ERROR
    [attempt] = tel.attempts(call)
    _check_timing(call, [attempt])


@pytest.mark.timeout(30)
def test_a_fallback_model_that_answers_is_the_response_model(sim: Simulator, tel: Telemetry) -> None:
    def only_the_first_model_is_missing(request: httpx.Request) -> None:
        if json.loads(request.content)["model"] == MODEL:
            request.headers["x-genguard-scenario"] = "model_not_found"

    http = httpx.Client(event_hooks={"request": [only_the_first_model_is_missing]})
    with _client(sim, tel, fallbacks=["gpt-4o"], http_client=http) as client:
        outcome = client.chat(model=MODEL, messages=MSG)
    http.close()
    assert outcome.ok
    assert outcome.extra["model"] == "gpt-4o"
    call = tel.call()
    a = call.attributes or {}
    assert call.name == f"chat {MODEL}"
    assert a["gen_ai.request.model"] == MODEL
    assert a["gen_ai.response.model"] == "gpt-4o"
    assert a["genguard.fallback_model"] == "gpt-4o"
    first, second = tel.attempts(call)
    assert (first.attributes or {})["gen_ai.request.model"] == MODEL
    assert (second.attributes or {})["gen_ai.request.model"] == "gpt-4o"


# -- content: off unless asked for --------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_content_is_recorded_only_when_asked_for(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Describe a pet"}]
    monkeypatch.delenv(CAPTURE_CONTENT_ENV, raising=False)
    off, on, by_env = Telemetry(), Telemetry(capture_content=True), None
    for tel in (off, on):
        with _client(sim, tel) as client:
            outcome = client.chat(model=MODEL, messages=messages)
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "true")
    by_env = Telemetry()
    with _client(sim, by_env) as client:
        client.chat(model=MODEL, messages=messages)

    assert not any(k.startswith(("gen_ai.input", "gen_ai.output")) for k in off.call().attributes or {})
    for tel in (on, by_env):
        a = tel.call().attributes or {}
        assert json.loads(str(a["gen_ai.input.messages"])) == [
            {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
            {"role": "user", "parts": [{"type": "text", "content": "Describe a pet"}]},
        ]
        [answer] = json.loads(str(a["gen_ai.output.messages"]))
        assert answer["role"] == "assistant"
        assert answer["finish_reason"] == "stop"
        assert answer["parts"][0]["type"] == "text"
        assert answer["parts"][0]["content"]
    # The same model answers the same prompt the same way: the text recorded is the outcome's.
    assert (
        json.loads(str((on.call().attributes or {})["gen_ai.output.messages"]))[0]["parts"][0]["content"]
        == outcome.text
    )


@pytest.mark.timeout(30)
def test_no_api_key_reaches_a_span(sim: Simulator, tel: Telemetry) -> None:
    tel.hook.capture_content = True
    with Client(sim.base_url + "?key=" + KEY, api_key=KEY, hooks=[tel.hook]) as client:
        client.chat(model=MODEL, messages=MSG)
    for span in tel.spans():
        assert KEY not in str(span.to_json())


# -- the async client, the batch runner, the proxy ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_async_client_records_the_same_spans(sim: Simulator, tel: Telemetry) -> None:
    sim.configure(retry_after_s=0.05)
    headers = {"x-genguard-scenario": "rate_limited:1"}
    async with AsyncClient(sim.base_url, api_key=KEY, headers=headers) as client:
        hook = instrument(client, tracer_provider=None)  # the global one: not what this test reads
        assert client.hooks == (hook,)
        client.hooks = (tel.hook,)
        outcome = await client.chat(model=MODEL, messages=MSG)
        # Other words: the simulator's rate_limited:1 fails each new question once.
        async with client.stream(
            model=MODEL, messages=[{"role": "user", "content": "Name a colour"}]
        ) as stream:
            async for _ in stream:
                pass
    assert outcome.ok
    assert stream.outcome.ok
    plain, streamed = sorted(tel.calls(), key=lambda s: s.start_time or 0)
    assert plain.name == streamed.name == f"chat {MODEL}"
    assert (plain.attributes or {})["gen_ai.request.stream"] is False
    assert (streamed.attributes or {})["gen_ai.request.stream"] is True
    assert [(s.attributes or {}).get("http.response.status_code") for s in tel.attempts(plain)] == [429, 200]
    assert [(s.attributes or {}).get("http.response.status_code") for s in tel.attempts(streamed)] == [
        429,
        200,
    ]
    _check_timing(plain, tel.attempts(plain))
    [(_, point)] = tel.points("gen_ai.client.operation.duration")
    assert point.count == 2


@pytest.mark.timeout(60)
def test_the_batch_runner_records_one_call_span_per_line(
    sim: Simulator, tel: Telemetry, tmp_path: Path
) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.05)
    requests = [{"model": MODEL, "messages": [{"role": "user", "content": f"Line {i}"}]} for i in range(5)]
    result = genguard.batch(
        requests, out=tmp_path / "run", base_url=sim.base_url, api_key=KEY, progress="none", hooks=[tel.hook]
    )
    assert result.exit_code == 0
    calls = tel.calls()
    assert len(calls) == 5
    for call in calls:
        assert call.name == f"chat {MODEL}"
        a = call.attributes or {}
        assert a["server.port"] == _port(sim)
        assert "error.type" not in a
        attempts = tel.attempts(call)
        assert [(s.attributes or {}).get("http.response.status_code") for s in attempts] == [429, 200]
        _check_timing(call, attempts)
    # Every line's request id appears once: each span belongs to its own line's call.
    ids = [(c.attributes or {})["genguard.request_id"] for c in calls]
    assert len(set(ids)) == 5
    [(_, point)] = tel.points("gen_ai.client.operation.duration")
    assert point.count == 5


@pytest.mark.timeout(30)
def test_a_request_through_the_proxy_records_its_spans(sim: Simulator, tel: Telemetry) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.05)
    with Proxy(upstream=sim.base_url, api_keys=(KEY,), hooks=(tel.hook,)) as proxy:
        body = {"model": MODEL, "messages": MSG}
        reply = httpx.post(f"{proxy.base_url}/chat/completions", json=body, timeout=10)
        assert reply.status_code == 200
        sim.configure(scenario="incomplete_stream")
        with httpx.stream(
            "POST", f"{proxy.base_url}/chat/completions", json={**body, "stream": True}, timeout=10
        ) as streamed:
            text = b"".join(streamed.iter_bytes())
        assert b"incomplete_stream" in text
    plain, cut = sorted(tel.calls(), key=lambda s: s.start_time or 0)
    a = plain.attributes or {}
    assert plain.name == f"chat {MODEL}"
    assert a["server.port"] == _port(sim)  # the upstream the proxy called
    assert reply.headers["x-genguard-request-ids"].split(",")[-1] == a["genguard.request_id"]
    assert [(s.attributes or {}).get("http.response.status_code") for s in tel.attempts(plain)] == [429, 200]
    c = cut.attributes or {}
    assert c["gen_ai.request.stream"] is True
    assert c["error.type"] == "incomplete_stream"


# -- pure parts and the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://my-resource.openai.azure.com/openai/deployments/gpt", "azure.ai.openai"),
        ("https://my-resource.services.ai.azure.com/models", "azure.ai.inference"),
        ("https://api.anthropic.com/v1/", "anthropic"),
        ("https://generativelanguage.googleapis.com/v1beta/openai", "gcp.gemini"),
        ("https://us-central1-aiplatform.googleapis.com/v1/projects/p", "gcp.vertex_ai"),
        ("https://api.mistral.ai/v1", "mistral_ai"),
        ("https://api.groq.com/openai/v1", "groq"),
        ("https://api.deepseek.com", "deepseek"),
        ("https://api.x.ai/v1", "x_ai"),
        ("https://api.perplexity.ai", "perplexity"),
        ("https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1", "aws.bedrock"),
        ("https://openrouter.ai/api/v1", "openai"),
        ("http://127.0.0.1:8000/v1", "openai"),
        ("https://notopenai.azure.com.evil.example/v1", "openai"),
        (None, "openai"),
    ],
)
def test_provider_name_comes_from_the_host(url: str | None, name: str) -> None:
    assert provider_name(url) == name


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_batch_otel_console_prints_the_spans(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"model": MODEL, "messages": MSG}) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "genguard", "batch", str(source), "--out", str(tmp_path / "run"), "--simulate",
         "--progress", "none", "--otel", "console"],
        capture_output=True, text=True, timeout=50, env={"PATH": "/usr/bin:/bin", "OTEL_SERVICE_NAME": "t"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f'"name": "chat {MODEL}"' in done.stderr
    assert '"gen_ai.provider.name": "openai"' in done.stderr
    assert '"name": "gen_ai.client.operation.duration"' in done.stderr
    assert "sk-simulated" not in done.stderr


def test_otel_without_the_extra_is_a_usage_error_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from genguard.cli import cli

    monkeypatch.setitem(sys.modules, "genguard.integrations.otel", None)
    result = CliRunner().invoke(cli, ["proxy", "--upstream", "http://127.0.0.1:9/v1", "--otel", "console"])
    assert result.exit_code == 2
    assert "pip install" in result.output


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CAPTURE_CONTENT_ENV, raising=False)


# -- the page's examples ----------------------------------------------------------------------------------------


def _runnable_examples() -> list[tuple[str, str]]:
    """docs/observability.md's examples that run against the simulator, each with the output shown under it."""
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "observability.md").read_text()
    block = r"((?:(?!```).)*)```"  # a fenced block's text: no fence inside it
    found = re.findall(r"```python\n" + block + r"\n\n```text\n" + block, page, flags=re.S)
    return [(code, shown) for code, shown in found if "Simulator(" in code]


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", range(3))
def test_the_observability_pages_examples_print_what_it_shows(
    n: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = _runnable_examples()
    assert len(examples) == 3, "the page lost a runnable example"
    code, shown = examples[n]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"observability.md example {n + 1}", "exec"), {"__name__": "__example__"})
    assert capsys.readouterr().out.strip() == shown.strip()


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_a_cancelled_call_ends_its_span_at_once_as_cancelled(sim: Simulator, tel: Telemetry) -> None:
    import anyio

    headers = {"x-genguard-scenario": "timeout"}  # no answer until the client gives up
    async with AsyncClient(sim.base_url, api_key=KEY, headers=headers, hooks=[tel.hook]) as client:
        with anyio.move_on_after(0.3):
            await client.chat(model=MODEL, messages=MSG)
        call = tel.call()  # no collection needed: the span ended when the call was cancelled
    a = call.attributes or {}
    assert a["error.type"] == "cancelled"
    assert a["genguard.outcome.ok"] is False
    assert "genguard.outcome.code" not in a
    assert call.status.status_code is StatusCode.ERROR
    assert call.end_time is not None
    assert call.start_time is not None
    assert 0.25e9 <= call.end_time - call.start_time < 5e9
    [attempt] = tel.attempts(call)
    assert "http.response.status_code" not in (attempt.attributes or {})


@pytest.mark.timeout(30)
def test_a_wrapped_openai_client_records_the_same_spans(sim: Simulator, tel: Telemetry) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(
        base_url=sim.base_url, api_key=KEY, default_headers={"x-genguard-scenario": "rate_limited:1"}
    )
    sim.configure(retry_after_s=0.05)
    wrapped = genguard.wrap(sdk, hooks=[tel.hook])
    completion = wrapped.chat.completions.create(model=MODEL, messages=MSG)
    assert completion.choices[0].message.content
    call = tel.call()
    assert call.name == f"chat {MODEL}"
    assert call.kind is SpanKind.CLIENT
    a = call.attributes or {}
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == MODEL
    assert a["gen_ai.request.stream"] is False
    assert a["server.port"] == _port(sim)
    assert a["genguard.attempts"] == 2
    first, second = tel.attempts(call)
    assert (first.attributes or {})["http.response.status_code"] == 429
    assert (second.attributes or {})["http.request.resend_count"] == 1
    _check_timing(call, [first, second])
