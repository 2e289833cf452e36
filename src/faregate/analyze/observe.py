"""One request (a log `Record` or a ledger `CostEvent`) reduced to the numbers the report adds up.

This is the expensive step (splitting the prompt into components means tokenizing it), so it is
kept free of shared state beyond memos and runs unchanged in worker processes. An `Observation` is
small and picklable: component counts, cost, a few hashes, and the query text for repetition.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from faregate.analyze.reader import BadLine, Record
from faregate.anatomy import COMPONENTS, Anatomy, dissect
from faregate.call import Usage
from faregate.ledger.events import CostEvent, nanos_to_usd
from faregate.pricing import PriceBook
from faregate.volatile import find_volatile_spans, stable_skeleton

__all__ = ["Observation", "Observer"]

_MEMO_ENTRIES = 4096  # distinct system prompts / tool lists remembered; cleared when full
_EXAMPLE_CHARS = 80


@dataclass(slots=True)
class Observation:
    feature: str
    model: str
    provider: str | None
    ts: float | None
    anatomy: Anatomy  # scaled to the provider's input total when the log has usage
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    cost: Decimal
    price_known: bool
    user_turns: int | None  # None: unknown (ledger)
    system_hash: int | None  # None: prompt unknown (a ledger event from before the prefix stage)
    skeleton_hash: int | None  # None: prompt text unknown (ledger)
    tools_hash: int | None
    volatile: tuple[tuple[str, str], ...]  # (kind, example) for each kind of volatile span
    query: str | None


@dataclass(frozen=True, slots=True)
class _Prefix:
    system_hash: int
    skeleton_hash: int
    volatile: tuple[tuple[str, str], ...]


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest())


def _recorded_findings(recorded: str | None) -> tuple[tuple[str, str], ...]:
    """The prefix stage's "kind@location;..." as (kind, example) pairs; the ledger keeps no prompt
    text, so the example is where the span was."""
    if not recorded:
        return ()
    kinds: dict[str, str] = {}
    for entry in recorded.split(";"):
        kind, _, location = entry.partition("@")
        kinds.setdefault(kind, location)
    return tuple(sorted(kinds.items()))


class Observer:
    """Turns records into observations; holds the price book, feature patterns and prefix memos."""

    def __init__(
        self,
        prices: PriceBook,
        context_patterns: Mapping[str, Sequence[re.Pattern[str]]] | None = None,
    ) -> None:
        self.prices = prices
        self.patterns = dict(context_patterns or {})
        self._prefixes: dict[str, _Prefix] = {}
        self._tools: dict[str, int] = {}

    def record(self, record: Record) -> Observation:
        try:
            view = dissect(record.protocol, record.model, record.body, self.patterns.get(record.feature, ()))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise BadLine(f"cannot split the request into components: {exc}") from None
        anatomy = view.anatomy
        usage = record.usage
        if usage is None:
            usage = Usage(input_tokens=anatomy.total(), estimated=True)
        else:
            anatomy = anatomy.scaled_to(usage.input_tokens)
        price = self.prices.cost(record.model, usage, provider=record.provider)
        prefix = self._prefix(view.system_text or "")
        return Observation(
            feature=record.feature,
            model=record.model,
            provider=record.provider,
            ts=record.ts,
            anatomy=anatomy,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cost=price.usd,
            price_known=price.known,
            user_turns=view.user_turns,
            system_hash=prefix.system_hash,
            skeleton_hash=prefix.skeleton_hash,
            tools_hash=self._tools_hash(view.tools_json or ""),
            volatile=prefix.volatile,
            query=view.query_text or None,
        )

    def event(self, event: CostEvent) -> Observation:
        """A ledger event: its split (when the ledger has one), usage and recorded cost."""
        parts = {name: int(getattr(event, f"{name}_tokens", 0) or 0) for name in COMPONENTS}
        split = Anatomy(**parts)
        if split.total() > 0:
            anatomy = split.scaled_to(event.input_tokens)
        else:  # an event written before the ledger kept the split
            anatomy = Anatomy(**{**dict.fromkeys(COMPONENTS, 0), "overhead": event.input_tokens})
        return Observation(
            feature=event.feature,
            model=event.model_used or event.model_requested or "unknown",
            provider=event.provider if event.provider in ("openai", "anthropic") else None,
            ts=event.ts,
            anatomy=anatomy,
            output_tokens=event.output_tokens,
            cached_tokens=event.cached_tokens,
            cache_write_tokens=event.cache_write_tokens,
            cost=nanos_to_usd(event.cost_nusd),
            price_known=event.price_known,
            user_turns=None,
            system_hash=int(event.prefix_hash, 16) if event.prefix_hash else None,
            skeleton_hash=None,
            tools_hash=None,
            volatile=_recorded_findings(event.prefix_findings),
            query=None,
        )

    def _prefix(self, system: str) -> _Prefix:
        hit = self._prefixes.get(system)
        if hit is None:
            if len(self._prefixes) >= _MEMO_ENTRIES:
                self._prefixes.clear()
            kinds: dict[str, str] = {}
            for span in find_volatile_spans(system):
                kinds.setdefault(span.kind, span.text[:_EXAMPLE_CHARS])
            hit = self._prefixes[system] = _Prefix(
                _digest(system), _digest(stable_skeleton(system)), tuple(sorted(kinds.items()))
            )
        return hit

    def _tools_hash(self, tools: str) -> int:
        hit = self._tools.get(tools)
        if hit is None:
            if len(self._tools) >= _MEMO_ENTRIES:
                self._tools.clear()
            hit = self._tools[tools] = _digest(tools)
        return hit
