"""The shared ledger for N gateway replicas: PostgreSQL through psycopg 3.

The calls are synchronous; the writer runs them in a worker thread, off the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from faregate.ledger import queries, rollup_queries, rollups
from faregate.ledger.events import CostEvent
from faregate.ledger.history import history_report
from faregate.ledger.migrations import POSTGRES, migrate
from faregate.ledger.prompt_cache import prompt_cache_report
from faregate.ledger.response_cache import response_cache_report
from faregate.ledger.routing import routing_report, shadow_checks
from faregate.ledger.store import DEFAULT_FALLBACK, InvalidEventError
from faregate.postgres_pool import fetch_all, open_pool

_STATEMENTS = queries.statements(POSTGRES)
_ROLLUPS = rollups.statements(POSTGRES)
_INSERT_RETURNING = _STATEMENTS.insert + " RETURNING request_id"
# Any constant works: it only has to be the same for every replica running migrations.
_MIGRATION_LOCK = 0x46415245  # "FARE"


class PostgresStore:
    """A small connection pool, so dashboard reads do not queue behind batch writes.

    The pool replaces connections that broke (a server restart, a failover), so after an outage
    the writer's retries succeed without anyone reopening the store.
    """

    def __init__(self, url: str, *, max_connections: int = 4, connect_timeout: float = 10.0) -> None:
        self._where = _describe(url)
        # Migrate over a plain connection first: if the server is unreachable or refuses us, the
        # caller gets libpq's own reason, where a pool would only report a timeout.
        with psycopg.connect(url, connect_timeout=max(1, round(connect_timeout))) as conn:
            # Replicas starting together would race to create the same tables; the
            # transaction-scoped advisory lock makes the second one wait, then find them.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            migrate(lambda sql, params: fetch_all(conn, sql, params), POSTGRES)
        self._pool = open_pool(
            url, name="faregate-ledger", max_connections=max_connections, connect_timeout=connect_timeout
        )

    def __repr__(self) -> str:
        return f"PostgresStore({self._where})"

    @property
    def fallback_path(self) -> Path:
        return DEFAULT_FALLBACK

    def write_batch(self, events: Sequence[CostEvent]) -> None:
        if not events:
            return
        params = [queries.event_params(event) for event in events]
        try:
            # Leaving the block commits, or rolls back if executemany raised: all or nothing.
            with self._pool.connection() as conn, conn.cursor() as cur:
                # RETURNING names the rows this insert stored (not those already present, even
                # ones another replica stored a moment ago): only those are rolled up.
                cur.executemany(_INSERT_RETURNING, params, returning=True)
                stored_ids = _returned(cur)
                stored = [e for e in rollups.unique_events(events) if e.request_id in stored_ids]
                if stored:
                    batch = rollups.aggregate(stored)
                    cur.executemany(_ROLLUPS.hourly, batch.hourly)
                    keys = [row[:3] for row in batch.users]
                    cur.executemany(_ROLLUPS.user_key + " RETURNING day, feature", keys, returning=True)
                    new_users = [(day, feature, None) for day, feature in _returned_rows(cur)]
                    cur.executemany(_ROLLUPS.users, batch.users)
                    increments = rollups.dau_increments(new_users)
                    if increments:
                        cur.executemany(_ROLLUPS.dau, increments)
                    cur.executemany(_ROLLUPS.prefix, batch.prefixes)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            raise InvalidEventError(f"PostgreSQL refused the events: {_first_line(exc)}") from exc
        except psycopg.ProgrammingError as exc:
            if exc.sqlstate is None:  # raised client-side: a value psycopg cannot adapt
                raise InvalidEventError(f"PostgreSQL refused the events: {_first_line(exc)}") from exc
            raise

    def rebuild_rollups(self) -> None:
        """Recompute every rollup from the events table (the migration does this once by itself)."""
        with self._pool.connection() as conn:
            for statement in rollups.rebuild_statements(POSTGRES):
                conn.execute(statement)

    def overview(self, since: float, until: float, bucket: str | None = None) -> dict[str, Any]:
        with self._pool.connection() as conn:
            return rollup_queries.overview(
                partial(fetch_all, conn), POSTGRES, rollup_queries.time_range(since, until, bucket)
            )

    def attribution(
        self, by: str, since: float, until: float, filters: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        r = rollup_queries.time_range(since, until)
        with self._pool.connection() as conn:
            return rollup_queries.attribution(partial(fetch_all, conn), POSTGRES, by, r, dict(filters or {}))

    def unit_economics(self, since: float, until: float, bucket: str | None = None) -> dict[str, Any]:
        r = rollup_queries.time_range(since, until, bucket)
        with self._pool.connection() as conn:
            return rollup_queries.unit_economics(partial(fetch_all, conn), POSTGRES, r)

    def templates(
        self, since: float, until: float, feature: str | None = None, threshold: float = 0.10
    ) -> dict[str, Any]:
        r = rollup_queries.time_range(since, until)
        with self._pool.connection() as conn:
            return rollup_queries.templates(partial(fetch_all, conn), POSTGRES, r, feature, threshold)

    def anatomy(self, since: float, until: float) -> dict[str, Any]:
        with self._pool.connection() as conn:
            return rollup_queries.anatomy(
                partial(fetch_all, conn), POSTGRES, rollup_queries.time_range(since, until)
            )

    def record_task(self, task_id: str, feature: str, outcome: str, score: float | None, ts: float) -> None:
        with self._pool.connection() as conn:
            conn.execute(_ROLLUPS.task, (task_id, feature, outcome, score, ts))

    def spend(self, by: Sequence[str], since: float | None = None) -> list[dict[str, Any]]:
        sql, params = queries.spend_query(POSTGRES, by, since)
        with self._pool.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return queries.spend_rows(by, rows)

    def events(self, since: float | None = None, limit: int | None = None) -> list[CostEvent]:
        sql, params = queries.events_query(POSTGRES, since, limit)
        with self._pool.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [queries.row_to_event(row) for row in rows]

    def prompt_cache(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            return prompt_cache_report(partial(fetch_all, conn), POSTGRES, since)

    def response_cache(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            return response_cache_report(partial(fetch_all, conn), POSTGRES, since)

    def history(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            return history_report(partial(fetch_all, conn), POSTGRES, since)

    def routing(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            return routing_report(partial(fetch_all, conn), POSTGRES, since)

    def shadow_checks(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            return shadow_checks(partial(fetch_all, conn), POSTGRES, since)

    def record_feedback(self, request_id: str, rating: float, ts: float) -> None:
        with self._pool.connection() as conn:
            conn.execute(_STATEMENTS.feedback, (request_id, ts, rating))

    def count(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(_STATEMENTS.count).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self._pool.close()


def _returned_rows(cur: psycopg.Cursor[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Every row an `executemany(..., returning=True)` returned, over all its result sets."""
    rows: list[tuple[Any, ...]] = []
    while True:
        if cur.description is not None:
            rows.extend(cur.fetchall())
        if not cur.nextset():
            return rows


def _returned(cur: psycopg.Cursor[tuple[Any, ...]]) -> set[str]:
    return {row[0] for row in _returned_rows(cur)}


def _describe(url: str) -> str:
    """Database and host for logs and reprs; never the password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable url>"
    return f"{info.get('dbname') or '?'} on {info.get('host') or 'localhost'}"


def _first_line(exc: BaseException) -> str:
    """PostgreSQL's DETAIL lines quote the failing row; logs get the message without them."""
    return str(exc).partition("\n")[0]
