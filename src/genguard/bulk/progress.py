"""What a batch run shows while it works: a live panel on a terminal (and in Jupyter), plain lines elsewhere.

The runner hands a :class:`Snapshot` to a progress sink a few times a second. :func:`progress_for` picks the
sink: a rich live panel when the output is a terminal or a notebook, a plain line every ``every`` seconds when
it is a file or a pipe (a CI log, ``| tee``), nothing when asked for quiet.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Literal, Protocol

__all__ = [
    "PROGRESS_MODES",
    "NoProgress",
    "PlainProgress",
    "Progress",
    "ProgressMode",
    "RichProgress",
    "Snapshot",
    "progress_for",
]

ProgressMode = Literal["auto", "plain", "none"]
PROGRESS_MODES: tuple[ProgressMode, ...] = ("auto", "plain", "none")


_TROUBLE_AFTER = 8  # answers in a row that served nothing before the progress says so


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Where a run stands."""

    total: int
    ended: int
    ok: int
    failed: int
    in_flight: int
    by_code: Mapping[str, int] = field(default_factory=dict)
    rate: float = 0.0  # lines ended per second, recently
    limit_rps: float | None = None  # the request rate the limiter believes the provider allows
    limit_source: str | None = None
    rate_limited: int = 0  # 429s seen
    cost_usd: float | None = None
    elapsed_s: float = 0.0
    note: str | None = None  # why the run is stopping, when it is
    # Answers in a row, the latest ones, that served nothing (a 5xx, a 429...): an outage shows here while the
    # lines retry, before any of them ends; with the last one's code.
    unserved: int = 0
    unserved_code: str | None = None

    @property
    def trouble(self) -> str | None:
        """What the latest answers say when none of the last few served anything, else ``None``."""
        if self.unserved < _TROUBLE_AFTER or self.note:
            return None  # (a stop's note says more)
        return f"none of the last {self.unserved} answers served ({self.unserved_code}), retrying"

    @property
    def eta_s(self) -> float | None:
        left = self.total - self.ended
        if left <= 0:
            return 0.0
        return left / self.rate if self.rate > 0 else None


class Progress(Protocol):
    def update(self, snap: Snapshot) -> None: ...

    def close(self, snap: Snapshot) -> None: ...


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def line_of(snap: Snapshot) -> str:
    """One plain line: what a log shows every few seconds."""
    pct = 100.0 * snap.ended / snap.total if snap.total else 100.0
    parts = [
        f"{snap.ended}/{snap.total} lines ({pct:.0f}%)",
        f"ok {snap.ok}",
        f"failed {snap.failed}",
        f"in flight {snap.in_flight}",
        f"{snap.rate:.1f} lines/s",
    ]
    if snap.limit_rps is not None:
        parts.append(f"limit ~{snap.limit_rps:.1f} req/s ({snap.limit_source or 'found'})")
    parts.append(f"429s {snap.rate_limited}")
    if snap.cost_usd is not None:
        parts.append(f"${snap.cost_usd:.4f}")
    parts.append(f"ETA {_duration(snap.eta_s)}")
    codes = ", ".join(f"{code} {n}" for code, n in sorted(snap.by_code.items(), key=lambda kv: -kv[1]))
    line = " · ".join(parts)
    if codes:
        line += f" · failures: {codes}"
    trouble = snap.trouble
    if trouble:
        line += f" · {trouble}"
    if snap.note:
        line += f" · {snap.note}"
    return line


class NoProgress:
    """Shows nothing (``--quiet``, ``--json``)."""

    def update(self, snap: Snapshot) -> None:
        pass

    def close(self, snap: Snapshot) -> None:
        pass


class PlainProgress:
    """A plain line every ``every`` seconds, and one at the end."""

    def __init__(self, stream: IO[str], every: float = 5.0, clock: Any = time.monotonic) -> None:
        self._stream = stream
        self._every = every
        self._clock = clock
        self._last = -every
        self._said = ""

    def _say(self, snap: Snapshot) -> None:
        self._said = line_of(snap)
        print(self._said, file=self._stream, flush=True)

    def update(self, snap: Snapshot) -> None:
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._say(snap)

    def close(self, snap: Snapshot) -> None:
        if line_of(snap) != self._said:  # a short run's last update may already have said it
            self._say(snap)


class RichProgress:
    """A live panel: a bar with lines done and ETA, the rate and the limit found, 429s, cost, failures by code."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=stream, stderr=stream is None)
        self._live = Live(console=self._console, refresh_per_second=4, transient=False)
        self._live.start()

    def _render(self, snap: Snapshot) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="bold")
        table.add_column()
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=max(snap.total, 1), completed=snap.ended, width=40),
            f"{snap.ended}/{snap.total} lines, ETA {_duration(snap.eta_s)}",
        )
        table.add_row("progress", bar)
        table.add_row(
            "outcomes", f"[green]ok {snap.ok}[/]  [red]failed {snap.failed}[/]  in flight {snap.in_flight}"
        )
        limit = (
            f"limit ~{snap.limit_rps:.1f} req/s ({snap.limit_source or 'found'})"
            if snap.limit_rps is not None
            else "limit not known yet"
        )
        table.add_row("rate", f"{snap.rate:.1f} lines/s · {limit} · 429s {snap.rate_limited}")
        if snap.cost_usd is not None:
            table.add_row("cost", f"${snap.cost_usd:.4f}")
        if snap.by_code:
            codes = "  ".join(f"{c} {n}" for c, n in sorted(snap.by_code.items(), key=lambda kv: -kv[1]))
            table.add_row("failures", codes)
        trouble = snap.trouble
        if trouble:
            table.add_row("provider", f"[yellow]{trouble}[/]")
        if snap.note:
            table.add_row("note", f"[yellow]{snap.note}[/]")
        return table

    def update(self, snap: Snapshot) -> None:
        self._live.update(self._render(snap))

    def close(self, snap: Snapshot) -> None:
        self._live.update(self._render(snap))
        self._live.stop()


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _tty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_for(mode: str = "auto", stream: IO[str] | None = None) -> Progress:
    """``auto``: a live panel on a terminal or in Jupyter, plain lines otherwise; ``plain``; ``none``.

    The progress goes to ``stream`` (stderr by default). With ``auto`` and no ``stream``, the panel needs both
    stdout and stderr on a terminal: ``genguard batch ... > log`` or ``| tee log`` gets plain lines, which a
    log keeps, where a live panel's redraws would be lost or garbled.
    """
    out = stream if stream is not None else sys.stderr
    if mode == "none":
        return NoProgress()
    if mode == "plain":
        return PlainProgress(out)
    if _in_notebook() or (_tty(out) and (stream is not None or _tty(sys.stdout))):
        return RichProgress(stream)
    return PlainProgress(out)
