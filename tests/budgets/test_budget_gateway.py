"""Budgets through a real gateway (uvicorn on loopback) in front of the fake provider; the alert
detectors; and the stage's own paths (estimate, release on cancellation).

Until `BudgetStage` is wired into `server/gateway.py`, `Budgeted` rebuilds the running gateway's
pipeline with the stage right after `Resolve`, as the wiring will: settle → resolve → budget → upstream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, TypeVar

import httpx
import pytest
from aiohttp import web

from faregate import tokens
from faregate.alerts import Alerter, Spike, SpikeDetector, detect_template_regressions
from faregate.budgets import key_id, open_budget_store
from faregate.call import Attribution, Call, Result, Route
from faregate.config import AlertSettings, BudgetSettings, PriceSettings
from faregate.errors import FareGateError
from faregate.fake_provider import FakeProvider, Scenario
from faregate.pipeline.budget import BudgetStage, output_limit
from faregate.pricing import PriceBook, overrides_from_config
from tests.fixtures.gateway import RunningGateway
from tests.server._support import OPENAI_KEY, SONNET, SONNET_DEPRECATION, closed_port, wait_for_events

pytestmark = pytest.mark.filterwarnings(SONNET_DEPRECATION)

T = TypeVar("T")
# $1 per million output tokens and free input: a 1,000-token answer costs exactly $0.001, and the
# estimate (1,000 tokens of max_tokens) equals the actual cost, so a $0.05 budget holds exactly 50.
PRICES = {"gpt-4o-mini": {"input_mtok": "0", "output_mtok": "1"}}
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1000}
AUTH = {"authorization": f"Bearer {OPENAI_KEY}"}


class Budgeted:
    """A running gateway with budgets configured: its `BudgetStage` is in the pipeline."""

    def __init__(self, gw: RunningGateway) -> None:
        self.gw = gw
        budgets = gw.gateway.budgets
        assert budgets.stage is not None and budgets.store is not None
        self.stage, self.store, self.alerter = budgets.stage, budgets.store, budgets.alerter

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on the gateway's event loop (the stage's tasks and the alerter's session live there)."""
        return asyncio.run_coroutine_threadsafe(coro, self.gw.loop).result(timeout=30)

    def usage(self, budget: str) -> dict[str, Any]:
        rows = [r for r in self.run(self.stage.budget_usage()) if r["budget"] == budget]
        assert len(rows) == 1, rows
        row: dict[str, Any] = rows[0]
        return row

    def settled(self, budget: str, timeout: float = 5.0) -> dict[str, Any]:
        """The budget's usage once no reservation is held (settles run just after the response)."""
        deadline = time.monotonic() + timeout
        while (row := self.usage(budget))["reserved_usd"] and time.monotonic() < deadline:
            time.sleep(0.02)
        return row


@pytest.fixture
def budgeted(make_gateway: Callable[..., RunningGateway]) -> Callable[..., Budgeted]:
    def make(
        budgets: list[dict[str, Any]], alerts: dict[str, Any] | None = None, **overrides: Any
    ) -> Budgeted:
        gw = make_gateway(prices=PRICES, budgets=budgets, alerts=alerts or {}, **overrides)
        return Budgeted(gw)

    return make


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An alert webhook on loopback that records every JSON body posted to it."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/hook", received
    await runner.cleanup()


async def test_200_concurrent_requests_at_a_budget_for_50(
    budgeted: Callable[..., Budgeted], fake_provider: FakeProvider
) -> None:
    b = budgeted([{"scope": "team", "name": "search", "limit_usd": "0.05"}])
    fake_provider.scenario = Scenario(completion_tokens=1000, delay=0.05)
    headers = {**AUTH, "x-faregate-team": "search"}
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=b.gw.url, limits=limits, timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=BODY, headers=headers) for _ in range(200))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 50 + [429] * 150
        error = next(r for r in responses if r.status_code == 429).json()
        assert set(error) == {"error"}
        assert error["error"]["type"] == "rate_limit_exceeded"
        assert error["error"]["code"] == "budget_exceeded"
        assert error["error"]["param"] is None
        assert error["error"]["message"].startswith("budget team:search (month) ")

        row = await asyncio.to_thread(b.settled, "team:search:month")
        assert (row["spent_usd"], row["reserved_usd"], row["share"]) == (Decimal("0.05"), 0, 1.0)

        # Exhausted: an Anthropic client gets Anthropic's error format, and is told not to retry.
        reply = await client.post(
            "/v1/messages",
            json={"model": SONNET, "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]},
            headers={"x-api-key": "sk-ant-client", "x-faregate-team": "search"},
        )
    assert reply.status_code == 429
    assert reply.json() == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "budget team:search (month) is exhausted: $0.05 of $0.05 spent",
        },
    }
    assert reply.headers["x-should-retry"] == "false" and int(reply.headers["retry-after"]) > 0
    events = await asyncio.to_thread(wait_for_events, b.gw, 201)
    by_status: dict[int, int] = {}
    for event in events:
        by_status[event.status] = by_status.get(event.status, 0) + 1
    assert by_status == {200: 50, 429: 151}
    assert sum(e.cost_nusd for e in events) == 50_000_000
    assert {e.error_kind for e in events if e.status == 429} == {"budget_exceeded"}
    assert len(fake_provider.requests) == 50  # refused requests never went upstream


