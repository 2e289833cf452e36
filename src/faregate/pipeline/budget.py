"""The `budget` stage: hold a request's estimated cost before the call, settle the actual cost after.

A call falls under every configured budget of its team, its feature and its key id (the FareGate
virtual key's id when the client used one, else `faregate.budgets.key_id` of its credential), and
under its virtual key's own budget (`faregate keys create --budget`). Before it goes
on, its worst-case cost is reserved atomically in all of them (`faregate.budgets.store`); when one
cannot hold it, the call is answered 429 in the client's error format, naming the budget. Once
settle knows the real cost, the reservation is replaced by it (above the estimate too) and the
budget alert thresholds are checked.

The estimate is the prompt's tokens at the route model's input price plus the request's output
limit (`max_tokens` / `max_completion_tokens`, else `default_output_tokens`) at its output price:
an upper bound for one answer, so a budget is not overrun by requests in flight. An unknown price
reserves 0 (the request still needs an unexhausted budget), and its cost counts once known.

Runs right after `Resolve` (the price needs the route's model), before the caches: a refused call
costs nothing. Database work and token counting run in `executor`, off the event loop. When the
budget database cannot be reached the call fails (500) rather than spend without a check.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from faregate import tokens
from faregate.alerts import Alerter, format_usd
from faregate.budgets.store import (
    BudgetStore,
    PeriodUsage,
    Refusal,
    Reservation,
    budget_id,
    budget_label,
    key_id,
    period_bounds,
)
from faregate.call import Call, Result, Usage
from faregate.config import BudgetSettings
from faregate.errors import FareGateError, RateLimited
from faregate.ledger.events import CostEvent, nanos_to_usd, usd_to_nanos
from faregate.pipeline.base import Next
from faregate.pipeline.settle import error_result
from faregate.pricing import PriceBook
from faregate.providers import Provider

log = logging.getLogger("faregate.budget")
DEFAULT_OUTPUT_TOKENS = 4096
_OPENAI_LIMITS = ("max_completion_tokens", "max_tokens")


class BudgetExceeded(RateLimited):
    """429 like any rate limit, with its own kind so the ledger tells budget refusals apart."""

    kind = "budget_exceeded"


class _Hold:
    """A call's reservation, settled or released exactly once, whichever path gets there first."""

    __slots__ = ("done", "reservation")

    def __init__(self, reservation: Reservation) -> None:
        self.reservation = reservation
        self.done = False

    def take(self) -> bool:
        taken, self.done = not self.done, True
        return taken


