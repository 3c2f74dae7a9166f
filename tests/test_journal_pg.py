"""A batch run in a shared PostgreSQL journal, as users start it (`genguard batch --journal URL --run NAME`),
against the simulator over real HTTP and a real PostgreSQL (a schema of each test's own): workers joining a run,
a dead worker's lines taken over when its leases expire, a different input refused with nothing sent, the run's
files the same as a single machine's, `genguard report --journal`, and the password kept out of every message.
(The journal's own contract runs against PostgreSQL in test_bulk_journal.py; kill -9 of workers in
test_journal_pg_workers.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from _batch_helpers import check_records, lines_of, records, write_input
from _pg import PG_URL, pg_schema
from genguard.bulk.inputs import read_lines
from genguard.bulk.journal import JournalError
from genguard.bulk.journal_pg import PostgresJournal, masked_url
from genguard.bulk.journals import open_journal
from genguard.bulk.runner import BatchOptions, fingerprint, run_batch
from genguard.cli import cli
from genguard.sim import Simulator

KEY = "sk-pg-batch-Zq8xW3vT5yU7iO9p"


@pytest.fixture
def url() -> Iterator[str]:
    with pg_schema() as u:
        yield u


def batch(sim: Simulator | None, *args: str) -> tuple[int, str, str]:
    argv = ["batch", *args, "--progress", "none", "--api-key", KEY]
    if sim is not None:
        argv += ["--base-url", sim.base_url]
    result = CliRunner().invoke(cli, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _requests(sim: Simulator) -> int:
    n: int = sim.stats()["requests"]
    return n


def test_workers_joining_a_finished_run_send_nothing_and_say_who_wrote_the_files(
    sim: Simulator, url: str, tmp_path: Path
) -> None:
    lines = lines_of(20)
    src = write_input(tmp_path / "in.jsonl", lines)
    code, first, _ = batch(sim, str(src), "--journal", url, "--run", "nightly", "--out", str(tmp_path / "a"))
    assert code == 0, first
    assert "20/20 lines ended: 20 ok, 0 failed" in first
    check_records(tmp_path / "a", [line["custom_id"] for line in lines])
    assert (tmp_path / "a" / "report.html").exists()
    # A second worker, on another folder, started late: the run is done, nothing is sent or written again.
    code, second, _ = batch(sim, str(src), "--journal", url, "--run", "nightly", "--out", str(tmp_path / "b"))
    assert code == 0, second
    assert _requests(sim) == 20
    assert "files were written by worker" in second
    assert not (tmp_path / "b" / "output.jsonl").exists()


def test_a_dead_workers_lines_are_taken_over_when_its_leases_expire(
    sim: Simulator, url: str, tmp_path: Path
) -> None:
    lines = lines_of(30)
    src = write_input(tmp_path / "in.jsonl", lines)
    # A worker that loaded the run, claimed five lines with a one-second lease and died before sending them.
    with PostgresJournal(url, run="takeover") as journal:
        journal.load(read_lines(src), fingerprint=fingerprint(read_lines(src)))
        journal.commit()
        dead = journal.claim(5, worker="gone:1:abc", lease_s=1.0)
    opts = BatchOptions(out=tmp_path / "w", base_url=sim.base_url, api_keys=(KEY,), journal=url, run="takeover",
                        progress="none", lease_s=5.0)  # fmt: skip
    result = run_batch(src, opts)
    assert result.exit_code == 0
    assert (result.counts.ok, result.counts.resent) == (30, 5)
    assert _requests(sim) == 30  # the dead worker never sent its five: each line was sent once
    with PostgresJournal(url, run="takeover") as journal:
        taken = {e.custom_id: e.extra for e in journal.ended()}
    assert all(taken[c.custom_id]["resent"] == 1 for c in dead)
    assert {taken[c.custom_id]["worker"] for c in dead} == {result.worker}
    check_records(tmp_path / "w", [line["custom_id"] for line in lines])


def test_another_input_for_the_same_run_is_refused_and_sends_nothing(
    sim: Simulator, url: str, tmp_path: Path
) -> None:
    src = write_input(tmp_path / "in.jsonl", lines_of(6))
    assert batch(sim, str(src), "--journal", url, "--run", "r1", "--out", str(tmp_path / "a"))[0] == 0
    other = write_input(tmp_path / "other.jsonl", lines_of(6, words=2))
    code, _, err = batch(sim, str(other), "--journal", url, "--run", "r1", "--out", str(tmp_path / "b"))
    assert code == 2
    assert "run 'r1'" in err
    assert "was started with another input" in err
    assert "another --run name" in err
    assert "--keep-changed" in err
    assert _requests(sim) == 6
    # --keep-changed makes it the run's input and sends nothing: every line ended, and keeps its answer.
    code, out, _ = batch(sim, str(other), "--journal", url, "--run", "r1", "--out", str(tmp_path / "b"),
                         "--keep-changed", "--json")  # fmt: skip
    assert (code, orjson.loads(out)["kept_changed"], _requests(sim)) == (0, 6, 6)
    # Under another name it is a run of its own, in the same schema.
    code, out, _ = batch(sim, str(other), "--journal", url, "--run", "r2", "--out", str(tmp_path / "c"))
    assert code == 0, out
    with PostgresJournal(url, run="r1") as one, PostgresJournal(url, run="r2") as two:
        assert (one.counts().ok, two.counts().ok) == (6, 6)
        assert {e.custom_id for e in one.ended()} == {e.custom_id for e in two.ended()}


def test_a_shared_run_writes_the_files_a_single_machine_run_writes(
    sim: Simulator, url: str, tmp_path: Path
) -> None:
    # Every third line asks for too few tokens: it is cut short (truncated), whatever order it is sent in.
    lines = [
        {**line, "body": {**line["body"], "max_tokens": 3}} if i % 3 == 0 else line
        for i, line in enumerate(lines_of(40))
    ]
    src = write_input(tmp_path / "in.jsonl", lines)
    alone_code = batch(sim, str(src), "--out", str(tmp_path / "alone"))[0]
    shared_code = batch(sim, str(src), "--journal", url, "--run", "same", "--out", str(tmp_path / "shared"))[
        0
    ]
    assert alone_code == shared_code == 1  # the same lines failed the same way

    def content(out: Path) -> dict[str, tuple[str, str | None, object]]:
        ok, failed = records(out)
        return {
            r["custom_id"]: (
                "ok" if r in ok else "failed",
                r["genguard"]["code"],
                r["response"]["body"]["choices"][0]["message"].get("content") if r["response"] else None,
            )
            for r in ok + failed
        }

    alone, shared = content(tmp_path / "alone"), content(tmp_path / "shared")
    assert alone == shared
    assert {v[0] for v in alone.values()} == {"ok", "failed"}

    # Every record has the same shape, down to the outcome's fields; only request ids and timings differ.
    def shapes(out: Path) -> dict[str, tuple[list[str], list[str]]]:
        ok, failed = records(out)
        return {r["custom_id"]: (sorted(r), sorted(r["genguard"])) for r in ok + failed}

    assert shapes(tmp_path / "alone") == shapes(tmp_path / "shared")


def test_report_writes_a_shared_runs_files_anywhere(sim: Simulator, url: str, tmp_path: Path) -> None:
    lines = lines_of(10)
    src = write_input(tmp_path / "in.jsonl", lines)
    assert batch(sim, str(src), "--journal", url, "--run", "rep", "--out", str(tmp_path / "w"))[0] == 0
    result = CliRunner().invoke(
        cli, ["report", "--journal", url, "--run", "rep", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    assert f"Batch run in {tmp_path / 'r'} (finished)" in result.stdout
    assert "10: 10 ok, 0 failed" in result.stdout
    for name in ("output.jsonl", "errors.jsonl"):
        assert (tmp_path / "r" / name).read_bytes() == (tmp_path / "w" / name).read_bytes()
    assert (tmp_path / "r" / "report.html").exists()
    # Again: the files are brought up to date, not appended twice.
    again = CliRunner().invoke(
        cli, ["report", "--journal", url, "--run", "rep", "--out", str(tmp_path / "r")]
    )
    assert again.exit_code == 0
    check_records(tmp_path / "r", [line["custom_id"] for line in lines])
    as_json = CliRunner().invoke(cli, ["report", "--journal", url, "--run", "rep", "--out", str(tmp_path / "r"),
                                       "--json"])  # fmt: skip
    assert orjson.loads(as_json.stdout)["lines"]["ok"] == 10
    missing = CliRunner().invoke(
        cli, ["report", "--journal", url, "--run", "nope", "--out", str(tmp_path / "x")]
    )
    assert missing.exit_code == 2
    assert "holds no line" in missing.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--journal", "postgresql://app:hunter2-Secret@127.0.0.1:1/test"], "name this one with --run NAME"),
        (["--journal", "postgresql://app:hunter2-Secret@127.0.0.1:1/test", "--run", "a b"], "a run name is"),
        (["--journal", "postgresql://app:hunter2-Secret@127.0.0.1:1/test", "--run", "x"], "cannot connect"),
        (
            ["--journal", "postgresql://127.0.0.1:1/test?password=hunter2-Secret", "--run", "x"],
            "cannot connect",
        ),
        (["--journal", "runs/x", "--run", "x"], "give a postgresql:// URL"),
        (["--run", "x", "--out", "somewhere"], "go with a shared --journal"),
    ],
)
def test_bad_shared_settings_exit_2_naming_what_to_do_without_the_password(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], said: str
) -> None:
    monkeypatch.chdir(tmp_path)  # --out defaults to ./NAME of --run
    src = write_input(tmp_path / "in.jsonl", lines_of(3))
    code, out, err = batch(sim, str(src), *args)
    assert code == 2, out + err
    assert said in err
    assert "hunter2-Secret" not in out + err
    assert _requests(sim) == 0


def test_the_journal_factory_and_masking() -> None:
    assert masked_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    with pytest.raises(JournalError, match="--run NAME"):
        open_journal(PG_URL)
    with pytest.raises(ValueError, match="run="):
        BatchOptions(out=Path("x"), journal=PG_URL)
    with pytest.raises(ValueError, match="lease_s"):
        BatchOptions(out=Path("x"), lease_s=0)


def test_the_python_api_runs_a_shared_run_and_reads_its_results_back(
    sim: Simulator, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import genguard

    monkeypatch.chdir(tmp_path)  # no out=: the files go to ./NAME, as the command puts them
    requests = [line["body"] for line in lines_of(5)]
    result = genguard.batch(
        requests, journal=url, run="api", base_url=sim.base_url, api_key=KEY, progress="none"
    )
    assert (result.exit_code, result.counts.ok, result.run) == (0, 5, "api")
    assert result.out == Path("api")
    got = list(result.results())
    assert [cid for cid, _, _ in got] == ["1", "2", "3", "4", "5"]
    assert all(outcome.ok and body["choices"] for _, outcome, body in got)
    assert (tmp_path / "api" / "output.jsonl").exists()
    with pytest.raises(TypeError, match="out="):
        genguard.batch(requests, base_url=sim.base_url)


def test_one_worker_is_told_to_write_the_files_and_only_when_the_run_has_ended(url: str) -> None:
    from genguard.bulk.model import Line
    from genguard.core.outcome import Outcome

    with PostgresJournal(url, run="fin") as a, PostgresJournal(url, run="fin") as b:
        a.load([Line(f"id-{i}", "/v1/embeddings", {"model": "m", "input": str(i)}, i) for i in (1, 2)])
        a.commit()
        claimed = a.claim(2, worker="a", lease_s=60)
        a.record([claimed[0].result(Outcome.success(endpoint="embedding"))])
        assert (a.finish("a"), b.finish("b")) == (False, False)  # a line is still in flight
        a.record([claimed[1].result(Outcome.failure("server_error"))])
        assert (b.finish("b"), a.finish("a"), b.finish("b")) == (True, False, False)
        assert a.finished_by() == "b"
        assert a.reset_failed() == 1  # lines left 'ended': the files will have to be written again
        assert a.finished_by() is None
        [again] = b.claim(1, worker="b", lease_s=60)
        b.record([again.result(Outcome.success(endpoint="embedding"))])
        assert (a.finish("a"), b.finish("b")) == (True, False)


@pytest.mark.timeout(120)
def test_a_reader_tailing_the_commit_order_sees_every_line_once_while_workers_record(url: str) -> None:
    """seq is handed out in commit order: a reader asking for what ended after the last seq it saw never skips
    a line that another worker committed a moment later with a smaller number."""
    import threading

    from genguard.bulk.model import Line
    from genguard.core.outcome import Outcome

    total = 1200
    with PostgresJournal(url, run="tail") as setup:
        setup.load(
            [Line(f"id-{i}", "/v1/embeddings", {"model": "m", "input": str(i)}, i) for i in range(total)]
        )
        setup.commit()
    done = threading.Event()
    errors: list[BaseException] = []

    def work(name: str, size: int) -> None:
        try:
            with PostgresJournal(url, run="tail") as j:
                while claimed := j.claim(size, worker=name, lease_s=60):
                    j.record([c.result(Outcome.success(endpoint="embedding")) for c in claimed])
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(f"w{n}", size)) for n, size in enumerate((7, 13, 5))]
    seen: list[tuple[int, str]] = []
    with PostgresJournal(url, run="tail") as reader:
        for w in workers:
            w.start()
        while not done.is_set():
            if not any(w.is_alive() for w in workers):
                done.set()  # one more pass after the last commit
            last = seen[-1][0] if seen else 0
            seen.extend((e.seq, e.custom_id) for e in reader.ended(after_seq=last))
    for w in workers:
        w.join()
    assert not errors, errors
    assert [s for s, _ in seen] == list(range(1, total + 1))  # no number skipped, none seen twice
    assert sorted(c for _, c in seen) == sorted(f"id-{i}" for i in range(total))


def test_retry_failed_on_a_finished_shared_run_sends_its_failures_again(
    sim: Simulator, url: str, tmp_path: Path
) -> None:
    lines = [
        {**line, "body": {**line["body"], "max_tokens": 3}} if i % 4 == 0 else line
        for i, line in enumerate(lines_of(12))
    ]
    src = write_input(tmp_path / "in.jsonl", lines)
    run = ["--journal", url, "--run", "retry", "--max-attempts", "1"]
    code, first, _ = batch(sim, str(src), *run, "--out", str(tmp_path / "a"))
    assert code == 1, first
    sent = _requests(sim)
    with PostgresJournal(url, run="retry") as journal:
        failed = journal.counts().failed
    assert failed == 3
    # A worker started with --retry-failed finds the run finished: it sends the failures again (they fail
    # again the same way: too few tokens), and the files are written again, each line once.
    code, again, _ = batch(sim, str(src), *run, "--retry-failed", "truncated", "--out", str(tmp_path / "b"))
    assert code == 1, again
    assert _requests(sim) == sent + failed
    with PostgresJournal(url, run="retry") as journal:
        assert journal.counts().failed == failed
        assert journal.finished_by() is not None
    check_records(tmp_path / "b", [line["custom_id"] for line in lines])


@pytest.mark.timeout(60)
def test_a_worker_that_loses_the_database_stops_with_exit_3_and_its_lines_go_to_the_next(
    sim: Simulator, url: str, tmp_path: Path
) -> None:
    import threading

    from _pg import connect

    sim.configure(ttft_ms=200)
    lines = lines_of(40)
    src = write_input(tmp_path / "in.jsonl", lines)
    run = f"cut{tmp_path.name[-12:].replace('_', '')}"
    admin = connect()

    def cut() -> None:
        # Once the worker holds lines, its connection is ended from the server's side, as a restart does.
        for _ in range(500):
            held = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (f"genguard:{run}",)
            ).fetchone()[0]
            if held and _requests(sim) >= 4:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    (f"genguard:{run}",),
                )
                return
            threading.Event().wait(0.01)

    cutter = threading.Thread(target=cut)
    cutter.start()
    code, out, err = batch(sim, str(src), "--journal", url, "--run", run, "--out", str(tmp_path / "a"),
                           "--lease", "1", "--concurrency", "4")  # fmt: skip
    cutter.join()
    admin.close()
    assert code == 3, out + err
    assert err.startswith("genguard: the journal at postgresql://"), err
    assert "this worker stopped (its lines go to the other workers when its leases run out)" in err
    assert "run the same command again to rejoin" in err
    assert "Traceback" not in err
    sim.configure(ttft_ms=0)
    code, out, err = batch(sim, str(src), "--journal", url, "--run", run, "--out", str(tmp_path / "b"),
                           "--lease", "1")  # fmt: skip
    assert code == 0, out + err
    check_records(tmp_path / "b", [line["custom_id"] for line in lines])


def test_the_schema_is_migrated_once_by_workers_starting_together_and_a_newer_one_is_refused(
    url: str,
) -> None:
    import threading

    from genguard.bulk.journal_pg import PG_MIGRATIONS

    opened: list[object] = []

    def open_one() -> None:
        try:
            with PostgresJournal(url, run="m") as j:
                opened.append(j.counts().total)
        except BaseException as exc:
            opened.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened == [0, 0, 0, 0]
    with PostgresJournal(url, run="m") as j:
        assert j._db.execute("SELECT version FROM genguard_schema").fetchall() == [(len(PG_MIGRATIONS),)]
        j._db.execute("UPDATE genguard_schema SET version = version + 1")
    with pytest.raises(JournalError, match="written by a newer genguard") as refused:
        PostgresJournal(url, run="m")
    assert "upgrade genguard" in str(refused.value)


def test_the_commands_of_scale_md_run_as_shown(sim: Simulator, url: str, tmp_path: Path) -> None:
    """docs/scale.md's `genguard batch --journal` and `genguard report --journal` commands, run with this test's
    database, simulator and key in place of the page's placeholders."""
    import re
    import shlex

    page = (Path(__file__).resolve().parents[1] / "docs" / "scale.md").read_text()
    commands = [
        shlex.split(block.replace("\\\n", " "))
        for block in re.findall(r"```sh\n(.*?)```", page, flags=re.S)
        for block in [re.sub(r"^#.*\n", "", block, flags=re.M)]
        if "--journal" in block
    ]
    assert [c[:2] for c in commands] == [["genguard", "batch"], ["genguard", "report"]]
    shown = "postgresql://genguard:PASSWORD@db.internal:5432/batches"
    write_input(tmp_path / "requests.jsonl", lines_of(8))

    def local(argv: list[str]) -> list[str]:
        swap = {shown: url, "https://my-gateway.example/v1": sim.base_url, "sk-...": KEY,
                "requests.jsonl": str(tmp_path / "requests.jsonl"), "results/nightly": str(tmp_path / "results")}  # fmt: skip
        return [swap.get(a, a) for a in argv[1:]]

    batch_argv, report_argv = (local(c) for c in commands)
    with pytest.MonkeyPatch.context() as m:
        m.chdir(tmp_path)  # the worker's files go to ./NAME
        for _ in range(2):  # two workers, one after the other: the second joins a finished run
            done = CliRunner().invoke(cli, [*batch_argv, "--progress", "none"])
            assert done.exit_code == 0, done.output
        assert (tmp_path / "nightly-2026-12-02" / "output.jsonl").exists()
        reported = CliRunner().invoke(cli, report_argv)
        assert reported.exit_code == 0, reported.output
    assert (tmp_path / "results" / "output.jsonl").read_bytes() == (
        tmp_path / "nightly-2026-12-02" / "output.jsonl"
    ).read_bytes()


