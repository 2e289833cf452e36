"""Virtual keys on the proxy routes, through the official SDKs, against a real gateway and fake upstream.

Every gateway here runs with `auth.virtual_keys: true` and provider keys in its environment: the
fake provider must see the gateway's key, never the client's virtual key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from faregate.fake_provider import FakeProvider, Scenario
from faregate.keys import KeyRecord, KeyStore, open_key_store
from tests.fixtures.gateway import RunningGateway
from tests.server._support import SONNET, SONNET_DEPRECATION, wait_for_events

pytestmark = pytest.mark.filterwarnings(SONNET_DEPRECATION)

OPENAI_PROVIDER_KEY = "sk-gateway-openai-key"
ANTHROPIC_PROVIDER_KEY = "sk-ant-gateway-key"
ADMIN_KEY = "admin-key-for-tests"
MESSAGES: list[Any] = [{"role": "user", "content": "Where is my order?"}]


class Keyed:
    """A running gateway with virtual keys on, and its key store (as `faregate keys` would use it)."""

    def __init__(self, running: RunningGateway) -> None:
        self.running = running
        self.url = running.url
        self.keys: KeyStore = open_key_store(running.config.database)

    def create(self, team: str, **kwargs: Any) -> tuple[str, KeyRecord]:
        return self.keys.create(team, **kwargs)

    def openai(self, key: str, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **kwargs)

    def anthropic(self, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0)


def start_keyed(
    make_gateway: Callable[..., RunningGateway],
    fake_provider: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
    **overrides: Any,
) -> Keyed:
    """A gateway with virtual keys on, provider keys and an admin key in its environment."""
    monkeypatch.setenv("FG_TEST_OPENAI_KEY", OPENAI_PROVIDER_KEY)
    monkeypatch.setenv("FG_TEST_ANTHROPIC_KEY", ANTHROPIC_PROVIDER_KEY)
    monkeypatch.setenv("FG_TEST_ADMIN_KEY", ADMIN_KEY)
    providers = {
        "openai": {
            "type": "openai",
            "base_url": f"{fake_provider.url}/v1",
            "api_key_env": "FG_TEST_OPENAI_KEY",
        },
        "anthropic": {
            "type": "anthropic",
            "base_url": fake_provider.url,
            "api_key_env": "FG_TEST_ANTHROPIC_KEY",
        },
    }
    providers.update(overrides.pop("providers", {}))
    auth = {"virtual_keys": True, **overrides.pop("auth", {})}
    server = {"admin_key_env": "FG_TEST_ADMIN_KEY", **overrides.pop("server", {})}
    return Keyed(make_gateway(providers=providers, auth=auth, server=server, **overrides))


@pytest.fixture
def make_keyed(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Keyed]]:
    made: list[Keyed] = []

    def make(**overrides: Any) -> Keyed:
        made.append(start_keyed(make_gateway, fake_provider, monkeypatch, **overrides))
        return made[-1]

    yield make
    for keyed in made:
        keyed.keys.close()


@pytest.fixture
def keyed(make_keyed: Callable[..., Keyed]) -> Keyed:
    return make_keyed()


def completions(fake: FakeProvider) -> list[Any]:
    return [r for r in fake.requests if r.path in ("/v1/chat/completions", "/v1/messages")]


# --- a valid key ----------------------------------------------------------------------------------


def test_a_valid_key_works_and_only_the_gateways_key_goes_upstream(
    keyed: Keyed, fake_provider: FakeProvider
) -> None:
    key, record = keyed.create("search")
    fake_provider.push(Scenario(text="It ships today."))

    with keyed.openai(key) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert reply.choices[0].message.content == "It ships today."
    (upstream,) = completions(fake_provider)
    assert upstream.headers["authorization"] == f"Bearer {OPENAI_PROVIDER_KEY}"
    assert key not in repr(upstream.headers) and record.id not in repr(upstream.headers)
    (event,) = wait_for_events(keyed.running, 1)
    assert (event.status, event.key_id, event.team) == (200, record.id, "search")


def test_anthropic_clients_send_the_key_as_x_api_key(keyed: Keyed, fake_provider: FakeProvider) -> None:
    key, record = keyed.create("search")

    with keyed.anthropic(key) as client:
        reply = client.messages.create(model=SONNET, max_tokens=64, messages=MESSAGES)

    assert reply.content
    (upstream,) = completions(fake_provider)
    assert upstream.headers["x-api-key"] == ANTHROPIC_PROVIDER_KEY
    assert "authorization" not in upstream.headers
    (event,) = wait_for_events(keyed.running, 1)
    assert (event.status, event.key_id) == (200, record.id)


def test_a_keyless_upstream_gets_no_credential_rather_than_the_clients(
    make_keyed: Callable[..., Keyed], fake_provider: FakeProvider
) -> None:
    local = {"type": "openai-compatible", "base_url": f"{fake_provider.url}/v1"}
    keyed = make_keyed(
        providers={"local": local}, models={"fast": {"provider": "local", "model": "gpt-4o-mini"}}
    )
    key, _ = keyed.create("search")

    with keyed.openai(key) as client:
        client.chat.completions.create(model="fast", messages=MESSAGES)

    (upstream,) = completions(fake_provider)
    assert "authorization" not in upstream.headers and "x-api-key" not in upstream.headers


def test_the_keys_team_wins_over_the_team_header(keyed: Keyed) -> None:
    key, _ = keyed.create("search")

    with keyed.openai(key, default_headers={"X-FareGate-Team": "ads", "X-FareGate-Feature": "faq"}) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, metadata={"team": "ads"})

    (event,) = wait_for_events(keyed.running, 1)
    assert (event.team, event.feature) == ("search", "faq")


# --- refused keys ---------------------------------------------------------------------------------


def test_unknown_and_malformed_keys_are_401_in_openais_format_and_in_the_ledger(
    keyed: Keyed, fake_provider: FakeProvider
) -> None:
    unknown = "fgk-0123456789ab-" + "A" * 43
    for key in (unknown, "sk-some-provider-key"):
        with keyed.openai(key) as client, pytest.raises(openai.AuthenticationError) as raised:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert raised.value.status_code == 401
        body: Any = raised.value.body
        assert body["type"] == "invalid_request_error" and body["code"] == "authentication_error"
        assert key not in body["message"] and "A" * 10 not in body["message"]

    assert completions(fake_provider) == []
    events = wait_for_events(keyed.running, 2)
    assert [(e.status, e.error_kind, e.key_id) for e in events] == [(401, "authentication_error", None)] * 2


def test_unknown_keys_are_401_in_anthropics_format(keyed: Keyed) -> None:
    with (
        keyed.anthropic("fgk-0123456789ab-" + "B" * 43) as client,
        pytest.raises(anthropic.AuthenticationError) as raised,
    ):
        client.messages.create(model=SONNET, max_tokens=64, messages=MESSAGES)
    body: Any = raised.value.body
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert wait_for_events(keyed.running, 1)[0].status == 401


def test_a_missing_key_is_401_and_says_how_to_send_one(keyed: Keyed) -> None:
    response = httpx.post(
        f"{keyed.url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES}
    )

    assert response.status_code == 401
    assert "Authorization: Bearer <key>" in response.json()["error"]["message"]
    assert wait_for_events(keyed.running, 1)[0].status == 401


def test_a_revoked_key_is_refused_within_key_cache_s(make_keyed: Callable[..., Keyed]) -> None:
    keyed = make_keyed(auth={"key_cache_s": 0.3})
    key, record = keyed.create("search")
    with keyed.openai(key) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # verified and cached
        keyed.keys.revoke(record.id)
        revoked_at = time.monotonic()
        while True:
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            except openai.AuthenticationError:
                break
            assert time.monotonic() - revoked_at < 0.3 + 0.5, "still accepted well after key_cache_s"
            time.sleep(0.05)


def test_with_key_cache_s_0_a_revocation_takes_effect_on_the_next_request(
    make_keyed: Callable[..., Keyed],
) -> None:
    keyed = make_keyed(auth={"key_cache_s": 0})
    key, record = keyed.create("search")
    with keyed.anthropic(key) as client:
        client.messages.create(model=SONNET, max_tokens=64, messages=MESSAGES)
        keyed.keys.revoke(record.id)
        with pytest.raises(anthropic.AuthenticationError):
            client.messages.create(model=SONNET, max_tokens=64, messages=MESSAGES)


# --- allow-list and budget ------------------------------------------------------------------------


def test_a_model_outside_the_allow_list_is_403(keyed: Keyed, fake_provider: FakeProvider) -> None:
    key, _ = keyed.create("search", models=["fast"])

    with keyed.openai(key) as client:
        client.chat.completions.create(model="fast", messages=MESSAGES)
        for model in ("gpt-4o-mini", "auto"):  # the model asked for, `auto` included
            with pytest.raises(openai.PermissionDeniedError) as raised:
                client.chat.completions.create(model=model, messages=MESSAGES)
            body: Any = raised.value.body
            assert body["code"] == "permission_denied" and repr(model) in body["message"]
    with keyed.anthropic(key) as claude, pytest.raises(anthropic.PermissionDeniedError) as refused:
        claude.messages.create(model=SONNET, max_tokens=64, messages=MESSAGES)
    assert refused.value.body["error"]["type"] == "permission_error"  # type: ignore[index,call-overload]

    assert len(completions(fake_provider)) == 1
    statuses = [e.status for e in wait_for_events(keyed.running, 4)]
    assert sorted(statuses) == [200, 403, 403, 403]


def test_models_lists_only_what_the_key_may_use_and_needs_a_key(make_keyed: Callable[..., Keyed]) -> None:
    keyed = make_keyed(models={"big": {"provider": "openai", "model": "gpt-4o"}})
    narrow, _ = keyed.create("search", models=["fast"])
    wide, _ = keyed.create("search")
    with keyed.openai(narrow) as client:
        assert [m.id for m in client.models.list()] == ["fast"]
    with keyed.openai(wide) as client:
        assert sorted(m.id for m in client.models.list()) == ["big", "fast"]
    with keyed.openai("fgk-000000000000-" + "x" * 43) as client, pytest.raises(openai.AuthenticationError):
        client.models.list()
    refused = httpx.get(f"{keyed.url}/v1/models", headers={"anthropic-version": "2023-06-01"})
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"


def test_a_key_budget_is_enforced_with_429_and_other_keys_are_not_affected(
    keyed: Keyed, fake_provider: FakeProvider
) -> None:
    budgeted, record = keyed.create("search", budget_usd="0.01", budget_period="day")
    other, _ = keyed.create("search")
    # gpt-4o-mini output at $0.60 per million tokens: 20k tokens cost $0.012, over the $0.01 budget.
    fake_provider.push(Scenario(prompt_tokens=10, completion_tokens=20_000))

    with keyed.openai(budgeted) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
        deadline = time.monotonic() + 5
        while True:  # the actual cost is settled off the response path: wait for it
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
            except openai.RateLimitError as exc:
                assert f"key:{record.id}" in exc.message and "exhausted" in exc.message
                break
            assert time.monotonic() < deadline, "the key's budget was never enforced"
            time.sleep(0.05)
    with keyed.openai(other) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)

    refused = [e for e in keyed.running.events() if e.status == 429]
    assert refused and all(e.error_kind == "budget_exceeded" and e.key_id == record.id for e in refused)


# --- the admin API with a virtual key ------------------------------------------------------------


def test_a_virtual_key_reads_only_its_teams_numbers(keyed: Keyed) -> None:
    search_key, search = keyed.create("search", budget_usd="5")
    ads_key, _ = keyed.create("ads", budget_usd="7")
    for key in (search_key, ads_key):
        with keyed.openai(key) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    wait_for_events(keyed.running, 2)
    api = f"{keyed.url}/faregate/v1"
    as_search = {"authorization": f"Bearer {search_key}"}
    as_admin = {"authorization": f"Bearer {ADMIN_KEY}"}

    mine = httpx.get(f"{api}/attribution", params={"by": "team"}, headers=as_search)
    everyone = httpx.get(f"{api}/attribution", params={"by": "team"}, headers=as_admin)
    other_team = httpx.get(f"{api}/attribution", params={"by": "feature", "team": "ads"}, headers=as_search)
    budgets = httpx.get(f"{api}/budgets", headers=as_search)

    assert mine.status_code == 200 and [r["key"] for r in mine.json()["rows"]] == ["search"]
    assert sorted(r["key"] for r in everyone.json()["rows"]) == ["ads", "search"]
    assert other_team.status_code == 403
    assert [b["name"] for b in budgets.json()["budgets"]] == [search.id]
    assert len(httpx.get(f"{api}/budgets", headers=as_admin).json()["budgets"]) == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/faregate/v1/overview"),
        ("GET", "/faregate/v1/cache/stats"),
        ("GET", "/faregate/v1/routing"),
        ("GET", "/metrics"),
        ("DELETE", "/faregate/v1/cache"),
        ("POST", "/faregate/v1/feedback"),
        ("POST", "/faregate/v1/events"),
    ],
)
def test_a_virtual_key_cannot_use_endpoints_that_span_teams(keyed: Keyed, method: str, path: str) -> None:
    key, _ = keyed.create("search")
    response = httpx.request(
        method, f"{keyed.url}{path}", headers={"authorization": f"Bearer {key}"}, json={}
    )
    assert response.status_code == 403
    assert "admin key" in response.json()["error"]["message"]


def test_the_admin_api_refuses_revoked_virtual_keys(keyed: Keyed) -> None:
    key, record = keyed.create("search")
    keyed.keys.revoke(record.id)
    response = httpx.get(f"{keyed.url}/faregate/v1/attribution", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 401
    assert key not in response.text


def test_a_key_budget_holds_across_replicas_sharing_postgres(
    postgres_db_url: str, make_keyed: Callable[..., Keyed], fake_provider: FakeProvider
) -> None:  # the database first: set up before the replicas, dropped after they stopped
    first, second = make_keyed(database=postgres_db_url), make_keyed(database=postgres_db_url)
    key, record = first.create("search", budget_usd="0.01")
    fake_provider.push(Scenario(prompt_tokens=10, completion_tokens=20_000))  # $0.012: over the budget

    with first.openai(key) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    deadline = time.monotonic() + 5
    with second.openai(key) as client:  # the other replica sees the spend in the shared rows
        while True:
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
            except openai.RateLimitError as exc:
                assert f"key:{record.id}" in exc.message
                break
            assert time.monotonic() < deadline, "the other replica never enforced the key's budget"
            time.sleep(0.05)
