"""The look of the HTML report (``faregate.analyze.html``): colours, display names and the CSS.

Nothing here depends on the report; the page's one inline ``<style>`` block is :data:`_CSS`.
"""

from __future__ import annotations

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


def _colour(component: str) -> str:
    return _COLOURS.get(component, "#64748b")


def _label(component: str) -> str:
    return _LABELS.get(component, component.capitalize())


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
