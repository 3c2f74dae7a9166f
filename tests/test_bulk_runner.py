"""The batch runner over real HTTP against the simulator: every line ends exactly once with its own answer,
a resumed run sends only what is left, per-line failures are named and retried as the taxonomy says, and a
failure that concerns the whole run (quota on every key, every key refused, a provider not there or hung, the
cost cap, the deadline) stops it with the rest pending, to be finished by the same command."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

import genguard
from _batch_helpers import (
    MODEL,
    URL,
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
from genguard.bulk import runner as runner_module
from genguard.bulk.journal import BatchCounts
from genguard.bulk.progress import PlainProgress
from genguard.bulk.report import render_html, render_summary, summary
from genguard.bulk.runner import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    BadInput,
    BatchOptions,
    BatchResult,
    run_batch,
)
from genguard.cli import cli
from genguard.cli.batch import _summary_text
from genguard.client.gate import estimate_tokens
from genguard.client.retry import RetryPolicy
from genguard.core.outcome import Usage
from genguard.core.pricing import cost_usd
from genguard.sim import Simulator
from genguard.sim._chat import openrouter_cost

KEY = "sk-batch-runner-0123456789abcdef"
# A chat completion, whole, for the tests' own servers.
FINE = orjson.dumps({
    "id": "c", "object": "chat.completion", "created": 1, "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
})  # fmt: skip


def _run(path: Path | None, out: Path, sim: Simulator, **kwargs: Any) -> BatchResult:
    opts: dict[str, Any] = {"api_keys": (KEY,), "concurrency": 8, "progress": "none", "timeout": 10.0}
    opts.update(kwargs)
    return run_batch(path, BatchOptions(out=out, base_url=sim.base_url, **opts))


def _requests(sim: Simulator) -> int:
    n: int = sim.stats()["requests"]
    return n


def _same_counts(a: BatchCounts, b: BatchCounts) -> None:
    # The cost is a sum of floats, added line by line as a run goes and by SQLite when a run starts: the same
    # figures in another order may differ in their last bit.
    assert replace(a, cost_usd=0.0) == replace(b, cost_usd=0.0)
    assert a.cost_usd == pytest.approx(b.cost_usd)


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


def test_responses_and_completions_lines_are_judged_as_chat_answers_are(
    sim: Simulator, tmp_path: Path
) -> None:
    # Chat and Responses API lines in one input; a third of the answers are cut short. A Responses answer cut
    # short says so in its status ("incomplete", max_output_tokens), not in a finish_reason: it must fail too.
    sim.configure(chaos="truncated=0.3")
    responses = [
        {"custom_id": f"resp-{i}", "method": "POST", "url": "/v1/responses",
         "body": {"model": "gpt-4o-mini", "instructions": "Answer in one sentence.", "max_output_tokens": 200,
                  "input": [{"role": "user", "content": f"Question {i}: why is the sky blue at noon?"}]}}
        for i in range(20)
    ]  # fmt: skip
    # Legacy completions too (a base model behind vLLM, say): the default max_tokens (16) cuts every answer short.
    completions = [
        {"custom_id": f"cmpl-{i}", "url": "/v1/completions",
         "body": {"model": "gpt-4o-mini", "prompt": f"Once upon a time, in town {i},"}}
        for i in range(3)
    ]  # fmt: skip
    lines = [*lines_of(10), *responses, *completions]
    src = write_input(tmp_path / "in.jsonl", lines)
    result = _run(src, tmp_path / "run", sim)
    assert result.finished
    by_id = check_records(tmp_path / "run", [line["custom_id"] for line in lines])
    assert _requests(sim) == 33  # truncated is final: one request a line
    for i in range(3):
        r = by_id[f"cmpl-{i}"]
        assert r["response"]["body"]["choices"][0]["finish_reason"] == "length"
        assert (r["genguard"]["code"], r["genguard"]["text"]) == (
            "truncated",
            r["response"]["body"]["choices"][0]["text"],
        )
    judged = {cid: r for cid, r in by_id.items() if cid.startswith("resp-")}
    truncated = [r for r in judged.values() if r["genguard"]["code"] == "truncated"]
    assert 0 < len(truncated) < len(judged)
    for r in judged.values():
        body = r["response"]["body"]
        assert (r["response"]["status_code"], body["object"]) == (200, "response")
        g = r["genguard"]
        if body["status"] == "incomplete":
            assert body["incomplete_details"] == {"reason": "max_output_tokens"}
            assert (g["ok"], g["kind"], g["code"]) == (False, "soft", "truncated")
        else:
            assert body["status"] == "completed"
            assert (g["ok"], g["text"]) == (True, body["output"][0]["content"][0]["text"])
        # Usage read from input_tokens/output_tokens, and priced.
        assert g["usage"]["prompt_tokens"] == body["usage"]["input_tokens"]
        assert g["usage"]["completion_tokens"] == body["usage"]["output_tokens"]
        u = body["usage"]
        priced = cost_usd("gpt-4o-mini", Usage(u["input_tokens"], u["output_tokens"], u["total_tokens"]))
        assert g["cost_usd"] == pytest.approx(priced)
    assert result.counts.by_code["truncated"] == sum(
        1 for r in by_id.values() if r["genguard"]["code"] == "truncated"
    )


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
    _same_counts(again.counts, first.counts)
    assert [(out / name).read_bytes() for name in ("output.jsonl", "errors.jsonl")] == files
    # Resuming from the folder alone (no input) is the same.
    _same_counts(_run(None, out, sim).counts, first.counts)
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
    # Why it stopped stays with the run, for whoever reads its report later.
    data = summary(out)
    assert f"  stopped    {stopped.stopped}" in render_summary(data)
    assert "It stopped: the deadline of 0.1 s passed" in render_html(data)
    sim.configure(ttft_ms=0)
    done = _run(src, out, sim, concurrency=1)
    assert done.exit_code == EXIT_OK
    assert _requests(sim) == 10
    assert done.counts.resent == 0
    check_records(out, [line["custom_id"] for line in lines])
    assert "  stopped  " not in render_summary(summary(out))


def test_a_deadline_stops_the_run_while_every_line_waits_for_its_turn(sim: Simulator, tmp_path: Path) -> None:
    # One request every 10 s (--rpm 6): after the first, every slot waits for the pace, and no line ends to
    # look at the clock; the deadline of 1 s still stops the run then, not when the next line ends.
    lines = lines_of(10)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    start = time.monotonic()
    stopped = _run(src, out, sim, concurrency=4, deadline=1.0, rpm=6)
    assert time.monotonic() - start < 6.0  # the second request's turn comes at 10 s
    assert stopped.exit_code == EXIT_STOPPED
    assert stopped.stopped is not None
    assert "deadline" in stopped.stopped
    assert _requests(sim) == stopped.counts.ended <= 1
    assert (stopped.counts.pending, stopped.counts.in_flight) == (10 - stopped.counts.ended, 0)


@pytest.mark.parametrize("progress", ["plain", "none"])
def test_a_large_input_says_how_far_its_reading_got_before_anything_is_sent(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    progress: str,
) -> None:  # fmt: skip
    # A million lines take 20 s to read and check before the first request: the run says so as it goes (here
    # every 10 lines, at once), except when asked for no progress (--json, --progress none).
    monkeypatch.setattr(runner_module, "_LOAD_NOTE_LINES", 10)
    monkeypatch.setattr(runner_module, "_LOAD_NOTE_EVERY_S", 0.0)
    src = write_input(tmp_path / "in.jsonl", lines_of(25))
    done = _run(src, tmp_path / "run", sim, progress=progress)
    assert done.exit_code == EXIT_OK
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reading the input")]
    if progress == "none":
        assert said == []
    else:
        assert [line.split(" lines checked")[0] for line in said] == [
            "reading the input: 10",
            "reading the input: 20",
        ]
        assert all(line.endswith("nothing sent yet") for line in said)


# -- sending failed or changed lines again, and input refused ---------------------------------------------------


def _mixed_lines() -> list[dict[str, Any]]:
    """Twelve lines: four cut short by max_tokens (truncated), two the provider refuses (bad_request), six ok."""
    lines = lines_of(12)
    for line in lines[:4]:
        line["body"]["max_tokens"] = 1
    for line in lines[4:6]:
        line["body"]["temperature"] = 5
    return lines


def test_per_line_failures_are_named_and_end_the_line(
    sim: Simulator, tmp_path: Path, reference: Reference
) -> None:
    lines = _mixed_lines()
    lines[6]["body"]["model"] = "gpt-4o"
    lines[6]["body"]["messages"][0]["content"] += " and more" * 200
    sim.configure(context_window_for={"gpt-4o": 200})
    src = write_input(tmp_path / "in.jsonl", lines)
    result = _run(src, tmp_path / "run", sim)
    assert result.exit_code == EXIT_FAILED
    assert dict(result.counts.by_code) == {"truncated": 4, "bad_request": 2, "context_length_exceeded": 1}
    # None of them is worth sending again unchanged: one request each.
    assert _requests(sim) == 12
    by_id = check_records(tmp_path / "run", [line["custom_id"] for line in lines])
    check_own_answers(by_id, _bodies(lines), reference)
    for cid, expected in [
        ("q-0001", "truncated"),
        ("q-0005", "bad_request"),
        ("q-0007", "context_length_exceeded"),
    ]:
        g = by_id[cid]["genguard"]
        assert g["code"] == expected
        assert g["cause"]
        assert g["fix"]
        assert g["attempts"] == 1
    refused = by_id["q-0005"]["response"]
    assert refused["status_code"] == 400
    assert "temperature" in refused["body"]["error"]["message"]


# rate_limited says how long to wait (retry-after: 50 ms here); server_error does not, so the policy's backoff
# (200 ms, then 400 ms, no jitter) is the wait.
@pytest.mark.parametrize(("scenario", "waits"), [("rate_limited:1", [0.05]), ("server_error:2", [0.2, 0.4])])
def test_retryable_failures_are_retried_with_the_servers_wait(
    sim: Simulator, tmp_path: Path, scenario: str, waits: list[float]
) -> None:
    sim.configure(scenario=scenario, retry_after_s=0.05)
    attempts = len(waits) + 1
    # Few lines: a run starts at a few requests a second until its first answer says more.
    lines = lines_of(4)
    src = write_input(tmp_path / "in.jsonl", lines)
    retry = RetryPolicy(backoff_base=0.2, jitter=0.0)
    result = _run(src, tmp_path / "run", sim, concurrency=4, retry=retry)
    assert result.exit_code == EXIT_OK
    assert _requests(sim) == 4 * attempts
    stats = sim.stats()
    # The simulator's verdict on the client: every retry came after the wait the failure asked for.
    assert stats["verdict"]["ok"], stats["verdict"]["problems"]
    assert stats["verdict"]["ignored_retry_after"] == 0
    assert stats["verdict"]["retries_without_backoff"] == 0
    by_id = check_records(tmp_path / "run", [line["custom_id"] for line in lines])
    code = scenario.partition(":")[0]
    for r in by_id.values():
        assert r["genguard"]["attempts"] == attempts
    events = journal_rows(tmp_path / "run", "SELECT custom_id, code, wait_s FROM attempt_events ORDER BY id")
    assert len(events) == 4 * attempts
    for cid in by_id:
        mine = [(c, w) for i, c, w in events if i == cid]
        assert [c for c, _ in mine] == [code] * (attempts - 1) + [None]
        assert [w for _, w in mine[:-1]] == pytest.approx(waits)


def test_retry_failed_sends_only_those_lines_again(sim: Simulator, tmp_path: Path) -> None:
    lines = _mixed_lines()
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    first = _run(src, out, sim)
    assert first.exit_code == EXIT_FAILED
    assert dict(first.counts.by_code) == {"truncated": 4, "bad_request": 2}
    assert _requests(sim) == 12
    ids = [line["custom_id"] for line in lines]

    # By code: the four truncated lines, and no other, are sent again (and fail again: same request).
    by_code = _run(src, out, sim, retry_failed=("truncated",))
    assert by_code.sent == 4
    assert _requests(sim) == 16
    assert (by_code.counts.ok, by_code.counts.by_code) == (first.counts.ok, first.counts.by_code)
    # What the first answers cost stays counted: they were paid for.
    assert by_code.counts.cost_usd > first.counts.cost_usd
    check_records(out, ids)
    archived = journal_rows(out, "SELECT custom_id, reason FROM history ORDER BY custom_id")
    assert archived == [(cid, "retry_failed") for cid in ids[:4]]

    # All: the six failed lines.
    sim.configure(scenario="ok")
    every = _run(src, out, sim, retry_failed=())
    assert every.sent == 6
    assert _requests(sim) == 22
    check_records(out, ids)
    # Nothing failed is left to retry: nothing is sent.
    ok_only = tmp_path / "ok.jsonl"
    write_input(ok_only, lines_of(3))
    assert _run(ok_only, tmp_path / "run2", sim).exit_code == EXIT_OK
    again = _run(ok_only, tmp_path / "run2", sim, retry_failed=())
    assert (again.exit_code, again.sent) == (EXIT_OK, 0)
    assert _requests(sim) == 25


def test_retry_failed_after_raising_max_tokens_sends_the_new_requests(sim: Simulator, tmp_path: Path) -> None:
    lines = lines_of(8)
    for line in lines[:3]:
        line["body"]["max_tokens"] = 1
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    first = _run(src, out, sim)
    assert dict(first.counts.by_code) == {"truncated": 3}
    # The user raises max_tokens for the truncated lines and sends only them again: no --rerun-changed needed.
    for line in lines[:3]:
        line["body"]["max_tokens"] = 500
    write_input(src, lines)
    again = _run(src, out, sim, retry_failed=("truncated",))
    assert (again.exit_code, again.sent, again.counts.ok) == (EXIT_OK, 3, 8)
    by_id = check_records(out, [line["custom_id"] for line in lines])
    assert {cid for cid, r in by_id.items() if r["genguard"]["finish_reason"] == "stop"} == set(by_id)
    # A changed line that did not fail is still refused: its answer was for the old request.
    lines[5]["body"]["max_tokens"] = 7
    write_input(src, lines)
    with pytest.raises(BadInput) as refused:
        _run(src, out, sim, retry_failed=("truncated",))
    assert "q-0006" in str(refused.value)
    assert "--rerun-changed" in str(refused.value)


def test_a_changed_line_is_refused_or_rerun(sim: Simulator, tmp_path: Path, reference: Reference) -> None:
    lines = lines_of(5)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    assert _run(src, out, sim).exit_code == EXIT_OK
    old = check_records(out, [line["custom_id"] for line in lines])
    lines[2]["body"] = body_of(99)
    write_input(src, lines)
    with pytest.raises(BadInput) as refused:
        _run(src, out, sim)
    assert refused.value.total == 1
    assert f"{src}:3:" in str(refused.value)
    assert "--rerun-changed" in str(refused.value)
    assert _requests(sim) == 5
    # The journal and the files are as they were.
    assert check_records(out, [line["custom_id"] for line in lines]) == old

    rerun = _run(src, out, sim, rerun_changed=True)
    assert rerun.exit_code == EXIT_OK
    assert rerun.sent == 1
    assert _requests(sim) == 6
    by_id = check_records(out, [line["custom_id"] for line in lines])
    assert check_own_answers(by_id, _bodies(lines), reference) == 5
    assert by_id["q-0003"] != old["q-0003"]
    assert {cid: r for cid, r in by_id.items() if cid != "q-0003"} == {
        cid: r for cid, r in old.items() if cid != "q-0003"
    }


def test_duplicate_and_broken_lines_send_nothing(sim: Simulator, tmp_path: Path) -> None:
    lines: list[Any] = lines_of(4)
    dup = write_input(tmp_path / "dup.jsonl", [*lines, lines[1]])
    with pytest.raises(BadInput) as refused:
        _run(dup, tmp_path / "run", sim)
    message = str(refused.value)
    assert f"{dup}:5:" in message
    assert f"{dup}:2" in message
    assert "q-0002" in message
    broken = write_input(
        tmp_path / "broken.jsonl", [lines[0], b'{"custom_id": "x", "body": {"model": }', lines[2]]
    )
    with pytest.raises(BadInput) as refused:
        _run(broken, tmp_path / "run", sim, skip_invalid=False)
    assert f"{broken}:2:" in str(refused.value)
    assert _requests(sim) == 0
    assert (
        not (tmp_path / "run" / "output.jsonl").exists()
        or not (tmp_path / "run" / "output.jsonl").read_bytes()
    )


def test_skip_invalid_records_bad_lines_as_failures(sim: Simulator, tmp_path: Path) -> None:
    lines: list[Any] = lines_of(4)
    src = write_input(
        tmp_path / "in.jsonl",
        [
            lines[0],
            b'{"custom_id": "x", "body": {"model": }',
            lines[1],
            {"custom_id": "no-body", "url": URL},
            lines[2],
        ],
    )
    result = _run(src, tmp_path / "run", sim, skip_invalid=True)
    assert result.exit_code == EXIT_FAILED
    assert result.invalid == 2
    assert _requests(sim) == 3
    assert dict(result.counts.by_code) == {"invalid_input": 2}
    ok, failed = records(tmp_path / "run")
    assert sorted(r["custom_id"] for r in ok) == ["q-0001", "q-0002", "q-0003"]
    assert sorted(r["custom_id"] for r in failed) == ["line-2", "no-body"]
    for r in failed:
        assert r["response"] is None
        assert r["error"]["code"] == "invalid_input"
        assert str(src) in r["error"]["message"]
    # Resumed with the same flag, nothing is sent again.
    again = _run(src, tmp_path / "run", sim, skip_invalid=True)
    assert again.sent == 0
    _same_counts(again.counts, result.counts)
    assert _requests(sim) == 3


# -- failures that stop the run --------------------------------------------------------------------------------

KEY2, KEY3 = KEY.replace("runner", "second"), KEY.replace("runner", "third")


def test_quota_rotates_to_the_next_key_then_stops_with_the_rest_pending(
    sim: Simulator, tmp_path: Path
) -> None:
    # Each key may use 150 tokens (about three answers) before the simulator says its quota is gone.
    sim.configure(quota_tokens=150, api_keys=(KEY, KEY2, KEY3))
    lines = lines_of(20)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    stopped = _run(src, out, sim, concurrency=1, api_keys=(KEY, KEY2))
    assert stopped.exit_code == EXIT_STOPPED
    assert stopped.stopped is not None
    assert "quota" in stopped.stopped
    assert "--api-key" in stopped.stopped
    c = stopped.counts
    # Both keys answered before the run stopped: the first key's refusal moved on to the second.
    stats = sim.stats()
    assert stats["verdict"]["key_rotations"] == 1
    assert stats["verdict"]["retried_non_retryable"] == 0
    assert c.ok > 3
    # No line ends with quota_exceeded: the refused line waits for the resumed run like the rest.
    assert (c.failed, c.in_flight, c.pending) == (0, 0, 20 - c.ok)
    check_records(out, [line["custom_id"] for line in lines[: c.ok]])
    done = _run(src, out, sim, api_keys=(KEY3,), concurrency=1)
    assert done.exit_code == EXIT_STOPPED  # the third key's quota runs out too...
    sim.configure(quota_tokens=None)
    done = _run(src, out, sim, api_keys=(KEY3,))
    assert done.exit_code == EXIT_OK  # ...and with quota to spare the run finishes
    assert done.counts.resent == 0
    check_records(out, [line["custom_id"] for line in lines])


def test_every_key_refused_stops_the_run(sim: Simulator, tmp_path: Path) -> None:
    sim.configure(api_keys=(KEY3,))
    lines = lines_of(10)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    stopped = _run(src, out, sim, concurrency=2, api_keys=(KEY, KEY2))
    assert stopped.exit_code == EXIT_STOPPED
    assert stopped.stopped is not None
    assert "key" in stopped.stopped
    assert (stopped.counts.ended, stopped.counts.pending) == (0, 10)
    # At most the lines in hand tried each key once; a refused key is not tried again.
    assert _requests(sim) <= 2 * 2
    assert sim.stats()["verdict"]["retried_non_retryable"] == 0
    assert records(out) == ([], [])
    done = _run(src, out, sim, api_keys=(KEY3,))
    assert done.exit_code == EXIT_OK
    check_records(out, [line["custom_id"] for line in lines])


# -- a provider that is not there, or answers nothing --------------------------------------------------------


FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base=0.05, jitter=0.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(handle: Callable[[BaseHTTPRequestHandler, bytes], None]) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 whose POSTs ``handle(handler, body)`` answers; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            handle(self, self.rfile.read(int(self.headers.get("content-length", 0))))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_provider_that_cannot_be_reached_stops_the_run_with_every_line_pending(
    sim: Simulator, tmp_path: Path
) -> None:
    lines = lines_of(20)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    gone = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens: every connection is refused
    opts = BatchOptions(
        out=out, base_url=gone, api_keys=(KEY,), concurrency=4, progress="none", retry=FAST_RETRY
    )
    stopped = run_batch(src, opts)
    assert stopped.exit_code == EXIT_STOPPED
    assert stopped.stopped is not None
    assert f"the provider at {gone} cannot be reached" in stopped.stopped
    assert "connection_error" in stopped.stopped
    assert "check --base-url" in stopped.stopped
    # No line ended failed, and none was reached: nothing to count as sent twice.
    assert (stopped.counts.ended, stopped.counts.pending, stopped.counts.in_flight) == (0, 20, 0)
    assert records(out) == ([], [])
    done = _run(src, out, sim)
    assert done.exit_code == EXIT_OK
    assert done.counts.resent == 0
    check_records(out, [line["custom_id"] for line in lines])


def test_a_provider_that_goes_down_mid_run_stops_it_without_failing_the_lines_on_the_wire(
    sim: Simulator, tmp_path: Path
) -> None:
    answer = FINE
    served = [0]
    closing = threading.Event()

    def serve(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        served[0] += 1
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(answer)))
        handler.send_header(
            "connection", "close"
        )  # a new connection for every request: refused once it is gone
        handler.end_headers()
        handler.wfile.write(answer)
        if served[0] >= 8:
            closing.set()

    lines = lines_of(40)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (BaseHTTPRequestHandler,), {
        "protocol_version": "HTTP/1.1", "log_message": lambda self, *a: None,
        "do_POST": lambda self: serve(self, self.rfile.read(int(self.headers.get("content-length", 0)))),
    }))  # fmt: skip
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def go_down() -> None:
        closing.wait(30)
        server.shutdown()
        server.server_close()  # the port stops listening: every connection from now on is refused

    threading.Thread(target=go_down, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    opts = BatchOptions(
        out=out, base_url=url, api_keys=(KEY,), concurrency=4, progress="none", retry=FAST_RETRY
    )
    stopped = run_batch(src, opts)
    assert stopped.exit_code == EXIT_STOPPED
    assert stopped.stopped is not None
    assert "cannot be reached" in stopped.stopped
    # The lines on the wire when it went away did not end failed: refused, they went back to pending; cut off
    # as it closed (a reset, the request perhaps read), they stay in flight, sent again counted as possibly
    # billed twice.
    c = stopped.counts
    assert c.failed == 0
    assert c.ok >= 8
    assert c.ok + c.pending + c.in_flight == 40
    done = _run(src, out, sim)
    assert (done.exit_code, done.counts.ok, done.counts.resent) == (EXIT_OK, 40, c.in_flight)
    check_records(out, [line["custom_id"] for line in lines])


class _Outage:
    """A provider that serves ``first`` requests, then answers every request with ``status`` (a 503, say) until
    it is ``back``."""

    def __init__(
        self, first: int, status: int, message: str = "The server is overloaded or not ready yet."
    ) -> None:
        self.first, self.status, self.message = first, status, message
        self.served = 0
        self.failed = 0
        self.back = False
        self.lock = threading.Lock()

    def __call__(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self.lock:
            serve = self.back or self.served < self.first
            if serve:
                self.served += 1
            else:
                self.failed += 1
        if serve:
            answer, status = FINE, 200
        else:
            status = self.status
            answer = orjson.dumps({"error": {"message": self.message, "type": "invalid_request_error"}})
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(answer)))
        handler.end_headers()
        handler.wfile.write(answer)


@pytest.mark.parametrize(
    ("status", "said"), [(503, "it is down or overloaded"), (429, "pass another --api-key")]
)
def test_a_provider_that_serves_then_fails_every_request_stops_the_run_with_no_line_failed(
    sim: Simulator, tmp_path: Path, status: int, said: str
) -> None:
    lines = lines_of(40)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    outage = _Outage(8, status)
    with _server(outage) as url:
        # Retries 0.2 s and 0.4 s apart: the progress, updated every 50 ms, sees the outage before the stop.
        retry = RetryPolicy(max_attempts=3, backoff_base=0.2, jitter=0.0)
        opts = BatchOptions(
            out=out, base_url=url, api_keys=(KEY,), concurrency=4, progress="none", retry=retry
        )
        shown = io.StringIO()
        stopped = run_batch(src, opts, progress=PlainProgress(shown, every=0.0))
        assert stopped.exit_code == EXIT_STOPPED
        assert stopped.stopped is not None
        assert f"the provider at {url} has served none of its last" in stopped.stopped
        assert said in stopped.stopped
        # While the lines retried, before any ended, the progress said why nothing moved.
        code = "unavailable" if status == 503 else "rate_limited"
        assert re.search(
            rf"ok 8 · failed 0 .* · none of the last \d+ answers served \({code}\), retrying",
            shown.getvalue(),
        )
        # Every line the outage met went back to pending (with what its attempts did), none ended failed.
        c = stopped.counts
        assert (c.ok, c.failed, c.in_flight, c.pending) == (8, 0, 0, 32)
        assert c.tried >= 1
        # Run again while it lasts: the lines resumed with attempts spent are not failed one by one either.
        again = run_batch(src, opts)
        assert again.exit_code == EXIT_STOPPED
        assert again.stopped is not None
        assert "has served none of its last" in again.stopped
        assert (again.counts.ok, again.counts.failed) == (8, 0)
        outage.back = True
        done = run_batch(src, opts)
    assert (done.exit_code, done.counts.ok, done.counts.resent) == (EXIT_OK, 40, 0)
    check_records(out, [line["custom_id"] for line in lines])


def test_a_model_gone_mid_run_stops_it_after_ten_lines_in_a_row_and_the_run_after_goes_past(
    tmp_path: Path,
) -> None:
    lines = lines_of(40)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    gone = _Outage(8, 404, "The model `gpt-4o-mini` does not exist or you do not have access to it.")
    with _server(gone) as url:
        opts = BatchOptions(
            out=out, base_url=url, api_keys=(KEY,), concurrency=4, progress="none", retry=FAST_RETRY
        )
        stopped = run_batch(src, opts)
        assert stopped.exit_code == EXIT_STOPPED
        assert stopped.stopped is not None
        assert stopped.stopped.startswith(
            "the last 10 lines to end all failed with model_not_found (HTTP 404: "
        )
        assert "after lines of this run were served" in stopped.stopped
        assert "--retry-failed model_not_found" in stopped.stopped
        # Ten in a row ended failed (and those on the wire with them); the rest were never sent.
        c = stopped.counts
        assert c.ok == 8
        assert 10 <= c.failed <= 13
        assert dict(c.by_code) == {"model_not_found": c.failed}
        assert c.pending == 40 - 8 - c.failed
        assert gone.failed == c.failed  # not retried: a 404 cannot succeed
        # Run again unchanged: taken as the lines' own failures, the run goes past them to the end.
        onward = run_batch(src, opts)
        assert onward.stopped is None
        assert (onward.exit_code, onward.counts.ok, onward.counts.failed) == (EXIT_FAILED, 8, 32)
        gone.back = True
        done = run_batch(src, replace(opts, retry_failed=("model_not_found",)))
    assert (done.exit_code, done.counts.ok) == (EXIT_OK, 40)
    check_records(out, [line["custom_id"] for line in lines])


def test_a_provider_failing_half_its_answers_at_random_is_not_taken_for_an_outage(
    sim: Simulator, tmp_path: Path
) -> None:
    # Runs of failed answers come at random from such a provider (one in eight lines spends its three attempts):
    # the run goes on to the end, each line retried, some ending failed.
    sim.configure(chaos="server_error=0.5")
    lines = lines_of(300)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    result = _run(src, out, sim, concurrency=4, retry=FAST_RETRY)
    assert result.stopped is None
    assert result.exit_code == EXIT_FAILED
    assert set(result.counts.by_code) == {"server_error"}
    assert result.counts.failed >= 10  # about 300 / 8
    check_records(out, [line["custom_id"] for line in lines])


def _run_with_poison(
    tmp_path: Path, serve: Callable[[BaseHTTPRequestHandler, bytes], None], *, at: int, concurrency: int
) -> tuple[BatchResult, list[dict[str, Any]]]:
    """Six lines, the one at ``at`` saying "poison", run into ``tmp_path / "run"`` against ``serve`` on
    127.0.0.1: the result and the lines."""
    lines = lines_of(6)
    lines[at]["body"]["messages"][0]["content"] = "poison"
    src = write_input(tmp_path / "in.jsonl", lines)
    with _server(serve) as url:
        opts = BatchOptions(out=tmp_path / "run", base_url=url, api_keys=(KEY,), concurrency=concurrency,
                            progress="none", retry=FAST_RETRY)  # fmt: skip
        return run_batch(src, opts), lines


def _fail_poison(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """Answer a 500 to a request whose body says "poison", a chat completion to any other."""
    bad = b"poison" in body
    answer = (
        orjson.dumps({"error": {"message": "The server had an error", "type": "server_error"}})
        if bad
        else FINE
    )
    handler.send_response(500 if bad else 200)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(answer)))
    handler.end_headers()
    handler.wfile.write(answer)


def test_a_block_of_lines_the_provider_always_fails_does_not_stop_every_run(tmp_path: Path) -> None:
    # More lines than are sent at once that the provider fails whenever they are sent (a 500 on their content)
    # look like an outage while they are all on the wire: the run stops. Run again, and again, the runs get past
    # them (they end failed) instead of stopping each time with them pending.
    lines = lines_of(40)
    for line in lines[8:30]:
        line["body"]["messages"][0]["content"] = "poison"
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    runs: list[BatchResult] = []
    with _server(_fail_poison) as url:
        opts = BatchOptions(
            out=out, base_url=url, api_keys=(KEY,), concurrency=4, progress="none", retry=FAST_RETRY
        )
        while len(runs) < 6:
            runs.append(run_batch(src, opts))
            if runs[-1].stopped is None:
                break
    assert [r.exit_code for r in runs[:-1]] == [EXIT_STOPPED] * (len(runs) - 1)
    assert runs[0].stopped is not None
    assert "has served none of its last" in runs[0].stopped
    last = runs[-1]
    assert last.stopped is None, [r.stopped for r in runs]
    assert (last.exit_code, last.counts.ok, dict(last.counts.by_code)) == (
        EXIT_FAILED,
        18,
        {"server_error": 22},
    )
    check_records(out, [line["custom_id"] for line in lines])


def test_a_line_the_provider_fails_again_and_again_alone_ends_failed_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    # The last line, alone on the wire: no other fails.
    result, lines = _run_with_poison(tmp_path, _fail_poison, at=-1, concurrency=2)
    assert result.stopped is None
    assert (result.exit_code, result.counts.ok, dict(result.counts.by_code)) == (
        EXIT_FAILED,
        5,
        {"server_error": 1},
    )
    by_id = check_records(tmp_path / "run", [line["custom_id"] for line in lines])
    assert by_id[lines[-1]["custom_id"]]["genguard"]["attempts"] == 3


def test_a_provider_that_answers_nothing_stops_the_run_and_counts_what_it_may_have_billed(
    sim: Simulator, tmp_path: Path
) -> None:
    held: list[BaseHTTPRequestHandler] = []

    def hang(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        held.append(handler)
        time.sleep(3)  # longer than the client waits: it gives up first

    lines = lines_of(6)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    with _server(hang) as url:
        opts = BatchOptions(out=out, base_url=url, api_keys=(KEY,), concurrency=2, progress="none",
                            retry=FAST_RETRY, timeout=0.3)  # fmt: skip
        stopped = run_batch(src, opts)
        assert stopped.exit_code == EXIT_STOPPED
        assert stopped.stopped is not None
        assert "answered nothing" in stopped.stopped
        assert "--timeout 0.3 s" in stopped.stopped
        # The requests reached the server: the lines whose every attempt was cut off stay in flight, to be
        # sent again counted as possibly billed twice; none ended failed.
        cut = stopped.counts.in_flight
        assert cut >= 1
        assert held
        assert (stopped.counts.ended, stopped.counts.pending + cut) == (0, 6)
        assert records(out) == ([], [])
        # Run again unchanged, the lines that time out are taken for slow ones: they end failed, sent no more
        # than their attempts.
        onward = run_batch(
            src, replace(opts, retry=RetryPolicy(max_attempts=2, backoff_base=0.05, jitter=0.0))
        )
        assert (onward.stopped, onward.exit_code, dict(onward.counts.by_code)) == (
            None,
            EXIT_FAILED,
            {"timeout": 6},
        )
        assert onward.counts.resent == cut
    done = _run(src, out, sim, retry_failed=("timeout",))
    assert (done.exit_code, done.counts.ok, done.sent) == (EXIT_OK, 6, 6)
    check_records(out, [line["custom_id"] for line in lines])


def test_a_line_whose_connection_breaks_while_the_provider_answers_others_ends_failed(tmp_path: Path) -> None:
    answer = FINE

    def serve(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if b"poison" in body:
            handler.close_connection = (
                True  # the connection closes with no answer: a line the server breaks on
            )
            return
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(answer)))
        handler.end_headers()
        handler.wfile.write(answer)

    # The first line: it fails before any other answers.
    result, lines = _run_with_poison(tmp_path, serve, at=0, concurrency=1)
    # A server that takes the connection is there: the line ends failed, the run goes on to the end.
    assert result.stopped is None
    assert result.exit_code == EXIT_FAILED
    assert (result.counts.ok, dict(result.counts.by_code)) == (5, {"connection_error": 1})
    by_id = check_records(tmp_path / "run", [line["custom_id"] for line in lines])
    assert by_id[lines[0]["custom_id"]]["genguard"]["attempts"] == 3


def test_lines_that_time_out_while_the_provider_answers_others_end_failed_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    # Two slow lines at the end go out with two others; the others are answered while the slow ones wait (after
    # both slow requests reached the server, so the order is fixed), before any slow attempt times out, and
    # nothing answers after that. The server serves: the slow lines are the lines' own failures, not a hung
    # provider's, and the run ends. (The first line is answered at once: the limiter's start sends it alone.)
    answer = FINE
    lock = threading.Lock()
    slow_seen = [0]
    both_slow_here = threading.Event()
    done = threading.Event()

    def serve(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if b"slow" in body:
            with lock:
                slow_seen[0] += 1
                if slow_seen[0] >= 2:
                    both_slow_here.set()
            done.wait(10)  # past every --timeout
            handler.close_connection = True
            return
        if b"first" not in body:
            both_slow_here.wait(10)
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(answer)))
        handler.end_headers()
        handler.wfile.write(answer)

    lines = lines_of(5)  # within the limiter's first window: all on the wire together
    lines[0]["body"]["messages"][0]["content"] = "first"
    for i in (3, 4):
        lines[i]["body"]["messages"][0]["content"] = "slow"
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    with _server(serve) as url:
        try:
            opts = BatchOptions(out=out, base_url=url, api_keys=(KEY,), concurrency=8, progress="none",
                                retry=RetryPolicy(max_attempts=2, backoff_base=0.05, jitter=0.0), timeout=0.5)  # fmt: skip
            result = run_batch(src, opts)
        finally:
            done.set()
    print("DEBUG", result.stopped, result.counts)
    assert result.stopped is None
    assert result.exit_code == EXIT_FAILED
    assert (result.counts.ok, dict(result.counts.by_code), result.counts.resent) == (3, {"timeout": 2}, 0)
    check_records(out, [line["custom_id"] for line in lines])


def _not_an_api(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    # A web server at the wrong --base-url: a page, not an API's JSON.
    page = b"<html><body><h1>404 Not Found</h1></body></html>"
    handler.send_response(404)
    handler.send_header("content-type", "text/html")
    handler.send_header("content-length", str(len(page)))
    handler.end_headers()
    handler.wfile.write(page)


def test_lines_all_failing_alike_before_any_generation_stop_the_run(sim: Simulator, tmp_path: Path) -> None:
    lines = lines_of(60)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    with _server(_not_an_api) as url:
        opts = BatchOptions(out=out, base_url=url, api_keys=(KEY,), concurrency=4, progress="none")
        stopped = run_batch(src, opts)
    assert stopped.exit_code == EXIT_STOPPED
    assert stopped.stopped is not None
    assert "lines to end all failed with not_found (HTTP 404" in stopped.stopped
    assert "check --base-url" in stopped.stopped
    assert "--retry-failed not_found" in stopped.stopped
    # The lines that ended keep their answers; the rest were spared.
    failed = stopped.counts.failed
    assert 10 <= failed <= 10 + 4
    assert (stopped.counts.ok, dict(stopped.counts.by_code), stopped.counts.pending) == (
        0,
        {"not_found": failed},
        60 - failed,
    )
    # Run again unchanged, it takes these failures for the lines' own and goes on past them; so does a run
    # sending failures again.
    with _server(_not_an_api) as url:
        opts = BatchOptions(out=out, base_url=url, api_keys=(KEY,), concurrency=4, progress="none")
        onward = run_batch(src, opts)
        assert (onward.stopped, onward.exit_code, dict(onward.counts.by_code)) == (
            None,
            EXIT_FAILED,
            {"not_found": 60},
        )
        again = run_batch(src, replace(opts, retry_failed=("not_found",)))
        assert (again.stopped, again.sent, dict(again.counts.by_code)) == (None, 60, {"not_found": 60})
    # At the right URL, the failures sent again end ok.
    done = _run(src, out, sim, retry_failed=("not_found",))
    assert (done.exit_code, done.counts.ok, done.sent) == (EXIT_OK, 60, 60)
    check_records(out, [line["custom_id"] for line in lines])
    # Another run folder, another word: it stops at ten again.
    other = write_input(tmp_path / "other.jsonl", lines_of(30, prefix="o"))
    with _server(_not_an_api) as url:
        opts = BatchOptions(
            out=tmp_path / "other", base_url=url, api_keys=(KEY,), concurrency=4, progress="none"
        )
        assert run_batch(other, opts).exit_code == EXIT_STOPPED


def test_failures_alike_after_a_generation_are_the_lines_own(sim: Simulator, tmp_path: Path) -> None:
    # One line answered, then every other refused the same way: the provider works, these lines are wrong.
    lines = lines_of(16)
    for line in lines[1:]:
        line["body"]["temperature"] = 5  # out of range: 400 bad_request, never retried
    src = write_input(tmp_path / "in.jsonl", lines)
    result = _run(src, tmp_path / "run", sim, concurrency=1)
    assert result.stopped is None
    assert (result.exit_code, result.counts.ok, dict(result.counts.by_code)) == (
        EXIT_FAILED,
        1,
        {"bad_request": 15},
    )


def test_refusals_of_the_lines_own_content_do_not_stop_the_run(sim: Simulator, tmp_path: Path) -> None:
    # Every prompt too long for the model: the provider read each request and judged it, so it is there.
    sim.configure(context_window_for={"gpt-4o": 200})
    lines = lines_of(14)
    for line in lines:
        line["body"]["model"] = "gpt-4o"
        line["body"]["messages"][0]["content"] += " and more" * 200
    src = write_input(tmp_path / "in.jsonl", lines)
    result = _run(src, tmp_path / "run", sim, concurrency=1)
    assert result.stopped is None
    assert (result.exit_code, dict(result.counts.by_code)) == (EXIT_FAILED, {"context_length_exceeded": 14})


def test_lines_sharing_a_long_prompt_are_priced_with_the_providers_prompt_cache(
    sim: Simulator, tmp_path: Path
) -> None:
    # Lines that share a long system prompt: after the first, the provider reads most of each prompt from its
    # cache and bills those tokens at the cache price; so must each line's cost and the run's total.
    lines = lines_of(4)
    for line in lines:
        line["body"]["messages"].insert(0, {"role": "system", "content": "You classify tickets. " * 400})
    src = write_input(tmp_path / "in.jsonl", lines)
    result = _run(src, tmp_path / "run", sim, concurrency=1)  # one at a time: the first fills the cache
    assert result.exit_code == EXIT_OK
    ok_records = sorted(records(tmp_path / "run")[0], key=lambda r: r["custom_id"])
    usages = [Usage.from_dict(r["genguard"]["usage"]) for r in ok_records]
    cached = [u.details["prompt_tokens_details"]["cached_tokens"] for u in usages if u and u.details]
    assert cached[0] == 0
    assert all(c >= 1024 for c in cached[1:]), cached
    costs = [r["genguard"]["cost_usd"] for r in ok_records]
    if costs[0] is None:
        pytest.skip("genai-prices is not installed")
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    for record, usage, n in zip(ok_records, usages, cached, strict=True):
        assert usage is not None
        counts = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}
        billed = calc_price(PriceUsage(**counts, cache_read_tokens=n or None), model_ref="gpt-4o-mini")
        assert record["genguard"]["cost_usd"] == pytest.approx(float(billed.total_price))
        if n:
            plain = cost_usd("gpt-4o-mini", Usage(usage.prompt_tokens, usage.completion_tokens))
            assert plain is not None
            assert (
                record["genguard"]["cost_usd"] < plain
            )  # what every prompt token at the input price comes to
    assert result.counts.cost_usd == pytest.approx(sum(costs))
    # The report shows the tokens read from the cache apart, in all and by model.
    data = summary(tmp_path / "run")
    assert data["tokens"]["cached"] == sum(cached) > 0
    assert data["tokens"]["cache_written"] == 0
    assert [m["cached_tokens"] for m in data["models"]] == [sum(cached)]
    assert f"; of the prompts, {sum(cached):,} read from the provider's prompt cache" in render_summary(data)
    page = render_html(data)
    assert (
        f"""<th scope="row">Prompt tokens read from the provider's cache</th><td class="n">{sum(cached):,}</td>"""
        in page
    )


