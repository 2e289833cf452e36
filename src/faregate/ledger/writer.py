"""Batched ledger writes off the request path, with retries, a journal and a file of last resort.

A request appends its event to the journal (when there is one: `faregate.ledger.journal`) and
to a deque; a background task writes batches in a worker thread. An event ends in the store, in
the fallback file (the database refused it, or nothing else would take it), or, when the store
is down at shutdown, in the journal for the next start to replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from faregate.ledger.events import CostEvent
from faregate.ledger.store import DEFAULT_FALLBACK, InvalidEventError, LedgerStore

if TYPE_CHECKING:
    from faregate.ledger.journal import Journal

log = logging.getLogger(__name__)


class LedgerWriter:
    """Owns the queue of events not yet stored; does not own (or close) the store or the journal.

    `max_pending` bounds memory during a long database outage: past it, the queue is dropped
    from memory when the journal holds it (and replayed from the journal once the store is
    back), else moved to the fallback file, instead of growing until the process dies.
    """

    def __init__(
        self,
        store: LedgerStore,
        max_batch: int = 1000,
        flush_interval: float = 0.05,
        *,
        fallback_path: Path | None = None,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        close_attempts: int = 3,
        max_pending: int = 1_000_000,
        journal: Journal | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._store = store
        self._max_batch = max_batch
        self._flush_interval = flush_interval
        self._fallback_path = fallback_path if fallback_path is not None else store.fallback_path
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._close_attempts = max(1, close_attempts)
        self._max_pending = max_pending
        self._pending: deque[CostEvent] = deque()
        self._submitted = 0  # events ever submitted
        # Events ever accounted for, in submission order: stored, in the fallback file, or (at
        # close with the store down) left in the journal.
        self._done = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()  # there is something to write
        self._urgent = asyncio.Event()  # write now: a full batch, a flush() or close()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._journal = journal
        # The n-th event submitted here is the journal's event number n + base.
        self._journal_base = journal.appended if journal is not None else 0
        # Events numbered in [_done, _journal_only_until) are out of memory: in the journal (or,
        # where its writes failed, the fallback file), waiting for a replay once the store is back.
        self._journal_only_until = 0

    @property
    def pending(self) -> int:
        """Events submitted but not yet stored (or written to the fallback file)."""
        return self._submitted - self._done

    def submit(self, event: CostEvent) -> None:
        """Journal and queue one event; call from the event loop thread. Never awaits.

        The journal append (one `os.write`, no fsync) happens before the caller answers the
        client, so an acknowledged event survives a `kill -9` of the process.
        """
        if self._closed:
            raise RuntimeError("LedgerWriter.submit() after close(): the event would never be written")
        journal = self._journal
        if journal is not None:
            journal.append(event)
        self._pending.append(event)
        self._submitted += 1
        if not self._wake.is_set():
            self._wake.set()
        if len(self._pending) >= self._max_batch and not self._urgent.is_set():
            self._urgent.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="faregate-ledger-writer")

    async def flush(self) -> None:
        """Return once every event submitted before the call is stored (or in the fallback file)."""
        target = self._submitted
        if self._done >= target:
            return
        if self._task is None or self._task.done():
            raise RuntimeError("LedgerWriter.flush() needs a running writer: call start() first")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        self._urgent.set()
        await waiter

    async def close(self) -> None:
        """Write everything queued, then stop. What cannot be stored stays in the journal for the
        next start to replay (without a journal: goes to the fallback file)."""
        self._closed = True
        await self.start()  # events submitted before start() must still be written
        assert self._task is not None
        self._stopping.set()
        self._urgent.set()
        self._wake.set()
        await self._task

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if not self._urgent.is_set():
                    # Let a burst of requests share one transaction instead of one each.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._flush_interval):
                            await self._urgent.wait()
                self._urgent.clear()
                await self._drain()
                if self._stopping.is_set() and self._done >= self._submitted:
                    return
        except asyncio.CancelledError:
            # The loop is going away without close() (asyncio.run's teardown cancels tasks):
            # no time for the store, but the file is one blocking write away.
            if self.pending:
                self._spill_now("writer cancelled before close()")
            raise
        except BaseException as exc:
            log.exception("ledger writer crashed", extra={"pending": self.pending})
            if self.pending:
                self._spill_now("writer crashed")
            for _, waiter in self._waiters:
                if not waiter.done():
                    waiter.set_exception(RuntimeError(f"ledger writer crashed: {exc!r}"))
            raise

    async def _drain(self) -> None:
        """Write until every event is accounted for, retrying the head of the queue until it succeeds."""
        failures = 0
        closing_failures = 0
        while self._done < self._submitted:
            try:
                if self._journal_only_until > self._done:
                    await self._replay_journal()
                else:
                    await self._write_head_batch()
            except Exception as exc:
                failures += 1
                if self._stopping.is_set():
                    # Shutdown has a deadline (SIGKILL follows SIGTERM): a few quick tries, then give up.
                    closing_failures += 1
                    if closing_failures >= self._close_attempts:
                        await self._give_up("closing with the ledger store still failing", exc)
                        return
                    delay = min(self._retry_max, self._retry_initial * 2 ** (closing_failures - 1))
                    self._log_retry(exc, failures, delay)
                    await asyncio.sleep(delay)
                    continue
                if len(self._pending) > self._max_pending:
                    await self._overflow(exc)
                    continue
                delay = min(self._retry_max, self._retry_initial * 2 ** (failures - 1))
                self._log_retry(exc, failures, delay)
                # close() cuts the wait short and starts its own quick retries.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
                continue
            if failures:
                log.info("ledger write recovered", extra={"attempts": failures + 1})
                failures = closing_failures = 0

    async def _write_head_batch(self) -> None:
        batch = [self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))]
        try:
            rejected, invalid = await asyncio.to_thread(store_batch, self._store, batch)
        except BaseException:
            self._pending.extendleft(reversed(batch))  # back at the head, order kept
            raise
        if rejected:
            path = await asyncio.to_thread(write_fallback, rejected, self._fallback_path)
            self._report_spill("the database refused these events as invalid", invalid, rejected, path)
        self._mark_done(len(batch))

    async def _replay_journal(self) -> None:
        """Store the events held only in the journal, a segment at a time (raises if the store fails).

        A segment may also hold events already stored, or still queued: `write_batch` skips ids
        it has, so writing them again is harmless.
        """
        journal = self._journal
        assert journal is not None
        base = self._journal_base
        until = self._journal_only_until
        for path, end in journal.segments(base + self._done, base + until):
            events, bad = await asyncio.to_thread(journal.read, [path])
            for i in range(0, len(events), self._max_batch):
                batch = events[i : i + self._max_batch]
                rejected, invalid = await asyncio.to_thread(store_batch, self._store, batch)
                if rejected:
                    where = await asyncio.to_thread(write_fallback, rejected, self._fallback_path)
                    self._report_spill(
                        "the database refused these events as invalid", invalid, rejected, where
                    )
            if bad:  # a write cut short (disk full): kept as it was, once the segment is stored
                where = await asyncio.to_thread(write_fallback_lines, bad, self._fallback_path)
                self._report_lines(len(bad), where)
            if (upto := min(end - base, until)) > self._done:
                self._mark_done(upto - self._done)
        if until > self._done:  # events whose journal write had failed: in the fallback file
            self._mark_done(until - self._done)
        log.info("ledger events held in the journal are stored", extra={"events_upto": until})

    async def _overflow(self, exc: BaseException) -> None:
        """Too many events wait for a failing store: drop them from memory, keeping them safe."""
        journal = self._journal
        if journal is None:
            await self._spill("too many events waiting for the ledger store", exc)
            return
        events = self._take_queue()
        if journal.holds(self._journal_base + self._submitted - len(events)):
            journal.rotate()  # so that the replay reads closed segments, deleted once stored
            log.warning(
                "ledger store still failing: events waiting for it are held in the journal only",
                extra={"error": _describe(exc), "events": self.pending, "directory": str(journal.directory)},
            )
        else:
            path = await asyncio.to_thread(write_fallback, events, self._fallback_path)
            self._report_spill("too many events waiting for the ledger store", exc, events, path)

    async def _give_up(self, reason: str, exc: BaseException) -> None:
        """Closing with the store still down: leave the events to the journal's replay at next start."""
        if self._journal is None:
            await self._spill(reason, exc)
            return
        events = self._take_queue()
        if not self._journal.holds(self._journal_base + self._submitted - len(events)):
            path = await asyncio.to_thread(write_fallback, events, self._fallback_path)
            self._report_spill(reason, exc, events, path)
        self._leave_in_journal(reason, exc)

    def _take_queue(self) -> list[CostEvent]:
        """Empty the in-memory queue; its events become part of the range only the journal holds."""
        events = list(self._pending)
        self._pending.clear()
        self._journal_only_until = self._submitted
        return events

    def _leave_in_journal(self, reason: str, exc: BaseException | None) -> None:
        assert self._journal is not None
        log.error(
            "ledger events left in the journal; the next start replays them",
            extra={
                "reason": reason,
                "error": _describe(exc) if exc is not None else None,
                "events": self.pending,
                "directory": str(self._journal.directory),
            },
        )
        self._mark_done(self.pending, stored=False)

    def _log_retry(self, exc: Exception, failures: int, delay: float) -> None:
        log.warning(
            "ledger write failed; retrying",
            extra={
                "error": _describe(exc),
                "attempt": failures,
                "retry_in_s": delay,
                "pending": len(self._pending),
            },
        )

    async def _spill(self, reason: str, exc: BaseException | None = None) -> None:
        events = list(self._pending)
        self._pending.clear()
        path = await asyncio.to_thread(write_fallback, events, self._fallback_path)
        self._report_spill(reason, exc, events, path)
        self._mark_done(len(events))

    def _spill_now(self, reason: str) -> None:
        """No time left to await anything: the journal keeps what it holds, the file the rest."""
        if self._journal is None:
            events = list(self._pending)
            self._pending.clear()
            self._report_spill(reason, None, events, write_fallback(events, self._fallback_path))
            self._mark_done(len(events))
            return
        events = self._take_queue()
        if not self._journal.holds(self._journal_base + self._submitted - len(events)):
            self._report_spill(reason, None, events, write_fallback(events, self._fallback_path))
        self._leave_in_journal(reason, None)

    def _report_spill(
        self, reason: str, exc: BaseException | None, events: list[CostEvent], path: Path | None
    ) -> None:
        error = _describe(exc) if exc is not None else None
        if path is None:
            log.critical(
                "ledger events lost: neither the store nor any fallback file accepted them",
                extra={"reason": reason, "error": error, "lost": len(events)},
            )
        else:
            log.error(
                "ledger events written to the fallback file instead of the store",
                extra={"reason": reason, "error": error, "events": len(events), "path": str(path)},
            )

    def _report_lines(self, n: int, path: Path | None) -> None:
        if path is None:
            log.critical(
                "unparseable ledger journal lines lost: no fallback file accepted them", extra={"lines": n}
            )
        else:
            log.error(
                "unparseable ledger journal lines written to the fallback file",
                extra={"lines": n, "path": str(path)},
            )

    def _mark_done(self, n: int, *, stored: bool = True) -> None:
        """`n` more events (in submission order) are accounted for; `stored`: no longer needed in
        the journal (in the store, or set aside in the fallback file)."""
        self._done += n
        if stored and self._journal is not None:
            self._journal.stored(self._journal_base + self._done)
        still_waiting = []
        for target, waiter in self._waiters:
            if target <= self._done:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still_waiting.append((target, waiter))
        self._waiters = still_waiting


