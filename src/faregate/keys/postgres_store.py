"""Virtual keys shared by N gateway replicas: PostgreSQL through psycopg 3 and a small pool."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import psycopg

from faregate.budgets.store import Execute
from faregate.cache.store import migrate
from faregate.keys.store import MIGRATIONS_TABLE, SqlKeyStore, migrations
from faregate.postgres_pool import fetch_all, open_pool

# Any constant works as long as every replica uses it; distinct from the ledger's ("FARE"), the
# cache's ("FARC"), the history's ("FARH") and the budgets' ("FARB").
_MIGRATION_LOCK = 0x4641524B  # "FARK"


class PostgresKeyStore(SqlKeyStore):
    param = "%s"

    def __init__(self, url: str, *, max_connections: int = 2, connect_timeout: float = 10.0) -> None:
        # Migrate over a plain connection first, so an unreachable server reports libpq's reason.
        with psycopg.connect(url, connect_timeout=max(1, round(connect_timeout))) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            migrate(
                partial(fetch_all, conn),
                "%s",
                "DOUBLE PRECISION",
                migrations("DOUBLE PRECISION"),
                table=MIGRATIONS_TABLE,
            )
        self._pool = open_pool(
            url, name="faregate-keys", max_connections=max_connections, connect_timeout=connect_timeout
        )

    @contextmanager
    def _transaction(self) -> Iterator[Execute]:
        with self._pool.connection() as conn:  # commits at the end of the block, or rolls back
            yield partial(fetch_all, conn)

    _read = _transaction

    def close(self) -> None:
        self._pool.close()
