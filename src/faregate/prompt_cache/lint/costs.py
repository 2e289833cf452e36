"""What a finding costs: the prefix tokens a change of its span re-bills, and the price of a miss.

A span that changes makes the cache miss from the span to the end of the prefix, so those tokens are
billed at the input price instead of the cache-read price. The tokens are the rest of the span's text
and every later part of the prefix (a span inside a tool definition counts the whole tool); the cache
order is tools then system for Anthropic, system then tools for OpenAI.

Findings overlap (a timestamp and a uuid after it break the same tokens), so their costs are each
what fixing that one span alone would save only if it is the first; they do not add up.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import orjson

from faregate.call import Usage
from faregate.pricing import PriceBook
from faregate.prompt_cache.findings import Finding, PrefixBlock, block_findings
from faregate.prompt_cache.lint.report import LintReport
from faregate.tokens import count_text

__all__ = ["DAYS_PER_MONTH", "Misses", "costed", "json_text", "note_unpriced", "tools_tokens"]

DAYS_PER_MONTH = 30


class Misses:
    """USD of a cache miss over n tokens: billed at the input price instead of the cache-read price."""

    def __init__(self, book: PriceBook) -> None:
        self.book = book
        self.unpriced: set[str] = set()

    def usd(self, model: str, provider: str | None, tokens: int) -> Decimal | None:
        full = self.book.cost(model, Usage(input_tokens=tokens), provider=provider)
        if not full.known:
            self.unpriced.add(model)
            return None
        cached = self.book.cost(
            model, Usage(input_tokens=tokens, cache_read_tokens=tokens), provider=provider
        )
        return full.usd - cached.usd


def json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def costed(model: str, blocks: Sequence[PrefixBlock]) -> Iterator[tuple[Finding, int]]:
    """Each finding with the prefix tokens a change of it re-bills: from the span to the prefix's end."""
    after: list[int] | None = None
    for i, block in enumerate(blocks):
        for finding in block_findings(block):
            if after is None:
                after = _tokens_after(model, blocks)
            if isinstance(block.value, str):
                own = count_text(model, block.value[finding.start :])
            else:  # a span inside a tool definition: the whole tool
                own = count_text(model, json_text(block.value))
            yield finding, own + after[i]


def _tokens_after(model: str, blocks: Sequence[PrefixBlock]) -> list[int]:
    """For each block, the tokens of the blocks after it."""
    tokens = [count_text(model, b.value if isinstance(b.value, str) else json_text(b.value)) for b in blocks]
    after = [0] * len(blocks)
    for i in range(len(blocks) - 2, -1, -1):
        after[i] = after[i + 1] + tokens[i + 1]
    return after


def tools_tokens(model: str, blocks: Sequence[PrefixBlock]) -> int:
    """Tokens from the first tool definition to the end of the prefix (what a new tool order re-bills)."""
    first = next((i for i, b in enumerate(blocks) if b.section == "tools"), None)
    if first is None:
        return 0
    return sum(
        count_text(model, b.value if isinstance(b.value, str) else json_text(b.value)) for b in blocks[first:]
    )


def note_unpriced(report: LintReport, pricing: Misses | None) -> None:
    if pricing is not None and pricing.unpriced:
        models = sorted(pricing.unpriced)
        report.extra["unpriced_models"] = models
        report.notes.append(
            f"No price known for {', '.join(models)}: cost omitted (add a price override in the config)."
        )
