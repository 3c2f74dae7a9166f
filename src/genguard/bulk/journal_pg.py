"""The batch journal in PostgreSQL: one run worked by any number of processes on any number of machines.

:class:`PostgresJournal` implements the same :class:`~genguard.bulk.journal.Journal` interface as the SQLite
journal, over tables scoped by run name, so that many runs share one database (and one schema):

- a line is claimed with a lease (``SELECT ... FOR UPDATE SKIP LOCKED``): workers never wait for each other's
  rows, and a line whose lease ran out (its worker died, or stopped renewing) is claimed again by the next
  worker that asks, counted as ``resent``;
- recording is idempotent: a line already ended, or whose request changed, is left as it is, so an answer that
  comes late from a worker whose lease ran out never ends a line twice;
- ``seq``, the commit order the output files follow, comes from a counter in the run's row, updated inside the
  recording transaction: the row lock hands the numbers out in commit order, where a bare sequence could
  commit 7 before 6 and make a reader tailing ``ended(after_seq)`` skip 6;
- lease times are the database's clock, one clock for every machine;
- the output mark is kept per output folder (``place``), since each machine writes the files into its own.

The schema has numbered migrations, as the SQLite journal has, recorded in ``genguard_schema``; opening
applies the missing ones under an advisory lock and refuses a schema written by a newer genguard.

>>> journal = PostgresJournal("postgresql://postgres@127.0.0.1/test", run="nightly")  # doctest: +SKIP
>>> journal.claim(32, worker="host:123:ab12", lease_s=60)  # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from ..core.secrets import MASK, mask_url, redact
from .journal import (
    BatchCounts,
    Claimed,
    JournalError,
    LoadReport,
    OutputMark,
    Result,
    Tried,
    _chunks,
    _dumps,
    _ended,
    _KnownRow,
    _LoadSort,
    _new_row,
    _response_text,
)
from .model import AttemptEvent, Ended, Line, line_key

if TYPE_CHECKING:
    from typing import Self

    import psycopg

__all__ = [
    "DEFAULT_SCHEMA",
    "PG_MIGRATIONS",
    "OtherInput",
    "PostgresJournal",
    "check_run_name",
    "is_postgres_url",
    "masked_url",
]

DEFAULT_SCHEMA = "genguard"
"""The schema the journal's tables live in unless the URL's ``schema`` parameter names another."""

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_CHUNK = 1000


class OtherInput(JournalError):
    """The run was started with another input than this one: joining it would mix two batches."""


def is_postgres_url(spec: str) -> bool:
    """Whether ``spec`` names a PostgreSQL database rather than a folder.

    >>> is_postgres_url("postgresql://db/test"), is_postgres_url("postgres://db/test"), is_postgres_url("runs/1")
    (True, True, False)
    """
    return spec.startswith(("postgresql://", "postgres://"))


def check_run_name(run: str) -> str:
    """``run`` when it is a usable run name (letters, digits, ``.``, ``_``, ``-``; 1 to 100), else ``ValueError``.

    >>> check_run_name("nightly-2026.12")
    'nightly-2026.12'
    """
    if not _RUN_NAME.match(run):
        raise ValueError(
            f"--run {run!r}: a run name is 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or "
            "digit (it also names the output folder when --out is not given)"
        )
    return run


def masked_url(url: str) -> str:
    """``url`` with its password masked (in the user part and in a ``password`` parameter), for messages.

    >>> masked_url("postgresql://app:s3cret@db:5432/test?schema=x&password=s3cret")
    'postgresql://app:***@db:5432/test?schema=x&password=%2A%2A%2A'
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            if ":" in user:
                user = user.split(":", 1)[0] + ":" + MASK
            netloc = f"{user}@{host}"
        query = urlencode(
            [
                (k, MASK if k.lower() == "password" else v)
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
            ]
        )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return mask_url(url)


