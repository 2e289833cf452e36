"""The gateway's response-cache state: the store, the embedding model, the worker pool, the stage.

Built from the config like everything else in the gateway: nothing exists unless some feature turns
`semantic_cache` on. The embedding model (shared, `server.embedding`) is loaded at start-up rather than on
the first request.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from faregate.cache.store import CacheStore, open_cache_store
from faregate.config import Config
from faregate.pipeline.cache import CacheStage
from faregate.pipeline.settle import Settle
from faregate.server.embedding import SharedEmbedder


class ResponseCaches:
    def __init__(self, config: Config, settle: Settle, embedder: SharedEmbedder) -> None:
        self.features = {
            name: feature.semantic_cache
            for name, feature in config.features.items()
            if feature.semantic_cache is not None
        }
        self.url = config.cache.database or config.database
        self.store: CacheStore | None = None
        self.stage: CacheStage | None = None
        self.pool: ThreadPoolExecutor | None = None
        if self.features:
            self.store = open_cache_store(self.url)
            self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="faregate-cache")
            self.stage = CacheStage(self.features, self.store, embedder.get, self.pool, verify=settle.finish)
        for name, settings in self.features.items():
            if settings.semantic:
                embedder.require(f"features.{name}.semantic_cache")

    async def drain(self) -> None:
        if self.stage is not None:
            await self.stage.drain()

    async def stats(self) -> list[dict[str, Any]]:
        store = self.store or open_cache_store(self.url)
        try:
            return await asyncio.to_thread(store.stats)
        finally:
            if store is not self.store:
                store.close()

    def thresholds(self) -> dict[str, dict[str, float]]:
        """Per semantic feature, the configured threshold and this replica's after verification."""
        return self.stage.thresholds() if self.stage is not None else {}

    async def clear(
        self, feature: str | None = None, template: str | None = None, tenant: str | None = None
    ) -> int:
        store = self.store or open_cache_store(self.url)
        try:
            return await asyncio.to_thread(store.clear, feature, template, tenant)
        finally:
            if store is not self.store:
                store.close()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False)


def merge_cache_stats(store: list[dict[str, Any]], ledger: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per feature: the store's entries and hits beside the ledger's results."""
    merged: dict[str, dict[str, Any]] = {}
    for row in ledger:
        merged[row["feature"]] = {"entries": 0, "hits": 0, **row}
    for row in store:
        merged.setdefault(row["feature"], {"feature": row["feature"]}).update(row)
    return sorted(merged.values(), key=lambda e: (-e.get("entries", 0), e["feature"]))
