"""The fake provider is only useful if it is faithful: the official SDKs must accept every answer.

Each test points the real `openai` / `anthropic` client straight at the fake (no gateway in between),
so a format mistake in the fake shows up here rather than as a confusing gateway failure.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam, ToolParam
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from faregate.fake_provider import FakeProvider, Scenario, serve

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
HUMAN: list[MessageParam] = [{"role": "user", "content": "Say hello."}]
OPENAI_TOOLS: list[ChatCompletionToolParam] = [{
    "type": "function",
    "function": {"name": "lookup_city", "parameters": {"type": "object", "properties": {}}},
}]
ANTHROPIC_TOOLS: list[ToolParam] = [
    {"name": "lookup_city", "input_schema": {"type": "object", "properties": {}}},
]


def oai(fake: FakeProvider, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url + "/v1", api_key="sk-test", max_retries=0, **kwargs)


def claude(fake: FakeProvider, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0, **kwargs)


# --- OpenAI Chat Completions -------------------------------------------------------------------


def test_openai_completion_parses_with_cached_and_reasoning_tokens(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = Scenario(prompt_tokens=2000, cached_tokens=1536, completion_tokens=50,
                                      reasoning_tokens=30)
    with oai(fake_provider) as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == "Hello from the fake provider."
    assert completion.choices[0].finish_reason == "stop"
    assert completion._request_id is not None and completion._request_id.startswith("req_")
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2000, 50, 2050)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 1536
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 30


def test_openai_stream_without_include_usage_has_no_usage_chunk(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = Scenario(text="one two three four", chunks=4)
    with oai(fake_provider) as client:
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three four"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1


def test_openai_stream_with_include_usage_ends_with_usage_chunk(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = Scenario(prompt_tokens=900, cached_tokens=512, completion_tokens=7)
    with oai(fake_provider) as client:
        chunks = list(client.chat.completions.create(
            model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True},
        ))
    *body, last = chunks
    assert last.choices == []
    assert last.usage is not None and last.usage.prompt_tokens == 900 and last.usage.completion_tokens == 7
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 512
    assert all(c.usage is None for c in body)
    assert body[-1].choices[0].finish_reason == "stop"


async def test_openai_async_create_and_stream(fake_provider: FakeProvider) -> None:
    async with openai.AsyncOpenAI(base_url=fake_provider.url + "/v1", api_key="k", max_retries=0) as client:
        completion = await client.chat.completions.create(model="gpt-4.1", messages=USER)
        stream = await client.chat.completions.create(
            model="gpt-4.1", messages=USER, stream=True, stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert completion.usage is not None and completion.usage.prompt_tokens == 1200
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == fake_provider.scenario.text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20


def test_openai_tool_call_parses_plain_and_streamed(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = Scenario(tool_call=True, tool_input={"city": "Lyon", "days": 3})
    with oai(fake_provider) as client:
        completion = client.chat.completions.create(model="gpt-4o", messages=USER, tools=OPENAI_TOOLS)
        chunks = list(client.chat.completions.create(
            model="gpt-4o", messages=USER, tools=OPENAI_TOOLS, stream=True,
        ))
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "lookup_city"
    assert json.loads(call.function.arguments) == {"city": "Lyon", "days": 3}

    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id is not None and deltas[0].function is not None
    assert deltas[0].function.name == "lookup_city"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(arguments) == {"city": "Lyon", "days": 3}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_max_tokens_clamps_output_and_reports_length(fake_provider: FakeProvider) -> None:
    with oai(fake_provider) as client:
        completion = client.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=5)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


def test_openai_without_usage(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = Scenario(include_usage=False)
    with oai(fake_provider) as client:
        completion = client.chat.completions.create(model="local", messages=USER)
        chunks = list(client.chat.completions.create(
            model="local", messages=USER, stream=True, stream_options={"include_usage": True},
        ))
    assert completion.usage is None
    assert all(c.usage is None and c.choices for c in chunks)


def test_openai_errors_raise_typed_exceptions(fake_provider: FakeProvider) -> None:
    custom = {"error": {"message": "Invalid 'temperature'.", "type": "invalid_request_error",
                        "param": "temperature", "code": "invalid_value"}}
    fake_provider.push(Scenario(status=400, error_body=custom), Scenario(status=500), Scenario(status=429))
    with oai(fake_provider) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="gpt-4o", messages=USER)
        with pytest.raises(openai.InternalServerError) as internal:
            client.chat.completions.create(model="gpt-4o", messages=USER)
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
        assert client.chat.completions.create(model="gpt-4o", messages=USER).choices
    assert bad.value.status_code == 400
    assert (bad.value.code, bad.value.param, bad.value.type) == ("invalid_value", "temperature",
                                                                 "invalid_request_error")
    assert "Invalid 'temperature'." in bad.value.message
    assert internal.value.status_code == 500 and internal.value.type == "server_error"
    assert "The server had an error" in internal.value.message
    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.request_id is not None


def test_openai_delay_trips_client_timeout(fake_provider: FakeProvider) -> None:
    fake_provider.push(Scenario(delay=0.5))
    with oai(fake_provider, timeout=0.1) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o", messages=USER)


def test_models_list_in_both_formats(fake_provider: FakeProvider) -> None:
    with oai(fake_provider) as client:
        openai_models = [m.id for m in client.models.list()]
    with claude(fake_provider) as aclient:
        anthropic_models = [m.id for m in aclient.models.list()]
    assert "gpt-4o-mini" in openai_models
    assert any(m.startswith("claude-") for m in anthropic_models)


# --- Anthropic Messages ------------------------------------------------------------------------

CACHED = Scenario(prompt_tokens=5000, cached_tokens=3000, cache_write_5m_tokens=800,
                  cache_write_1h_tokens=200, completion_tokens=42)


def assert_cached_usage(usage: anthropic.types.Usage) -> None:
    assert usage.input_tokens == 1000  # 5000 - 3000 read - 1000 written: reported apart
    assert usage.cache_read_input_tokens == 3000
    assert usage.cache_creation_input_tokens == 1000
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == 800
    assert usage.cache_creation.ephemeral_1h_input_tokens == 200
    assert usage.output_tokens == 42


def test_anthropic_message_parses_with_cache_usage(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = CACHED
    with claude(fake_provider) as client:
        message = client.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=HUMAN)
    assert isinstance(message, anthropic.types.Message)
    assert message.id.startswith("msg_") and message.model == "claude-sonnet-4-6"
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text == CACHED.text
    assert message._request_id is not None and message._request_id.startswith("req_")
    assert_cached_usage(message.usage)


def test_anthropic_stream_helper_final_message(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = CACHED
    with claude(fake_provider) as client, client.messages.stream(
        model="claude-haiku-4-5", max_tokens=1024, messages=HUMAN,
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == CACHED.text
    assert final.content[0].type == "text" and final.content[0].text == CACHED.text
    assert final.stop_reason == "end_turn"
    assert_cached_usage(final.usage)


async def test_anthropic_async_create_and_stream(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = CACHED
    async with anthropic.AsyncAnthropic(base_url=fake_provider.url, api_key="k", max_retries=0) as client:
        message = await client.messages.create(model="claude-x", max_tokens=100, messages=HUMAN)
        async with client.messages.stream(model="claude-x", max_tokens=100, messages=HUMAN) as stream:
            final = await stream.get_final_message()
        raw = await client.messages.create(model="claude-x", max_tokens=100, messages=HUMAN, stream=True)
        kinds = [event.type async for event in raw]
    assert_cached_usage(message.usage)
    assert_cached_usage(final.usage)
    assert kinds == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]


def test_anthropic_tool_use_plain_and_streamed(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = Scenario(tool_call=True, text="Let me check.", tool_input={"city": "Oslo"})
    with claude(fake_provider) as client:
        message = client.messages.create(model="claude-x", max_tokens=100, messages=HUMAN,
                                         tools=ANTHROPIC_TOOLS)
        with client.messages.stream(model="claude-x", max_tokens=100, messages=HUMAN,
                                    tools=ANTHROPIC_TOOLS) as stream:
            final = stream.get_final_message()
    for result in (message, final):
        assert result.stop_reason == "tool_use"
        text, tool = result.content
        assert text.type == "text" and text.text == "Let me check."
        assert tool.type == "tool_use" and tool.name == "lookup_city"
        assert tool.id.startswith("toolu_") and tool.input == {"city": "Oslo"}


def test_anthropic_reasoning_and_max_tokens(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = Scenario(completion_tokens=300, reasoning_tokens=200)
    with claude(fake_provider) as client:
        message = client.messages.create(model="claude-x", max_tokens=1000, messages=HUMAN)
        capped = client.messages.create(model="claude-x", max_tokens=100, messages=HUMAN)
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens == 200
    assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 100


def test_anthropic_errors_raise_typed_exceptions(fake_provider: FakeProvider) -> None:
    fake_provider.push(Scenario(status=429), Scenario(status=529), Scenario(status=500))
    with claude(fake_provider) as client:
        with pytest.raises(anthropic.RateLimitError) as limited:
            client.messages.create(model="claude-x", max_tokens=10, messages=HUMAN)
        with pytest.raises(anthropic.InternalServerError) as overloaded:
            client.messages.create(model="claude-x", max_tokens=10, messages=HUMAN)
        with pytest.raises(anthropic.InternalServerError) as internal, client.messages.stream(
            model="claude-x", max_tokens=10, messages=HUMAN,
        ) as stream:
            stream.get_final_message()
    assert limited.value.status_code == 429 and limited.value.type == "rate_limit_error"
    assert limited.value.request_id is not None
    assert isinstance(limited.value.body, dict)
    assert limited.value.body["request_id"] == limited.value.request_id
    assert overloaded.value.status_code == 529 and overloaded.value.type == "overloaded_error"
    assert internal.value.type == "api_error" and internal.value.api_message == "Internal server error"


# --- validation, wire framing and the fake's own controls ---------------------------------------


def test_validation_errors_use_each_providers_format(fake_provider: FakeProvider) -> None:
    anthropic_headers = {"anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=fake_provider.url) as http:
        bad_json = http.post("/v1/chat/completions", content=b"{nope")
        no_messages = http.post("/v1/chat/completions", json={"model": "gpt-4o"})
        no_model = http.post("/v1/chat/completions", json={"messages": USER})
        bad_anthropic_json = http.post("/v1/messages", content=b"{nope", headers=anthropic_headers)
        no_max_tokens = http.post("/v1/messages", json={"model": "claude-x", "messages": USER},
                                  headers=anthropic_headers)
        no_version = http.post("/v1/messages", json={"model": "c", "max_tokens": 5, "messages": USER})
        wrong_path = http.post("/v1/v1/chat/completions", json={"model": "gpt-4o", "messages": USER})
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "invalid_request_error"
    assert bad_json.json()["error"]["message"].startswith("We could not parse the JSON body")
    assert no_messages.json() == {"error": {"message": "Missing required parameter: 'messages'.",
                                            "type": "invalid_request_error", "param": "messages",
                                            "code": "missing_required_parameter"}}
    assert no_model.status_code == 400
    assert no_model.json()["error"]["message"] == "you must provide a model parameter"
    body = bad_anthropic_json.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("The request body is not valid JSON")
    assert body["request_id"] == bad_anthropic_json.headers["request-id"]
    assert no_max_tokens.status_code == 400
    assert no_max_tokens.json()["error"]["message"] == "max_tokens: Field required"
    assert no_version.json()["error"]["message"] == "anthropic-version: header is required"
    assert wrong_path.status_code == 404
    assert wrong_path.json()["error"]["message"] == "Invalid URL (POST /v1/v1/chat/completions)"


def sse_frames(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n"), "every event ends with a blank line"
    return raw[:-2].split(b"\n\n")


def test_openai_sse_framing_bytes(fake_provider: FakeProvider) -> None:
    request: dict[str, Any] = {"model": "gpt-4o", "messages": USER, "stream": True}
    with httpx.Client(base_url=fake_provider.url) as http:
        plain = http.post("/v1/chat/completions", json=request)
        request["stream_options"] = {"include_usage": True}
        counted = http.post("/v1/chat/completions", json=request)
    assert plain.headers["content-type"].startswith("text/event-stream")
    assert plain.headers["x-request-id"].startswith("req_")
    for response, with_usage in ((plain, False), (counted, True)):
        frames = sse_frames(response.content)
        assert frames[-1] == b"data: [DONE]"
        payloads = []
        for frame in frames[:-1]:
            assert frame.startswith(b"data: ") and b"\n" not in frame  # one data line, no event line
            payloads.append(json.loads(frame[len(b"data: "):]))
        assert all(p["object"] == "chat.completion.chunk" for p in payloads)
        if with_usage:
            assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["total_tokens"] == 1220
            assert all("usage" in p and p["usage"] is None for p in payloads[:-1])
        else:
            assert all("usage" not in p and p["choices"] for p in payloads)


def test_anthropic_sse_framing_bytes(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = Scenario(chunks=2)
    with httpx.Client(base_url=fake_provider.url) as http:
        response = http.post(
            "/v1/messages", headers={"anthropic-version": "2023-06-01"},
            json={"model": "claude-x", "max_tokens": 64, "messages": USER, "stream": True},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    names = []
    payloads: list[dict[str, Any]] = []
    for frame in sse_frames(response.content):
        event_line, data_line = frame.split(b"\n")
        assert event_line.startswith(b"event: ") and data_line.startswith(b"data: ")
        name, payload = event_line[len(b"event: "):].decode(), json.loads(data_line[len(b"data: "):])
        assert payload["type"] == name
        names.append(name)
        payloads.append(payload)
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    start_usage = payloads[0]["message"]["usage"]
    assert start_usage["input_tokens"] == 1200 and start_usage["output_tokens"] == 1
    assert set(start_usage["cache_creation"]) == {"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}
    assert payloads[6]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert payloads[6]["usage"]["output_tokens"] == 20


def test_push_is_fifo_and_requests_are_recorded(fake_provider: FakeProvider) -> None:
    fake_provider.push(Scenario(text="first"), Scenario(text="second"))
    with oai(fake_provider) as client:
        texts = [client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content
                 for _ in range(3)]
    assert texts == ["first", "second", "Hello from the fake provider."]
    recorded = fake_provider.requests
    assert len(recorded) == 3
    last = recorded[-1]
    assert (last.method, last.path) == ("POST", "/v1/chat/completions")
    assert last.body == {"model": "gpt-4o", "messages": USER}
    assert last.headers["authorization"] == "Bearer sk-test"
    assert json.loads(last.raw) == last.body
    fake_provider.reset()
    assert fake_provider.requests == [] and fake_provider.scenario == Scenario()


async def test_concurrent_requests_are_all_served_and_logged(fake_provider: FakeProvider) -> None:
    async with openai.AsyncOpenAI(base_url=fake_provider.url + "/v1", api_key="k", max_retries=0) as client:
        results = await asyncio.gather(*(
            client.chat.completions.create(model=f"m{i}", messages=USER) for i in range(20)
        ))
    assert sorted(r.model for r in results) == sorted(f"m{i}" for i in range(20))
    assert len(fake_provider.requests) == 20


async def test_serve_runs_on_the_current_loop_and_enforces_api_key() -> None:
    fake = await serve(api_key="sk-right")
    try:
        async with openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="sk-wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError):
                await bad.chat.completions.create(model="gpt-4o", messages=USER)
        async with anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-right", max_retries=0) as good:
            message = await good.messages.create(model="claude-x", max_tokens=10, messages=HUMAN)
        assert message.content[0].type == "text"
    finally:
        await fake.stop_async()


def test_threaded_start_stop_releases_the_port() -> None:
    with FakeProvider() as fake:
        port = fake.port
        assert port > 0
        with httpx.Client() as http:
            assert http.get(fake.url + "/v1/models").status_code == 200
    with FakeProvider(port=port) as again:  # the port is free again once stopped
        assert again.port == port
