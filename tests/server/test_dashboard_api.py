"""The dashboard API through a real gateway: SDK requests in, rollup-backed JSON out."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.fixtures.gateway import RunningGateway
from tests.server._support import openai_client


@pytest.fixture
def gw(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    running = make_gateway()
    paths = {getattr(route, "path", None) for route in running.app.router.routes}
    assert "/faregate/v1/overview" in paths  # mounted by the admin routes
    return running


def ask(gw: RunningGateway, *, feature: str, task: str, user: str, template: str) -> None:
    headers = {
        "X-FareGate-Feature": feature,
        "X-FareGate-Task": task,
        "X-FareGate-User": user,
        "X-FareGate-Template": template,
        "X-FareGate-Team": "support",
    }
    with openai_client(gw) as client:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"hi {task}"}],
            extra_headers=headers,
        )


def test_dashboard_numbers_follow_the_requests(gw: RunningGateway) -> None:
    ask(gw, feature="faq", task="t-1", user="ann", template="faq-v1")
    ask(gw, feature="faq", task="t-1", user="ann", template="faq-v1")
    ask(gw, feature="faq", task="t-2", user="bob", template="faq-v2")
    ask(gw, feature="chat", task="t-3", user="ann", template="chat-v1")
    events = gw.events()  # flushes the writer
    assert len(events) == 4
    api = f"{gw.url}/faregate/v1"

    ok = httpx.post(
        f"{api}/events", json={"task_id": "t-1", "feature": "faq", "outcome": "success", "score": 0.8}
    )
    assert ok.status_code == 200 and ok.json()["task_id"] == "t-1" and ok.json()["score"] == 0.8
    assert (
        httpx.post(
            f"{api}/events", json={"task_id": "t-2", "feature": "faq", "outcome": "failure"}
        ).status_code
        == 200
    )

    overview = httpx.get(f"{api}/overview").json()
    assert overview["bucket"] == "day"  # 7 days by default
    total = sum(e.cost_nusd for e in events) / 1e9
    assert overview["totals"]["requests"] == 4
    assert overview["totals"]["cost_usd"] == pytest.approx(total)
    assert set(overview["totals"]["savings_usd"]) == {
        "prompt_cache",
        "semantic_cache",
        "routing",
        "history",
        "caps",
    }
    assert sum(p["requests"] for p in overview["series"]) == 4
    assert set(overview["cache"]) == {"exact_hits", "semantic_hits", "misses", "hit_rate"}
    assert set(overview["routing"]) == {"small", "medium", "frontier"}

    now = time.time()
    hourly = httpx.get(f"{api}/overview", params={"since": now - 3600, "until": now + 1}).json()
    assert hourly["bucket"] == "hour" and hourly["totals"]["requests"] == 4

    by_feature = httpx.get(f"{api}/attribution", params={"by": "feature"}).json()
    rows = {r["key"]: r for r in by_feature["rows"]}
    assert rows["faq"]["requests"] == 3 and rows["chat"]["requests"] == 1
    assert sum(r["share"] for r in by_feature["rows"]) == pytest.approx(1.0)
    by_template = httpx.get(f"{api}/attribution", params={"by": "template", "feature": "faq"}).json()
    assert {r["key"]: r["requests"] for r in by_template["rows"]} == {"faq-v1": 2, "faq-v2": 1}
    by_user = httpx.get(f"{api}/attribution", params={"by": "user"}).json()
    assert {r["key"]: r["requests"] for r in by_user["rows"]} == {"ann": 3, "bob": 1}
    by_user_team = httpx.get(f"{api}/attribution", params={"by": "user", "team": "support"}).json()
    assert {r["key"]: r["requests"] for r in by_user_team["rows"]} == {"ann": 3, "bob": 1}

    unit = httpx.get(f"{api}/unit-economics").json()
    assert unit["bucket"] == "day"
    faq = [r for r in unit["rows"] if r["feature"] == "faq"]
    assert sum(r["completions"] for r in faq) == 1 and sum(r["failures"] for r in faq) == 1
    t1_cost = sum(e.cost_nusd for e in events if e.task == "t-1") / 1e9
    (done,) = [r for r in faq if r["completions"]]
    assert done["cost_per_completion"] == pytest.approx(t1_cost)
    faq_today = [r for r in faq if r["dau"]]
    assert sum(r["dau"] for r in faq_today) >= 2  # ann and bob (one day, unless the test spans midnight)

    templates = httpx.get(f"{api}/templates", params={"feature": "faq"}).json()
    (entry,) = templates["features"]
    assert [t["template"] for t in entry["templates"]] == ["faq-v1", "faq-v2"]
    v1 = entry["templates"][0]
    assert v1["requests"] == 2 and v1["tokens"]["system"] > 0 and v1["tokens"]["output"] > 0
    assert entry["regressions"] == []  # under 20 requests a template is not compared

    anatomy = httpx.get(f"{api}/anatomy").json()
    faq_anatomy = next(f for f in anatomy["features"] if f["feature"] == "faq")
    assert faq_anatomy["requests"] == 3 and sum(faq_anatomy["shares"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "body",
    [
        {"feature": "faq", "outcome": "success"},
        {"task_id": "", "feature": "faq", "outcome": "success"},
        {"task_id": "x" * 257, "feature": "faq", "outcome": "success"},
        {"task_id": "t", "feature": "faq", "outcome": "done"},
        {"task_id": "t", "feature": "faq", "outcome": "success", "score": "high"},
        {"task_id": "t", "feature": "faq", "outcome": "success", "score": True},
        {"task_id": "t", "outcome": "success"},
        ["t", "success"],
    ],
)
def test_bad_task_events_are_refused(gw: RunningGateway, body: object) -> None:
    response = httpx.post(f"{gw.url}/faregate/v1/events", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "admin_error"


def test_bad_queries_are_refused(gw: RunningGateway) -> None:
    api = f"{gw.url}/faregate/v1"
    assert httpx.post(f"{api}/events", content=b"{nope").status_code == 400
    assert (
        httpx.post(
            f"{api}/events", content=b'{"task_id":"t","feature":"f","outcome":"success","score":NaN}'
        ).status_code
        == 400
    )
    for path, params in [
        ("overview", {"since": "yesterday"}),
        ("overview", {"bucket": "week"}),
        ("overview", {"since": "200", "until": "100"}),
        ("attribution", {"by": "conversation"}),
    ]:
        response = httpx.get(f"{api}/{path}", params=params)
        assert response.status_code == 400, (path, params)
        assert response.json()["error"]["type"] == "admin_error"