def store_batch(
    store: LedgerStore, batch: Sequence[CostEvent]
) -> tuple[list[CostEvent], InvalidEventError | None]:
    """Store a batch; return the events the database refused, and why. Runs in a worker thread.

    When the batch as a whole is refused, each event is retried alone so that only the bad ones
    are set aside. Events stored before a later failure are harmless: their ids are ignored when
    the batch is retried.
    """
    try:
        store.write_batch(batch)
        return [], None
    except InvalidEventError as exc:
        if len(batch) == 1:
            return list(batch), exc
        error = exc
    rejected: list[CostEvent] = []
    for event in batch:
        try:
            store.write_batch([event])
        except InvalidEventError as exc:
            rejected.append(event)
            error = exc
    return rejected, error


def _describe(exc: BaseException) -> str:
    """The error's type and first line: later lines (PostgreSQL's DETAIL) can quote row values."""
    return f"{type(exc).__name__}: {str(exc).partition(chr(10))[0][:300]}"


def write_fallback(events: Sequence[CostEvent], preferred: Path) -> Path | None:
    """Append events as JSON lines to the first path that accepts them; None if none did.

    The preferred path sits next to the database, but a full or read-only disk is a common
    reason for the store to fail, so the working directory and the temp dir are tried too.
    """
    return write_fallback_lines([event_line(event) for event in events], preferred)


