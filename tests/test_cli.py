"""The CLI as a user runs it: `faregate spend` over a real ledger, `faregate serve` as a process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import httpx
import orjson
import pytest
from typer.testing import CliRunner

from faregate.cli import app, parse_since
from faregate.fake_provider import FakeProvider
from faregate.ledger import CostEvent, open_store, usd_to_nanos
from tests.ledger import make_event

runner = CliRunner()


def event(request_id: str, feature: str, team: str, cost: str, ts: float, **tokens: int) -> CostEvent:
    nanos = usd_to_nanos(Decimal(cost))
    return make_event(
        request_id=request_id,
        ts=ts,
        feature=feature,
        team=team,
        cost_nusd=nanos,
        baseline_cost_nusd=nanos,
        input_tokens=tokens.get("input", 0),
        cached_tokens=tokens.get("cached", 0),
        output_tokens=tokens.get("output", 0),
    )


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/ledger.db"
    now = time.time()
    store = open_store(url)
    store.write_batch(
        [
            event("a", "chat", "support", "0.001", now, input=1000, cached=500, output=10),
            event("b", "chat", "support", "0.002", now, input=2000, output=20),
            event("c", "search", "growth", "0.0005", now, input=100, output=5),
            event("old", "chat", "support", "1.0", now - 30 * 86400, input=1, output=1),
        ]
    )
    store.close()
    return url


def test_spend_json_groups_and_sums(ledger_url: str) -> None:
    result = runner.invoke(
        app, ["spend", "--db", ledger_url, "--by", "feature,team", "--since", "7d", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = orjson.loads(result.output)["rows"]
    assert rows[0] == {
        "feature": "chat",
        "team": "support",
        "requests": 2,
        "cost_usd": 0.003,
        "input_tokens": 3000,
        "cached_tokens": 500,
        "cache_write_tokens": 0,
        "output_tokens": 30,
    }
    assert [r["feature"] for r in rows] == ["chat", "search"]


def test_spend_without_since_includes_old_events(ledger_url: str) -> None:
    result = runner.invoke(app, ["spend", "--db", ledger_url, "--format", "json"])
    rows = {r["feature"]: r for r in orjson.loads(result.output)["rows"]}
    assert rows["chat"]["requests"] == 3


def test_spend_table_and_bad_dimension(ledger_url: str) -> None:
    table = runner.invoke(app, ["spend", "--db", ledger_url, "--by", "team"])
    assert table.exit_code == 0
    assert "support" in table.output and "growth" in table.output
    bad = runner.invoke(app, ["spend", "--db", ledger_url, "--by", "colour"])
    assert bad.exit_code != 0
    assert "colour" in bad.output


def test_parse_since() -> None:
    assert parse_since("7d", now=1_000_000.0) == 1_000_000.0 - 7 * 86400
    assert parse_since("30m", now=1000.0) == 1000.0 - 1800
    assert parse_since(None) is None
    with pytest.raises(Exception, match="duration"):
        parse_since("yesterday")


def test_serve_refuses_invalid_config_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("providers:\n  openai: {type: openia}\n")
    result = runner.invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert "providers.openai.type" in result.output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def burst(url: str, total: int, concurrency: int) -> list[int]:
    statuses: list[int] = []
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    queue = iter(range(total))

    async def worker(session: aiohttp.ClientSession) -> None:
        for n in queue:
            headers = {"x-faregate-feature": f"f{n % 3}"}
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
                statuses.append(response.status)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return statuses


def test_sigterm_after_a_burst_leaves_every_event(tmp_path: Path) -> None:
    """10,000 requests, then SIGTERM at once: the batched ledger must hold all 10,000."""
    total = 10_000
    database = f"sqlite:///{tmp_path}/ledger.db"
    port = free_port()
    with FakeProvider() as fake:
        config = tmp_path / "faregate.yaml"
        config.write_text(
            f"database: {database}\nlogging: {{level: warning}}\n"
            f"providers:\n  openai: {{type: openai, base_url: '{fake.url}/v1'}}\n"
        )
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        server = subprocess.Popen(
            [sys.executable, "-m", "faregate.cli", "serve", "--config", str(config), "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.05)
            statuses = asyncio.run(burst(f"http://127.0.0.1:{port}/v1/chat/completions", total, 32))
            server.send_signal(signal.SIGTERM)
            output, _ = server.communicate(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
    assert statuses.count(200) == total
    # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM is a clean exit.
    assert server.returncode in (0, -signal.SIGTERM), output.decode()
    store = open_store(database)
    try:
        assert store.count() == total
        by_feature = {row["feature"]: row["requests"] for row in store.spend(["feature"])}
    finally:
        store.close()
    assert by_feature == {"f0": 3334, "f1": 3333, "f2": 3333}
