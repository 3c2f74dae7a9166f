"""The batch journal and its output files: migrations, loading and resuming, leases, idempotent recording, and
output lines written exactly once when the process is killed at any step (real SQLite files, real SIGKILLs).

The tests that take the ``journal`` fixture are the contract of the ``Journal`` interface: each runs against the
SQLite journal and against the PostgreSQL one (a real server, a schema of the test's own)."""

from __future__ import annotations

import dataclasses
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from _pg import PG_URL, pg_schema
from genguard.bulk import journal as journal_module
from genguard.bulk import sentlog
from genguard.bulk.journal import (
    MIGRATIONS,
    Claimed,
    Journal,
    JournalError,
    OutputMark,
    Result,
    SQLiteJournal,
    Tried,
)
from genguard.bulk.journal_pg import PostgresJournal
from genguard.bulk.model import AttemptEvent, Line, line_key
from genguard.bulk.outputs import ERRORS_FILE, OUTPUT_FILE, OutputWriter, output_record, request_id_for
from genguard.bulk.sentlog import SENT_FILE, SentLog, read_sent
from genguard.core.outcome import Outcome, Usage

CHAT = "/v1/chat/completions"


class Clock:
    """Wall-clock time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def body(i: int, text: str = "hello") -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": f"{text} {i}"}]}


def lines(n: int, *, start: int = 1, source: str = "in.jsonl", text: str = "hello") -> Iterator[Line]:
    for i in range(start, start + n):
        yield Line(f"id-{i}", CHAT, body(i, text), i, source)


def ok(text: str = "fine", tokens: int = 10) -> Outcome:
    return Outcome.success(
        text=text, finish_reason="stop", usage=Usage(tokens, 2, tokens + 2), request_id="req_1"
    )


def response(status: int = 200) -> dict[str, Any]:
    return {"status_code": status, "request_id": "req_1", "body": {"choices": [], "status": status}}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[SQLiteJournal]:
    if request.param == "sqlite":
        with SQLiteJournal(tmp_path / "journal.sqlite", clock=clock) as j:
            yield j
        return
    with pg_schema() as url, PostgresJournal(url, run="contract", clock=clock) as pj:
        yield pj  # type: ignore[misc]


def reopen(j: SQLiteJournal) -> SQLiteJournal:
    """Another connection to the same journal, as another process would open it."""
    if isinstance(j, PostgresJournal):
        return PostgresJournal(f"{PG_URL}?schema={j.schema}", run=j.run)  # type: ignore[return-value]
    return SQLiteJournal(j.path)


def rows(j: SQLiteJournal, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """``sql`` written for the SQLite tables, run on either journal (PostgreSQL's tables hold every run)."""
    if isinstance(j, PostgresJournal):
        pg = (
            sql.replace("?", "%s")
            .replace("FROM lines", "FROM batch_lines")
            .replace("FROM history", "FROM batch_history")
        )
        if " WHERE " in pg:
            pg = pg.replace(" WHERE ", " WHERE run = %s AND ")
        elif " ORDER BY" in pg:
            pg = pg.replace(" ORDER BY", " WHERE run = %s ORDER BY")
        else:
            pg += " WHERE run = %s"
        got = j._db.execute(pg, (j.run, *params)).fetchall()
        return [tuple(int(v) if isinstance(v, bool) else v for v in row) for row in got]
    return j._db.execute(sql, params).fetchall()


def loaded(j: SQLiteJournal, n: int) -> SQLiteJournal:
    report = j.load(lines(n))
    assert report.ok
    j.commit()
    return j


def finish(j: SQLiteJournal, claimed: list[Claimed], outcome: Outcome | None = None, **kw: Any) -> list[str]:
    return j.record([c.result(outcome or ok(), response=response(), **kw) for c in claimed])


def states(j: SQLiteJournal) -> dict[str, str]:
    return dict(rows(j, "SELECT custom_id, state FROM lines"))  # type: ignore[arg-type]


# -- migrations ------------------------------------------------------------------------------------------


def test_a_fresh_file_gets_every_migration_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with SQLiteJournal(path) as j:
        assert isinstance(j, Journal)
        assert j._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert j._db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    assert db.execute("PRAGMA application_id").fetchone() == (journal_module.APPLICATION_ID,)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"lines", "bodies", "results", "meta", "output_mark", "attempt_events", "history"} <= tables
    db.close()


def test_a_file_of_an_older_version_is_migrated_and_keeps_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    # A journal as the first version wrote it, with a line already loaded.
    db = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO lines (id, custom_id, number, source, url, key) VALUES (1, 'old', 1, 'in', ?, ?)",
               (CHAT, line_key(CHAT, body(1))))  # fmt: skip
    db.execute("INSERT INTO bodies VALUES (1, ?)", (orjson.dumps(body(1)).decode(),))
    db.close()
    with SQLiteJournal(path) as j:
        assert j._db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        [claimed] = j.claim(5, worker="w", lease_s=60)
        assert (claimed.custom_id, claimed.body) == ("old", body(1))
        event = AttemptEvent("old", 1, None, 200, 0.0, 5.0)
        assert j.record([claimed.result(ok(), events=[event])]) == ["old"]
        assert list(j.events()) == [event]  # a table the second migration added


def test_a_newer_genguard_adds_its_migration_to_an_existing_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.sqlite"
    with SQLiteJournal(path) as j:
        loaded(j, 3)

    def m999_extra_column(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE lines ADD COLUMN note TEXT DEFAULT 'added'")

    monkeypatch.setattr(journal_module, "MIGRATIONS", [*MIGRATIONS, m999_extra_column])
    with SQLiteJournal(path) as j:
        assert j._db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) + 1,)
        assert j._db.execute("SELECT count(*), min(note) FROM lines").fetchone() == (3, "added")
        assert j.counts().pending == 3


