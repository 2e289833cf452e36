"""What each optimisation would save on the analyzed traffic, alone and stacked in sequence.

The model is deliberately simple, deterministic and explainable; every number it uses is a constant
below and is restated in the report's `assumptions`. It is computed while the log streams past, one
request at a time, so its state is bounded: the last time each cacheable prefix was seen, and a
histogram of output lengths per feature.

Strategies are applied in order, each to what the previous ones left of a request's cost:

1. prompt caching: the stable prefix (system + tools; history too from a conversation's second turn)
   is billed at the model's cache-read price when it was seen before within the cache lifetime and
   reaches the minimum cacheable length; tokens the log shows already cached are subtracted; a
   cache write costs the model's write premium (Anthropic: 1.25x input), counted once a prefix is
   read again (a prefix nobody re-reads would not be given a breakpoint).
2. semantic caching: a first-turn query that repeats one seen before in its feature is answered from
   the cache: all of its remaining cost for an exact duplicate, half for a near duplicate (the
   precision guard refuses some).
3. model routing: a share of the requests with a short query and little context goes to a small
   tier at a fraction of the price.
4. history policy: history beyond the most recent turns is replaced by a summary.
5. output caps: output tokens above the feature's 90th percentile are cut.

Semantic caching and routing remove a fraction of a request's whole cost; history and output savings
are counted on what those two left (`keep`), at the rate the removed tokens were billed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from faregate.call import Usage
from faregate.pricing import PriceBook

__all__ = ["STRATEGIES", "Rates", "SavingsModel"]

STRATEGIES = ("prompt_caching", "semantic_caching", "model_routing", "history_policy", "output_caps")

CACHE_LIFETIME_S = 300.0  # Anthropic's default TTL; OpenAI keeps prefixes 5-10 minutes
MIN_CACHEABLE_TOKENS = 1024  # OpenAI's minimum, and Anthropic's for Sonnet/Opus
DEFAULT_CACHE_READ_RATIO = Decimal("0.1")  # where genai-prices lists no cache-read price
NEAR_DUPLICATE_HIT = Decimal("0.5")  # share of near duplicates the precision guard lets through
ROUTING_SHARE = Decimal("0.3")  # share of eligible requests a router sends to the small tier
SMALL_TIER_PRICE = Decimal(1) / Decimal(15)  # small tier price relative to the model asked for
ROUTING_MAX_QUERY_TOKENS = 200
ROUTING_MAX_CONTEXT_TOKENS = 1000
ROUTING_MIN_INPUT_USD_MTOK = Decimal(1)  # models at or below this input price already are a small tier
HISTORY_KEEP_TURNS = 4
HISTORY_KEEP_TOKENS = 2000
SUMMARY_RATIO = Decimal("0.1")  # a summary is about a tenth of what it replaces
OUTPUT_PERCENTILE = 0.9
OUTPUT_MIN_SAMPLES = 20  # features with fewer known output lengths get no cap
_MAX_PREFIXES = 200_000  # bound on remembered prefixes; the oldest half is forgotten beyond it
_PROBE = 1000  # tokens used to read a model's per-token rates (below any long-context tier)
_ZERO = Decimal(0)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Rates:
    """A model's USD per token; `cache_read_listed` is False when the 10% default stands in."""

    known: bool
    input: Decimal = _ZERO
    cache_read: Decimal = _ZERO
    cache_write: Decimal = _ZERO
    output: Decimal = _ZERO
    cache_read_listed: bool = False

    @property
    def input_mtok(self) -> Decimal:
        return self.input * 1_000_000


@dataclass(slots=True)
class SavingsInput:
    """What the savings model needs to know about one request (built by the report's aggregator)."""

    feature: str
    model: str
    provider: str | None
    ts: float | None
    cost: Decimal
    system: int
    tools: int
    history: int
    context: int
    query: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    user_turns: int | None  # None: unknown (ledger input)
    prefix_key: tuple[object, ...]  # what a provider cache would match on
    duplicate: str | None  # "exact" | "near" | "new", None when the query is unknown


