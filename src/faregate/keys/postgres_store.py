"""Virtual keys shared by N gateway replicas: PostgreSQL through psycopg 3 and a small pool."""

from __future__ import annotations

from faregate.keys.store import MIGRATIONS_TABLE, SqlKeyStore, migrations
from faregate.sql_backends import PostgresBackend

# Any constant works as long as every replica uses it; distinct from the ledger's ("FARE"), the
# cache's ("FARC"), the history's ("FARH") and the budgets' ("FARB").
_MIGRATION_LOCK = 0x4641524B  # "FARK"


class PostgresKeyStore(PostgresBackend, SqlKeyStore):
    param = "%s"

    def __init__(self, url: str, *, max_connections: int = 2, connect_timeout: float = 10.0) -> None:
        self._open(
            url,
            lock=_MIGRATION_LOCK,
            migrations=migrations,
            table=MIGRATIONS_TABLE,
            name="faregate-keys",
            max_connections=max_connections,
            connect_timeout=connect_timeout,
        )
