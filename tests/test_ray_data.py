"""The Ray Data adapter over real HTTP against the simulator: in this process (the callable class called as
Ray would call it) and on a local Ray (one session, actors in other processes reaching the simulator on
127.0.0.1).

Rows choose their failure with the simulator's ``x-genguard-scenario`` header, carried per row by the
``headers`` column; every prompt is unique, so a ``NAME:N`` count is the row's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import ray

from genguard import ConfigError, RetryPolicy
from genguard.bulk.journal import SQLiteJournal
from genguard.bulk.limiter import AsyncRateLimiter, RateGovernor
from genguard.integrations.ray_data import OUTPUT_COLUMNS, GenguardUDF, map_requests, resolve_journal
from genguard.sim import Simulator

KEY = "sk-test-ray-0123456789"

# (custom_id, scenario or None, the code it must end with or None for ok, attempts)
ROWS: list[tuple[str, str | None, str | None, int]] = [
    ("good-1", None, None, 1),
    ("good-2", None, None, 1),
    ("good-3", None, None, 1),
    ("filtered", "content_filtered", "content_filtered", 1),
    ("truncated", "truncated", "truncated", 1),
    ("blocked", "prompt_blocked", "prompt_blocked", 1),
    ("limited-then-ok", "rate_limited:1", None, 2),
    ("flaky-then-ok", "server_error:2", None, 3),
]


def _items(rows: list[tuple[str, str | None, str | None, int]], tag: str) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": cid,
            "prompt": f"{tag}: say something about {cid}",
            "headers": None if scenario is None else f'{{"x-genguard-scenario": "{scenario}"}}',
        }
        for cid, scenario, _, _ in rows
    ]


def _udf_kwargs(sim: Simulator, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": sim.base_url,
        "api_key": KEY,
        "model": "gpt-4o-mini",
        "headers_column": "headers",
        "retry": RetryPolicy(backoff_base=0.01, backoff_max=0.05),
        **extra,
    }


def _by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["custom_id"]: r for r in rows}


# -- the callable class in this process ---------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fmt", ["pyarrow", "pandas", "numpy"])
def test_a_batch_of_good_and_failing_rows_comes_back_whole_in_its_own_format(
    sim: Simulator, fmt: str
) -> None:
    items = [*_items(ROWS, fmt), {"custom_id": "no-prompt", "prompt": None, "headers": None}]
    items.append({"custom_id": "bad-headers", "prompt": "x", "headers": "{not json"})
    table = pa.Table.from_pylist(items)
    batch: Any = {
        "pyarrow": table,
        "pandas": table.to_pandas(),
        "numpy": {c: np.array(table.column(c).to_pylist(), dtype=object) for c in table.column_names},
    }[fmt]
    udf = GenguardUDF(**_udf_kwargs(sim))
    try:
        out = udf(batch)
    finally:
        udf.close()
    if fmt == "pyarrow":
        assert isinstance(out, pa.Table)
        rows = out.to_pylist()
    elif fmt == "pandas":
        assert isinstance(out, pd.DataFrame)
        rows = [{k: (None if v is pd.NA else v) for k, v in r.items()} for r in out.to_dict("records")]
    else:
        assert isinstance(out, dict)
        rows = [{c: out[c][i] for c in out} for i in range(len(items))]
    assert [r["custom_id"] for r in rows] == [i["custom_id"] for i in items]  # whole, in order
    got = _by_id(rows)
    for cid, _, code, attempts in ROWS:
        assert got[cid]["code"] == code, (cid, got[cid])
        assert bool(got[cid]["ok"]) is (code is None)
        assert got[cid]["attempts"] == attempts, cid
        if code is None:
            assert got[cid]["text"], cid
            assert got[cid]["total_tokens"] > 0
        else:
            assert got[cid]["cause"]
            assert got[cid]["fix"]
    assert got["filtered"]["kind"] == "soft"
    assert got["blocked"]["kind"] == "hard"
    assert got["no-prompt"]["code"] == "invalid_input"
    assert got["no-prompt"]["attempts"] == 0
    assert "prompt is null" in got["no-prompt"]["message"]
    assert got["bad-headers"]["code"] == "invalid_input"
    assert "headers is not JSON" in got["bad-headers"]["message"]
    stats = sim.stats()
    # Nothing sent for the two bad rows; each other row sent as often as its attempts say.
    assert stats["requests"] == sum(a for *_, a in ROWS)
    verdict = stats["verdict"]
    assert verdict["ignored_retry_after"] == 0, verdict
    assert verdict["retried_non_retryable"] == 0, verdict


@pytest.mark.timeout(60)
def test_requests_from_a_body_column_or_messages_column(sim: Simulator) -> None:
    bodies = pa.Table.from_pylist(
        [
            {
                "custom_id": "b1",
                "body": '{"messages": [{"role": "user", "content": "body one"}], "max_tokens": 300}',
            },
            {"custom_id": "b2", "body": '{"model": "gpt-4o", "messages": []}'},
            {"custom_id": "b3", "body": "[1, 2"},
        ]
    )
    messages = pa.Table.from_pylist(
        [{"custom_id": "m1", "messages": [{"role": "user", "content": "messages one"}]}]
    )
    udf = GenguardUDF(base_url=sim.base_url, api_key=KEY, model="gpt-4o-mini")
    try:
        got = _by_id(udf(bodies).to_pylist())
        got.update(_by_id(udf(messages).to_pylist()))
    finally:
        udf.close()
    assert got["b1"]["ok"]
    assert got["m1"]["ok"]
    assert got["b2"]["code"] == "invalid_input"
    assert got["b2"]["message"] == "messages is an empty list"
    assert got["b3"]["code"] == "invalid_input"
    assert "body is not JSON" in got["b3"]["message"]
    assert sim.stats()["requests"] == 2


@pytest.mark.timeout(60)
def test_a_prefix_names_the_columns_apart_and_a_url_column_reaches_embeddings(sim: Simulator) -> None:
    table = pa.Table.from_pylist(
        [
            {"custom_id": "e1", "url": "/v1/embeddings", "body": '{"input": "a river"}', "text": "mine"},
            {"custom_id": "e2", "url": "/v1/videos", "body": '{"prompt": "a river"}', "text": "mine too"},
        ]
    )
    udf = GenguardUDF(
        base_url=sim.base_url, api_key=KEY, model="text-embedding-3-small", keep_response=True, prefix="gg_"
    )
    try:
        out = udf(table)
    finally:
        udf.close()
    assert out.column_names == [*table.column_names, *(f"gg_{n}" for n, _ in OUTPUT_COLUMNS), "gg_response"]
    e1, e2 = out.to_pylist()
    assert e1["text"] == "mine"  # the row's own column, untouched
    assert e1["gg_ok"] is True
    assert json.loads(e1["gg_response"])["data"][0]["embedding"]
    assert e2["gg_code"] == "invalid_input"
    assert "/v1/videos" in e2["gg_message"]
    assert sim.stats()["requests"] == 1


@pytest.mark.timeout(60)
def test_a_journal_skips_rows_already_ended_and_resends_only_the_rest(sim: Simulator, tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    first = pa.Table.from_pylist(_items(ROWS[:4], "journal"))
    everything = pa.Table.from_pylist(_items(ROWS, "journal"))
    udf = GenguardUDF(**_udf_kwargs(sim, journal=str(journal)))
    try:
        before = _by_id(udf(first).to_pylist())
        sent_first = sim.stats()["requests"]
        sim.reset()
        after = _by_id(udf(everything).to_pylist())
    finally:
        udf.close()
    assert sent_first == 4
    # Only the four rows the first run did not reach were sent: their attempts, nothing more.
    assert sim.stats()["requests"] == sum(a for *_, a in ROWS[4:])
    for cid, *_ in ROWS[:4]:
        assert after[cid]["from_journal"] is True
        assert {k: after[cid][k] for k in ("ok", "code", "text", "attempts", "total_tokens")} == {
            k: before[cid][k] for k in ("ok", "code", "text", "attempts", "total_tokens")
        }
    assert not any(after[cid]["from_journal"] for cid, *_ in ROWS[4:])
    with SQLiteJournal(journal) as j:
        assert j.counts().ended == len(ROWS)


@pytest.mark.timeout(60)
def test_a_row_whose_request_changed_is_refused_by_name_unless_rerun_changed(
    sim: Simulator, tmp_path: Path
) -> None:
    journal = str(tmp_path / "run.sqlite")
    row = {"custom_id": "c1", "prompt": "the first question"}
    changed = {"custom_id": "c1", "prompt": "another question"}
    udf = GenguardUDF(base_url=sim.base_url, api_key=KEY, model="gpt-4o-mini", journal=journal)
    try:
        udf(pa.Table.from_pylist([row]))
        [refused] = udf(pa.Table.from_pylist([changed])).to_pylist()
    finally:
        udf.close()
    assert refused["code"] == "invalid_input"
    assert "rerun_changed=True" in refused["fix"]
    assert sim.stats()["requests"] == 1
    again = GenguardUDF(
        base_url=sim.base_url, api_key=KEY, model="gpt-4o-mini", journal=journal, rerun_changed=True
    )
    try:
        [sent] = again(pa.Table.from_pylist([changed])).to_pylist()
    finally:
        again.close()
    assert sent["ok"]
    assert not sent["from_journal"]
    assert sim.stats()["requests"] == 2


@pytest.mark.timeout(60)
def test_quota_and_refused_keys_are_not_journaled_so_a_rerun_sends_them(
    sim: Simulator, tmp_path: Path
) -> None:
    journal = str(tmp_path / "run.sqlite")
    row = {"custom_id": "q", "prompt": "quota row", "headers": '{"x-genguard-scenario": "quota_exceeded"}'}
    udf = GenguardUDF(**_udf_kwargs(sim, journal=journal))
    try:
        [failed] = udf(pa.Table.from_pylist([row])).to_pylist()
        [fixed] = udf(pa.Table.from_pylist([{**row, "headers": None}])).to_pylist()
    finally:
        udf.close()
    assert failed["code"] == "quota_exceeded"
    assert failed["attempts"] == 1
    assert fixed["ok"]
    assert not fixed["from_journal"]
    assert sim.stats()["requests"] == 2


@pytest.mark.timeout(60)
def test_the_api_key_never_reaches_the_output_or_the_journal(sim: Simulator, tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    row = {"custom_id": "k", "prompt": "key row", "headers": '{"x-genguard-reply": "' + KEY + '"}'}
    udf = GenguardUDF(**_udf_kwargs(sim, journal=str(journal), keep_response=True))
    try:
        [out] = udf(pa.Table.from_pylist([row])).to_pylist()
    finally:
        udf.close()
    assert out["ok"]
    assert out["text"]
    assert out["response"]
    # The provider quoted the key back (as a model repeating a prompt may): masked in every column.
    assert KEY not in str({k: v for k, v in out.items() if k != "headers"})
    assert KEY.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


@pytest.mark.timeout(60)
def test_settings_that_would_fail_every_row_raise_before_anything_is_sent(
    sim: Simulator, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"journal=.*does not exist"):
        GenguardUDF(base_url=sim.base_url, api_key=KEY, journal=str(tmp_path / "no" / "j.sqlite"))
    with pytest.raises(ConfigError, match=r"cannot be reached|127\.0\.0\.1:9"):
        GenguardUDF(base_url=sim.base_url, api_key=KEY, limiter="redis://127.0.0.1:9/0")
    with pytest.raises(ConfigError, match="not a limiter URL"):
        GenguardUDF(base_url=sim.base_url, api_key=KEY, limiter="http://127.0.0.1")
    with pytest.raises(ConfigError, match="not callable"):
        GenguardUDF(base_url=sim.base_url, api_key=KEY, gate=AsyncRateLimiter(RateGovernor()))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="url="):
        GenguardUDF(base_url=sim.base_url, api_key=KEY, url="/v1/videos")
    udf = GenguardUDF(base_url=sim.base_url, api_key=KEY, model="m", journal=str(tmp_path / "j.sqlite"))
    try:
        with pytest.raises(ConfigError, match="no column 'custom_id'"):
            udf(pa.Table.from_pylist([{"prompt": "x"}]))
        with pytest.raises(ConfigError, match="prefix="):
            udf(pa.Table.from_pylist([{"custom_id": "a", "prompt": "x", "text": "mine"}]))
        prefixed = GenguardUDF(base_url=sim.base_url, api_key=KEY, model="m", prefix="gg_")
        try:
            with pytest.raises(ConfigError, match="already has the column 'gg_code'"):
                prefixed(pa.Table.from_pylist([{"prompt": "x", "gg_code": "mine"}]))
        finally:
            prefixed.close()
        with pytest.raises(ConfigError, match="no column to build requests"):
            udf(pa.Table.from_pylist([{"custom_id": "a", "question": "x"}]))
    finally:
        udf.close()
    assert sim.stats()["requests"] == 0
    with pytest.raises(ConfigError, match="unknown option 'modle'"):
        map_requests(None, base_url=sim.base_url, modle="m")
    with pytest.raises(ConfigError, match="batches_per_actor must be a whole number"):
        map_requests(None, base_url=sim.base_url, batches_per_actor=0)


@pytest.mark.timeout(30)
@pytest.mark.timeout(60)
def test_a_redis_limiter_url_gives_every_actor_the_shared_budget(sim: Simulator) -> None:
    import uuid

    import redis

    prefix = f"genguard-test-ray-{uuid.uuid4().hex[:12]}"
    url = f"redis://127.0.0.1:6379/0?name=rows&prefix={prefix}"
    udf = GenguardUDF(base_url=sim.base_url, api_key=KEY, model="m", limiter=url)
    try:
        out = udf(pa.Table.from_pylist([{"custom_id": f"r{i}", "prompt": f"hello {i}"} for i in range(5)]))
    finally:
        udf.close()
    assert out.column("ok").to_pylist() == [True] * 5
    r = redis.Redis(host="127.0.0.1", port=6379, db=0)
    try:
        shared = {k.decode(): v.decode() for k, v in r.hgetall(f"{prefix}:rows").items()}
        # The budget lives in Redis: the simulator's limit read from its headers, written for every worker.
        assert shared, "nothing was written to the shared limiter"
        assert KEY not in str(shared)
    finally:
        for key in r.scan_iter(f"{prefix}*"):
            r.delete(key)
        r.close()


@pytest.mark.timeout(60)
def test_a_postgres_journal_skips_rows_already_ended_across_udfs(sim: Simulator) -> None:
    from _pg import pg_schema

    with pg_schema("gg_ray") as url:
        with pytest.raises(ConfigError, match=r"\?run=NAME"):
            resolve_journal(url)  # a database holds many runs: this pipeline's must be named
        first = pa.Table.from_pylist(_items(ROWS[:4], "pg"))
        everything = pa.Table.from_pylist(_items(ROWS, "pg"))
        one = GenguardUDF(**_udf_kwargs(sim, journal=f"{url}&run=reviews"))
        try:
            before = _by_id(one(first).to_pylist())
        finally:
            one.close()
        assert sim.stats()["requests"] == 4
        sim.reset()
        # Another actor (another process, another machine: another UDF here) with the same journal and run.
        two = GenguardUDF(**_udf_kwargs(sim, journal=f"{url}&run=reviews"))
        try:
            after = _by_id(two(everything).to_pylist())
        finally:
            two.close()
    assert sim.stats()["requests"] == sum(a for *_, a in ROWS[4:])
    for cid, *_ in ROWS[:4]:
        assert after[cid]["from_journal"] is True
        assert after[cid]["text"] == before[cid]["text"]
    assert not any(after[cid]["from_journal"] for cid, *_ in ROWS[4:])


# -- on a local Ray -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the module's tests: two CPUs (the machine's), no dashboard; shut down at the end."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    # The gates and checks below are defined here, a module Ray's workers cannot import: send them whole.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


class _CountingGate:
    """An in-process AsyncRateLimiter that also appends one line per acquire and per observed answer to a
    file, so the test can see that every attempt of every actor went through the gate."""

    def __init__(self, log: str) -> None:
        self.limiter = AsyncRateLimiter(RateGovernor(rpm=6000))
        self.log = log

    def _write(self, line: str) -> None:
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    async def acquire(self, tokens: int) -> None:
        await self.limiter.acquire(tokens)
        self._write("acquire")

    def observe(self, status: int, headers: Any, **kw: Any) -> None:
        self.limiter.observe(status, headers, **kw)
        self._write(f"observe {status}")


def _gate_factory(log: str) -> Any:
    return lambda: _CountingGate(log)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_on_ray_a_dataset_comes_back_whole_and_a_rerun_sends_nothing_done(
    ray_session: None, sim: Simulator, tmp_path: Path
) -> None:
    rows = ROWS * 3
    items = [
        {**item, "custom_id": f"{item['custom_id']}-{n}"}
        for n in range(3)
        for item in _items(ROWS, f"ray{n}")
    ]
    items.append({"custom_id": "no-prompt", "prompt": None, "headers": None})
    journal = tmp_path / "run.sqlite"
    log = tmp_path / "gate.log"
    kwargs = _udf_kwargs(sim, journal=str(journal), gate=_gate_factory(str(log)))
    ds = ray.data.from_items(items)

    out = map_requests(ds, actors=2, batch_size=4, **kwargs).take_all()

    assert sorted(r["custom_id"] for r in out) == sorted(i["custom_id"] for i in items)
    got = _by_id(out)
    for n in range(3):
        for cid, _, code, attempts in ROWS:
            row = got[f"{cid}-{n}"]
            assert (row["ok"], row["code"], row["attempts"]) == (code is None, code, attempts), row
            assert row["from_journal"] is False
    assert got["no-prompt"]["code"] == "invalid_input"
    sent = sum(a for *_, a in rows)
    stats = sim.stats()
    assert stats["requests"] == sent
    assert stats["verdict"]["ignored_retry_after"] == 0
    assert stats["verdict"]["retried_non_retryable"] == 0
    # Every attempt of both actors asked the gate, and the gate heard every answer (the 429s among them).
    lines = log.read_text().splitlines()
    assert lines.count("acquire") == sent
    assert sum(1 for line in lines if line.startswith("observe")) == sent
    assert lines.count("observe 429") == 3
    with SQLiteJournal(journal) as j:
        assert j.counts().ended == len(rows)

    sim.reset()
    again = map_requests(ray.data.from_items(items), actors=2, batch_size=4, **kwargs).take_all()

    assert sim.stats()["requests"] == 0  # nothing paid twice
    regot = _by_id(again)
    assert len(again) == len(items)
    for cid in got:
        if cid == "no-prompt":
            continue
        assert regot[cid]["from_journal"] is True
        assert (regot[cid]["ok"], regot[cid]["code"], regot[cid]["text"]) == (
            got[cid]["ok"],
            got[cid]["code"],
            got[cid]["text"],
        )


def _map_workers_of_other_jobs() -> list[dict[str, Any]]:
    """Ray's records of the map actors of other jobs than the test's own, alive or not."""
    from ray._private import state

    ours = ray.get_runtime_context().get_job_id()
    return [a for a in state.actors().values() if "MapWorker" in a["ActorClassName"] and a["JobID"] != ours]


def _map_worker_pids_of_other_jobs() -> list[int]:
    return [a["Pid"] for a in _map_workers_of_other_jobs() if a["Pid"]]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie no longer runs
    except FileNotFoundError:
        return True


def _crash_items(n: int) -> list[dict[str, Any]]:
    return [{"custom_id": f"r{i:03}", "prompt": f"crash test row {i}", "headers": None} for i in range(n)]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_on_ray_a_rerun_after_a_partial_run_sends_only_the_missing_rows(
    ray_session: None, sim: Simulator, tmp_path: Path
) -> None:
    items = _crash_items(40)
    kwargs = _udf_kwargs(sim, journal=str(tmp_path / "run.sqlite"))
    first = map_requests(ray.data.from_items(items[:25]), actors=2, batch_size=5, **kwargs).take_all()
    assert sim.stats()["requests"] == 25
    sim.reset()

    again = map_requests(ray.data.from_items(items), actors=2, batch_size=5, **kwargs).take_all()

    assert sim.stats()["requests"] == 15
    assert sorted(r["custom_id"] for r in again if r["from_journal"]) == sorted(r["custom_id"] for r in first)
    assert len(again) == 40
    assert all(r["ok"] for r in again)


# A pipeline's driver, run as its own process on the test's Ray: killed with SIGKILL halfway, as a crashed
# notebook or job is. Its actors die with it (Ray ties them to the job that made them).
_DRIVER = r"""
import json, sys
import ray
from genguard import RetryPolicy
from genguard.integrations.ray_data import map_requests

