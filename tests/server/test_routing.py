"""Model routing end to end: official SDKs → the gateway → the fake provider.

The router files here are the shipped router with its policy's bar moved to an end (every request
clears it, or none does), so the tests check the gateway's handling of a decision, not the model's
judgement (tests/routing measures that).
"""

from __future__ import annotations

import asyncio
import dataclasses
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


def shadowed_gateway(
    make_gateway: Callable[..., RunningGateway], tmp_path: Path, **extra: Any
) -> RunningGateway:
    """Every request routed down (bar 0, never "unsure") and shadowed."""
    shipped = Router.load(default_router_path())
    sure = dataclasses.replace(shipped.classifier, ood_floor=-2.0)  # cosine is never under -2
    path = tmp_path / "router-down.npz"
    save_router(path, Router(shipped.tiers, sure, Policy(("small", "frontier"), (0.0,)), shipped.meta))
    return make_gateway(routing={"tiers": TIERS, "router": str(path), "shadow_fraction": 1.0}, **extra)


def ask_and_shadow(gw: RunningGateway, fake: FakeProvider, question: str, routed: str, frontier: str) -> None:
    """One routed-down request answered `routed`, its shadow call answered `frontier`."""
    fake.push(Scenario(text=routed), Scenario(text=frontier))
    client = openai_client(gw, default_headers={"X-FareGate-Feature": "support"})
    client.chat.completions.create(
        model="auto",
        messages=[
            {"role": "system", "content": "You are the help desk."},
            {"role": "user", "content": question},
        ],
    )
    assert gw.gateway.router is not None
    asyncio.run_coroutine_threadsafe(gw.gateway.router.drain(), gw.loop).result(timeout=30)


def test_shadow_checks_export_as_training_rows_a_router_trains_on(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, tmp_path: Path
) -> None:
    """The loop the docs promise: route, shadow, export, train on your own outcomes."""
    from faregate.routing.data import read_rows

    db = f"sqlite:///{tmp_path}/ledger-shadow.db"
    gw = shadowed_gateway(make_gateway, tmp_path, database=db, privacy={"store_prompts": True})
    same = "You can change your delivery address in Settings, under Addresses, until the order ships."
    for i in range(60):
        if i % 3:  # the small model gets simple questions right
            ask_and_shadow(
                gw, fake_provider, f"How do I change the delivery address of order {i}?", same, same
            )
        else:  # and multi-step ones wrong
            ask_and_shadow(
                gw,
                fake_provider,
                f"Work out the refund for order {i}: 3 items at 17.50, one returned late, 8% restocking fee.",
                "The weather is lovely today.",
                "Your refund is 35.00 less 2.80 restocking, so 32.20.",
            )
    wait_for_events(gw, 120, timeout=30)
    out = tmp_path / "outcomes.jsonl"
    result = CliRunner().invoke(
        app, ["router", "export", "--db", db, "--out", str(out), "--format", "json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["agreed"], summary["disagreed"]) == (60, 40, 20)
    assert summary["tiers"] == "small=gpt-4o-mini,frontier=gpt-4o"
    rows = read_rows([out])  # the format `router train` reads
    refund = next(r for r in rows if "refund for order 0" in r.prompt)
    assert refund.prompt.startswith("Work out the refund") and refund.category == "support"
    assert refund.scores == {"gpt-4o-mini": 0.0, "gpt-4o": 1.0}
    assert refund.costs is not None and 0 < refund.costs["gpt-4o-mini"] < refund.costs["gpt-4o"]

    router = tmp_path / "own.npz"
    trained = CliRunner().invoke(
        app, ["router", "train", "--data", str(out), "--tiers", summary["tiers"], "--out", str(router)]
    )
    assert trained.exit_code == 0, trained.output
    own = Router.load(router)
    heldout = own.meta["training"]["heldout"]  # cross-validated on the exported rows
    assert own.meta["training"]["rows"] == 60 and heldout["apgr"]["small"] > 0.75, heldout
    assert heldout["quality_vs_frontier"] >= 0.95 and heldout["frontier_share"] < 0.5, heldout


def test_export_without_stored_prompts_says_what_to_set(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/ledger-private.db"
    gw = shadowed_gateway(make_gateway, tmp_path, database=db)
    ask_and_shadow(gw, fake_provider, "What are your opening hours?", "Nine to five.", "Nine to five.")
    wait_for_events(gw, 2)
    out = tmp_path / "outcomes.jsonl"
    result = CliRunner().invoke(app, ["router", "export", "--db", db, "--out", str(out)])
    assert result.exit_code == 2 and "privacy.store_prompts" in result.stderr
    assert not out.exists()
    empty = f"sqlite:///{tmp_path}/empty.db"
    result = CliRunner().invoke(app, ["router", "export", "--db", empty, "--out", str(out)])
    assert result.exit_code == 2 and "routing.shadow_fraction" in result.stderr
