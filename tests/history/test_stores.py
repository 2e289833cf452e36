"""The history store contract, run against SQLite and PostgreSQL alike, then what each backend adds."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from faregate.history.store import ConversationKey, HistoryStore, Summary, Vector, open_history_store

DIM = 384
NOW = 1_000.0
KEY = ConversationKey("team-a", "support", "conv-1")


def unit(rng: np.random.Generator) -> Vector:
    v = rng.standard_normal(DIM)
    out: Vector = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def toward(a: Vector, b: Vector, t: float) -> Vector:
    """A unit vector between a (t=0) and b (t=1): cosine to `a` falls as t grows."""
    v = (1 - t) * a + t * b
    out: Vector = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def digest(i: int) -> str:
    return f"{i:032x}"


def summary(covered: int, text: str = "They asked about refunds.", covered_digest: str = "d" * 32) -> Summary:
    return Summary(covered, covered_digest, text, "gpt-4o-mini", 42, NOW)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/history.db"
    url: str = request.getfixturevalue("postgres_db_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[HistoryStore]:
    s = open_history_store(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_scope_is_a_hash_of_all_three_and_unambiguous() -> None:
    scope = KEY.scope
    assert len(scope) == 32 and int(scope, 16) >= 0
    assert scope == ConversationKey("team-a", "support", "conv-1").scope
    others = {
        ConversationKey("team-b", "support", "conv-1").scope,
        ConversationKey("team-a", "faq", "conv-1").scope,
        ConversationKey("team-a", "support", "conv-2").scope,
        # Moving a separator between fields must not give the same scope.
        ConversationKey("team-a\x00support", "", "conv-1").scope,
        ConversationKey("team-a", "support\x00conv-1", "").scope,
        ConversationKey("team-asupport", "", "conv-1").scope,
    }
    assert len(others) == 6 and scope not in others


def test_vectors_round_trip(store: HistoryStore, rng: np.random.Generator) -> None:
    items = [(digest(i), unit(rng)) for i in range(5)]
    assert store.vectors(KEY, [d for d, _ in items]) == {}
    store.put_vectors(KEY, items, NOW)
    got = store.vectors(KEY, [digest(0), digest(3), digest(99)])
    assert set(got) == {digest(0), digest(3)}  # a digest never stored is left out
    for d, v in items:
        if d in got:
            assert got[d].dtype == np.float32 and got[d].shape == (DIM,) and np.array_equal(got[d], v)
    assert store.vectors(KEY, []) == {}
    assert set(store.vectors(KEY, [d for d, _ in items])) == {d for d, _ in items}


def test_put_is_an_upsert_keeping_the_first_vector(store: HistoryStore, rng: np.random.Generator) -> None:
    first, second = unit(rng), unit(rng)
    store.put_vectors(KEY, [(digest(1), first)], NOW)
    store.vectors(KEY, [digest(1)])  # load any in-process copy
    store.put_vectors(KEY, [(digest(1), second), (digest(1), second)], NOW + 1)
    assert np.array_equal(store.vectors(KEY, [digest(1)])[digest(1)], first)
    assert store.stats() == [{"feature": "support", "conversations": 1, "turns": 1, "summaries": 0}]


def test_nearest_orders_by_cosine_and_filters_by_digest(
    store: HistoryStore, rng: np.random.Generator
) -> None:
    q, other = unit(rng), unit(rng)
    ts = [0.1, 0.3, 0.5, 0.7, 0.9]
    vs = {digest(i): toward(q, other, t) for i, t in enumerate(ts)}
    store.put_vectors(KEY, [(d, vs[d]) for d in reversed(list(vs))], NOW)
    everything = list(vs)
    got = store.nearest(KEY, q, everything, 3)
    assert [d for d, _ in got] == [digest(0), digest(1), digest(2)]
    for d, score in got:
        assert score == pytest.approx(float(q @ vs[d]), abs=1e-5)
    # Only the digests asked for count, however near the others are; unknown digests are ignored.
    got = store.nearest(KEY, q, [digest(4), digest(2), digest(77)], 10)
    assert [d for d, _ in got] == [digest(2), digest(4)]
    assert [d for d, _ in store.nearest(KEY, q, everything, 10)] == everything
    assert store.nearest(KEY, -q, everything, 1)[0][0] == digest(4)  # the least similar is nearest to -q
    assert store.nearest(KEY, q, everything, 0) == []
    assert store.nearest(KEY, q, [], 3) == []
    assert store.nearest(ConversationKey("team-a", "support", "other"), q, everything, 3) == []
    with pytest.raises(ValueError):
        store.nearest(KEY, q, everything, -1)


def test_nearest_is_cosine_even_for_vectors_not_of_unit_length(
    store: HistoryStore, rng: np.random.Generator
) -> None:
    q, a, b = unit(rng), unit(rng), unit(rng)
    store.put_vectors(KEY, [(digest(1), a * 3), (digest(2), b * 0.5)], NOW)
    got = dict(store.nearest(KEY, q * 2, [digest(1), digest(2)], 2))
    assert got[digest(1)] == pytest.approx(float(q @ a), abs=1e-5)
    assert got[digest(2)] == pytest.approx(float(q @ b), abs=1e-5)


def test_tenants_features_and_conversations_never_cross(
    store: HistoryStore, rng: np.random.Generator
) -> None:
    """Same conversation id and the same digests under two tenants (and two features)."""
    keys = [
        ConversationKey("team-a", "support", "conv-1"),
        ConversationKey("team-b", "support", "conv-1"),
        ConversationKey("team-a", "faq", "conv-1"),
    ]
    digests = [digest(i) for i in range(4)]
    stored = {k: {d: unit(rng) for d in digests} for k in keys}
    for k in keys:
        store.put_vectors(k, list(stored[k].items()), NOW)
        store.put_summary(k, summary(2, text=f"summary of {k.tenant}/{k.feature}"), NOW)
    for k in keys:
        got = store.vectors(k, digests)
        assert set(got) == set(digests)
        assert all(np.array_equal(got[d], stored[k][d]) for d in digests)
        for d in digests:
            (best, score), *_ = store.nearest(k, stored[k][d], digests, 4)
            assert best == d and score == pytest.approx(1.0, abs=1e-5)
        s = store.summary(k)
        assert s is not None and s.text == f"summary of {k.tenant}/{k.feature}"
    assert store.summary(ConversationKey("team-c", "support", "conv-1")) is None
    assert store.vectors(ConversationKey("team-c", "support", "conv-1"), digests) == {}


def test_summary_replaces_but_never_with_less(store: HistoryStore) -> None:
    assert store.summary(KEY) is None
    first = Summary(3, "a" * 32, "Refund asked — «order 12».", "claude-3-5-haiku", 120, NOW - 5.25)
    store.put_summary(KEY, first, NOW)
    assert store.summary(KEY) == first
    longer = Summary(6, "b" * 32, "Refund, then shipping.", "gpt-4o-mini", 150, NOW)
    store.put_summary(KEY, longer, NOW)
    assert store.summary(KEY) == longer
    store.put_summary(KEY, first, NOW + 1)  # a replica that summarised fewer exchanges, late
    assert store.summary(KEY) == longer
    rewritten = Summary(6, "c" * 32, "The client edited an early turn.", "gpt-4o-mini", 140, NOW + 2)
    store.put_summary(KEY, rewritten, NOW + 2)  # the same coverage replaces: its digest is newer
    assert store.summary(KEY) == rewritten
    shortened = Summary(2, "d" * 32, "The client cut its history.", "gpt-4o-mini", 60, NOW + 3)
    store.put_summary(KEY, shortened, NOW + 3, replaces="f" * 32)  # names another summary: no effect
    assert store.summary(KEY) == rewritten
    store.put_summary(KEY, shortened, NOW + 3, replaces=rewritten.covered_digest)  # the stale one
    assert store.summary(KEY) == shortened
    with pytest.raises(ValueError):
        store.put_summary(KEY, summary(-1), NOW)
    assert store.stats() == [{"feature": "support", "conversations": 1, "turns": 0, "summaries": 1}]


def test_purge_deletes_idle_conversations(store: HistoryStore, rng: np.random.Generator) -> None:
    old = ConversationKey("team-a", "support", "old")
    busy = ConversationKey("team-a", "support", "busy")
    kept = ConversationKey("team-b", "faq", "kept")
    store.put_vectors(old, [(digest(i), unit(rng)) for i in range(3)], 100.0)
    store.put_summary(old, summary(3), 100.0)
    store.put_vectors(busy, [(digest(i), unit(rng)) for i in range(2)], 100.0)
    store.put_vectors(busy, [], 300.0)  # used again later, nothing new to store
    store.put_summary(kept, summary(1), 120.0)
    store.put_vectors(kept, [(digest(9), unit(rng))], 250.0)
    store.vectors(old, [digest(0)])  # load any in-process copy
    assert store.purge(100.0) == 0  # last used *before*
    assert store.purge(200.0) == 4  # old: 3 turns and a summary
    assert store.vectors(old, [digest(i) for i in range(3)]) == {} and store.summary(old) is None
    assert set(store.vectors(busy, [digest(0), digest(1)])) == {digest(0), digest(1)}
    assert store.summary(kept) is not None
    assert store.stats() == [
        {"feature": "faq", "conversations": 1, "turns": 1, "summaries": 1},
        {"feature": "support", "conversations": 1, "turns": 2, "summaries": 0},
    ]
    # A purged conversation that comes back starts afresh.
    store.put_vectors(old, [(digest(0), unit(rng))], 400.0)
    assert set(store.vectors(old, [digest(i) for i in range(3)])) == {digest(0)}
    assert store.purge(1000.0, "faq") == 2  # one feature's conversations only
    assert store.purge(1000.0) == 3


def test_clear_by_tenant_and_feature(store: HistoryStore, rng: np.random.Generator) -> None:
    keys = [
        ConversationKey("x", "faq", "1"),
        ConversationKey("y", "faq", "1"),
        ConversationKey("y", "chat", "1"),
        ConversationKey("x", "chat", "2"),
    ]
    for k in keys:
        store.put_vectors(k, [(digest(1), unit(rng)), (digest(2), unit(rng))], NOW)
        store.put_summary(k, summary(2), NOW)
        store.vectors(k, [digest(1)])
    assert store.clear(tenant="x", feature="faq") == 3  # filters combine
    assert store.vectors(keys[0], [digest(1)]) == {} and store.summary(keys[0]) is None
    assert store.clear(feature="nothing") == 0
    assert store.clear(feature="chat") == 6
    assert store.vectors(keys[3], [digest(1), digest(2)]) == {}
    assert set(store.vectors(keys[1], [digest(1), digest(2)])) == {digest(1), digest(2)}
    assert store.stats() == [{"feature": "faq", "conversations": 1, "turns": 2, "summaries": 1}]
    store.put_vectors(keys[2], [(digest(3), unit(rng))], NOW)
    assert store.clear(tenant="y") == 4
    assert store.clear() == 0 and store.stats() == []
    store.put_vectors(keys[0], [(digest(1), unit(rng))], NOW)
    assert store.clear() == 1 and store.vectors(keys[0], [digest(1)]) == {}


def test_wrong_vectors_are_refused_and_nothing_is_written(
    store: HistoryStore, rng: np.random.Generator
) -> None:
    bad = [np.zeros(10, dtype=np.float32), np.zeros((1, DIM), dtype=np.float32)]
    nan = unit(rng)
    nan[5] = np.nan
    for v in [*bad, nan]:
        with pytest.raises(ValueError):
            store.put_vectors(KEY, [(digest(1), unit(rng)), (digest(2), v)], NOW)
        with pytest.raises(ValueError):
            store.nearest(KEY, v, [digest(1)], 1)
    assert store.vectors(KEY, [digest(1), digest(2)]) == {} and store.stats() == []
    # A float64 vector of the right shape is fine: it is stored as float32.
    store.put_vectors(KEY, [(digest(1), unit(rng).astype(np.float64))], NOW)
    assert store.vectors(KEY, [digest(1)])[digest(1)].dtype == np.float32


def test_two_stores_on_one_database_see_each_others_writes(store_url: str, rng: np.random.Generator) -> None:
    """Two gateways (SQLite: two connections to one file, each with its own in-process copy)."""
    one, two = open_history_store(store_url), open_history_store(store_url)
    try:
        a, b, c = unit(rng), unit(rng), unit(rng)
        one.put_vectors(KEY, [(digest(1), a)], NOW)
        assert set(two.vectors(KEY, [digest(1), digest(2)])) == {digest(1)}  # `two` now holds a copy
        assert set(one.vectors(KEY, [digest(1), digest(2)])) == {digest(1)}
        one.put_vectors(KEY, [(digest(2), b)], NOW)
        got = two.vectors(KEY, [digest(1), digest(2)])
        assert set(got) == {digest(1), digest(2)} and np.array_equal(got[digest(2)], b)
        assert two.nearest(KEY, b, [digest(1), digest(2)], 1)[0][0] == digest(2)
        two.put_summary(KEY, summary(2), NOW)
        assert one.summary(KEY) == summary(2)
        # Deletes show too, and so do rows written after them (SQLite may reuse a deleted seq).
        assert one.clear(tenant=KEY.tenant) == 3
        assert two.vectors(KEY, [digest(1), digest(2)]) == {} and two.summary(KEY) is None
        one.put_vectors(KEY, [(digest(3), c)], NOW)
        assert set(two.vectors(KEY, [digest(1), digest(2), digest(3)])) == {digest(3)}
        two.put_vectors(KEY, [(digest(4), a)], NOW + 10)
        assert two.purge(NOW + 5) == 0  # used at NOW + 10 by `two`
        assert set(one.vectors(KEY, [digest(3), digest(4)])) == {digest(3), digest(4)}
        assert one.purge(NOW + 11) == 2
        assert two.vectors(KEY, [digest(3), digest(4)]) == {}
    finally:
        one.close()
        two.close()


def test_concurrent_writers_on_one_store(store: HistoryStore, rng: np.random.Generator) -> None:
    vectors = [unit(rng) for _ in range(60)]
    errors: list[BaseException] = []

    def write(part: int) -> None:
        try:
            for i in range(part, 60, 3):
                store.put_vectors(KEY, [(digest(i), vectors[i])], NOW + i)
                store.nearest(KEY, vectors[i], [digest(j) for j in range(60)], 3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = store.vectors(KEY, [digest(i) for i in range(60)])
    assert len(got) == 60 and all(np.array_equal(got[digest(i)], vectors[i]) for i in range(60))


def test_open_history_store_url_forms(tmp_path: Path) -> None:
    for url in (str(tmp_path / "a.db"), f"sqlite:///{tmp_path}/b.db"):
        open_history_store(url).close()
    with pytest.raises(ValueError, match="needs a path"):
        open_history_store("sqlite://")
    with pytest.raises(ValueError, match="'mysql'") as caught:
        open_history_store("mysql://app:s3cret-pw@db.internal/prod")
    assert "s3cret-pw" not in str(caught.value) and "db.internal" not in str(caught.value)


# --- SQLite: the in-process copy, and sharing a file -----------------------------------------------


def test_sqlite_shares_the_file_with_the_ledger_and_the_cache(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    from faregate.cache.store import open_cache_store
    from faregate.ledger import open_store

    path = str(tmp_path / "faregate.db")
    ledger, cache, history = open_store(path), open_cache_store(path), open_history_store(path)
    try:
        history.put_vectors(KEY, [(digest(1), unit(rng))], NOW)
        assert set(history.vectors(KEY, [digest(1)])) == {digest(1)}
        assert ledger.count() == 0 and cache.stats() == []
    finally:
        history.close()
        cache.close()
        ledger.close()
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (applied,) = conn.execute("SELECT count(*) FROM _faregate_history_migrations").fetchone()
        turn_columns = {r[1] for r in conn.execute("PRAGMA table_info(history_turns)")}
    assert {"_faregate_migrations", "_faregate_cache_migrations", "_faregate_history_migrations"} <= tables
    assert applied == 1
    # No prompt text in the turns table: digests and vectors only.
    assert turn_columns == {"seq", "scope", "digest", "tenant", "feature", "created_at", "embedding"}
    history = open_history_store(path)  # reopening migrates nothing and keeps the rows
    try:
        assert set(history.vectors(KEY, [digest(1)])) == {digest(1)}
    finally:
        history.close()


def test_sqlite_copy_is_bounded_and_reloads(tmp_path: Path, rng: np.random.Generator) -> None:
    from faregate.history.sqlite_store import SqliteHistoryStore

    s = SqliteHistoryStore(tmp_path / "h.db", max_cached_vectors=25)
    try:
        keys = [ConversationKey("t", "f", str(i)) for i in range(10)]
        stored = {k: [(digest(j), unit(rng)) for j in range(10)] for k in keys}
        for k in keys:
            s.put_vectors(k, stored[k], NOW)
            s.vectors(k, [digest(0)])
            assert s.cached_vectors <= 25
        for k in keys:  # evicted conversations come back from the file, whole
            (best, _), *_ = s.nearest(k, stored[k][7][1], [d for d, _ in stored[k]], 2)
            assert best == digest(7)
            assert s.cached_vectors <= 25
    finally:
        s.close()


def test_sqlite_refuses_a_stored_vector_of_another_size(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "h.db"
    s = open_history_store(str(path))
    s.put_vectors(KEY, [(digest(1), unit(rng))], NOW)
    s.close()
    s = open_history_store(str(path), dim=8)
    try:
        with pytest.raises(ValueError, match="384 dimensions"):
            s.vectors(KEY, [digest(1)])
    finally:
        s.close()


# --- PostgreSQL: replicas starting together --------------------------------------------------------


def test_postgres_refuses_another_dimension(postgres_db_url: str) -> None:
    open_history_store(postgres_db_url).close()
    with pytest.raises(ValueError, match="384-dimensional"):
        open_history_store(postgres_db_url, dim=8)


def test_postgres_replicas_migrate_concurrently_next_to_the_cache(postgres_db_url: str) -> None:
    """Three history stores and a cache store open at once on a fresh database: both create the
    pgvector extension, under different advisory locks."""
    from faregate.cache import postgres_store as cache_pg
    from faregate.cache.store import open_cache_store
    from faregate.history import postgres_store as history_pg

    assert history_pg._PGVECTOR_LOCK == cache_pg._MIGRATION_LOCK != history_pg._MIGRATION_LOCK
    opened: list[HistoryStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start(cache: bool) -> None:
        try:
            barrier.wait()
            if cache:
                open_cache_store(postgres_db_url).close()
            else:
                opened.append(open_history_store(postgres_db_url))
        except BaseException as exc:
            errors.append(RuntimeError(f"{'cache' if cache else 'history'}: {exc!r}"))

    threads = [threading.Thread(target=start, args=(i == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in opened:
        s.close()
    assert errors == [] and len(opened) == 3
