"""The verdict: optimise now, instrument first, or optimise later, from volume and spend growth.

Under 1,000 requests a day the work of optimising rarely repays itself; from 10,000 a day (or when
spend grows faster than requests, so cost per request is rising) every saving compounds; in between,
attribute the traffic and watch it first. Attribution coverage refines the advice in between.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LATER_BELOW", "NOW_FROM", "decide_verdict"]

LATER_BELOW = 1_000  # requests/day under which optimising can wait
NOW_FROM = 10_000  # requests/day from which optimising pays at once


def decide_verdict(
    requests_per_day: float,
    *,
    assumed_one_day: bool = False,
    spend_outgrows_requests: tuple[float, float] | None = None,
    coverage: float = 1.0,
    monthly_cost: float = 0.0,
    savings: list[dict[str, Any]] | None = None,
) -> tuple[str, str]:
    """`optimize-later` under 1,000 requests/day; `optimize-now` from 10,000/day or when spend grows
    faster than requests; `instrument-first` in between. Returns (verdict, reason)."""
    volume = f"{requests_per_day:,.0f} requests/day" + (
        " (no usable timestamps: the log is taken as one day)" if assumed_one_day else ""
    )
    best = max(savings or [], key=lambda s: float(s["monthly_usd"]), default=None)
    best_text = (
        f"; the largest single saving is {str(best['strategy']).replace('_', ' ')} "
        f"(${float(best['monthly_usd']):,.2f}/month)"
        if best and float(best["monthly_usd"]) > 0
        else ""
    )
    cost_text = f" for ${monthly_cost:,.2f}/month"
    if requests_per_day < LATER_BELOW:
        return "optimize-later", (
            f"{volume}{cost_text} is under {LATER_BELOW:,}/day: optimisation would not repay the work yet"
            f"{best_text}. Keep logging and analyze again as volume grows."
        )
    if requests_per_day >= NOW_FROM:
        return "optimize-now", (
            f"{volume}{cost_text} is at or above {NOW_FROM:,}/day: savings compound at this volume"
            f"{best_text}."
        )
    if spend_outgrows_requests is not None:
        spend, requests = spend_outgrows_requests
        return "optimize-now", (
            f"{volume}{cost_text}, and spend grew {spend:.2f}x from the first half of the period to the "
            f"second while requests grew {requests:.2f}x: cost per request is rising{best_text}."
        )
    attribution = (
        f"only {coverage:.0%} of requests name a feature, so attribute traffic first (X-FareGate-Feature)"
        if coverage < 0.9
        else f"{coverage:.0%} of requests name a feature; watch spend per feature in the ledger"
    )
    return "instrument-first", (
        f"{volume}{cost_text} is between {LATER_BELOW:,} and {NOW_FROM:,}/day: {attribution}, then "
        f"optimise where the money goes{best_text}."
    )
