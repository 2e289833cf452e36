"""Who a call was for: `X-FareGate-*` headers, body `metadata`, provider-native user ids -> ledger."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from faregate.call import ATTRIBUTION_DIMENSIONS
from faregate.fake_provider import FakeProvider
from faregate.ledger import CostEvent
from tests.server._support import (
    SONNET,
    SONNET_DEPRECATION,
    Gateway,
    GatewayView,
    anthropic_client,
    only_event,
    openai_client,
)

pytestmark = pytest.mark.filterwarnings(SONNET_DEPRECATION)

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
DIMENSIONS = ("feature", "team", "template", "cohort", "user", "conversation", "task")
HEADERS = {f"X-FareGate-{d.capitalize()}": f"{d}-from-header" for d in DIMENSIONS}
METADATA = {d: f"{d}-from-metadata" for d in DIMENSIONS}


def attribution(event: CostEvent) -> dict[str, str]:
    return {d: getattr(event, d) for d in DIMENSIONS}


def send(
    gw: Gateway,
    protocol: str,
    *,
    headers: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    **body: Any,
) -> None:
    """One successful call through the official SDK of `protocol`."""
    extra: dict[str, Any] = {"extra_headers": headers or {}}
    if metadata is not None:
        extra["metadata"] = metadata
    if protocol == "openai":
        with openai_client(gw) as o:
            o.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **extra, **body)
    else:
        with anthropic_client(gw) as c:
            c.messages.create(model=SONNET, max_tokens=32, messages=MESSAGES, **extra, **body)


def upstream_body(fake: FakeProvider) -> dict[str, Any]:
    body = fake.requests[-1].body
    assert body is not None
    return body


def test_dimension_list_matches_the_ledger() -> None:
    assert tuple(ATTRIBUTION_DIMENSIONS) == DIMENSIONS


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_each_header_lands_in_the_ledger(shared_gateway: GatewayView, protocol: str) -> None:
    send(shared_gateway, protocol, headers=HEADERS)
    assert attribution(only_event(shared_gateway)) == {d: f"{d}-from-header" for d in DIMENSIONS}


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_one_header_sets_only_its_dimension(shared_gateway: GatewayView, dimension: str) -> None:
    send(shared_gateway, "openai", headers={f"x-faregate-{dimension}": "only-this"})
    expected = {d: "unattributed" for d in DIMENSIONS} | {dimension: "only-this"}
    assert attribution(only_event(shared_gateway)) == expected


def test_headers_are_not_forwarded_upstream(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    send(shared_gateway, "openai", headers=HEADERS)
    assert not [h for h in fake_provider.requests[-1].headers if h.startswith("x-faregate-")]


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_metadata_keys_land_in_the_ledger_and_are_stripped(
    shared_gateway: GatewayView, fake_provider: FakeProvider, protocol: str
) -> None:
    send(shared_gateway, protocol, metadata=dict(METADATA))
    assert attribution(only_event(shared_gateway)) == {d: f"{d}-from-metadata" for d in DIMENSIONS}
    assert "metadata" not in upstream_body(fake_provider)


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_prefixed_metadata_keys(
    shared_gateway: GatewayView, fake_provider: FakeProvider, protocol: str
) -> None:
    send(shared_gateway, protocol, metadata={"faregate_feature": "search", "faregate_cohort": "beta"})
    event = only_event(shared_gateway)
    assert (event.feature, event.cohort, event.team) == ("search", "beta", "unattributed")
    assert "metadata" not in upstream_body(fake_provider)


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_headers_win_over_metadata(
    shared_gateway: GatewayView, fake_provider: FakeProvider, protocol: str
) -> None:
    send(
        shared_gateway,
        protocol,
        headers={"X-FareGate-Feature": "header-feature"},
        metadata={"feature": "metadata-feature", "team": "metadata-team"},
    )
    event = only_event(shared_gateway)
    assert (event.feature, event.team) == ("header-feature", "metadata-team")
    # the losing key is still FareGate's: it must not reach the provider either
    assert "metadata" not in upstream_body(fake_provider)


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_no_attribution_is_unattributed(shared_gateway: GatewayView, protocol: str) -> None:
    send(shared_gateway, protocol)
    assert attribution(only_event(shared_gateway)) == {d: "unattributed" for d in DIMENSIONS}


def test_openai_user_field_is_the_user_fallback(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    send(shared_gateway, "openai", user="end-user-9")
    assert only_event(shared_gateway).user == "end-user-9"
    assert upstream_body(fake_provider)["user"] == "end-user-9"  # the provider still gets it


def test_user_header_wins_over_openai_user_field(shared_gateway: GatewayView) -> None:
    send(shared_gateway, "openai", headers={"X-FareGate-User": "u-header"}, user="u-body")
    assert only_event(shared_gateway).user == "u-header"


def test_user_metadata_key_wins_over_openai_user_field(shared_gateway: GatewayView) -> None:
    send(shared_gateway, "openai", metadata={"user": "u-metadata"}, user="u-body")
    assert only_event(shared_gateway).user == "u-metadata"


def test_anthropic_user_id_is_the_user_fallback(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    send(shared_gateway, "anthropic", metadata={"user_id": "u-anthropic", "team": "legal"})
    event = only_event(shared_gateway)
    assert (event.user, event.team) == ("u-anthropic", "legal")
    assert upstream_body(fake_provider)["metadata"] == {"user_id": "u-anthropic"}


def test_long_values_are_truncated(shared_gateway: GatewayView) -> None:
    send(shared_gateway, "openai", headers={"X-FareGate-Feature": "f" * 1000}, metadata={"team": "t" * 1000})
    event = only_event(shared_gateway)
    assert (event.feature, event.team) == ("f" * 256, "t" * 256)


def test_non_string_metadata_values(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    """An int is a usable id; a nested object or a bool is not, but it is still FareGate's key."""
    httpx.post(
        f"{shared_gateway.url}/v1/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "messages": MESSAGES,
            "metadata": {"cohort": 7, "feature": {"nested": 1}, "team": True, "keep": "me"},
        },
    ).raise_for_status()
    event = only_event(shared_gateway)
    assert (event.cohort, event.feature, event.team) == ("7", "unattributed", "unattributed")
    assert upstream_body(fake_provider)["metadata"] == {"keep": "me"}


