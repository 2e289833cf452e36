"""Benchmark `faregate.cache.embeddings`, each backend: one query at a time (the gateway path) and batches.

    .venv/bin/python bench/embedding_bench.py [--queries 1000] [--data PATH] [--backend onnx|numpy]
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/embedding_bench.py     # BLAS on one core
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/embedding_bench.py --threads 2   # ORT on two

The queries are the first N distinct texts of BANKING77's test split (real customer-support
questions, 12 tokens on average): field "text" of ../shared/data/semantic-cache/banking77-test.jsonl.
Cases:

- embed_one: each query once, the memo off (``memo_size=0``), so every call tokenizes and runs the
  model; p50, p99 and mean latency, after a short warm-up;
- memo hit: `embed_one` of a text seen before (what a repeated query costs);
- embed, batch 32: throughput of `embed` on the same texts in batches of 32, texts per second.

Backends: "onnx" (ONNX Runtime, `faregate.cache.onnx_bert`) and "numpy" (the fallback), both by
default, in that order, each loaded fresh. The BLAS thread count (numpy) is whatever the environment
gives OpenBLAS (all cores unless ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` say otherwise); ORT's
intra-op threads (onnx) are ``--threads`` (default 1, the gateway's). Both are printed with the results.
The machine's other load moves these numbers a lot on 2 cores: compare backends within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import orjson
from tokenizers import Tokenizer

from faregate.cache.embeddings import Backend, Embedder, bundled_model_dir

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "semantic-cache" / "banking77-test.jsonl"
)


def read_queries(path: Path, n: int) -> list[str]:
    """The first n distinct texts: distinct so that no call could be answered from a cache."""
    seen: dict[str, None] = {}
    with path.open("rb") as f:
        for line in f:
            seen.setdefault(orjson.loads(line)["text"], None)
            if len(seen) == n:
                break
    if len(seen) < n:
        raise SystemExit(f"{path} has only {len(seen)} distinct texts, asked for {n}")
    return list(seen)


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


def bench_backend(backend: Backend, queries: list[str], threads: int) -> None:
    """Load one backend and print its rows of the table."""
    started = time.perf_counter()
    model = Embedder.load(memo_size=0, backend=backend, threads=threads)
    load_s = time.perf_counter() - started

    for q in queries[:50]:  # warm-up: page the weights in, let BLAS spin up its threads
        model.embed_one(q)
    latencies = []
    cpu0 = time.process_time()
    for q in queries:
        t0 = time.perf_counter()
        model.embed_one(q)
        latencies.append((time.perf_counter() - t0) * 1000)
    one_cpu_ms = (time.process_time() - cpu0) * 1000 / len(queries)
    latencies.sort()

    memo = Embedder.load(backend=backend, threads=threads)
    memo.embed_one(queries[0])
    hits = []
    for _ in range(1000):
        t0 = time.perf_counter()
        memo.embed_one(queries[0])
        hits.append((time.perf_counter() - t0) * 1000)
    hits.sort()

    model.embed(queries[:64])  # warm-up
    t0, cpu0 = time.perf_counter(), time.process_time()
    model.embed(queries)
    batch_s = time.perf_counter() - t0
    batch_cpu_ms = (time.process_time() - cpu0) * 1000 / len(queries)

    one_mean = statistics.mean(latencies)
    print(
        f"{backend:<8}{'embed_one (no memo)':<22}{percentile(latencies, 0.5):>9.3f}"
        f"{percentile(latencies, 0.99):>9.3f}{one_mean:>9.3f}{one_cpu_ms:>9.3f}{1000 / one_mean:>10.0f}"
        f"{load_s * 1000:>9.0f}"
    )
    hit_mean = statistics.mean(hits)
    print(
        f"{backend:<8}{'embed_one (memo hit)':<22}{percentile(hits, 0.5):>9.4f}{percentile(hits, 0.99):>9.4f}"
        f"{hit_mean:>9.4f}{'':>9}{1000 / hit_mean:>10.0f}"
    )
    print(
        f"{backend:<8}{'embed, batch 32':<22}{'':>9}{'':>9}{batch_s * 1000 / len(queries):>9.3f}"
        f"{batch_cpu_ms:>9.3f}{len(queries) / batch_s:>10.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backend", choices=["onnx", "numpy"], action="append", help="repeatable")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    backends: list[Backend] = args.backend or ["onnx", "numpy"]
    queries = read_queries(args.data, args.queries)

    tokenizer = Tokenizer.from_file(str(bundled_model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()  # tokenizer.json pads and truncates at 128: count real tokens
    tokenizer.no_padding()
    tokens = [len(e.ids) for e in tokenizer.encode_batch(queries)]
    blas = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"
    print(f"BLAS threads {blas}, ORT intra-op threads {args.threads} (cores: {os.cpu_count()})")
    print(
        f"{len(queries)} distinct queries, tokens incl. [CLS]/[SEP]: "
        f"mean {statistics.mean(tokens):.1f}, max {max(tokens)}"
    )
    print()
    print(
        f"{'backend':<8}{'case':<22}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'CPU ms':>9}{'texts/s':>10}"
        f"{'load ms':>9}"
    )
    for backend in backends:
        bench_backend(backend, queries, args.threads)
    print()
    print("CPU ms: process CPU time a text (all threads); above the wall time when work runs on two cores")


if __name__ == "__main__":
    main()
