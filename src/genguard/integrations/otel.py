"""OpenTelemetry traces and metrics for every genguard call, after the GenAI semantic conventions.

Install the extra (``pip install 'genguard[otel]'``) and hand an :class:`OtelHook` to whatever makes calls:
a :class:`~genguard.Client` or :class:`~genguard.AsyncClient` (``hooks=[OtelHook()]``, or
:func:`instrument` on one already made), the batch runner (``genguard.batch(..., hooks=[hook])``) or the
proxy (``ProxyConfig(hooks=(hook,))``). The commands take ``--otel console`` or ``--otel otlp``.

Each call becomes one CLIENT span named ``{gen_ai.operation.name} {gen_ai.request.model}`` (``chat
gpt-4o-mini``) that covers the whole call, waits and retries included, with one child span per attempt
(an HTTP client span: ``http.request.resend_count`` on resends, the status, the provider's request id and
the wait that followed). A failed call sets ``error.type`` to the genguard code (``rate_limited``,
``content_filtered``...) and the span status to ERROR; genguard's own ``genguard.*`` attributes carry what
the conventions have no name for (the outcome's kind, code and verdict, attempts, the fallback model that
answered, the cost). The metrics are ``gen_ai.client.operation.duration`` (s) and
``gen_ai.client.token.usage`` ({token}), with the conventions' bucket boundaries.

The spans are built from the record the retry loop hands its hooks when a call ends (a stream: when it was
read to its end or closed), with the times it measured: nothing of OpenTelemetry runs while a call is under
way. Message content (``gen_ai.input.messages``, ``gen_ai.output.messages``) is recorded only when asked for:
``capture_content=True``, or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` in the environment.

>>> from genguard import Client
>>> from genguard.integrations.otel import OtelHook
>>> client = Client("http://127.0.0.1:8000/v1", hooks=[OtelHook()])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is installed wherever this module is tested
    raise ImportError(
        "genguard's OpenTelemetry integration needs the otel extra: pip install 'genguard[otel]'"
    ) from exc

import orjson

from ..client.loop import CallRecord
from ..core.outcome import Attempt, Outcome
from ..core.taxonomy import code_info

__all__ = [
    "CAPTURE_CONTENT_ENV",
    "DURATION_BUCKETS",
    "GENGUARD_ATTRIBUTES",
    "TOKEN_BUCKETS",
    "OtelHook",
    "instrument",
    "provider_name",
    "setup",
]

# The conventions' advised bucket boundaries for the two client metrics.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# genguard's own attributes, for what the conventions have no name for (docs/observability.md says each).
GENGUARD_ATTRIBUTES = (
    "genguard.attempt.number",
    "genguard.attempts",
    "genguard.cost_usd",
    "genguard.fallback_model",
    "genguard.outcome.code",
    "genguard.outcome.kind",
    "genguard.outcome.ok",
    "genguard.outcome.retryable",
    "genguard.request_id",
    "genguard.retry.wait_s",
)

_OPERATIONS = {
    "chat": "chat",
    "embedding": "embeddings",
    "image": "generate_content",
    "video": "generate_content",
}

# Host suffix -> gen_ai.provider.name, most specific first. Any other host speaks the OpenAI API through
# genguard, so its flavour is "openai" (server.address says which server it was).
_PROVIDERS = (
    ("openai.azure.com", "azure.ai.openai"),
    ("cognitiveservices.azure.com", "azure.ai.openai"),
    ("services.ai.azure.com", "azure.ai.inference"),
    ("models.inference.ai.azure.com", "azure.ai.inference"),
    ("api.openai.com", "openai"),
    ("anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("mistral.ai", "mistral_ai"),
    ("groq.com", "groq"),
    ("deepseek.com", "deepseek"),
    ("x.ai", "x_ai"),
    ("perplexity.ai", "perplexity"),
    ("cohere.com", "cohere"),
    ("cohere.ai", "cohere"),
    ("ml.cloud.ibm.com", "ibm.watsonx.ai"),
)

# Request parameters with a gen_ai.request.* name of their own.
_REQUEST_PARAMS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
)


@lru_cache(maxsize=64)
def provider_name(url: str | None) -> str:
    """The ``gen_ai.provider.name`` for a base URL: known hosts by name, any other OpenAI-compatible server
    ``"openai"``.

    >>> provider_name("https://my-res.openai.azure.com/openai/deployments/d"), provider_name("http://127.0.0.1:8000/v1")
    ('azure.ai.openai', 'openai')
    """
    host = (urlsplit(url).hostname or "") if url else ""
    for suffix, name in _PROVIDERS:
        # Vertex AI's hosts are REGION-aiplatform.googleapis.com.
        if host == suffix or host.endswith(
            ("." + suffix, "-" + suffix if name == "gcp.vertex_ai" else "." + suffix)
        ):
            return name
    if host.startswith("bedrock") and host.endswith(".amazonaws.com"):
        return "aws.bedrock"
    return "openai"


@lru_cache(maxsize=64)  # a client calls one URL over and over: parse it once
def _server(url: str | None) -> tuple[str | None, int | None, str | None]:
    """(server.address, server.port, url.full without query or credentials) of a request URL."""
    if not url:
        return None, None, None
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return None, None, None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    # The query may hold a key (?key=...), the netloc a password: neither goes into telemetry.
    where = host if port is None else f"{host}:{port}"
    if ":" in host:
        where = f"[{host}]" if port is None else f"[{host}]:{port}"
    return host, port, f"{parts.scheme}://{where}{parts.path}"


def _capture_from_env() -> bool:
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class OtelHook:
    """A genguard hook that turns each call into spans and metrics (see the module's docstring).

    ``tracer_provider`` and ``meter_provider`` default to the global ones OpenTelemetry was set up with;
    ``capture_content`` records the messages and the answer (default: the environment variable
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``); ``provider`` overrides the
    ``gen_ai.provider.name`` read from the base URL.

    >>> hook = OtelHook(capture_content=False)
    >>> hook.capture_content
    False
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_content: bool | None = None,
        provider: str | None = None,
    ) -> None:
        version = _version()
        self.tracer = trace.get_tracer("genguard", version, tracer_provider=tracer_provider)
        meter = metrics.get_meter("genguard", version, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.capture_content = _capture_from_env() if capture_content is None else bool(capture_content)
        self.provider = provider

    def __call__(self, attempt: Attempt) -> None:
        """Each attempt as it ends: nothing to do, the call's record carries every attempt."""

    def call_ended(self, record: CallRecord) -> None:
        """Record one call's spans and metrics from its record (the retry loop calls this)."""
        outcome = record.outcome
        operation = _OPERATIONS.get(record.endpoint, record.endpoint)
        address, port, full_url = _server(record.url)
        common: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": self.provider or provider_name(record.url),
            "gen_ai.request.model": record.model,
        }
        if address is not None:
            common["server.address"] = address
            if port is not None:
                common["server.port"] = port
        answered = _answered_model(record)
        if answered:
            common["gen_ai.response.model"] = answered
        error = _error_type(record)
        attrs = {**common, "gen_ai.request.stream": record.stream, **_request_attributes(record.params)}
        attrs.update(_outcome_attributes(record, outcome, answered))
        if error is not None:
            attrs["error.type"] = error
        if self.capture_content:
            attrs.update(_content(record, outcome))
        span = self.tracer.start_span(
            f"{operation} {record.model}",
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=record.started_ns,
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, _message(record)))
        parent = trace.set_span_in_context(span)
        for attempt, (began, ended) in zip(record.attempts, record.attempt_times, strict=False):
            self._attempt_span(record, attempt, began, ended, address, port, full_url, parent)
        span.end(end_time=record.ended_ns)
        metric_attrs = dict(common)
        if error is not None:
            metric_attrs["error.type"] = error
        self.duration.record((record.ended_ns - record.started_ns) / 1e9, attributes=metric_attrs)
        usage = outcome.usage if outcome is not None else None
        if usage is not None:
            if usage.prompt_tokens is not None:
                self.token_usage.record(usage.prompt_tokens, {**common, "gen_ai.token.type": "input"})
            if usage.completion_tokens is not None:
                self.token_usage.record(usage.completion_tokens, {**common, "gen_ai.token.type": "output"})

    def _attempt_span(
        self,
        record: CallRecord,
        attempt: Attempt,
        began: int,
        ended: int,
        address: str | None,
        port: int | None,
        full_url: str | None,
        parent: Any,
    ) -> None:
        method = record.method
        attrs: dict[str, Any] = {
            "http.request.method": method or "_OTHER",
            "genguard.attempt.number": attempt.number,
        }
        if full_url is not None:
            attrs["url.full"] = full_url
        if address is not None:
            attrs["server.address"] = address
            if port is not None:
                attrs["server.port"] = port
        if attempt.number > 1:
            attrs["http.request.resend_count"] = attempt.number - 1
        if attempt.status is not None:
            attrs["http.response.status_code"] = attempt.status
        if attempt.model:
            attrs["gen_ai.request.model"] = attempt.model
        if attempt.request_id:
            attrs["genguard.request_id"] = attempt.request_id
        if attempt.code is not None:
            attrs["genguard.outcome.code"] = attempt.code
            attrs["error.type"] = attempt.code
        if attempt.wait_s > 0:
            attrs["genguard.retry.wait_s"] = attempt.wait_s
        span = self.tracer.start_span(
            method or "HTTP", context=parent, kind=SpanKind.CLIENT, attributes=attrs, start_time=began
        )
        if attempt.code is not None:
            span.set_status(Status(StatusCode.ERROR, attempt.message or attempt.code))
        span.end(end_time=ended)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("genguard")
    except PackageNotFoundError:  # pragma: no cover - a source tree not installed
        return ""


