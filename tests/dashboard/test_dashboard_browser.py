"""The dashboard in a real headless chromium: every page renders its charts without console errors,
shows the admin API's numbers, and treats attribution values as text (feature names with HTML or
script in them are shown, never executed). Screenshots land in tests/dashboard/screenshots/.

Runs against a real gateway whose ledger was filled by requests through it when the dashboard's
JSON endpoints (`faregate.server.api`) exist, else against a fake of their documented contract.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from faregate.server.dashboard import CSP, PAGES, dashboard_routes
from tests.dashboard.conftest import XSS_IMG, XSS_SCRIPT, Page, ServedApp, contract_app
from tests.fixtures.gateway import RunningGateway

# Per page: the chart slots it must draw (at least one SVG each).
CHARTS = {
    "overview": {"spend", "requests", "savings-over-time", "savings-by-strategy", "cache", "routing-mix"},
    "attribution": {"attribution-bars", "attribution-series"},
    "unit-economics": {"cost-per-completion", "cost-per-dau", "completions", "cost-per-completion-total"},
    "templates": {"template-cost", "template-tokens"},
    "anatomy": {"anatomy-shares", "anatomy-per-request"},
    "prompt-cache": {"cache-read-ratio", "prefix-churn"},
    "budgets": {"budget-usage"},
}
MAY_BE_EMPTY = {"savings-over-time", "cache"}
FEATURES = ("support-chat", "search", XSS_IMG, XSS_SCRIPT)


@dataclass
class Site:
    url: str
    real: bool

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/faregate/v1/{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()


def _has_api() -> bool:
    """The real endpoints, unless FAREGATE_TEST_DASHBOARD_FAKE=1 asks for the contract fake."""
    if os.environ.get("FAREGATE_TEST_DASHBOARD_FAKE") == "1":
        return False
    return importlib.util.find_spec("faregate.server.api") is not None


def _seed(gw: RunningGateway) -> int:
    """Real requests through the gateway to the fake provider, spread over features, teams, templates."""
    sent = 0
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        for i in range(16):
            feature = FEATURES[i % len(FEATURES)]
            headers = {
                "Authorization": "Bearer sk-client-openai",
                "X-FareGate-Feature": feature,
                "X-FareGate-Team": ("growth", "core")[i % 2],
                "X-FareGate-Template": f"{feature}-v{1 + i % 3 // 2}",
                "X-FareGate-Cohort": ("beta", "ga")[i % 3 // 2],
                "X-FareGate-User": f"user-{i % 5}",
                "X-FareGate-Task": f"task-{i}",
            }
            body: dict[str, Any] = {
                # support-chat asks for the frontier model and is routed down (a routing saving).
                "model": "gpt-4o" if feature == "support-chat" else "gpt-4o-mini",
                "max_tokens": 400,
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant. " * (1 + i % 4)},
                    {"role": "user", "content": f"question number {i}: " + "words " * (5 + 7 * i)},
                ],
            }
            response = client.post("/v1/chat/completions", json=body, headers=headers)
            assert response.status_code == 200, response.text
            sent += 1
            # Most tasks complete (cost per completion), one in four fails; some answers are rated.
            outcome = {
                "task_id": f"task-{i}",
                "feature": feature,
                "outcome": "failure" if i % 4 == 3 else "success",
            }
            assert client.post("/faregate/v1/events", json=outcome).status_code == 200
            rating = {"request_id": response.headers["x-faregate-request-id"], "rating": (i % 5) / 4}
            assert client.post("/faregate/v1/feedback", json=rating).status_code == 200
    return sent


@pytest.fixture
def site(make_gateway: Callable[..., RunningGateway]) -> Iterator[Site]:
    if not _has_api():
        served = ServedApp(contract_app())
        try:
            yield Site(served.url, real=False)
        finally:
            served.stop()
        return
    gw = make_gateway(
        budgets=[{"scope": "feature", "name": XSS_IMG, "period": "day", "limit_usd": "1.00"}],
        routing={"tiers": {"small": "gpt-4o-mini", "frontier": "gpt-4o"}},
        features={"support-chat": {"routing": True}, "search": {"max_output_tokens": 16}},
    )
    paths = {getattr(route, "path", None) for route in gw.app.router.routes}
    assert {"/faregate/v1/overview", "/dashboard"} <= paths  # the admin routes mount both
    sent = _seed(gw)
    assert len(gw.events()) == sent
    yield Site(gw.url, real=True)


def _money_digits(value: float) -> int:
    a = abs(value)
    return 2 if a >= 100 else 4 if a >= 0.01 or a == 0 else 6


def assert_money(shown: str, expected: float) -> None:
    """The page's `$1,234.5678` is the API's number rounded to the digits the page shows."""
    value = float(shown.replace("$", "").replace(",", ""))
    assert abs(value - expected) <= 0.5 * 10 ** -_money_digits(expected) + 1e-12, (shown, expected)


async def metric(page: Page, name: str) -> dict[str, str]:
    found = await page.evaluate(
        f"(() => {{ const e = document.querySelector('[data-metric=\"{name}\"]');"
        " return e && {text: e.textContent, value: e.dataset.value}; })()"
    )
    assert found, f"no [data-metric={name}] on the page"
    return dict(found)


async def window_of(page: Page) -> dict[str, str]:
    found = await page.evaluate(
        "({since: document.body.dataset.since, until: document.body.dataset.until,"
        " bucket: document.body.dataset.bucket})"
    )
    return dict(found)


async def chart_slots(page: Page) -> dict[str, list[int]]:
    slots = await page.evaluate(
        "[...document.querySelectorAll('figure.chart')].map(f => [f.dataset.chart,"
        " f.querySelectorAll('svg').length, f.querySelectorAll('svg rect, svg path, svg circle').length])"
    )
    found: dict[str, list[int]] = {}
    for name, svgs, marks in slots:
        found.setdefault(name, []).append(marks)
        assert svgs >= 1, (name, svgs)
    return found


def page_url(site: Site, name: str, query: str = "") -> str:
    path = "/dashboard/" if name == "overview" else f"/dashboard/{name}"
    return f"{site.url}{path}{query}"


async def test_every_page_renders_its_charts_without_errors(site: Site, page: Page) -> None:
    for name in PAGES:
        await page.goto(page_url(site, name))
        assert await page.evaluate("document.body.dataset.error") == "", name
        assert page.errors == [], (name, page.errors)
        slots = await chart_slots(page)
        assert CHARTS[name] <= set(slots), (name, slots)
        # Every chart draws marks (bars, lines, areas) from the seeded history, except the savings
        # and response-cache charts when the seeded gateway saved nothing (they say so instead).
        for chart, marks in slots.items():
            if chart in MAY_BE_EMPTY and site.real:
                continue
            assert min(marks) >= 1, (name, chart, marks)
        await page.screenshot(f"{name}")
        assert page.errors == [], (name, page.errors)
    assert page.dialogs == []
    assert await page.evaluate("typeof window.__pwned") == "undefined"


async def test_overview_numbers_equal_the_api(site: Site, page: Page) -> None:
    await page.goto(page_url(site, "overview"))
    window = await window_of(page)
    api = site.api("overview", **window)
    totals = api["totals"]
    cost = await metric(page, "total-cost")
    assert float(cost["value"]) == totals["cost_usd"]
    assert_money(cost["text"], totals["cost_usd"])
    requests = await metric(page, "total-requests")
    assert int(requests["text"].replace(",", "")) == totals["requests"]
    if site.real:
        assert totals["requests"] == 16
    baseline = await metric(page, "total-baseline")
    assert_money(baseline["text"], totals["baseline_usd"])
    saved = await metric(page, "total-savings")
    assert_money(saved["text"], sum(totals["savings_usd"].values()))
    # One point per bucket of the API's series on the spend chart (spend and baseline lines).
    points = await page.evaluate(
        "document.querySelector('figure[data-chart=\"spend\"] g.series').querySelectorAll('circle').length"
    )
    assert points == len({p["ts"] for p in api["series"]})
    assert page.errors == []


async def test_attribution_numbers_drill_down_and_back(site: Site, page: Page) -> None:
    await page.goto(page_url(site, "attribution"))
    window = await window_of(page)
    api = site.api("attribution", by="feature", **window)
    rows = sorted(api["rows"], key=lambda r: -r["cost_usd"])
    top = rows[0]
    shown = await page.evaluate(
        "[...document.querySelectorAll('tbody tr')].map(tr => [tr.dataset.key,"
        " tr.querySelector('[data-metric=\"row-cost\"]').textContent,"
        " tr.querySelector('[data-metric=\"row-requests\"]').textContent])"
    )
    assert [key for key, _, _ in shown] == [r["key"] for r in rows]
    assert shown[0][0] == top["key"]
    assert_money(shown[0][1], top["cost_usd"])
    for (_, cost, requests), row in zip(shown, rows, strict=True):
        assert_money(cost, row["cost_usd"])
        assert int(requests.replace(",", "")) == row["requests"]
    assert_money((await metric(page, "attribution-cost"))["text"], sum(r["cost_usd"] for r in rows))
    tabs = "[...document.querySelectorAll('.tabs button')].map(b => b.dataset.by)"
    assert "user" not in await page.evaluate(tabs)  # spend by user is offered inside a feature only
    await page.screenshot("attribution-by-feature")

    # Drill into the top feature: the page asks for its spend by team, and shows what the API says.
    clicked = await page.evaluate(
        f"(() => {{ const g = [...document.querySelectorAll('figure[data-chart=\"attribution-bars\"] g.bar')]"
        f".find(g => g.dataset.key === {_js(top['key'])}); if (!g) return false;"
        " g.dispatchEvent(new MouseEvent('click', {bubbles: true})); return true; })()"
    )
    assert clicked
    await page.wait_for("document.body.dataset.ready === '1' && location.search.includes('by=team')")
    query = await page.evaluate("location.search")
    assert "feature=" in query
    drilled = site.api("attribution", by="team", feature=top["key"], **await window_of(page))
    teams = await page.evaluate("[...document.querySelectorAll('tbody tr')].map(tr => tr.dataset.key)")
    assert sorted(teams) == sorted(r["key"] for r in drilled["rows"])
    total = sum(r["cost_usd"] for r in drilled["rows"])
    assert_money((await metric(page, "attribution-cost"))["text"], total)
    crumbs = await page.evaluate("[...document.querySelectorAll('.crumbs button')].map(b => b.textContent)")
    assert crumbs == ["All", f"feature: {top['key']}"]
    assert "user" in await page.evaluate(tabs)
    await page.screenshot("attribution-drilled")

    # Breadcrumb back to everything.
    await page.evaluate("document.querySelector('.crumbs button[data-crumb=\"all\"]').click()")
    await page.wait_for("document.body.dataset.ready === '1' && !location.search.includes('feature=')")
    keys = await page.evaluate("[...document.querySelectorAll('tbody tr')].map(tr => tr.dataset.key)")
    assert sorted(keys) == sorted(r["key"] for r in rows)

    # The range picker reloads with a 7-day window and daily buckets.
    await page.evaluate("document.querySelector('#range button[data-range=\"7d\"]').click()")
    await page.wait_for("document.body.dataset.ready === '1' && document.body.dataset.bucket === 'day'")
    window = await window_of(page)
    assert int(window["until"]) - int(window["since"]) == 7 * 86400
    assert page.errors == []


async def test_html_in_feature_names_is_text(site: Site, page: Page) -> None:
    for name in ("attribution", "unit-economics", "templates", "anatomy", "prompt-cache", "budgets"):
        await page.goto(page_url(site, name))
        text = await page.evaluate("document.querySelector('main').textContent")
        assert XSS_IMG in text, name
        if name != "budgets":  # the one budget is on the <img> feature
            assert XSS_SCRIPT in text, name
        injected = await page.evaluate(
            "document.querySelectorAll('main img, main script, main iframe').length"
        )
        assert injected == 0, name
        assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert page.dialogs == []
    assert page.errors == []


async def test_budgets_numbers_equal_the_api(site: Site, page: Page) -> None:
    await page.goto(page_url(site, "budgets"))
    api = site.api("budgets", **await window_of(page))
    shown = await page.evaluate(
        "[...document.querySelectorAll('tbody tr')].map(tr => [tr.dataset.key,"
        " tr.querySelector('[data-metric=\"budget-spent\"]').textContent,"
        " tr.querySelector('[data-metric=\"budget-limit\"]').textContent])"
    )
    assert [key for key, _, _ in shown] == [b["budget"] for b in api["budgets"]]
    assert api["budgets"], "the site has a budget configured"
    for (_, spent, limit), budget in zip(shown, api["budgets"], strict=True):
        assert_money(spent, budget["spent_usd"])
        assert_money(limit, budget["limit_usd"])


def _js(value: str) -> str:
    import json

    return json.dumps(value)


# ---------- the routes themselves, no browser needed ----------


async def test_shell_and_assets_are_served_with_a_strict_csp() -> None:
    from starlette.applications import Starlette

    app = Starlette(routes=dashboard_routes(lambda handler: handler))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for path in ("/dashboard", "/dashboard/", "/dashboard/attribution", "/dashboard/prompt-cache"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["content-security-policy"] == CSP
            assert '<script type="module" src="/dashboard/static/app.js">' in response.text
            assert "http://" not in response.text and "https://" not in response.text  # no CDN
        for asset, kind in (
            ("app.js", "text/javascript"),
            ("charts.js", "text/javascript"),
            ("style.css", "text/css"),
        ):
            response = await client.get(f"/dashboard/static/{asset}")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith(kind)
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "innerHTML" not in response.text and "insertAdjacentHTML" not in response.text
        assert (await client.get("/dashboard/static/..%2F__init__.py")).status_code == 404
        assert (await client.get("/dashboard/static/missing.js")).status_code == 404
        assert (await client.get("/dashboard/nope")).status_code == 404
    assert "'unsafe-inline'" not in CSP and "default-src 'self'" in CSP
