"""Opening a journal by what names it: a run's folder (SQLite) or a ``postgresql://`` URL (a shared run)."""

from __future__ import annotations

import os
from pathlib import Path

from .journal import JOURNAL_FILE, Journal, JournalError, SQLiteJournal
from .journal_pg import PostgresJournal, is_postgres_url

__all__ = ["open_journal"]


def open_journal(
    spec: str | os.PathLike[str], *, run: str | None = None, place: str = "", counts_every_s: float = 0.0
) -> Journal:
    """The journal ``spec`` names: a ``postgresql://`` URL opens run ``run`` in that database
    (:class:`~genguard.bulk.journal_pg.PostgresJournal`, for workers on several machines); anything else is a
    run's folder or an SQLite file (``DIR/journal.sqlite`` when ``spec`` is a folder), for one process.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     journal = open_journal(folder)
    ...     type(journal).__name__, journal.counts().total
    ...     journal.close()
    ('SQLiteJournal', 0)
    """
    text = os.fspath(spec)
    if is_postgres_url(text):
        if not run:
            raise JournalError("a PostgreSQL journal holds many runs: name this one with --run NAME")
        return PostgresJournal(text, run=run, place=place, counts_every_s=counts_every_s)
    path = Path(text)
    if path.is_dir() or not path.suffix:
        path = path / JOURNAL_FILE
    return SQLiteJournal(path)
