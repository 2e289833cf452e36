"""History shared by N gateway replicas: PostgreSQL with pgvector, through psycopg 3 and a pool.

Every call goes to the database, so a replica sees another's rows as soon as they commit. A
conversation has tens of turns, so `nearest` is an exact scan of its rows found through the
(scope, digest) primary key, ordered by pgvector's cosine distance `<=>`: no HNSW index, which
would slow every insert and, filtering after its scan, could miss a small conversation's rows.

Vectors cross the wire in pgvector's binary format (uint16 dim, uint16 unused, big-endian float32),
as in `faregate.cache.postgres_store`, registered on each pooled connection.

Every write upserts the conversation's row first and purge and clear delete it first, so a write
racing a purge of the same conversation waits for it and then starts the conversation afresh, and
no turn is left behind without its conversation row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types import TypeInfo

from faregate.cache.store import migrate
from faregate.history import store as sql
from faregate.history.store import ConversationKey, Summary, Vector
from faregate.pgvector import VectorAdapters
from faregate.postgres_pool import fetch_all, open_pool

_S = sql.statements("%s", "greatest")
# Any constant works as long as every replica uses it; distinct from the ledger's ("FARE") and the
# cache's ("FARC").
_MIGRATION_LOCK = 0x46415248  # "FARH"
# The cache store's migration lock, which it holds while it creates the pgvector extension. Taken
# too, so the two stores never create it at once: `CREATE EXTENSION IF NOT EXISTS` is not safe
# against a concurrent one (the loser fails on pg_extension's unique index).
_PGVECTOR_LOCK = 0x46415243  # "FARC"


def migrations(dim: int) -> list[tuple[str, list[str]]]:
    return [
        (
            "m001_create_history",
            [
                "CREATE EXTENSION IF NOT EXISTS vector",
                """
                CREATE TABLE history_conversations (
                    scope TEXT PRIMARY KEY,
                    tenant TEXT NOT NULL,
                    feature TEXT NOT NULL,
                    last_used_at DOUBLE PRECISION NOT NULL
                )
                """,
                "CREATE INDEX history_conversations_feature ON history_conversations (feature)",
                "CREATE INDEX history_conversations_last_used ON history_conversations (last_used_at)",
                f"""
                CREATE TABLE history_turns (
                    scope TEXT NOT NULL,
                    digest TEXT NOT NULL,
                    tenant TEXT NOT NULL,
                    feature TEXT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL,
                    embedding vector({int(dim)}) NOT NULL,
                    PRIMARY KEY (scope, digest)
                )
                """,
                "CREATE INDEX history_turns_feature ON history_turns (feature)",
                """
                CREATE TABLE history_summaries (
                    scope TEXT PRIMARY KEY,
                    tenant TEXT NOT NULL,
                    feature TEXT NOT NULL,
                    covered BIGINT NOT NULL,
                    covered_digest TEXT NOT NULL,
                    text TEXT NOT NULL,
                    model TEXT NOT NULL,
                    tokens BIGINT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL
                )
                """,
                "CREATE INDEX history_summaries_feature ON history_summaries (feature)",
            ],
        ),
    ]


_INSERT = (
    "INSERT INTO history_turns (scope, digest, tenant, feature, created_at, embedding) "
    "VALUES (%s, %s, %s, %s, %s, %b) ON CONFLICT (scope, digest) DO NOTHING"
)
_VECTORS = "SELECT digest, embedding FROM history_turns WHERE scope = %s AND digest = ANY(%s::text[])"
_NEAREST = (
    "SELECT digest, embedding <=> %b AS distance FROM history_turns "
    "WHERE scope = %s AND digest = ANY(%s::text[]) ORDER BY distance, digest LIMIT %s"
)


def _purge(feature: bool) -> str:
    """One statement, so the turns and summaries deleted are exactly those of the conversations deleted."""
    idle = "last_used_at < %s" + (" AND feature = %s" if feature else "")
    return (
        f"WITH gone AS (DELETE FROM history_conversations WHERE {idle} RETURNING scope), "
        "turns AS (DELETE FROM history_turns WHERE scope IN (SELECT scope FROM gone) RETURNING 1), "
        "summaries AS (DELETE FROM history_summaries WHERE scope IN (SELECT scope FROM gone) RETURNING 1) "
        "SELECT (SELECT count(*) FROM turns) + (SELECT count(*) FROM summaries)"
    )


_PURGE = {False: _purge(False), True: _purge(True)}


class PostgresHistoryStore:
    """A small pool, as in the cache's and the ledger's stores; it replaces connections a failover broke."""

    def __init__(
        self, url: str, *, dim: int = 384, max_connections: int = 4, connect_timeout: float = 10.0
    ) -> None:
        self.dim = dim
        oid = self._migrate(url, dim, connect_timeout)
        self._adapters = VectorAdapters(oid)
        self._pool = open_pool(
            url,
            name="faregate-history",
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            configure=self._adapters.register,
        )

    def vectors(self, key: ConversationKey, digests: Sequence[str]) -> dict[str, Vector]:
        if not digests:
            return {}
        with self._pool.connection() as conn, conn.cursor(binary=True) as cur:
            rows = cur.execute(_VECTORS, (key.scope, list(digests))).fetchall()
        return {digest: vector for digest, vector in rows}

    def put_vectors(self, key: ConversationKey, items: Sequence[tuple[str, Vector]], now: float) -> None:
        scope = key.scope
        rows = [
            (scope, digest, key.tenant, key.feature, now, sql.check_vector(v, self.dim))
            for digest, v in items
        ]
        # One transaction: the pool's connection block commits at its end (or rolls back).
        with self._pool.connection() as conn:
            conn.execute(_S.touch, sql.touch_params(key, scope, now))
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(_INSERT, rows)

    def nearest(
        self, key: ConversationKey, vector: Vector, digests: Sequence[str], k: int
    ) -> list[tuple[str, float]]:
        sql.check_k(k)
        q = sql.check_vector(vector, self.dim)
        if k == 0 or not digests:
            return []
        with self._pool.connection() as conn, conn.cursor(binary=True) as cur:
            rows = cur.execute(_NEAREST, (q, key.scope, list(digests), k)).fetchall()
        # `<=>` is the cosine distance: 1 - cosine.
        return [(digest, 1.0 - float(distance)) for digest, distance in rows]

    def summary(self, key: ConversationKey) -> Summary | None:
        with self._pool.connection() as conn:
            row = conn.execute(_S.get_summary, (key.scope,)).fetchone()
        return None if row is None else sql.row_to_summary(row)

    def put_summary(
        self, key: ConversationKey, summary: Summary, now: float, *, replaces: str | None = None
    ) -> None:
        scope = key.scope
        params = sql.summary_params(key, scope, summary, replaces)
        with self._pool.connection() as conn:
            conn.execute(_S.touch, sql.touch_params(key, scope, now))
            conn.execute(_S.put_summary, params)

    def purge(self, idle_before: float, feature: str | None = None) -> int:
        params = (idle_before,) if feature is None else (idle_before, feature)
        with self._pool.connection() as conn:
            row = conn.execute(_PURGE[feature is not None], params).fetchone()
        return 0 if row is None else int(row[0])

    def clear(self, *, tenant: str | None = None, feature: str | None = None) -> int:
        cols, values = sql.clear_filters(tenant, feature)
        with self._pool.connection() as conn:
            counts = [conn.execute(_S.clear(table, cols), values).rowcount for table in sql.CLEAR_ORDER]
        return counts[1] + counts[2]  # turns and summaries, as purge counts

    def stats(self) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            rows = conn.execute(_S.stats).fetchall()
        return sql.stats_rows(rows)

    def close(self) -> None:
        self._pool.close()

    @staticmethod
    def _migrate(url: str, dim: int, connect_timeout: float) -> int:
        """Migrate under the advisory locks; returns the vector type's oid."""
        with psycopg.connect(url, connect_timeout=max(1, round(connect_timeout))) as conn:
            # Replicas starting together wait for each other here, then find the work done. Always
            # in this order (the cache store takes only the second): no deadlock.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PGVECTOR_LOCK,))
            migrate(
                lambda q, p: fetch_all(conn, q, p),
                "%s",
                "DOUBLE PRECISION",
                migrations(dim),
                table=sql.MIGRATIONS_TABLE,
            )
            info = TypeInfo.fetch(conn, "vector")
            row = conn.execute(
                "SELECT atttypmod FROM pg_attribute "
                "WHERE attrelid = 'history_turns'::regclass AND attname = 'embedding'"
            ).fetchone()
        if info is None or row is None:
            raise RuntimeError("the pgvector type or the history_turns.embedding column is missing")
        if int(row[0]) != dim:
            raise ValueError(f"history_turns holds {row[0]}-dimensional embeddings, this store expects {dim}")
        return info.oid
