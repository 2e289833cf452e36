"""`faregate prompt-cache`: prompt-cache health per feature from the ledger, as a table or JSON.

A feature whose prefix churn is close to its request count sends a different prefix every time:
its cache-read ratio stays near zero, and its findings say which span to move.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

MAX_FINDINGS_SHOWN = 3


def report_json(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "features": [{k: float(v) if isinstance(v, Decimal) else v for k, v in e.items()} for e in entries]
    }


def report_table(entries: list[dict[str, Any]]) -> RenderableType:
    if not entries:
        return Text("No requests in the ledger for this period.", style="dim")
    table = Table(title="Prompt caching by feature", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("feature")
    for name in ("requests", "cache read", "saved", "prefixes", "peak / hour"):
        table.add_column(name, justify="right")
    table.add_column("cache breakers found")
    for e in entries:
        churn = e["prefix_churn"]
        unstable = e["requests"] > 1 and churn["peak_per_hour"] > max(1, e["requests"] // 10)
        findings = ", ".join(f"{f['kind']} ({f['requests']:,})" for f in e["findings"][:MAX_FINDINGS_SHOWN])
        table.add_row(
            str(e["feature"]),
            f"{e['requests']:,}",
            f"{e['cache_read_ratio']:.0%}",
            _usd(e["saving_usd"]),
            f"{e['distinct_prefixes']:,}",
            Text(f"{churn['peak_per_hour']:,}", style="yellow" if unstable else ""),
            findings or "-",
        )
    note = Text(
        "cache read: share of input tokens read from the provider's cache; saved: against billing every "
        "input token at the input price (negative when writes cost more than reads saved); prefixes: "
        "distinct tools + system prompts; peak / hour: the most in one hour (prefix churn).",
        style="dim",
    )
    return Group(table, note)


def _usd(value: Decimal) -> str:
    return f"-${-value:,.4f}" if value < 0 else f"${value:,.4f}"
