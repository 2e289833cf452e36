"""How long each dashboard page takes to render in a real browser over a big ledger.

    .venv/bin/python bench/dashboard_api_bench.py --db /tmp/dash.db     # once: 5M events (~3 min)
    .venv/bin/python bench/dashboard_render_bench.py --db /tmp/dash.db [--runs 5]

Starts a gateway on that ledger (SQLite; no provider needed) and headless chromium (driven over the
DevTools protocol by the dashboard tests' driver), opens each page with the 30-day range and times
from navigation to the page's own "rendered" signal (`body[data-ready="1"]`: every API call answered
and every chart drawn). Goal (issue 8): ≤ 1 s per page over 5 million events.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faregate.config import Config
from faregate.server import create_app
from tests.dashboard.conftest import find_browser, open_page, start_chromium

PAGES = ("overview", "attribution", "unit-economics", "templates", "anatomy", "prompt-cache", "budgets")


def serve(db: Path) -> tuple[str, uvicorn.Server]:
    config = Config.model_validate(
        {"database": f"sqlite:///{db}", "providers": {"openai": {"type": "openai"}}}
    )
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}", server


async def measure(base: str, chromium: str, runs: int) -> None:
    async with open_page(chromium) as page:
        for name in PAGES:
            url = f"{base}/dashboard/{name}?range=30d"
            await page.goto(url)  # warm: the first visit loads the scripts
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                await page.goto(url)
                times.append(time.perf_counter() - started)
            errors = "" if not page.errors else f"  errors: {page.errors[:2]}"
            p50, worst = statistics.median(times) * 1000, max(times) * 1000
            print(f"  {name:16s} p50 {p50:7.0f} ms  max {worst:7.0f} ms{errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a ledger written by dashboard_api_bench.py")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    binary = find_browser()
    if binary is None or not shutil.which(binary):
        sys.exit("no chromium: install Debian's chromium package")
    base, server = serve(args.db)
    try:
        with start_chromium(binary) as chromium:
            print(f"dashboard pages over {args.db}, 30-day range, {args.runs} loads each")
            asyncio.run(measure(base, chromium, args.runs))
    finally:
        server.should_exit = True


if __name__ == "__main__":
    main()
