"""Training a router from routing-outcome rows: validate, embed, fit, calibrate the policy.

The policy is calibrated on held-out predictions (each training row scored by a model fitted without
it), never on the fitted model's own view of its training rows, which would be too optimistic: a bar
chosen that way would miss its quality target on new traffic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from faregate.cache.embeddings import DIM, MODEL_NAME
from faregate.routing.artifact import Router
from faregate.routing.classifier import fit_classifier
from faregate.routing.data import BadData, Row, Tier, cost_matrix, quality_matrix
from faregate.routing.features import cheap_features
from faregate.routing.metrics import apgr
from faregate.routing.policy import calibrate

__all__ = ["DEFAULT_TARGET_QUALITY", "MIN_ROWS", "Embed", "feature_matrix", "train_router"]

MIN_ROWS = 50
DEFAULT_TARGET_QUALITY = 0.95

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]


def feature_matrix(rows: Sequence[Row]) -> npt.NDArray[np.float32]:
    """(rows, features) cheap features of each row's prompt and history length."""
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    return np.stack([cheap_features(r.prompt, r.history_len) for r in rows])


def check_targets(
    target_quality: float | None, target_frontier_share: float | None
) -> tuple[float | None, float | None]:
    if target_quality is not None and target_frontier_share is not None:
        raise BadData("give --target-quality or --target-frontier-share, not both")
    if target_quality is None and target_frontier_share is None:
        target_quality = DEFAULT_TARGET_QUALITY
    if target_quality is not None and not 0.0 < target_quality <= 1.5:
        raise BadData(f"--target-quality {target_quality}: a fraction of the frontier's quality, e.g. 0.95")
    if target_frontier_share is not None and not 0.0 <= target_frontier_share <= 1.0:
        raise BadData(f"--target-frontier-share {target_frontier_share}: a share of calls between 0 and 1")
    return target_quality, target_frontier_share


def train_router(
    rows: Sequence[Row],
    tiers: Sequence[Tier],
    embed: Embed,
    *,
    target_quality: float | None = None,
    target_frontier_share: float | None = None,
    seed: int = 0,
    embedding_model: str = MODEL_NAME,
    progress: Callable[[str], None] | None = None,
) -> tuple[Router, dict[str, Any]]:
    """Train and calibrate a router; returns it and a report. `BadData` for input it cannot learn from.

    ``embedding_model`` names the embeddings ``embed`` returns (an `Embedder`'s ``name``, e.g.
    ``all-MiniLM-L6-v2-int8``): the router's meta records it, and `Router.embedding_int8` reads it, so
    that whoever routes with it embeds the same way.
    """
    started = time.perf_counter()
    target_quality, target_frontier_share = check_targets(target_quality, target_frontier_share)
    if len(rows) < MIN_ROWS:
        raise BadData(
            f"{len(rows)} rows: training needs at least {MIN_ROWS} (a few hundred for a useful router)"
        )
    quality = quality_matrix(rows, tiers)
    disagree = [int(np.sum(quality[:, t] != quality[:, -1])) for t in range(len(tiers) - 1)]
    if not any(disagree):
        raise BadData(
            "no row where the tiers' scores differ: every tier scores the same on every prompt, "
            "so there is nothing to learn about when the frontier is needed"
        )
    notes: list[str] = []
    try:
        cost = cost_matrix(rows, tiers)
        given = sum(all(t.model in (r.costs or {}) for t in tiers) for r in rows)
        cost_source = (
            "data" if given == len(rows) else "current prices" if given == 0 else "data and current prices"
        )
    except BadData as exc:
        cost = np.tile(10.0 ** np.arange(len(tiers)), (len(rows), 1))
        cost_source = "unknown"
        notes.append(f"{exc}; the policy was calibrated assuming each tier costs 10x the one before")

    if progress:
        progress("embedding")
    emb = np.asarray(embed([r.prompt for r in rows]), dtype=np.float32)
    if emb.shape != (len(rows), DIM):
        raise ValueError(f"the embedder returned shape {emb.shape}, expected ({len(rows)}, {DIM})")
    feats = feature_matrix(rows)
    fitted = fit_classifier(emb, feats, quality, [r.category for r in rows], seed=seed, progress=progress)
    clf = fitted.classifier
    unsure = fitted.oof_nearest < clf.ood_floor
    names = [t.name for t in tiers]
    policy, result = calibrate(
        names,
        fitted.oof_prob,
        quality,
        cost,
        unsure,
        target_quality=target_quality,
        target_frontier_share=target_frontier_share,
    )
    heldout_apgr: dict[str, float | None] = {}
    for t, name in enumerate(names[:-1]):
        same = np.isclose(quality[:, t].mean(), quality[:, -1].mean())
        heldout_apgr[name] = (
            None if same else round(apgr(fitted.oof_gap[:, t], quality[:, t], quality[:, -1]), 4)
        )
    target = (
        {"quality": target_quality}
        if target_quality is not None
        else {"frontier_share": target_frontier_share}
    )
    report: dict[str, Any] = {
        "rows": len(rows),
        "tiers": {t.name: t.model for t in tiers},
        "embedding": embedding_model,
        "rows_where_tier_differs": dict(zip(names[:-1], disagree, strict=True)),
        "target": target,
        "bars": dict(zip(names[:-1], (round(b, 4) for b in policy.bars), strict=True)),
        "heldout": {"apgr": heldout_apgr, **result.as_dict(names)},
        "classifier": fitted.summary,
        "costs": cost_source,
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 1),
    }
    meta = {
        "embedding": {"model": embedding_model, "dim": DIM},
        "trained_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "training": {k: report[k] for k in ("rows", "target", "heldout", "classifier", "costs")},
    }
    return Router(list(tiers), clf, policy, meta), report
