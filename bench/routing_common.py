"""Shared by the routing benchmarks: the RouteLLM data sets, and their embeddings cached on disk.

Embedding MMLU's 14,037 prompts takes ~3 minutes on one core (float32; ~1 minute int8), so each file's
embeddings are computed once and kept under ``--cache`` (default /tmp/faregate-routing-emb), keyed by a
hash of its prompts and by the kind of embedding: float32 (``Embedder.load(None)``) or int8
(``Embedder.load(None, int8=True)``, file names with ``-int8``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from faregate.cache.embeddings import Embedder
from faregate.routing.data import Row, Tier, read_rows

DATA = Path("/work/shared/data/routing")
CACHE = Path("/tmp/faregate-routing-emb")
FILES = {
    "mmlu": "routellm-mmlu.jsonl",
    "gsm8k": "routellm-gsm8k.jsonl",
    "mt-bench": "routellm-mt-bench.jsonl",
}
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
TIERS = [Tier("small", WEAK), Tier("frontier", STRONG)]

F32 = npt.NDArray[np.float32]


class Dataset:
    def __init__(self, name: str, rows: list[Row], emb: F32) -> None:
        self.name = name
        self.rows = rows
        self.emb = emb


def load(
    name: str,
    cache: Path = CACHE,
    data: Path = DATA,
    embedder: list[Embedder] | None = None,
    *,
    int8: bool = False,
) -> Dataset:
    """One data set's rows and their embeddings: float32 ones, or int8 ones with ``int8``."""
    rows = read_rows([data / FILES[name]])
    digest = hashlib.sha256("\x00".join(r.prompt for r in rows).encode()).hexdigest()[:16]
    path = cache / f"{name}{'-int8' if int8 else ''}.{digest}.npy"
    if path.exists():
        emb = np.load(path)
    else:
        if embedder is None:
            embedder = []
        if not embedder:
            embedder.append(Embedder.load(None, memo_size=0, int8=int8))
        if embedder[0].name.endswith("-int8") != int8:
            raise ValueError(f"embedder {embedder[0].name} given for {'int8' if int8 else 'float32'} vectors")
        emb = embedder[0].embed([r.prompt for r in rows])
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, emb)
    return Dataset(name, rows, emb.astype(np.float32))


def lookup(datasets: Sequence[Dataset]):  # type: ignore[no-untyped-def]
    """An `embed` function that serves the cached embeddings of these data sets' prompts."""
    table: dict[str, F32] = {}
    for ds in datasets:
        for row, vec in zip(ds.rows, ds.emb, strict=True):
            table[row.prompt] = vec

    def embed(texts: Sequence[str]) -> F32:
        return np.stack([table[t] for t in texts]) if texts else np.empty((0, 384), dtype=np.float32)

    return embed
