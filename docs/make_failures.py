"""Write docs/failures.md from genguard's code table: `python docs/make_failures.py`.

The page is generated so that it can never drift from what the library says; a test checks it is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from genguard import CODES

HEADER = """# Failure codes

Every call genguard makes, and every capture `genguard explain` reads, ends in one Outcome: a usable
generation, or one failure with a **kind** (`hard`: no generation; `soft`: HTTP said success but there is no
usable generation; `silent`: the output failed your application's check), a **code**, a **retry verdict**
and a cause and fix. This page is generated from the library's own table (`genguard.CODES`) by
`python docs/make_failures.py`; where the cause or fix differs for images or videos, both are shown.
"""


def render() -> str:
    lines = [HEADER]
    for kind in ("hard", "soft", "silent"):
        lines.append(f"\n## {kind}\n")
        lines.append("| code | retryable | cause | fix |")
        lines.append("| --- | --- | --- | --- |")
        for info in CODES.values():
            if info.kind != kind:
                continue
            cause, fix = info.cause, info.fix
            for endpoint in ("image", "video"):
                if endpoint in info.causes:
                    cause += f"<br>*{endpoint}:* {info.causes[endpoint]}"
                if endpoint in info.fixes:
                    fix += f"<br>*{endpoint}:* {info.fixes[endpoint]}"
            verdict = "yes" if info.retryable else "no"
            lines.append(f"| `{info.name}` | {verdict} | {cause} | {fix} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = Path(__file__).with_name("failures.md")
    target.write_text(render())
    sys.stdout.write(f"wrote {target}\n")
