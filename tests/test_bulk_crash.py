"""`genguard batch` stopped from outside, as a subprocess against a simulator in this process: Ctrl-C once
(the requests in flight finish and are written, exit 130), Ctrl-C twice (stop at once, the journal still
consistent), and kill -9 at random instants, many times over, each followed by the same command again. At the
end every line has ended exactly once with its own answer, the files hold whole lines only, and the only
requests answered twice are those of lines in flight at a kill."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from _batch_helpers import Reference, check_own_answers, check_records, lines_of, write_input
from genguard.bulk.runner import _CLAIM_ALONE
from genguard.cli import cli
from genguard.sim import Simulator

KEY = "sk-batch-crash-0123456789abcdef"
pytestmark = pytest.mark.slow


def _command(src: Path, out: Path, sim: Simulator, *extra: str) -> list[str]:
    return [sys.executable, "-m", "genguard", "batch", str(src), "--out", str(out), "--base-url", sim.base_url,
            "--api-key", KEY, "--progress", "plain", *extra]  # fmt: skip


def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _started(
    sim: Simulator, tmp_path: Path, n: int, *extra: str
) -> tuple[list[dict[str, Any]], Path, list[str], subprocess.Popen[bytes]]:
    """A run of ``n`` lines, four requests at a time, started as a subprocess: its lines, folder, the command
    that resumes it (without ``extra``), and the process."""
    lines = lines_of(n)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    argv = _command(src, out, sim, "--concurrency", "4")
    return lines, out, argv, _spawn([*argv, *extra])


def _wait_until(what: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not what():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the run ended first ({process.returncode}): {out.decode()} {err.decode()}")
        if time.monotonic() > end:
            process.kill()
            raise AssertionError("timed out")
        time.sleep(0.01)


def _interrupt(process: subprocess.Popen[bytes]) -> None:
    """SIGINT, returning once the process has taken it: a second one sent before that would merge with it (the
    kernel keeps one pending signal of a kind), and the run would see a single Ctrl-C."""
    process.send_signal(signal.SIGINT)
    status = Path(f"/proc/{process.pid}/status")
    end = time.monotonic() + 10
    while status.exists() and time.monotonic() < end:
        pending = [line for line in status.read_text().splitlines() if line.startswith(("ShdPnd", "SigPnd"))]
        if not any(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)) for line in pending):
            return
        time.sleep(0.0005)


def _answered(sim: Simulator) -> int:
    n: int = sim.stats()["by_status"].get("200", 0)
    return n


def _requests(sim: Simulator) -> int:
    n: int = sim.stats()["requests"]
    return n


def _journal(out: Path) -> dict[str, Any]:
    """The journal as another process reads it after the run is gone (a plain connection: a killed run may
    have left its WAL to recover)."""
    db = sqlite3.connect(out / "journal.sqlite")
    try:
        states = dict(db.execute("SELECT state, count(*) FROM lines GROUP BY state").fetchall())
        ended = {r[0] for r in db.execute("SELECT custom_id FROM lines WHERE state = 'ended'")}
        in_flight = {r[0] for r in db.execute("SELECT custom_id FROM lines WHERE state = 'in_flight'")}
        (resent,) = db.execute("SELECT total(resent) FROM lines").fetchone()
    finally:
        db.close()
    return {"states": states, "ended": ended, "in_flight": in_flight, "resent": int(resent)}


def _told_sent(out: Path) -> set[str]:
    """The lines the sent log (DIR/journal.sent) names: those whose request may have left, one JSON string a
    line, written before the request, zeros after the last (a torn last entry names nothing)."""
    path = out / "journal.sent"
    names = set()
    for raw in path.read_bytes().rstrip(b"\0").splitlines() if path.exists() else []:
        with contextlib.suppress(orjson.JSONDecodeError):
            names.add(orjson.loads(raw))
    return names


def _whole_lines(path: Path) -> list[dict[str, Any]]:
    """The whole lines of an output file; a kill may leave a partial tail, which the next run cuts off."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return [orjson.loads(line) for line in data.split(b"\n")[:-1]]


