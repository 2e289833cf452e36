"""Repetition counting: exact and near duplicates of earlier queries, per scope, in bounded memory."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from faregate.analyze.repetition import RepetitionCounter, normalise_query

DATA = Path(__file__).resolve().parents[2] / "../shared/data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared data not present")


def _jsonl(name: str) -> list[dict[str, object]]:
    with (DATA / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _shingles(text: str) -> set[str]:
    """Char 3-grams of the normalised words, computed independently of the module's fast path."""
    words = " ".join("".join(c if c.isalnum() or c == "_" else " " for c in normalise_query(text)).split())
    return {words[i : i + 3] for i in range(max(1, len(words) - 2))}


def _jaccard(a: str, b: str) -> float:
    x, y = _shingles(a), _shingles(b)
    return len(x & y) / len(x | y)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is my balance?", "what is my balance"),
        ("  what   is\tmy\nbalance ", "what is my balance"),
        ("WHAT IS MY BALANCE?!...", "what is my balance"),
        ("Is it 3.5%? Yes.", "is it 3.5%? yes"),  # inner punctuation is kept
        ("\uff21\uff22\uff23\u3000\uff44\uff45\uff46\uff1f", "abc def"),  # full-width forms (NFKC)
        ("Straße", "strasse"),  # case folding, not just lower()
        ("", ""),
        ("?!", ""),
    ],
)
def test_normalise_query(text: str, expected: str) -> None:
    assert normalise_query(text) == expected


def test_exact_near_and_new() -> None:
    c = RepetitionCounter()
    base = "How do I activate the new card I received in the mail yesterday"
    assert c.add("support", base) == "new"
    assert c.add("support", "how do I activate the new card I received in the mail yesterday?") == "exact"
    typo = "How do I activate the new card I recieved in the mail yesterday"
    assert _jaccard(base, typo) >= 0.8
    assert c.add("support", typo) == "near"
    assert c.add("support", "What is the exchange rate for euros today") == "new"
    summary = c.summary()
    assert summary == {
        "queries": 4,
        "exact_duplicates": 1,
        "near_duplicates": 1,
        "exact_duplicate_rate": 0.25,
        "near_duplicate_rate": 0.25,
    }


def test_near_means_similar_to_an_earlier_query_not_a_later_one() -> None:
    c = RepetitionCounter()
    assert c.add("s", "please show me the last five card transactions") == "new"
    assert c.add("s", "please show me the last five card transaction") == "near"
    # the first query stays "new" in the counts whatever comes after it
    assert c.summary()["near_duplicates"] == 1


def test_threshold_is_exact_jaccard_of_char_trigrams() -> None:
    a = "can you tell me how to change my pin number at an atm"
    below = "can you tell me how to change the pin number at the atm"
    above = "tell me how to change my pin number at an atm"
    assert 0.7 < _jaccard(a, below) < 0.8 < _jaccard(a, above)
    c = RepetitionCounter(near_threshold=0.8)
    c.add("s", a)
    assert c.add("s", below) == "new"
    c = RepetitionCounter(near_threshold=0.8)
    c.add("s", a)
    assert c.add("s", above) == "near"
    c = RepetitionCounter(near_threshold=0.7)
    c.add("s", a)
    assert c.add("s", below) == "near"
    # 1.0: only the same shingles, such as a difference in inner punctuation ("hi, there" / "hi there")
    c = RepetitionCounter(near_threshold=1.0)
    c.add("s", "hi, there: where is my card")
    assert c.add("s", "hi there where is my card") == "near"
    assert c.add("s", "hi there where is my cards") == "new"


def test_scopes_are_isolated() -> None:
    c = RepetitionCounter()
    assert c.add("billing", "cancel my subscription please") == "new"
    assert c.add("search", "cancel my subscription please") == "new"
    assert c.add("search", "Cancel my subscription please!") == "exact"
    assert c.add("chat", "cancel my subscriptions please") == "new"
    assert c.add("billing", "cancel my subscriptions please") == "near"


def test_empty_and_symbol_only_queries() -> None:
    c = RepetitionCounter()
    assert c.add("s", "") == "new"
    assert c.add("s", "   ") == "exact"  # both normalise to ""
    assert c.add("s", "!!!") == "exact"
    assert c.add("s", "ok") == "new"
    assert c.add("s", "OK.") == "exact"


def test_memory_is_bounded_and_the_least_recently_seen_is_forgotten() -> None:
    rng = random.Random(9)
    vocabulary = [f"{rng.choice('bcdfgklmnprstvz')}{rng.choice('aeiou')}{n}" for n in range(5000)]
    queries = [" ".join(rng.sample(vocabulary, 6)) for _ in range(1000)]  # unrelated to each other
    c = RepetitionCounter(max_tracked=100)
    for q in queries[:100]:
        assert c.add("s", q) == "new"
    assert len(c) == 100
    assert c.add("s", queries[0]) == "exact"  # refreshes queries[0]
    assert c.add("s", "a completely different question about loans") == "new"  # evicts queries[1]
    assert len(c) == 100
    assert c.add("s", queries[0]) == "exact"
    assert c.add("s", queries[1]) == "new"  # it was forgotten; remembered again now
    for q in queries[100:]:
        c.add(f"scope{len(q) % 3}", q)
        assert len(c) <= 100
    assert len(c) == 100
    # forgotten scopes leave nothing behind
    assert set(c._scopes) <= {"s", "scope0", "scope1", "scope2"}
    assert sum(state.size for state in c._scopes.values()) == 100


