"""No cost event is lost: the real gateway process is stopped or killed under load, and the ledger
is compared with what the client saw.

The comparison: every request the client received a complete response for (2xx or an error, a
stream up to its last chunk) carries an `X-FareGate-Request-Id`; each of those ids must be in the
ledger once the gateway has stopped (SIGTERM) or restarted (after `kill -9`). The ledger may hold
a few more: requests the gateway answered whose response the client did not get to read in full
(at most one per client connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from faregate.fake_provider import FakeProvider, Scenario

CONCURRENCY = 8
BODY = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
HEADERS = {"Authorization": "Bearer sk-client-openai"}


class GatewayProcess:
    """`faregate serve` in a subprocess: only a real process can be SIGTERMed or SIGKILLed."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        argv = [sys.executable, "-c", "from faregate.cli import app; app()", "serve"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*argv, "--config", str(self.config), "--port", str(self.port)],
                cwd=self.config.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gateway exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return  # uvicorn binds only once the lifespan start-up (the recovery) is done
            time.sleep(0.05)
        raise RuntimeError(f"gateway did not start:\n{self.log.read_text()[-3000:]}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_stopped(self, timeout: float = 30.0) -> None:
        """After SIGTERM: uvicorn shuts down gracefully, then re-raises the signal it caught."""
        assert self.wait(timeout) in (0, -signal.SIGTERM), self.log.read_text()[-3000:]

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Clean up whatever a failed test left running (only this process, by its handle)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Load:
    """Concurrent clients counting the responses they received in full, by request id."""

    url: str
    acknowledged: list[str] = field(default_factory=list)
    streams: int = 0
    errors: int = 0  # complete error responses (acknowledged too: failed requests are billed events)
    broken: int = 0  # connections refused or cut: not acknowledged
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, session: aiohttp.ClientSession, worker: int) -> None:
        n = worker
        while not self.stop.is_set():
            n += 1
            body: dict[str, Any] = {**BODY, "stream": n % 2 == 0}
            if n % 5 == 0:
                del body["messages"]  # refused with a 400: a failed request, billed as an event all the same
            try:
                async with session.post(
                    f"{self.url}/v1/chat/completions", json=body, headers=HEADERS
                ) as resp:
                    request_id = resp.headers.get("x-faregate-request-id")
                    data = await resp.read()  # a stream: up to its terminating chunk, else it raises
            except (aiohttp.ClientError, TimeoutError):
                self.broken += 1
                await asyncio.sleep(0.02)
                continue
            if body["stream"] and resp.status == 200 and not data.rstrip().endswith(b"data: [DONE]"):
                self.broken += 1
                continue
            assert request_id, resp.headers
            self.acknowledged.append(request_id)
            self.streams += body["stream"] and resp.status == 200
            self.errors += resp.status >= 400

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tasks = [asyncio.create_task(self.run(session, i)) for i in range(CONCURRENCY)]
            try:
                yield
            finally:
                self.stop.set()
                await asyncio.gather(*tasks)

    async def until(self, acknowledged: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < acknowledged:
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} responses"
            await asyncio.sleep(0.02)


@pytest.fixture
def setup(fake_provider: FakeProvider, tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path]]:
    fake_provider.scenario = Scenario(delay=0.002)
    database = tmp_path / "ledger.db"
    config = tmp_path / "faregate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": f"sqlite:///{database}",
                "providers": {"openai": {"type": "openai", "base_url": f"{fake_provider.url}/v1"}},
                "models": {"fast": {"provider": "openai", "model": "gpt-4o-mini"}},
                "logging": {"format": "json"},
            }
        )
    )
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    try:
        yield gateway, database
    finally:
        gateway.stop()


