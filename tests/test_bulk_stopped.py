"""A run stopped early, over real HTTP against the simulator: the lines a stop cuts off while they wait to retry
keep what they did (their requests counted in the run's, their attempts journaled, what their answers were
billed counted, their attempt budget going on when resumed), and a run cancelled from Python (a cancelled
``abatch``, a KeyboardInterrupt in ``batch``) stops at once as a second Ctrl-C does, its journal consistent.

Each stop comes at a point the test chooses, not at a time: a hook sends the Ctrl-C once the lines have made
the attempts the test waits for, while each waits a minute for its retry; a cancellation waits until the sent
log names the requests on the wire, which the simulator holds unanswered."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import genguard
from _batch_helpers import MODEL, Reference, check_records, journal_rows, lines_of, write_input
from _pg import pg_schema
from genguard.bulk.journal_pg import PostgresJournal
from genguard.bulk.report import summary
from genguard.bulk.runner import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BatchOptions, BatchResult, run_batch
from genguard.bulk.sentlog import SENT_FILE, read_sent
from genguard.cli.batch import _summary_text
from genguard.client.retry import RetryPolicy
from genguard.core.outcome import Attempt, Usage
from genguard.core.pricing import cost_usd
from genguard.sim import Simulator

KEY = "sk-batch-stopped-0123456789abcdef"
# A retry waits a minute: a line cut off by the stop is waiting for it, never on the wire.
SLOW_RETRY = RetryPolicy(max_attempts=3, backoff_base=60.0, backoff_max=60.0, jitter=0.0)


def _requests(sim: Simulator) -> int:
    n: int = sim.stats()["requests"]
    return n


def _ctrl_c_after(attempts: int) -> Callable[[Attempt], None]:
    """A client hook that sends this process a Ctrl-C once ``attempts`` attempts have ended (the run's signal
    handler takes it: the run stops as at a Ctrl-C, with those lines waiting for their retries)."""
    seen = [0]

    def hook(attempt: Attempt) -> None:
        seen[0] += 1
        if seen[0] == attempts:
            os.kill(os.getpid(), signal.SIGINT)

    return hook


def _run(
    src: Path, out: Path, sim: Simulator, *, stop_after: int | None = None, **kwargs: Any
) -> BatchResult:
    hooks = () if stop_after is None else (_ctrl_c_after(stop_after),)
    opts = BatchOptions(out=out, base_url=sim.base_url, api_keys=(KEY,), progress="none", timeout=10.0,
                        hooks=hooks, **kwargs)  # fmt: skip
    return run_batch(src, opts, handle_signals=stop_after is not None)


def _empty_answer_usage(reference: Reference, body: dict[str, Any]) -> Usage:
    """What the simulator bills for an empty answer to ``body`` (its ``empty_output`` scenario)."""
    got = reference.http.post("/chat/completions", json=body, headers={"x-genguard-scenario": "empty_output"})
    got.raise_for_status()
    usage = Usage.from_dict(got.json()["usage"])
    assert usage is not None
    return usage


def _attempt_numbers(out: Path) -> dict[str, list[int]]:
    got: dict[str, list[int]] = {}
    for cid, number in journal_rows(out, "SELECT custom_id, number FROM attempt_events ORDER BY id"):
        got.setdefault(cid, []).append(number)
    return got


# -- a line a stop cuts off keeps what it did ---------------------------------------------------------------


def test_lines_a_stop_cuts_off_keep_their_attempts_and_their_budget_goes_on(
    sim: Simulator, tmp_path: Path
) -> None:
    # Every request fails with a 500, and a retry waits a minute: each run stops (Ctrl-C) once the four lines
    # have made one attempt more, while they wait for their next.
    sim.configure(scenario="server_error")
    lines = lines_of(4)
    ids = [line["custom_id"] for line in lines]
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    first = _run(src, out, sim, concurrency=4, retry=SLOW_RETRY, stop_after=4)
    assert first.exit_code == EXIT_INTERRUPTED
    # The four requests reached the provider: this run sent them, though no line ended.
    assert first.sent == _requests(sim) == 4
    c = first.counts
    assert (c.ended, c.pending, c.in_flight, c.tried) == (0, 4, 0, 4)
    assert _attempt_numbers(out) == {cid: [1] for cid in ids}
    text = _summary_text(first, None)
    assert "4 lines to resume, 4 of them tried already" in text
    assert "not sent yet" not in text
    assert "this run: 4 requests" in text
    # Resumed, each line's attempts go on: the second is numbered 2.
    second = _run(src, out, sim, concurrency=4, retry=SLOW_RETRY, stop_after=4)
    assert (second.exit_code, second.sent, _requests(sim)) == (EXIT_INTERRUPTED, 4, 8)
    assert _attempt_numbers(out) == {cid: [1, 2] for cid in ids}
    # The third run has one attempt left of three: each line ends failed after it, with no wait, and no line
    # was sent more than its three attempts in all.
    done = _run(src, out, sim, concurrency=4, retry=SLOW_RETRY)
    assert (done.exit_code, done.sent, _requests(sim)) == (EXIT_FAILED, 4, 12)
    assert done.counts.resent == 0
    assert _attempt_numbers(out) == {cid: [1, 2, 3] for cid in ids}
    by_id = check_records(out, ids)
    for record in by_id.values():
        g = record["genguard"]
        assert (g["code"], g["attempts"]) == ("server_error", 3)
    for (outcome,) in journal_rows(out, "SELECT outcome FROM results"):
        # The journal's outcome holds this run's attempt, numbered after the others.
        assert [a["number"] for a in orjson.loads(outcome)["history"]] == [3]
    assert journal_rows(out, "SELECT DISTINCT attempts, tried FROM lines") == [(3, 0)]
    # The report counts every attempt of every run.
    data = summary(out)
    assert data["retries"]["attempts_total"] == 12
    assert data["retries"]["attempts_per_line"] == {"3": 4}


def test_a_shared_run_keeps_the_attempts_of_lines_a_stop_cuts_off(sim: Simulator, tmp_path: Path) -> None:
    # The same in a run shared through PostgreSQL: the stop's lines keep their attempts there, and the next
    # worker goes on with each line's budget.
    sim.configure(scenario="server_error")
    lines = lines_of(3)
    src = write_input(tmp_path / "in.jsonl", lines)
    with pg_schema() as url:
        shared = {"journal": url, "run": "cut", "concurrency": 3, "retry": SLOW_RETRY}
        for run in (1, 2):  # a Ctrl-C once each line made one more attempt
            stopped = _run(src, tmp_path / f"w{run}", sim, stop_after=3, **shared)
            assert (stopped.exit_code, stopped.sent, _requests(sim)) == (EXIT_INTERRUPTED, 3, 3 * run)
            assert (stopped.counts.pending, stopped.counts.tried) == (3, 3)
        done = _run(src, tmp_path / "w3", sim, **shared)
        assert (done.exit_code, done.sent, _requests(sim)) == (EXIT_FAILED, 3, 9)
        with PostgresJournal(url, run="cut") as journal:
            numbers: dict[str, list[int]] = {}
            for event in journal.events():
                numbers.setdefault(event.custom_id, []).append(event.number)
            assert numbers == {line["custom_id"]: [1, 2, 3] for line in lines}
            assert {e.extra["attempts"] for e in journal.ended()} == {3}


def test_what_a_line_cut_off_was_billed_counts_with_the_run(
    sim: Simulator, tmp_path: Path, reference: Reference
) -> None:
    # A 200 with an empty answer is billed for its prompt, and retried: the stop cuts both lines off after it.
    sim.configure(scenario="empty_output")
    lines = lines_of(2)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    stopped = _run(src, out, sim, concurrency=2, retry=SLOW_RETRY, stop_after=2)
    assert stopped.exit_code == EXIT_INTERRUPTED
    assert stopped.sent == _requests(sim) == 2
    billed = [_empty_answer_usage(reference, line["body"]) for line in lines]
    c = stopped.counts
    assert (c.pending, c.tried) == (2, 2)
    assert (c.prompt_tokens, c.completion_tokens, c.total_tokens) == tuple(
        sum(getattr(u, name) or 0 for u in billed)
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
    )
    total = sum(u.total_tokens or 0 for u in billed)
    assert total > 0
    price = [cost_usd(MODEL, u) for u in billed]
    if all(p is not None for p in price):
        assert c.cost_usd == pytest.approx(sum(p for p in price if p is not None))
        assert c.cost_usd > 0
    assert f"{total} tokens" in _summary_text(stopped, None)
    # The report counts them too, as spent on no line's final answer.
    assert summary(out)["tokens"]["set_aside"] == total
    # Resumed against a provider that answers, each line ends ok with its second attempt, and the run's
    # spend holds both runs'.
    sim.configure(scenario="ok")
    done = _run(src, out, sim, concurrency=2, retry=SLOW_RETRY)
    assert (done.exit_code, done.sent, _requests(sim)) == (EXIT_OK, 2, 4)
    assert done.counts.prompt_tokens == 2 * c.prompt_tokens  # the answers are billed the same prompts
    by_id = check_records(out, [line["custom_id"] for line in lines])
    assert {r["genguard"]["attempts"] for r in by_id.values()} == {2}


def test_a_max_cost_run_counts_what_a_line_cut_off_was_billed(sim: Simulator, tmp_path: Path) -> None:
    # The cap is spent by what the first run's empty answers were billed: resumed under it, nothing is sent.
    sim.configure(scenario="empty_output")
    lines = lines_of(2)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    stopped = _run(src, out, sim, concurrency=2, retry=SLOW_RETRY, stop_after=2)
    spent = stopped.counts.cost_usd
    if not spent:
        pytest.skip("genai-prices is not installed")
    sim.configure(scenario="ok")
    capped = _run(src, out, sim, concurrency=2, retry=SLOW_RETRY, max_cost=spent * 1.01)
    assert capped.stopped is not None
    assert "cost cap" in capped.stopped
    assert f"spent ${spent:.4f}" in capped.stopped
    assert _requests(sim) == 2


# -- a run cancelled from Python ----------------------------------------------------------------------------


def _callback_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


def test_a_cancelled_abatch_stops_at_once_and_its_journal_stays_consistent(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The simulator holds every answer back: four requests go on the wire, sixteen lines wait, claimed ahead.
    sim.configure(ttft_ms=60_000)
    lines = lines_of(20)
    ids = [line["custom_id"] for line in lines]
    out = tmp_path / "run"

    async def cancelled_once_four_are_on_the_wire() -> None:
        run = asyncio.create_task(
            genguard.abatch(
                lines, out=out, base_url=sim.base_url, api_key=KEY, concurrency=4, progress="none"
            )
        )
        while len(read_sent(out / SENT_FILE) or ()) < 4:
            assert not run.done()
            await asyncio.sleep(0.01)
        run.cancel()
        await run

    with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled_once_four_are_on_the_wire())
    assert _callback_errors(caplog) == []
    # The four on the wire stay in flight, named in the sent log; the lines never sent went back to pending.
    on_wire = read_sent(out / SENT_FILE)
    assert on_wire is not None
    assert len(on_wire) == 4
    state = dict(journal_rows(out, "SELECT state, count(*) FROM lines GROUP BY state"))
    assert state == {"in_flight": 4, "pending": 16}
    assert {
        cid for (cid,) in journal_rows(out, "SELECT custom_id FROM lines WHERE state = 'in_flight'")
    } == on_wire
    assert summary(out)["meta"]["stopped"] == "interrupted (KeyboardInterrupt, or the call was cancelled)"
    # Resumed, only the four count as sent again.
    sim.configure(ttft_ms=0)
    done = genguard.batch(None, out=out, base_url=sim.base_url, api_key=KEY, progress="none")
    assert (done.exit_code, done.resent, done.sent) == (EXIT_OK, 4, 20)
    check_records(out, ids)


def test_a_keyboard_interrupt_in_batch_stops_at_once_and_its_journal_stays_consistent(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Ctrl-C in a script calling genguard.batch(): asyncio's runner cancels the run, which raises
    # KeyboardInterrupt once it has stopped. It comes after 6 answers, with more on the wire and most lines
    # claimed ahead, unsent.
    lines = lines_of(40)
    ids = [line["custom_id"] for line in lines]
    out = tmp_path / "run"
    with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(KeyboardInterrupt):
        genguard.batch(lines, out=out, base_url=sim.base_url, api_key=KEY, concurrency=4, progress="none",
                       hooks=[_ctrl_c_after(6)])  # fmt: skip
    assert _callback_errors(caplog) == []
    sent = _requests(sim)
    state = dict(journal_rows(out, "SELECT state, count(*) FROM lines GROUP BY state"))
    in_flight = {cid for (cid,) in journal_rows(out, "SELECT custom_id FROM lines WHERE state = 'in_flight'")}
    ended = state.get("ended", 0)
    assert ended >= 6
    assert ended + len(in_flight) <= sent < 40
    assert in_flight <= (read_sent(out / SENT_FILE) or set())
    done = genguard.batch(lines, out=out, base_url=sim.base_url, api_key=KEY, progress="none")
    # Only the lines whose request may have left are counted as sent again; every other is sent once.
    assert (done.exit_code, done.resent) == (EXIT_OK, len(in_flight))
    assert _requests(sim) == 40 + len(in_flight)
    check_records(out, ids)
