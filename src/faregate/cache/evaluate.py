"""`faregate cache eval`: how often a semantic-cache policy hits, and how often its hits are right.

A threshold is a trade between hit rate and wrong answers, and the only honest way to set one is to
measure it on labelled queries before users meet it. Two protocols, both with the real embedder and
the gateway's own decision rule (`decide`: the nearest stored entries in order, the first at or above
the threshold that the guards let through, at most `CANDIDATES` of them):

- pairs (`{"a", "b", "duplicate"}`): each pair on its own: `a` stored, `b` looked up. A hit on a
  duplicate is correct. Precision = correct / hits, recall = correct / duplicates.
- stream (`{"text", "intent"}`): one cache, warmed with every line of a warm file, then each query
  looks up and, on a miss, is stored, as the gateway does. A hit is correct when the stored entry's
  intent equals the query's and is not `oos` (out of scope: it must match nothing). Recall = correct
  hits / "answerable" queries (in scope, with an entry of their intent already stored).

The configured policy runs through the gateway's index (`ScopedIndex`, HNSW past 4,096 entries) with
each lookup timed from text to decision, embedding included. The threshold sweep reuses those
embeddings and replays the decisions per threshold with exact nearest neighbours, so it costs a few
matrix products rather than one embedding pass per threshold; where HNSW misses a neighbour the two
can differ slightly at the same threshold.

Reading the files and printing the results live in `faregate.cache.report`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faregate.cache.embeddings import DIM, Embedder
from faregate.cache.entry import Vector
from faregate.cache.guards import refuse
from faregate.cache.index import ScopedIndex
from faregate.cache.precision import DEFAULT_THRESHOLD

CANDIDATES = 4  # as `faregate.pipeline.cache.CANDIDATES`: the nearest may be refused by a guard
OOS = "oos"
DEFAULT_SWEEP = tuple(round(0.70 + 0.01 * i, 2) for i in range(30))  # 0.70 ... 0.99
_TOP = 32  # exact neighbours kept per query for the sweep (a full scan when they run out)
_CHUNK = 256  # texts a progress step
_SCOPE = "eval"
HNSW_FROM = 4096  # as the SQLite store's index

F32 = npt.NDArray[np.float32]
Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    intent: str


@dataclass(frozen=True, slots=True)
class Policy:
    threshold: float = DEFAULT_THRESHOLD
    guards: bool = True


def decide(
    candidates: Iterable[tuple[int, float]], threshold: float, guards: bool, stored: Sequence[str], query: str
) -> int | None:
    """The gateway's rule: the first candidate (nearest first) above the threshold that no guard refuses."""
    for n, (key, similarity) in enumerate(candidates):
        if n >= CANDIDATES or similarity < threshold:
            break
        if guards and refuse(stored[key], query) is not None:
            continue
        return key
    return None


@dataclass(slots=True)
class Tally:
    """Counts for one threshold; the rates are None where their denominator is zero."""

    threshold: float
    lookups: int = 0
    hits: int = 0
    correct: int = 0
    positives: int = 0  # pairs: duplicates; stream: answerable queries
    oos: int = 0
    oos_hits: int = 0
    oos_hits_in_scope: int = 0  # out-of-scope queries answered with an in-scope entry's answer

    def row(self, stream: bool) -> dict[str, Any]:
        row: dict[str, Any] = {
            "threshold": self.threshold,
            "precision": self.correct / self.hits if self.hits else None,
            "recall": self.correct / self.positives if self.positives else None,
            "hit_rate": self.hits / self.lookups if self.lookups else None,
            "hits": self.hits,
        }
        if stream:
            row["oos_hit_rate"] = self.oos_hits / self.oos if self.oos else None
        return row


def embed_all(embedder: Embedder, texts: Sequence[str], progress: Progress | None, what: str) -> F32:
    """`Embedder.embed` in steps, so a long warm-up can show progress."""
    out = np.empty((len(texts), DIM), dtype=np.float32)
    for start in range(0, len(texts), _CHUNK):
        out[start : start + _CHUNK] = embedder.embed(texts[start : start + _CHUNK])
        if progress:
            progress(what, min(start + _CHUNK, len(texts)), len(texts))
    return out


