"""Output caps through the real server: official SDKs → the gateway → the fake provider.

The fake clamps its output to the request's limit and answers `length` / `max_tokens` as the real
APIs do, so a cap that binds shows up as a cut response, and the ledger must say so.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from faregate.fake_provider import FakeProvider, Scenario
from faregate.pipeline.cap import apply_cap
from tests.fixtures.gateway import RunningGateway
from tests.server._support import SONNET, SONNET_DEPRECATION, anthropic_client, openai_client, wait_for_events

pytestmark = pytest.mark.filterwarnings(SONNET_DEPRECATION)

CAPPED = {"chat": {"max_output_tokens": 100}}
HEADERS = {"X-FareGate-Feature": "chat"}


@pytest.fixture
def gw(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return make_gateway(features=CAPPED)


def last_body(fake: FakeProvider) -> dict[str, object]:
    body = fake.requests[-1].body
    assert body is not None
    return body


def test_openai_request_without_a_limit_gets_the_cap_and_a_cut_answer_is_counted(
    gw: RunningGateway, fake_provider: FakeProvider
) -> None:
    fake_provider.scenario = Scenario(completion_tokens=400)
    client = openai_client(gw, default_headers=HEADERS)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Essay?"}]
    )
    assert last_body(fake_provider)["max_completion_tokens"] == 100
    assert reply.choices[0].finish_reason == "length"
    [event] = wait_for_events(gw, 1)
    assert (event.output_cap, event.output_capped, event.output_tokens) == (100, True, 100)


def test_a_lower_client_limit_stands_and_is_not_recorded_as_a_cap(
    gw: RunningGateway, fake_provider: FakeProvider
) -> None:
    fake_provider.scenario = Scenario(completion_tokens=400)
    client = openai_client(gw, default_headers=HEADERS)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Short?"}], max_tokens=30
    )
    body = last_body(fake_provider)
    assert body["max_tokens"] == 30 and "max_completion_tokens" not in body
    [event] = wait_for_events(gw, 1)
    assert (event.output_cap, event.output_capped) == (None, None)


def test_anthropic_stream_above_the_cap_is_lowered_and_an_answer_that_fits_is_not_counted_as_cut(
    gw: RunningGateway, fake_provider: FakeProvider
) -> None:
    fake_provider.scenario = Scenario(completion_tokens=40)
    client = anthropic_client(gw, default_headers=HEADERS)
    with client.messages.stream(
        model=SONNET, max_tokens=4096, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        message = stream.get_final_message()
    assert last_body(fake_provider)["max_tokens"] == 100
    assert message.stop_reason == "end_turn"
    [event] = wait_for_events(gw, 1)
    assert (event.output_cap, event.output_capped) == (100, False)


def test_other_features_are_not_capped(gw: RunningGateway, fake_provider: FakeProvider) -> None:
    client = openai_client(gw, default_headers={"X-FareGate-Feature": "search"})
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    body = last_body(fake_provider)
    assert "max_completion_tokens" not in body and "max_tokens" not in body
    [event] = wait_for_events(gw, 1)
    assert event.output_cap is None


@pytest.mark.parametrize(
    ("body", "expected", "applied"),
    [
        ({}, {"max_completion_tokens": 50}, True),
        ({"max_tokens": 500}, {"max_tokens": 50}, True),
        (
            {"max_tokens": 500, "max_completion_tokens": 20},
            {"max_tokens": 500, "max_completion_tokens": 20},
            False,
        ),
        (
            {"max_tokens": 500, "max_completion_tokens": 80},
            {"max_tokens": 50, "max_completion_tokens": 50},
            True,
        ),
        ({"max_completion_tokens": None}, {"max_completion_tokens": 50}, True),
    ],
)
def test_openai_limits(body: dict[str, object], expected: dict[str, object], applied: bool) -> None:
    assert apply_cap("openai", body, 50) is applied
    assert body == expected


def test_openai_compatible_servers_get_the_legacy_name() -> None:
    body: dict[str, object] = {}
    assert apply_cap("openai", body, 50, legacy_name=True)
    assert body == {"max_tokens": 50}
