"""Spend grouped by attribution, as a terminal table (`faregate spend`, `faregate demo`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich import box
from rich.table import Table

NUMERIC = ("requests", "cost_usd", "input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens")


def spend_table(dimensions: list[str], rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Spend", show_footer=bool(rows), box=box.SIMPLE_HEAD)
    for d in dimensions:
        table.add_column(d, footer="total" if d == dimensions[0] else "")
    for name in NUMERIC:
        total = sum((r[name] for r in rows), Decimal(0) if name == "cost_usd" else 0)
        table.add_column(name, justify="right", footer=_cell(name, total))
    for row in rows:
        keys = ["-" if row[d] is None else str(row[d]) for d in dimensions]
        table.add_row(*keys, *[_cell(n, row[n]) for n in NUMERIC])
    return table


def _cell(name: str, value: Any) -> str:
    return f"${value:,.6f}" if name == "cost_usd" else f"{value:,}"
