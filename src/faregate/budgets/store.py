"""Budget usage per (budget, period): what each budget has spent and what requests in flight hold.

Why reservations: checking `spent < limit` before a call and adding the cost after lets N
concurrent requests all pass a check made against the same stale total. Instead a request's
estimated cost is added to `reserved_nusd` in the same transaction that checks
`spent + reserved + estimate <= limit`, for every budget the request falls under (all or nothing),
and settling swaps the reservation for the actual cost. On PostgreSQL the check is a conditional
`UPDATE ... RETURNING`: a concurrent updater waits for the row lock and re-checks the condition
against the committed row, so replicas sharing the database cannot overspend either. Rows are
always locked in (budget, period start) order, so two requests never deadlock.

Tables (their own migrations table, so they can share the ledger's database):
- `budget_usage`: (budget, period_start) -> limit, spent, reserved, and the highest alert threshold
  already sent this period (so an alert goes out once per period, across restarts and replicas).
- `budget_reservations`: one row per reservation in flight, so a reservation whose replica died
  before settling is given back by `reclaim` once it expires, instead of holding budget until the
  period ends. Settling a reservation that was reclaimed still counts its actual cost.

The SQL is written once here (`SqlBudgetStore`); a backend supplies transactions and placeholders.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from faregate.config import BudgetSettings
from faregate.database_url import sqlite_path
from faregate.ledger.events import nanos_to_usd, usd_to_nanos

MIGRATIONS_TABLE = "_faregate_budget_migrations"
DEFAULT_RESERVATION_TTL_S = 2 * 3600.0  # longer than any call or stream is allowed to last

Execute = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def key_id(credential: str) -> str:
    """A client key's id for `scope: key` budgets: 16 hex digits of its BLAKE2b hash.

    `credential` is the key itself (the `x-api-key` value, or the token after `Bearer `), so a
    config can name a key without holding it.
    """
    return hashlib.blake2b(credential.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def budget_id(budget: BudgetSettings) -> str:
    """`scope:name:period`: a team may have a daily and a monthly budget, each with its own row."""
    return f"{budget.scope}:{budget.name}:{budget.period}"


def budget_label(budget: BudgetSettings) -> str:
    """How messages name a budget: `team:search (month)`."""
    return f"{budget.scope}:{budget.name} ({budget.period})"


def index_budgets(budgets: Iterable[BudgetSettings]) -> dict[str, BudgetSettings]:
    indexed: dict[str, BudgetSettings] = {}
    for budget in budgets:
        key = budget_id(budget)
        if key in indexed:
            raise ValueError(f"budgets: {budget_label(budget)} is configured twice")
        indexed[key] = budget
    return indexed


def period_bounds(period: str, now: float) -> tuple[datetime, datetime]:
    """The UTC day or calendar month holding `now`: [start, end)."""
    t = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = datetime(t.year, t.month, t.day, tzinfo=UTC)
        return start, start + timedelta(days=1)
    start = datetime(t.year, t.month, 1, tzinfo=UTC)
    return start, datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)


def period_start(period: str, now: float) -> str:
    return period_bounds(period, now)[0].date().isoformat()


@dataclass(frozen=True, slots=True)
class Reservation:
    """Budget held for one request: `amount_nusd` in each of `budgets` ((budget id, period start))."""

    id: str
    budgets: tuple[tuple[str, str], ...]  # sorted: the lock order
    amount_nusd: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why `reserve` said no: the first budget (in lock order) that could not hold the amount."""

    budget: str
    period_start: str
    limit_nusd: int
    spent_nusd: int
    reserved_nusd: int
    amount_nusd: int

    @property
    def exhausted(self) -> bool:
        """Spent in full: waiting for requests in flight cannot help, only the next period."""
        return self.spent_nusd >= self.limit_nusd


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """One budget's row after a settle: what the alert check needs."""

    budget: str
    period_start: str
    limit_nusd: int
    spent_nusd: int
    reserved_nusd: int
    alerted_share: float  # the highest alert threshold already sent this period

    @property
    def share(self) -> float:
        return self.spent_nusd / self.limit_nusd if self.limit_nusd else 0.0


