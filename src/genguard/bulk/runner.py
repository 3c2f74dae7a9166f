"""The batch runner: input -> journal -> AsyncClient at the provider's limit -> journal -> output files.

Every line ends exactly once. The journal (``DIR/journal.sqlite``) is the truth: a line is claimed before it
is sent, recorded with its outcome when it ends, and the output files are appended from the journal's commit
order (``outputs.OutputWriter``), so a run killed at any instant resumes by running the same command again:
lines that ended are not sent again, and only those whose request had left at the kill are (the report counts
them, since they may have been billed twice; ``sentlog`` tells them from lines claimed and not sent).

Failures are judged per line by the taxonomy (retry what can succeed, with the server's wait; record the
rest, soft and silent ones included, with cause and fix), except those that concern the whole run: an
exhausted quota or a refused key on every key, a provider that cannot be reached or answers nothing, a wait
asked for that is longer than a line waits, the first lines of a run all failing alike before any is served,
the cost cap, the deadline, Ctrl-C. Those stop the run with the lines not yet ended left pending, and a
message saying how to resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import gc
import hashlib
import math
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from ..client.clients import AsyncClient
from ..client.gate import ASKED_MODEL, says_in_flight_limit
from ..client.loop import Hook, Spend
from ..client.retry import RetryPolicy
from ..client.transport import never_connected
from ..core import arguments
from ..core.arguments import codes
from ..core.exceptions import ConfigError, GenguardError
from ..core.outcome import Attempt, Outcome, Usage
from ..core.pricing import cost_usd
from ..core.secrets import MASK, MIN_SECRET, mask_url
from ..core.taxonomy import Endpoint
from .inputs import read_lines
from .journal import (
    JOURNAL_FILE,
    BatchCounts,
    Claimed,
    Journal,
    JournalError,
    LoadReport,
    Result,
    SQLiteJournal,
    Tried,
)
from .journal_pg import OtherInput, PostgresJournal, check_run_name, is_postgres_url, masked_url
from .journals import open_journal
from .limiter import AsyncRateLimiter, ModelGates, RateGovernor
from .model import ENDPOINTS, AttemptEvent, InputProblem, Line, line_key
from .outputs import OutputWriter
from .progress import PROGRESS_MODES, NoProgress, Progress, ProgressMode, Snapshot, progress_for
from .sentlog import SENT_FILE, SentLog, read_sent

if TYPE_CHECKING:
    from .limiter_redis import RedisGate

T = TypeVar("T")

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "EXIT_USAGE",
    "BadInput",
    "BatchOptions",
    "BatchResult",
    "RunInUse",
    "SetupError",
    "arun_batch",
    "output_place",
    "run_batch",
    "write_outputs",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# Codes that say something about the run, not the line: another line would fail the same way.
_RUN_STOPPERS = {
    "quota_exceeded": (
        "the provider says the quota is exhausted on every key",
        "add credit or raise the quota, or pass another --api-key",
    ),
    "auth_failed": (
        "every API key was refused",
        "check the key (and that it belongs to this base URL), or pass another --api-key",
    ),
}
_NO_ANSWER = frozenset({"connection_error", "timeout"})  # a line's end with no answer from the server
# Answers that serve nothing and say the provider, not the line, failed (it is down, overloaded, or refuses every
# request): a run whose answers are all these, mid-run, stops rather than end every line failed (_Run.line).
_UNSERVED = frozenset(
    {"server_error", "bad_gateway", "unavailable", "gateway_timeout", "invalid_response", "rate_limited"}
)
# Hard failures that judge the line's own content: the provider read the request, so it is there and set right.
_ABOUT_THE_LINE = frozenset({"prompt_blocked", "context_length_exceeded", "request_too_large"})
# A mean over about this many answers: the share of them that served nothing (_OnWire.unserved_share), kept
# each answer as _SHARE_KEEP of itself; and how unlikely a run of failures must be from a provider failing that
# share of the answers, at random, to be taken for an outage (a run of 20 against one failing half its answers).
_SHARE_ANSWERS = 128
_SHARE_KEEP = 1.0 - 1.0 / _SHARE_ANSWERS
_FLAKY_ODDS = 1e-6
# Hard failures that say the provider no longer has, or lets this key use, what the lines ask for (a model
# retired, a deployment deleted, access withdrawn): lines ending in a row with one of these after lines were
# served stop the run (_Run._gone), as at its start.
_GONE = frozenset({"model_not_found", "not_found", "permission_denied"})
# Lines in a row ending with the same hard failure, before any line of the run was served, that stop it.
_SAME_FAILURE_LINES = 10
_FLUSH_EVERY_S = 0.05
# Answers recorded at once, or every _FLUSH_EVERY_S. Each flush is a commit and an output mark: 256 at once saved
# 4% of the CPU a line with no limit, but cost as much throughput against a server answering after 20 ms (the
# event loop blocked longer at each flush), so 64.
_FLUSH_AT = 64
_CLAIM_ALONE = 256  # lines a run alone claims at once (_Run._next)
# A large input is read and checked whole before the first request (20 us a line: 20 s for a million): the
# load says how far it got on stderr, looking at the clock every _LOAD_NOTE_LINES lines, at most every
# _LOAD_NOTE_EVERY_S seconds, so that a run that has sent nothing yet does not look stuck.
_LOAD_NOTE_LINES = 10_000
_LOAD_NOTE_EVERY_S = 2.0
_GRACE_S = 30.0  # how long in-flight requests may finish after a stop or the first Ctrl-C


class BadInput(GenguardError):
    """The input has bad lines (or lines changed since the run began): nothing was sent. ``problems`` names
    each (where, what is wrong, what to do), ``total`` counts them (the message shows the first 20)."""

    def __init__(
        self, problems: Sequence[InputProblem], total: int, hint: str, what: str = "bad input line{s}"
    ) -> None:
        self.problems = tuple(problems)
        self.total = total
        self.hint = hint
        shown = "\n".join(f"  {p}" for p in self.problems[:20])
        more = f"\n  ... and {total - 20} more" if total > 20 else ""
        lines = what.format(s="s" if total != 1 else "")
        super().__init__(f"{total} {lines}; nothing was sent:\n{shown}{more}\n{hint}")


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """How a batch runs; see ``genguard batch --help`` for each."""

    out: Path
    base_url: str | None = None
    api_keys: tuple[str, ...] = ()
    concurrency: int = 64
    rpm: int | None = None
    tpm: int | None = None
    max_cost: float | None = None
    deadline: float | None = None
    retry_failed: tuple[str, ...] | None = None  # None: no; (): every failure; else those codes
    skip_invalid: bool = False
    rerun_changed: bool = False
    keep_changed: bool = False  # lines that ended keep their answers though the input changed their requests
    template: str | None = None
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    validate: Any = None
    retry: RetryPolicy | None = None
    fallbacks: tuple[str, ...] = ()
    timeout: float = 120.0
    progress: ProgressMode = "auto"  # auto, plain, none
    worker: str = ""
    hooks: tuple[Hook, ...] = ()  # the client's hooks besides the runner's own (OpenTelemetry...)
    limiter: str | None = None  # a shared limiter's URL (redis://...): one budget for every worker
    journal: str | None = None  # None: DIR/journal.sqlite; a postgresql:// URL: a run shared by many workers
    run: str | None = None  # the run's name in a shared journal
    lease_s: float | None = None  # how long a claimed line is this worker's without a renewal
    python: bool = False  # called from Python (genguard.batch): messages name its arguments, not the options

    def __post_init__(self) -> None:
        # The same settings as the command's options, refused the same way before anything is made or sent: from
        # Python, max_cost=0 or nan would otherwise read as "no cap", and a bad validate spec surfaced only once
        # the lines were loaded, as a stop.
        arguments.whole("concurrency", self.concurrency, at_least=1)
        arguments.whole("rpm", self.rpm, at_least=1, none_ok=True)
        arguments.whole("tpm", self.tpm, at_least=1, none_ok=True)
        arguments.number("max_cost", self.max_cost, above=0, unit="US dollars", none_ok=True)
        arguments.number("deadline", self.deadline, above=0, unit="seconds", none_ok=True)
        arguments.number("timeout", self.timeout, above=0, unit="seconds")
        arguments.one_of("progress", self.progress, PROGRESS_MODES)
        if self.validate is not None:
            from ..core.validate import build_validators

            build_validators(self.validate)  # ConfigError naming the spec and the forms it may take
        if self.rerun_changed and self.keep_changed:
            raise ValueError(
                "rerun_changed (--rerun-changed) sends the changed lines again and keep_changed (--keep-changed) "
                "keeps their answers: give one of them"
            )
        # A misspelt code would reset no line and say nothing: refused here, for the command and the API alike.
        if self.retry_failed:
            codes("retry_failed", self.retry_failed)
        if self.journal is not None and is_postgres_url(self.journal):
            if not self.run:
                raise ValueError(
                    f"journal {masked_url(self.journal)} holds many runs: name this one with run= (--run NAME), "
                    "the same on every worker"
                )
            check_run_name(self.run)
        if self.lease_s is not None and not self.lease_s > 0:
            raise ValueError(f"lease_s must be a positive number of seconds, not {self.lease_s!r}")

    @property
    def shared(self) -> bool:
        """Whether the journal is a shared one (PostgreSQL), worked by any number of processes."""
        return self.journal is not None and is_postgres_url(self.journal)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """How a run ended: its exit code, why it stopped early (``None`` when it ran to the end), the counts."""

    out: Path
    exit_code: int
    counts: BatchCounts
    stopped: str | None = None
    sent: int = 0
    resent: int = 0
    elapsed_s: float = 0.0
    rate_limited: int = 0
    limit_rps: float | None = None
    limit_source: str | None = None  # where limit_rps came from: "given", "headers" or "429s"
    # Each pace and the models it held (providers limit each model on its own, and a model whose answers
    # state other limits gets a pace of its own): "model[, model...]" -> (limit_rps, its source); limit_rps
    # above is their sum.
    limits: Mapping[str, tuple[float | None, str | None]] = field(default_factory=dict)
    invalid: int = 0
    # With skip_invalid: lines of the input that repeat a custom_id, left out (the first line of each id runs).
    repeated: int = 0
    absent: int = 0  # lines of this run that the input given does not hold (an earlier input's); kept
    renewed: int = 0  # lines not ended whose request changed in the input: they take the new one
    kept_changed: int = 0  # lines that ended whose request changed, kept with their answers (keep_changed)
    journal: str | None = None
    run: str | None = None
    worker: str = ""
    wrote_outputs: bool = True  # a shared run's files are written by the one worker that saw it finish
    finished_by: str | None = None
    # With max_cost: models whose lines it could not count (no price table knows them, their answers state no
    # cost).
    unpriced: tuple[str, ...] = ()
    # 429s that said the provider limits the requests in flight ("Too many concurrent requests"), and the most
    # lines the run then kept at once (None: no such 429).
    in_flight_refused: int = 0
    in_flight_limit: int | None = None

    @property
    def finished(self) -> bool:
        return self.counts.pending == 0 and self.counts.in_flight == 0

    def results(self, *, in_input_order: bool = True) -> Iterator[tuple[str, Outcome, Any]]:
        """``(custom_id, Outcome, provider body)`` for every ended line, in input order (or commit order)."""
        journal = open_journal(self.journal or self.out / JOURNAL_FILE, run=self.run)
        try:
            for ended in journal.ended(by_input=in_input_order):
                response = ended.response or {}
                yield ended.custom_id, Outcome.from_dict(ended.outcome), response.get("body")
        finally:
            journal.close()


# -- per-attempt events, gathered by a client hook for the line whose task is running ------------------


class _Tries:
    """What a line's attempts did in this run so far: their events, and the usage and cost of those answered (a
    provider bills an answer genguard judges failed, an empty one say). A line a stop cuts off keeps them
    (``Journal.release(tried=...)``). ``before`` counts its attempts in earlier runs: its attempt numbers go on
    from there. ``refused`` counts those that never connected (refused, unresolved): nothing reached the
    provider, so they do not count against the line's budget. ``unserved`` counts those answered with a failure of
    the provider's (_UNSERVED): after a stop for an outage they count as one (_Run._keep)."""

    __slots__ = ("answers", "before", "events", "refused", "unserved")

    def __init__(self, before: int = 0) -> None:
        self.before = before
        self.events: list[AttemptEvent] = []
        self.refused = 0
        self.unserved = 0
        # The model and usage of each answer; priced only for a line cut off (an ended line's outcome has its cost).
        self.answers: list[tuple[str, Usage]] = []

    def spend(self) -> Spend:
        """The usage and cost of the answers, summed."""
        spend = Spend()
        for model, usage in self.answers:
            spend = spend.add(model, usage)
        return spend


