"""Model routing end to end: official SDKs → the gateway → the fake provider.

The router files here are the shipped router with its policy's bar moved to an end (every request
clears it, or none does), so the tests check the gateway's handling of a decision, not the model's
judgement (tests/routing measures that).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from faregate.cli import app
from faregate.config import Config
from faregate.errors import ConfigError
from faregate.fake_provider import FakeProvider, Scenario
from faregate.routing.artifact import Router, default_router_path, save_router
from faregate.routing.policy import Policy
from faregate.server import create_app
from tests.fixtures.gateway import RunningGateway, gateway_config
from tests.server._support import openai_client, wait_for_events

TIERS = {"small": "fast", "frontier": "gpt-4o"}  # `fast` is gpt-4o-mini on the fake (gateway_config)
QUESTION = [{"role": "user", "content": "What are your opening hours on Sunday?"}]


def router_file(tmp_path: Path, bar: float) -> str:
    """The shipped router with its bar at `bar`: 0 sends everything down, > 1 nothing."""
    router = Router.load(default_router_path())
    path = tmp_path / f"router-{bar}.npz"
    save_router(path, router.with_policy(Policy(("small", "frontier"), (bar,))))
    return str(path)


def routing(tmp_path: Path, bar: float, **extra: Any) -> dict[str, Any]:
    return {"tiers": TIERS, "router": router_file(tmp_path, bar), **extra}


def upstream_models(fake: FakeProvider) -> list[str]:
    return [str(r.body["model"]) for r in fake.requests if r.body is not None and "model" in r.body]


def ask(gw: RunningGateway, model: str, feature: str = "support") -> tuple[str, dict[str, str]]:
    client = openai_client(gw, default_headers={"X-FareGate-Feature": feature})
    raw = client.chat.completions.with_raw_response.create(model=model, messages=QUESTION)  # type: ignore[arg-type]
    return raw.parse().choices[0].message.content or "", dict(raw.headers)


def test_auto_goes_to_the_cheap_tier_the_router_trusts(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, tmp_path: Path
) -> None:
    gw = make_gateway(routing=routing(tmp_path, 0.0))
    _, headers = ask(gw, "auto")
    assert headers["x-faregate-route"] == "small/fast"
    assert upstream_models(fake_provider) == ["gpt-4o-mini"]
    [event] = wait_for_events(gw, 1)
    assert (event.tier, event.route_fallback, event.model_requested) == ("small", False, "auto")
    assert event.route_confidence is not None and 0 < event.route_confidence <= 1
    # The baseline is the same usage on the frontier model (gpt-4o costs ~16x gpt-4o-mini).
    assert event.routing_saving_nusd > 10 * event.cost_nusd > 0
    assert event.baseline_cost_nusd == event.cost_nusd + event.routing_saving_nusd


def test_when_no_tier_clears_the_bar_the_frontier_answers_and_the_fallback_is_recorded(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, tmp_path: Path
) -> None:
    gw = make_gateway(routing=routing(tmp_path, 1.01))
    _, headers = ask(gw, "auto")
    assert headers["x-faregate-route"] == "frontier/gpt-4o"
    assert upstream_models(fake_provider) == ["gpt-4o"]
    [event] = wait_for_events(gw, 1)
    assert (event.tier, event.route_fallback) == ("frontier", True)
    assert event.routing_saving_nusd == 0 and event.baseline_cost_nusd == event.cost_nusd


def test_a_feature_with_routing_moves_frontier_requests_down_and_leaves_other_models_alone(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, tmp_path: Path
) -> None:
    gw = make_gateway(routing=routing(tmp_path, 0.0), features={"support": {"routing": True}})
    _, moved = ask(gw, "gpt-4o")
    _, untouched = ask(gw, "gpt-4.1")  # not the frontier model: routing never moves sideways
    _, other_feature = ask(gw, "gpt-4o", feature="search")
    assert moved["x-faregate-route"] == "small/fast"
    assert "x-faregate-route" not in untouched and "x-faregate-route" not in other_feature
    assert upstream_models(fake_provider) == ["gpt-4o-mini", "gpt-4.1", "gpt-4o"]


def test_shadow_calls_ask_the_frontier_too_and_record_agreement(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, tmp_path: Path
) -> None:
    gw = make_gateway(routing=routing(tmp_path, 0.0, shadow_fraction=1.0))
    fake_provider.scenario = Scenario(text="We open at 10 on Sundays.")
    client = openai_client(gw, default_headers={"X-FareGate-Feature": "support"})
    stream = client.chat.completions.create(model="auto", messages=QUESTION, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert gw.gateway.router is not None
    asyncio.run_coroutine_threadsafe(gw.gateway.router.drain(), gw.loop).result(timeout=30)
    routed, shadow = wait_for_events(gw, 2)
    assert upstream_models(fake_provider) == ["gpt-4o-mini", "gpt-4o"]
    assert fake_provider.requests[-1].body is not None and "stream" not in fake_provider.requests[-1].body
    assert (routed.tier, routed.route_shadow_of) == ("small", None)
    assert (shadow.tier, shadow.route_shadow_of, shadow.route_agreed) == ("frontier", routed.request_id, True)
    assert shadow.feature == "support" and shadow.cost_nusd > 0

    report = httpx.get(f"{gw.url}/faregate/v1/routing").json()["features"]
    [support] = report
    expected = Router.load(default_router_path()).expected_frontier_share
    assert expected is not None and support["target_frontier_share"] == expected
    assert support["tiers"]["small"]["requests"] == 1 and support["shadow"] == {
        "compared": 1,
        "agreed": 1,
        "error_rate": 0.0,
        "error_upper_95": pytest.approx(0.7934, abs=1e-3),
    }


def test_feedback_is_joined_to_the_rated_request_per_tier(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, tmp_path: Path
) -> None:
    gw = make_gateway(routing=routing(tmp_path, 0.0))
    _, headers = ask(gw, "auto")
    request_id = headers["x-faregate-request-id"]
    wait_for_events(gw, 1)
    assert (
        httpx.post(
            f"{gw.url}/faregate/v1/feedback", json={"request_id": request_id, "rating": 0.25}
        ).status_code
        == 200
    )
    assert (
        httpx.post(f"{gw.url}/faregate/v1/feedback", json={"request_id": request_id, "rating": 1}).status_code
        == 200
    )
    for bad in (
        {"request_id": request_id, "rating": 5},
        {"request_id": "../x", "rating": 1},
        {"rating": 1},
        [],
    ):
        response = httpx.post(f"{gw.url}/faregate/v1/feedback", json=bad)
        assert response.status_code == 400 and response.json()["error"]["message"]
    result = CliRunner().invoke(app, ["router", "stats", "--db", gw.config.database, "--format", "json"])
    assert result.exit_code == 0, result.output
    [support] = json.loads(result.output)
    assert support["feedback"] == {"small": {"ratings": 1, "mean_rating": 1.0}}  # the latest rating counts
    table = CliRunner().invoke(app, ["router", "stats", "--db", gw.config.database])
    assert "support" in table.output and "small 1.00" in table.output


def test_a_missing_or_corrupt_router_file_refuses_to_start(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip")
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    for path, reason in ((corrupt, "not a router file"), (tmp_path / "absent.npz", "no such file")):
        config = gateway_config(fake_provider.url, database, routing={"tiers": TIERS, "router": str(path)})
        with pytest.raises(ConfigError, match=reason) as caught:
            create_app(config)
        assert str(path) in str(caught.value)
    # Routing off (no tiers): the router file is never read.
    create_app(gateway_config(fake_provider.url, database, routing={"router": str(corrupt)}))


def test_serve_exits_2_naming_the_router_file(tmp_path: Path) -> None:
    config = tmp_path / "faregate.yaml"
    config.write_text(
        "providers: {openai: {type: openai}}\n"
        f"routing: {{tiers: {{small: gpt-4o-mini, frontier: gpt-4o}}, router: {tmp_path / 'absent.npz'}}}\n"
    )
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert "absent.npz" in result.output and "no such file" in result.output


def test_routing_config_needs_a_frontier_and_a_cheaper_tier() -> None:
    with pytest.raises(ValueError, match="frontier"):
        Config.model_validate({"routing": {"tiers": {"small": "gpt-4o-mini"}}})
    with pytest.raises(ValueError, match=r"routing\.tiers"):
        Config.model_validate({"features": {"chat": {"routing": True}}})