class BudgetStage:
    def __init__(
        self,
        budgets: Sequence[BudgetSettings],
        store: BudgetStore,
        prices: PriceBook,
        providers: dict[str, Provider],
        executor: Executor,
        *,
        alerter: Alerter | None = None,
        default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
        reclaim_every_s: float = 60.0,
    ) -> None:
        self.store = store
        self.prices = prices
        self.providers = providers
        self.executor = executor
        self.alerter = alerter
        self.default_output_tokens = default_output_tokens
        self.reclaim_every_s = reclaim_every_s
        self.settings = {budget_id(b): b for b in budgets}
        self._targets: dict[tuple[str, str], list[str]] = {}
        for budget in budgets:
            self._targets.setdefault((budget.scope, budget.name), []).append(budget_id(budget))
        self._keyed = any(b.scope == "key" for b in budgets)
        # A virtual key's own budget by key id (set by the gateway when auth.virtual_keys is on).
        self.key_budgets: Callable[[str], BudgetSettings | None] | None = None
        self._thresholds = sorted(alerter.settings.budget_thresholds) if alerter else []
        self._pending: set[asyncio.Future[Any]] = set()
        self._reclaimer: asyncio.Task[None] | None = None

    async def __call__(self, call: Call, next: Next) -> Result:
        ids = self.budgets_of(call)
        if not ids:
            return await next(call)
        loop = asyncio.get_running_loop()
        reserving = loop.run_in_executor(self.executor, self._reserve, call, ids)
        try:
            outcome = await asyncio.shield(reserving)
        except asyncio.CancelledError:  # the client left: release what the thread may still reserve
            reserving.add_done_callback(self._release_orphan)
            raise
        except Exception as exc:  # fail closed: a budget that cannot be checked is not spent blindly
            log.exception("budget reservation failed", extra={"request_id": call.request_id})
            raise FareGateError("FareGate could not check this request's budget; try again shortly") from exc
        if isinstance(outcome, Refusal):
            return self._refuse(call, outcome)
        hold = _Hold(outcome)
        call.on_settled.append(partial(self._settled, hold))
        try:
            return await next(call)
        except BaseException:  # settle's hook may never run (cancellation): give the budget back now
            if hold.take():
                self._in_background(self.store.release, hold.reservation)
            raise

    def budgets_of(self, call: Call) -> list[str]:
        """The ids of the budgets this call counts against: its team's, its feature's, its key's."""
        attribution = call.attribution
        ids = [
            *self._targets.get(("team", attribution.team), ()),
            *self._targets.get(("feature", attribution.feature), ()),
        ]
        if call.key_id is not None:  # a verified FareGate virtual key
            ids.extend(self._targets.get(("key", call.key_id), ()))
            own = self.key_budgets(call.key_id) if self.key_budgets is not None else None
            if own is not None and (own_id := self._register(own)) not in ids:
                ids.append(own_id)
        elif self._keyed and (credential := client_credential(call.headers)) is not None:
            ids.extend(self._targets.get(("key", key_id(credential)), ()))
        return ids

    def _register(self, budget: BudgetSettings) -> str:
        """Make a key's own budget known to the stage and the store (its id is `key:<key id>:<period>`).

        A configured budget of the same id wins: the config is the operator's last word. Each replica
        registers the key when it first sees it; the reservations themselves live in the shared rows.
        """
        bid = budget_id(budget)
        if bid not in self.settings:
            self.settings[bid] = budget
            # A new dict, not an insert: a store thread may be iterating the old one (`usage`).
            self.store.budgets = {**self.store.budgets, bid: budget}
        return bid

    def estimate_nusd(self, call: Call) -> int:
        """Worst-case cost of the call on its route's model; 0 when the price is unknown."""
        route = call.route
        if route is None:
            return 0
        count = (
            tokens.count_messages_anthropic if call.protocol == "anthropic" else tokens.count_messages_openai
        )
        usage = Usage(
            input_tokens=count(route.model, call.body),
            output_tokens=output_limit(call.protocol, call.body, self.default_output_tokens),
        )
        at = datetime.fromtimestamp(call.received_at, UTC)
        try:
            price = self.prices.cost(
                route.model, usage, provider=self.providers[route.provider].pricing_id, at=at
            )
        except (KeyError, ValueError):
            return 0
        return usd_to_nanos(price.usd) if price.known else 0

    def _reserve(self, call: Call, ids: Sequence[str]) -> Reservation | Refusal:
        return self.store.reserve(ids, self.estimate_nusd(call), call.received_at)

    def _refuse(self, call: Call, refusal: Refusal) -> Result:
        budget = self.settings[refusal.budget]
        result = error_result(call, BudgetExceeded(refusal_message(budget, refusal)))
        if refusal.exhausted:  # only the next period helps: say when, and tell SDKs not to retry
            end = period_bounds(budget.period, call.received_at)[1].timestamp()
            result.headers["retry-after"] = str(max(1, math.ceil(end - time.time())))
            result.headers["x-should-retry"] = "false"
        return result

    def _settled(self, hold: _Hold, call: Call, result: Result, event: CostEvent) -> None:
        if hold.take():
            self._in_background(self.store.settle, hold.reservation, event.cost_nusd)

    def _in_background(self, operation: Any, *args: Any) -> None:
        """Run a store call off the loop and off the response path; `stop` waits for it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the loop (never expected): update here, without alerts
            operation(*args)
            return
        task = loop.create_task(self._run(operation, *args))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _run(self, operation: Any, *args: Any) -> None:
        try:
            rows = await asyncio.get_running_loop().run_in_executor(self.executor, operation, *args)
        except Exception:  # the reservation expires and is reclaimed; the cost is still in the ledger
            log.exception("budget store update failed")
            return
        await self._alert(rows)

    def _release_orphan(self, reserving: asyncio.Future[Reservation | Refusal]) -> None:
        if not reserving.cancelled() and reserving.exception() is None:
            outcome = reserving.result()
            if isinstance(outcome, Reservation):
                self._in_background(self.store.release, outcome)

    async def _alert(self, rows: Iterable[PeriodUsage] | None) -> None:
        """Send each threshold a settle crossed, once a period: the store arbitrates between replicas."""
        if self.alerter is None or not rows:
            return
        loop = asyncio.get_running_loop()
        for row in rows:
            crossed = [t for t in self._thresholds if row.alerted_share < t <= row.share]
            if not crossed:
                continue
            claim = partial(self.store.claim_alert, row.budget, row.period_start, crossed[-1])
            previous = await loop.run_in_executor(self.executor, claim)
            budget = self.settings.get(row.budget)
            if previous is None or budget is None:
                continue
            for threshold in (t for t in crossed if t > previous):
                await self.alerter.send(
                    "budget",
                    threshold_message(budget, row, threshold),
                    threshold_details(budget, row, threshold),
                )

    async def start(self) -> None:
        """Give back reservations that expired unsettled, now and every `reclaim_every_s`."""
        await self._reclaim()
        self._reclaimer = asyncio.create_task(self._reclaim_forever())

    async def stop(self) -> None:
        """Stop reclaiming and wait for settles in flight (call after the upstream stopped)."""
        if self._reclaimer is not None:
            self._reclaimer.cancel()
            await asyncio.gather(self._reclaimer, return_exceptions=True)
            self._reclaimer = None
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def budget_usage(self) -> list[dict[str, Any]]:
        """Every budget in its current period: spent, reserved, limit, share."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.store.usage, None)

    async def _reclaim(self) -> None:
        try:
            n = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.store.reclaim, time.time()
            )
        except Exception:
            log.exception("reclaiming expired budget reservations failed")
            return
        if n:
            log.warning("gave back %d budget reservations that expired unsettled", n)

    async def _reclaim_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reclaim_every_s)
            await self._reclaim()