async def test_two_replicas_on_one_postgres_share_one_budget(
    budgeted: Callable[..., Budgeted], fake_provider: FakeProvider, postgres_db_url: str
) -> None:
    budgets = [{"scope": "team", "name": "search", "limit_usd": "0.03"}]
    replicas = [budgeted(budgets, database=postgres_db_url) for _ in range(2)]
    fake_provider.scenario = Scenario(completion_tokens=1000, delay=0.02)
    headers = {**AUTH, "x-faregate-team": "search"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100), timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{replicas[i % 2].gw.url}/v1/chat/completions", json=BODY, headers=headers)
                for i in range(100)
            )
        )
    assert sorted(r.status_code for r in responses) == [200] * 30 + [429] * 70
    row = await asyncio.to_thread(replicas[0].settled, "team:search:month")
    assert (row["spent_usd"], row["reserved_usd"]) == (Decimal("0.03"), 0)


async def test_budget_alerts_at_80_and_100_percent_reach_the_webhook_once_each(
    budgeted: Callable[..., Budgeted],
    fake_provider: FakeProvider,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = webhook
    b = budgeted(
        [{"scope": "feature", "name": "chat", "period": "day", "limit_usd": "0.01"}],
        alerts={"webhook_url": url},
    )
    fake_provider.scenario = Scenario(completion_tokens=1000)
    headers = {**AUTH, "x-faregate-feature": "chat"}
    async with httpx.AsyncClient(base_url=b.gw.url, timeout=30) as client:
        statuses = []
        for _ in range(12):
            statuses.append(
                (await client.post("/v1/chat/completions", json=BODY, headers=headers)).status_code
            )
            await asyncio.to_thread(b.settled, "feature:chat:day")  # one step of 10% at a time
    assert statuses == [200] * 10 + [429] * 2
    deadline = time.monotonic() + 5
    while len(received) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # nothing more arrives
    assert [(a["kind"], a["details"]["threshold"]) for a in received] == [("budget", 0.8), ("budget", 1.0)]
    first, second = received
    assert first["message"] == "budget feature:chat (day) reached 80%: $0.008 of $0.01 spent"
    assert second["message"] == "budget feature:chat (day) reached 100%: $0.01 of $0.01 spent"
    assert set(first) == {"kind", "message", "details", "ts", "text"}
    assert first["details"]["spent_usd"] == "0.008000000" and first["ts"].endswith("Z")


async def test_key_budgets_count_streams_at_their_actual_cost(
    budgeted: Callable[..., Budgeted], fake_provider: FakeProvider
) -> None:
    b = budgeted([{"scope": "key", "name": key_id(OPENAI_KEY), "limit_usd": "1"}])
    fake_provider.scenario = Scenario(completion_tokens=300)
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(base_url=b.gw.url, timeout=30) as client:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=AUTH) as response:
            assert response.status_code == 200
            await response.aread()
        other = await client.post(
            "/v1/chat/completions", json=BODY, headers={"authorization": "Bearer sk-someone-else"}
        )
    assert other.status_code == 200
    row = await asyncio.to_thread(b.settled, f"key:{key_id(OPENAI_KEY)}:month")
    assert row["spent_usd"] == Decimal("0.0003")  # 300 tokens, not the 1,000 reserved; one key only


# --- the stage's own paths ------------------------------------------------------------------------


def _call(body: dict[str, Any], **kwargs: Any) -> Call:
    return Call(
        request_id="r1",
        protocol="openai",
        body=body,
        raw_body=b"",
        model_requested="m",
        stream=False,
        headers=kwargs.pop("headers", {}),
        attribution=Attribution(team="search"),
        route=Route("openai", "m"),
        **kwargs,
    )


