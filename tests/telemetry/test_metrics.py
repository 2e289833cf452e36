"""Prometheus metrics: the observer and the exposition on hand-built events, then end to end.

Every scrape is parsed with prometheus-client's own parser, so "valid exposition" is checked by the
reference implementation rather than by string matching.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.testclient import TestClient

from faregate.call import CacheOutcome, Call, PrefixShaping, Result
from faregate.fake_provider import FakeProvider, Scenario
from faregate.ledger import CostEvent, nanos_to_usd
from faregate.telemetry import CONTENT_TYPE, Metrics, metrics_route
from faregate.telemetry.metrics import MAX_LABEL_CHARS
from tests.fixtures.gateway import RunningGateway
from tests.server._support import (
    SONNET,
    SONNET_DEPRECATION,
    anthropic_client,
    openai_client,
    wait_for_events,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def make_event(**fields: Any) -> CostEvent:
    values: dict[str, Any] = {
        "request_id": "r1",
        "ts": 1_700_000_000.0,
        "feature": "chat",
        "team": "t",
        "template": "unattributed",
        "cohort": "unattributed",
        "user": "unattributed",
        "conversation": "unattributed",
        "task": "unattributed",
        "protocol": "openai",
        "provider": "openai",
        "model_requested": "gpt-4o-mini",
        "model_used": "gpt-4o-mini",
        "stream": False,
        "status": 200,
        "error_kind": None,
        "input_tokens": 0,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "output_tokens": 0,
        "reasoning_tokens": 0,
        "usage_estimated": False,
        "price_known": True,
        "cost_nusd": 0,
        "baseline_cost_nusd": 0,
        "latency_ms": 10.0,
        "upstream_ms": None,
    }
    values.update(fields)
    return CostEvent(**values)


def make_call(**fields: Any) -> Call:
    values: dict[str, Any] = {
        "request_id": "r1",
        "protocol": "openai",
        "body": {},
        "raw_body": b"",
        "model_requested": "gpt-4o-mini",
        "stream": False,
        "headers": {},
    }
    values.update(fields)
    return Call(**values)


OK = Result(status=200, headers={})


def samples(text: str | bytes) -> Samples:
    """Every sample of a scrape, parsed by prometheus-client: (name, labels) -> value."""
    if isinstance(text, bytes):
        text = text.decode()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"duplicate series {key}"
            found[key] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def total(found: Samples, name: str, **labels: str) -> float:
    """Sum over the series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= ls)


# --- the observer and the exposition ---------------------------------------------------------------


def test_counts_tokens_money_and_status_classes() -> None:
    metrics = Metrics()
    event = make_event(
        input_tokens=1200,
        cached_tokens=1000,
        cache_write_tokens=100,
        output_tokens=50,
        reasoning_tokens=30,
        cost_nusd=1_234_567_891,
        baseline_cost_nusd=1_234_567_891,
        upstream_ms=420.0,
    )
    metrics.observe(make_call(), OK, event)
    metrics.observe(make_call(), OK, event)
    metrics.observe(
        make_call(), Result(status=502, headers={}), make_event(status=502, error_kind="upstream")
    )
    found = samples(metrics.render())
    fm = {"feature": "chat", "model": "gpt-4o-mini"}
    assert value(found, "faregate_requests_total", **fm, status_class="2xx") == 2
    assert value(found, "faregate_requests_total", **fm, status_class="5xx") == 1
    kinds = {"input": 1200, "cache_read": 1000, "cache_write": 100, "output": 50, "reasoning": 30}
    for kind, tokens in kinds.items():
        assert value(found, "faregate_tokens_total", **fm, kind=kind) == 2 * tokens
    assert value(found, "faregate_cost_usd_total", **fm) == pytest.approx(2.469135782)
    assert value(found, "faregate_baseline_cost_usd_total", **fm) == pytest.approx(2.469135782)
    # money is printed exactly from integer nano-dollars, not as a float sum
    assert b'faregate_cost_usd_total{feature="chat",model="gpt-4o-mini"} 2.469135782\n' in metrics.render()
    assert total(found, "faregate_savings_usd_total") == 0


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    nasty = 'a"b\\c\nd%s 100%'
    metrics.observe(
        make_call(), OK, make_event(feature=nasty, model_used="m\\", cost_nusd=5, upstream_ms=5.0)
    )
    text = metrics.render().decode()
    assert 'feature="a\\"b\\\\c\\nd%s 100%"' in text and 'model="m\\\\"' in text
    found = samples(text)
    assert value(found, "faregate_requests_total", feature=nasty, model="m\\", status_class="2xx") == 1
    name = "faregate_upstream_latency_seconds_count"  # rendered from a %-template: % in labels is kept
    assert value(found, name, feature=nasty, model="m\\") == 1


