"""The journal's promises: cheap appends, segments deleted once stored, and a safe replay at start."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import orjson
import pytest

from faregate.ledger import CostEvent, Journal, LedgerStore, journal_for
from faregate.ledger.journal import read_segments
from faregate.ledger.sqlite import SqliteStore
from faregate.ledger.writer import read_fallback
from tests.ledger import make_event


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "ledger.db")
    yield s
    s.close()


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def test_append_writes_one_line_per_event_that_reads_back_equal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.open()
    events = [make_event(), make_event(stream=True, provider=None, upstream_ms=None, tier="cheap")]
    for event in events:
        journal.append(event)
    (segment,) = segments(tmp_path / "j")
    lines = segment.read_bytes().splitlines()
    assert len(lines) == 1 + len(events)  # a header naming the fields, then one line an event
    assert read_segments([segment]) == (events, [])
    assert journal.holds(0)
    journal.close()


def test_segments_rotate_and_are_deleted_once_stored(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_segment_events=3)
    journal.open()
    for _ in range(7):
        journal.append(make_event())
    assert len(segments(tmp_path)) == 3  # 3 + 3 + the open one with 1
    journal.stored(4)  # the first segment only holds stored events; the second does not yet
    assert len(segments(tmp_path)) == 2
    journal.stored(6)
    assert len(segments(tmp_path)) == 1
    journal.stored(7)
    journal.close()
    assert list(tmp_path.iterdir()) == []


def test_segments_rotate_by_size(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_segment_bytes=1500)
    journal.open()
    for _ in range(10):
        journal.append(make_event())
    assert 3 <= len(segments(tmp_path)) <= 8
    journal.stored(10)
    journal.close()
    assert segments(tmp_path) == []


def test_close_leaves_unstored_events_and_the_next_start_replays_them(
    tmp_path: Path, store: SqliteStore
) -> None:
    first = Journal(tmp_path / "j", max_segment_events=4)
    first.open()
    events = [make_event() for _ in range(10)]
    for event in events:
        first.append(event)
    first.stored(4)  # the first segment reached the store
    first.close()
    assert len(segments(tmp_path / "j")) == 2

    second = Journal(tmp_path / "j")
    report = second.start(store, store.fallback_path)
    assert (report.segments, report.events, report.live) == (2, 6, 0)
    assert store.events() == events[4:]
    assert len(segments(tmp_path / "j")) == 1  # only its own open segment
    second.close()
    assert segments(tmp_path / "j") == []
    assert not store.fallback_path.exists()


def test_a_torn_last_line_goes_to_the_fallback_file_and_the_rest_is_replayed(
    tmp_path: Path, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    crashed = Journal(tmp_path / "j")
    crashed.open()
    events = [make_event(user="private-user") for _ in range(3)]
    for event in events:
        crashed.append(event)
    crashed.close()
    (segment,) = segments(tmp_path / "j")
    with segment.open("ab") as f:  # kill -9 in the middle of a write
        f.write(b'["req-torn", 1700000000.0, "chat", "core", "private-us')

    report = Journal(tmp_path / "j").recover(store, store.fallback_path)
    assert (report.events, report.unparseable) == (3, 1)
    assert store.events() == events
    assert store.fallback_path.read_bytes().endswith(b'"private-us\n')  # kept as it was, never dropped
    assert read_fallback(store.fallback_path) == []  # and not mistaken for an event
    assert segments(tmp_path / "j") == []
    (record,) = [r for r in caplog.records if r.getMessage().startswith("ledger journal recovered")]
    assert record.levelno == logging.ERROR
    assert getattr(record, "unparseable", None) == 1
    assert "private-us" not in caplog.text


def test_a_corrupt_line_in_the_middle_does_not_stop_the_replay(tmp_path: Path, store: SqliteStore) -> None:
    crashed = Journal(tmp_path)
    crashed.open()
    crashed.append(before := make_event())
    (segment,) = segments(tmp_path)
    with segment.open("ab") as f:
        f.write(b"\x00\x00garbage\n")
    crashed.append(after := make_event())
    crashed.close()
    report = Journal(tmp_path).recover(store, store.fallback_path)
    assert (report.events, report.unparseable) == (2, 1)
    assert store.events() == [before, after]


def test_a_live_process_segments_are_never_replayed(tmp_path: Path, store: SqliteStore) -> None:
    live = Journal(tmp_path, max_segment_events=2)
    live.open()
    events = [make_event() for _ in range(5)]
    for event in events:
        live.append(event)  # two rotated segments (still locked) and the open one
    other = Journal(tmp_path)  # another replica starting on the same machine
    report = other.start(store, store.fallback_path)
    assert (report.live, report.segments) == (3, 0)
    assert store.count() == 0
    assert len(segments(tmp_path)) == 4  # the live three, untouched, and the other's own

    live.close()  # the process goes away without storing them: the locks go with it
    report = Journal(tmp_path).recover(store, store.fallback_path)
    assert (report.segments, report.events) == (3, 5)
    assert store.events() == events
    other.close()


def test_recovery_is_idempotent(tmp_path: Path, store: SqliteStore) -> None:
    crashed = Journal(tmp_path)
    crashed.open()
    events = [make_event(cost_nusd=1000) for _ in range(6)]
    for event in events:
        crashed.append(event)
    crashed.close()
    store.write_batch(events[:4])  # the writer had stored some before the crash
    Journal(tmp_path).recover(store, store.fallback_path)
    assert store.events() == events
    assert store.spend(["feature"])[0]["requests"] == 6  # the rollups did not count any twice
    assert Journal(tmp_path).recover(store, store.fallback_path).events == 0


def test_events_the_database_refuses_go_to_the_fallback_file(tmp_path: Path, store: SqliteStore) -> None:
    crashed = Journal(tmp_path)
    crashed.open()
    crashed.append(good := make_event())
    crashed.append(bad := make_event(input_tokens=2**70))  # beyond 64 bits: SQLite refuses it
    crashed.close()
    report = Journal(tmp_path).recover(store, store.fallback_path)
    assert report.rejected == 1
    assert store.events() == [good]
    assert read_fallback(store.fallback_path) == [bad]


def test_files_that_are_not_segments_are_ignored(tmp_path: Path, store: SqliteStore) -> None:
    (tmp_path / "ledger-fallback.jsonl").write_bytes(b"{}\n")  # the journal dir may be the db's dir
    (tmp_path / "notes.txt").write_text("hello")
    report = Journal(tmp_path).recover(store, store.fallback_path)
    assert (report.segments, report.other_databases, report.unparseable) == (0, 0, 0)
    assert (tmp_path / "ledger-fallback.jsonl").read_bytes() == b"{}\n"


def test_another_database_segments_are_left_alone(tmp_path: Path, store: SqliteStore) -> None:
    elsewhere = Journal(tmp_path, tag="otherdb")
    elsewhere.open()
    elsewhere.append(make_event())
    elsewhere.close()
    report = Journal(tmp_path, tag="thisdb").recover(store, store.fallback_path)
    assert (report.other_databases, report.segments) == (1, 0)
    assert store.count() == 0
    assert len(segments(tmp_path)) == 1


def test_a_segment_of_another_version_is_set_aside_readably(tmp_path: Path, store: SqliteStore) -> None:
    header = orjson.dumps({"faregate_journal": 1, "fields": ["request_id", "field_from_the_future"]})
    (tmp_path / "ledger-1-0-0.jsonl").write_bytes(header + b'\n["req-x", 1]\n')
    report = Journal(tmp_path).recover(store, store.fallback_path)
    assert report.unparseable == 1
    assert orjson.loads(store.fallback_path.read_bytes()) == {
        "request_id": "req-x",
        "field_from_the_future": 1,
    }


def test_appends_to_a_journal_that_is_not_open_are_reported_and_not_trusted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(make_event())
    journal.append(make_event())
    assert not journal.holds(0) and not journal.holds(1) and journal.holds(2)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per streak, not once per request
    assert "cannot write the ledger journal" in errors[0].getMessage()


def test_an_unwritable_directory_refuses_to_open(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"ledger\.journal_dir"):
        Journal(blocker / "journal").open()


def test_journal_location(tmp_path: Path, store: SqliteStore) -> None:
    journal = journal_for(f"sqlite:///{store.path}", store, None)
    assert journal is not None and journal.directory == tmp_path / "journal"
    configured = journal_for(f"sqlite:///{store.path}", store, str(tmp_path / "elsewhere"))
    assert configured is not None and configured.directory == tmp_path / "elsewhere"
    assert configured.tag == journal.tag  # the same database, wherever its journal lives
    memory = SqliteStore(":memory:")
    try:
        assert journal_for("sqlite:///:memory:", memory, None) is None
    finally:
        memory.close()


def test_a_server_database_journal_ignores_the_password(store: SqliteStore) -> None:
    not_sqlite = cast(LedgerStore, object())
    a = journal_for("postgresql://app:old-secret@db:5432/ledger", not_sqlite, None)
    b = journal_for("postgresql://app:new-secret@db:5432/ledger", not_sqlite, None)
    c = journal_for("postgresql://app:old-secret@db:5432/other", not_sqlite, None)
    assert a is not None and b is not None and c is not None
    assert a.directory == Path(".faregate") / "journal"
    assert a.tag == b.tag != c.tag


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    event = make_event(cache_similarity=0.93, cache_verified=True, history_policy="window", prefix_hash="ab")
    journal.append(event)
    assert read_segments(segments(tmp_path)) == ([event], [])
    assert isinstance(read_segments(segments(tmp_path))[0][0], CostEvent)
    journal.close()
