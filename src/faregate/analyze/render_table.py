"""The report drawn with Rich for a terminal: the same numbers as `--format json`, in tables.

Designed for 120 columns; narrower terminals wrap the assumption text, not the numbers.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from faregate.anatomy import COMPONENTS

__all__ = ["render_table"]

TOP_FEATURES = 10
FIRST_TURNS = 10
TOP_FINDINGS = 8
_BAR_WIDTH = 30
_VERDICT_STYLE = {
    "optimize-now": "bold red",
    "instrument-first": "bold yellow",
    "optimize-later": "bold green",
}
_STRATEGY_NAMES = {
    "prompt_caching": "Prompt caching",
    "semantic_caching": "Semantic caching",
    "model_routing": "Model routing",
    "history_policy": "History policy",
    "output_caps": "Output caps",
}


def render_table(report: dict[str, Any], console: Console) -> None:
    """Print the report on `console`."""
    for part in _parts(report):
        console.print(part)
        console.print()


def _parts(r: dict[str, Any]) -> list[RenderableType]:
    parts: list[RenderableType] = [_headline(r), _components(r), _features(r)]
    if r["history_growth"]["by_turn"]:
        parts.append(_history(r))
    if r["prefix_stability"]["by_feature"]:
        parts.append(_prefixes(r))
    if r["repetition"]["queries"]:
        parts.append(_repetition(r))
    parts.append(_savings(r))
    parts.append(_verdict(r))
    if r["errors"]["count"]:
        parts.append(_errors(r))
    return parts


def _usd(value: float) -> str:
    return f"${value:,.2f}" if abs(value) >= 1 or value == 0 else f"${value:,.4f}"


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _bar(share: float, width: int = _BAR_WIDTH, style: str = "cyan") -> Text:
    cells = max(0.0, min(share, 1.0)) * width
    full = int(cells)
    text = "█" * full + ("▌" if cells - full >= 0.5 else "")
    return Text(text, style=style)


def _headline(r: dict[str, Any]) -> RenderableType:
    period = r["period"]
    if period["start"]:
        start, end = (str(period[k])[:16].replace("T", " ") for k in ("start", "end"))
        span = f"{start} → {end} UTC ({period['days']:.2f} days)"
    else:
        span = "no timestamps (taken as one day)"
    per_day = r["requests_per_day"]
    text = Text()
    text.append("FareGate analysis", style="bold")
    text.append(f"  {r['requests']:,} requests · {span}")
    if per_day is not None:
        text.append(f" · {per_day:,.0f}/day")
    text.append(f"\ncost analyzed {_usd(r['cost_usd'])} · projected {_usd(r['monthly_cost_usd'])}/month")
    text.append(f" · savings stacked {_usd(r['savings_total_monthly_usd'])}/month", style="green")
    if r["price_unknown_requests"]:
        text.append(
            f"\n{r['price_unknown_requests']:,} requests on models without a known price (cost 0)",
            style="yellow",
        )
    return text


def _components(r: dict[str, Any]) -> RenderableType:
    table = Table(title="Where the input tokens go", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("component")
    table.add_column("tokens", justify="right")
    table.add_column("share", justify="right")
    table.add_column("", width=_BAR_WIDTH + 1)
    for name in COMPONENTS:
        table.add_row(name, f"{r['tokens'][name]:,}", _pct(r["share"][name]), _bar(r["share"][name]))
    table.add_row(Text("output", style="dim"), Text(f"{r['tokens']['output']:,}", style="dim"), "", "")
    return table


def _features(r: dict[str, Any]) -> RenderableType:
    total_cost = r["cost_usd"] or 0.0
    features = list(r["by_feature"].items())
    table = Table(
        title=f"By feature (top {min(TOP_FEATURES, len(features))} of {len(features)} by cost)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    table.add_column("feature", max_width=28, overflow="ellipsis")
    table.add_column("requests", justify="right")
    table.add_column("cost", justify="right")
    table.add_column("of cost", justify="right")
    table.add_column("input/req", justify="right")
    for name in COMPONENTS[:5]:
        table.add_column(name, justify="right")
    for name, f in features[:TOP_FEATURES]:
        input_tokens = sum(f["tokens"][c] for c in COMPONENTS)
        table.add_row(
            name,
            f"{f['requests']:,}",
            _usd(f["cost_usd"]),
            _pct(f["cost_usd"] / total_cost) if total_cost else "-",
            f"{input_tokens / max(f['requests'], 1):,.0f}",
            *[_pct(f["share"][c]) for c in COMPONENTS[:5]],
        )
    return table


def _history(r: dict[str, Any]) -> RenderableType:
    growth = r["history_growth"]
    turns = growth["by_turn"]
    crossover = growth["crossover_turn"]
    shown = turns[:FIRST_TURNS]
    if crossover is not None and all(t["turn"] != crossover for t in shown):
        shown += [t for t in turns if t["turn"] == crossover]
    peak = max((t["mean_history_tokens"] + t["mean_other_input_tokens"] for t in shown), default=1) or 1
    table = Table(title="History growth by user turn", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("turn", justify="right")
    table.add_column("requests", justify="right")
    table.add_column("mean history", justify="right")
    table.add_column("mean other input", justify="right")
    table.add_column("history vs other", width=_BAR_WIDTH + 1)
    for t in shown:
        bar = _bar(t["mean_history_tokens"] / peak, style="magenta")
        bar.append_text(_bar(t["mean_other_input_tokens"] / peak, style="cyan"))
        label = f"{t['turn']}" + (" ◀" if t["turn"] == crossover else "")
        table.add_row(
            label,
            f"{t['requests']:,}",
            f"{t['mean_history_tokens']:,.0f}",
            f"{t['mean_other_input_tokens']:,.0f}",
            bar,
        )
    note = (
        Text(f"History outweighs all other input from turn {crossover} on.", style="magenta")
        if crossover is not None
        else Text("History never outweighs the rest of the input.", style="dim")
    )
    return Group(table, note)


def _prefixes(r: dict[str, Any]) -> RenderableType:
    stability = r["prefix_stability"]
    table = Table(
        title="Prefix stability (provider prompt caching)", box=box.SIMPLE_HEAD, title_justify="left"
    )
    table.add_column("feature", max_width=28, overflow="ellipsis")
    table.add_column("requests", justify="right")
    table.add_column("system prefixes", justify="right")
    table.add_column("peak per hour", justify="right")
    table.add_column("skeletons", justify="right")
    table.add_column("with volatile spans", justify="right")
    for name, p in list(stability["by_feature"].items())[:TOP_FEATURES]:
        skeletons, peak = p["distinct_skeletons"], p["peak_prefixes_per_hour"]
        # From a ledger there is no prompt text to build skeletons from; the recorded findings tell.
        prefixes = p["distinct_system_prefixes"]
        broken = p["volatile_requests"] > 0 if skeletons is None else prefixes > skeletons
        table.add_row(
            name,
            f"{p['requests']:,}",
            Text(f"{p['distinct_system_prefixes']:,}", style="yellow" if broken else ""),
            "-" if peak is None else f"{peak:,}",
            "-" if skeletons is None else f"{skeletons:,}",
            f"{p['volatile_requests']:,}",
        )
    parts: list[RenderableType] = [table]
    if stability["findings"]:
        findings = Table(
            title="Volatile spans that break caching (most frequent first)",
            box=box.SIMPLE_HEAD,
            title_justify="left",
        )
        findings.add_column("kind")
        findings.add_column("feature", max_width=24, overflow="ellipsis")
        findings.add_column("requests", justify="right")
        findings.add_column("example", max_width=60, overflow="ellipsis", no_wrap=True)
        for f in stability["findings"][:TOP_FINDINGS]:
            findings.add_row(f["kind"], f["feature"], f"{f['count']:,}", f["text"])
        parts.append(findings)
    return Group(*parts)


def _repetition(r: dict[str, Any]) -> RenderableType:
    rep = r["repetition"]
    table = Table(
        title="Repeated queries (semantic cache potential)", box=box.SIMPLE_HEAD, title_justify="left"
    )
    table.add_column("queries", justify="right")
    table.add_column("exact duplicates", justify="right")
    table.add_column("near duplicates", justify="right")
    table.add_row(
        f"{rep['queries']:,}",
        f"{rep['exact_duplicates']:,} ({_pct(rep['exact_duplicate_rate'])})",
        f"{rep['near_duplicates']:,} ({_pct(rep['near_duplicate_rate'])})",
    )
    return table


def _savings(r: dict[str, Any]) -> RenderableType:
    monthly = r["monthly_cost_usd"]
    table = Table(
        title=f"Projected savings per month (of {_usd(monthly)}), applied in sequence",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        show_footer=True,
    )
    table.add_column("strategy", footer="stacked total", no_wrap=True)
    table.add_column("alone", justify="right", no_wrap=True)
    table.add_column("stacked", justify="right", footer=_usd(r["savings_total_monthly_usd"]), no_wrap=True)
    share = r["savings_total_monthly_usd"] / monthly if monthly else 0.0
    table.add_column("of cost", justify="right", footer=_pct(share), no_wrap=True)
    table.add_column("assumptions", ratio=1, style="dim")
    for s in r["savings"]:
        table.add_row(
            _STRATEGY_NAMES.get(s["strategy"], s["strategy"]),
            _usd(s["monthly_usd"]),
            _usd(s["stacked_monthly_usd"]),
            _pct(s["stacked_monthly_usd"] / monthly) if monthly else "-",
            "\n".join(f"• {a}" for a in s["assumptions"]),
        )
    return table


def _verdict(r: dict[str, Any]) -> RenderableType:
    text = Text("Verdict: ", style="bold")
    text.append(r["verdict"], style=_VERDICT_STYLE.get(r["verdict"], "bold"))
    text.append(f"\n{r['verdict_reason']}")
    return text


def _errors(r: dict[str, Any]) -> RenderableType:
    errors = r["errors"]
    table = Table(
        title=f"{errors['count']:,} lines skipped (first {len(errors['first'])})",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        title_style="yellow",
    )
    table.add_column("file", max_width=40, overflow="ellipsis")
    table.add_column("line", justify="right")
    table.add_column("error", ratio=1)
    for e in errors["first"]:
        table.add_row(e["file"], str(e["line"]), e["error"])
    return table
