"""Routing quality metrics: APGR, CPT, quality and cost at a policy, and the three-tier cost curve.

Two tiers (RouteLLM, Ong et al. 2024, `routellm/evals/evaluate.py`): a router gives every prompt a score,
higher meaning "send to the strong model". Sending the top share ``c`` of prompts to the strong model
and the rest to the weak one gives a quality ``q(c)``; the performance gap recovered is
``PGR(c) = (q(c) - q_weak) / (q_strong - q_weak)`` and APGR is its area as ``c`` goes from 0 to 1.
Random routing scores 0.5; an oracle scores above 1, because it also keeps the weak model where only
the weak model is right. CPT(x) is the smallest share of strong calls whose quality recovers ``x`` of
the gap.

RouteLLM samples the curve at 10 quantiles of the score; here it is traced at every distinct score
(exact), with tied prompts moving together and the straight line between tie boundaries (the
expectation under random tie-breaking), so a constant score is exactly 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

__all__ = [
    "NEVER",
    "CostCurve",
    "Curve",
    "apgr",
    "candidate_bars",
    "choose",
    "cost_at",
    "cost_quality_curve",
    "cpt",
    "pgr_curve",
    "quality_at",
]


@dataclass(frozen=True, slots=True)
class Curve:
    """The quality of routing the top ``share`` of prompts (by score) to the strong model."""

    share: F64  # strong-call share, 0 .. 1, increasing
    quality: F64  # mean score at that share
    q_weak: float  # quality of always-weak (share 0)
    q_strong: float  # quality of always-strong (share 1)

    @property
    def pgr(self) -> F64:
        gap = self.q_strong - self.q_weak
        if gap == 0:
            raise ValueError("the two tiers have the same quality: the performance gap is zero")
        out: F64 = (self.quality - self.q_weak) / gap
        return out


def _as1d(values: Sequence[float] | npt.ArrayLike, name: str) -> F64:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds non-finite values")
    return arr


def pgr_curve(
    strong_score: npt.ArrayLike, weak_quality: npt.ArrayLike, strong_quality: npt.ArrayLike
) -> Curve:
    """The routing curve of a router's ``strong_score`` (higher: strong), for per-prompt tier qualities."""
    s = _as1d(strong_score, "strong_score")
    w = _as1d(weak_quality, "weak_quality")
    q = _as1d(strong_quality, "strong_quality")
    n = len(s)
    if n == 0 or len(w) != n or len(q) != n:
        raise ValueError("strong_score, weak_quality and strong_quality need the same, non-zero length")
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    gain = (q - w)[order]
    cum = np.concatenate(([0.0], np.cumsum(gain)))
    # a boundary after position i (1-based count k = i + 1) only where the next score differs
    ends = np.flatnonzero(np.diff(s_sorted) != 0) + 1
    ks = np.concatenate(([0], ends, [n]))
    base = float(w.mean())
    quality = base + cum[ks] / n
    return Curve(share=ks / n, quality=quality, q_weak=base, q_strong=float(q.mean()))


def apgr(strong_score: npt.ArrayLike, weak_quality: npt.ArrayLike, strong_quality: npt.ArrayLike) -> float:
    """Area under the performance-gap-recovered curve (RouteLLM's APGR); random routing is 0.5."""
    curve = pgr_curve(strong_score, weak_quality, strong_quality)
    return _trapezoid(curve.pgr, curve.share)


def cpt(curve: Curve, recovered: float) -> float:
    """The smallest strong-call share at which the curve first recovers ``recovered`` (0..1) of the gap.

    Linear between the curve's points; 1.0 if only always-strong reaches it.
    """
    pgr = curve.pgr
    target = recovered
    hit = np.flatnonzero(pgr >= target - 1e-12)
    if len(hit) == 0:
        return 1.0
    j = int(hit[0])
    if j == 0:
        return 0.0
    x0, x1 = curve.share[j - 1], curve.share[j]
    y0, y1 = pgr[j - 1], pgr[j]
    return float(x0 + (x1 - x0) * (target - y0) / (y1 - y0))


def quality_at(
    chosen: npt.NDArray[np.intp], quality: npt.NDArray[np.float64], cost: npt.NDArray[np.float64]
) -> tuple[float, float]:
    """Mean quality and mean cost when prompt i goes to tier ``chosen[i]`` (columns of quality/cost)."""
    rows = np.arange(len(chosen))
    return float(quality[rows, chosen].mean()), float(cost[rows, chosen].mean())


@dataclass(frozen=True, slots=True)
class CostCurve:
    """Quality against cost as the policy's bar moves; cost relative to always-frontier."""

    bar: F64
    quality: F64  # mean score
    cost: F64  # mean cost / mean cost of always-frontier
    frontier_quality: float


MAX_BARS = 1000  # bars tried in a sweep: quantiles of the probabilities beyond this many distinct values
NEVER = 1.0 + 1e-6  # a bar no probability clears: always the frontier


def candidate_bars(prob: F64) -> F64:
    """Bars worth trying: every distinct probability (up to `MAX_BARS` quantiles), 0 and `NEVER`."""
    flat = np.unique(prob.reshape(-1))
    if len(flat) > MAX_BARS:
        flat = np.unique(np.quantile(flat, np.linspace(0.0, 1.0, MAX_BARS)))
    return np.concatenate(([0.0], flat, [NEVER]))


def choose(prob: F64, bar: float, unsure: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.intp]:
    """Per row, the first (cheapest) column of ``prob`` at or above ``bar``; else (or unsure) the frontier."""
    k = prob.shape[1]
    ok = prob >= bar
    first = np.where(ok.any(axis=1), ok.argmax(axis=1), k)
    if unsure is not None:
        first = np.where(unsure, k, first)
    out: npt.NDArray[np.intp] = first.astype(np.intp)
    return out


def cost_quality_curve(
    prob: F64, quality: F64, cost: F64, unsure: npt.NDArray[np.bool_] | None = None
) -> CostCurve:
    """Sweep the bar of "cheapest tier whose probability clears the bar, else the frontier".

    ``prob`` is (n, tiers - 1): each cheaper tier's calibrated probability; ``quality`` and ``cost``
    are (n, tiers), tiers from cheapest to frontier. Points come in order of increasing bar: from the
    cheapest policy to always-frontier. Unsure rows (``unsure``) always go to the frontier.
    """
    bars = candidate_bars(prob)
    frontier_cost = float(cost[:, -1].mean())
    if frontier_cost <= 0:
        raise ValueError("the frontier tier costs nothing: cost relative to it is undefined")
    qs = np.empty(len(bars))
    cs = np.empty(len(bars))
    for i, bar in enumerate(bars):
        chosen = choose(prob, float(bar), unsure)
        qs[i], c = quality_at(chosen, quality, cost)
        cs[i] = c / frontier_cost
    return CostCurve(bar=bars, quality=qs, cost=cs, frontier_quality=float(quality[:, -1].mean()))


def cost_at(curve: CostCurve, fraction: float) -> float:
    """The lowest relative cost on the curve whose quality is at least ``fraction`` of the frontier's."""
    target = fraction * curve.frontier_quality
    ok = curve.quality >= target - 1e-12
    if not ok.any():
        return 1.0
    return float(curve.cost[ok].min())


def _trapezoid(y: F64, x: F64) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)
