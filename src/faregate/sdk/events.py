"""From what the application saw of one call (`Observed`) to the ledger's `CostEvent`.

The application thread only takes a snapshot of the call; pricing and anatomy (tokenizing the prompt)
run on the recorder's thread, so tracking adds microseconds to a call, not milliseconds. The rules are
the gateway's (`faregate.pipeline.settle`): the provider's usage is the bill, an unknown price is
flagged rather than recorded as $0, and the anatomy is scaled to the input tokens the provider reported.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from faregate import tokens
from faregate.anatomy import Anatomy, dissect
from faregate.call import Attribution, Protocol, Usage
from faregate.ledger import CostEvent, usd_to_nanos
from faregate.sdk.settings import Settings, resolve_provider

log = logging.getLogger("faregate.sdk")
_ZERO = Decimal(0)


def new_request_id() -> str:
    """Time-ordered and unique, as the gateway's ids are: the ledger's key is inserted in order."""
    return f"{time.time_ns():016x}{random.getrandbits(64):016x}"


@dataclass(slots=True)
class Observed:
    """One call as the application saw it; plain values only, safe to hand to another thread."""

    protocol: Protocol
    attribution: Attribution
    model_requested: str | None
    stream: bool = False
    body: Mapping[str, Any] | None = None  # the request as sent, for the anatomy (None: not known)
    base_url: str | None = None  # the client's, to name the provider
    provider: str | None = None  # a name the application gave, which wins over the base URL
    request_id: str = field(default_factory=new_request_id)
    ts: float = field(default_factory=time.time)
    status: int = 200
    error_kind: str | None = None
    model_used: str | None = None
    usage: Usage | None = None  # as the provider reported it; None: not reported
    output_text: str = ""  # what was generated, to estimate usage the provider did not report
    latency_ms: float = 0.0
    cost_usd: Decimal | None = None  # given by hand: recorded as is instead of priced


def to_event(seen: Observed, settings: Settings) -> CostEvent:
    provider, pricing_id = resolve_provider(settings, seen.base_url, seen.provider)
    model = seen.model_used or seen.model_requested
    usage = _usage(seen, model)
    price_known, cost, saving = _price(seen, settings, model, usage, pricing_id)
    nanos = usd_to_nanos(cost)
    event = CostEvent(
        request_id=seen.request_id,
        ts=seen.ts,
        feature=seen.attribution.feature,
        team=seen.attribution.team,
        template=seen.attribution.template,
        cohort=seen.attribution.cohort,
        user=seen.attribution.user,
        conversation=seen.attribution.conversation,
        task=seen.attribution.task,
        protocol=seen.protocol,
        provider=provider,
        model_requested=seen.model_requested,
        model_used=model,
        stream=seen.stream,
        status=seen.status,
        error_kind=seen.error_kind,
        input_tokens=usage.input_tokens,
        cached_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        usage_estimated=usage.estimated,
        price_known=price_known,
        cost_nusd=nanos,
        baseline_cost_nusd=nanos,  # no FareGate optimisation ran: the call is its own baseline
        latency_ms=seen.latency_ms,
        upstream_ms=seen.latency_ms,  # without a gateway the whole call is the provider's time
        prompt_cache_saving_nusd=usd_to_nanos(saving),
    )
    anatomy = _anatomy(seen, settings, seen.model_requested or model)
    if anatomy is not None:
        if seen.usage is not None and usage.input_tokens:
            anatomy = anatomy.scaled_to(usage.input_tokens)  # the provider's count is the bill
        event.system_tokens = anatomy.system
        event.tools_tokens = anatomy.tools
        event.history_tokens = anatomy.history
        event.context_tokens = anatomy.context
        event.query_tokens = anatomy.query
        event.overhead_tokens = anatomy.overhead
    return event


def _usage(seen: Observed, model: str | None) -> Usage:
    if seen.usage is not None:
        return seen.usage
    if seen.status >= 400 or seen.body is None or not model:
        return Usage()
    try:
        return tokens.estimate_usage(seen.protocol, model, seen.body, seen.output_text)
    except Exception:
        log.exception("cannot estimate usage", extra={"request_id": seen.request_id})
        return Usage()


def _price(
    seen: Observed, settings: Settings, model: str | None, usage: Usage, pricing_id: str | None
) -> tuple[bool, Decimal, Decimal]:
    """(price known, cost, prompt-cache saving)."""
    if seen.cost_usd is not None:
        return True, seen.cost_usd, _ZERO
    if seen.usage is None and seen.status >= 400:
        return True, _ZERO, _ZERO  # a refused call: nothing was used
    if not model:
        return usage == Usage(), _ZERO, _ZERO
    at = datetime.fromtimestamp(seen.ts, UTC)
    try:
        price = settings.prices.cost(model, usage, provider=pricing_id, at=at)
        if not price.known:
            return False, _ZERO, _ZERO
        saving = settings.prices.prompt_cache_saving(model, usage, price.usd, provider=pricing_id, at=at)
    except ValueError as exc:  # inconsistent usage (cached above input): recorded unpriced, loudly
        extra = {"request_id": seen.request_id, "model": model, "error": str(exc)}
        log.error("cannot price usage", extra=extra)
        return False, _ZERO, _ZERO
    return True, price.usd, saving


def _anatomy(seen: Observed, settings: Settings, model: str | None) -> Anatomy | None:
    if seen.body is None or not model:
        return None
    patterns = settings.patterns.get(seen.attribution.feature, ())
    try:
        return dissect(seen.protocol, model, seen.body, patterns).anatomy
    except Exception:  # a measurement must never cost the event
        log.exception("anatomy failed", extra={"request_id": seen.request_id})
        return None
