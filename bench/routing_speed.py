"""How long the routing decision takes, on one core: given the shared embedding, and including it.

    .venv/bin/python bench/routing_speed.py [--requests 2000] [--router PATH] [--cpu 0] [--int8]

Pins the process to one CPU (``--cpu``), one BLAS thread and one ONNX Runtime thread, loads the router
(default: the shipped one) and the bundled embedding model with its memo off, and times, per request,
on prompts drawn from RouteLLM's MMLU, GSM8K and MT-Bench files (mixed, shuffled):

- ``route``: `Router.route(embedding, prompt, feature)`, the decision given the embedding the semantic
  cache computed (cheap features, classifier, policy); its parts are timed apart as well:
  ``features`` (`cheap_features`) and ``classifier`` (`Classifier.predict_one`);
- ``embed + route``: `Embedder.embed_one(prompt)` then `route`, i.e. when nothing shared the embedding.

``--int8`` embeds with ``Embedder.load(None, int8=True)`` (int8 weights, ~3x faster) instead of float32.

Goals (issue 6): route p50 <= 1 ms; embed + route p50 <= 5 ms.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads

import argparse
import random
import time
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from faregate.cache.embeddings import Embedder, bundled_model_dir
from faregate.routing.artifact import default_router_path, load_router
from faregate.routing.data import read_rows
from faregate.routing.features import cheap_features

DATA = Path("/work/shared/data/routing")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--router", type=Path, default=default_router_path())
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--int8", action="store_true", help="Embed with the int8 model (default float32).")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    router = load_router(args.router)
    embedder = Embedder.load(None, memo_size=0, threads=1, int8=args.int8)
    rows = [
        r for name in ("mmlu", "gsm8k", "mt-bench") for r in read_rows([args.data / f"routellm-{name}.jsonl"])
    ]
    rng = random.Random(0)
    sample = [rng.choice(rows) for _ in range(args.requests)]
    clf = router.classifier

    for row in sample[:50]:  # warm up
        router.route(embedder.embed_one(row.prompt), row.prompt, row.category)

    timings: dict[str, list[float]] = {"features": [], "classifier": [], "route": [], "embed + route": []}
    clock = time.perf_counter
    for row in sample:
        prompt, feature = row.prompt, row.category
        t0 = clock()
        emb = embedder.embed_one(prompt)
        t1 = clock()
        router.route(emb, prompt, feature)
        t2 = clock()
        feats = cheap_features(prompt)
        t3 = clock()
        clf.predict_one(emb, feats, feature)
        t4 = clock()
        timings["route"].append(t2 - t1)
        timings["embed + route"].append(t2 - t0)
        timings["features"].append(t3 - t2)
        timings["classifier"].append(t4 - t3)

    chars = [len(r.prompt) for r in sample]
    print(
        f"{args.requests} requests on CPU {args.cpu}; prompts {int(np.median(chars))} chars median, "
        f"{max(chars)} max; router {args.router.name} ({clf.keys.shape[0]} stored prompts, k={clf.k}, "
        f"trained on {router.embedding_model}); embedding {embedder.name} ({embedder.backend})"
    )
    print(f"{'':16} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in timings.items():
        print(
            f"{name:16} {pct(values, 50):8.3f} {pct(values, 90):8.3f} {pct(values, 99):8.3f} "
            f"{max(values) * 1e3:8.3f}"
        )
    # The embedding's cost grows with the prompt's length (up to the model's 256 tokens): by length.
    tok = Tokenizer.from_file(str(bundled_model_dir() / "tokenizer.json"))
    tok.no_padding()  # the file pads to 128
    tok.no_truncation()  # and truncates at 128; the embedder at 256
    tokens = [min(len(tok.encode(r.prompt).ids), 256) for r in sample]
    print("\nembed + route by prompt length (MiniLM tokens, truncated at 256)")
    print(f"{'tokens':16} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'route p50':>10}")
    both = timings["embed + route"]
    route = timings["route"]
    for lo, hi in ((0, 16), (17, 32), (33, 64), (65, 128), (129, 256)):
        idx = [i for i, t in enumerate(tokens) if lo <= t <= hi]
        if idx:
            print(
                f"{f'{lo}-{hi}':16} {len(idx):8d} {pct([both[i] for i in idx], 50):8.3f} "
                f"{pct([both[i] for i in idx], 99):8.3f} {pct([route[i] for i in idx], 50):10.3f}"
            )


if __name__ == "__main__":
    main()