def _answered_model(record: CallRecord) -> str | None:
    """The model of the attempt that ended the call (a fallback's, when one answered)."""
    outcome = record.outcome
    if outcome is not None:
        model = outcome.extra.get("model")
        if isinstance(model, str) and model:
            return model
    if record.attempts and record.attempts[-1].model:
        return record.attempts[-1].model
    return None


def _error_type(record: CallRecord) -> str | None:
    outcome = record.outcome
    if outcome is None:
        # Closed before it ended: a stream the caller stopped reading is what genguard's stream calls it;
        # any other call was cancelled (a task cancelled, a batch run stopped).
        return "incomplete_stream" if record.stream else "cancelled"
    if outcome.ok:
        return None
    return outcome.code or "_OTHER"


def _message(record: CallRecord) -> str:
    if record.outcome is not None:
        return record.outcome.summary()
    if record.stream:
        return "the caller closed the stream before it ended"
    return "the call was cancelled before it ended"


def _request_attributes(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if not params:
        return {}
    attrs: dict[str, Any] = {}
    for key, name in _REQUEST_PARAMS:
        value = params.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[name] = value
    stop = params.get("stop")
    if isinstance(stop, str):
        attrs["gen_ai.request.stop_sequences"] = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        attrs["gen_ai.request.stop_sequences"] = tuple(stop)
    n = params.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n != 1:
        attrs["gen_ai.request.choice.count"] = n
    return attrs


def _outcome_attributes(record: CallRecord, outcome: Outcome | None, answered: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {"genguard.attempts": len(record.attempts)}
    if answered and answered != record.model:
        attrs["genguard.fallback_model"] = answered
    if outcome is None:
        attrs["genguard.outcome.ok"] = False
        if record.stream:  # the Outcome the stream gives its caller
            attrs["genguard.outcome.kind"] = code_info("incomplete_stream").kind
            attrs["genguard.outcome.code"] = "incomplete_stream"
            attrs["genguard.outcome.retryable"] = False
        return attrs
    attrs["genguard.outcome.ok"] = outcome.ok
    attrs["genguard.attempts"] = outcome.attempts
    if not outcome.ok:
        if outcome.kind is not None:
            attrs["genguard.outcome.kind"] = outcome.kind
        if outcome.code is not None:
            attrs["genguard.outcome.code"] = outcome.code
        attrs["genguard.outcome.retryable"] = outcome.retryable
    if outcome.request_id:
        attrs["genguard.request_id"] = outcome.request_id
    finish = _finish_reasons(outcome)
    if finish:
        attrs["gen_ai.response.finish_reasons"] = finish
    usage = outcome.usage
    if usage is not None:
        if usage.prompt_tokens is not None:
            attrs["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        if usage.completion_tokens is not None:
            attrs["gen_ai.usage.output_tokens"] = usage.completion_tokens
    cost = outcome.extra.get("cost_usd")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        attrs["genguard.cost_usd"] = float(cost)
    return attrs


def _finish_reasons(outcome: Outcome) -> tuple[str, ...]:
    if outcome.choices:
        return tuple(c.finish_reason for c in outcome.choices if c.finish_reason)
    return (outcome.finish_reason,) if outcome.finish_reason else ()


# -- content, only when asked for ----------------------------------------------------------------------------


def _text_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "content": part["text"]})
            elif kind == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, Mapping) else image
                if isinstance(url, str) and not url.startswith("data:"):
                    parts.append({"type": "uri", "modality": "image", "uri": url})
                else:  # inline bytes would make a span of megabytes
                    parts.append({"type": "blob", "modality": "image"})
            elif isinstance(kind, str):
                parts.append({"type": kind})
    return parts


