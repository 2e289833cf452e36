"""Budgets shared by N gateway replicas: PostgreSQL through psycopg 3 and a small pool.

Each operation is one transaction on a pooled connection (READ COMMITTED): the conditional
`UPDATE ... RETURNING` in `reserve` waits for a concurrent reservation of the same row and then
re-checks the limit against what it committed, which is what makes replicas unable to overspend.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial

import psycopg

from faregate.budgets.store import (
    DEFAULT_RESERVATION_TTL_S,
    MIGRATIONS_TABLE,
    Execute,
    SqlBudgetStore,
    migrations,
)
from faregate.cache.store import migrate
from faregate.config import BudgetSettings
from faregate.postgres_pool import fetch_all, open_pool

# Any constant works as long as every replica uses it; distinct from the ledger's ("FARE"), the
# cache's ("FARC") and the history's ("FARH").
_MIGRATION_LOCK = 0x46415242  # "FARB"


class PostgresBudgetStore(SqlBudgetStore):
    param = "%s"
    for_update = " FOR UPDATE"

    def __init__(
        self,
        url: str,
        budgets: Iterable[BudgetSettings],
        *,
        reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S,
        max_connections: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(budgets, reservation_ttl_s=reservation_ttl_s)
        # Migrate over a plain connection first, so an unreachable server reports libpq's reason.
        with psycopg.connect(url, connect_timeout=max(1, round(connect_timeout))) as conn:
            # Replicas starting together wait here for each other, then find the tables made.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            migrate(
                partial(fetch_all, conn),
                "%s",
                "DOUBLE PRECISION",
                migrations("DOUBLE PRECISION"),
                table=MIGRATIONS_TABLE,
            )
        self._pool = open_pool(
            url, name="faregate-budgets", max_connections=max_connections, connect_timeout=connect_timeout
        )

    @contextmanager
    def _transaction(self) -> Iterator[Execute]:
        # The pool's block commits at its end, or rolls back if the body raised.
        with self._pool.connection() as conn:
            yield partial(fetch_all, conn)

    _read = _transaction

    def close(self) -> None:
        self._pool.close()
