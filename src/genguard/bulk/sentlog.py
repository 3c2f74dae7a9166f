"""The sent log (``DIR/journal.sent``): which lines in flight have had a request go out, for a resume to count.

A run claims lines from the journal in batches, ahead of the slots that will send them (one transaction per
claim, 50-250 us: one per line cost a quarter of the runner's CPU against a server that answers in 20 ms).
A line claimed is in flight in the journal whether or not its request has left; what has left is told here,
before it leaves: the line's ``custom_id``, one JSON string a line, appended with one ``write`` (the kernel
has it once the call returns, so a killed process loses none of it). After a kill, the resumed run reads it:
a line in flight that is named here may have reached the provider (it is sent again, counted as re-sent, as
it may have been billed twice); one that is not was never sent (it goes back to pending, uncounted).

The log names only lines whose answer is not recorded yet: it is rewritten with those when it grows past
``rotate_at`` bytes (a new file put in place with one rename), and removed at a run's end when none is left.
Without the file (a journal written by an older genguard), every line in flight counts as sent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import orjson

__all__ = ["SENT_FILE", "SentLog", "read_sent"]

SENT_FILE = "journal.sent"


def read_sent(path: Path) -> set[str] | None:
    """The ``custom_id`` named in the log at ``path``; ``None`` when there is no log. A torn or unreadable line
    (a process killed in the middle of its write, which never sent that request) is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    names: set[str] = set()
    for raw in data.splitlines():
        try:
            name = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(name, str):
            names.add(name)
    return names


class SentLog:
    """An open sent log, empty at first (a run starts one once the journal has read the last).

    >>> import tempfile
    >>> log = SentLog(Path(tempfile.mkdtemp()) / SENT_FILE)
    >>> log.add("a"); log.add("b\\nc"); log.add("a")
    >>> sorted(read_sent(log.path))
    ['a', 'b\\nc']
    >>> log.forget(["a"]); log.rotate(); sorted(read_sent(log.path))
    ['b\\nc']
    >>> log.forget(["b\\nc"]); log.close(); read_sent(log.path) is None
    True
    """

    def __init__(self, path: Path, *, rotate_at: int = 1 << 20) -> None:
        self.path = path
        self.rotate_at = rotate_at
        self.named: set[str] = set()  # in the file, answer not recorded yet
        self._size = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)

    def add(self, custom_id: str) -> None:
        """Say that a request of this line is about to leave (once per line: later attempts are already told)."""
        if custom_id in self.named:
            return
        self.named.add(custom_id)
        entry = orjson.dumps(custom_id) + b"\n"
        os.write(self._fd, entry)
        self._size += len(entry)

    def forget(self, custom_ids: Iterable[str]) -> None:
        """These lines' answers are in the journal (or they went back to pending): the next rotation drops them."""
        named = self.named
        for custom_id in custom_ids:
            named.discard(custom_id)

    def maybe_rotate(self) -> None:
        """Rewrite the log with the lines still named, when it grew past ``rotate_at`` bytes."""
        if self._size >= self.rotate_at:
            self.rotate()

    def rotate(self) -> None:
        data = b"".join(orjson.dumps(name) + b"\n" for name in self.named)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
        except BaseException:
            os.close(fd)
            raise
        # Either file names every line that may have left: the old one more, the new one exactly those.
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd, self._size = fd, len(data)

    def close(self) -> None:
        """At the run's end: kept, rewritten, if lines that may have left are still unrecorded (cut off on the
        wire by a second Ctrl-C); removed otherwise."""
        if self._fd < 0:
            return
        if self.named:
            self.rotate()
            os.close(self._fd)
        else:
            os.close(self._fd)
            self.path.unlink(missing_ok=True)
        self._fd = -1
