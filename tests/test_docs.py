"""Generated docs stay in step with the code."""

from __future__ import annotations

import runpy
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_failures_page_is_current() -> None:
    render = runpy.run_path(str(DOCS / "make_failures.py"))["render"]
    assert (DOCS / "failures.md").read_text() == render(), "run: python docs/make_failures.py"


def test_readme_explain_example_is_what_explain_prints() -> None:
    """The README shows `genguard explain` on a bundled capture; the block must stay the real output."""
    import re

    from click.testing import CliRunner

    from genguard.cli import cli

    root = DOCS.parent
    readme = (root / "README.md").read_text()
    block = re.search(r"```\n\$ genguard explain (\S+)\n(.*?)```", readme, flags=re.S)
    assert block, "README lost its explain example"
    capture, shown = block.group(1), block.group(2)
    result = CliRunner().invoke(cli, ["explain", str(root / capture)])
    assert result.exit_code == 0
    printed = result.output.replace(str(root) + "/", "")
    assert printed.strip() == shown.strip()
