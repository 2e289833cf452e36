"""The HTML report: structure, honesty of the charts, escaping, degenerate reports."""

from __future__ import annotations

import copy
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from faregate.analyze.html import render_html
from faregate.anatomy import COMPONENTS

# ---------------------------------------------------------------------------------------------
# A realistic report, built the way the analyzer builds it (docs/analyze-report.md), so the totals,
# shares and stacked savings are consistent with each other.

_PRICES = {  # USD per million tokens: input, output
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "claude-sonnet-4-20250514": (3.0, 15.0),
}
# feature: (model, requests, mean tokens per request for system, tools, history, context, query,
#           overhead, output)
_FEATURES: dict[str, tuple[str, int, tuple[int, ...]]] = {
    "support-chat": ("gpt-4o", 4210, (1450, 620, 3900, 0, 85, 28, 310)),
    "doc-qa": ("claude-sonnet-4-20250514", 2380, (980, 0, 600, 5200, 60, 22, 420)),
    "code-review": ("claude-sonnet-4-20250514", 610, (2100, 900, 400, 7400, 140, 30, 900)),
    "ticket-summarize": ("gpt-4o", 1840, (620, 0, 0, 2900, 40, 14, 220)),
    "email-draft": ("gpt-4o", 1290, (840, 0, 1100, 400, 90, 20, 380)),
    "sql-assistant": ("gpt-4o", 520, (3100, 1500, 900, 1200, 70, 24, 260)),
    "onboarding-bot": ("gpt-4o-mini", 2950, (1900, 300, 2600, 0, 55, 26, 240)),
    "search-rerank": ("gpt-4o-mini", 5600, (400, 0, 0, 3600, 30, 12, 40)),
    "classify-ticket": ("gpt-4o-mini", 6100, (1200, 0, 0, 0, 120, 10, 6)),
    "translate": ("gpt-4o-mini", 1700, (300, 0, 0, 0, 600, 10, 640)),
    "invoice-extract": ("gpt-4o-mini", 420, (700, 450, 0, 2200, 20, 16, 310)),
    "unattributed": ("gpt-4o", 160, (500, 0, 300, 0, 80, 14, 200)),
}
_KEYS = (*COMPONENTS, "output")


def _group(rows: list[tuple[str, int, dict[str, int], float]]) -> dict[str, Any]:
    tokens = {k: sum(r[2][k] for r in rows) for k in _KEYS}
    total_in = sum(tokens[c] for c in COMPONENTS)
    return {
        "requests": sum(r[1] for r in rows),
        "tokens": tokens,
        "share": {c: (tokens[c] / total_in if total_in else 0.0) for c in COMPONENTS},
        "cost_usd": round(sum(r[3] for r in rows), 4),
    }


