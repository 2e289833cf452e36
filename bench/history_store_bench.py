"""The history store's lookups as the `retrieve` policy makes them: a conversation's stored vectors,
then its nearest earlier exchanges.

    .venv/bin/python bench/history_store_bench.py [--conversations 1000] [--turns 50] [--queries 2000]
                                                  [--no-sqlite] [--no-postgres]

`--conversations` conversations of `--turns` stored exchanges each (random 384-d unit vectors), one
tenant and feature. Each measured lookup picks a conversation at random and times `vectors(key,
all its digests)` and `nearest(key, query, all its digests, 4)`, apart and together; p50 / p99 in ms.
Then `put_vectors` of one new exchange (what a request adds when its conversation grows).

Sections:
- SQLite, warm: every conversation in the in-process copy (after one pass over all of them);
- SQLite, cold: a store just opened on the same file, each conversation's first lookup (loads it);
- SQLite, shared file: another connection commits (one row into another table, as the ledger does
  when it shares the file) before every lookup, so each lookup first checks for new turns;
- PostgreSQL: a pgserver instance (as tests/fixtures/postgres.py starts one); every call is a query.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psycopg
from pg_server import pgserver_url

from faregate.history.postgres_store import PostgresHistoryStore
from faregate.history.sqlite_store import SqliteHistoryStore
from faregate.history.store import ConversationKey, HistoryStore, Vector

DIM = 384
K = 4
NOW = 1_000_000.0
Matrix = npt.NDArray[np.float32]


def unit(x: npt.NDArray[np.floating]) -> Matrix:
    out: Matrix = (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    return out


class Workload:
    def __init__(self, conversations: int, turns: int, queries: int, seed: int = 42) -> None:
        rng = np.random.default_rng(seed)
        self.keys = [ConversationKey("team-bench", "support", f"conv-{i}") for i in range(conversations)]
        self.digests = [[f"{i:016x}{j:016x}" for j in range(turns)] for i in range(conversations)]
        self.vectors = unit(rng.standard_normal((conversations, turns, DIM)))
        self.picks = [int(i) for i in rng.integers(0, conversations, queries)]
        self.queries = unit(rng.standard_normal((queries, DIM)))
        self.new = unit(rng.standard_normal((queries, DIM)))

    def fill(self, store: HistoryStore) -> float:
        t = time.perf_counter()
        for i, key in enumerate(self.keys):
            store.put_vectors(key, list(zip(self.digests[i], self.vectors[i], strict=True)), NOW)
        return time.perf_counter() - t


Row = dict[str, tuple[float, float]]


def pcts(ms: list[float]) -> tuple[float, float]:
    return statistics.median(ms), statistics.quantiles(ms, n=100)[98]


def lookups(
    store: HistoryStore, w: Workload, order: list[int], before: Callable[[], None] | None = None
) -> Row:
    got_ms, near_ms, both_ms = [], [], []
    for n, i in enumerate(order):
        key, digests = w.keys[i], w.digests[i]
        if before is not None:
            before()
        t0 = time.perf_counter()
        got = store.vectors(key, digests)
        t1 = time.perf_counter()
        best = store.nearest(key, w.queries[n % len(w.queries)], digests, K)
        t2 = time.perf_counter()
        assert len(got) == len(digests) and len(best) == K
        got_ms.append((t1 - t0) * 1e3)
        near_ms.append((t2 - t1) * 1e3)
        both_ms.append((t2 - t0) * 1e3)
    return {"vectors()": pcts(got_ms), "nearest()": pcts(near_ms), "both": pcts(both_ms)}


def puts(store: HistoryStore, w: Workload) -> tuple[float, float]:
    ms = []
    for n, i in enumerate(w.picks):
        item: list[tuple[str, Vector]] = [(f"new-{n:028x}", w.new[n])]
        t = time.perf_counter()
        store.put_vectors(w.keys[i], item, NOW + n)
        ms.append((time.perf_counter() - t) * 1e3)
    return pcts(ms)


def sqlite_section(w: Workload, results: dict[str, Row], notes: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="faregate-bench-") as tmp:
        path = Path(tmp) / "faregate.db"
        store = SqliteHistoryStore(path)
        notes.append(f"sqlite: fill {len(w.keys):,} x {len(w.digests[0])} turns in {w.fill(store):.1f} s")
        lookups(store, w, list(range(len(w.keys))))  # every conversation into the copy
        results["SQLite, warm (in-process copy)"] = lookups(store, w, w.picks)
        notes.append(f"sqlite: in-process copy holds {store.cached_vectors:,} vectors")

        other = sqlite3.connect(path, isolation_level=None)
        other.execute("CREATE TABLE IF NOT EXISTS bench_other (x REAL)")

        def commit_elsewhere() -> None:
            other.execute("INSERT INTO bench_other VALUES (1)")

        results["SQLite, warm, another connection commits"] = lookups(store, w, w.picks, commit_elsewhere)
        other.close()
        results["SQLite put_vectors (1 turn)"] = {"put": puts(store, w)}
        store.close()

        cold = SqliteHistoryStore(path)
        results["SQLite, cold (first lookup loads)"] = lookups(cold, w, list(range(len(w.keys))))
        cold.close()


def pg_section(w: Workload, results: dict[str, Row], notes: list[str]) -> None:
    with pgserver_url() as url:
        store = PostgresHistoryStore(url)
        notes.append(f"postgres: fill {len(w.keys):,} x {len(w.digests[0])} turns in {w.fill(store):.1f} s")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE history_turns")
        lookups(store, w, w.picks[:200])  # warm the pool, prepared statements, buffer cache
        results["PostgreSQL"] = lookups(store, w, w.picks)
        results["PostgreSQL put_vectors (1 turn)"] = {"put": puts(store, w)}
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversations", type=int, default=1000)
    ap.add_argument("--turns", type=int, default=50)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    w = Workload(args.conversations, args.turns, args.queries)
    results: dict[str, Row] = {}
    notes: list[str] = []
    if not args.no_sqlite:
        sqlite_section(w, results, notes)
    if not args.no_postgres:
        pg_section(w, results, notes)
    print(
        f"{args.conversations:,} conversations x {args.turns} turns, {args.queries:,} lookups, k={K}; "
        "ms, p50 / p99"
    )
    print(f"{'':44} {'vectors()':>15} {'nearest()':>15} {'both':>15}")
    for name, row in results.items():
        cells = " ".join(f"{p50:7.3f} /{p99:6.3f}" for p50, p99 in row.values())
        print(f"{name:44} {cells}")
    for note in notes:
        print("  " + note)


if __name__ == "__main__":
    main()
