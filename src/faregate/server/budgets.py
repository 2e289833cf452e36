"""The gateway's budgets and alerts: the alerter, the spend-spike watch, the budget store and stage.

Alerts always exist (to the log; to `alerts.webhook_url` when set). The budget store and stage exist
only when `budgets` is configured; the store lives in the ledger's database, so every replica
reserves against the same rows.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from faregate.alerts import Alerter, SpikeDetector
from faregate.budgets import BudgetStore, open_budget_store
from faregate.config import Config
from faregate.pipeline.budget import BudgetStage
from faregate.pipeline.settle import Settle
from faregate.pricing import PriceBook
from faregate.providers import Provider


class Budgets:
    def __init__(
        self, config: Config, settle: Settle, prices: PriceBook, providers: dict[str, Provider]
    ) -> None:
        self.alerter = Alerter(config.alerts)
        settle.observers.append(SpikeDetector(self.alerter))
        self.store: BudgetStore | None = None
        self.stage: BudgetStage | None = None
        self.pool: ThreadPoolExecutor | None = None
        if config.budgets:
            self.store = open_budget_store(config.database, config.budgets)
            self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="faregate-budget")
            self.stage = BudgetStage(
                config.budgets, self.store, prices, providers, self.pool, alerter=self.alerter
            )

    async def start(self) -> None:
        if self.stage is not None:
            await self.stage.start()  # gives back reservations a dead replica left, then every minute

    async def stop(self) -> None:
        """After the pipeline's own drains: settles in flight and their alerts finish first."""
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
