"""docs/migration.md's examples run as written, against the simulator they start themselves: each block
asserts what it shows (a code, the attempts the simulator counted), so a change of behaviour fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "migration.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
# What each example must print: the failure it shows being caught (an example whose call stopped failing would
# skip its except branch, and print none of it).
PRINTS = {
    1: ["quota_exceeded"],
    2: ["truncated", "incomplete_stream"],
    3: ["invalid_json"],
    4: ["content_filtered"],
    5: [],
}


def test_the_page_shows_each_way() -> None:
    text = PAGE.read_text()
    assert len(BLOCKS) == 5
    for way in ("genguard.check(", "genguard.wrap(", "genguard.Client("):
        assert way in text


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("number", range(1, len(BLOCKS) + 1))
def test_example_runs(number: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = compile(BLOCKS[number - 1], f"{PAGE.name} block {number}", "exec")
    exec(code, {"__name__": f"migration_example_{number}"})
    out = capsys.readouterr().out
    assert out.strip(), "every example prints what it got"
    for word in PRINTS[number]:
        assert word in out, f"block {number} did not print {word!r}: {out}"
