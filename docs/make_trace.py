"""Make docs/img/trace.png: the OpenTelemetry spans of a real run against the simulator, drawn as a trace
viewer draws them (a waterfall, and the attributes of one call), and shot by headless Chromium.

    python docs/make_trace.py          (needs the otel extra and chromium: apt-get install -y chromium)

One application span holds five genguard calls, each a different case: an ok call, a rate limit waited out
and retried, a model that is down answered by its fallback, a stream cut mid-way, and an exhausted quota.
The simulator takes 150 ms to the first token and streams 300 tokens a second; its 429 asks for 0.4 s.
"""

from __future__ import annotations

import html
import json
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from genguard import Client, RetryPolicy
from genguard.integrations.otel import OtelHook
from genguard.sim import Simulator

ROOT = Path(__file__).resolve().parents[1]
PNG = ROOT / "docs" / "img" / "trace.png"
MODEL = "gpt-4o-mini"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--hide-scrollbars",
)
# What the detail panel shows first, in this order; the rest follow sorted.
FIRST = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
         "gen_ai.request.stream", "error.type")  # fmt: skip


def record() -> tuple[ReadableSpan, ...]:
    """Run the five calls under one application span; their spans, finished."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    hook = OtelHook(tracer_provider=provider)
    tracer = provider.get_tracer("support-bot")
    ask: Any = [{"role": "user", "content": "Summarise ticket #4312 in one line"}]

    def scenario_for(request: httpx.Request) -> None:
        # The simulator plays the scenario a request names: each call below names its own.
        if _PLAY["down"] and json.loads(request.content).get("model") == _PLAY["down"]:
            request.headers["x-genguard-scenario"] = "unavailable"
        elif _PLAY["scenario"]:
            request.headers["x-genguard-scenario"] = _PLAY["scenario"]

    def stream() -> None:
        with client.stream(model=MODEL, messages=ask) as s:
            for _ in s:
                pass

    with Simulator(ttft_ms=150.0, tokens_per_s=300.0, retry_after_s=0.4, seed=1) as sim:
        http = httpx.Client(event_hooks={"request": [scenario_for]})
        with Client(sim.base_url, api_key="sk-demo", http_client=http) as warm:
            # Untraced: the first call of a process loads the price table, which is not what this page shows.
            warm.chat(model=MODEL, messages=ask, max_tokens=5)
        with (
            tracer.start_as_current_span("answer support ticket"),
            Client(sim.base_url, api_key="sk-demo", hooks=[hook], http_client=http,
                   retry=RetryPolicy(jitter=0.0)) as client,
        ):  # fmt: skip
            calls: list[tuple[str | None, str | None, Any]] = [
                (None, None, lambda: client.chat(model=MODEL, messages=ask, max_tokens=40)),
                ("rate_limited:1", None, lambda: client.chat(model=MODEL, messages=[*ask, _more("urgent")])),
                (None, "gpt-4.1", lambda: client.chat(model="gpt-4.1", messages=ask, fallbacks=[MODEL],
                                                      retry=RetryPolicy(max_attempts=2, jitter=0.0))),
                ("incomplete_stream", None, stream),
                ("quota_exceeded", None, lambda: client.chat(model=MODEL, messages=[*ask, _more("again")])),
            ]  # fmt: skip
            for scenario, down, call in calls:
                _PLAY["scenario"], _PLAY["down"] = scenario, down
                call()
        http.close()
    return tuple(spans.get_finished_spans())


_PLAY: dict[str, str | None] = {"scenario": None, "down": None}


def _more(word: str) -> dict[str, str]:
    return {"role": "user", "content": f"({word})"}


def _label(span: ReadableSpan) -> str:
    a = span.attributes or {}
    bits = []
    if "http.response.status_code" in a:
        bits.append(str(a["http.response.status_code"]))
    if "http.request.resend_count" in a:
        bits.append(f"resend {a['http.request.resend_count']}")
    if "error.type" in a:
        bits.append(str(a["error.type"]))
    if "genguard.retry.wait_s" in a:
        bits.append(f"then wait {float(str(a['genguard.retry.wait_s'])):.1f} s")
    if span.parent is not None and "gen_ai.request.model" in a and "genguard.attempt.number" in a:
        bits.append(str(a["gen_ai.request.model"]))
    return " · ".join(bits)


def render(spans: Sequence[ReadableSpan]) -> str:
    """The waterfall of ``spans`` and the attributes of the retried call, as one HTML page."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        key = span.parent.span_id if span.parent is not None else None
        by_parent.setdefault(key, []).append(span)
    for kids in by_parent.values():
        kids.sort(key=lambda s: s.start_time or 0)
    t0 = min(s.start_time or 0 for s in spans)
    t1 = max(s.end_time or 0 for s in spans)
    total = max(t1 - t0, 1)
    rows: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in by_parent.get(parent, []):
            start, end = (span.start_time or 0) - t0, (span.end_time or 0) - t0
            left, width = 100 * start / total, max(100 * (end - start) / total, 0.25)
            error = span.status.status_code is StatusCode.ERROR
            kind = "app" if depth == 0 else "call" if depth == 1 else "attempt"
            ms = (end - start) / 1e6
            rows.append(
                f'<div class="row {kind}"><div class="name" style="padding-left:{12 + depth * 18}px">'
                f"{html.escape(span.name)}</div>"
                f'<div class="lane"><div class="bar {kind}{" error" if error else ""}" '
                f'style="left:{left:.3f}%;width:{width:.3f}%"></div>'
                f'<span class="note" style="left:calc({left + width:.3f}% + 6px)">{ms:,.0f} ms'
                f"{' · ' + html.escape(_label(span)) if _label(span) else ''}</span></div></div>"
            )
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    retried = next(
        s for s in spans if s.parent is not None and (s.attributes or {}).get("genguard.attempts") == 2
    )
    attrs = dict(retried.attributes or {})
    keys = [k for k in FIRST if k in attrs] + sorted(k for k in attrs if k not in FIRST)
    table = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(_value(attrs[k]))}</td></tr>" for k in keys
    )
    ticks = "".join(
        f'<span class="tick" style="left:{100 * i / 5:.0f}%">{total * i / 5 / 1e6:,.0f} ms</span>'
        for i in range(6)
    )
    return _PAGE.format(rows="".join(rows), table=table, ticks=ticks, name=html.escape(retried.name))