def sample_report() -> dict[str, Any]:
    rows: list[tuple[str, int, dict[str, int], float]] = []
    by_model_rows: dict[str, list[tuple[str, int, dict[str, int], float]]] = {}
    for feature, (model, per_day, means) in _FEATURES.items():
        requests = per_day * 20  # the table holds a day and a half; the logs cover 30 days
        tokens = {k: m * requests for k, m in zip(_KEYS, means, strict=True)}
        price_in, price_out = _PRICES[model]
        cost = (sum(tokens[c] for c in COMPONENTS) * price_in + tokens["output"] * price_out) / 1e6
        row = (feature, requests, tokens, cost)
        rows.append(row)
        by_model_rows.setdefault(model, []).append(row)
    overall = _group(rows)
    days = 30.0
    monthly = round(overall["cost_usd"] / days * 30.4, 2)
    alone = [
        (
            "prompt_caching",
            0.22,
            [
                "system and tool prefixes are stable in 9 of 12 features",
                "cached input billed at 10% (Anthropic) / 50% (OpenAI)",
            ],
        ),
        (
            "semantic_caching",
            0.09,
            ["near-duplicate rate 11.8% within feature scope", "hit answers cost one embedding"],
        ),
        (
            "model_routing",
            0.27,
            [
                "38% of requests are simple enough for the small tier",
                "small tier quality within 2% on sampled traffic",
            ],
        ),
        ("history_policy", 0.14, ["window of 6 turns plus a running summary from turn 6"]),
        ("output_caps", 0.03, []),
    ]
    savings = []
    stacked = 0.0
    for strategy, fraction, assumptions in alone:
        stacked += fraction * (monthly - stacked)
        savings.append(
            {
                "strategy": strategy,
                "monthly_usd": round(fraction * monthly, 2),
                "stacked_monthly_usd": round(stacked, 2),
                "assumptions": assumptions,
            }
        )
    by_turn = []
    crossover = None
    for turn in range(1, 15):
        history = 0.0 if turn == 1 else 430.0 * (turn - 1) ** 1.08
        other = 2150.0 + 25.0 * turn
        if crossover is None and history > other:
            crossover = turn
        by_turn.append(
            {
                "turn": turn,
                "requests": int(76000 * 0.78 ** (turn - 1)) + 3,
                "mean_history_tokens": round(history, 1),
                "mean_other_input_tokens": round(other, 1),
            }
        )
    # feature: (distinct system prefixes, distinct skeletons, share of requests with a volatile span)
    stability = {
        "support-chat": (72400, 2, 0.955),
        "doc-qa": (3, 3, 0.0),
        "code-review": (1, 1, 0.0),
        "email-draft": (25800, 1, 1.0),
        "onboarding-bot": (14, 2, 0.75),
        "classify-ticket": (1, 1, 0.0),
    }
    feature_requests = {f: n * 20 for f, (_, n, _) in _FEATURES.items()}
    return {
        "generated_at": "2025-06-02T09:14:03Z",
        "inputs": ["logs/2025-05/requests-01.jsonl.gz", "logs/2025-05/requests-02.jsonl.gz"],
        "requests": overall["requests"],
        "period": {"start": "2025-05-01T00:00:04Z", "end": "2025-05-30T23:59:41Z", "days": days},
        "tokens": overall["tokens"],
        "share": overall["share"],
        "cost_usd": overall["cost_usd"],
        "price_unknown_requests": 0,
        "by_feature": {r[0]: _group([r]) for r in rows},
        "by_model": {model: _group(rs) for model, rs in by_model_rows.items()},
        "history_growth": {"by_turn": by_turn, "crossover_turn": crossover},
        "prefix_stability": {
            "by_feature": {
                f: {
                    "requests": feature_requests[f],
                    "distinct_system_prefixes": p,
                    "distinct_skeletons": s,
                    "volatile_requests": round(v * feature_requests[f]),
                }
                for f, (p, s, v) in stability.items()
            },
            "findings": [
                {
                    "kind": "volatile_timestamp",
                    "feature": "support-chat",
                    "count": 80411,
                    "text": "System prompt starts with 'Current time: 2025-05-14 10:32:07'; move it after "
                    "the static instructions so the prefix can be cached.",
                },
                {
                    "kind": "volatile_id",
                    "feature": "email-draft",
                    "count": 25800,
                    "text": "A per-user id (usr_…) is interpolated into the first line of the system prompt.",
                },
                {
                    "kind": "tool_order",
                    "feature": "onboarding-bot",
                    "count": 44250,
                    "text": "Tools are sent in varying order; sort them to keep the prefix identical.",
                },
            ],
        },
        "repetition": {
            "queries": overall["requests"],
            "exact_duplicates": 36670,
            "near_duplicates": 65560,
            "exact_duplicate_rate": 36670 / overall["requests"],
            "near_duplicate_rate": 65560 / overall["requests"],
        },
        "savings": savings,
        "savings_total_monthly_usd": round(stacked, 2),
        "monthly_cost_usd": monthly,
        "requests_per_day": overall["requests"] / days,
        "verdict": "optimize-now",
        "verdict_reason": f"${monthly:,.0f}/month with ${stacked:,.0f} (≈{stacked / monthly:.0%}) of it "
        "avoidable; history and routing dominate.",
        "errors": {
            "count": 3,
            "first": [
                {
                    "file": "logs/2025-05/requests-01.jsonl.gz",
                    "line": 1877,
                    "error": "invalid JSON: Expecting ','",
                },
                {
                    "file": "logs/2025-05/requests-01.jsonl.gz",
                    "line": 9021,
                    "error": "not a chat request body",
                },
                {"file": "logs/2025-05/requests-02.jsonl.gz", "line": 12, "error": "truncated gzip stream"},
            ],
        },
    }