_CURRENT: contextvars.ContextVar[_Tries | None] = contextvars.ContextVar("genguard_line", default=None)
_CURRENT_ID: contextvars.ContextVar[str] = contextvars.ContextVar("genguard_line_id", default="")


_SENT_AT: contextvars.ContextVar[float | None] = contextvars.ContextVar("genguard_sent_at", default=None)
# The run's set of lines whose request is on the wire: the gate adds a line as it lets an attempt go, the hook
# takes it out when the attempt ends. A line cut off there (the grace after a stop ran out, a second Ctrl-C) may
# have reached the provider and stays in flight, counted as sent again when resumed; one cut off while waiting
# for its turn or for a retry goes back to pending.
_ON_WIRE: contextvars.ContextVar[_OnWire | None] = contextvars.ContextVar("genguard_on_wire", default=None)


# How many attempts were on the wire, this one included, when this task's attempt was let go: a 429 that says
# the provider limits the requests in flight says it refused that many (counted when the refusal comes back,
# the others' answers meanwhile made it look fewer, and the runs of a burst ended at too few).
_WIRE_AT: contextvars.ContextVar[int] = contextvars.ContextVar("genguard_wire_at", default=0)


class _OnWire(set[str]):
    """The lines with an attempt on the wire now; each is named in the sent log (if any) before its first
    attempt leaves, and stays named there until its answer is recorded."""

    def __init__(self, log: SentLog | None = None) -> None:
        super().__init__()
        self.log = log
        # When an attempt of any line last had an answer (any HTTP status), on the clock of AttemptEvent.at:
        # whether the provider is there (see _Run.line).
        self.answered_at = -math.inf
        # When an answer last served (any but _UNSERVED's codes), and how many answers came since, none serving.
        self.served_at = -math.inf
        self.unserved = 0
        self.unserved_code: str | None = None
        # The share of answers that served nothing, lately (a mean over about _SHARE_ANSWERS answers, the run of
        # them since the last that served not counted yet): how unlikely that run is from a flaky provider.
        self.unserved_share = 0.1
        # Told of a 429 that says the provider limits the requests in flight, with how many were on the wire.
        self.crowded: Callable[[int], None] | None = None
        # Since then, the most attempts let on the wire at once (a retry too waits for room, rather than be
        # refused again), and those waiting for room.
        self.limit: int | None = None
        self.waiting: deque[asyncio.Future[None]] = deque()

    async def room(self) -> None:
        """Until fewer than ``limit`` attempts are on the wire."""
        while self.limit is not None and len(self) >= self.limit:
            fut = asyncio.get_running_loop().create_future()
            self.waiting.append(fut)
            try:
                await fut
            finally:
                if fut in self.waiting:
                    self.waiting.remove(fut)

    def wake(self, every: bool = False) -> None:
        """An attempt left the wire (or the limit rose: ``every``): the next waiting one may go."""
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                if not every:
                    return

    def add(self, custom_id: str) -> None:
        if self.log is not None:
            self.log.add(custom_id)
        super().add(custom_id)

    def recorded(self, custom_ids: Sequence[str]) -> None:
        """These lines' answers are in the journal: off the wire, and out of the sent log's next rewrite."""
        self.difference_update(custom_ids)
        if self.log is not None:
            self.log.forget(custom_ids)


class _NotSent(Exception):
    """The run stopped while this attempt waited for its turn: it was not sent."""


class _TimedGate:
    """The limiter, noting in the line's context when each attempt is let go: its own latency is then known
    when the attempt's record reaches the hook (the line's latency includes waits and retries).

    After the run stops (``stopped()``), no attempt is let go, a retry's included: it raises :class:`_NotSent`.
    """

    def __init__(self, inner: ModelGates, stopped: Callable[[], bool] = lambda: False) -> None:
        self.inner = inner
        self.stopped = stopped

    async def acquire(self, tokens: int) -> None:
        if self.stopped():
            raise _NotSent
        wire = _ON_WIRE.get()
        while True:
            if wire is not None and wire.limit is not None:
                await wire.room()  # the provider limits the requests in flight (_Run._crowded)
                if self.stopped():
                    raise _NotSent
            await self.inner.acquire(tokens)
            if self.stopped():
                self.inner.release(tokens)
                raise _NotSent
            if wire is None or wire.limit is None or len(wire) < wire.limit:
                break
            # The limit came (or the room went) while this waited for its turn: give the turn back, and wait.
            self.inner.release(tokens)
        if wire is not None:
            wire.add(_CURRENT_ID.get())
            _WIRE_AT.set(len(wire))
        _SENT_AT.set(time.monotonic())

    def observe(self, status: int, headers: Mapping[str, str], **kw: Any) -> None:
        self.inner.observe(status, headers, **kw)

    def answered(self, outcome: Outcome) -> None:
        """An attempt's answer (``tell_gate``): what it was billed is the line's, even if a stop cuts it off."""
        tries = _CURRENT.get()
        if tries is not None and outcome.usage is not None:
            tries.answers.append((ASKED_MODEL.get() or "", outcome.usage))


def _event_hook(attempt: Attempt) -> None:
    at = time.time()
    wire = _ON_WIRE.get()
    unserved = attempt.status is not None and attempt.code in _UNSERVED  # answered, and with nothing
    if wire is not None:
        wire.discard(_CURRENT_ID.get())
        if wire.waiting:
            wire.wake()
        if attempt.status is not None:
            wire.answered_at = at
            if unserved:
                wire.unserved += 1
                wire.unserved_code = attempt.code
            else:
                wire.served_at = at
                if wire.unserved:
                    wire.unserved_share = 1.0 - (1.0 - wire.unserved_share) * _SHARE_KEEP**wire.unserved
                    wire.unserved = 0
                wire.unserved_share *= _SHARE_KEEP
            if (
                attempt.code == "rate_limited"
                and wire.crowded is not None
                and says_in_flight_limit(attempt.message)
            ):
                wire.crowded(_WIRE_AT.get())
    tries = _CURRENT.get()
    if tries is not None:
        if attempt.status is None and never_connected(attempt.message):
            tries.refused += 1
        elif unserved:
            tries.unserved += 1
        sent = _SENT_AT.get()
        latency = None if sent is None else time.monotonic() - sent
        tries.events.append(
            AttemptEvent(
                _CURRENT_ID.get(),
                attempt.number + tries.before,
                attempt.code,
                attempt.status,
                attempt.wait_s,
                at,
                latency,
            )
        )