def _check_consistent(out: Path, total: int) -> dict[str, Any]:
    """What any instant may leave: every line in one state, and every line in the files ended in the journal
    and written once."""
    journal = _journal(out)
    assert sum(journal["states"].values()) == total
    written = [r["custom_id"] for name in ("output.jsonl", "errors.jsonl") for r in _whole_lines(out / name)]
    assert len(written) == len(set(written)), "a line is written twice"
    assert set(written) <= journal["ended"]
    return journal


def _finish(argv: list[str]) -> tuple[int, str]:
    """The same command again, run to its end here (no start-up to pay: the kills are what is tested)."""
    result = CliRunner().invoke(cli, argv[3:])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_finishes_the_requests_in_flight_then_resumes(
    sim: Simulator, tmp_path: Path, signum: signal.Signals
) -> None:
    # SIGTERM (kill, docker stop, a service manager) stops a run as Ctrl-C does.
    # Four requests at a time, each answered after 300 ms: Ctrl-C after the first answers lands with four
    # requests on the wire.
    sim.configure(ttft_ms=300)
    lines, out, argv, process = _started(sim, tmp_path, 40)
    _wait_until(lambda: _requests(sim) >= 6, process)
    # A second run on the same folder meanwhile is refused: each would take the other's lines back.
    second = CliRunner().invoke(cli, argv[3:])
    assert second.exit_code == 2
    assert "in use by another genguard batch run" in second.stderr
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr.decode()
    assert "stopped: interrupted (Ctrl-C or SIGTERM)" in stdout.decode()
    assert "finishing the requests in flight" not in stdout.decode()  # they are finished by the end
    journal = _check_consistent(out, 40)
    # The requests in flight were answered, and their lines written; nothing is left in flight.
    assert journal["states"].get("in_flight", 0) == 0
    assert len(journal["ended"]) == _answered(sim) == _requests(sim)
    check_records(out, sorted(journal["ended"]))
    assert 0 < len(journal["ended"]) < 40
    report = CliRunner().invoke(cli, ["report", str(out)])
    assert "  stopped    interrupted (Ctrl-C or SIGTERM)" in report.stdout
    sim.configure(ttft_ms=0)
    code, text = _finish(argv)
    assert code == 0, text
    assert _requests(sim) == 40  # nothing was sent twice
    assert _journal(out)["resent"] == 0
    check_records(out, [line["custom_id"] for line in lines])


# The second Ctrl-C while the run still sends (at once: its loop looks up every 50 ms), or while it waits for
# the requests in flight.
@pytest.mark.parametrize("gap_s", [0.0, 0.2])
def test_ctrl_c_twice_stops_at_once_and_stays_consistent(
    sim: Simulator, tmp_path: Path, gap_s: float
) -> None:
    sim.configure(ttft_ms=1000)
    lines, out, argv, process = _started(sim, tmp_path, 30)
    _wait_until(lambda: _requests(sim) >= 4, process)
    _interrupt(process)
    time.sleep(gap_s)
    _interrupt(process)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stdout.decode() + stderr.decode()
    assert "Traceback" not in stderr.decode()
    journal = _check_consistent(out, 30)
    # No answer had come (each takes a second): the four requests on the wire stay in flight, to be counted
    # as sent again; nothing ended.
    assert journal["states"] == {"pending": 26, "in_flight": 4}
    sim.configure(ttft_ms=0)
    code, text = _finish(argv)
    assert code == 0, text
    assert "4 requests were sent again after a crash over the whole run (they" in text
    assert _journal(out)["resent"] == 4
    check_records(out, [line["custom_id"] for line in lines])
    assert _answered(sim) - 30 <= 4
    # The finished run reprinted: the run's count stays, and this run sent nothing again.
    code, text = _finish([*argv, "--json"])
    assert code == 0, text
    summary = orjson.loads(text)
    assert (summary["resent_after_crash"], summary["resent_this_run"], summary["sent"]) == (4, 0, 0)