def write_fallback_lines(lines: Sequence[bytes], preferred: Path) -> Path | None:
    """Append raw lines (events, or journal lines that no longer parse) to the fallback file."""
    data = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines)
    candidates = dict.fromkeys(
        [preferred, DEFAULT_FALLBACK, Path(tempfile.gettempdir()) / "faregate-ledger-fallback.jsonl"]
    )
    for path in candidates:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            log.error("cannot write ledger fallback file", extra={"path": str(path), "error": str(exc)})
            continue
        return path
    return None


def event_line(event: CostEvent) -> bytes:
    """One event as a JSON line, whatever odd value made the database refuse it."""
    try:
        return orjson.dumps(event, default=repr) + b"\n"
    except TypeError:  # orjson refuses integers beyond 64 bits; the stdlib does not
        return json.dumps(dataclasses.asdict(event), default=repr).encode() + b"\n"


def read_fallback(path: Path) -> list[CostEvent]:
    """Load a fallback file, to replay it with `store.write_batch` once the store is healthy.

    Lines that are not events (torn journal lines set aside at recovery) are skipped with an
    error naming how many; they stay in the file for a human to read.
    """
    events: list[CostEvent] = []
    skipped = 0
    for line in path.read_bytes().splitlines():
        if line.strip():
            event = parse_event(line)
            if event is None:
                skipped += 1
            else:
                events.append(event)
    if skipped:
        log.error(
            "fallback file lines that are not events skipped", extra={"path": str(path), "lines": skipped}
        )
    return events


def parse_event(line: bytes) -> CostEvent | None:
    """One JSON line back into an event; None when it is not one (torn, corrupt, unknown fields)."""
    try:
        fields = orjson.loads(line)
        return CostEvent(**fields) if isinstance(fields, dict) else None
    except (ValueError, TypeError):
        return None