address, items, kwargs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ray.init(address=address, log_to_driver=False, configure_logging=False)
kwargs["retry"] = RetryPolicy(max_attempts=1)
map_requests(ray.data.from_items(items), actors=2, batch_size=5, **kwargs).take_all()
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_on_ray_a_rerun_after_the_pipeline_died_sends_only_the_rows_not_ended(
    ray_session: None, sim: Simulator, tmp_path: Path
) -> None:
    items = _crash_items(200)
    # One row hangs (the simulator stalls it for a minute): the driver is killed long before it could end.
    items[3]["headers"] = '{"x-genguard-scenario": "timeout"}'
    # The doomed run has a simulator of its own: a request its actors wrote just before they died may be read
    # by the server a moment after they are gone, and must not be counted as one the rerun sent.
    with Simulator(sim.config, stall_s=60.0) as doomed:
        journal = tmp_path / "run.sqlite"
        options = {"base_url": doomed.base_url, "api_key": KEY, "model": "gpt-4o-mini", "headers_column": "headers",
                   "journal": str(journal)}  # fmt: skip
        address = ray.get_runtime_context().gcs_address
        driver = subprocess.Popen(
            [sys.executable, "-c", _DRIVER, address, json.dumps(items), json.dumps(options)]
        )
        try:
            while not journal.exists() or _ended(journal) < 5:  # the test's timeout bounds this
                assert driver.poll() is None, "the driver ended before it was killed"
                time.sleep(0.05)
            actors = _map_worker_pids_of_other_jobs()
        finally:
            driver.kill()
            driver.wait()
        # Ray ends a dead job's actors by itself, a moment later; they may still send or record meanwhile, so they
        # are killed here too (after the driver: while it lived, Ray would have restarted them), and waited for.
        assert actors
        for pid in actors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while not all(_gone(pid) for pid in actors):  # the test's timeout bounds this
            time.sleep(0.05)
        # An actor Ray was restarting when the pids were read had none yet: none may live on to record a row.
        while live := [a for a in _map_workers_of_other_jobs() if a["State"] != "DEAD"]:
            for a in live:
                if a["Pid"] and not _gone(a["Pid"]):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(a["Pid"], signal.SIGKILL)
            time.sleep(0.05)
        ended = _ended(journal)
        assert 5 <= ended < len(items)
        assert ended <= doomed.stats()["requests"]  # a row cut off in flight was sent, not recorded
    sim.configure(stall_s=5.0)
    items[3]["headers"] = None

    again = map_requests(
        ray.data.from_items(items), actors=2, batch_size=5, **_udf_kwargs(sim, journal=str(journal))
    )
    rows = again.take_all()

    assert len(rows) == len(items)
    assert all(r["ok"] for r in rows)
    assert sum(1 for r in rows if r["from_journal"]) == ended
    assert sum(r["attempts"] for r in rows if not r["from_journal"]) == len(items) - ended
    assert sim.stats()["requests"] == len(items) - ended
    assert _ended(journal) == len(items)


