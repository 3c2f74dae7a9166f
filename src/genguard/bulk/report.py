"""The report of a batch run: the run's figures as data, as a few lines of text, and as one HTML page.

:func:`summary` reads the run's journal (``DIR/journal.sqlite``; the run may still be going) into a dict of
plain JSON values: lines by state and by failure code with each code's cause and fix, successes and 429s over
time, latency, tokens and cost (per model too), retries, the requests sent again after a crash, and a few
failed lines per code with the provider's own message. :func:`render_summary` prints that dict as text
(``genguard report`` and the end of ``genguard batch``); :func:`build_report` writes it as ``DIR/report.html``.

The page is self-contained: inline CSS and SVG charts drawn here, no script, no font, no image and no link
to anything outside it, so it opens with the network off, prints, and can be sent as one file. Every text
taken from the journal is masked (:func:`genguard.redact`: a provider may quote the key it refused) when the
figures are read, and escaped when the page is written (a provider's message may hold markup).

>>> render_summary(empty_summary())
'Batch run (no lines yet)'
"""

from __future__ import annotations

import heapq
import html
import math
import os
import sqlite3
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ..core.json_values import as_float
from ..core.outcome import Usage
from ..core.pricing import cache_tokens
from ..core.secrets import mask_url, redact
from ..core.taxonomy import CODES
from .journal import JOURNAL_FILE, Journal, SQLiteJournal
from .model import AttemptEvent

__all__ = [
    "JOURNAL_FILE",
    "REPORT_FILE",
    "ReportError",
    "build_report",
    "empty_summary",
    "journal_summary",
    "render_html",
    "render_summary",
    "summary",
]

REPORT_FILE = "report.html"

SAMPLES_PER_CODE = 5
MOST_ATTEMPTS_SHOWN = 5
MESSAGE_LIMIT = 600  # characters of a provider message kept in a sample: enough to read, not a whole page
META_VALUE_LIMIT = 300
STOP_LIMIT = 1500  # why the last run stopped: the provider's message and what to do, whole
MAX_BUCKETS = 120  # bars of the throughput chart: one per second for two minutes, coarser beyond
HISTOGRAM_BINS = 24
ATTEMPTS_SHOWN = 10  # the attempts-per-line chart gathers 10 and more in its last bar

# Bucket widths in seconds, the smallest giving at most MAX_BUCKETS bars is used: round numbers read better
# on a time axis than "every 37 s".
_BUCKET_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


class ReportError(Exception):
    """There is no run to report on: the directory or its journal is missing or unreadable."""


# -- reading the journal -----------------------------------------------------------------------------------


def summary(directory: str | os.PathLike[str], *, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The figures of the run in ``directory`` as plain JSON data (``genguard report --json`` prints them).

    Every string that came from the journal is masked, the keys in ``secrets`` as well as anything shaped
    like a key. Raises :class:`ReportError` when ``directory`` holds no journal, and the journal's own
    ``JournalError`` for a journal this genguard cannot read.
    """
    folder = Path(directory)
    path = folder / JOURNAL_FILE
    if not path.is_file():
        if not folder.is_dir():
            raise ReportError(
                f"{folder}: no such directory; give the --out directory of a genguard batch run"
            )
        raise ReportError(
            f"{folder} holds no batch journal ({JOURNAL_FILE}); give the --out directory of a genguard batch run"
        )
    # A folder that cannot be written (a read-only mount, an archive) is read as it is.
    read_only = not os.access(folder, os.W_OK) or not os.access(path, os.W_OK)
    try:
        with SQLiteJournal(path, read_only=read_only) as journal:
            data = _Reader(tuple(s for s in secrets if s)).read(
                journal, meta=_meta(path, read_only=read_only)
            )
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"{path} cannot be read as a batch journal: {exc}") from None
    data["dir"] = str(folder)
    return data


def journal_summary(
    journal: Journal, *, secrets: Iterable[str] = (), meta: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`summary` of the run an open journal holds (a shared run's, in PostgreSQL); its settings are
    ``meta``, or every value the journal stored when it can list them."""
    if meta is None:
        all_meta = getattr(journal, "all_meta", None)
        meta = all_meta() if callable(all_meta) else {}
    return _Reader(tuple(s for s in secrets if s)).read(journal, meta=meta or {})


def empty_summary() -> dict[str, Any]:
    """The summary of a run with no line: the shape of :func:`summary`'s dict, every figure empty."""
    return _Reader(()).result(_Totals(), [], [], {})


def _meta(path: Path, *, read_only: bool = False) -> dict[str, Any]:
    # The journal reads one meta value by name; the report lists them all, through a read-only connection of
    # its own so that nothing here can write the run's file.
    db = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if read_only else ""), uri=True
    )
    try:
        rows = db.execute("SELECT name, value FROM meta ORDER BY name").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()
    meta: dict[str, Any] = {}
    for name, value in rows:
        try:
            meta[str(name)] = orjson.loads(value)
        except orjson.JSONDecodeError:
            meta[str(name)] = value
    return meta


@dataclass
class _Model:
    lines: int = 0
    ok: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens read from the provider's prompt cache
    cache_write_tokens: int = 0  # prompt tokens written to it (Anthropic's, OpenRouter's)
    cost_usd: float = 0.0
    priced: int = 0


