"""The proxy's record: every exchange in a batch journal (``DIR/journal.sqlite``), so ``genguard report DIR``
covers proxy traffic as it covers a batch run. It lives here, beside the journal, and is handed to the proxy
as its recorder (:class:`genguard.ProxyRecorder`), so the proxy itself never imports the batch runner.

Each exchange is one journal line (its ``custom_id`` the exchange id the client saw in ``x-genguard-exchange-id``),
ended at once with its outcome, attempts, usage, cost and latency, and one attempt event per request sent
upstream. The request is kept as its model, path and whether it streamed, and the outcome without the generated
text: the journal is an operational record, not a transcript of prompts and answers.

Writes never sit on the request path: the handler puts a record on a queue, and one thread writes what has
gathered in one transaction every 50 ms (or every 256 records).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .journal import JOURNAL_FILE, Result, SQLiteJournal
from .model import AttemptEvent, Line, line_key

if TYPE_CHECKING:
    # For the annotations only: the proxy hands its exchanges here; nothing of it runs in this module.
    from ..proxy._config import ProxyExchange

__all__ = ["ProxyJournal"]

log = logging.getLogger("genguard.proxy")

_BATCH = 256
_EVERY_S = 0.05
_NEVER = 1e12  # seconds: a lease no clock reaches


class ProxyJournal:
    """Record a proxy's exchanges in ``folder`` (a batch journal): give it to the proxy as its recorder.

    A writer thread over one :class:`SQLiteJournal`; :meth:`add` never blocks, :meth:`close` writes what is
    queued. ``upstream`` is kept (its password masked) in the journal's meta, for the report.

    >>> import genguard, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:  # doctest: +SKIP
    ...     proxy = genguard.Proxy(upstream=url, recorder=genguard.ProxyJournal(folder, upstream=url))
    """

    def __init__(self, folder: str | os.PathLike[str], *, upstream: str = "") -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        # Opened here, not in the thread, so that a folder that cannot hold a journal fails the start.
        self._journal = SQLiteJournal(self.folder / JOURNAL_FILE)
        from ..core.secrets import mask_url

        if upstream:
            self._journal.set_meta({"source": "genguard proxy", "upstream": mask_url(upstream)})
        # Lines are never removed: a journal used before goes on after its last line.
        counts = self._journal.counts()
        self._number = counts.total
        if counts.pending:
            # Exchanges a stopped proxy loaded but never recorded (killed between the two): their outcome is
            # unknown. Parked in flight for good, so the report counts them as not finished and no later claim
            # takes them in place of this proxy's own.
            self._journal.claim(counts.pending, worker="proxy-unrecorded", lease_s=_NEVER)
        self._queue: queue.SimpleQueue[ProxyExchange | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="genguard-proxy-journal", daemon=True)
        self._thread.start()

    def add(self, exchange: ProxyExchange) -> None:
        """Queue one exchange (written within ~50 ms)."""
        self._queue.put(exchange)

    def close(self) -> None:
        """Write what is queued, then stop the thread and close the journal."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(10)
        self._journal.close()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            until = time.monotonic() + _EVERY_S
            while len(batch) < _BATCH:
                left = until - time.monotonic()
                try:
                    item = self._queue.get(timeout=max(left, 0)) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self._write(batch)
            except Exception:  # a full disk must not take the gateway down: say so, keep serving
                log.exception("the proxy journal could not record %d exchanges", len(batch))

    def _write(self, batch: Sequence[ProxyExchange]) -> None:
        journal = self._journal
        lines = []
        for x in batch:
            self._number += 1
            body: dict[str, Any] = {"model": x.model, "stream": x.stream}
            lines.append(Line(x.exchange_id, x.path, body, self._number, "proxy", line_key(x.path, body)))
        journal.load(lines)
        journal.commit()
        # A lease that never ends: a line left in flight by a killed proxy is never claimed again (see above).
        claimed = {c.custom_id: c for c in journal.claim(len(lines), worker="proxy", lease_s=_NEVER)}
        results: list[Result] = []
        for x in batch:
            c = claimed.get(x.exchange_id)
            if c is None:
                continue
            o = x.outcome
            if o.text is not None or o.tool_calls is not None:
                o = o.replace(text=None, tool_calls=None, choices=None, parsed=None)
            events = [
                AttemptEvent(x.exchange_id, a.number, a.code, a.status, a.wait_s, at, latency)
                for a, (at, latency) in zip(o.history, x.timings, strict=False)
            ]
            cost = o.extra.get("cost_usd")
            response = {"status_code": x.status, "request_id": o.request_id, "body": None}
            results.append(
                c.result(
                    o, response=response, cost_usd=cost if isinstance(cost, float) else None,
                    latency_s=x.latency_s, events=events,
                )
            )  # fmt: skip
        journal.record(results)
