"""Response-cache results per feature, from the ledger: hit rates, savings, verified precision.

From the ledger rather than a replica's memory, so the numbers cover every replica. Verification
calls (`cache_status = "verify"`) carry `cache_verified`: whether the provider's fresh answer agreed
with the cached one; their share is the feature's precision estimate, with its 95% Wilson interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from faregate.cache.precision import wilson_lower, wilson_upper
from faregate.ledger.events import nanos_to_usd
from faregate.ledger.migrations import Dialect

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
STATUSES = ("hit", "semantic-hit", "miss", "bypass", "verify")


def response_cache_report(run: Run, dialect: Dialect, since: float | None = None) -> list[dict[str, Any]]:
    """One entry per feature that used the caches, most requests first."""
    where = "WHERE cache_status IS NOT NULL"
    params: list[Any] = []
    if since is not None:
        where += f" AND ts >= {dialect.param}"
        params.append(since)
    rows = run(
        "SELECT feature, cache_status, COUNT(*), SUM(baseline_cost_nusd - cost_nusd), "
        "SUM(CASE WHEN cache_verified THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN cache_verified IS NULL THEN 0 ELSE 1 END) "
        f"FROM events {where} GROUP BY feature, cache_status",
        params,
    )
    features: dict[str, dict[str, Any]] = {}
    for feature, status, count, saved, agreed, verified in rows:
        entry = features.setdefault(feature, _empty(feature))
        if status in STATUSES:
            entry["requests"][status] = int(count)
        if status in ("hit", "semantic-hit"):
            entry["saving_usd"] += nanos_to_usd(int(saved or 0))
        if status == "verify":
            entry["verification"]["verified"] += int(verified or 0)
            entry["verification"]["agreed"] += int(agreed or 0)
    report = [_finish(entry) for entry in features.values()]
    report.sort(key=lambda e: (-sum(e["requests"].values()), e["feature"]))
    return report


def _empty(feature: str) -> dict[str, Any]:
    return {
        "feature": feature,
        "requests": dict.fromkeys(STATUSES, 0),
        "saving_usd": nanos_to_usd(0),
        "verification": {"verified": 0, "agreed": 0},
    }


def _finish(entry: dict[str, Any]) -> dict[str, Any]:
    requests = entry["requests"]
    served = requests["hit"] + requests["semantic-hit"] + requests["miss"]
    entry["hit_rate"] = (requests["hit"] + requests["semantic-hit"]) / served if served else 0.0
    verification = entry["verification"]
    n, agreed = verification["verified"], verification["agreed"]
    verification["precision"] = agreed / n if n else None
    verification["lower_bound_95"] = wilson_lower(agreed, n) if n else None
    verification["upper_bound_95"] = wilson_upper(agreed, n) if n else None
    return entry
