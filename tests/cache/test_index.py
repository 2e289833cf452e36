"""ScopedIndex: exact answers for small scopes, high recall for HNSW scopes, and scopes that never mix."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from faregate.cache.index import ScopedIndex

DIM = 384


def unit(x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    return out


def random_units(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    return unit(rng.standard_normal((n, DIM)))


def clustered_units(rng: np.random.Generator, n: int, per_cluster: int = 50) -> npt.NDArray[np.float32]:
    """Tight clusters (cosine ~0.87 inside one): many paraphrases of the same few questions."""
    centers = random_units(rng, -(-n // per_cluster))
    return unit(np.repeat(centers, per_cluster, axis=0)[:n] + rng.standard_normal((n, DIM)) * 0.02)


def near(rng: np.random.Generator, vectors: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
    """Queries that paraphrase stored vectors (cosine ~0.86 to their source)."""
    src = vectors[rng.integers(0, len(vectors), n)]
    return unit(src + rng.standard_normal((n, DIM)) * 0.03)


def assert_top(got: list[tuple[int, float]], key: int, tol: float) -> None:
    """`got` holds one answer, `key`, with the cosine of a vector to itself."""
    assert [k for k, _ in got] == [key]
    assert got[0][1] == pytest.approx(1.0, abs=tol)


@pytest.fixture
def index() -> Iterator[ScopedIndex]:
    ix = ScopedIndex(DIM, hnsw_from=64, background=False)
    yield ix
    ix.close()


def test_exact_search_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    ix = ScopedIndex(DIM)
    data = np.vstack([random_units(rng, 1000), clustered_units(rng, 1000)])
    keys = rng.integers(0, 2**63 - 1, size=len(data), dtype=np.int64)  # entry ids are 63-bit
    assert len(set(keys.tolist())) == len(keys)
    for key, v in zip(keys, data, strict=True):
        ix.add("s", int(key), v)
    for v in random_units(rng, 5):
        ix.add("other", int(rng.integers(2**62)), v)
    assert not ix.is_hnsw("s")
    for q in np.vstack([random_units(rng, 20), near(rng, data, 20)]):
        truth = data.astype(np.float64) @ q.astype(np.float64)
        best = np.argsort(-truth)[:10]
        got = ix.search("s", q, k=10)
        assert [key for key, _ in got] == [int(keys[i]) for i in best]
        assert [score for _, score in got] == pytest.approx(truth[best].tolist(), abs=1e-5)


def test_scopes_never_mix() -> None:
    rng = np.random.default_rng(2)
    ix = ScopedIndex(DIM)
    v = random_units(rng, 1)[0]
    ix.add("a", 1, v)
    ix.add("b", 2, random_units(rng, 1)[0])
    assert [key for key, _ in ix.search("b", v, k=4)] == [2]  # never a's identical vector
    assert_top(ix.search("a", v), 1, 1e-6)
    assert ix.search("unknown", v) == []
    assert len(ix) == 2


def test_remove_and_replace_in_exact_mode() -> None:
    rng = np.random.default_rng(3)
    ix = ScopedIndex(DIM)
    data = random_units(rng, 10)
    for key, v in enumerate(data):
        ix.add("s", key, v)
    ix.remove("s", 0)  # the last row moves into row 0: its key must still find its vector
    ix.remove("s", 99)  # unknown keys and scopes are ignored
    ix.remove("nope", 1)
    assert_top(ix.search("s", data[9], k=1), 9, 1e-6)
    assert 0 not in [key for key, _ in ix.search("s", data[0], k=10)]
    ix.add("s", 5, data[0])  # replacing keeps one vector per key
    assert_top(ix.search("s", data[0], k=1), 5, 1e-6)
    assert len(ix) == 9 and ix.scope_size("s") == 9
    for key in range(1, 10):
        ix.remove("s", key)
    assert len(ix) == 0 and ix.search("s", data[1]) == []


def test_hnsw_mode_supports_add_remove_replace(index: ScopedIndex) -> None:
    rng = np.random.default_rng(4)
    data = random_units(rng, 200)
    for key, v in enumerate(data):
        index.add("s", key, v)
    assert index.is_hnsw("s") and index.scope_size("s") == 200
    assert_top(index.search("s", data[150], k=1), 150, 1e-5)
    for key in range(0, 200, 2):
        index.remove("s", key)
    assert index.is_hnsw("s")  # a shrinking scope may stay a graph
    assert index.scope_size("s") == 100 and len(index) == 100
    assert all(key % 2 == 1 for key, _ in index.search("s", data[10], k=20))
    index.add("s", 7, data[10])
    assert_top(index.search("s", data[10], k=1), 7, 1e-5)
    assert index.scope_size("s") == 100
    index.drop_scope("s")
    assert len(index) == 0 and index.search("s", data[10]) == []


def test_background_build_replays_changes_made_while_building() -> None:
    rng = np.random.default_rng(5)
    ix = ScopedIndex(DIM, hnsw_from=500)
    try:
        data = random_units(rng, 800)
        for key in range(500):
            ix.add("s", key, data[key])
        # The graph is (probably) still building: these changes must reach it.
        for key in range(500, 800):
            ix.add("s", key, data[key])
        for key in range(0, 100):
            ix.remove("s", key)
        ix.add("s", 100, data[0])
        assert ix.wait_idle(timeout=120)
        assert ix.is_hnsw("s") and ix.scope_size("s") == 700
        assert_top(ix.search("s", data[0], k=1), 100, 1e-5)
        assert_top(ix.search("s", data[799], k=1), 799, 1e-5)
        found = {key for q in data[:100] for key, _ in ix.search("s", q, k=5)}
        assert not found & set(range(100))
    finally:
        ix.close()


def test_close_abandons_a_build_and_the_scope_keeps_answering() -> None:
    rng = np.random.default_rng(8)
    ix = ScopedIndex(DIM, hnsw_from=100)
    data = random_units(rng, 5000)
    ix.add_many("s", list(range(5000)), data)  # a build of 5,000 takes seconds: close comes first
    ix.add_many("gone", list(range(5000)), data)
    ix.drop_scope("gone")  # queued behind "s": abandoned when its turn comes
    ix.close()
    assert ix.wait_idle(timeout=30)
    assert not ix.is_hnsw("s")
    assert_top(ix.search("s", data[42], k=1), 42, 1e-5)
    assert len(ix) == 5000


def test_hnsw_recall_at_1_on_random_and_clustered_vectors() -> None:
    rng = np.random.default_rng(6)
    n = 20_000
    data = np.vstack([random_units(rng, n // 2), clustered_units(rng, n // 2)])
    ix = ScopedIndex(DIM, hnsw_from=4096, background=False)
    for key, v in enumerate(data):
        ix.add("s", key, v)
    assert ix.is_hnsw("s")
    for part in (data[: n // 2], data[n // 2 :]):
        queries = near(rng, part, 300)
        truth = np.argmax(queries @ data.T, axis=1)
        got = np.array([ix.search("s", q, k=1)[0][0] for q in queries])
        assert np.mean(got == truth) >= 0.99


def test_rejects_bad_vectors() -> None:
    ix = ScopedIndex(DIM)
    with pytest.raises(ValueError):
        ix.add("s", 1, np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError):
        ix.add("s", 1, np.full(DIM, np.nan, dtype=np.float32))
    with pytest.raises(ValueError):
        ix.search("s", np.zeros(10, dtype=np.float32))
    assert ix.search("s", np.ones(DIM, dtype=np.float32), k=0) == []
