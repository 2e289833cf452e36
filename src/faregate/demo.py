"""`faregate demo`: a day of simulated traffic through the real gateway, then where the money went.

1. `faregate.simulate` generates a realistic workload: a support FAQ bot (gpt-4o-mini), document
   analysis (claude-sonnet-4-6) and a multi-turn assistant (gpt-4.1), spread over one simulated day.
2. Each request goes through the real gateway (`create_app` under uvicorn on a loopback port) to the
   built-in fake provider, which answers in the provider's wire format with the usage the simulator
   computed (input, cached reads, cache writes, output). Nothing leaves the machine and no key is
   needed; prices are the real ones, so the costs are what these requests would cost.
3. The gateway drains its ledger on shutdown; `faregate analyze` then reads that ledger (anatomy,
   savings, verdict) and writes an HTML report of the same workload.

Requests go one at a time: the fake answers queued scenarios first in, first out, so only a single
request in flight guarantees each one gets its own usage. The loop is quick enough (a few hundred
requests a second on a laptop) that concurrency would buy nothing a demo needs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvicorn
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from faregate.config import Config
from faregate.fake_provider import FakeProvider, Scenario
from faregate.ledger import open_store
from faregate.server import create_app
from faregate.simulate import generate_workload
from faregate.spend import spend_table

DEMO_SEED = 7
DEMO_DIR = Path(".faregate")
WORKLOAD_FILE = DEMO_DIR / "demo-workload.jsonl"
REPORT_FILE = DEMO_DIR / "demo-report.html"
_ATTRIBUTION = ("feature", "team", "template", "user", "conversation")


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
    console.print(
        Panel.fit(
            f"[bold]FareGate demo[/bold]: {requests:,} requests, one simulated day of three products, "
            "through the real gateway.\n"
            "[bold yellow]Provider: SIMULATED[/bold yellow], a local fake speaking the OpenAI and "
            "Anthropic wire formats (no API key, nothing leaves this machine).\n"
            "[bold]Prices: real[/bold] (genai-prices tables), so every cost is what these requests "
            "would cost.",
            border_style="yellow",
        )
    )
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    REPORT_FILE.unlink(missing_ok=True)  # never leave an earlier run's report looking current
    _fresh_ledger(database, console)
    envelopes = list(generate_workload(requests, DEMO_SEED))
    with WORKLOAD_FILE.open("wb") as stream:
        for envelope in envelopes:
            stream.write(orjson.dumps(envelope, option=orjson.OPT_APPEND_NEWLINE))
    with FakeProvider(record=False) as fake:
        config = demo_config(fake.url, database)
        started = time.perf_counter()
        sent = asyncio.run(_serve_and_send(fake, config, envelopes, console))
        elapsed = time.perf_counter() - started
    _print_sent(sent, elapsed, console)
    _report(database, console)
    _print_where(database, console)


async def _serve_and_send(
    fake: FakeProvider, config: Config, envelopes: list[dict[str, Any]], console: Console
) -> _Sent:
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # raises whatever stopped the server from starting
            raise RuntimeError("the gateway did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    console.print(f"gateway on {base} -> simulated provider on {fake.url}, ledger {config.database}")
    sent = _Sent()
    try:
        async with aiohttp.ClientSession() as session:
            with Progress(
                TextColumn("sending through the gateway"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as progress:
                bar = progress.add_task("sending", total=len(envelopes))
                for envelope in envelopes:
                    await _send(session, base, fake, envelope, sent)
                    progress.advance(bar)
    finally:
        server.should_exit = True  # shutting down drains the ledger writer
        await task
    return sent


class _Sent:
    def __init__(self) -> None:
        self.by_feature: Counter[str] = Counter()
        self.failed: Counter[int] = Counter()
        self.cost = Decimal(0)


def scenario_for(envelope: dict[str, Any]) -> Scenario:
    """The fake's answer for a simulated request: the simulated response's text and usage."""
    response = envelope["response"]
    usage = response["usage"]
    if envelope["provider"] == "anthropic":
        read, written = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
        return Scenario(
            text=response["content"][0]["text"],
            prompt_tokens=usage["input_tokens"] + read + written,
            cached_tokens=read,
            cache_write_5m_tokens=written,
            completion_tokens=usage["output_tokens"],
        )
    return Scenario(
        text=response["choices"][0]["message"]["content"],
        prompt_tokens=usage["prompt_tokens"],
        cached_tokens=usage["prompt_tokens_details"]["cached_tokens"],
        completion_tokens=usage["completion_tokens"],
    )


async def _send(
    session: aiohttp.ClientSession, base: str, fake: FakeProvider, envelope: dict[str, Any], sent: _Sent
) -> None:
    metadata = envelope["metadata"]
    headers = {f"x-faregate-{key}": str(metadata[key]) for key in _ATTRIBUTION if metadata.get(key)}
    headers["content-type"] = "application/json"
    if envelope["provider"] == "anthropic":
        url = f"{base}/v1/messages"
        headers["anthropic-version"] = "2023-06-01"
    else:
        url = f"{base}/v1/chat/completions"
    fake.push(scenario_for(envelope))
    async with session.post(url, data=orjson.dumps(envelope["request"]), headers=headers) as response:
        await response.read()
        if response.status != 200:
            sent.failed[response.status] += 1
            return
        sent.by_feature[metadata["feature"]] += 1
        sent.cost += Decimal(response.headers.get("x-faregate-cost-usd", "0"))


def _fresh_ledger(database: str, console: Console) -> None:
    """Start the demo's own SQLite ledger (`.faregate/demo*.db`) empty, so each run reports itself.

    Any other ledger is left alone: its earlier events then count in the report too.
    """
    path = _sqlite_path(database)
    if path is None or not path.exists():
        return
    if path.resolve().parent == DEMO_DIR.resolve() and path.name.startswith("demo"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    store = open_store(database)
    try:
        earlier = store.count()
    finally:
        store.close()
    if earlier:
        console.print(f"[yellow]note:[/yellow] {database} already holds {earlier:,} events; they count too.")


def _sqlite_path(database: str) -> Path | None:
    scheme, sep, rest = database.partition("://")
    if not sep:
        return Path(database).expanduser()
    if scheme.lower() == "sqlite" and rest.startswith("/") and rest != "/":
        return Path(rest[1:]).expanduser()
    return None


def _print_sent(sent: _Sent, elapsed: float, console: Console) -> None:
    total = sum(sent.by_feature.values())
    mix = ", ".join(f"{feature} {n:,}" for feature, n in sorted(sent.by_feature.items()))
    console.print(
        f"sent {total:,} requests in {elapsed:.1f} s ({total / max(elapsed, 1e-9):,.0f}/s): {mix}; "
        f"the gateway priced them at ${sent.cost:,.4f} (X-FareGate-Cost-USD)."
    )
    if sent.failed:
        failures = ", ".join(f"{n} x HTTP {status}" for status, n in sorted(sent.failed.items()))
        console.print(f"[red]failed:[/red] {failures}")


def _report(database: str, console: Console) -> None:
    try:
        from faregate.analyze.command import run_analyze
    except ImportError:  # the analyzer is not installed in this build: show the ledger's spend table
        _print_spend(database, console)
        return
    console.rule("[bold]Where the money went[/bold] (faregate analyze --db, from the gateway's ledger)")
    run_analyze([], db=database, format="table", out=None, config=None, console=console)
    console.print(
        "The ledger keeps counts and costs, not prompts. The HTML report reads the full request log "
        f"({WORKLOAD_FILE}), so it also shows history growth by turn, the timestamp that breaks prompt "
        "caching, and repeated questions.",
        style="dim",
    )
    run_analyze([WORKLOAD_FILE], db=None, format="html", out=REPORT_FILE, config=None, console=console)


def _print_spend(database: str, console: Console) -> None:
    store = open_store(database)
    try:
        rows = store.spend(["feature", "team"], None)
    finally:
        store.close()
    console.print(spend_table(["feature", "team"], rows))


def _print_where(database: str, console: Console) -> None:
    store = open_store(database)
    try:
        events = store.count()
    finally:
        store.close()
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    spend = f"faregate spend --db {database} --by feature,team"
    table.add_row("ledger", f"{database} ({events:,} events): {spend}")
    table.add_row("workload", f"{WORKLOAD_FILE}: faregate analyze {WORKLOAD_FILE}")
    if REPORT_FILE.exists():
        table.add_row("HTML report", f"{REPORT_FILE.resolve()}: open it in a browser")
    table.add_row(
        "dashboard",
        "coming with the cost-visibility work (http://HOST:PORT/dashboard under faregate serve); "
        "for now open the HTML report",
    )
    console.print(Panel(table, title="Where things are", border_style="green", expand=False))
