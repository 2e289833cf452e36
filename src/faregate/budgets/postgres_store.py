"""Budgets shared by N gateway replicas: PostgreSQL through psycopg 3 and a small pool.

Each operation is one transaction on a pooled connection (READ COMMITTED): the conditional
`UPDATE ... RETURNING` in `reserve` waits for a concurrent reservation of the same row and then
re-checks the limit against what it committed, which is what makes replicas unable to overspend.
"""

from __future__ import annotations

from collections.abc import Iterable

from faregate.budgets.store import DEFAULT_RESERVATION_TTL_S, MIGRATIONS_TABLE, SqlBudgetStore, migrations
from faregate.config import BudgetSettings
from faregate.sql_backends import PostgresBackend

# Any constant works as long as every replica uses it; distinct from the ledger's ("FARE"), the
# cache's ("FARC") and the history's ("FARH").
_MIGRATION_LOCK = 0x46415242  # "FARB"


class PostgresBudgetStore(PostgresBackend, SqlBudgetStore):
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
        # Replicas starting together wait on the advisory lock, then find the tables made.
        self._open(
            url,
            lock=_MIGRATION_LOCK,
            migrations=migrations,
            table=MIGRATIONS_TABLE,
            name="faregate-budgets",
            max_connections=max_connections,
            connect_timeout=connect_timeout,
        )