@dataclass
class _Totals:
    alone: list[Decimal] = field(default_factory=lambda: [_ZERO] * 5)
    stacked: list[Decimal] = field(default_factory=lambda: [_ZERO] * 5)
    cache_writes: Decimal = _ZERO
    cached_requests: int = 0
    newly_cached_tokens: int = 0
    already_cached_tokens: int = 0
    exact: int = 0
    near: int = 0
    routed: int = 0
    trimmed: int = 0
    trimmed_tokens: int = 0


class SavingsModel:
    def __init__(self, prices: PriceBook) -> None:
        self._prices = prices
        self._rates: dict[tuple[str, str | None], Rates] = {}
        self._seen: dict[tuple[object, ...], float | None] = {}
        self._pending_write: dict[tuple[object, ...], Decimal] = {}
        # feature -> output tokens -> [requests, sum of stacked rates, sum of plain rates]
        self._outputs: dict[str, dict[int, list[Decimal]]] = {}
        self._cost_by_model: Counter[str] = Counter()
        self._t = _Totals()
        self.requests = 0

    def rates(self, model: str, provider: str | None) -> Rates:
        key = (model, provider)
        rates = self._rates.get(key)
        if rates is None:
            rates = self._rates[key] = self._read_rates(model, provider)
        return rates

    def _read_rates(self, model: str, provider: str | None) -> Rates:
        def per_token(usage: Usage) -> Decimal:
            return (self._prices.cost(model, usage, provider=provider).usd - base) / _PROBE

        zero = self._prices.cost(model, Usage(), provider=provider)
        if not zero.known:
            return Rates(known=False)
        base = zero.usd  # a per-request fee, if the model has one
        rate_in = per_token(Usage(input_tokens=_PROBE))
        read = per_token(Usage(input_tokens=_PROBE, cache_read_tokens=_PROBE))
        listed = read < rate_in
        return Rates(
            known=True,
            input=rate_in,
            cache_read=read if listed else rate_in * DEFAULT_CACHE_READ_RATIO,
            cache_write=per_token(Usage(input_tokens=_PROBE, cache_write_tokens=_PROBE)),
            output=per_token(Usage(output_tokens=_PROBE)),
            cache_read_listed=listed,
        )

    def add(self, r: SavingsInput) -> None:
        self.requests += 1
        rates = self.rates(r.model, r.provider)
        if not rates.known or r.cost <= 0:
            return
        self._cost_by_model[r.model] += 1
        t = self._t
        cost = r.cost

        # 1. prompt caching
        read_saving, history_cached = self._prompt_caching(r, rates)
        left = max(cost - read_saving, _ZERO)
        t.alone[0] += read_saving
        t.stacked[0] += read_saving

        # 2. semantic caching (first turns only: later turns depend on their conversation)
        hit = _ZERO
        if r.duplicate in ("exact", "near") and (r.user_turns or 0) <= 1:
            hit = _ONE if r.duplicate == "exact" else NEAR_DUPLICATE_HIT
            t.exact += r.duplicate == "exact"
            t.near += r.duplicate == "near"
        t.alone[1] += hit * cost
        t.stacked[1] += hit * left
        left -= hit * left

        # 3. model routing
        routed = _ZERO
        if (
            rates.input_mtok > ROUTING_MIN_INPUT_USD_MTOK
            and r.query <= ROUTING_MAX_QUERY_TOKENS
            and r.context <= ROUTING_MAX_CONTEXT_TOKENS
        ):
            routed = ROUTING_SHARE * (_ONE - SMALL_TIER_PRICE)
            t.routed += 1
        t.alone[2] += routed * cost
        t.stacked[2] += routed * left
        keep = (_ONE - hit) * (_ONE - routed)

        # 4. history policy
        removed = _history_removed(r.history, r.user_turns)
        if removed:
            t.trimmed += 1
            t.trimmed_tokens += removed
            history_rate = rates.cache_read if history_cached else rates.input
            t.alone[3] += removed * rates.input
            t.stacked[3] += removed * history_rate * keep

        # 5. output caps: needs the feature's p90, known at the end; keep a histogram
        if r.output_tokens > 0:
            slot = self._outputs.setdefault(r.feature, {}).setdefault(r.output_tokens, [_ZERO, _ZERO, _ZERO])
            slot[0] += 1
            slot[1] += rates.output * keep
            slot[2] += rates.output

    def _prompt_caching(self, r: SavingsInput, rates: Rates) -> tuple[Decimal, bool]:
        """(read saving of this request, whether its history is counted as cached)."""
        t = self._t
        multi_turn = r.user_turns is not None and r.user_turns > 1 and r.history > 0
        prefix = r.system + r.tools + (r.history if multi_turn else 0)
        if prefix < MIN_CACHEABLE_TOKENS:
            return _ZERO, False
        key = r.prefix_key
        seen = key in self._seen
        last = self._seen.get(key)
        within = seen and (r.ts is None or last is None or abs(r.ts - last) <= CACHE_LIFETIME_S)
        if len(self._seen) >= _MAX_PREFIXES:
            for old in list(self._seen)[: _MAX_PREFIXES // 2]:
                del self._seen[old]
                self._pending_write.pop(old, None)
        self._seen[key] = r.ts
        premium = rates.cache_write - rates.input
        if not (within or multi_turn):
            # a write: paid only if the prefix is read again (see the module docstring)
            if r.cache_write_tokens == 0 and r.cached_tokens == 0 and premium > 0:
                self._pending_write[key] = prefix * premium
            return _ZERO, False
        t.cache_writes += self._pending_write.pop(key, _ZERO)
        if multi_turn and premium > 0 and r.cache_write_tokens == 0:
            # the part of the history added since the previous turn was written by that turn
            t.cache_writes += Decimal(r.history // (r.user_turns or 2)) * premium
        newly = max(prefix - r.cached_tokens, 0)
        t.cached_requests += 1
        t.newly_cached_tokens += newly
        t.already_cached_tokens += min(r.cached_tokens, prefix)
        return newly * (rates.input - rates.cache_read), multi_turn

    def _output_caps(self) -> tuple[Decimal, Decimal, list[str]]:
        alone = stacked = _ZERO
        notes: list[str] = []
        for feature in sorted(self._outputs):
            histogram = self._outputs[feature]
            samples = sum(int(slot[0]) for slot in histogram.values())
            if samples < OUTPUT_MIN_SAMPLES:
                continue
            cap = _percentile(histogram, samples)
            capped = 0
            for tokens, (count, keep_rate, rate) in histogram.items():
                if tokens > cap:
                    capped += int(count)
                    alone += (tokens - cap) * rate
                    stacked += (tokens - cap) * keep_rate
            if capped:
                notes.append(f"{feature}: cap {cap:,} tokens ({capped:,} of {samples:,} answers longer)")
        return alone, stacked, notes

    def result(self, monthly_factor: Decimal, ledger: bool = False) -> list[dict[str, object]]:
        """One entry per strategy, in order: `monthly_usd` alone, `stacked_monthly_usd` running total."""
        t = self._t
        alone = list(t.alone)
        stacked = list(t.stacked)
        alone[0] = stacked[0] = max(t.alone[0] - t.cache_writes, _ZERO)
        alone[4], stacked[4], output_notes = self._output_caps()
        assumptions = self._assumptions(output_notes, ledger)
        entries: list[dict[str, object]] = []
        running = _ZERO
        for i, name in enumerate(STRATEGIES):
            running += stacked[i]
            entries.append(
                {
                    "strategy": name,
                    "monthly_usd": _usd(alone[i] * monthly_factor),
                    "stacked_monthly_usd": _usd(running * monthly_factor),
                    "assumptions": assumptions[i],
                }
            )
        return entries

    def _assumptions(self, output_notes: list[str], ledger: bool) -> list[list[str]]:
        t = self._t
        n = max(self.requests, 1)
        ratios = []
        for model, _ in self._cost_by_model.most_common(3):
            rates = next(v for (m, _p), v in self._rates.items() if m == model and v.known)
            share = rates.cache_read / rates.input if rates.input else _ZERO
            ratios.append(f"{model} {share:.0%}" + ("" if rates.cache_read_listed else " (default)"))
        caching = [
            "cacheable prefix: system prompt + tools, plus the history from a conversation's second turn "
            "(the previous turn wrote it)",
            f"minimum cacheable prefix {MIN_CACHEABLE_TOKENS:,} tokens; cache lifetime "
            f"{CACHE_LIFETIME_S / 60:.0f} minutes (every repeat counts when lines carry no timestamp)",
            "prefixes compared with volatile spans (dates, ids) moved out of them"
            if not ledger
            else "ledger input: prompts are not stored, so a feature's requests on one model are "
            "assumed to share their prefix",
            "cache reads at each model's cache-read price"
            + (f" ({', '.join(ratios)} of input)" if ratios else "")
            + f"; {DEFAULT_CACHE_READ_RATIO:.0%} of input where none is listed",
            "cache writes at the model's write price (Anthropic 1.25x input), counted for prefixes "
            f"read again: ${t.cache_writes:.4f} in the log",
            f"{t.cached_requests:,} of {self.requests:,} requests ({t.cached_requests / n:.0%}) read "
            f"{t.newly_cached_tokens:,} prefix tokens from cache; {t.already_cached_tokens:,} tokens "
            "the log shows already cached are not counted again",
        ]
        semantic = (
            ["ledger input: queries are not stored, so semantic caching is not estimated"]
            if ledger
            else [
                "first-turn queries only (later turns depend on their conversation), scoped by feature",
                f"exact duplicates answered from cache in full ({t.exact:,} requests); near duplicates "
                f"at {NEAR_DUPLICATE_HIT:.0%} (precision guard) ({t.near:,} requests)",
                "embedding and lookup costs are not counted",
            ]
        )
        routing = [
            f"eligible: query <= {ROUTING_MAX_QUERY_TOKENS} tokens, retrieved context <= "
            f"{ROUTING_MAX_CONTEXT_TOKENS:,} tokens, on a model above "
            f"${ROUTING_MIN_INPUT_USD_MTOK}/M input tokens ({t.routed:,} requests)",
            f"{ROUTING_SHARE:.0%} of eligible requests go to a small tier at 1/15 of the price",
        ]
        history = [
            f"keep the last {HISTORY_KEEP_TURNS} turns or {HISTORY_KEEP_TOKENS:,} tokens, whichever is "
            f"more; summarise the rest at {SUMMARY_RATIO:.0%} of its length"
            + (" (ledger input: turns unknown, the last 2,000 tokens are kept)" if ledger else ""),
            f"{t.trimmed:,} requests trimmed, {t.trimmed_tokens:,} history tokens removed",
            "the summary's own generation cost is not counted",
        ]
        caps = [
            f"answers longer than the feature's p{OUTPUT_PERCENTILE * 100:.0f} output length are cut to it "
            f"(features with at least {OUTPUT_MIN_SAMPLES} answers of known length)",
            *(output_notes or ["no feature has answers above its p90 cap"]),
        ]
        return [caching, semantic, routing, history, caps]


def _history_removed(history: int, user_turns: int | None) -> int:
    """History tokens a window + summary policy takes out of this request."""
    if history <= HISTORY_KEEP_TOKENS:
        return 0
    if user_turns is None:
        kept = HISTORY_KEEP_TOKENS
    else:
        per_turn = history / max(user_turns - 1, 1)
        kept = max(HISTORY_KEEP_TOKENS, math.ceil(HISTORY_KEEP_TURNS * per_turn))
    excess = history - kept
    if excess <= 0:
        return 0
    return excess - math.ceil(excess * SUMMARY_RATIO)


def _percentile(histogram: dict[int, list[Decimal]], samples: int) -> int:
    """Nearest-rank percentile of a histogram {value: [count, ...]}."""
    rank = math.ceil(OUTPUT_PERCENTILE * samples)
    seen = 0
    for tokens in sorted(histogram):
        seen += int(histogram[tokens][0])
        if seen >= rank:
            return tokens
    return max(histogram)


def _usd(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.000001")))