class BudgetStore(Protocol):
    budgets: dict[str, BudgetSettings]

    def reserve(self, budget_ids: Iterable[str], amount_nusd: int, now: float) -> Reservation | Refusal: ...

    def settle(self, reservation: Reservation, actual_nusd: int) -> list[PeriodUsage]: ...

    def release(self, reservation: Reservation) -> None: ...

    def claim_alert(self, budget: str, period_start: str, threshold: float) -> float | None: ...

    def reclaim(self, now: float) -> int: ...

    def usage(self, now: float | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def migrations(real: str) -> list[tuple[str, list[str]]]:
    return [
        (
            "m001_create_budgets",
            [
                f"""
                CREATE TABLE budget_usage (
                    budget TEXT NOT NULL,
                    period_start TEXT NOT NULL,
                    limit_nusd BIGINT NOT NULL,
                    spent_nusd BIGINT NOT NULL DEFAULT 0,
                    reserved_nusd BIGINT NOT NULL DEFAULT 0,
                    alerted_share {real} NOT NULL DEFAULT 0,
                    updated_at {real} NOT NULL,
                    PRIMARY KEY (budget, period_start)
                )
                """,
                f"""
                CREATE TABLE budget_reservations (
                    id TEXT PRIMARY KEY,
                    budgets TEXT NOT NULL,
                    amount_nusd BIGINT NOT NULL,
                    expires_at {real} NOT NULL
                )
                """,
                "CREATE INDEX budget_reservations_expires ON budget_reservations (expires_at)",
            ],
        )
    ]


class _Statements:
    def __init__(self, p: str, for_update: str) -> None:
        key = f"budget = {p} AND period_start = {p}"
        self.hold = (
            f"UPDATE budget_usage SET reserved_nusd = reserved_nusd + {p}, limit_nusd = {p}, "
            f"updated_at = {p} "
            f"WHERE {key} AND spent_nusd + reserved_nusd + {p} <= {p} AND spent_nusd + reserved_nusd < {p} "
            "RETURNING spent_nusd"
        )
        self.create = (
            "INSERT INTO budget_usage (budget, period_start, limit_nusd, updated_at) "
            f"VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (budget, period_start) DO NOTHING"
        )
        self.totals = f"SELECT spent_nusd, reserved_nusd FROM budget_usage WHERE {key}"
        self.insert_reservation = (
            "INSERT INTO budget_reservations (id, budgets, amount_nusd, expires_at) "
            f"VALUES ({p}, {p}, {p}, {p})"
        )
        self.delete_reservation = f"DELETE FROM budget_reservations WHERE id = {p} RETURNING amount_nusd"
        self.settle = (
            f"UPDATE budget_usage SET reserved_nusd = reserved_nusd - {p}, spent_nusd = spent_nusd + {p}, "
            f"updated_at = {p} WHERE {key} "
            "RETURNING limit_nusd, spent_nusd, reserved_nusd, alerted_share"
        )
        self.expired = (
            f"DELETE FROM budget_reservations WHERE expires_at < {p} RETURNING budgets, amount_nusd"
        )
        self.unreserve = (
            f"UPDATE budget_usage SET reserved_nusd = reserved_nusd - {p}, updated_at = {p} WHERE {key}"
        )
        self.alerted = f"SELECT alerted_share FROM budget_usage WHERE {key}{for_update}"
        self.set_alerted = f"UPDATE budget_usage SET alerted_share = {p} WHERE {key}"


class _Refused(Exception):
    """Raised inside the reserve transaction to roll back the budgets already held."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.budget)
        self.refusal = refusal


class SqlBudgetStore:
    """The budget logic over SQL both engines accept; subclasses supply `_transaction` and `_read`."""

    param = "?"
    for_update = ""  # " FOR UPDATE" where the engine locks rows (SQLite's IMMEDIATE locks the file)

    def __init__(
        self, budgets: Iterable[BudgetSettings], *, reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S
    ) -> None:
        self.budgets = index_budgets(budgets)
        self.reservation_ttl_s = reservation_ttl_s
        self._sql = _Statements(self.param, self.for_update)

    def _transaction(self) -> AbstractContextManager[Execute]:
        """One write transaction; an exception inside rolls it back."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Execute]:
        raise NotImplementedError

    def reserve(self, budget_ids: Iterable[str], amount_nusd: int, now: float) -> Reservation | Refusal:
        """Hold `amount_nusd` in every budget named, or in none; an exhausted budget refuses even 0."""
        if amount_nusd < 0:
            raise ValueError("a reservation cannot be negative")
        keys = sorted({(b, period_start(self.budgets[b].period, now)) for b in budget_ids})
        reservation = Reservation(secrets.token_hex(16), tuple(keys), amount_nusd)
        try:
            with self._transaction() as execute:
                for budget, start in keys:
                    self._hold(execute, budget, start, amount_nusd, now)
                if amount_nusd and keys:
                    expires = now + self.reservation_ttl_s
                    params = (reservation.id, json.dumps(keys), amount_nusd, expires)
                    execute(self._sql.insert_reservation, params)
        except _Refused as refused:
            return refused.refusal
        return reservation

    def _hold(self, execute: Execute, budget: str, start: str, amount: int, now: float) -> None:
        limit = usd_to_nanos(self.budgets[budget].limit_usd)
        params = (amount, limit, now, budget, start, amount, limit, limit)
        if execute(self._sql.hold, params):
            return
        rows = execute(self._sql.totals, (budget, start))
        if not rows:  # the period's first request: create its row, then hold as usual
            execute(self._sql.create, (budget, start, limit, now))
            if execute(self._sql.hold, params):
                return
            rows = execute(self._sql.totals, (budget, start))
        spent, reserved = rows[0]
        raise _Refused(Refusal(budget, start, limit, int(spent), int(reserved), amount))

    def settle(self, reservation: Reservation, actual_nusd: int) -> list[PeriodUsage]:
        """Replace the reservation by the actual cost (above the estimate too); rows for alert checks."""
        now = time.time()
        with self._transaction() as execute:
            held = 0
            if reservation.amount_nusd:
                # Gone when `reclaim` already gave it back: then only the cost is added.
                rows = execute(self._sql.delete_reservation, (reservation.id,))
                held = int(rows[0][0]) if rows else 0
            usage: list[PeriodUsage] = []
            for budget, start in reservation.budgets:
                for row in execute(self._sql.settle, (held, actual_nusd, now, budget, start)):
                    limit, spent, reserved, alerted = row
                    usage.append(
                        PeriodUsage(budget, start, int(limit), int(spent), int(reserved), float(alerted))
                    )
        return usage

    def release(self, reservation: Reservation) -> None:
        """Give the reservation back: the request failed before it could cost anything."""
        self.settle(reservation, 0)

    def claim_alert(self, budget: str, period_start: str, threshold: float) -> float | None:
        """Record that `threshold` was alerted this period; the previous level if this call raised it,
        None if it was already at or above (another replica, or before a restart, sent it)."""
        with self._transaction() as execute:
            rows = execute(self._sql.alerted, (budget, period_start))
            if not rows or float(rows[0][0]) >= threshold:
                return None
            execute(self._sql.set_alerted, (threshold, budget, period_start))
        return float(rows[0][0])

    def reclaim(self, now: float) -> int:
        """Give back reservations that expired unsettled (their replica died); how many there were."""
        with self._transaction() as execute:
            rows = execute(self._sql.expired, (now,))
            totals: dict[tuple[str, str], int] = {}
            for budgets, amount in rows:
                for budget, start in json.loads(budgets):
                    totals[(budget, start)] = totals.get((budget, start), 0) + int(amount)
            for (budget, start), amount in sorted(totals.items()):
                execute(self._sql.unreserve, (amount, now, budget, start))
        return len(rows)

    def usage(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every configured budget in its current period, for the dashboard and the admin API."""
        now = time.time() if now is None else now
        out: list[dict[str, Any]] = []
        with self._read() as execute:
            for key, budget in self.budgets.items():
                start = period_start(budget.period, now)
                rows = execute(self._sql.totals, (key, start))
                spent, reserved = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
                limit = usd_to_nanos(budget.limit_usd)
                out.append(
                    {
                        "budget": key,
                        "scope": budget.scope,
                        "name": budget.name,
                        "period": budget.period,
                        "period_start": start,
                        "limit_usd": budget.limit_usd,
                        "spent_usd": nanos_to_usd(spent),
                        "reserved_usd": nanos_to_usd(reserved),
                        "share": spent / limit,
                    }
                )
        return out


def open_budget_store(
    url: str, budgets: Iterable[BudgetSettings], *, reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S
) -> BudgetStore:
    """Open (and migrate) the budget store in the database a config's `database` value names.

    The same URL forms as `faregate.ledger.open_store`: `sqlite:///relative.db`,
    `sqlite:////absolute.db`, a bare path, `postgresql://...` or `postgres://...`.
    """
    # Backends are imported on demand so an embedded install never loads libpq.
    path = sqlite_path(url, "budget")
    if path is not None:
        from faregate.budgets.sqlite_store import SqliteBudgetStore

        return SqliteBudgetStore(path, budgets, reservation_ttl_s=reservation_ttl_s)
    from faregate.budgets.postgres_store import PostgresBudgetStore

    return PostgresBudgetStore(url, budgets, reservation_ttl_s=reservation_ttl_s)
