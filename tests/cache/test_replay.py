"""Replayed answers, read back by the official SDKs: if they parse a hit, so will the client.

The stored answers come from the fake provider's own builders (written from the providers' API
references), so what is cached is what a provider sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest

from faregate.cache.entry import CachedAnswer
from faregate.cache.replay import answer_from_response, render_json, render_stream, split_deltas
from faregate.fake_provider import Scenario
from faregate.fake_provider import anthropic_messages as fake_anthropic
from faregate.fake_provider import openai_chat as fake_openai

TEXT = "The capital of France is Paris. It has been since the 10th century, give or take a few kings."
JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream; charset=utf-8"


def _transport(content: bytes, content_type: str) -> httpx2.MockTransport:
    """Both SDKs here speak httpx2 (httpx's successor package), which has httpx's MockTransport."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=content, headers={"content-type": content_type})

    return httpx2.MockTransport(handler)


def _openai_client(content: bytes, content_type: str) -> openai.OpenAI:
    http = httpx2.Client(transport=_transport(content, content_type))
    return openai.OpenAI(api_key="sk-test", base_url="http://provider.test/v1", http_client=http)


def _anthropic_client(content: bytes, content_type: str) -> anthropic.Anthropic:
    http = httpx2.Client(transport=_transport(content, content_type))
    return anthropic.Anthropic(api_key="sk-ant-test", base_url="http://provider.test", http_client=http)


def _openai_answer(**changes: Any) -> CachedAnswer:
    fields: dict[str, Any] = {
        "protocol": "openai",
        "model": "gpt-4o-2024-08-06",
        "text": TEXT,
        "stop_reason": "stop",
        "input_tokens": 1200,
        "output_tokens": 25,
        "cost_nusd": 3_250_000,
    }
    return CachedAnswer(**(fields | changes))


def _anthropic_answer(**changes: Any) -> CachedAnswer:
    fields: dict[str, Any] = {
        "protocol": "anthropic",
        "model": "claude-sonnet-4-6",
        "text": TEXT,
        "stop_reason": "end_turn",
        "input_tokens": 1500,
        "output_tokens": 30,
        "cost_nusd": 4_950_000,
    }
    return CachedAnswer(**(fields | changes))


# --- answer_from_response -----------------------------------------------------------------------


def test_openai_answer_from_fake_provider_body() -> None:
    body = fake_openai.completion(
        {"model": "gpt-4o"}, Scenario(text=TEXT, prompt_tokens=900, cached_tokens=512)
    )
    answer = answer_from_response("openai", body, 1234)
    assert answer == CachedAnswer("openai", "gpt-4o", TEXT, "stop", 900, 20, 1234)


def test_anthropic_answer_from_fake_provider_body_counts_the_whole_prompt() -> None:
    scenario = Scenario(
        text=TEXT, prompt_tokens=2000, cached_tokens=1500, cache_write_5m_tokens=300, completion_tokens=40
    )
    body = fake_anthropic.message({"model": "claude-haiku-4-5-20251001", "max_tokens": 1024}, scenario)
    assert body["usage"]["input_tokens"] == 200  # the uncached rest, as Anthropic reports it
    answer = answer_from_response("anthropic", body, 99)
    assert answer == CachedAnswer("anthropic", "claude-haiku-4-5-20251001", TEXT, "end_turn", 2000, 40, 99)


def test_anthropic_stop_sequence_is_a_normal_end() -> None:
    body = fake_anthropic.message({"model": "claude-sonnet-4-6", "max_tokens": 100}, Scenario(text=TEXT))
    body |= {"stop_reason": "stop_sequence", "stop_sequence": "\n\nHuman:"}
    answer = answer_from_response("anthropic", body, 1)
    assert answer is not None and answer.stop_reason == "stop_sequence"


@pytest.mark.parametrize(
    "make_body",
    [
        pytest.param(
            lambda: fake_openai.completion({"model": "gpt-4o"}, Scenario(tool_call=True)), id="tool-call"
        ),
        pytest.param(
            lambda: fake_openai.completion(
                {"model": "gpt-4o", "max_tokens": 5}, Scenario(text=TEXT, completion_tokens=20)
            ),
            id="length",
        ),
        pytest.param(
            lambda: fake_openai.completion({"model": "gpt-4o"}, Scenario(text=TEXT, include_usage=False)),
            id="no-usage",
        ),
        pytest.param(lambda: _openai_n2(), id="n=2"),
        pytest.param(lambda: _openai_refusal(), id="refusal"),
        pytest.param(lambda: fake_openai.completion({"model": "gpt-4o"}, Scenario(text="")), id="empty-text"),
    ],
)
def test_openai_answers_that_are_not_reusable(make_body: Callable[[], dict[str, Any]]) -> None:
    assert answer_from_response("openai", make_body(), 1) is None


def _openai_n2() -> dict[str, Any]:
    body: dict[str, Any] = fake_openai.completion({"model": "gpt-4o", "n": 2}, Scenario(text=TEXT))
    second = {**body["choices"][0], "index": 1}
    body["choices"].append(second)
    return body


def _openai_refusal() -> dict[str, Any]:
    body: dict[str, Any] = fake_openai.completion({"model": "gpt-4o"}, Scenario(text="I can't help."))
    body["choices"][0]["message"]["refusal"] = "I can't help."
    return body


@pytest.mark.parametrize(
    "make_body",
    [
        pytest.param(
            lambda: fake_anthropic.message(
                {"model": "claude-sonnet-4-6", "max_tokens": 100},
                Scenario(text="Let me check.", tool_call=True),
            ),
            id="tool-use",
        ),
        pytest.param(
            lambda: fake_anthropic.message(
                {"model": "claude-sonnet-4-6", "max_tokens": 5}, Scenario(text=TEXT, completion_tokens=20)
            ),
            id="max_tokens",
        ),
        pytest.param(lambda: _anthropic_thinking(), id="thinking"),
        pytest.param(
            lambda: fake_anthropic.message(
                {"model": "claude-sonnet-4-6", "max_tokens": 100}, Scenario(text=TEXT, include_usage=False)
            ),
            id="no-usage",
        ),
    ],
)
def test_anthropic_answers_that_are_not_reusable(make_body: Callable[[], dict[str, Any]]) -> None:
    assert answer_from_response("anthropic", make_body(), 1) is None


def _anthropic_thinking() -> dict[str, Any]:
    body: dict[str, Any] = fake_anthropic.message(
        {"model": "claude-sonnet-4-6", "max_tokens": 2000}, Scenario(text=TEXT)
    )
    body["content"].insert(0, {"type": "thinking", "thinking": "Hmm.", "signature": "sig"})
    return body


# --- render_json --------------------------------------------------------------------------------


def test_openai_json_parsed_by_the_sdk() -> None:
    answer = _openai_answer()
    raw = render_json(answer, "gpt-4o")
    completion = _openai_client(raw, JSON_TYPE).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4o-2024-08-06"  # the provider's name, as a miss would return it
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1200, 25, 1225)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0