def _password(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        for k, v in parse_qsl(parts.query):
            if k.lower() == "password":
                return v
        return parts.password
    except ValueError:
        return None


def _split_schema(url: str) -> tuple[str, str | None]:
    """The URL without genguard's own ``schema`` parameter (libpq would refuse it), and that parameter."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in pairs if k == "schema"), None)
    rest = [(k, v) for k, v in pairs if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


# -- migrations ------------------------------------------------------------------------------------------

PG_MIGRATIONS: list[str] = [
    # 1: the lines with their bodies and results (one row each: a claim reads one row, a record writes one),
    # the run's row (its input's fingerprint, the seq counter, who wrote the files at the end), attempts,
    # history, settings and the output marks of each folder the files are written into.
    """
    CREATE TABLE batch_runs (
        run TEXT PRIMARY KEY,
        fingerprint TEXT,
        last_seq BIGINT NOT NULL DEFAULT 0,
        finished_by TEXT,
        created_at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch FROM clock_timestamp())
    );
    CREATE TABLE batch_lines (
        run TEXT NOT NULL,
        id BIGINT NOT NULL,
        custom_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        source TEXT NOT NULL,
        url TEXT NOT NULL,
        key TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'in_flight', 'ended')),
        worker TEXT,
        lease_until DOUBLE PRECISION,
        claims INTEGER NOT NULL DEFAULT 0,
        resent INTEGER NOT NULL DEFAULT 0,
        seq BIGINT,
        ok BOOLEAN,
        code TEXT,
        status_code INTEGER,
        attempts INTEGER,
        prompt_tokens BIGINT,
        completion_tokens BIGINT,
        total_tokens BIGINT,
        cost_usd DOUBLE PRECISION,
        latency_s DOUBLE PRECISION,
        ended_at DOUBLE PRECISION,
        outcome TEXT,
        response TEXT,
        PRIMARY KEY (run, id),
        UNIQUE (run, custom_id)
    );
    CREATE INDEX batch_lines_state_number ON batch_lines (run, state, number);
    CREATE UNIQUE INDEX batch_lines_seq ON batch_lines (run, seq) WHERE seq IS NOT NULL;
    CREATE TABLE batch_events (
        run TEXT NOT NULL,
        id BIGSERIAL,
        custom_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        code TEXT,
        status INTEGER,
        wait_s DOUBLE PRECISION NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        latency_s DOUBLE PRECISION,
        PRIMARY KEY (run, id)
    );
    CREATE TABLE batch_history (
        run TEXT NOT NULL,
        id BIGSERIAL,
        line_id BIGINT NOT NULL,
        custom_id TEXT NOT NULL,
        key TEXT NOT NULL,
        reason TEXT NOT NULL,
        archived_at DOUBLE PRECISION NOT NULL,
        seq BIGINT,
        ok BOOLEAN,
        code TEXT,
        status_code INTEGER,
        attempts INTEGER,
        prompt_tokens BIGINT,
        completion_tokens BIGINT,
        total_tokens BIGINT,
        cost_usd DOUBLE PRECISION,
        latency_s DOUBLE PRECISION,
        worker TEXT,
        ended_at DOUBLE PRECISION,
        outcome TEXT,
        response TEXT,
        PRIMARY KEY (run, id)
    );
    CREATE TABLE batch_meta (run TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run, name));
    CREATE TABLE batch_output_marks (
        run TEXT NOT NULL,
        place TEXT NOT NULL,
        seq BIGINT NOT NULL DEFAULT 0,
        output_bytes BIGINT NOT NULL DEFAULT 0,
        errors_bytes BIGINT NOT NULL DEFAULT 0,
        rebuild BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (run, place)
    )
    """,
    # 2: the attempts a line made in runs that stopped before it ended: its attempt budget goes on from there
    # (their events and what they cost are kept as an ended line's are, in batch_events and batch_history).
    """
    ALTER TABLE batch_lines ADD COLUMN tried INTEGER NOT NULL DEFAULT 0
    """,
]
"""The schema's history: migration ``i`` (1-based) is ``PG_MIGRATIONS[i - 1]``; ``genguard_schema.version``
says how many a schema has had. Append only: a released migration is never edited."""


def _statements(script: str) -> Iterator[str]:
    for statement in script.split(";"):
        if statement.strip():
            yield statement


def migrate_pg(conn: psycopg.Connection[Any], schema: str, *, where: str = "journal") -> int:
    """Bring ``schema`` to the newest journal schema, one transaction per migration, under an advisory lock
    (several workers start at once); the version it ends at. Raises :class:`JournalError` for a schema written
    by a newer genguard."""
    from psycopg import sql

    lock_key = f"genguard-migrate:{schema}"
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key,))
        # Created only when missing: a role that owns its schema need not be allowed to create one.
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {}.genguard_schema (version INTEGER NOT NULL)").format(
                sql.Identifier(schema)
            )
        )
        row = conn.execute(
            sql.SQL("SELECT version FROM {}.genguard_schema").format(sql.Identifier(schema))
        ).fetchone()
        if row is None:
            conn.execute(sql.SQL("INSERT INTO {}.genguard_schema VALUES (0)").format(sql.Identifier(schema)))
            version = 0
        else:
            version = int(row[0])
        if version > len(PG_MIGRATIONS):
            raise JournalError(
                f"{where} was written by a newer genguard (journal version {version}; this genguard knows up to "
                f"{len(PG_MIGRATIONS)}): upgrade genguard on this machine to join this run"
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    for number in range(version + 1, len(PG_MIGRATIONS) + 1):
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key,))
            (current,) = conn.execute(
                sql.SQL("SELECT version FROM {}.genguard_schema").format(sql.Identifier(schema))
            ).fetchone() or (0,)
            if current < number:
                for statement in _statements(PG_MIGRATIONS[number - 1]):
                    conn.execute(statement.encode())  # search_path is the schema: names stay unqualified
                conn.execute(
                    sql.SQL("UPDATE {}.genguard_schema SET version = %s").format(sql.Identifier(schema)),
                    (number,),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(PG_MIGRATIONS)


# -- the journal -----------------------------------------------------------------------------------------

_ENDED_COLUMNS = """seq, custom_id, number, url, outcome, response, cost_usd, latency_s, worker, attempts,
    resent, ended_at, source, id"""
_NOW = "coalesce(%(now)s::float8, extract(epoch FROM clock_timestamp()))"


class PostgresJournal:
    """The journal of run ``run`` in the PostgreSQL database at ``url``, for any number of workers.

    ``url`` is a libpq URL (``postgresql://user:password@host:5432/db``); its optional ``schema`` parameter (or
    the ``schema`` argument) names the schema of the tables, ``genguard`` by default, created when missing.
    ``place`` names the folder this process writes output files into: each folder has its own output mark.
    ``clock`` replaces the database's clock for leases and ``ended_at`` (a fake one in tests).
    ``counts_every_s`` lets :meth:`counts` answer from a count at most that old (the runner asks on every
    progress tick; other workers' writes are only seen by counting again).

    One connection, used from one thread at a time. Every message that names the URL masks its password.
    """

    def __init__(self, url: str, *, run: str, schema: str | None = None, place: str = "",
                 clock: Callable[[], float] | None = None, counts_every_s: float = 0.0) -> None:  # fmt: skip
        import psycopg

        check_run_name(run)
        dsn, from_url = _split_schema(url)
        self.schema = schema or from_url or DEFAULT_SCHEMA
        if not _SCHEMA_NAME.match(self.schema):
            raise JournalError(
                f"schema {self.schema!r}: use letters, digits and '_' (a PostgreSQL identifier)"
            )
        self.url = masked_url(url)
        self.run = run
        self.place = place
        self._clock = clock
        self._counts_every_s = counts_every_s
        self._counted: tuple[float, BatchCounts] | None = None
        secret = _password(url)
        self._secrets = (secret,) if secret else ()
        try:
            # The run's name in pg_stat_activity: which connections work which run, for whoever looks.
            self._db = psycopg.connect(
                dsn, autocommit=True, connect_timeout=10, application_name=f"genguard:{run}"[:63]
            )
        except psycopg.Error as exc:
            raise JournalError(f"cannot connect to the journal at {self.url}: {self._say(exc)}") from None
        try:
            from psycopg import sql

            self._db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            migrate_pg(self._db, self.schema, where=f"schema {self.schema} of {self.url}")
            self._db.execute("INSERT INTO batch_runs (run) VALUES (%s) ON CONFLICT (run) DO NOTHING", (run,))
        except psycopg.Error as exc:
            self._db.close()
            raise JournalError(f"cannot use the journal at {self.url}: {self._say(exc)}") from None
        except BaseException:
            self._db.close()
            raise
        self._loading = False

    def _say(self, exc: BaseException) -> str:
        return redact(str(exc).strip(), self._secrets)

    def _now(self) -> float | None:
        return None if self._clock is None else self._clock()

    # -- transactions --

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        import psycopg

        if self._db.closed:
            return
        try:
            if self._db.info.transaction_status != 0:
                self._db.execute("ROLLBACK")
        except psycopg.Error:
            pass  # a connection already lost has nothing to roll back: the server did it
        finally:
            self._db.close()

    @contextmanager
    def _single(self) -> Iterator[psycopg.Connection[Any]]:
        """For one statement, which autocommit makes its own transaction."""
        if self._loading:
            raise JournalError("a load is waiting for commit() or rollback()")
        yield self._db
        self._counted = None

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        if self._loading:
            raise JournalError("a load is waiting for commit() or rollback()")
        self._db.execute("BEGIN")
        try:
            yield self._db
        except BaseException:
            if not self._db.closed:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._counted = None

    def commit(self) -> None:
        """Keep what :meth:`load` did."""
        if self._loading:
            self._db.execute("COMMIT")
            self._loading = False
            self._counted = None

    def rollback(self) -> None:
        """Undo what :meth:`load` did."""
        if self._loading:
            self._db.execute("ROLLBACK")
            self._loading = False

    # -- loading --

    def load(self, lines: Iterable[Line], *, rerun_changed: bool = False, max_problems: int = 1000,
             retry_failed: Collection[str] | None = None, keep_changed: bool = False,
             fingerprint: str | None = None) -> LoadReport:  # fmt: skip
        """Add the input's lines in one transaction left open for :meth:`commit` or :meth:`rollback`, as
        :meth:`SQLiteJournal.load <genguard.bulk.journal.SQLiteJournal.load>` does, under an advisory lock of
        the run: workers that start together load one at a time.

        ``fingerprint`` says what the input is (a hash of every line). The same fingerprint as the run's: the
        lines are there already, ``lines`` is not read, and the report counts them all as unchanged (a worker
        joining). Another fingerprint raises :class:`OtherInput` (nothing changes), unless ``rerun_changed`` or
        ``keep_changed`` says to take this input as the run's new one.
        """
        if self._loading:
            raise JournalError("a load is already waiting for commit() or rollback()")
        db = self._db
        db.execute("BEGIN")
        self._loading = True
        try:
            db.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"genguard-load:{self.schema}:{self.run}",),
            )
            (stored,) = db.execute(
                "SELECT fingerprint FROM batch_runs WHERE run = %s", (self.run,)
            ).fetchone() or (None,)
            if fingerprint is not None and stored is not None:
                if stored == fingerprint:
                    (n,) = db.execute(
                        "SELECT count(*) FROM batch_lines WHERE run = %s", (self.run,)
                    ).fetchone() or (0,)
                    return LoadReport(unchanged=int(n))
                if not (rerun_changed or keep_changed):
                    raise OtherInput(
                        f"run {self.run!r} in {self.url} was started with another input: give every worker the "
                        "same INPUT, or another --run name for this one (--rerun-changed makes this INPUT the "
                        "run's, sending its changed lines again; --keep-changed too, keeping the answers of the "
                        "lines that ended)"
                    )
            report = self._load(lines, _LoadSort(max_problems, rerun_changed, retry_failed, keep_changed))
            if fingerprint is not None:
                db.execute("UPDATE batch_runs SET fingerprint = %s WHERE run = %s", (fingerprint, self.run))
            if report.new or report.rerun or report.renewed:
                db.execute("UPDATE batch_runs SET finished_by = NULL WHERE run = %s", (self.run,))
            return report
        except BaseException:
            self.rollback()
            raise

    def _load(self, lines: Iterable[Line], sort: _LoadSort) -> LoadReport:
        db = self._db
        run = self.run
        (start,) = db.execute(
            "SELECT coalesce(max(id), 0) FROM batch_lines WHERE run = %s", (run,)
        ).fetchone() or (0,)
        start = int(start)
        next_id = start + 1
        resuming = start > 0
        if resuming:
            db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS genguard_load_seen (id BIGINT PRIMARY KEY, source TEXT, number INTEGER)"
            )
            db.execute("TRUNCATE genguard_load_seen")
        sort.start = start
        now = self._now()
        for chunk in _chunks(lines, _CHUNK):
            ids = list({line.custom_id: None for line in chunk})
            known: dict[str, _KnownRow] = {
                row[1]: (int(row[0]), row[1], row[2], row[3], row[4], bool(row[5]), row[6], bool(row[7]))
                for row in db.execute(
                    """SELECT id, custom_id, number, source, key, state = 'ended' AND NOT coalesce(ok, true), code,
                        state = 'ended'
                    FROM batch_lines WHERE run = %s AND custom_id = ANY(%s)""",
                    (run, ids),
                )
            }
            seen_before: dict[int, tuple[str, int]] = {}
            if resuming:
                old = [row[0] for row in known.values() if row[0] <= start]
                if old:
                    seen_before = {
                        int(row[0]): (row[1], row[2])
                        for row in db.execute(
                            "SELECT id, source, number FROM genguard_load_seen WHERE id = ANY(%s)", (old,)
                        )
                    }
            inserts: list[tuple[Any, ...]] = []
            seen_now: list[tuple[int, str, int]] = []
            reruns: list[tuple[int, Line, str, str]] = []
            for line in chunk:
                key = line.key or line_key(line.url, line.body)
                row = known.get(line.custom_id)
                if row is None:
                    known[line.custom_id] = _new_row(next_id, line, key)
                    inserts.append(
                        (
                            run,
                            next_id,
                            line.custom_id,
                            line.number,
                            line.source,
                            line.url,
                            key,
                            _dumps(line.body),
                        )
                    )
                    next_id += 1
                    sort.new += 1
                    continue
                if sort.known(line, key, row, seen_before, seen_now):
                    reruns.append((row[0], line, key, _dumps(line.body)))
            if inserts:
                with db.cursor().copy(
                    "COPY batch_lines (run, id, custom_id, number, source, url, key, body) FROM STDIN"
                ) as copy:
                    for item in inserts:
                        copy.write_row(item)
            if seen_now:
                with db.cursor().copy("COPY genguard_load_seen (id, source, number) FROM STDIN") as copy:
                    for item in seen_now:
                        copy.write_row(item)
            if sort.moved:
                db.cursor().executemany(
                    "UPDATE batch_lines SET number = %s, source = %s WHERE run = %s AND id = %s",
                    [(number, source, run, i) for number, source, i in sort.moved],
                )
                sort.moved.clear()
            if reruns:
                self._archive([r[0] for r in reruns], "changed", now)
                db.cursor().executemany(
                    "UPDATE batch_lines SET url = %s, key = %s, number = %s, source = %s, body = %s WHERE run = %s AND id = %s",
                    [(line.url, key, line.number, line.source, b, run, i) for i, line, key, b in reruns],
                )
        absent = 0
        if resuming:
            (absent,) = db.execute(
                """SELECT count(*) FROM batch_lines l WHERE l.run = %s AND l.id <= %s
                AND NOT EXISTS (SELECT 1 FROM genguard_load_seen s WHERE s.id = l.id)""",
                (run, start),
            ).fetchone() or (0,)
        return sort.report(int(absent))

    def _archive(self, line_ids: Sequence[int], reason: str, now: float | None) -> int:
        """Move the answers of these lines to history and put the lines back to pending (inside a transaction)."""
        db = self._db
        archived = 0
        for ids in _chunks(line_ids, _CHUNK):
            args = {"run": self.run, "ids": ids, "reason": reason, "now": now}
            cur = db.execute(
                f"""INSERT INTO batch_history (run, line_id, custom_id, key, reason, archived_at, seq, ok, code,
                    status_code, attempts, prompt_tokens, completion_tokens, total_tokens, cost_usd, latency_s,
                    worker, ended_at, outcome, response)
                SELECT run, id, custom_id, key, %(reason)s, {_NOW}, seq, ok, code, status_code, attempts,
                    prompt_tokens, completion_tokens, total_tokens, cost_usd, latency_s, worker, ended_at, outcome,
                    response
                FROM batch_lines WHERE run = %(run)s AND id = ANY(%(ids)s) AND state = 'ended'""",
                args,
            )
            archived += cur.rowcount
            db.execute(
                """UPDATE batch_lines SET state = 'pending', worker = NULL, lease_until = NULL, seq = NULL,
                    ok = NULL, code = NULL, status_code = NULL, attempts = NULL, prompt_tokens = NULL,
                    completion_tokens = NULL, total_tokens = NULL, cost_usd = NULL, latency_s = NULL,
                    ended_at = NULL, outcome = NULL, response = NULL
                WHERE run = %(run)s AND id = ANY(%(ids)s)""",
                args,
            )
        if archived:
            # Lines already in the output files have left 'ended': every folder's files must be written again.
            db.execute("UPDATE batch_output_marks SET rebuild = TRUE WHERE run = %s", (self.run,))
            db.execute("UPDATE batch_runs SET finished_by = NULL WHERE run = %s", (self.run,))
        return archived

    # -- running --

    def claim(
        self, n: int, *, worker: str, lease_s: float, skip_models: Collection[str] = ()
    ) -> list[Claimed]:
        """Up to ``n`` lines to send, in input order: pending ones, and in-flight ones whose lease expired
        (counted as resent). Rows another worker is claiming at this instant are skipped, not waited for.
        Lines whose body asks a model of ``skip_models`` are left where they are."""
        if n <= 0:
            return []
        skip = " AND coalesce(body::jsonb ->> 'model', '') <> ALL(%(skip)s)" if skip_models else ""
        # One statement, its own transaction: one round trip.
        with self._single() as db:
            rows = db.execute(
                f"""WITH pending AS (
                    SELECT id, number, state FROM batch_lines WHERE run = %(run)s AND state = 'pending'{skip}
                    ORDER BY number LIMIT %(n)s FOR UPDATE SKIP LOCKED
                ), expired AS (
                    SELECT id, number, state FROM batch_lines
                    WHERE run = %(run)s AND state = 'in_flight' AND lease_until <= {_NOW}{skip}
                    ORDER BY number LIMIT %(n)s FOR UPDATE SKIP LOCKED
                ), picked AS (
                    SELECT id, state FROM (SELECT * FROM pending UNION ALL SELECT * FROM expired) u
                    ORDER BY number LIMIT %(n)s
                )
                UPDATE batch_lines l SET state = 'in_flight', worker = %(worker)s,
                    lease_until = {_NOW} + %(lease)s, claims = l.claims + 1,
                    resent = l.resent + CASE WHEN p.state = 'in_flight' THEN 1 ELSE 0 END
                FROM picked p WHERE l.run = %(run)s AND l.id = p.id
                RETURNING l.id, l.custom_id, l.url, l.number, l.key, l.claims, l.resent, l.body, l.tried""",
                {
                    "run": self.run,
                    "n": n,
                    "now": self._now(),
                    "worker": worker,
                    "lease": float(lease_s),
                    "skip": list(skip_models),
                },
            ).fetchall()
        rows.sort(key=lambda r: (r[3], r[0]))
        return [
            Claimed(cid, url, orjson.loads(body), number, key, worker, claims, resent, tried)
            for _, cid, url, number, key, claims, resent, body, tried in rows
        ]

    def renew(self, custom_ids: Iterable[str], *, worker: str, lease_s: float) -> int:
        """Extend ``worker``'s leases of these lines to ``lease_s`` from now; how many it still held (a line
        whose lease ran out and another worker took is not taken back)."""
        ids = list(custom_ids)
        if not ids:
            return 0
        with self._single() as db:
            count = db.execute(
                f"""UPDATE batch_lines SET lease_until = {_NOW} + %(lease)s
                WHERE run = %(run)s AND state = 'in_flight' AND worker = %(worker)s AND custom_id = ANY(%(ids)s)""",
                {"run": self.run, "now": self._now(), "lease": float(lease_s), "worker": worker, "ids": ids},
            ).rowcount
        return count

    def record(self, results: Sequence[Result]) -> list[str]:
        """End these lines in one transaction, in order, each with the next ``seq``; the custom_ids that were
        new. A line already ended, or whose key is not the result's, is left as it is. An unknown custom_id
        raises :class:`JournalError` and nothing is recorded."""
        if not results:
            return []
        if self._loading:
            raise JournalError("a load is waiting for commit() or rollback()")
        db = self._db
        # Two round trips whatever the number of lines: the lock-and-read, then every write and the commit in
        # one pipeline. The seq counter is taken in the second, after the lines' locks, and held to the commit:
        # numbers are handed out in commit order.
        try:
            with db.pipeline():
                db.execute("BEGIN")
                # Locked in id order, so two workers recording overlapping lines never deadlock.
                found = db.execute(
                    """SELECT id, custom_id, state, key FROM batch_lines WHERE run = %s AND custom_id = ANY(%s)
                    ORDER BY id FOR UPDATE""",
                    (self.run, list({r.custom_id: None for r in results})),
                ).fetchall()
                state = {cid: (int(line_id), st, key) for line_id, cid, st, key in found}
                unknown = [r.custom_id for r in results if r.custom_id not in state]
                if unknown:
                    raise JournalError(
                        f"no line with custom_id {unknown[0]!r} in the journal ({len(unknown)} unknown)"
                    )
                ending: list[tuple[int, Result]] = []
                for r in results:
                    line_id, st, key = state[r.custom_id]
                    if st == "ended" or key != r.key:
                        continue
                    state[r.custom_id] = (line_id, "ended", key)
                    ending.append((line_id, r))
                if ending:
                    self._end(db, ending)
                db.execute("COMMIT")
        except BaseException:
            if not db.closed and db.info.transaction_status != 0:
                db.execute("ROLLBACK")
            raise
        self._counted = None
        return [r.custom_id for _, r in ending]

    def _end(self, db: psycopg.Connection[Any], ending: Sequence[tuple[int, Result]]) -> None:
        n = len(ending)
        db.execute("UPDATE batch_runs SET last_seq = last_seq + %s WHERE run = %s", (n, self.run))
        now = self._now()
        updates: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        for i, (line_id, r) in enumerate(ending, 1):
            o = r.outcome
            u = o.usage
            response = r.response
            status = response.get("status_code") if isinstance(response, Mapping) else o.status
            updates.append(
                (
                    self.run, n - i, o.ok, o.code, status, o.attempts,
                    None if u is None else u.prompt_tokens,
                    None if u is None else u.completion_tokens,
                    None if u is None else u.total_tokens,
                    r.cost_usd, r.latency_s, now, r.worker,
                    _dumps(o.to_dict(full=True)), _response_text(response),
                    self.run, line_id,
                )
            )  # fmt: skip
            events.extend(
                (self.run, e.custom_id, e.number, e.code, e.status, e.wait_s, e.at, e.latency_s)
                for e in r.events
            )
        db.cursor().executemany(
            """UPDATE batch_lines SET state = 'ended',
                seq = (SELECT last_seq FROM batch_runs WHERE run = %s) - %s, ok = %s, code = %s,
                status_code = %s, attempts = %s, prompt_tokens = %s, completion_tokens = %s, total_tokens = %s,
                cost_usd = %s, latency_s = %s,
                ended_at = coalesce(%s::float8, extract(epoch FROM clock_timestamp())),
                worker = coalesce(%s, worker), lease_until = NULL, outcome = %s, response = %s, tried = 0
            WHERE run = %s AND id = %s""",
            updates,
        )
        if events:
            db.cursor().executemany(
                """INSERT INTO batch_events (run, custom_id, number, code, status, wait_s, at, latency_s)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                events,
            )

    def release(self, custom_ids: Iterable[str], *, tried: Sequence[Tried] = ()) -> int:
        """Put these in-flight lines back to pending, not counted as resent; how many were. ``tried`` keeps what
        lines a stop cut off had done, as :meth:`SQLiteJournal.release` does, in the same transaction."""
        ids = list(custom_ids)
        if not ids and not tried:
            return 0
        with self._write() as db:
            if tried:
                self._keep_tried(db, tried)
            count = db.execute(
                """UPDATE batch_lines SET state = 'pending', worker = NULL, lease_until = NULL
                WHERE run = %s AND state = 'in_flight' AND custom_id = ANY(%s)""",
                (self.run, ids),
            ).rowcount
        return count

    def _keep_tried(self, db: psycopg.Connection[Any], tried: Sequence[Tried]) -> None:
        found = db.execute(
            """SELECT id, custom_id, state, key FROM batch_lines WHERE run = %s AND custom_id = ANY(%s)
            ORDER BY id FOR UPDATE""",
            (self.run, list({t.custom_id: None for t in tried})),
        ).fetchall()
        state = {cid: (int(line_id), st, key) for line_id, cid, st, key in found}
        now = self._now()
        counts: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        for t in tried:
            line_id, st, key = state.get(t.custom_id, (0, "", ""))
            if st not in ("pending", "in_flight") or key != t.key:
                continue
            counts.append((t.attempts, self.run, line_id))
            events.extend(
                (self.run, e.custom_id, e.number, e.code, e.status, e.wait_s, e.at, e.latency_s)
                for e in t.events
            )
            if t.usage is not None or t.cost_usd is not None:
                last = t.events[-1] if t.events else None
                u = t.usage
                history.append(
                    (
                        self.run, line_id, t.custom_id, t.key, "stopped", now,
                        None if last is None else last.code, None if last is None else last.status, t.attempts,
                        None if u is None else u.prompt_tokens, None if u is None else u.completion_tokens,
                        None if u is None else u.total_tokens, t.cost_usd, t.worker,
                    )
                )  # fmt: skip
        if counts:
            db.cursor().executemany(
                "UPDATE batch_lines SET tried = tried + %s WHERE run = %s AND id = %s", counts
            )
        if history:
            db.cursor().executemany(
                """INSERT INTO batch_history (run, line_id, custom_id, key, reason, archived_at, code, status_code,
                    attempts, prompt_tokens, completion_tokens, total_tokens, cost_usd, worker)
                VALUES (%s, %s, %s, %s, %s, coalesce(%s::float8, extract(epoch FROM clock_timestamp())), %s, %s,
                    %s, %s, %s, %s, %s, %s)""",
                history,
            )
        if events:
            db.cursor().executemany(
                """INSERT INTO batch_events (run, custom_id, number, code, status, wait_s, at, latency_s)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                events,
            )

    def recover(self, *, worker: str | None = None, sent: Collection[str] | None = None) -> int:
        """Lines left in flight (all of them, or ``worker``'s) go back to pending; how many are counted as resent:
        those named in ``sent`` (a sent log), or all of them when it is ``None``. With workers running, name the
        worker: the others' lines are theirs until their leases expire."""
        where = "" if worker is None else " AND worker = %s"
        args: tuple[str, ...] = (self.run,) if worker is None else (self.run, worker)
        with self._single() as db:
            rows = db.execute(
                f"""UPDATE batch_lines SET state = 'pending', worker = NULL, lease_until = NULL,
                resent = resent + (CASE WHEN %s::text[] IS NULL OR custom_id = ANY(%s::text[]) THEN 1 ELSE 0 END)
                WHERE run = %s AND state = 'in_flight'{where} RETURNING custom_id""",
                (None if sent is None else list(sent), None if sent is None else list(sent), *args),
            ).fetchall()
        return sum(1 for (cid,) in rows if sent is None or cid in sent)

    def reset_failed(self, codes: Collection[str] | None = None) -> int:
        """Failed lines (all, or those ending with one of ``codes``) back to pending, their answers kept in
        history; how many."""
        with self._write() as db:
            if codes is None:
                rows = db.execute(
                    "SELECT id FROM batch_lines WHERE run = %s AND state = 'ended' AND NOT ok", (self.run,)
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT id FROM batch_lines WHERE run = %s AND state = 'ended' AND NOT ok AND code = ANY(%s)",
                    (self.run, list(codes)),
                ).fetchall()
            self._archive([int(r[0]) for r in rows], "retry_failed", self._now())
        return len(rows)

    def finish(self, worker: str) -> bool:
        """Whether ``worker`` is the one to write the run's files: true once, for the first worker that asks
        after every line ended (until lines leave ``ended`` again). Two workers ending together get one yes."""
        with self._single() as db:
            won = db.execute(
                """UPDATE batch_runs SET finished_by = %s WHERE run = %s AND finished_by IS NULL
                AND NOT EXISTS (SELECT 1 FROM batch_lines WHERE run = %s AND state IN ('pending', 'in_flight'))
                RETURNING run""",
                (worker, self.run, self.run),
            ).fetchone()
        return won is not None

    def finished_by(self) -> str | None:
        """The worker that wrote the files of the finished run, if one did."""
        row = self._db.execute("SELECT finished_by FROM batch_runs WHERE run = %s", (self.run,)).fetchone()
        return None if row is None else row[0]

    # -- reading --

    def counts(self) -> BatchCounts:
        """Where the run's lines are, what was spent (every worker's writes: a count of the run's rows, reused
        for ``counts_every_s``)."""
        now = time.monotonic()
        if self._counted is not None and now - self._counted[0] < self._counts_every_s:
            return self._counted[1]
        states = {"pending": 0, "in_flight": 0, "ok": 0, "failed": 0}
        by_code: dict[str, int] = {}
        resent = 0
        spent = [0.0, 0, 0, 0]
        tried = 0
        db = self._db
        for st, ok, code, n, res, cost, pt, ct, tt, tr in db.execute(
            """SELECT state, ok, code, count(*), coalesce(sum(resent), 0), coalesce(sum(cost_usd), 0),
                coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), coalesce(sum(total_tokens), 0),
                count(*) FILTER (WHERE tried > 0)
            FROM batch_lines WHERE run = %s GROUP BY state, ok, code""",
            (self.run,),
        ):
            resent += int(res)
            if st == "pending":
                tried += int(tr)
            if st == "ended":
                name = "ok" if ok else "failed"
                states[name] += int(n)
                if not ok:
                    c = code or "unknown"
                    by_code[c] = by_code.get(c, 0) + int(n)
            else:
                states[st] += int(n)
            spent = [spent[0] + float(cost), spent[1] + int(pt), spent[2] + int(ct), spent[3] + int(tt)]
        cost, pt, ct, tt = db.execute(
            """SELECT coalesce(sum(cost_usd), 0), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),
                coalesce(sum(total_tokens), 0) FROM batch_history WHERE run = %s""",
            (self.run,),
        ).fetchone() or (0, 0, 0, 0)
        counts = BatchCounts(
            states["pending"],
            states["in_flight"],
            states["ok"],
            states["failed"],
            MappingProxyType(by_code),
            resent,
            float(spent[0]) + float(cost),
            int(spent[1]) + int(pt),
            int(spent[2]) + int(ct),
            int(spent[3]) + int(tt),
            tried,
        )
        self._counted = (now, counts)
        return counts

    def open_lines(self) -> int:
        """How many lines are pending or in flight: a count of the index entries of those two states alone,
        cheap however many lines have ended (what an idle worker asks every second)."""
        row = self._db.execute(
            "SELECT count(*) FROM batch_lines WHERE run = %s AND state IN ('pending', 'in_flight')",
            (self.run,),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def fresh_counts(self) -> BatchCounts:
        """:meth:`counts` counted now, whatever ``counts_every_s`` allows."""
        self._counted = None
        return self.counts()

    def ended(self, after_seq: int = 0, *, by_input: bool = False) -> Iterator[Ended]:
        """The ended lines with ``seq`` above ``after_seq``, in commit order (or, with ``by_input``, every ended
        line in input order), a page at a time."""
        db = self._db
        if by_input:
            number, line_id = -1, -1
            while True:
                rows = db.execute(
                    f"""SELECT {_ENDED_COLUMNS} FROM batch_lines WHERE run = %s AND state = 'ended'
                    AND (number, id) > (%s, %s) ORDER BY number, id LIMIT %s""",
                    (self.run, number, line_id, _CHUNK),
                ).fetchall()
                if not rows:
                    return
                yield from map(_ended, rows)
                number, line_id = rows[-1][2], rows[-1][13]
        while True:
            rows = db.execute(
                f"""SELECT {_ENDED_COLUMNS} FROM batch_lines WHERE run = %s AND seq > %s ORDER BY seq LIMIT %s""",
                (self.run, after_seq, _CHUNK),
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
                """SELECT id, custom_id, number, code, status, wait_s, at, latency_s FROM batch_events
                WHERE run = %s AND id > %s ORDER BY id LIMIT %s""",
                (self.run, last, _CHUNK),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield AttemptEvent(*row[1:])
            last = rows[-1][0]

    def in_flight(self, worker: str | None = None) -> dict[str, str]:
        """The lines in flight now, custom_id -> worker (only ``worker``'s when named)."""
        where = "" if worker is None else " AND worker = %s"
        return dict(
            self._db.execute(
                f"SELECT custom_id, worker FROM batch_lines WHERE run = %s AND state = 'in_flight'{where}",
                (self.run,) if worker is None else (self.run, worker),
            )
        )

    # -- settings and the output mark --

    def get_meta(self, name: str, default: Any = None) -> Any:
        row = self._db.execute(
            "SELECT value FROM batch_meta WHERE run = %s AND name = %s", (self.run, name)
        ).fetchone()
        return default if row is None else orjson.loads(row[0])

    def set_meta(self, values: Mapping[str, Any]) -> None:
        with self._write() as db:
            db.cursor().executemany(
                """INSERT INTO batch_meta (run, name, value) VALUES (%s, %s, %s)
                ON CONFLICT (run, name) DO UPDATE SET value = excluded.value""",
                [(self.run, k, _dumps(v)) for k, v in values.items()],
            )

    def all_meta(self) -> dict[str, Any]:
        """Every value :meth:`set_meta` stored, by name."""
        return {
            name: orjson.loads(value)
            for name, value in self._db.execute(
                "SELECT name, value FROM batch_meta WHERE run = %s ORDER BY name", (self.run,)
            )
        }

    def output_mark(self) -> OutputMark:
        row = self._db.execute(
            "SELECT seq, output_bytes, errors_bytes, rebuild FROM batch_output_marks WHERE run = %s AND place = %s",
            (self.run, self.place),
        ).fetchone()
        if row is None:
            return OutputMark()
        return OutputMark(int(row[0]), int(row[1]), int(row[2]), bool(row[3]))

    def set_output_mark(self, mark: OutputMark) -> None:
        with self._single() as db:
            db.execute(
                """INSERT INTO batch_output_marks (run, place, seq, output_bytes, errors_bytes, rebuild)
                VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (run, place) DO UPDATE SET seq = excluded.seq,
                output_bytes = excluded.output_bytes, errors_bytes = excluded.errors_bytes,
                rebuild = excluded.rebuild""",
                (self.run, self.place, mark.seq, mark.output_bytes, mark.errors_bytes, mark.rebuild),
            )

    def drop_run(self) -> None:
        """Delete every row of this run (its lines, answers, history, settings and marks)."""
        with self._write() as db:
            for table in ("batch_lines", "batch_events", "batch_history", "batch_meta", "batch_output_marks"):
                db.execute(f"DELETE FROM {table} WHERE run = %s", (self.run,))
            db.execute("DELETE FROM batch_runs WHERE run = %s", (self.run,))
