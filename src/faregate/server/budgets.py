"""The gateway's budgets and alerts: the alerter, the spend-spike and template watches, the budgets.

Alerts always exist (to the log; to `alerts.webhook_url` when set). Spend spikes are watched on
every settled request; template regressions every `TEMPLATE_CHECK_EVERY_S` from the ledger's
rollups (the newest template of a feature costing `alerts.template_regression` more per request
than the one before it, without better quality), each regression alerted once per process. The
budget store and stage exist when `budgets` is configured or virtual keys are on (a key may carry
its own budget, `faregate keys create --budget`); the store lives in the ledger's database, so every
replica reserves against the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from faregate.alerts import Alerter, SpikeDetector
from faregate.budgets import BudgetStore, open_budget_store
from faregate.config import BudgetSettings, Config
from faregate.ledger.store import LedgerStore
from faregate.pipeline.budget import BudgetStage
from faregate.pipeline.settle import Settle
from faregate.pricing import PriceBook
from faregate.providers import Provider

log = logging.getLogger("faregate.alerts")
TEMPLATE_CHECK_EVERY_S = 900.0
TEMPLATE_WINDOW_S = 7 * 86_400.0


class Budgets:
    def __init__(
        self,
        config: Config,
        settle: Settle,
        prices: PriceBook,
        providers: dict[str, Provider],
        ledger: LedgerStore | None = None,
    ) -> None:
        self.alerter = Alerter(config.alerts)
        self.ledger = ledger
        self.regression_threshold = config.alerts.template_regression
        self._alerted: set[tuple[str, str, str]] = set()
        self._watch: asyncio.Task[None] | None = None
        settle.observers.append(SpikeDetector(self.alerter))
        self.store: BudgetStore | None = None
        self.stage: BudgetStage | None = None
        self.pool: ThreadPoolExecutor | None = None
        if config.budgets or config.auth.virtual_keys:
            self.store = open_budget_store(config.database, config.budgets)
            self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="faregate-budget")
            self.stage = BudgetStage(
                config.budgets, self.store, prices, providers, self.pool, alerter=self.alerter
            )

    def use_key_budgets(self, lookup: Callable[[str], BudgetSettings | None]) -> None:
        """Enforce virtual keys' own budgets: `lookup(call.key_id)` names a verified key's budget."""
        if self.stage is not None:
            self.stage.key_budgets = lookup

    async def start(self) -> None:
        if self.stage is not None:
            await self.stage.start()  # gives back reservations a dead replica left, then every minute
        if self.ledger is not None:
            self._watch = asyncio.create_task(self._watch_templates())

    async def check_templates(self, now: float | None = None) -> int:
        """Alert the template regressions of the last week not alerted yet; returns how many."""
        if self.ledger is None:
            return 0
        now = time.time() if now is None else now
        report = await asyncio.to_thread(
            self.ledger.templates, now - TEMPLATE_WINDOW_S, now, None, self.regression_threshold
        )
        sent = 0
        for feature in report["features"]:
            for regression in feature["regressions"]:
                key = (feature["feature"], regression["template"], regression["previous"])
                if key in self._alerted:
                    continue
                self._alerted.add(key)
                details = {"feature": feature["feature"], **regression}
                self.alerter.notify(
                    "template_regression", f"{feature['feature']}: {regression['message']}", details
                )
                sent += 1
        return sent

    async def _watch_templates(self) -> None:
        while True:
            await asyncio.sleep(TEMPLATE_CHECK_EVERY_S)
            try:
                await self.check_templates()
            except Exception:
                log.exception("template regression check failed")

    async def stop(self) -> None:
        """After the pipeline's own drains: settles in flight and their alerts finish first."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.stage is not None:
            await self.stage.stop()
        await self.alerter.close()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False)

    async def usage(self) -> list[dict[str, Any]]:
        return [] if self.stage is None else await self.stage.budget_usage()
