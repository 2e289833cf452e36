"""An append-only journal of cost events, so that a crash or a database outage loses none.

The writer appends every event here before the request is answered, then stores it in the
database in batches. If the process is killed (`kill -9`, OOM killer) the events it had
acknowledged but not yet stored are still in the journal (the OS page cache survives the
process), and the next start replays them; `write_batch` skips request ids already stored, so
a replay is harmless. Segments whose events are all stored are deleted as the writer catches up.

Layout: JSON-lines segment files `<db tag>-<pid>-<time>-<random>.jsonl` in one directory; the
first line names the event fields, each later line is one event's values in that order (a third
of the bytes of a JSON object, and half the time to encode, on the hot path). A
process holds an exclusive `flock` on each of its segments while it lives, so a replica on the
same machine never replays (or deletes) a live process's journal; the lock dies with the process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import operator
import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson

from faregate.ledger.events import CostEvent
from faregate.ledger.store import LedgerStore
from faregate.ledger.writer import parse_event, store_batch, write_fallback, write_fallback_lines

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
_SEGMENT_NAME = re.compile(r"([0-9A-Za-z_]+)-[0-9]+-[0-9a-f]+-[0-9a-f]+\.jsonl")  # tag-pid-time-random
_CREATING_SUFFIX = ".creating"  # a segment before it is locked: never replayed, never deleted live
DEFAULT_SEGMENT_EVENTS = 10_000
DEFAULT_SEGMENT_BYTES = 8 << 20
_APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE
_FIELDS = tuple(f.name for f in dataclasses.fields(CostEvent))
_values = operator.attrgetter(*_FIELDS)  # one C call: the event's values as a tuple
_HEADER_KEY = "faregate_journal"
_HEADER = orjson.dumps({_HEADER_KEY: 1, "fields": _FIELDS}) + b"\n"


@dataclass(slots=True)
class _Segment:
    path: Path
    fd: int
    first: int  # number (0-based, in append order) of the segment's first event
    end: int = -1  # one past its last event, once rotated; -1 while it is the open segment
    size: int = 0


@dataclass(slots=True)
class RecoveryReport:
    """What a start-up recovery found; `events` counts lines replayed (already stored ones too)."""

    segments: int = 0
    events: int = 0
    rejected: int = 0  # refused by the database as invalid: in the fallback file
    unparseable: int = 0  # torn or corrupt lines: in the fallback file, as they were
    live: int = 0  # segments locked by a live process: left alone
    failed: int = 0  # segments left for the next start because the store failed
    other_databases: int = 0  # segments of another ledger database sharing the directory
    paths: list[str] = field(default_factory=list)


class Journal:
    """One process's journal: `append` on the event loop, `stored` as the writer catches up.

    Events are numbered in the order `append` is called (the writer's submission order). No
    fsync per event: a killed process loses nothing that reached the page cache. `fsync=True`
    syncs a segment when it is rotated or closed, which narrows (does not close) the window a
    power loss can take.
    """

    def __init__(
        self,
        directory: Path,
        *,
        tag: str = "ledger",
        max_segment_events: int = DEFAULT_SEGMENT_EVENTS,
        max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = False,
    ) -> None:
        if not re.fullmatch(r"[0-9A-Za-z_]+", tag):
            raise ValueError("a journal tag is a non-empty name of letters, digits and '_'")
        self.directory = Path(directory)
        self.tag = tag
        self._max_events = max(1, max_segment_events)
        self._max_bytes = max(1, max_segment_bytes)
        self._fsync = fsync
        self._current: _Segment | None = None
        self._closed: list[_Segment] = []  # rotated segments with events not yet stored, oldest first
        self._count = 0  # events appended (or attempted): the next event's number
        self._stored = 0  # events numbered below this are stored (or set aside in the fallback file)
        self._failed_until = 0  # events numbered below this may be missing from the journal
        self._failing = False
        self._torn = False  # a partial write left a line without its newline

    # -- the hot path -------------------------------------------------------------------------

    def append(self, event: CostEvent) -> None:
        """Write one event as one JSON line (one `os.write` on an O_APPEND fd); never raises.

        A failure (disk full, journal not open) is logged once per streak and remembered, so
        that the writer keeps such events in memory instead of trusting the journal with them.
        """
        number = self._count
        self._count = number + 1
        segment = self._current
        try:
            line = orjson.dumps(_values(event), option=_APPEND_NEWLINE)
        except TypeError:  # orjson refuses integers beyond 64 bits: the database will refuse them too
            line = json.dumps(list(_values(event)), default=repr).encode() + b"\n"
        if segment is None:
            self._append_failed(number, "the journal is not open")
            return
        try:
            if self._torn:
                line = b"\n" + line
            written = os.write(segment.fd, line)
        except OSError as exc:
            self._append_failed(number, f"{type(exc).__name__}: {exc}")
            return
        if written != len(line):
            self._torn = True
            self._append_failed(number, f"short write ({written} of {len(line)} bytes)")
            return
        self._torn = False
        segment.size += written
        if self._failing:
            self._failing = False
            log.warning("ledger journal writes recovered", extra={"path": str(segment.path)})
        if segment.size >= self._max_bytes or self._count - segment.first >= self._max_events:
            self.rotate()

    def _append_failed(self, number: int, error: str) -> None:
        self._failed_until = number + 1
        if not self._failing:
            self._failing = True
            log.error(
                "cannot write the ledger journal: events are kept in memory only until stored "
                "(a crash now would lose them)",
                extra={"directory": str(self.directory), "error": error},
            )

    # -- what the writer needs ----------------------------------------------------------------

    @property
    def appended(self) -> int:
        return self._count

    def holds(self, number: int) -> bool:
        """Whether every event numbered `number` or later is in the journal."""
        return number >= self._failed_until

    def stored(self, upto: int) -> None:
        """Events numbered below `upto` are stored: delete the segments holding only those."""
        if upto <= self._stored:
            return
        self._stored = upto
        while self._closed and self._closed[0].end <= upto:
            self._delete(self._closed.pop(0))

    def segments(self, start: int, end: int) -> list[tuple[Path, int]]:
        """The segments that may hold events numbered in [start, end), oldest first, each with
        one past the number of the last event it can hold."""
        found = [(s.path, s.end) for s in self._closed if s.end > start and s.first < end]
        if self._current is not None and self._current.first < end:
            found.append((self._current.path, self._count))
        return found

    def read(self, paths: Sequence[Path]) -> tuple[list[CostEvent], list[bytes]]:
        """The events in some of this journal's segments, for a replay (blocking)."""
        return read_segments(paths)

    def open(self) -> None:
        """Create the directory (private: events name users) and the first segment.

        Raises OSError when the directory cannot be created or written: the gateway refuses to
        start rather than run without crash safety nobody knows is missing.
        """
        if self._current is not None:
            return
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._current = self._new_segment()
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot open the ledger journal in {self.directory} ({exc.strerror or exc}): "
                "set ledger.journal_dir to a writable local directory",
            ) from exc

    def start(self, store: LedgerStore, fallback_path: Path) -> RecoveryReport:
        """Open this process's segment, then replay those of dead processes (blocking)."""
        self.open()
        return self.recover(store, fallback_path)

    def rotate(self) -> None:
        """Start a new segment; the old one stays locked until its events are stored."""
        old = self._current
        if old is not None and old.first == self._count:
            return  # empty: nothing to rotate away from
        try:
            new = self._new_segment()
        except OSError as exc:  # keep appending to the old segment: bigger, never lost
            log.error(
                "cannot start a new ledger journal segment",
                extra={"directory": str(self.directory), "error": f"{type(exc).__name__}: {exc}"},
            )
            return
        self._current = new
        if old is None:
            return
        old.end = new.first
        if self._fsync:
            _fsync_quietly(old.fd)
        if old.end <= self._stored:
            self._delete(old)
        else:
            self._closed.append(old)

    def close(self) -> None:
        """Release the segments: delete those fully stored, leave (unlocked) the rest for a replay."""
        segments = [*self._closed, *([self._current] if self._current is not None else [])]
        self._closed.clear()
        self._current = None
        left = []
        for segment in segments:
            end = segment.end if segment.end >= 0 else self._count
            if end <= self._stored:
                self._delete(segment)
                continue
            if self._fsync:
                _fsync_quietly(segment.fd)
            os.close(segment.fd)
            left.append(str(segment.path))
        if left:
            log.error(
                "ledger events not yet stored are left in the journal; the next start replays them",
                extra={"events": self._count - self._stored, "segments": left},
            )

    def _new_segment(self) -> _Segment:
        # Created under a name recovery ignores, locked, then renamed: another process can never
        # lock (and replay, and delete) a segment in the instant before its owner locks it.
        for attempt in range(3):
            name = f"{self.tag}-{os.getpid()}-{time.time_ns():x}-{secrets.token_hex(4)}"
            creating = self.directory / (name + _CREATING_SUFFIX)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
            fd = os.open(creating, flags, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.write(fd, _HEADER)
                path = self.directory / (name + SEGMENT_SUFFIX)
                os.rename(creating, path)
            except FileNotFoundError:
                # A recovering process removed it as abandoned before we locked it: try again.
                os.close(fd)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    creating.unlink()
                raise
            self._torn = False
            return _Segment(path=path, fd=fd, first=self._count, size=len(_HEADER))
        raise AssertionError("unreachable")

    def _delete(self, segment: _Segment) -> None:
        try:
            segment.path.unlink()
        except OSError as exc:  # left behind: replayed (harmlessly) at the next start
            log.warning(
                "cannot delete a ledger journal segment", extra={"path": str(segment.path), "error": str(exc)}
            )
        os.close(segment.fd)

    # -- start-up -----------------------------------------------------------------------------

    def recover(self, store: LedgerStore, fallback_path: Path, batch_size: int = 1000) -> RecoveryReport:
        """Replay the segments of dead processes into the store, then delete them (blocking).

        Segments a live process holds locked are skipped. A segment the store fails on is kept
        for the next start; lines that do not parse (a torn write) and events the database
        refuses go to the fallback file. Safe to run concurrently in several processes.
        """
        report = RecoveryReport()
        if not self.directory.is_dir():
            return report
        own = {s.path for s in self._closed} | ({self._current.path} if self._current else set())
        for path in sorted(self.directory.iterdir()):
            if path.name.endswith(_CREATING_SUFFIX):
                _remove_if_abandoned(path)
                continue
            name = _SEGMENT_NAME.fullmatch(path.name)
            if name is None or path in own:
                continue  # not a segment (a fallback file sharing the directory), or ours
            if name.group(1) != self.tag:
                report.other_databases += 1
                continue
            self._recover_segment(path, store, fallback_path, batch_size, report)
        if report.segments or report.failed or report.unparseable or report.rejected:
            level = (
                logging.ERROR if report.failed or report.unparseable or report.rejected else logging.WARNING
            )
            log.log(
                level,
                "ledger journal recovered after an unclean stop",
                extra={
                    "directory": str(self.directory),
                    "segments": report.segments,
                    "events": report.events,
                    "rejected": report.rejected,
                    "unparseable": report.unparseable,
                    "failed_segments": report.failed,
                    "live_segments": report.live,
                    "fallback": str(fallback_path),
                },
            )
        if report.other_databases:
            log.warning(
                "the ledger journal directory holds segments of another database: not replayed here",
                extra={"directory": str(self.directory), "segments": report.other_databases},
            )
        return report

    def _recover_segment(
        self, path: Path, store: LedgerStore, fallback_path: Path, batch_size: int, report: RecoveryReport
    ) -> None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # another process recovered it meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                report.live += 1
                return
            if os.fstat(fd).st_nlink == 0:
                return  # recovered and deleted by another process between our open and lock
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            events, bad = parse_segment(data, torn_tail_is_bad=True)
            try:
                rejected: list[CostEvent] = []
                for i in range(0, len(events), batch_size):
                    refused, _ = store_batch(store, events[i : i + batch_size])
                    rejected.extend(refused)
            except Exception as exc:
                report.failed += 1
                log.error(
                    "cannot replay a ledger journal segment: kept for the next start",
                    extra={
                        "path": str(path),
                        "error": f"{type(exc).__name__}: {str(exc).partition(chr(10))[0][:300]}",
                    },
                )
                return
            if rejected and write_fallback(rejected, fallback_path) is None:
                report.failed += 1
                return  # neither stored nor set aside: keep the segment
            if bad and write_fallback_lines(bad, fallback_path) is None:
                report.failed += 1
                return
            path.unlink()
            report.segments += 1
            report.events += len(events)
            report.rejected += len(rejected)
            report.unparseable += len(bad)
            report.paths.append(str(path))
        finally:
            os.close(fd)


def parse_segment(data: bytes, *, torn_tail_is_bad: bool) -> tuple[list[CostEvent], list[bytes]]:
    """Events of a segment, and the lines that are not events.

    A last line without its newline is a write cut short: for a dead process's segment it is
    kept as a bad line (never dropped silently); for a live one it is an append in progress.
    """
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the data ends with a newline
    events: list[CostEvent] = []
    bad: list[bytes] = []
    fields: list[str] | None = None
    for line in lines:
        if not line.strip():
            continue
        try:
            values = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append(line)
            continue
        if isinstance(values, list):
            if fields is None or len(values) != len(fields):
                bad.append(line)
                continue
            row = dict(zip(fields, values, strict=True))
            try:
                events.append(CostEvent(**row))
            except TypeError:  # fields of another FareGate version: keep them readable by a human
                bad.append(orjson.dumps(row, default=repr))
        elif isinstance(values, dict) and _HEADER_KEY in values:
            fields = [str(name) for name in values.get("fields", [])]
        elif (event := parse_event(line)) is not None:  # an event written as an object
            events.append(event)
        else:
            bad.append(line)
    if tail.strip() and torn_tail_is_bad:
        bad.append(tail)
    return events, bad


def read_segments(paths: Sequence[Path]) -> tuple[list[CostEvent], list[bytes]]:
    """A live journal's events in the given segments (blocking; run it in a worker thread)."""
    events: list[CostEvent] = []
    bad: list[bytes] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # deleted meanwhile: its events were stored
        found, unparseable = parse_segment(data, torn_tail_is_bad=False)
        events.extend(found)
        bad.extend(unparseable)
    return events, bad


def journal_for(database: str, store: LedgerStore, journal_dir: str | None) -> Journal | None:
    """The journal a gateway on `database` uses; None for an in-memory SQLite ledger.

    Default directory: `journal/` next to a SQLite file, else `.faregate/journal`. Segments are
    tagged with a hash of the database, so gateways on different databases can share a
    directory without replaying each other's events into the wrong ledger.
    """
    from faregate.ledger.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        if str(store.path) == ":memory:":
            return None  # nothing survives the process anyway
        identity = str(store.path.resolve())
        default = store.path.parent / "journal"
    else:
        identity = _without_password(database)
        default = Path(".faregate") / "journal"
    directory = Path(journal_dir).expanduser() if journal_dir else default
    tag = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return Journal(directory, tag=tag)


def _without_password(url: str) -> str:
    """The URL minus its password, so that rotating a password does not orphan a journal."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[2]}"))


def _remove_if_abandoned(path: Path) -> None:
    """A segment its creator died before renaming holds no events; remove it unless still locked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_quietly(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        log.error("cannot fsync a ledger journal segment", extra={"error": str(exc)})