def test_a_failing_migration_leaves_the_file_at_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.sqlite"
    SQLiteJournal(path).close()

    def m999_broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half (x)")
        raise RuntimeError("broken migration")

    monkeypatch.setattr(journal_module, "MIGRATIONS", [*MIGRATIONS, m999_broken])
    with pytest.raises(RuntimeError, match="broken migration"):
        SQLiteJournal(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone() == (0,)
    db.close()


def test_a_journal_from_a_newer_genguard_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    SQLiteJournal(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(
        JournalError, match=r"newer genguard \(journal version \d+; this genguard knows up to"
    ):
        SQLiteJournal(path)


def test_an_sqlite_file_of_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA application_id = 42")
    db.close()
    with pytest.raises(JournalError, match="another application"):
        SQLiteJournal(path)


# -- loading and resuming --------------------------------------------------------------------------------


def test_load_adds_lines_as_pending_and_a_resume_leaves_them_as_they_are(journal: SQLiteJournal) -> None:
    report = journal.load(lines(5))
    assert (report.new, report.unchanged, report.ok) == (5, 0, True)
    journal.commit()
    finish(journal, journal.claim(2, worker="w", lease_s=60))
    again = journal.load(lines(5))
    assert (again.new, again.unchanged, again.changed_count, again.absent) == (0, 5, 0, 0)
    journal.commit()
    counts = journal.counts()
    assert (counts.pending, counts.ok) == (3, 2)


def test_a_resume_with_more_lines_adds_only_the_new_ones_and_counts_the_absent(
    journal: SQLiteJournal,
) -> None:
    loaded(journal, 4)
    report = journal.load(lines(4, start=3))  # lines 3..6: 1 and 2 absent, 5 and 6 new
    assert (report.new, report.unchanged, report.absent) == (2, 2, 2)
    journal.commit()
    assert journal.counts().pending == 6


def test_a_line_another_input_holds_elsewhere_takes_its_place_there(journal: SQLiteJournal) -> None:
    loaded(journal, 4)
    other = [
        Line("id-4", CHAT, body(4), 1, "b.jsonl"),
        Line("id-3", CHAT, body(3), 2, "b.jsonl"),
        *lines(1, start=5),
    ]
    report = journal.load(other)
    assert (report.new, report.unchanged, report.absent) == (1, 2, 2)
    journal.commit()
    assert sorted(rows(journal, "SELECT custom_id, number, source FROM lines WHERE number < 3")) == [
        ("id-1", 1, "in.jsonl"),
        ("id-2", 2, "in.jsonl"),
        ("id-3", 2, "b.jsonl"),
        ("id-4", 1, "b.jsonl"),
    ]
    finish(journal, journal.claim(5, worker="w", lease_s=60))
    order = [e.custom_id for e in journal.ended(by_input=True)]
    assert [cid for cid in order if cid not in ("id-1", "id-2")] == ["id-4", "id-3", "id-5"]


def test_rollback_undoes_the_load_and_other_writes_wait_for_it(journal: SQLiteJournal) -> None:
    loaded(journal, 2)
    journal.load(lines(3, start=10))
    with pytest.raises(JournalError, match="waiting for commit"):
        journal.claim(1, worker="w", lease_s=60)
    journal.rollback()
    assert set(states(journal)) == {"id-1", "id-2"}


def test_a_changed_line_is_reported_with_where_it_is_and_kept_as_it_was(journal: SQLiteJournal) -> None:
    loaded(journal, 3)
    [c1] = journal.claim(1, worker="w", lease_s=60)
    finish(journal, [c1])
    changed = [Line("id-1", CHAT, body(1, "other"), 7, "new.jsonl"), *lines(2, start=2)]
    report = journal.load(changed)
    assert (report.changed_count, report.rerun, report.unchanged, report.ok) == (1, 0, 2, False)
    [problem] = report.problems
    assert problem.custom_id == "id-1"
    assert str(problem).startswith("new.jsonl:7: custom_id 'id-1' asks for another request")
    assert "in.jsonl:1" in str(problem)
    assert "--rerun-changed" in str(problem)
    journal.rollback()
    [ended] = journal.ended()
    assert ended.custom_id == "id-1"
    assert ended.outcome["text"] == "fine"


def test_a_line_not_ended_takes_its_changed_request_without_asking(journal: SQLiteJournal) -> None:
    # No answer to mix with the new request: a line never sent, and one cut off on the wire and taken back.
    loaded(journal, 3)
    [c1, c2] = journal.claim(2, worker="w", lease_s=60)
    finish(journal, [c1])
    journal.recover()  # id-2 was in flight at a kill
    report = journal.load(
        [*lines(1), *(Line(f"id-{i}", CHAT, body(i, "other"), i, "in.jsonl") for i in (2, 3))]
    )
    assert (report.renewed, report.changed_count, report.unchanged, report.ok) == (2, 0, 1, True)
    assert report.problems == ()
    journal.commit()
    assert {c.custom_id: c.body for c in journal.claim(5, worker="w", lease_s=60)} == {
        "id-2": body(2, "other"),
        "id-3": body(3, "other"),
    }
    assert finish(journal, [c2]) == []  # the old request's answer, late: it is not the line's
    assert rows(journal, "SELECT count(*) FROM history") == [(0,)]


def test_keep_changed_keeps_the_answers_of_lines_that_ended(journal: SQLiteJournal, tmp_path: Path) -> None:
    # New settings for the lines not run yet only: the lines that ended keep their answers and the requests
    # those answer; the others take the new requests.
    loaded(journal, 3)
    finish(journal, journal.claim(1, worker="w", lease_s=60))
    with OutputWriter(tmp_path, journal) as writer:
        writer.flush()
    edited = [Line(f"id-{i}", CHAT, body(i, "other"), i, "in.jsonl") for i in (1, 2, 3)]
    report = journal.load(edited)
    assert (report.changed_count, report.kept, report.renewed, report.ok) == (1, 0, 2, False)
    journal.rollback()
    report = journal.load(edited, keep_changed=True)
    assert (report.changed_count, report.kept, report.rerun, report.renewed, report.ok) == (1, 1, 0, 2, True)
    journal.commit()
    assert states(journal) == {"id-1": "ended", "id-2": "pending", "id-3": "pending"}
    assert not journal.output_mark().rebuild  # id-1's line in output.jsonl stays
    [ended] = journal.ended()
    assert (ended.custom_id, ended.outcome["text"]) == ("id-1", "fine")
    assert rows(journal, "SELECT key FROM lines WHERE custom_id = 'id-1'") == [(line_key(CHAT, body(1)),)]
    assert {c.custom_id: c.body["messages"] for c in journal.claim(5, worker="w", lease_s=60)} == {
        f"id-{i}": body(i, "other")["messages"] for i in (2, 3)
    }
    with pytest.raises(ValueError, match="give one of them"):
        journal.load(edited, keep_changed=True, rerun_changed=True)


def test_rerun_changed_sends_the_new_request_and_archives_the_old_answer(
    journal: SQLiteJournal, tmp_path: Path
) -> None:
    loaded(journal, 2)
    finish(journal, journal.claim(2, worker="w", lease_s=60), cost_usd=0.5)
    with OutputWriter(tmp_path, journal) as writer:
        writer.flush()
    report = journal.load(
        [Line("id-1", CHAT, body(1, "other"), 1, "in.jsonl"), *lines(1, start=2)], rerun_changed=True
    )
    assert (report.changed_count, report.rerun, report.ok) == (1, 1, True)
    journal.commit()
    assert states(journal) == {"id-1": "pending", "id-2": "ended"}
    assert journal.output_mark().rebuild  # the old answer is in output.jsonl: it has to go
    [claimed] = journal.claim(5, worker="w", lease_s=60)
    assert claimed.body == body(1, "other")
    assert claimed.key == line_key(CHAT, body(1, "other"))
    history = rows(journal, "SELECT custom_id, reason, cost_usd, outcome FROM history")
    assert [(h[0], h[1], h[2]) for h in history] == [("id-1", "changed", 0.5)]
    assert orjson.loads(history[0][3])["text"] == "fine"
    assert journal.counts().cost_usd == 1.0  # what was paid stays counted


def test_a_changed_failure_that_retry_failed_sends_again_takes_its_new_request(
    journal: SQLiteJournal,
) -> None:
    loaded(journal, 4)
    claimed = journal.claim(4, worker="w", lease_s=60)
    journal.record([
        claimed[0].result(ok()),
        claimed[1].result(Outcome.failure("truncated", status=200), response=response()),
        claimed[2].result(Outcome.failure("content_filtered", status=200), response=response()),
        claimed[3].result(Outcome.failure("truncated", status=200), response=response()),
    ])  # fmt: skip
    # Lines 1-3 changed (max_tokens raised, say); line 4 did not.
    changed = [Line(f"id-{i}", CHAT, body(i, "longer"), i, "in.jsonl") for i in (1, 2, 3)]
    edited = [*changed, *lines(1, start=4)]
    # Retrying the truncated ones: line 2 takes its new request; line 1 (ok) and line 3 (another code) are still
    # changed lines to refuse.
    report = journal.load(edited, retry_failed=("truncated",))
    assert (report.changed_count, report.rerun, report.ok) == (3, 1, False)
    assert sorted(p.custom_id for p in report.changed) == ["id-1", "id-2", "id-3"]
    journal.rollback()
    # Every failure retried, and line 1 left as it was: both changed failures take their new requests.
    report = journal.load([lines(1).__next__(), *changed[1:], *lines(1, start=4)], retry_failed=())
    assert (report.changed_count, report.rerun, report.ok) == (2, 2, True)
    journal.commit()
    assert states(journal) == {"id-1": "ended", "id-2": "pending", "id-3": "pending", "id-4": "ended"}
    assert {c.custom_id: c.body for c in journal.claim(5, worker="w", lease_s=60)} == {
        "id-2": body(2, "longer"),
        "id-3": body(3, "longer"),
    }
    assert [r[0] for r in rows(journal, "SELECT custom_id FROM history ORDER BY custom_id")] == [
        "id-2",
        "id-3",
    ]
    # Without retry_failed a changed failure is refused as before.
    assert not journal.load([Line("id-4", CHAT, body(4, "longer"), 4, "in.jsonl")]).ok
    journal.rollback()


def test_an_answer_for_the_old_request_never_lands_on_a_changed_line(journal: SQLiteJournal) -> None:
    loaded(journal, 1)
    [old] = journal.claim(1, worker="w", lease_s=60)
    journal.load([Line("id-1", CHAT, body(1, "other"), 1)], rerun_changed=True)
    journal.commit()
    assert finish(journal, [old]) == []
    assert states(journal) == {"id-1": "pending"}


def test_a_repeated_custom_id_is_a_duplicate_naming_both_lines(journal: SQLiteJournal) -> None:
    # Repeats within one chunk, across chunks, and of a line an earlier run loaded.
    far = journal_module._CHUNK + 5
    first = [*lines(3), Line("id-2", CHAT, body(9), 4, "in.jsonl"), *lines(far, start=5),
             Line("id-1", CHAT, body(1), far + 5, "in.jsonl")]  # fmt: skip
    report = journal.load(first)
    assert (report.duplicate_count, report.new, report.ok) == (2, far + 3, False)
    assert [str(p) for p in report.duplicates] == [
        "in.jsonl:4: custom_id 'id-2' is repeated: it was first at in.jsonl:2; "
        "give every line its own custom_id (only the first was kept)",
        f"in.jsonl:{far + 5}: custom_id 'id-1' is repeated: it was first at in.jsonl:1; "
        "give every line its own custom_id (only the first was kept)",
    ]
    journal.commit()
    resumed = journal.load([*lines(3, source="b.jsonl"), Line("id-3", CHAT, body(3), 9, "b.jsonl")])
    assert resumed.duplicate_count == 1
    assert str(resumed.duplicates[0]).startswith(
        "b.jsonl:9: custom_id 'id-3' is repeated: it was first at b.jsonl:3"
    )
    journal.rollback()


def test_problems_kept_are_capped_but_all_are_counted(journal: SQLiteJournal) -> None:
    report = journal.load([Line("x", CHAT, body(1), i) for i in range(1, 21)], max_problems=3)
    assert (report.duplicate_count, len(report.duplicates)) == (19, 3)
    journal.rollback()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ten_times_the_lines_load_in_the_same_memory(tmp_path: Path) -> None:
    def many(n: int) -> Iterator[Line]:
        return (
            Line(f"r{i}", "/v1/embeddings", {"model": "m", "input": f"t{i}"}, i, "in.jsonl")
            for i in range(1, n + 1)
        )

    def peak(n: int) -> int:
        with SQLiteJournal(tmp_path / f"{n}.sqlite") as j:
            tracemalloc.start()
            try:
                report = j.load(many(n))
                j.commit()
                used = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert report.new == j.counts().pending == n
            return used

    # 200 thousand lines held at once would take about a hundred MB; streamed, the peak is one chunk's worth
    # (about 1.2 MB at 20 thousand lines and at a million). A million under tracemalloc took 80 s of the suite;
    # bench/bench_batch.py measures the million-line load's RSS.
    small, large = peak(20_000), peak(200_000)
    assert large < 8_000_000, large
    assert large < small * 1.5 + 1_000_000, (small, large)


# -- claims, leases, recovery ----------------------------------------------------------------------------


def test_claim_goes_through_the_input_in_order(journal: SQLiteJournal) -> None:
    journal.load([Line(f"id-{n}", CHAT, body(n), n) for n in (5, 3, 9, 1, 7)])
    journal.commit()
    first = journal.claim(3, worker="w1", lease_s=60)
    assert [(c.custom_id, c.number, c.claim_no, c.resent, c.worker) for c in first] == [
        ("id-1", 1, 1, 0, "w1"), ("id-3", 3, 1, 0, "w1"), ("id-5", 5, 1, 0, "w1")]  # fmt: skip
    assert [c.custom_id for c in journal.claim(10, worker="w1", lease_s=60)] == ["id-7", "id-9"]
    assert journal.claim(10, worker="w1", lease_s=60) == []
    assert journal.claim(0, worker="w1", lease_s=60) == []


def test_a_claim_leaves_the_lines_of_models_it_skips(journal: SQLiteJournal, clock: Clock) -> None:
    # A model the provider asks to wait for: its lines stay where they are, pending or in flight.
    models = {1: "gpt-4o", 2: "gpt-4o-mini", 3: "gpt-4o", 4: None, 5: "o1:2024"}
    journal.load([Line(f"id-{n}", CHAT, {**body(n), "model": m}, n) for n, m in models.items()])
    journal.commit()
    got = journal.claim(10, worker="a", lease_s=10, skip_models=("gpt-4o", "o1:2024"))
    assert [c.custom_id for c in got] == ["id-2", "id-4"]  # a body without a model is never skipped
    assert journal.counts().pending == 3
    [one] = journal.claim(1, worker="a", lease_s=10, skip_models=("gpt-4o-mini",))
    assert one.custom_id == "id-1"
    clock.now += 11  # id-1's lease is over: an expired line of a skipped model stays where it is too
    assert [c.custom_id for c in journal.claim(10, worker="b", lease_s=10, skip_models=("gpt-4o",))] == [
        "id-2", "id-4", "id-5"]  # fmt: skip
    assert [c.custom_id for c in journal.claim(10, worker="b", lease_s=10)] == ["id-1", "id-3"]


def test_an_expired_lease_is_claimed_again_and_counted_as_resent(
    journal: SQLiteJournal, clock: Clock
) -> None:
    loaded(journal, 3)
    journal.claim(2, worker="a", lease_s=30)
    clock.now += 29
    assert [c.custom_id for c in journal.claim(5, worker="b", lease_s=30)] == ["id-3"]
    clock.now += 2  # a's lease is over, b's is not
    again = journal.claim(5, worker="b", lease_s=30)
    assert [(c.custom_id, c.claim_no, c.resent, c.worker) for c in again] == [
        ("id-1", 2, 1, "b"),
        ("id-2", 2, 1, "b"),
    ]
    assert journal.counts().resent == 2


def test_a_late_answer_from_the_first_holder_still_counts_once(journal: SQLiteJournal, clock: Clock) -> None:
    loaded(journal, 1)
    [a] = journal.claim(1, worker="a", lease_s=10)
    clock.now += 11
    [b] = journal.claim(1, worker="b", lease_s=10)
    assert finish(journal, [a], ok("from a")) == ["id-1"]
    assert finish(journal, [b], ok("from b")) == []
    [ended] = journal.ended()
    assert (ended.outcome["text"], ended.extra["worker"]) == ("from a", "a")


def test_a_renewed_lease_keeps_the_line_and_only_its_holder_can_renew_it(
    journal: SQLiteJournal, clock: Clock
) -> None:
    loaded(journal, 2)
    held = journal.claim(2, worker="a", lease_s=10)
    clock.now += 8
    assert journal.renew([c.custom_id for c in held], worker="a", lease_s=10) == 2
    assert journal.renew(["id-1", "id-2"], worker="b", lease_s=10) == 0  # not b's to renew
    clock.now += 8  # 16 s after the claim: past the first lease, within the renewed one
    assert journal.claim(5, worker="b", lease_s=10) == []
    clock.now += 3
    assert [c.custom_id for c in journal.claim(5, worker="b", lease_s=10)] == ["id-1", "id-2"]
    # a's renewal comes too late: the lines are b's now.
    assert journal.renew(["id-1", "id-2"], worker="a", lease_s=10) == 0
    assert journal.renew([], worker="b", lease_s=10) == 0


def test_recover_puts_in_flight_lines_back_and_counts_them_as_sent_again(journal: SQLiteJournal) -> None:
    loaded(journal, 5)
    journal.claim(2, worker="a", lease_s=600)
    journal.claim(1, worker="b", lease_s=600)
    assert journal.recover(worker="b") == 1
    assert journal.recover() == 2
    assert journal.recover() == 0
    counts = journal.counts()
    assert (counts.pending, counts.in_flight, counts.resent) == (5, 0, 3)
    assert [c.resent for c in journal.claim(5, worker="a", lease_s=60)] == [1, 1, 1, 0, 0]


def test_recover_with_a_sent_log_counts_only_the_lines_it_names(
    journal: SQLiteJournal, tmp_path: Path
) -> None:
    loaded(journal, 6)
    claimed = journal.claim(5, worker="a", lease_s=600)  # claimed ahead: not all of them sent
    finish(journal, claimed[:1])
    log = SentLog(tmp_path / SENT_FILE)
    for c in claimed[:3]:
        log.add(c.custom_id)  # id-1 ended since: its name left over in the log counts for nothing
    assert read_sent(log.path) == {"id-1", "id-2", "id-3"}
    assert journal.recover(sent=read_sent(log.path)) == 2
    counts = journal.counts()
    assert (counts.pending, counts.in_flight, counts.resent) == (5, 0, 2)
    assert [c.resent for c in journal.claim(5, worker="a", lease_s=60)] == [1, 1, 0, 0, 0]
    log.close()


def test_a_sent_log_is_rewritten_with_the_lines_not_recorded_and_survives_a_torn_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / SENT_FILE
    log = SentLog(path, size=64)
    for i in range(6):
        log.add(f"line\n{i}")  # any custom_id, a newline in it too
    log.forget(f"line\n{i}" for i in range(5))
    for i in range(6, 10):
        log.add(f"line\n{i}")  # full: written again with the lines not forgotten
    assert read_sent(path) == {f"line\n{i}" for i in range(5, 10)}
    assert path.stat().st_size == 64  # what was forgotten is gone: the file did not grow
    named = read_sent(path)
    # A process killed in the middle of its copy: that request never left. Whatever part of an entry is there,
    # it is not a name.
    data = path.read_bytes()
    end = len(data.rstrip(b"\0"))
    for torn in (b'"cut of', b'\0\0t off"\n', b'"cu\0\0ff"\n'):
        path.write_bytes(data[:end] + torn + data[end + len(torn) :])
        assert read_sent(path) == named
    log.close()
    assert read_sent(path) == named  # still unrecorded: the file stays, compact
    assert path.stat().st_size < 64
    log = SentLog(path)
    assert read_sent(path) == set()  # a new run starts its own
    log.close()
    assert not path.exists()  # nothing left unrecorded: no file


@pytest.mark.parametrize("lacking", ["mmap", "posix_fallocate"])
def test_a_sent_log_that_cannot_map_its_file_writes_each_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lacking: str
) -> None:
    def refuse(*args: object) -> None:
        raise OSError(19, "No such device")  # what mmap says on a file system without it

    if lacking == "mmap":
        monkeypatch.setattr(sentlog.mmap, "mmap", refuse)
    else:
        monkeypatch.delattr(sentlog.os, "posix_fallocate")  # macOS has none
    path = tmp_path / SENT_FILE
    log = SentLog(path, size=64)
    for i in range(10):
        log.add(f"line-{i}")
    assert path.read_bytes() == b"".join(f'"line-{i}"\n'.encode() for i in range(10))
    log.forget(f"line-{i}" for i in range(9))
    log.close()
    assert read_sent(path) == {"line-9"}


def test_release_puts_lines_back_without_counting_them_as_resent(journal: SQLiteJournal) -> None:
    loaded(journal, 3)
    claimed = journal.claim(3, worker="w", lease_s=60)
    finish(journal, claimed[:1])
    assert journal.release(c.custom_id for c in claimed) == 2  # the ended one stays ended
    assert states(journal) == {"id-1": "ended", "id-2": "pending", "id-3": "pending"}
    assert journal.counts().resent == 0


def test_a_line_a_stop_cuts_off_keeps_its_attempts_their_cost_and_its_budget(
    journal: SQLiteJournal, clock: Clock
) -> None:
    loaded(journal, 3)
    claimed = journal.claim(3, worker="w", lease_s=60)
    assert [c.tried for c in claimed] == [0, 0, 0]
    first, second, third = claimed
    events = [AttemptEvent("id-1", n, "empty_output", 200, 1.0, clock.now) for n in (1, 2)]
    billed = Tried("id-1", first.key, 2, events, Usage(30, 0, 30), 0.002, "w")
    on_wire = Tried("id-2", second.key, 1)  # its request on the wire when cut off: it stays in flight
    # One that ended meanwhile, and one whose request changed, keep nothing more.
    finish(journal, [third])
    stale = Tried("id-3", third.key, 5, [AttemptEvent("id-3", 9, None, 200, 0.0, clock.now)], Usage(1, 1, 2))
    before = journal.counts()
    assert journal.release(["id-1"], tried=[billed, on_wire, stale]) == 1
    assert states(journal) == {"id-1": "pending", "id-2": "in_flight", "id-3": "ended"}
    counts = journal.counts()
    assert (counts.pending, counts.in_flight, counts.tried) == (1, 1, 1)
    # What was billed counts with the run's spend, read again by another connection too.
    assert counts.prompt_tokens == before.prompt_tokens + 30
    assert counts.cost_usd == pytest.approx(before.cost_usd + 0.002)
    with reopen(journal) as other:
        assert dataclasses.replace(other.counts(), cost_usd=0.0) == dataclasses.replace(counts, cost_usd=0.0)
    assert [(e.custom_id, e.number) for e in journal.events()] == [("id-1", 1), ("id-1", 2)]
    assert rows(journal, "SELECT custom_id, tried FROM lines ORDER BY custom_id") == [
        ("id-1", 2),
        ("id-2", 1),
        ("id-3", 0),
    ]
    # Claimed again, a line says how many attempts it made: its budget goes on from there. Recorded, it ends
    # with its attempts in all, and is no longer counted as tried.
    journal.recover(sent={"id-2"})
    again = {c.custom_id: c for c in journal.claim(3, worker="w2", lease_s=60)}
    assert {cid: c.tried for cid, c in again.items()} == {"id-1": 2, "id-2": 1}
    assert journal.counts().tried == 0
    journal.release(["id-2"])
    assert journal.counts().tried == 1
    finish(
        journal, [again["id-1"]], Outcome.success(text="at last", finish_reason="stop").replace(attempts=3)
    )
    assert rows(journal, "SELECT attempts, tried FROM lines WHERE custom_id = ?", ("id-1",)) == [(3, 0)]
    assert journal.counts().tried == 1
    assert journal.counts().prompt_tokens == counts.prompt_tokens  # the stopped attempts' spend stays


# -- recording -------------------------------------------------------------------------------------------


def test_record_is_idempotent_and_numbers_lines_in_commit_order(journal: SQLiteJournal) -> None:
    loaded(journal, 4)
    claimed = journal.claim(4, worker="w", lease_s=60)
    assert finish(journal, [claimed[2], claimed[0]]) == ["id-3", "id-1"]
    assert finish(journal, [claimed[0], claimed[1], claimed[1]]) == ["id-2"]
    assert finish(journal, claimed) == ["id-4"]
    assert [(e.seq, e.custom_id) for e in journal.ended()] == [
        (1, "id-3"),
        (2, "id-1"),
        (3, "id-2"),
        (4, "id-4"),
    ]
    assert [e.custom_id for e in journal.ended(after_seq=2)] == ["id-2", "id-4"]
    assert [e.custom_id for e in journal.ended(by_input=True)] == ["id-1", "id-2", "id-3", "id-4"]


def test_an_unknown_custom_id_records_nothing(journal: SQLiteJournal) -> None:
    loaded(journal, 1)
    [c] = journal.claim(1, worker="w", lease_s=60)
    with pytest.raises(JournalError, match="no line with custom_id 'nope'"):
        journal.record([c.result(ok()), Result("nope", "k", ok())])
    assert states(journal) == {"id-1": "in_flight"}


def test_what_is_recorded_comes_back_whole(journal: SQLiteJournal) -> None:
    loaded(journal, 2)
    c1, c2 = journal.claim(2, worker="w", lease_s=60)
    failure = Outcome.failure("timeout", message="read timed out", attempts=3)
    events = [AttemptEvent("id-2", n, "timeout", None, 1.5, 10.0 + n, 30.0) for n in (1, 2, 3)]
    journal.record([
        c1.result(ok(), response=response(), cost_usd=0.25, latency_s=1.5),
        c2.result(failure, events=events, latency_s=90.0),
    ])  # fmt: skip
    e1, e2 = journal.ended()
    assert Outcome.from_dict(e1.outcome) == ok()
    assert Outcome.from_dict(e2.outcome) == failure
    assert e1.response == response()
    assert e2.response is None
    assert (e1.extra["cost_usd"], e1.extra["latency_s"], e1.extra["worker"]) == (0.25, 1.5, "w")
    assert e2.extra["attempts"] == 3
    assert list(journal.events()) == events
    counts = journal.counts()
    assert (counts.ok, counts.failed, dict(counts.by_code)) == (1, 1, {"timeout": 1})
    assert (counts.prompt_tokens, counts.completion_tokens, counts.total_tokens, counts.cost_usd) == (
        10,
        2,
        12,
        0.25,
    )


def test_a_line_can_end_without_a_claim(journal: SQLiteJournal) -> None:
    # --skip-invalid records invalid lines as failed straight from pending.
    loaded(journal, 1)
    key = line_key(CHAT, body(1))
    assert journal.record([Result("id-1", key, Outcome.failure("invalid_input"))]) == ["id-1"]
    assert journal.counts().by_code == {"invalid_input": 1}


def test_reset_failed_runs_failures_again_keeping_their_old_answers(journal: SQLiteJournal) -> None:
    loaded(journal, 4)
    c = journal.claim(4, worker="w", lease_s=60)
    journal.record([
        c[0].result(ok()),
        c[1].result(Outcome.failure("rate_limited"), cost_usd=0.0),
        c[2].result(Outcome.failure("server_error"), response=response(500), cost_usd=0.1),
        c[3].result(Outcome.failure("timeout")),
    ])  # fmt: skip
    assert journal.reset_failed(["server_error", "no_such_code"]) == 1
    assert states(journal)["id-3"] == "pending"
    assert journal.reset_failed() == 2
    assert journal.reset_failed() == 0
    counts = journal.counts()
    assert (counts.pending, counts.ok, counts.failed, counts.cost_usd) == (3, 1, 0, pytest.approx(0.1))
    reasons = rows(journal, "SELECT custom_id, reason, seq FROM history ORDER BY custom_id")
    assert reasons == [("id-2", "retry_failed", 2), ("id-3", "retry_failed", 3), ("id-4", "retry_failed", 4)]
    # A line ended again takes a new number: the old ones stay taken, even the highest.
    finish(journal, journal.claim(3, worker="w", lease_s=60))
    assert [e.seq for e in journal.ended()] == [1, 5, 6, 7]


def test_the_running_counts_match_a_fresh_count_after_every_write(
    journal: SQLiteJournal, clock: Clock, tmp_path: Path
) -> None:
    def same() -> None:
        with reopen(journal) as fresh:
            now, recounted = journal.counts(), fresh.counts()
        assert dataclasses.replace(now, cost_usd=0.0) == dataclasses.replace(recounted, cost_usd=0.0)
        assert now.cost_usd == pytest.approx(recounted.cost_usd)

    loaded(journal, 12)
    same()
    first = journal.claim(5, worker="a", lease_s=10)
    same()
    journal.record([
        first[0].result(ok(tokens=5), cost_usd=0.1),
        first[1].result(Outcome.failure("timeout")),
        first[2].result(Outcome.failure("server_error"), response=response(500), cost_usd=0.2),
    ])  # fmt: skip
    same()
    clock.now += 11
    journal.claim(3, worker="b", lease_s=10)  # the two expired ones and one pending
    same()
    journal.release(["id-4", "id-6"])
    same()
    journal.record([Result("id-7", line_key(CHAT, body(7)), ok(tokens=7), cost_usd=0.05)])  # from pending
    same()
    assert journal.recover(worker="b") == 1
    same()
    journal.reset_failed(["timeout"])
    same()
    journal.load(lines(3, start=12))
    journal.commit()
    same()
    assert journal.counts().total == 14


def test_meta_keeps_json_values(journal: SQLiteJournal) -> None:
    assert journal.get_meta("settings") is None
    assert journal.get_meta("x", 5) == 5
    journal.set_meta({"settings": {"rpm": 500, "keys": 2}, "started_at": 12.5})
    journal.set_meta({"started_at": 13.0})
    assert (journal.get_meta("settings"), journal.get_meta("started_at")) == ({"rpm": 500, "keys": 2}, 13.0)


# -- output files ----------------------------------------------------------------------------------------


def read_outputs(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Both output files, checked to hold only whole JSON lines."""
    found = {}
    for name in (OUTPUT_FILE, ERRORS_FILE):
        path = directory / name
        data = path.read_bytes() if path.exists() else b""
        assert data == b"" or data.endswith(b"\n"), f"{name} ends with a partial line"
        found[name] = [orjson.loads(raw) for raw in data.splitlines()]
    return found


def check_exactly_once(directory: Path, j: SQLiteJournal, *, upto: int | None = None) -> int:
    """Every ended line (up to seq ``upto``) appears once across the two files, in the right one; nothing else
    appears."""
    ended = {e.custom_id: e for e in j.ended() if upto is None or e.seq <= upto}
    files = read_outputs(directory)
    seen = Counter(r["custom_id"] for rows in files.values() for r in rows)
    assert seen == Counter(list(ended)), (seen - Counter(list(ended)), set(ended) - set(seen))
    for name, rows in files.items():
        for record in rows:
            assert record["genguard"]["ok"] is (name == OUTPUT_FILE)
            assert record["genguard"]["text"] == ended[record["custom_id"]].outcome["text"]
    return len(ended)


def test_output_lines_take_the_openai_batch_shape(journal: SQLiteJournal, tmp_path: Path) -> None:
    loaded(journal, 3)
    c = journal.claim(3, worker="w", lease_s=60)
    journal.record([
        c[0].result(ok(), response=response(), cost_usd=0.002),
        c[1].result(Outcome.failure("bad_request", status=400), response=response(400)),
        c[2].result(Outcome.failure("connection_error", message="connection refused")),
    ])  # fmt: skip
    with OutputWriter(tmp_path, journal) as writer:
        assert writer.flush() == 3
    files = read_outputs(tmp_path)
    [good] = files[OUTPUT_FILE]
    assert good == {
        "id": request_id_for("id-1"),
        "custom_id": "id-1",
        "response": response(),
        "error": None,
        "genguard": {**ok().to_dict(), "cost_usd": 0.002},
    }
    refused, unreachable = files[ERRORS_FILE]
    assert (refused["response"]["status_code"], refused["error"]) == (400, None)
    assert refused["genguard"]["code"] == "bad_request"
    assert unreachable["response"] is None
    assert unreachable["error"] == {"code": "connection_error", "message": "connection refused"}
    assert request_id_for("id-1") != request_id_for("id-2")
    assert output_record(next(iter(journal.ended()))) == good


def test_flush_appends_only_what_ended_since(journal: SQLiteJournal, tmp_path: Path) -> None:
    loaded(journal, 6)
    with OutputWriter(tmp_path, journal) as writer:
        assert writer.flush() == 0
        finish(journal, journal.claim(2, worker="w", lease_s=60))
        assert writer.flush() == 2
        assert writer.flush() == 0
        finish(journal, journal.claim(3, worker="w", lease_s=60))
        assert writer.flush() == 3
    mark = journal.output_mark()
    assert (mark.seq, mark.output_bytes) == (5, (tmp_path / OUTPUT_FILE).stat().st_size)
    assert check_exactly_once(tmp_path, journal) == 5


def test_opening_cuts_a_tail_the_journal_does_not_cover(journal: SQLiteJournal, tmp_path: Path) -> None:
    loaded(journal, 4)
    finish(journal, journal.claim(2, worker="w", lease_s=60))
    with OutputWriter(tmp_path, journal) as writer:
        writer.flush()
    finish(journal, journal.claim(2, worker="w", lease_s=60))
    # What a kill after writing but before recording leaves: lines written again, and half a line.
    with (tmp_path / OUTPUT_FILE).open("ab") as f:
        f.write((tmp_path / OUTPUT_FILE).read_bytes() + b'{"id": "batch_req_')
    with OutputWriter(tmp_path, journal) as writer:
        assert (tmp_path / OUTPUT_FILE).stat().st_size == journal.output_mark().output_bytes
        assert writer.flush() == 2
    assert check_exactly_once(tmp_path, journal) == 4


def test_a_lost_or_cut_file_is_written_again_from_the_journal(journal: SQLiteJournal, tmp_path: Path) -> None:
    loaded(journal, 3)
    finish(journal, journal.claim(3, worker="w", lease_s=60))
    with OutputWriter(tmp_path, journal) as writer:
        writer.flush()
    (tmp_path / OUTPUT_FILE).unlink()
    OutputWriter(tmp_path, journal).close()
    assert check_exactly_once(tmp_path, journal) == 3


def test_retried_failures_leave_the_errors_file(journal: SQLiteJournal, tmp_path: Path) -> None:
    loaded(journal, 3)
    finish(journal, journal.claim(3, worker="w", lease_s=60), Outcome.failure("server_error"))
    with OutputWriter(tmp_path, journal) as writer:
        writer.flush()
        assert len(read_outputs(tmp_path)[ERRORS_FILE]) == 3
        journal.reset_failed()
        assert writer.flush() == 0  # rebuilt: nothing has ended
        assert read_outputs(tmp_path) == {OUTPUT_FILE: [], ERRORS_FILE: []}
        finish(journal, journal.claim(3, worker="w", lease_s=60))
        assert writer.flush() == 3
    assert check_exactly_once(tmp_path, journal) == 3
    assert not journal.output_mark().rebuild


def test_export_writes_every_ended_line_in_input_order(journal: SQLiteJournal, tmp_path: Path) -> None:
    loaded(journal, 4)
    c = journal.claim(4, worker="w", lease_s=60)
    journal.record([c[3].result(ok()), c[1].result(Outcome.failure("timeout")), c[0].result(ok())])
    with OutputWriter(tmp_path, journal) as writer:
        assert writer.export_in_order(tmp_path / "all.jsonl") == 3
    exported = [orjson.loads(x) for x in (tmp_path / "all.jsonl").read_bytes().splitlines()]
    assert [r["custom_id"] for r in exported] == ["id-1", "id-2", "id-4"]


# -- exactly once under kill -9 --------------------------------------------------------------------------

# A child process that records some lines and flushes the output files, killed with SIGKILL at a chosen step.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from genguard.bulk.journal import SQLiteJournal
    from genguard.bulk.outputs import OutputWriter
    from genguard.core.outcome import Outcome, Usage

    directory, point, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def result(c):
        i = int(c.custom_id.split("-")[1])
        if i % 5 == 0 and c.claim_no == 1:
            return c.result(Outcome.failure("server_error", status=500),
                            response={"status_code": 500, "request_id": None, "body": {"error": "boom"}})
        if i % 7 == 0:
            return c.result(Outcome.failure("timeout"))
        return c.result(Outcome.success(text=f"answer {i}", usage=Usage(3, 4, 7)),
                        response={"status_code": 200, "request_id": f"r{i}", "body": {"i": i}}, cost_usd=0.001)

    journal = SQLiteJournal(os.path.join(directory, "journal.sqlite"))
    journal.recover()
    if point == "mid_write":
        real_write = os.write
        def half(fd, data):
            real_write(fd, bytes(data)[: max(1, len(data) // 2)])
            die()
        os.write = half
    elif point == "before_fsync":
        os.fsync = die
    elif point == "before_mark":
        journal.set_output_mark = die
    elif point == "between_renames":
        real_replace = os.replace
        def second_dies(src, dst, replaced=[]):
            if replaced:
                die()
            replaced.append(src)
            real_replace(src, dst)
        os.replace = second_dies
    print("ready", flush=True)
    if point == "loop":
        writer = OutputWriter(directory, journal)
        while claimed := journal.claim(7, worker="w", lease_s=600):
            journal.record([result(c) for c in claimed])
            writer.flush()
            print("flushed", flush=True)
        sys.exit(0)
    journal.record([result(c) for c in journal.claim(n, worker="w", lease_s=600)])
    OutputWriter(directory, journal).flush()
    """
)


def run_child(directory: Path, point: str, n: int = 10) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), point, str(n)], capture_output=True, timeout=60
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr.decode()
    return done.returncode


