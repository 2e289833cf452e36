"""The embedded ledger: one SQLite file in WAL mode, the default under `./.faregate/`."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from faregate.ledger import queries, rollup_queries, rollups
from faregate.ledger.events import CostEvent
from faregate.ledger.history import history_report
from faregate.ledger.migrations import SQLITE, migrate
from faregate.ledger.prompt_cache import prompt_cache_report
from faregate.ledger.response_cache import response_cache_report
from faregate.ledger.routing import routing_report, shadow_checks
from faregate.ledger.store import DEFAULT_FALLBACK, InvalidEventError
from faregate.sqlite_transaction import connect, immediate_transaction

_STATEMENTS = queries.statements(SQLITE)
_ROLLUPS = rollups.statements(SQLITE)


class SqliteStore:
    """A single connection shared by the writer thread and readers, serialised by a lock.

    WAL lets other processes (the CLI, a dashboard) read while the gateway writes, and
    `synchronous=NORMAL` makes a commit cost no fsync: a crash may lose the last commits
    but never corrupts the file, which is the right trade for a ledger flushed every 50 ms.
    """

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        in_memory = str(path) == ":memory:"
        if not in_memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fallback = (
            DEFAULT_FALLBACK if in_memory else self.path.with_name(f"{self.path.stem}-fallback.jsonl")
        )
        self._lock = threading.Lock()
        self._conn = connect(self.path, busy_timeout_ms)
        try:
            with self._transaction():
                migrate(self._execute, SQLITE)
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @property
    def fallback_path(self) -> Path:
        return self._fallback

    def write_batch(self, events: Sequence[CostEvent]) -> None:
        if not events:
            return
        try:
            with self._lock, self._transaction():
                self._insert_and_roll_up(events)
        except (sqlite3.IntegrityError, sqlite3.DataError, OverflowError) as exc:
            raise InvalidEventError(f"SQLite refused the events: {exc}") from exc
        except sqlite3.ProgrammingError as exc:
            if str(exc).startswith("Error binding parameter"):
                raise InvalidEventError(f"SQLite refused the events: {exc}") from exc
            raise

    def _insert_and_roll_up(self, events: Sequence[CostEvent]) -> None:
        """Insert the events and add those actually inserted (rowcount 1: not already present) to
        the rollups, in the caller's transaction."""
        execute = self._conn.execute
        stored = [e for e in events if execute(_STATEMENTS.insert, queries.event_params(e)).rowcount == 1]
        if not stored:
            return
        batch = rollups.aggregate(stored)
        self._conn.executemany(_ROLLUPS.hourly, batch.hourly)
        new_users = [row[:3] for row in batch.users if execute(_ROLLUPS.user_key, row[:3]).rowcount == 1]
        self._conn.executemany(_ROLLUPS.users, batch.users)
        self._conn.executemany(_ROLLUPS.dau, rollups.dau_increments(new_users))
        self._conn.executemany(_ROLLUPS.prefix, batch.prefixes)

    def rebuild_rollups(self) -> None:
        """Recompute every rollup from the events table (the migration does this once by itself)."""
        with self._lock, self._transaction():
            for statement in rollups.rebuild_statements(SQLITE):
                self._conn.execute(statement)

    def overview(self, since: float, until: float, bucket: str | None = None) -> dict[str, Any]:
        with self._lock:
            return rollup_queries.overview(
                self._execute, SQLITE, rollup_queries.time_range(since, until, bucket)
            )

    def attribution(
        self, by: str, since: float, until: float, filters: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        r = rollup_queries.time_range(since, until)
        with self._lock:
            return rollup_queries.attribution(self._execute, SQLITE, by, r, dict(filters or {}))

    def unit_economics(self, since: float, until: float, bucket: str | None = None) -> dict[str, Any]:
        with self._lock:
            return rollup_queries.unit_economics(
                self._execute, SQLITE, rollup_queries.time_range(since, until, bucket)
            )

    def templates(
        self, since: float, until: float, feature: str | None = None, threshold: float = 0.10
    ) -> dict[str, Any]:
        r = rollup_queries.time_range(since, until)
        with self._lock:
            return rollup_queries.templates(self._execute, SQLITE, r, feature, threshold)

    def anatomy(self, since: float, until: float) -> dict[str, Any]:
        with self._lock:
            r = rollup_queries.time_range(since, until)
            return rollup_queries.anatomy(self._execute, SQLITE, r)

    def record_task(self, task_id: str, feature: str, outcome: str, score: float | None, ts: float) -> None:
        with self._lock, self._transaction():
            self._conn.execute(_ROLLUPS.task, (task_id, feature, outcome, score, ts))

    def spend(self, by: Sequence[str], since: float | None = None) -> list[dict[str, Any]]:
        sql, params = queries.spend_query(SQLITE, by, since)
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return queries.spend_rows(by, rows)

    def events(self, since: float | None = None, limit: int | None = None) -> list[CostEvent]:
        sql, params = queries.events_query(SQLITE, since, limit)
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [queries.row_to_event(row) for row in rows]

    def prompt_cache(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return prompt_cache_report(self._execute, SQLITE, since)

    def response_cache(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return response_cache_report(self._execute, SQLITE, since)

    def history(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return history_report(self._execute, SQLITE, since)

    def routing(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return routing_report(self._execute, SQLITE, since)

    def shadow_checks(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return shadow_checks(self._execute, SQLITE, since)

    def record_feedback(self, request_id: str, rating: float, ts: float) -> None:
        with self._lock, self._transaction():
            self._conn.execute(_STATEMENTS.feedback, (request_id, ts, rating))

    def count(self) -> int:
        with self._lock:
            (n,) = self._conn.execute(_STATEMENTS.count).fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def _transaction(self) -> AbstractContextManager[None]:
        return immediate_transaction(self._conn)