def test_label_sets_are_capped_and_the_rest_fold_into_other() -> None:
    metrics = Metrics(max_label_sets=3)
    for i in range(5):
        for _ in range(i + 1):
            metrics.observe(make_call(), OK, make_event(feature=f"f{i}", cost_nusd=1_000_000_000))
    found = samples(metrics.render())
    requests = {dict(ls)["feature"]: v for (n, ls), v in found.items() if n == "faregate_requests_total"}
    assert requests == {"f0": 1, "f1": 2, "f2": 3, "other": 4 + 5}
    assert value(found, "faregate_cost_usd_total", feature="other", model="other") == 9
    assert total(found, "faregate_cost_usd_total") == 15  # nothing lost, only folded
    assert value(found, "faregate_metrics_overflow_total", metric="faregate_requests_total") == 9


def test_fixed_labels_survive_the_fold_and_long_values_are_cut() -> None:
    metrics = Metrics(max_label_sets=1)
    metrics.observe(make_call(), OK, make_event(feature="a"))
    metrics.observe(make_call(), OK, make_event(feature="b", status=429))
    found = samples(metrics.render())
    fold = {"feature": "other", "model": "other"}
    assert value(found, "faregate_requests_total", **fold, status_class="4xx") == 1

    long = "x" * (MAX_LABEL_CHARS + 50)
    metrics = Metrics()
    for _ in range(3):
        metrics.observe(make_call(), OK, make_event(feature=long))
    found = samples(metrics.render())
    cut = long[:MAX_LABEL_CHARS]
    assert value(found, "faregate_requests_total", feature=cut, model="gpt-4o-mini", status_class="2xx") == 3


def test_upstream_latency_histogram_buckets_are_cumulative_and_inclusive() -> None:
    metrics = Metrics(latency_buckets=(0.1, 1.0, 10.0))
    for ms in (100.0, 500.0, 2000.0, 60_000.0):
        metrics.observe(make_call(), OK, make_event(upstream_ms=ms))
    hit = make_event(upstream_ms=0.0, cache_status="hit")  # the provider was not called
    metrics.observe(make_call(), OK, hit)
    metrics.observe(make_call(), OK, make_event(upstream_ms=None))  # refused before upstream
    found = samples(metrics.render())
    fm = {"feature": "chat", "model": "gpt-4o-mini"}
    name = "faregate_upstream_latency_seconds"
    buckets = {le: value(found, f"{name}_bucket", **fm, le=le) for le in ("0.1", "1.0", "10.0", "+Inf")}
    assert buckets == {"0.1": 1, "1.0": 2, "10.0": 3, "+Inf": 4}
    assert value(found, f"{name}_count", **fm) == 4
    assert value(found, f"{name}_sum", **fm) == pytest.approx(62.6)


