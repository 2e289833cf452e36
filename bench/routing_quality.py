"""Router quality on RouteLLM's MMLU and GSM8K (and MT-Bench): cross-validated and cross-dataset APGR.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/routing_quality.py [--folds 5] [--seed 0]
        [--embedding float32|int8|train-float32-test-int8] [--json PATH] [--skip-no-feature]

1. K-fold cross-validation on each of MMLU and GSM8K (folds shuffled by ``--seed``): each fold trains a
   router with `faregate.routing.train.train_router`, exactly as `faregate router train` does (its own
   hyperparameters come from an inner cross-validation on the training folds only), then
   `faregate.routing.evaluate` measures it on the held-out fold. Reported: APGR per fold and their mean,
   the APGR of the pooled held-out scores, CPT(50%), CPT(80%), and quality / cost / frontier share at
   the policy calibrated to 95% of the frontier's quality.
   MMLU is reported twice: with the row's category passed as the request's feature name (what the
   gateway passes from X-FareGate-Feature) and without it (embedding and cheap features only).
2. Data never trained on: train on all of MMLU -> evaluate on GSM8K and MT-Bench; train on GSM8K ->
   MMLU and MT-Bench; train on MMLU + GSM8K -> MT-Bench.
3. Baselines through the same metric code and folds: random scores and prompt length (longer: frontier).

``--embedding`` says which MiniLM vectors the routers are trained and tested on: ``float32``
(``Embedder.load(None)``), ``int8`` (``Embedder.load(None, int8=True)``, both sides), or
``train-float32-test-int8`` (trained on float32 vectors, tested on int8 ones: a float32 router behind a
gateway that embeds with int8). The results go to bench/data/routing_quality.json for float32 and
bench/data/routing_quality-EMBEDDING.json otherwise, unless ``--json`` says where.

Embeddings are cached (see bench/routing_common.py); the first run spends ~3 minutes embedding MMLU.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).parent))

from routing_common import CACHE, TIERS, Dataset, load, lookup

from faregate.cache.embeddings import MODEL_NAME, Embedder
from faregate.routing.classifier import fold_ids
from faregate.routing.data import quality_matrix
from faregate.routing.evaluate import evaluate_router
from faregate.routing.features import cheap_features
from faregate.routing.metrics import apgr
from faregate.routing.train import train_router

HERE = Path(__file__).parent


def _baselines(ds: Dataset, idx: np.ndarray, seed: int) -> dict[str, float]:
    q = quality_matrix([ds.rows[i] for i in idx], TIERS)
    length = np.array([len(ds.rows[i].prompt) for i in idx], dtype=float)
    rng = np.random.default_rng(seed)
    return {
        "random": float(np.mean([apgr(rng.random(len(idx)), q[:, 0], q[:, 1]) for _ in range(20)])),
        "length": apgr(length, q[:, 0], q[:, 1]),
    }


def _gap_scores(router: Any, ds: Dataset, idx: np.ndarray, use_category: bool) -> np.ndarray:
    rows = [ds.rows[i] for i in idx]
    feats = np.stack([cheap_features(r.prompt, r.history_len) for r in rows])
    cats = [r.category if use_category else "" for r in rows]
    comps, _ = router.classifier.components(ds.emb[idx], feats, cats)
    return np.asarray(router.classifier.blended(comps)[:, 0])


EMBEDDINGS = {  # --embedding: (int8 vectors to train on, int8 vectors to test on)
    "float32": (False, False),
    "int8": (True, True),
    "train-float32-test-int8": (False, True),
}


def cross_validate(
    ds: Dataset, folds: int, seed: int, use_category: bool, test_ds: Dataset | None = None
) -> dict[str, Any]:
    """K-fold CV of ``ds``: trained on its embeddings, tested on ``test_ds``'s (the same rows embedded
    another way), or on its own when None."""
    test_ds = ds if test_ds is None else test_ds
    n = len(ds.rows)
    ids = fold_ids(n, folds, seed)
    rows = ds.rows if use_category else [dataclasses.replace(r, category="") for r in ds.rows]
    embed = lookup([ds])
    test_embed = lookup([test_ds])
    pooled = np.zeros(n)
    per_fold = []
    base: dict[str, list[float]] = {"random": [], "length": []}
    started = time.perf_counter()
    for fold in range(folds):
        te = np.flatnonzero(ids == fold)
        tr = np.flatnonzero(ids != fold)
        router, _ = train_router([rows[i] for i in tr], TIERS, embed, seed=seed)
        report = evaluate_router(router, [rows[i] for i in te], test_embed)
        pooled[te] = _gap_scores(router, test_ds, te, use_category)
        per_fold.append(
            {
                k: report[k]
                for k in (
                    "apgr",
                    "cpt50",
                    "cpt80",
                    "quality_vs_frontier",
                    "cost_vs_frontier",
                    "frontier_share",
                )
            }
        )
        for k, v in _baselines(ds, te, seed + fold).items():
            base[k].append(v)
        print(
            f"  {ds.name} fold {fold + 1}/{folds}: APGR {report['apgr']:.3f} "
            f"({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )
    q = quality_matrix(rows, TIERS)
    mean = {k: round(float(np.mean([f[k] for f in per_fold])), 4) for k in per_fold[0]}
    return {
        "data": ds.name,
        "feature_name": use_category,
        "folds": per_fold,
        "mean": mean,
        "pooled_apgr": round(apgr(pooled, q[:, 0], q[:, 1]), 4),
        "baselines_mean": {k: round(float(np.mean(v)), 4) for k, v in base.items()},
    }


def cross_dataset(train: list[Dataset], test: list[Dataset], seed: int) -> list[dict[str, Any]]:
    rows = [r for ds in train for r in ds.rows]
    router, _ = train_router(rows, TIERS, lookup(train), seed=seed)
    out = []
    for ds in test:
        report = evaluate_router(router, ds.rows, lookup([ds]))
        idx = np.arange(len(ds.rows))
        out.append(
            {
                "train": "+".join(d.name for d in train),
                "test": ds.name,
                "apgr": report["apgr"],
                "cpt50": report["cpt50"],
                "cpt80": report["cpt80"],
                "quality_vs_frontier": report["quality_vs_frontier"],
                "cost_vs_frontier": report["cost_vs_frontier"],
                "frontier_share": report["frontier_share"],
                "unsure_share": report["unsure_share"],
                "baselines": {k: round(v, 4) for k, v in _baselines(ds, idx, seed).items()},
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument(
        "--embedding",
        choices=list(EMBEDDINGS),
        default="float32",
        help="Which MiniLM vectors to train and test on (default float32).",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="Where to write the results (default bench/data/routing_quality[-EMBEDDING].json).",
    )
    parser.add_argument("--skip-no-feature", action="store_true", help="Skip MMLU without the feature name.")
    parser.add_argument("--skip-cross", action="store_true", help="Skip the cross-dataset runs.")
    parser.add_argument("--only", choices=["gsm8k", "mmlu"], help="Cross-validate this data set only.")
    args = parser.parse_args()

    if args.json is None:
        suffix = "" if args.embedding == "float32" else f"-{args.embedding}"
        args.json = HERE / "data" / f"routing_quality{suffix}.json"
    train_int8, test_int8 = EMBEDDINGS[args.embedding]
    names = ("mmlu", "gsm8k", "mt-bench")
    embedders: dict[bool, list[Embedder]] = {False: [], True: []}
    data = {name: load(name, args.cache, embedder=embedders[train_int8], int8=train_int8) for name in names}
    test = (
        data
        if test_int8 == train_int8
        else {name: load(name, args.cache, embedder=embedders[test_int8], int8=test_int8) for name in names}
    )
    results: dict[str, Any] = {
        "seed": args.seed,
        "folds": args.folds,
        "embedding": {
            "train": f"{MODEL_NAME}{'-int8' if train_int8 else ''}",
            "test": f"{MODEL_NAME}{'-int8' if test_int8 else ''}",
        },
        "cv": [],
        "cross": [],
    }
    runs = [("gsm8k", True), ("mmlu", True)]
    if not args.skip_no_feature:
        runs.append(("mmlu", False))
    runs = [r for r in runs if args.only in (None, r[0])]
    for name, use_category in runs:
        results["cv"].append(cross_validate(data[name], args.folds, args.seed, use_category, test[name]))
    if not args.skip_cross:
        results["cross"] += cross_dataset([data["mmlu"]], [test["gsm8k"], test["mt-bench"]], args.seed)
        results["cross"] += cross_dataset([data["gsm8k"]], [test["mmlu"], test["mt-bench"]], args.seed)
        results["cross"] += cross_dataset([data["mmlu"], data["gsm8k"]], [test["mt-bench"]], args.seed)

    emb = results["embedding"]
    print(
        f"\n{args.folds}-fold cross-validation (seed {args.seed}); policy at 95% of frontier quality; "
        f"trained on {emb['train']}, tested on {emb['test']} embeddings"
    )
    print(
        f"{'data':8} {'feature':8} {'APGR per fold':38} {'mean':>6} {'pooled':>7} {'CPT50':>6} {'CPT80':>6} "
        f"{'qual':>6} {'cost':>6} {'front':>6} | {'random':>6} {'length':>6}"
    )
    for r in results["cv"]:
        folds = " ".join(f"{f['apgr']:.3f}" for f in r["folds"])
        m = r["mean"]
        print(
            f"{r['data']:8} {'yes' if r['feature_name'] else 'no':8} {folds:38} {m['apgr']:6.3f} "
            f"{r['pooled_apgr']:7.3f} {m['cpt50']:6.3f} {m['cpt80']:6.3f} {m['quality_vs_frontier']:6.3f} "
            f"{m['cost_vs_frontier']:6.3f} {m['frontier_share']:6.3f} | {r['baselines_mean']['random']:6.3f} "
            f"{r['baselines_mean']['length']:6.3f}"
        )
    if results["cross"]:
        print("\ncross-dataset (never trained on the test data)")
        print(
            f"{'train':12} {'test':9} {'APGR':>6} {'CPT50':>6} {'CPT80':>6} {'qual':>6} {'cost':>6} "
            f"{'front':>6} {'unsure':>6} | {'random':>6} {'length':>6}"
        )
        for r in results["cross"]:
            print(
                f"{r['train']:12} {r['test']:9} {r['apgr']:6.3f} {r['cpt50']:6.3f} {r['cpt80']:6.3f} "
                f"{r['quality_vs_frontier']:6.3f} {r['cost_vs_frontier']:6.3f} {r['frontier_share']:6.3f} "
                f"{r['unsure_share']:6.3f} | {r['baselines']['random']:6.3f} {r['baselines']['length']:6.3f}"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
