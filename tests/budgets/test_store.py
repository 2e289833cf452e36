"""The budget store on both engines: atomic reservations, settling, reclaiming, alert claims.

Every test runs on SQLite and on a real PostgreSQL (a fresh database each), because the guarantee
that matters, no overspend under concurrency, rests on each engine's locking.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from faregate.budgets import (
    BudgetStore,
    Refusal,
    Reservation,
    budget_id,
    key_id,
    open_budget_store,
    period_bounds,
    period_start,
)
from faregate.config import BudgetSettings

TEAM = BudgetSettings(scope="team", name="search", period="month", limit_usd=Decimal("0.000037"))
FEATURE = BudgetSettings(scope="feature", name="chat", period="day", limit_usd=Decimal("0.000010"))
TEAM_ID, FEATURE_ID = budget_id(TEAM), budget_id(FEATURE)
NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC).timestamp()

OpenStore = Callable[..., BudgetStore]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    url: str = request.getfixturevalue("postgres_db_url")
    return url


@pytest.fixture
def open_store(database: str) -> Iterator[OpenStore]:
    opened: list[BudgetStore] = []

    def make(budgets: list[BudgetSettings] | None = None, **kwargs: Any) -> BudgetStore:
        store = open_budget_store(database, budgets or [TEAM, FEATURE], **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def usage_of(store: BudgetStore, budget: str, now: float = NOW) -> dict[str, Any]:
    rows = [r for r in store.usage(now) if r["budget"] == budget]
    assert len(rows) == 1, rows
    row: dict[str, Any] = rows[0]
    return row


def test_reserve_then_settle_replaces_the_estimate_by_the_actual_cost(open_store: OpenStore) -> None:
    store = open_store()
    reservation = store.reserve([TEAM_ID], 3000, NOW)
    assert isinstance(reservation, Reservation)
    row = usage_of(store, TEAM_ID)
    assert (row["spent_usd"], row["reserved_usd"]) == (0, Decimal("0.000003"))
    [after] = store.settle(reservation, 5000)  # above the estimate: counted in full
    assert (after.spent_nusd, after.reserved_nusd, after.limit_nusd) == (5000, 0, 37_000)
    row = usage_of(store, TEAM_ID)
    assert row == {
        "budget": "team:search:month",
        "scope": "team",
        "name": "search",
        "period": "month",
        "period_start": "2025-03-01",
        "limit_usd": Decimal("0.000037"),
        "spent_usd": Decimal("0.000005"),
        "reserved_usd": 0,
        "share": pytest.approx(5 / 37),
    }


def test_a_refusal_names_the_budget_and_holds_nothing_anywhere(open_store: OpenStore) -> None:
    # Locked in id order: the feature's budget is held before the team's refuses, then rolled back.
    tiny = BudgetSettings(scope="team", name="tiny", limit_usd=Decimal("0.000005"))
    store = open_store([TEAM, FEATURE, tiny])
    refusal = store.reserve([budget_id(tiny), FEATURE_ID], 6000, NOW)
    assert refusal == Refusal("team:tiny:month", "2025-03-01", 5000, 0, 0, 6000)
    assert not refusal.exhausted
    assert usage_of(store, FEATURE_ID)["reserved_usd"] == 0
    assert isinstance(store.reserve([TEAM_ID, FEATURE_ID], 6000, NOW), Reservation)
    refusal = store.reserve([TEAM_ID, FEATURE_ID], 6000, NOW)  # the feature's 10_000 cannot hold 12_000
    assert refusal == Refusal(FEATURE_ID, "2025-03-14", 10_000, 0, 6000, 6000)
    assert usage_of(store, TEAM_ID)["reserved_usd"] == Decimal("0.000006")


def test_an_exhausted_budget_refuses_even_an_unpriced_request(open_store: OpenStore) -> None:
    store = open_store()
    free = store.reserve([FEATURE_ID], 0, NOW)  # an unknown price reserves 0
    assert isinstance(free, Reservation)
    store.settle(free, 10_000)  # its actual cost still counts
    refusal = store.reserve([FEATURE_ID], 0, NOW)
    assert isinstance(refusal, Refusal) and refusal.exhausted
    # The next day is a new period.
    assert isinstance(store.reserve([FEATURE_ID], 0, NOW + 86_400), Reservation)


def test_release_gives_the_reservation_back_once(open_store: OpenStore) -> None:
    store = open_store()
    reservation = store.reserve([FEATURE_ID], 10_000, NOW)
    assert isinstance(reservation, Reservation)
    assert isinstance(store.reserve([FEATURE_ID], 1, NOW), Refusal)
    store.release(reservation)
    store.release(reservation)  # a second release finds nothing to give back
    row = usage_of(store, FEATURE_ID)
    assert (row["spent_usd"], row["reserved_usd"]) == (0, 0)


def test_expired_reservations_are_reclaimed_and_a_late_settle_still_counts(open_store: OpenStore) -> None:
    store = open_store(reservation_ttl_s=60)
    stale = store.reserve([TEAM_ID], 20_000, NOW)
    assert isinstance(stale, Reservation)
    assert store.reclaim(NOW + 30) == 0
    assert store.reclaim(NOW + 61) == 1
    assert usage_of(store, TEAM_ID)["reserved_usd"] == 0
    [row] = store.settle(stale, 7000)  # the replica came back after all: cost counted, nothing unheld
    assert (row.spent_nusd, row.reserved_nusd) == (7000, 0)


def test_each_alert_threshold_is_claimed_once_per_period_across_stores(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()  # two replicas, or one before and after a restart
    reservation = first.reserve([TEAM_ID], 1, NOW)
    assert isinstance(reservation, Reservation)
    start = period_start("month", NOW)
    assert first.claim_alert(TEAM_ID, start, 0.8) == 0.0
    assert second.claim_alert(TEAM_ID, start, 0.8) is None
    assert second.claim_alert(TEAM_ID, start, 1.0) == 0.8
    assert first.claim_alert(TEAM_ID, start, 1.0) is None
    assert first.claim_alert(TEAM_ID, "2025-04-01", 0.8) is None  # no row: nothing spent that period


def test_two_stores_racing_from_threads_cannot_overspend(open_store: OpenStore) -> None:
    """Four threads on two stores (two replicas) on one database; the limit holds exactly 37."""
    stores = [open_store(), open_store()]
    granted: list[int] = []
    barrier = threading.Barrier(4)

    def worker(store: BudgetStore) -> None:
        barrier.wait()
        for _ in range(30):
            reservation = store.reserve([TEAM_ID], 1000, NOW)
            if isinstance(reservation, Reservation):
                granted.append(1)
                store.settle(reservation, 1000)

    threads = [threading.Thread(target=worker, args=(stores[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(granted) == 37
    row = usage_of(stores[0], TEAM_ID)
    assert (row["spent_usd"], row["reserved_usd"]) == (Decimal("0.000037"), 0)


def test_reservations_held_concurrently_never_exceed_the_limit(open_store: OpenStore) -> None:
    """Without settling, what the threads hold at once is bounded by the limit (no lost update)."""
    stores = [open_store(), open_store()]
    held: list[Reservation] = []
    barrier = threading.Barrier(2)

    def worker(store: BudgetStore) -> None:
        barrier.wait()
        for _ in range(25):
            outcome = store.reserve([TEAM_ID, FEATURE_ID], 700, NOW)
            if isinstance(outcome, Reservation):
                held.append(outcome)

    threads = [threading.Thread(target=worker, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(held) == 14  # the feature's 10_000 holds 14 x 700
    assert usage_of(stores[1], FEATURE_ID)["reserved_usd"] == Decimal("0.0000098")
    assert usage_of(stores[1], TEAM_ID)["reserved_usd"] == Decimal("0.0000098")


def test_duplicate_budgets_are_refused(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"team:search \(month\) is configured twice"):
        open_budget_store(f"sqlite:///{tmp_path}/x.db", [TEAM, TEAM])


def test_key_id_is_the_first_16_hex_digits_of_blake2b() -> None:
    assert key_id("sk-abc") == hashlib.blake2b(b"sk-abc").hexdigest()[:16]
    assert len(key_id("sk-abc")) == 16 and key_id("sk-abc") != key_id("sk-abd")


def test_periods_are_utc_days_and_calendar_months() -> None:
    late = datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    assert period_bounds("month", late) == (
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert period_bounds("day", late)[1] == datetime(2026, 1, 1, tzinfo=UTC)
    assert period_start("day", late) == "2025-12-31"
