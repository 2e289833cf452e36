"""The cache store contract, run against SQLite and PostgreSQL alike, then what each backend adds."""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from faregate.cache.entry import CachedAnswer, CacheEntry, Vector
from faregate.cache.store import CacheStore, open_cache_store

DIM = 384
NOW = 1_000.0


def unit(rng: np.random.Generator) -> Vector:
    v = rng.standard_normal(DIM)
    out: Vector = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def vec(e: CacheEntry) -> Vector:
    assert e.embedding is not None
    return e.embedding


def toward(a: Vector, b: Vector, t: float) -> Vector:
    """A unit vector between a (t=0) and b (t=1): cosine to `a` falls as t grows."""
    v = (1 - t) * a + t * b
    out: Vector = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def make_entry(rng: np.random.Generator, **overrides: Any) -> CacheEntry:
    fields: dict[str, Any] = {
        "id": secrets.randbits(63),
        "scope": "scope-a",
        "exact_key": secrets.token_hex(8),
        "tenant": "tenant-1",
        "feature": "faq",
        "template": "tpl-1",
        "query": "how do I reset my password?",
        "answer": CachedAnswer(
            protocol="openai",
            model="gpt-4o-mini-2024-07-18",
            text="Open Settings, then Security — «Reset».",
            stop_reason="stop",
            input_tokens=120,
            output_tokens=45,
            cost_nusd=2**40 + 7,
        ),
        "embedding": unit(rng),
        "created_at": NOW - 10,
        "expires_at": NOW + 3600,
        "last_used_at": NOW - 10,
        "hits": 0,
    }
    fields.update(overrides)
    return CacheEntry(**fields)


