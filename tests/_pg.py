"""The PostgreSQL the tests use (a real server on 127.0.0.1), and a schema of its own for each test, dropped after
it: other people run tests against the same database at the same time."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

PG_URL = os.environ.get("GENGUARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def connect() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_URL} ({exc}); start it (see .ci/run) or point "
            "GENGUARD_TEST_POSTGRES at one"
        )


@contextmanager
def pg_schema(prefix: str = "gg_test") -> Iterator[str]:
    """A journal URL whose ``schema`` parameter names a fresh schema, dropped with everything in it after."""
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    db = connect()
    try:
        yield f"{PG_URL}?schema={name}"
    finally:
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        db.close()
