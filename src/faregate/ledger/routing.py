"""Routing per feature, from the ledger: the tier mix, fallbacks, shadow checks and user feedback.

The routing-error estimate comes from shadow calls: a sampled share of requests routed below the
frontier is also sent to the frontier model, and the share whose answers disagree estimates how
often routing down loses quality (with a 95% Wilson upper bound, since samples are few). User
ratings (`POST /faregate/v1/feedback`) are joined to the requests they rate, per tier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from faregate.cache.precision import wilson_lower
from faregate.ledger.migrations import Dialect

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def routing_report(run: Run, dialect: Dialect, since: float | None = None) -> list[dict[str, Any]]:
    """One entry per feature with routed requests, most requests first.

    Tier counts, fallbacks and shadow checks come from the hourly rollups (`since` floored to its
    hour); ratings from the `feedback` table joined to the events they rate.
    """
    where, params = "", []
    if since is not None:
        where, params = f" WHERE hour >= {dialect.param}", [int(since // 3600) * 3600]
    features: dict[str, dict[str, Any]] = {}
    for feature, small, medium, frontier, fallbacks, compared, agreed in run(
        "SELECT feature, SUM(tier_small), SUM(tier_medium), SUM(tier_frontier), SUM(route_fallbacks), "
        f"SUM(shadow_compared), SUM(shadow_agreed) FROM rollup_hourly{where} GROUP BY feature",
        params,
    ):
        counts = {"small": int(small or 0), "medium": int(medium or 0), "frontier": int(frontier or 0)}
        if not any(counts.values()) and not compared:
            continue
        entry = features.setdefault(feature, _empty(feature))
        entry["tiers"] = {tier: {"requests": n} for tier, n in counts.items() if n}
        entry["fallbacks"] = int(fallbacks or 0)
        entry["shadow"] = {"compared": int(compared or 0), "agreed": int(agreed or 0)}
    rated, rated_params = "", []
    if since is not None:
        rated, rated_params = f" AND e.ts >= {dialect.param}", [since]
    # From the (small) feedback table to the events it rates, by primary key: never a scan of events
    # (CROSS JOIN fixes that order in SQLite, which would otherwise start from events by `ts`).
    for feature, tier, count, mean in run(
        "SELECT e.feature, e.tier, COUNT(*), AVG(f.rating) FROM feedback f CROSS JOIN events e "
        f"WHERE e.request_id = f.request_id AND e.tier IS NOT NULL{rated} GROUP BY e.feature, e.tier",
        rated_params,
    ):
        entry = features.setdefault(feature, _empty(feature))
        entry["feedback"][tier] = {"ratings": int(count), "mean_rating": _float(mean)}
    report = [_finish(entry) for entry in features.values()]
    report.sort(key=lambda e: (-e["requests"], e["feature"]))
    return report


def _empty(feature: str) -> dict[str, Any]:
    return {
        "feature": feature,
        "tiers": {},
        "fallbacks": 0,
        "shadow": {"compared": 0, "agreed": 0},
        "feedback": {},
    }


def _finish(entry: dict[str, Any]) -> dict[str, Any]:
    requests = sum(t["requests"] for t in entry["tiers"].values())
    entry["requests"] = requests
    frontier = entry["tiers"].get("frontier", {}).get("requests", 0)
    entry["frontier_share"] = frontier / requests if requests else None
    shadow = entry["shadow"]
    n, agreed = shadow["compared"], shadow["agreed"]
    shadow["error_rate"] = 1 - agreed / n if n else None
    shadow["error_upper_95"] = 1 - wilson_lower(agreed, n) if n else None
    return entry


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


SHADOW_CHECK_FIELDS = (
    "request_id",
    "feature",
    "protocol",
    "prompt_text",
    "model",
    "tier",
    "cost_nusd",
    "frontier_model",
    "frontier_cost_nusd",
    "agreed",
)


def shadow_checks(run: Run, dialect: Dialect, since: float | None = None) -> list[dict[str, Any]]:
    """Each compared shadow call beside the routed request it checked, oldest first.

    The raw material of `faregate router export`: the routed request's feature, prompt (stored only
    with `privacy.store_prompts`), model and cost, the frontier's model and cost, and whether the
    two answers agreed. A scan of events (only the export, an offline command, runs it).
    """
    where, params = "", []
    if since is not None:
        where, params = f" AND s.ts >= {dialect.param}", [since]
    rows = run(
        "SELECT r.request_id, r.feature, r.protocol, r.prompt_text, r.model_used, r.tier, r.cost_nusd, "
        "s.model_used, s.cost_nusd, s.route_agreed FROM events s JOIN events r "
        "ON r.request_id = s.route_shadow_of "
        f"WHERE s.route_shadow_of IS NOT NULL AND s.route_agreed IS NOT NULL{where} ORDER BY s.ts",
        params,
    )
    return [dict(zip(SHADOW_CHECK_FIELDS, row, strict=True)) for row in rows]
