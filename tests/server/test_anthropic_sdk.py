"""The official `anthropic` SDK, unchanged but for `base_url`, against a real gateway and the fake
upstream."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from faregate.fake_provider import FakeProvider, Scenario
from tests.server._support import (
    ANTHROPIC_KEY,
    SONNET,
    SONNET_DEPRECATION,
    Gateway,
    GatewayView,
    anthropic_client,
    only_event,
)

pytestmark = pytest.mark.filterwarnings(SONNET_DEPRECATION)

MESSAGES: list[Any] = [{"role": "user", "content": "Summarise this contract. (naïve café ✓)"}]
TOOLS: list[Any] = [
    {
        "name": "get_clause",
        "description": "Fetch one clause of the contract.",
        "input_schema": {
            "type": "object",
            "properties": {"number": {"type": "integer"}},
            "required": ["number"],
        },
    }
]
# Prompt 10,000 tokens: 6,000 read from cache, 1,000 written for 5 minutes, 2,000 for 1 hour, 1,000 fresh.
CACHED = Scenario(
    prompt_tokens=10_000,
    cached_tokens=6_000,
    cache_write_5m_tokens=1_000,
    cache_write_1h_tokens=2_000,
    completion_tokens=500,
)


def upstream_request(fake: FakeProvider) -> Any:
    messages = [r for r in fake.requests if r.path == "/v1/messages"]
    assert len(messages) == 1, messages
    assert messages[0].body is not None
    return messages[0]


def assert_cache_usage(usage: anthropic.types.Usage) -> None:
    """The usage block exactly as the fake (the provider) reported it: nothing recomputed."""
    assert usage.input_tokens == 1_000
    assert usage.cache_read_input_tokens == 6_000
    assert usage.cache_creation_input_tokens == 3_000
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == 1_000
    assert usage.cache_creation.ephemeral_1h_input_tokens == 2_000
    assert usage.output_tokens == 500


def assert_cache_event(gw: Gateway, stream: bool) -> None:
    event = only_event(gw)
    assert (event.protocol, event.provider, event.stream, event.status) == (
        "anthropic",
        "anthropic",
        stream,
        200,
    )
    assert event.input_tokens == 10_000  # the whole prompt: fresh + reads + writes
    assert (event.cached_tokens, event.cache_write_tokens, event.cache_write_1h_tokens) == (
        6_000,
        3_000,
        2_000,
    )
    assert event.output_tokens == 500
    assert not event.usage_estimated


def test_messages_create_parses(
    claude: anthropic.Anthropic, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(Scenario(text="A two-year lease.", prompt_tokens=80, completion_tokens=6))

    reply = claude.messages.create(model=SONNET, max_tokens=256, messages=MESSAGES, system="Be brief.")

    assert reply.type == "message" and reply.role == "assistant"
    assert reply.model == SONNET
    assert [b.type for b in reply.content] == ["text"]
    assert reply.content[0].type == "text" and reply.content[0].text == "A two-year lease."
    assert reply.stop_reason == "end_turn"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (80, 6)
    request = upstream_request(fake_provider)
    assert request.body == {"model": SONNET, "max_tokens": 256, "messages": MESSAGES, "system": "Be brief."}
    # the client's credential goes upstream in the form the SDK sent it (x-api-key or bearer)
    assert request.headers.get("x-api-key") == ANTHROPIC_KEY or (
        request.headers.get("authorization") == f"Bearer {ANTHROPIC_KEY}"
    )
    event = only_event(shared_gateway)
    assert (event.model_requested, event.model_used, event.stream) == (SONNET, SONNET, False)


def test_cache_usage_reaches_the_client_unchanged(
    claude: anthropic.Anthropic, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(CACHED)
    reply = claude.messages.create(model=SONNET, max_tokens=1024, messages=MESSAGES)
    assert_cache_usage(reply.usage)
    assert_cache_event(shared_gateway, stream=False)


async def test_async_messages_create(
    aclaude: anthropic.AsyncAnthropic, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(CACHED)
    reply = await aclaude.messages.create(model=SONNET, max_tokens=1024, messages=MESSAGES)
    assert reply.content[0].type == "text" and reply.content[0].text == Scenario.text
    assert_cache_usage(reply.usage)
    assert_cache_event(shared_gateway, stream=False)


def test_stream_helper(
    claude: anthropic.Anthropic, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(Scenario(**{**CACHED.__dict__, "text": "Clause 4 limits liability.", "chunks": 5}))

    with claude.messages.stream(model=SONNET, max_tokens=1024, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "Clause 4 limits liability."
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert_cache_usage(final.usage)
    assert upstream_request(fake_provider).body["stream"] is True
    assert_cache_event(shared_gateway, stream=True)


async def test_async_stream_helper(
    aclaude: anthropic.AsyncAnthropic, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(CACHED)
    async with aclaude.messages.stream(model=SONNET, max_tokens=1024, messages=MESSAGES) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == Scenario.text
    assert_cache_usage(final.usage)
    assert_cache_event(shared_gateway, stream=True)


def test_raw_stream_events(
    claude: anthropic.Anthropic, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(Scenario(**{**CACHED.__dict__, "text": "abcdef", "chunks": 3}))

    events = list(claude.messages.create(model=SONNET, max_tokens=1024, messages=MESSAGES, stream=True))

    kinds = [e.type for e in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert_cache_usage(start.message.usage.model_copy(update={"output_tokens": 500}))
    assert start.message.usage.output_tokens == 1  # as the provider sent it: the running count
    assert delta.usage.output_tokens == 500
    assert delta.usage.cache_read_input_tokens == 6_000
    assert (
        "".join(
            e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
        )
        == "abcdef"
    )
    assert_cache_event(shared_gateway, stream=True)


def test_tool_use_response(claude: anthropic.Anthropic, fake_provider: FakeProvider) -> None:
    fake_provider.push(Scenario(text="Let me look.", tool_call=True, tool_input={"number": 4}))
    messages: list[Any] = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_clause", "input": {"number": 3}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01",
                    "content": "Clause 3: rent is due monthly.",
                },
                {"type": "text", "text": "Now clause 4."},
            ],
        },
    ]

    reply = claude.messages.create(
        model=SONNET, max_tokens=512, messages=messages, tools=TOOLS, tool_choice={"type": "auto"}
    )

    assert reply.stop_reason == "tool_use"
    assert [b.type for b in reply.content] == ["text", "tool_use"]
    block = reply.content[1]
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("get_clause", {"number": 4})
    assert block.id.startswith("toolu_")
    assert upstream_request(fake_provider).body == {
        "model": SONNET,
        "max_tokens": 512,
        "messages": messages,
        "tools": TOOLS,
        "tool_choice": {"type": "auto"},
    }


def test_streamed_tool_use(claude: anthropic.Anthropic, fake_provider: FakeProvider) -> None:
    fake_provider.push(Scenario(text="", tool_call=True, tool_input={"number": 12}, chunks=4))
    with claude.messages.stream(model=SONNET, max_tokens=512, messages=MESSAGES, tools=TOOLS) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert len(final.content) == 1
    block = final.content[0]
    assert block.type == "tool_use" and block.input == {"number": 12}


def test_alias_to_an_anthropic_model(make_gateway: Any, fake_provider: FakeProvider) -> None:
    gw = make_gateway(models={"smart": {"provider": "anthropic", "model": SONNET}})
    with anthropic_client(gw) as client:
        reply = client.messages.create(model="smart", max_tokens=64, messages=MESSAGES)
    assert reply.model == SONNET
    assert upstream_request(fake_provider).body["model"] == SONNET
    event = only_event(gw)
    assert (event.provider, event.model_requested, event.model_used) == ("anthropic", "smart", SONNET)


def test_version_and_beta_headers_are_forwarded(
    claude: anthropic.Anthropic, fake_provider: FakeProvider
) -> None:
    beta = "prompt-caching-2024-07-31,extended-cache-ttl-2025-04-11"
    claude.messages.create(
        model=SONNET,
        max_tokens=64,
        messages=MESSAGES,
        extra_headers={"anthropic-beta": beta, "anthropic-version": "2023-01-01"},
    )
    headers = upstream_request(fake_provider).headers
    assert headers["anthropic-beta"] == beta
    assert headers["anthropic-version"] == "2023-01-01"


def test_sdk_version_header_is_forwarded(claude: anthropic.Anthropic, fake_provider: FakeProvider) -> None:
    raw = claude.messages.with_raw_response.create(model=SONNET, max_tokens=64, messages=MESSAGES)
    sent_version = raw.http_request.headers["anthropic-version"]
    headers = upstream_request(fake_provider).headers
    assert headers["anthropic-version"] == sent_version
    assert "anthropic-beta" not in headers


def test_default_version_when_the_client_sends_none(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    """curl users often omit the header; Anthropic requires it, so FareGate supplies its default."""
    reply = httpx.post(
        f"{shared_gateway.url}/v1/messages", json={"model": SONNET, "max_tokens": 8, "messages": MESSAGES}
    )
    assert reply.status_code == 200, reply.text
    assert upstream_request(fake_provider).headers["anthropic-version"] == "2023-06-01"


def test_metadata_faregate_key_stripped_user_id_kept(
    claude: anthropic.Anthropic, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    metadata: Any = {"feature": "contract-review", "user_id": "u-77"}
    claude.messages.create(model=SONNET, max_tokens=64, messages=MESSAGES, metadata=metadata)

    assert upstream_request(fake_provider).body["metadata"] == {"user_id": "u-77"}
    event = only_event(shared_gateway)
    assert (event.feature, event.user) == ("contract-review", "u-77")


def test_gateway_key_replaces_the_client_key(
    make_gateway: Any, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAREGATE_TEST_ANTHROPIC_KEY", "sk-ant-gateway-owned")
    gw = make_gateway(
        providers={
            "anthropic": {
                "type": "anthropic",
                "base_url": fake_provider.url,
                "api_key_env": "FAREGATE_TEST_ANTHROPIC_KEY",
            }
        }
    )
    with anthropic_client(gw) as client:
        client.messages.create(model=SONNET, max_tokens=64, messages=MESSAGES)
    headers = upstream_request(fake_provider).headers
    assert headers["x-api-key"] == "sk-ant-gateway-owned"
    assert "authorization" not in headers  # the client's own credential does not leak upstream


def test_response_headers_carry_request_id_and_cost(
    claude: anthropic.Anthropic, shared_gateway: GatewayView
) -> None:
    raw = claude.messages.with_raw_response.create(model=SONNET, max_tokens=64, messages=MESSAGES)
    assert raw.parse().content[0].type == "text"
    event = only_event(shared_gateway)
    assert raw.headers["x-faregate-request-id"] == event.request_id
    assert raw.headers["x-faregate-cost-usd"] == f"{event.cost_usd:.9f}"
    assert raw.headers["request-id"].startswith("req_")  # the upstream's id, passed through


def test_models_list_in_anthropic_format(claude: anthropic.Anthropic) -> None:
    page = claude.models.list()
    assert [m.id for m in page.data] == ["fast"]
