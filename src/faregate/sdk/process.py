"""The one recorder of this process: chosen by `configure()`, or from the environment on first use.

State is created on first use, never at import (`import faregate` stays cheap and side-effect free).
The recorder is drained at interpreter exit, and forgotten in a forked child (its thread and database
connection belong to the parent; the child opens its own on first use).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
import threading

from faregate.config import Config
from faregate.sdk.events import Observed
from faregate.sdk.recorder import Recorder
from faregate.sdk.settings import load_settings

log = logging.getLogger("faregate.sdk")

_lock = threading.Lock()
_current: Recorder | None = None
_args: tuple[str | os.PathLike[str] | None, Config | str | os.PathLike[str] | None] = (None, None)
_hooks_installed = False
_exiting = False  # the exit hook ran: no recorder thread would be drained any more


def configure(
    database: str | os.PathLike[str] | None = None, config: Config | str | os.PathLike[str] | None = None
) -> None:
    """Choose the ledger the SDK records to, for the whole process.

    `config` is a `Config` or a YAML path (default: `$FAREGATE_CONFIG`, else the `FAREGATE_*` environment
    and the defaults); its prices, features' context patterns and providers apply as in the gateway.
    `database` (a URL or a SQLite file path) wins over the config's. The store is opened now, so a bad
    config or an unreachable database raises here, not later. Events already queued go to the previous
    ledger first.
    """
    global _current, _args
    settings = load_settings(database, config)
    recorder = Recorder(lambda: settings)
    with _lock:
        previous, _current, _args = _current, recorder, (database, config)
        _install_hooks()
    if previous is not None:
        previous.close()


def current() -> Recorder:
    """The process's recorder; the first call creates it from the environment (loaded off-thread)."""
    global _current
    with _lock:
        if _current is None:
            _install_hooks()
            _current = Recorder(functools.partial(load_settings, *_args))
        return _current


def submit(seen: Observed) -> None:
    """Queue an observed call; never raises into the application."""
    try:
        if _exiting or sys.is_finalizing():
            _record_now(seen)
        else:
            current().submit(seen)
    except Exception:
        log.exception("cannot record a FareGate cost event")


def _record_now(seen: Observed) -> None:
    """After the exit hook (a stream collected at shutdown, another atexit handler's call): on this
    thread, because a thread started now would never run, or never be drained."""
    recorder = Recorder(functools.partial(load_settings, *_args))
    try:
        recorder.record_now([seen])
    finally:
        recorder.close(0)


def flush(timeout: float | None = 30.0) -> bool:
    """Block until every event recorded so far is in the ledger (tests, and scripts before they exit).

    False when `timeout` passed first.
    """
    with _lock:
        recorder = _current
    return True if recorder is None else recorder.flush(timeout)


def shutdown(timeout: float | None = 30.0) -> None:
    """Store what is queued and close the ledger; the next event opens it again."""
    global _current
    with _lock:
        recorder, _current = _current, None
    if recorder is not None:
        recorder.close(timeout)


def _install_hooks() -> None:
    global _hooks_installed
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forget_in_child)


def _at_exit() -> None:
    global _exiting
    _exiting = True
    shutdown(10.0)


def _forget_in_child() -> None:
    global _lock, _current
    _lock = threading.Lock()  # another thread may have held it at the fork
    _current = None  # the parent's queue is the parent's to write
