"""The embedded budget store: the ledger's SQLite file, its own tables, one connection and a lock.

`BEGIN IMMEDIATE` takes SQLite's write lock before the first read, so a reservation's check and its
update cannot interleave with another's, whether from this process or another one on the file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from faregate.budgets.store import (
    DEFAULT_RESERVATION_TTL_S,
    MIGRATIONS_TABLE,
    Execute,
    SqlBudgetStore,
    migrations,
)
from faregate.cache.store import migrate
from faregate.config import BudgetSettings
from faregate.sqlite_transaction import connect, immediate_transaction


class SqliteBudgetStore(SqlBudgetStore):
    def __init__(
        self,
        path: str | Path,
        budgets: Iterable[BudgetSettings],
        *,
        reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S,
        busy_timeout_ms: int = 5000,
    ) -> None:
        super().__init__(budgets, reservation_ttl_s=reservation_ttl_s)
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Autocommit mode: transactions are opened explicitly, with BEGIN IMMEDIATE.
        self._conn = connect(self.path, busy_timeout_ms)
        try:
            with self._transaction() as execute:
                migrate(execute, "?", "REAL", migrations("REAL"), table=MIGRATIONS_TABLE)
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteBudgetStore({str(self.path)!r})"

    @contextmanager
    def _transaction(self) -> Iterator[Execute]:
        with self._lock, immediate_transaction(self._conn):
            yield self._execute

    @contextmanager
    def _read(self) -> Iterator[Execute]:
        with self._lock:
            yield self._execute

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()