@dataclass
class _Totals:
    pending: int = 0
    in_flight: int = 0
    ok: int = 0
    failed: int = 0
    by_code: Mapping[str, int] = field(default_factory=dict)
    resent: int = 0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class _Reader:
    """One pass over the ended lines and one over the attempt events, in flat memory but for one float per
    line and per attempt (the percentiles need them all)."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = secrets
        self.models: dict[str, _Model] = {}
        self.samples: dict[str, list[dict[str, Any]]] = {}
        self.attempts: Counter[int] = Counter()
        self.most_attempts: list[tuple[int, int, str, str | None]] = []  # heap of (attempts, -seq, id, code)
        self.line_latency = array("d")
        self.first_at: float | None = None
        self.last_at: float | None = None
        # Moderation lines ended ok: how many, the inputs their answers checked, and how many were flagged.
        self.moderated = [0, 0, 0]

    def mask(self, text: Any) -> str:
        return redact(str(text), self.secrets)

    def read(self, journal: Journal, *, meta: Mapping[str, Any]) -> dict[str, Any]:
        c = journal.counts()
        # A proxy loads its exchanges, then records them: one it was killed between the two left pending. Its
        # outcome is unknown, as that of one in flight (the proxy's next start parks them there for good).
        unrecorded = c.pending if _proxy_meta(meta) else 0
        totals = _Totals(
            c.pending - unrecorded,
            c.in_flight + unrecorded,
            c.ok,
            c.failed,
            dict(c.by_code),
            c.resent,
            c.cost_usd,
            c.prompt_tokens,
            c.completion_tokens,
            c.total_tokens,
        )
        for ended in journal.ended():
            self.line(ended.seq, ended.custom_id, ended.number, ended.outcome, ended.response, ended.extra)
        return self.result(totals, journal.events(), self.line_latency, meta)

    def line(
        self,
        seq: int,
        custom_id: str,
        number: int,
        outcome: Mapping[str, Any],
        response: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
    ) -> None:
        ok = bool(outcome.get("ok"))
        code = None if ok else str(outcome.get("code") or "unknown")
        attempts = _int(extra.get("attempts")) or _int(outcome.get("attempts")) or 1
        self.attempts[attempts] += 1
        if attempts > 1:
            item = (attempts, -seq, custom_id, code)
            if len(self.most_attempts) < MOST_ATTEMPTS_SHOWN:
                heapq.heappush(self.most_attempts, item)
            else:
                heapq.heappushpop(self.most_attempts, item)
        latency = as_float(extra.get("latency_s"))
        if latency is not None:
            self.line_latency.append(latency)
        ended_at = as_float(extra.get("ended_at"))
        if ended_at is not None:
            self.first_at = ended_at if self.first_at is None else min(self.first_at, ended_at)
            self.last_at = ended_at if self.last_at is None else max(self.last_at, ended_at)

        body = response.get("body") if response is not None else None
        model_name = outcome.get("model") or (body.get("model") if isinstance(body, Mapping) else None)
        model = self.models.setdefault(self.mask(model_name) if model_name else "", _Model())
        model.lines += 1
        model.ok += ok
        usage = outcome.get("usage")
        if isinstance(usage, Mapping):
            model.prompt_tokens += _int(usage.get("prompt_tokens")) or 0
            model.completion_tokens += _int(usage.get("completion_tokens")) or 0
            model.total_tokens += _int(usage.get("total_tokens")) or 0
            read = Usage.from_dict(dict(usage))
            if read is not None and read.details:
                _, cached, written = cache_tokens(read)
                model.cached_tokens += cached
                model.cache_write_tokens += written
        if ok and outcome.get("endpoint") == "moderation":
            self.moderated[0] += 1
            self.moderated[1] += _int(outcome.get("results")) or 0
            self.moderated[2] += _int(outcome.get("flagged")) or 0
        cost = as_float(extra.get("cost_usd"))
        if cost is None:
            cost = as_float(outcome.get("cost_usd"))
        if cost is not None:
            model.cost_usd += cost
            model.priced += 1

        if code is not None:
            kept = self.samples.setdefault(code, [])
            if len(kept) < SAMPLES_PER_CODE:
                kept.append(self.sample(custom_id, number, outcome, response))

    def sample(
        self, custom_id: str, number: int, outcome: Mapping[str, Any], response: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        message = outcome.get("message")
        if message:
            words = self.mask(message)
            if len(words) > MESSAGE_LIMIT:
                words = f"{words[:MESSAGE_LIMIT].rstrip()}… [{len(words) - MESSAGE_LIMIT} more characters]"
        elif outcome.get("finish_reason"):
            words = f"(no error message: the answer ended with finish_reason {outcome['finish_reason']!r})"
            words = self.mask(words)
        else:
            words = None
        status = outcome.get("status")
        if status is None and response is not None:
            status = response.get("status_code")
        request_id = outcome.get("request_id") or (
            response.get("request_id") if response is not None else None
        )
        return {
            "custom_id": self.mask(custom_id),
            "line": number,
            "status": _int(status),
            "provider_code": self.mask(outcome["provider_code"]) if outcome.get("provider_code") else None,
            "message": words,
            "request_id": self.mask(request_id) if request_id else None,
            "attempts": _int(outcome.get("attempts")),
        }

    def result(
        self,
        t: _Totals,
        events: Iterable[AttemptEvent],
        line_latency: Sequence[float],
        meta: Mapping[str, Any],
    ) -> dict[str, Any]:
        ended = t.ok + t.failed
        total = ended + t.pending + t.in_flight
        throughput, attempt_latency, retries, first, last = self.read_events(events)
        lines_latency = sorted(line_latency)
        of, values = ("lines", lines_latency) if lines_latency else ("attempts", attempt_latency)
        if first is None or last is None:
            first, last = self.first_at, self.last_at
        model_rows = [
            {
                "model": name or None,
                "lines": m.lines,
                "ok": m.ok,
                "failed": m.lines - m.ok,
                "prompt_tokens": m.prompt_tokens,
                "completion_tokens": m.completion_tokens,
                "total_tokens": m.total_tokens,
                "cached_tokens": m.cached_tokens,
                "cache_write_tokens": m.cache_write_tokens,
                "cost_usd": m.cost_usd if m.priced else None,
                "priced_lines": m.priced,
            }
            for name, m in sorted(self.models.items(), key=lambda kv: (-kv[1].lines, kv[0]))
        ]
        priced = sum(m.priced for m in self.models.values())
        line_cost = sum(m.cost_usd for m in self.models.values())
        line_tokens = sum(m.total_tokens for m in self.models.values())
        lines_retried = sum(n for a, n in self.attempts.items() if a > 1)
        return {
            "dir": None,
            "generated_at": time.time(),
            "finished": total > 0 and t.pending == 0 and t.in_flight == 0,
            "lines": {
                "total": total,
                "ended": ended,
                "ok": t.ok,
                "failed": t.failed,
                "pending": t.pending,
                "in_flight": t.in_flight,
            },
            "by_code": [_code_row(self.mask(code), n, t.failed) for code, n in _by_count(t.by_code)],
            "time": {
                "first_at": first,
                "last_at": last,
                "duration_s": None if first is None or last is None else max(0.0, last - first),
            },
            "throughput": throughput,
            "latency": {
                "lines": _percentiles(lines_latency),
                "attempts": _percentiles(attempt_latency),
                "histogram": _histogram(values, of),
            },
            "tokens": {
                "prompt": t.prompt_tokens,
                "completion": t.completion_tokens,
                "total": t.total_tokens,
                "per_line": t.total_tokens / ended if ended else None,
                # Of the ended lines' prompts: read from the provider's prompt cache, and written to it.
                "cached": sum(m.cached_tokens for m in self.models.values()),
                "cache_written": sum(m.cache_write_tokens for m in self.models.values()),
                # Answers set aside by --retry-failed or --rerun-changed were paid for and stay counted.
                "set_aside": max(0, t.total_tokens - line_tokens),
            },
            "cost": {
                "total_usd": t.cost_usd if priced or t.cost_usd else None,
                "per_line_usd": t.cost_usd / ended if ended and (priced or t.cost_usd) else None,
                "priced_lines": priced,
                "unpriced_lines": ended - priced,
                # Rounded: the two sums of the same prices differ in their last bits when nothing was set aside.
                "set_aside_usd": max(0.0, round(t.cost_usd - line_cost, 9)),
            },
            "models": model_rows,
            # Moderation lines ended ok (a flagged input is a moderation's answer, not a failure).
            "moderations": (
                None
                if not self.moderated[0]
                else {"lines": self.moderated[0], "inputs": self.moderated[1], "flagged": self.moderated[2]}
            ),
            "retries": {
                **retries,
                "lines_retried": lines_retried,
                "max_attempts": max(self.attempts, default=0),
                "attempts_per_line": {str(a): n for a, n in sorted(self.attempts.items())},
                "most_attempts": [
                    {"custom_id": self.mask(cid), "attempts": a, "code": code}
                    for a, _, cid, code in sorted(self.most_attempts, reverse=True)
                ],
            },
            "resent": t.resent,
            "samples": {self.mask(code): rows for code, rows in sorted(self.samples.items())},
            "meta": {
                self.mask(k): self.meta_value(v, STOP_LIMIT if k == "stopped" else META_VALUE_LIMIT)
                for k, v in meta.items()
            },
        }

    def meta_value(self, value: Any, limit: int = META_VALUE_LIMIT) -> Any:
        if isinstance(value, bool | int | float) or value is None:
            return value
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        text = self.mask(text)
        if text.startswith(("http://", "https://")):
            text = mask_url(text)
        return text if len(text) <= limit else text[:limit] + "…"

    def read_events(
        self, events: Iterable[AttemptEvent]
    ) -> tuple[dict[str, Any], list[float], dict[str, Any], float | None, float | None]:
        ok_at = array("d")
        limited_at = array("d")
        failed_at = array("d")
        latency = array("d")
        failed_by_code: Counter[str] = Counter()
        count = 0
        waited = 0.0
        first: float | None = None
        last: float | None = None
        for e in events:
            count += 1
            at = float(e.at)
            started = at - (e.latency_s or 0.0)
            first = started if first is None else min(first, started)
            last = at if last is None else max(last, at)
            waited += e.wait_s or 0.0
            if e.latency_s is not None:
                latency.append(e.latency_s)
            if e.code is None:
                ok_at.append(at)
                continue
            failed_by_code[self.mask(e.code)] += 1
            # Rate limits, as the run's summary counts them: a 429 for quota or a request too large is a failure
            # of its own, and a rate limit said in a 200's body (a gateway's) is one.
            (limited_at if e.code == "rate_limited" else failed_at).append(at)
        retries = {
            "attempts_total": count,
            "failed_attempts_by_code": dict(_by_count(failed_by_code)),
            "waited_s": waited,
        }
        throughput = _throughput(ok_at, limited_at, failed_at, first, last)
        return throughput, sorted(latency), retries, first, last


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) else None


def _by_count(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _code_row(code: str, count: int, failed: int) -> dict[str, Any]:
    info = CODES.get(code)
    return {
        "code": code,
        "count": count,
        "share": count / failed if failed else 0.0,
        "kind": info.kind if info else None,
        "retryable": info.retryable if info else None,
        "cause": info.cause if info else "genguard does not know this code.",
        "fix": info.fix if info else "Look at the sample lines below and at the provider's message.",
    }


def _throughput(
    ok_at: Sequence[float],
    limited_at: Sequence[float],
    failed_at: Sequence[float],
    first: float | None,
    last: float | None,
) -> dict[str, Any]:
    n_ok, n_limited = len(ok_at), len(limited_at)
    empty: dict[str, Any] = {
        "start": first,
        "bucket_s": None,
        "ok": [],
        "rate_limited": [],
        "other_failed": [],
        "ok_attempts": n_ok,
        "rate_limited_total": n_limited,
        "other_failed_total": len(failed_at),
        "mean_ok_per_s": None,
        "peak_ok_per_s": None,
        "rate_limited_per_success": n_limited / n_ok if n_ok else None,
    }
    if first is None or last is None:
        return empty
    start = math.floor(first)
    span = max(last - start, 1e-9)
    width = next((s for s in _BUCKET_STEPS if span / s <= MAX_BUCKETS), None)
    if width is None:
        width = math.ceil(span / MAX_BUCKETS)
    n = max(1, math.ceil(span / width))

    def bucketed(times: Sequence[float]) -> list[int]:
        counts = [0] * n
        for at in times:
            counts[min(n - 1, max(0, int((at - start) // width)))] += 1
        return counts

    ok = bucketed(ok_at)
    empty.update(
        start=start,
        bucket_s=width,
        ok=ok,
        rate_limited=bucketed(limited_at),
        other_failed=bucketed(failed_at),
        mean_ok_per_s=n_ok / max(last - first, width),
        peak_ok_per_s=max(ok) / width,
    )
    return empty


def _percentile(values: Sequence[float], q: float) -> float:
    # Nearest rank: a value that was measured, never one between two.
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _percentiles(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    return {
        "count": len(values),
        "p50": _percentile(values, 0.50),
        "p90": _percentile(values, 0.90),
        "p99": _percentile(values, 0.99),
        "max": values[-1],
        "mean": math.fsum(values) / len(values),
    }


def _nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``x``: a step an axis can show."""
    if x <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(x))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * base >= x * (1 - 1e-9):
            return m * base
    return 10 * base  # pragma: no cover - 10 * base is always >= x


