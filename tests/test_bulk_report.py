"""The batch report: its figures read from a journal written through the journal's own API, the text
summary, the self-contained page (no reference outside it, every provider text escaped and masked), the
``genguard report`` command, and the page as headless Chromium renders it."""

from __future__ import annotations

import html
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from genguard import code_info
from genguard.bulk.journal import SQLiteJournal
from genguard.bulk.model import AttemptEvent, Line
from genguard.bulk.report import (
    JOURNAL_FILE,
    REPORT_FILE,
    ReportError,
    build_report,
    empty_summary,
    render_html,
    render_summary,
    summary,
)
from genguard.cli import cli
from genguard.core.outcome import Outcome, Usage

KEY = "sk-proj-Qw3rTy9UiOpAsDfGh4jK"
T0 = 1_760_000_000.0  # the run's first second, a fixed instant so that the figures do not move
URL = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
HOSTILE = '<script>alert("x")</script><img src="https://evil.example/x.png">'

# 300 lines: 200 ok at once, 50 ok after one 429, 20 quota_exceeded, 15 content_filtered, 15 truncated.
PLAN = ["ok"] * 200 + ["limited_ok"] * 50 + ["quota"] * 20 + ["filtered"] * 15 + ["truncated"] * 15
RESENT = 4  # lines in flight at a simulated crash, sent again


def _outcome(kind: str, i: int) -> Outcome:
    usage = Usage(prompt_tokens=20, completion_tokens=10, total_tokens=30)
    if kind in ("ok", "limited_ok"):
        return Outcome.success(
            text=f"answer {i}", finish_reason="stop", usage=usage, attempts=2 if kind == "limited_ok" else 1
        ).with_extra(model=MODEL)
    if kind == "quota":
        # The provider quotes the key it refused, and a markup-laden echo of the request on the first one.
        message = f"You exceeded your current quota (key {KEY})." + (HOSTILE if i == 251 else "")
        return Outcome.failure(
            "quota_exceeded",
            status=429,
            message=message,
            provider_code="insufficient_quota",
            request_id=f"req_{i}",
        ).with_extra(model=MODEL)
    if kind == "filtered":
        return Outcome.failure("content_filtered", status=200, finish_reason="content_filter").with_extra(
            model=MODEL
        )
    return Outcome.failure(
        "truncated", status=200, finish_reason="length", text="cut", usage=usage
    ).with_extra(model=MODEL)


def _events(kind: str, cid: str, at: float) -> list[AttemptEvent]:
    if kind == "limited_ok":
        return [
            AttemptEvent(cid, 1, "rate_limited", 429, 0.0, at - 1.0, 0.05),
            AttemptEvent(cid, 2, None, 200, 1.0, at, 0.5),
        ]
    code = {"ok": None, "quota": "quota_exceeded", "filtered": "content_filtered", "truncated": "truncated"}[
        kind
    ]
    status = 429 if kind == "quota" else 200
    return [AttemptEvent(cid, 1, code, status, 0.0, at, 0.5)]


def make_run(folder: Path) -> Path:
    """A finished run of PLAN in ``folder``, written through the journal as the runner writes it: lines
    loaded, a crash with RESENT lines in flight, then every line claimed and recorded with its attempts."""
    lines = [
        Line(
            f"req-{i:04d}",
            URL,
            {"model": MODEL, "messages": [{"role": "user", "content": str(i)}]},
            i,
            "in.jsonl",
        )
        for i in range(1, len(PLAN) + 1)
    ]
    now = [T0]
    with SQLiteJournal(folder / JOURNAL_FILE, clock=lambda: now[0]) as journal:
        journal.load(lines)
        journal.commit()
        journal.set_meta({"started_at": T0, "base_url": "http://127.0.0.1:8000/v1", "concurrency": 16})
        journal.claim(RESENT, worker="crashed", lease_s=60)
        assert journal.recover() == RESENT
        claimed = journal.claim(len(lines), worker="w1", lease_s=600)
        assert len(claimed) == len(lines)
        for i, (c, kind) in enumerate(zip(claimed, PLAN, strict=True)):
            at = T0 + i * 0.2  # five lines a second over a minute
            now[0] = at
            journal.record(
                [
                    c.result(
                        _outcome(kind, c.number),
                        response={
                            "status_code": 200,
                            "request_id": f"req_{c.number}",
                            "body": {"model": MODEL},
                        },
                        cost_usd=0.001 if kind in ("ok", "limited_ok", "truncated") else None,
                        latency_s=1.5 if kind == "limited_ok" else 0.5 + (i % 10) / 10,
                        events=_events(kind, c.custom_id, at),
                    )
                ]
            )
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def figures(run_dir: Path) -> dict[str, object]:
    return summary(run_dir)


