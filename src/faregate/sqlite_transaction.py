"""One SQLite write transaction, as both SQLite stores (the ledger and the response cache) need it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; anything that fails, COMMIT included, rolls the work back.

    IMMEDIATE takes the write lock up front, so two writers queue on `busy_timeout` instead of one
    failing at its first write. SQLite rolls back by itself after some errors (disk full); a second
    ROLLBACK would raise and hide the error that matters, hence the `in_transaction` check.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
