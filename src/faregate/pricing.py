"""Cost of a call from its normalised `Usage`: the one place where tokens become dollars.

Prices come from the genai-prices package's *bundled* snapshot, read in-process: nothing here
touches the network (genai-prices only fetches when someone starts its `UpdatePrices` helper, which
FareGate never does). Operators can override any model's price by name.

Why not call `genai_prices.calc_price` per request: it costs ~50-65 µs a call (usage validation,
unit-registry walks, price-key validation), and this runs on every request. `PriceBook` resolves
each (provider, model) once, compiles its `ModelPrice` into a small rate plan, and then prices a
call in a few µs. The plan follows genai-prices' own rules, and a test checks it against
`calc_price` for every model in the snapshot:

- every unit is priced at its own rate when the model prices it, otherwise at its parent's rate
  (cache reads and writes at the input rate, 1-hour writes at the 5-minute write rate, reasoning at
  the output rate), so no token is charged twice or dropped;
- tiered prices use the tier reached by the *total* input tokens, the whole call at that rate;
- prices that change over time (a `ConditionalPrice` list) are resolved for the request time `at`;
- a per-request fee (`requests_kcount`) is charged once per call.

Simplifications, all matching what `calc_price` does when given only token counts and no
`price_context`: request-context variants (OpenAI `service_tier` flex/priority, batch discounts) are
not applied, and non-token units (audio seconds, images, web searches) are not reported by
`Usage`, so they cost nothing here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices

from faregate.call import Usage
from faregate.config import PriceSettings

__all__ = ["Price", "PriceBook", "PriceOverride", "overrides_from_config", "to_genai_usage"]

logger = logging.getLogger(__name__)

_MTOK = Decimal(1_000_000)
_KCOUNT = Decimal(1_000)
_ZERO = Decimal(0)
# Model names come from clients and upstreams; bound the memo so junk names cannot grow it forever.
_MAX_ENTRIES = 8192


@dataclass(frozen=True)
class PriceOverride:
    """An operator's price for a model, in USD per million tokens; it wins over genai-prices.

    Missing cache prices fall back to the price the provider would otherwise charge for the same
    tokens under genai-prices' rules: a cache read or a cache write costs the input price, and a
    1-hour cache write costs the (5-minute) cache write price, or the input price if that is missing
    too. Reasoning tokens are output tokens and cost the output price.
    """

    input_mtok: Decimal
    output_mtok: Decimal
    cache_read_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None
    cache_write_1h_mtok: Decimal | None = None

    def __post_init__(self) -> None:
        # Config files hand us floats and strings; money must be exact, so convert via str().
        for name in (
            "input_mtok",
            "output_mtok",
            "cache_read_mtok",
            "cache_write_mtok",
            "cache_write_1h_mtok",
        ):
            value: object = getattr(self, name)
            if value is None:
                continue
            price = value if isinstance(value, Decimal) else Decimal(str(value))
            if not price.is_finite() or price < 0:
                raise ValueError(f"PriceOverride.{name} must be a finite, non-negative price, got {value!r}")
            object.__setattr__(self, name, price)


@dataclass(frozen=True, slots=True)
class Price:
    """A call's cost. `known=False` means no price was found: `usd` is 0 but must not be read as free."""

    usd: Decimal
    known: bool


# A tiered price: the base rate, then (threshold, rate) from the highest threshold down.
_Tiered = tuple[Decimal, tuple[tuple[int, Decimal], ...]]
_Rate = Decimal | _Tiered


@dataclass(frozen=True, slots=True)
class _Plan:
    """A model's rates for the units `Usage` reports; None means "charged at the parent's rate"."""

    input: _Rate | None
    cache_read: _Rate | None
    cache_write: _Rate | None
    cache_write_1h: _Rate | None
    output: _Rate | None
    reasoning: _Rate | None
    per_kilo_request: _Rate | None


class _Timed:
    """A model whose price changes over time: its plan is chosen for each request's timestamp."""

    __slots__ = ("info", "plans")

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        # keyed by id() of the snapshot's ModelPrice; the value keeps that object alive
        self.plans: dict[int, tuple[ModelPrice, _Plan | None]] = {}

    def plan_at(self, at: datetime | None) -> _Plan | None:
        model_price = self.info.get_prices(at or datetime.now(tz=UTC))
        hit = self.plans.get(id(model_price))
        if hit is None:
            hit = self.plans[id(model_price)] = (model_price, _compile(model_price))
        return hit[1]


