"""The small surface every ledger backend offers, and the one place a database URL is read.

Keeping the protocol this narrow is what lets `database: postgresql://...` change nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from faregate.database_url import sqlite_path
from faregate.ledger.events import CostEvent

DEFAULT_FALLBACK = Path(".faregate") / "ledger-fallback.jsonl"


class InvalidEventError(ValueError):
    """The database refused the events themselves (a NUL byte, an out-of-range integer).

    Retrying cannot help, unlike a lost connection; the writer sets such events aside instead of
    letting one bad event hold back every event behind it.
    """


@runtime_checkable
class LedgerStore(Protocol):
    @property
    def fallback_path(self) -> Path:
        """Where a writer dumps events it could not store, so that none are lost silently."""
        ...

    def write_batch(self, events: Sequence[CostEvent]) -> None:
        """Store all events in one transaction; request ids already present are skipped."""
        ...

    def spend(self, by: Sequence[str], since: float | None = None) -> list[dict[str, Any]]:
        """Requests, cost (Decimal) and token sums grouped by `by`, most expensive first."""
        ...

    def events(self, since: float | None = None, limit: int | None = None) -> list[CostEvent]:
        """Events with `ts >= since`, oldest first."""
        ...

    def prompt_cache(self, since: float | None = None) -> list[dict[str, Any]]:
        """Prompt-cache health per feature (`faregate.ledger.prompt_cache.prompt_cache_report`)."""
        ...

    def response_cache(self, since: float | None = None) -> list[dict[str, Any]]:
        """Response-cache hit rates, savings and verified precision per feature."""
        ...

    def history(self, since: float | None = None) -> list[dict[str, Any]]:
        """History-policy savings and output-cap cuts per feature (`faregate.ledger.history`)."""
        ...

    def routing(self, since: float | None = None) -> list[dict[str, Any]]:
        """Tier mix, fallbacks, shadow-check error estimate and feedback per feature."""
        ...

    def shadow_checks(self, since: float | None = None) -> list[dict[str, Any]]:
        """Compared shadow calls beside the requests they checked (`faregate.ledger.routing`)."""
        ...

    def record_feedback(self, request_id: str, rating: float, ts: float) -> None:
        """Store a user's rating of a request's answer (the latest rating of a request wins)."""

    # The dashboard's numbers, from the hourly rollups (`faregate.ledger.rollups`); times are unix
    # seconds, `until` exclusive, the range widened to whole hours; `bucket` is "hour" or "day".
    def overview(self, since: float, until: float, bucket: str | None = None) -> dict[str, Any]:
        """Requests, cost, baseline and savings per bucket and in total; cache and tier mixes."""
        ...

    def attribution(
        self, by: str, since: float, until: float, filters: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Spend by one dimension (or `user`) within drill-down filters, and the top keys' series."""
        ...

    def unit_economics(self, since: float, until: float, bucket: str | None = None) -> dict[str, Any]:
        """Per feature and bucket: cost, completions, cost per completion, DAU, cost per DAU."""
        ...

    def templates(
        self, since: float, until: float, feature: str | None = None, threshold: float = 0.10
    ) -> dict[str, Any]:
        """Per feature, each template's cost, tokens and quality, and the regressions found."""
        ...

    def anatomy(self, since: float, until: float) -> dict[str, Any]:
        """Input tokens by prompt component per feature."""
        ...

    def record_task(self, task_id: str, feature: str, outcome: str, score: float | None, ts: float) -> None:
        """Store a task's outcome, "success" or "failure" (the latest report of a task wins)."""

    def rebuild_rollups(self) -> None:
        """Recompute the rollups from the events table."""

    def count(self) -> int: ...

    def close(self) -> None: ...


def open_store(url: str) -> LedgerStore:
    """Open (and migrate) the store a config's `database` value names.

    Accepted: `sqlite:///relative.db`, `sqlite:////absolute.db`, a bare file path, and
    `postgresql://...` or `postgres://...`.
    """
    # Backends are imported on demand so an embedded install never loads libpq.
    path = sqlite_path(url, "ledger")
    if path is not None:
        from faregate.ledger.sqlite import SqliteStore

        return SqliteStore(path)
    from faregate.ledger.postgres import PostgresStore

    return PostgresStore(url)
