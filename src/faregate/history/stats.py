"""`faregate history stats`: what history policies saved and where output caps cut, per feature.

The numbers come from the ledger (`faregate.ledger.history`), so they cover every replica.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table


def stats_table(report: list[dict[str, Any]]) -> Table:
    table = Table(title="History policies and output caps", box=box.SIMPLE_HEAVY)
    for name in ("feature", "policy", "requests", "history tokens", "reduction", "summary calls"):
        table.add_column(name, justify="left" if name in ("feature", "policy") else "right")
    table.add_column("stepped aside / fell back")
    table.add_column("capped", justify="right")
    table.add_column("cut by cap", justify="right")
    for entry in report:
        h, caps = entry["history"], entry["caps"]
        summaries = f"{h['summary_calls']} (${h['summary_cost_usd']:.4f})" if h["summary_calls"] else "-"
        aside = f"{h['stepped_aside']}: {h['top_note']}" if h["stepped_aside"] else "-"
        table.add_row(
            entry["feature"],
            h["policy"] or "-",
            f"{h['requests']:,}",
            f"{h['tokens_before']:,} → {h['tokens_after']:,}" if h["requests"] else "-",
            f"{h['reduction']:.0%}" if h["requests"] else "-",
            summaries,
            aside,
            f"{caps['capped_requests']:,}" if caps["capped_requests"] else "-",
            f"{caps['cut']:,} ({caps['cut_share']:.0%})" if caps["capped_requests"] else "-",
        )
    return table
