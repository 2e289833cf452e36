"""A whole semantic-cache lookup as the gateway does it: embed the query, search the SQLite store.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/cache_lookup_bench.py [--threads 1 2] [--queries 1000]

The store holds banking77's train split (10,003 queries, one scope: past the 4,096 entries where a
scope moves to the HNSW graph, which is built before timing); the queries are its test split,
embedded afresh (memo off), one at a time. Reported per ONNX Runtime thread count: p50 / p99 of
embedding, of the store search, and of the two together.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from faregate.cache.embeddings import Embedder
from faregate.cache.entry import CachedAnswer, CacheEntry
from faregate.cache.sqlite_store import SqliteCacheStore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "semantic-cache"


def texts(name: str) -> list[str]:
    return [orjson.loads(line)["text"] for line in (DATA / name).read_bytes().splitlines() if line.strip()]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    train, test = texts("banking77-train.jsonl"), texts("banking77-test.jsonl")[: args.queries]
    answer = CachedAnswer("openai", "gpt-4o-mini", "An answer.", "stop", 50, 20, 0)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteCacheStore(Path(tmp) / "cache.db")
        vectors = Embedder.load(threads=1).embed(train)
        now = time.time()
        for text, vector in zip(train, vectors, strict=True):
            store.put(
                CacheEntry(
                    random.getrandbits(63), "s", text, "t", "faq", "v1", text, answer, vector, now, now + 1e6
                )
            )
        store.search("s", vectors[0], 4, now)  # loads the scope
        store._index.wait_idle()  # the HNSW graph is built before timing
        print(f"{len(train):,} entries in one scope, {len(test):,} queries, k=4; ms")
        head = ("ORT threads", "embed p50", "p99", "search p50", "p99", "lookup p50", "p99")
        print(" ".join(f"{h:>11}" for h in head))
        for threads in args.threads:
            embedder = Embedder.load(threads=threads, memo_size=0)
            embed_ms, search_ms, total_ms = [], [], []
            for text in test:
                t0 = time.perf_counter()
                vector = embedder.embed_one(text)
                t1 = time.perf_counter()
                store.search("s", vector, 4, now)
                t2 = time.perf_counter()
                embed_ms.append((t1 - t0) * 1e3)
                search_ms.append((t2 - t1) * 1e3)
                total_ms.append((t2 - t0) * 1e3)
            cells = [statistics.median(embed_ms), pct(embed_ms, 0.99), statistics.median(search_ms)]
            cells += [pct(search_ms, 0.99), statistics.median(total_ms), pct(total_ms, 0.99)]
            print(f"{threads:>11} " + " ".join(f"{c:11.2f}" for c in cells))
        store.close()


if __name__ == "__main__":
    main()