def test_a_model_the_provider_asks_to_wait_for_waits_and_the_other_models_go_on(tmp_path: Path) -> None:
    # Providers limit each model on its own: one model's daily limit spent is no reason to leave the others'
    # lines unsent. A bucket of one gpt-4o request a minute: the second is told to come back in about a minute,
    # longer than these lines wait (max_wait 30 s).
    lines = lines_of(40)
    for line in lines[1::4]:
        line["body"]["model"] = "gpt-4o"
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    with Simulator(rpm_for={"gpt-4o": 1}) as sim:
        # One line at a time: gpt-4o-mini answers first, and gpt-4o's first answer states its own limits: a
        # pace of its own, which its long wait holds alone.
        stopped = _run(src, out, sim, retry=RetryPolicy(max_wait=30), concurrency=1)
        assert stopped.exit_code == EXIT_STOPPED
        assert stopped.stopped is not None
        assert "gpt-4o: the provider asks to wait " in stopped.stopped
        assert "the other models' lines ended" in stopped.stopped
        # Every gpt-4o-mini line and the one gpt-4o line the bucket let through ended ok; the other gpt-4o
        # lines wait, unsent but for the one that met the long wait.
        assert (stopped.counts.ok, stopped.counts.failed, stopped.counts.pending) == (31, 0, 9)
        assert sim.stats()["by_status"].get("429", 0) == 1
        model_of = {line["custom_id"]: line["body"]["model"] for line in lines}
        ended = sorted(model_of[r["custom_id"]] for r in records(out)[0])
        assert ended == ["gpt-4o"] + ["gpt-4o-mini"] * 30
        sim.configure(rpm_for={})  # the limit is back
        done = _run(src, out, sim)
    assert (done.exit_code, done.counts.ok, done.counts.resent) == (EXIT_OK, 40, 0)