def start(directory: Path, n: int) -> None:
    with SQLiteJournal(directory / "journal.sqlite") as j:
        loaded(j, n)


@pytest.mark.parametrize(
    ("point", "rebuild"),
    [
        ("mid_write", False),
        ("before_fsync", False),
        ("before_mark", False),
        ("mid_write", True),
        ("before_fsync", True),
        ("between_renames", True),
        ("before_mark", True),
        ("none", False),
    ],
)
def test_a_kill_at_any_step_of_a_flush_loses_nothing_and_writes_nothing_twice(
    tmp_path: Path, point: str, rebuild: bool
) -> None:
    start(tmp_path, 30)
    assert run_child(tmp_path, "none") == 0
    if rebuild:
        with SQLiteJournal(tmp_path / "journal.sqlite") as j:
            assert j.reset_failed() > 0
    killed = run_child(tmp_path, point) == -signal.SIGKILL
    assert killed is (point != "none")
    with SQLiteJournal(tmp_path / "journal.sqlite") as j:
        mark = j.output_mark()
        if point in ("mid_write", "before_fsync", "before_mark") and not rebuild:
            # The kill left bytes past what the journal records: the case the repair exists for.
            assert (tmp_path / OUTPUT_FILE).stat().st_size > mark.output_bytes
        assert mark.rebuild is (rebuild and point != "none")
        assert j.recover() == 0  # the child recorded before it flushed: nothing was in flight
        with OutputWriter(tmp_path, j) as writer:
            writer.flush()
        # 10 lines ended in each run; with the rebuild, the 3 failures of the first were run again.
        assert check_exactly_once(tmp_path, j) == (17 if rebuild else 20)


