"""The embedded budget store: the ledger's SQLite file, its own tables, one connection and a lock.

`BEGIN IMMEDIATE` takes SQLite's write lock before the first read, so a reservation's check and its
update cannot interleave with another's, whether from this process or another one on the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from faregate.budgets.store import DEFAULT_RESERVATION_TTL_S, MIGRATIONS_TABLE, SqlBudgetStore, migrations
from faregate.config import BudgetSettings
from faregate.sql_backends import SqliteBackend


class SqliteBudgetStore(SqliteBackend, SqlBudgetStore):
    def __init__(
        self,
        path: str | Path,
        budgets: Iterable[BudgetSettings],
        *,
        reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S,
        busy_timeout_ms: int = 5000,
    ) -> None:
        super().__init__(budgets, reservation_ttl_s=reservation_ttl_s)
        self._open(path, busy_timeout_ms, migrations, MIGRATIONS_TABLE)

    def __repr__(self) -> str:
        return f"SqliteBudgetStore({str(self.path)!r})"
