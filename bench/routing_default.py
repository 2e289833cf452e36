"""Train the default router that ships in the package, from public data only.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/routing_default.py [--out PATH] [--embedding int8|float32]

Data: RouteLLM's MMLU, GSM8K and MT-Bench files (/work/shared/data/routing, Apache-2.0), all rows.
Tiers: small = mistralai/Mixtral-8x7B-Instruct-v0.1, frontier = gpt-4-1106-preview. Policy: 95% of the
frontier's quality on held-out predictions. The rows' categories are dropped (see main). Embeddings:
int8 MiniLM (``Embedder.load(None, int8=True)``, the meta's embedding model all-MiniLM-L6-v2-int8), as
the gateway computes them; ``--embedding float32`` for the float32 ones. Cross-validated, int8 vectors
route as well as float32 ones (bench/data/routing_quality-int8.json) and embed ~2.3x faster. The same as

    faregate router train --data routellm-mmlu.jsonl --data routellm-gsm8k.jsonl \
        --data routellm-mt-bench.jsonl --tiers small=mistralai/Mixtral-8x7B-Instruct-v0.1,\
frontier=gpt-4-1106-preview --target-quality 0.95 --embedding int8 \
        --out src/faregate/routing/data/default-router.npz

with the embeddings read from the benchmark cache instead of recomputed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))

from routing_common import CACHE, TIERS, load, lookup

from faregate.cache.embeddings import MODEL_NAME, Embedder
from faregate.routing.artifact import default_router_path, save_router
from faregate.routing.command import train_lines
from faregate.routing.train import train_router


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=default_router_path())
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--target-quality", type=float, default=0.95)
    parser.add_argument("--embedding", choices=["int8", "float32"], default="int8")
    args = parser.parse_args()
    int8 = args.embedding == "int8"
    embedder: list[Embedder] = []
    data = [load(name, args.cache, embedder=embedder, int8=int8) for name in ("mmlu", "gsm8k", "mt-bench")]
    # Categories blanked: they name benchmark subjects ("mmlu/anatomy"), which no request's feature name
    # will match, so the policy is calibrated on what the gateway will see (embedding + cheap features).
    rows = [dataclasses.replace(r, category="") for ds in data for r in ds.rows]
    router, report = train_router(
        rows,
        TIERS,
        lookup(data),
        target_quality=args.target_quality,
        embedding_model=f"{MODEL_NAME}-int8" if int8 else MODEL_NAME,
    )
    router.meta["training"]["data"] = [
        "lm-sys/RouteLLM routellm/evals mmlu, gsm8k, mt_bench (Apache-2.0), decontaminated"
    ]
    report["bytes"] = save_router(args.out, router)
    report["out"] = str(args.out)
    for line in train_lines(report):
        print(line)
    print(orjson.dumps(report["classifier"]).decode())


if __name__ == "__main__":
    main()
