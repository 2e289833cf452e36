"""The writer's promises: off the request path, batched, and never losing an event silently."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from faregate.ledger import CostEvent, LedgerWriter
from faregate.ledger.sqlite import SqliteStore
from faregate.ledger.writer import read_fallback
from tests.ledger import make_event


class RecordingStore:
    """A real SQLite store that can be told to fail, and remembers the batch sizes it saw."""

    def __init__(self, path: Path) -> None:
        self.inner = SqliteStore(path)
        self.batch_sizes: list[int] = []
        self.failures_left = 0
        self.always_fail = False
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    @property
    def fallback_path(self) -> Path:
        return self.inner.fallback_path

    def write_batch(self, events: Sequence[CostEvent]) -> None:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.always_fail or self.failures_left > 0:
            self.failures_left -= 1
            raise sqlite3.OperationalError("database is locked")
        self.inner.write_batch(events)
        self.batch_sizes.append(len(events))

    def spend(self, by: Sequence[str], since: float | None = None) -> list[dict[str, Any]]:
        return self.inner.spend(by, since)

    def events(self, since: float | None = None, limit: int | None = None) -> list[CostEvent]:
        return self.inner.events(since, limit)

    def count(self) -> int:
        return self.inner.count()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordingStore]:
    s = RecordingStore(tmp_path / "ledger.db")
    yield s
    s.close()


async def test_submit_is_synchronous_and_flush_writes(store: RecordingStore) -> None:
    writer = LedgerWriter(store)
    await writer.start()
    try:
        events = [make_event() for _ in range(25)]
        for event in events:
            writer.submit(event)  # a plain call: a coroutine here would never run, and warn
        assert writer.pending == 25
        await writer.flush()
        assert writer.pending == 0
        assert store.events() == events
    finally:
        await writer.close()


async def test_a_burst_shares_one_transaction(store: RecordingStore) -> None:
    writer = LedgerWriter(store, flush_interval=0.05)
    await writer.start()
    try:
        for _ in range(300):
            writer.submit(make_event())
        await writer.flush()
        assert store.batch_sizes == [300]
    finally:
        await writer.close()


async def test_batches_never_exceed_max_batch(store: RecordingStore) -> None:
    writer = LedgerWriter(store, max_batch=64)
    await writer.start()
    for _ in range(1000):
        writer.submit(make_event())
    await writer.close()
    assert store.count() == 1000
    assert max(store.batch_sizes) == 64
    assert sum(store.batch_sizes) == 1000


async def test_ten_thousand_then_close_leaves_ten_thousand_rows(store: RecordingStore) -> None:
    writer = LedgerWriter(store)
    await writer.start()
    for _ in range(10_000):
        writer.submit(make_event())
    await writer.close()
    assert store.count() == 10_000


async def test_submit_does_not_wait_for_a_slow_store(store: RecordingStore) -> None:
    store.gate = threading.Event()  # the store hangs inside write_batch until released
    writer = LedgerWriter(store, flush_interval=0)
    await writer.start()
    try:
        writer.submit(make_event())
        assert await asyncio.to_thread(store.entered.wait, 5)
        for _ in range(5000):
            writer.submit(make_event())  # would hang the test if submit waited on the store
        assert writer.pending == 5001
    finally:
        store.gate.set()
        await writer.close()
    assert store.count() == 5001


async def test_events_submitted_before_start_are_written_on_close(store: RecordingStore) -> None:
    writer = LedgerWriter(store)
    for _ in range(10):
        writer.submit(make_event())
    await writer.close()
    assert store.count() == 10


async def test_flush_without_a_running_writer_is_an_error(store: RecordingStore) -> None:
    writer = LedgerWriter(store)
    await writer.flush()  # nothing submitted: nothing to wait for
    writer.submit(make_event())
    with pytest.raises(RuntimeError, match="start"):
        await writer.flush()
    await writer.close()


async def test_submit_after_close_is_an_error(store: RecordingStore) -> None:
    writer = LedgerWriter(store)
    await writer.start()
    await writer.close()
    with pytest.raises(RuntimeError, match="after close"):
        writer.submit(make_event())


async def test_failing_then_recovering_store_loses_nothing(
    store: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.failures_left = 3
    writer = LedgerWriter(store, max_batch=100, retry_initial=0.001)
    await writer.start()
    try:
        events = [make_event(user="secret-user") for _ in range(250)]
        for event in events:
            writer.submit(event)
        await writer.flush()
        assert store.events() == events  # all of them, once each, in order
        retries = [r for r in caplog.records if r.getMessage() == "ledger write failed; retrying"]
        assert [getattr(r, "attempt", None) for r in retries] == [1, 2, 3]
        assert {getattr(r, "error", None) for r in retries} == {"OperationalError: database is locked"}
        assert "secret-user" not in caplog.text
        assert not store.fallback_path.exists()
    finally:
        await writer.close()


async def test_store_failing_on_close_leaves_events_in_the_fallback_file(
    store: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LedgerWriter(store, retry_initial=0.001, close_attempts=3)
    await writer.start()
    written = [make_event() for _ in range(5)]
    for event in written:
        writer.submit(event)
    await writer.flush()
    store.always_fail = True
    unwritten = [make_event(stream=True, provider=None, upstream_ms=None) for _ in range(1500)]
    for event in unwritten:
        writer.submit(event)
    await writer.close()
    assert store.fallback_path == store.inner.path.with_name("ledger-fallback.jsonl")
    assert read_fallback(store.fallback_path) == unwritten
    assert store.count() == 5
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert getattr(record, "path", None) == str(store.fallback_path)
    assert getattr(record, "events", None) == 1500


async def test_unreachable_fallback_file_falls_back_to_the_working_directory(
    store: RecordingStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store.always_fail = True
    writer = LedgerWriter(store, retry_initial=0.001, fallback_path=blocker / "fallback.jsonl")
    event = make_event()
    writer.submit(event)
    await writer.close()
    assert read_fallback(tmp_path / ".faregate" / "ledger-fallback.jsonl") == [event]


async def test_invalid_event_is_set_aside_and_the_rest_are_stored(store: RecordingStore) -> None:
    writer = LedgerWriter(store)
    await writer.start()
    bad = make_event(feature=None)  # the schema says NOT NULL
    good = [make_event() for _ in range(9)]
    for event in [*good[:3], bad, *good[3:]]:
        writer.submit(event)
    await writer.flush()
    writer.submit(later := make_event())
    await writer.close()
    assert store.events() == [*good, later]
    assert read_fallback(store.fallback_path) == [bad]


async def test_a_long_outage_spills_to_the_file_instead_of_growing_without_bound(
    store: RecordingStore,
) -> None:
    store.always_fail = True
    writer = LedgerWriter(store, max_batch=50, retry_initial=0.001, retry_max=0.001, max_pending=100)
    await writer.start()
    events = [make_event() for _ in range(150)]
    for event in events:
        writer.submit(event)
    await writer.flush()  # returns: the events are accounted for, in the file
    assert writer.pending == 0
    assert read_fallback(store.fallback_path) == events
    store.always_fail = False
    writer.submit(make_event())
    await writer.close()
    assert store.count() == 1


def test_loop_torn_down_without_close_still_keeps_the_events(tmp_path: Path) -> None:
    # asyncio.run cancels leftover tasks: a server that forgot to call close() on shutdown.
    store = SqliteStore(tmp_path / "ledger.db")
    events = [make_event() for _ in range(10)]

    async def forgetful_server() -> None:
        writer = LedgerWriter(store, flush_interval=10)
        await writer.start()
        for event in events:
            writer.submit(event)
        await asyncio.sleep(0)

    try:
        asyncio.run(forgetful_server())
        assert read_fallback(store.fallback_path) == events
    finally:
        store.close()