# ---------------------------------------------------------------------------------------------
# A small strict DOM built with html.parser: mismatched or unclosed tags fail the test.

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and (cls is None or cls in n.attrs.get("class", "").split())
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(document: str) -> Node:
    builder = _Builder()
    builder.feed(document)
    builder.close()
    assert builder.stack == [builder.root], f"unclosed: {[n.tag for n in builder.stack[1:]]}"
    assert builder.doctype.lower() == "doctype html"
    return builder.root


def charts(root: Node) -> dict[str, Node]:
    svgs = root.find_all("svg")
    found = {s.attrs.get("data-chart", ""): s for s in svgs}
    assert len(found) == len(svgs), "every svg is a chart, each chart once"
    return found


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return sample_report()


@pytest.fixture(scope="module")
def dom(report: dict[str, Any]) -> Node:
    return parse(render_html(report))


# ---------------------------------------------------------------------------------------------


def test_sample_report_is_consistent(report: dict[str, Any]) -> None:
    assert sum(report["share"].values()) == pytest.approx(1.0)
    assert set(report["share"]) == set(COMPONENTS)
    assert report["history_growth"]["crossover_turn"] == 6
    assert [s["strategy"] for s in report["savings"]] == [
        "prompt_caching",
        "semantic_caching",
        "model_routing",
        "history_policy",
        "output_caps",
    ]
    assert report["savings_total_monthly_usd"] < sum(s["monthly_usd"] for s in report["savings"])


def test_exactly_the_four_charts(dom: Node) -> None:
    assert set(charts(dom)) == {"components", "features", "history", "savings"}


def test_header(dom: Node, report: dict[str, Any]) -> None:
    header = dom.find_all("header")[0].text()
    assert f"{report['requests']:,}" in header
    assert "2025-05-01 → 2025-05-30" in header and "30 days" in header
    assert _money(report["cost_usd"]) in header and _money(report["monthly_cost_usd"]) in header
    [badge] = dom.find_all(cls="verdict-badge")
    assert badge.attrs["data-verdict"] == "optimize-now" and badge.text() == "Optimize now"
    assert report["verdict_reason"] in header


def test_component_percentages_match_shares(dom: Node, report: dict[str, Any]) -> None:
    legend = dom.find_all("section", id="anatomy")[0].find_all("li", cls="legend-item")
    items = {n.attrs["data-component"]: n for n in legend}
    assert list(items) == list(COMPONENTS)
    for component, item in items.items():
        [pct] = item.find_all(cls="pct")
        assert float(pct.text().rstrip("%")) / 100 == pytest.approx(report["share"][component], abs=5e-4)
    # The segments are drawn to scale: widths proportional to the shares, filling the bar.
    widths = {
        s.attrs["data-component"]: float(s.attrs["width"])
        for s in charts(dom)["components"].iter()
        if s.tag == "rect" and "data-component" in s.attrs
    }
    assert sum(widths.values()) == pytest.approx(1000, abs=1)
    for component, width in widths.items():
        assert width / 1000 == pytest.approx(report["share"][component], abs=1e-3)


def test_one_bar_per_top_feature_sorted_by_cost(dom: Node, report: dict[str, Any]) -> None:
    bars = charts(dom)["features"].find_all("rect", cls="feature-bar")
    ranked = sorted(report["by_feature"], key=lambda f: -report["by_feature"][f]["cost_usd"])
    assert [b.attrs["data-feature"] for b in bars] == ranked[:10]
    widths = [float(b.attrs["width"]) for b in bars]
    costs = [report["by_feature"][f]["cost_usd"] for f in ranked[:10]]
    for width, cost in zip(widths, costs, strict=True):
        assert width / widths[0] == pytest.approx(cost / costs[0], abs=2e-3)
    assert "+ 2 more features" in dom.find_all("section", id="features")[0].text()
    # Each row also draws its input mix, in the page's component colours.
    rows = charts(dom)["features"].find_all("g", cls="feature-row")
    assert len(rows) == 10
    assert all(r.find_all("g", cls="feature-mix")[0].find_all("rect") for r in rows)


def test_crossover_marker_present_iff_crossover(report: dict[str, Any]) -> None:
    [marker] = charts(parse(render_html(report)))["history"].find_all(cls="crossover")
    assert marker.attrs["data-turn"] == "6"
    no_cross = copy.deepcopy(report)
    no_cross["history_growth"]["crossover_turn"] = None
    history = charts(parse(render_html(no_cross)))["history"]
    assert history.find_all(cls="crossover") == []
    assert len(history.find_all("polyline")) == 2