# -- the figures ---------------------------------------------------------------------------------------------


def test_summary_counts_lines_by_state_and_code(figures: dict) -> None:
    assert figures["lines"] == {
        "total": 300,
        "ended": 300,
        "ok": 250,
        "failed": 50,
        "pending": 0,
        "in_flight": 0,
    }
    assert figures["finished"] is True
    assert [(r["code"], r["count"]) for r in figures["by_code"]] == [
        ("quota_exceeded", 20),
        ("content_filtered", 15),
        ("truncated", 15),
    ]
    quota = figures["by_code"][0]
    assert quota["kind"] == "hard"
    assert quota["retryable"] is False
    assert quota["cause"] == code_info("quota_exceeded").cause
    assert quota["fix"] == code_info("quota_exceeded").fix
    assert quota["share"] == pytest.approx(0.4)


def test_summary_counts_tokens_cost_and_models(figures: dict) -> None:
    # ok, limited_ok and truncated report usage (30 tokens) and a price (0.001 each).
    assert figures["tokens"]["total"] == (200 + 50 + 15) * 30
    assert figures["tokens"]["prompt"] == (200 + 50 + 15) * 20
    assert figures["tokens"]["per_line"] == pytest.approx(265 * 30 / 300)
    assert figures["cost"]["total_usd"] == pytest.approx(0.265)
    assert figures["cost"]["priced_lines"] == 265
    assert figures["cost"]["unpriced_lines"] == 35
    assert figures["cost"]["set_aside_usd"] == pytest.approx(0.0)
    [model] = figures["models"]
    assert model["model"] == MODEL
    assert (model["lines"], model["ok"], model["failed"]) == (300, 250, 50)
    assert model["cost_usd"] == pytest.approx(0.265)


def test_summary_counts_retries_resent_and_429s(figures: dict) -> None:
    retries = figures["retries"]
    assert retries["attempts_per_line"] == {"1": 250, "2": 50}
    assert retries["lines_retried"] == 50
    assert retries["attempts_total"] == 350
    assert retries["failed_attempts_by_code"] == {
        "rate_limited": 50,
        "quota_exceeded": 20,
        "content_filtered": 15,
        "truncated": 15,
    }
    assert retries["waited_s"] == pytest.approx(50.0)
    assert len(retries["most_attempts"]) == 5
    assert all(m["attempts"] == 2 for m in retries["most_attempts"])
    assert figures["resent"] == RESENT

    tp = figures["throughput"]
    assert tp["ok_attempts"] == 250
    # The rate limits, as the run's summary counts them: the quota answers were 429s too, but no rate limit.
    assert tp["rate_limited_total"] == 50
    assert tp["rate_limited_per_success"] == pytest.approx(50 / 250)
    assert tp["bucket_s"] == 1
    assert sum(tp["ok"]) == 250
    assert sum(tp["rate_limited"]) == 50
    assert sum(tp["other_failed"]) == 50
    assert len(tp["ok"]) == len(tp["rate_limited"]) == 61
    assert tp["peak_ok_per_s"] == 5


def test_summary_latency_percentiles_are_measured_values(figures: dict) -> None:
    lat = figures["latency"]
    assert lat["lines"]["count"] == 300
    # 250 lines take 0.5..1.4 s, 25 at each tenth, 50 take 1.5 s: the 150th is 1.0 s, the 270th 1.5 s.
    assert lat["lines"]["p50"] == pytest.approx(1.0)
    assert lat["lines"]["p90"] == pytest.approx(1.5)
    assert lat["lines"]["max"] == pytest.approx(1.5)
    assert lat["attempts"]["count"] == 350
    hist = lat["histogram"]
    assert hist["of"] == "lines"
    assert sum(hist["counts"]) + hist["overflow"] == 300
    assert hist["edges"][0] == 0