def client_credential(headers: Mapping[str, str]) -> str | None:
    """The client's key: `x-api-key`, or the token of `Authorization: Bearer <key>`."""
    key = (headers.get("x-api-key") or "").strip()
    if key:
        return key
    scheme, _, token = (headers.get("authorization") or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def output_limit(protocol: str, body: Mapping[str, Any], default: int) -> int:
    """The most output tokens the request allows, times `n` choices (OpenAI)."""
    names = ("max_tokens",) if protocol == "anthropic" else _OPENAI_LIMITS
    limits = [
        v for name in names if isinstance(v := body.get(name), int) and not isinstance(v, bool) and v >= 0
    ]
    choices = body.get("n") if protocol == "openai" else 1
    n = choices if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1 else 1
    return (min(limits) if limits else default) * n


def refusal_message(budget: BudgetSettings, refusal: Refusal) -> str:
    label, spent, limit = budget_label(budget), format_usd(refusal.spent_nusd), format_usd(refusal.limit_nusd)
    if refusal.exhausted:
        return f"budget {label} is exhausted: ${spent} of ${limit} spent"
    return (
        f"budget {label} cannot cover this request: ${spent} of ${limit} spent, "
        f"${format_usd(refusal.reserved_nusd)} held by requests in flight, "
        f"this request may cost up to ${format_usd(refusal.amount_nusd)}"
    )


def threshold_message(budget: BudgetSettings, row: PeriodUsage, threshold: float) -> str:
    spent, limit = format_usd(row.spent_nusd), format_usd(row.limit_nusd)
    return f"budget {budget_label(budget)} reached {threshold:.0%}: ${spent} of ${limit} spent"


def threshold_details(budget: BudgetSettings, row: PeriodUsage, threshold: float) -> dict[str, Any]:
    return {
        "budget": row.budget,
        "scope": budget.scope,
        "name": budget.name,
        "period": budget.period,
        "period_start": row.period_start,
        "threshold": threshold,
        "share": round(row.share, 4),
        "spent_usd": str(nanos_to_usd(row.spent_nusd)),
        "limit_usd": str(nanos_to_usd(row.limit_nusd)),
    }