def _input_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        parts = _text_parts(message.get("content"))
        if role == "tool":
            parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                      "response": message.get("content")}]  # fmt: skip
        for call in message.get("tool_calls") or ():
            if isinstance(call, Mapping):
                function = call.get("function") or {}
                parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
                              "arguments": function.get("arguments")})  # fmt: skip
        out.append({"role": role if isinstance(role, str) else "user", "parts": parts})
    return out


def _output_messages(outcome: Outcome) -> list[dict[str, Any]]:
    if outcome.choices:
        answers = [(c.text, c.tool_calls, c.finish_reason) for c in outcome.choices]
    else:
        answers = [(outcome.text, outcome.tool_calls, outcome.finish_reason)]
    out = []
    for text, calls, finish in answers:
        parts = _text_parts(text)
        for call in calls or ():
            parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
        out.append({"role": "assistant", "parts": parts, "finish_reason": finish or "error"})
    return out


def _content(record: CallRecord, outcome: Outcome | None) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if record.messages:
        attrs["gen_ai.input.messages"] = orjson.dumps(_input_messages(record.messages)).decode()
    if outcome is not None and (outcome.text is not None or outcome.tool_calls or outcome.choices):
        attrs["gen_ai.output.messages"] = orjson.dumps(_output_messages(outcome)).decode()
    return attrs


