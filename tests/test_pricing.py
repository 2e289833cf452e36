"""Costs checked against prices worked out by hand from the providers' published per-MTok prices."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from genai_prices import data_snapshot

from faregate.call import Usage
from faregate.pricing import Price, PriceBook, PriceOverride, to_genai_usage

M = Decimal(1_000_000)


def test_gpt_4o_mini_with_cached_reads() -> None:
    # $0.15 input, $0.075 cached read, $0.60 output per MTok; input_tokens is the whole prompt.
    usage = Usage(input_tokens=10_000, cache_read_tokens=4_000, output_tokens=2_000)
    expected = (6_000 * Decimal("0.15") + 4_000 * Decimal("0.075") + 2_000 * Decimal("0.60")) / M
    assert expected == Decimal("0.0024")
    assert PriceBook().cost("gpt-4o-mini", usage, provider="openai") == Price(expected, known=True)
    # No provider hint (an OpenAI-compatible upstream): genai-prices finds it by the model name.
    assert PriceBook().cost("gpt-4o-mini", usage).usd == expected


def test_claude_sonnet_4_5_with_5m_and_1h_cache_writes_and_reads() -> None:
    # $3 input, $0.30 cache read, $3.75 5-minute write, $6 1-hour write, $15 output per MTok.
    # Prompt of 100,000: 10,000 uncached, 50,000 read, 40,000 written (15,000 of them for 1 hour).
    usage = Usage(
        input_tokens=100_000,
        cache_read_tokens=50_000,
        cache_write_tokens=40_000,
        cache_write_1h_tokens=15_000,
        output_tokens=3_000,
    )
    expected = (
        10_000 * Decimal(3)
        + 50_000 * Decimal("0.30")
        + 25_000 * Decimal("3.75")
        + 15_000 * Decimal(6)
        + 3_000 * Decimal(15)
    ) / M
    assert expected == Decimal("0.27375")
    book = PriceBook()
    assert book.cost("claude-sonnet-4-5", usage, provider="anthropic") == Price(expected, known=True)
    assert book.cost("claude-sonnet-4-5-20250929", usage).usd == expected


def test_claude_long_context_tier_prices_the_whole_call_at_the_higher_rate() -> None:
    # Above 200,000 input tokens Sonnet 4.5 costs $6 input, $0.60 cache read, $22.50 output per MTok.
    usage = Usage(input_tokens=250_000, cache_read_tokens=50_000, output_tokens=1_000)
    expected = (200_000 * Decimal(6) + 50_000 * Decimal("0.60") + 1_000 * Decimal("22.5")) / M
    assert expected == Decimal("1.2525")
    assert PriceBook().cost("claude-sonnet-4-5", usage, provider="anthropic").usd == expected


def test_reasoning_tokens_are_output_tokens_and_not_charged_twice() -> None:
    # gpt-5: $1.25 input, $10 output per MTok; its 1,500 reasoning tokens are within the 2,000 output.
    usage = Usage(input_tokens=1_000, output_tokens=2_000, reasoning_tokens=1_500)
    expected = (1_000 * Decimal("1.25") + 2_000 * Decimal(10)) / M
    assert PriceBook().cost("gpt-5", usage, provider="openai").usd == expected == Decimal("0.02125")


def test_reasoning_priced_apart_is_taken_out_of_output() -> None:
    # sonar-deep-research: $2 input, $8 output, $3 reasoning per MTok.
    usage = Usage(input_tokens=1_000, output_tokens=5_000, reasoning_tokens=4_000)
    expected = (1_000 * Decimal(2) + 1_000 * Decimal(8) + 4_000 * Decimal(3)) / M
    assert PriceBook().cost("sonar-deep-research", usage, provider="perplexity").usd == expected


def test_price_changes_over_time_follow_the_request_timestamp() -> None:
    # o3 cost $10 in / $40 out per MTok until 2025-06-10, then $2 / $8.
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    book = PriceBook()
    before = book.cost("o3", usage, provider="openai", at=datetime(2025, 6, 1, tzinfo=UTC))
    after = book.cost("o3", usage, provider="openai", at=datetime(2025, 7, 1, tzinfo=UTC))
    assert before.usd == (1_000 * Decimal(10) + 1_000 * Decimal(40)) / M == Decimal("0.05")
    assert after.usd == (1_000 * Decimal(2) + 1_000 * Decimal(8)) / M == Decimal("0.01")


def test_override_model_with_cache_fallbacks() -> None:
    # Read at its own price; writes (5-minute and 1-hour alike) fall back to the input price.
    book = PriceBook(
        {"acme-llm": PriceOverride(Decimal(2), Decimal(8), cache_read_mtok=Decimal("0.5"))},
    )
    usage = Usage(
        input_tokens=1_000,
        cache_read_tokens=200,
        cache_write_tokens=300,
        cache_write_1h_tokens=100,
        output_tokens=500,
        reasoning_tokens=100,
    )
    expected = (500 * Decimal(2) + 200 * Decimal("0.5") + 300 * Decimal(2) + 500 * Decimal(8)) / M
    assert book.cost("acme-llm", usage) == Price(Decimal("0.0057"), known=True) == Price(expected, True)


def test_override_1h_write_price_without_5m_price() -> None:
    book = PriceBook({"acme": PriceOverride(Decimal(1), Decimal(4), cache_write_1h_mtok=Decimal(2))})
    usage = Usage(input_tokens=1_000, cache_write_tokens=600, cache_write_1h_tokens=200, output_tokens=0)
    # 400 uncached + 400 5-minute writes at the $1 input price, 200 1-hour writes at $2.
    assert book.cost("acme", usage).usd == (800 * Decimal(1) + 200 * Decimal(2)) / M


def test_override_wins_over_genai_prices_and_coerces_config_values() -> None:
    override = PriceOverride(input_mtok=Decimal(1), output_mtok=0.5)  # type: ignore[arg-type]
    assert override.output_mtok == Decimal("0.5")
    book = PriceBook({"gpt-4o-mini": override})
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert book.cost("gpt-4o-mini", usage, provider="openai").usd == Decimal("1.5")


def test_override_rejects_negative_prices() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        PriceOverride(Decimal(-1), Decimal(1))


def test_unknown_model_is_flagged_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    book = PriceBook()
    usage = Usage(input_tokens=100, output_tokens=100)
    with caplog.at_level(logging.WARNING, logger="faregate.pricing"):
        prices = [book.cost("no-such-model-xyz", usage) for _ in range(3)]
        prices.append(book.cost("no-such-model-xyz", usage, provider="openai"))
    assert prices == [Price(Decimal(0), known=False)] * 4
    warnings = [r for r in caplog.records if r.name == "faregate.pricing"]
    assert len(warnings) == 1
    assert "no-such-model-xyz" in warnings[0].getMessage()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="faregate.pricing"):
        book.cost("another-unknown-model", usage)
    assert len(caplog.records) == 1


def test_model_without_token_prices_is_unknown_not_free() -> None:
    # whisper is priced per audio hour; its "tokens" must not be recorded as a known $0.
    price = PriceBook().cost("whisper-large-v3", Usage(input_tokens=10, output_tokens=10), provider="groq")
    assert price == Price(Decimal(0), known=False)


def test_unknown_provider_hint_falls_back_to_model_matching() -> None:
    usage = Usage(input_tokens=1_000_000)
    assert PriceBook().cost("gpt-4o-mini", usage, provider="my-vllm").usd == Decimal("0.15")


@pytest.mark.parametrize(
    "usage",
    [
        Usage(input_tokens=10, cache_read_tokens=11),
        Usage(input_tokens=10, cache_read_tokens=5, cache_write_tokens=6),
        Usage(input_tokens=10, cache_write_tokens=2, cache_write_1h_tokens=3),
        Usage(output_tokens=1, reasoning_tokens=2),
        Usage(input_tokens=-1),
    ],
)
def test_inconsistent_usage_is_an_error(usage: Usage) -> None:
    with pytest.raises(ValueError):
        PriceBook().cost("gpt-4o-mini", usage)


def test_model_lookup_is_memoised(monkeypatch: pytest.MonkeyPatch) -> None:
    book = PriceBook()
    calls = 0
    original = book._snapshot.find_provider_model

    def counting(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args)

    monkeypatch.setattr(book._snapshot, "find_provider_model", counting)
    for _ in range(5):
        book.cost("gpt-4o-mini", Usage(input_tokens=1), provider="openai")
        book.cost("no-such-model-xyz", Usage(input_tokens=1))
    assert calls == 2


def test_uses_the_bundled_snapshot_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object) -> None:
        raise AssertionError("pricing tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert data_snapshot.get_snapshot().from_auto_update is False
    assert PriceBook().cost("gpt-4o-mini", Usage(input_tokens=1_000_000)).usd == Decimal("0.15")


_SAMPLE_USAGES = [
    Usage(
        input_tokens=1_000,
        cache_read_tokens=200,
        cache_write_tokens=100,
        cache_write_1h_tokens=50,
        output_tokens=500,
        reasoning_tokens=100,
    ),
    Usage(input_tokens=250_000, cache_read_tokens=10_000, cache_write_tokens=5_000, output_tokens=3_000),
]


def test_fast_path_matches_genai_prices_for_every_model_in_the_snapshot() -> None:
    """The memoised plan must price exactly as `genai_prices.calc_price` does, model by model."""
    book = PriceBook()
    compared = 0
    logging.getLogger("faregate.pricing").disabled = True
    try:
        for provider in data_snapshot.get_snapshot().providers:
            for model in provider.models:
                for at in (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)):
                    for usage in _SAMPLE_USAGES:
                        try:
                            reference = genai_prices.calc_price(
                                to_genai_usage(usage),
                                model.id,
                                provider_id=provider.id,
                                genai_request_timestamp=at,
                            )
                        except LookupError:  # a few ids in the data do not match themselves
                            continue
                        price = book.cost(model.id, usage, provider=provider.id, at=at)
                        if price.known:
                            assert price.usd == reference.total_price, (provider.id, model.id, at, usage)
                            compared += 1
                        else:
                            # only entries without token prices are unknown; genai-prices says $0
                            assert reference.total_price == 0, (provider.id, model.id)
    finally:
        logging.getLogger("faregate.pricing").disabled = False
    assert compared > 1_000
