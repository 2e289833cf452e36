"""`faregate.cache.evaluate` and its input files, on hand-made cases whose outcome is certain.

Certain means: identical texts have cosine 1.0 (a hit at any threshold), unrelated texts fall far
below the lowest threshold of the sweep (checked, not assumed), and a number that differs is refused
by the guards whatever the similarity. The sweep's replay is also checked against a brute-force
reimplementation on synthetic vectors built to exercise its shortcuts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faregate.cache import evaluate
from faregate.cache.embeddings import Embedder
from faregate.cache.evaluate import (
    CANDIDATES,
    DEFAULT_SWEEP,
    Pair,
    Policy,
    Query,
    decide,
    eval_pairs,
    eval_stream,
    sweep_stream,
)
from faregate.cache.precision import DEFAULT_THRESHOLD
from faregate.cache.report import BadInput, policy_for, read_pairs, read_stream
from faregate.config import Config

PASSWORD = "How do I reset my password?"
WEATHER = "What will the weather be like in Paris tomorrow?"
JOKE = "Tell me a joke about penguins"
FIFTY = "Transfer 50 dollars to my savings account"
SIXTY = "Transfer 60 dollars to my savings account"
DECLINED = "Why was my card declined?"
NOT_DECLINED = "Why was my card not declined?"
DECLINED_REASON = "What is the reason my card was declined?"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()


def cosine(embedder: Embedder, a: str, b: str) -> float:
    va, vb = embedder.embed([a, b])
    return float(va @ vb)


# --- reading files -------------------------------------------------------------------------------


def test_reads_pairs_and_streams_ignoring_blank_lines(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"a": "x", "b": "y", "duplicate": true}\n\n{"a": "p", "b": "q", "duplicate": false}\n')
    stream = tmp_path / "stream.jsonl"
    stream.write_text('{"text": "hi", "intent": "greet"}\n   \n')
    assert read_pairs(pairs) == [Pair("x", "y", True), Pair("p", "q", False)]
    assert read_stream(stream) == [Query("hi", "greet")]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "invalid JSON"),
        ('["a", "b"]', "not a JSON object"),
        ('{"a": "x", "b": "y"}', "duplicate"),
        ('{"a": "x", "b": "y", "duplicate": "yes"}', "duplicate"),
    ],
)
def test_a_malformed_line_is_refused_with_its_number(tmp_path: Path, line: str, says: str) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"a": "x", "b": "y", "duplicate": true}\n' + line + "\n")
    with pytest.raises(BadInput) as info:
        read_pairs(path)
    assert f"{path}:2:" in str(info.value) and says in str(info.value)
    assert "1 malformed line" in str(info.value)


def test_every_bad_line_is_counted_and_a_few_are_shown(tmp_path: Path) -> None:
    path = tmp_path / "stream.jsonl"
    path.write_text("".join(f'{{"text": {i}}}\n' for i in range(8)))
    with pytest.raises(BadInput, match=r"8 malformed line\(s\)[\s\S]*and 3 more"):
        read_stream(path)


def test_missing_and_empty_files_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot read"):
        read_stream(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(BadInput, match="no rows"):
        read_stream(tmp_path / "empty.jsonl")


# --- the policy ----------------------------------------------------------------------------------


def test_policy_defaults_and_a_features_settings() -> None:
    assert policy_for(None, None) == Policy(DEFAULT_THRESHOLD, True)
    config = Config.model_validate(
        {
            "features": {
                "faq": {"semantic_cache": {"threshold": 0.93, "guards": False}},
                "chat": {"semantic_cache": True},
                "plain": {},
                "exact_only": {"semantic_cache": {"semantic": False}},
            }
        }
    )
    assert policy_for(config, "faq") == Policy(0.93, False)
    assert policy_for(config, "chat") == Policy(DEFAULT_THRESHOLD, True)
    for name in ("plain", "exact_only", "unknown"):
        with pytest.raises(BadInput, match=name):
            policy_for(config, name)


def test_considers_as_many_candidates_as_the_gateway() -> None:
    from faregate.pipeline import cache

    assert cache.CANDIDATES == CANDIDATES


def test_decide_skips_refused_candidates_and_stops_under_the_threshold() -> None:
    stored = [SIXTY, "Transfer 70 dollars to my savings account", FIFTY, PASSWORD]
    near = [(0, 0.99), (1, 0.98), (2, 0.97), (3, 0.5)]
    assert decide(near, 0.9, True, stored, FIFTY) == 2  # the two nearest name other amounts
    assert decide(near, 0.9, False, stored, FIFTY) == 0
    assert decide(near, 0.975, True, stored, FIFTY) is None  # the right one is under the threshold
    five = [(0, 0.99), (1, 0.99), (0, 0.99), (1, 0.99), (2, 0.99)]
    assert decide(five, 0.9, True, stored, FIFTY) is None  # only CANDIDATES of them are looked at


# --- pairs ---------------------------------------------------------------------------------------


def test_pairs_identical_hit_unrelated_miss_and_guards_refuse_numbers(embedder: Embedder) -> None:
    assert cosine(embedder, PASSWORD, JOKE) < min(DEFAULT_SWEEP)
    number_sim = cosine(embedder, FIFTY, SIXTY)
    assert number_sim > 0.8  # close in meaning: only the guard tells them apart
    pairs = [Pair(PASSWORD, PASSWORD, True), Pair(PASSWORD, JOKE, False), Pair(FIFTY, SIXTY, False)]

    guarded = eval_pairs(embedder, pairs, Policy(0.8, guards=True))
    assert (guarded["pairs"], guarded["duplicates"], guarded["hits"]) == (3, 1, 1)
    assert guarded["precision"] == 1.0 and guarded["recall"] == 1.0
    assert guarded["hit_rate"] == pytest.approx(1 / 3)
    assert [row["threshold"] for row in guarded["sweep"]] == list(DEFAULT_SWEEP)
    assert all(row["hits"] == 1 and row["precision"] == 1.0 for row in guarded["sweep"])

    unguarded = eval_pairs(embedder, pairs, Policy(0.8, guards=False))
    assert unguarded["hits"] == 2 and unguarded["precision"] == 0.5 and unguarded["recall"] == 1.0
    above = [row for row in unguarded["sweep"] if row["threshold"] <= number_sim]
    assert above and all(row["precision"] == 0.5 for row in above)


def test_pairs_without_hits_have_no_precision(embedder: Embedder) -> None:
    report = eval_pairs(embedder, [Pair(PASSWORD, JOKE, True)], Policy(0.9), thresholds=(0.95,))
    assert report["hits"] == 0 and report["precision"] is None and report["recall"] == 0.0
    assert report["sweep"] == [
        {"threshold": 0.95, "precision": None, "recall": 0.0, "hit_rate": 0.0, "hits": 0}
    ]


# --- streams -------------------------------------------------------------------------------------


def test_stream_warms_hits_stores_misses_and_judges_by_intent(embedder: Embedder) -> None:
    texts = [PASSWORD, WEATHER, JOKE]
    vectors = embedder.embed(texts)
    assert (vectors @ vectors.T)[np.triu_indices(3, 1)].max() < min(DEFAULT_SWEEP)
    warm = [Query(PASSWORD, "reset")]
    stream = [
        Query(PASSWORD, "reset"),  # hits the warm entry: correct
        Query(WEATHER, "weather"),  # nothing like it yet: a miss, stored
        Query(WEATHER, "weather"),  # hits the entry the stream stored: correct
        Query(JOKE, "oos"),  # out of scope and unlike anything: a miss
        Query(PASSWORD, "account"),  # hits an entry of another intent: wrong
    ]
    report = eval_stream(embedder, stream, warm, Policy(0.95))
    assert (report["queries"], report["warm"], report["hits"]) == (5, 1, 3)
    assert report["precision"] == pytest.approx(2 / 3)
    assert report["hit_rate"] == pytest.approx(3 / 5)
    # answerable: in scope with its intent already stored (reset; weather the second time)
    assert report["recall"] == 1.0
    assert (report["oos_queries"], report["oos_hits"], report["oos_hit_rate"]) == (1, 0, 0.0)
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    for row in report["sweep"]:  # every similarity is 1.0 or far under the sweep: the same at each
        assert (row["hits"], row["precision"], row["oos_hit_rate"]) == (3, pytest.approx(2 / 3), 0.0)


def test_an_oos_query_that_hits_anything_counts_against_precision(embedder: Embedder) -> None:
    warm = [Query(PASSWORD, "reset")]
    stream = [Query(WEATHER, "oos"), Query(WEATHER, "oos"), Query(PASSWORD, "oos")]
    report = eval_stream(embedder, stream, warm, Policy(0.95), ())
    assert (report["hits"], report["precision"], report["recall"]) == (2, 0.0, None)
    assert (report["oos_hits"], report["oos_hits_in_scope"]) == (2, 1)  # on an oos entry, on "reset"
    assert report["oos_hit_rate"] == pytest.approx(2 / 3) and report["sweep"] == []


def test_a_refused_nearest_lets_the_next_candidate_answer(embedder: Embedder) -> None:
    refused, allowed = cosine(embedder, NOT_DECLINED, DECLINED), cosine(embedder, DECLINED_REASON, DECLINED)
    assert 0.95 < allowed < refused  # the nearest entry asks the opposite question
    warm = [Query(NOT_DECLINED, "not-declined"), Query(DECLINED_REASON, "declined")]
    stream = [Query(DECLINED, "declined")]
    guarded = eval_stream(embedder, stream, warm, Policy(0.95, guards=True), ())
    assert guarded["hits"] == 1 and guarded["precision"] == 1.0
    unguarded = eval_stream(embedder, stream, warm, Policy(0.95, guards=False), ())
    assert unguarded["hits"] == 1 and unguarded["precision"] == 0.0


def brute_force(warm: np.ndarray, queries: np.ndarray, n_warm: int, threshold: float) -> list[int | None]:
    """The stream protocol with a full scan per lookup: which key each query hit (None: stored)."""
    stored = list(range(n_warm))
    matrix = np.concatenate([warm, queries])
    hits: list[int | None] = []
    for j in range(len(queries)):
        scores = matrix[stored] @ queries[j]
        order = np.argsort(-scores, kind="stable")[:CANDIDATES]
        found = next((stored[i] for i in order if scores[i] >= threshold), None)
        hits.append(found)
        if found is None:
            stored.append(n_warm + j)
    return hits


def test_sweep_replay_matches_a_full_scan_per_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Warm entries far from their cluster's centre, stream queries close to it: most queries hit,
    so few are stored, and the neighbours the sweep keeps fill up with queries that were not stored:
    the case where it must fall back to a full scan."""
    rng = np.random.default_rng(7)
    n_warm, n = 40, 400
    centres = rng.standard_normal((6, 384))
    noise = np.concatenate([np.full(n_warm, 0.5), rng.uniform(0.05, 0.3, n - n_warm)])[:, None]
    points = centres[rng.integers(0, 6, n)] + rng.standard_normal((n, 384)) * noise
    points = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    words = ["".join(chr(97 + int(c)) for c in rng.integers(0, 26, 12)) for _ in range(n)]
    queries = [Query(f"qq {w}", f"c{i % 3}") for i, w in enumerate(words)]  # guards never refuse these
    warm, stream = queries[:n_warm], queries[n_warm:]
    fell_back = 0
    full_scan = evaluate._full_scan

    def counting(*args: Any) -> list[tuple[int, float]]:
        nonlocal fell_back
        fell_back += 1
        return full_scan(*args)

    monkeypatch.setattr(evaluate, "_full_scan", counting)
    rows = sweep_stream(warm, stream, points[:n_warm], points[n_warm:], True, (0.75, 0.85, 0.9, 0.95))
    assert fell_back > 0
    for tally in rows:
        hits = brute_force(points[:n_warm], points[n_warm:], n_warm, tally.threshold)
        assert tally.hits == sum(h is not None for h in hits)
        correct = sum(
            h is not None and queries[h].intent == q.intent for h, q in zip(hits, stream, strict=True)
        )
        assert tally.correct == correct