def test_a_long_wait_at_the_shared_pace_stops_the_run(tmp_path: Path) -> None:
    # Models that state the same limits (a gateway's limit of the key) share one pace: a long wait for one
    # holds them all, and the run stops as with one model, nothing burnt.
    lines = lines_of(20)
    for line in lines[1::2]:
        line["body"]["model"] = "gpt-4o"
    src = write_input(tmp_path / "in.jsonl", lines)
    with Simulator(rpm=1) as sim:  # one request a minute for the key, whatever the model
        stopped = _run(src, tmp_path / "run", sim, retry=RetryPolicy(max_wait=30), concurrency=1)
    assert stopped.exit_code == EXIT_STOPPED
    assert stopped.stopped is not None
    assert stopped.stopped.startswith("the provider asks to wait ")
    assert (stopped.counts.ok, stopped.counts.pending) == (1, 19)


def test_a_wait_longer_than_a_line_takes_stops_the_run_with_every_line_pending(
    sim: Simulator, tmp_path: Path
) -> None:
    # A daily limit spent: every request is told to come back in an hour, past max_wait (600 s by default).
    sim.configure(scenario="rate_limited", retry_after_s=3600)
    lines = lines_of(30)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    stopped = _run(src, out, sim, concurrency=4)
    assert stopped.exit_code == EXIT_STOPPED
    assert stopped.stopped is not None
    assert "the provider asks to wait 60 min before the next request" in stopped.stopped
    assert "(at most 10 min)" in stopped.stopped
    assert "wait until " in stopped.stopped
    # Not one line burnt: none ended, and no more were sent than were in hand when the answer came.
    assert (stopped.counts.ended, stopped.counts.pending) == (0, 30)
    assert _requests(sim) <= 4
    assert records(out) == ([], [])
    sim.configure(scenario="ok")
    done = _run(src, out, sim)
    assert (done.exit_code, done.counts.ok, done.counts.resent) == (EXIT_OK, 30, 0)


