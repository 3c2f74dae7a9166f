"""What tracing costs a call: the retry loop of one ok call with no hook, with a hook whose ``call_ended`` does
nothing (the loop's own timing of the call), and with ``OtelHook`` on the OpenTelemetry SDK (two spans and
three histogram records per call; a batch span processor, an exporter that drops what it is given).

    .venv/bin/python bench/bench_otel.py            # --calls 5000 --repeats 7

No network: the loop is driven by hand with a ready Outcome, so the figures are the per-call CPU cost each
adds, comparable to a call's own (tens of microseconds in genguard, milliseconds on the wire). CPU time
(``time.process_time``), best of the repeats.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from genguard import Outcome, RetryPolicy, Usage
from genguard.client.loop import CallPlan, CallRecord, run
from genguard.integrations.otel import OtelHook

OK = Outcome.success(text="hi", finish_reason="stop", usage=Usage(5, 7, 12), status=200, request_id="req_1")
MESSAGES = [{"role": "user", "content": "hi"}]


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Nothing:
    def __call__(self, attempt: Any) -> None:
        pass

    def call_ended(self, record: CallRecord) -> None:
        pass


def _per_call(hooks: tuple[Any, ...], calls: int) -> float:
    plan = CallPlan(models=("gpt-4o-mini",), keys=(), policy=RetryPolicy(jitter=0.0), hooks=hooks,
                    messages=MESSAGES, params={}, url="http://127.0.0.1:8000/v1/chat/completions")  # fmt: skip
    start = time.process_time()
    for _ in range(calls):
        loop = run(plan)
        next(loop)
        try:
            loop.send((OK, False))
        except StopIteration:
            pass
    return (time.process_time() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=1 << 20))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    contenders = {
        "no hook": (),
        "call_ended doing nothing": (_Nothing(),),
        "OtelHook (SDK)": (OtelHook(tracer_provider=tracer_provider, meter_provider=meter_provider),),
    }
    best = {
        name: min(_per_call(hooks, args.calls) for _ in range(args.repeats))
        for name, hooks in contenders.items()
    }
    base = best["no hook"]
    for name, seconds in best.items():
        print(f"{name:26} {seconds * 1e6:8.1f} us per call   x{seconds / base:5.2f}")
    tracer_provider.shutdown()


if __name__ == "__main__":
    main()