_Entry = _Plan | _Timed | None


class PriceBook:
    """Prices calls; overrides (keyed by the exact model name) win over genai-prices.

    `provider` is a genai-prices provider id ("openai", "anthropic") or None to let genai-prices
    find the provider from the model name (OpenAI-compatible upstreams). A hint genai-prices does
    not know is treated as None. A model with no price costs `Price(0, known=False)` and is logged
    once per model name, so a missing price is visible without flooding the log.

    The price snapshot is read at construction; `cost()` raises `ValueError` for inconsistent usage
    (a part larger than its whole, e.g. cached tokens above input tokens), which is an adapter bug.
    """

    def __init__(self, overrides: Mapping[str, PriceOverride] | None = None) -> None:
        self._overrides: dict[str, _Plan] = {name: _from_override(o) for name, o in (overrides or {}).items()}
        self._snapshot = data_snapshot.get_snapshot()
        self._entries: dict[tuple[str | None, str], _Entry] = {}
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()

    def cost(
        self, model: str, usage: Usage, *, provider: str | None = None, at: datetime | None = None
    ) -> Price:
        _check(usage)
        plan = self._overrides.get(model)
        if plan is None:
            key = (provider, model)
            try:
                entry = self._entries[key]
            except KeyError:
                entry = self._resolve(model, provider)
                if len(self._entries) >= _MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key] = entry
            plan = entry.plan_at(at) if isinstance(entry, _Timed) else entry
            if plan is None:
                self._warn_unknown(model, provider)
                return Price(_ZERO, known=False)
        return Price(_charge(plan, usage), known=True)

    def prompt_cache_saving(
        self,
        model: str,
        usage: Usage,
        actual: Decimal,
        *,
        provider: str | None = None,
        at: datetime | None = None,
    ) -> Decimal:
        """What provider prompt caching saved on this call: the cost with every input token billed at
        the plain input price, minus `actual`. Negative when a cache write cost more than the reads saved
        (a write is billed at 1.25x or 2x the input price); 0 when no cache token was reported."""
        if not usage.cache_read_tokens and not usage.cache_write_tokens:
            return _ZERO
        uncached = Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
        )
        baseline = self.cost(model, uncached, provider=provider, at=at)
        return baseline.usd - actual if baseline.known else _ZERO

    def _resolve(self, model: str, provider: str | None) -> _Entry:
        if (
            provider is not None
            and data_snapshot.find_provider_by_id(self._snapshot.providers, provider) is None
        ):
            provider = None
        try:
            _, info = self._snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            return None
        if isinstance(info.prices, ModelPrice):
            return _compile(info.prices)
        return _Timed(info)

    def _warn_unknown(self, model: str, provider: str | None) -> None:
        if model in self._warned:
            return
        with self._warn_lock:
            if model in self._warned:
                return
            if len(self._warned) >= _MAX_ENTRIES:
                self._warned.clear()
            self._warned.add(model)
        logger.warning(
            "no price for model %r (provider %s); its cost is recorded as unknown. "
            "Add a price override for it in the config.",
            model,
            provider or "unspecified",
        )


def to_genai_usage(usage: Usage) -> genai_prices.Usage:
    """The same usage in genai-prices' keys, for `genai_prices.calc_price` (tests, offline checks).

    Only non-zero keys are passed: genai-prices rejects a 1-hour cache write without its total,
    and reasoning is `output_reasoning_tokens`, a part of `output_tokens`.
    """
    values = {
        "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cache_write_1h_tokens": usage.cache_write_1h_tokens,
        "output_tokens": usage.output_tokens,
        "output_reasoning_tokens": usage.reasoning_tokens,
    }
    return genai_prices.Usage(**{key: value for key, value in values.items() if value})


