"""The two engines under the small SQL stores (budgets, virtual keys): connection, migration, lock.

Such a store writes its logic once against an `Execute` (a statement and its parameters in, rows
out) and takes `_transaction` / `_read` / `close` from one of these: SQLite, one connection behind a
lock with BEGIN IMMEDIATE transactions; PostgreSQL, a small pool whose block commits or rolls back.
Both migrate at open, under the store's own migrations table (PostgreSQL: under an advisory lock,
so replicas starting together apply each migration once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from faregate.cache.store import migrate
from faregate.sqlite_transaction import connect, immediate_transaction

Execute = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
# A store's migrations for a given REAL type name: (name, statements) in order.
Migrations = Callable[[str], Sequence[tuple[str, Sequence[str]]]]


class SqliteBackend:
    """One connection shared by the store's threads under a lock (SQLite allows one writer)."""

    path: Path

    def _open(self, path: str | Path, busy_timeout_ms: int, migrations: Migrations, table: str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = connect(self.path, busy_timeout_ms)  # autocommit: BEGIN IMMEDIATE is explicit
        try:
            with self._transaction() as execute:
                migrate(execute, "?", "REAL", migrations("REAL"), table=table)
        except BaseException:
            self._conn.close()
            raise

    @contextmanager
    def _transaction(self) -> Iterator[Execute]:
        with self._lock, immediate_transaction(self._conn):
            yield self._execute

    @contextmanager
    def _read(self) -> Iterator[Execute]:
        with self._lock:
            yield self._execute

    def _execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresBackend:
    """A small psycopg pool shared by every replica's store; one transaction per pool block."""

    def _open(
        self,
        url: str,
        *,
        lock: int,
        migrations: Migrations,
        table: str,
        name: str,
        max_connections: int,
        connect_timeout: float,
    ) -> None:
        import psycopg  # libpq only when a PostgreSQL store is opened

        from faregate.postgres_pool import fetch_all, open_pool

        # Migrate over a plain connection first, so an unreachable server reports libpq's reason.
        with psycopg.connect(url, connect_timeout=max(1, round(connect_timeout))) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            real = "DOUBLE PRECISION"
            migrate(partial(fetch_all, conn), "%s", real, migrations(real), table=table)
        self._fetch_all = fetch_all
        self._pool = open_pool(
            url, name=name, max_connections=max_connections, connect_timeout=connect_timeout
        )

    @contextmanager
    def _transaction(self) -> Iterator[Execute]:
        with self._pool.connection() as conn:  # commits at the end of the block, or rolls back
            yield partial(self._fetch_all, conn)

    _read = _transaction

    def close(self) -> None:
        self._pool.close()
