"""The routing decision, and calibrating it to a quality or frontier-share target.

The decision: the cheapest tier whose calibrated probability of answering as well as the frontier
clears its bar; the frontier when none does, or when the classifier is unsure (the request is unlike
anything it was trained on). Calibration picks one bar, shared by the cheaper tiers, on held-out
predictions of the training rows:

- ``target_quality=0.95``: the cheapest policy whose quality is at least 95% of always-frontier's;
- ``target_frontier_share=0.3``: the policy that sends the share of calls closest to 30% to the frontier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Outcome", "Policy", "calibrate", "outcome"]

from faregate.routing.metrics import NEVER, candidate_bars

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Policy:
    """Tiers cheapest first (the frontier last) and one bar per cheaper tier."""

    tiers: tuple[str, ...]
    bars: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.tiers) < 2 or len(self.bars) != len(self.tiers) - 1:
            raise ValueError(f"a policy needs one bar per cheaper tier: tiers {self.tiers}, bars {self.bars}")

    def decide(self, prob_by_tier: Mapping[str, float] | None) -> tuple[str, float, bool]:
        """(tier, confidence, fallback) for the cheaper tiers' probabilities; None means "unsure".

        ``confidence`` is the chosen cheaper tier's probability; for the frontier, the probability that
        the best cheaper tier would have fallen short (0 when unsure). ``fallback`` is True whenever the
        frontier was chosen because nothing cleared its bar or the classifier was unsure.
        """
        if prob_by_tier is None:
            return self.tiers[-1], 0.0, True
        probs = [float(prob_by_tier.get(name, 0.0)) for name in self.tiers[:-1]]
        index, confidence, fallback = self.decide_index(probs, unsure=False)
        return self.tiers[index], confidence, fallback

    def decide_index(
        self, probs: Sequence[float] | npt.NDArray[Any], unsure: bool
    ) -> tuple[int, float, bool]:
        """`decide` by tier index, for the gateway's hot path."""
        last = len(self.bars)
        if unsure:
            return last, 0.0, True
        best = 0.0
        for i, bar in enumerate(self.bars):
            p = float(probs[i])
            if p >= bar:
                return i, p, False
            best = max(best, p)
        return last, 1.0 - best, True

    def choose(self, prob: F64, unsure: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.intp]:
        """Vectorised `decide_index`: (n, tiers - 1) probabilities -> (n,) tier indices."""
        ok = prob >= np.asarray(self.bars)
        chosen = np.where(ok.any(axis=1), ok.argmax(axis=1), len(self.bars))
        if unsure is not None:
            chosen = np.where(unsure, len(self.bars), chosen)
        return chosen.astype(np.intp)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a policy does on a set of rows."""

    quality: float  # mean score
    relative_quality: float  # quality / always-frontier's quality
    cost: float  # mean USD per call
    relative_cost: float  # cost / always-frontier's cost
    shares: tuple[float, ...]  # share of calls per tier, cheapest first
    fallback_share: float  # share of calls sent to the frontier as a fallback (incl. unsure)
    unsure_share: float

    def as_dict(self, tiers: Sequence[str]) -> dict[str, Any]:
        return {
            "quality": round(self.quality, 4),
            "quality_vs_frontier": round(self.relative_quality, 4),
            "cost_per_call_usd": float(f"{self.cost:.6g}"),
            "cost_vs_frontier": round(self.relative_cost, 4),
            "share": {t: round(s, 4) for t, s in zip(tiers, self.shares, strict=True)},
            "frontier_share": round(self.shares[-1], 4),
            "fallback_share": round(self.fallback_share, 4),
            "unsure_share": round(self.unsure_share, 4),
        }


def outcome(
    chosen: npt.NDArray[np.intp], quality: F64, cost: F64, unsure: npt.NDArray[np.bool_] | None = None
) -> Outcome:
    rows = np.arange(len(chosen))
    q = float(quality[rows, chosen].mean())
    c = float(cost[rows, chosen].mean())
    qf = float(quality[:, -1].mean())
    cf = float(cost[:, -1].mean())
    tiers = quality.shape[1]
    shares = tuple(float(np.mean(chosen == t)) for t in range(tiers))
    unsure_share = float(np.mean(unsure)) if unsure is not None else 0.0
    return Outcome(
        quality=q,
        relative_quality=q / qf if qf > 0 else float("nan"),
        cost=c,
        relative_cost=c / cf if cf > 0 else float("nan"),
        shares=shares,
        fallback_share=shares[-1],
        unsure_share=unsure_share,
    )


def calibrate(
    tiers: Sequence[str],
    prob: F64,
    quality: F64,
    cost: F64,
    unsure: npt.NDArray[np.bool_],
    *,
    target_quality: float | None = None,
    target_frontier_share: float | None = None,
) -> tuple[Policy, Outcome]:
    """The shared bar that meets the target on these (held-out) predictions, and what it does there."""
    if (target_quality is None) == (target_frontier_share is None):
        raise ValueError("give exactly one of target_quality and target_frontier_share")
    names = tuple(tiers)
    best: tuple[tuple[float, ...], Policy, Outcome] | None = None
    for bar in candidate_bars(prob):
        policy = Policy(names, (float(bar),) * (len(names) - 1))
        result = outcome(policy.choose(prob, unsure), quality, cost, unsure)
        if target_quality is not None:
            if result.relative_quality < target_quality - 1e-12:
                continue
            key: tuple[float, ...] = (-result.relative_cost, result.relative_quality, -bar)
        else:
            assert target_frontier_share is not None
            miss = abs(result.shares[-1] - target_frontier_share)
            key = (-round(miss, 9), result.shares[-1] >= target_frontier_share, result.relative_quality)
        if best is None or key > best[0]:
            best = (key, policy, result)
    if best is None:  # the target is above what even always-frontier reaches: route everything there
        policy = Policy(names, (NEVER,) * (len(names) - 1))
        return policy, outcome(policy.choose(prob, unsure), quality, cost, unsure)
    return best[1], best[2]
