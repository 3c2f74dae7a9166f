"""`genguard batch` as a user runs it, against the simulator: exit codes, the summary (reprinted by a resumed
run that sends nothing), bad input named file:line with nothing sent, --retry-failed's forms, --json, and the
API keys kept out of everything the run writes or prints."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from _batch_helpers import check_records, lines_of, records, write_input
from genguard.bulk.journal import BatchCounts
from genguard.bulk.runner import BatchResult
from genguard.cli import cli
from genguard.cli.batch import _summary_text
from genguard.sim import Simulator

KEY = "sk-cli-batch-Zq8xW3vT5yU7iO9p"
BAD_KEY = "sk-cli-batch-refused-Lk2Jh4Gf6Ds8"


def batch(sim: Simulator | None, *args: str, key: str | None = KEY) -> tuple[int, str, str]:
    argv = ["batch", *args, "--progress", "plain"]
    if sim is not None:
        argv += ["--base-url", sim.base_url]
    if key is not None:
        argv += ["--api-key", key]
    result = CliRunner().invoke(cli, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _requests(sim: Simulator) -> int:
    n: int = sim.stats()["requests"]
    return n


def test_every_line_ok_exits_0_and_a_second_run_reprints_the_summary(sim: Simulator, tmp_path: Path) -> None:
    lines = lines_of(12)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    code, stdout, _ = batch(sim, str(src), "--out", str(out))
    assert code == 0
    assert "12/12 lines ended: 12 ok, 0 failed" in stdout
    assert "this run: 12 requests" in stdout
    assert (out / "report.html").exists()
    check_records(out, [line["custom_id"] for line in lines])
    code, again, _ = batch(sim, str(src), "--out", str(out))
    assert code == 0
    assert _requests(sim) == 12
    assert "12/12 lines ended: 12 ok, 0 failed" in again
    assert "this run" not in again  # nothing was sent
    # The folder alone resumes too.
    code, alone, _ = batch(sim, "--out", str(out))
    assert (code, _requests(sim)) == (0, 12)
    assert "12/12 lines ended" in alone


def test_failed_lines_exit_1_with_the_codes_and_retry_failed_forms(sim: Simulator, tmp_path: Path) -> None:
    lines = lines_of(8)
    for line in lines[:3]:
        line["body"]["max_tokens"] = 1
    lines[3]["body"]["temperature"] = 5
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    code, stdout, _ = batch(sim, str(src), "--out", str(out))
    assert code == 1
    assert "8/8 lines ended: 4 ok, 4 failed" in stdout
    assert "truncated 3" in stdout
    assert "bad_request 1" in stdout
    assert _requests(sim) == 8
    code, _, _ = batch(sim, str(src), "--out", str(out), "--retry-failed", "truncated")
    assert (code, _requests(sim)) == (1, 11)
    # Bare --retry-failed (last on the line): every failure.
    argv = [
        "batch",
        str(src),
        "--out",
        str(out),
        "--base-url",
        sim.base_url,
        "--api-key",
        KEY,
        "--retry-failed",
    ]
    result = CliRunner().invoke(cli, argv)
    assert (result.exit_code, _requests(sim)) == (1, 15)
    code, _, err = batch(sim, str(src), "--out", str(out), "--retry-failed", "truncatd")
    assert code == 2
    assert "did you mean 'truncated'" in err
    assert _requests(sim) == 15
    check_records(out, [line["custom_id"] for line in lines])


def test_json_summary_and_export(sim: Simulator, tmp_path: Path) -> None:
    lines = lines_of(5)
    src = write_input(tmp_path / "in.jsonl", lines)
    export = tmp_path / "all.jsonl"
    code, stdout, _ = batch(sim, str(src), "--out", str(tmp_path / "run"), "--json", "--export", str(export))
    assert code == 0
    data = orjson.loads(stdout)
    assert (data["total"], data["ok"], data["failed"], data["pending"], data["sent"]) == (5, 5, 0, 0, 5)
    assert data["finished"] is True
    assert data["exit_code"] == 0
    assert data["output"] == str(tmp_path / "run" / "output.jsonl")
    exported = [orjson.loads(line) for line in export.read_bytes().splitlines()]
    assert [r["custom_id"] for r in exported] == [line["custom_id"] for line in lines]
    # The output files' own lines, in input order.
    assert all(r["genguard"]["ok"] and r["response"]["body"]["choices"] for r in exported)
    ok, _ = records(tmp_path / "run")
    assert sorted(exported, key=lambda r: r["custom_id"]) == sorted(ok, key=lambda r: r["custom_id"])
    assert not export.with_name("all.jsonl.tmp").exists()


def test_an_export_path_that_cannot_be_written_exits_2_before_anything_is_sent(
    sim: Simulator, tmp_path: Path
) -> None:
    src = write_input(tmp_path / "in.jsonl", lines_of(3))
    export = tmp_path / "no" / "such" / "all.jsonl"
    code, _, err = batch(sim, str(src), "--out", str(tmp_path / "run"), "--export", str(export))
    assert code == 2
    assert f"the folder {export.parent} does not exist" in err
    assert _requests(sim) == 0
    assert not (tmp_path / "run").exists()


def test_bad_input_exits_2_naming_each_line_and_sends_nothing(sim: Simulator, tmp_path: Path) -> None:
    lines: list[object] = list(lines_of(4))
    src = write_input(
        tmp_path / "in.jsonl",
        [
            lines[0],
            b'{"custom_id": "x", "body": {"model": }',
            lines[1],
            lines[0],
            {"custom_id": "y", "url": "/v1/x"},
        ],
    )
    out = tmp_path / "run"
    code, _, err = batch(sim, str(src), "--out", str(out))
    assert code == 2
    # Every bad line at once, the repeated custom_id among them, in the file's order.
    assert "3 bad input lines" in err
    assert err.index(f"{src}:2:") < err.index(f"{src}:4:") < err.index(f"{src}:5:")
    assert "--skip-invalid" in err
    assert _requests(sim) == 0
    assert records(out) == ([], [])
    # With --skip-invalid the two bad lines are failures and the repeat is left out: the first line of its id
    # runs, once.
    code, stdout, err = batch(sim, str(src), "--out", str(out), "--skip-invalid")
    assert code == 1, err
    assert "invalid_input 2" in stdout
    assert "1 line repeats a custom_id of an earlier line: left out" in stdout
    assert _requests(sim) == 2
    ok, failed = records(out)
    assert sorted(r["custom_id"] for r in ok) == sorted([lines[0]["custom_id"], lines[1]["custom_id"]])
    assert len(failed) == 2
    # A repeat given alone (no other bad line) is refused the same way, and says how to skip it.
    src = write_input(tmp_path / "in2.jsonl", [lines[2], lines[2]])
    code, _, err = batch(sim, str(src), "--out", str(tmp_path / "run2"))
    assert code == 2
    assert f"{src}:2:" in err
    assert "--skip-invalid" in err
    assert _requests(sim) == 2


def test_a_changed_line_exits_2_unless_rerun_changed(sim: Simulator, tmp_path: Path) -> None:
    lines = lines_of(4)
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    assert batch(sim, str(src), "--out", str(out))[0] == 0
    lines[1]["body"]["max_tokens"] = 33
    write_input(src, lines)
    code, _, err = batch(sim, str(src), "--out", str(out))
    assert code == 2
    assert f"{src}:2:" in err
    assert "--rerun-changed" in err
    assert _requests(sim) == 4
    code, _, _ = batch(sim, str(src), "--out", str(out), "--rerun-changed")
    assert (code, _requests(sim)) == (0, 5)


def test_new_settings_for_the_lines_not_run_yet_keep_what_ended(sim: Simulator, tmp_path: Path) -> None:
    # Three lines ended, three loaded and not sent (a run that stopped at once), then max_tokens set on all six.
    lines = lines_of(6)
    out = tmp_path / "run"
    assert batch(sim, str(write_input(tmp_path / "first.jsonl", lines[:3])), "--out", str(out))[0] == 0
    src = write_input(tmp_path / "in.jsonl", lines)
    assert batch(sim, str(src), "--out", str(out), "--deadline", "1e-9")[0] == 3  # stops before a send
    assert _requests(sim) == 3
    for line in lines:
        line["body"]["max_tokens"] = 77
    write_input(src, lines)
    code, _, err = batch(sim, str(src), "--out", str(out))
    assert code == 2
    assert [f"{src}:{i}:" in err for i in range(1, 7)] == [True] * 3 + [
        False
    ] * 3  # only the lines that ended
    assert "--keep-changed" in err
    assert "3 lines of this run changed since they ended; nothing was sent" in err
    assert batch(sim, str(src), "--out", str(out), "--keep-changed", "--rerun-changed")[0] == 2
    assert _requests(sim) == 3
    code, stdout, _ = batch(sim, str(src), "--out", str(out), "--keep-changed", "--json")
    assert code == 0
    summary = orjson.loads(stdout)
    assert (summary["ok"], summary["renewed"], summary["kept_changed"]) == (6, 3, 3)
    assert _requests(sim) == 6
    with sqlite3.connect(out / "journal.sqlite") as db:
        sent = dict(db.execute("SELECT custom_id, body FROM lines JOIN bodies USING (id)").fetchall())
    assert [orjson.loads(sent[line["custom_id"]]).get("max_tokens") for line in lines] == [80] * 3 + [77] * 3
    # The run goes on keeping them: resumed unchanged, it does not refuse what it took.
    code, stdout, _ = batch(sim, str(src), "--out", str(out))
    assert code == 0
    assert "3 lines that ended kept their answers" in stdout
    assert _requests(sim) == 6
    # Until --rerun-changed sends them again with their new requests.
    assert batch(sim, str(src), "--out", str(out), "--rerun-changed")[0] == 0
    assert _requests(sim) == 9
    code, stdout, _ = batch(sim, str(src), "--out", str(out))
    assert (code, "kept their answers" in stdout, _requests(sim)) == (0, False, 9)


def test_an_empty_input_says_so_and_sends_nothing(sim: Simulator, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n  \n")
    code, stdout, _ = batch(sim, str(src), "--out", str(tmp_path / "run"))
    assert (code, _requests(sim)) == (0, 0)
    assert "0/0 lines ended" in stdout
    assert "the input holds no request line" in stdout


def test_simulate_limits_a_model_on_its_own(tmp_path: Path) -> None:
    lines = lines_of(200)
    for line in lines[::10]:
        line["body"]["model"] = "llama3:8b"  # a name with a colon in it
    src = write_input(tmp_path / "in.jsonl", lines)
    argv = ["batch", str(src), "--out", str(tmp_path / "run"), "--simulate", "rpm=6000,rpm_for=llama3:8b:600,"
            "chaos=off", "--json"]  # fmt: skip
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    limits = orjson.loads(result.stdout)["limits"]
    assert limits["llama3:8b"]["limit_rps"] == pytest.approx(10.0)
    assert limits["gpt-4o-mini"]["limit_rps"] == pytest.approx(100.0)
    bad = CliRunner().invoke(cli, [*argv[:5], "rpm_for=gpt-4o:lots"])
    assert bad.exit_code == 2
    assert "rpm_for gpt-4o" in bad.stderr
    for spec, said in (("rpm_for=gpt-4o", "rpm_for entry 'gpt-4o'"), ("rpm_for=:5", "names no model")):
        bad = CliRunner().invoke(cli, [*argv[:5], spec])
        assert (bad.exit_code, said in bad.stderr) == (2, True), bad.stderr


def test_each_model_runs_at_its_own_limit(tmp_path: Path) -> None:
    # Providers limit each model on its own (and state each model's limits in its answers' headers): one pace
    # for the run followed whichever model answered last, and a slow model's limit held every line to it.
    lines = lines_of(100)
    for line in lines[::10]:
        line["body"]["model"] = "gpt-4o"
    src = write_input(tmp_path / "in.jsonl", lines)
    with Simulator(rpm=3000, rpm_for={"gpt-4o": 240}, rate_window_s=1) as sim:
        code, stdout, _ = batch(sim, str(src), "--out", str(tmp_path / "run"), "--json")
        assert code == 0, stdout
        summary = orjson.loads(stdout)
        assert summary["ok"] == 100
        assert summary["limits"] == {
            "gpt-4o": {"limit_rps": pytest.approx(4.0), "limit_source": "headers"},
            "gpt-4o-mini": {"limit_rps": pytest.approx(50.0), "limit_source": "headers"},
        }
        assert summary["limit_rps"] == pytest.approx(54.0)
        code, stdout, _ = batch(sim, str(src), "--out", str(tmp_path / "again"))
    assert code == 0
    assert "limits found per model: " in stdout
    assert "gpt-4o ~4.0 req/s (from headers)" in stdout
    assert "gpt-4o-mini ~50.0 req/s (from headers)" in stdout


def test_usage_errors_exit_2(sim: Simulator, tmp_path: Path) -> None:
    code, _, err = batch(sim, str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "run"))
    assert code == 2
    assert "no such file" in err
    code, _, err = batch(sim, "--out", str(tmp_path / "empty"))
    assert code == 2
    assert "INPUT" in err
    src = write_input(tmp_path / "rows.jsonl", [{"text": "a"}])
    code, _, err = batch(sim, str(src), "--out", str(tmp_path / "run"), "--template", "Classify: {text}")
    assert code == 2
    assert "--model" in err
    assert _requests(sim) == 0


def _grep(out: Path, outputs: list[str], keys: tuple[str, ...]) -> None:
    files = sorted(p for p in out.iterdir() if p.is_file())
    names = {p.name for p in files}
    assert {"output.jsonl", "errors.jsonl", "journal.sqlite", "report.html"} <= names
    for path in files:
        data = path.read_bytes()
        for key in keys:
            assert key.encode() not in data, f"{path.name} holds an API key"
    for text in outputs:
        for key in keys:
            assert key not in text


def test_api_keys_never_written_or_printed(sim: Simulator, tmp_path: Path) -> None:
    # The first key is refused (the run moves to the second); three answers are cut short, and every answer
    # quotes the key in use back, as a provider echoing the request might (or a model repeating its prompt).
    sim.configure(api_keys=(KEY,), reply=f"Your key is {KEY}. Bearer {KEY}")
    lines = lines_of(6)
    for line in lines[:3]:
        line["body"]["max_tokens"] = 2
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    argv = ["batch", str(src), "--out", str(out), "--base-url", sim.base_url, "--api-key", BAD_KEY,
            "--api-key", KEY, "--progress", "plain"]  # fmt: skip
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1, result.output
    outputs = [result.stdout, result.stderr]
    ok, failed = records(out)
    assert len(ok) + len(failed) == 6
    assert failed
    # The answers are kept, the key in them masked.
    assert ok[0]["genguard"]["text"] == "Your key is ***. Bearer ***"
    assert ok[0]["response"]["body"]["choices"][0]["message"]["content"] == ok[0]["genguard"]["text"]
    result = CliRunner().invoke(cli, [*argv, "--json"])
    outputs += [result.stdout, result.stderr]
    result = CliRunner().invoke(cli, ["report", str(out)])
    outputs += [result.stdout, result.stderr]
    _grep(out, outputs, (KEY, BAD_KEY))


def test_api_keys_never_written_or_printed_when_every_key_is_refused(sim: Simulator, tmp_path: Path) -> None:
    sim.configure(api_keys=("sk-the-only-good-one-0000000",))
    src = write_input(tmp_path / "in.jsonl", lines_of(5))
    out = tmp_path / "run"
    argv = ["batch", str(src), "--out", str(out), "--base-url", sim.base_url, "--api-key", BAD_KEY,
            "--api-key", KEY]  # fmt: skip
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 3, result.output
    assert "refused" in result.stdout
    _grep(out, [result.stdout, result.stderr], (KEY, BAD_KEY))


@pytest.mark.parametrize("flag", ["--json", "--progress=plain"])
def test_simulate_runs_the_demo_without_a_key(tmp_path: Path, flag: str) -> None:
    src = write_input(tmp_path / "in.jsonl", lines_of(6))
    result = CliRunner().invoke(
        cli, ["batch", str(src), "--out", str(tmp_path / "run"), "--simulate", "rpm=60000,chaos=off", flag]
    )
    assert result.exit_code == 0, result.output
    assert "simulator: http://127.0.0.1:" in result.stderr
    check_records(tmp_path / "run", [f"q-{i:04d}" for i in range(1, 7)])


def test_simulate_without_rate_limit_headers_finds_the_limit_from_429s(tmp_path: Path) -> None:
    src = write_input(tmp_path / "in.jsonl", lines_of(120))
    out = tmp_path / "run"
    argv = ["batch", str(src), "--out", str(out), "--simulate", "rpm=1200,chaos=off,headers=off", "--json"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert "no rate-limit headers" in result.stderr
    summary = orjson.loads(result.stdout)
    assert summary["rate_limited"] >= 1  # nothing else says where the limit is
    assert summary["limit_source"] == "429s"
    assert summary["limit_rps"] == pytest.approx(20, rel=0.5)
    check_records(out, [f"q-{i:04d}" for i in range(1, 121)])


@pytest.mark.parametrize("chaos", ["rate_limited:0.5;truncated:0.25", "rate_limited=0.5;truncated=0.25"])
def test_simulate_takes_chaos_as_help_shows_it(tmp_path: Path, chaos: str) -> None:
    src = write_input(tmp_path / "in.jsonl", lines_of(8))
    argv = ["batch", str(src), "--out", str(tmp_path / "run"), "--simulate", f"rpm=60000,chaos={chaos}",
            "--progress", "none"]  # fmt: skip
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1, result.output  # some lines end truncated, as the chaos says
    assert "rate_limited=0.5,truncated=0.25" in result.stderr
    assert "truncated" in result.stdout


@pytest.mark.parametrize(("args", "source"), [([], "(from headers)"), (["--rpm", "3000"], "(from --rpm)")])
def test_the_summary_says_where_the_limit_came_from(tmp_path: Path, args: list[str], source: str) -> None:
    src = write_input(tmp_path / "in.jsonl", lines_of(4))
    argv = ["batch", str(src), "--out", str(tmp_path / "run"), "--simulate", "rpm=6000,chaos=off",
            "--progress", "none", *args]  # fmt: skip
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert source in result.stdout


@pytest.mark.parametrize("spec", ["headers=maybe", "headers=", "colour=blue", "rpm=fast", "ttft_ms=soon"])
def test_a_bad_simulate_setting_exits_2_naming_it(tmp_path: Path, spec: str) -> None:
    src = write_input(tmp_path / "in.jsonl", lines_of(2))
    result = CliRunner().invoke(cli, ["batch", str(src), "--out", str(tmp_path / "run"), "--simulate", spec])
    assert result.exit_code == 2
    assert spec.split("=")[0] in result.stderr
    assert not (tmp_path / "run" / "output.jsonl").exists()


def test_a_placeholder_key_leaves_the_answers_whole(sim: Simulator, tmp_path: Path) -> None:
    # "k" is in every answer (its JSON too): a local server's placeholder key is no secret to mask.
    sim.configure(reply="ok, keep it")
    src = write_input(tmp_path / "in.jsonl", lines_of(3))
    code, _, _ = batch(sim, str(src), "--out", str(tmp_path / "run"), key="k")
    assert code == 0
    ok, _ = records(tmp_path / "run")
    assert [r["genguard"]["text"] for r in ok] == ["ok, keep it"] * 3


def test_a_provider_that_cannot_be_reached_exits_3_with_every_line_to_resume(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # closed again at once: connections are refused
    src = write_input(tmp_path / "in.jsonl", lines_of(5))
    code, stdout, _ = batch(
        None, str(src), "--out", str(tmp_path / "run"), "--base-url", gone, "--max-attempts", "2"
    )
    assert code == 3
    assert "0/5 lines ended" in stdout
    assert "5 lines not sent yet" in stdout
    assert f"stopped: the provider at {gone} cannot be reached" in stdout
    assert "check --base-url, the network and that the server is up" in stdout


def test_another_input_into_the_same_out_says_what_the_run_already_held(
    sim: Simulator, tmp_path: Path
) -> None:
    first = write_input(tmp_path / "a.jsonl", lines_of(4, prefix="a"))
    second = write_input(tmp_path / "b.jsonl", lines_of(3, prefix="b"))
    out = str(tmp_path / "run")
    assert batch(sim, str(first), "--out", out)[0] == 0
    code, stdout, _ = batch(sim, str(second), "--out", out)
    assert code == 0
    assert "7/7 lines ended: 7 ok, 0 failed" in stdout
    assert "4 of them are not in this input (an earlier input's, run into the same --out)" in stdout
    code, stdout, _ = batch(sim, str(second), "--out", out, "--json")
    assert orjson.loads(stdout)["absent"] == 4
    # The same input again has nothing to say about it.
    assert "not in this input" not in batch(sim, str(first), "--out", str(tmp_path / "alone"))[1]


def test_the_summary_tells_lines_cut_off_on_the_wire_from_lines_not_sent(tmp_path: Path) -> None:
    counts = BatchCounts(pending=7, in_flight=3)
    text = _summary_text(BatchResult(tmp_path, 3, counts, stopped="stopped for a test"), None)
    assert (
        "7 lines not sent yet, 3 cut off on the wire (sent again when resumed: they may be billed twice)"
        in text
    )
    # Shared, the lines in flight are the other workers'.
    shared = BatchResult(tmp_path, 3, counts, journal="postgresql://h/db", run="r", wrote_outputs=False)
    assert "10 lines not sent yet" in _summary_text(shared, None)
    # Lines a stop cut off while they waited for a retry were sent: "tried already", not "not sent yet".
    tried = BatchCounts(pending=7, in_flight=3, tried=2)
    text = _summary_text(BatchResult(tmp_path, 3, tried, stopped="stopped for a test"), None)
    assert (
        "7 lines to resume, 2 of them tried already (their attempts go on when resumed), 3 cut off on the"
        in text
    )
    assert "not sent yet" not in text
    text = _summary_text(BatchResult(tmp_path, 3, BatchCounts(pending=7, tried=7)), None)
    assert "7 lines to resume, 7 of them tried already" in text


def test_an_out_folder_holding_something_else_exits_2(sim: Simulator, tmp_path: Path) -> None:
    src = write_input(tmp_path / "in.jsonl", lines_of(2))
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "journal.sqlite").write_bytes(b"not a database at all, but long enough to be read as one" * 20)
    code, _, err = batch(sim, str(src), "--out", str(garbage))
    assert code == 2
    assert "not a genguard journal" in err
    other = tmp_path / "other"
    other.mkdir()
    db = sqlite3.connect(other / "journal.sqlite")
    db.execute("PRAGMA application_id = 42")
    db.execute("CREATE TABLE notes (x)")
    db.commit()
    db.close()
    code, _, err = batch(sim, str(src), "--out", str(other))
    assert code == 2
    assert "not a genguard journal" in err
    assert _requests(sim) == 0


def test_a_placeholder_key_is_not_masked_in_the_json_summary(sim: Simulator, tmp_path: Path) -> None:
    # A local server's key "1" or "x" is no secret: masked, "exit_code":1 read "exit_code":*** (no JSON at all).
    src = write_input(tmp_path / "in.jsonl", lines_of(2))
    for key in ("1", "x", "ok"):
        code, stdout, _ = batch(sim, str(src), "--out", str(tmp_path / f"run-{key}"), "--json", key=key)
        data = orjson.loads(stdout)
        assert (code, data["exit_code"], data["ok"]) == (0, 0, 2)
    report = CliRunner().invoke(
        cli, ["report", str(tmp_path / "run-1"), "--json"], env={"GENGUARD_API_KEY": "0"}
    )
    assert orjson.loads(report.stdout)["lines"]["ok"] == 2


def test_an_out_folder_that_cannot_be_written_exits_2_naming_it(sim: Simulator, tmp_path: Path) -> None:
    src = write_input(tmp_path / "in.jsonl", lines_of(2))
    out = tmp_path / "run"
    (out / "journal.lock").mkdir(parents=True)  # the lock file cannot be opened, as on a read-only disk
    code, _, err = batch(sim, str(src), "--out", str(out))
    assert code == 2
    assert f"--out {out} cannot be written" in err
    assert _requests(sim) == 0


def test_a_full_disk_is_told_apart_from_a_damaged_journal() -> None:
    import errno
    import sqlite3

    from genguard.cli.batch import _disk_full

    assert _disk_full(sqlite3.OperationalError("database or disk is full"))
    assert _disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert _disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not _disk_full(sqlite3.DatabaseError("file is not a database"))
    assert not _disk_full(OSError(errno.EACCES, "Permission denied"))