# -- loading the input ---------------------------------------------------------------------------------------


def _flag(name: str, python: bool) -> str:
    """An option as its caller gives it: ``--skip-invalid`` to the command, ``skip_invalid=True`` from Python."""
    if python:
        return "out=" if name == "out" else f"{name}=True"
    return "--" + name.replace("_", "-")


def _invalid_line(p: InputProblem) -> Line:
    custom_id = p.custom_id or f"line-{p.line}"
    body = {"invalid_input": str(p)}
    return Line(custom_id, "/invalid", body, p.line, p.source, line_key("/invalid", body))


def fingerprint(items: Iterable[Line | InputProblem]) -> str:
    """What an input asks for, as one hash: its lines' ids, numbers and requests in order (not the file's path,
    which differs from machine to machine). Workers joining a shared run compare it with the run's."""
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, InputProblem):
            h.update(f"!{item.line}\t{item.what}\n".encode())
        else:
            key = item.key or line_key(item.url, item.body)
            h.update(f"{item.custom_id}\t{item.number}\t{key}\n".encode())
    return h.hexdigest()


def _load(
    journal: Journal, items: Iterable[Line | InputProblem], opts: BatchOptions, *, print_: str | None = None
) -> tuple[int, LoadReport]:
    """Load the input into the journal, or raise :class:`BadInput` with nothing changed; the bad lines recorded
    as failed (``--skip-invalid``), and what the load found (new, renewed, kept, absent lines)."""
    python = opts.python
    problems: list[InputProblem] = []
    count = [0]
    invalid: list[InputProblem] = []

    say = opts.progress != "none"
    start = said = time.monotonic()

    def lines() -> Iterator[Line]:
        nonlocal said
        for seen, item in enumerate(items, 1):
            if (
                say
                and seen % _LOAD_NOTE_LINES == 0
                and (now := time.monotonic()) - said >= _LOAD_NOTE_EVERY_S
            ):
                said = now
                print(f"reading the input: {seen:,} lines checked in {now - start:.0f} s, nothing sent yet",
                      file=sys.stderr, flush=True)  # fmt: skip
            if isinstance(item, InputProblem):
                count[0] += 1
                if opts.skip_invalid:
                    invalid.append(item)
                    yield _invalid_line(item)
                elif len(problems) < 1000:
                    problems.append(item)
                continue
            yield item

    # A run told once to keep the answers of changed lines goes on keeping them: resumed unchanged after a kill,
    # it does not refuse what it took before (--rerun-changed sends them again, and ends that).
    keep = opts.keep_changed or (not opts.rerun_changed and bool(journal.get_meta("keep_changed")))
    changed = {"rerun_changed": opts.rerun_changed, "keep_changed": keep}
    if print_ is not None and isinstance(journal, PostgresJournal):
        report = journal.load(lines(), retry_failed=opts.retry_failed, fingerprint=print_, **changed)
    else:
        report = journal.load(lines(), retry_failed=opts.retry_failed, **changed)
    if count[0] and not opts.skip_invalid:
        journal.rollback()
        # Every bad line at once, repeated custom_ids among them, in the input's order.
        shown = sorted([*problems, *report.duplicates], key=lambda p: (p.source, p.line))
        raise BadInput(
            shown,
            count[0] + report.duplicate_count,
            f"Fix these lines (or run with {_flag('skip_invalid', python)} to record them as failed and run "
            "the rest).",
        )
    unhandled = report.changed_count - report.rerun - report.kept
    if report.duplicate_count and not opts.skip_invalid:
        journal.rollback()
        raise BadInput(
            report.problems,
            report.duplicate_count + unhandled,
            "A custom_id must be unique in the input: give each line its own (or run with "
            f"{_flag('skip_invalid', python)} to run the first line of each id and leave the repeats out).",
        )
    if unhandled:
        journal.rollback()
        hint = (
            f"These lines ended with answers to other requests than this input's: run with "
            f"{_flag('rerun_changed', python)} to send them again (their old answers are kept in the journal's "
            f"history), with {_flag('keep_changed', python)} to keep those answers (the lines not ended yet take "
            f"this input's requests either way), or use another {_flag('out', python)}."
        )
        # (Repeats here are skip_invalid's, left out: only the changed lines refuse the run.)
        raise BadInput(report.changed, unhandled, hint, what="line{s} of this run changed since they ended")
    journal.commit()
    if opts.keep_changed:
        journal.set_meta({"keep_changed": True})
    elif opts.rerun_changed and journal.get_meta("keep_changed"):
        journal.set_meta({"keep_changed": None})
    if invalid:
        results = [
            Result(
                line.custom_id,
                line.key,
                Outcome.failure("invalid_input", message=str(p)),
            )
            for p in invalid
            for line in (_invalid_line(p),)
        ]
        journal.record(results)
    return len(invalid), report


# -- the run -----------------------------------------------------------------------------------------------------


# The output line's response object around an answer's own JSON text: status, request id (JSON), body.
_RESPONSE_HEAD = b'{"status_code":%d,"request_id":%s,"body":%s}'


def _stopped_for(run: _Run) -> str | None:
    """Why a run stopped, as its end says it: an interruption no longer 'finishing the requests in flight'."""
    if not run.interrupted:
        return run.stop_reason
    if run.opts.python:
        return "interrupted (KeyboardInterrupt, or the call was cancelled)"
    return "interrupted (Ctrl-C or SIGTERM)"


def _began(event: AttemptEvent) -> float:
    """When an attempt was sent (its event is stamped when it ended)."""
    return event.at - (event.latency_s or 0.0)


def _path_of(url: str) -> str:
    return url[3:] if url.startswith("/v1/") else url


def _estimate_cost(body: Mapping[str, Any]) -> float:
    from ..client.gate import estimate_tokens, output_limit

    model = body.get("model")
    if not isinstance(model, str):
        return 0.0
    limit = output_limit(body)
    output = limit if isinstance(limit, int) and not isinstance(limit, bool) else 256
    total = estimate_tokens(body)
    cost = cost_usd(model, Usage(max(total - output, 0), output, total))
    return cost or 0.0


