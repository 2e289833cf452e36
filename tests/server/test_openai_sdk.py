"""The official `openai` SDK, unchanged but for `base_url`, against a real gateway and the fake upstream."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import openai

from faregate.fake_provider import FakeProvider, Scenario
from tests.server._support import (
    OPENAI_KEY,
    GatewayView,
    only_event,
    openai_client,
)

MESSAGES: list[Any] = [{"role": "user", "content": "Where is my order? (naïve café ✓)"}]

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order by id.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "verbose": {"type": "boolean"}},
                "required": ["order_id"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
]

# A 1x1 PNG, as clients send small images inline.
PNG_DATA_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def upstream_body(fake: FakeProvider) -> dict[str, Any]:
    """The JSON body of the one completion request the fake received."""
    completions = [r for r in fake.requests if r.path == "/v1/chat/completions"]
    assert len(completions) == 1, completions
    assert completions[0].body is not None
    return completions[0].body


# --- non-streaming -------------------------------------------------------------------------------


def test_non_streaming_completion_parses(
    oai: openai.OpenAI, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(Scenario(text="It ships today.", prompt_tokens=42, completion_tokens=5))

    reply = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == "It ships today."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "gpt-4o-mini"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (42, 5)
    assert upstream_body(fake_provider) == {"model": "gpt-4o-mini", "messages": MESSAGES}
    event = only_event(shared_gateway)
    assert (event.status, event.protocol, event.provider, event.stream) == (200, "openai", "openai", False)


def test_client_authorization_is_forwarded_when_the_gateway_has_no_key(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    with openai_client(shared_gateway, organization="org-42", project="proj-7") as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    headers = fake_provider.requests[-1].headers
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert headers["openai-organization"] == "org-42"
    assert headers["openai-project"] == "proj-7"


def test_gateway_key_replaces_the_client_key(
    make_gateway: Any, fake_provider: FakeProvider, monkeypatch: Any
) -> None:
    monkeypatch.setenv("FAREGATE_TEST_UPSTREAM_KEY", "sk-gateway-owned")
    gw = make_gateway(
        providers={
            "openai": {
                "type": "openai",
                "base_url": f"{fake_provider.url}/v1",
                "api_key_env": "FAREGATE_TEST_UPSTREAM_KEY",
            }
        }
    )
    with openai_client(gw) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert fake_provider.requests[-1].headers["authorization"] == "Bearer sk-gateway-owned"


def test_alias_is_replaced_by_the_upstream_model(
    oai: openai.OpenAI, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    reply = oai.chat.completions.create(model="fast", messages=MESSAGES)

    assert upstream_body(fake_provider)["model"] == "gpt-4o-mini"
    assert reply.model == "gpt-4o-mini"
    event = only_event(shared_gateway)
    assert (event.model_requested, event.model_used) == ("fast", "gpt-4o-mini")


def test_faregate_metadata_keys_are_removed_upstream_and_others_kept(
    oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        store=True,
        metadata={"feature": "support-chat", "faregate_team": "support", "session": "s-1"},
    )
    body = upstream_body(fake_provider)
    assert body["metadata"] == {"session": "s-1"}
    assert body["store"] is True


def test_metadata_of_only_faregate_keys_is_dropped_upstream(
    oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    oai.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, metadata={"feature": "support-chat", "team": "support"}
    )
    assert "metadata" not in upstream_body(fake_provider)


def test_response_headers_carry_request_id_and_cost(
    oai: openai.OpenAI, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    reply = raw.parse()

    assert reply.choices[0].message.content == Scenario.text
    event = only_event(shared_gateway)
    assert raw.headers["x-faregate-request-id"] == event.request_id
    assert Decimal(raw.headers["x-faregate-cost-usd"]) == event.cost_usd > 0
    # the upstream's own request id survives, for support tickets with the provider
    assert raw.headers["x-request-id"].startswith("req_")


def test_models_list_shows_configured_aliases(oai: openai.OpenAI) -> None:
    models = oai.models.list()
    by_id = {m.id: m for m in models.data}
    assert "fast" in by_id
    assert by_id["fast"].owned_by == "openai"


# --- streaming -----------------------------------------------------------------------------------


def test_stream_without_usage_request_hides_the_usage_chunk(
    oai: openai.OpenAI, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(Scenario(text="Streaming works fine.", chunks=4, prompt_tokens=300, cached_tokens=100))

    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Streaming works fine."
    assert all(c.choices for c in chunks), "a usage-only chunk reached a client that did not ask for it"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    # ... yet FareGate asked upstream for usage, and priced the call from it
    assert upstream_body(fake_provider)["stream_options"] == {"include_usage": True}
    event = only_event(shared_gateway)
    assert (event.stream, event.input_tokens, event.cached_tokens) == (True, 300, 100)
    assert not event.usage_estimated


def test_stream_with_explicit_include_usage_false_hides_the_usage_chunk(
    oai: openai.OpenAI, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": False}
        )
    )
    assert all(c.choices for c in chunks)
    assert upstream_body(fake_provider)["stream_options"] == {"include_usage": True}
    assert not only_event(shared_gateway).usage_estimated


def test_stream_with_usage_request_sees_usage_with_cached_tokens(
    oai: openai.OpenAI, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(Scenario(prompt_tokens=2000, cached_tokens=1536, completion_tokens=9))

    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    usage = usage_chunks[0].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (2000, 9)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 1536
    assert upstream_body(fake_provider)["stream_options"] == {"include_usage": True}
    assert only_event(shared_gateway).cached_tokens == 1536


def test_stream_alias_and_request_id_header(
    oai: openai.OpenAI, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    with oai.chat.completions.with_streaming_response.create(
        model="fast", messages=MESSAGES, stream=True
    ) as response:
        request_id = response.headers["x-faregate-request-id"]
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    assert chunks[0].model == "gpt-4o-mini"
    assert upstream_body(fake_provider)["model"] == "gpt-4o-mini"
    event = only_event(shared_gateway)
    assert event.request_id == request_id
    assert (event.model_requested, event.model_used) == ("fast", "gpt-4o-mini")


async def test_async_non_streaming(
    aoai: openai.AsyncOpenAI, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(Scenario(text="async hello", prompt_tokens=10, completion_tokens=2))
    reply = await aoai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "async hello"
    assert reply.usage is not None and reply.usage.total_tokens == 12
    assert only_event(shared_gateway).output_tokens == 2


async def test_async_streaming_with_and_without_usage(
    aoai: openai.AsyncOpenAI, shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(
        Scenario(text="one two three", cached_tokens=64, chunks=3),
        Scenario(text="one two three", cached_tokens=64, chunks=3),
    )

    plain = [
        c
        async for c in await aoai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    ]
    with_usage = [
        c
        async for c in await aoai.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    ]

    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == "one two three"
    assert all(c.choices and c.usage is None for c in plain)
    assert not with_usage[-1].choices
    last_usage = with_usage[-1].usage
    assert last_usage is not None and last_usage.prompt_tokens_details is not None
    assert last_usage.prompt_tokens_details.cached_tokens == 64
    events = shared_gateway.events()
    assert [(e.stream, e.cached_tokens, e.usage_estimated) for e in events] == [(True, 64, False)] * 2


# --- pass-through of tools and multimodal content ------------------------------------------------


def test_tools_pass_through_and_tool_call_parses(oai: openai.OpenAI, fake_provider: FakeProvider) -> None:
    fake_provider.push(Scenario(tool_call=True, tool_input={"order_id": "A-17", "verbose": False}))
    messages: list[Any] = [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "Where is A-17?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"order_id": "A-16"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "delivered"}'},
        {"role": "user", "content": "And A-17?"},
    ]
    sent = {
        "model": "gpt-4o-mini",
        "messages": messages,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "lookup_order"}},
        "parallel_tool_calls": False,
        "temperature": 0.2,
        "max_completion_tokens": 256,
        "response_format": {"type": "text"},
        "seed": 7,
    }

    reply = oai.chat.completions.create(**sent)

    forwarded = upstream_body(fake_provider)
    # The only addition: the prefix stage routes requests sharing these tools to one prompt cache.
    assert forwarded.pop("prompt_cache_key").startswith("fg-")
    assert forwarded == sent
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"order_id": "A-17", "verbose": False}


def test_streamed_tool_call_reassembles(oai: openai.OpenAI, fake_provider: FakeProvider) -> None:
    fake_provider.push(Scenario(tool_call=True, tool_input={"order_id": "B-2"}, chunks=5))
    chunks = list(
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, stream=True)
    )
    arguments = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in (c.choices[0].delta.tool_calls or [])
        if tc.function is not None
    )
    assert json.loads(arguments) == {"order_id": "B-2"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert upstream_body(fake_provider)["tools"] == TOOLS


def test_multimodal_content_passes_through(oai: openai.OpenAI, fake_provider: FakeProvider) -> None:
    messages: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these images?"},
                {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
            ],
        },
    ]
    reply = oai.chat.completions.create(model="fast", messages=messages, max_tokens=50)

    assert reply.choices[0].message.content == Scenario.text
    assert upstream_body(fake_provider) == {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 50}
