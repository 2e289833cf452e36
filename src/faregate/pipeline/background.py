"""Work a stage starts off the client's path, tracked so shutdown (and tests) can wait for it.

The response caches store answers and verify hits, the history stage embeds turns, the router
shadows calls: all after or beside the request, none allowed to fail it, all to be finished before
the ledger closes on SIGTERM (`drain`). A failure is logged, never raised into the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any


class Background:
    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what  # for the log line: "cache background work failed: ..."
        self._pending: set[asyncio.Future[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        self._track(asyncio.ensure_future(coroutine))

    def run(self, executor: Executor, fn: Callable[..., Any], *args: Any) -> None:
        """`fn(*args)` in `executor`."""
        self._track(asyncio.get_running_loop().run_in_executor(executor, fn, *args))

    async def drain(self) -> None:
        """Wait until nothing is pending, including work that pending work started."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._pending.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None:
            self.log.error("%s failed: %s", self.what, exc, exc_info=exc)
