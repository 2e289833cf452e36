"""The writer with a journal: an event is journaled before it is acknowledged, and a database
outage or a shutdown with the database down loses none (the journal is replayed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from faregate.ledger import Journal, LedgerWriter
from faregate.ledger.journal import read_segments
from faregate.ledger.sqlite import SqliteStore
from faregate.ledger.writer import read_fallback
from tests.ledger import make_event
from tests.ledger.test_writer import RecordingStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordingStore]:
    s = RecordingStore(tmp_path / "ledger.db")
    yield s
    s.close()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal", max_segment_events=40)
    j.open()
    yield j
    j.close()


def journal_files(journal: Journal) -> list[Path]:
    return sorted(journal.directory.glob("*.jsonl"))


async def test_submit_journals_the_event_before_it_returns(store: RecordingStore, journal: Journal) -> None:
    writer = LedgerWriter(store, journal=journal)  # not started: nothing reaches the store
    events = [make_event() for _ in range(3)]
    for event in events:
        writer.submit(event)
    assert read_segments(journal_files(journal)) == (events, [])  # a kill -9 now keeps them
    await writer.close()
    assert store.events() == events


async def test_stored_events_leave_the_journal(store: RecordingStore, journal: Journal) -> None:
    writer = LedgerWriter(store, max_batch=25, journal=journal)
    await writer.start()
    for _ in range(200):  # five segments of 40
        writer.submit(make_event())
    await writer.flush()
    assert len(journal_files(journal)) == 1  # only the open segment is left
    await writer.close()
    journal.close()
    assert journal_files(journal) == []
    assert store.count() == 200


async def test_an_outage_past_max_pending_is_held_in_the_journal_and_replayed(
    store: RecordingStore, journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    store.always_fail = True
    writer = LedgerWriter(
        store, max_batch=50, retry_initial=0.001, retry_max=0.01, max_pending=100, journal=journal
    )
    await writer.start()
    events = [make_event() for _ in range(250)]
    for event in events[:150]:
        writer.submit(event)
    while not any("held in the journal only" in r.getMessage() for r in caplog.records):
        await asyncio.sleep(0.005)
    assert len(writer._pending) < 150  # dropped from memory: the journal holds them
    for event in events[150:]:
        writer.submit(event)
    await asyncio.sleep(0.05)
    assert store.count() == 0
    store.always_fail = False  # the database is back
    await writer.flush()
    assert writer.pending == 0
    assert store.events() == events  # every one, once, in order
    assert not store.fallback_path.exists()
    await writer.close()
    journal.close()
    assert journal_files(journal) == []


async def test_closing_with_the_store_down_leaves_the_events_for_the_next_start(
    store: RecordingStore, journal: Journal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LedgerWriter(store, retry_initial=0.001, close_attempts=2, journal=journal)
    await writer.start()
    stored = [make_event() for _ in range(5)]
    for event in stored:
        writer.submit(event)
    await writer.flush()
    store.always_fail = True
    unstored = [make_event() for _ in range(90)]
    for event in unstored:
        writer.submit(event)
    await writer.close()
    journal.close()
    assert not store.fallback_path.exists()  # no longer the fallback file's job
    (record,) = [r for r in caplog.records if r.getMessage().startswith("ledger events left in the journal")]
    assert getattr(record, "events", None) == 90
    assert getattr(record, "directory", None) == str(journal.directory)

    store.always_fail = False  # the next start, with the database back
    report = Journal(journal.directory).start(store.inner, store.fallback_path)
    assert store.events() == [*stored, *unstored]
    assert report.events >= 90
    assert not store.fallback_path.exists()


async def test_events_the_journal_could_not_hold_go_to_the_fallback_file(
    store: RecordingStore, tmp_path: Path
) -> None:
    broken = Journal(tmp_path / "never-opened")  # every append fails: the writer must not trust it
    store.always_fail = True
    writer = LedgerWriter(store, retry_initial=0.001, close_attempts=2, journal=broken)
    await writer.start()
    events = [make_event() for _ in range(10)]
    for event in events:
        writer.submit(event)
    await writer.close()
    assert read_fallback(store.fallback_path) == events


async def test_an_overflow_the_journal_could_not_hold_goes_to_the_fallback_file(
    store: RecordingStore, tmp_path: Path
) -> None:
    broken = Journal(tmp_path / "never-opened")
    store.always_fail = True
    writer = LedgerWriter(
        store, max_batch=50, retry_initial=0.001, retry_max=0.001, max_pending=100, journal=broken
    )
    await writer.start()
    events = [make_event() for _ in range(150)]
    for event in events:
        writer.submit(event)
    await writer.flush()
    assert read_fallback(store.fallback_path) == events
    store.always_fail = False
    writer.submit(later := make_event())
    await writer.close()
    assert store.events() == [later]


def test_loop_torn_down_without_close_leaves_the_events_in_the_journal(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ledger.db")
    journal = Journal(tmp_path / "journal")
    journal.open()
    events = [make_event() for _ in range(10)]

    async def forgetful_server() -> None:
        writer = LedgerWriter(store, flush_interval=10, journal=journal)
        await writer.start()
        for event in events:
            writer.submit(event)
        await asyncio.sleep(0)

    try:
        asyncio.run(forgetful_server())
        journal.close()
        assert not store.fallback_path.exists()
        Journal(tmp_path / "journal").recover(store, store.fallback_path)
        assert store.events() == events
    finally:
        store.close()
