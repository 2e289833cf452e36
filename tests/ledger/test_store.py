"""The store contract, run against SQLite and PostgreSQL alike: same inputs, same answers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from faregate.ledger import LedgerStore, open_store
from faregate.ledger.store import InvalidEventError
from tests.ledger import make_event


def test_round_trip_keeps_every_field(store: LedgerStore) -> None:
    written = [
        make_event(
            ts=1.5,
            stream=True,
            usage_estimated=True,
            price_known=False,
            cost_nusd=75,
            tier="small",
            cache_status="verify",
            cache_verified=False,
        ),
        make_event(ts=2.5, cache_status="semantic-hit", cache_similarity=0.93125, cache_verified=True),
        make_event(
            ts=1_700_000_001.123456,  # a double survives to the microsecond
            provider=None,
            model_requested=None,
            model_used=None,
            status=502,
            error_kind="upstream_error",
            upstream_ms=None,
            cache_status="miss",
            cost_nusd=2**62,  # ~4.6 billion dollars: needs 64-bit columns, not 32
        ),
    ]
    store.write_batch(written)
    read = store.events()
    assert read == written
    assert all(type(e.stream) is bool and type(e.price_known) is bool for e in read)


def test_duplicate_request_ids_are_ignored(store: LedgerStore) -> None:
    first = make_event(request_id="a", cost_nusd=1)
    store.write_batch([first, make_event(request_id="b")])
    # A retried batch (and a repeat inside one batch) must neither fail nor double-count.
    store.write_batch([make_event(request_id="a", cost_nusd=999), make_event(request_id="c")] * 2)
    assert store.count() == 3
    assert [e for e in store.events() if e.request_id == "a"] == [first]


def test_a_refused_batch_stores_nothing(store: LedgerStore) -> None:
    good = make_event()
    bad = make_event(feature=None)  # NOT NULL
    with pytest.raises(InvalidEventError):
        store.write_batch([good, bad])
    assert store.count() == 0
    store.write_batch([good])
    assert store.count() == 1


def test_empty_batch_is_a_no_op(store: LedgerStore) -> None:
    store.write_batch([])
    assert store.count() == 0


def test_spend_groups_sums_and_orders_by_cost(store: LedgerStore) -> None:
    store.write_batch(
        [
            make_event(feature="chat", team="a", cost_nusd=100, input_tokens=10, output_tokens=1),
            make_event(feature="chat", team="a", cost_nusd=200, input_tokens=20, cached_tokens=5),
            make_event(feature="chat", team="b", cost_nusd=1_000, cache_write_tokens=7, output_tokens=3),
            make_event(feature="search", team="a", cost_nusd=50, input_tokens=1, output_tokens=2),
        ]
    )
    rows = store.spend(["feature", "team"])
    assert rows == [
        {
            "feature": "chat",
            "team": "b",
            "requests": 1,
            "cost_usd": Decimal("0.000001"),
            "input_tokens": 100,
            "cached_tokens": 0,
            "cache_write_tokens": 7,
            "output_tokens": 3,
        },
        {
            "feature": "chat",
            "team": "a",
            "requests": 2,
            "cost_usd": Decimal("0.0000003"),
            "input_tokens": 30,
            "cached_tokens": 5,
            "cache_write_tokens": 0,
            "output_tokens": 1 + 10,
        },
        {
            "feature": "search",
            "team": "a",
            "requests": 1,
            "cost_usd": Decimal("0.00000005"),
            "input_tokens": 1,
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "output_tokens": 2,
        },
    ]
    assert [r["feature"] for r in store.spend(["feature"])] == ["chat", "search"]
    assert [(r["team"], r["requests"]) for r in store.spend(["team"])] == [("b", 1), ("a", 3)]


def test_spend_cost_is_exact(store: LedgerStore) -> None:
    # 0.1 + 0.2 != 0.3 in floats, and a cached token can cost 0.075 micro-dollars.
    store.write_batch(
        [make_event(cost_nusd=100_000_000), make_event(cost_nusd=200_000_000)]
        + [make_event(feature="cached", cost_nusd=75) for _ in range(3)]
    )
    by_feature = {r["feature"]: r["cost_usd"] for r in store.spend(["feature"])}
    assert by_feature == {"chat": Decimal("0.3"), "cached": Decimal("0.000000225")}
    assert all(isinstance(v, Decimal) for v in by_feature.values())


def test_spend_since_is_inclusive_and_filters(store: LedgerStore) -> None:
    store.write_batch([make_event(ts=t, cost_nusd=int(t)) for t in (100.0, 200.0, 300.0)])
    assert store.spend([], since=200.0)[0]["requests"] == 2
    assert store.spend([], since=200.0)[0]["cost_usd"] == Decimal("5e-7")
    assert store.spend([], since=300.5) == []
    assert store.spend([], since=None)[0]["requests"] == 3


def test_spend_without_keys_is_the_total(store: LedgerStore) -> None:
    assert store.spend([]) == []
    store.write_batch([make_event(cost_nusd=5), make_event(cost_nusd=7, input_tokens=1)])
    (total,) = store.spend([])
    assert total == {
        "requests": 2,
        "cost_usd": Decimal("1.2e-8"),
        "input_tokens": 101,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 20,
    }


def test_spend_by_model_provider_and_status_keeps_missing_values(store: LedgerStore) -> None:
    store.write_batch(
        [
            make_event(model_used="gpt-4o", cost_nusd=10),
            make_event(model_used=None, provider=None, status=400, cost_nusd=0),
            make_event(model_used="gpt-4o", status=429, cost_nusd=0),
        ]
    )
    rows = store.spend(["model_used", "status"])
    # Most expensive first; ties by key, NULL last on both backends.
    assert [(r["model_used"], r["status"]) for r in rows] == [("gpt-4o", 200), ("gpt-4o", 429), (None, 400)]
    assert [r["provider"] for r in store.spend(["provider"])] == ["openai", None]


def test_spend_repeated_keys_count_once(store: LedgerStore) -> None:
    store.write_batch([make_event()])
    assert list(store.spend(["feature", "feature"])[0]) == [
        "feature",
        "requests",
        "cost_usd",
        "input_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "output_tokens",
    ]


@pytest.mark.parametrize("by", [["cost_nusd"], ["feature", "request_id"], ["feature; DROP TABLE events"]])
def test_spend_refuses_unknown_keys(store: LedgerStore, by: list[str]) -> None:
    store.write_batch([make_event()])
    with pytest.raises(ValueError, match="allowed keys: feature, team, template") as info:
        store.spend(by)
    assert "model_used" in str(info.value)
    assert store.count() == 1


def test_spend_refuses_a_bare_string(store: LedgerStore) -> None:
    with pytest.raises(ValueError, match="sequence of keys"):
        store.spend("feature")


def test_events_since_and_limit_oldest_first(store: LedgerStore) -> None:
    written = [make_event(ts=t) for t in (3.0, 1.0, 2.0, 4.0)]
    store.write_batch(written)
    assert [e.ts for e in store.events()] == [1.0, 2.0, 3.0, 4.0]
    assert [e.ts for e in store.events(since=2.0)] == [2.0, 3.0, 4.0]
    assert [e.ts for e in store.events(since=2.0, limit=2)] == [2.0, 3.0]
    assert store.events(limit=0) == []
    with pytest.raises(ValueError):
        store.events(limit=-1)


def test_rows_survive_reopening(store: LedgerStore, store_url: str) -> None:
    event = make_event()
    store.write_batch([event])
    reopened = open_store(store_url)
    try:
        assert reopened.events() == [event]
    finally:
        reopened.close()


def test_prompt_cache_report_counts_churn_ratio_saving_and_findings(store: LedgerStore) -> None:
    hour = 1_700_002_800.0  # the start of an hour
    events = [
        # "support": one stable prefix over two hours, cache reads in the second
        make_event(feature="support", ts=hour + 1, prefix_hash="aa", input_tokens=1000, cached_tokens=0),
        make_event(
            feature="support",
            ts=hour + 3601,
            prefix_hash="aa",
            input_tokens=1000,
            cached_tokens=900,
            prompt_cache_saving_nusd=2_430,
        ),
        # "chat": a timestamp makes every prefix new; two of three scans found it
        *[
            make_event(
                feature="chat",
                ts=hour + 10 + i,
                prefix_hash=f"c{i}",
                input_tokens=500,
                cache_write_tokens=400,
                prompt_cache_saving_nusd=-300,
                prefix_findings=["timestamp@system:10-30", "timestamp@system:10-31", None][i],
            )
            for i in range(3)
        ],
        make_event(
            feature="chat",
            ts=hour + 20,
            prefix_hash="c9",
            prefix_findings="tool_order@tools;uuid@system:0-36",
        ),
        make_event(feature="old", ts=hour - 7200, prefix_hash="zz"),
    ]
    store.write_batch(events)
    report = {entry["feature"]: entry for entry in store.prompt_cache(since=hour)}
    assert set(report) == {"support", "chat"}
    support, chat = report["support"], report["chat"]
    assert support["requests"] == 2
    assert support["cache_read_ratio"] == pytest.approx(0.45)
    assert support["saving_usd"] == Decimal("0.000002430")
    assert support["distinct_prefixes"] == 1
    assert support["prefix_churn"] == {"hours": 2, "total": 2, "peak_per_hour": 1}
    assert support["findings"] == []
    assert chat["requests"] == 4
    assert chat["cache_write_tokens"] == 1200
    assert chat["saving_usd"] == Decimal("-0.000000900")
    assert chat["prefix_churn"] == {"hours": 1, "total": 4, "peak_per_hour": 4}
    assert chat["findings"] == [
        {"kind": "timestamp", "location": "system:10-30", "requests": 2},
        {"kind": "tool_order", "location": "tools", "requests": 1},
        {"kind": "uuid", "location": "system:0-36", "requests": 1},
    ]
    assert [e["feature"] for e in store.prompt_cache()] == ["chat", "support", "old"]


def test_response_cache_report_counts_statuses_savings_and_verified_precision(store: LedgerStore) -> None:
    events = [
        make_event(feature="faq", cache_status="hit", cost_nusd=0, baseline_cost_nusd=1_000),
        *[
            make_event(feature="faq", cache_status="semantic-hit", cost_nusd=0, baseline_cost_nusd=500)
            for _ in range(3)
        ],
        *[make_event(feature="faq", cache_status="miss") for _ in range(4)],
        make_event(feature="faq", cache_status="bypass"),
        *[make_event(feature="faq", cache_status="verify", cache_verified=True) for _ in range(9)],
        make_event(feature="faq", cache_status="verify", cache_verified=False),
        make_event(feature="chat"),  # no cache configured: not reported
    ]
    store.write_batch(events)
    (faq,) = store.response_cache()
    assert faq["requests"] == {"hit": 1, "semantic-hit": 3, "miss": 4, "bypass": 1, "verify": 10}
    assert faq["hit_rate"] == 0.5
    assert faq["saving_usd"] == Decimal("0.0000025")
    assert faq["verification"]["verified"] == 10 and faq["verification"]["agreed"] == 9
    assert faq["verification"]["precision"] == 0.9
    assert 0.55 < faq["verification"]["lower_bound_95"] < 0.9 < faq["verification"]["upper_bound_95"] < 1


def test_shadow_checks_pair_each_check_with_the_request_it_checked(store: LedgerStore) -> None:
    body = '{"model":"auto","messages":[{"role":"user","content":"Sum 2 and 3"}]}'
    routed = make_event(feature="math", tier="small", model_used="mini", cost_nusd=100, prompt_text=body)
    check = make_event(
        feature="math", tier="frontier", model_used="big", cost_nusd=900,
        route_shadow_of=routed.request_id, route_agreed=False,
    )  # fmt: skip
    unjudged = make_event(tier="frontier", route_shadow_of=routed.request_id, route_agreed=None)
    store.write_batch([routed, check, unjudged, make_event(tier="small")])
    [row] = store.shadow_checks()
    assert row == {
        "request_id": routed.request_id,
        "feature": "math",
        "protocol": routed.protocol,
        "prompt_text": body,
        "model": "mini",
        "tier": "small",
        "cost_nusd": 100,
        "frontier_model": "big",
        "frontier_cost_nusd": 900,
        "agreed": False,
    }
    assert store.shadow_checks(since=check.ts + 1) == []
