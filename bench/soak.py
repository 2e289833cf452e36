"""Soak test: a steady open-loop load through FareGate against a fake provider that fails on purpose.

    .venv/bin/python bench/soak.py --duration 600 --rate 200 --error-rate 0.05 --timeout-rate 0.01

Three processes: the fake provider (`python -m faregate.fake_provider` with fault injection), the
gateway (`faregate serve --config ...`, SQLite ledger in a temp dir) and this client, which sends
`--rate` requests a second on a fixed schedule whatever the answers (open loop: a slow gateway
gets more requests in flight, not fewer requests).

Reported (JSON on stdout):
- requests sent, completed, by status class; 5xx split into upstream-caused (the provider's own
  error passed through, or FareGate's `upstream_*` error kinds: timeout, unreachable, circuit open)
  and FareGate's own (anything else, and transport errors between the client and the gateway);
- the gateway's RSS, sampled every `--sample-every` s; growth compares the mean of the first
  window after warm-up with the mean of the last window (goal: <= 10%);
- the ledger's row count after a SIGTERM drain, against the client's count (goal: equal).

Timeouts are configured so a hang becomes a quick retry: the provider's `timeout_s` is
`--upstream-timeout` (2 s) and the fake hangs 10 s. The breaker needs `--breaker-failures`
consecutive failed attempts; at a 6% attempt failure rate the default 5 opens about once in
~10^6 attempts, and with a single upstream and no fallback an open circuit is 30 s of 503s, so the
soak sets 10 (see docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
REQUEST = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Poll until `url` answers (any status): the process is listening."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f}s")


def fake_provider(port: int, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    proc = start([PYTHON, "-m", "faregate.fake_provider", "--port", str(port), *flags], log)
    wait_http(f"http://127.0.0.1:{port}/v1/models", proc)
    return proc


def gateway(config: dict[str, Any], workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`faregate serve` on a config written as JSON (valid YAML) in `workdir`."""
    port = free_port()
    path = workdir / "faregate.yaml"
    path.write_text(json.dumps({**config, "server": {**config.get("server", {}), "port": port}}))
    faregate = str(Path(PYTHON).parent / "faregate")
    proc = start([faregate, "serve", "--config", str(path)], workdir / "gateway.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc)
    return proc, url


def drain(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> float:
    """SIGTERM, wait for the exit (the ledger is flushed on shutdown); seconds it took."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=timeout)
    return time.monotonic() - started


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def ledger_rows(database: str) -> list[Any]:
    sys.path.insert(0, str(ROOT / "src"))
    from faregate.ledger import open_store

    store = open_store(database)
    try:
        return list(store.events())
    finally:
        store.close()


def rss_bytes(pid: int) -> int:
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Tally:
    """What the client saw."""

    sent: int = 0
    send_s: float = 0.0  # how long sending took (the schedule's length, unless the client fell behind)
    statuses: Counter[int] = field(default_factory=Counter)
    upstream_5xx: Counter[str] = field(default_factory=Counter)
    own_5xx: Counter[str] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return sum(self.statuses.values())

    def record(self, status: int, headers: Any, body: bytes, ms: float) -> None:
        self.statuses[status] += 1
        self.latencies_ms.append(ms)
        if status >= 500:
            cause, kind = classify(headers, body)
            (self.upstream_5xx if cause == "upstream" else self.own_5xx)[kind] += 1

    async def post(
        self, session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
    ) -> None:
        """Send one chat completion and record what came back (or the transport error)."""
        started = time.perf_counter()
        try:
            async with session.post(f"{url}/v1/chat/completions", data=body, headers=headers) as reply:
                data = await reply.read()
                self.record(reply.status, reply.headers, data, (time.perf_counter() - started) * 1000)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.transport_errors[type(exc).__name__] += 1

    def summary(self) -> dict[str, Any]:
        by_class = Counter(f"{s // 100}xx" for s in self.statuses.elements())
        return {
            "sent": self.sent,
            "completed": self.completed,
            "status": dict(sorted(self.statuses.items())),
            "2xx": by_class["2xx"],
            "4xx": by_class["4xx"],
            "5xx": by_class["5xx"],
            "5xx_upstream": dict(self.upstream_5xx),
            "5xx_faregate": dict(self.own_5xx),
            "transport_errors": dict(self.transport_errors),
            "success_share": round(by_class["2xx"] / self.sent, 6) if self.sent else None,
            "latency_ms": {
                "p50": _round(percentile(self.latencies_ms, 0.50)),
                "p99": _round(percentile(self.latencies_ms, 0.99)),
                "max": _round(max(self.latencies_ms, default=0.0)),
            },
        }


def classify(headers: Any, body: bytes) -> tuple[str, str]:
    """("upstream" | "faregate", kind) of a 5xx: the provider's own error passed through carries
    its request id and no FareGate error code; FareGate's errors carry `code` = the error kind."""
    code = None
    try:
        parsed = json.loads(body)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
    except ValueError:
        pass
    if isinstance(code, str) and code.startswith("upstream_"):
        return "upstream", code
    if str(headers.get("x-request-id", "")).startswith("req_"):
        return "upstream", f"passed_through:{code}"
    return "faregate", str(code)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def open_loop(url: str, rate: float, duration: float, tally: Tally, timeout: float) -> None:
    """`rate` requests a second for `duration` seconds, on schedule, each in its own task."""
    connector = aiohttp.TCPConnector(limit=0)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    body = json.dumps(REQUEST).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-soak"}
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def one() -> None:
            await tally.post(session, url, body, headers)

        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        interval = 1.0 / rate
        total = int(duration * rate)
        for index in range(total):
            delay = start + index * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            tally.sent += 1
        tally.send_s = time.perf_counter() - start
        if tasks:
            await asyncio.wait(tasks)


async def sample_rss(pid: int, every: float, samples: list[tuple[float, int]], stop: asyncio.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - started, rss_bytes(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def memory_report(samples: list[tuple[float, int]], duration: float) -> dict[str, Any]:
    """Mean RSS of the first window after warm-up against the last window; windows are 60 s, or a
    fifth of the run when it is shorter than 5 minutes (a 30 s trial: 6 s windows)."""
    window = min(60.0, duration / 5)
    warm = window
    first = [rss for t, rss in samples if warm <= t < warm + window]
    last = [rss for t, rss in samples if duration - window <= t <= duration]
    if not first or not last:
        return {"samples": len(samples), "growth": None}
    a, b = statistics.mean(first), statistics.mean(last)
    return {
        "samples": len(samples),
        "window_s": window,
        "first_window_mb": round(a / 2**20, 1),
        "last_window_mb": round(b / 2**20, 1),
        "peak_mb": round(max(rss for _, rss in samples) / 2**20, 1),
        "growth": round(b / a - 1, 4),
    }


def soak_config(fake_url: str, database: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "database": database,
        "logging": {"level": "warning", "format": "json"},
        "providers": {
            "openai": {"type": "openai", "base_url": f"{fake_url}/v1", "timeout_s": args.upstream_timeout}
        },
        "upstream": {"retries": args.retries, "breaker_failures": args.breaker_failures},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=200.0, help="requests a second")
    parser.add_argument("--error-rate", type=float, default=0.05, help="share of upstream 5xx")
    parser.add_argument("--timeout-rate", type=float, default=0.01, help="share of upstream hangs")
    parser.add_argument("--hang", type=float, default=10.0, help="seconds a hung upstream request hangs")
    parser.add_argument("--upstream-timeout", type=float, default=2.0, help="providers.openai.timeout_s")
    parser.add_argument("--retries", type=int, default=2, help="upstream.retries")
    parser.add_argument("--breaker-failures", type=int, default=10, help="upstream.breaker_failures")
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--client-timeout", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="faregate-soak-"))
    fake = gw = None
    try:
        fake_port = free_port()
        fake = fake_provider(
            fake_port,
            workdir / "fake.log",
            "--error-rate", str(args.error_rate),
            "--timeout-rate", str(args.timeout_rate),
            "--hang", str(args.hang),
            "--seed", str(args.seed),
        )  # fmt: skip
        database = f"sqlite:///{workdir}/ledger.db"
        gw, url = gateway(soak_config(f"http://127.0.0.1:{fake_port}", database, args), workdir)
        tally = Tally()
        samples: list[tuple[float, int]] = []

        async def run() -> None:
            done = asyncio.Event()
            sampler = asyncio.create_task(sample_rss(gw.pid, args.sample_every, samples, done))
            await open_loop(url, args.rate, args.duration, tally, args.client_timeout)
            done.set()
            await sampler

        started = time.monotonic()
        asyncio.run(run())
        elapsed = time.monotonic() - started
        drain_s = drain(gw)
        rows = ledger_rows(database)
        summary = tally.summary()
        report = {
            "config": {k: v for k, v in vars(args).items()},
            "elapsed_s": round(elapsed, 1),
            "achieved_rate": round(tally.sent / tally.send_s, 1) if tally.send_s else None,
            **summary,
            "memory": memory_report(samples, args.duration),
            "ledger": {
                "rows": len(rows),
                "equals_client_count": len(rows) == tally.sent,
                "upstream_retries": sum(r.upstream_retries or 0 for r in rows),
                "rows_with_retries": sum(1 for r in rows if r.upstream_retries),
                "drain_s": round(drain_s, 2),
            },
        }
        memory_growth = report["memory"]["growth"]
        report["goals"] = {
            "no_faregate_5xx": not tally.own_5xx and not tally.transport_errors,
            "memory_flat": memory_growth is not None and memory_growth <= 0.10,
            "ledger_equals_client": len(rows) == tally.sent,
        }
        print(json.dumps(report, indent=2))
    finally:
        stop(gw)
        stop(fake)
        if os.environ.get("SOAK_KEEP") != "1":
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