def _histogram(values: Sequence[float], of: str) -> dict[str, Any]:
    """Equal-width bins from 0, of a nice width; a long tail (max over twice p99) is one last bar of its own
    so that one stuck request does not squeeze the others into a single bar."""
    if not values:
        return {"of": of, "edges": [], "counts": [], "overflow": 0}
    top = values[-1]
    p99 = _percentile(values, 0.99)
    upper = p99 * 1.2 if len(values) >= 100 and top > 2 * p99 else top
    width = _nice_ceiling(upper / HISTOGRAM_BINS) if upper > 0 else 1.0
    n = max(1, math.ceil(upper / width - 1e-9))
    counts = [0] * n
    overflow = 0
    for v in values:
        i = int(v / width + 1e-9)  # 0.7 s is in the 0.7-0.8 bar, though 0.7 // 0.1 is 6.0
        if i < n:
            counts[max(i, 0)] += 1
        elif v <= upper:
            counts[n - 1] += 1
        else:
            overflow += 1
    return {
        "of": of,
        "edges": [round(i * width, 12) for i in range(n + 1)],
        "counts": counts,
        "overflow": overflow,
    }


# -- text ----------------------------------------------------------------------------------------------------


def _proxy(data: Mapping[str, Any]) -> bool:
    """Whether the journal is a proxy's record of its traffic (``genguard proxy --journal``), not a batch run."""
    return _proxy_meta(data.get("meta") or {})


def _proxy_meta(meta: Mapping[str, Any]) -> bool:
    return meta.get("source") == "genguard proxy"


