"""Every request's input split by component lands in the ledger, summing to the provider's total."""

from __future__ import annotations

from typing import Any

import pytest

from faregate import tokens
from faregate.fake_provider import FakeProvider, Scenario
from tests.fixtures.gateway import RunningGateway
from tests.server._support import GatewayView, anthropic_client, only_event, openai_client

SYSTEM = "You are the support assistant for Acme Bank. " * 40
DOCUMENT = "Wire transfers above 10,000 USD need a second approval from a branch manager. " * 30
QUERY = "How long does an international wire take?"
TOOLS = [{"type": "function", "function": {"name": "lookup_account", "parameters": {"type": "object"}}}]


def openai_body() -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "tools": TOOLS,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Hi, I need help with a transfer."},
            {"role": "assistant", "content": "Of course. What would you like to know?"},
            {"role": "user", "content": f"<documents>{DOCUMENT}</documents>\n{QUERY}"},
        ],
    }


def test_openai_request_split_sums_to_reported_input(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    body = openai_body()
    local_total = tokens.count_messages_openai("gpt-4o-mini", body)
    fake_provider.push(Scenario(prompt_tokens=local_total))  # the provider agrees with the tokenizer
    with openai_client(shared_gateway) as client:
        client.chat.completions.create(**body)
    event = only_event(shared_gateway)
    parts = [
        event.system_tokens,
        event.tools_tokens,
        event.history_tokens,
        event.context_tokens,
        event.query_tokens,
        event.overhead_tokens,
    ]
    assert sum(parts) == event.input_tokens == local_total
    assert event.system_tokens == tokens.count_text("gpt-4o-mini", SYSTEM)
    assert event.context_tokens >= tokens.count_text("gpt-4o-mini", DOCUMENT)
    assert 0 < event.query_tokens < 20
    assert event.history_tokens > 0 and event.tools_tokens > 0
    # the document dominates this request, the question is a sliver of it
    assert event.context_tokens > event.system_tokens > event.query_tokens


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_anthropic_split_is_scaled_to_the_provider_total(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(Scenario(prompt_tokens=5_000, cached_tokens=3_000))
    with anthropic_client(shared_gateway) as client:
        client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=100,
            system=SYSTEM,
            messages=[{"role": "user", "content": QUERY}],
        )
    event = only_event(shared_gateway)
    assert event.input_tokens == 5_000
    assert (
        event.system_tokens
        + event.tools_tokens
        + event.history_tokens
        + event.context_tokens
        + event.query_tokens
        + event.overhead_tokens
    ) == 5_000
    assert event.system_tokens > 10 * event.query_tokens > 0


def test_feature_context_pattern_from_config(make_gateway: Any, fake_provider: FakeProvider) -> None:
    gateway: RunningGateway = make_gateway(
        features={"kb-search": {"context_patterns": [r"(?s)BEGIN KB.*?END KB"]}}
    )
    content = f"BEGIN KB {DOCUMENT} END KB {QUERY}"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    for feature in ("kb-search", "other"):
        fake_provider.push(Scenario(prompt_tokens=tokens.count_messages_openai("gpt-4o-mini", body)))
        with openai_client(gateway) as client:
            client.chat.completions.create(**body, extra_headers={"X-FareGate-Feature": feature})
    by_feature = {e.feature: e for e in gateway.events()}
    kb, other = by_feature["kb-search"], by_feature["other"]
    assert kb.context_tokens > kb.query_tokens > 0
    assert other.context_tokens == 0
    assert other.query_tokens == other.input_tokens - other.overhead_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_large_request_is_measured_off_the_event_loop_and_still_recorded(
    shared_gateway: GatewayView, fake_provider: FakeProvider, stream: bool
) -> None:
    """Bodies over the inline limit are counted in a worker thread; settle waits for the count."""
    from faregate.pipeline.anatomy import INLINE_MAX_BODY_BYTES

    big_document = DOCUMENT * 12
    body = openai_body()
    body["messages"][-1]["content"] = f"<documents>{big_document}</documents>\n{QUERY}"
    assert len(str(body)) > INLINE_MAX_BODY_BYTES
    local_total = tokens.count_messages_openai("gpt-4o-mini", body)
    fake_provider.push(Scenario(prompt_tokens=local_total))
    with openai_client(shared_gateway) as client:
        if stream:
            assert list(client.chat.completions.create(**body, stream=True))
        else:
            client.chat.completions.create(**body)
    event = only_event(shared_gateway)
    assert event.stream is stream
    assert event.context_tokens >= tokens.count_text("gpt-4o-mini", big_document)
    assert event.system_tokens == tokens.count_text("gpt-4o-mini", SYSTEM)
    assert event.query_tokens > 0
