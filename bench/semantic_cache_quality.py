"""Choose the semantic cache's default threshold on development data, then measure it on test data.

    .venv/bin/python bench/semantic_cache_quality.py [--write-docs] [--json FILE]

1. Development (the only data the choice sees), the stream protocol of `faregate cache eval`:
   - banking77: the train split cut per intent, 80% to warm the cache, the other 20% streamed
     (`HELD_OUT`, seed `SEED`);
   - CLINC150: warmed with train, the validation split streamed.
   The default threshold is the lowest of the sweep (0.70 ... 0.99 by 0.01, guards on) at which
   *both* dev streams reach `TARGET` precision, and still do at the next `CONFIRM` thresholds (so a
   lucky dip cannot pick it).
2. Test, at that threshold, guards on, through the gateway's index with timed lookups:
   - banking77: warmed with all of train, test streamed: precision (goal >= 0.97), hit rate;
   - CLINC150: warmed with train, test streamed: precision, and out-of-scope queries that hit
     anything, as a share of out-of-scope queries (goal <= 1%);
   - pairs it was not tuned on: bench/data/clinc150-test-pairs.jsonl (bench/build_pairs.py) for
     precision and recall (goal: precision >= 0.95 at recall >= 0.40), and GPTCache's mock pairs
     (all duplicates) for recall, then again as GPTCache's own benchmark runs them: every `a` in one
     cache, every `b` looked up there; a hit is right only on its own pair's `a` (`shared_cache`),
     so a near-duplicate `a` of another pair is there to be hit by mistake.
   Guards-off numbers at the same threshold are shown beside, to say what the guards buy.

Streams are shuffled (seed `SEED`): the files are sorted by intent, and real traffic is not.
`--write-docs` replaces the "Measured quality" section of docs/semantic-cache.md. Embedding ~40,000
texts dominates the run time (about 3 minutes on two cores with the ONNX backend, 11 with NumPy).
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from faregate.cache import precision
from faregate.cache.embeddings import Embedder
from faregate.cache.evaluate import (
    DEFAULT_SWEEP,
    Pair,
    Policy,
    Query,
    embed_all,
    eval_pairs,
    eval_stream,
    sweep_stream,
)
from faregate.cache.report import read_pairs, read_stream

DATA = Path("/work/shared/data/semantic-cache")
HERE = Path(__file__).parent
DOCS = HERE.parent / "docs" / "semantic-cache.md"
TARGET = 0.97
HELD_OUT = 0.2
CONFIRM = 2  # the next thresholds of the sweep that must also meet the target
SEED = 0
START, END = "<!-- measured-quality:start -->", "<!-- measured-quality:end -->"


def shuffled(rows: Sequence[Query], seed: int = SEED) -> list[Query]:
    out = list(rows)
    random.Random(seed).shuffle(out)
    return out


def split_per_intent(
    rows: Sequence[Query], share: float, seed: int = SEED
) -> tuple[list[Query], list[Query]]:
    """(kept, held out): `share` of every intent's rows held out, chosen at random."""
    by_intent: dict[str, list[Query]] = defaultdict(list)
    for row in rows:
        by_intent[row.intent].append(row)
    rng = random.Random(seed)
    kept: list[Query] = []
    held: list[Query] = []
    for intent in sorted(by_intent):
        members = list(by_intent[intent])
        rng.shuffle(members)
        cut = round(len(members) * share)
        held += members[:cut]
        kept += members[cut:]
    return kept, shuffled(held, seed)


def shared_cache(pairs: Sequence[Pair]) -> tuple[list[Query], list[Query]]:
    """(warm, stream): each distinct `a` stored once under its own label, each `b` streamed with it."""
    labels: dict[str, str] = {}
    for pair in pairs:
        labels.setdefault(pair.a, f"pair-{len(labels)}")
    warm = [Query(a, label) for a, label in labels.items()]
    return warm, [Query(pair.b, labels[pair.a]) for pair in pairs]


