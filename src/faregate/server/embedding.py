"""The gateway's sentence-embedding model, loaded once for the stages that need it.

The semantic cache uses the float32 model (its threshold was chosen on float32 vectors). History
retrieval only ranks a conversation's turns and must embed a query in well under 2 ms, so it uses
the same model with int8 weights (~3x faster, cosine ~0.995 to float32); each kind is loaded only
if some feature needs it.
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

from faregate.cache.embeddings import Embedder, EmbeddingModelMissing
from faregate.config import Config
from faregate.errors import ConfigError


class SharedEmbedder:
    def __init__(self, config: Config) -> None:
        self.model_dir = Path(config.cache.model_dir) if config.cache.model_dir else None
        self.threads = config.cache.embedding_threads
        self.needed_by: dict[bool, list[str]] = {False: [], True: []}  # int8? -> config keys needing it
        self.loaded: dict[bool, Embedder] = {}

    def require(self, config_key: str, *, int8: bool = False) -> None:
        self.needed_by[int8].append(config_key)

    def get(self) -> Embedder | None:
        return self.loaded.get(False)

    def get_int8(self) -> Embedder | None:
        return self.loaded.get(True)

    async def start(self) -> None:
        """Load what is needed; a missing model stops the start, naming the keys that need it."""
        for int8, keys in self.needed_by.items():
            if not keys or int8 in self.loaded:
                continue
            load = partial(Embedder.load, self.model_dir, threads=self.threads, int8=int8)
            try:
                self.loaded[int8] = await asyncio.to_thread(load)
            except EmbeddingModelMissing as exc:
                raise ConfigError(f"{', '.join(keys)} need(s) the embedding model: {exc}") from None