def test_max_cost_stops_before_the_cap_is_passed(sim: Simulator, tmp_path: Path) -> None:
    lines = lines_of(30, max_tokens=60)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    # genai-prices' price of gpt-4o-mini for what one line may cost at most: its prompt and all 60 tokens.
    one = cost_usd(MODEL, Usage(prompt_tokens=40, completion_tokens=60))
    assert one is not None
    assert one > 0
    cap = one * 8
    stopped = _run(src, out, sim, concurrency=2, max_cost=cap)
    assert stopped.exit_code == EXIT_STOPPED
    assert stopped.stopped is not None
    assert "cost" in stopped.stopped
    c = stopped.counts
    assert 0 < c.ok < 30
    assert c.pending == 30 - c.ok
    (spent,) = journal_rows(out, "SELECT total(cost_usd) FROM lines")[0]
    assert 0 < spent <= cap
    assert c.cost_usd == pytest.approx(spent)
    check_records(out, [line["custom_id"] for line in lines[: c.ok]])
    # The same cap again: nothing more fits, nothing is sent.
    sent = _requests(sim)
    again = _run(src, out, sim, concurrency=2, max_cost=cap)
    assert again.exit_code == EXIT_STOPPED
    assert _requests(sim) == sent
    done = _run(src, out, sim, max_cost=cap * 10)
    assert done.exit_code == EXIT_OK
    check_records(out, [line["custom_id"] for line in lines])
    (spent,) = journal_rows(out, "SELECT total(cost_usd) FROM lines")[0]
    assert spent <= cap * 10