def render_summary(data: Mapping[str, Any]) -> str:
    """The figures of :func:`summary` as a few plain lines, for a terminal or a log.

    >>> print(render_summary(empty_summary()))
    Batch run (no lines yet)
    """
    lines_ = data["lines"]
    where = f" in {data['dir']}" if data.get("dir") else ""
    what = "Proxy traffic" if _proxy(data) else "Batch run"
    if not lines_["total"]:
        return f"{what}{where} (no lines yet)"
    if data["finished"]:
        state = "finished"
    elif _proxy(data):
        state = (
            f"{lines_['in_flight']:,} exchanges in flight: the proxy is serving them, or stopped before they "
            "ended"
        )
    else:
        state = (
            f"not finished: {lines_['pending']:,} pending, {lines_['in_flight']:,} in flight; "
            "run the same genguard batch command again to resume"
        )
    out = [f"{what}{where} ({state})"]

    def row(label: str, text: str) -> None:
        out.append(f"  {label:<10} {text}")

    stopped = _stopped(data)
    if stopped:
        row("stopped", stopped)

    row("lines", f"{lines_['total']:,}: {lines_['ok']:,} ok, {lines_['failed']:,} failed")
    if data["by_code"]:
        row("failures", ", ".join(f"{r['code']} {r['count']:,}" for r in data["by_code"]))
    tp = data["throughput"]
    timing = []
    if data["time"]["duration_s"] is not None:
        timing.append(_duration(data["time"]["duration_s"]))
    if tp["mean_ok_per_s"] is not None:
        timing.append(f"{_rate(tp['mean_ok_per_s'])} ok/s on average, {_rate(tp['peak_ok_per_s'])} at peak")
    if tp["ok_attempts"] or tp["rate_limited_total"]:
        per = tp["rate_limited_per_success"]
        timing.append(
            f"{tp['rate_limited_total']:,} 429s" + (f" ({per:.3f} per success)" if per is not None else "")
        )
    if timing:
        row("time", "; ".join(timing))
    lat = data["latency"]["lines"]
    scope = "per line"
    if not lat["count"]:
        lat, scope = data["latency"]["attempts"], "per request"
    if lat["count"]:
        row("latency", f"p50 {_secs(lat['p50'])}, p90 {_secs(lat['p90'])}, p99 {_secs(lat['p99'])} ({scope})")
    tok = data["tokens"]
    if tok["total"]:
        row(
            "tokens",
            f"{tok['total']:,} ({tok['prompt']:,} prompt + {tok['completion']:,} completion)"
            + (f", {tok['per_line']:,.0f} per line" if tok["per_line"] is not None else "")
            + _cache_words(tok),
        )
    cost = data["cost"]
    if cost["total_usd"] is not None:
        text = f"{_money(cost['total_usd'])}"
        if cost["per_line_usd"] is not None:
            text += f", {_money(cost['per_line_usd'])} per line"
        if cost["unpriced_lines"]:
            text += f" ({cost['unpriced_lines']:,} lines without a price)"
        row("cost", text)
    elif lines_["ended"] and not tok["total"]:
        row("cost", "none counted: no answer stated the tokens it used")
    elif lines_["ended"]:
        from ..core.pricing import prices_available

        row(
            "cost",
            "unknown: no price table knows these models"
            if prices_available()
            else "unknown: no price table is installed (pip install 'genguard[prices]')",
        )
    moderated = data.get("moderations")
    if moderated:
        row(
            "flagged",
            f"{moderated['flagged']:,} of the {moderated['inputs']:,} inputs that {moderated['lines']:,} "
            "moderation lines checked",
        )
    retries = data["retries"]
    if retries["lines_retried"]:
        row(
            "retries",
            f"{retries['lines_retried']:,} lines needed more than one attempt "
            f"({retries['attempts_total']:,} attempts in all)",
        )
    if data["resent"]:
        row("re-sent", _resent_sentence(data["resent"]))
    for r in data["by_code"]:
        out.append(f"  {r['code']} ({r['count']:,}): {r['cause']}")
        out.append(f"      fix: {r['fix']}")
    return "\n".join(out)


def _resent_sentence(n: int) -> str:
    if n == 1:
        return "1 request was sent again after a crash: it may have been billed twice"
    return f"{n:,} requests were sent again after a crash: they may have been billed twice"


def _num(v: float) -> str:
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _rate(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:,.1f}" if v >= 10 else f"{v:.2f}".rstrip("0").rstrip(".")


def _secs(v: float | None) -> str:
    if v is None:
        return "–"
    if v < 1:
        return f"{v * 1000:.0f} ms"
    if v < 60:
        return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"
    return _duration(v)


def _tick_secs(v: float) -> str:
    # An axis label: as short as the value allows ("4 s", "2.5 s", "200 ms"), the scale shows the precision.
    return f"{v * 1000:.0f} ms" if 0 < v < 1 else f"{_num(v)} s"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _money(v: float) -> str:
    if v == 0:
        return "$0"
    if v < 0.01:
        text = f"{v:.6f}".rstrip("0").rstrip(".")
        return "under $0.000001" if text == "0" else f"${text}"
    if v < 1:
        return f"${v:.4f}"
    return f"${v:,.2f}"


def _clock(at: float | None) -> str:
    if at is None:
        return "–"
    return datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


# -- the page --------------------------------------------------------------------------------------------------


