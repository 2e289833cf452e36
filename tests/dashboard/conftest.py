"""A headless chromium driven over the Chrome DevTools Protocol, and the site the dashboard runs on.

No selenium or playwright: chromium prints its DevTools websocket address on stderr, and aiohttp's
websocket client speaks the protocol (JSON commands with ids, events without).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from faregate.server.dashboard import dashboard_routes

SCREENSHOTS = Path(__file__).parent / "screenshots"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _browser_or_skip() -> str:
    found = find_browser()
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        # The test setup installs Debian's chromium when it can (root, apt available).
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "chromium"], env=env, capture_output=True, timeout=600)
        found = find_browser()
    if found is None:
        pytest.skip("no chromium: install Debian's `chromium` package to run the dashboard browser tests")
    return found


@contextlib.contextmanager
def start_chromium(binary: str) -> Iterator[str]:
    """A headless chromium; yields its DevTools websocket URL (RuntimeError if it cannot start)."""
    profile = tempfile.mkdtemp(prefix="faregate-chromium-")
    process = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: list[str] = []
    lines: list[str] = []

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match and not found:
                found.append(match.group(1))

    threading.Thread(target=read_stderr, daemon=True).start()
    deadline = time.monotonic() + 30
    while not found and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    try:
        if not found:
            raise RuntimeError(f"chromium did not start: {''.join(lines)[-2000:]}")
        yield found[0]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def chromium() -> Iterator[str]:
    """A headless chromium for the session (skipped, with the reason, where none can run)."""
    binary = _browser_or_skip()
    try:
        with start_chromium(binary) as url:
            yield url
    except RuntimeError as exc:
        pytest.skip(str(exc))


class Page:
    """One browser tab over a flattened DevTools session: commands, and the events worth asserting on."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.loaded = asyncio.Event()
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()

    async def send(self, method: str, params: dict[str, Any] | None = None, session: bool = True) -> Any:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = future
        await self.ws.send_json(message)
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def on_message(self, message: dict[str, Any]) -> None:
        if "id" in message:
            future = self._waiting.pop(message["id"], None)
            if future is not None and not future.done():
                future.set_result(message)
            return
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(
                "exception: " + str(details.get("exception", {}).get("description", details.get("text")))
            )
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(str(params.get("message")))
            self._tasks.add(
                asyncio.ensure_future(self.send("Page.handleJavaScriptDialog", {"accept": False}))
            )
        elif method == "Page.loadEventFired":
            self.loaded.set()

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {expression}; errors: {self.errors}")
            await asyncio.sleep(0.05)

    async def goto(self, url: str) -> None:
        """Navigate and wait until the dashboard says it has rendered (body[data-ready="1"])."""
        self.loaded.clear()
        await self.send("Page.navigate", {"url": url})
        await asyncio.wait_for(self.loaded.wait(), 30)
        await self.wait_for("document.body && document.body.dataset.ready === '1'")

    async def screenshot(self, name: str) -> Path:
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = min(int(size["height"]) + 1, 6000)
        shot = await self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
            },
        )
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@contextlib.asynccontextmanager
async def open_page(chromium: str) -> AsyncIterator[Page]:
    """A new tab of the browser at `chromium` (its DevTools websocket URL), closed on exit."""
    async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
        holder: list[Page] = []

        async def pump() -> None:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                holder[0].on_message(message.json())

        reader = asyncio.ensure_future(pump())
        tab = Page(ws, "")
        holder.append(tab)
        target = await tab.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = await tab.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False
        )
        tab.session_id = attached["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            await tab.send(method)
        await tab.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            yield tab
        finally:
            await tab.send("Target.closeTarget", {"targetId": target["targetId"]}, session=False)
            reader.cancel()


@pytest.fixture
async def page(chromium: str) -> AsyncIterator[Page]:
    async with open_page(chromium) as tab:
        yield tab


# ---------- a fake of the dashboard's JSON contract (used when faregate.server.api is absent) ----------

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "<script>window.__pwned=1</script>"


def contract_payloads(now: float) -> dict[str, dict[str, Any]]:
    hour = int(now // 3600 * 3600)
    stamps = [hour - 3600 * i for i in range(5, -1, -1)]
    savings = {"prompt_cache": 0.01, "semantic_cache": 0.02, "routing": 0.03, "history": 0.004, "caps": 0.001}
    features = {"support-chat": 0.12, XSS_IMG: 0.05, XSS_SCRIPT: 0.02}
    total = sum(features.values())
    tokens = {"system": 400, "tools": 200, "history": 300, "context": 500, "query": 100, "overhead": 20}
    return {
        "overview": {
            "since": now - 86400,
            "until": now,
            "bucket": "hour",
            "series": [
                {
                    "ts": ts,
                    "requests": 10 + i,
                    "cost_usd": total / 6,
                    "baseline_usd": total / 4,
                    "savings_usd": {k: v / 6 for k, v in savings.items()},
                }
                for i, ts in enumerate(stamps)
            ],
            "totals": {
                "requests": 75,
                "errors": 2,
                "cost_usd": total,
                "baseline_usd": total * 1.5,
                "input_tokens": 12000,
                "output_tokens": 3000,
                "savings_usd": savings,
            },
            "cache": {"exact_hits": 10, "semantic_hits": 5, "misses": 60, "hit_rate": 0.2},
            "routing": {"small": 30, "medium": 10, "frontier": 35},
        },
        "attribution": {
            "by": "feature",
            "since": now - 86400,
            "until": now,
            "rows": [
                {
                    "key": k,
                    "requests": 25,
                    "cost_usd": v,
                    "baseline_usd": v * 1.5,
                    "input_tokens": 4000,
                    "output_tokens": 1000,
                    "share": v / total,
                }
                for k, v in features.items()
            ],
            "series": [{"ts": ts, "key": k, "cost_usd": v / 6} for ts in stamps for k, v in features.items()],
        },
        "unit-economics": {
            "bucket": "hour",
            "rows": [
                {
                    "ts": ts,
                    "feature": k,
                    "cost_usd": v / 6,
                    "completions": 4,
                    "failures": 1,
                    "cost_per_completion": v / 24,
                    "dau": 3,
                    "cost_per_dau": v / 18,
                }
                for ts in stamps
                for k, v in features.items()
            ],
        },
        "templates": {
            "features": [
                {
                    "feature": k,
                    "templates": [
                        {
                            "template": f"{k}-v{n}",
                            "requests": 10 + n,
                            "cost_per_request_usd": v / 25 * n,
                            "tokens": {**tokens, "output": 150},
                            "feedback_mean": 0.8,
                            "shadow_agreement": 0.9,
                            "first_seen": now - 3600 * n,
                        }
                        for n in (1, 2)
                    ],
                    "regressions": [
                        {
                            "template": f"{k}-v2",
                            "previous": f"{k}-v1",
                            "cost_increase": 1.0,
                            "message": f"{k}-v2 costs twice as much per request as {k}-v1",
                        }
                    ],
                }
                for k, v in features.items()
            ]
        },
        "anatomy": {
            "features": [
                {
                    "feature": k,
                    "requests": 25,
                    "tokens": tokens,
                    "shares": {c: t / sum(tokens.values()) for c, t in tokens.items()},
                }
                for k in features
            ]
        },
        "prompt-cache": {
            "features": [
                {
                    "feature": k,
                    "requests": 25,
                    "input_tokens": 4000,
                    "cache_read_tokens": 1000,
                    "cache_write_tokens": 500,
                    "cache_read_ratio": 0.25,
                    "saving_usd": 0.001,
                    "distinct_prefixes": 3,
                    "prefix_churn": {"hours": 2, "total": 4, "peak_per_hour": 2},
                    "findings": [{"kind": "date", "location": "system:10-20", "requests": 4}],
                }
                for k in features
            ]
        },
        "budgets": {
            "budgets": [
                {
                    "budget": f"feature:{XSS_IMG}:day",
                    "scope": "feature",
                    "name": XSS_IMG,
                    "period": "day",
                    "period_start": now - 3600,
                    "limit_usd": 0.1,
                    "spent_usd": 0.05,
                    "reserved_usd": 0.0,
                    "share": 0.5,
                }
            ]
        },
        "routing": {
            "features": [
                {
                    "feature": k,
                    "tiers": {"small": {"requests": 10}},
                    "frontier_share": 0.0,
                    "fallbacks": 0,
                    "requests": 10,
                    "shadow": {"compared": 0, "agreed": 0, "error_rate": None, "error_upper_95": None},
                    "feedback": {},
                }
                for k in features
            ]
        },
    }


def contract_app() -> Starlette:
    """The dashboard over fixed JSON in the endpoints' documented shapes."""

    def endpoint(name: str) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            return JSONResponse(contract_payloads(time.time())[name])

        return serve

    names = (
        "overview",
        "attribution",
        "unit-economics",
        "templates",
        "anatomy",
        "prompt-cache",
        "budgets",
        "routing",
    )
    routes = [Route(f"/faregate/v1/{n}", endpoint(n), methods=["GET"]) for n in names]
    return Starlette(routes=[*routes, *dashboard_routes(lambda handler: handler)])


class ServedApp:
    """Any ASGI app on a loopback port, in a thread (like tests.fixtures.gateway.RunningGateway)."""

    def __init__(self, app: Any) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server failed to start")
            self.thread.join(0.01)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
