"""Budgets: spending limits per key, team or feature, reserved before a call and settled after."""

from faregate.budgets.store import (
    BudgetStore,
    PeriodUsage,
    Refusal,
    Reservation,
    budget_id,
    budget_label,
    key_id,
    open_budget_store,
    period_bounds,
    period_start,
)

__all__ = [
    "BudgetStore",
    "PeriodUsage",
    "Refusal",
    "Reservation",
    "budget_id",
    "budget_label",
    "key_id",
    "open_budget_store",
    "period_bounds",
    "period_start",
]
