"""Writing a `LintReport`: as JSON, or as a Rich table with why each kind of finding breaks caching."""

from __future__ import annotations

from decimal import Decimal

import orjson
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from faregate.prompt_cache.findings import TOOL_ORDER
from faregate.prompt_cache.lint.report import LintReport

__all__ = ["WHY", "render_json", "render_table"]

_TEXT_WIDTH = 48

WHY: dict[str, str] = {
    "timestamp": "changes on every request: the cache misses from here to the end of the prefix",
    "date": "changes once a day: the prefix after it is re-billed at full price after each date change",
    "uuid": "a fresh id per request or session: no two prefixes match past it",
    "request_id": "a per-request or per-session id: no two prefixes match past it",
    "long_number": "a random-looking number, likely new on every request",
    "counter": "counts requests or turns: a new value every time",
    "unsorted_json": "JSON keys out of sorted order: when the order varies, the bytes differ",
    "user_id": "differs per user: requests of different users cannot share the prefix after it",
    TOOL_ORDER: "the same tools in another order are different bytes: the cache misses from the tools on",
}
_FIX = (
    "Fix: move volatile values after the cached prefix (into the last user message); sort tools, JSON keys."
)


def render_json(report: LintReport, console: Console) -> None:
    """The report as indented JSON: the file, the extra top-level keys, then the findings."""
    console.file.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")


def _usd(value: Decimal | None) -> str:
    if value is None:
        return "unknown"
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if value >= 1 else f"${value:,.4f}"


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _TEXT_WIDTH else flat[: _TEXT_WIDTH - 1] + "…"


def render_table(report: LintReport, console: Console) -> None:
    """The findings as a Rich table, the notes on how they were priced, and why each kind breaks caching."""
    notes = Text("\n".join(report.notes), style="dim")
    if not report.items:
        console.print(Text(f"No cache breakers found in {report.file}.", style="green"))
        if report.extra.get("errors", {}).get("count"):
            console.print(notes)
        return
    log = report.input_kind == "log"
    priced = log or "model" in report.extra
    table = Table()
    table.add_column("kind")
    if log:
        table.add_column("feature")
    table.add_column("location", overflow="fold")
    table.add_column("text")
    if log:
        table.add_column("requests", justify="right")
        table.add_column("misses", justify="right")
    if priced:
        table.add_column("monthly cost", justify="right")
    for item in report.items:
        row: list[Text] = [Text(item.kind, style="yellow")]
        if log:
            row.append(Text(item.feature or ""))
        row += [Text(item.location), Text(_short(item.text))]
        if log:
            row += [Text(f"{item.requests or 0:,}"), Text(f"{item.cache_misses or 0:,}")]
        if priced:
            row.append(Text(_usd(item.monthly_usd)))
        table.add_row(*row)
    legend = Text()
    for kind in sorted({item.kind for item in report.items}):
        legend.append(kind, style="yellow")
        legend.append(f": {WHY.get(kind, 'changes between requests')}\n")
    legend.append(_FIX, style="dim")
    console.print(
        Group(Text(f"Prompt-cache breakers in {report.file}", style="bold"), table, notes, Text(), legend)
    )