def test_a_cost_the_provider_states_is_the_lines_cost_and_bounds_max_cost(tmp_path: Path) -> None:
    # OpenRouter states what each answer cost in its usage (usage.cost), for any of its hundreds of models, many
    # of which no price table knows: that is the line's cost, and what --max-cost counts and reserves.
    model = "meta-llama/llama-3.1-8b-instruct"
    assert cost_usd(model, Usage(prompt_tokens=40, completion_tokens=60)) is None  # no table knows it
    lines = [{**line, "body": {**line["body"], "model": model}} for line in lines_of(30)]
    src = write_input(tmp_path / "in.jsonl", lines)
    with Simulator(dialect="openrouter") as sim:
        whole = _run(src, tmp_path / "whole", sim)
        assert whole.exit_code == EXIT_OK
        by_id = check_records(tmp_path / "whole", [line["custom_id"] for line in lines])
        costs = {}
        for cid, record in by_id.items():
            usage = record["response"]["body"]["usage"]
            stated = openrouter_cost(
                usage["prompt_tokens"],
                usage["prompt_tokens_details"]["cached_tokens"],
                usage["completion_tokens"],
            )
            assert stated > 0
            assert record["genguard"]["cost_usd"] == pytest.approx(stated)
            costs[cid] = stated
        assert whole.counts.cost_usd == pytest.approx(sum(costs.values()))
        # A gpt-4o-mini answer from the same provider: its stated cost, not the table's price of its tokens.
        gpt = _run(write_input(tmp_path / "gpt.jsonl", lines_of(1)), tmp_path / "gpt", sim)
        [record] = records(tmp_path / "gpt")[0]
        usage = record["response"]["body"]["usage"]
        assert gpt.counts.cost_usd == pytest.approx(usage["cost"])
        assert gpt.counts.cost_usd != pytest.approx(
            cost_usd(MODEL, Usage(usage["prompt_tokens"], usage["completion_tokens"])) or 0.0
        )
        # A cap of about twelve lines, eight sent at once: nothing is known of the model's price, so its first
        # line goes alone; then each line reserves its tokens (prompt and max_tokens) at the dearest cost a token
        # stated so far, and a line that fits only once the lines in flight have ended waits for them. The run
        # stops short of the cap, by less than what one line reserves.
        cap = sum(costs[line["custom_id"]] for line in lines[:12])
        sent = _requests(sim)
        stopped = _run(src, tmp_path / "capped", sim, concurrency=8, max_cost=cap)
        assert stopped.exit_code == EXIT_STOPPED
        assert stopped.stopped is not None
        assert "cost cap" in stopped.stopped
        assert _requests(sim) - sent == stopped.counts.ok
        per_token = max(
            cost / record["response"]["body"]["usage"]["total_tokens"]
            for record, cost in ((by_id[cid], cost) for cid, cost in costs.items())
        )
        reserve = max(per_token * estimate_tokens(line["body"]) for line in lines)
        assert cap - reserve < stopped.counts.cost_usd <= cap
        assert stopped.unpriced == ()
        # A cap below one line's cost: the first line goes alone, with nothing to tell its cost by, and the run
        # stops after it rather than sending eight lines blind.
        sent = _requests(sim)
        one = _run(src, tmp_path / "one", sim, concurrency=8, max_cost=min(costs.values()) / 2)
        assert (one.exit_code, one.counts.ok, _requests(sim) - sent) == (EXIT_STOPPED, 1, 1)
        assert "cost cap" in (one.stopped or "")