def test_savings_by_strategy_net_of_prompt_cache_writes() -> None:
    metrics = Metrics()
    shaped = make_call(prefix=PrefixShaping("h", enabled_caching=True))
    # a cache write costs more than the baseline; later reads save more than it cost
    metrics.observe(
        shaped, OK, make_event(cost_nusd=1_250, baseline_cost_nusd=1_000, prompt_cache_saving_nusd=-250)
    )
    metrics.observe(
        shaped, OK, make_event(cost_nusd=100, baseline_cost_nusd=1_000, prompt_cache_saving_nusd=900)
    )
    # caching the client set up itself is not FareGate's saving: baseline == cost
    metrics.observe(
        make_call(), OK, make_event(cost_nusd=100, baseline_cost_nusd=100, prompt_cache_saving_nusd=900)
    )
    hit = make_call(cache=CacheOutcome("semantic-hit"))
    metrics.observe(hit, OK, make_event(cost_nusd=0, baseline_cost_nusd=7_000, cache_status="semantic-hit"))
    exact = make_call(cache=CacheOutcome("hit"))
    metrics.observe(exact, OK, make_event(cost_nusd=0, baseline_cost_nusd=3_000, cache_status="hit"))
    metrics.observe(make_call(), OK, make_event(cost_nusd=0, price_known=False, cache_status="miss"))
    found = samples(metrics.render())
    nano = 1e-9
    assert value(
        found, "faregate_savings_usd_total", feature="chat", strategy="prompt_cache"
    ) == pytest.approx(900 * nano)
    assert value(
        found, "faregate_savings_lost_usd_total", feature="chat", strategy="prompt_cache"
    ) == pytest.approx(250 * nano)
    assert value(
        found, "faregate_savings_usd_total", feature="chat", strategy="semantic_cache"
    ) == pytest.approx(7_000 * nano)
    assert value(
        found, "faregate_savings_usd_total", feature="chat", strategy="exact_cache"
    ) == pytest.approx(3_000 * nano)
    net = total(found, "faregate_savings_usd_total") - total(found, "faregate_savings_lost_usd_total")
    cost = total(found, "faregate_cost_usd_total")
    assert net == pytest.approx(total(found, "faregate_baseline_cost_usd_total") - cost)
    fm = {"feature": "chat", "model": "gpt-4o-mini"}
    assert value(found, "faregate_unpriced_requests_total", **fm) == 1
    statuses = {"semantic-hit": 1, "hit": 1, "miss": 1}
    for status, count in statuses.items():
        assert value(found, "faregate_cache_outcomes_total", feature="chat", status=status) == count


def test_route_outcomes_and_history_tokens() -> None:
    metrics = Metrics()
    metrics.observe(make_call(), OK, make_event(tier="small", route_fallback=False))
    metrics.observe(make_call(), OK, make_event(tier="frontier", route_fallback=True))
    metrics.observe(make_call(), OK, make_event(tier="frontier", route_shadow_of="r1"))  # a shadow call
    metrics.observe(
        make_call(),
        OK,
        make_event(history_policy="window", history_tokens_before=900, history_tokens_after=300),
    )
    found = samples(metrics.render())
    route = "faregate_route_outcomes_total"
    assert value(found, route, feature="chat", tier="small", fallback="false") == 1
    assert value(found, route, feature="chat", tier="frontier", fallback="true") == 1
    assert total(found, route) == 2
    assert value(found, "faregate_history_tokens_saved_total", feature="chat", policy="window") == 600


def test_retries_fallbacks_partial_streams_and_circuit_states() -> None:
    metrics = Metrics()
    metrics.observe(make_call(), OK, make_event(upstream_retries=2))
    metrics.observe(make_call(), OK, make_event(upstream_retries=1, upstream_fallbacks="openai/x:503"))
    metrics.observe(make_call(), OK, make_event(partial=True))
    metrics.observe(make_call(), OK, make_event())  # nothing went wrong: no count
    metrics.circuits = lambda: {"openai": "open", "backup": "closed"}
    found = samples(metrics.render())
    assert total(found, "faregate_upstream_retries_total") == 3
    assert total(found, "faregate_upstream_fallbacks_total") == 1
    assert total(found, "faregate_partial_streams_total") == 1
    state = "faregate_upstream_circuit_state"
    assert value(found, state, provider="openai", state="open") == 1
    assert value(found, state, provider="openai", state="closed") == 0
    assert value(found, state, provider="backup", state="closed") == 1
    assert total(found, state) == 2  # one current state per provider