def test_anthropic_json_parsed_by_the_sdk() -> None:
    raw = render_json(_anthropic_answer(), "claude-sonnet-4-6")
    message = _anthropic_client(raw, JSON_TYPE).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "Capital of France?"}],
    )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text" and message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    assert message.id.startswith("msg_")
    assert message.model == "claude-sonnet-4-6"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (1500, 30)
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0


def test_fresh_ids_and_created_now() -> None:
    answer = _openai_answer()
    first, second = orjson.loads(render_json(answer, "gpt-4o")), orjson.loads(render_json(answer, "gpt-4o"))
    assert first["id"] != second["id"]
    assert len(first["id"]) == len("chatcmpl-") + 29
    anthropic_ids = {orjson.loads(render_json(_anthropic_answer(), "x"))["id"] for _ in range(3)}
    assert len(anthropic_ids) == 3


def test_request_model_stands_in_for_an_empty_stored_name() -> None:
    body = orjson.loads(render_json(_openai_answer(model=""), "gpt-4o-mini"))
    assert body["model"] == "gpt-4o-mini"


# --- render_stream ------------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_stream_parsed_by_the_sdk(include_usage: bool) -> None:
    frames = render_stream(_openai_answer(), "gpt-4o", include_usage)
    client = _openai_client(b"".join(frames), SSE_TYPE)
    options: Any = {"include_usage": True} if include_usage else openai.NOT_GIVEN
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=True,
        stream_options=options,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1  # one completion, one id
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 3  # a stream, not one blob
    usages = [c.usage for c in chunks if c.usage is not None]
    if include_usage:
        assert len(usages) == 1 and chunks[-1].choices == []
        assert (usages[0].prompt_tokens, usages[0].completion_tokens, usages[0].total_tokens) == (
            1200,
            25,
            1225,
        )
    else:
        assert usages == []
        assert all(b'"usage"' not in frame for frame in frames)