def test_max_cost_names_a_model_no_one_prices_and_sends_its_lines_as_usual(
    sim: Simulator, tmp_path: Path
) -> None:
    # A model no table knows, from a provider that states no cost (a local server): after its first line,
    # sent alone, there is nothing to count its lines by; they go as usual and the summary says so.
    model = "my-org/finetune-7b"
    lines = [{**line, "body": {**line["body"], "model": model}} for line in lines_of(20)]
    src = write_input(tmp_path / "in.jsonl", lines)
    done = _run(src, tmp_path / "run", sim, concurrency=8, max_cost=1e-9)
    assert (done.exit_code, done.counts.ok, done.unpriced) == (EXIT_OK, 20, (model,))
    assert _requests(sim) == 20
    text = _summary_text(done, None)
    assert f"--max-cost could not count the lines of {model}" in text
    assert "its answers state no cost" in text


# -- from Python ------------------------------------------------------------------------------------------------


def _requests_list(n: int) -> list[dict[str, Any]]:
    # Bare bodies and batch lines, mixed: a bare body's custom_id is its line number.
    out: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        out.append(body_of(i) if i % 2 else {"custom_id": f"c{i}", "body": body_of(i)})
    return out


def _check_results(result: BatchResult, reference: Reference, n: int) -> None:
    assert result.exit_code == EXIT_OK
    got = list(result.results())
    assert [cid for cid, _, _ in got] == [str(i) if i % 2 else f"c{i}" for i in range(1, n + 1)]
    for i, (_, outcome, body) in enumerate(got, 1):
        assert outcome.ok
        assert outcome.text == reference.text(body_of(i))
        assert body["choices"][0]["message"]["content"] == outcome.text


