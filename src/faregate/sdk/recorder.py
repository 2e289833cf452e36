"""The recorder: a queue of observed calls and one thread that turns them into ledger rows in batches.

Not `LedgerWriter`: that writer lives on an asyncio loop and writes through the loop's thread pool, and
Python shuts thread pools down *before* atexit handlers run, so a short script's last events could not
be stored at exit. This thread calls `store.write_batch` itself, so `atexit` can still drain it. The
rules are the writer's: batches share a transaction, failures are retried, and what cannot be stored
goes to the store's fallback file (replayable with `faregate.ledger.writer.read_fallback`), never lost
silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from faregate.ledger import CostEvent, LedgerStore
from faregate.ledger.store import DEFAULT_FALLBACK, InvalidEventError
from faregate.ledger.writer import write_fallback
from faregate.sdk.events import Observed, to_event
from faregate.sdk.settings import Settings, offline_settings

log = logging.getLogger("faregate.sdk")


class Recorder:
    """Owns its queue, its thread and (once loaded) its settings' store, which `close()` closes."""

    def __init__(
        self,
        load: Callable[[], Settings],
        *,
        max_batch: int = 500,
        flush_interval: float = 0.1,
        retry_delays: Sequence[float] = (0.1, 0.5, 2.0),
        max_pending: int = 100_000,
    ) -> None:
        self._load = load
        self._settings: Settings | None = None
        self._offline: Settings | None = None
        self._max_batch = max_batch
        self._flush_interval = flush_interval
        self._retry_delays = tuple(retry_delays)
        self._max_pending = max_pending  # bounds memory while the store hangs
        self._dropped = 0
        self._cond = threading.Condition()
        self._queue: deque[Observed] = deque()
        self._submitted = 0
        self._done = 0
        self._urgent = False
        self._closing = False
        self._thread: threading.Thread | None = None

    def submit(self, seen: Observed) -> None:
        """Queue one call; any thread. Never blocks on the store."""
        with self._cond:
            if self._closing:
                log.error("FareGate recorder already closed: a cost event was not recorded")
                return
            if len(self._queue) >= self._max_pending:
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 10_000 == 0:
                    log.critical(
                        "the ledger store is not keeping up: cost events dropped",
                        extra={"dropped": self._dropped},
                    )
                return
            self._queue.append(seen)
            self._submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="faregate-sdk-recorder", daemon=True)
                self._thread.start()
            if len(self._queue) == 1 or len(self._queue) >= self._max_batch:
                self._cond.notify_all()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every call submitted so far is stored (or in the fallback file); False on timeout."""
        with self._cond:
            target = self._submitted
            self._urgent = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Store what is queued, stop the thread, close the store."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.error("FareGate recorder did not finish in time", extra={"pending": len(self._queue)})
                return
        if self._settings is not None and self._settings.store is not None:
            try:
                self._settings.store.close()
            except Exception:
                log.exception("cannot close the ledger store")

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not (self._closing or self._urgent or len(self._queue) >= self._max_batch):
                    # Let a burst of calls share one transaction instead of one each.
                    self._cond.wait(self._flush_interval)
                batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
                if not self._queue:
                    self._urgent = False
                if not batch and self._closing:
                    return
            try:
                self._record(batch)
            except BaseException:  # the thread must outlive any bug, or every later event is lost
                log.exception("FareGate recorder failed on a batch", extra={"events": len(batch)})
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def record_now(self, batch: list[Observed]) -> None:
        """Record on the calling thread, bypassing the queue (at interpreter exit)."""
        self._record(batch)

    def _record(self, batch: list[Observed]) -> None:
        settings = self._current_settings()
        events: list[CostEvent] = []
        for seen in batch:
            try:
                events.append(to_event(seen, settings))
            except Exception:
                log.exception("cannot build a cost event", extra={"request_id": seen.request_id})
        if events:
            self._store(settings.store, events)

    def _current_settings(self) -> Settings:
        """The configured settings, loaded here (off the application's threads) and retried per batch
        while they fail: a database that is down at start-up must not lose the events after it is back."""
        if self._settings is None:
            try:
                self._settings = self._load()
            except Exception as exc:
                if self._offline is None:
                    log.error(
                        "cannot open the FareGate ledger; cost events go to the fallback file",
                        extra={"error": f"{type(exc).__name__}: {exc}"},
                    )
                    self._offline = offline_settings()
                return self._offline
        return self._settings

    def _store(self, store: LedgerStore | None, events: list[CostEvent]) -> None:
        if store is None:
            _spill(events, DEFAULT_FALLBACK, "no ledger store could be opened")
            return
        for delay in (*self._retry_delays, None):
            try:
                store.write_batch(events)
                return
            except InvalidEventError:
                self._store_one_by_one(store, events)
                return
            except Exception as exc:
                if delay is None:
                    _spill(events, store.fallback_path, f"the store kept failing: {type(exc).__name__}")
                    return
                extra = {"error": str(exc)[:300], "retry_in_s": delay}
                log.warning("ledger write failed; retrying", extra=extra)
                time.sleep(delay)

    def _store_one_by_one(self, store: LedgerStore, events: list[CostEvent]) -> None:
        """Only the events the database refuses are set aside, not the whole batch."""
        rejected = []
        for event in events:
            try:
                store.write_batch([event])
            except Exception:
                rejected.append(event)
        if rejected:
            _spill(rejected, store.fallback_path, "the database refused these events")


def _spill(events: list[CostEvent], path: Path, reason: str) -> None:
    written = write_fallback(events, path)
    if written is None:
        log.critical("cost events lost", extra={"reason": reason, "lost": len(events)})
    else:
        log.error("cost events written to the fallback file", extra={"reason": reason, "path": str(written)})
