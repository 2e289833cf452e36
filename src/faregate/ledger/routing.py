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
    """One entry per feature with routed requests, most requests first."""
    where, params = "", []
    if since is not None:
        where, params = f" AND ts >= {dialect.param}", [since]
    features: dict[str, dict[str, Any]] = {}
    for feature, tier, count, fallbacks, confidence in run(
        "SELECT feature, tier, COUNT(*), SUM(CASE WHEN route_fallback THEN 1 ELSE 0 END), "
        "AVG(route_confidence) FROM events WHERE tier IS NOT NULL AND route_shadow_of IS NULL"
        f"{where} GROUP BY feature, tier",
        params,
    ):
        entry = features.setdefault(feature, _empty(feature))
        entry["tiers"][tier] = {"requests": int(count), "mean_confidence": _float(confidence)}
        entry["fallbacks"] += int(fallbacks or 0)
    for feature, compared, agreed in run(
        "SELECT feature, COUNT(*), SUM(CASE WHEN route_agreed THEN 1 ELSE 0 END) FROM events "
        f"WHERE route_shadow_of IS NOT NULL AND route_agreed IS NOT NULL{where} GROUP BY feature",
        params,
    ):
        shadow = features.setdefault(feature, _empty(feature))["shadow"]
        shadow["compared"], shadow["agreed"] = int(compared), int(agreed or 0)
    rated = "" if since is None else f" AND e.ts >= {dialect.param}"
    for feature, tier, count, mean in run(
        "SELECT e.feature, e.tier, COUNT(*), AVG(f.rating) FROM feedback f "
        "JOIN events e ON e.request_id = f.request_id "
        f"WHERE e.tier IS NOT NULL{rated} GROUP BY e.feature, e.tier",
        params,
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