def test_a_dead_upstreams_open_circuit_shows_on_metrics(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(upstream={"retries": 0, "breaker_failures": 2})
    found = samples(httpx.get(f"{gw.url}/metrics").text)
    assert value(found, "faregate_upstream_circuit_state", provider="openai", state="closed") == 1
    fake_provider.push(Scenario(status=503), Scenario(status=503))
    client = openai_client(gw)
    for _ in range(2):
        with pytest.raises(Exception):  # noqa: B017 - the SDK's error class is not the point
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    found = samples(httpx.get(f"{gw.url}/metrics").text)
    assert value(found, "faregate_upstream_circuit_state", provider="openai", state="open") == 1
    assert value(found, "faregate_upstream_circuit_state", provider="anthropic", state="closed") == 1


def test_an_empty_registry_renders_valid_exposition_and_the_route_serves_it() -> None:
    metrics = Metrics()
    assert samples(metrics.render()) == {}
    metrics.observe(make_call(), OK, make_event(model_used=None, model_requested=None, status=400))
    app = Starlette(routes=[metrics_route(metrics)])
    with TestClient(app) as client:
        response = client.get("/metrics")
        assert client.post("/metrics").status_code == 405
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    found = samples(response.text)
    assert value(found, "faregate_requests_total", feature="chat", model="none", status_class="4xx") == 1


# --- end to end: SDKs → gateway → fake provider; the scrape must agree with the ledger -------------


@pytest.fixture
def gw_with_metrics(make_gateway: Callable[..., RunningGateway]) -> tuple[RunningGateway, Metrics]:
    """A gateway with its metrics on (the default): a settle observer and the guarded route."""
    gw = make_gateway(features={"faq": {"semantic_cache": {"semantic": False}}})
    metrics = gw.gateway.metrics
    assert metrics is not None and metrics.observe in gw.gateway.settle.observers
    return gw, metrics


@pytest.mark.filterwarnings(SONNET_DEPRECATION)
def test_scraped_numbers_equal_the_ledger(
    gw_with_metrics: tuple[RunningGateway, Metrics], fake_provider: FakeProvider
) -> None:
    gw, _ = gw_with_metrics
    chat = openai_client(gw, default_headers={"X-FareGate-Feature": "chat"})
    faq = openai_client(gw, default_headers={"X-FareGate-Feature": "faq"})
    search = anthropic_client(gw, default_headers={"X-FareGate-Feature": "search"})
    fake_provider.scenario = Scenario(
        prompt_tokens=1500, cached_tokens=1024, completion_tokens=60, reasoning_tokens=20
    )
    for _ in range(2):
        chat.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    with chat.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "Stream?"}], stream=True
    ) as stream:
        for _ in stream:
            pass
    fake_provider.scenario = Scenario(prompt_tokens=3000, cache_write_5m_tokens=2048, completion_tokens=40)
    with search.messages.stream(
        model=SONNET, max_tokens=200, messages=[{"role": "user", "content": "Hi"}]
    ) as s:
        s.get_final_message()
    fake_provider.scenario = Scenario()
    faq.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "PIN reset?"}])
    asyncio.run_coroutine_threadsafe(gw.gateway.cache_drain(), gw.loop).result(timeout=30)
    faq.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "PIN reset?"}])
    fake_provider.scenario = Scenario(status=500)
    with pytest.raises(Exception):  # noqa: B017 - the SDK's error class is not the point
        chat.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Boom"}])
    events = wait_for_events(gw, 7)

    response = httpx.get(f"{gw.url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"] == CONTENT_TYPE
    found = samples(response.text)

    requests: Counter[tuple[str, str, str]] = Counter()
    tokens: Counter[tuple[str, str, str]] = Counter()
    cost: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    baseline: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    upstream: Counter[tuple[str, str]] = Counter()
    for e in events:
        fm = (e.feature, e.model_used or e.model_requested or "none")
        requests[(*fm, f"{e.status // 100}xx")] += 1
        for kind, n in (
            ("input", e.input_tokens),
            ("output", e.output_tokens),
            ("cache_read", e.cached_tokens),
            ("cache_write", e.cache_write_tokens),
            ("reasoning", e.reasoning_tokens),
        ):
            tokens[(*fm, kind)] += n
        assert e.price_known
        cost[fm] += nanos_to_usd(e.cost_nusd)
        baseline[fm] += nanos_to_usd(e.baseline_cost_nusd)
        if e.upstream_ms is not None and e.cache_status != "hit":
            upstream[fm] += 1
    for (feature, model, status_class), n in requests.items():
        assert (
            value(found, "faregate_requests_total", feature=feature, model=model, status_class=status_class)
            == n
        )
    assert total(found, "faregate_requests_total") == len(events)
    for (feature, model, kind), n in tokens.items():
        assert value(found, "faregate_tokens_total", feature=feature, model=model, kind=kind) == n
    assert {k for k, n in tokens.items() if n} >= {
        ("chat", "gpt-4o-mini", "cache_read"),
        ("search", SONNET, "cache_write"),
    }
    for (feature, model), usd in cost.items():
        assert value(found, "faregate_cost_usd_total", feature=feature, model=model) == pytest.approx(
            float(usd)
        )
        assert value(
            found, "faregate_baseline_cost_usd_total", feature=feature, model=model
        ) == pytest.approx(float(baseline[(feature, model)]))
        name = "faregate_upstream_latency_seconds_count"
        assert value(found, name, feature=feature, model=model) == upstream[(feature, model)]
    [hit] = [e for e in events if e.cache_status == "hit"]
    saved = nanos_to_usd(hit.baseline_cost_nusd - hit.cost_nusd)
    assert saved > 0
    assert value(found, "faregate_savings_usd_total", feature="faq", strategy="exact_cache") == pytest.approx(
        float(saved)
    )
    assert value(found, "faregate_cache_outcomes_total", feature="faq", status="hit") == 1
    assert value(found, "faregate_cache_outcomes_total", feature="faq", status="miss") == 1
    assert total(found, "faregate_requests_total", status_class="5xx") == 1