def test_samples_keep_the_provider_message_masked_with_their_custom_id(figures: dict) -> None:
    quota = figures["samples"]["quota_exceeded"]
    assert len(quota) == 5
    assert quota[0]["custom_id"] == "req-0251"
    assert quota[0]["line"] == 251
    assert quota[0]["status"] == 429
    assert quota[0]["provider_code"] == "insufficient_quota"
    assert "You exceeded your current quota" in quota[0]["message"]
    assert "sk-proj-" in quota[0]["message"]  # the prefix says what was there
    truncated = figures["samples"]["truncated"][0]
    assert "finish_reason 'length'" in truncated["message"]
    assert KEY not in orjson.dumps(figures).decode()


def test_summary_masks_the_keys_it_is_given(tmp_path: Path) -> None:
    secret = "plain-looking-secret-123"
    line = Line("a", URL, {"model": MODEL, "messages": []}, 1)
    with SQLiteJournal(tmp_path / JOURNAL_FILE) as journal:
        journal.load([line])
        journal.commit()
        [c] = journal.claim(1, worker="w", lease_s=60)
        journal.record([c.result(Outcome.failure("auth_failed", status=401, message=f"bad key {secret}"))])
    assert secret in summary(tmp_path)["samples"]["auth_failed"][0]["message"]
    assert secret not in orjson.dumps(summary(tmp_path, secrets=[secret])).decode()
    assert secret not in build_report(tmp_path, secrets=[secret]).read_text()


def test_an_unfinished_run_says_how_to_resume(tmp_path: Path) -> None:
    lines = [Line(f"l{i}", URL, {"model": MODEL, "messages": []}, i) for i in range(1, 6)]
    with SQLiteJournal(tmp_path / JOURNAL_FILE) as journal:
        journal.load(lines)
        journal.commit()
        first, _ = journal.claim(2, worker="w", lease_s=60)
        journal.record([first.result(Outcome.success(text="hi", finish_reason="stop"))])
    data = summary(tmp_path)
    assert data["lines"] == {"total": 5, "ended": 1, "ok": 1, "failed": 0, "pending": 3, "in_flight": 1}
    assert data["finished"] is False
    text = render_summary(data)
    assert "not finished: 3 pending, 1 in flight" in text
    assert "run the same genguard batch command again" in text
    assert "This run has not finished" in render_html(data)


def test_no_journal_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="holds no batch journal"):
        summary(tmp_path)
    with pytest.raises(ReportError, match="no such directory"):
        summary(tmp_path / "nowhere")
    (tmp_path / JOURNAL_FILE).write_bytes(b"not a database at all, just text" * 10)
    with pytest.raises(ReportError, match="cannot be read as a batch journal"):
        summary(tmp_path)
    assert not (tmp_path / REPORT_FILE).exists()


def test_an_empty_summary_renders() -> None:
    data = empty_summary()
    assert render_summary(data) == "Batch run (no lines yet)"
    page = render_html(data)
    assert "<svg" not in page.split("<main>")[1]
    assert "holds no line yet" in page


# -- the text ------------------------------------------------------------------------------------------------


def test_render_summary_gives_the_figures_and_each_codes_fix(figures: dict) -> None:
    text = render_summary({**figures, "dir": "out"})
    assert text.splitlines()[0] == "Batch run in out (finished)"
    assert "300: 250 ok, 50 failed" in text
    assert "quota_exceeded 20, content_filtered 15, truncated 15" in text
    assert "50 429s (0.200 per success)" in text
    assert "$0.2650" in text
    assert "50 lines needed more than one attempt (350 attempts in all)" in text
    assert "4 requests were sent again after a crash: they may have been billed twice" in text
    assert f"fix: {code_info('quota_exceeded').fix}" in text


# -- the page ------------------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    """Every (tag, attribute, value) of a page, and each tag with no attribute as (tag, "", "")."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attrs += [(tag, name, value or "") for name, value in attrs] or [(tag, "", "")]


@pytest.fixture(scope="module")
def page(run_dir: Path) -> str:
    path = build_report(run_dir)
    assert path == run_dir / REPORT_FILE
    return path.read_text()


def test_page_references_nothing_outside_itself(page: str) -> None:
    tags = _Tags()
    tags.feed(page)
    refs = [
        v for _, name, v in tags.attrs if name in ("src", "href", "xlink:href", "action", "poster", "srcset")
    ]
    assert refs, "the page lost its table of contents"
    assert all(r.startswith("#") for r in refs), refs
    assert not {"script", "link", "img", "iframe", "object", "embed", "image", "use"} & {
        t for t, _, _ in tags.attrs
    }
    assert not [v for _, name, v in tags.attrs if name == "style" and "url" in v.lower()]
    assert "url(" not in page
    assert "@import" not in page
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    # Web addresses appear only as text: the run's base URL, and the one in a provider's message.
    assert set(re.findall(r"https?://[^\s<&\"]*", page)) == {
        "http://127.0.0.1:8000/v1",
        "https://evil.example/x.png",
    }