def _value(value: Any) -> str:
    if isinstance(value, tuple):
        return json.dumps(list(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value) if isinstance(value, bool) else str(value)


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ font: 13px/1.35 system-ui, sans-serif; margin: 0; color: #1d2330; background: #fff; }}
header {{ padding: 10px 16px; background: #243042; color: #fff; font-weight: 600; }}
header span {{ font-weight: 400; opacity: .75; margin-left: 10px; }}
.axis, .row {{ display: grid; grid-template-columns: 300px 1fr; }}
.axis {{ border-bottom: 1px solid #d8dde6; height: 22px; }}
.axis .lane {{ position: relative; }}
.tick {{ position: absolute; top: 4px; white-space: nowrap; font-size: 11px; color: #6a7383; transform: translateX(-50%); }}
.tick:first-child {{ transform: none; }} .tick:last-child {{ transform: translateX(-100%); }}
.row {{ height: 26px; border-bottom: 1px solid #eef0f4; }}
.row.call {{ background: #f7f9fc; }}
.name {{ white-space: nowrap; overflow: hidden; text-overflow: ellipsis; align-self: center; }}
.row.call .name {{ font-weight: 600; }}
.lane {{ position: relative; margin-right: 330px; }}
.bar {{ position: absolute; top: 6px; height: 14px; border-radius: 3px; }}
.bar.app {{ background: #8a94a6; }} .bar.call {{ background: #3b7dd8; }} .bar.attempt {{ background: #6fb36f; }}
.bar.error {{ background: #d9534f; }}
.note {{ position: absolute; top: 5px; white-space: nowrap; font-size: 12px; color: #3c4454; }}
.detail {{ padding: 10px 16px; }}
.detail h3 {{ margin: 4px 0 6px; font-size: 13px; }}
table {{ border-collapse: collapse; font: 12px ui-monospace, monospace; }}
td {{ padding: 2px 14px 2px 0; vertical-align: top; }} td:first-child {{ color: #6a7383; }}
</style></head><body>
<header>Trace: answer support ticket<span>genguard · OpenTelemetry GenAI semantic conventions · in-memory
exporter of a real run against the simulator</span></header>
<div class="axis"><div></div><div class="lane">{ticks}</div></div>
{rows}
<div class="detail"><h3>Attributes of the span “{name}” (the rate-limited call)</h3><table>{table}</table></div>
</body></html>
"""


def main() -> None:
    spans = record()
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "trace.html"
        page.write_text(render(spans))
        PNG.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["/usr/bin/chromium", *CHROMIUM_FLAGS, "--window-size=1400,750", f"--screenshot={PNG}",
             page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(f"wrote {PNG.relative_to(ROOT)} from {len(spans)} spans")


if __name__ == "__main__":
    main()