def test_kills_at_random_instants_of_a_run_lose_nothing_and_write_nothing_twice(tmp_path: Path) -> None:
    total = 1500
    start(tmp_path, total)
    rng = random.Random(7)
    for round_no in range(8):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), "loop", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        # Some loops in (so the kill lands mid-run however fast this machine is), then a random instant within
        # one: in a claim, a record, a write, an fsync, the mark's commit.
        for _ in range(rng.randint(0, 20)):
            assert child.stdout.readline() == b"flushed\n"
        time.sleep(rng.uniform(0.0, 0.01))
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
        child.stdout.close()
        assert child.stderr is not None
        child.stderr.close()
        with SQLiteJournal(tmp_path / "journal.sqlite") as j:
            # Repaired, the files hold exactly the lines the mark covers; the rest is written next time.
            OutputWriter(tmp_path, j).close()
            check_exactly_once(tmp_path, j, upto=j.output_mark().seq)
            if round_no == 3:
                j.reset_failed(["server_error"])
    assert run_child(tmp_path, "loop") == 0
    with SQLiteJournal(tmp_path / "journal.sqlite") as j:
        counts = j.counts()
        assert (counts.pending, counts.in_flight, counts.ended) == (0, 0, total)
        assert counts.resent <= 7 * 8  # only what was in flight at a kill was sent again
        assert check_exactly_once(tmp_path, j) == total


def test_output_mark_round_trips(journal: SQLiteJournal) -> None:
    journal.set_output_mark(OutputMark(5, 100, 20, True))
    assert journal.output_mark() == OutputMark(5, 100, 20, True)