def test_history_points_and_axes(dom: Node, report: dict[str, Any]) -> None:
    history = charts(dom)["history"]
    assert len(history.find_all("g", cls="point")) == len(report["history_growth"]["by_turn"])
    ticks = [t.text() for t in history.find_all("text", cls="tick")]
    assert "1" in ticks and "14" in ticks and "0" in ticks


def _money(usd: float) -> str:
    return f"${usd:,.0f}" if usd >= 1000 else f"${usd:,.2f}"


def test_savings_table_and_waterfall(dom: Node, report: dict[str, Any]) -> None:
    section = dom.find_all("section", id="savings")[0]
    text = section.text()
    for saving in report["savings"]:
        assert _money(saving["monthly_usd"]) in text and _money(saving["stacked_monthly_usd"]) in text
    assert _money(report["savings_total_monthly_usd"]) in text
    waterfall = charts(dom)["savings"]
    assert len(waterfall.find_all("rect", cls="wf-step")) == 5
    assert len(waterfall.find_all("rect", cls="wf-start")) == 1
    assert len(waterfall.find_all("rect", cls="wf-end")) == 1
    assert "hit answers cost one embedding" in text


def test_prefix_repetition_models_errors(dom: Node, report: dict[str, Any]) -> None:
    prefix = dom.find_all("section", id="prefix")[0]
    assert len(prefix.find_all("span", cls="warn")) == 3  # support-chat, email-draft, onboarding-bot
    kinds = [b.text() for b in prefix.find_all(cls="kind")]
    assert kinds == ["volatile timestamp", "volatile id", "tool order"]
    repetition = dom.find_all("section", id="repetition")[0].text()
    assert "6.6%" in repetition and "11.8%" in repetition
    assert "gpt-4o-mini" in dom.find_all("section", id="models")[0].text()
    errors = dom.find_all("section", id="errors")[0]
    assert len(errors.find_all("tr")) == 1 + 3


_URL_ATTRS = ("src", "href", "xlink:href", "action", "poster", "data")