def _ended(journal: Path) -> int:
    j = resolve_journal(journal)()  # waits its turn if an actor is creating the file right now
    try:
        return j.counts().ended
    finally:
        j.close()


def _ray_section() -> str:
    """docs/scale.md's Ray Data section."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "scale.md").read_text()
    return page[page.index("\n## Ray Data\n") :].split("\n## ", 2)[1]


@pytest.mark.timeout(30)
def test_output_columns_are_documented() -> None:
    page = _ray_section()
    missing = [name for name, _ in OUTPUT_COLUMNS if f"`{name}`" not in page]
    assert not missing, missing


@pytest.mark.timeout(30)
def test_sqlite_is_what_a_path_opens(tmp_path: Path) -> None:
    journal = resolve_journal(tmp_path / "j.sqlite")()
    try:
        assert isinstance(journal, SQLiteJournal)
        assert sqlite3.connect(tmp_path / "j.sqlite").execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        journal.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_example_in_docs_scale_md_ray_data_runs_and_prints_what_it_says(
    ray_session: None, capsys: pytest.CaptureFixture[str]
) -> None:
    page = _ray_section()
    block = re.findall(r"```python\n(.*?)```", page, flags=re.S)[0]
    exec(compile(block, "docs/scale.md", "exec"), {"__name__": "docs_ray"})
    shown = re.search(r"# (\d+ rows, .*)", block)
    assert shown is not None
    assert capsys.readouterr().out.strip() == shown.group(1)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_sqlite_journal_is_refused_on_a_cluster_of_several_nodes(
    ray_session: None, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = ray.data.from_items([{"custom_id": "a", "prompt": "x"}])
    journal = str(tmp_path / "j.sqlite")
    assert map_requests(ds, base_url=sim.base_url, api_key=KEY, journal=journal) is not None  # one node: fine
    two = [{"NodeID": "a", "Alive": True}, {"NodeID": "b", "Alive": True}, {"NodeID": "c", "Alive": False}]
    monkeypatch.setattr(ray, "nodes", lambda: two)
    with pytest.raises(ConfigError, match="this Ray cluster has 2 nodes"):
        map_requests(ds, base_url=sim.base_url, api_key=KEY, journal=journal)


@pytest.mark.timeout(30)
def test_the_options_checked_in_the_driver_are_the_class_options_with_the_same_defaults() -> None:
    import inspect

    from genguard.integrations.ray_data import _options

    def defaults(fn: Any) -> dict[str, Any]:
        return {n: p.default for n, p in inspect.signature(fn).parameters.items()}

    assert defaults(GenguardUDF) == defaults(_options)


@pytest.mark.timeout(60)
def test_a_limiter_that_does_not_answer_is_told_in_the_driver_before_any_actor_starts(
    ray_session: None, sim: Simulator
) -> None:
    ds = ray.data.from_items([{"custom_id": "a", "prompt": "x"}])
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1:9") as caught:
        map_requests(
            ds, base_url=sim.base_url, api_key=KEY, model="m", limiter="redis://:hunter2pw@127.0.0.1:9/0"
        )
    assert "hunter2pw" not in str(caught.value)  # the URL's password is masked
    assert sim.stats()["requests"] == 0
