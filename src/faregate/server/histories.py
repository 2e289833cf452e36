"""The gateway's history-policy state: the conversation store, the stage, the purge of idle chats.

Nothing exists unless some feature sets `history`. The store (turn embeddings and summaries) lives in
`cache.database` (default: `database`), beside the response caches: SQLite for one machine,
PostgreSQL + pgvector shared by every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from faregate.call import Call
from faregate.config import Config, HistorySettings
from faregate.history.store import HistoryStore, open_history_store
from faregate.pipeline.base import Next
from faregate.pipeline.history import HistoryStage
from faregate.pipeline.route import ModelCatalogue
from faregate.pipeline.settle import Settle
from faregate.pipeline.summarize import Summarizer
from faregate.server.embedding import SharedEmbedder

log = logging.getLogger("faregate.history")
PURGE_EVERY_S = 600.0


class Histories:
    def __init__(
        self,
        config: Config,
        *,
        catalogue: ModelCatalogue,
        upstream: Next,
        settle: Settle,
        embedder: SharedEmbedder,
        remeasure: Callable[[Call], None],
        new_request_id: Callable[[], str],
    ) -> None:
        self.features: dict[str, HistorySettings] = {
            name: feature.history for name, feature in config.features.items() if feature.history is not None
        }
        self.url = config.cache.database or config.database
        self.store: HistoryStore | None = None
        self.stage: HistoryStage | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.background: ThreadPoolExecutor | None = None
        self._purger: asyncio.Task[None] | None = None
        stored = {n: s for n, s in self.features.items() if s.policy != "window"}
        if not self.features:
            return
        if stored:
            self.store = open_history_store(self.url)
        for name, settings in stored.items():
            if settings.policy == "retrieve":
                embedder.require(f"features.{name}.history (retrieve)", int8=True)
        small = config.routing.tiers.get("small")
        summaries = {n: s.summary_model or small or "" for n, s in stored.items() if s.policy == "summary"}
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="faregate-history")
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faregate-history-bg")
        self.stage = HistoryStage(
            self.features,
            self.store,
            embedder.get_int8,
            self.pool,
            Summarizer(catalogue, upstream, settle.finish, new_request_id) if summaries else None,
            remeasure,
            summary_models=summaries,
            background=self.background,
        )

    async def start(self) -> None:
        if self.store is not None:
            self._purger = asyncio.create_task(self._purge_forever())

    async def drain(self) -> None:
        if self.stage is not None:
            await self.stage.drain()

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        await self.drain()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        for pool in (self.pool, self.background):
            if pool is not None:
                pool.shutdown(wait=False)

    async def stats(self) -> list[dict[str, Any]]:
        if self.store is None:
            return []
        return await asyncio.to_thread(self.store.stats)

    async def _purge_forever(self) -> None:
        """Delete conversations idle past their feature's TTL (each replica; deletes are idempotent)."""
        while True:
            await self.purge_idle()
            await asyncio.sleep(PURGE_EVERY_S)

    async def purge_idle(self, now: float | None = None) -> int:
        store = self.store
        if store is None:
            return 0
        now = time.time() if now is None else now
        deleted = 0
        for name, settings in self.features.items():
            if settings.policy == "window":
                continue
            try:
                deleted += await asyncio.to_thread(store.purge, now - settings.conversation_ttl_s, name)
            except Exception:
                log.exception("purging idle conversations failed", extra={"feature": name})
        return deleted
