"""Where cache entries live: the store protocol, the SQL both backends share, and `open_cache_store`.

One table, `cache_entries`, with the answer in plain columns rather than a JSON blob: invalidation
and stats filter on them, and a column can be added by a migration. The embedding is a BLOB of
little-endian float32 on SQLite and a pgvector `vector(dim)` on PostgreSQL; it is NULL for features
that only use the exact tier. The migrations are recorded in `_faregate_cache_migrations`, apart from
the ledger's, so the cache can share the ledger's database without either knowing about the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faregate.cache.entry import CachedAnswer, CacheEntry, Vector
from faregate.database_url import sqlite_path

MIGRATIONS_TABLE = "_faregate_cache_migrations"

# Every column but the embedding, in the order `entry_params` and `row_to_entry` use.
COLUMNS = (
    "id, scope, exact_key, tenant, feature, template, query, answer_protocol, answer_model, answer_text, "
    "stop_reason, input_tokens, output_tokens, cost_nusd, created_at, expires_at, last_used_at, hits"
)
N_COLUMNS = len(COLUMNS.split(","))


class CacheStore(Protocol):
    """The cache's persistence. Calls are synchronous: the cache stage runs them in a worker thread."""

    def put(self, entry: CacheEntry, max_entries: int | None = None) -> None:
        """Insert (a repeated id is ignored); with `max_entries`, then `evict(entry.feature, max_entries)`."""

    def get_exact(self, scope: str, exact_key: str, now: float) -> CacheEntry | None:
        """The newest unexpired entry with this exact key in this scope."""

    def search(self, scope: str, vector: Vector, k: int, now: float) -> list[tuple[CacheEntry, float]]:
        """Up to k unexpired entries of the scope nearest to `vector`, with their cosine, best first."""

    def touch(self, entry_id: int, now: float) -> None:
        """Record a hit: last_used_at = now (for LRU eviction) and hits += 1 (for stats)."""

    def evict(self, feature: str, max_entries: int) -> int:
        """Delete the feature's least recently used entries beyond `max_entries`; how many went."""

    def purge_expired(self, now: float) -> int: ...

    def clear(
        self, feature: str | None = None, template: str | None = None, tenant: str | None = None
    ) -> int:
        """Invalidate the entries matching every filter given (no filter: all); how many went."""

    def stats(self) -> list[dict[str, Any]]:
        """Per feature: entries, hits, oldest_created_at, newest_created_at."""

    def tightenings(self) -> dict[str, float]:
        """Per feature, how far verification sampling has raised its threshold (any replica)."""

    def raise_tightening(self, feature: str, tightened: float, now: float) -> None:
        """Record a feature's tightening; a smaller value than the stored one changes nothing."""

    def close(self) -> None: ...


def open_cache_store(url: str, dim: int = 384) -> CacheStore:
    """Open (and migrate) the cache store a config's `database` value names.

    The same URL forms as `faregate.ledger.open_store`: `sqlite:///relative.db`,
    `sqlite:////absolute.db`, a bare path, `postgresql://...` or `postgres://...`.
    """
    # Backends are imported on demand so an embedded install never loads libpq.
    path = sqlite_path(url, "cache")
    if path is not None:
        from faregate.cache.sqlite_store import SqliteCacheStore

        return SqliteCacheStore(path, dim=dim)
    from faregate.cache.postgres_store import PostgresCacheStore

    return PostgresCacheStore(url, dim=dim)


def entry_params(entry: CacheEntry) -> tuple[Any, ...]:
    """The values of COLUMNS for an INSERT."""
    a = entry.answer
    return (
        entry.id,
        entry.scope,
        entry.exact_key,
        entry.tenant,
        entry.feature,
        entry.template,
        entry.query,
        a.protocol,
        a.model,
        a.text,
        a.stop_reason,
        a.input_tokens,
        a.output_tokens,
        a.cost_nusd,
        entry.created_at,
        entry.expires_at,
        entry.last_used_at,
        entry.hits,
    )


def row_to_entry(row: Sequence[Any], embedding: Vector | None) -> CacheEntry:
    """Rebuild an entry from COLUMNS (the first values of `row`) and the decoded embedding."""
    (id_, scope, exact_key, tenant, feature, template, query, protocol, model, text, stop_reason,
     input_tokens, output_tokens, cost_nusd, created, expires, last_used, hits) = row[:N_COLUMNS]  # fmt: skip
    answer = CachedAnswer(
        protocol=protocol,
        model=model,
        text=text,
        stop_reason=stop_reason,
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        cost_nusd=int(cost_nusd),
    )
    return CacheEntry(
        id=int(id_),
        scope=scope,
        exact_key=exact_key,
        tenant=tenant,
        feature=feature,
        template=template,
        query=query,
        answer=answer,
        embedding=embedding,
        created_at=float(created),
        expires_at=float(expires),
        last_used_at=float(last_used),
        hits=int(hits),
    )


@dataclass(frozen=True, slots=True)
class Statements:
    """The SQL that reads the same on both backends, given the parameter placeholder."""

    get_exact: str
    touch: str
    evict: str
    purge: str
    stats: str
    by_ids: Callable[[int], str]
    clear: Callable[[Sequence[str]], str]


