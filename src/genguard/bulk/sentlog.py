"""The sent log (``DIR/journal.sent``): which lines in flight have had a request go out, for a resume to count.

A run claims lines from the journal in batches, ahead of the slots that will send them (one transaction per
claim, 50-250 us: one per line cost a quarter of the runner's CPU against a server that answers in 20 ms).
A line claimed is in flight in the journal whether or not its request has left; what has left is told here,
before it leaves: the line's ``custom_id``, one JSON string a line. The file is mapped in memory (shared with
the file): an entry is a copy into the page cache, which the kernel keeps when the process is killed, with no
system call (a ``write`` per line cost 6 us in a busy run; where a file cannot be mapped, each entry is
written so). After a kill, the resumed run reads it: a line in flight that is named here may have reached
the provider (it is sent again, counted as re-sent, as it may have been billed twice); one that is not was
never sent (it goes back to pending, uncounted).

The file has a fixed size, zeros past the last entry. When it is full it is written again with the lines whose
answer is not recorded yet (a new file put in place with one rename), and at a run's end it is removed when
none is left. Without the file (a journal written by an older genguard), every line in flight counts as sent.
A power cut may lose it, as it may lose the journal's last commits (neither is synced per line).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from pathlib import Path

import orjson

__all__ = ["SENT_FILE", "SentLog", "read_sent"]

SENT_FILE = "journal.sent"


def read_sent(path: Path) -> set[str] | None:
    """The ``custom_id`` named in the log at ``path``; ``None`` when there is no log. A torn entry (a process
    killed in the middle of its copy, which never sent that request) is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    names: set[str] = set()
    for raw in data.rstrip(b"\0").split(b"\n"):
        try:
            name = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(name, str):
            names.add(name)
    return names


def _mapped(fd: int, size: int) -> mmap.mmap | None:
    """The file mapped in memory, its blocks allocated first (allocated when a page is first written through
    the map, a full disk would kill the process with SIGBUS instead of raising here); ``None`` where that
    cannot be done: no room, a file system that cannot map files (some FUSE mounts), a system without
    ``posix_fallocate`` (macOS)."""
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is None:
        return None
    try:
        allocate(fd, 0, size)
        return mmap.mmap(fd, size)
    except OSError:
        return None


class SentLog:
    """An open sent log, empty at first (a run starts one once the journal has read the last).

    >>> import tempfile
    >>> log = SentLog(Path(tempfile.mkdtemp()) / SENT_FILE)
    >>> log.add("a"); log.add("b\\nc"); log.add("a")
    >>> sorted(read_sent(log.path))
    ['a', 'b\\nc']
    >>> log.forget(["a", "b\\nc"]); log.close(); read_sent(log.path) is None
    True
    """

    def __init__(self, path: Path, *, size: int = 1 << 20) -> None:
        self.path = path
        self.size = size
        self.named: set[str] = set()  # in the file, answer not recorded yet
        self._map: mmap.mmap | None = None
        self._fd = -1  # a file system that cannot map files (some FUSE mounts): a write() per entry instead
        self._at = 0
        self._tmp = path.with_name(
            path.name + ".tmp"
        )  # each new file is made here, then renamed over the log
        self._open(b"")

    def _entries(self) -> bytes:
        return b"".join(orjson.dumps(name) + b"\n" for name in self.named)

    def _open(self, entries: bytes) -> None:
        """A new file holding ``entries``, with room for at least as much again, put in place of the old."""
        size = max(self.size, 2 * len(entries))
        fd = os.open(self._tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            new = _mapped(fd, size)
            if new is None:  # a write() per entry
                os.ftruncate(fd, 0)
                os.write(fd, entries)
        except BaseException:
            os.close(fd)
            raise
        if new is not None:
            os.close(fd)  # the mapping keeps the file
            new[: len(entries)] = entries
        # Either file names every line that may have left: the old one more, the new one exactly those.
        os.replace(self._tmp, self.path)
        self._release()
        if new is None:
            self._fd = fd
        self._map, self._at = new, len(entries)

    def _release(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def add(self, custom_id: str) -> None:
        """Say that a request of this line is about to leave (once per line: later attempts are already told)."""
        if custom_id in self.named:
            return
        self.named.add(custom_id)
        entry = orjson.dumps(custom_id) + b"\n"
        at = self._at
        end = at + len(entry)
        if self._map is None:
            os.write(self._fd, entry)
        elif end > len(self._map):
            self._open(self._entries())
            return
        else:
            self._map[at:end] = entry
        self._at = end

    def forget(self, custom_ids: Iterable[str]) -> None:
        """These lines' answers are in the journal (or they went back to pending): the next rewrite drops them."""
        self.named.difference_update(custom_ids)

    def close(self) -> None:
        """At the run's end: kept, written again, if lines that may have left are still unrecorded (cut off on
        the wire by a second Ctrl-C); removed otherwise."""
        if self._map is None and self._fd < 0:
            return
        self._release()
        if self.named:
            self._tmp.write_bytes(self._entries())
            os.replace(self._tmp, self.path)
        else:
            self.path.unlink(missing_ok=True)
