"""Batched ledger writes off the request path, with retries and a file of last resort.

A request only appends its event to a deque; a background task writes batches in a worker
thread. An event leaves the deque for exactly one of two places: the store or the fallback file.
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
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from faregate.ledger.events import CostEvent
from faregate.ledger.store import DEFAULT_FALLBACK, InvalidEventError, LedgerStore

log = logging.getLogger(__name__)


class LedgerWriter:
    """Owns the queue of events not yet stored; does not own (or close) the store.

    `max_pending` bounds memory during a long database outage: past it, the queue is moved to
    the fallback file instead of growing until the process dies and loses everything.
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
        self._done = 0  # events ever stored or moved to the fallback file, in submission order
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()  # there is something to write
        self._urgent = asyncio.Event()  # write now: a full batch, a flush() or close()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Events submitted but not yet stored (or written to the fallback file)."""
        return self._submitted - self._done

    def submit(self, event: CostEvent) -> None:
        """Queue one event; call from the event loop thread. Never blocks, never awaits."""
        if self._closed:
            raise RuntimeError("LedgerWriter.submit() after close(): the event would never be written")
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
        """Write everything queued, then stop; what cannot be stored goes to the fallback file."""
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
                if self._stopping.is_set() and not self._pending:
                    return
        except asyncio.CancelledError:
            # The loop is going away without close() (asyncio.run's teardown cancels tasks):
            # no time for the store, but the file is one blocking write away.
            if self._pending:
                self._spill_now("writer cancelled before close()")
            raise
        except BaseException as exc:
            log.exception("ledger writer crashed", extra={"pending": len(self._pending)})
            if self._pending:
                self._spill_now("writer crashed")
            for _, waiter in self._waiters:
                if not waiter.done():
                    waiter.set_exception(RuntimeError(f"ledger writer crashed: {exc!r}"))
            raise

    async def _drain(self) -> None:
        """Write batches until the queue is empty, retrying the head batch until it succeeds."""
        failures = 0
        closing_failures = 0
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))]
            try:
                rejected, invalid = await asyncio.to_thread(_store_batch, self._store, batch)
            except BaseException as exc:
                self._pending.extendleft(reversed(batch))  # back at the head, order kept
                if not isinstance(exc, Exception):
                    raise
                failures += 1
                if self._stopping.is_set():
                    # Shutdown has a deadline (SIGKILL follows SIGTERM): a few quick tries, then the file.
                    closing_failures += 1
                    if closing_failures >= self._close_attempts:
                        await self._spill("closing with the ledger store still failing", exc)
                        return
                    delay = min(self._retry_max, self._retry_initial * 2 ** (closing_failures - 1))
                    self._log_retry(exc, failures, delay)
                    await asyncio.sleep(delay)
                    continue
                if len(self._pending) > self._max_pending:
                    await self._spill("too many events waiting for the ledger store", exc)
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
            if rejected:
                path = await asyncio.to_thread(write_fallback, rejected, self._fallback_path)
                self._report_spill("the database refused these events as invalid", invalid, rejected, path)
            self._mark_done(len(batch))

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
        events = list(self._pending)
        self._pending.clear()
        self._report_spill(reason, None, events, write_fallback(events, self._fallback_path))
        self._mark_done(len(events))

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

    def _mark_done(self, n: int) -> None:
        self._done += n
        still_waiting = []
        for target, waiter in self._waiters:
            if target <= self._done:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still_waiting.append((target, waiter))
        self._waiters = still_waiting


def _store_batch(
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
    data = b"".join(_json_line(event) for event in events)
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


def _json_line(event: CostEvent) -> bytes:
    """One event as a JSON line, whatever odd value made the database refuse it."""
    try:
        return orjson.dumps(event, default=repr) + b"\n"
    except TypeError:  # orjson refuses integers beyond 64 bits; the stdlib does not
        return json.dumps(dataclasses.asdict(event), default=repr).encode() + b"\n"


def read_fallback(path: Path) -> list[CostEvent]:
    """Load a fallback file, to replay it with `store.write_batch` once the store is healthy."""
    return list(_parse_lines(path.read_bytes().splitlines()))


def _parse_lines(lines: Iterable[bytes]) -> Iterable[CostEvent]:
    for line in lines:
        if line.strip():
            yield CostEvent(**orjson.loads(line))
