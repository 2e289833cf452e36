"""The inline SVG charts of the HTML report (``faregate.analyze.html``).

Four charts, each returned as HTML (an ``<svg>`` in a scrolling wrapper, plus a legend where there
is one): the 100% stacked bar of input-token components, the cost-by-feature bars with each
feature's token mix, the history-growth line chart with its crossover marker, and the savings
waterfall. Tooltips are SVG ``<title>`` elements; every report string is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from faregate.analyze.html_format import _dict, _esc, _fmt_f, _int, _num, _pct, _tokens, _truncate, _usd
from faregate.analyze.html_style import _COLOURS, _OTHER_INPUT_COLOUR, _STRATEGIES, _colour, _label
from faregate.anatomy import COMPONENTS

# ---------------------------------------------------------------------------------------------
# Scales


def _nice_ticks(maximum: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``maximum`` (0..1 when there is no data)."""
    if maximum <= 0:
        return [0.0, 0.25, 0.5, 0.75, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    top = math.ceil(maximum / step - 1e-9) * step
    return [i * step for i in range(round(top / step) + 1)]


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