class Vectors:
    """Every text embedded once, whatever split it turns up in."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.memo: dict[str, np.ndarray] = {}

    def of(self, rows: Sequence[Query]) -> np.ndarray:
        todo = sorted({r.text for r in rows} - self.memo.keys())
        if todo:
            for text, vector in zip(todo, embed_all(self.embedder, todo, None, ""), strict=True):
                self.memo[text] = vector
        return np.stack([self.memo[r.text] for r in rows])


def sweep(vectors: Vectors, warm: list[Query], stream: list[Query], guards: bool) -> list[dict[str, Any]]:
    tallies = sweep_stream(warm, stream, vectors.of(warm), vectors.of(stream), guards, DEFAULT_SWEEP)
    return [t.row(stream=True) for t in tallies]


def choose(dev: dict[str, list[dict[str, Any]]]) -> float | None:
    """The lowest threshold at which every dev stream meets TARGET, and still does `CONFIRM` steps up.

    The confirmation keeps a lucky dip from being chosen; it does not ask every higher threshold to
    meet the target, because at the top of the sweep a handful of hits remain and one mislabelled
    pair of identical texts moves precision by whole points.
    """
    ok = [all(r[i]["precision"] is not None and r[i]["precision"] >= TARGET for r in dev.values())
          for i in range(len(DEFAULT_SWEEP))]  # fmt: skip
    for i, threshold in enumerate(DEFAULT_SWEEP):
        if all(ok[i : i + CONFIRM + 1]) and i + CONFIRM < len(DEFAULT_SWEEP):
            return threshold
    return None


def at(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    return next(r for r in rows if abs(r["threshold"] - threshold) < 1e-9)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write-docs", action="store_true", help="update docs/semantic-cache.md")
    parser.add_argument("--json", type=Path, help="also write every number here")
    args = parser.parse_args()
    started = time.time()
    embedder = Embedder.load()
    vectors = Vectors(embedder)
    banking_train = read_stream(DATA / "banking77-train.jsonl")
    banking_test = shuffled(read_stream(DATA / "banking77-test.jsonl"))
    clinc_train = read_stream(DATA / "clinc150-train.jsonl")
    clinc_val = shuffled(read_stream(DATA / "clinc150-val.jsonl"))
    clinc_test = shuffled(read_stream(DATA / "clinc150-test.jsonl"))
    banking_warm, banking_held = split_per_intent(banking_train, HELD_OUT)

    # 1. development: choose
    dev = {
        "banking77 train 80% → 20%": sweep(vectors, banking_warm, banking_held, guards=True),
        "clinc150 train → val": sweep(vectors, clinc_train, clinc_val, guards=True),
    }
    dev_off = {
        "banking77 train 80% → 20%": sweep(vectors, banking_warm, banking_held, guards=False),
        "clinc150 train → val": sweep(vectors, clinc_train, clinc_val, guards=False),
    }
    chosen = choose(dev)
    print(f"development sweep (guards on / off), precision at each threshold, target {TARGET:.0%}:")
    print("threshold  " + "  ".join(f"{name:>38}" for name in dev))
    for i, threshold in enumerate(DEFAULT_SWEEP):
        cells = [
            f"{pct(dev[n][i]['precision']):>7} / {pct(dev_off[n][i]['precision']):>7} "
            f"hit {pct(dev[n][i]['hit_rate']):>6}"
            for n in dev
        ]
        print(f"{threshold:9.2f}  " + "  ".join(f"{c:>38}" for c in cells))
    if chosen is None:
        raise SystemExit(f"no threshold of the sweep reaches {TARGET:.0%} precision on the dev streams")
    print(
        f"\nchosen on development data: {chosen:.2f} (DEFAULT_THRESHOLD is {precision.DEFAULT_THRESHOLD:.2f})"
    )
    if abs(chosen - precision.DEFAULT_THRESHOLD) > 1e-9:
        print("  DEFAULT_THRESHOLD differs from the choice: set it, then run this again")
    policy = Policy(chosen, guards=True)

    # 2. test: report
    banking = eval_stream(
        embedder, banking_test, banking_train, policy, DEFAULT_SWEEP, None, vectors.of(banking_train)
    )
    clinc = eval_stream(
        embedder, clinc_test, clinc_train, policy, DEFAULT_SWEEP, None, vectors.of(clinc_train)
    )
    banking_off = at(sweep(vectors, banking_train, banking_test, guards=False), chosen)
    clinc_off = at(sweep(vectors, clinc_train, clinc_test, guards=False), chosen)
    pairs_file = HERE / "data" / "clinc150-test-pairs.jsonl"
    clinc_pairs: list[Pair] = read_pairs(pairs_file)
    pairs = eval_pairs(embedder, clinc_pairs, policy)
    pairs_off = eval_pairs(embedder, clinc_pairs, Policy(chosen, guards=False), ())
    gptcache_pairs: list[Pair] = read_pairs(DATA / "gptcache-mock-pairs.jsonl")
    gptcache = eval_pairs(embedder, gptcache_pairs, policy)
    shared_warm, shared_stream = shared_cache(gptcache_pairs)
    shared = eval_stream(
        embedder, shared_stream, shared_warm, policy, DEFAULT_SWEEP, None, vectors.of(shared_warm)
    )
    shared_off = at(sweep(vectors, shared_warm, shared_stream, guards=False), chosen)
    results = {
        "target_precision": TARGET,
        "chosen_threshold": chosen,
        "development": {"guards_on": dev, "guards_off": dev_off},
        "test": {
            "banking77_stream": banking,
            "banking77_stream_guards_off": banking_off,
            "clinc150_stream": clinc,
            "clinc150_stream_guards_off": clinc_off,
            "clinc150_test_pairs": pairs,
            "clinc150_test_pairs_guards_off": {k: v for k, v in pairs_off.items() if k != "sweep"},
            "gptcache_mock_pairs": gptcache,
            "gptcache_mock_pairs_shared_cache": shared,
            "gptcache_mock_pairs_shared_cache_guards_off": shared_off,
        },
        "seconds": round(time.time() - started, 1),
    }
    table = render(results)
    print("\n" + table)
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    if args.write_docs:
        write_docs(table)
        print(f"updated {DOCS}")


def render(results: dict[str, Any]) -> str:
    t = results["test"]
    b, c, p, g = (
        t["banking77_stream"],
        t["clinc150_stream"],
        t["clinc150_test_pairs"],
        t["gptcache_mock_pairs"],
    )
    bo, co, po = (
        t["banking77_stream_guards_off"],
        t["clinc150_stream_guards_off"],
        t["clinc150_test_pairs_guards_off"],
    )
    s, so = t["gptcache_mock_pairs_shared_cache"], t["gptcache_mock_pairs_shared_cache_guards_off"]
    oos_goal = "met" if c["oos_hit_rate"] is not None and c["oos_hit_rate"] <= 0.01 else "**not met**"

    def goal(ok: bool) -> str:
        return "met" if ok else "**not met**"

    rows = [
        "| test data (never used to choose) | measure | guards on | guards off | goal |",
        "|---|---|---|---|---|",
        f"| banking77 stream: warm train ({b['warm']:,}), stream test ({b['queries']:,}) | precision "
        f"| {pct(b['precision'])} | {pct(bo['precision'])} | ≥ 97%: {goal((b['precision'] or 0) >= 0.97)} |",
        f"| | hit rate | {pct(b['hit_rate'])} | {pct(bo['hit_rate'])} | |",
        f"| | lookup p50 / p99 (embedding included) | {b['latency_ms']['p50']:.1f} / "
        f"{b['latency_ms']['p99']:.1f} ms | | |",
        f"| CLINC150 stream: warm train ({c['warm']:,}), stream test ({c['queries']:,}) | precision "
        f"| {pct(c['precision'])} | {pct(co['precision'])} | |",
        f"| | hit rate | {pct(c['hit_rate'])} | {pct(co['hit_rate'])} | |",
        f"| | out-of-scope queries that hit ({c['oos_hits']} of {c['oos_queries']:,}; "
        f"{c['oos_hits_in_scope']} on an in-scope entry) "
        f"| {pct(c['oos_hit_rate'])} | {pct(co['oos_hit_rate'])} | ≤ 1%: {oos_goal} |",
        f"| CLINC150 test pairs ({p['pairs']:,}, {p['duplicates']:,} duplicates) | precision "
        f"| {pct(p['precision'])} | {pct(po['precision'])} | ≥ 95%: {goal((p['precision'] or 0) >= 0.95)} |",
        f"| | recall | {pct(p['recall'])} | {pct(po['recall'])} "
        f"| ≥ 40%: {goal((p['recall'] or 0) >= 0.40)} |",
        f"| GPTCache mock pairs ({g['pairs']:,}, all duplicates) | recall | {pct(g['recall'])} | | |",
        f"| GPTCache mock pairs in one cache: {s['warm']:,} `a` stored, {s['queries']:,} `b` looked up "
        f"| precision | {pct(s['precision'])} | {pct(so['precision'])} "
        f"| ≥ 95%: {goal((s['precision'] or 0) >= 0.95)} |",
        f"| | recall | {pct(s['recall'])} | {pct(so['recall'])} "
        f"| ≥ 40%: {goal((s['recall'] or 0) >= 0.40)} |",
    ]
    chosen = results["chosen_threshold"]
    dev_rows = [
        "| development data (used to choose) | precision | hit rate | recall | out-of-scope hits |",
        "|---|---|---|---|---|",
    ]
    for name, sweep_rows in results["development"]["guards_on"].items():
        r = at(sweep_rows, chosen)
        dev_rows.append(
            f"| {name} | {pct(r['precision'])} | {pct(r['hit_rate'])} | {pct(r['recall'])} "
            f"| {pct(r['oos_hit_rate'])} |"
        )
    return (
        f"Threshold {chosen:.2f}, chosen on development data (target precision "
        f"{results['target_precision']:.0%}, guards on); measured in {results['seconds']:.0f} s.\n\n"
        + "\n".join(dev_rows)
        + "\n\n"
        + "\n".join(rows)
    )


def write_docs(table: str) -> None:
    text = DOCS.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOCS.write_text(f"{head}{START}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main()
