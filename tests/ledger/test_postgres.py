"""What only the shared store does: URLs, concurrent start-up, broken connections, stricter types."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from faregate.ledger import LedgerWriter, migrations, open_store
from faregate.ledger.postgres import PostgresStore
from faregate.ledger.queries import FIELDS
from faregate.ledger.store import InvalidEventError
from faregate.ledger.writer import read_fallback
from tests.ledger import make_event


def test_schema_is_one_column_per_event_field(postgres_db_url: str) -> None:
    PostgresStore(postgres_db_url).close()
    with psycopg.connect(postgres_db_url) as conn:
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'events' ORDER BY ordinal_position"
        ).fetchall()
        indexes: dict[str, str] = dict(
            conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events'")
        )
    assert tuple(name for name, _ in columns) == FIELDS
    types: dict[str, str] = dict(columns)
    assert types["cost_nusd"] == "bigint"
    assert types["ts"] == "double precision"
    assert types["stream"] == "boolean"
    assert "(request_id)" in indexes["events_pkey"]
    assert indexes["events_ts"].endswith("(ts)")
    assert indexes["events_feature_ts"].endswith("(feature, ts)")


def test_replicas_starting_together_migrate_once(postgres_db_url: str) -> None:
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            PostgresStore(postgres_db_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(postgres_db_url) as conn:
        names = conn.execute("SELECT name FROM _faregate_migrations").fetchall()
    assert names == [(name,) for name, _ in migrations.MIGRATIONS]


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_store_accepts_both_schemes(postgres_db_url: str, scheme: str) -> None:
    url = scheme + postgres_db_url.removeprefix("postgresql")
    store = open_store(url)
    try:
        assert isinstance(store, PostgresStore)
        store.write_batch([make_event()])
        assert store.count() == 1
    finally:
        store.close()


def test_unreachable_server_fails_fast_with_the_real_reason() -> None:
    start = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="Connection refused") as info:
        open_store("postgresql://faregate:hunter2@127.0.0.1:1/ledger")
    assert time.monotonic() - start < 5
    assert "hunter2" not in str(info.value)


def test_repr_hides_the_password(postgres_db_url: str) -> None:
    # The test server trusts local connections, so any password is accepted.
    store = open_store(postgres_db_url.replace("postgres:@", "postgres:hunter2@"))
    try:
        assert "hunter2" not in repr(store)
        assert postgres_db_url.rsplit("/", 1)[1].split("?")[0] in repr(store)
    finally:
        store.close()


def test_nul_bytes_are_refused_as_invalid_events(postgres_db_url: str) -> None:
    # SQLite stores NUL in text; PostgreSQL cannot. Body metadata can carry "\u0000".
    store = PostgresStore(postgres_db_url)
    try:
        with pytest.raises(InvalidEventError, match="NUL") as info:
            store.write_batch([make_event(feature="a\x00b")])
        assert "a\x00b" not in str(info.value)
        with pytest.raises(InvalidEventError):
            store.write_batch([make_event(input_tokens=2**63)])
    finally:
        store.close()


async def test_writer_sets_aside_an_invalid_event_and_keeps_going(
    postgres_db_url: str, tmp_path: Path
) -> None:
    store = PostgresStore(postgres_db_url)
    fallback = tmp_path / "fallback.jsonl"
    writer = LedgerWriter(store, fallback_path=fallback)
    await writer.start()
    bad = make_event(user="x\x00")
    for i in range(10):
        writer.submit(bad if i == 4 else make_event())
    await writer.flush()
    writer.submit(make_event())
    await writer.close()
    try:
        assert store.count() == 10
        assert [e.request_id for e in read_fallback(fallback)] == [bad.request_id]
    finally:
        store.close()


async def test_writer_recovers_when_connections_are_killed(
    postgres_db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(postgres_db_url)
    writer = LedgerWriter(store, retry_initial=0.01, fallback_path=tmp_path / "fallback.jsonl")
    await writer.start()
    try:
        writer.submit(make_event())
        await writer.flush()
        # A server restart or failover, as the pool sees it: its connections die under it.
        with psycopg.connect(postgres_db_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        assert killed
        for _ in range(100):
            writer.submit(make_event())
        await writer.flush()
        assert store.count() == 101
        assert not (tmp_path / "fallback.jsonl").exists()
        retries = [r for r in caplog.records if r.getMessage() == "ledger write failed; retrying"]
        assert retries, "the killed connection should have failed one write"
        assert "OperationalError" in getattr(retries[0], "error", "")
    finally:
        await writer.close()
        store.close()


async def test_burst_then_close_leaves_every_row(postgres_db_url: str) -> None:
    store = PostgresStore(postgres_db_url)
    writer = LedgerWriter(store)
    await writer.start()
    for _ in range(10_000):
        writer.submit(make_event())
    await writer.close()
    try:
        assert store.count() == 10_000
    finally:
        store.close()
