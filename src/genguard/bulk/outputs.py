"""The output files of a batch run, written from the journal exactly once whatever instant the process dies at.

``output.jsonl`` gets the lines that ended ok, ``errors.jsonl`` the failures, each when it ends, in the
journal's commit order (``seq``), in the OpenAI Batch output shape plus the genguard outcome::

    {"id": "batch_req_<32 hex from custom_id>", "custom_id": "...",
     "response": {"status_code": 200, "request_id": "...", "body": {...}} | null,
     "error": {"code": "...", "message": "..."} | null,
     "genguard": {<Outcome.to_dict()>, "cost_usd": ...}}

The rule for ``response`` and ``error`` is the OpenAI Batch one: ``response`` carries the final HTTP response
whenever one came, whatever its status (a 400, or a 200 that genguard judged a failure, such as a truncated
answer, goes to errors.jsonl with its response and ``error: null``); ``error`` is set only for a failure with no
HTTP response (timeout, connection failure, invalid input). So exactly one of the two is set on a failed line;
``genguard`` always says what happened (code, kind, cause, fix).

Exactly once: the writer appends the ended lines above the journal's output mark, fsyncs, and only then records
the new mark (last seq, both files' lengths) in one journal transaction. A kill between the two leaves a tail the
mark does not cover; the next writer cuts each file back to the recorded length before writing again. When
lines already written leave ``ended`` (``--retry-failed``, ``--rerun-changed``), or a file is shorter than
recorded, both files are written again from the journal into temporary files renamed over the old ones.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..core.outcome import Outcome
from .journal import Journal, OutputMark
from .model import Ended

if TYPE_CHECKING:
    from typing import Self

__all__ = ["ERRORS_FILE", "OUTPUT_FILE", "OutputWriter", "export_in_order", "output_record", "request_id_for"]

OUTPUT_FILE = "output.jsonl"
ERRORS_FILE = "errors.jsonl"
_BLOCK = 1 << 20  # bytes gathered before a write: a rebuild of a million lines stays in flat memory


def request_id_for(custom_id: str) -> str:
    """The output line's ``id``: stable for a custom_id, so a resumed or repeated run writes the same one.

    >>> request_id_for("line-1") == request_id_for("line-1"), request_id_for("line-1")[:10]
    (True, 'batch_req_')
    """
    return "batch_req_" + hashlib.sha256(custom_id.encode()).hexdigest()[:32]


def output_record(ended: Ended) -> dict[str, Any]:
    """The output line of an ended line, as a dict (the module docstring gives the shape and the rule).

    >>> from genguard.bulk.model import Ended
    >>> from genguard.core.outcome import Outcome
    >>> failed = Ended(7, "a", 1, "/v1/chat/completions", Outcome.failure("timeout").to_dict(full=True))
    >>> record = output_record(failed)
    >>> record["response"], record["error"]["code"], record["genguard"]["code"]
    (None, 'timeout', 'timeout')
    """
    stored = ended.outcome
    if stored.keys() >= _PUBLIC_KEYS:
        # What Outcome.to_dict(full=True) wrote: the public object is it without the journal's own fields, in
        # the same order (a test holds this equal to the round trip below, which costs five times as much).
        genguard = dict(stored)
        for k in _JOURNAL_ONLY:
            genguard.pop(k, None)
    else:  # written by another version: the Outcome fills in what is missing
        genguard = Outcome.from_dict(stored).to_dict()
    genguard["cost_usd"] = ended.extra.get("cost_usd")
    response = ended.response
    error = None
    if response is not None:
        response = {
            "status_code": response.get("status_code"),
            "request_id": response.get("request_id"),
            "body": response.get("body"),
        }
    elif not genguard["ok"]:
        code = genguard["code"]
        error = {"code": code, "message": genguard["message"] or genguard["cause"] or code}
    return {
        "id": request_id_for(ended.custom_id),
        "custom_id": ended.custom_id,
        "response": response,
        "error": error,
        "genguard": genguard,
    }


# The keys of Outcome.to_dict() that every outcome has, and those only to_dict(full=True) adds.
_PUBLIC_KEYS = frozenset(Outcome(ok=True).to_dict())
_JOURNAL_ONLY = frozenset(Outcome(ok=True).to_dict(full=True)) - _PUBLIC_KEYS | {"raw"}


def _line(ended: Ended) -> bytes:
    # orjson escapes every newline inside strings: one record is one line.
    return orjson.dumps(output_record(ended), default=str) + b"\n"


class OutputWriter:
    """Appends each ended line to ``DIR/output.jsonl`` or ``DIR/errors.jsonl`` exactly once (see the module).

    Opening repairs what a kill left (a tail beyond the recorded lengths is cut off; a pending rebuild is
    done); :meth:`flush` writes whatever ended since. Use it from the thread that uses the journal; only one
    writer per output directory.
    """

    def __init__(self, directory: str | os.PathLike[str], journal: Journal, *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.journal = journal
        self._fsync = fsync
        self.output_path = self.directory / OUTPUT_FILE
        self.errors_path = self.directory / ERRORS_FILE
        self._out = self._err = -1
        self._sizes = [0, 0]
        self._repair()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sync(self) -> None:
        """Flush both files to the disk (what ``fsync=False`` leaves to the end of a run)."""
        for fd in (self._out, self._err):
            if fd >= 0:
                os.fsync(fd)

    def close(self) -> None:
        for fd in (self._out, self._err):
            if fd >= 0:
                os.close(fd)
        self._out = self._err = -1

    def _repair(self) -> None:
        mark = self.journal.output_mark()
        sizes = [_size(self.output_path), _size(self.errors_path)]
        if mark.rebuild or sizes[0] < mark.output_bytes or sizes[1] < mark.errors_bytes:
            # A file shorter than recorded lost lines it had (deleted or cut by hand): write both again.
            self._rebuild()
            return
        self._out = _open_at(self.output_path, mark.output_bytes)
        self._err = _open_at(self.errors_path, mark.errors_bytes)
        self._sizes = [mark.output_bytes, mark.errors_bytes]

    def flush(self) -> int:
        """Write every line that ended since the last flush; how many were written."""
        mark = self.journal.output_mark()
        if mark.rebuild:
            return self._rebuild()
        if self._sizes != [mark.output_bytes, mark.errors_bytes]:
            raise RuntimeError(
                "the output mark moved under this writer: only one writer per output directory"
            )
        fds = (self._out, self._err)
        for fd, size in zip(fds, self._sizes, strict=True):
            # A flush that failed half way (an exception, not a kill) may have left a tail: it goes first.
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
        sizes = list(self._sizes)
        last, count = self._write(self.journal.ended(after_seq=mark.seq), fds, sizes)
        if count:
            if self._fsync:
                for fd in fds:
                    os.fsync(fd)
            self.journal.set_output_mark(OutputMark(last, sizes[0], sizes[1]))
            self._sizes = sizes
        return count

    @staticmethod
    def _write(ended: Iterable[Ended], fds: tuple[int, int], sizes: list[int]) -> tuple[int, int]:
        """Append the lines to the two files, adding to ``sizes``; the last seq written and how many."""
        buffers = (bytearray(), bytearray())
        last = count = 0
        for item in ended:
            i = 0 if item.outcome.get("ok") else 1
            buffers[i].extend(_line(item))
            last = item.seq
            count += 1
            if len(buffers[i]) >= _BLOCK:
                sizes[i] += _write_all(fds[i], buffers[i])
                buffers[i].clear()
        for i in (0, 1):
            sizes[i] += _write_all(fds[i], buffers[i])
        return last, count

    def _rebuild(self) -> int:
        """Write both files again from every ended line, into temporary files renamed over the old ones; the
        mark is recorded last, so a kill at any step leaves the rebuild to do again."""
        self.close()
        temps = (
            self.output_path.with_name(OUTPUT_FILE + ".tmp"),
            self.errors_path.with_name(ERRORS_FILE + ".tmp"),
        )
        fds = tuple(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) for p in temps)
        sizes = [0, 0]
        try:
            last, count = self._write(self.journal.ended(), (fds[0], fds[1]), sizes)
            if self._fsync:  # an empty file too: the rename must not reach the disk before the contents
                for fd in fds:
                    os.fsync(fd)
        finally:
            for fd in fds:
                os.close(fd)
        os.replace(temps[0], self.output_path)
        os.replace(temps[1], self.errors_path)
        if self._fsync:
            _fsync_dir(self.directory)
        self.journal.set_output_mark(OutputMark(last, sizes[0], sizes[1]))
        self._out = _open_at(self.output_path, sizes[0])
        self._err = _open_at(self.errors_path, sizes[1])
        self._sizes = sizes
        return count

    def export_in_order(self, path: str | os.PathLike[str]) -> int:
        """Write every ended line, ok or failed, to ``path`` in input order (``--export``), replacing the file
        whole; how many lines."""
        return export_in_order(self.journal, path, fsync=self._fsync)


def export_in_order(journal: Journal, path: str | os.PathLike[str], *, fsync: bool = True) -> int:
    """Every ended line of ``journal``, ok or failed, in input order and in the output files' shape, written to
    ``path`` through a temporary file that replaces it whole (a kill leaves the old file, never a part of the
    new one); how many lines."""
    path = Path(path)
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    count = 0
    try:
        buf = bytearray()
        for item in journal.ended(by_input=True):
            buf += _line(item)
            count += 1
            if len(buf) >= _BLOCK:
                _write_all(fd, buf)
                buf.clear()
        _write_all(fd, buf)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    return count


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _open_at(path: Path, size: int) -> int:
    """Open ``path`` for appending, cut back to ``size`` bytes (what a kill left past the mark goes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes | bytearray) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