def _fifo_writer(path: Path, process: subprocess.Popen[bytes]) -> int:
    """The writing end of the FIFO ``path``, opened once the run reads it (before: ENXIO), or the run's end."""
    end = time.monotonic() + 30
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            if process.poll() is not None:
                out, err = process.communicate()
                raise AssertionError(
                    f"the run ended first ({process.returncode}): {out.decode()} {err.decode()}"
                ) from None
            assert time.monotonic() < end, "the run never read its input"
            time.sleep(0.01)
            continue
        os.set_blocking(fd, True)
        return fd


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_while_the_input_is_read_sends_nothing_and_keeps_the_run_as_it_was(
    sim: Simulator, tmp_path: Path, signum: signal.Signals
) -> None:
    # A run of 10 lines ended; then an input of 30,000 more (minutes, for a real one of millions) is read from
    # a FIFO that never ends, so the stop lands in the load, whatever the machine's speed. It used to be lost
    # there (taken once the run was sending) or end in tracebacks.
    first = lines_of(10)
    out = tmp_path / "run"
    code, text = _finish(_command(write_input(tmp_path / "first.jsonl", first), out, sim))
    assert code == 0, text
    more = lines_of(30_000, prefix="m")
    fifo = tmp_path / "more.jsonl"
    os.mkfifo(fifo)
    process = _spawn(_command(fifo, out, sim))
    fd = _fifo_writer(fifo, process)
    try:
        # Blocking writes of 3 MB through a 64 KB pipe: once they return, the run is in the middle of reading.
        os.write(fd, b"".join(orjson.dumps(line) + b"\n" for line in [*first, *more[:20_000]]))
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        os.close(fd)
    assert process.returncode == 130, stdout.decode() + stderr.decode()
    assert "interrupted before anything was sent; run the same command again" in stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert _requests(sim) == 10
    journal = _check_consistent(out, 10)  # the load was rolled back: the ten lines that ended, only
    assert journal["states"] == {"ended": 10}
    # The same input again, whole: only the new lines are sent, and nothing counts as sent again.
    code, text = _finish(_command(write_input(tmp_path / "all.jsonl", [*first, *more[:200]]), out, sim))
    assert code == 0, text
    assert _requests(sim) == 210
    assert "sent again" not in text
    assert _journal(out)["resent"] == 0


def test_ctrl_c_while_genguard_batch_reads_its_input_raises_keyboard_interrupt_at_once(
    sim: Simulator, tmp_path: Path
) -> None:
    # From a script, as Python does: KeyboardInterrupt, at once, not after the load (asyncio.run's Ctrl-C is a
    # cancellation, seen only when the load has ended and the run awaits).
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    script = (
        "import genguard\n"
        "try:\n"
        f"    genguard.batch({str(fifo)!r}, out={str(tmp_path / 'run')!r}, base_url={sim.base_url!r}, "
        f"api_key={KEY!r}, progress='none')\n"
        "except KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt')\n"
    )
    process = _spawn([sys.executable, "-c", script])
    fd = _fifo_writer(fifo, process)
    try:
        os.write(fd, b"".join(orjson.dumps(line) + b"\n" for line in lines_of(20_000)))
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        os.close(fd)
    assert stdout.decode().strip() == "KeyboardInterrupt", stderr.decode()
    assert _requests(sim) == 0
    assert _journal(tmp_path / "run")["states"] == {}


def test_a_kill_counts_as_sent_again_only_the_lines_whose_request_left(
    sim: Simulator, tmp_path: Path
) -> None:
    # One request every 2 s (--rpm 30), each answered after 10 s: at the kill, the run has claimed more lines
    # than it sent (its slots wait for the pace, and lines are claimed ahead of the slots).
    sim.configure(ttft_ms=10_000)
    lines, out, argv, process = _started(sim, tmp_path, 12, "--rpm", "30")
    _wait_until(lambda: _requests(sim) >= 1, process)
    time.sleep(0.3)  # the next request leaves 2 s after the first
    process.kill()
    process.communicate()
    left = _requests(sim)
    at_kill = _check_consistent(out, 12)
    assert len(at_kill["in_flight"]) > left, at_kill
    assert len(at_kill["in_flight"] & _told_sent(out)) == left
    sim.configure(ttft_ms=0)
    code, text = _finish(argv)
    assert code == 0, text
    # Counted: the requests that left. The lines that waited for their turn were sent once, by this run.
    assert f"{left} requests were sent again after a crash" in text
    assert _journal(out)["resent"] == left
    check_records(out, [line["custom_id"] for line in lines])
    assert _requests(sim) == 12 + left  # each line once, and again those whose request left before the kill


