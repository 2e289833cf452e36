"""The report's numbers, checked against values derived by hand from small constructed logs."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal
from typing import Any

import orjson
import pytest

from faregate.analyze.observe import Observation, Observer
from faregate.analyze.reader import ErrorLog, parse_line
from faregate.analyze.report import Analyzer
from faregate.analyze.savings import STRATEGIES
from faregate.analyze.verdict import decide_verdict
from faregate.anatomy import COMPONENTS, Anatomy
from faregate.pricing import PriceBook, PriceOverride
from tests.ledger import make_event

# Prices in USD per million tokens, chosen for easy arithmetic and independent of genai-prices.
PRICES = PriceBook(
    {
        "big": PriceOverride(
            input_mtok=Decimal(2),
            output_mtok=Decimal(8),
            cache_read_mtok=Decimal("0.2"),
            cache_write_mtok=Decimal("2.5"),
        ),
        "small": PriceOverride(input_mtok=Decimal("0.5"), output_mtok=Decimal(1)),
    }
)
M = Decimal(1_000_000)
DAY = 86400.0
_hashes = itertools.count(1000)


def obs(
    feature: str = "chat",
    model: str = "big",
    *,
    system: int = 0,
    tools: int = 0,
    history: int = 0,
    context: int = 0,
    query: int = 0,
    overhead: int = 0,
    output: int = 0,
    cost: Decimal | None = None,
    ts: float | None = None,
    turns: int = 1,
    skeleton: int | None = None,
    text: str | None = None,
    cached: int = 0,
) -> Observation:
    """An observation with the given split; its cost is priced at `big` rates unless given.

    `text` is the query (a fresh one by default; "" for none)."""
    anatomy = Anatomy(system, tools, history, context, query, overhead)
    if cost is None:
        cost = (Decimal(anatomy.total()) * 2 + Decimal(output) * 8) / M
    skeleton = next(_hashes) if skeleton is None else skeleton
    return Observation(
        feature=feature,
        model=model,
        provider=None,
        ts=ts,
        anatomy=anatomy,
        output_tokens=output,
        cached_tokens=cached,
        cache_write_tokens=0,
        cost=cost,
        price_known=True,
        user_turns=turns,
        system_hash=skeleton,
        skeleton_hash=skeleton,
        tools_hash=0,
        volatile=(),
        query=(text or None) if text is not None else f"question {next(_hashes)}",
    )


def build(*observations: Observation) -> dict[str, Any]:
    analyzer = Analyzer(PRICES)
    for o in observations:
        analyzer.add(o)
    report = analyzer.build(["test.jsonl"], ErrorLog())
    orjson.dumps(report)  # JSON-ready: no Decimals, no sets
    return report


def savings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["strategy"]: s for s in report["savings"]}


# --- totals, shares, groups --------------------------------------------------------------------


def test_totals_shares_and_the_split_by_feature_and_model() -> None:
    report = build(
        obs("a", system=100, query=100, output=10, cost=Decimal("0.01")),
        obs("b", history=300, context=100, cost=Decimal("0.02")),
        obs("a", "small", system=100, tools=100, query=100, overhead=100, cost=Decimal("0.03")),
    )
    assert report["requests"] == 3
    assert report["tokens"] == {
        "system": 200,
        "tools": 100,
        "history": 300,
        "context": 100,
        "query": 200,
        "overhead": 100,
        "output": 10,
    }
    assert report["share"] == {
        "system": 0.2,
        "tools": 0.1,
        "history": 0.3,
        "context": 0.1,
        "query": 0.2,
        "overhead": 0.1,
    }
    assert sum(report["share"].values()) == pytest.approx(1.0)
    assert report["cost_usd"] == pytest.approx(0.06)
    a = report["by_feature"]["a"]
    assert a["requests"] == 2
    assert a["cost_usd"] == pytest.approx(0.04)
    assert a["tokens"]["system"] == 200 and a["tokens"]["history"] == 0 and a["tokens"]["output"] == 10
    assert a["share"]["system"] == pytest.approx(200 / 600)
    assert sum(a["share"].values()) == pytest.approx(1.0)
    assert report["by_feature"]["b"]["share"]["history"] == pytest.approx(0.75)
    assert list(report["by_feature"]) == ["a", "b"]  # most expensive first
    assert report["by_model"]["big"]["requests"] == 2
    assert report["by_model"]["small"]["tokens"]["overhead"] == 100
    assert report["price_unknown_requests"] == 0


# --- history growth ----------------------------------------------------------------------------


def test_history_growth_and_the_crossover_turn() -> None:
    conversation_1 = [obs(system=1000, turns=1), obs(system=1000, history=500, turns=2)]
    conversation_1.append(obs(system=1000, history=1500, turns=3))
    conversation_2 = [obs(system=2000, turns=1), obs(system=1000, history=700, turns=2)]
    conversation_2.append(obs(system=1000, history=900, turns=3))
    growth = build(*conversation_1, *conversation_2)["history_growth"]
    assert growth["by_turn"] == [
        {"turn": 1, "requests": 2, "mean_history_tokens": 0.0, "mean_other_input_tokens": 1500.0},
        {"turn": 2, "requests": 2, "mean_history_tokens": 600.0, "mean_other_input_tokens": 1000.0},
        {"turn": 3, "requests": 2, "mean_history_tokens": 1200.0, "mean_other_input_tokens": 1000.0},
    ]
    assert growth["crossover_turn"] == 3


def test_no_crossover_when_history_never_outweighs_the_rest() -> None:
    growth = build(obs(system=1000, turns=1), obs(system=1000, history=1000, turns=2))["history_growth"]
    assert growth["crossover_turn"] is None  # equal is not more


# --- prefix stability and repetition, through the real observer ---------------------------------


def test_prefix_stability_from_a_ledger_uses_the_recorded_prefix_hashes_and_findings() -> None:
    observer = Observer(PRICES)
    hour = 1_700_002_800.0
    events = [
        make_event(
            feature="chat", ts=hour + i, prefix_hash=f"{i:016x}", prefix_findings="timestamp@system:9-29"
        )
        for i in range(3)
    ]
    events.append(make_event(feature="chat", ts=hour + 7200, prefix_hash=f"{0:016x}"))
    events.append(make_event(feature="faq", ts=hour, prefix_hash="ff" * 8))
    events.append(make_event(feature="faq", ts=hour + 1, prefix_hash=None))  # before the prefix stage
    stability = build(*(observer.event(e) for e in events))["prefix_stability"]
    assert stability["by_feature"]["chat"] == {
        "requests": 4,
        "distinct_system_prefixes": 3,
        "peak_prefixes_per_hour": 3,
        "distinct_skeletons": None,  # the ledger stores no prompt text to mask
        "volatile_requests": 3,
    }
    assert stability["by_feature"]["faq"]["requests"] == 1
    assert stability["findings"] == [
        {"kind": "timestamp", "text": "system:9-29", "feature": "chat", "count": 3}
    ]


def observe(body: dict[str, Any], feature: str) -> Observation:
    observer = Observer(PRICES)
    return observer.record(parse_line(orjson.dumps({"request": body, "metadata": {"feature": feature}})))


def chat_body(system: str, question: str) -> dict[str, Any]:
    return {
        "model": "big",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
    }


def test_prefix_stability_finds_a_timestamp_that_breaks_caching() -> None:
    prompt = "You answer billing questions for Acme. Be brief and polite. Current time: {}."
    report = build(
        observe(chat_body(prompt.format("2025-03-03 10:00:01"), "Why was I charged twice?"), "billing"),
        observe(chat_body(prompt.format("2025-03-03 10:05:07"), "Can I get a refund?"), "billing"),
        observe(chat_body("You summarise tickets.", "Summarise: printer broken"), "tickets"),
        observe(chat_body("You summarise tickets.", "Summarise: login fails"), "tickets"),
    )
    stability = report["prefix_stability"]
    assert stability["by_feature"]["billing"] == {
        "requests": 2,
        "distinct_system_prefixes": 2,
        "peak_prefixes_per_hour": None,  # no timestamps in these records
        "distinct_skeletons": 1,
        "volatile_requests": 2,
    }
    assert stability["by_feature"]["tickets"] == {
        "requests": 2,
        "distinct_system_prefixes": 1,
        "peak_prefixes_per_hour": None,
        "distinct_skeletons": 1,
        "volatile_requests": 0,
    }
    assert stability["findings"] == [
        {"kind": "timestamp", "text": "2025-03-03 10:00:01", "feature": "billing", "count": 2}
    ]


def test_exact_duplicate_queries_are_counted_per_feature() -> None:
    report = build(
        obs("support", text="How do I reset my password?"),
        obs("support", text="How do I reset my password?"),
        obs("sales", text="How do I reset my password?"),  # another feature: another scope
        obs("support", text="What are your opening hours on public holidays?"),
    )
    repetition = report["repetition"]
    assert repetition["queries"] == 4
    assert repetition["exact_duplicates"] == 1
    assert repetition["exact_duplicate_rate"] == pytest.approx(0.25)


def test_observer_scales_the_split_to_the_providers_input_total() -> None:
    body = chat_body("You are terse. " * 40, "What is the capital of France?")
    envelope = {
        "request": body,
        "response": {"choices": [], "usage": {"prompt_tokens": 5000, "completion_tokens": 12}},
    }
    scaled = Observer(PRICES).record(parse_line(orjson.dumps(envelope)))
    local = Observer(PRICES).record(parse_line(orjson.dumps(body)))
    assert scaled.anatomy.total() == 5000
    assert scaled.output_tokens == 12 and local.output_tokens == 0
    assert scaled.anatomy.system / scaled.anatomy.total() == pytest.approx(
        local.anatomy.system / local.anatomy.total(), abs=0.001
    )
    assert local.cost == Decimal(local.anatomy.total()) * 2 / M  # priced from local counts
    assert scaled.cost == (Decimal(5000) * 2 + Decimal(12) * 8) / M


# --- savings -----------------------------------------------------------------------------------


def test_prompt_caching_semantic_caching_and_routing_by_hand() -> None:
    # Two identical first-turn requests: a 2,000-token prompt, a 100-token question, no timestamps
    # (the log counts as one day, so monthly = 30 x the log).
    first = obs(system=2000, query=100, skeleton=7, text="Where is my parcel?")
    second = obs(system=2000, query=100, skeleton=7, text="Where is my parcel?")
    report = build(first, second)
    s = savings(report)
    # cost of each: 2,100 tokens x $2/M = $0.0042
    assert report["cost_usd"] == pytest.approx(0.0084)
    assert report["monthly_cost_usd"] == pytest.approx(0.252)
    # caching: the second request reads 2,000 tokens at $0.2/M instead of $2/M, saving $0.0036;
    # the first wrote them at a $0.5/M premium: $0.001. Net $0.0026, x30.
    assert s["prompt_caching"]["monthly_usd"] == pytest.approx(0.078)
    # semantic: the second is an exact duplicate: alone its whole $0.0042; stacked what caching left
    # of it, $0.0006
    assert s["semantic_caching"]["monthly_usd"] == pytest.approx(0.126)
    assert s["semantic_caching"]["stacked_monthly_usd"] == pytest.approx(0.078 + 0.018)
    # routing: both are eligible (short query, no context, $2/M model): 30% x (1 - 1/15) = 0.28 of
    # their cost; alone 0.28 x $0.0084, stacked 0.28 x ($0.0042 + $0)
    assert s["model_routing"]["monthly_usd"] == pytest.approx(0.28 * 0.0084 * 30)
    assert s["model_routing"]["stacked_monthly_usd"] == pytest.approx(0.096 + 0.28 * 0.0042 * 30)
    assert s["history_policy"]["monthly_usd"] == 0.0
    assert s["output_caps"]["monthly_usd"] == 0.0
    assert report["savings_total_monthly_usd"] == s["output_caps"]["stacked_monthly_usd"]
    assert [e["strategy"] for e in report["savings"]] == list(STRATEGIES)


def test_prompt_caching_needs_the_minimum_length_and_the_cache_lifetime() -> None:
    short = build(obs(system=1000, skeleton=8), obs(system=1000, skeleton=8))
    assert savings(short)["prompt_caching"]["monthly_usd"] == 0.0
    apart = build(obs(system=3000, skeleton=9, ts=0.0), obs(system=3000, skeleton=9, ts=301.0))
    assert savings(apart)["prompt_caching"]["monthly_usd"] == 0.0
    within = build(obs(system=3000, skeleton=9, ts=0.0), obs(system=3000, skeleton=9, ts=299.0))
    assert savings(within)["prompt_caching"]["monthly_usd"] > 0


def test_prompt_caching_subtracts_what_is_already_cached() -> None:
    fresh = build(obs(system=4000, skeleton=5), obs(system=4000, skeleton=5))
    half = build(obs(system=4000, skeleton=5), obs(system=4000, skeleton=5, cached=2048))
    # 4,000 vs 1,952 newly cached tokens at $1.8/M saved, minus the same $0.002 write premium
    assert savings(fresh)["prompt_caching"]["monthly_usd"] == pytest.approx((4000 * 1.8 / 1e6 - 0.002) * 30)
    assert savings(half)["prompt_caching"]["monthly_usd"] == pytest.approx((1952 * 1.8 / 1e6 - 0.002) * 30)


def test_history_policy_by_hand() -> None:
    # turn 11 with 10,000 history tokens: ~1,000 a turn, keep max(2,000, 4 turns = 4,000); the other
    # 6,000 become a 600-token summary: 5,400 tokens removed.
    report = build(obs(history=10_000, query=500, turns=11))
    s = savings(report)
    assert s["history_policy"]["monthly_usd"] == pytest.approx(5400 * 2 / 1e6 * 30)
    # stacked: caching already bills that history at the $0.2/M cache-read price
    stacked = s["history_policy"]["stacked_monthly_usd"] - s["model_routing"]["stacked_monthly_usd"]
    assert stacked == pytest.approx(5400 * 0.2 / 1e6 * 30)
    assert "5,400 history tokens removed" in " ".join(s["history_policy"]["assumptions"])


def test_output_caps_cut_answers_above_the_features_p90() -> None:
    answers = [100] * 18 + [1100] * 2
    report = build(*[obs("writer", query=500, output=n) for n in answers])
    # p90 of 20 answers is the 18th shortest, 100 tokens; two answers lose 1,000 tokens at $8/M
    assert savings(report)["output_caps"]["monthly_usd"] == pytest.approx(2 * 1000 * 8 / 1e6 * 30)
    few = build(*[obs("writer", query=500, output=n) for n in answers[1:]])  # 19 answers: no cap
    assert savings(few)["output_caps"]["monthly_usd"] == 0.0


def test_stacked_savings_never_exceed_the_sum_of_each_alone() -> None:
    rng = random.Random(3)
    observations = []
    for i in range(400):
        turns = rng.randint(1, 12)
        observations.append(
            obs(
                rng.choice(["a", "b", "c"]),
                rng.choice(["big", "small"]),
                system=rng.choice([300, 1500, 2500]),
                history=0 if turns == 1 else rng.randint(500, 20_000),
                context=rng.choice([0, 0, 3000]),
                query=rng.randint(20, 400),
                output=rng.randint(1, 900),
                ts=i * 30.0,
                turns=turns,
                skeleton=rng.randint(1, 4),
                text=f"question {rng.randint(1, 60)}",
                cached=rng.choice([0, 0, 1024]),
            )
        )
    report = build(*observations)
    entries = report["savings"]
    assert all(e["monthly_usd"] >= 0 for e in entries)
    running = [e["stacked_monthly_usd"] for e in entries]
    assert running == sorted(running)
    assert report["savings_total_monthly_usd"] <= sum(e["monthly_usd"] for e in entries) + 1e-9
    assert report["savings_total_monthly_usd"] <= report["monthly_cost_usd"]
    for e in entries:
        assert e["assumptions"] and all(isinstance(a, str) and a for a in e["assumptions"])


# --- period, volume and verdict ------------------------------------------------------------------


def spread(n: int, days: float, cost: Decimal = Decimal("0.001")) -> list[Observation]:
    step = days * DAY / (n - 1)
    return [obs(system=10, cost=cost, ts=1_700_000_000 + i * step, text="") for i in range(n)]


@pytest.mark.parametrize(
    ("per_day", "verdict"),
    [
        (999, "optimize-later"),
        (1000, "instrument-first"),
        (9999, "instrument-first"),
        (10_000, "optimize-now"),
    ],
)
def test_verdict_thresholds(per_day: int, verdict: str) -> None:
    assert decide_verdict(per_day)[0] == verdict


def test_spend_growing_faster_than_requests_means_optimize_now() -> None:
    assert decide_verdict(5000, spend_outgrows_requests=(2.0, 1.0))[0] == "optimize-now"
    assert decide_verdict(500, spend_outgrows_requests=(2.0, 1.0))[0] == "optimize-later"


@pytest.mark.parametrize(("requests", "verdict"), [(999, "optimize-later"), (10_000, "optimize-now")])
def test_volume_from_timestamps_decides_the_verdict(requests: int, verdict: str) -> None:
    report = build(*spread(requests, days=1.0))
    assert report["period"]["days"] == pytest.approx(1.0)
    assert report["requests_per_day"] == pytest.approx(requests)
    assert report["verdict"] == verdict
    assert f"{requests:,} requests/day" in report["verdict_reason"]
    assert report["monthly_cost_usd"] == pytest.approx(requests * 0.001 * 30)


def test_growing_spend_over_the_period_is_noticed() -> None:
    # 6,000 requests over 4 days (1,500/day); the second half costs three times as much per request
    log = spread(6000, days=4.0)
    for o in log[3000:]:
        o.cost = Decimal("0.003")
    report = build(*log)
    assert report["verdict"] == "optimize-now"
    assert "spend grew" in report["verdict_reason"]
    steady = build(*spread(6000, days=4.0))
    assert steady["verdict"] == "instrument-first"


def test_a_log_without_timestamps_counts_as_one_day() -> None:
    report = build(obs(system=100, cost=Decimal("0.5")), obs(system=100, cost=Decimal("0.5")))
    assert report["period"] == {"start": None, "end": None, "days": None}
    assert report["requests_per_day"] is None
    assert report["monthly_cost_usd"] == pytest.approx(30.0)
    assert report["verdict"] == "optimize-later"
    assert "taken as one day" in report["verdict_reason"]


def test_a_log_spanning_minutes_is_not_extrapolated() -> None:
    report = build(*spread(50, days=600 / DAY))
    assert report["period"]["start"] is not None
    assert report["requests_per_day"] is None  # ten minutes say little about a day
    assert report["monthly_cost_usd"] == pytest.approx(50 * 0.001 * 30)


def test_unknown_prices_are_counted_not_hidden() -> None:
    unknown = obs(model="no-such-model", system=100, cost=Decimal(0))
    unknown.price_known = False
    report = build(unknown, obs(system=100))
    assert report["price_unknown_requests"] == 1
    assert report["by_model"]["no-such-model"]["cost_usd"] == 0.0


def test_every_component_is_reported() -> None:
    report = build(obs(system=1))
    assert set(report["share"]) == set(COMPONENTS)
    assert set(report["tokens"]) == {*COMPONENTS, "output"}
