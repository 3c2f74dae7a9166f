"""The proxy's record: every exchange in a batch journal, so ``genguard report DIR`` covers proxy traffic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from click.testing import CliRunner

from genguard import Proxy, ProxyJournal, RetryPolicy
from genguard.cli import cli
from genguard.sim import Simulator

KEY = "sk-proxy-journal-upstream-key-9876543"
MSG: Any = [{"role": "user", "content": "Describe a pet"}]

pytestmark = pytest.mark.timeout(60)


def report(folder: Path) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["report", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_traffic_through_the_proxy_shows_in_genguard_report(sim: Simulator, tmp_path: Path) -> None:
    folder = tmp_path / "proxy-run"
    with Proxy(upstream=sim.base_url, api_keys=(KEY,), recorder=ProxyJournal(folder, upstream=sim.base_url),
               retry=RetryPolicy(backoff_base=0.01, backoff_max=0.02)) as proxy:  # fmt: skip
        client = openai.OpenAI(base_url=proxy.base_url, api_key="x", timeout=10)
        ids = []
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
            ids.append(raw.headers["x-genguard-exchange-id"])
        sim.configure(scenario="rate_limited:1", retry_after_s=0.05)
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
        ids.append(raw.headers["x-genguard-exchange-id"])
        assert raw.headers["x-genguard-attempts"] == "2"
        sim.configure(scenario="ok")
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
        assert chunks
        client.embeddings.create(model="text-embedding-3-small", input="a cat")
        sim.configure(scenario="quota_exceeded")
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    # Stopping the proxy writes what was queued.
    data = report(folder)
    assert data["lines"]["total"] == 7
    assert data["lines"]["ok"] == 6
    assert data["lines"]["failed"] == 1
    assert [r["code"] for r in data["by_code"]] == ["quota_exceeded"]
    assert data["retries"]["lines_retried"] == 1
    assert data["retries"]["attempts_total"] == 8
    # The rate limits: the quota error was a 429 too, but no rate limit (as the summary of a batch counts them).
    assert data["throughput"]["rate_limited_total"] == 1
    assert data["tokens"]["total"] > 0  # usage, the streamed call's included (the proxy asks for it)
    assert data["latency"]["lines"]["count"] == 7
    assert data["meta"]["source"] == "genguard proxy"
    text = CliRunner().invoke(cli, ["report", str(folder)]).output
    assert "7: 6 ok, 1 failed" in text
    assert "quota_exceeded" in text
    assert text.startswith("Proxy traffic in ")  # not a batch run to resume
    assert "genguard batch" not in text
    page = (folder / "report.html").read_text()
    assert "<h1>Proxy report: proxy-run</h1>" in page
    assert "1 of 7 exchanges failed" in page
    assert "errors.jsonl" not in page
    assert "genguard batch" not in page
    # The journal keeps no prompt, no answer and no key.
    raw_db = (folder / "journal.sqlite").read_bytes()
    assert b"Describe a pet" not in raw_db
    assert KEY.encode() not in raw_db
    assert len(set(ids)) == 4


def test_a_journal_folder_goes_on_after_a_restart(sim: Simulator, tmp_path: Path) -> None:
    for _ in range(2):
        with Proxy(upstream=sim.base_url, api_keys=(KEY,), recorder=ProxyJournal(tmp_path)) as proxy:
            openai.OpenAI(base_url=proxy.base_url, api_key="x").chat.completions.create(
                model="m", messages=MSG
            )
    assert report(tmp_path)["lines"]["total"] == 2


@pytest.mark.slow
def test_the_command_records_with_journal(sim: Simulator, tmp_path: Path) -> None:
    import os
    import signal

    # The client key from the environment, as a service manager would give it.
    env = {**os.environ, "GENGUARD_PROXY_CLIENT_KEY": "gg-env-client-key,gg-another"}
    command = [sys.executable, "-m", "genguard", "proxy", "--upstream", sim.base_url, "--port", "0",
               "--api-key", KEY, "--journal", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip().removeprefix("listening on ")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url, api_key="x", timeout=10).models.list()
        client = openai.OpenAI(base_url=base_url, api_key="gg-another", timeout=10)
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert KEY not in err
    assert report(tmp_path)["lines"]["ok"] == 1


@pytest.mark.slow
def test_sigterm_stops_the_proxy_as_ctrl_c_does_with_every_exchange_recorded(
    sim: Simulator, tmp_path: Path
) -> None:
    import signal

    # A service manager's stop (systemd, docker stop) is SIGTERM: right after the last answers, every exchange
    # must still reach the journal, and the process exit cleanly.
    command = [sys.executable, "-m", "genguard", "proxy", "--upstream", sim.base_url, "--port", "0",
               "--api-key", KEY, "--journal", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip().removeprefix("listening on ")
        client = openai.OpenAI(base_url=base_url, api_key="x", timeout=10)
        for _ in range(5):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert report(tmp_path)["lines"]["ok"] == 6


def test_exchanges_a_killed_proxy_never_recorded_do_not_take_the_next_ones_place(
    sim: Simulator, tmp_path: Path
) -> None:
    from genguard.bulk.journal import SQLiteJournal
    from genguard.bulk.model import Line, line_key

    # What a proxy killed between loading its exchanges and recording them leaves behind.
    with SQLiteJournal(tmp_path / "journal.sqlite") as journal:
        body = {"model": "m", "stream": False}
        journal.load([Line(f"px_dead_{i}", "/v1/chat/completions", body, i, "proxy",
                           line_key("/v1/chat/completions", body)) for i in (1, 2)])  # fmt: skip
        journal.commit()
    with Proxy(upstream=sim.base_url, api_keys=(KEY,), recorder=ProxyJournal(tmp_path)) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="x")
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    lines = report(tmp_path)["lines"]
    assert lines["ok"] == 3  # every exchange of this proxy recorded
    assert lines["in_flight"] == 2  # the two whose outcome is unknown, counted as not finished
    assert lines["pending"] == 0


def test_the_report_of_a_proxy_killed_between_loading_and_recording_counts_those_exchanges_in_flight(
    tmp_path: Path,
) -> None:
    from genguard.bulk.journal import SQLiteJournal
    from genguard.bulk.model import Line, line_key

    # The proxy commits its exchanges' lines, then records them: a kill between the two leaves them pending,
    # and the report is read before any proxy starts again on the folder.
    with SQLiteJournal(tmp_path / "journal.sqlite") as journal:
        journal.set_meta({"source": "genguard proxy", "upstream": "http://127.0.0.1:9/v1"})
        body = {"model": "m", "stream": False}
        journal.load([Line(f"px_dead_{i}", "/v1/chat/completions", body, i, "proxy",
                           line_key("/v1/chat/completions", body)) for i in (1, 2)])  # fmt: skip
        journal.commit()
    lines = report(tmp_path)["lines"]
    assert (lines["pending"], lines["in_flight"], lines["total"]) == (0, 2, 2)


@pytest.mark.slow
def test_a_proxy_killed_mid_traffic_leaves_a_journal_the_report_reads(sim: Simulator, tmp_path: Path) -> None:
    import signal
    import threading

    command = [sys.executable, "-m", "genguard", "proxy", "--upstream", sim.base_url, "--port", "0",
               "--api-key", KEY, "--journal", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    answered: list[int] = []
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip().removeprefix("listening on ")

        def traffic() -> None:
            client = openai.OpenAI(base_url=base_url, api_key="x", timeout=5, max_retries=0)
            while True:
                try:
                    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
                except openai.APIConnectionError:
                    return
                answered.append(1)

        workers = [threading.Thread(target=traffic) for _ in range(4)]
        for w in workers:
            w.start()
        while len(answered) < 40:
            threading.Event().wait(0.01)
        threading.Event().wait(0.5)  # the writer commits every 50 ms: some lines are surely written by now
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    for w in workers:
        w.join(10)
    lines = report(tmp_path)["lines"]
    # What was recorded is whole; at most the last ~50 ms of answers were still queued.
    assert 0 < lines["ok"] <= len(answered)
    assert lines["failed"] == 0
    assert lines["pending"] == 0
