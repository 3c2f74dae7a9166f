"""The journal of a batch run: every line's state, outcome, attempts, usage and cost, durable across ``kill -9``.

A line goes ``pending`` -> ``in_flight`` (claimed by a worker, with a lease that expires) -> ``ended``
(recorded, with a commit sequence number ``seq``). The output files are written from the journal in ``seq``
order (see :mod:`genguard.bulk.outputs`), so a line is written once whatever instant the process dies at, and
the only requests sent again after a crash are the ones that were in flight (counted in ``resent``; with a
sent log, only those whose request had left: :mod:`genguard.bulk.sentlog`).

:class:`Journal` is the interface the runner codes against; :class:`SQLiteJournal` implements it in one file
(``DIR/journal.sqlite``) for one process. A PostgreSQL journal for workers on several machines implements the
same methods: claims are leases (``SELECT ... FOR UPDATE SKIP LOCKED``), recording is idempotent, and ``seq``
must be handed out in commit order (a counter row updated inside the recording transaction, not a bare
sequence, whose numbers can commit out of order and make a reader tailing ``ended(after_seq)`` skip one).

>>> import tempfile, pathlib
>>> from genguard.core.outcome import Outcome
>>> from genguard.bulk.model import Line
>>> with tempfile.TemporaryDirectory() as folder, SQLiteJournal(pathlib.Path(folder) / "j.sqlite") as journal:
...     report = journal.load([Line("a", "/v1/embeddings", {"model": "m", "input": "hi"}, 1)])
...     journal.commit()
...     [claimed] = journal.claim(8, worker="w1", lease_s=60)
...     journal.record([claimed.result(Outcome.success(endpoint="embedding"))])
...     journal.counts().ok
['a']
1
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson

from ..core.outcome import Outcome, Usage
from .model import AttemptEvent, Ended, InputProblem, Line, line_key, place

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "JOURNAL_FILE",
    "MIGRATIONS",
    "BatchCounts",
    "Claimed",
    "Journal",
    "JournalError",
    "LoadReport",
    "OutputMark",
    "Result",
    "SQLiteJournal",
    "Tried",
    "migrate",
]

JOURNAL_FILE = "journal.sqlite"
"""The journal's file name in a run's folder."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class JournalError(Exception):
    """The journal cannot be used as asked: written by a newer genguard, not a journal, or misused."""


# -- values ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A line handed to a worker: send ``body`` to ``url``, then record ``result(...)`` before the lease ends.

    ``claim_no`` is 1 on the first claim; ``resent`` counts the times the line was taken back from in flight
    (a crash, an expired lease): each of those requests may have reached the provider and been billed.
    ``tried`` counts the attempts the line made in runs that stopped before it ended (:class:`Tried`): its
    attempt budget goes on from there.
    """

    custom_id: str
    url: str
    body: Mapping[str, Any]
    number: int
    key: str
    worker: str
    claim_no: int
    resent: int
    tried: int = 0

    def result(
        self,
        outcome: Outcome,
        *,
        response: Mapping[str, Any] | bytes | None = None,
        cost_usd: float | None = None,
        latency_s: float | None = None,
        events: Sequence[AttemptEvent] = (),
    ) -> Result:
        """The :class:`Result` that ends this line (carrying its key, so it never lands on a changed line)."""
        return Result(self.custom_id, self.key, outcome, response, cost_usd, latency_s, self.worker, events)


@dataclass(frozen=True, slots=True)
class Result:
    """How one line ended, for :meth:`Journal.record`.

    ``key`` is the line's key when it was claimed: a result for a line whose request changed since
    (``load(rerun_changed=True)``) is not recorded. ``response`` is the final HTTP response as the output line
    carries it, ``{"status_code", "request_id", "body"}`` (``body`` parsed JSON or text), or ``None`` when no
    response came (timeout, connection failure, invalid input); it may be given as that object's JSON text
    already (bytes), which is stored as it is: a large answer (embeddings) is then not parsed and written again.
    ``events`` are the line's attempts, for the report.
    """

    custom_id: str
    key: str
    outcome: Outcome
    response: Mapping[str, Any] | bytes | None = None
    cost_usd: float | None = None
    latency_s: float | None = None
    worker: str | None = None
    events: Sequence[AttemptEvent] = ()


@dataclass(frozen=True, slots=True)
class Tried:
    """What a line did before a stop cut it off, unended, for :meth:`Journal.release`: the ``attempts`` that count
    against its budget (those that may have reached the provider, one on the wire when cut off included; not
    those that never connected), the ``events`` of all it made, and the ``usage`` and ``cost_usd`` of those that
    were answered (a provider bills an answer it judged failed: an empty one, say). ``key`` is the line's key
    when it was claimed: nothing is kept for a line whose request changed since, or that ended meanwhile."""

    custom_id: str
    key: str
    attempts: int
    events: Sequence[AttemptEvent] = ()
    usage: Usage | None = None
    cost_usd: float | None = None
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What :meth:`Journal.load` found. ``changed`` and ``duplicates`` hold at most ``max_problems`` problems
    each; ``changed_count`` and ``duplicate_count`` count them all.

    ``new`` lines were added as pending; ``unchanged`` were in the journal with the same key and were left as
    they were (a resumed run); ``renewed`` had not ended and take this input's other url or body (they had no
    answer to set aside); ``changed`` lines ended with an answer to another url or body than this input's (with
    ``rerun_changed`` they went back to pending: ``rerun`` of them; with ``keep_changed`` they keep their
    answers: ``kept`` of them); ``duplicates`` repeat a ``custom_id`` of this input (only the first was loaded);
    ``absent`` lines are in the journal but not in this input.
    """

    new: int = 0
    unchanged: int = 0
    rerun: int = 0
    absent: int = 0
    changed_count: int = 0
    duplicate_count: int = 0
    changed: tuple[InputProblem, ...] = ()
    duplicates: tuple[InputProblem, ...] = ()
    renewed: int = 0
    kept: int = 0

    @property
    def ok(self) -> bool:
        """Whether the load can be committed as it is: no duplicate, and no changed line left unhandled."""
        return self.duplicate_count == 0 and self.changed_count == self.rerun + self.kept

    @property
    def problems(self) -> tuple[InputProblem, ...]:
        return self.duplicates + self.changed


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """Where the lines are. ``resent`` counts requests sent again after being taken back from in flight (each
    may have been billed twice); ``cost_usd`` and the token sums cover every answer paid for, archived ones
    (``reset_failed``, ``rerun_changed``) and those of attempts a stop cut off (:class:`Tried`) included.
    ``tried`` counts the pending lines that made attempts already (cut off by a stop): sent, though not
    ended."""

    pending: int = 0
    in_flight: int = 0
    ok: int = 0
    failed: int = 0
    by_code: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    resent: int = 0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    tried: int = 0

    @property
    def ended(self) -> int:
        return self.ok + self.failed

    @property
    def total(self) -> int:
        return self.pending + self.in_flight + self.ok + self.failed