def eval_pairs(
    embedder: Embedder,
    pairs: Sequence[Pair],
    policy: Policy,
    thresholds: Sequence[float] = DEFAULT_SWEEP,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Each pair alone: one stored entry, so the decision is its similarity and the guards."""
    stored = [p.a for p in pairs]
    va = embed_all(embedder, stored, progress, "embedding a")
    vb = embed_all(embedder, [p.b for p in pairs], progress, "embedding b")
    similarities = np.einsum("ij,ij->i", va, vb)
    tallies = [Tally(t) for t in (policy.threshold, *thresholds)]
    for i, pair in enumerate(pairs):
        candidate = [(i, float(similarities[i]))]
        for tally in tallies:
            tally.lookups += 1
            tally.positives += pair.duplicate
            if decide(candidate, tally.threshold, policy.guards, stored, pair.b) is not None:
                tally.hits += 1
                tally.correct += pair.duplicate
    main, *sweep = tallies
    return {
        "mode": "pairs",
        "pairs": len(pairs),
        "duplicates": main.positives,
        "threshold": policy.threshold,
        "guards": policy.guards,
        **{k: v for k, v in main.row(stream=False).items() if k != "threshold"},
        "sweep": [t.row(stream=False) for t in sweep],
    }


def eval_stream(
    embedder: Embedder,
    queries: Sequence[Query],
    warm: Sequence[Query],
    policy: Policy,
    thresholds: Sequence[float] = DEFAULT_SWEEP,
    progress: Progress | None = None,
    warm_vectors: F32 | None = None,
) -> dict[str, Any]:
    """Warm one cache, then look each query up and store it on a miss; the sweep replays the decisions."""
    entries = [*warm, *queries]
    texts = [e.text for e in entries]
    if warm_vectors is None:
        warm_vectors = embed_all(embedder, texts[: len(warm)], progress, "warming")
    # The gateway's index and promotion size; the graph is built in the foreground, so that every
    # lookup of a run sees the same structure (the gateway answers exactly while a graph builds).
    index = ScopedIndex(dim=DIM, hnsw_from=HNSW_FROM, background=False)
    index.add_many(_SCOPE, list(range(len(warm))), warm_vectors)
    vectors = np.empty((len(queries), DIM), dtype=np.float32)
    latencies: list[float] = []
    main = Tally(policy.threshold)
    stored_intents = {e.intent for e in warm}
    for j, query in enumerate(queries):
        key = len(warm) + j
        started = time.perf_counter()
        vector = embedder.embed_one(query.text)
        found = decide(
            index.search(_SCOPE, vector, CANDIDATES), policy.threshold, policy.guards, texts, query.text
        )
        latencies.append((time.perf_counter() - started) * 1000)
        vectors[j] = vector
        _count(main, query, None if found is None else entries[found].intent, stored_intents)
        if found is None:
            index.add(_SCOPE, key, vector)
            stored_intents.add(query.intent)
        if progress and ((j + 1) % 64 == 0 or j + 1 == len(queries)):
            progress("lookups", j + 1, len(queries))
    index.close()
    sweep = sweep_stream(warm, queries, warm_vectors, vectors, policy.guards, thresholds, progress)
    p50, p99 = np.percentile(latencies, [50, 99]).tolist()
    return {
        "mode": "stream",
        "queries": len(queries),
        "warm": len(warm),
        "threshold": policy.threshold,
        "guards": policy.guards,
        **{k: v for k, v in main.row(stream=True).items() if k != "threshold"},
        "oos_queries": main.oos,
        "oos_hits": main.oos_hits,
        "oos_hits_in_scope": main.oos_hits_in_scope,
        "latency_ms": {"p50": round(p50, 3), "p99": round(p99, 3)},
        "sweep": [t.row(stream=True) for t in sweep],
    }


def _count(tally: Tally, query: Query, hit_intent: str | None, stored_intents: set[str]) -> None:
    tally.lookups += 1
    in_scope = query.intent != OOS
    tally.positives += in_scope and query.intent in stored_intents
    tally.oos += not in_scope
    if hit_intent is not None:
        tally.hits += 1
        tally.correct += in_scope and hit_intent == query.intent
        tally.oos_hits += not in_scope
        tally.oos_hits_in_scope += not in_scope and hit_intent != OOS


def sweep_stream(
    warm: Sequence[Query],
    queries: Sequence[Query],
    warm_vectors: F32,
    vectors: F32,
    guards: bool,
    thresholds: Sequence[float],
    progress: Progress | None = None,
) -> list[Tally]:
    """The stream protocol replayed per threshold with exact neighbours, from embeddings made once.

    Which queries get stored depends on the threshold (a miss is stored), so each threshold is a
    replay of its own; the nearest neighbours above the lowest threshold are found once for all.
    """
    if not thresholds:
        return []
    entries, n_warm = [*warm, *queries], len(warm)
    floor = min(thresholds)
    keys, sims = _nearest(warm_vectors, vectors, floor, progress)
    texts = [e.text for e in entries]
    tallies = []
    for step, threshold in enumerate(thresholds):
        tally = Tally(threshold)
        stored = np.zeros(len(vectors), dtype=bool)
        stored_intents = {e.intent for e in entries[:n_warm]}
        for j in range(len(vectors)):
            row = [(int(k), float(s)) for k, s in zip(keys[j], sims[j], strict=True) if k >= 0]
            candidates = [(k, s) for k, s in row if k < n_warm or stored[k - n_warm]]
            if len(row) == _TOP and len(candidates) < CANDIDATES and row[-1][1] >= threshold:
                candidates = _full_scan(warm_vectors, vectors, stored, j, threshold)
            found = decide(candidates, threshold, guards, texts, texts[n_warm + j])
            query = entries[n_warm + j]
            _count(tally, query, None if found is None else entries[found].intent, stored_intents)
            if found is None:
                stored[j] = True
                stored_intents.add(query.intent)
        tallies.append(tally)
        if progress:
            progress("sweep", step + 1, len(thresholds))
    return tallies


def _nearest(warm: F32, queries: F32, floor: float, progress: Progress | None) -> tuple[Any, Any]:
    """Per query, the `_TOP` most similar warm entries and earlier queries at or above `floor`, nearest first.

    Keys number warm entries first, then queries; -1 pads a row.
    """
    n_warm, n = len(warm), len(queries)
    keys = np.full((n, _TOP), -1, dtype=np.int64)
    sims = np.full((n, _TOP), -np.inf, dtype=np.float32)
    for start in range(0, n, _CHUNK):
        block = queries[start : start + _CHUNK]
        scores = np.concatenate([block @ warm.T, block @ queries.T], axis=1)
        rows = np.arange(len(block))[:, None]
        later = np.arange(n)[None, :] >= (start + rows)  # a query only meets the ones before it
        scores[:, n_warm:][later] = -np.inf
        width = min(_TOP, scores.shape[1])
        top = np.argpartition(-scores, width - 1, axis=1)[:, :width]
        top_sims = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        top, top_sims = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sims, order, axis=1)
        top[top_sims < floor] = -1
        keys[start : start + len(block), :width] = top
        sims[start : start + len(block), :width] = top_sims
        if progress:
            progress("neighbours", min(start + _CHUNK, n), n)
    return keys, sims


def _full_scan(warm: F32, queries: F32, stored: Any, j: int, threshold: float) -> list[tuple[int, float]]:
    """The exact `CANDIDATES` nearest stored entries for query j (when its kept neighbours ran out)."""
    vector: Vector = queries[j]
    scores = np.concatenate([warm @ vector, np.where(stored[:j], queries[:j] @ vector, -np.inf)])
    top = np.argsort(-scores, kind="stable")[:CANDIDATES]
    return [(int(k), float(scores[k])) for k in top if scores[k] >= threshold]
