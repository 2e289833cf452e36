"""Build paraphrase pairs from an intent data set: bench/data/clinc150-test-pairs.jsonl by default.

The semantic cache's threshold is chosen on development streams (bench/semantic_cache_quality.py);
these pairs come from CLINC150's *test* split, which the choice never saw, to check the policy on
pairs it was not tuned on. Three kinds, from the in-scope queries (150 intents, 30 each) and the
out-of-scope ones:

- positives (duplicate: true): two distinct queries of the same intent, `PER_INTENT` random pairs
  per intent;
- hard negatives (false): `PER_INTENT` random anchor queries per intent, each paired with the most
  similar query (all-MiniLM-L6-v2 cosine, the cache's own embedder) of a *different* intent, which
  is stored (`a`) while the anchor is looked up (`b`);
- out-of-scope negatives (false): every `oos` query (`b`) paired with its most similar in-scope
  query (`a`): what an out-of-scope question would meet in a cache full of in-scope answers.

Same-intent is the data set's notion of "the same question": for intents with a slot (translate X,
the weather in Y) two queries of one intent may still want different answers, so precision on the
positives is, if anything, generous to the cache. Deterministic: `--seed` fixes every random choice;
pairs repeated in either order are written once. Prints the counts.

    .venv/bin/python bench/build_pairs.py [--source FILE] [--out FILE] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson

from faregate.cache.embeddings import Embedder
from faregate.cache.evaluate import OOS, Query
from faregate.cache.report import read_stream

DATA = Path("/work/shared/data/semantic-cache")
HERE = Path(__file__).parent
PER_INTENT = 5


def build(queries: list[Query], vectors: np.ndarray, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    by_intent: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(queries):
        by_intent[q.intent].append(i)
    in_scope = np.array([q.intent != OOS for q in queries])
    intents = np.array([q.intent for q in queries])
    seen: set[frozenset[str]] = set()
    pairs: list[dict[str, object]] = []

    def add(a: int, b: int, duplicate: bool) -> None:
        key = frozenset((queries[a].text, queries[b].text))
        if len(key) == 2 and key not in seen:
            seen.add(key)
            pairs.append({"a": queries[a].text, "b": queries[b].text, "duplicate": duplicate})

    for intent in sorted(i for i in by_intent if i != OOS):
        members = by_intent[intent]
        chosen: set[tuple[int, int]] = set()
        while len(chosen) < PER_INTENT:
            a, b = sorted(rng.sample(members, 2))
            chosen.add((a, b))
        for a, b in sorted(chosen):
            add(a, b, True)
        for anchor in rng.sample(members, PER_INTENT):
            scores = np.where(in_scope & (intents != intent), vectors @ vectors[anchor], -np.inf)
            add(int(np.argmax(scores)), anchor, False)
    for oos in by_intent.get(OOS, []):
        scores = np.where(in_scope, vectors @ vectors[oos], -np.inf)
        add(int(np.argmax(scores)), oos, False)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DATA / "clinc150-test.jsonl")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "clinc150-test-pairs.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    queries = read_stream(args.source)
    vectors = Embedder.load().embed([q.text for q in queries])
    pairs = build(queries, vectors, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in pairs))
    oos_texts = {q.text for q in queries if q.intent == OOS}
    positives = sum(1 for p in pairs if p["duplicate"])
    oos = sum(1 for p in pairs if p["b"] in oos_texts)
    print(
        f"wrote {len(pairs)} pairs to {args.out}: {positives} positives, "
        f"{len(pairs) - positives - oos} hard negatives, {oos} out-of-scope negatives (seed {args.seed})"
    )


if __name__ == "__main__":
    main()
