"""Rollups, on SQLite and PostgreSQL alike: kept equal to the events they summarise, and queried right."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import psycopg
import pytest

from faregate.ledger import CostEvent, LedgerStore, open_store
from faregate.ledger.migrations import POSTGRES, SQLITE
from faregate.ledger.rollups import DAY, HOUR, rebuild_statements
from tests.ledger import make_event

T0 = 1_700_000_000 - 1_700_000_000 % DAY  # midnight UTC
TABLES = {
    "rollup_hourly": "hour, feature, team, template, cohort, model",
    "rollup_users_daily": 'day, feature, "user"',
    "rollup_dau": "day, feature",
    "rollup_prefix_hourly": "hour, feature, prefix_hash, findings",
}


def fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    with psycopg.connect(url) as pg:
        return pg.execute(sql).fetchall()


def table(url: str, name: str) -> list[tuple[Any, ...]]:
    return [
        tuple(float(v) if isinstance(v, float) else v for v in row)
        for row in fetch(url, f"SELECT * FROM {name} ORDER BY {TABLES[name]}")
    ]


def random_event(rng: random.Random, n: int) -> CostEvent:
    cost = rng.randrange(0, 50_000)
    status = rng.choice(["hit", "semantic-hit", "miss", "bypass", None])
    shadow = rng.random() < 0.1
    return make_event(
        request_id=f"r{n:05d}",
        ts=T0 + rng.uniform(0, 3 * DAY),
        feature=rng.choice(["chat", "search", "summarize"]),
        team=rng.choice(["core", "growth"]),
        template=rng.choice(["v1", "v2", "unattributed"]),
        cohort=rng.choice(["a", "b"]),
        user=f"u{rng.randrange(12)}",
        task=rng.choice(["unattributed", "t1", "t2", "t3", "t4"]),
        model_used=rng.choice(["gpt-4o-mini", "gpt-4o", None]),
        model_requested=rng.choice(["gpt-4o", None]),
        status=rng.choice([200, 200, 200, 429, 502]),
        input_tokens=rng.randrange(1000),
        output_tokens=rng.randrange(200),
        cached_tokens=rng.randrange(100),
        cache_write_tokens=rng.randrange(100),
        cost_nusd=0 if status in ("hit", "semantic-hit") else cost,
        baseline_cost_nusd=cost + rng.randrange(0, 10_000),
        cache_status=status,
        tier=rng.choice(["small", "medium", "frontier", None]),
        prompt_cache_saving_nusd=rng.randrange(-500, 2000),
        routing_saving_nusd=rng.randrange(0, 3000),
        history_saving_nusd=rng.randrange(0, 1000),
        output_cap=rng.choice([None, 256]),
        output_capped=rng.choice([None, True, False]),
        system_tokens=rng.randrange(300),
        tools_tokens=rng.randrange(300),
        history_tokens=rng.randrange(300),
        context_tokens=rng.randrange(300),
        query_tokens=rng.randrange(300),
        overhead_tokens=rng.randrange(30),
        route_shadow_of="r00000" if shadow else None,
        route_agreed=rng.choice([True, False, None]) if shadow else None,
        route_fallback=rng.choice([True, False, None]),
        prefix_hash=rng.choice(["p1", "p2", "p3", None]),
        prefix_findings=rng.choice([None, None, "timestamp@system:1", "uuid@system:4;date@system:9"]),
    )


def write_randomly(store: LedgerStore, seed: int, count: int = 400) -> list[CostEvent]:
    """Random batches, some retried whole, some overlapping earlier ones, some with a repeat inside."""
    rng = random.Random(seed)
    events = [random_event(rng, n) for n in range(count)]
    i, batches = 0, []
    while i < len(events):
        size = rng.randrange(1, 60)
        batches.append(events[i : i + size])
        i += size
    for batch in batches:
        store.write_batch(batch)
        if rng.random() < 0.3:
            store.write_batch(batch)  # a retry after a lost commit acknowledgement
        if rng.random() < 0.2:
            store.write_batch([*batch[:3], *rng.sample(events[:i], min(5, i)), batch[0]])
    return events


def test_incremental_rollups_equal_a_rebuild_from_events(store: LedgerStore, store_url: str) -> None:
    events = write_randomly(store, seed=7)
    assert store.count() == len(events)
    incremental = {name: table(store_url, name) for name in TABLES}
    assert incremental["rollup_hourly"]
    store.rebuild_rollups()
    assert {name: table(store_url, name) for name in TABLES} == incremental


def test_rollups_equal_a_direct_computation(store: LedgerStore, store_url: str) -> None:
    events = write_randomly(store, seed=11)
    hourly: dict[tuple[Any, ...], list[int]] = {}
    for e in events:
        key = (
            int(e.ts // HOUR) * HOUR,
            e.feature,
            e.team,
            e.template,
            e.cohort,
            e.model_used or e.model_requested or "",
        )
        row = hourly.setdefault(key, [0, 0, 0, 0, 0, 0])
        row[0] += 1
        row[1] += e.cost_nusd
        row[2] += e.status >= 400
        row[3] += (e.baseline_cost_nusd - e.cost_nusd) if e.cache_status in ("hit", "semantic-hit") else 0
        row[4] += e.tier == "frontier" and e.route_shadow_of is None
        row[5] += e.routing_saving_nusd
    got = fetch(
        store_url,
        "SELECT hour, feature, team, template, cohort, model, requests, cost_nusd, errors, "
        "semantic_saving_nusd, tier_frontier, routing_saving_nusd FROM rollup_hourly",
    )
    assert {tuple(r[:6]): [int(v) for v in r[6:]] for r in got} == hourly
    dau: dict[tuple[int, str], set[str]] = {}
    for e in events:
        dau.setdefault((int(e.ts // DAY) * DAY, e.feature), set()).add(e.user)
    got_dau = fetch(store_url, "SELECT day, feature, users FROM rollup_dau")
    assert {(int(d), f): int(n) for d, f, n in got_dau} == {k: len(v) for k, v in dau.items()}


def test_migration_backfills_events_stored_before_it(store_url: str) -> None:
    if store_url.startswith("sqlite"):
        dialect, path = SQLITE, store_url
    else:
        dialect, path = POSTGRES, store_url
    s = open_store(path)
    try:
        events = write_randomly(s, seed=3, count=100)
        before = {name: table(store_url, name) for name in TABLES}
        # As if the rollups had never been kept: empty them, then run the migration's backfill.
        statements = rebuild_statements(dialect)
        for sql in statements[:3]:
            _execute(store_url, sql)
        assert table(store_url, "rollup_hourly") == []
        for sql in statements[3:]:
            _execute(store_url, sql)
        assert {name: table(store_url, name) for name in TABLES} == before
        assert sum(r[7] for r in before["rollup_hourly"]) == len(events)  # the requests column
    finally:
        s.close()


def _execute(url: str, sql: str) -> None:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        with conn:
            conn.execute(sql)
        conn.close()
    else:
        with psycopg.connect(url) as pg:
            pg.execute(sql)


def _usd(nanos: int) -> float:
    return nanos / 1e9


def test_overview_matches_events(store: LedgerStore) -> None:
    events = write_randomly(store, seed=5)
    since, until = T0 + 6 * HOUR, T0 + 2 * DAY  # a range cutting the data at hour boundaries
    inside = [e for e in events if since <= e.ts < until]
    got = store.overview(since, until)
    assert got["bucket"] == "hour" and got["since"] == since and got["until"] == until
    totals = got["totals"]
    assert totals["requests"] == len(inside)
    assert totals["errors"] == sum(e.status >= 400 for e in inside)
    assert totals["cost_usd"] == pytest.approx(_usd(sum(e.cost_nusd for e in inside)))
    assert totals["baseline_usd"] == pytest.approx(_usd(sum(e.baseline_cost_nusd for e in inside)))
    assert totals["input_tokens"] == sum(e.input_tokens for e in inside)
    savings = totals["savings_usd"]
    assert savings["prompt_cache"] == pytest.approx(_usd(sum(e.prompt_cache_saving_nusd for e in inside)))
    assert savings["history"] == pytest.approx(_usd(sum(e.history_saving_nusd for e in inside)))
    assert savings["caps"] == 0
    hits = [e for e in inside if e.cache_status in ("hit", "semantic-hit")]
    assert savings["semantic_cache"] == pytest.approx(
        _usd(sum(e.baseline_cost_nusd - e.cost_nusd for e in hits))
    )
    misses = sum(e.cache_status == "miss" for e in inside)
    assert got["cache"]["misses"] == misses
    assert got["cache"]["hit_rate"] == pytest.approx(len(hits) / (len(hits) + misses))
    assert got["routing"]["small"] == sum(e.tier == "small" and e.route_shadow_of is None for e in inside)
    by_hour: dict[int, int] = {}
    for e in inside:
        by_hour[int(e.ts // HOUR) * HOUR] = by_hour.get(int(e.ts // HOUR) * HOUR, 0) + 1
    assert {p["ts"]: p["requests"] for p in got["series"]} == by_hour
    daily = store.overview(T0, T0 + 3 * DAY)
    assert daily["bucket"] == "day" and [p["ts"] for p in daily["series"]] == [T0, T0 + DAY, T0 + 2 * DAY]
    assert sum(p["requests"] for p in daily["series"]) == len(events)


def test_attribution_matches_events_with_drill_down(store: LedgerStore) -> None:
    events = write_randomly(store, seed=9)
    since, until = T0, T0 + 3 * DAY
    got = store.attribution("team", since, until, {"feature": "chat", "model": "gpt-4o"})
    chosen = [
        e for e in events if e.feature == "chat" and (e.model_used or e.model_requested or "") == "gpt-4o"
    ]
    expected: dict[str, int] = {}
    for e in chosen:
        expected[e.team] = expected.get(e.team, 0) + e.cost_nusd
    assert {r["key"]: r["cost_usd"] for r in got["rows"]} == pytest.approx(
        {k: _usd(v) for k, v in expected.items()}
    )
    assert sum(r["share"] for r in got["rows"]) == pytest.approx(1.0)
    assert [r["key"] for r in got["rows"]] == sorted(expected, key=lambda k: -expected[k])
    assert sum(p["cost_usd"] for p in got["series"]) == pytest.approx(_usd(sum(expected.values())))

    users = store.attribution("user", since, until, {"feature": "search"})
    per_user: dict[str, int] = {}
    for e in events:
        if e.feature == "search":
            per_user[e.user] = per_user.get(e.user, 0) + e.cost_nusd
    assert {r["key"]: r["cost_usd"] for r in users["rows"]} == pytest.approx(
        {k: _usd(v) for k, v in per_user.items()}
    )
    # A filter the per-user rollup does not keep reads the events table instead.
    users_v1 = store.attribution("user", since, until, {"template": "v1"})
    per_user_v1: dict[str, int] = {}
    for e in events:
        if e.template == "v1":
            per_user_v1[e.user] = per_user_v1.get(e.user, 0) + e.cost_nusd
    assert {r["key"]: r["cost_usd"] for r in users_v1["rows"]} == pytest.approx(
        {k: _usd(v) for k, v in per_user_v1.items()}
    )
    with pytest.raises(ValueError):
        store.attribution("conversation", since, until)


def test_unit_economics_joins_task_outcomes(store: LedgerStore) -> None:
    events = write_randomly(store, seed=13)
    store.record_task("t1", "chat", "failure", None, T0 + 10)
    store.record_task("t1", "chat", "success", 0.9, T0 + 20)  # the latest outcome wins
    store.record_task("t2", "chat", "success", None, T0 + 30)
    store.record_task("t3", "chat", "failure", None, T0 + 40)
    store.record_task("t4", "search", "success", None, T0 + DAY + 5)
    got = store.unit_economics(T0, T0 + 3 * DAY)
    assert got["bucket"] == "day"
    rows = {(r["ts"], r["feature"]): r for r in got["rows"]}
    chat = rows[(T0, "chat")]
    task_cost = {t: sum(e.cost_nusd for e in events if e.task == t) for t in ("t1", "t2", "t4")}
    assert (chat["completions"], chat["failures"]) == (2, 1)
    assert chat["cost_per_completion"] == pytest.approx(_usd(task_cost["t1"] + task_cost["t2"]) / 2)
    day_chat = [e for e in events if e.feature == "chat" and T0 <= e.ts < T0 + DAY]
    assert chat["cost_usd"] == pytest.approx(_usd(sum(e.cost_nusd for e in day_chat)))
    assert chat["dau"] == len({e.user for e in day_chat})
    assert chat["cost_per_dau"] == pytest.approx(chat["cost_usd"] / chat["dau"])
    assert rows[(T0 + DAY, "search")]["cost_per_completion"] == pytest.approx(_usd(task_cost["t4"]))
    hourly = store.unit_economics(T0, T0 + DAY, "hour")
    assert all(r["dau"] is None for r in hourly["rows"])


def test_templates_report_quality_and_regressions(store: LedgerStore) -> None:
    events = [
        make_event(
            request_id=f"a{i}",
            feature="faq",
            template="v1",
            ts=T0 + i,
            cost_nusd=1000,
            system_tokens=50,
            query_tokens=10,
        )
        for i in range(30)
    ]
    events += [
        make_event(request_id=f"b{i}", feature="faq", template="v2", ts=T0 + HOUR + i, cost_nusd=1200)
        for i in range(30)
    ]
    events += [
        make_event(
            request_id=f"s{i}",
            feature="faq",
            template="v2",
            ts=T0 + HOUR + 100 + i,
            cost_nusd=0,
            route_shadow_of=f"b{i}",
            route_agreed=i % 3 != 0,
        )
        for i in range(6)
    ]
    store.write_batch(events)
    store.record_feedback("a1", 1.0, T0 + 500)
    store.record_feedback("a2", 0.5, T0 + 500)
    store.record_feedback("b1", 1.0, T0 + HOUR + 500)
    got = store.templates(T0, T0 + DAY, threshold=0.10)
    (faq,) = got["features"]
    v1, v2 = faq["templates"]
    assert (v1["template"], v1["requests"], v2["requests"]) == ("v1", 30, 36)
    assert v1["cost_per_request_usd"] == pytest.approx(1e-6)
    assert v2["cost_per_request_usd"] == pytest.approx(30 * 1.2e-6 / 36)
    assert v1["tokens"]["system"] == 30 * 50 and v1["tokens"]["output"] == 30 * 10
    assert v1["feedback_mean"] == pytest.approx(0.75) and v2["feedback_mean"] == pytest.approx(1.0)
    assert v1["shadow_agreement"] is None and v2["shadow_agreement"] == pytest.approx(4 / 6)
    assert v1["first_seen"] == pytest.approx(T0)
    assert faq["regressions"] == []  # 36 requests cost 1.0x per request: no cost regression
    store.write_batch(
        [
            make_event(request_id=f"c{i}", feature="faq", template="v3", ts=T0 + 2 * HOUR + i, cost_nusd=1500)
            for i in range(25)
        ]
    )
    (faq,) = store.templates(T0, T0 + DAY, feature="faq", threshold=0.10)["features"]
    (reg,) = faq["regressions"]
    assert (reg["template"], reg["previous"]) == ("v3", "v2")
    assert reg["cost_increase"] == pytest.approx(1.5 / (36 / 36 * 30 * 1.2 / 36) - 1)
    assert "template regression" in reg["message"]


def test_anatomy_sums_components(store: LedgerStore) -> None:
    events = write_randomly(store, seed=17)
    got = store.anatomy(T0, T0 + 3 * DAY)
    chat = next(f for f in got["features"] if f["feature"] == "chat")
    mine = [e for e in events if e.feature == "chat"]
    assert chat["requests"] == len(mine)
    assert chat["tokens"]["history"] == sum(e.history_tokens for e in mine)
    assert sum(chat["shares"].values()) == pytest.approx(1.0)


def test_prompt_cache_and_routing_reports_from_rollups_match_the_events(store: LedgerStore) -> None:
    """The two reports the dashboard reads beside the rollup endpoints: computed from the rollups,
    they must equal a direct computation over the events."""
    rng = random.Random(11)
    events = [random_event(rng, n) for n in range(400)]
    store.write_batch(events)
    [chat] = [e for e in store.prompt_cache() if e["feature"] == "chat"]
    mine = [e for e in events if e.feature == "chat"]
    assert chat["requests"] == len(mine)
    assert chat["cache_read_tokens"] == sum(e.cached_tokens for e in mine)
    assert chat["distinct_prefixes"] == len({e.prefix_hash for e in mine if e.prefix_hash})
    per_hour: dict[int, set[str]] = {}
    for e in mine:
        per_hour.setdefault(int(e.ts // 3600), set()).update([e.prefix_hash] if e.prefix_hash else [])
    assert chat["prefix_churn"]["peak_per_hour"] == max(len(s) for s in per_hour.values())
    assert chat["prefix_churn"]["hours"] == len(per_hour)
    found = {f["kind"]: f["requests"] for f in chat["findings"]}
    assert found["timestamp"] == sum(1 for e in mine if e.prefix_findings == "timestamp@system:1")
    [routed] = [e for e in store.routing() if e["feature"] == "chat"]
    direct = [e for e in mine if e.tier is not None and e.route_shadow_of is None]
    assert {t: v["requests"] for t, v in routed["tiers"].items()} == {
        t: n for t in ("small", "medium", "frontier") if (n := sum(1 for e in direct if e.tier == t))
    }
    assert routed["fallbacks"] == sum(1 for e in mine if e.route_fallback and e.route_shadow_of is None)
