"""Two gateway processes on one PostgreSQL database share one semantic cache (pgvector).

Each gateway is a real `faregate serve` process; an answer stored through the first is served by the
second, exactly and by meaning, and the provider is called once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from faregate.fake_provider import FakeProvider


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    def __init__(self, config: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "faregate.cli",
                "serve",
                "--config",
                str(config),
                "--port",
                str(self.port),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica exited: {log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"replica did not start: {log.read_text()}")

    def ask(self, question: str) -> tuple[str, str]:
        client = openai.OpenAI(base_url=f"{self.url}/v1", api_key="sk-team", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": question}],
            extra_headers={"X-FareGate-Feature": "faq"},
        )
        return raw.parse().choices[0].message.content or "", raw.headers["x-faregate-cache"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        finally:
            self.log.close()


@pytest.fixture
def replicas(fake_provider: FakeProvider, postgres_db_url: str, tmp_path: Path) -> Iterator[list[Replica]]:
    config = tmp_path / "faregate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": postgres_db_url,
                "providers": {"openai": {"type": "openai", "base_url": f"{fake_provider.url}/v1"}},
                "features": {"faq": {"semantic_cache": True}},
                "logging": {"level": "warning"},
                "ledger": {"journal_dir": str(tmp_path / "journal")},
            }
        )
    )
    started: list[Replica] = []
    try:
        for name in ("a", "b"):
            started.append(Replica(config, tmp_path / f"replica-{name}.log"))
        yield started
    finally:
        for replica in started:
            replica.stop()


def stored_entries(replica: Replica) -> int:
    stats = httpx.get(f"{replica.url}/faregate/v1/cache/stats", timeout=5).json()
    return sum(feature.get("entries", 0) for feature in stats["features"])


def test_an_answer_stored_through_one_replica_is_served_by_the_other(
    replicas: list[Replica], fake_provider: FakeProvider
) -> None:
    first, second = replicas
    answer, status = first.ask("How do I order a new debit card?")
    assert status == "miss"
    deadline = time.monotonic() + 10  # the store happens just after the answer, off its path
    while not stored_entries(second) and time.monotonic() < deadline:  # the second sees the shared table
        time.sleep(0.1)
    assert second.ask("How do I order a new debit card?") == (answer, "hit")
    assert second.ask("how can i order a new debit card")[1] == "semantic-hit"
    calls = [r for r in fake_provider.requests if r.path.endswith("/chat/completions")]
    assert len(calls) == 1