@dataclass(frozen=True, slots=True)
class OutputMark:
    """How far the output files are written: every ended line with ``seq`` up to this one, in files of these
    lengths. ``rebuild`` says lines already written have since left ``ended`` (``reset_failed``,
    ``rerun_changed``), so the files must be written again from the journal."""

    seq: int = 0
    output_bytes: int = 0
    errors_bytes: int = 0
    rebuild: bool = False


# -- the interface ---------------------------------------------------------------------------------------


@runtime_checkable
class Journal(Protocol):
    """What the runner and the output writer need of a journal; one writer per connection, one thread at a
    time. Every method that writes commits before it returns, except :meth:`load`, which waits for
    :meth:`commit` or :meth:`rollback` so that the caller can refuse an input after seeing the report."""

    def load(
        self,
        lines: Iterable[Line],
        *,
        rerun_changed: bool = False,
        max_problems: int = 1000,
        retry_failed: Collection[str] | None = None,
        keep_changed: bool = False,
    ) -> LoadReport: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def claim(
        self, n: int, *, worker: str, lease_s: float, skip_models: Collection[str] = ()
    ) -> list[Claimed]: ...

    def renew(self, custom_ids: Iterable[str], *, worker: str, lease_s: float) -> int: ...

    def record(self, results: Sequence[Result]) -> list[str]: ...

    def release(self, custom_ids: Iterable[str], *, tried: Sequence[Tried] = ()) -> int: ...

    def recover(self, *, worker: str | None = None, sent: Collection[str] | None = None) -> int: ...

    def reset_failed(self, codes: Collection[str] | None = None) -> int: ...

    def counts(self) -> BatchCounts: ...

    def ended(self, after_seq: int = 0, *, by_input: bool = False) -> Iterator[Ended]: ...

    def events(self) -> Iterator[AttemptEvent]: ...

    def get_meta(self, name: str, default: Any = None) -> Any: ...

    def set_meta(self, values: Mapping[str, Any]) -> None: ...

    def output_mark(self) -> OutputMark: ...

    def set_output_mark(self, mark: OutputMark) -> None: ...

    def close(self) -> None: ...


# -- migrations ------------------------------------------------------------------------------------------

# "ggbj" (genguard batch journal): a file that carries another application id is not ours to change.
APPLICATION_ID = 0x6767626A

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []
"""The schema's history: migration ``i`` (1-based) is ``MIGRATIONS[i - 1]``, and ``PRAGMA user_version`` says
how many a file has had. Append only: a released migration is never edited."""


def _migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def _run(db: sqlite3.Connection, script: str) -> None:
    # executescript would COMMIT the migration's transaction first; one statement at a time stays inside it.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


@_migration
def m001_lines(db: sqlite3.Connection) -> None:
    # Bodies and results live beside the lines so that claiming, counting and listing read small rows.
    _run(
        db,
        f"""
        PRAGMA application_id = {APPLICATION_ID};
        CREATE TABLE lines (
            id INTEGER PRIMARY KEY,
            custom_id TEXT NOT NULL UNIQUE,
            number INTEGER NOT NULL,
            source TEXT NOT NULL,
            url TEXT NOT NULL,
            key TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'in_flight', 'ended')),
            worker TEXT,
            lease_until REAL,
            claims INTEGER NOT NULL DEFAULT 0,
            resent INTEGER NOT NULL DEFAULT 0,
            seq INTEGER,
            ok INTEGER,
            code TEXT,
            status_code INTEGER,
            attempts INTEGER,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            total_tokens INTEGER,
            cost_usd REAL,
            latency_s REAL,
            ended_at REAL
        );
        CREATE INDEX lines_state_number ON lines (state, number);
        CREATE UNIQUE INDEX lines_seq ON lines (seq) WHERE seq IS NOT NULL;
        CREATE TABLE bodies (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
        CREATE TABLE results (id INTEGER PRIMARY KEY, outcome TEXT NOT NULL, response TEXT);
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE output_mark (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            output_bytes INTEGER NOT NULL,
            errors_bytes INTEGER NOT NULL,
            rebuild INTEGER NOT NULL
        );
        INSERT INTO output_mark VALUES (1, 0, 0, 0, 0)
        """,
    )


@_migration
def m002_attempts_and_history(db: sqlite3.Connection) -> None:
    # history keeps the answers a line had before it was run again: what was paid for stays counted, and its
    # seq stays taken, so the commit order never hands out a number twice.
    _run(
        db,
        """
        CREATE TABLE attempt_events (
            id INTEGER PRIMARY KEY,
            custom_id TEXT NOT NULL,
            number INTEGER NOT NULL,
            code TEXT,
            status INTEGER,
            wait_s REAL NOT NULL,
            at REAL NOT NULL,
            latency_s REAL
        );
        CREATE TABLE history (
            id INTEGER PRIMARY KEY,
            line_id INTEGER NOT NULL,
            custom_id TEXT NOT NULL,
            key TEXT NOT NULL,
            reason TEXT NOT NULL,
            archived_at REAL NOT NULL,
            seq INTEGER,
            ok INTEGER,
            code TEXT,
            status_code INTEGER,
            attempts INTEGER,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            total_tokens INTEGER,
            cost_usd REAL,
            latency_s REAL,
            worker TEXT,
            ended_at REAL,
            outcome TEXT,
            response TEXT
        );
        CREATE INDEX history_seq ON history (seq)
        """,
    )