def test_metrics_need_the_admin_key_when_one_is_configured(
    make_gateway: Callable[..., RunningGateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAREGATE_TEST_ADMIN_KEY", "s3cret")
    gw = make_gateway(server={"admin_key_env": "FAREGATE_TEST_ADMIN_KEY"})
    assert httpx.get(f"{gw.url}/metrics").status_code == 401
    scraped = httpx.get(f"{gw.url}/metrics", headers={"authorization": "Bearer s3cret"})
    assert scraped.status_code == 200 and scraped.headers["content-type"] == CONTENT_TYPE


def test_metrics_can_be_turned_off(make_gateway: Callable[..., RunningGateway]) -> None:
    gw = make_gateway(telemetry={"metrics": False})
    assert gw.gateway.metrics is None and httpx.get(f"{gw.url}/metrics").status_code == 404


def test_savings_split_by_strategy_add_up_to_baseline_minus_cost() -> None:
    metrics = Metrics()
    event = make_event(cost_nusd=1_000, baseline_cost_nusd=10_000)
    event.routing_saving_nusd, event.history_saving_nusd = 6_000, 2_000
    metrics.observe(make_call(), Result(status=200, headers={}), event)
    text = metrics.render().decode()
    assert 'strategy="routing"} 0.000006000' in text and 'strategy="history"} 0.000002000' in text
    assert 'strategy="other"} 0.000001000' in text  # what no strategy accounts for is still shown
