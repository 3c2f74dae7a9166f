"""Make docs/img/batch-report.png: a real batch run against the simulator, killed once and resumed, its report
rendered by headless Chromium with the network off; prints the run's text summary for docs/batch.md.

    python docs/make_batch_report.py          (needs chromium: apt-get install -y chromium)

The simulator enforces 25 requests a second over one-second windows without saying so (no rate-limit
headers: the run finds the limit from 429s), answers after a quarter of a second, and fails a few percent of
requests at random (5xx, filtered, truncated), seeded so that runs are alike; the first run is killed with
SIGKILL part way, so the report shows requests sent again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genguard.bulk.journal import SQLiteJournal
from genguard.bulk.report import JOURNAL_FILE, build_report, render_summary, summary
from genguard.sim import Simulator

ROOT = Path(__file__).resolve().parents[1]
INPUT = ROOT / "examples" / "batch" / "reviews.jsonl"
PNG = ROOT / "docs" / "img" / "batch-report.png"
KILL_AFTER = 350  # lines ended when the first run is killed
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)


def _ended(out: Path) -> int:
    if not (out / JOURNAL_FILE).is_file():
        return 0
    with SQLiteJournal(out / JOURNAL_FILE) as journal:
        return journal.counts().ended


def run(out: Path, base_url: str) -> None:
    command = [
        sys.executable,
        "-m",
        "genguard",
        "batch",
        str(INPUT),
        "--out",
        str(out),
        "--base-url",
        base_url,
    ]
    command += ["--api-key", "sk-docs-example-0123456789abcdef"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    first = subprocess.Popen(command, **quiet)
    deadline = time.monotonic() + 120
    while first.poll() is None and _ended(out) < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    subprocess.run(command, check=False, timeout=600, **quiet)


def screenshot(page: Path, png: Path, profile: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    png.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            "--window-size=1280,2000",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


def main() -> None:
    settings = {
        "rpm": 1500,
        "rate_window_s": 1.0,
        "ttft_ms": 250.0,
        "tokens_per_s": 400.0,
        "ratelimit_headers": False,
        "chaos": {"server_error": 0.03, "content_filtered": 0.015, "truncated": 0.01},
        "seed": 3,
    }
    with tempfile.TemporaryDirectory() as tmp, Simulator(**settings) as sim:
        # Relative to the temporary folder, so that the page names the run as a user's would be named.
        os.chdir(tmp)
        out = Path("runs", "reviews")
        run(out, sim.base_url)
        page = build_report(out)
        screenshot(page, PNG, Path(tmp, "profile"))
        print(render_summary(summary(out)))
        os.chdir(ROOT)
    print(f"wrote {PNG.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
