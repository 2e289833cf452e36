"""The stream taps must read usage and hide events correctly however the bytes are split."""

import orjson
import pytest

from faregate.call import Usage
from faregate.providers.anthropic import AnthropicStreamTap
from faregate.providers.openai import OpenAIStreamTap


def sse(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


OPENAI_STREAM = (
    sse(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}],
            "usage": None,
        }
    )
    + sse(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}],
            "usage": None,
        }
    )
    + sse(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [],
            "usage": {
                "prompt_tokens": 900,
                "completion_tokens": 7,
                "total_tokens": 907,
                "prompt_tokens_details": {"cached_tokens": 512},
                "completion_tokens_details": {"reasoning_tokens": 3},
            },
        }
    )
    + b"data: [DONE]\n\n"
)


def run(tap: OpenAIStreamTap | AnthropicStreamTap, stream: bytes, piece: int) -> bytes:
    out = b"".join(tap.feed(stream[i : i + piece]) for i in range(0, len(stream), piece))
    return out + tap.flush()


@pytest.mark.parametrize("piece", [1, 7, 64, 10_000])
def test_openai_usage_chunk_hidden_when_not_asked(piece: int) -> None:
    tap = OpenAIStreamTap(show_usage_chunk=False)
    out = run(tap, OPENAI_STREAM, piece)
    assert b'"choices":[]' not in out
    assert out.endswith(b"data: [DONE]\n\n")
    assert out.count(b"data: ") == 3
    assert tap.usage == Usage(input_tokens=900, cache_read_tokens=512, output_tokens=7, reasoning_tokens=3)
    assert tap.model == "gpt-4o-mini-2024-07-18"
    assert "".join(tap.text) == "Hello"


@pytest.mark.parametrize("piece", [1, 13, 10_000])
def test_openai_usage_chunk_shown_when_asked(piece: int) -> None:
    tap = OpenAIStreamTap(show_usage_chunk=True)
    assert run(tap, OPENAI_STREAM, piece) == OPENAI_STREAM
    assert tap.usage is not None and tap.usage.cache_read_tokens == 512
    assert tap.stop_reason == "stop"  # what the response cache checks before storing a streamed answer


ANTHROPIC_STREAM = (
    sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "stop_reason": None,
                "usage": {
                    "input_tokens": 50,
                    "cache_read_input_tokens": 1000,
                    "cache_creation_input_tokens": 300,
                    "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
                    "output_tokens": 1,
                },
            },
        },
        "message_start",
    )
    + sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
    + sse({"type": "ping"}, "ping")
    + sse(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        "content_block_delta",
    )
    + sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    + sse(
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 42}},
        "message_delta",
    )
    + sse({"type": "message_stop"}, "message_stop")
)


@pytest.mark.parametrize("piece", [1, 9, 10_000])
def test_anthropic_tap_passes_everything_and_totals_usage(piece: int) -> None:
    tap = AnthropicStreamTap()
    assert run(tap, ANTHROPIC_STREAM, piece) == ANTHROPIC_STREAM
    assert tap.usage == Usage(
        input_tokens=1350,
        cache_read_tokens=1000,
        cache_write_tokens=300,
        cache_write_1h_tokens=200,
        output_tokens=42,
    )
    assert "".join(tap.text) == "Hi"
    assert tap.stop_reason == "end_turn"


def test_crlf_framed_stream_is_relayed_event_by_event() -> None:
    tap = OpenAIStreamTap(show_usage_chunk=False)
    crlf = OPENAI_STREAM.replace(b"\n", b"\r\n")
    first_event_end = crlf.index(b"\r\n\r\n") + 4
    assert tap.feed(crlf[:first_event_end]).count(b"data: ") == 1
    tap.feed(crlf[first_event_end:])
    assert tap.usage is not None and tap.usage.input_tokens == 900


def test_partial_event_is_held_until_complete() -> None:
    tap = OpenAIStreamTap(show_usage_chunk=False)
    first = OPENAI_STREAM[:20]
    assert tap.feed(first) == b""
    assert tap.feed(OPENAI_STREAM[20:]).startswith(first)


def test_anthropic_final_totals_without_a_ttl_split_keep_the_one_hour_writes() -> None:
    """With server tools, message_delta repeats larger input totals but no 5m/1h split."""
    delta = sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {
                "input_tokens": 150,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 300,
                "output_tokens": 42,
            },
        },
        "message_delta",
    )
    stream = ANTHROPIC_STREAM.replace(
        sse(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 42}},
            "message_delta",
        ),
        delta,
    )
    assert stream != ANTHROPIC_STREAM
    tap = AnthropicStreamTap()
    run(tap, stream, 10_000)
    assert tap.usage == Usage(
        input_tokens=1450,
        cache_read_tokens=1000,
        cache_write_tokens=300,
        cache_write_1h_tokens=200,
        output_tokens=42,
    )