class _Run:
    def __init__(self, journal: Journal, writer: OutputWriter | None, client: AsyncClient, opts: BatchOptions,
                 limiter: ModelGates, progress: Progress, worker: str,
                 sent_log: SentLog | None = None) -> None:  # fmt: skip
        self.journal = journal
        self.writer = writer
        self.client = client
        self.opts = opts
        self.limiter = limiter
        self.progress = progress
        self.worker = worker
        self.lease_s = _lease(opts)
        self.renewed = time.monotonic()
        self.ahead: deque[Claimed] = deque()  # lines claimed in a batch, not started yet
        # Models the provider asks to wait for longer than a line waits, and why: their lines wait for the next run.
        self.parked: dict[str, str] = {}
        self.ended_models: set[str | None] = set()  # the models of the lines this run ended
        self.results: list[Result] = []
        self.tasks: dict[asyncio.Task[None], Claimed] = {}
        # The lines being tried, by custom_id: what their attempts did, kept if a stop cuts them off.
        self.trying: dict[str, _Tries] = {}
        self.wake: asyncio.Future[None] | None = None
        # No more lines in hand than may be sent at once: one beyond that would pass the limiter, then wait for
        # a connection, booked and bound to be sent after a stop, its place in the pace lost meanwhile.
        self.crowded = 0  # 429s that said so
        self.ok_since_crowded = 0
        # Shared: lines claimed ahead of the free slots.
        self.claim_at = max(1, min(32, opts.concurrency // 2))
        self.exhausted = False  # no line was left to claim
        self.all_claimed = False  # alone: the last claim found fewer lines than it asked for
        self.claim_after = 0.0  # shared: after a claim that found nothing, the next one waits until then
        # What a line's task or a claim raised: the run ends with it.
        self.failure: BaseException | None = None
        self.draining = False
        self.started = _OnWire(sent_log)
        self.started.crowded = self._crowded
        self.stop_reason: str | None = None
        self.interrupted = False
        self.sent = 0
        self.rate_limited = 0
        self.reserved = 0.0
        self.reserving = 0  # lines in flight with a cost reserved
        counts = journal.counts()
        self.spent = counts.cost_usd
        # --max-cost for a model the price table does not know, from the costs its answers state: the dearest
        # cost a token and the dearest line seen; the model of a line sent alone until an answer states a cost;
        # models whose answers state none (served, no cost: the cap cannot count them).
        self.stated: dict[str, tuple[float, float]] = {}
        self.probing: set[str] = set()
        self.unpriced: set[str] = set()
        self.ended_times: deque[float] = deque(maxlen=512)
        self.t0 = time.monotonic()
        self.max_wait = (opts.retry or client.retry).max_wait  # a longer server wait stops the run
        # Until a line of this run is served (a generation, ok or not, or a refusal of its own content), lines
        # failing alike stop it; not in a run sending failures again, nor in the run after such a stop, taken as
        # the user's word that these failures are the lines' own.
        self.served = opts.retry_failed is not None or journal.get_meta("failing_alike") is not None
        self.went_past = self.served  # the user's word holds after lines are served too (_gone)
        self.failing_alike: str | None = None  # the code of the lines that stopped this run
        self.gone: tuple[str | None, int] = (None, 0)  # after lines were served: the same, for _GONE's codes
        # The same for a stop on lines that timed out with no answer from anywhere: the run after it takes them
        # for the lines' own (an answer longer than --timeout), and does not send them again and again.
        self.went_on_timeouts = opts.retry_failed is not None or bool(journal.get_meta("timed_out"))
        self.timed_out = False
        # Whether the provider has served lines, so that a stretch of answers all failures is it going down (see
        # line): a line of this run served (served_now), or the run before stopped so after serving lines itself
        # (down_before). Only then: lines that fail whenever they are sent (a block of them, more than are sent
        # at once) would otherwise stop every run in turn, and a run that served nothing does not carry it on.
        self.down_before = bool(journal.get_meta("down"))
        if self.down_before:
            self.started.unserved_share = 0.0  # the failures of a run resumed in an outage go on from its own
        self.served_now = False
        self.down = False  # this run stopped for that
        # Until a line is served: the last hard failure's code, and how many lines in a row ended with it.
        self.failing: tuple[str | None, int] = (None, 0)
        self.last_flush = self.t0
        self.counts = counts
        self.secret_texts = tuple(k for k in client.keys if len(k) >= MIN_SECRET)
        self.secrets = tuple(k.encode() for k in self.secret_texts)

    # -- one line --

    async def line(self, claimed: Claimed, estimate: float) -> None:
        tries = _Tries(claimed.tried)
        events = tries.events
        self.trying[claimed.custom_id] = tries
        _CURRENT.set(tries)
        _CURRENT_ID.set(claimed.custom_id)
        _ON_WIRE.set(self.started)
        start = time.monotonic()
        endpoint: Endpoint = ENDPOINTS.get(claimed.url, "chat")
        try:
            outcome, raw = await self.client.send_json(
                _path_of(claimed.url),
                claimed.body,
                endpoint=endpoint,
                fallbacks=self.opts.fallbacks,
                retry=self._retry_for(claimed),
                validate=self.opts.validate if endpoint == "chat" else None,
            )
        except ConfigError as exc:
            self._stop(f"{exc}")
            self.started.discard(claimed.custom_id)
            self._cut_off(claimed)
            self.probing.discard(str(claimed.body.get("model")))
            return
        except _NotSent:
            # The run stopped while it waited for its turn, maybe for a retry: what its attempts did is kept.
            self._cut_off(claimed)
            self.probing.discard(str(claimed.body.get("model")))
            return
        finally:
            if estimate:
                self.reserving -= 1
                # A float summed and taken back line by line: none left in flight, none reserved.
                self.reserved = self.reserved - estimate if self.reserving else 0.0
        if endpoint == "image":
            # Pictures become files under DIR/images: b64_json would fill the output with megabytes each. The
            # answer is paid for: a stop lets the line finish (or, cut off, stay in flight) as one on the wire.
            from .media import keep_image_answer

            self.started.add(claimed.custom_id)
            outcome, raw = await keep_image_answer(
                outcome, raw, out_dir=self.opts.out, custom_id=claimed.custom_id, client=self.client
            )
            self.started.discard(claimed.custom_id)
        self.trying.pop(claimed.custom_id, None)
        self.sent += outcome.attempts
        self.rate_limited += sum(1 for a in outcome.history if a.code == "rate_limited")
        cost = outcome.extra.get("cost_usd")
        if isinstance(cost, float):
            self.spent += cost
        if self.opts.max_cost is not None:
            self._learn_price(claimed.body, outcome, cost)
        stopper = _RUN_STOPPERS.get(outcome.code or "")
        release = True  # a stopped line goes back to pending: it had no answer to keep
        later = outcome.retry_after_s
        history = outcome.history
        refused = outcome.code in _NO_ANSWER and bool(history) and never_connected(history[-1].message)
        if stopper is None and outcome.retryable and later is not None and later > self.max_wait:
            # The provider asks every request to come back later than genguard waits (a daily limit spent, a
            # maintenance window): recorded, each line would end failed in turn with the same answer.
            stopper = (
                f"the provider asks to wait {_span(later)} before the next request, longer than a line waits "
                f"(at most {_span(self.max_wait)})",
                f"wait until {_clock_in(later)}",
            )
            model = claimed.body.get("model")
            if isinstance(model, str) and self.limiter.has_own(model):
                # A model with a pace of its own (its answers state limits of its own): its lines wait for the
                # next run, the other models' go on; the run stops when only its lines are left (_park, run).
                # (On the shared pace, the wait holds every model there: the run stops, as below.)
                said = f": {outcome.message}" if outcome.message else ""
                self._park(model, f"{stopper[0]} ({outcome.code}{said}); {stopper[1]}")
                self.started.discard(claimed.custom_id)
                self._keep(claimed, tries)
                return
        elif (
            stopper is None
            and ((outcome.code == "timeout" and not self.went_on_timeouts) or refused)
            and events
            and self.started.answered_at < (events[-1].at if refused else _began(events[0]))
        ):
            # Its last attempt found no server and nothing answered since (or, cut off by --timeout each time,
            # nothing answered since its first attempt began: answers that came while it waited say the server
            # serves, and this line is the slow one): the provider is down, not there, or hung, not this line
            # wrong. Recorded, every line would end failed in turn, one backoff after another. (A refusal is the
            # host's, not the request's; a line whose every attempt connected and then broke has a server there:
            # it ends failed, as a line that a server answers badly does.)
            unsent = all(never_connected(a.message) for a in history)
            began = time.time() - (time.monotonic() - start)
            stopper = self._unreachable(
                outcome.code or "", time.time() - max(self.started.answered_at, began)
            )
            self.timed_out = outcome.code == "timeout" and not unsent  # connected, then no answer in time
            # A request that may have reached the server (a read cut off by --timeout, a connection reset as the
            # server went away) leaves its line in flight and named in the sent log: the resumed run sends it
            # again counted as "may have been billed twice".
            release = unsent
        elif (
            stopper is None
            and outcome.code in _UNSERVED
            and (self.served_now or self.down_before)
            and events
            and self.started.served_at < _began(events[-1])
            and self.started.unserved > len(events)
            and self.started.unserved_share**self.started.unserved < _FLAKY_ODDS
        ):
            # Lines were served, then nothing: every answer since this line's last attempt began was a failure,
            # other lines' too (a line alone failing again and again is its own failure), and more of them in a
            # row than a provider failing as often as this one lately would give once in _FLAKY_ODDS (against
            # one failing half its answers, 20; against one that failed none, this line's attempts and one). The
            # provider is down, overloaded or refuses every request: recorded, every line would end failed in
            # turn once its attempts were spent (300 lines, a 90 s outage of 503s: 227 ended failed, 1,435
            # requests). The line goes back to pending with its attempts kept, as do the lines waiting for a retry.
            stopper = self._down(outcome, time.time() - max(self.started.served_at, _began(events[0])))
            self.down = True
        if stopper is not None:
            what, fix = stopper
            said = f": {outcome.message}" if outcome.message else ""
            self._stop(f"{what} ({outcome.code}{said}); {fix}, then run the same command again to resume")
            if release:
                # No answer to keep: the line waits for the resumed run, as the lines not sent yet do, keeping
                # what its attempts did (their events, what they were billed, its attempt budget).
                self.started.discard(claimed.custom_id)
            self._keep(claimed, tries, release=release)
            return
        if outcome.ok or outcome.kind != "hard" or outcome.code in _ABOUT_THE_LINE:
            self.served = self.served_now = True
            self.gone = (None, 0)
        elif not self.served:
            self._same_hard_failure(outcome)
        elif outcome.code in _GONE and self.served_now and not self.went_past:
            self._gone(outcome)
        if tries.before:
            # Attempts made in runs a stop cut short: this run's go on from them.
            outcome = _renumbered(outcome, tries.before)
        if raw is not None and any(k in raw for k in self.secrets):
            outcome, raw = _masked(outcome, raw, self.secret_texts)
        response: dict[str, Any] | bytes | None = None
        if raw is not None:
            if outcome.ok:
                # A usable answer was read as JSON: its text goes into the journal as it came (in UTF-8, as
                # send_json keeps it), not parsed and written again (an embedding's answer is megabytes of
                # numbers).
                response = _RESPONSE_HEAD % (outcome.status or 200, orjson.dumps(outcome.request_id), raw)
            else:
                try:
                    body: Any = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    body = raw.decode("utf-8", "replace")
                response = {"status_code": outcome.status, "request_id": outcome.request_id, "body": body}
        latency = time.monotonic() - start
        self.results.append(
            claimed.result(
                outcome,
                response=response,
                cost_usd=cost if isinstance(cost, float) else None,
                latency_s=latency,
                events=events,
            )
        )
        self.ended_times.append(time.monotonic())
        model = claimed.body.get("model")
        self.ended_models.add(model if isinstance(model, str) else None)

    def _retry_for(self, claimed: Claimed) -> RetryPolicy | None:
        """The retry policy of a line: the run's, with the attempts it made in runs a stop cut short taken from
        its budget (at least one attempt is left: a line resumed is sent)."""
        if not claimed.tried:
            return self.opts.retry
        policy = self.opts.retry or self.client.retry
        return dataclasses.replace(policy, max_attempts=max(1, policy.max_attempts - claimed.tried))

    def _keep(
        self, claimed: Claimed, tries: _Tries | None, *, release: bool = True, on_wire: bool = False
    ) -> None:
        """A line a stop cut off, unended: back to pending (``release``) or left in flight (its request may be on
        the wire), keeping what its attempts did: their events, their cost, its attempt budget."""
        # What counts against its budget: the attempts that may have reached the provider; after a stop for an
        # outage (line), those it answered with a failure of its own count as one: given one attempt, the first
        # line of a run resumed while the outage lasts to fail would be alone in failing, and end failed for it.
        attempts = int(on_wire)
        if tries is not None:
            attempts += len(tries.events) - tries.refused
            if self.down and tries.unserved:
                attempts -= tries.unserved - 1
        kept: list[Tried] = []
        if tries is not None and (attempts or tries.events):
            spend = tries.spend()
            kept.append(
                Tried(
                    claimed.custom_id,
                    claimed.key,
                    attempts,
                    tuple(tries.events),
                    spend.usage,
                    spend.cost_usd,
                    self.worker,
                )
            )
        if release or kept:
            self.journal.release([claimed.custom_id] if release else (), tried=kept)

    def _cut_off(self, claimed: Claimed, *, on_wire: bool = False) -> None:
        """A line the stop cut off before its attempts ended (waiting for its turn or for a retry; or, with
        ``on_wire``, with a request on the wire): its attempts count in this run's requests and spend, and it
        keeps them (:meth:`_keep`); unless on the wire, it goes back to pending."""
        tries = self.trying.pop(claimed.custom_id, None)
        if tries is not None:
            self.sent += len(tries.events) + on_wire
            self.rate_limited += sum(1 for e in tries.events if e.code == "rate_limited")
            cost = tries.spend().cost_usd
            if cost:
                self.spent += cost
        self._keep(claimed, tries, release=not on_wire, on_wire=on_wire)

    def _same_hard_failure(self, outcome: Outcome) -> None:
        """No line of this run has been served yet: count the lines ending with this same hard failure, and
        stop the run when _SAME_FAILURE_LINES of them have. A wrong --base-url (a web server's 404 or 501), a
        model the provider does not have, a parameter it refuses: every line would fail alike, one after the
        other, retried when retryable (300 lines against a plain web server: 1,800 requests in 81 s). These
        lines end failed, as they did; the rest stay pending."""
        self.failing = self._alike(
            self.failing,
            outcome,
            "the first {count} lines to end all failed with {said}, and none was served: the provider or the "
            "settings are more likely at fault than the lines; check --base-url, the model and the parameters",
        )

    def _gone(self, outcome: Outcome) -> None:
        """Lines were served, and now lines end one after another with the same failure of _GONE's: the
        provider no longer has what they ask for (a deployment deleted mid-run answers every line 404 at once,
        and the rest of the input would end failed in seconds). Stop when _SAME_FAILURE_LINES have, in a row; as
        at a run's start, these lines end failed and the run after this one goes past such failures."""
        self.gone = self._alike(
            self.gone,
            outcome,
            "the last {count} lines to end all failed with {said}, after lines of this run were served: the "
            "provider no longer has, or lets this key use, what they ask for (a model retired, a deployment "
            "deleted, access withdrawn); check the model and the key",
        )

    def _alike(self, seen: tuple[str | None, int], outcome: Outcome, what: str) -> tuple[str | None, int]:
        """Count one more line ending with ``outcome``'s failure after ``seen`` (the code of the lines before it
        and how many in a row); stop the run, saying ``what``, when _SAME_FAILURE_LINES have."""
        code, count = seen
        count = count + 1 if outcome.code == code else 1
        if count >= _SAME_FAILURE_LINES:
            status = f"HTTP {outcome.status}" if outcome.status is not None else ""
            told = ": ".join(x for x in (status, outcome.message) if x)
            self.failing_alike = outcome.code or "unknown"
            self._stop(
                what.format(count=count, said=f"{outcome.code}{f' ({told})' if told else ''}")
                + " against errors.jsonl, then run the same command again (if "
                f"these failures are the lines' own, it goes on past them; --retry-failed {outcome.code} sends "
                "these lines again)"
            )
        return outcome.code, count

    def _unreachable(self, code: str, waited_s: float) -> tuple[str, str]:
        where = mask_url(self.client.base_url)
        if code == "timeout":
            return (
                f"the provider at {where} answered nothing for {waited_s:.0f} s, each attempt cut off after "
                f"--timeout {self.opts.timeout:g} s",
                "check that the server is up and serving, or raise --timeout for answers that take longer (run "
                "unchanged, the next run takes such lines for slow ones and ends them failed)",
            )
        return (
            f"the provider at {where} cannot be reached: nothing answered for {waited_s:.0f} s",
            "check --base-url, the network and that the server is up",
        )

    def _down(self, outcome: Outcome, waited_s: float) -> tuple[str, str]:
        where = mask_url(self.client.base_url)
        what = f"the provider at {where} has served none of its last {self.started.unserved} answers"
        if waited_s >= 1:
            what += f", over {_span(waited_s)}"
        if outcome.code == "rate_limited":
            return what, (
                "it refuses every request (a limit spent for the day, a key shared with other clients): wait "
                "until it serves again, or pass another --api-key"
            )
        return what, "it is down or overloaded: wait until it serves again"

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self._wake_loop()

    def _park(self, model: str, why: str) -> None:
        """Hold ``model``'s lines back for the rest of this run (the provider asks to wait for it longer than a
        line waits): no more are claimed, those claimed ahead and those waiting for their turn or a retry go
        back to pending unsent, and the other models' lines go on. A line of it on the wire ends as it comes
        back (an answer is kept; another long wait puts it back too)."""
        if model in self.parked:
            return
        self.parked[model] = why
        if self.opts.progress != "none":
            print(f"note: {model}: {why}; its lines wait for the next run, the other models' lines go on",
                  file=sys.stderr, flush=True)  # fmt: skip
        me = asyncio.current_task()
        for task, line in list(self.tasks.items()):
            if task is not me and line.custom_id not in self.started and line.body.get("model") == model:
                task.cancel()  # its worker ends; _ended puts the line back to pending and the slot is filled again
        held = [c for c in self.ahead if c.body.get("model") == model]
        if held:
            self.ahead = deque(c for c in self.ahead if c.body.get("model") != model)
            self.journal.release([c.custom_id for c in held])

    def _parked_reason(self) -> str:
        said = "; ".join(f"{model}: {why}" for model, why in self.parked.items())
        others = any(m not in self.parked for m in self.ended_models)
        others_ended = "the other models' lines ended; " if others else ""
        return f"{said}; {others_ended}then run the same command again to resume"

    # -- the loop --

    def flush(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and len(self.results) < _FLUSH_AT and now - self.last_flush < _FLUSH_EVERY_S:
            return
        self.last_flush = now
        if self.results:
            batch, self.results = self.results, []
            self.journal.record(batch)
            self.started.recorded([r.custom_id for r in batch])
            if self.writer is not None:
                self.writer.flush()
        if now - self.renewed >= self.lease_s / 3:
            # A line held longer than its lease (a slow answer, retries) would be taken by another worker.
            self.renewed = now
            held = [c.custom_id for c in self.tasks.values()] + [c.custom_id for c in self.ahead]
            if held:
                self.journal.renew(held, worker=self.worker, lease_s=self.lease_s)
        self.counts = self.journal.counts()
        self.progress.update(self.snapshot())

    def snapshot(self) -> Snapshot:
        c = self.counts
        now = time.monotonic()
        recent = [t for t in self.ended_times if now - t <= 10.0]
        window = min(10.0, now - self.t0) or 1.0
        limits = self.limiter.snapshot()
        failures = {code: n for code, n in c.by_code.items() if code}
        limit_rps = None if limits.rpm is None else limits.rpm / 60.0
        return Snapshot(
            total=c.total,
            ended=c.ended,
            ok=c.ok,
            failed=c.failed,
            in_flight=len(self.tasks),
            by_code=failures,
            rate=len(recent) / window,
            limit_rps=limit_rps,
            limit_source=limits.rpm_source,
            rate_limited=self.rate_limited,
            cost_usd=c.cost_usd if c.cost_usd else None,
            elapsed_s=now - self.t0,
            note=self.stop_reason,
            unserved=self.started.unserved,
            unserved_code=self.started.unserved_code,
        )

    def _crowded(self, on_wire: int) -> None:
        """A 429 said the provider limits the requests in flight, refused with ``on_wire`` of them out: start no
        more lines at once than got through (the rate limiter is not told: the pace is not what it refuses).
        Every 32 rounds of lines at that number without another such 429, one more is tried, up to
        --concurrency: a limit that was raised, or shared with another client that has gone."""
        self.crowded += 1
        if on_wire < 1:
            return
        self.started.limit = max(1, min(self.room, on_wire - 1))
        self.ok_since_crowded = 0

    @property
    def room(self) -> int:
        """Lines at once: --concurrency, or fewer after a provider refused that many in flight (_crowded)."""
        limit = self.started.limit
        return self.opts.concurrency if limit is None else limit

    def _roomier(self) -> None:
        self.ok_since_crowded += 1
        if self.ok_since_crowded >= 32 * self.room:
            self.ok_since_crowded = 0
            self.started.limit = self.room + 1
            self.started.wake(every=True)
            self._wake_loop()  # its loop starts the new slot's worker

    def _fill(self) -> None:
        """Start a worker in each free slot, each with its first line. A worker goes on with the next line as
        soon as one ends, in the same step of the event loop: a task for each line, filled by this loop, left
        a slot idle for two or three turns of the event loop (a sixth of the slots, against a server answering
        in 20 ms)."""
        while len(self.tasks) < self.room:
            first = self._next()
            if first is None:
                break
            task = asyncio.create_task(self._work(first))
            task.add_done_callback(self._ended)
            self.tasks[task] = first[0]

    async def _work(self, first: tuple[Claimed, float]) -> None:
        me = asyncio.current_task()
        assert me is not None
        job: tuple[Claimed, float] | None = first
        while job is not None:
            self.tasks[me] = job[0]  # the line this worker holds: drain() and the lease renewal read it
            await self.line(*job)
            if len(self.results) >= _FLUSH_AT:
                self._wake_loop()
            if self.crowded:
                if len(self.tasks) > self.room:
                    break  # fewer lines at once: the provider refuses this many in flight
                if self.room < self.opts.concurrency:
                    self._roomier()
            job = self._next()

    def _next(self) -> tuple[Claimed, float] | None:
        """The next line to send with its reserved cost (``--max-cost``), ``None`` when none is left or the run
        stopped. Lines are claimed in batches, ahead of the slots: a claim is a transaction committed before
        the send (50-250 us; one per line cost a quarter of the runner's CPU against a server that answers in
        20 ms), and a shared journal is a round trip away. The lines claimed and not started are given back on
        a stop, and after a kill the sent log (:mod:`.sentlog`) tells them from lines sent. No more lines
        start than may be sent at once: one beyond that would pass the limiter, then wait for a connection,
        booked and bound to be sent after a stop, its place in the pace lost meanwhile."""
        if self.stop_reason is not None or self.failure is not None or self._deadline_passed():
            return None
        ahead = self.ahead
        if not ahead and not self.all_claimed:
            shared = self.opts.shared
            if not shared or time.monotonic() >= self.claim_after:
                # Alone, a claim takes _CLAIM_ALONE lines (those claimed and not sent go back to pending on a
                # stop; after a kill the sent log tells them from those sent): claims of the free slots and 32
                # more cost the runner 7% more CPU a line with no limit (bench/README.md). Shared, lines held
                # ahead are lines the other workers cannot take: the free slots and a few.
                want = (
                    _CLAIM_ALONE
                    if not shared
                    else min(max(self.room - len(self.tasks), 1) + self.claim_at, 256)
                )
                if self.parked:
                    got = self.journal.claim(
                        want, worker=self.worker, lease_s=self.lease_s, skip_models=tuple(self.parked)
                    )
                else:
                    got = self.journal.claim(want, worker=self.worker, lease_s=self.lease_s)
                ahead.extend(got)
                if not shared:
                    # Alone, no line comes back to pending while the run goes on: one claim short is the last.
                    self.all_claimed = len(got) < want
                elif not got:
                    # The other workers hold the rest: each worker ending its last line would ask again.
                    self.claim_after = time.monotonic() + min(1.0, self.lease_s / 4)
        self.exhausted = not ahead
        if not ahead:
            return None
        claimed = ahead.popleft()
        max_cost = self.opts.max_cost
        estimate = 0.0
        if max_cost is not None:
            estimate = _estimate_cost(claimed.body) or self._stated_estimate(claimed.body)
            if estimate < 0.0 or (
                self.spent + self.reserved + estimate > max_cost
                and self.reserving
                and self.spent + estimate <= max_cost
            ):
                # Nothing known of its price while a line of its model is out; or it fits once the lines in
                # flight cost what they cost rather than what was reserved for them: it waits for them.
                ahead.appendleft(claimed)
                return None
            if self.spent + self.reserved + estimate > max_cost:
                self._stop(
                    f"the cost cap of ${max_cost:g} would be passed (spent ${self.spent:.4f}, "
                    f"${self.reserved:.4f} reserved in flight); raise --max-cost and run the same command again "
                    "to go on"
                )
                ahead.appendleft(claimed)  # given back with the others claimed ahead (drain)
                return None
            if estimate:
                self.reserved += estimate
                self.reserving += 1
        return claimed, estimate

    def _stated_estimate(self, body: Mapping[str, Any]) -> float:
        """What a line of a model the price table does not know may cost, from the costs its provider stated:
        its tokens (prompt and allowed output, :func:`estimate_tokens`) at the dearest cost a token seen, and
        at least the dearest line. With nothing stated yet the line goes alone (0.0, the model marked as being
        probed), and -1.0 while such a line is out; 0.0 for a model whose answers state no cost."""
        model = body.get("model")
        if not isinstance(model, str) or model in self.unpriced:
            return 0.0
        stated = self.stated.get(model)
        if stated is None:
            if model in self.probing:
                return -1.0
            self.probing.add(model)
            return 0.0
        from ..client.gate import estimate_tokens

        per_token, dearest = stated
        return max(per_token * estimate_tokens(body), dearest)

    def _learn_price(self, body: Mapping[str, Any], outcome: Outcome, cost: object) -> None:
        """After a line's answer: the cost it states for a model the price table does not know (--max-cost)."""
        model = body.get("model")
        if not isinstance(model, str):
            return
        probed = model in self.probing
        self.probing.discard(model)
        if isinstance(cost, float) and cost > 0.0:
            per_token, dearest = self.stated.get(model, (0.0, 0.0))
            usage = outcome.usage
            tokens = 0
            if usage is not None:
                tokens = usage.total_tokens or (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
            if tokens > 0:
                per_token = max(per_token, cost / tokens)
            self.stated[model] = (per_token, max(dearest, cost))
        elif probed and outcome.ok:
            self.unpriced.add(model)  # served, and no cost stated: nothing to count it by

    def _ended(self, task: asyncio.Task[None]) -> None:
        line = self.tasks.pop(task, None)
        if line is None:
            return
        if task.cancelled() or task.exception() is not None:
            # Cut off on the wire (a second Ctrl-C, a failure): it stays in flight. Waiting for its turn or
            # for a retry: back to pending. Either way it keeps what its attempts did.
            self._cut_off(line, on_wire=line.custom_id in self.started)
            # A line sent alone to learn its model's price is no longer out.
            self.probing.discard(str(line.body.get("model")))
            if not task.cancelled() and not self.draining and self.failure is None:
                self.failure = task.exception()
                self._wake_loop()
        if not self.tasks:
            self._wake_loop()

    def _wake_loop(self) -> None:
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _woken(self, timeout: float) -> None:
        """Until woken (_wake_loop), or ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        self.wake = wake = loop.create_future()
        timer = loop.call_later(timeout, _wake_up, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self.wake = None

    def _deadline_passed(self) -> bool:
        """Whether the deadline passed; if so, the run stops."""
        if self.opts.deadline is None or time.monotonic() - self.t0 < self.opts.deadline:
            return False
        self._stop(f"the deadline of {self.opts.deadline:g} s passed; run the same command again to go on")
        return True

    async def run(self) -> None:
        # The loop starts the first lines, records the answers (flush) every _FLUSH_EVERY_S or _FLUSH_AT answers,
        # and sees the run's end; a worker goes on with the next line as soon as its line ends (_work).
        while self.stop_reason is None and self.failure is None:
            if self._deadline_passed():  # also while every slot waits (a long answer, a pause)
                break
            self._fill()
            if self.stop_reason is not None:
                break
            if self.exhausted and not self.tasks:
                if self.parked:
                    # Only the lines of models the provider asks to wait for are left (here: others may hold
                    # lines of the rest, and go on).
                    self.flush(force=True)
                    self._stop(self._parked_reason())
                    break
                if not self.opts.shared:
                    break
                # Other workers hold lines: wait, since a worker that dies leaves its lines to whoever is
                # still here when its leases run out. (This worker's own answers are recorded first: they
                # are lines in flight too.)
                self.flush(force=True)
                assert isinstance(self.journal, PostgresJournal)
                if self.journal.open_lines() == 0:
                    break
                await asyncio.sleep(min(1.0, self.lease_s / 4))
                self.claim_after = 0.0  # waited: look again now
                continue
            if self.tasks:
                await self._woken(_FLUSH_EVERY_S)
            self.flush()
        if self.failure is not None:
            self.draining = True
            raise self.failure
        await self.drain()

    async def drain(self) -> None:
        """After a stop: nothing new is sent; in-flight requests may finish (bounded), then are written."""
        self.draining = True
        if self.ahead:
            self.journal.release([c.custom_id for c in self.ahead])  # claimed ahead, never sent
            self.ahead.clear()
        if self.tasks:
            self.progress.update(self.snapshot())
            for task, claimed in self.tasks.items():
                if claimed.custom_id not in self.started:
                    task.cancel()  # waiting for its turn or for a retry: back to pending, unsent (_ended)
            _, pending = await asyncio.wait(self.tasks, timeout=_GRACE_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
            # Each task's _ended ran before asyncio.wait saw it end (its callback came first): a line not
            # started went back to pending; one started may have reached the provider, so it stays in flight
            # and the resumed run counts it as sent again.
        self.flush(force=True)

    def cancel_all(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def abort(self, *, interrupted: bool) -> None:
        """Stop at once (the run was cancelled, or failed): nothing more is sent; the lines claimed ahead and
        those waiting for their turn or a retry go back to pending (keeping what their attempts did), those
        whose request may be on the wire stay in flight, named in the sent log, and the answers that came are
        recorded, before the journal is closed. A cancellation while this waits for the lines' tasks to end
        is held until they have: the journal must not be closed under them."""
        self.draining = True
        if interrupted and self.stop_reason is None:
            self.interrupted = True
            self._stop("interrupted")
        if self.ahead:
            self.journal.release([c.custom_id for c in self.ahead])  # claimed ahead, never sent
            self.ahead.clear()
        tasks = set(self.tasks)
        for task in tasks:
            task.cancel()
        cancelled = False
        while tasks:
            # Each task's _ended runs before asyncio.wait sees it end (its callback came first).
            try:
                _, tasks = await asyncio.wait(tasks)
            except asyncio.CancelledError:
                cancelled = True
        self.flush(force=True)
        if cancelled:
            raise asyncio.CancelledError


def _span(seconds: float) -> str:
    """A wait as a person says it.

    >>> _span(45), _span(600), _span(3600), _span(7200), _span(12000)
    ('45 s', '10 min', '60 min', '2 h', '3 h 20 min')
    """
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


def _clock_in(seconds: float) -> str:
    """The local time ``seconds`` from now, with the date when it is not today."""
    now = time.time()
    then = time.localtime(now + seconds)
    if time.strftime("%Y-%m-%d", then) == time.strftime("%Y-%m-%d", time.localtime(now)):
        return time.strftime("%H:%M", then)
    return time.strftime("%Y-%m-%d %H:%M", then)


def _wake_up(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)


def _renumbered(outcome: Outcome, before: int) -> Outcome:
    """A line's outcome counting the ``before`` attempts it made in runs a stop cut short: its attempts in all,
    and this run's numbered after them."""
    history = tuple(dataclasses.replace(a, number=a.number + before) for a in outcome.history)
    return outcome.replace(attempts=outcome.attempts + before, history=history)


def _masked(outcome: Outcome, raw: bytes, keys: Sequence[str]) -> tuple[Outcome, bytes]:
    """The answer with the run's keys masked in every string: a provider that quotes the key back (an error
    echoing the request, a model repeating a prompt that held it) must not put it in the journal or the output
    files. The JSON is masked value by value, never as text, so that its names and structure stay whole."""
    masked = Outcome.from_dict(_mask_json(outcome.to_dict(full=True), keys))
    try:
        body = orjson.dumps(_mask_json(orjson.loads(raw), keys))
    except orjson.JSONDecodeError:
        body = _mask_json(raw.decode("utf-8", "replace"), keys).encode()
    return masked, body


def _mask_json(value: Any, keys: Sequence[str]) -> Any:
    if isinstance(value, str):
        for key in keys:
            if key in value:
                value = value.replace(key, MASK)
        return value
    if isinstance(value, list):
        return [_mask_json(v, keys) for v in value]
    if isinstance(value, dict):
        return {name: _mask_json(v, keys) for name, v in value.items()}
    return value


def _exit_code(counts: BatchCounts, stopped: str | None, interrupted: bool) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    if stopped is not None or counts.pending or counts.in_flight:
        return EXIT_STOPPED
    return EXIT_OK if counts.failed == 0 else EXIT_FAILED


def _lease(opts: BatchOptions) -> float:
    if opts.lease_s is not None:
        return opts.lease_s
    # Alone on a folder, a lease only matters to a reader; shared, it is how long a dead worker's lines wait
    # for another, and is renewed every third of it while the line is held.
    return 60.0 if opts.shared else max(opts.timeout * 4, 600.0)


def _fresh_counts(journal: Journal) -> BatchCounts:
    if isinstance(journal, PostgresJournal):
        return journal.fresh_counts()
    return journal.counts()


def _worker_id(opts: BatchOptions) -> str:
    if opts.worker:
        return opts.worker
    if opts.shared:
        # host:pid alone can come back (a container restarted with the same pid): the suffix keeps a new life
        # from renewing or recording as the one that died.
        return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
    return f"{socket.gethostname()}:{os.getpid()}"


def _open(opts: BatchOptions, out: Path) -> Journal:
    if not opts.shared:
        return SQLiteJournal(out / JOURNAL_FILE)
    assert opts.journal is not None
    try:
        # The whole run's counts are a count of every one of its rows: the progress shows them up to 5 s old
        # rather than have each worker count a million rows on every tick.
        return open_journal(opts.journal, run=opts.run, place=output_place(out), counts_every_s=5.0)
    except JournalError as exc:
        raise SetupError(str(exc)) from None


def output_place(out: Path) -> str:
    """The name a shared journal keeps the output mark of folder ``out`` under: each machine's folder has its
    own files, so each has its own mark."""
    return f"{socket.gethostname()}:{out.resolve()}"


def write_outputs(journal: Journal, out: Path) -> None:
    """Bring ``out/output.jsonl`` and ``out/errors.jsonl`` up to date with the journal (a shared run's, at its
    end, or ``genguard report --journal``), holding the folder's lock while writing."""
    lock = _lock(out, wait=True)
    try:
        with OutputWriter(out, journal, fsync=False) as writer:
            writer.flush()
            writer.sync()
    finally:
        lock.close()


# Whether asyncio.run (run_loop) put its own Ctrl-C handler in place on the main thread: the input's load may then
# take Ctrl-C from it (see _setup_interruptible).
_RUNNER_SIGINT: contextvars.ContextVar[bool] = contextvars.ContextVar("_RUNNER_SIGINT", default=False)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _setup_interruptible(terms: bool) -> Iterator[None]:
    """While a run is set up (the input's load: minutes for millions of lines, then the price table), the event
    loop does not run, so neither the run's signal handlers nor asyncio.run's Ctrl-C (a cancellation, seen only
    at the next await) could stop it: a Ctrl-C there was taken after the load, once the run was sending, or
    lost. Here Ctrl-C (and SIGTERM, for a run that handles signals) raise KeyboardInterrupt at once; the load
    is rolled back, and nothing was sent."""
    signums = [signal.SIGINT, signal.SIGTERM] if terms else [signal.SIGINT]
    if threading.current_thread() is not threading.main_thread() or not (terms or _RUNNER_SIGINT.get()):
        yield
        return
    before: dict[signal.Signals, Any] = {}
    try:
        for signum in signums:
            before[signum] = signal.signal(signum, _raise_interrupt)
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


async def arun_batch(
    source: str | Path | None,
    opts: BatchOptions,
    *,
    lines: Iterable[Line | InputProblem] | None = None,
    progress: Progress | None = None,
    handle_signals: bool = False,
    loaded_input: Callable[[], None] | None = None,
) -> BatchResult:
    """Run (or resume) a batch; see :func:`run_batch`. ``loaded_input`` is called once the input's lines are in
    the journal, under the folder's lock (the Python API keeps the requests it was given there)."""
    out = Path(opts.out)
    shared = opts.shared
    if source is None and lines is None and not shared and not (out / JOURNAL_FILE).exists():
        # A mistyped folder would otherwise read as a finished run of no lines.
        what = "the requests" if opts.python else "an INPUT file"
        raise SetupError(f"give {what}: {out} holds no run to resume")
    items: Iterable[Line | InputProblem] | None = lines
    if items is None and source is not None:
        try:
            # Wrong reading options (a CSV without a template...) are refused here, before the folder is made.
            items = read_lines(source, template=opts.template, model=opts.model, params=opts.params or None)
        except ValueError as exc:
            raise SetupError(str(exc)) from None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"--out {out} cannot be created: {exc.strerror or exc}") from exc
    worker = _worker_id(opts)
    # Alone, the run holds its folder for its whole life; shared, the journal is the database and the folder
    # only takes the files at the end, locked while they are written.
    lock = None if shared else _lock(out)
    writer: OutputWriter | None = None
    journal: Journal | None = None
    setup = contextlib.ExitStack()
    try:
        setup.enter_context(_setup_interruptible(handle_signals))
        journal = _open(opts, out)
        # Shared, the lines other workers hold are theirs until their leases run out; a line this machine's
        # killed worker held is taken back the same way.
        resent = 0
        if not shared:
            resent = journal.recover(sent=read_sent(out / SENT_FILE))
            (out / SENT_FILE).unlink(missing_ok=True)  # read: each run starts its own
        invalid = 0
        loaded = LoadReport()
        try:
            if items is not None:
                print_ = None
                if shared:
                    if source is not None and lines is None:
                        print_ = fingerprint(read_lines(source, template=opts.template, model=opts.model,
                                                        params=opts.params or None))  # fmt: skip
                    else:
                        items = list(items)
                        print_ = fingerprint(items)
                invalid, loaded = _load(journal, items, opts, print_=print_)
                if loaded_input is not None:
                    loaded_input()
        except OtherInput as exc:
            raise SetupError(str(exc)) from None
        except (ValueError, OSError) as exc:
            # Wrong reading options, or an input that cannot be opened or read: nothing was sent.
            raise SetupError(str(exc)) from exc
        if opts.retry_failed is not None:
            if not shared:
                journal.reset_failed(opts.retry_failed or None)
            else:
                # Workers start one after the other: only one that finds the run finished sends its failures
                # again; those that join later run them, and do not take back the lines that fail again.
                done = _fresh_counts(journal)
                if done.pending == 0 and done.in_flight == 0:
                    journal.reset_failed(opts.retry_failed or None)
        if not shared:
            # No fsync per flush: a write() is the kernel's once it returns, so a killed process loses nothing,
            # and the journal's WAL is not synced per commit either (synchronous=NORMAL). An fsync on every
            # 50 ms flush cost a third of the runner's time with no limit (bench/README.md); the files are
            # synced at the end.
            writer = OutputWriter(out, journal, fsync=False)
            writer.flush()  # catch up: lines a killed run recorded but had not written yet
        counts = _fresh_counts(journal)
        if shared and items is None and counts.total == 0:
            assert opts.journal is not None
            raise SetupError(
                f"run {opts.run!r} in {masked_url(opts.journal)} holds no line: give INPUT to start it (or check "
                "--run and the URL's schema)"
            )
        if counts.pending == 0 and counts.in_flight == 0:
            wrote, by = _finish_shared(journal, worker, out) if shared else (True, None)
            return BatchResult(out, _exit_code(counts, None, False), counts, resent=resent, invalid=invalid,
                               repeated=loaded.duplicate_count,
                               absent=loaded.absent, renewed=loaded.renewed, kept_changed=loaded.kept,
                               journal=opts.journal, run=opts.run, worker=worker,
                               wrote_outputs=wrote, finished_by=by)  # fmt: skip
        # The price table loads on its first use, for half a second: here, before anything is sent, rather than
        # when the first answer is priced, where it stalled the event loop with the first requests in flight
        # (their answers unread, the limiter's timers late: every resumed run paused half a second).
        cost_usd("gpt-4o-mini", Usage(1, 1, 2))
        setup.close()  # from here the loop runs, and its handlers (or asyncio.run's) take the signals
        limiter = await _open_limiter(opts)
        client = AsyncClient(
            opts.base_url,
            api_key=list(opts.api_keys) or None,
            timeout=opts.timeout,
            retry=opts.retry,
            max_concurrency=opts.concurrency,
            gate=_TimedGate(limiter, lambda: run.stop_reason is not None),
            hooks=[_event_hook, *opts.hooks],
        )
        shown = progress or (NoProgress() if opts.progress == "none" else progress_for(opts.progress))
        sent_log = None if shared else SentLog(out / SENT_FILE)
        run = _Run(journal, writer, client, opts, limiter, shown, worker, sent_log)
        loop = asyncio.get_running_loop()
        installed = False
        if handle_signals:

            def on_sigint() -> None:
                if run.interrupted:
                    run.cancel_all()  # the second Ctrl-C: stop at once, the journal stays consistent
                else:
                    run.interrupted = True
                    run._stop("interrupted: finishing the requests in flight (Ctrl-C again to stop at once)")

            try:
                # SIGTERM (a service manager's stop, kill, a cluster's pre-emption) as Ctrl-C: the requests in
                # flight are finished and written, so that the resumed run sends none of them again.
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(signum, on_sigint)
                installed = True
            except (NotImplementedError, RuntimeError):
                pass
        # What exists before the first send (modules, the price table, the caller's data) lives as long as the
        # run: kept out of the collector's full passes, which otherwise walk all of it again and again (4% of
        # the runner's CPU with no rate limit). Given back to the collector when the run ends.
        frozen = gc.get_freeze_count() == 0
        if frozen:
            gc.freeze()
        if not shared:
            journal.set_meta({"stopped": None})  # why the last run stopped, for the report: not yet known
        try:
            await run.run()
        except BaseException as exc:
            # Cancelled (asyncio.wait_for, a task's cancel(); a KeyboardInterrupt in genguard.batch() reaches
            # the run as its task's cancellation), or a failure: stop at once, as a second Ctrl-C does, and
            # leave the journal consistent before it is closed; then the caller gets what was raised.
            interrupted = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit)
            await run.abort(interrupted=interrupted)
            if interrupted:
                shown.close(run.snapshot())
                if not shared:
                    journal.set_meta({"stopped": _stopped_for(run)})
            raise
        finally:
            if frozen:
                gc.unfreeze()
            if installed:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
            await client.aclose()
            await limiter.aclose()
            if writer is not None:
                writer.sync()
            if sent_log is not None:
                sent_log.close()
        if not shared:
            # Shared, a worker's stop (its deadline, its cost cap) is not the run's: the others go on.
            stopped = _stopped_for(run)
            journal.set_meta({"stopped": stopped, "failing_alike": run.failing_alike,
                              "timed_out": run.timed_out or None,
                              "down": (run.down and run.served_now) or None})  # fmt: skip
        counts = _fresh_counts(journal)
        snap = run.snapshot()
        shown.close(snap)
        limits = limiter.snapshot()
        wrote, by = True, None
        if shared and counts.pending == 0 and counts.in_flight == 0:
            wrote, by = _finish_shared(journal, worker, out)
        elif shared:
            wrote = False
        return BatchResult(
            out,
            _exit_code(counts, run.stop_reason, run.interrupted),
            counts,
            stopped=_stopped_for(run),
            sent=run.sent,
            resent=resent,
            elapsed_s=time.monotonic() - run.t0,
            rate_limited=run.rate_limited,
            limit_rps=None if limits.rpm is None else limits.rpm / 60.0,
            limit_source=limits.rpm_source,
            limits={
                (", ".join(limiter.shared_models()) if model is None else model): (
                    None if pace.rpm is None else pace.rpm / 60.0,
                    pace.rpm_source,
                )
                for model, pace in limiter.snapshots().items()
                if model is not None or limiter.shared_models()  # the shared gate, if a model went through it
            },
            invalid=invalid,
            repeated=loaded.duplicate_count,
            absent=loaded.absent,
            renewed=loaded.renewed,
            kept_changed=loaded.kept,
            journal=opts.journal,
            run=opts.run,
            worker=worker,
            wrote_outputs=wrote,
            finished_by=by,
            unpriced=tuple(sorted(run.unpriced)),
            in_flight_refused=run.crowded,
            in_flight_limit=run.started.limit,
        )
    finally:
        setup.close()
        if writer is not None:
            writer.close()
        if journal is not None:
            journal.close()
        if lock is not None:
            lock.close()


def _finish_shared(journal: Journal, worker: str, out: Path) -> tuple[bool, str | None]:
    """At the end of a shared run: the first worker to see every line ended writes the files into its folder;
    the others say who did. (Whether this worker wrote them, and who did.)"""
    assert isinstance(journal, PostgresJournal)
    if journal.finish(worker):
        write_outputs(journal, out)
        return True, worker
    return False, journal.finished_by()


async def _open_limiter(opts: BatchOptions) -> ModelGates:
    """Paces placed by model (a model whose answers state limits of its own gets its own), each within
    --rpm/--tpm; shared through Redis with --limiter (checked here, before anything is sent: exit 2 if Redis
    does not answer)."""
    if not opts.limiter:
        return ModelGates(lambda model: AsyncRateLimiter(RateGovernor(rpm=opts.rpm, tpm=opts.tpm)))
    from .limiter_redis import LimiterUnavailable, open_gate

    url = opts.limiter
    key = next(iter(opts.api_keys), None)

    def make(model: str | None) -> Awaitable[RedisGate]:
        return open_gate(url, base_url=opts.base_url, api_key=key, rpm=opts.rpm, tpm=opts.tpm, model=model)

    gates = ModelGates(make)
    try:
        await gates.open(None)  # Redis answers, or exit 2 before anything is sent
    except (LimiterUnavailable, ValueError) as exc:
        raise SetupError(str(exc)) from None
    return gates


class SetupError(GenguardError):
    """The run could not start (its folder, its input, its settings): nothing was sent."""


class RunInUse(GenguardError):
    """Another run holds this folder: two runs would each take the other's lines back and both write outputs."""


def _lock(out: Path, *, wait: bool = False) -> Any:
    import fcntl

    try:
        handle = (out / "journal.lock").open("a")
    except OSError as exc:
        # A folder on a read-only disk, or not the user's to write: the journal could not be written either.
        raise SetupError(
            f"--out {out} cannot be written ({exc.strerror or exc}): give a folder this user can write"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        handle.close()
        raise RunInUse(
            f"{out} is in use by another genguard batch run; wait for it to end (or stop it), "
            "or give another --out"
        ) from None
    return handle


def run_batch(source: str | Path | None, opts: BatchOptions, **kwargs: Any) -> BatchResult:
    """Run or resume the batch of ``source`` into ``opts.out``: blocking, for scripts."""
    return run_loop(arun_batch(source, opts, **kwargs))


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, on uvloop where it is installed (a dependency except on Windows): the event
    loop's own work is a third of a batch's CPU per line with no rate limit, and uvloop does it in C."""
    # asyncio.Runner takes Ctrl-C only where no handler of the caller's is in place; so does the run's setup.
    own = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    token = _RUNNER_SIGINT.set(own)
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    finally:
        _RUNNER_SIGINT.reset(token)