def test_kill_9_at_random_instants_loses_nothing_and_writes_nothing_twice(
    tmp_path: Path, reference: Reference
) -> None:
    total, kills, concurrency = 300, 8, 16
    rng = random.Random(20240611)
    lines = lines_of(total)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    # 50 answers a second at most, each after 50 ms. A life is killed at most 0.6 s after its first request,
    # or 1.6 s after it was started: even at full speed the eight lives cannot send the 300 lines, so every
    # kill lands on a live run.
    with Simulator(rpm=3000, rate_window_s=1.0, ttft_ms=50) as sim:
        argv = _command(src, out, sim, "--concurrency", str(concurrency))
        # The lines in flight at the last kill whose request may have left: the next life that gets as far as
        # its recovery counts them as sent again (a life killed earlier, in its start-up, leaves them so).
        owed: set[str] = set()
        for i in range(kills):
            before = _requests(sim)
            was = _journal(out) if (out / "journal.sqlite").exists() else None
            ended_before = len(was["ended"]) if was else 0
            resent_before = was["resent"] if was else 0
            process = _spawn(argv)
            if i % 3 == 2:
                # Anywhere from start-up (loading, recovering, repairing the files) to the first answers.
                time.sleep(rng.uniform(0.05, 1.6))
            else:
                _wait_until(lambda before=before: _requests(sim) > before, process)
                time.sleep(rng.uniform(0.0, 0.6))
            assert process.poll() is None, "the run ended before its kill"
            process.kill()
            process.communicate()
            assert process.returncode == -signal.SIGKILL
            at_kill = _check_consistent(out, total)
            # In hand at a kill: the lines in the run's slots (its concurrency at most), those answered whose
            # outcome waited for the next flush (every 50 ms), which is at most what the simulator received in
            # this life and the journal did not record, and those claimed ahead of the slots (one claim's
            # worth at most). Of them, those whose request may have left are named in the sent log: no more
            # than the slots and the unrecorded answers.
            in_flight = at_kill["in_flight"]
            unrecorded = _requests(sim) - before - (len(at_kill["ended"]) - ended_before)
            assert len(in_flight) <= concurrency + _CLAIM_ALONE + max(unrecorded, 0)
            told = in_flight & _told_sent(out)
            assert len(told) <= concurrency + max(unrecorded, 0)
            recovered = at_kill["resent"] - resent_before
            if recovered == 0 and owed:
                # Killed in its start-up, before its recovery: it sent nothing, and left the last kill's lines.
                assert _requests(sim) == before
                assert told == owed
            else:
                assert recovered == len(owed)
            owed = told
        assert 0 < len(_journal(out)["ended"]) < total
        sim.configure(rpm=None)  # the rest at full speed
        code, text = _finish(argv)
        assert code == 0, text
        by_status = sim.stats()["by_status"]
    journal = _journal(out)
    assert journal["states"] == {"ended": total}
    # Whole lines only, each line once, each with the answer to its own request.
    by_id = check_records(out, [line["custom_id"] for line in lines])
    assert check_own_answers(by_id, {line["custom_id"]: line["body"] for line in lines}, reference) == total
    # The only requests answered twice are those of lines taken back from in flight after a kill whose
    # request may have left: the journal counts them (the lines claimed and not sent are not), and the last
    # run says how many.
    # (A 429 is a request sent again too, by design: none is expected at this pace, but it would not count.)
    sent = sum(by_status.values()) - by_status.get("429", 0)
    assert sent - total <= journal["resent"] == at_kill["resent"] + len(owed)
    assert by_status.get("200", 0) - total <= journal["resent"]
    assert journal["resent"] > 0
    assert f"{journal['resent']} requests were sent again after a crash" in text
