"""`faregate demo`: the gateway's main job end to end on the embedded default, with no API keys.

It starts a local fake provider (real HTTP, the providers' wire formats), the gateway in front of it
with a SQLite ledger, sends attributed OpenAI and Anthropic traffic through, shuts the gateway down
(which drains the ledger) and prints spend per feature and team read back from that ledger.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import uvicorn
from rich.console import Console
from rich.progress import Progress

from faregate.config import Config
from faregate.fake_provider import FakeProvider, Scenario
from faregate.ledger import open_store
from faregate.server import create_app

# (feature, team, protocol, model, stream, scenario): traffic shaped like a small product's.
_TRAFFIC: list[tuple[str, str, str, str, bool, Scenario]] = [
    (
        "support-chat",
        "support",
        "openai",
        "gpt-4o-mini",
        False,
        Scenario(prompt_tokens=2400, cached_tokens=1792),
    ),
    (
        "support-chat",
        "support",
        "openai",
        "gpt-4o-mini",
        True,
        Scenario(prompt_tokens=2600, cached_tokens=1792),
    ),
    (
        "doc-search",
        "search",
        "anthropic",
        "claude-sonnet-4-5",
        False,
        Scenario(prompt_tokens=6000, cached_tokens=4000, cache_write_5m_tokens=1500, completion_tokens=300),
    ),
    (
        "doc-search",
        "search",
        "anthropic",
        "claude-sonnet-4-5",
        True,
        Scenario(prompt_tokens=6200, cached_tokens=5500, completion_tokens=280),
    ),
    (
        "code-review",
        "platform",
        "openai",
        "gpt-4.1",
        False,
        Scenario(prompt_tokens=9000, completion_tokens=900),
    ),
    (
        "contract-review",
        "legal",
        "anthropic",
        "claude-opus-4-1",
        False,
        Scenario(prompt_tokens=30000, cache_write_1h_tokens=28000, completion_tokens=1500),
    ),
]


def demo_config(fake_url: str, database: str) -> Config:
    return Config.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": 0},
            "database": database,
            "providers": {
                "openai": {"type": "openai", "base_url": f"{fake_url}/v1"},
                "anthropic": {"type": "anthropic", "base_url": fake_url},
            },
            "logging": {"level": "warning"},
        }
    )


def run_demo(requests: int, database: str, console: Console) -> None:
    with FakeProvider() as fake:
        console.print(f"[bold]fake provider[/bold] listening on {fake.url}")
        asyncio.run(_serve_and_send(fake, demo_config(fake.url, database), requests, console))
    _print_ledger(database, console)


async def _serve_and_send(fake: FakeProvider, config: Config, requests: int, console: Console) -> None:
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    console.print(f"[bold]FareGate[/bold] listening on {base}, ledger {config.database}")
    async with aiohttp.ClientSession() as session:
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("sending requests", total=requests)
            for n, traffic in zip(range(requests), itertools.cycle(_TRAFFIC), strict=False):
                await _send(session, base, fake, n, *traffic)
                progress.advance(bar)
    server.should_exit = True
    await task


async def _send(
    session: aiohttp.ClientSession,
    base: str,
    fake: FakeProvider,
    n: int,
    feature: str,
    team: str,
    protocol: str,
    model: str,
    stream: bool,
    scenario: Scenario,
) -> None:
    fake.push(scenario)
    headers = {"x-faregate-feature": feature, "x-faregate-team": team, "x-faregate-user": f"user-{n % 5}"}
    body: dict[str, Any] = {
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": f"Question {n}"}],
    }
    if protocol == "openai":
        url = f"{base}/v1/chat/completions"
    else:
        url = f"{base}/v1/messages"
        body["max_tokens"] = 2048
        headers["anthropic-version"] = "2023-06-01"
    async with session.post(url, json=body, headers=headers) as response:
        await response.read()
        response.raise_for_status()


def _print_ledger(database: str, console: Console) -> None:
    from faregate.cli import _spend_table

    store = open_store(database)
    try:
        rows = store.spend(["feature", "team"], None)
        total = store.count()
    finally:
        store.close()
    console.print(_spend_table(["feature", "team"], rows))
    console.print(f"{total} events in the ledger. Try: faregate spend --db {database} --by feature,team")
