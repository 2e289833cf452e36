"""Benchmark the semantic cache's nearest-neighbour lookups on one big scope.

    .venv/bin/python bench/cache_index_bench.py [--entries 100000] [--queries 500] [--no-postgres]

One scope holds `--entries` 384-d unit vectors: half random (the hardest case for HNSW: no low-
dimensional structure to exploit), half in tight clusters of 50 (cosine ~0.87 inside a cluster: many
paraphrases of the same questions). Three kinds of query, k=4 each:

- near random: a stored random vector plus noise (cosine ~0.86 to it): a paraphrase, the cache's case;
- near cluster: the same for a clustered vector, whose neighbours are all close to each other;
- far: a fresh random vector (best cosine ~0.25, far below any cache threshold): reported for honesty;
  a miss here cannot change a cache decision, since the exact best is no hit either.

recall@1 is the share of queries whose first answer is the exact nearest neighbour (NumPy, f32).

Sections:
- SQLite store: 100k `put`s into a fresh file, then the first search loads the scope into the
  in-process index (exact at once; the HNSW graph builds on a background thread, as after a gateway
  restart), searches while it builds, then searches on the graph;
- ScopedIndex: the same graph, searched directly (what the store adds is the SQLite row fetch);
- PostgreSQL: a pgserver instance (as tests/fixtures/postgres.py starts one), rows COPYed in, the
  migration's HNSW index rebuilt over them, then `PostgresCacheStore.search` (its default ef_search).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psycopg
from pg_server import pgserver_url

from faregate.cache.entry import CachedAnswer, CacheEntry
from faregate.cache.index import HNSW_CONNECTIVITY, HNSW_EXPANSION_ADD, HNSW_EXPANSION_SEARCH
from faregate.cache.postgres_store import (
    DEFAULT_EF_SEARCH,
    EMBEDDING_INDEX,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    PostgresCacheStore,
)
from faregate.cache.sqlite_store import SqliteCacheStore
from faregate.cache.store import COLUMNS, entry_params

DIM = 384
K = 4
SCOPE = "bench-scope"
NOW = 1_000_000.0
Matrix = npt.NDArray[np.float32]


def unit(x: npt.NDArray[np.floating]) -> Matrix:
    out: Matrix = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def make_data(rng: np.random.Generator, n: int) -> Matrix:
    half = n // 2
    centers = unit(rng.standard_normal((-(-(n - half) // 50), DIM)))
    clustered = unit(np.repeat(centers, 50, axis=0)[: n - half] + rng.standard_normal((n - half, DIM)) * 0.02)
    return np.vstack([unit(rng.standard_normal((half, DIM))), clustered])


def make_queries(rng: np.random.Generator, data: Matrix, q: int) -> dict[str, Matrix]:
    half = len(data) // 2

    def near(lo: int, hi: int) -> Matrix:
        return unit(data[rng.integers(lo, hi, q)] + rng.standard_normal((q, DIM)) * 0.03)

    return {
        "near random": near(0, half),
        "near cluster": near(half, len(data)),
        "far": unit(rng.standard_normal((q, DIM))),
    }


def exact_top1(data: Matrix, queries: Matrix) -> npt.NDArray[np.int64]:
    out = [np.argmax(queries[i : i + 100] @ data.T, axis=1) for i in range(0, len(queries), 100)]
    return np.concatenate(out).astype(np.int64)


def entry(i: int, key: int, vector: Matrix) -> CacheEntry:
    answer = CachedAnswer("openai", "gpt-4o-mini", f"answer {i} " * 20, "stop", 200, 80, 30_000)
    return CacheEntry(
        id=key,
        scope=SCOPE,
        exact_key=secrets.token_hex(16),
        tenant="tenant",
        feature="faq",
        template="tpl",
        query=f"question number {i}?",
        answer=answer,
        embedding=vector,
        created_at=NOW - 1000,
        expires_at=NOW + 86_400,
        last_used_at=NOW - 1000,
    )


def measure(
    search: Callable[[Matrix], int], queries: dict[str, Matrix], truth: dict[str, npt.NDArray[np.int64]]
) -> dict[str, tuple[float, float, float]]:
    """p50 ms, p99 ms and recall@1 per query kind; `search` returns the row of its best answer."""
    out = {}
    for kind, qs in queries.items():
        times, best = [], []
        for q in qs:
            t = time.perf_counter()
            best.append(search(q))
            times.append((time.perf_counter() - t) * 1000)
        p = statistics.quantiles(times, n=100)
        out[kind] = (statistics.median(times), p[98], float(np.mean(np.array(best) == truth[kind])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=500, help="per query kind")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument(
        "--ef-search", default=str(DEFAULT_EF_SEARCH), help="PostgreSQL hnsw.ef_search; a comma list sweeps"
    )
    ap.add_argument("--pg-m", type=int, default=HNSW_M, help="try another m for the pgvector index")
    ap.add_argument("--pg-ef-construction", type=int, default=HNSW_EF_CONSTRUCTION)
    args = ap.parse_args()
    rng = np.random.default_rng(42)
    data = make_data(rng, args.entries)
    keys = [int(k) for k in rng.integers(1, 2**63 - 1, size=len(data), dtype=np.int64)]
    row_of = {k: i for i, k in enumerate(keys)}
    queries = make_queries(rng, data, args.queries)
    truth = {kind: exact_top1(data, qs) for kind, qs in queries.items()}
    results: dict[str, dict[str, tuple[float, float, float]]] = {}
    notes: list[str] = []

    if not args.no_sqlite:
        sqlite_section(keys, data, row_of, queries, truth, results, notes)
    if not args.no_postgres:
        pg_section(args, keys, data, row_of, queries, truth, results, notes)
    report(args, len(keys), results, notes)


def sqlite_section(
    keys: list[int],
    data: Matrix,
    row_of: dict[int, int],
    queries: dict[str, Matrix],
    truth: dict[str, npt.NDArray[np.int64]],
    results: dict[str, dict[str, tuple[float, float, float]]],
    notes: list[str],
) -> None:
    with tempfile.TemporaryDirectory(prefix="faregate-bench-") as tmp:
        store = SqliteCacheStore(Path(tmp) / "cache.db")
        t = time.perf_counter()
        for i, (key, v) in enumerate(zip(keys, data, strict=True)):
            store.put(entry(i, key, v))
        notes.append(f"sqlite: {len(keys):,} puts in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        store.search(SCOPE, queries["far"][0], K, NOW)  # loads the scope; the graph starts building
        notes.append(f"sqlite: first search (loads the scope) {time.perf_counter() - t:.2f} s")
        few = {kind: qs[:50] for kind, qs in queries.items()}
        results["SQLite store, graph building (exact)"] = measure(
            lambda q: row_of[store.search(SCOPE, q, K, NOW)[0][0].id],
            few,
            {k: v[:50] for k, v in truth.items()},
        )
        t = time.perf_counter()
        store.index.wait_idle()
        notes.append(
            f"index: HNSW build (background, 1 thread) finished {time.perf_counter() - t:.0f} s after that; "
            f"{store.index.memory_usage() / len(keys):,.0f} bytes/entry"
        )
        assert store.index.is_hnsw(SCOPE)
        results["ScopedIndex.search (HNSW)"] = measure(
            lambda q: row_of[store.index.search(SCOPE, q, K)[0][0]], queries, truth
        )
        results["SQLite store.search"] = measure(
            lambda q: row_of[store.search(SCOPE, q, K, NOW)[0][0].id], queries, truth
        )
        store.close()


def pg_section(
    args: argparse.Namespace,
    keys: list[int],
    data: Matrix,
    row_of: dict[int, int],
    queries: dict[str, Matrix],
    truth: dict[str, npt.NDArray[np.int64]],
    results: dict[str, dict[str, tuple[float, float, float]]],
    notes: list[str],
) -> None:
    with pgserver_url() as url:
        pg = PostgresCacheStore(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP INDEX cache_entries_embedding")
            t = time.perf_counter()
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY cache_entries ({COLUMNS}, embedding) FROM STDIN") as cp,
            ):
                for i, (key, v) in enumerate(zip(keys, data, strict=True)):
                    cp.write_row(
                        (*entry_params(entry(i, key, v)), "[" + ",".join(map(repr, v.tolist())) + "]")
                    )
            notes.append(f"postgres: COPY {len(keys):,} rows {time.perf_counter() - t:.0f} s")
            conn.execute("SET maintenance_work_mem = '1GB'")
            t = time.perf_counter()
            index = EMBEDDING_INDEX.replace(f"m = {HNSW_M},", f"m = {args.pg_m},").replace(
                f"ef_construction = {HNSW_EF_CONSTRUCTION})", f"ef_construction = {args.pg_ef_construction})"
            )
            conn.execute(index)
            conn.execute("ANALYZE cache_entries")
            notes.append(f"postgres: HNSW index build {time.perf_counter() - t:.0f} s: {index}")
        pg.close()
        for ef in (int(x) for x in args.ef_search.split(",")):
            pg = PostgresCacheStore(url, ef_search=ef)
            for q in queries["far"][:20]:  # warm the pool and the buffer cache
                pg.search(SCOPE, q, K, NOW)
            results[f"PostgreSQL store.search (ef_search {ef})"] = measure(
                partial(_best_row, pg, row_of), queries, truth
            )
            pg.close()


def _best_row(store: PostgresCacheStore, row_of: dict[int, int], q: Matrix) -> int:
    return row_of[store.search(SCOPE, q, K, NOW)[0][0].id]


def report(
    args: argparse.Namespace,
    n: int,
    results: dict[str, dict[str, tuple[float, float, float]]],
    notes: list[str],
) -> None:
    print(f"\n{n:,} entries in one scope, k={K}, {args.queries} queries per kind")
    print(
        f"ScopedIndex HNSW: M={HNSW_CONNECTIVITY}, expansion_add={HNSW_EXPANSION_ADD}, "
        f"expansion_search={HNSW_EXPANSION_SEARCH}; "
        f"pgvector: m={args.pg_m}, ef_construction={args.pg_ef_construction}"
    )
    for note in notes:
        print("  " + note)
    print(f"\n{'lookup':<44} {'queries':<13} {'p50 ms':>8} {'p99 ms':>8} {'recall@1':>9}")
    for name, by_kind in results.items():
        for kind, (p50, p99, recall) in by_kind.items():
            print(f"{name:<44} {kind:<13} {p50:>8.2f} {p99:>8.2f} {recall:>9.3f}")


if __name__ == "__main__":
    main()