def test_batch_from_python_results_in_input_order(
    sim: Simulator, tmp_path: Path, reference: Reference
) -> None:
    result = genguard.batch(
        _requests_list(12), out=tmp_path / "run", base_url=sim.base_url, api_key=KEY, concurrency=4,
        progress="none",
    )  # fmt: skip
    _check_results(result, reference, 12)
    assert _requests(sim) == 12
    # Again with the same folder: resumed, nothing sent.
    again = genguard.batch(_requests_list(12), out=tmp_path / "run", base_url=sim.base_url, api_key=KEY,
                           progress="none")  # fmt: skip
    assert again.sent == 0
    assert _requests(sim) == 12
    _check_results(again, reference, 12)


def test_abatch_awaited(sim: Simulator, tmp_path: Path, reference: Reference) -> None:
    async def main() -> tuple[BatchResult, BatchResult]:
        awaited = await genguard.abatch(
            _requests_list(6), out=tmp_path / "a", base_url=sim.base_url, api_key=KEY, progress="none"
        )
        # batch() inside a running loop (a notebook cell) runs in a worker thread instead of failing.
        blocking = genguard.batch(
            _requests_list(6), out=tmp_path / "b", base_url=sim.base_url, api_key=KEY, progress="none"
        )
        return awaited, blocking

    awaited, blocking = asyncio.run(main())
    _check_results(awaited, reference, 6)
    _check_results(blocking, reference, 6)
    assert _requests(sim) == 12


def test_a_misspelt_retry_failed_code_is_refused_from_python_too(tmp_path: Path) -> None:
    # It reset no line and said nothing: the run "retried" zero failures.

    with pytest.raises(ValueError, match="did you mean 'rate_limited'"):
        genguard.batch([], out=tmp_path / "run", retry_failed=["rate_limted"])
    assert not (tmp_path / "run").exists()  # refused before anything was made


def test_batch_lines_from_python_without_a_url_go_where_their_bodies_say(
    sim: Simulator, tmp_path: Path
) -> None:
    # A moderation, a Responses request and a chat request, none naming its url: each reaches its own endpoint
    # (the rule of a bare body's line), where they all once went to the embeddings.
    given = [
        {"custom_id": "mod", "body": {"model": "omni-moderation-latest", "input": "hello"}},
        {"custom_id": "resp", "body": {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 50}},
        {"custom_id": "chat", "body": body_of(1)},
    ]
    result = genguard.batch(given, out=tmp_path / "run", base_url=sim.base_url, api_key=KEY, progress="none")
    assert result.exit_code == EXIT_OK
    assert sim.stats()["by_endpoint"] == {
        "moderation": 1,
        "chat": 2,
    }  # the simulator counts Responses as chat
    kept = [orjson.loads(line) for line in (tmp_path / "run" / "requests.jsonl").read_bytes().splitlines()]
    assert [line["url"] for line in kept] == ["/v1/moderations", "/v1/responses", "/v1/chat/completions"]


def test_bad_requests_from_python_are_named_by_their_item_and_a_refusal_keeps_the_runs_requests(
    sim: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    good = _requests_list(4)
    bad = [*good, {"custom_id": "x", "url": "/v1/chat/completions", "body": {"model": "m"}}, good[1]]
    with pytest.raises(genguard.BadInput) as caught:
        genguard.batch(bad, out=out, base_url=sim.base_url, api_key=KEY, progress="none")
    message = str(caught.value)
    assert 'requests[4]: the body has no "messages"' in message
    assert "requests[5]: custom_id 'c2' is repeated: it was first at requests[1]" in message
    assert "skip_invalid=True" in message
    assert "--skip-invalid" not in message
    assert isinstance(caught.value, genguard.GenguardError)
    assert _requests(sim) == 0
    assert not (out / "requests.jsonl").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".requests")] == []
    assert genguard.batch(good, out=out, base_url=sim.base_url, api_key=KEY, progress="none").exit_code == 0
    kept = (out / "requests.jsonl").read_bytes()
    # A changed request, refused: the folder's requests are still those its answers answer.
    changed = [{**good[1], "body": {**good[1]["body"], "max_tokens": 7}}]
    with pytest.raises(genguard.BadInput, match=r"rerun_changed=True") as caught:
        genguard.batch(changed, out=out, base_url=sim.base_url, api_key=KEY, progress="none")
    assert "requests[0]" in str(caught.value)
    assert (out / "requests.jsonl").read_bytes() == kept
    assert _requests(sim) == 4


