"""Three `genguard batch` worker processes on one run in a PostgreSQL journal (a real server, a schema of this
test's own), one of them killed with SIGKILL at random instants, several times, and started again. At the end
every line has ended exactly once with its own answer, the files are written once, and the only lines whose
request reached the provider twice are lines that a killed worker held at the instant it was killed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from _batch_helpers import Reference, check_own_answers, check_records, lines_of, write_input
from _pg import pg_schema
from genguard.bulk.journal_pg import PostgresJournal
from genguard.cli import cli
from genguard.sim import Simulator

KEY = "sk-shared-run-0123456789abcdef"
pytestmark = pytest.mark.slow


class Recorder:
    """An ASGI layer in front of the simulator counting the chat requests that reach it, by prompt: which line
    was sent how many times, whatever worker sent it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.prompts: Counter[str] = Counter()

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            await self.app(scope, receive, send)
            return
        messages = []
        more = True
        while more:
            message = await receive()
            messages.append(message)
            more = message.get("more_body", False)
        body = orjson.loads(b"".join(m.get("body", b"") for m in messages))
        self.prompts[body["messages"][0]["content"]] += 1
        replay = iter(messages)

        async def again() -> Any:
            return next(replay, None) or await receive()

        await self.app(scope, again, send)


def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _wait_until(what: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not what():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(
                f"the worker ended first ({process.returncode}): {out.decode()} {err.decode()}"
            )
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def _held_by(journal: PostgresJournal, pid: int) -> set[str]:
    """The lines in flight for the worker of process ``pid`` (worker ids are host:pid:random)."""
    return {cid for cid, worker in journal.in_flight().items() if worker.split(":")[1] == str(pid)}


@pytest.mark.timeout(240)
def test_three_workers_one_killed_again_and_again_end_every_line_once(
    tmp_path: Path, reference: Reference
) -> None:
    total, kills, concurrency = 700, 5, 4
    rng = random.Random(20261202)
    lines = lines_of(total)
    prompt_of = {line["body"]["messages"][0]["content"]: line["custom_id"] for line in lines}
    src = write_input(tmp_path / "in.jsonl", lines)
    # Each answer takes 150 ms: three workers of four requests each end about 80 lines a second, so the run
    # lasts several seconds plus the leases of the killed workers; every kill lands on a live run.
    sim = Simulator(ttft_ms=150)
    recorder = Recorder(sim.app)
    sim.app = recorder
    with pg_schema() as url, sim, PostgresJournal(url, run="shared") as journal:

        def argv(n: int) -> list[str]:
            return [sys.executable, "-m", "genguard", "batch", str(src), "--journal", url, "--run", "shared",
                    "--out", str(tmp_path / f"w{n}"), "--base-url", sim.base_url, "--api-key", KEY,
                    "--progress", "none", "--concurrency", str(concurrency), "--lease", "4", "--json"]  # fmt: skip

        workers = {n: _spawn(argv(n)) for n in range(3)}
        held_at_kills: set[str] = set()
        lost = 0
        finished: list[tuple[int, bytes, bytes]] = []
        try:
            for i in range(kills):
                victim = rng.randrange(3)
                process = workers[victim]
                if i % 3 == 2:
                    time.sleep(rng.uniform(0.05, 1.5))  # anywhere, start-up (loading, joining) included
                else:
                    _wait_until(lambda p=process: bool(_held_by(journal, p.pid)), process)
                    time.sleep(rng.uniform(0.0, 0.5))
                assert process.poll() is None, process.communicate()
                # Anywhere from start-up (loading, joining) to the last lines.
                assert journal.fresh_counts().ended < total, "the run ended before this kill"
                process.send_signal(signal.SIGKILL)
                process.communicate(timeout=30)
                assert process.returncode == -signal.SIGKILL
                # Dead, its rows stay as they were until its leases (4 s long, renewed every 1.3 s) run out.
                held = _held_by(journal, process.pid)
                held_at_kills |= held
                lost += len(held)
                workers[victim] = _spawn(argv(victim))
            for n, process in workers.items():
                out, err = process.communicate(timeout=120)
                finished.append((n, out, err))
                assert process.returncode == 0, err.decode()
        finally:
            for process in workers.values():
                if process.poll() is None:
                    process.kill()
                    process.communicate()
        counts = journal.fresh_counts()
        assert (counts.pending, counts.in_flight, counts.ok, counts.failed) == (0, 0, total, 0)
        writer = journal.finished_by()
        # Whole lines only, each line once, each with the answer to its own request, written by one worker.
        summaries = [orjson.loads(out) for _, out, _ in finished]
        wrote = [s for s in summaries if s["wrote_outputs"]]
        assert len(wrote) <= 1
        written = [n for n in range(3) if (tmp_path / f"w{n}" / "output.jsonl").exists()]
        assert len(written) == 1, written
        out_dir = tmp_path / f"w{written[0]}"
        by_id = check_records(out_dir, [line["custom_id"] for line in lines])
        assert (
            check_own_answers(by_id, {line["custom_id"]: line["body"] for line in lines}, reference) == total
        )
        assert writer is not None
        assert all(s["finished_by"] == writer for s in summaries)
        # The same files from the journal, as `genguard report` writes them anywhere: byte for byte.
        report = CliRunner().invoke(
            cli, ["report", "--journal", url, "--run", "shared", "--out", str(tmp_path / "r")]
        )
        assert report.exit_code == 0, report.output
        for name in ("output.jsonl", "errors.jsonl"):
            assert (tmp_path / "r" / name).read_bytes() == (out_dir / name).read_bytes()
        assert journal.counts().resent >= 1

    # Every line reached the provider; those that reached it twice were held by a worker at its kill.
    sent = Counter({prompt_of[p]: n for p, n in recorder.prompts.items()})
    assert set(sent) == set(prompt_of.values())
    twice = {cid for cid, n in sent.items() if n > 1}
    assert twice <= held_at_kills, twice - held_at_kills
    assert lost > 0, "no kill found a line in flight: the test proved nothing"
    assert sum(sent.values()) - total <= lost