def test_a_worker_stopped_by_its_deadline_leaves_the_rest_to_the_next(
    sim: Simulator, url: str, tmp_path: Path
) -> None:
    sim.configure(ttft_ms=100)
    lines = lines_of(60)
    src = write_input(tmp_path / "in.jsonl", lines)
    run = ["--journal", url, "--run", "dl", "--concurrency", "4"]
    code, out, _ = batch(sim, str(src), *run, "--deadline", "0.3", "--out", str(tmp_path / "a"))
    assert code == 3, out
    assert "the run is not finished: the workers still running end it" in out
    assert not (tmp_path / "a" / "output.jsonl").exists()
    with PostgresJournal(url, run="dl") as journal:
        counts = journal.fresh_counts()
        assert counts.pending > 0
        assert counts.in_flight == 0  # the lines it had not sent went back; those on the wire were answered
    sim.configure(ttft_ms=0)
    code, out, _ = batch(sim, str(src), *run, "--out", str(tmp_path / "b"))
    assert code == 0, out
    assert _requests(sim) == 60
    check_records(tmp_path / "b", [line["custom_id"] for line in lines])


def test_joining_a_run_without_input_needs_the_run_to_exist(sim: Simulator, url: str, tmp_path: Path) -> None:
    code, _, err = batch(sim, "--journal", url, "--run", "typo", "--out", str(tmp_path / "a"))
    assert code == 2
    assert "run 'typo'" in err
    assert "holds no line: give INPUT to start it" in err
    src = write_input(tmp_path / "in.jsonl", lines_of(4))
    assert batch(sim, str(src), "--journal", url, "--run", "real", "--out", str(tmp_path / "b"))[0] == 0
    # Without INPUT, a worker joins the run as it is (here finished: nothing to send).
    code, out, _ = batch(sim, "--journal", url, "--run", "real", "--out", str(tmp_path / "c"))
    assert code == 0, out
    assert "4/4 lines ended" in out
    assert _requests(sim) == 4
