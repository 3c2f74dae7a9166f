"""Peak memory of ``genguard explain`` on one huge JSON body, against the capture file's size.

Three captures of about the same size are generated in a temporary directory, each holding one chat
completion whose text is most of the file (prose with newlines, quotes and a few non-ASCII letters):

- ``big.json``: the bare body;
- ``big.http``: the body after a ``curl -i`` head;
- ``big.har``: a HAR 1.2 file whose one entry's ``response.content.text`` is the body (JSON in a JSON
  string, so every quote of the body is escaped again).

Each is explained by ``python -m genguard explain FILE`` (readable, then ``--json``) in a fresh subprocess,
output to ``/dev/null``. The peak is the child's maximum resident set size as ``wait4`` reports it (the same
figure as ``/usr/bin/time -v``), less the peak of the same command on a tiny capture (the interpreter and
genguard itself), and the figure watched is that growth over the file's size. The target is 2.0.

Run: ``.venv/bin/python bench/bench_explain.py`` (``--mib 200``, ``--only json http har``, ``--keep DIR``
to keep the captures).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

MIB = 1 << 20
FORMS = ("json", "http", "har")
# A paragraph of ordinary model output: newlines, quotes and a backslash to escape, and letters beyond ASCII.
_PARAGRAPH = (
    'The "boardwalk" runs through a lush green field, under a sky with a few clouds; café owners '
    "nearby say it was built in 1998 and repaired after the storm of 2011 (C:\\path noted).\n"
)
_TAIL = b'"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}'


def _body_pieces(size: int) -> Iterator[bytes]:
    """A chat completion of about ``size`` bytes, as pieces of JSON (the text never held whole)."""
    head = (
        b'{"id":"chatcmpl-big","object":"chat.completion","created":1741570283,"model":"gpt-4o",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"'
    )
    yield head
    encoded = orjson.dumps(_PARAGRAPH * 1000)[1:-1]
    left = size - len(head) - len(_TAIL)
    while left > 0:
        part = encoded[: min(left, len(encoded))]
        # Never cut an escape (\n, \") or a UTF-8 character in two.
        while part and (part.endswith(b"\\") or part[-1] >= 0x80):
            part = part[:-1]
        if not part:
            break
        yield part
        left -= len(part)
    yield _TAIL


def write_capture(form: str, path: Path, size: int) -> None:
    """Write one capture of ``form`` (``json``, ``http`` or ``har``) of about ``size`` bytes to ``path``."""
    with path.open("wb") as out:
        if form == "http":
            out.write(b"HTTP/2 200\r\ncontent-type: application/json\r\nx-request-id: req_big\r\n\r\n")
        if form == "har":
            out.write(
                b'{"log":{"version":"1.2","creator":{"name":"bench","version":"1"},"entries":[{"request":'
                b'{"method":"POST","url":"https://api.example.com/v1/chat/completions","headers":[]},'
                b'"response":{"status":200,"headers":[{"name":"content-type","value":"application/json"}],'
                b'"content":{"mimeType":"application/json","text":"'
            )
            for piece in _body_pieces(size):
                # The body as a JSON string: its quotes and backslashes escaped once more.
                out.write(piece.replace(b"\\", b"\\\\").replace(b'"', b'\\"'))
            out.write(b'"}}}]}}')
            return
        for piece in _body_pieces(size):
            out.write(piece)


def peak_rss(args: list[str]) -> tuple[int, float, int]:
    """Run ``python -m genguard explain ARGS`` in a fresh process: its peak RSS in bytes, seconds, exit."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        child = subprocess.Popen(
            [sys.executable, "-m", "genguard", "explain", *args], stdout=null, stderr=subprocess.PIPE
        )
        assert child.stderr is not None
        err = child.stderr.read()
        # wait4 gives this child's own figure; RUSAGE_CHILDREN would be the largest of all children so far.
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"explain {' '.join(args)} exited {child.returncode}: {err.decode(errors='replace')}")
    return usage.ru_maxrss * 1024, time.perf_counter() - start, child.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=200, help="size of each capture in MiB (default 200)")
    parser.add_argument("--only", nargs="+", choices=FORMS, default=list(FORMS), help="the captures")
    parser.add_argument("--keep", type=Path, help="write the captures here and keep them")
    args = parser.parse_args()
    work_ctx = tempfile.TemporaryDirectory(prefix="bench-explain-")
    work = args.keep or Path(work_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    tiny = work / "tiny.json"
    tiny.write_bytes(b'{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}]}')
    base = {flag: peak_rss([*flag, str(tiny)])[0] for flag in ((), ("--json",))}
    print(f"baseline (a tiny capture): {base[()] / MIB:.0f} MiB, --json {base[('--json',)] / MIB:.0f} MiB")
    print(f"{'capture':<10} {'mode':<9} {'file MiB':>9} {'peak MiB':>9} {'growth':>7} {'x file':>7} {'s':>6}")
    worst = 0.0
    for form in args.only:
        path = work / f"big.{form}"
        if not path.exists() or abs(path.stat().st_size - args.mib * MIB) > MIB:
            write_capture(form, path, args.mib * MIB)
        size = path.stat().st_size
        for flag in ((), ("--json",)):
            peak, secs, _ = peak_rss([*flag, str(path)])
            ratio = (peak - base[flag]) / size
            worst = max(worst, ratio)
            mode = "--json" if flag else "readable"
            print(
                f"{form:<10} {mode:<9} {size / MIB:>9.0f} {peak / MIB:>9.0f} "
                f"{(peak - base[flag]) / MIB:>7.0f} {ratio:>7.2f} {secs:>6.1f}"
            )
    print(f"worst peak growth / file size: {worst:.2f} (target <= 2.0)")
    if args.keep is None:
        work_ctx.cleanup()


if __name__ == "__main__":
    main()
