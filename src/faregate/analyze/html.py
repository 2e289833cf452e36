"""Render the `faregate analyze` report object as one self-contained HTML page.

The page has no external resources (no CDN, fonts, scripts or images): charts are inline SVG,
tooltips are SVG ``<title>`` elements, styles are one inline ``<style>`` block. Every string that
comes from the report (feature and model names, finding text, file names, errors) is escaped. The
report format is described in ``docs/analyze-report.md``; missing or malformed keys render as empty
states rather than raising.

This module assembles the page from its sections. The pieces it uses live next to it:
``svg_charts`` draws the four charts, ``html_style`` holds the colours, names and CSS, and
``html_format`` coerces report values and formats numbers, money and escaped text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from faregate.analyze.html_format import (
    _dict,
    _esc,
    _fmt_f,
    _input_total,
    _int,
    _list,
    _num,
    _pct,
    _tokens,
    _usd,
)
from faregate.analyze.html_style import _CSS, _KIND_COLOURS, _STRATEGIES, _VERDICTS
from faregate.analyze.svg_charts import _components_chart, _features_chart, _history_chart, _savings_chart
from faregate.anatomy import COMPONENTS

__all__ = ["render_html"]

TOP_FEATURES = 10
_DASH = '<span class="muted">\u2013</span>'

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
            known = data.get("distinct_skeletons") is not None  # not from a ledger: no prompt text there
            skeletons = _num(data.get("distinct_skeletons"))
            requests = _num(data.get("requests"))
            volatile = _num(data.get("volatile_requests"))
            broken = prefixes > skeletons if known else volatile > 0
            status = (
                '<span class="badge warn">volatile span</span>'
                if broken
                else '<span class="badge ok">stable</span>'
            )
            vol_pct = _pct(volatile / requests) if requests > 0 else "\u2013"
            rows.append(
                [
                    _esc(name),
                    _int(requests),
                    _int(prefixes),
                    _int(skeletons) if known else "\u2013",
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
