"""`faregate router stats`: the tier mix, fallbacks, routing-error estimate and feedback per feature.

The numbers come from the ledger (`faregate.ledger.routing`), so they cover every replica.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

TIERS = ("small", "medium", "frontier")


def stats_table(report: list[dict[str, Any]]) -> Table:
    table = Table(title="Routing", box=box.SIMPLE_HEAVY)
    table.add_column("feature")
    for name in (
        "requests",
        *TIERS,
        "frontier share (target)",
        "fallbacks",
        "shadow checks",
        "routing error (95% up)",
    ):
        table.add_column(name, justify="right")
    table.add_column("feedback (mean rating by tier)")
    for entry in report:
        tiers, shadow = entry["tiers"], entry["shadow"]
        error = f"{shadow['error_rate']:.1%} ({shadow['error_upper_95']:.1%})" if shadow["compared"] else "-"
        feedback = ", ".join(
            f"{tier} {f['mean_rating']:.2f} (n={f['ratings']})"
            for tier, f in sorted(entry["feedback"].items())
        )
        table.add_row(
            entry["feature"],
            f"{entry['requests']:,}",
            *(f"{tiers[t]['requests']:,}" if t in tiers else "-" for t in TIERS),
            _share(entry["frontier_share"], entry.get("target_frontier_share")),
            f"{entry['fallbacks']:,}",
            f"{shadow['compared']:,}",
            error,
            feedback or "-",
        )
    return table


def _share(realised: float | None, target: float | None) -> str:
    """The realised frontier share beside the one the router's calibration expects."""
    shown = f"{realised:.0%}" if realised is not None else "-"
    return f"{shown} ({target:.0%})" if target is not None else shown