def assert_same(got: CacheEntry | None, want: CacheEntry) -> None:
    assert got is not None
    for f in dataclasses.fields(CacheEntry):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if f.name == "embedding" and b is not None:
            assert a is not None and a.dtype == np.float32 and np.array_equal(a, b)
        else:
            assert a == b, f.name


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cache.db"
    url: str = request.getfixturevalue("postgres_db_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[CacheStore]:
    s = open_cache_store(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_tightenings_keep_the_furthest_and_are_seen_by_another_connection(
    store: CacheStore, store_url: str
) -> None:
    assert store.tightenings() == {}
    store.raise_tightening("faq", 0.02, NOW)
    store.raise_tightening("faq", 0.01, NOW + 1)  # a replica that saw less does not undo it
    store.raise_tightening("search", 0.03, NOW + 2)
    other = open_cache_store(store_url)  # another replica, or the next start
    try:
        assert other.tightenings() == {"faq": 0.02, "search": 0.03}
        other.raise_tightening("faq", 0.04, NOW + 3)
    finally:
        other.close()
    assert store.tightenings() == {"faq": 0.04, "search": 0.03}


def test_round_trip_keeps_every_field(store: CacheStore, rng: np.random.Generator) -> None:
    with_vector = make_entry(rng, last_used_at=NOW - 5.123456, hits=3)
    exact_only = make_entry(
        rng,
        embedding=None,
        answer=CachedAnswer("anthropic", "claude-3-5-haiku", "", "end_turn", 0, 0, 0),
        query="",
    )
    store.put(with_vector)
    store.put(exact_only)
    assert_same(store.get_exact("scope-a", with_vector.exact_key, NOW), with_vector)
    assert_same(store.get_exact("scope-a", exact_only.exact_key, NOW), exact_only)
    (found, score), *rest = store.search("scope-a", vec(with_vector), 4, NOW)
    assert_same(found, with_vector)
    assert score == pytest.approx(1.0, abs=1e-5)
    assert rest == []  # an entry without an embedding never answers a search


def test_repeated_id_is_ignored(store: CacheStore, rng: np.random.Generator) -> None:
    first = make_entry(rng)
    store.put(first)
    store.put(dataclasses.replace(first, query="something else"))
    assert_same(store.get_exact("scope-a", first.exact_key, NOW), first)
    assert store.stats()[0]["entries"] == 1


def test_exact_lookup_respects_scope_and_expiry(store: CacheStore, rng: np.random.Generator) -> None:
    old = make_entry(rng, exact_key="k", created_at=NOW - 100, expires_at=NOW + 50)
    new = make_entry(rng, exact_key="k", created_at=NOW - 1, expires_at=NOW + 10)
    store.put(old)
    store.put(new)
    assert store.get_exact("scope-b", "k", NOW) is None
    assert store.get_exact("scope-a", "other", NOW) is None
    assert_same(store.get_exact("scope-a", "k", NOW), new)  # the newest first
    assert_same(store.get_exact("scope-a", "k", NOW + 10), old)  # expires_at itself is expired
    assert store.get_exact("scope-a", "k", NOW + 50) is None


def test_search_respects_scope_expiry_and_order(store: CacheStore, rng: np.random.Generator) -> None:
    q, other = unit(rng), unit(rng)
    near = [make_entry(rng, embedding=toward(q, other, t)) for t in (0.1, 0.3, 0.5, 0.7)]
    expired = make_entry(rng, embedding=q, expires_at=NOW)  # the best match, but expired
    elsewhere = make_entry(rng, scope="scope-b", embedding=q)  # identical, other scope
    for e in [near[2], expired, near[0], elsewhere, near[3], near[1]]:
        store.put(e)
    got = store.search("scope-a", q, 3, NOW)
    assert [e.id for e, _ in got] == [near[0].id, near[1].id, near[2].id]
    for (_, score), e in zip(got, near, strict=False):
        assert score == pytest.approx(float(q @ vec(e)), abs=1e-5)
    assert [e.id for e, _ in store.search("scope-a", q, 10, NOW)] == [e.id for e in near]
    assert [e.id for e, _ in store.search("scope-b", q, 10, NOW)] == [elsewhere.id]
    assert store.search("scope-c", q, 4, NOW) == []
    assert [e.id for e, _ in store.search("scope-a", q, 10, NOW - 20)] == [expired.id] + [e.id for e in near]
    assert store.search("scope-a", q, 0, NOW) == []


def test_touch_counts_hits(store: CacheStore, rng: np.random.Generator) -> None:
    e = make_entry(rng)
    store.put(e)
    store.touch(e.id, NOW + 1)
    store.touch(e.id, NOW + 2)
    got = store.get_exact("scope-a", e.exact_key, NOW)
    assert got is not None and got.hits == 2 and got.last_used_at == NOW + 2


def test_lru_eviction_is_per_feature_and_spares_touched_entries(
    store: CacheStore, rng: np.random.Generator
) -> None:
    faq = [make_entry(rng, created_at=NOW - 50 + i, last_used_at=NOW - 50 + i) for i in range(5)]
    other = [make_entry(rng, feature="support", created_at=NOW - 100) for _ in range(3)]
    for e in faq + other:
        store.put(e)
    store.search("scope-a", vec(faq[0]), 1, NOW)  # load any in-memory index
    store.touch(faq[0].id, NOW)  # the oldest, but used just now
    assert store.evict("faq", 3) == 2
    ids = {e.id for e, _ in store.search("scope-a", vec(faq[0]), 20, NOW)}
    assert ids == {faq[0].id, faq[3].id, faq[4].id} | {e.id for e in other}
    assert store.evict("faq", 3) == 0
    # put with a limit evicts the feature's least recently used beyond it.
    newest = make_entry(rng, created_at=NOW, last_used_at=NOW + 1)
    store.put(newest, max_entries=2)
    ids = {e.id for e, _ in store.search("scope-a", vec(faq[0]), 20, NOW)}
    assert ids == {faq[0].id, newest.id} | {e.id for e in other}
    with pytest.raises(ValueError):
        store.evict("faq", -1)


def test_clear_by_feature_template_tenant(store: CacheStore, rng: np.random.Generator) -> None:
    q = unit(rng)
    a = make_entry(rng, feature="faq", template="t1", tenant="x", embedding=q)
    b = make_entry(rng, feature="faq", template="t2", tenant="y", embedding=q)
    c = make_entry(rng, feature="chat", template="t1", tenant="y", embedding=q)
    d = make_entry(rng, feature="chat", template="t3", tenant="x", embedding=q)
    for e in (a, b, c, d):
        store.put(e)
    assert len(store.search("scope-a", q, 10, NOW)) == 4
    assert store.clear(feature="faq", template="t1") == 1  # filters combine
    assert {e.id for e, _ in store.search("scope-a", q, 10, NOW)} == {b.id, c.id, d.id}
    assert store.clear(template="t1") == 1
    assert store.clear(tenant="y") == 1
    assert {e.id for e, _ in store.search("scope-a", q, 10, NOW)} == {d.id}
    assert store.clear(feature="nothing") == 0
    assert store.clear() == 1
    assert store.search("scope-a", q, 10, NOW) == [] and store.stats() == []


def test_purge_expired(store: CacheStore, rng: np.random.Generator) -> None:
    q = unit(rng)
    gone = [make_entry(rng, embedding=q, expires_at=NOW - i) for i in range(3)]
    kept = make_entry(rng, embedding=q, expires_at=NOW + 1)
    for e in [*gone, kept]:
        store.put(e)
    store.search("scope-a", q, 10, NOW - 10)
    assert store.purge_expired(NOW) == 3
    assert [e.id for e, _ in store.search("scope-a", q, 10, NOW - 10)] == [kept.id]
    assert store.purge_expired(NOW) == 0


def test_stats_per_feature(store: CacheStore, rng: np.random.Generator) -> None:
    a = make_entry(rng, created_at=100.0)
    b = make_entry(rng, created_at=300.0, embedding=None)
    c = make_entry(rng, feature="chat", created_at=200.0)
    for e in (a, b, c):
        store.put(e)
    store.touch(a.id, NOW)
    store.touch(b.id, NOW)
    store.touch(b.id, NOW)
    assert store.stats() == [
        {"feature": "chat", "entries": 1, "hits": 0, "oldest_created_at": 200.0, "newest_created_at": 200.0},
        {"feature": "faq", "entries": 2, "hits": 3, "oldest_created_at": 100.0, "newest_created_at": 300.0},
    ]


def test_wrong_dimension_is_refused(store: CacheStore, rng: np.random.Generator) -> None:
    with pytest.raises(ValueError):
        store.put(make_entry(rng, embedding=np.zeros(10, dtype=np.float32)))
    with pytest.raises(ValueError):
        store.search("scope-a", np.zeros(10, dtype=np.float32), 4, NOW)


# --- SQLite: the in-memory index follows the file --------------------------------------------------


def test_sqlite_restart_keeps_entries_and_the_index_answers(tmp_path: Path, rng: np.random.Generator) -> None:
    url = f"sqlite:///{tmp_path}/cache.db"
    entries = [make_entry(rng) for _ in range(20)]
    s = open_cache_store(url)
    for e in entries:
        s.put(e)
    s.close()
    s = open_cache_store(url)
    try:
        for e in entries[:5]:
            (found, score), *_ = s.search("scope-a", vec(e), 2, NOW)
            assert_same(found, e)
            assert score == pytest.approx(1.0, abs=1e-5)
        assert_same(s.get_exact("scope-a", entries[7].exact_key, NOW), entries[7])
    finally:
        s.close()


def test_sqlite_sees_writes_of_another_connection(tmp_path: Path, rng: np.random.Generator) -> None:
    """A second process (the CLI's `cache clear`, another gateway) shares the file."""
    path = tmp_path / "cache.db"
    gateway, other = open_cache_store(str(path)), open_cache_store(str(path))
    try:
        first = make_entry(rng)
        gateway.put(first)
        assert len(gateway.search("scope-a", vec(first), 4, NOW)) == 1
        late = make_entry(rng, embedding=first.embedding)
        other.put(late)
        assert {e.id for e, _ in gateway.search("scope-a", vec(late), 4, NOW)} == {first.id, late.id}
        assert other.clear(feature="faq") == 2
        assert gateway.search("scope-a", vec(first), 4, NOW) == []
    finally:
        gateway.close()
        other.close()


def test_sqlite_shares_the_ledger_file(tmp_path: Path, rng: np.random.Generator) -> None:
    from faregate.ledger import open_store

    path = str(tmp_path / "faregate.db")
    ledger, cache = open_store(path), open_cache_store(path)
    try:
        e = make_entry(rng)
        cache.put(e)
        assert_same(cache.get_exact("scope-a", e.exact_key, NOW), e)
        assert ledger.count() == 0
    finally:
        cache.close()
        ledger.close()


def test_open_cache_store_url_forms(tmp_path: Path) -> None:
    for url in (str(tmp_path / "a.db"), f"sqlite:///{tmp_path}/b.db"):
        open_cache_store(url).close()
    with pytest.raises(ValueError, match="needs a path"):
        open_cache_store("sqlite://")
    with pytest.raises(ValueError, match="'mysql'"):
        open_cache_store("mysql://user:secret@host/db")


# --- PostgreSQL: replicas, and HNSW post-filtering -------------------------------------------------


def test_postgres_replicas_share_entries(postgres_db_url: str, rng: np.random.Generator) -> None:
    one, two = open_cache_store(postgres_db_url), open_cache_store(postgres_db_url)
    try:
        e = make_entry(rng)
        one.put(e)
        assert_same(two.get_exact("scope-a", e.exact_key, NOW), e)
        (found, _), *_ = two.search("scope-a", vec(e), 4, NOW)
        assert_same(found, e)
        two.touch(e.id, NOW)
        assert one.stats()[0]["hits"] == 1
        assert two.clear() == 1 and one.get_exact("scope-a", e.exact_key, NOW) is None
    finally:
        one.close()
        two.close()


def test_postgres_replicas_migrate_concurrently(postgres_db_url: str) -> None:
    stores: list[CacheStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(open_cache_store(postgres_db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == [] and len(stores) == 3


def test_postgres_small_scope_in_a_big_table(postgres_db_url: str) -> None:
    """pgvector post-filters an HNSW scan: a small scope must still find its entries (fallback)."""
    from faregate.cache.postgres_store import _SEARCH, DEFAULT_EF_SEARCH, EMBEDDING_INDEX
    from faregate.cache.store import COLUMNS, entry_params

    rng = np.random.default_rng(11)
    q, other = unit(rng), unit(rng)
    open_cache_store(postgres_db_url).close()  # migrate
    # 5,000 entries in two other scopes, copied in at once and indexed after (the same index as
    # the migration's): a put each would take ~20 s here. 500 of them are nearer to q than any
    # entry of `small`, so the ef_search nearest rows of the table all belong to other scopes.
    with psycopg.connect(postgres_db_url) as conn:
        conn.execute("DROP INDEX cache_entries_embedding")
        with conn.cursor() as cur, cur.copy(f"COPY cache_entries ({COLUMNS}, embedding) FROM STDIN") as copy:
            for i in range(5000):
                v = toward(q, unit(rng), 0.1) if i < 500 else unit(rng)
                e = make_entry(rng, scope=f"big-{i % 2}", embedding=v)
                copy.write_row((*entry_params(e), str(v.tolist())))
        conn.execute(EMBEDDING_INDEX)
    small = [make_entry(rng, scope="small", embedding=toward(q, other, t)) for t in (0.2, 0.4, 0.6)]
    store = open_cache_store(postgres_db_url)
    try:
        for e in small:
            store.put(e)
        with psycopg.connect(postgres_db_url, autocommit=True) as conn:
            conn.execute("ANALYZE cache_entries")
        # The planner may well pick the scope's B-tree for 3 rows (an exact answer either way).
        assert [e.id for e, _ in store.search("small", q, 4, NOW)] == [e.id for e in small]
    finally:
        store.close()
    with psycopg.connect(postgres_db_url, autocommit=True) as conn:
        # Make sorting look ruinous so the planner reads the HNSW index even for 3 rows; the scan
        # then sees only the ef_search nearest rows of the table, none of them in `small`.
        conn.execute(f'ALTER DATABASE "{conn.info.dbname}" SET enable_sort = off')
    store = open_cache_store(postgres_db_url)  # new connections pick up the database setting
    try:
        with psycopg.connect(postgres_db_url) as conn:
            conn.execute(f"SET LOCAL hnsw.ef_search = {DEFAULT_EF_SEARCH}")  # what the store sets
            query = _SEARCH.replace("%b", "%s::vector")
            params = (str(q.tolist()), "small", NOW, 4)
            plan = conn.execute("EXPLAIN " + query, params).fetchall()
            assert "cache_entries_embedding" in " ".join(r[0] for r in plan)
            assert len(conn.execute(query, params).fetchall()) < 3  # the HNSW scan alone falls short
        got = store.search("small", q, 4, NOW)
        assert [e.id for e, _ in got] == [e.id for e in small]
        assert [score for _, score in got] == pytest.approx([float(q @ vec(e)) for e in small], abs=1e-5)
    finally:
        store.close()