def test_attribution_is_per_request(shared_gateway: GatewayView) -> None:
    send(shared_gateway, "openai", headers={"X-FareGate-Feature": "a"})
    send(shared_gateway, "anthropic", metadata={"feature": "b"})
    send(shared_gateway, "openai")
    assert [e.feature for e in shared_gateway.events()] == ["a", "b", "unattributed"]


def test_failed_requests_are_attributed_by_header(shared_gateway: GatewayView) -> None:
    reply = httpx.post(
        f"{shared_gateway.url}/v1/chat/completions",
        content=b"{not json",
        headers={"X-FareGate-Feature": "broken-client", "X-FareGate-Team": "web"},
    )
    assert reply.status_code == 400
    event = only_event(shared_gateway)
    assert (event.feature, event.team, event.status) == ("broken-client", "web", 400)


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_invalid_request_is_attributed_by_metadata(shared_gateway: GatewayView, protocol: str) -> None:
    path = "/v1/chat/completions" if protocol == "openai" else "/v1/messages"
    # Valid JSON with metadata, but missing a required field (messages / max_tokens).
    body: dict[str, Any] = {"model": "gpt-4o-mini", "metadata": {"feature": "checkout", "team": "payments"}}
    if protocol == "anthropic":
        body = {
            "model": SONNET,
            "messages": MESSAGES,
            "metadata": {"feature": "checkout", "team": "payments"},
        }
    reply = httpx.post(f"{shared_gateway.url}{path}", json=body)
    assert reply.status_code == 400
    event = only_event(shared_gateway)
    assert (event.feature, event.team) == ("checkout", "payments")