def test_eviction_keeps_buckets_consistent() -> None:
    rng = random.Random(5)
    words = ["card", "cash", "atm", "pin", "transfer", "fee", "refund", "euro", "dollar", "account", "app"]
    c = RepetitionCounter(max_tracked=50)
    for _ in range(3000):
        c.add(rng.choice("ab"), " ".join(rng.choices(words, k=rng.randrange(3, 9))))
    live = set(c._entries)
    assert len(live) == 50
    for state in c._scopes.values():
        assert set(state.exact.values()) <= live
        for ids in state.buckets.values():
            assert set([ids] if isinstance(ids, int) else ids) <= live


def test_same_stream_same_counts() -> None:
    rng = random.Random(2)
    stream = [(rng.choice("xyz"), f"order {rng.randrange(40)} has not arrived yet") for _ in range(500)]
    a, b = RepetitionCounter(), RepetitionCounter()
    for scope, q in stream:
        assert a.add(scope, q) == b.add(scope, q)
    assert a.summary() == b.summary()


@pytest.mark.parametrize(("threshold", "max_tracked"), [(0.0, 10), (1.5, 10), (0.8, 0)])
def test_invalid_arguments(threshold: float, max_tracked: int) -> None:
    with pytest.raises(ValueError):
        RepetitionCounter(near_threshold=threshold, max_tracked=max_tracked)


@needs_data
def test_paraphrase_pairs_are_near_only_when_lexically_close() -> None:
    # gptcache pairs are all duplicates, but most are rewordings a lexical detector cannot see: the
    # detector must find every pair whose trigram Jaccard reaches the threshold, and only those
    pairs = _jsonl("semantic-cache/gptcache-mock-pairs.jsonl")
    labels = {"near": 0, "exact": 0, "new": 0}
    for i, pair in enumerate(pairs):
        a, b = str(pair["a"]), str(pair["b"])
        c = RepetitionCounter()
        c.add(f"p{i}", a)
        label = c.add(f"p{i}", b)
        labels[label] += 1
        if label == "near":
            assert _jaccard(a, b) >= 0.8
        elif label == "new":
            assert _jaccard(a, b) < 0.8 or normalise_query(a) == normalise_query(b)
    assert labels["near"] + labels["exact"] == 32  # 3.2% of 999, as the module docstring says


@needs_data
def test_queries_of_different_intents_are_not_near_duplicates() -> None:
    rows = _jsonl("semantic-cache/banking77-test.jsonl")
    by_intent: dict[str, list[str]] = {}
    for row in rows:
        by_intent.setdefault(str(row["intent"]), []).append(str(row["text"]))
    rng = random.Random(0)
    flagged = 0
    for _ in range(40):
        c = RepetitionCounter()
        for texts in by_intent.values():
            flagged += c.add("bank", rng.choice(texts)) != "new"
    assert flagged == 0


def _typo(rng: random.Random, text: str) -> str:
    words = text.split()
    long_words = [i for i, w in enumerate(words) if len(w) > 3]
    if not long_words:
        return text + " please"
    i = rng.choice(long_words)
    w = words[i]
    j = rng.randrange(1, len(w) - 1)
    words[i] = w[:j] + w[j + 1 :] if rng.random() < 0.5 else w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


@needs_data
def test_lsh_finds_nearly_all_pairs_above_the_threshold() -> None:
    rng = random.Random(4)
    texts = [str(r["text"]) for r in _jsonl("semantic-cache/banking77-train.jsonl")]
    reachable = found = 0
    for text in rng.sample(texts, 1500):
        variant = _typo(rng, text)
        if normalise_query(variant) == normalise_query(text) or _jaccard(text, variant) < 0.8:
            continue
        reachable += 1
        c = RepetitionCounter()
        c.add("s", text)
        found += c.add("s", variant) == "near"
    assert reachable > 500
    assert found / reachable >= 0.97  # 98% by design at exactly the threshold, more above it


@needs_data
def test_a_hundred_thousand_queries_stream_in_seconds() -> None:
    rng = random.Random(0)
    texts = [str(r["text"]) for r in _jsonl("semantic-cache/banking77-train.jsonl")]
    texts += [str(r["text"]) for r in _jsonl("semantic-cache/clinc150-train.jsonl")]
    weights = [1 / (i + 1) ** 1.1 for i in range(len(texts))]
    stream = []
    for text in rng.choices(texts, weights=weights, k=100_000):
        if rng.random() < 0.1:
            text = _typo(rng, text)
        stream.append((f"feature{rng.randrange(5)}", text))
    c = RepetitionCounter()
    start = time.perf_counter()
    for scope, query in stream:
        c.add(scope, query)
    elapsed = time.perf_counter() - start
    summary = c.summary()
    assert summary["queries"] == 100_000
    assert 0 < summary["near_duplicates"] < summary["exact_duplicates"]
    assert elapsed < 6.0, f"{elapsed:.2f} s"  # about 1.1 s on one core; generous for loaded CI runners
