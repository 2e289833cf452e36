"""How every SQLite store (ledger, response cache, history, budgets) opens its file and writes to it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: str | Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """One connection shared by a store's threads (under the store's lock), in WAL mode.

    Autocommit (isolation_level=None): transactions are opened explicitly, so BEGIN IMMEDIATE takes
    the write lock up front. WAL lets other processes read while the gateway writes; synchronous
    NORMAL makes a commit cost no fsync (a crash may lose the last commits, never corrupt the file).
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


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
