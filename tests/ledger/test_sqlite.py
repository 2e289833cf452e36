"""What only the embedded store does: its file, its pragmas, its URLs, its schema on disk."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from faregate.ledger import migrations, open_store
from faregate.ledger.events import CostEvent
from faregate.ledger.queries import FIELDS
from faregate.ledger.sqlite import SqliteStore
from tests.ledger import make_event


def test_creates_parent_directories_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.db"
    store = SqliteStore(path)
    try:
        store.write_batch([make_event()])
        assert path.exists()
        assert store._conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert store.fallback_path == tmp_path / "a" / "b" / "ledger-fallback.jsonl"


def test_schema_is_one_column_per_event_field(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "ledger.db").close()
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
        primary_key = [row[1] for row in conn.execute("PRAGMA table_info(events)") if row[5]]
        indexes = {row[1]: row[2] for row in conn.execute("PRAGMA index_list(events)")}
        index_columns = {name: [r[2] for r in conn.execute(f"PRAGMA index_info({name})")] for name in indexes}
    assert tuple(columns) == FIELDS
    assert primary_key == ["request_id"]
    assert index_columns["events_ts"] == ["ts"]
    assert index_columns["events_feature_ts"] == ["feature", "ts"]


def test_migrations_run_once_and_are_recorded(tmp_path: Path) -> None:
    for _ in range(3):
        SqliteStore(tmp_path / "ledger.db").close()
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM _faregate_migrations")]
    assert names == [name for name, _ in migrations.MIGRATIONS]


def test_a_new_migration_is_applied_to_an_existing_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ledger made by the first release gains the anatomy columns, and keeps its rows."""
    shipped = list(migrations.MIGRATIONS)
    monkeypatch.setattr(migrations, "MIGRATIONS", shipped[:1])
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        SqliteStore(tmp_path / "ledger.db").close()
        conn.execute(
            "INSERT INTO events SELECT 'old', 1.0, 'f', 't', 'tp', 'c', 'u', 'cv', 'tk', 'openai',"
            " NULL, NULL, NULL, 0, 200, NULL, 10, 0, 0, 0, 5, 0, 0, 1, 100, 100, 1.0, NULL, NULL, NULL"
        )

    monkeypatch.setattr(migrations, "MIGRATIONS", shipped)
    store = SqliteStore(tmp_path / "ledger.db")
    (old,) = store.events()
    store.close()
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM _faregate_migrations ORDER BY applied_at")]
    assert names == [name for name, _ in shipped]
    assert (old.request_id, old.input_tokens, old.system_tokens, old.query_tokens) == ("old", 10, 0, 0)


def test_concurrent_batches_from_threads_all_land(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ledger.db")
    batches = [[make_event() for _ in range(200)] for _ in range(8)]
    threads = [threading.Thread(target=store.write_batch, args=(b,)) for b in batches]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.count() == 1600
    finally:
        store.close()


def test_another_connection_reads_while_the_store_is_open(tmp_path: Path) -> None:
    # The CLI reads the ledger while the gateway runs; WAL is what makes that safe.
    store = SqliteStore(tmp_path / "ledger.db")
    try:
        store.write_batch([make_event(), make_event()])
        reader = open_store(str(tmp_path / "ledger.db"))
        try:
            assert reader.count() == 2
        finally:
            reader.close()
    finally:
        store.close()


@pytest.mark.parametrize(
    "url",
    ["sqlite:///data/ledger.db", "data/ledger.db", "./data/ledger.db", "SQLite:///data/ledger.db"],
)
def test_relative_urls_and_bare_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(url)
    try:
        assert isinstance(store, SqliteStore)
        store.write_batch([make_event()])
    finally:
        store.close()
    assert (tmp_path / "data" / "ledger.db").exists()


def test_absolute_url_has_four_slashes(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/abs.db")  # tmp_path starts with "/"
    try:
        assert isinstance(store, SqliteStore)
        assert store.path == tmp_path / "abs.db"
    finally:
        store.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://relative.db"])
def test_sqlite_url_without_a_path_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="needs a path"):
        open_store(url)


def test_unknown_scheme_is_refused_without_echoing_the_password() -> None:
    with pytest.raises(ValueError, match="unsupported ledger database URL scheme 'mysql'") as info:
        open_store("mysql://admin:hunter2@db.internal/ledger")
    assert "hunter2" not in str(info.value)


def test_in_memory_database(tmp_path: Path) -> None:
    store = open_store("sqlite:///:memory:")
    try:
        store.write_batch([make_event()])
        assert store.count() == 1
        assert not Path(":memory:").exists()
    finally:
        store.close()


def test_write_batch_throughput_is_not_pathological(tmp_path: Path) -> None:
    # A loose floor, not a benchmark: 20,000 events must not take per-row commits' time.
    store = SqliteStore(tmp_path / "ledger.db")
    events: list[CostEvent] = [make_event() for _ in range(20_000)]
    try:
        start = time.perf_counter()
        for i in range(0, len(events), 1000):
            store.write_batch(events[i : i + 1000])
        elapsed = time.perf_counter() - start
        assert store.count() == 20_000
        assert elapsed < 5.0, f"{20_000 / elapsed:.0f} events/s"
    finally:
        store.close()
