"""Cost through the whole gateway, checked against prices worked out by hand (USD per million tokens).

    gpt-4o-mini        input 0.15   cached read 0.075                                   output 0.60
    claude-sonnet-4-5  input 3      cached read 0.30   5-min write 3.75  1-h write 6    output 15
                       (whole call at input 6 / read 0.60 / output 22.50 above 200k prompt tokens)

Each expected cost is written as the sum of its parts in micro-dollars (USD x 1e6), then scaled.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest

from faregate.fake_provider import FakeProvider, Scenario
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

MICRO = Decimal("0.000001")
MESSAGES: list[Any] = [{"role": "user", "content": "Where is my order?"}]

# gpt-4o-mini: 12,000-token prompt of which 8,192 were read from OpenAI's prompt cache; 350 out.
MINI = Scenario(prompt_tokens=12_000, cached_tokens=8_192, completion_tokens=350)
MINI_COST = (
    (12_000 - 8_192) * Decimal("0.15")  # 3,808 fresh input   = 571.2
    + 8_192 * Decimal("0.075")  # cached read                 = 614.4
    + 350 * Decimal("0.60")  # output                         = 210.0
) * MICRO
assert Decimal("0.0013956") == MINI_COST

# claude-sonnet-4-5: 10,000-token prompt = 1,000 fresh + 6,000 read + 1,000 5-min write + 2,000 1-h write.
SONNET_CACHED = Scenario(
    prompt_tokens=10_000,
    cached_tokens=6_000,
    cache_write_5m_tokens=1_000,
    cache_write_1h_tokens=2_000,
    completion_tokens=500,
)
SONNET_COST = (
    1_000 * Decimal("3")  # fresh input       =  3,000
    + 6_000 * Decimal("0.30")  # cache read   =  1,800
    + 1_000 * Decimal("3.75")  # 5-min write  =  3,750
    + 2_000 * Decimal("6")  # 1-hour write    = 12,000
    + 500 * Decimal("15")  # output           =  7,500
) * MICRO
assert Decimal("0.02805") == SONNET_COST


def oai(gw: Gateway) -> openai.OpenAI:
    return openai_client(gw)


def claude(gw: Gateway) -> anthropic.Anthropic:
    return anthropic_client(gw)


# --- OpenAI: cached reads ------------------------------------------------------------------------


def test_gpt4o_mini_with_cached_tokens(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    fake_provider.push(MINI)
    with oai(shared_gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)

    event = only_event(shared_gateway)
    assert (event.input_tokens, event.cached_tokens, event.output_tokens) == (12_000, 8_192, 350)
    assert event.price_known and not event.usage_estimated
    assert event.cost_usd == MINI_COST
    assert event.baseline_cost_nusd == event.cost_nusd  # no optimisation ran
    assert Decimal(raw.headers["x-faregate-cost-usd"]) == MINI_COST


def test_gpt4o_mini_through_an_alias_is_priced_as_the_upstream_model(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(MINI)
    with oai(shared_gateway) as client:
        client.chat.completions.create(model="fast", messages=MESSAGES)
    assert only_event(shared_gateway).cost_usd == MINI_COST


@pytest.mark.parametrize("client_wants_usage", [False, True])
def test_gpt4o_mini_streaming_with_cached_tokens(
    shared_gateway: GatewayView, fake_provider: FakeProvider, client_wants_usage: bool
) -> None:
    fake_provider.push(MINI)
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if client_wants_usage else {}
    with oai(shared_gateway) as client:
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **extra))

    event = only_event(shared_gateway)
    assert event.stream
    assert (event.input_tokens, event.cached_tokens, event.output_tokens) == (12_000, 8_192, 350)
    assert not event.usage_estimated
    assert event.cost_usd == MINI_COST


def test_reasoning_tokens_are_recorded_and_priced_as_output(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(
        Scenario(prompt_tokens=12_000, cached_tokens=8_192, completion_tokens=350, reasoning_tokens=300)
    )
    with oai(shared_gateway) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    event = only_event(shared_gateway)
    assert (event.output_tokens, event.reasoning_tokens) == (350, 300)
    assert event.cost_usd == MINI_COST  # reasoning is part of the 350 output tokens, not extra


# --- Anthropic: 5-minute and 1-hour cache writes, cache reads -----------------------------------


def test_claude_cache_writes_and_reads(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    fake_provider.push(SONNET_CACHED)
    with claude(shared_gateway) as client:
        raw = client.messages.with_raw_response.create(model=SONNET, max_tokens=1024, messages=MESSAGES)

    event = only_event(shared_gateway)
    assert (
        event.input_tokens,
        event.cached_tokens,
        event.cache_write_tokens,
        event.cache_write_1h_tokens,
        event.output_tokens,
    ) == (10_000, 6_000, 3_000, 2_000, 500)
    assert event.price_known and not event.usage_estimated
    assert event.cost_usd == SONNET_COST
    assert Decimal(raw.headers["x-faregate-cost-usd"]) == SONNET_COST


def test_claude_cache_writes_and_reads_streaming(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(SONNET_CACHED)
    with (
        claude(shared_gateway) as client,
        client.messages.stream(model=SONNET, max_tokens=1024, messages=MESSAGES) as stream,
    ):
        stream.until_done()

    event = only_event(shared_gateway)
    assert event.stream
    assert (
        event.input_tokens,
        event.cached_tokens,
        event.cache_write_tokens,
        event.cache_write_1h_tokens,
        event.output_tokens,
    ) == (10_000, 6_000, 3_000, 2_000, 500)
    assert event.cost_usd == SONNET_COST


def test_claude_only_5m_writes(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    fake_provider.push(Scenario(prompt_tokens=4_000, cache_write_5m_tokens=4_000, completion_tokens=10))
    with claude(shared_gateway) as client:
        client.messages.create(model=SONNET, max_tokens=64, messages=MESSAGES)
    expected = (4_000 * Decimal("3.75") + 10 * Decimal("15")) * MICRO  # 15,000 + 150
    assert only_event(shared_gateway).cost_usd == expected == Decimal("0.01515")


def test_claude_long_context_tier(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    """Above 200k prompt tokens (reads included) the whole call moves to the long-context rates."""
    fake_provider.push(Scenario(prompt_tokens=250_000, cached_tokens=200_000, completion_tokens=1_000))
    with claude(shared_gateway) as client:
        client.messages.create(model=SONNET, max_tokens=2048, messages=MESSAGES)
    expected = (
        50_000 * Decimal("6")  # fresh input at the long-context rate = 300,000
        + 200_000 * Decimal("0.60")  # reads at the long-context rate = 120,000
        + 1_000 * Decimal("22.50")  # output at the long-context rate =  22,500
    ) * MICRO
    assert only_event(shared_gateway).cost_usd == expected == Decimal("0.4425")


# --- header = ledger ------------------------------------------------------------------------------


def test_cost_header_equals_ledger_cost_for_each_request(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(MINI, SONNET_CACHED, Scenario(prompt_tokens=7, completion_tokens=3))
    with oai(shared_gateway) as o, claude(shared_gateway) as c:
        headers = [
            o.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES).headers,
            c.messages.with_raw_response.create(model=SONNET, max_tokens=64, messages=MESSAGES).headers,
            o.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES).headers,
        ]
    by_id = {e.request_id: e for e in shared_gateway.events()}
    assert len(by_id) == 3
    for h in headers:
        event = by_id[h["x-faregate-request-id"]]
        assert Decimal(h["x-faregate-cost-usd"]) == event.cost_usd
    # 7 x 0.15 + 3 x 0.60 = 2.85 micro-dollars: sub-cent amounts survive to the nano-dollar
    assert by_id[headers[2]["x-faregate-request-id"]].cost_usd == Decimal("0.00000285")


# --- price overrides, unknown prices ---------------------------------------------------------------


def test_price_override_for_a_custom_model(make_gateway: Any, fake_provider: FakeProvider) -> None:
    gw = make_gateway(prices={"my-model": {"input_mtok": "1", "output_mtok": "2"}})
    fake_provider.push(Scenario(prompt_tokens=1_000, cached_tokens=400, completion_tokens=100))
    with oai(gw) as client:
        client.chat.completions.create(model="my-model", messages=MESSAGES)

    event = only_event(gw)
    # no cache-read price given: the 400 cached tokens cost the input price, like the rest
    expected = (1_000 * Decimal("1") + 100 * Decimal("2")) * MICRO
    assert event.price_known
    assert event.cost_usd == expected == Decimal("0.0012")


def test_price_override_wins_over_genai_prices(make_gateway: Any, fake_provider: FakeProvider) -> None:
    gw = make_gateway(
        prices={"gpt-4o-mini": {"input_mtok": "10", "output_mtok": "20", "cache_read_mtok": "1"}}
    )
    fake_provider.push(Scenario(prompt_tokens=1_200, cached_tokens=1_000, completion_tokens=20))
    with oai(gw) as client:
        client.chat.completions.create(model="fast", messages=MESSAGES)
    expected = (200 * Decimal("10") + 1_000 * Decimal("1") + 20 * Decimal("20")) * MICRO  # 2,000+1,000+400
    assert only_event(gw).cost_usd == expected == Decimal("0.0034")


def test_unknown_model_on_openai_compatible_provider_is_flagged(
    make_gateway: Any, fake_provider: FakeProvider
) -> None:
    gw = make_gateway(
        providers={"local": {"type": "openai-compatible", "base_url": f"{fake_provider.url}/v1"}},
        models={"local-llm": {"provider": "local", "model": "acme-house-model-7b"}},
    )
    with oai(gw) as client:
        reply = client.chat.completions.create(model="local-llm", messages=MESSAGES)
    assert reply.choices[0].message.content == Scenario.text

    event = only_event(gw)
    assert (event.provider, event.model_used) == ("local", "acme-house-model-7b")
    assert event.input_tokens == Scenario.prompt_tokens  # usage is still recorded
    assert event.price_known is False
    assert event.cost_nusd == 0


def test_known_model_on_openai_compatible_provider_is_priced_by_name(
    make_gateway: Any, fake_provider: FakeProvider
) -> None:
    gw = make_gateway(
        providers={"compat": {"type": "openai-compatible", "base_url": f"{fake_provider.url}/v1"}},
        models={"compat-mini": {"provider": "compat", "model": "gpt-4o-mini"}},
    )
    fake_provider.push(MINI)
    with oai(gw) as client:
        client.chat.completions.create(model="compat-mini", messages=MESSAGES)
    event = only_event(gw)
    assert event.price_known
    assert event.cost_usd == MINI_COST


def test_unknown_model_on_the_openai_provider_is_flagged(shared_gateway: GatewayView) -> None:
    with oai(shared_gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-from-the-future", messages=MESSAGES)
    assert "x-faregate-cost-usd" not in raw.headers  # never a $0 that looks like a price
    assert raw.headers["x-faregate-price-known"] == "false"
    event = only_event(shared_gateway)
    assert event.price_known is False and event.cost_nusd == 0
    assert event.output_tokens == Scenario.completion_tokens


# --- no usage from upstream: counted locally ---------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_openai_without_upstream_usage_is_estimated(
    shared_gateway: GatewayView, fake_provider: FakeProvider, stream: bool
) -> None:
    fake_provider.push(Scenario(include_usage=False, text="Your order left the warehouse this morning."))
    with oai(shared_gateway) as client:
        if stream:
            list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    event = only_event(shared_gateway)
    assert event.usage_estimated is True
    # "Where is my order?" plus chat framing; the reply is ~8 tokens
    assert 5 <= event.input_tokens <= 40
    assert 4 <= event.output_tokens <= 15
    assert event.cached_tokens == 0
    assert event.price_known
    expected = (event.input_tokens * Decimal("0.15") + event.output_tokens * Decimal("0.60")) * MICRO
    assert event.cost_usd == expected > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_without_upstream_usage_is_estimated(
    shared_gateway: GatewayView, fake_provider: FakeProvider, stream: bool
) -> None:
    fake_provider.push(Scenario(include_usage=False, text="The lease runs for two years from signing."))
    with claude(shared_gateway) as client:
        if stream:  # raw events: the SDK's stream helper itself needs usage in message_delta
            events = list(client.messages.create(model=SONNET, max_tokens=64, messages=MESSAGES, stream=True))
            assert events[-1].type == "message_stop"
        else:
            raw = client.messages.with_raw_response.create(model=SONNET, max_tokens=64, messages=MESSAGES)
            raw.http_response.read()

    event = only_event(shared_gateway)
    assert event.usage_estimated is True
    assert 5 <= event.input_tokens <= 40
    assert 4 <= event.output_tokens <= 15
    expected = (event.input_tokens * Decimal("3") + event.output_tokens * Decimal("15")) * MICRO
    assert event.cost_usd == expected > 0


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_estimated_usage_counts_tool_call_output(
    shared_gateway: GatewayView, fake_provider: FakeProvider, protocol: str, stream: bool
) -> None:
    arguments = {"query": "all orders shipped to Paris in the last ninety days, newest first", "limit": 50}
    fake_provider.push(Scenario(include_usage=False, text="", tool_call=True, tool_input=arguments))
    if protocol == "openai":
        tools: Any = [
            {"type": "function", "function": {"name": "search_orders", "parameters": {"type": "object"}}}
        ]
        with oai(shared_gateway) as o:
            answer = o.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, tools=tools, stream=stream
            )
            if stream:
                list(answer)  # type: ignore[arg-type]
    else:
        tools = [{"name": "search_orders", "input_schema": {"type": "object"}}]
        with claude(shared_gateway) as c:
            answer = c.messages.create(
                model=SONNET, max_tokens=256, messages=MESSAGES, tools=tools, stream=stream
            )
            if stream:
                list(answer)  # type: ignore[arg-type]

    event = only_event(shared_gateway)
    assert event.usage_estimated
    # ~20 tokens of JSON arguments were generated and will be billed as output
    assert event.output_tokens >= 10
