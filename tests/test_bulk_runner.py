"""The batch runner over real HTTP against the simulator: every line ends exactly once with its own answer,
a resumed run sends only what is left, per-line failures are named and retried as the taxonomy says, and a
failure that concerns the whole run (quota on every key, every key refused, the cost cap, the deadline) stops
it with the rest pending, to be finished by the same command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _batch_helpers import (
    Reference,
    body_of,
    check_own_answers,
    check_records,
    journal_rows,
    lines_of,
    records,
    states,
    write_input,
)
from genguard.bulk.runner import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    BatchOptions,
    BatchResult,
    run_batch,
)
from genguard.sim import Simulator

KEY = "sk-batch-runner-0123456789abcdef"


@pytest.fixture(scope="module")
def reference() -> Iterator[Reference]:
    with Simulator() as ref:
        r = Reference(ref)
        yield r
        r.close()


def _run(path: Path | None, out: Path, sim: Simulator, **kwargs: Any) -> BatchResult:
    opts: dict[str, Any] = {"api_keys": (KEY,), "concurrency": 8, "progress": "none", "timeout": 10.0}
    opts.update(kwargs)
    return run_batch(path, BatchOptions(out=out, base_url=sim.base_url, **opts))


def _requests(sim: Simulator) -> int:
    n: int = sim.stats()["requests"]
    return n


def _bodies(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["custom_id"]: line["body"] for line in lines}


# -- every line ends once, with its own answer ----------------------------------------------------------------


def test_every_line_ends_once_with_its_own_answer(
    sim: Simulator, tmp_path: Path, reference: Reference
) -> None:
    lines = lines_of(40, words=3)
    # Prompts of different lengths: a mix-up of two lines shows in the usage as well as in the text.
    for i, line in enumerate(lines):
        line["body"] = body_of(i + 1, words=i % 7)
    src = write_input(tmp_path / "in.jsonl", lines)
    result = _run(src, tmp_path / "run", sim)
    assert result.exit_code == EXIT_OK
    assert result.finished
    assert result.counts.ok == 40
    assert result.sent == _requests(sim) == 40
    by_id = check_records(tmp_path / "run", [line["custom_id"] for line in lines])
    assert check_own_answers(by_id, _bodies(lines), reference) == 40
    # The journal's record of each line agrees with the response written out.
    rows = journal_rows(
        tmp_path / "run", "SELECT custom_id, status_code, prompt_tokens, total_tokens FROM lines"
    )
    for cid, status, prompt, total in rows:
        usage = by_id[cid]["response"]["body"]["usage"]
        assert (status, prompt, total) == (200, usage["prompt_tokens"], usage["total_tokens"])
    assert states(tmp_path / "run") == {"ended": 40}


def test_failed_lines_exit_1_each_with_its_own_answer(
    sim: Simulator, tmp_path: Path, reference: Reference
) -> None:
    # content_filtered is final (not retried): every request is one line's only attempt, so the seeded dice
    # fail the same number of lines in every run, whichever lines they fall on.
    sim.configure(chaos="content_filtered=0.3")
    lines = lines_of(30)
    src = write_input(tmp_path / "in.jsonl", lines)
    result = _run(src, tmp_path / "run", sim)
    assert result.exit_code == EXIT_FAILED
    assert result.finished
    assert result.counts.failed == result.counts.by_code["content_filtered"] > 0
    assert _requests(sim) == 30
    by_id = check_records(tmp_path / "run", [line["custom_id"] for line in lines])
    assert check_own_answers(by_id, _bodies(lines), reference) == 30
    _, failed = records(tmp_path / "run")
    for r in failed:
        # A 200 judged a failure keeps its response, and error stays null (the OpenAI Batch rule).
        assert r["response"]["status_code"] == 200
        assert r["genguard"]["code"] == "content_filtered"
        assert r["genguard"]["kind"] == "soft"
        assert r["genguard"]["cause"]
        assert r["genguard"]["fix"]


# -- resuming ------------------------------------------------------------------------------------------------------


def test_the_same_run_again_sends_nothing(sim: Simulator, tmp_path: Path) -> None:
    sim.configure(chaos="truncated=0.2")
    src = write_input(tmp_path / "in.jsonl", lines_of(20))
    out = tmp_path / "run"
    first = _run(src, out, sim)
    assert first.finished
    sent = _requests(sim)
    files = [(out / name).read_bytes() for name in ("output.jsonl", "errors.jsonl")]
    again = _run(src, out, sim)
    assert _requests(sim) == sent
    assert again.sent == 0
    assert again.exit_code == first.exit_code
    assert again.counts == first.counts
    assert [(out / name).read_bytes() for name in ("output.jsonl", "errors.jsonl")] == files
    # Resuming from the folder alone (no input) is the same.
    assert _run(None, out, sim).counts == first.counts
    assert _requests(sim) == sent


def test_a_run_stopped_by_its_deadline_sends_nothing_more_and_resumes(sim: Simulator, tmp_path: Path) -> None:
    # One request at a time, each answered after 300 ms, a deadline of 100 ms: when the deadline passes, the
    # first request is on the wire and nothing else may be sent.
    sim.configure(ttft_ms=300)
    lines = lines_of(10)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    stopped = _run(src, out, sim, concurrency=1, deadline=0.1)
    assert stopped.exit_code == EXIT_STOPPED
    assert stopped.stopped is not None
    assert "deadline" in stopped.stopped
    assert _requests(sim) == 1
    assert (stopped.counts.ended, stopped.counts.pending, stopped.counts.in_flight) == (1, 9, 0)
    check_records(out, [lines[0]["custom_id"]])
    sim.configure(ttft_ms=0)
    done = _run(src, out, sim, concurrency=1)
    assert done.exit_code == EXIT_OK
    assert _requests(sim) == 10
    assert done.counts.resent == 0
    check_records(out, [line["custom_id"] for line in lines])
