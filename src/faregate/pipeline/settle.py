"""Settle every call: usage → price → cost event → ledger, failures included.

This is the outermost stage so that nothing a later stage raises escapes unrecorded; a stream is
settled when it ends, from the usage its tap collected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from faregate import tokens
from faregate.anatomy import Anatomy
from faregate.call import Call, Result, Route, Usage
from faregate.errors import FareGateError
from faregate.ledger import CostEvent, LedgerWriter, usd_to_nanos
from faregate.pipeline.base import Next
from faregate.pricing import PriceBook
from faregate.protocols import BY_NAME
from faregate.providers import Provider

log = logging.getLogger("faregate.settle")
COST_HEADER = "x-faregate-cost-usd"
PRICE_KNOWN_HEADER = "x-faregate-price-known"
_ZERO = Decimal(0)
_CUT_BY_LIMIT = frozenset({"length", "max_tokens"})  # OpenAI finish_reason, Anthropic stop_reason


class Settle:
    def __init__(
        self,
        prices: PriceBook,
        writer: LedgerWriter,
        providers: dict[str, Provider],
        *,
        store_prompts: bool = False,
    ) -> None:
        self.prices = prices
        self.writer = writer
        self.providers = providers
        self.store_prompts = store_prompts  # privacy.store_prompts: prompt and response text in the ledger
        # Called with every settled call and its event, after it is queued for the ledger (metrics,
        # alerts); an observer that raises is logged and does not stop the others.
        self.observers: list[Callable[[Call, Result, CostEvent], None]] = []

    async def __call__(self, call: Call, next: Next) -> Result:
        try:
            result = await next(call)
        except FareGateError as exc:
            result = error_result(call, exc)
        except Exception:
            log.exception("unexpected error in the pipeline", extra={"request_id": call.request_id})
            result = error_result(call, FareGateError("FareGate failed to handle the request"))
        if result.stream is None:
            if call.anatomy is not None and not call.anatomy.done():
                await asyncio.wait([call.anatomy])
            self.finish(call, result)
        else:
            result.on_complete.append(partial(self._finish_when_measured, call))
        return result

    def _finish_when_measured(self, call: Call, result: Result) -> None:
        """Stream ends are settled from a callback; wait for the anatomy without blocking it."""
        pending = call.anatomy
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _: self.finish(call, result))
        else:
            self.finish(call, result)

    def reject(self, call: Call, error: FareGateError) -> Result:
        """A request refused before the pipeline (unreadable body): recorded all the same."""
        result = error_result(call, error)
        self.finish(call, result)
        return result

    def finish(self, call: Call, result: Result) -> None:
        usage, price_known, cost, saving = self._price(call, result)
        if result.stream is None:
            if price_known:
                result.headers[COST_HEADER] = f"{cost:.9f}"
            else:  # an unknown price is flagged, never shown as $0
                result.headers[PRICE_KNOWN_HEADER] = "false"
        route = call.route
        attribution = call.attribution
        nanos = usd_to_nanos(cost)
        saving_nanos = usd_to_nanos(saving)
        prefix = call.prefix
        # The baseline is the request as the client sent it: caching FareGate made possible (its
        # breakpoints, its repair) is FareGate's saving; caching the client set up itself is not.
        shaped = prefix is not None and prefix.enabled_caching
        routing_nanos, history_nanos = self._routing_and_history_savings(call, usage, cost, price_known)
        baseline = nanos + (saving_nanos if shaped else 0) + routing_nanos + history_nanos
        cache = call.cache
        if cache is not None and cache.answer_usage is not None:
            # A cache hit: the provider was not called; without FareGate it would have been
            baseline = usd_to_nanos(self._answer_cost(call, cache.answer_model, cache.answer_usage))
        event = CostEvent(
            request_id=call.request_id,
            ts=call.received_at,
            feature=attribution.feature,
            team=attribution.team,
            template=attribution.template,
            cohort=attribution.cohort,
            user=attribution.user,
            conversation=attribution.conversation,
            task=attribution.task,
            protocol=call.protocol,
            provider=route.provider if route else None,
            model_requested=call.model_requested or None,
            model_used=result.model_used or (route.model if route else None),
            stream=call.stream,
            status=result.status,
            error_kind=result.error_kind,
            input_tokens=usage.input_tokens,
            cached_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            usage_estimated=usage.estimated,
            price_known=price_known,
            cost_nusd=nanos,
            baseline_cost_nusd=baseline,
            latency_ms=(time.perf_counter() - call.started) * 1000,
            upstream_ms=result.upstream_ms,
            prompt_cache_saving_nusd=saving_nanos,
            routing_saving_nusd=routing_nanos,
            history_saving_nusd=history_nanos,
            key_id=call.key_id,
            upstream_retries=result.retries,
            upstream_fallbacks=result.fallbacks,
            partial=result.partial or None,
        )
        if self.store_prompts:
            event.prompt_text = call.raw_body.decode("utf-8", "replace").replace("\x00", "")
            event.response_text = "".join(result.output_text).replace("\x00", "") or None
        if cache is not None:
            event.cache_status = cache.status
            event.cache_similarity = cache.similarity
            event.cache_verified = cache.verified
            if cache.answer_model is not None:
                event.model_used = cache.answer_model
        if prefix is not None:
            event.prefix_hash = prefix.prefix_hash
            event.prefix_findings = prefix.findings
            event.prompt_cache_actions = prefix.actions
        history = call.history
        if history is not None:
            event.history_policy = history.policy
            event.history_tokens_before = history.tokens_before
            event.history_tokens_after = history.tokens_after
            event.history_note = history.note
        routing = call.routing
        if routing is not None:
            event.tier = routing.tier
            event.route_confidence = routing.confidence
            event.route_fallback = routing.fallback
            event.route_shadow_of = routing.shadow_of
            event.route_agreed = routing.agreed
        if call.output_cap is not None:
            event.output_cap = call.output_cap
            event.output_capped = result.status < 400 and result.stop_reason in _CUT_BY_LIMIT
        anatomy = _measured(call)
        if anatomy is not None:
            if result.usage is not None and usage.input_tokens:
                anatomy = anatomy.scaled_to(usage.input_tokens)  # the provider's count is the bill
            _record_anatomy(event, anatomy)
        self.writer.submit(event)
        for observe in (*call.on_settled, *self.observers):
            try:
                observe(call, result, event)
            except Exception:
                log.exception("settle observer failed", extra={"request_id": call.request_id})

    def _price(self, call: Call, result: Result) -> tuple[Usage, bool, Decimal, Decimal]:
        """(usage, price known, cost, prompt-cache saving) of the call."""
        route = call.route
        if route is None:
            return result.usage or Usage(), True, _ZERO, _ZERO
        usage = result.usage
        if usage is None:
            if result.status >= 400:
                return Usage(), True, _ZERO, _ZERO
            output = "".join(result.output_text)
            usage = tokens.estimate_usage(call.protocol, route.model, call.body, output)
        provider = self.providers[route.provider]
        at = datetime.fromtimestamp(call.received_at, UTC)
        model = result.model_used or route.model
        try:
            price = self.prices.cost(model, usage, provider=provider.pricing_id, at=at)
        except ValueError as exc:  # inconsistent usage from upstream: record it unpriced, loudly
            log.error(
                "cannot price usage", extra={"request_id": call.request_id, "model": model, "error": str(exc)}
            )
            return usage, False, _ZERO, _ZERO
        if not price.known:
            return usage, False, _ZERO, _ZERO
        saving = self.prices.prompt_cache_saving(model, usage, price.usd, provider=provider.pricing_id, at=at)
        return usage, True, price.usd, saving

    def _routing_and_history_savings(
        self, call: Call, usage: Usage, cost: Decimal, price_known: bool
    ) -> tuple[int, int]:
        """Nano-dollars routing and the history policy saved, against sending the client's request
        to the model it would have reached unrouted: the same usage at the frontier's price, and the
        history tokens the policy removed at that model's plain input price."""
        route = call.route
        if route is None or not price_known or (call.routing is None and call.history is None):
            return 0, 0
        at = datetime.fromtimestamp(call.received_at, UTC)
        routing = call.routing
        baseline_route = route
        routing_saving = _ZERO
        if routing is not None and routing.frontier is not None and routing.shadow_of is None:
            baseline_route = routing.frontier
            frontier = self._cost_at(baseline_route, usage, at)
            routing_saving = frontier - cost if frontier is not None else _ZERO
        history_saving = _ZERO
        history = call.history
        if (
            history is not None
            and history.policy != "summarize"
            and history.tokens_before > history.tokens_after
        ):
            removed = Usage(input_tokens=history.tokens_before - history.tokens_after)
            history_saving = self._cost_at(baseline_route, removed, at) or _ZERO
        return usd_to_nanos(routing_saving), usd_to_nanos(history_saving)

    def _cost_at(self, route: Route, usage: Usage, at: datetime) -> Decimal | None:
        provider = self.providers.get(route.provider)
        try:
            price = self.prices.cost(
                route.model, usage, provider=provider.pricing_id if provider else None, at=at
            )
        except ValueError:
            return None
        return price.usd if price.known else None

    def _answer_cost(self, call: Call, model: str | None, usage: Usage) -> Decimal:
        """What the cached answer would cost if the provider produced it again now."""
        route = call.route
        if route is None or model is None:
            return _ZERO
        provider = self.providers[route.provider]
        at = datetime.fromtimestamp(call.received_at, UTC)
        try:
            return self.prices.cost(model, usage, provider=provider.pricing_id, at=at).usd
        except ValueError:
            return _ZERO


def _measured(call: Call) -> Anatomy | None:
    pending = call.anatomy
    if pending is None or not pending.done() or pending.cancelled():
        return None
    return pending.result()


def _record_anatomy(event: CostEvent, anatomy: Anatomy) -> None:
    event.system_tokens = anatomy.system
    event.tools_tokens = anatomy.tools
    event.history_tokens = anatomy.history
    event.context_tokens = anatomy.context
    event.query_tokens = anatomy.query
    event.overhead_tokens = anatomy.overhead


def error_result(call: Call, error: FareGateError) -> Result:
    return Result(
        status=error.status,
        headers={"content-type": "application/json"},
        body=BY_NAME[call.protocol].render_error(error),
        error_kind=error.kind,
    )