def test_page_escapes_provider_markup_and_masks_keys(page: str) -> None:
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=&quot;https://evil.example/x.png&quot;&gt;" in page
    assert KEY not in page
    assert KEY[8:] not in page
    assert "sk-proj-" in page


def test_page_has_headings_captions_and_chart_alternatives(page: str) -> None:
    assert page.startswith("<!doctype html>")
    assert '<html lang="en">' in page
    for title in (
        "Summary",
        "Throughput and 429s",
        "Latency",
        "Tokens and cost",
        "Retries",
        "Sample failures",
    ):
        assert f">{title}</h2>" in page
    assert page.count("<svg") == 4  # the state bar and three charts
    for chart in ("chart-throughput", "chart-latency", "chart-attempts"):
        match = re.search(rf'<svg[^>]*id="{chart}"[^>]*>(.*?)</svg>', page, flags=re.S)
        assert match, chart
        assert 'role="img"' in match.group(0)
        assert f'<title id="{chart}-t">' in match.group(1)
        assert re.search(rf'<desc id="{chart}-d">[^<]{{20,}}</desc>', match.group(1))
    assert all("<caption>" in t for t in re.findall(r"<table>.*?</table>", page, flags=re.S))
    assert "4 requests were sent again after a crash" in page
    assert "set aside" not in page  # nothing was: no sentence about it
    assert "req-0251" in page
    assert html.escape(code_info("content_filtered").cause) in page


def test_page_is_rewritten_whole(run_dir: Path) -> None:
    (run_dir / REPORT_FILE).write_text("old")
    build_report(run_dir)
    assert (run_dir / REPORT_FILE).read_text().startswith("<!doctype html>")
    assert not (run_dir / (REPORT_FILE + ".partial")).exists()


# -- the command ---------------------------------------------------------------------------------------------


def test_report_command_prints_the_summary_and_the_page(run_dir: Path) -> None:
    (run_dir / REPORT_FILE).unlink(missing_ok=True)
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "300: 250 ok, 50 failed" in result.output
    assert result.output.rstrip().endswith(str(run_dir / REPORT_FILE))
    assert (run_dir / REPORT_FILE).is_file()


def test_report_command_json_is_the_summary(run_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "--json", str(run_dir)])
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert data["lines"]["ok"] == 250
    assert data["report"] == str(run_dir / REPORT_FILE)
    assert KEY not in result.output


def test_report_command_without_a_journal_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "holds no batch journal" in result.output
    assert not (tmp_path / JOURNAL_FILE).exists(), "the report must not create a journal"


