"""The fake provider is only useful if it is faithful: the official SDKs must accept every answer.

Each test points the real `openai` / `anthropic` client straight at the fake (no gateway in between),
so a format mistake in the fake shows up here rather than as a confusing gateway failure.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam, TextBlockParam, ToolParam
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from faregate.fake_provider import FakeProvider, Scenario, serve

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
HUMAN: list[MessageParam] = [{"role": "user", "content": "Say hello."}]
OPENAI_TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {"name": "lookup_city", "parameters": {"type": "object", "properties": {}}},
    }
]
ANTHROPIC_TOOLS: list[ToolParam] = [
    {"name": "lookup_city", "input_schema": {"type": "object", "properties": {}}},
]


def oai(fake: FakeProvider, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url + "/v1", api_key="sk-test", max_retries=0, **kwargs)


def claude(fake: FakeProvider, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0, **kwargs)


# --- OpenAI Chat Completions -------------------------------------------------------------------


def test_openai_completion_parses_with_cached_and_reasoning_tokens(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = Scenario(
        prompt_tokens=2000, cached_tokens=1536, completion_tokens=50, reasoning_tokens=30
    )
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
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
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
            model="gpt-4.1",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
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
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=USER,
                tools=OPENAI_TOOLS,
                stream=True,
            )
        )
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
        chunks = list(
            client.chat.completions.create(
                model="local",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert completion.usage is None
    assert all(c.usage is None and c.choices for c in chunks)


def test_openai_errors_raise_typed_exceptions(fake_provider: FakeProvider) -> None:
    custom = {
        "error": {
            "message": "Invalid 'temperature'.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        }
    }
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
    assert (bad.value.code, bad.value.param, bad.value.type) == (
        "invalid_value",
        "temperature",
        "invalid_request_error",
    )
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

CACHED = Scenario(
    prompt_tokens=5000,
    cached_tokens=3000,
    cache_write_5m_tokens=800,
    cache_write_1h_tokens=200,
    completion_tokens=42,
)


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
    with (
        claude(fake_provider) as client,
        client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=1024,
            messages=HUMAN,
        ) as stream,
    ):
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


def test_anthropic_tool_use_plain_and_streamed(fake_provider: FakeProvider) -> None:
    fake_provider.scenario = Scenario(tool_call=True, text="Let me check.", tool_input={"city": "Oslo"})
    with claude(fake_provider) as client:
        message = client.messages.create(
            model="claude-x", max_tokens=100, messages=HUMAN, tools=ANTHROPIC_TOOLS
        )
        with client.messages.stream(
            model="claude-x", max_tokens=100, messages=HUMAN, tools=ANTHROPIC_TOOLS
        ) as stream:
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
        with (
            pytest.raises(anthropic.InternalServerError) as internal,
            client.messages.stream(
                model="claude-x",
                max_tokens=10,
                messages=HUMAN,
            ) as stream,
        ):
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
        no_max_tokens = http.post(
            "/v1/messages", json={"model": "claude-x", "messages": USER}, headers=anthropic_headers
        )
        no_version = http.post("/v1/messages", json={"model": "c", "max_tokens": 5, "messages": USER})
        wrong_path = http.post("/v1/v1/chat/completions", json={"model": "gpt-4o", "messages": USER})
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "invalid_request_error"
    assert bad_json.json()["error"]["message"].startswith("We could not parse the JSON body")
    assert no_messages.json() == {
        "error": {
            "message": "Missing required parameter: 'messages'.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "missing_required_parameter",
        }
    }
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
            payloads.append(json.loads(frame[len(b"data: ") :]))
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
            "/v1/messages",
            headers={"anthropic-version": "2023-06-01"},
            json={"model": "claude-x", "max_tokens": 64, "messages": USER, "stream": True},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    names = []
    payloads: list[dict[str, Any]] = []
    for frame in sse_frames(response.content):
        event_line, data_line = frame.split(b"\n")
        assert event_line.startswith(b"event: ") and data_line.startswith(b"data: ")
        name, payload = event_line[len(b"event: ") :].decode(), json.loads(data_line[len(b"data: ") :])
        assert payload["type"] == name
        names.append(name)
        payloads.append(payload)
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start_usage = payloads[0]["message"]["usage"]
    assert start_usage["input_tokens"] == 1200 and start_usage["output_tokens"] == 1
    assert set(start_usage["cache_creation"]) == {"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}
    assert payloads[6]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert payloads[6]["usage"]["output_tokens"] == 20


def test_push_is_fifo_and_requests_are_recorded(fake_provider: FakeProvider) -> None:
    fake_provider.push(Scenario(text="first"), Scenario(text="second"))
    with oai(fake_provider) as client:
        texts = [
            client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content
            for _ in range(3)
        ]
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
        results = await asyncio.gather(
            *(client.chat.completions.create(model=f"m{i}", messages=USER) for i in range(20))
        )
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


# --- prompt-cache simulation ---------------------------------------------------------------------
# Expected counts restate the documented rule rather than call the fake's code: a token is 4 bytes
# (rounded up) of compact, sorted-key JSON; Anthropic counts block by block, OpenAI per message line.

SONNET = "claude-sonnet-4-6"  # not deprecated (the SDK warns, and warnings are errors here)
CLAUSE = "Clause {n}: the tenant keeps the premises in good repair and reports damage within 7 days. "
LEASE = "".join(CLAUSE.format(n=n) for n in range(70))  # ~1,600 tokens: above Sonnet's 1,024 minimum
SHORT = "".join(CLAUSE.format(n=n) for n in range(30))  # ~700 tokens: below every minimum
TOOL_DOC = "".join(f"Field f{n} holds the amount owed for period {n}, in cents. " for n in range(90))


def toks(obj: Any) -> int:
    return -(-len(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()) // 4)


def cached_text(text: str) -> TextBlockParam:
    """A text block marked as a (5-minute) cache breakpoint."""
    return {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}


def sys_tokens(text: str) -> int:
    return toks({"system": {"type": "text", "text": text}})


def msg_tokens(role: str, text: str) -> int:
    return toks({"role": role, "content": {"type": "text", "text": text}})


def cache_numbers(usage: anthropic.types.Usage) -> tuple[int, int, int, int, int]:
    """(input, cache read, cache creation, of which 5-minute, of which 1-hour)."""
    split = usage.cache_creation
    assert split is not None
    return (
        usage.input_tokens,
        usage.cache_read_input_tokens or 0,
        usage.cache_creation_input_tokens or 0,
        split.ephemeral_5m_input_tokens,
        split.ephemeral_1h_input_tokens,
    )


def test_prompt_cache_simulation_is_off_by_default_and_reset_turns_it_off(
    fake_provider: FakeProvider,
) -> None:
    assert fake_provider.prompt_cache is False
    fake_provider.prompt_cache = True
    system: Any = [cached_text(LEASE)]
    with claude(fake_provider) as client:
        first = client.messages.create(model=SONNET, max_tokens=64, system=system, messages=HUMAN)
        fake_provider.reset()
        assert fake_provider.prompt_cache is False
        scripted = client.messages.create(model=SONNET, max_tokens=64, system=system, messages=HUMAN)
        fake_provider.prompt_cache = True  # a fresh cache: the first request writes again
        again = client.messages.create(model=SONNET, max_tokens=64, system=system, messages=HUMAN)
    assert first.usage.cache_creation_input_tokens == sys_tokens(LEASE)
    assert scripted.usage.input_tokens == Scenario.prompt_tokens  # the scenario's numbers again
    assert scripted.usage.cache_creation_input_tokens == 0
    assert again.usage.cache_creation_input_tokens == sys_tokens(LEASE)
    assert again.usage.cache_read_input_tokens == 0
    assert FakeProvider(simulate_prompt_cache=True).prompt_cache is True


def test_anthropic_first_request_writes_second_reads(fake_provider: FakeProvider) -> None:
    fake_provider.prompt_cache = True
    fake_provider.scenario = Scenario(completion_tokens=9)
    prefix = sys_tokens(LEASE)
    q1, q2 = "Who repairs the roof?", "How fast must damage be reported?"
    with claude(fake_provider) as client:
        first = client.messages.create(
            model=SONNET,
            max_tokens=64,
            system=[cached_text(LEASE)],
            messages=[{"role": "user", "content": q1}],
        )
        events = list(
            client.messages.create(
                model=SONNET,
                max_tokens=64,
                system=[cached_text(LEASE)],
                messages=[{"role": "user", "content": q2}],
                stream=True,
            )
        )
    assert prefix > 1024
    assert cache_numbers(first.usage) == (msg_tokens("user", q1), 0, prefix, prefix, 0)
    assert first.usage.output_tokens == 9  # completion still comes from the scenario
    start = events[0]
    assert start.type == "message_start"
    assert cache_numbers(start.message.usage) == (msg_tokens("user", q2), prefix, 0, 0, 0)
    delta = next(e for e in events if isinstance(e, anthropic.types.RawMessageDeltaEvent))
    assert (delta.usage.cache_read_input_tokens, delta.usage.output_tokens) == (prefix, 9)


def test_anthropic_below_the_models_minimum_is_not_cached(fake_provider: FakeProvider) -> None:
    fake_provider.prompt_cache = True
    with claude(fake_provider) as client:
        short = [
            client.messages.create(model=SONNET, max_tokens=64, system=[cached_text(SHORT)], messages=HUMAN)
            for _ in range(2)
        ]
        # ~1,600 tokens: enough for Sonnet (1,024) but not for Haiku 4.5 (4,096)
        haiku = [
            client.messages.create(
                model="claude-haiku-4-5", max_tokens=64, system=[cached_text(LEASE)], messages=HUMAN
            )
            for _ in range(2)
        ]
    for message, text in (*((m, SHORT) for m in short), *((m, LEASE) for m in haiku)):
        total = sys_tokens(text) + msg_tokens("user", "Say hello.")
        assert cache_numbers(message.usage) == (total, 0, 0, 0, 0)


def test_anthropic_1h_and_5m_writes_split_and_expire_by_ttl(fake_provider: FakeProvider) -> None:
    fake_provider.prompt_cache = True
    tool: dict[str, Any] = {
        "name": "lookup_invoice",
        "description": TOOL_DOC,
        "input_schema": {"type": "object", "properties": {}},
    }
    tools: Any = [{**tool, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    system: Any = [cached_text(LEASE)]  # 5 minutes
    tool_part, system_part = toks({"tool": tool}), sys_tokens(LEASE)
    question = msg_tokens("user", "Say hello.")

    def ask() -> anthropic.types.Usage:
        with claude(fake_provider) as client:
            return client.messages.create(
                model=SONNET, max_tokens=64, tools=tools, system=system, messages=HUMAN
            ).usage

    assert tool_part > 1024
    assert cache_numbers(ask()) == (question, 0, tool_part + system_part, system_part, tool_part)
    assert cache_numbers(ask()) == (question, tool_part + system_part, 0, 0, 0)
    fake_provider.advance_prompt_cache_clock(6 * 60)  # the 5-minute entry lapses, the 1-hour one holds
    assert cache_numbers(ask()) == (question, tool_part, system_part, system_part, 0)
    # 64 minutes after the write, but 58 after the read at minute 6: reads refresh the TTL
    fake_provider.advance_prompt_cache_clock(58 * 60)
    assert cache_numbers(ask()) == (question, tool_part, system_part, system_part, 0)
    fake_provider.advance_prompt_cache_clock(2 * 3600)
    assert cache_numbers(ask()) == (question, 0, tool_part + system_part, system_part, tool_part)


def test_anthropic_growing_conversation_reads_back_within_20_blocks(fake_provider: FakeProvider) -> None:
    """One breakpoint on the last message: each turn reads the last turn's prefix and writes the rest."""
    fake_provider.prompt_cache = True
    turn1: list[Any] = [{"role": "user", "content": [cached_text(LEASE)]}]
    reply: Any = {"role": "assistant", "content": "Noted."}
    follow: Any = {"role": "user", "content": [cached_text("Who repairs the roof?")]}
    turn2: list[Any] = [{"role": "user", "content": [{"type": "text", "text": LEASE}]}, reply, follow]
    # 25 more blocks between the cached prefix and the breakpoint: beyond the 20-block look-back
    filler = [{"type": "text", "text": f"Note {n}."} for n in range(25)]
    far: list[Any] = [turn2[0], reply, {"role": "user", "content": [*filler, cached_text("Who repairs it?")]}]
    with claude(fake_provider) as client:
        first = client.messages.create(model=SONNET, max_tokens=64, messages=turn1)
        second = client.messages.create(model=SONNET, max_tokens=64, messages=turn2)
        third = client.messages.create(model=SONNET, max_tokens=64, messages=far)
    lease = msg_tokens("user", LEASE)
    assert cache_numbers(first.usage) == (0, 0, lease, lease, 0)
    rest = msg_tokens("assistant", "Noted.") + msg_tokens("user", "Who repairs the roof?")
    assert cache_numbers(second.usage) == (0, lease, rest, rest, 0)
    assert third.usage.cache_read_input_tokens == 0
    assert third.usage.cache_creation_input_tokens == sum(
        [lease, msg_tokens("assistant", "Noted."), msg_tokens("user", "Who repairs it?")]
        + [msg_tokens("user", f"Note {n}.") for n in range(25)]
    )


