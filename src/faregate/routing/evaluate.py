"""Evaluating a router on routing-outcome rows it was not trained on.

Two tiers: APGR (RouteLLM's area under the performance-gap-recovered curve, from the router's ranking),
CPT(50%) and CPT(80%) (the share of frontier calls needed to recover half and 80% of the gap), quality
and cost at the router's calibrated policy, and the same per category. Three or more tiers: the
cost-quality curve as the policy's bar moves, and ``cost_at_95``: the lowest cost, relative to always
calling the frontier, at which the router keeps 95% of the frontier's quality. A row's category is
passed to the router as the request's feature name, as the gateway does with X-FareGate-Feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from faregate.routing.artifact import Router
from faregate.routing.data import Row, cost_matrix, quality_matrix
from faregate.routing.metrics import apgr, cost_at, cost_quality_curve, cpt, pgr_curve
from faregate.routing.policy import outcome
from faregate.routing.train import Embed, feature_matrix

__all__ = ["evaluate_router", "evaluate_scores"]

F64 = npt.NDArray[np.float64]
_CURVE_POINTS = 41
# A category's APGR divides by its own quality gap: below 2 points it is noise (the report says null).
_MIN_CATEGORY_GAP = 0.02


def evaluate_router(router: Router, rows: Sequence[Row], embed: Embed) -> dict[str, Any]:
    """The report of ``router`` on ``rows`` (see the module docstring); `BadData` for unusable rows."""
    quality = quality_matrix(rows, router.tiers)
    cost = cost_matrix(rows, router.tiers)
    emb = np.asarray(embed([r.prompt for r in rows]), dtype=np.float32)
    cats = [r.category for r in rows]
    comps, nearest = router.classifier.components(emb, feature_matrix(rows), cats)
    gap = router.classifier.blended(comps)
    prob = router.classifier.calibrated(gap)
    unsure = nearest < router.classifier.ood_floor
    return evaluate_scores(router, gap, prob, unsure, quality, cost, cats)


def _apgr_or_none(score: F64, weak: F64, strong: F64, min_gap: float = 1e-9) -> float | None:
    """APGR, or None when the two tiers' qualities are closer than ``min_gap`` (PGR divides by it)."""
    if abs(float(strong.mean()) - float(weak.mean())) < min_gap:
        return None
    return round(apgr(score, weak, strong), 4)


def evaluate_scores(
    router: Router,
    gap: F64,
    prob: F64,
    unsure: npt.NDArray[np.bool_],
    quality: F64,
    cost: F64,
    categories: Sequence[str],
) -> dict[str, Any]:
    """The report from the router's scores on the rows (split out so benchmarks can reuse it)."""
    names = [t.name for t in router.tiers]
    policy = router.policy
    chosen = policy.choose(prob, unsure)
    report: dict[str, Any] = {
        "rows": len(quality),
        "tiers": {
            t.name: {
                "model": t.model,
                "quality": round(float(quality[:, i].mean()), 4),
                "cost_per_call_usd": float(f"{cost[:, i].mean():.6g}"),
            }
            for i, t in enumerate(router.tiers)
        },
        "bars": dict(zip(names[:-1], policy.bars, strict=True)),
    }
    if len(names) == 2:
        weak, strong = quality[:, 0], quality[:, 1]
        value = _apgr_or_none(gap[:, 0], weak, strong)
        report["apgr"] = value
        if value is not None:
            curve = pgr_curve(gap[:, 0], weak, strong)
            report["cpt50"] = round(cpt(curve, 0.5), 4)
            report["cpt80"] = round(cpt(curve, 0.8), 4)
        else:
            report["cpt50"] = report["cpt80"] = None
    else:
        report["apgr_vs_frontier"] = {
            name: _apgr_or_none(gap[:, t], quality[:, t], quality[:, -1]) for t, name in enumerate(names[:-1])
        }
        cq = cost_quality_curve(prob, quality, cost, unsure)
        report["cost_at_95"] = round(cost_at(cq, 0.95), 4)
        picks = np.unique(np.linspace(0, len(cq.bar) - 1, _CURVE_POINTS).round().astype(int))
        report["curve"] = [
            {
                "bar": round(float(min(cq.bar[i], 1.0)), 4),
                "quality_vs_frontier": round(float(cq.quality[i] / cq.frontier_quality), 4)
                if cq.frontier_quality > 0
                else None,
                "cost_vs_frontier": round(float(cq.cost[i]), 4),
            }
            for i in picks
        ]
    at_policy = outcome(chosen, quality, cost, unsure).as_dict(names)
    report["quality"] = at_policy.pop("quality")
    report["cost"] = at_policy.pop("cost_per_call_usd")
    report.update(at_policy)
    per_category: dict[str, Any] = {}
    cats = np.asarray(categories)
    for cat in sorted(set(categories)):
        rows = np.flatnonzero(cats == cat)
        sub = outcome(chosen[rows], quality[rows], cost[rows], unsure[rows]).as_dict(names)
        entry: dict[str, Any] = {"rows": len(rows)}
        if len(names) == 2:
            entry["apgr"] = (
                _apgr_or_none(gap[rows, 0], quality[rows, 0], quality[rows, 1], _MIN_CATEGORY_GAP)
                if len(rows) > 1
                else None
            )
        entry.update(
            {
                "quality": sub["quality"],
                "quality_vs_frontier": sub["quality_vs_frontier"],
                "cost_vs_frontier": sub["cost_vs_frontier"],
                "frontier_share": sub["frontier_share"],
            }
        )
        per_category[cat or "(none)"] = entry
    report["per_category"] = per_category
    return report