@_migration
def m003_tried(db: sqlite3.Connection) -> None:
    # The attempts a line made in runs that stopped before it ended: its attempt budget goes on from there when
    # resumed (their events and what they cost are kept as the line's were, in attempt_events and history).
    _run(db, "ALTER TABLE lines ADD COLUMN tried INTEGER NOT NULL DEFAULT 0")


def journal_version(db: sqlite3.Connection, *, path: object = "journal") -> int:
    """The schema version of ``db`` (0: a new file); :class:`JournalError` for a file written by a newer
    genguard or by another application."""
    (app,) = db.execute("PRAGMA application_id").fetchone()
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if app not in (0, APPLICATION_ID):
        raise JournalError(f"{path} is an SQLite file of another application, not a genguard journal")
    if version > len(MIGRATIONS):
        raise JournalError(
            f"{path} was written by a newer genguard (journal version {version}; this genguard knows up to "
            f"{len(MIGRATIONS)}): upgrade genguard to resume this run, or write to another directory"
        )
    if version and app != APPLICATION_ID:
        raise JournalError(f"{path} has a user_version but is not a genguard journal")
    return int(version)


def migrate(db: sqlite3.Connection, *, path: object = "journal") -> int:
    """Bring ``db`` to the newest schema, one transaction per migration; the version it ends at.

    Raises :class:`JournalError` for a file written by a newer genguard or by another application.
    """
    version = journal_version(db, path=path)
    for number in range(version + 1, len(MIGRATIONS) + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated the file meanwhile.
            (current,) = db.execute("PRAGMA user_version").fetchone()
            if current < number:
                MIGRATIONS[number - 1](db)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


# -- the SQLite journal ----------------------------------------------------------------------------------

_CHUNK = 1000  # rows per executemany and per IN (...) list: under SQLite's bound-variable limit, flat memory

_ENDED_COLUMNS = """l.seq, l.custom_id, l.number, l.url, r.outcome, r.response, l.cost_usd, l.latency_s,
    l.worker, l.attempts, l.resent, l.ended_at, l.source, l.id"""


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _response_text(response: Mapping[str, Any] | bytes | None) -> str | None:
    """A result's response as the journal stores it: JSON text (given as such, or written here)."""
    if response is None:
        return None
    if isinstance(response, bytes):
        return response.decode()
    return _dumps(response)


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _chunks(items: Iterable[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class SQLiteJournal:
    """The journal in one SQLite file, for one writing process (``Journal`` is the interface).

    WAL mode with ``synchronous=NORMAL``: each commit is a ``write()`` into the WAL, which the kernel keeps once
    the call returns, so a commit survives ``kill -9`` of the process. ``FULL`` would add an fsync per commit
    and buy durability only against power loss or an OS crash, where NORMAL keeps the database consistent but
    may lose the last commits: those lines are run again (billed twice), and the output mark goes back with
    them, so the output files are cut back and nothing is lost or written twice.

    Opening applies any pending migration (``PRAGMA user_version``) and refuses a file from a newer genguard.
    One connection, used from one thread at a time (not necessarily the one that opened it).
    ``clock`` gives the wall-clock time of leases and ``ended_at`` (a fake one in tests).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._loading = False
        self._tally: _Tally | None = None
        if read_only:
            self._open_read_only()
            return
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            # A load of a million lines is one transaction: a larger page cache than the 2 MiB default keeps
            # its index pages in memory (a bound, not growth: memory stays flat whatever the input's size).
            self._db.execute("PRAGMA cache_size = -32768")
            # A reader (genguard report) may hold the file for a moment; wait rather than fail.
            self._db.execute("PRAGMA busy_timeout = 10000")
            migrate(self._db, path=self.path)
        except BaseException:
            self._db.close()
            raise

    def _open_read_only(self) -> None:
        # For reading a run kept where nothing may write (a read-only mount, an archive): a journal in WAL mode
        # needs its -shm file made beside it even to be read, so the file is opened as immutable, which
        # nothing writes to meanwhile there. (A run that ended cleanly has folded its WAL into the file.)
        uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
        self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            version = journal_version(self._db, path=self.path)
            if version < len(MIGRATIONS):
                raise JournalError(
                    f"{self.path} is a journal of an older genguard (journal version {version}; this one reads "
                    f"{len(MIGRATIONS)}) and its folder cannot be written to bring it up to date: read it with "
                    "that version, or copy the folder somewhere writable"
                )
        except BaseException:
            self._db.close()
            raise

    # -- transactions --

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self._loading:
            raise JournalError("a load is waiting for commit() or rollback()")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def commit(self) -> None:
        """Keep what :meth:`load` did."""
        if self._loading:
            self._db.execute("COMMIT")
            self._loading = False
            self._tally = None  # loads are rare and change many lines: counted again when next asked

    def rollback(self) -> None:
        """Undo what :meth:`load` did: the journal is as it was before."""
        if self._loading:
            self._db.execute("ROLLBACK")
            self._loading = False

    # -- loading --

    def load(
        self,
        lines: Iterable[Line],
        *,
        rerun_changed: bool = False,
        max_problems: int = 1000,
        retry_failed: Collection[str] | None = None,
        keep_changed: bool = False,
    ) -> LoadReport:
        """Add the input's lines, streaming, in one transaction left open for :meth:`commit` or
        :meth:`rollback`.

        A ``custom_id`` already in the journal with the same key is left as it is (a resumed run). With another
        key, a line that has not ended takes the new request (``renewed``: it has no answer to mix with it); one
        that ended is reported as changed. With ``rerun_changed`` it goes back to pending with the new request
        and its old answer moves to the history table (never an old answer beside a new request); with
        ``keep_changed`` it keeps its answer and the request it answered (``kept``). A changed line that ended
        failed goes back to pending with its new request when ``retry_failed`` sends it again (its codes as for
        :meth:`reset_failed`, an empty collection for every failure; ``None``: no retry). A ``custom_id``
        repeated within ``lines`` is a duplicate: the first is loaded, the repeat reported with both places.
        """
        if self._loading:
            raise JournalError("a load is already waiting for commit() or rollback()")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        self._loading = True
        try:
            return self._load(lines, _LoadSort(max_problems, rerun_changed, retry_failed, keep_changed))
        except BaseException:
            self.rollback()
            raise

    def _load(self, lines: Iterable[Line], sort: _LoadSort) -> LoadReport:
        db = self._db
        # Lines with an id above `start` were added by this load, so a custom_id found among them is a repeat;
        # lines older than the load are remembered in a temporary table when seen (on disk, so a million of
        # them cost no memory).
        (start,) = db.execute("SELECT coalesce(max(id), 0) FROM lines").fetchone()
        next_id = start + 1
        resuming = start > 0
        if resuming:
            db.execute("CREATE TEMP TABLE IF NOT EXISTS load_seen (id INTEGER PRIMARY KEY, source, number)")
            db.execute("DELETE FROM temp.load_seen")
        sort.start = start
        now = self._clock()
        for chunk in _chunks(lines):
            ids = list({line.custom_id: None for line in chunk})
            known: dict[str, _KnownRow] = {}
            for cid_chunk in _chunks(ids):
                known.update(
                    (row[1], (*row[:5], bool(row[5]), row[6], bool(row[7])))
                    for row in db.execute(
                        f"""SELECT id, custom_id, number, source, key, state = 'ended' AND ok = 0, code,
                            state = 'ended' FROM lines
                        WHERE custom_id IN ({_marks(len(cid_chunk))})""",
                        cid_chunk,
                    )
                )
            seen_before: dict[int, tuple[str, int]] = {}
            if resuming:
                old = [row[0] for row in known.values() if row[0] <= start]
                if old:
                    seen_before = {
                        row[0]: (row[1], row[2])
                        for row in db.execute(
                            f"SELECT id, source, number FROM temp.load_seen WHERE id IN ({_marks(len(old))})",
                            old,
                        )
                    }
            inserts: list[tuple[Any, ...]] = []
            bodies: list[tuple[int, str]] = []
            seen_now: list[tuple[int, str, int]] = []
            reruns: list[tuple[int, Line, str, str]] = []
            for line in chunk:
                body = _dumps(line.body)
                key = line.key or line_key(line.url, line.body)
                row = known.get(line.custom_id)
                if row is None:
                    known[line.custom_id] = _new_row(next_id, line, key)
                    inserts.append((next_id, line.custom_id, line.number, line.source, line.url, key))
                    bodies.append((next_id, body))
                    next_id += 1
                    sort.new += 1
                    continue
                if sort.known(line, key, row, seen_before, seen_now):
                    reruns.append((row[0], line, key, body))
            if inserts:
                db.executemany(
                    "INSERT INTO lines (id, custom_id, number, source, url, key) VALUES (?, ?, ?, ?, ?, ?)",
                    inserts,
                )
                db.executemany("INSERT INTO bodies (id, body) VALUES (?, ?)", bodies)
            if seen_now:
                db.executemany("INSERT INTO temp.load_seen VALUES (?, ?, ?)", seen_now)
            if sort.moved:
                db.executemany("UPDATE lines SET number = ?, source = ? WHERE id = ?", sort.moved)
                sort.moved.clear()
            if reruns:
                self._archive([r[0] for r in reruns], "changed", now)
                db.executemany(
                    "UPDATE lines SET url = ?, key = ?, number = ?, source = ? WHERE id = ?",
                    [(line.url, key, line.number, line.source, i) for i, line, key, _ in reruns],
                )
                db.executemany("UPDATE bodies SET body = ? WHERE id = ?", [(b, i) for i, _, _, b in reruns])
        absent = 0
        if resuming:
            (absent,) = db.execute(
                "SELECT count(*) FROM lines WHERE id <= ? AND id NOT IN (SELECT id FROM temp.load_seen)",
                (start,),
            ).fetchone()
        return sort.report(absent)

    def _archive(self, line_ids: Sequence[int], reason: str, now: float) -> None:
        """Move the answers of these lines to history and put the lines back to pending (inside a transaction)."""
        db = self._db
        for ids in _chunks(line_ids):
            marks = _marks(len(ids))
            archived = db.execute(
                f"""INSERT INTO history (line_id, custom_id, key, reason, archived_at, seq, ok, code, status_code,
                    attempts, prompt_tokens, completion_tokens, total_tokens, cost_usd, latency_s, worker,
                    ended_at, outcome, response)
                SELECT l.id, l.custom_id, l.key, ?, ?, l.seq, l.ok, l.code, l.status_code, l.attempts,
                    l.prompt_tokens, l.completion_tokens, l.total_tokens, l.cost_usd, l.latency_s, l.worker,
                    l.ended_at, r.outcome, r.response
                FROM lines l JOIN results r ON r.id = l.id WHERE l.id IN ({marks}) AND l.state = 'ended'""",
                (reason, now, *ids),
            ).rowcount
            db.execute(f"DELETE FROM results WHERE id IN ({marks})", ids)
            db.execute(
                f"""UPDATE lines SET state = 'pending', worker = NULL, lease_until = NULL, seq = NULL, ok = NULL,
                    code = NULL, status_code = NULL, attempts = NULL, prompt_tokens = NULL,
                    completion_tokens = NULL, total_tokens = NULL, cost_usd = NULL, latency_s = NULL,
                    ended_at = NULL
                WHERE id IN ({marks})""",
                ids,
            )
            if archived:
                # Lines already in the output files have left 'ended': the files must be written again.
                db.execute("UPDATE output_mark SET rebuild = 1")

    # -- running --

    def claim(
        self, n: int, *, worker: str, lease_s: float, skip_models: Collection[str] = ()
    ) -> list[Claimed]:
        """Up to ``n`` lines to send, in input order: pending ones, and in-flight ones whose lease expired
        (counted as resent). Each is in flight for ``worker`` until ``lease_s`` seconds from now. Lines whose
        body asks a model of ``skip_models`` are left where they are (a model the provider asks to wait for)."""
        if n <= 0:
            return []
        now = self._clock()
        params: dict[str, Any] = {"n": n, "now": now}
        skip = ""
        if skip_models:
            params.update((f"m{i}", m) for i, m in enumerate(skip_models))
            skip = (
                " AND NOT EXISTS (SELECT 1 FROM bodies b WHERE b.id = lines.id AND json_extract(b.body, '$.model')"
                f" IN ({', '.join(f':m{i}' for i in range(len(skip_models)))}))"
            )
        with self._write() as db:
            picked = db.execute(
                f"""SELECT id, state FROM (
                    SELECT id, number, state FROM (
                        SELECT id, number, state FROM lines WHERE state = 'pending'{skip}
                        ORDER BY number LIMIT :n)
                    UNION ALL
                    SELECT id, number, state FROM (
                        SELECT id, number, state FROM lines WHERE state = 'in_flight' AND lease_until <= :now{skip}
                        ORDER BY number LIMIT :n)
                    ORDER BY number LIMIT :n)""",
                params,
            ).fetchall()
            if not picked:
                return []
            ids = [r[0] for r in picked]
            marks = _marks(len(ids))
            rows = db.execute(
                f"""UPDATE lines SET state = 'in_flight', worker = ?, lease_until = ?, claims = claims + 1,
                    resent = resent + (state = 'in_flight')
                WHERE id IN ({marks})
                RETURNING id, custom_id, url, number, key, claims, resent, tried""",
                (worker, now + lease_s, *ids),
            ).fetchall()
            rows.sort(key=lambda r: (r[3], r[0]))
            body = dict(db.execute(f"SELECT id, body FROM bodies WHERE id IN ({marks})", ids).fetchall())
        if self._tally is not None:
            expired = sum(1 for r in picked if r[1] == "in_flight")
            self._tally.move("pending", "in_flight", len(picked) - expired)
            self._tally.resent += expired
            was = dict(picked)
            self._tally.tried -= sum(1 for r in rows if r[7] and was.get(r[0]) == "pending")
        return [
            Claimed(cid, url, orjson.loads(body[i]), number, key, worker, claims, resent, tried)
            for i, cid, url, number, key, claims, resent, tried in rows
        ]

    def renew(self, custom_ids: Iterable[str], *, worker: str, lease_s: float) -> int:
        """Extend ``worker``'s leases of these lines to ``lease_s`` from now; how many it still held."""
        count = 0
        until = self._clock() + lease_s
        with self._write() as db:
            for chunk in _chunks(custom_ids):
                count += db.execute(
                    f"""UPDATE lines SET lease_until = ? WHERE state = 'in_flight' AND worker = ?
                    AND custom_id IN ({_marks(len(chunk))})""",
                    (until, worker, *chunk),
                ).rowcount
        return count

    def record(self, results: Sequence[Result]) -> list[str]:
        """End these lines in one transaction, in order, each with the next ``seq``; the custom_ids that were
        new. A line already ended, or whose key is not the result's (its request changed), is left as it is,
        so recording the same results again is harmless. A line is recorded from pending as well as from in
        flight (a late answer for a released line is still an answer). An unknown custom_id raises
        :class:`JournalError` and nothing is recorded."""
        if not results:
            return []
        now = self._clock()
        with self._write() as db:
            state: dict[str, tuple[int, str, str]] = {}
            tried: set[str] = set()  # pending lines that made attempts before a stop (BatchCounts.tried)
            for chunk in _chunks(list({r.custom_id: None for r in results})):
                for line_id, cid, st, key, n in db.execute(
                    f"""SELECT id, custom_id, state, key, tried FROM lines
                    WHERE custom_id IN ({_marks(len(chunk))})""",
                    chunk,
                ):
                    state[cid] = (line_id, st, key)
                    if n and st == "pending":
                        tried.add(cid)
            unknown = [r.custom_id for r in results if r.custom_id not in state]
            if unknown:
                raise JournalError(
                    f"no line with custom_id {unknown[0]!r} in the journal ({len(unknown)} unknown)"
                )
            seq = self._last_seq()
            updates: list[tuple[Any, ...]] = []
            answers: list[tuple[int, str, str | None]] = []
            events: list[tuple[Any, ...]] = []
            new: list[str] = []
            ended: list[tuple[str, Result]] = []
            for r in results:
                line_id, st, key = state[r.custom_id]
                if st == "ended" or key != r.key:
                    continue
                ended.append((st, r))
                state[r.custom_id] = (line_id, "ended", key)
                seq += 1
                o = r.outcome
                u = o.usage
                response = r.response
                status = response.get("status_code") if isinstance(response, Mapping) else o.status
                updates.append(
                    (
                        seq,
                        o.ok,
                        o.code,
                        status,
                        o.attempts,
                        None if u is None else u.prompt_tokens,
                        None if u is None else u.completion_tokens,
                        None if u is None else u.total_tokens,
                        r.cost_usd,
                        r.latency_s,
                        now,
                        r.worker,
                        line_id,
                    )
                )
                answers.append((line_id, _dumps(o.to_dict(full=True)), _response_text(response)))
                events.extend(
                    (e.custom_id, e.number, e.code, e.status, e.wait_s, e.at, e.latency_s) for e in r.events
                )
                new.append(r.custom_id)
            if updates:
                db.executemany(
                    """UPDATE lines SET state = 'ended', seq = ?, ok = ?, code = ?, status_code = ?, attempts = ?,
                        prompt_tokens = ?, completion_tokens = ?, total_tokens = ?, cost_usd = ?, latency_s = ?,
                        ended_at = ?, worker = coalesce(?, worker), lease_until = NULL, tried = 0
                    WHERE id = ?""",
                    updates,
                )
                db.executemany(
                    "INSERT OR REPLACE INTO results (id, outcome, response) VALUES (?, ?, ?)", answers
                )
            if events:
                db.executemany(
                    """INSERT INTO attempt_events (custom_id, number, code, status, wait_s, at, latency_s)
                    VALUES (?, ?, ?, ?, ?, ?, ?)""",
                    events,
                )
        if self._tally is not None:
            for st, r in ended:
                self._tally.end(st, r.outcome, r.cost_usd)
                if r.custom_id in tried:
                    self._tally.tried -= 1
        return new

    def _last_seq(self) -> int:
        # Archived answers keep their seq, so a number is never handed out twice.
        (seq,) = self._db.execute(
            """SELECT max(coalesce((SELECT max(seq) FROM lines WHERE seq IS NOT NULL), 0),
                coalesce((SELECT max(seq) FROM history WHERE seq IS NOT NULL), 0))"""
        ).fetchone()
        return int(seq)

    def release(self, custom_ids: Iterable[str], *, tried: Sequence[Tried] = ()) -> int:
        """Put these in-flight lines back to pending (the run stops for a run-level failure such as quota: they
        had no answer to keep); how many were. ``tried`` keeps what lines a stop cut off had done (these, or
        lines left in flight, whose request may be on the wire): their attempts count towards their budget
        when resumed (``Claimed.tried``), their events join the attempts recorded, and the usage and cost of
        their answers stay counted (a row of the history table, ``reason`` ``stopped``), in one transaction."""
        count = 0
        with self._write() as db:
            spent = self._keep_tried(db, tried) if tried else []
            moved_tried = 0
            for chunk in _chunks(custom_ids):
                rows = db.execute(
                    f"""UPDATE lines SET state = 'pending', worker = NULL, lease_until = NULL
                    WHERE state = 'in_flight' AND custom_id IN ({_marks(len(chunk))}) RETURNING tried""",
                    chunk,
                ).fetchall()
                count += len(rows)
                moved_tried += sum(1 for (n,) in rows if n)
        if self._tally is not None:
            self._tally.move("in_flight", "pending", count)
            self._tally.tried += moved_tried
            for t in spent:
                u = t.usage
                if u is None:
                    self._tally.add_spent(t.cost_usd, None, None, None)
                else:
                    self._tally.add_spent(t.cost_usd, u.prompt_tokens, u.completion_tokens, u.total_tokens)
        return count

    def _keep_tried(self, db: sqlite3.Connection, tried: Sequence[Tried]) -> list[Tried]:
        """Keep what these lines did (inside a transaction): those that paid for something."""
        state: dict[str, tuple[int, str, str]] = {}
        for chunk in _chunks(list({t.custom_id: None for t in tried})):
            for line_id, cid, st, key in db.execute(
                f"SELECT id, custom_id, state, key FROM lines WHERE custom_id IN ({_marks(len(chunk))})",
                chunk,
            ):
                state[cid] = (line_id, st, key)
        now = self._clock()
        counts: list[tuple[int, int]] = []
        history: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        spent: list[Tried] = []
        for t in tried:
            line_id, st, key = state.get(t.custom_id, (0, "", ""))
            if st not in ("pending", "in_flight") or key != t.key:
                continue
            counts.append((t.attempts, line_id))
            events.extend(
                (e.custom_id, e.number, e.code, e.status, e.wait_s, e.at, e.latency_s) for e in t.events
            )
            if t.usage is not None or t.cost_usd is not None:
                spent.append(t)
                last = t.events[-1] if t.events else None
                u = t.usage
                history.append(
                    (
                        line_id, t.custom_id, t.key, "stopped", now,
                        None if last is None else last.code, None if last is None else last.status, t.attempts,
                        None if u is None else u.prompt_tokens, None if u is None else u.completion_tokens,
                        None if u is None else u.total_tokens, t.cost_usd, t.worker,
                    )
                )  # fmt: skip
        db.executemany("UPDATE lines SET tried = tried + ? WHERE id = ?", counts)
        if history:
            db.executemany(
                """INSERT INTO history (line_id, custom_id, key, reason, archived_at, code, status_code, attempts,
                    prompt_tokens, completion_tokens, total_tokens, cost_usd, worker)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                history,
            )
        if events:
            db.executemany(
                """INSERT INTO attempt_events (custom_id, number, code, status, wait_s, at, latency_s)
                VALUES (?, ?, ?, ?, ?, ?, ?)""",
                events,
            )
        return spent

    def recover(self, *, worker: str | None = None, sent: Collection[str] | None = None) -> int:
        """After a crash: lines left in flight (all of them, or ``worker``'s) go back to pending; how many of them
        are counted as resent: those whose request may have reached the provider, which are those named in
        ``sent`` (the run's sent log, :mod:`genguard.bulk.sentlog`), or all of them when it is ``None``."""
        where = "state = 'in_flight'" + ("" if worker is None else " AND worker = ?")
        args: tuple[str, ...] = () if worker is None else (worker,)
        with self._write() as db:
            (moved_tried,) = db.execute(
                f"SELECT count(*) FROM lines WHERE {where} AND tried > 0", args
            ).fetchone()
            if sent is None:
                resent = moved = db.execute(
                    f"UPDATE lines SET state = 'pending', worker = NULL, lease_until = NULL, resent = resent + 1 WHERE {where}",
                    args,
                ).rowcount
            else:
                ids = [cid for (cid,) in db.execute(f"SELECT custom_id FROM lines WHERE {where}", args)]
                gone = [cid for cid in ids if cid in sent]
                for chunk in _chunks(gone):
                    db.execute(
                        f"UPDATE lines SET resent = resent + 1 WHERE custom_id IN ({_marks(len(chunk))})",
                        chunk,
                    )
                moved = db.execute(
                    f"UPDATE lines SET state = 'pending', worker = NULL, lease_until = NULL WHERE {where}",
                    args,
                ).rowcount
                resent = len(gone)
        if self._tally is not None:
            self._tally.move("in_flight", "pending", moved)
            self._tally.resent += resent
            self._tally.tried += moved_tried
        return resent

    def reset_failed(self, codes: Collection[str] | None = None) -> int:
        """Failed lines (all, or those ending with one of ``codes``) back to pending, their answers kept in the
        history table (``--retry-failed``); how many."""
        with self._write() as db:
            if codes is None:
                rows = db.execute("SELECT id FROM lines WHERE state = 'ended' AND ok = 0").fetchall()
            else:
                codes = list(codes)
                rows = db.execute(
                    f"SELECT id FROM lines WHERE state = 'ended' AND ok = 0 AND code IN ({_marks(len(codes))})",
                    codes,
                ).fetchall()
            self._archive([r[0] for r in rows], "retry_failed", self._clock())
        if rows:
            self._tally = None
        return len(rows)

    # -- reading --

    def counts(self) -> BatchCounts:
        """Where the lines are, what was spent. The first call reads every line; after it, each write of this
        journal updates the tally as it commits, so asking on every progress tick costs nothing."""
        if self._tally is None:
            self._tally = self._count()
        return self._tally.snapshot()

    def _count(self) -> _Tally:
        tally = _Tally()
        for st, is_ok, code, n, resent, cost, pt, ct, tt in self._db.execute(
            """SELECT state, ok, code, count(*), sum(resent), total(cost_usd), total(prompt_tokens),
                total(completion_tokens), total(total_tokens)
            FROM lines GROUP BY state, ok, code"""
        ):
            tally.resent += resent
            if st == "ended":
                tally.add_ended(bool(is_ok), code, n)
            else:
                tally.move(None, st, n)
            tally.add_spent(cost, int(pt), int(ct), int(tt))
        cost, pt, ct, tt = self._db.execute(
            """SELECT total(cost_usd), total(prompt_tokens), total(completion_tokens), total(total_tokens)
            FROM history"""
        ).fetchone()
        tally.add_spent(cost, int(pt), int(ct), int(tt))
        (tally.tried,) = self._db.execute(
            "SELECT count(*) FROM lines WHERE state = 'pending' AND tried > 0"
        ).fetchone()
        return tally

    def ended(self, after_seq: int = 0, *, by_input: bool = False) -> Iterator[Ended]:
        """The ended lines with ``seq`` above ``after_seq``, in commit order (or, with ``by_input``, every ended
        line in input order). Read a page at a time, so the journal can be written between two items."""
        db = self._db
        if by_input:
            number, line_id = -1, -1
            while True:
                rows = db.execute(
                    f"""SELECT {_ENDED_COLUMNS} FROM lines l JOIN results r ON r.id = l.id
                    WHERE l.state = 'ended' AND (l.number, l.id) > (?, ?) ORDER BY l.number, l.id LIMIT ?""",
                    (number, line_id, _CHUNK),
                ).fetchall()
                if not rows:
                    return
                yield from map(_ended, rows)
                number, line_id = rows[-1][2], rows[-1][13]
        while True:
            rows = db.execute(
                f"""SELECT {_ENDED_COLUMNS} FROM lines l JOIN results r ON r.id = l.id
                WHERE l.seq > ? ORDER BY l.seq LIMIT ?""",
                (after_seq, _CHUNK),
            ).fetchall()
            if not rows:
                return
            yield from map(_ended, rows)
            after_seq = rows[-1][0]

    def events(self) -> Iterator[AttemptEvent]:
        """Every attempt recorded, in the order recorded."""
        last = 0
        while True:
            rows = self._db.execute(
                """SELECT id, custom_id, number, code, status, wait_s, at, latency_s FROM attempt_events
                WHERE id > ? ORDER BY id LIMIT ?""",
                (last, _CHUNK),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield AttemptEvent(*row[1:])
            last = rows[-1][0]

    # -- settings and the output mark --

    def get_meta(self, name: str, default: Any = None) -> Any:
        """A value :meth:`set_meta` stored (JSON data), or ``default``."""
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return default if row is None else orjson.loads(row[0])

    def set_meta(self, values: Mapping[str, Any]) -> None:
        """Store run-level values (settings, ``started_at``...) as JSON, in one transaction."""
        with self._write() as db:
            db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [(k, _dumps(v)) for k, v in values.items()],
            )

    def output_mark(self) -> OutputMark:
        seq, out, err, rebuild = self._db.execute(
            "SELECT seq, output_bytes, errors_bytes, rebuild FROM output_mark"
        ).fetchone()
        return OutputMark(seq, out, err, bool(rebuild))

    def set_output_mark(self, mark: OutputMark) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE output_mark SET seq = ?, output_bytes = ?, errors_bytes = ?, rebuild = ?",
                (mark.seq, mark.output_bytes, mark.errors_bytes, mark.rebuild),
            )


class _Tally:
    """The running counts behind :meth:`SQLiteJournal.counts` (one writer: its own writes are all there is)."""

    def __init__(self) -> None:
        self.states = {"pending": 0, "in_flight": 0, "ok": 0, "failed": 0}
        self.by_code: dict[str, int] = {}
        self.resent = 0
        self.cost_usd = 0.0
        self.tokens = [0, 0, 0]
        self.tried = 0  # pending lines that made attempts before a stop

    def move(self, source: str | None, target: str, n: int) -> None:
        if source is not None:
            self.states[source] -= n
        self.states[target] += n

    def add_ended(self, ok: bool, code: str | None, n: int = 1) -> None:
        self.states["ok" if ok else "failed"] += n
        if not ok:
            code = code or "unknown"
            self.by_code[code] = self.by_code.get(code, 0) + n

    def add_spent(
        self, cost: float | None, prompt: int | None, completion: int | None, total: int | None
    ) -> None:
        self.cost_usd += cost or 0.0
        self.tokens[0] += prompt or 0
        self.tokens[1] += completion or 0
        self.tokens[2] += total or 0

    def end(self, source: str, outcome: Outcome, cost: float | None) -> None:
        self.states[source] -= 1
        self.add_ended(outcome.ok, outcome.code)
        u = outcome.usage
        if u is None:
            self.add_spent(cost, None, None, None)
        else:
            self.add_spent(cost, u.prompt_tokens, u.completion_tokens, u.total_tokens)

    def snapshot(self) -> BatchCounts:
        s = self.states
        return BatchCounts(
            s["pending"],
            s["in_flight"],
            s["ok"],
            s["failed"],
            MappingProxyType(dict(self.by_code)),
            self.resent,
            self.cost_usd,
            prompt_tokens=self.tokens[0],
            completion_tokens=self.tokens[1],
            total_tokens=self.tokens[2],
            tried=self.tried,
        )


def _ended(row: tuple[Any, ...]) -> Ended:
    """An ended line from a row of ``_ENDED_COLUMNS`` (the same columns in every journal)."""
    seq, cid, number, url, outcome, response, cost, latency, worker, attempts, resent, ended_at, source, _ = (
        row
    )
    return Ended(
        int(seq),
        cid,
        number,
        url,
        orjson.loads(outcome),
        None if response is None else orjson.loads(response),
        {
            "cost_usd": cost,
            "latency_s": latency,
            "worker": worker,
            "attempts": attempts,
            "resent": resent,
            "ended_at": ended_at,
            "source": source,
        },
    )


# A line the journal holds, as a load sorts it: id, custom_id, number, source, key, ended failed, code, ended.
_KnownRow = tuple[int, str, int, str, str, bool, "str | None", bool]


def _new_row(line_id: int, line: Line, key: str) -> _KnownRow:
    """The row of a line this load adds, as a later line with its custom_id is sorted against."""
    return (line_id, line.custom_id, line.number, line.source, key, False, None, False)


class _LoadSort:
    """How a load sorts each line against the run's: new, a repeat of a custom_id in this input, unchanged,
    renewed (another request for a line not ended), or changed (an ended line's: sent again with
    ``rerun_changed``, kept with ``keep_changed``), with the first problems of each kind. One rule for every
    journal; each keeps its own storage. ``start`` is the highest line id before this load: an id above it was
    added by this load, so meeting it again is a repeat."""

    def __init__(
        self,
        max_problems: int,
        rerun_changed: bool,
        retry_failed: Collection[str] | None = None,
        keep_changed: bool = False,
    ) -> None:
        if rerun_changed and keep_changed:
            raise ValueError("rerun_changed and keep_changed ask for opposite things: give one of them")
        self.start = 0  # set by the load when it has read it
        self.max_problems = max_problems
        self.rerun_changed = rerun_changed
        self.keep_changed = keep_changed
        self.retry_failed = None if retry_failed is None else frozenset(retry_failed)
        self.new = self.unchanged = self.rerun = self.changed_count = self.duplicate_count = 0
        self.renewed = self.kept = 0
        self.changed: list[InputProblem] = []
        self.duplicates: list[InputProblem] = []
        self.moved: list[tuple[int, str, int]] = []  # (number, source, id) of lines at another place now

    def known(
        self,
        line: Line,
        key: str,
        row: _KnownRow,
        seen_before: dict[int, tuple[str, int]],
        seen_now: list[tuple[int, str, int]],
    ) -> bool:
        """Sort a line whose custom_id the run holds (``row``: id, custom_id, number, source, key, whether it
        ended failed, its code, whether it ended), noting it in ``seen_before``/``seen_now``; whether it takes
        its new request (not ended yet; or ended and changed, with ``rerun_changed``, or a failure that
        ``retry_failed`` sends again anyway)."""
        line_id, _, first_number, first_source, old_key, failed, code, ended = row
        first = seen_before.get(line_id)
        if line_id > self.start or first is not None:
            self.duplicate_count += 1
            if len(self.duplicates) < self.max_problems:
                where = first or (first_source, first_number)
                self.duplicates.append(_duplicate(line, *where))
            return False
        seen_before[line_id] = (line.source, line.number)
        seen_now.append((line_id, line.source, line.number))
        if (line.number, line.source) != (first_number, first_source):
            # Another input into the same run (or the same lines in another order): the line takes its place in
            # this one, so that "input order" is this input's.
            self.moved.append((line.number, line.source, line_id))
        if old_key == key:
            self.unchanged += 1
            return False
        if not ended:
            # No answer yet (never sent, or cut off by a kill and taken back): the new request is the line's.
            self.renewed += 1
            return True
        self.changed_count += 1
        if len(self.changed) < self.max_problems:
            self.changed.append(_changed(line, first_source, first_number))
        retried = (
            failed and self.retry_failed is not None and (not self.retry_failed or code in self.retry_failed)
        )
        if self.rerun_changed or retried:
            # A failure --retry-failed sends again takes its new request (a max_tokens raised for the truncated
            # ones): its answer is set aside either way, so no old answer stays beside a new request.
            self.rerun += 1
            return True
        if self.keep_changed:
            self.kept += 1
        return False

    def report(self, absent: int) -> LoadReport:
        return LoadReport(
            self.new,
            self.unchanged,
            self.rerun,
            absent,
            self.changed_count,
            self.duplicate_count,
            tuple(self.changed),
            tuple(self.duplicates),
            self.renewed,
            self.kept,
        )


def _duplicate(line: Line, first_source: str, first_number: int) -> InputProblem:
    return InputProblem(
        line.source,
        line.number,
        f"custom_id {line.custom_id!r} is repeated: it was first at {place(first_source, first_number)}",
        "give every line its own custom_id (only the first was kept)",
        line.custom_id,
    )


def _changed(line: Line, old_source: str, old_number: int) -> InputProblem:
    return InputProblem(
        line.source,
        line.number,
        f"custom_id {line.custom_id!r} asks for another request than the one this run's journal holds "
        f"(loaded from {place(old_source, old_number)}): its url or body changed",
        "send the new request (--rerun-changed, rerun_changed=True from Python: the old answer is set aside), "
        "keep the answer it has (--keep-changed, keep_changed=True), or write to another output directory",
        line.custom_id,
    )