def _stage(tmp_path: Any, limit: str = "1") -> BudgetStage:
    budgets = [BudgetSettings(scope="team", name="search", limit_usd=Decimal(limit))]
    store = open_budget_store(f"sqlite:///{tmp_path}/budgets.db", budgets)
    prices = PriceBook(
        overrides_from_config({"m": PriceSettings(input_mtok=Decimal(2), output_mtok=Decimal(10))})
    )
    providers: Any = {"openai": SimpleNamespace(pricing_id="openai")}
    return BudgetStage(budgets, store, prices, providers, ThreadPoolExecutor(max_workers=1))


def test_the_estimate_prices_the_prompt_and_the_output_limit(tmp_path: Any) -> None:
    stage = _stage(tmp_path)
    body = {"messages": [{"role": "user", "content": "How much is this?"}], "max_completion_tokens": 700}
    prompt = tokens.count_messages_openai("m", body)
    assert stage.estimate_nusd(_call(body)) == prompt * 2000 + 700 * 10_000
    assert (
        stage.estimate_nusd(_call({"messages": [], "n": 2}))
        == tokens.count_messages_openai("m", {"messages": []}) * 2000 + 2 * 4096 * 10_000
    )
    unknown = _call(body)
    unknown.route = Route("openai", "no-such-model-anywhere")
    assert stage.estimate_nusd(unknown) == 0  # unknown price: reserve nothing, count the actual cost
    stage.store.close()
    stage.executor.shutdown()


def test_output_limit() -> None:
    assert output_limit("openai", {"max_tokens": 50, "max_completion_tokens": 20}, 4096) == 20
    assert output_limit("openai", {}, 4096) == 4096
    assert output_limit("anthropic", {"max_tokens": 300, "n": 3}, 4096) == 300


async def test_a_cancelled_call_releases_its_reservation_and_an_error_settles_it(tmp_path: Any) -> None:
    stage = _stage(tmp_path, limit="0.02")  # holds one 700 + prompt tokens estimate (~$0.007)
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 700}

    async def cancelled(call: Call) -> Result:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await stage(_call(body), cancelled)
    await stage.stop()  # waits for the release
    assert stage.store.usage()[0]["reserved_usd"] == 0

    async def answered(call: Call) -> Result:
        return Result(status=200, headers={})

    call = _call(body)
    await stage(call, answered)
    assert stage.store.usage()[0]["reserved_usd"] > 0  # held until settle calls the hook
    [hook] = call.on_settled
    hook(call, Result(status=200, headers={}), SimpleNamespace(cost_nusd=1234))
    hook(call, Result(status=200, headers={}), SimpleNamespace(cost_nusd=1234))  # once only
    await stage.stop()
    row = stage.store.usage()[0]
    assert (row["spent_usd"], row["reserved_usd"]) == (Decimal("0.000001234"), 0)
    stage.store.close()
    stage.executor.shutdown()


async def test_an_unreachable_budget_store_fails_closed(tmp_path: Any) -> None:
    stage = _stage(tmp_path)
    stage.store.close()  # every store call now raises

    async def never(call: Call) -> Result:
        raise AssertionError("a call whose budget cannot be checked must not go upstream")

    with pytest.raises(FareGateError, match="could not check this request's budget"):
        await stage(_call({"messages": []}), never)
    stage.executor.shutdown()


# --- alert detectors and the alerter ----------------------------------------------------------------


def _spikes(detector: SpikeDetector, feature: str, hour: int, usd: str) -> Spike | None:
    return detector.observe(feature, int(Decimal(usd) * 10**9), hour * 3600 + 60)


def test_spike_detector_alerts_once_an_hour_above_factor_times_the_trailing_mean() -> None:
    detector = SpikeDetector(Alerter(AlertSettings()), 3.0, floor_usd=Decimal("1"))
    for hour in range(100, 106):
        assert _spikes(detector, "chat", hour, "1") is None  # steady $1 an hour
    assert _spikes(detector, "chat", 106, "2.5") is None  # $2.50 <= 3 x $1
    spike = _spikes(detector, "chat", 106, "0.6")  # $3.10 > $3
    assert spike is not None and (spike.feature, spike.spend_nusd, spike.baseline_nusd) == (
        "chat",
        3_100_000_000,
        1_000_000_000,
    )
    assert spike.hour_start == "1970-01-05T10:00:00Z"
    assert _spikes(detector, "chat", 106, "5") is None  # already alerted this hour