def test_python_arguments_the_command_would_refuse_are_refused_before_anything_is_made(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    for kwargs, match in [
        ({"max_cost": 0}, "max_cost must be a number of US dollars above 0"),
        ({"max_cost": float("nan")}, "max_cost must be"),
        ({"deadline": -5}, "deadline must be a number of seconds above 0"),
        ({"progress": "fancy"}, "progress must be one of 'auto', 'plain', 'none'"),
        ({"validate": "bogus:1"}, "unknown --validate 'bogus:1'"),
        ({"concurrency": 0}, "concurrency must be a whole number of at least 1"),
    ]:
        with pytest.raises(ValueError, match=match):
            genguard.batch(_requests_list(2), out=out, base_url="http://127.0.0.1:9/v1", **kwargs)
    # A folder that holds no run, given no requests: a mistyped out= is not a finished run of no lines.
    with pytest.raises(genguard.SetupError, match="holds no run to resume"):
        genguard.batch(None, out=out)
    assert not out.exists()


class _Table:
    """What the runner asks of a DataFrame: its columns, and its rows as records."""

    columns = ("id", "text")

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._rows = rows

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)  # as a DataFrame iterates: over its column names

    def to_dict(self, orient: str) -> list[dict[str, Any]]:
        assert orient == "records"
        return self._rows


def test_a_table_of_rows_runs_row_by_row_and_a_missing_value_is_a_bad_row(
    sim: Simulator, tmp_path: Path
) -> None:
    table = _Table(
        [{"id": "r1", "text": "good"}, {"id": "r2", "text": None}, {"id": "r3", "text": float("nan")}]
    )
    kwargs: dict[str, Any] = {"base_url": sim.base_url, "api_key": KEY, "progress": "none",
                              "template": "Classify: {text}", "model": "gpt-4o-mini"}  # fmt: skip
    with pytest.raises(genguard.BadInput) as caught:
        genguard.batch(table, out=tmp_path / "run", **kwargs)
    assert 'requests[1]: the row\'s field "text" is null' in str(caught.value)
    assert 'requests[2]: the row\'s field "text" is null' in str(
        caught.value
    )  # NaN, a DataFrame's missing value
    result = genguard.batch(table, out=tmp_path / "run", skip_invalid=True, **kwargs)
    assert [(cid, o.code) for cid, o, _ in result.results()] == [
        ("r1", None),
        ("r2", "invalid_input"),
        ("r3", "invalid_input"),
    ]
    assert _requests(sim) == 1


@pytest.mark.parametrize(
    ("where", "code", "text"),
    [
        (
            "bom",
            None,
            "caf\u00e9",
        ),  # JSON after a byte-order mark: Python's json reads it, and so does genguard
        ("latin1", None, "caf\u00e9"),  # in the charset its content-type names
        ("bad-gzip", "invalid_response", None),  # came whole, does not decode: not the network's fault
    ],
)
def test_an_answer_in_another_encoding_is_read_once_and_written_as_json(
    tmp_path: Path, where: str, code: str | None, text: str | None
) -> None:
    from _raw_http import serving

    src = write_input(tmp_path / "in.jsonl", lines_of(2))
    with serving() as server:
        result = genguard.batch(
            src, out=tmp_path / "run", base_url=f"{server.base}/{where}/v1", api_key=KEY, progress="none",
            retry=RetryPolicy(max_attempts=2),
        )  # fmt: skip
        sent = len(server.requests)
    got = [(o.code, o.text) for _, o, _ in result.results()]
    assert got == [(code, text)] * 2
    ok, failed = records(
        tmp_path / "run"
    )  # every output line is JSON (a BOM or Latin-1 bytes inside would not be)
    if code is None:
        assert sent == 2  # ok at once: a whole answer is not paid for twice
        assert [r["response"]["body"]["choices"][0]["message"]["content"] for r in ok] == [text] * 2
    else:
        assert "cannot decode the gzip body" in failed[0]["genguard"]["message"]


@pytest.mark.parametrize("gateway", ["two-at-once", "litellm-two-at-once", "litellm-v3-two-at-once"])
def test_a_provider_that_limits_the_requests_in_flight_gets_that_many_at_once(
    tmp_path: Path, gateway: str
) -> None:
    # Two at a time, a third refused with "Too many concurrent requests" (a gateway's, a self-hosted server's
    # limit; LiteLLM's proxy in its two limiters' words): the pace is not what it refuses, so the run keeps as
    # many lines at once as got through, its retries wait for room instead of being refused again, and the
    # limiter learns no rate from those 429s (it learned ~45 a second where 80 went through, and kept 0.56 of
    # the server's capacity).
    from _raw_http import serving

    src = write_input(tmp_path / "in.jsonl", lines_of(120))
    with serving() as server:
        result = genguard.batch(
            src, out=tmp_path / "run", base_url=f"{server.base}/{gateway}/v1", api_key=KEY, progress="none"
        )
        refused = server.refused
    assert result.counts.ok == 120
    assert result.in_flight_refused == refused > 0
    assert result.in_flight_limit in (2, 3)  # 2, or one more being tried when the run ended
    # The start's first requests (8 go at once), then one each time one more at once is tried (every 32 rounds
    # of lines); each refused request counts its own place on the wire, so the first refusals say 2 at once.
    assert refused <= 8
    assert result.limit_source != "429s"


def test_the_summary_says_the_provider_limits_the_requests_in_flight(tmp_path: Path) -> None:
    from _raw_http import serving

    src = write_input(tmp_path / "in.jsonl", lines_of(20))
    with serving() as server:
        argv = ["batch", str(src), "--out", str(tmp_path / "run"), "--base-url", f"{server.base}/two-at-once/v1",
                "--api-key", KEY, "--progress", "none"]  # fmt: skip
        text = CliRunner().invoke(cli, argv)
        refused = server.refused
    assert text.exit_code == 0, text.output
    assert (
        f"{refused} 429s said the provider limits the requests in flight: the run kept 2 at once after them "
        "(--concurrency 2 starts there)"
    ) in text.stdout


def test_a_stop_from_python_is_worded_with_its_keyword_arguments(sim: Simulator, tmp_path: Path) -> None:
    result = genguard.batch(_requests_list(4), out=tmp_path / "run", base_url=sim.base_url, api_key=KEY,
                            progress="none", max_cost=1e-9)  # fmt: skip
    assert result.exit_code == EXIT_STOPPED
    assert result.stopped is not None
    assert "raise max_cost=" in result.stopped
    assert "call batch() again with the same out=" in result.stopped
    assert "--" not in result.stopped


def test_results_in_input_order_follow_the_latest_input(sim: Simulator, tmp_path: Path) -> None:
    # Two inputs into one folder: r0..r9, then r5..r14. The second's lines come in its order (r5, r6 ... r14,
    # each once), where they once interleaved with the first's by line number; the first's lines it does not
    # hold stay in the results too.
    def lines(ids: range) -> list[dict[str, Any]]:
        return [{"custom_id": f"r{i}", "body": body_of(i)} for i in ids]

    out = tmp_path / "run"
    genguard.batch(lines(range(10)), out=out, base_url=sim.base_url, api_key=KEY, progress="none")
    second = genguard.batch(lines(range(5, 15)), out=out, base_url=sim.base_url, api_key=KEY, progress="none")
    assert second.absent == 5
    order = [cid for cid, _, _ in second.results()]
    assert sorted(order) == sorted(f"r{i}" for i in range(15))
    mine = [cid for cid in order if int(cid[1:]) >= 5]
    assert mine == [f"r{i}" for i in range(5, 15)]
    assert _requests(sim) == 15