def _check(usage: Usage) -> None:
    u = usage
    counts = (
        u.input_tokens,
        u.cache_read_tokens,
        u.cache_write_tokens,
        u.cache_write_1h_tokens,
        u.output_tokens,
    )
    if min(*counts, u.reasoning_tokens) < 0:
        raise ValueError(f"negative token count in {u!r}")
    if u.cache_read_tokens + u.cache_write_tokens > u.input_tokens:
        raise ValueError(f"cache reads and writes exceed input_tokens (the total prompt) in {u!r}")
    if u.cache_write_1h_tokens > u.cache_write_tokens:
        raise ValueError(f"cache_write_1h_tokens exceed cache_write_tokens (their total) in {u!r}")
    if u.reasoning_tokens > u.output_tokens:
        raise ValueError(f"reasoning_tokens exceed output_tokens (their total) in {u!r}")


def _rate(rate: _Rate, total_input: int) -> Decimal:
    if isinstance(rate, Decimal):
        return rate
    base, tiers = rate
    for start, price in tiers:
        if total_input > start:
            return price
    return base


def _charge(plan: _Plan, u: Usage) -> Decimal:
    """USD for `u`: each token at the most specific rate the plan has for it, mirroring genai-prices."""
    total_input = u.input_tokens
    micro = _ZERO  # USD x 1e6, divided once at the end (exact: dividing by 10**6 never rounds here)
    input_leaf = u.input_tokens
    if plan.cache_read is not None:
        input_leaf -= u.cache_read_tokens
        micro += _rate(plan.cache_read, total_input) * u.cache_read_tokens
    if plan.cache_write is not None:
        input_leaf -= u.cache_write_tokens
        write_leaf = u.cache_write_tokens
        if plan.cache_write_1h is not None:
            write_leaf -= u.cache_write_1h_tokens
            micro += _rate(plan.cache_write_1h, total_input) * u.cache_write_1h_tokens
        micro += _rate(plan.cache_write, total_input) * write_leaf
    if plan.input is not None:
        micro += _rate(plan.input, total_input) * input_leaf
    output_leaf = u.output_tokens
    if plan.reasoning is not None:
        output_leaf -= u.reasoning_tokens
        micro += _rate(plan.reasoning, total_input) * u.reasoning_tokens
    if plan.output is not None:
        micro += _rate(plan.output, total_input) * output_leaf
    usd = micro / _MTOK
    if plan.per_kilo_request is not None:
        usd += _rate(plan.per_kilo_request, total_input) / _KCOUNT
    return usd


def _as_rate(value: object) -> _Rate | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, TieredPrices):
        tiers = sorted(((t.start, t.price) for t in value.tiers), reverse=True)
        return (value.base, tuple(tiers))
    return None


def _compile(model_price: ModelPrice) -> _Plan | None:
    """The rate plan for a genai-prices `ModelPrice`, or None when it prices neither input nor output
    tokens. Such entries are audio/OCR-only models, placeholders, and a few free tiers; pricing their
    tokens at $0 would look like a real price, so they are unknown (an override of 0 marks a free model).
    """
    prices = model_price.__dict__
    plan = _Plan(
        input=_as_rate(prices.get("input_mtok")),
        cache_read=_as_rate(prices.get("cache_read_mtok")),
        cache_write=_as_rate(prices.get("cache_write_mtok")),
        cache_write_1h=_as_rate(prices.get("cache_write_1h_mtok")),
        output=_as_rate(prices.get("output_mtok")),
        reasoning=_as_rate(prices.get("output_reasoning_mtok")),
        per_kilo_request=_as_rate(prices.get("requests_kcount")),
    )
    if plan.input is None and plan.output is None:
        return None
    return plan


def _from_override(o: PriceOverride) -> _Plan:
    write_1h = o.cache_write_1h_mtok
    if write_1h is not None and o.cache_write_mtok is None:
        # genai-prices' rule (a 1h write is a kind of cache write) needs the parent rate present;
        # the documented fallback for the 5-minute part is the input price.
        return _Plan(o.input_mtok, o.cache_read_mtok, o.input_mtok, write_1h, o.output_mtok, None, None)
    return _Plan(o.input_mtok, o.cache_read_mtok, o.cache_write_mtok, write_1h, o.output_mtok, None, None)


def overrides_from_config(prices: Mapping[str, PriceSettings]) -> dict[str, PriceOverride]:
    """The config's `prices:` section as overrides; the gateway and the analyzer both price this way."""
    return {model: PriceOverride(**price.model_dump()) for model, price in prices.items()}
