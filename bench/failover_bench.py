"""Failover: one of two configured upstreams down, every request should still succeed.

    .venv/bin/python bench/failover_bench.py --requests 5000 --concurrency 16 --primary down

The gateway (`faregate serve`, its own process) serves model `fast` from provider `primary` with
`fallbacks: [spare]` on provider `backup`, a healthy fake provider. The primary is, by `--primary`:
`down` (a fake provider that drops every connection), `refused` (a closed port), or `error` (a fake
answering 503 to everything). The client sends `--requests` requests at `--concurrency` (closed
loop) and reports the success share (goal >= 99.9%), latency percentiles, and, from the ledger
after a SIGTERM drain, how often the dead primary was actually tried: the circuit breaker should
keep it out except for one probe per cooldown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import (  # a sibling script, not a package
    REQUEST,
    Tally,
    drain,
    fake_provider,
    free_port,
    gateway,
    ledger_rows,
    stop,
)


async def closed_loop(url: str, requests: int, concurrency: int, tally: Tally) -> None:
    body = json.dumps({**REQUEST, "model": "fast"}).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    queue = iter(range(requests))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
    ) as session:

        async def worker() -> None:
            for _ in queue:
                tally.sent += 1
                await tally.post(session, url, body, headers)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def primary_attempts(rows: list[Any]) -> dict[str, Any]:
    """From the ledger: how each request treated the primary (tried and failed, skipped, answered)."""
    hops: Counter[str] = Counter()
    for row in rows:
        if row.provider == "primary":
            hops["answered"] += 1
        first = (row.upstream_fallbacks or "").split(">")[0]
        if first.startswith("primary/"):
            hops[first.rsplit(":", 1)[1]] += 1
    tried = sum(n for reason, n in hops.items() if reason not in ("circuit_open", "answered"))
    return {
        "requests_that_tried_primary": tried,
        "requests_that_skipped_it": hops["circuit_open"],
        "by_reason": dict(hops),
        "answered_by": dict(Counter(row.provider for row in rows)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--primary", choices=["down", "refused", "error"], default="down")
    parser.add_argument("--retries", type=int, default=2, help="upstream.retries")
    parser.add_argument("--breaker-failures", type=int, default=5)
    parser.add_argument("--breaker-cooldown", type=float, default=5.0, help="seconds")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="faregate-failover-"))
    procs = []
    try:
        backup_port = free_port()
        procs.append(fake_provider(backup_port, workdir / "backup.log"))
        primary_port = free_port()
        if args.primary != "refused":
            flags = ["--down"] if args.primary == "down" else ["--error-rate", "1"]
            procs.append(fake_provider(primary_port, workdir / "primary.log", *flags))
        database = f"sqlite:///{workdir}/ledger.db"
        config = {
            "database": database,
            "logging": {"level": "error", "format": "json"},
            "server": {"connect_timeout_s": 1},
            "providers": {
                "primary": {"type": "openai", "base_url": f"http://127.0.0.1:{primary_port}/v1"},
                "backup": {"type": "openai", "base_url": f"http://127.0.0.1:{backup_port}/v1"},
            },
            "models": {
                "fast": {"provider": "primary", "model": "gpt-4o-mini", "fallbacks": ["spare"]},
                "spare": {"provider": "backup", "model": "gpt-4o-mini"},
            },
            "upstream": {
                "retries": args.retries,
                "breaker_failures": args.breaker_failures,
                "breaker_cooldown_s": args.breaker_cooldown,
            },
        }
        gw, url = gateway(config, workdir)
        procs.append(gw)
        tally = Tally()
        started = time.monotonic()
        asyncio.run(closed_loop(url, args.requests, args.concurrency, tally))
        elapsed = time.monotonic() - started
        drain(gw)
        rows = ledger_rows(database)
        summary = tally.summary()
        report = {
            "config": vars(args),
            "elapsed_s": round(elapsed, 1),
            "throughput_rps": round(tally.sent / elapsed, 1),
            **summary,
            "primary": primary_attempts(rows),
            "ledger_rows": len(rows),
        }
        share = summary["success_share"] or 0.0
        report["goals"] = {
            "success_share_ge_99_9": share >= 0.999,
            "ledger_equals_client": len(rows) == tally.sent,
        }
        print(json.dumps(report, indent=2))
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
