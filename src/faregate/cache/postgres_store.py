"""The shared cache for N gateway replicas: PostgreSQL with pgvector, through psycopg 3 and a pool.

Every read goes to the database, so a replica sees another's entries as soon as they commit. The
nearest-neighbour search is pgvector's HNSW index (cosine), with one catch: pgvector 0.6 filters
*after* the index scan, so `WHERE scope = ...` keeps only those of the `hnsw.ef_search` nearest rows
of the whole table that belong to the scope, and a small scope in a big table can come back with
too few rows or none. When that happens the same transaction re-runs the query as an exact scan
over the scope's rows (found through the (scope, exact_key) B-tree). Correctness first: the
fallback costs a second query only when the index could not answer.

Vectors cross the wire in pgvector's binary format (uint16 dim, uint16 unused, big-endian float32),
registered on each pooled connection, so neither side formats or parses 384 decimals as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg.types import TypeInfo

from faregate.cache import store as sql
from faregate.cache.entry import CacheEntry, Vector
from faregate.pgvector import VectorAdapters
from faregate.postgres_pool import fetch_all, open_pool

_S = sql.statements("%s")
# Any constant works as long as every replica uses it; distinct from the ledger's ("FARE").
_MIGRATION_LOCK = 0x46415243  # "FARC"
_EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search

# The pgvector index's HNSW parameters, chosen with bench/cache_index_bench.py (100k vectors in one
# scope, paraphrase-like queries): pgvector's defaults (m 16, ef_construction 64) found the true
# nearest neighbour of a query near a random vector 88% of the time at ef_search 200; m 24 and
# ef_construction 160 0.98-0.997 at ef_search 100; m 32 and ef_construction 200 reach 0.996-0.998
# at ef_search 64 and 1.000 at 80, for about the same query time (~3.4 ms p50 on 2 busy cores).
# The price is paid when writing: building the index over 100k rows takes 3-5 minutes there.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 80


def migrations(dim: int) -> list[tuple[str, list[str]]]:
    return [
        (
            "m001_create_cache_entries",
            [
                "CREATE EXTENSION IF NOT EXISTS vector",
                f"""
                CREATE TABLE cache_entries (
                    id BIGINT PRIMARY KEY,
                    scope TEXT NOT NULL,
                    exact_key TEXT NOT NULL,
                    tenant TEXT NOT NULL,
                    feature TEXT NOT NULL,
                    template TEXT NOT NULL,
                    query TEXT NOT NULL,
                    answer_protocol TEXT NOT NULL,
                    answer_model TEXT NOT NULL,
                    answer_text TEXT NOT NULL,
                    stop_reason TEXT NOT NULL,
                    input_tokens BIGINT NOT NULL,
                    output_tokens BIGINT NOT NULL,
                    cost_nusd BIGINT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL,
                    expires_at DOUBLE PRECISION NOT NULL,
                    last_used_at DOUBLE PRECISION NOT NULL,
                    hits BIGINT NOT NULL,
                    embedding vector({int(dim)})
                )
                """,
                "CREATE INDEX cache_entries_scope_key ON cache_entries (scope, exact_key)",
                "CREATE INDEX cache_entries_feature_lru ON cache_entries (feature, last_used_at, created_at)",
                "CREATE INDEX cache_entries_expires ON cache_entries (expires_at)",
                EMBEDDING_INDEX,
            ],
        ),
        ("m002_create_cache_thresholds", [sql.thresholds_table("DOUBLE PRECISION")]),
    ]


EMBEDDING_INDEX = (
    "CREATE INDEX cache_entries_embedding ON cache_entries USING hnsw (embedding vector_cosine_ops) "
    f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
)

_INSERT = (
    f"INSERT INTO cache_entries ({sql.COLUMNS}, embedding) VALUES ({', '.join(['%s'] * sql.N_COLUMNS)}, %b) "
    "ON CONFLICT (id) DO NOTHING"
)
_RAISE_TIGHTENING = sql.raise_tightening_sql("%s", "GREATEST")
_FILTER = "scope = %s AND expires_at > %s AND embedding IS NOT NULL"
# Index scan (the planner's choice; for a big scope, HNSW) ...
_SEARCH = (
    f"SELECT {sql.COLUMNS}, embedding, embedding <=> %b AS distance FROM cache_entries "
    f"WHERE {_FILTER} ORDER BY distance LIMIT %s"
)
# ... and the exact fallback: MATERIALIZED keeps the planner from turning it back into an HNSW scan.
_SEARCH_EXACT = (
    f"WITH s AS MATERIALIZED (SELECT {sql.COLUMNS}, embedding FROM cache_entries WHERE {_FILTER}) "
    f"SELECT {sql.COLUMNS}, embedding, embedding <=> %b AS distance FROM s ORDER BY distance LIMIT %s"
)


class PostgresCacheStore(sql.Invalidation):
    """A small pool, as in the ledger's store; the pool replaces connections a failover broke.

    `ef_search` is the HNSW candidate list per query (pgvector's default is 40): higher means better
    recall and fewer fallbacks for mid-sized scopes, at a cost that grows about linearly. It is set
    with SET LOCAL, per transaction, so it holds behind a transaction-pooling proxy too.
    """

    _statements = _S

    def __init__(
        self,
        url: str,
        *,
        dim: int = 384,
        ef_search: int = DEFAULT_EF_SEARCH,
        max_connections: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        self.dim = dim
        self._ef_search = ef_search
        with psycopg.connect(url, connect_timeout=max(1, round(connect_timeout))) as conn:
            # Replicas starting together would race to create the extension and the table; the
            # transaction-scoped advisory lock makes the second wait, then find them done.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            sql.migrate(lambda q, p: fetch_all(conn, q, p), "%s", "DOUBLE PRECISION", migrations(dim))
            info = TypeInfo.fetch(conn, "vector")
            row = conn.execute(
                "SELECT atttypmod FROM pg_attribute "
                "WHERE attrelid = 'cache_entries'::regclass AND attname = 'embedding'"
            ).fetchone()
        if info is None or row is None:
            raise RuntimeError("the pgvector type or the cache_entries.embedding column is missing")
        if int(row[0]) != dim:
            raise ValueError(f"cache_entries holds {row[0]}-dimensional embeddings, this store expects {dim}")
        self._adapters = VectorAdapters(info.oid)
        self._pool = open_pool(
            url,
            name="faregate-cache",
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            configure=self._adapters.register,
        )

    def put(self, entry: CacheEntry, max_entries: int | None = None) -> None:
        embedding = None if entry.embedding is None else self._vector(entry.embedding)
        if max_entries is not None:
            sql.check_max_entries(max_entries)
        with self._pool.connection() as conn:
            conn.execute(_INSERT, (*sql.entry_params(entry), embedding))
            if max_entries is not None:
                conn.execute(_S.evict, (entry.feature, max_entries))

    def get_exact(self, scope: str, exact_key: str, now: float) -> CacheEntry | None:
        with self._pool.connection() as conn, conn.cursor(binary=True) as cur:
            row = cur.execute(_S.get_exact, (scope, exact_key, now)).fetchone()
        return None if row is None else sql.row_to_entry(row, row[sql.N_COLUMNS])

    def search(self, scope: str, vector: Vector, k: int, now: float) -> list[tuple[CacheEntry, float]]:
        sql.check_k(k)
        if k == 0:
            return []
        v = self._vector(vector)
        with self._pool.connection() as conn, conn.cursor(binary=True) as cur:
            cur.execute(f"SET LOCAL hnsw.ef_search = {min(max(self._ef_search, k), _EF_SEARCH_MAX):d}")
            # Not prepared: a generic plan would pick one strategy for every scope, where the
            # planner given the actual scope picks HNSW for a big one and the B-tree for a small one.
            rows = cur.execute(_SEARCH, (v, scope, now, k), prepare=False).fetchall()
            if len(rows) < k:
                rows = cur.execute(_SEARCH_EXACT, (scope, now, v, k), prepare=False).fetchall()
        # `<=>` is the cosine distance: 1 - cosine.
        return [(sql.row_to_entry(r, r[sql.N_COLUMNS]), 1.0 - float(r[sql.N_COLUMNS + 1])) for r in rows]

    def touch(self, entry_id: int, now: float) -> None:
        with self._pool.connection() as conn:
            conn.execute(_S.touch, (now, entry_id))

    def stats(self) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            rows = conn.execute(_S.stats).fetchall()
        return sql.stats_rows(rows)

    def tightenings(self) -> dict[str, float]:
        with self._pool.connection() as conn:
            return {str(f): float(t) for f, t in conn.execute(sql.TIGHTENINGS).fetchall()}

    def raise_tightening(self, feature: str, tightened: float, now: float) -> None:
        with self._pool.connection() as conn:
            conn.execute(_RAISE_TIGHTENING, (feature, tightened, now))

    def close(self) -> None:
        self._pool.close()

    def _delete(self, statement: str, params: Sequence[Any]) -> int:
        with self._pool.connection() as conn:
            return len(fetch_all(conn, statement, params))

    def _vector(self, vector: Vector) -> Vector:
        v = np.asarray(vector, dtype=np.float32)
        if v.shape != (self.dim,):
            raise ValueError(f"expected an embedding of shape ({self.dim},), got {v.shape}")
        return v
