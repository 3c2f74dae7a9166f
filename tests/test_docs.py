"""Generated docs stay in step with the code."""

from __future__ import annotations

import runpy
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_failures_page_is_current() -> None:
    render = runpy.run_path(str(DOCS / "make_failures.py"))["render"]
    assert (DOCS / "failures.md").read_text() == render(), "run: python docs/make_failures.py"
