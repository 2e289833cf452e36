"""Two gateway processes on one PostgreSQL serve the same keys, budgets, caches and ledger.

Each replica is a real `faregate serve` process with virtual keys required. Keys are created once
with the CLI (into the shared database), both replicas take concurrent load, and afterwards the
shared state must add up: every request the clients sent is in the one ledger, a key's budget was
not overspent across the two replicas, an answer cached through one replica is served by the other,
and a key revoked once is refused by both.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from faregate.cli import app
from faregate.fake_provider import FakeProvider, Scenario
from tests.test_cache_replicas import Replica

PROVIDER_KEY_ENV = "FG_TEST_REPLICAS_OPENAI_KEY"
PROVIDER_KEY = "sk-provider-replicas-test"
BUDGET_USD = Decimal("0.005")


@pytest.fixture
def shared(fake_provider: FakeProvider, postgres_db_url: str, tmp_path: Path) -> Iterator[dict[str, object]]:
    config = tmp_path / "faregate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": postgres_db_url,
                "auth": {"virtual_keys": True, "key_cache_s": 0.5},
                "providers": {
                    "openai": {
                        "type": "openai",
                        "base_url": f"{fake_provider.url}/v1",
                        "api_key_env": PROVIDER_KEY_ENV,
                    }
                },
                "features": {"faq": {"semantic_cache": True}},
                "logging": {"level": "warning"},
                "ledger": {"journal_dir": str(tmp_path / "journal")},
            }
        )
    )
    os.environ[PROVIDER_KEY_ENV] = PROVIDER_KEY  # inherited by the replica processes
    # Usage as a real provider would report it for these short prompts (the fake's default reports a
    # 1,200-token prompt whatever was sent, which no pre-call estimate could anticipate).
    fake_provider.scenario = Scenario(prompt_tokens=20, completion_tokens=20)
    keys = {
        "budgeted": create_key(config, "alpha", "--budget", str(BUDGET_USD), "--budget-period", "day"),
        "open": create_key(config, "beta"),
    }
    replicas: list[Replica] = []
    try:
        for name in ("a", "b"):
            replicas.append(Replica(config, tmp_path / f"replica-{name}.log"))
        yield {"config": config, "keys": keys, "replicas": replicas, "database": postgres_db_url}
    finally:
        for replica in replicas:
            replica.stop()
        os.environ.pop(PROVIDER_KEY_ENV, None)


def create_key(config: Path, team: str, *extra: str) -> dict[str, str]:
    result = CliRunner().invoke(
        app, ["keys", "create", "--team", team, *extra, "--config", str(config), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    created: dict[str, str] = json.loads(result.output)
    return created


async def ask(client: httpx.AsyncClient, url: str, key: str, question: str) -> httpx.Response:
    return await client.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}", "X-FareGate-Feature": "load"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": question}], "max_tokens": 100},
    )


async def load(
    replicas: list[Replica], keys: dict[str, dict[str, str]], per_key: int
) -> list[httpx.Response]:
    """`per_key` requests for each key, alternating replicas, 16 in flight at a time."""
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(i: int, key: str) -> httpx.Response:
            async with limit:
                return await ask(client, replicas[i % 2].url, key, f"question {i} for {key[:8]}")

        jobs = [one(i, entry["key"]) for entry in keys.values() for i in range(per_key)]
        return list(await asyncio.gather(*jobs))


def ledger_rows(database: str) -> list[tuple[str, str, int, int]]:
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT request_id, team, status, cost_nusd FROM events").fetchall()
    return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


def test_two_replicas_share_keys_budgets_caches_and_ledger(
    shared: dict[str, object], fake_provider: FakeProvider
) -> None:
    replicas = shared["replicas"]
    keys = shared["keys"]
    assert isinstance(replicas, list) and isinstance(keys, dict)
    responses = asyncio.run(load(replicas, keys, per_key=120))
    statuses = Counter((r.request.headers["authorization"].split()[1], r.status_code) for r in responses)
    budgeted, open_key = keys["budgeted"]["key"], keys["open"]["key"]

    # The open key is never refused; the budgeted one runs out, on both replicas together.
    assert statuses[(open_key, 200)] == 120
    assert statuses[(budgeted, 429)] > 0 and statuses[(budgeted, 200)] > 0
    assert not {s for (_, s) in statuses} - {200, 429}

    # The provider only ever saw the gateway's own key.
    auth = {r.headers.get("authorization") for r in fake_provider.requests}
    assert auth == {f"Bearer {PROVIDER_KEY}"}

    # Cache: an answer stored through replica a is served by replica b (same key's team).
    seen = list(responses)  # every response any client got: the ledger must hold exactly these

    async def cached() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            question = "How do I reset my password?"
            headers = {"Authorization": f"Bearer {open_key}", "X-FareGate-Feature": "faq"}
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}
            first = await client.post(f"{replicas[0].url}/v1/chat/completions", headers=headers, json=body)
            seen.append(first)
            for _ in range(100):  # the store happens just after the answer, off its path
                second = await client.post(
                    f"{replicas[1].url}/v1/chat/completions", headers=headers, json=body
                )
                seen.append(second)
                if second.headers.get("x-faregate-cache") == "hit":
                    break
                await asyncio.sleep(0.1)
            return first, second

    first, second = asyncio.run(cached())
    assert first.headers["x-faregate-cache"] == "miss"
    assert second.headers["x-faregate-cache"] == "hit"
    answer = first.json()["choices"][0]["message"]["content"]
    assert second.json()["choices"][0]["message"]["content"] == answer

    # Revoked once (through the CLI, on the shared database), refused by both replicas.
    result = CliRunner().invoke(
        app, ["keys", "revoke", keys["open"]["id"], "--config", str(shared["config"])]
    )
    assert result.exit_code == 0, result.output

    async def after_revoke() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.sleep(1.0)  # key_cache_s is 0.5
            refused = [await ask(client, r.url, open_key, "still there?") for r in replicas]
        seen.extend(refused)
        return [r.status_code for r in refused]

    assert asyncio.run(after_revoke()) == [401, 401]

    for replica in replicas:
        replica.stop()
    replicas.clear()  # the fixture must not stop them twice
    rows = ledger_rows(str(shared["database"]))  # replicas stopped (SIGTERM): their writers drained
    assert sorted(row[0] for row in rows) == sorted(r.headers["x-faregate-request-id"] for r in seen)
    spent = sum(cost for _, team, status, cost in rows if team == "alpha" and status == 200)
    assert spent > 0 and Decimal(spent) / Decimal(10**9) <= BUDGET_USD