# -- wiring ---------------------------------------------------------------------------------------------------


def instrument(client: Any, **options: Any) -> OtelHook:
    """Add an :class:`OtelHook` (made with ``options``) to a :class:`~genguard.Client` or
    :class:`~genguard.AsyncClient` already made; its later calls are traced. Returns the hook.

    >>> hook = instrument(client, capture_content=True)  # doctest: +SKIP
    """
    hooks = getattr(client, "hooks", None)
    if not isinstance(hooks, tuple):
        raise TypeError(f"instrument() takes a genguard Client or AsyncClient, got {type(client).__name__}")
    hook = OtelHook(**options)
    client.hooks = (*hooks, hook)
    return hook


EXPORTERS = ("console", "otlp")


def setup(
    exporter: str = "console", *, service_name: str = "genguard", capture_content: bool | None = None
) -> OtelHook:
    """Set up OpenTelemetry's global tracer and meter providers to export to ``exporter`` and return a hook
    that uses them: what ``--otel`` does on the command line.

    ``"console"`` prints spans and metrics as JSON on stderr; ``"otlp"`` sends them over OTLP/HTTP, where the
    standard variables say (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``...), and needs
    ``pip install opentelemetry-exporter-otlp-proto-http``. ``OTEL_SERVICE_NAME`` overrides ``service_name``.

    >>> hook = setup("otlp")  # doctest: +SKIP
    """
    import sys

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        spans: Any = ConsoleSpanExporter(out=sys.stderr)
        readings: Any = ConsoleMetricExporter(out=sys.stderr)
    elif exporter == "otlp":
        import importlib

        try:
            # Imported by name: an optional package beside the extra, absent where the type checker runs.
            span_module = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
            metric_module = importlib.import_module("opentelemetry.exporter.otlp.proto.http.metric_exporter")
        except ImportError:
            raise ImportError(
                "--otel otlp needs the OTLP exporter: pip install opentelemetry-exporter-otlp-proto-http"
            ) from None
        spans = span_module.OTLPSpanExporter()
        readings = metric_module.OTLPMetricExporter()
    else:
        raise ValueError(f"the OpenTelemetry exporter is one of {', '.join(EXPORTERS)}, got {exporter!r}")
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(readings)]
    )
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return OtelHook(
        tracer_provider=tracer_provider, meter_provider=meter_provider, capture_content=capture_content
    )