def test_spike_detector_needs_history_and_an_absolute_floor() -> None:
    detector = SpikeDetector(Alerter(AlertSettings()), 3.0, floor_usd=Decimal("1"), min_history_hours=3)
    assert _spikes(detector, "new", 10, "50") is None  # first hour seen: no mean yet
    assert _spikes(detector, "new", 11, "500") is None  # one hour of history is not enough
    for hour in range(20, 26):
        assert _spikes(detector, "tiny", hour, "0.001") is None
    assert _spikes(detector, "tiny", 26, "0.5") is None  # 500x the mean, but under the $1 floor
    assert _spikes(detector, "tiny", 26, "0.6") is not None  # $1.10: over the floor and the factor


def _row(feature: str, template: str, first: float, requests: int, cost: int, quality: Any = None) -> Any:
    return {
        "feature": feature,
        "template": template,
        "first_ts": first,
        "requests": requests,
        "cost_nusd": cost,
        "quality": quality,
    }


def test_template_regressions_compare_each_features_newest_template_with_the_previous_one() -> None:
    rows = [
        _row("a", "v1", 1, 100, 100_000),
        _row("a", "v2", 2, 50, 60_000),  # 1,200 vs 1,000 a request: +20%
        _row("b", "v1", 1, 100, 100_000, 0.9),
        _row("b", "v2", 2, 100, 100_000, 0.7),  # same cost, quality -22%
        _row("c", "v1", 1, 100, 100_000),
        _row("c", "v2", 2, 5, 50_000),  # too few requests to judge
        _row("d", "v0", 0, 100, 10),
        _row("d", "v1", 1, 100, 100_000),
        _row("d", "v2", 2, 100, 105_000, 0.5),  # +5% against v1 (its predecessor), not v0
        _row("e", "unattributed", 1, 100, 100),
        _row("e", "v1", 2, 100, 100_000),
    ]
    found = detect_template_regressions(rows, 0.10)
    assert [(r.feature, r.template, r.previous, r.reasons) for r in found] == [
        ("a", "v2", "v1", ("cost",)),
        ("b", "v2", "v1", ("quality",)),
    ]
    assert found[0].cost_ratio == pytest.approx(1.2)
    assert found[1].quality_change == pytest.approx(-0.2 / 0.9)
    assert found[0].message == "template regression in feature a: v2 vs v1 (cost per request x1.20)"


async def test_the_alerter_never_raises_when_the_webhook_is_down() -> None:
    alerter = Alerter(AlertSettings(webhook_url=f"http://127.0.0.1:{closed_port()}/hook"), timeout_s=2)
    assert await alerter.send("spend_spike", "a spike", {"feature": "chat"}) is False
    await alerter.close()


async def test_the_alerter_posts_the_payload(webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    alerter = Alerter(AlertSettings(webhook_url=url))
    alerter.notify("template_regression", "v2 costs more", {"feature": "a", "amount": Decimal("1.5")})
    await alerter.close()  # waits for the notification in flight
    assert [(a["kind"], a["message"], a["details"]) for a in received] == [
        ("template_regression", "v2 costs more", {"feature": "a", "amount": "1.5"})
    ]


def test_admin_api_shows_budget_usage(budgeted: Callable[..., Budgeted], fake_provider: FakeProvider) -> None:
    b = budgeted([{"scope": "team", "name": "search", "period": "day", "limit_usd": "1"}])
    usage = httpx.get(f"{b.gw.url}/faregate/v1/budgets").json()["budgets"]
    assert [(u["budget"], u["limit_usd"], u["spent_usd"]) for u in usage] == [("team:search:day", 1.0, 0.0)]


async def test_a_template_regression_in_the_ledger_reaches_the_webhook_once(
    make_gateway: Callable[..., RunningGateway],
    fake_provider: FakeProvider,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = webhook
    gw = make_gateway(prices=PRICES, alerts={"webhook_url": url})
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        for template, output in (("v1", 100), ("v2", 150)):  # v2: 50% more per request
            fake_provider.scenario = Scenario(completion_tokens=output)
            headers = {**AUTH, "x-faregate-feature": "chat", "x-faregate-template": template}
            for _ in range(20):
                response = await client.post("/v1/chat/completions", json=BODY, headers=headers)
                assert response.status_code == 200
            await asyncio.sleep(0.01)  # v2 is first seen after v1
    await asyncio.to_thread(gw.flush)
    budgets = gw.gateway.budgets

    def check() -> int:
        return asyncio.run_coroutine_threadsafe(budgets.check_templates(), gw.loop).result(timeout=10)

    assert await asyncio.to_thread(check) == 1
    assert await asyncio.to_thread(check) == 0  # alerted once
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    [alert] = received
    assert alert["kind"] == "template_regression" and alert["details"]["template"] == "v2"
    assert alert["details"]["previous"] == "v1" and alert["message"].startswith("chat: ")