def test_self_contained(report: dict[str, Any]) -> None:
    document = render_html(report)
    root = parse(document)
    for node in root.iter():
        for name in _URL_ATTRS:
            value = node.attrs.get(name, "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), (node.tag, name, value)
    assert not root.find_all("script") and not root.find_all("link") and not root.find_all("img")
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", document, re.I)
    assert "@import" not in document and "http://" not in document and "https://" not in document


HOSTILE = '<script>alert("x")</script>'


def test_hostile_strings_are_escaped(report: dict[str, Any]) -> None:
    evil = copy.deepcopy(report)
    evil["by_feature"][HOSTILE] = evil["by_feature"].pop("support-chat")
    evil["by_model"]['<img src=x onerror="alert(1)">'] = evil["by_model"].pop("gpt-4o")
    stability = evil["prefix_stability"]["by_feature"]
    stability[HOSTILE] = stability.pop("support-chat")
    evil["prefix_stability"]["findings"][0].update(kind="<b>kind</b>", text=HOSTILE, feature=HOSTILE)
    evil["inputs"] = ['"><script>alert(2)</script>']
    evil["verdict"] = '"><script>'
    evil["verdict_reason"] = HOSTILE
    evil["errors"]["first"][0]["error"] = HOSTILE
    evil["savings"][0]["assumptions"] = [HOSTILE]
    document = render_html(evil)
    assert "<script" not in document.lower() and "<img" not in document and "<b>kind" not in document
    assert "&lt;script&gt;" in document
    root = parse(document)
    assert not root.find_all("script") and not root.find_all("img") and not root.find_all("b")
    bars = charts(root)["features"].find_all("rect", cls="feature-bar")
    assert HOSTILE in [b.attrs["data-feature"] for b in bars]  # round-trips as text, not markup
    assert HOSTILE in root.text()


def _zero_report() -> dict[str, Any]:
    zeros = dict.fromkeys(_KEYS, 0)
    return {
        "generated_at": "2025-06-02T09:14:03Z",
        "inputs": ["empty.jsonl"],
        "requests": 0,
        "period": {"start": None, "end": None, "days": None},
        "tokens": zeros,
        "share": dict.fromkeys(COMPONENTS, 0.0),
        "cost_usd": 0.0,
        "price_unknown_requests": 0,
        "by_feature": {},
        "by_model": {},
        "history_growth": {"by_turn": [], "crossover_turn": None},
        "prefix_stability": {"by_feature": {}, "findings": []},
        "repetition": {
            "queries": 0,
            "exact_duplicates": 0,
            "near_duplicates": 0,
            "exact_duplicate_rate": 0.0,
            "near_duplicate_rate": 0.0,
        },
        "savings": [
            {"strategy": s, "monthly_usd": 0.0, "stacked_monthly_usd": 0.0, "assumptions": []}
            for s in ("prompt_caching", "semantic_caching", "model_routing", "history_policy", "output_caps")
        ],
        "savings_total_monthly_usd": 0.0,
        "monthly_cost_usd": 0.0,
        "requests_per_day": None,
        "verdict": "instrument-first",
        "verdict_reason": "No requests to analyze.",
        "errors": {"count": 0, "first": []},
    }


def test_zero_request_report_renders_empty_states() -> None:
    root = parse(render_html(_zero_report()))
    assert charts(root) == {}
    assert len(root.find_all(cls="empty")) == 5  # anatomy, features, history, savings chart, prefix
    assert "Unknown" in root.find_all("header")[0].text()
    assert root.find_all(id="errors") == [] and root.find_all(id="models") == []


def _single_turn(report: dict[str, Any]) -> dict[str, Any]:
    report["history_growth"] = {
        "by_turn": [{"turn": 1, "requests": 5, "mean_history_tokens": 0.0, "mean_other_input_tokens": 0.0}],
        "crossover_turn": None,
    }
    return report


def _crossover_outside_data(report: dict[str, Any]) -> dict[str, Any]:
    report["history_growth"]["crossover_turn"] = 40
    return report


def _one_feature_no_price(report: dict[str, Any]) -> dict[str, Any]:
    report["by_feature"] = {"unattributed": {"requests": 3, "tokens": {}, "share": {}, "cost_usd": 0.0}}
    report["price_unknown_requests"] = 3
    return report


def _garbage(report: dict[str, Any]) -> dict[str, Any]:
    report.update(
        period=None,
        tokens=None,
        share="x",
        by_feature=[],
        history_growth={"by_turn": "no"},
        savings=[{"strategy": None}],
        errors={"count": "2"},
        requests="many",
        cost_usd=float("nan"),
        monthly_cost_usd=None,
        verdict=None,
    )
    return report


@pytest.mark.parametrize("mutate", [_single_turn, _crossover_outside_data, _one_feature_no_price, _garbage])
def test_degenerate_reports_render(report: dict[str, Any], mutate: Any) -> None:
    root = parse(render_html(mutate(copy.deepcopy(report))))
    charts(root)
    assert not re.search(r"\b(nan|inf)\b", root.text(), re.I)


def test_unknown_prices_are_flagged(report: dict[str, Any]) -> None:
    root = parse(render_html(_one_feature_no_price(copy.deepcopy(report))))
    [callout] = root.find_all("p", cls="callout")
    assert "3 requests used a model without a known price" in callout.text()
    [bar] = charts(root)["features"].find_all("rect", cls="feature-bar")
    assert float(bar.attrs["width"]) == 0


def test_empty_dict_renders() -> None:
    root = parse(render_html({}))
    assert charts(root) == {}
    assert root.find_all(cls="verdict-badge")[0].text() == "No verdict"


# ---------------------------------------------------------------------------------------------
# The page in a real browser, when one is installed.


def _png_pixels_vary(png: bytes) -> bool:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat = 8, b""
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        if kind == b"IDAT":
            idat += png[offset + 8 : offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompress(idat)
    return len(set(raw)) > 32  # a blank page has a handful of byte values (filters + one colour)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_renders_in_headless_chromium(report: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        page, shot = Path(tmp) / "report.html", Path(tmp) / "report.png"
        page.write_text(render_html(report), encoding="utf-8")
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={Path(tmp) / 'profile'}",
                "--window-size=1280,1600",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        assert shot.exists() and _png_pixels_vary(shot.read_bytes())