@pytest.fixture
def read_only_copy(run_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the run where nothing may write: a read-only bind mount (root can write through mode bits,
    not through one); skipped, saying why, where mounts cannot be made."""
    copy, mount = tmp_path / "copy", tmp_path / "ro"
    shutil.copytree(run_dir, copy)
    (copy / REPORT_FILE).unlink(missing_ok=True)
    mount.mkdir()
    made = subprocess.run(["mount", "--bind", str(copy), str(mount)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"a read-only mount cannot be made here: {made.stderr.decode().strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], capture_output=True, check=False)
        if ro.returncode != 0:
            pytest.skip(f"a read-only mount cannot be made here: {ro.stderr.decode().strip()}")
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("as_json", [False, True])
def test_a_run_in_a_folder_that_cannot_be_written_is_still_summarised(
    read_only_copy: Path, as_json: bool
) -> None:
    # An archived run on a read-only mount: its WAL journal cannot make its -shm file beside it, and report.html
    # cannot be written; the summary is still the run's (it said "cannot be read as a batch journal").
    before = sorted(p.name for p in read_only_copy.iterdir())
    result = CliRunner().invoke(cli, ["report", *(["--json"] if as_json else []), str(read_only_copy)])
    assert result.exit_code == 0, result.output
    assert (
        f"report.html not rebuilt: {read_only_copy} cannot be written (Read-only file system)"
        in result.stderr
    )
    if as_json:
        data = orjson.loads(result.stdout)
        assert (data["lines"]["ok"], data["report"]) == (250, None)
    else:
        assert "300: 250 ok, 50 failed" in result.stdout
        assert "report:" not in result.stdout
    assert sorted(p.name for p in read_only_copy.iterdir()) == before


# -- in a browser --------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    """Headless Chromium with everything that would reach the network turned off."""
    assert CHROMIUM
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *extra,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_chromium_renders_the_page_with_its_charts(run_dir: Path, tmp_path: Path) -> None:
    path = build_report(run_dir)
    png = tmp_path / "report.png"
    shot = chromium(path, tmp_path / "profile", f"--screenshot={png}", "--window-size=1280,2000")
    assert png.is_file(), shot.stderr.decode(errors="replace")[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    assert len(data) > 50_000, "a blank page compresses to almost nothing"

    dom = chromium(path, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    rendered = dom.stdout.decode()
    for chart in ("chart-throughput", "chart-latency", "chart-attempts"):
        assert re.search(rf'<svg[^>]*id="{chart}"', rendered), chart
    assert rendered.count("<rect") == path.read_text().count("<rect") > 60
    assert "<script" not in rendered


def test_a_long_run_is_drawn_in_coarser_bars_and_a_stuck_line_in_a_bar_of_its_own(tmp_path: Path) -> None:
    lines = [Line(f"l{i}", URL, {"model": MODEL, "messages": []}, i) for i in range(1, 201)]
    with SQLiteJournal(tmp_path / JOURNAL_FILE) as journal:
        journal.load(lines)
        journal.commit()
        claimed = journal.claim(200, worker="w", lease_s=60)
        journal.record(
            [
                c.result(
                    Outcome.success(text="hi", finish_reason="stop"),
                    latency_s=300.0 if c.number == 7 else 1.0 + c.number % 5 / 10,
                    events=[AttemptEvent(c.custom_id, 1, None, 200, 0.0, T0 + c.number * 36.0, 1.0)],
                )
                for c in claimed
            ]
        )
    data = summary(tmp_path)
    tp = data["throughput"]
    assert tp["bucket_s"] == 60  # two hours: 120 bars of a minute, not 7,200 of a second
    assert len(tp["ok"]) <= 120
    assert sum(tp["ok"]) == 200
    hist = data["latency"]["histogram"]
    assert hist["overflow"] == 1
    assert hist["edges"][-1] < 300.0
    assert sum(hist["counts"]) == 199
    assert data["latency"]["lines"]["max"] == 300.0
    assert "in the last bar" in render_html(data)


def test_answers_set_aside_by_retry_failed_stay_counted(tmp_path: Path) -> None:
    usage = Usage(prompt_tokens=20, completion_tokens=10, total_tokens=30)
    line = Line("a", URL, {"model": MODEL, "messages": []}, 1)
    with SQLiteJournal(tmp_path / JOURNAL_FILE) as journal:
        journal.load([line])
        journal.commit()
        [c] = journal.claim(1, worker="w", lease_s=60)
        journal.record(
            [c.result(Outcome.failure("truncated", finish_reason="length", usage=usage), cost_usd=0.002)]
        )
        assert journal.reset_failed(["truncated"]) == 1
        [c] = journal.claim(1, worker="w", lease_s=60)
        journal.record(
            [c.result(Outcome.success(text="hi", finish_reason="stop", usage=usage), cost_usd=0.002)]
        )
    data = summary(tmp_path)
    assert data["lines"]["ok"] == 1
    assert data["cost"]["total_usd"] == pytest.approx(0.004)
    assert data["cost"]["set_aside_usd"] == pytest.approx(0.002)
    assert data["tokens"]["set_aside"] == 30
    assert "The totals include $0.002 and 30 tokens paid for answers that were set aside" in render_html(data)


def test_a_run_whose_answers_state_no_usage_counts_no_cost_rather_than_blame_a_price_table(
    figures: dict,
) -> None:
    tokens = {**figures["tokens"], "total": 0, "prompt": 0, "completion": 0}
    cost = {**figures["cost"], "total_usd": None, "per_line_usd": None}
    text = render_summary({**figures, "dir": "out", "tokens": tokens, "cost": cost})
    assert "none counted: no answer stated the tokens it used" in text
    assert "genguard[prices]" not in text
    text = render_summary({**figures, "dir": "out", "cost": cost})  # tokens, and no price for them
    assert "unknown: no price table knows these models" in text
