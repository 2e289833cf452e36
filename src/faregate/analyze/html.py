"""Render the `faregate analyze` report object as one self-contained HTML page.

The page has no external resources (no CDN, fonts, scripts or images): charts are inline SVG drawn
here, tooltips are SVG ``<title>`` elements, styles are one inline ``<style>`` block. Every string
that comes from the report (feature and model names, finding text, file names, errors) is escaped.
The report format is described in ``docs/analyze-report.md``; missing or malformed keys render as
empty states rather than raising.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from faregate.anatomy import COMPONENTS

__all__ = ["render_html"]

# One colour per input-token component (faregate.anatomy.COMPONENTS), used everywhere on the page.
_COLOURS: dict[str, str] = {
    "system": "#4f46e5",
    "tools": "#0ea5e9",
    "history": "#f59e0b",
    "context": "#10b981",
    "query": "#ec4899",
    "overhead": "#94a3b8",
}
_LABELS: dict[str, str] = {
    "system": "System",
    "tools": "Tools",
    "history": "History",
    "context": "Context",
    "query": "Query",
    "overhead": "Overhead",
}
_OTHER_INPUT_COLOUR = "#6366f1"
_VERDICTS: dict[str, tuple[str, str]] = {
    "optimize-now": ("Optimize now", "#dc2626"),
    "instrument-first": ("Instrument first", "#d97706"),
    "optimize-later": ("Optimize later", "#059669"),
}
_STRATEGIES: dict[str, str] = {
    "prompt_caching": "Prompt caching",
    "semantic_caching": "Semantic caching",
    "model_routing": "Model routing",
    "history_policy": "History policy",
    "output_caps": "Output caps",
}
_KIND_COLOURS = ("#7c3aed", "#0891b2", "#c2410c", "#be185d", "#15803d", "#1d4ed8", "#a16207")
TOP_FEATURES = 10
_DASH = '<span class="muted">\u2013</span>'

# ---------------------------------------------------------------------------------------------
# Coercion and formatting (the report comes from JSON: be lenient about what is there)


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> str:
    return f"{round(_num(value)):,}"


def _pct(fraction: Any, digits: int = 1) -> str:
    return f"{_num(fraction) * 100:.{digits}f}%"


def _usd(value: Any, compact: bool = False) -> str:
    number = _num(value)
    sign = "\u2212" if number < 0 else ""
    a = abs(number)
    if compact and a >= 1e6:
        text = f"{a / 1e6:.1f}M"
    elif compact and a >= 1e4:
        text = f"{a / 1e3:.0f}k"
    elif compact and a >= 1e3:
        text = f"{a / 1e3:.1f}k"
    elif compact and (a >= 100 or a == 0):
        text = f"{a:.0f}"
    elif a >= 1000:
        text = f"{a:,.0f}"
    elif a >= 0.01 or a == 0:
        text = f"{a:,.2f}"
    else:
        text = f"{a:.2g}"
    return f"{sign}${text}"


def _tokens(value: Any) -> str:
    a = _num(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(a) >= limit:
            return f"{a / limit:.1f}{suffix}"
    return f"{a:.0f}" if a == round(a) else f"{a:.1f}"


def _fmt_f(value: float) -> str:
    """Coordinates for SVG: short and locale-free."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != round(value) else str(round(value))


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _nice_ticks(maximum: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``maximum`` (0..1 when there is no data)."""
    if maximum <= 0:
        return [0.0, 0.25, 0.5, 0.75, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    top = math.ceil(maximum / step - 1e-9) * step
    return [i * step for i in range(round(top / step) + 1)]


def _colour(component: str) -> str:
    return _COLOURS.get(component, "#64748b")


def _label(component: str) -> str:
    return _LABELS.get(component, component.capitalize())


def _input_total(tokens: dict[str, Any]) -> float:
    return sum(max(_num(tokens.get(c)), 0.0) for c in COMPONENTS)


# ---------------------------------------------------------------------------------------------
# SVG building blocks


def _chart(chart: str, width: int, height: int, body: Iterable[str], label: str) -> str:
    """One chart: an inline SVG in a wrapper that scrolls sideways on narrow screens."""
    return f'<div class="chart chart-{chart}">{_svg(chart, width, height, body, label)}</div>'


def _svg(chart: str, width: int, height: int, body: Iterable[str], label: str) -> str:
    return (
        f'<svg class="chart-svg" data-chart="{chart}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_esc(label)}" preserveAspectRatio="xMinYMin meet">' + "".join(body) + "</svg>"
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, extra: str = "", title: str = "") -> str:
    tip = f"<title>{_esc(title)}</title>" if title else ""
    attrs = (
        f'x="{_fmt_f(x)}" y="{_fmt_f(y)}" width="{_fmt_f(max(w, 0.0))}" height="{_fmt_f(max(h, 0.0))}" '
        f'fill="{fill}"{extra}'
    )
    return f"<rect {attrs}>{tip}</rect>" if tip else f"<rect {attrs}/>"


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start", extra: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{_fmt_f(x)}" y="{_fmt_f(y)}" text-anchor="{anchor}"{klass}{extra}>{_esc(text)}</text>'


def _line(cls: str, x1: float, x2: float, y1: float, y2: float) -> str:
    return f'<line class="{cls}" x1="{_fmt_f(x1)}" x2="{_fmt_f(x2)}" y1="{_fmt_f(y1)}" y2="{_fmt_f(y2)}"/>'


def _stacked_segments(
    shares: dict[str, Any], x: float, y: float, width: float, height: float, tip_prefix: str = ""
) -> tuple[list[str], list[tuple[str, float, float]]]:
    """Rects of a 100% stacked bar; also returns (component, x, width) for labelling."""
    values = [(c, max(_num(shares.get(c)), 0.0)) for c in COMPONENTS]
    total = sum(v for _, v in values)
    parts: list[str] = []
    spans: list[tuple[str, float, float]] = []
    if total <= 0:
        return [_rect(x, y, width, height, "#e2e8f0")], spans
    cursor = x
    for component, value in values:
        if value <= 0:
            continue
        w = width * value / total
        title = f"{tip_prefix}{_label(component)}: {_pct(value / total)}"
        parts.append(_rect(cursor, y, w, height, _colour(component), f' data-component="{component}"', title))
        spans.append((component, cursor, w))
        cursor += w
    return parts, spans


# ---------------------------------------------------------------------------------------------
# Charts


def _components_chart(tokens: dict[str, Any], share: dict[str, Any]) -> str:
    width, height, bar_h = 1000, 64, 48
    parts, spans = _stacked_segments(share, 0, 8, width, bar_h)
    body = [
        '<defs><clipPath id="fg-clip-anatomy"><rect x="0" y="8" width="1000" height="48" rx="10"/>'
        "</clipPath></defs>",
        '<g clip-path="url(#fg-clip-anatomy)">',
        *parts,
        "</g>",
    ]
    total = sum(max(_num(share.get(c)), 0.0) for c in COMPONENTS) or 1.0
    for component, x, w in spans:
        pct = _pct(max(_num(share.get(component)), 0.0) / total)
        centre = x + w / 2
        if w >= 120:
            body.append(_text(centre, 30, _label(component), "seg-label", "middle"))
            body.append(_text(centre, 47, pct, "seg-value", "middle"))
        elif w >= 48:
            body.append(_text(centre, 38, pct, "seg-value", "middle"))
    chart = _chart("components", width, height, body, "Share of input tokens by component")
    items = []
    for component in COMPONENTS:
        items.append(
            f'<li class="legend-item" data-component="{component}">'
            f'<span class="swatch" style="background:{_colour(component)}"></span>'
            f'<span class="name">{_label(component)}</span>'
            f'<span class="pct">{_pct(share.get(component))}</span>'
            f'<span class="muted">{_tokens(tokens.get(component))} tok</span></li>'
        )
    return f'{chart}<ul class="legend">{"".join(items)}</ul>'


def _features_chart(features: Sequence[tuple[str, dict[str, Any]]], total_cost: float) -> str:
    width, top, row = 1000, 30, 44
    bar_x, bar_max = 240, 430
    mix_x, mix_w = 790, 210
    height = top + row * len(features) + 4
    max_cost = max((_num(f.get("cost_usd")) for _, f in features), default=0.0)
    body = [
        _text(0, 14, "Feature", "axis-title"),
        _text(bar_x, 14, "Cost in the analysed period", "axis-title"),
        _text(mix_x, 14, "Input token mix", "axis-title"),
    ]
    for i, (name, data) in enumerate(features):
        y = top + i * row
        cost = _num(data.get("cost_usd"))
        w = bar_max * cost / max_cost if max_cost > 0 else 0.0
        cost_share = f" \u00b7 {_pct(cost / total_cost)} of cost" if total_cost > 0 else ""
        tip = f"{name}\n{_usd(cost)} \u00b7 {_int(data.get('requests'))} requests{cost_share}"
        body.append(f'<g class="feature-row" data-feature="{_esc(name)}"><title>{_esc(tip)}</title>')
        body.append(_text(0, y + 17, _truncate(name, 30), "row-label"))
        body.append(_text(0, y + 33, f"{_int(data.get('requests'))} requests{cost_share}", "row-sub"))
        body.append(f'<rect x="{bar_x}" y="{y + 8}" width="{bar_max}" height="22" rx="4" fill="#f1f5f9"/>')
        body.append(
            _rect(
                bar_x,
                y + 8,
                w,
                22,
                "#334155",
                f' rx="4" class="feature-bar" data-feature="{_esc(name)}"',
                f"{name}: {_usd(cost)}",
            )
        )
        body.append(_text(bar_x + w + 8, y + 24, _usd(cost), "bar-value"))
        clip = f"fg-mix-{i}"
        body.append(
            f'<clipPath id="{clip}"><rect x="{mix_x}" y="{y + 11}" width="{mix_w}" height="16" '
            'rx="4"/></clipPath>'
        )
        mix_shares = _dict(data.get("share")) or _dict(data.get("tokens"))
        mix, _ = _stacked_segments(mix_shares, mix_x, y + 11, mix_w, 16, f"{name} \u00b7 ")
        body.append(f'<g class="feature-mix" clip-path="url(#{clip})">{"".join(mix)}</g></g>')
    return _chart("features", width, height, body, "Cost by feature")


def _history_chart(by_turn: Sequence[dict[str, Any]], crossover: Any) -> str:
    width, height = 1000, 340
    left, right, top, bottom = 70, 24, 30, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    points = sorted(
        (
            (
                _num(t.get("turn")),
                _num(t.get("mean_history_tokens")),
                _num(t.get("mean_other_input_tokens")),
                _num(t.get("requests")),
            )
            for t in by_turn
        ),
        key=lambda p: p[0],
    )
    turns = [p[0] for p in points]
    cross = _num(crossover) if crossover is not None else None
    x_lo, x_hi = min(turns), max(turns)
    if cross is not None:
        x_lo, x_hi = min(x_lo, cross), max(x_hi, cross)
    if x_hi <= x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_ticks = _nice_ticks(max(max(p[1], p[2]) for p in points))
    y_hi = y_ticks[-1]

    def sx(turn: float) -> float:
        return left + plot_w * (turn - x_lo) / (x_hi - x_lo)

    def sy(value: float) -> float:
        return top + plot_h * (1 - value / y_hi)

    body: list[str] = []
    for tick in y_ticks:
        y = sy(tick)
        body.append(_line("grid", left, width - right, y, y))
        body.append(_text(left - 10, y + 4, _tokens(tick), "tick", "end"))
    span = x_hi - x_lo
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 10**9) if span / s <= 15)
    first = math.ceil(x_lo)
    for tick_turn in range(first, math.floor(x_hi) + 1, step):
        x = sx(tick_turn)
        body.append(_line("grid grid-v", x, x, top, top + plot_h))
        body.append(_text(x, top + plot_h + 20, str(tick_turn), "tick", "middle"))
    body.append(_line("axis", left, width - right, top + plot_h, top + plot_h))
    body.append(_line("axis", left, left, top, top + plot_h))
    body.append(_text(left + plot_w / 2, height - 6, "user turn in the conversation", "axis-title", "middle"))
    body.append(
        _text(
            16,
            top + plot_h / 2,
            "mean tokens per request",
            "axis-title",
            "middle",
            f' transform="rotate(-90 16 {_fmt_f(top + plot_h / 2)})"',
        )
    )

    history_xy = [(sx(p[0]), sy(p[1])) for p in points]
    other_xy = [(sx(p[0]), sy(p[2])) for p in points]
    base = sy(0)
    if len(points) > 1:
        area = " ".join(f"{_fmt_f(x)},{_fmt_f(y)}" for x, y in history_xy)
        body.append(
            f'<polygon class="history-area" fill="{_COLOURS["history"]}" fill-opacity="0.12" '
            f'points="{_fmt_f(history_xy[0][0])},{_fmt_f(base)} {area} '
            f'{_fmt_f(history_xy[-1][0])},{_fmt_f(base)}"/>'
        )
    for cls, colour, xy in (
        ("line-other", _OTHER_INPUT_COLOUR, other_xy),
        ("line-history", _COLOURS["history"], history_xy),
    ):
        path = " ".join(f"{_fmt_f(x)},{_fmt_f(y)}" for x, y in xy)
        body.append(
            f'<polyline class="{cls}" fill="none" stroke="{colour}" stroke-width="3" '
            f'stroke-linejoin="round" stroke-linecap="round" points="{path}"/>'
        )
    if cross is not None:
        x = sx(cross)
        label = f"crossover: turn {_fmt_f(cross)}"
        anchor = "end" if x > left + plot_w * 0.75 else "start"
        dx = -8 if anchor == "end" else 8
        body.append(
            f'<g class="crossover" data-turn="{_fmt_f(cross)}">'
            f"<title>History exceeds all other input from turn {_fmt_f(cross)}</title>"
            f'<line x1="{_fmt_f(x)}" x2="{_fmt_f(x)}" y1="{top - 8}" y2="{top + plot_h}" '
            'stroke="#dc2626" stroke-width="2" stroke-dasharray="6 4"/>'
            f"{_text(x + dx, top + 6, label, 'marker-label', anchor)}</g>"
        )
    show_points = len(points) <= 40
    for (turn, hist, other, reqs), (hx, hy), (ox, oy) in zip(points, history_xy, other_xy, strict=True):
        tip = (
            f"Turn {_fmt_f(turn)} \u00b7 {_int(reqs)} requests\nhistory: {_tokens(hist)} tokens\n"
            f"other input: {_tokens(other)} tokens"
        )
        r = 4 if show_points else 0
        body.append(
            f'<g class="point"><title>{_esc(tip)}</title>'
            f'<circle cx="{_fmt_f(ox)}" cy="{_fmt_f(oy)}" r="{r}" fill="{_OTHER_INPUT_COLOUR}"/>'
            f'<circle cx="{_fmt_f(hx)}" cy="{_fmt_f(hy)}" r="{r}" fill="{_COLOURS["history"]}"/>'
            f'<rect x="{_fmt_f(hx - 8)}" y="{top}" width="16" height="{plot_h}" fill="transparent"/>'
            "</g>"
        )
    chart = _chart("history", width, height, body, "Mean history tokens by turn versus other input tokens")
    legend = (
        '<ul class="legend">'
        f'<li class="legend-item"><span class="swatch" style="background:{_COLOURS["history"]}"></span>'
        '<span class="name">Mean history tokens</span></li>'
        f'<li class="legend-item"><span class="swatch" style="background:{_OTHER_INPUT_COLOUR}"></span>'
        '<span class="name">Mean other input tokens</span></li>'
        '<li class="legend-item"><span class="swatch swatch-dash"></span>'
        '<span class="name">Crossover turn</span></li></ul>'
    )
    return chart + legend


def _savings_chart(steps: Sequence[tuple[str, float]], monthly: float) -> str:
    """Waterfall: current monthly cost, one step down per strategy (stacked), what is left."""
    width, height = 1000, 310
    left, right, top, bottom = 70, 16, 30, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [t for _, t in steps]
    y_ticks = _nice_ticks(max([monthly, *totals, monthly - min(totals, default=0.0)]))
    y_hi = y_ticks[-1]

    def sy(value: float) -> float:
        return top + plot_h * (1 - max(value, 0.0) / y_hi)

    columns = len(steps) + 2
    slot = plot_w / columns
    bar_w = min(96.0, slot * 0.62)
    body: list[str] = []
    for tick in y_ticks:
        y = sy(tick)
        body.append(_line("grid", left, width - right, y, y))
        body.append(_text(left - 10, y + 4, _usd(tick, compact=True), "tick", "end"))
    body.append(_line("axis", left, width - right, top + plot_h, top + plot_h))
    body.append(
        _text(
            16,
            top + plot_h / 2,
            "USD per month",
            "axis-title",
            "middle",
            f' transform="rotate(-90 16 {_fmt_f(top + plot_h / 2)})"',
        )
    )

    def column(index: int, lo: float, hi: float, fill: str, label: str, value: str, cls: str) -> None:
        x = left + slot * index + (slot - bar_w) / 2
        y_top, y_bottom = sy(max(lo, hi)), sy(min(lo, hi))
        body.append(
            _rect(
                x,
                y_top,
                bar_w,
                max(y_bottom - y_top, 1.0),
                fill,
                f' rx="3" class="{cls}"',
                f"{label.replace('|', ' ')}: {value}",
            )
        )
        body.append(_text(x + bar_w / 2, y_top - 7, value, "bar-value", "middle"))
        lines = label.split("|")
        for n, line in enumerate(lines):
            body.append(_text(x + bar_w / 2, top + plot_h + 18 + 14 * n, line, "tick", "middle"))

    def connector(index: int, level: float) -> None:
        x1 = left + slot * index + (slot + bar_w) / 2
        x2 = left + slot * (index + 1) + (slot - bar_w) / 2
        y = _fmt_f(sy(level))
        body.append(f'<line class="connector" x1="{_fmt_f(x1)}" x2="{_fmt_f(x2)}" y1="{y}" y2="{y}"/>')

    column(0, 0.0, monthly, "#475569", "Current|cost", _usd(monthly, compact=True), "wf-start")
    previous = 0.0
    for i, (name, stacked) in enumerate(steps, start=1):
        connector(i - 1, monthly - previous)
        step = stacked - previous
        label = _STRATEGIES.get(name, name.replace("_", " ").capitalize()).replace(" ", "|", 1)
        column(
            i,
            monthly - previous,
            monthly - stacked,
            "#10b981" if step >= 0 else "#ef4444",
            label,
            _usd(-step, compact=True),
            "wf-step",
        )
        previous = stacked
    connector(len(steps), monthly - previous)
    column(
        len(steps) + 1,
        0.0,
        monthly - previous,
        "#4f46e5",
        "After|savings",
        _usd(monthly - previous, compact=True),
        "wf-end",
    )
    return _chart("savings", width, height, body, "Monthly cost waterfall with stacked savings")


# ---------------------------------------------------------------------------------------------
# Sections


def _section(title: str, lead: str, body: str, sid: str) -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section class="card" id="{sid}"><h2>{_esc(title)}</h2>{lead_html}{body}</section>'


def _empty(text: str) -> str:
    return f'<p class="empty">{_esc(text)}</p>'


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Iterable[int] = (), cls: str = ""
) -> str:
    """Cells are given as HTML (callers escape)."""
    right = set(numeric)
    head = "".join(f"<th{' class=num' if i in right else ''}>{_esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in right else ''}>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    klass = f' class="{cls}"' if cls else ""
    table = f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="table-wrap">{table}</div>'


def _meter(fraction: float, colour: str = "#4f46e5") -> str:
    width = min(max(fraction, 0.0), 1.0) * 100
    return f'<span class="meter"><span style="width:{width:.1f}%;background:{colour}"></span></span>'


def _period_text(period: dict[str, Any]) -> tuple[str, str]:
    start, end, days = period.get("start"), period.get("end"), period.get("days")
    if not start and not end:
        return "Unknown", "the logs carry no timestamps"
    dates = f"{str(start or '?')[:10]} \u2192 {str(end or '?')[:10]}"
    if days is None:
        return "\u2013", dates
    d = _num(days)
    return (f"{d:.0f} days" if d == round(d) else f"{d:.1f} days"), dates


def _header(report: dict[str, Any]) -> str:
    verdict = str(report.get("verdict") or "")
    fallback = (verdict.replace("-", " ").capitalize() or "No verdict", "#64748b")
    label, colour = _VERDICTS.get(verdict, fallback)
    period_main, period_sub = _period_text(_dict(report.get("period")))
    monthly = _num(report.get("monthly_cost_usd"))
    saved = _num(report.get("savings_total_monthly_usd"))
    rpd = report.get("requests_per_day")
    rpd_text = f"at {_num(rpd):,.0f} requests/day" if rpd is not None else "volume unknown"
    saved_sub = f"{_pct(saved / monthly)} of projected cost" if monthly > 0 else "stacked, all strategies"
    bad = round(_num(_dict(report.get("errors")).get("count")))
    skipped = f"{bad:,} unreadable line{'s' if bad != 1 else ''} skipped" if bad else "every line readable"
    cards = [
        ("Requests", _int(report.get("requests")), skipped),
        ("Period", period_main, period_sub),
        ("Cost analysed", _usd(report.get("cost_usd")), "at current prices"),
        ("Projected monthly cost", _usd(monthly), rpd_text),
        ("Potential savings / month", _usd(saved), saved_sub),
    ]
    kpis = "".join(
        f'<div class="kpi"><div class="kpi-label">{_esc(t)}</div><div class="kpi-value">{_esc(v)}</div>'
        f'<div class="kpi-sub">{_esc(s)}</div></div>'
        for t, v, s in cards
    )
    inputs = [str(i) for i in _list(report.get("inputs"))]
    shown = ", ".join(f"<code>{_esc(i)}</code>" for i in inputs[:4])
    if len(inputs) > 4:
        shown += f" and {len(inputs) - 4} more"
    meta = f"Inputs: {shown}" if inputs else "Inputs: none recorded"
    generated = report.get("generated_at")
    if generated:
        meta += f" \u00b7 generated {_esc(generated)}"
    unknown = round(_num(report.get("price_unknown_requests")))
    warn = ""
    if unknown > 0:
        warn = (
            f'<p class="callout">{unknown:,} request{"s" if unknown != 1 else ""} used a model without a '
            "known price; their cost is counted as $0 and flagged.</p>"
        )
    return (
        '<header class="top"><div class="brand">FareGate \u00b7 cost analysis</div>'
        f'<p class="meta">{meta}</p>'
        f'<div class="verdict" style="--v:{colour}"><span class="badge verdict-badge" '
        f'data-verdict="{_esc(verdict)}" style="background:{colour}">{_esc(label)}</span>'
        f'<p class="verdict-reason">{_esc(report.get("verdict_reason") or "")}</p></div>'
        f'<div class="kpis">{kpis}</div>{warn}</header>'
    )


def _anatomy_section(report: dict[str, Any]) -> str:
    tokens, share = _dict(report.get("tokens")), _dict(report.get("share"))
    total = _input_total(tokens)
    if not share and total > 0:
        share = {c: max(_num(tokens.get(c)), 0.0) / total for c in COMPONENTS}
    if total <= 0 and sum(max(_num(share.get(c)), 0.0) for c in COMPONENTS) <= 0:
        body = _empty("No input tokens were counted.")
    else:
        body = _components_chart(tokens, share)
    lead = (
        f"{_tokens(total)} input tokens and {_tokens(tokens.get('output'))} output tokens in total. "
        "Input tokens are what you send on every call; the bar shows where they go."
    )
    return _section("Where the input tokens go", _esc(lead), body, "anatomy")


def _features_section(report: dict[str, Any]) -> str:
    features = [(str(k), _dict(v)) for k, v in _dict(report.get("by_feature")).items()]
    features.sort(key=lambda kv: (-_num(kv[1].get("cost_usd")), -_num(kv[1].get("requests")), kv[0]))
    total = sum(_num(f.get("cost_usd")) for _, f in features)
    if not features:
        return _section("Cost by feature", "", _empty("No features in the logs."), "features")
    top = features[:TOP_FEATURES]
    body = _features_chart(top, total)
    rest = features[TOP_FEATURES:]
    if rest:
        body += (
            f'<p class="note">+ {len(rest)} more feature{"s" if len(rest) != 1 else ""} costing '
            f"{_esc(_usd(sum(_num(f.get('cost_usd')) for _, f in rest)))} in total.</p>"
        )
    shown = f"Top {TOP_FEATURES} of {len(features)}" if rest else f"All {len(features)}"
    lead = f"{shown} feature{'s' if len(features) != 1 else ''} by cost, with each one's input token mix."
    return _section("Cost by feature", _esc(lead), body, "features")


def _history_section(report: dict[str, Any]) -> str:
    growth = _dict(report.get("history_growth"))
    by_turn = [_dict(t) for t in _list(growth.get("by_turn"))]
    crossover = growth.get("crossover_turn")
    if not by_turn:
        return _section("History growth", "", _empty("No multi-turn conversations were found."), "history")
    if crossover is not None:
        turn = _esc(_fmt_f(_num(crossover)))
        lead = (
            f"From turn <strong>{turn}</strong> the conversation history is larger than everything "
            "else sent; a window or summary policy pays off from there."
        )
    else:
        lead = "History never outgrows the rest of the input in these logs."
    return _section("History growth", lead, _history_chart(by_turn, crossover), "history")


def _kind_badge(kind: str) -> str:
    colour = _KIND_COLOURS[sum(map(ord, kind)) % len(_KIND_COLOURS)]
    return f'<span class="badge kind" style="background:{colour}">{_esc(kind.replace("_", " "))}</span>'


def _prefix_section(report: dict[str, Any]) -> str:
    stability = _dict(report.get("prefix_stability"))
    per = sorted(
        ((str(k), _dict(v)) for k, v in _dict(stability.get("by_feature")).items()),
        key=lambda kv: (-_num(kv[1].get("requests")), kv[0]),
    )
    findings = [_dict(f) for f in _list(stability.get("findings"))]
    parts: list[str] = []
    if per:
        rows = []
        for name, data in per:
            prefixes = _num(data.get("distinct_system_prefixes"))
            skeletons = _num(data.get("distinct_skeletons"))
            requests = _num(data.get("requests"))
            volatile = _num(data.get("volatile_requests"))
            status = (
                '<span class="badge warn">volatile span</span>'
                if prefixes > skeletons
                else '<span class="badge ok">stable</span>'
            )
            vol_pct = _pct(volatile / requests) if requests > 0 else "\u2013"
            rows.append(
                [
                    _esc(name),
                    _int(requests),
                    _int(prefixes),
                    _int(skeletons),
                    f"{_int(volatile)} <span class=muted>({vol_pct})</span>",
                    status,
                ]
            )
        parts.append(
            _table(
                ["Feature", "Requests", "System prefixes", "Skeletons", "Volatile requests", "Prefix"],
                rows,
                numeric=(1, 2, 3, 4),
            )
        )
    else:
        parts.append(_empty("No system prompts to compare."))
    if findings:
        items = "".join(
            f'<li class="finding">{_kind_badge(str(f.get("kind") or "finding"))}'
            f'<span class="finding-text">{_esc(f.get("text"))}</span>'
            f'<span class="finding-meta">{_esc(f.get("feature") or "")}'
            f" \u00b7 {_int(f.get('count'))}\u00d7</span></li>"
            for f in findings[:10]
        )
        more = f'<p class="note">+ {len(findings) - 10} more findings.</p>' if len(findings) > 10 else ""
        parts.append(f'<h3>Top findings</h3><ol class="findings">{items}</ol>{more}')
    lead = (
        "Provider prompt caches only hit on an identical prefix. Many distinct system prompts with few "
        "skeletons means a volatile span (a date, an id) is breaking the cache."
    )
    return _section("Prefix stability", _esc(lead), "".join(parts), "prefix")


def _repetition_section(report: dict[str, Any]) -> str:
    rep = _dict(report.get("repetition"))
    queries = _num(rep.get("queries"))
    exact, near = _num(rep.get("exact_duplicate_rate")), _num(rep.get("near_duplicate_rate"))
    stats = [
        ("User queries", _int(queries), "", None),
        ("Exact duplicates", _pct(exact), f"{_int(rep.get('exact_duplicates'))} queries", exact),
        ("Near duplicates", _pct(near), f"{_int(rep.get('near_duplicates'))} queries", near),
    ]
    cells = "".join(
        f'<div class="stat"><div class="kpi-label">{_esc(t)}</div><div class="stat-value">{_esc(v)}</div>'
        f'{_meter(m, "#ec4899") if m is not None else ""}<div class="kpi-sub">{_esc(s)}</div></div>'
        for t, v, s, m in stats
    )
    lead = "Repeated user queries within the same feature: what a semantic cache could answer."
    return _section("Repetition", _esc(lead), f'<div class="stats">{cells}</div>', "repetition")


def _savings_section(report: dict[str, Any]) -> str:
    savings = [_dict(s) for s in _list(report.get("savings"))]
    monthly = _num(report.get("monthly_cost_usd"))
    total = _num(report.get("savings_total_monthly_usd"))
    if not savings:
        return _section("Estimated savings", "", _empty("No savings were estimated."), "savings")
    steps = [(str(s.get("strategy") or "?"), _num(s.get("stacked_monthly_usd"))) for s in savings]
    if monthly > 0 or any(t != 0 for _, t in steps):
        chart = _savings_chart(steps, monthly)
    else:
        chart = _empty("Nothing to save: the projected monthly cost is $0.")
    rows = []
    for s in savings:
        name = str(s.get("strategy") or "?")
        assumptions = "".join(f"<li>{_esc(a)}</li>" for a in _list(s.get("assumptions")))
        rows.append(
            [
                f"<strong>{_esc(_STRATEGIES.get(name, name))}</strong>",
                _esc(_usd(s.get("monthly_usd"))),
                _esc(_usd(s.get("stacked_monthly_usd"))),
                f'<ul class="assumptions">{assumptions}</ul>' if assumptions else _DASH,
            ]
        )
    rows.append(
        [
            "<strong>Total (stacked)</strong>",
            "",
            f"<strong>{_esc(_usd(total))}</strong>",
            f'<span class="muted">{_esc(_pct(total / monthly))} of {_esc(_usd(monthly))} per month</span>'
            if monthly > 0
            else "",
        ]
    )
    table = _table(
        ["Strategy", "Alone / month", "Stacked / month", "Assumptions"], rows, numeric=(1, 2), cls="savings"
    )
    lead = (
        "Each strategy alone, and stacked in order on what the previous ones left (the total is not the "
        "sum). Projected from the analysed volume to a month."
    )
    return _section("Estimated savings", _esc(lead), chart + table, "savings")


def _models_section(report: dict[str, Any]) -> str:
    models = sorted(
        ((str(k), _dict(v)) for k, v in _dict(report.get("by_model")).items()),
        key=lambda kv: (-_num(kv[1].get("cost_usd")), kv[0]),
    )
    if not models:
        return ""
    total = sum(_num(m.get("cost_usd")) for _, m in models)
    rows = []
    for name, m in models:
        cost = _num(m.get("cost_usd"))
        share = _meter(cost / total, "#334155") + f" {_esc(_pct(cost / total))}" if total > 0 else _DASH
        tokens = _tokens(_input_total(_dict(m.get("tokens"))))
        requests = _int(m.get("requests"))
        rows.append([f"<code>{_esc(name)}</code>", requests, _esc(tokens), _esc(_usd(cost)), share])
    table = _table(["Model", "Requests", "Input tokens", "Cost", "Share of cost"], rows, numeric=(1, 2, 3))
    return _section("Models", "", table, "models")


def _errors_section(report: dict[str, Any]) -> str:
    errors = _dict(report.get("errors"))
    count = round(_num(errors.get("count")))
    if count <= 0:
        return ""
    first = [_dict(e) for e in _list(errors.get("first"))]
    rows = [[f"<code>{_esc(e.get('file'))}</code>", _int(e.get("line")), _esc(e.get("error"))] for e in first]
    shown = f"; the first {len(first)} are listed" if first and len(first) < count else ""
    lead = _esc(f"{count:,} line{'s' if count != 1 else ''} could not be read or recognised{shown}.")
    body = _table(["File", "Line", "Error"], rows, numeric=(1,)) if rows else ""
    return _section("Unreadable lines", lead, body, "errors")


_CSS = """
*{box-sizing:border-box}
:root{--fg:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f1f5f9;--card:#fff}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,"Noto Sans",sans-serif;-webkit-font-smoothing:antialiased}
main{max-width:1180px;margin:0 auto;padding:28px 24px 48px}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f1f5f9;padding:1px 5px;
border-radius:4px}
h2{font-size:19px;margin:0 0 4px;letter-spacing:-.01em}
h3{font-size:15px;margin:22px 0 8px}
.top{margin-bottom:18px}
.brand{font-size:26px;font-weight:700;letter-spacing:-.02em}
.meta{color:var(--muted);margin:4px 0 16px;font-size:13px;overflow-wrap:anywhere}
.verdict{display:flex;gap:14px;align-items:center;background:var(--card);border:1px solid var(--line);
border-left:6px solid var(--v);border-radius:12px;padding:14px 18px;margin-bottom:16px}
.verdict-reason{margin:0;font-size:15px}
.badge{display:inline-block;color:#fff;border-radius:999px;padding:3px 12px;font-size:12px;font-weight:600;
white-space:nowrap;letter-spacing:.02em}
.verdict-badge{font-size:14px;padding:6px 16px;text-transform:uppercase}
.badge.ok{background:#059669}.badge.warn{background:#d97706}
.kpis{display:grid;grid-template-columns:repeat(5,minmax(0,1fr));gap:12px}
.kpi,.stat{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px}
.kpi-label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.05em;font-weight:600}
.kpi-value{font-size:24px;font-weight:700;margin-top:4px;font-variant-numeric:tabular-nums;white-space:nowrap;
overflow:hidden;text-overflow:ellipsis}
.kpi-sub{color:var(--muted);font-size:13px}
.callout{background:#fffbeb;border:1px solid #fde68a;color:#92400e;border-radius:10px;padding:10px 14px;
margin:14px 0 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:22px 24px;margin:16px 0;
box-shadow:0 1px 2px rgba(15,23,42,.04)}
.lead{color:var(--muted);margin:0 0 16px}
.empty{color:var(--muted);font-style:italic;padding:22px;text-align:center;background:#f8fafc;border-radius:10px}
.note{color:var(--muted);font-size:13px;margin:8px 0 0}
.chart{overflow-x:auto}
.chart-svg{display:block;width:100%;min-width:560px;height:auto;font-family:inherit}
.chart-features .chart-svg{min-width:720px}
.chart-components .chart-svg{min-width:0}
.chart-svg text{fill:#334155;font-size:13px}
.chart-svg .seg-label{fill:#fff;font-size:13px;font-weight:600}
.chart-svg .seg-value{fill:#fff;font-size:13px;font-weight:700}
.chart-svg .row-label{font-weight:600;fill:#0f172a}
.chart-svg .row-sub{fill:#64748b;font-size:11.5px}
.chart-svg .bar-value{font-weight:600;fill:#0f172a;font-variant-numeric:tabular-nums}
.chart-svg .tick{fill:#64748b;font-size:12px;font-variant-numeric:tabular-nums}
.chart-svg .axis-title{fill:#64748b;font-size:12px;font-weight:600;text-transform:uppercase;
letter-spacing:.04em}
.chart-svg .marker-label{fill:#dc2626;font-weight:700;font-size:12.5px}
.chart-svg .grid{stroke:#e2e8f0;stroke-width:1}
.chart-svg .grid-v{stroke:#f1f5f9}
.chart-svg .axis{stroke:#94a3b8;stroke-width:1}
.chart-svg .connector{stroke:#94a3b8;stroke-width:1;stroke-dasharray:3 3}
.chart-svg .feature-row:hover .feature-bar{fill:#4f46e5}
.chart-svg .point:hover circle{r:6}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:8px 22px;padding:0;margin:14px 0 0}
.legend-item{display:flex;align-items:center;gap:7px;font-size:14px}
.legend-item .pct{font-weight:700;font-variant-numeric:tabular-nums}
.swatch{width:12px;height:12px;border-radius:3px;display:inline-block}
.swatch-dash{background:repeating-linear-gradient(90deg,#dc2626 0 5px,transparent 5px 8px);height:3px;
width:16px}
.muted{color:var(--muted)}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:14px}
th{text-align:left;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em;
font-weight:600;border-bottom:1px solid var(--line);padding:8px 10px}
td{border-bottom:1px solid #f1f5f9;padding:9px 10px;vertical-align:top;overflow-wrap:anywhere}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:last-child td{border-bottom:none}
table.savings td:first-child{white-space:nowrap}
table.savings tbody tr:last-child td{border-top:2px solid var(--line);background:#f8fafc}
.assumptions{margin:0;padding-left:18px;color:var(--muted);font-size:13px}
.findings{list-style:none;padding:0;margin:0}
.finding{display:flex;gap:12px;align-items:baseline;padding:9px 0;border-bottom:1px solid #f1f5f9;
flex-wrap:wrap}
.finding:last-child{border-bottom:none}
.finding-text{flex:1;min-width:240px;overflow-wrap:anywhere}
.finding-meta{color:var(--muted);font-size:13px;white-space:nowrap}
.stats{display:grid;grid-template-columns:repeat(3,1fr);gap:12px}
.stat-value{font-size:26px;font-weight:700;font-variant-numeric:tabular-nums}
.meter{display:inline-block;width:100%;height:8px;background:#f1f5f9;border-radius:4px;
overflow:hidden;vertical-align:middle}
.meter>span{display:block;height:100%;border-radius:4px}
td .meter{width:110px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
@media (max-width:980px){.kpis{grid-template-columns:repeat(2,minmax(0,1fr))}}
@media (max-width:360px){.kpis{grid-template-columns:1fr}}
@media (max-width:640px){main{padding:16px 12px}.stats{grid-template-columns:1fr}
.kpi-value{font-size:20px}.chart-svg .seg-label,.chart-svg .seg-value{display:none}
.card{padding:16px 14px}.verdict{flex-direction:column;align-items:flex-start}.brand{font-size:21px}}
@media print{body{background:#fff}.card{box-shadow:none;break-inside:avoid}}
"""


def render_html(report: dict[str, Any]) -> str:
    """The report as a complete, self-contained HTML document."""
    report = _dict(report)
    title = f"FareGate analysis \u00b7 {_usd(report.get('monthly_cost_usd'))}/month"
    sections = [
        _header(report),
        _anatomy_section(report),
        _features_section(report),
        _history_section(report),
        _savings_section(report),
        _prefix_section(report),
        _repetition_section(report),
        _models_section(report),
        _errors_section(report),
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>"
        + "".join(sections)
        + "<footer>Generated by <strong>faregate analyze</strong>. Savings are estimates from the logs; the "
        "gateway's ledger records the real ones.</footer></main></body></html>\n"
    )