def ledger_ids(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return {row[0] for row in conn.execute("SELECT request_id FROM events")}


def journal_segments(database: Path) -> list[Path]:
    return sorted((database.parent / "journal").glob("*.jsonl"))


@contextlib.contextmanager
def database_locked(database: Path) -> Iterator[None]:
    """Another process's write lock on the ledger: the gateway's writes wait, then fail
    (`database is locked`) once the store's busy timeout (5 s) runs out, as in an outage."""
    conn = sqlite3.connect(database, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def test_sigterm_under_load_drains_every_event(setup: tuple[GatewayProcess, Path]) -> None:
    gateway, database = setup
    gateway.start()
    load = Load(gateway.url)
    async with load.running():
        await load.until(300)
        gateway.signal(signal.SIGTERM)
        await asyncio.to_thread(gateway.wait_stopped)
    assert load.streams and load.errors  # both kinds of response, and failed requests, were sent

    ledger = ledger_ids(database)
    missing = set(load.acknowledged) - ledger
    assert not missing, f"{len(missing)} of {len(load.acknowledged)} acknowledged requests lost"
    assert len(ledger) - len(load.acknowledged) <= CONCURRENCY
    assert journal_segments(database) == []  # drained: nothing left to replay
    assert not (database.parent / "ledger-fallback.jsonl").exists()


async def test_kill_9_under_load_loses_no_acknowledged_event(setup: tuple[GatewayProcess, Path]) -> None:
    gateway, database = setup
    gateway.start()
    load = Load(gateway.url)
    async with load.running():
        await load.until(200)
        # Hold the writer back for a moment, as a slow disk would, so that the kill certainly
        # lands while acknowledged events wait in memory (else it lands in a 50 ms window by luck).
        with database_locked(database):
            seen = len(load.acknowledged)
            # Up to CONCURRENCY answers still in flight when the lock was taken may belong to events
            # the writer's last transaction (which BEGIN EXCLUSIVE waited for) had already stored.
            await load.until(seen + 100 + CONCURRENCY)
            gateway.signal(signal.SIGKILL)
            await asyncio.to_thread(gateway.wait)
    assert load.streams and load.errors

    not_stored = set(load.acknowledged) - ledger_ids(database)
    assert len(not_stored) >= 100, "the kill was meant to land with events not yet stored"
    assert journal_segments(database)  # where they are

    gateway.start()  # same config, same journal: the recovery runs before it serves
    ledger = ledger_ids(database)
    missing = set(load.acknowledged) - ledger
    assert not missing, f"{len(missing)} of {len(load.acknowledged)} acknowledged requests lost"
    assert len(ledger) - len(load.acknowledged) <= CONCURRENCY
    gateway.signal(signal.SIGTERM)
    await asyncio.to_thread(gateway.wait_stopped)
    assert journal_segments(database) == []
    assert "ledger journal recovered after an unclean stop" in gateway.log.read_text()


async def test_database_outage_then_kill_9_loses_no_acknowledged_event(
    setup: tuple[GatewayProcess, Path],
) -> None:
    gateway, database = setup
    gateway.start()
    load = Load(gateway.url)
    async with load.running():
        await load.until(100)
        with database_locked(database):
            # The outage outlasts the busy timeout: writes fail and are retried while requests
            # keep being answered (submitting an event never waits for the database).
            deadline = time.monotonic() + 12
            while "ledger write failed; retrying" not in gateway.log.read_text():
                assert time.monotonic() < deadline, "the gateway never saw the database fail"
                await asyncio.sleep(0.1)
            seen = len(load.acknowledged)
            await load.until(seen + 50)  # still answering during the outage
            gateway.signal(signal.SIGKILL)
            await asyncio.to_thread(gateway.wait)
    # The database is back (the lock is gone); the gateway restarts on it.
    assert len(set(load.acknowledged) - ledger_ids(database)) >= 50

    gateway.start()
    missing = set(load.acknowledged) - ledger_ids(database)
    assert not missing, f"{len(missing)} of {len(load.acknowledged)} acknowledged requests lost"
    gateway.signal(signal.SIGTERM)
    await asyncio.to_thread(gateway.wait_stopped)
    assert journal_segments(database) == []
    assert not (database.parent / "ledger-fallback.jsonl").exists()


def test_a_journal_directory_that_cannot_be_created_stops_the_start(
    setup: tuple[GatewayProcess, Path],
) -> None:
    gateway, database = setup
    blocker = database.parent / "a-file"
    blocker.write_text("")
    config = yaml.safe_load(gateway.config.read_text())
    config["ledger"] = {"journal_dir": str(blocker / "journal")}
    gateway.config.write_text(yaml.safe_dump(config))
    with pytest.raises(RuntimeError, match=r"exited with [1-9]"):
        gateway.start()
    assert "set ledger.journal_dir to a writable local directory" in gateway.log.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
