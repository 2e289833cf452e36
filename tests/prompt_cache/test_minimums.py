"""The per-model minimum cacheable prefix: dated ids, aliases and provider spellings find their row."""

from __future__ import annotations

import re

import pytest

from faregate.prompt_cache.minimums import AS_OF, DEFAULT_MIN_TOKENS, min_cacheable_tokens


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # 4,096: Opus 4.5 / 4.6, Haiku 4.5
        ("claude-opus-4-5-20251101", 4096),
        ("claude-opus-4-5", 4096),
        ("claude-opus-4-6", 4096),
        ("claude-haiku-4-5", 4096),
        ("claude-haiku-4-5-20251001", 4096),
        # 1,024: Sonnet 3.5 through 4.6, Opus 3 / 4 / 4.1
        ("claude-sonnet-4-5-20250929", 1024),
        ("claude-sonnet-4-5", 1024),
        ("claude-sonnet-4-6", 1024),
        ("claude-sonnet-4-20250514", 1024),
        ("claude-opus-4-20250514", 1024),  # the date is not a minor version (not Opus 4.2...)
        ("claude-opus-4-1", 1024),
        ("claude-opus-4-1-20250805", 1024),
        ("claude-3-7-sonnet-latest", 1024),
        ("claude-3-5-sonnet-20241022", 1024),
        ("claude-3-opus-20240229", 1024),
        # 2,048: Haiku 3 / 3.5
        ("claude-3-5-haiku-latest", 2048),
        ("claude-3-5-haiku-20241022", 2048),
        ("claude-3-haiku-20240307", 2048),
        # provider spellings
        ("anthropic/claude-haiku-4.5", 4096),  # OpenRouter: dots, provider prefix
        ("anthropic/claude-3.5-haiku", 2048),
        ("CLAUDE-OPUS-4-5", 4096),
        ("anthropic.claude-3-haiku-20240307-v1:0", 2048),  # Bedrock
        ("us.anthropic.claude-opus-4-5-20251101-v1:0", 4096),  # Bedrock cross-region profile
        ("claude-haiku-4-5@20251001", 4096),  # Vertex
    ],
)
def test_known_models(model: str, expected: int) -> None:
    assert min_cacheable_tokens(model) == expected


@pytest.mark.parametrize(
    "model", ["gpt-4o", "claude-2.1", "claude-instant-1.2", "claude-opus-9-9", "", "my-model"]
)
def test_unknown_models_get_the_default(model: str) -> None:
    assert min_cacheable_tokens(model) == DEFAULT_MIN_TOKENS == 1024


def test_the_table_is_dated() -> None:
    assert re.fullmatch(r"20\d\d-(0[1-9]|1[0-2])", AS_OF)