def test_anthropic_top_level_cache_control_marks_the_last_block(fake_provider: FakeProvider) -> None:
    fake_provider.prompt_cache = True
    messages: list[MessageParam] = [{"role": "user", "content": LEASE}]
    with claude(fake_provider) as client:
        usages = [
            client.messages.create(
                model=SONNET, max_tokens=64, messages=messages, cache_control={"type": "ephemeral"}
            ).usage
            for _ in range(2)
        ]
    whole = msg_tokens("user", LEASE)
    assert [cache_numbers(u) for u in usages] == [(0, 0, whole, whole, 0), (0, whole, 0, 0, 0)]


def openai_line(message: dict[str, Any]) -> int:
    """Bytes of one message in the fake's OpenAI prompt: compact sorted JSON and a newline."""
    return len(json.dumps(message, sort_keys=True, separators=(",", ":")).encode()) + 1


def test_openai_caches_the_common_prefix_in_128_token_steps(fake_provider: FakeProvider) -> None:
    fake_provider.prompt_cache = True
    system: Any = {"role": "system", "content": LEASE}
    first_q: Any = {"role": "user", "content": "Who repairs the roof?"}
    second_q: Any = {"role": "user", "content": "How fast must damage be reported?"}
    with oai(fake_provider) as client:
        first = client.chat.completions.create(model="gpt-4o", messages=[system, first_q])
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=[system, second_q],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    size = -(-(openai_line(system) + openai_line(second_q)) // 4)
    # the two prompts agree up to the first character of the question: `{"content":"`
    common_tokens = (openai_line(system) + len('{"content":"')) // 4
    assert common_tokens >= 1024
    usage = chunks[-1].usage
    assert first.usage is not None and first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens == size
    assert usage.prompt_tokens_details.cached_tokens == common_tokens // 128 * 128


def test_openai_prompt_cache_key_picks_the_cache(fake_provider: FakeProvider) -> None:
    fake_provider.prompt_cache = True
    messages: Any = [{"role": "system", "content": LEASE}, {"role": "user", "content": "Hi."}]

    def cached(model: str = "gpt-4o", **kwargs: Any) -> int:
        with oai(fake_provider) as client:
            usage = client.chat.completions.create(model=model, messages=messages, **kwargs).usage
        assert usage is not None and usage.prompt_tokens_details is not None
        return usage.prompt_tokens_details.cached_tokens or 0

    assert cached(prompt_cache_key="tenant-a") == 0
    assert cached(prompt_cache_key="tenant-b") == 0  # same prompt, another cache
    assert cached() == 0  # no key: routed by the prompt's first 256 tokens, yet another cache
    hit = cached(prompt_cache_key="tenant-a")
    assert hit >= 1024 and hit % 128 == 0
    assert cached() == hit
    assert cached(model="gpt-4o-mini") == 0  # caches are per model


def test_openai_prefix_that_differs_early_or_is_short_gets_nothing(fake_provider: FakeProvider) -> None:
    fake_provider.prompt_cache = True

    def cached(system: str) -> int:
        messages: Any = [{"role": "system", "content": system}, {"role": "user", "content": "Hi."}]
        with oai(fake_provider) as client:
            usage = client.chat.completions.create(
                model="gpt-4o", messages=messages, prompt_cache_key="one-key"
            ).usage
        assert usage is not None and usage.prompt_tokens_details is not None
        return usage.prompt_tokens_details.cached_tokens or 0

    assert cached(f"Now: 2025-06-01T10:00:00Z\n{LEASE}") == 0
    assert cached(f"Now: 2025-06-01T10:00:07Z\n{LEASE}") == 0  # a timestamp up front spoils it all
    assert [cached(SHORT), cached(SHORT)] == [0, 0]  # under 1,024 tokens: never cached
    assert cached(f"Now: 2025-06-01T10:00:07Z\n{LEASE}") > 0  # the identical prompt does hit


# --- recorded payloads ----------------------------------------------------------------------------

PAYLOADS = Path(__file__).parent / "fixtures" / "payloads"


def test_replay_serves_recorded_bytes_verbatim(fake_provider: FakeProvider) -> None:
    body, stream = (
        (PAYLOADS / "openai_cached.json").read_bytes(),
        (PAYLOADS / "openai_cached.sse").read_bytes(),
    )
    fake_provider.scenario = Scenario(replay_body=body, replay_stream=stream)
    request: dict[str, Any] = {"model": "gpt-4o", "messages": USER}
    with httpx.Client(base_url=fake_provider.url) as http:
        plain = http.post("/v1/chat/completions", json=request)
        streamed = http.post("/v1/chat/completions", json={**request, "stream": True})
    assert plain.content == body and plain.headers["content-type"] == "application/json"
    assert streamed.content == stream and streamed.headers["content-type"].startswith("text/event-stream")
    assert plain.headers["x-request-id"].startswith("req_")


def test_replay_with_only_one_recording_serves_it_to_any_request(fake_provider: FakeProvider) -> None:
    recorded = (PAYLOADS / "anthropic_read.sse").read_bytes()
    fake_provider.scenario = Scenario(replay_stream=recorded)
    with (
        claude(fake_provider) as client,
        client.messages.stream(
            model=SONNET,
            max_tokens=64,
            messages=HUMAN,
        ) as stream,
    ):
        final = stream.get_final_message()
    assert final.model == "claude-sonnet-4-5-20250929"
    assert cache_numbers(final.usage) == (21, 188_086, 0, 0, 0)


@pytest.mark.parametrize(
    "name",
    [
        "anthropic_5m_write",
        "anthropic_1h_write",
        "anthropic_read",
        "anthropic_miss",
        "openai_cached",
        "openai_miss",
    ],
)
def test_every_recorded_payload_parses_with_the_official_sdk(fake_provider: FakeProvider, name: str) -> None:
    """The recordings are hand-written from the docs: the SDKs are the check that they are valid."""
    body, stream = (PAYLOADS / f"{name}.json").read_bytes(), (PAYLOADS / f"{name}.sse").read_bytes()
    fake_provider.push(Scenario(replay_body=body), Scenario(replay_stream=stream))
    if name.startswith("anthropic"):
        with claude(fake_provider) as client:
            message = client.messages.create(model=SONNET, max_tokens=64, messages=HUMAN)
            with client.messages.stream(model=SONNET, max_tokens=64, messages=HUMAN) as events:
                final = events.get_final_message()
        assert final.content[0].type == "text" and message.content[0].type == "text"
        assert final.content[0].text == message.content[0].text
        assert cache_numbers(final.usage) == cache_numbers(message.usage)
        assert final.usage.output_tokens == message.usage.output_tokens
        creation = message.usage.cache_creation
        assert creation is not None
        total = creation.ephemeral_5m_input_tokens + creation.ephemeral_1h_input_tokens
        assert message.usage.cache_creation_input_tokens == total
    else:
        with oai(fake_provider) as client:
            completion = client.chat.completions.create(model="gpt-4o", messages=USER)
            chunks = list(
                client.chat.completions.create(
                    model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
                )
            )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == completion.choices[0].message.content
        assert chunks[-1].usage == completion.usage