def thresholds_table(real: str) -> str:
    """Verification's tightenings, shared by the replicas on one database and kept over restarts."""
    return (
        f"CREATE TABLE cache_thresholds (feature TEXT PRIMARY KEY, tightened {real} NOT NULL, "
        f"updated_at {real} NOT NULL)"
    )


def raise_tightening_sql(p: str, greatest: str) -> str:
    """An upsert that keeps the larger tightening (`greatest`: SQLite's `max`, PostgreSQL's `GREATEST`)."""
    return (
        f"INSERT INTO cache_thresholds (feature, tightened, updated_at) VALUES ({p}, {p}, {p}) "
        f"ON CONFLICT (feature) DO UPDATE SET tightened = {greatest}(cache_thresholds.tightened, "
        "excluded.tightened), updated_at = excluded.updated_at"
    )


TIGHTENINGS = "SELECT feature, tightened FROM cache_thresholds"


def statements(p: str) -> Statements:
    """`p` is `?` (sqlite3) or `%s` (psycopg). Reads return COLUMNS then the embedding; deletes
    return (id, scope) so an in-process index can follow."""
    return Statements(
        get_exact=(
            f"SELECT {COLUMNS}, embedding FROM cache_entries "
            f"WHERE scope = {p} AND exact_key = {p} AND expires_at > {p} "
            "ORDER BY created_at DESC LIMIT 1"
        ),
        touch=f"UPDATE cache_entries SET last_used_at = {p}, hits = hits + 1 WHERE id = {p}",
        # Keep the newest `max_entries` by (last_used_at, created_at); id breaks ties so that two
        # replicas evicting at once pick the same rows rather than twice as many.
        evict=(
            "DELETE FROM cache_entries WHERE id IN (SELECT id FROM cache_entries WHERE feature = "
            f"{p} ORDER BY last_used_at DESC, created_at DESC, id DESC "
            f"{'LIMIT -1 ' if p == '?' else ''}OFFSET {p}) RETURNING id, scope"
        ),
        purge=f"DELETE FROM cache_entries WHERE expires_at <= {p} RETURNING id, scope",
        stats=(
            "SELECT feature, count(*), coalesce(sum(hits), 0), min(created_at), max(created_at) "
            "FROM cache_entries GROUP BY feature ORDER BY feature"
        ),
        by_ids=lambda n: f"SELECT {COLUMNS}, embedding FROM cache_entries WHERE id IN ({', '.join([p] * n)})",
        clear=lambda cols: (
            "DELETE FROM cache_entries"
            + (" WHERE " + " AND ".join(f"{c} = {p}" for c in cols) if cols else "")
            + " RETURNING id, scope"
        ),
    )


class Invalidation:
    """`evict`, `purge_expired` and `clear`, written once over a backend's `_delete` and statements.

    The SQL is the same on both backends; only how a DELETE runs (and what an in-process index must
    forget) differs, which is each store's `_delete`.
    """

    _statements: Statements

    def _delete(self, statement: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    def evict(self, feature: str, max_entries: int) -> int:
        check_max_entries(max_entries)
        return self._delete(self._statements.evict, (feature, max_entries))

    def purge_expired(self, now: float) -> int:
        return self._delete(self._statements.purge, (now,))

    def clear(
        self, feature: str | None = None, template: str | None = None, tenant: str | None = None
    ) -> int:
        cols, values = clear_filters(feature, template, tenant)
        return self._delete(self._statements.clear(cols), values)


def clear_filters(
    feature: str | None, template: str | None, tenant: str | None
) -> tuple[list[str], list[str]]:
    """The columns and values `clear` filters on (column names are fixed here, never from input)."""
    pairs = [("feature", feature), ("template", template), ("tenant", tenant)]
    given = [(c, v) for c, v in pairs if v is not None]
    return [c for c, _ in given], [v for _, v in given]


def stats_rows(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [
        {
            "feature": feature,
            "entries": int(n),
            "hits": int(hits),
            "oldest_created_at": float(oldest),
            "newest_created_at": float(newest),
        }
        for feature, n, hits, oldest, newest in rows
    ]


Execute = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def migrate(
    execute: Execute,
    param: str,
    real: str,
    migrations: Sequence[tuple[str, Sequence[str]]],
    *,
    table: str = MIGRATIONS_TABLE,
) -> list[str]:
    """Apply the pending migrations in order and return their names.

    The caller owns the transaction (and, on PostgreSQL, a lock), so replicas starting together
    cannot apply a migration twice and a failed one leaves nothing behind. Append to a backend's
    list to change the schema; never edit a migration that has shipped. `table` records what was
    applied: another store sharing the database (conversation history) passes its own.
    """
    execute(f"CREATE TABLE IF NOT EXISTS {table} (name TEXT PRIMARY KEY, applied_at {real} NOT NULL)", ())
    applied = {row[0] for row in execute(f"SELECT name FROM {table}", ())}
    done: list[str] = []
    for name, sql in migrations:
        if name in applied:
            continue
        for statement in sql:
            execute(statement, ())
        execute(f"INSERT INTO {table} (name, applied_at) VALUES ({param}, {param})", (name, time.time()))
        done.append(name)
    return done


def check_k(k: int) -> None:
    if k < 0:
        raise ValueError("k must be >= 0")


def check_max_entries(max_entries: int) -> None:
    if max_entries < 0:
        raise ValueError("max_entries must be >= 0")