def build_report(
    directory: str | os.PathLike[str], *, secrets: Iterable[str] = (), data: Mapping[str, Any] | None = None
) -> Path:
    """Write ``directory/report.html`` (see the module docstring) and return its path.

    ``data`` is a :func:`summary` of the same directory when the caller has one already; without it the
    journal is read here. The page is written to a temporary file renamed over the old one, so a reader never
    sees half a page.
    """
    folder = Path(directory)
    if data is None:
        data = summary(folder, secrets=secrets)
    target = folder / REPORT_FILE
    partial = folder / (REPORT_FILE + ".partial")
    partial.write_text(render_html(data), encoding="utf-8")
    os.replace(partial, target)
    return target


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
:root { color-scheme: light; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa;
  --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --other: #8c959f; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.45;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main, header.page { max-width: 1120px; margin: 0 auto; padding: 0 24px; }
header.page { padding-top: 24px; }
h1 { font-size: 1.7rem; margin: 0 0 4px; }
h2 { font-size: 1.3rem; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 22px 0 6px; }
p { margin: 6px 0 10px; max-width: 78ch; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 0.92em; }
.sub { color: var(--muted); margin: 0; }
nav.toc { margin: 14px 0 0; font-size: 0.92rem; }
nav.toc ol { list-style: none; display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 0; padding: 0; }
nav.toc a { color: var(--accent); text-decoration: none; }
.status { border-left: 4px solid var(--ok); background: var(--soft); padding: 10px 14px; margin: 18px 0 6px;
  max-width: none; }
.status.warn { border-color: var(--warn); }
.status.bad { border-color: var(--bad); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px; margin: 14px 0;
  padding: 0; }
.cards div { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.cards dt { color: var(--muted); font-size: 0.85rem; }
.cards dd { margin: 2px 0 0; font-size: 1.45rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.cards dd small { font-size: 0.8rem; font-weight: 400; color: var(--muted); }
table { border-collapse: collapse; margin: 8px 0 16px; width: 100%; font-size: 0.92rem; }
caption { text-align: left; font-weight: 600; padding: 4px 0 6px; }
th, td { text-align: left; vertical-align: top; padding: 6px 10px 6px 0; border-bottom: 1px solid var(--line); }
thead th { color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--line); }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.msg { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 60ch; }
.id { overflow-wrap: anywhere; max-width: 24ch; }
figure { margin: 10px 0 18px; }
figcaption { color: var(--muted); font-size: 0.9rem; margin-top: 4px; max-width: 90ch; }
svg.chart { width: 100%; height: auto; display: block; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--muted); }
svg .grid { stroke: #eaeef2; stroke-width: 1; }
svg .axis { stroke: var(--line); stroke-width: 1; }
svg text.marker { fill: var(--ink); stroke: #fff; stroke-width: 3px; paint-order: stroke; }
.legend { display: flex; gap: 18px; font-size: 0.88rem; color: var(--muted); margin: 0 0 4px; padding: 0;
  list-style: none; }
.legend li::before { content: ""; display: inline-block; width: 11px; height: 11px; margin-right: 6px;
  vertical-align: -1px; background: var(--c); border-radius: 2px; }
details { margin: 4px 0 12px; }
summary { cursor: pointer; color: var(--accent); font-size: 0.9rem; }
.tag { display: inline-block; font-size: 0.78rem; padding: 0 6px; border-radius: 10px; border: 1px solid var(--line);
  color: var(--muted); white-space: nowrap; }
.cause { margin: 0; }
.fix { margin: 2px 0 0; color: var(--muted); }
.muted { color: var(--muted); }
footer { max-width: 1120px; margin: 40px auto 30px; padding: 0 24px; color: var(--muted); font-size: 0.85rem; }
@media print {
  body { font-size: 11pt; }
  nav.toc, details summary { display: none; }
  h2 { break-after: avoid; }
  figure, table, .cards { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
  main, header.page, footer { max-width: none; padding: 0; }
}
"""

_OK, _BAD, _OTHER, _ACCENT = "#1a7f37", "#cf222e", "#8c959f", "#0969da"
_SECTIONS = (
    ("summary", "Summary"),
    ("throughput", "Throughput and 429s"),
    ("latency", "Latency"),
    ("cost", "Tokens and cost"),
    ("retries", "Retries"),
    ("resent", "Re-sent after a crash"),
    ("failures", "Sample failures"),
    ("run", "Run"),
)


def render_html(data: Mapping[str, Any]) -> str:
    """The report page of a :func:`summary` dict: one self-contained HTML document (the module docstring says
    what it holds). Every value is escaped here.

    >>> page = render_html(empty_summary())
    >>> page.startswith("<!doctype html>"), "<script" in page
    (True, False)
    """
    from .. import __version__

    folder = data.get("dir") or ""
    name = Path(folder).name or folder or "batch run"
    title = "Proxy report" if _proxy(data) else "Batch report"
    parts = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="genguard {_e(__version__)}">',
        f"<title>{title}: {_e(name)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        '<header class="page">',
        f"<h1>{title}: {_e(name)}</h1>",
        f'<p class="sub">Run in <code>{_e(folder)}</code>; report made {_e(_clock(data.get("generated_at")))}</p>',
        '<nav class="toc" aria-label="Sections"><ol>',
        *(f'<li><a href="#{key}">{title}</a></li>' for key, title in _SECTIONS),
        "</ol></nav>",
        "</header>",
        "<main>",
        _summary_section(data),
        _throughput_section(data),
        _latency_section(data),
        _cost_section(data),
        _retries_section(data),
        _resent_section(data),
        _failures_section(data),
        _run_section(data),
        "</main>",
        f"<footer>Made by genguard {_e(__version__)} from <code>{_e(JOURNAL_FILE)}</code>. "
        "Run <code>genguard report DIR</code> to make it again.</footer>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


def _section(key: str, *body: str) -> str:
    title = dict(_SECTIONS)[key]
    return "\n".join(
        [
            f'<section id="{key}" aria-labelledby="h-{key}">',
            f'<h2 id="h-{key}">{title}</h2>',
            *body,
            "</section>",
        ]
    )


def _table(caption: str, head: Sequence[tuple[str, str]], rows: Iterable[Sequence[str]]) -> str:
    """A table whose caption and cells are already HTML; ``head`` gives each column's label and CSS class
    (``n`` for numbers, ``msg`` for free text, ``""`` for none). The first cell of a row is its header."""
    classes = [f' class="{cls}"' if cls else "" for _, cls in head]
    out = [f"<table><caption>{caption}</caption><thead><tr>"]
    out += [f'<th scope="col"{c}>{_e(label)}</th>' for (label, _), c in zip(head, classes, strict=True)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = [
            f'<th scope="row"{c}>{cell}</th>' if i == 0 else f"<td{c}>{cell}</td>"
            for i, (cell, c) in enumerate(zip(row, classes, strict=True))
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _card(label: str, value: str, note: str = "") -> str:
    small = f" <small>{note}</small>" if note else ""
    return f"<div><dt>{_e(label)}</dt><dd>{value}{small}</dd></div>"


def _pct(part: float, whole: float) -> str:
    if not whole:
        return ""
    share = 100 * part / whole
    return f"{share:.1f}%" if share < 99.95 or part == whole else "99.9%"


def _stopped(data: Mapping[str, Any]) -> str | None:
    """Why the last run of an unfinished batch stopped, as it said it (``None``: killed, or still going)."""
    if data["finished"]:
        return None
    reason = (data.get("meta") or {}).get("stopped")
    return reason if isinstance(reason, str) and reason else None


def _summary_section(data: Mapping[str, Any]) -> str:
    lines_ = data["lines"]
    total = lines_["total"]
    if not total:
        status = '<p class="status warn">The journal holds no line yet.</p>'
    elif _proxy(data) and not data["finished"]:
        status = (
            f'<p class="status warn"><strong>{lines_["in_flight"]:,} exchanges were in flight</strong> when '
            "this was read: the proxy is serving them, or was stopped before they ended.</p>"
        )
    elif _proxy(data) and lines_["failed"]:
        status = (
            f'<p class="status bad"><strong>{lines_["failed"]:,} of {total:,} exchanges failed</strong> '
            f"({_pct(lines_['failed'], total)}): what went wrong and how to fix it below.</p>"
        )
    elif not data["finished"]:
        stopped = _stopped(data)
        why = f" It stopped: {_e(stopped)}." if stopped else ""
        status = (
            f'<p class="status warn"><strong>This run has not finished:</strong> {lines_["pending"]:,} lines '
            f"pending and {lines_['in_flight']:,} in flight.{why} Run the same <code>genguard batch</code> "
            "command again to resume: lines that ended are not sent again.</p>"
        )
    elif lines_["failed"]:
        status = (
            f'<p class="status bad"><strong>Finished with {lines_["failed"]:,} failed '
            f"line{'s' if lines_['failed'] != 1 else ''}</strong> ({_pct(lines_['failed'], total)}): their "
            "results are in <code>errors.jsonl</code>, what went wrong and how to fix it below.</p>"
        )
    else:
        status = '<p class="status"><strong>Finished: every line ended ok.</strong> The results are in <code>output.jsonl</code>.</p>'
    cost = data["cost"]
    duration = data["time"]["duration_s"]
    cards = [
        _card("Lines", f"{total:,}"),
        _card("OK", f"{lines_['ok']:,}", _pct(lines_["ok"], total)),
        _card("Failed", f"{lines_['failed']:,}", _pct(lines_["failed"], total)),
        _card(
            "Pending",
            f"{lines_['pending'] + lines_['in_flight']:,}",
            "incl. in flight" if lines_["in_flight"] else "",
        ),
        _card("Duration", _e(_duration(duration)) if duration is not None else "–"),
        _card("Cost", _e(_money(cost["total_usd"])) if cost["total_usd"] is not None else "unknown"),
    ]
    out = [status, '<dl class="cards">', *cards, "</dl>", _state_bar(lines_)]
    rows = data["by_code"]
    if rows:
        out.append(
            _table(
                "Failed lines by code, with what each code means and what to do",
                [("Code", ""), ("Lines", "n"), ("Share", "n"), ("Kind", ""), ("Cause and fix", "")],
                (
                    [
                        f"<code>{_e(r['code'])}</code>",
                        f"{r['count']:,}",
                        _pct(r["count"], lines_["failed"]),
                        _e(r["kind"] or "–")
                        + (' <span class="tag">retryable</span>' if r["retryable"] else ""),
                        f'<p class="cause">{_e(r["cause"])}</p><p class="fix"><strong>Fix:</strong> {_e(r["fix"])}</p>',
                    ]
                    for r in rows
                ),
            )
        )
    elif lines_["ended"]:
        out.append("<p>No line failed.</p>")
    return _section("summary", *out)


def _state_bar(lines_: Mapping[str, Any]) -> str:
    total = lines_["total"]
    if not total:
        return ""
    parts = [
        ("ok", lines_["ok"], _OK),
        ("failed", lines_["failed"], _BAD),
        ("pending or in flight", lines_["pending"] + lines_["in_flight"], _OTHER),
    ]
    alt = ", ".join(f"{n:,} {label}" for label, n, _ in parts if n)
    w, h = 1000.0, 18.0
    x = 0.0
    rects = []
    for label, n, color in parts:
        if not n:
            continue
        width = w * n / total
        rects.append(
            f'<rect x="{x:.2f}" y="0" width="{width:.2f}" height="{h}" fill="{color}">'
            f"<title>{_e(f'{n:,} {label}')}</title></rect>"
        )
        x += width
    return (
        f'<svg class="chart" viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="Lines: {_e(alt)}" '
        f'preserveAspectRatio="none" style="height:18px">{"".join(rects)}</svg>'
    )


# -- charts --


@dataclass
class _Plot:
    """A plot area inside an SVG: maps data to pixels and draws the axes' grid and labels."""

    x: float
    y: float
    w: float
    h: float
    top: float  # the value at the top of the y axis
    out: list[str] = field(default_factory=list)

    def y_of(self, v: float) -> float:
        return self.y + self.h - (self.h * v / self.top if self.top else 0.0)

    def y_axis(self, ticks: Sequence[float], label: str) -> None:
        for t in ticks:
            yy = self.y_of(t)
            self.out.append(
                f'<line class="grid" x1="{self.x}" x2="{self.x + self.w}" y1="{yy:.1f}" y2="{yy:.1f}"/>'
            )
            self.out.append(f'<text x="{self.x - 6}" y="{yy + 4:.1f}" text-anchor="end">{_e(_num(t))}</text>')
        self.out.append(
            f'<line class="axis" x1="{self.x}" x2="{self.x + self.w}" y1="{self.y + self.h}" y2="{self.y + self.h}"/>'
        )
        self.out.append(f'<text x="{self.x}" y="{self.y - 8}" text-anchor="start">{_e(label)}</text>')

    def bars(
        self,
        values: Sequence[float],
        color: str,
        tips: Sequence[str] | None = None,
        colors: Sequence[str] | None = None,
    ) -> None:
        if not values:
            return
        step = self.w / len(values)
        gap = min(2.0, step * 0.15)
        for i, v in enumerate(values):
            if v <= 0:
                continue
            top = self.y_of(v)
            tip = f"<title>{_e(tips[i])}</title>" if tips else ""
            self.out.append(
                f'<rect x="{self.x + i * step + gap / 2:.2f}" y="{top:.2f}" width="{max(step - gap, 0.5):.2f}" '
                f'height="{self.y + self.h - top:.2f}" fill="{colors[i] if colors else color}">{tip}</rect>'
            )


def _ticks(vmax: float, count: int = 4) -> tuple[float, list[float]]:
    step = _nice_ceiling(vmax / count) if vmax > 0 else 1.0
    top = step * max(1, math.ceil(vmax / step - 1e-9))
    return top, [i * step for i in range(round(top / step) + 1)]


def _svg(ident: str, w: int, h: int, title: str, desc: str, body: Iterable[str]) -> str:
    return "".join(
        [
            f'<svg class="chart" id="{ident}" viewBox="0 0 {w} {h}" role="img" '
            f'aria-labelledby="{ident}-t {ident}-d">',
            f'<title id="{ident}-t">{_e(title)}</title><desc id="{ident}-d">{_e(desc)}</desc>',
            *body,
            "</svg>",
        ]
    )


def _legend(items: Sequence[tuple[str, str]]) -> str:
    lis = "".join(f'<li style="--c:{color}">{_e(label)}</li>' for label, color in items)
    return f'<ul class="legend" aria-hidden="true">{lis}</ul>'


def _clock_offset(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _throughput_section(data: Mapping[str, Any]) -> str:
    tp = data["throughput"]
    if not tp["bucket_s"]:
        return _section("throughput", "<p>No attempt was recorded yet.</p>")
    width = float(tp["bucket_s"])
    ok = [n / width for n in tp["ok"]]
    limited = [n / width for n in tp["rate_limited"]]
    n = len(ok)
    span = n * width
    w, left, right = 1000, 58, 14
    plot_w = w - left - right
    ok_top, ok_ticks = _ticks(max(ok, default=0))
    lim_top, lim_ticks = _ticks(max(limited, default=0), 2)
    upper = _Plot(left, 28, plot_w, 190, ok_top)
    lower = _Plot(left, 262, plot_w, 80, lim_top)
    upper.y_axis(ok_ticks, "successes per second")
    lower.y_axis(lim_ticks, "429s per second")

    def tip(i: int, what: str, counts: Sequence[int]) -> str:
        return f"{_clock_offset(i * width)}–{_clock_offset((i + 1) * width)}: {counts[i]:,} {what}"

    upper.bars(ok, _OK, [tip(i, "successes", tp["ok"]) for i in range(n)])
    lower.bars(limited, _BAD, [tip(i, "429s", tp["rate_limited"]) for i in range(n)])
    if not tp["rate_limited_total"]:
        lower.out.append(
            f'<text x="{left + plot_w / 2}" y="{262 + 40}" text-anchor="middle">no 429 answer</text>'
        )
    axis = []
    tick = next((s for s in _BUCKET_STEPS if s >= width and span / s <= 8), max(width, math.ceil(span / 8)))
    t = 0.0
    while t <= span + 1e-9:
        xx = left + plot_w * t / span
        axis.append(f'<line class="axis" x1="{xx:.1f}" x2="{xx:.1f}" y1="342" y2="347"/>')
        # The last label would overflow the chart's right edge if centred on it.
        anchor = "end" if xx > left + plot_w - 20 else "middle"
        axis.append(f'<text x="{xx:.1f}" y="362" text-anchor="{anchor}">{_clock_offset(t)}</text>')
        t += tick
    form = "h:mm:ss" if span >= 3600 else "m:ss"
    axis.append(
        f'<text x="{left + plot_w}" y="380" text-anchor="end">time since the first request ({form})</text>'
    )
    mean, peak = tp["mean_ok_per_s"], tp["peak_ok_per_s"]
    per = tp["rate_limited_per_success"]
    alt = (
        f"Successes per second over {_duration(span)} in {n} bars of {_num(width)} s: {_rate(mean)} on average, "
        f"{_rate(peak)} at peak. {tp['rate_limited_total']:,} 429 answers"
        + (f" ({per:.3f} per success)" if per is not None else "")
        + f"; {tp['other_failed_total']:,} other failed attempts (not drawn)."
    )
    chart = _svg(
        "chart-throughput", w, 390, "Successes and 429s over time", alt, [*upper.out, *lower.out, *axis]
    )
    rows = [
        [
            f"{_clock_offset(i * width)}",
            f"{tp['ok'][i]:,}",
            f"{tp['rate_limited'][i]:,}",
            f"{tp['other_failed'][i]:,}",
        ]
        for i in range(n)
    ]
    table = _table(
        f"Attempts per {_num(width)}-second interval",
        [("From (m:ss)", ""), ("Successes", "n"), ("429s", "n"), ("Other failures", "n")],
        rows,
    )
    figure = "\n".join(
        [
            "<figure>",
            _legend([("successes per second", _OK), ("429 (rate limited) answers per second", _BAD)]),
            chart,
            f"<figcaption>{_e(alt)}</figcaption>",
            "</figure>",
            f"<details><summary>The figures as a table</summary>{table}</details>",
        ]
    )
    intro = (
        f"<p>Every attempt, as it ended: {tp['ok_attempts']:,} successful answers and "
        f"{tp['rate_limited_total']:,} 429s. A run at the provider's limit shows a flat top of successes with "
        "few 429s; bursts of 429s mean the rate went over the limit and the run slowed down.</p>"
    )
    return _section("throughput", intro, figure)


def _latency_section(data: Mapping[str, Any]) -> str:
    lat = data["latency"]
    hist = lat["histogram"]
    if not hist["counts"]:
        return _section("latency", "<p>No latency was recorded yet.</p>")
    regular = list(hist["counts"])
    edges = hist["edges"]
    # The tail past the last edge is a grey bar apart, one empty slot to the right of the others.
    counts = regular + ([0, hist["overflow"]] if hist["overflow"] else [])
    w, left, right = 1000, 58, 14
    plot_w = w - left - right
    top, ticks = _ticks(max(counts))
    plot = _Plot(left, 28, plot_w, 220, top)
    who = "lines" if hist["of"] == "lines" else "requests"
    plot.y_axis(ticks, who)
    tips = [f"{_secs(edges[i])}–{_secs(edges[i + 1])}: {n:,} {who}" for i, n in enumerate(regular)]
    colors = [_ACCENT] * len(regular)
    if hist["overflow"]:
        tips += ["", f"over {_secs(edges[-1])}: {hist['overflow']:,} {who}"]
        colors += [_OTHER, _OTHER]
    plot.bars(counts, _ACCENT, tips, colors)
    step = plot_w / len(counts)
    axis = []
    every = max(1, math.ceil(len(regular) / 10))
    for i in range(0, len(regular) + 1, every):
        xx = left + i * step
        axis.append(f'<line class="axis" x1="{xx:.1f}" x2="{xx:.1f}" y1="248" y2="253"/>')
        anchor = "end" if xx > left + plot_w - 20 else "middle"
        axis.append(f'<text x="{xx:.1f}" y="268" text-anchor="{anchor}">{_e(_tick_secs(edges[i]))}</text>')
    if hist["overflow"]:
        axis.append(f'<text x="{left + plot_w:.1f}" y="268" text-anchor="end">longer</text>')
    scope = lat["lines"] if hist["of"] == "lines" else lat["attempts"]
    bin_w = edges[1] - edges[0]
    for q, dash in (("p50", "4 3"), ("p90", "6 3"), ("p99", "2 2")):
        v = scope[q]
        if v is None or v > edges[-1]:
            continue
        xx = left + step * v / bin_w
        axis.append(
            f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="22" y2="248" stroke="#1f2328" stroke-dasharray="{dash}"/>'
        )
        # Labels name the marker only (the values are in the text and the table below), each on its own row,
        # so that close markers do not write over each other; near the right edge a label goes on the left.
        anchor, dx = ("end", -4) if xx > left + plot_w * 0.85 else ("start", 4)
        yy = 40 + 15 * ("p50", "p90", "p99").index(q)
        axis.append(f'<text class="marker" x="{xx + dx:.1f}" y="{yy}" text-anchor="{anchor}">{q}</text>')
    axis.append(
        f'<text x="{left + plot_w}" y="286" text-anchor="end">'
        f"{'time per line, retries and waits included' if who == 'lines' else 'time per request'}</text>"
    )
    alt = (
        f"Histogram of {scope['count']:,} {who} by latency: p50 {_secs(scope['p50'])}, p90 {_secs(scope['p90'])}, "
        f"p99 {_secs(scope['p99'])}, longest {_secs(scope['max'])}"
        + (f"; {hist['overflow']:,} over {_secs(edges[-1])} in the last bar." if hist["overflow"] else ".")
    )
    chart = _svg("chart-latency", w, 296, "Latency distribution", alt, [*plot.out, *axis])
    pct_rows = []
    for label, row in (
        ("Per line (retries and waits included)", lat["lines"]),
        ("Per request (one attempt)", lat["attempts"]),
    ):
        if row["count"]:
            pct_rows.append(
                [
                    _e(label),
                    f"{row['count']:,}",
                    *(_e(_secs(row[k])) for k in ("p50", "p90", "p99", "max", "mean")),
                ]
            )
    table = _table(
        "Latency percentiles",
        [("", ""), ("Count", "n"), ("p50", "n"), ("p90", "n"), ("p99", "n"), ("Max", "n"), ("Mean", "n")],
        pct_rows,
    )
    figure = f"<figure>{chart}<figcaption>{_e(alt)}</figcaption></figure>"
    return _section("latency", figure, table)


def _cost_section(data: Mapping[str, Any]) -> str:
    tok, cost = data["tokens"], data["cost"]
    ended = data["lines"]["ended"]
    rows = [
        ["Prompt tokens", f"{tok['prompt']:,}", _avg(tok["prompt"], ended)],
        ["Completion tokens", f"{tok['completion']:,}", _avg(tok["completion"], ended)],
        ["Total tokens", f"{tok['total']:,}", _avg(tok["total"], ended)],
    ]
    cached, written = tok.get("cached", 0), tok.get("cache_written", 0)
    if cached or written:
        rows += [
            ["Prompt tokens read from the provider's cache", f"{cached:,}", _avg(cached, ended)],
            ["Prompt tokens written to it", f"{written:,}", _avg(written, ended)],
        ]
    rows += [
        [
            "Cost (US dollars)",
            _e(_money(cost["total_usd"])) if cost["total_usd"] is not None else "unknown",
            _e(_money(cost["per_line_usd"])) if cost["per_line_usd"] is not None else "–",
        ],
    ]
    moderated = data.get("moderations")
    if moderated:
        rows.append(
            ["Moderation inputs flagged", f"{moderated['flagged']:,}", f"of {moderated['inputs']:,} checked"]
        )
    out = [_table("Tokens and cost of the run", [("", ""), ("Total", "n"), ("Per ended line", "n")], rows)]
    notes = []
    if cost["total_usd"] is None and ended:
        notes.append(
            "No cost is known: genguard takes the cost a provider states in its answers (OpenRouter's), else "
            "prices calls from the genai-prices table (<code>pip install 'genguard[prices]'</code>), and does "
            "not guess for a model it does not know."
        )
    elif cost["unpriced_lines"]:
        notes.append(
            f"{cost['unpriced_lines']:,} ended lines have no price (a failure with no answer, or a model "
            "the price table does not know): the cost counts the others."
        )
    if cost["set_aside_usd"] or tok["set_aside"]:
        notes.append(
            f"The totals include {_e(_money(cost['set_aside_usd']))} and {tok['set_aside']:,} tokens paid for "
            "answers that were set aside when lines were run again (<code>--retry-failed</code>, "
            "<code>--rerun-changed</code>)."
        )
    out += [f"<p>{n}</p>" for n in notes]
    if data["models"]:
        out.append(
            _table(
                "By model",
                [
                    ("Model", ""),
                    ("Lines", "n"),
                    ("OK", "n"),
                    ("Failed", "n"),
                    ("Prompt tokens", "n"),
                    ("Completion tokens", "n"),
                    ("Cost", "n"),
                    ("Cost per line", "n"),
                ],
                (
                    [
                        f"<code>{_e(m['model'])}</code>"
                        if m["model"]
                        else '<span class="muted">not known</span>',
                        f"{m['lines']:,}",
                        f"{m['ok']:,}",
                        f"{m['failed']:,}",
                        f"{m['prompt_tokens']:,}",
                        f"{m['completion_tokens']:,}",
                        _e(_money(m["cost_usd"])) if m["cost_usd"] is not None else "–",
                        _e(_money(m["cost_usd"] / m["lines"])) if m["cost_usd"] is not None else "–",
                    ]
                    for m in data["models"]
                ),
            )
        )
    return _section("cost", *out)


def _cache_words(tok: Mapping[str, Any]) -> str:
    """The summary's words on the provider's prompt cache, when a line's prompt used it."""
    cached, written = tok.get("cached", 0), tok.get("cache_written", 0)
    parts = [f"{cached:,} read from the provider's prompt cache"] if cached else []
    if written:
        parts.append(f"{written:,} written to it")
    return f"; of the prompts, {' and '.join(parts)}" if parts else ""


def _avg(total: float, n: int) -> str:
    return f"{total / n:,.1f}" if n else "–"


def _retries_section(data: Mapping[str, Any]) -> str:
    r = data["retries"]
    ended = data["lines"]["ended"]
    if not ended:
        return _section("retries", "<p>No line has ended yet.</p>")
    per_line = {int(k): v for k, v in r["attempts_per_line"].items()}
    values = [per_line.get(a, 0) for a in range(1, ATTEMPTS_SHOWN)]
    values.append(sum(v for a, v in per_line.items() if a >= ATTEMPTS_SHOWN))
    while len(values) > 3 and values[-1] == 0:
        values.pop()
    labels = [str(a) for a in range(1, len(values) + 1)]
    if len(values) == ATTEMPTS_SHOWN:
        labels[-1] = f"{ATTEMPTS_SHOWN}+"
    w, left, right = 1000, 58, 14
    plot_w = w - left - right
    top, ticks = _ticks(max(values))
    plot = _Plot(left, 28, plot_w, 140, top)
    plot.y_axis(ticks, "lines")
    plot.bars(
        values, _ACCENT, [f"{v:,} lines took {a} attempt(s)" for a, v in zip(labels, values, strict=True)]
    )
    step = plot_w / len(values)
    axis = [
        f'<text x="{left + (i + 0.5) * step:.1f}" y="186" text-anchor="middle">{_e(a)}</text>'
        for i, a in enumerate(labels)
    ]
    axis.append(f'<text x="{left + plot_w}" y="204" text-anchor="end">attempts per line</text>')
    alt = "Lines by number of attempts: " + ", ".join(
        f"{a} attempt{'s' if a != '1' else ''}: {v:,}" for a, v in zip(labels, values, strict=True) if v
    )
    chart = _svg("chart-attempts", w, 212, "Attempts per line", alt, [*plot.out, *axis])
    intro = (
        f"<p>{r['lines_retried']:,} of {ended:,} ended lines ({_pct(r['lines_retried'], ended)}) needed more than "
        f"one attempt; {r['attempts_total']:,} attempts in all, {_e(_duration(r['waited_s']))} spent waiting "
        "before retries (Retry-After and back-off).</p>"
    )
    out = [intro, f"<figure>{chart}<figcaption>{_e(alt)}.</figcaption></figure>"]
    if r["failed_attempts_by_code"]:
        out.append(
            _table(
                "Failed attempts by code (the retried ones and the last ones)",
                [("Code", ""), ("Attempts", "n"), ("What it means", "")],
                (
                    [f"<code>{_e(code)}</code>", f"{n:,}", _e(_code_row(code, n, 1)["cause"])]
                    for code, n in r["failed_attempts_by_code"].items()
                ),
            )
        )
    if r["most_attempts"]:
        out.append(
            _table(
                "The lines that took the most attempts",
                [("custom_id", ""), ("Attempts", "n"), ("Ended", "")],
                (
                    [
                        f"<code>{_e(m['custom_id'])}</code>",
                        f"{m['attempts']:,}",
                        "ok" if m["code"] is None else f"<code>{_e(m['code'])}</code>",
                    ]
                    for m in r["most_attempts"]
                ),
            )
        )
    return _section("retries", *out)


def _resent_section(data: Mapping[str, Any]) -> str:
    n = data["resent"]
    if not n:
        return _section(
            "resent",
            "<p>No request was sent twice: no line was in flight when a run stopped, so nothing was billed "
            "twice.</p>",
        )
    return _section(
        "resent",
        f'<p class="status warn"><strong>{_e(_resent_sentence(n))}.</strong> These lines were in flight when a '
        "run stopped (a crash, a kill, a lost worker): the provider may have answered and billed a request "
        "whose answer never reached the journal, so it was sent again. Each line is still written once.</p>",
    )


def _failures_section(data: Mapping[str, Any]) -> str:
    samples = data["samples"]
    if not samples:
        return _section("failures", "<p>No line failed.</p>")
    counts = {r["code"]: r["count"] for r in data["by_code"]}
    where = (
        "The proxy's journal keeps no prompt and no answer."
        if _proxy(data)
        else "Every failed line is in <code>errors.jsonl</code>."
    )
    out = [
        f"<p>The first {SAMPLES_PER_CODE} failed lines of each code, in the order they ended, with the "
        f"provider's own message (keys masked). {where}</p>"
    ]
    for code in sorted(samples, key=lambda c: (-counts.get(c, 0), c)):
        rows = samples[code]
        out.append(
            f'<h3 id="code-{_e(code)}"><code>{_e(code)}</code> <span class="muted">'
            f"({counts.get(code, len(rows)):,} lines)</span></h3>"
        )
        out.append(
            _table(
                f"Sample lines that ended with {_e(code)}",
                [
                    ("custom_id", "id"),
                    ("Line", "n"),
                    ("Status", "n"),
                    ("Provider code", ""),
                    ("Message", "msg"),
                    ("Request id", ""),
                ],
                (
                    [
                        f"<code>{_e(s['custom_id'])}</code>",
                        f"{s['line']:,}",
                        str(s["status"]) if s["status"] is not None else "–",
                        f"<code>{_e(s['provider_code'])}</code>" if s["provider_code"] else "–",
                        _e(s["message"]) if s["message"] else '<span class="muted">no message</span>',
                        f'<span class="mono">{_e(s["request_id"])}</span>' if s["request_id"] else "–",
                    ]
                    for s in rows
                ),
            )
        )
    return _section("failures", *out)


def _run_section(data: Mapping[str, Any]) -> str:
    t = data["time"]
    rows = [
        ["Directory", f"<code>{_e(data.get('dir') or '')}</code>"],
        ["First request", _e(_clock(t["first_at"]))],
        ["Last answer", _e(_clock(t["last_at"]))],
    ]
    for name, value in data["meta"].items():
        if value is None:
            continue  # a note the last run cleared (why it stopped: it did not)
        if isinstance(value, int | float) and not isinstance(value, bool) and name.endswith("_at"):
            shown = _clock(value)
        else:
            shown = str(value)
        rows.append([f"<code>{_e(name)}</code>", f'<span class="mono">{_e(shown)}</span>'])
    return _section(
        "run", _table("How the run was made, from its journal", [("Setting", ""), ("Value", "")], rows)
    )