def test_openai_stream_frames_match_the_fake_providers_shape() -> None:
    ours = render_stream(_openai_answer(), "gpt-4o", True)
    theirs = fake_openai.stream_events(
        {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}}, Scenario(text=TEXT)
    )
    assert ours[-1] == theirs[-1] == b"data: [DONE]\n\n"
    for frames in (ours, theirs):
        assert all(f.startswith(b"data: ") and f.endswith(b"\n\n") for f in frames)
    first_ours, first_theirs = orjson.loads(ours[0][6:]), orjson.loads(theirs[0][6:])
    assert first_ours["choices"][0]["delta"] == first_theirs["choices"][0]["delta"]
    assert set(first_ours) <= set(first_theirs)
    assert orjson.loads(ours[-2][6:])["choices"] == []


def test_anthropic_stream_parsed_by_the_sdk() -> None:
    frames = render_stream(_anthropic_answer(stop_reason="stop_sequence"), "claude-sonnet-4-6", False)
    client = _anthropic_client(b"".join(frames), SSE_TYPE)
    deltas: list[str] = []
    with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "Capital of France?"}],
    ) as stream:
        deltas.extend(stream.text_stream)
        message = stream.get_final_message()
    assert "".join(deltas) == TEXT and len(deltas) > 3
    assert message.content[0].type == "text" and message.content[0].text == TEXT
    assert message.stop_reason == "stop_sequence"
    assert message.model == "claude-sonnet-4-6"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (1500, 30)


def test_anthropic_stream_event_sequence() -> None:
    frames = render_stream(_anthropic_answer(), "claude-sonnet-4-6", True)
    names = [frame.split(b"\n", 1)[0].removeprefix(b"event: ").decode() for frame in frames]
    n = len(split_deltas(TEXT))
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * n,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    theirs = fake_anthropic.stream_events(
        {"model": "claude-sonnet-4-6", "max_tokens": 100}, Scenario(text=TEXT)
    )
    their_names = [frame.split(b"\n", 1)[0].removeprefix(b"event: ").decode() for frame in theirs]
    assert [x for x in names if x != "content_block_delta"] == [
        x for x in their_names if x != "content_block_delta"
    ]


# --- split_deltas -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        TEXT,
        "",
        "   ",
        "one",
        "  leading and trailing  ",
        "line\n\nbreaks\tand  tabs",
        "x" * 100 + " y",
        "日本語の文章です。 次",
    ],
)
def test_split_deltas_joins_back_exactly(text: str) -> None:
    pieces = split_deltas(text)
    assert "".join(pieces) == text
    assert all(pieces)
    assert all(len(p) <= 20 or len(p.split()) == 1 for p in pieces)  # only a long word runs over
