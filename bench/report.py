"""Turn bench/run.sh's wrk outputs into the gateway-overhead figures and BENCHMARKS.md's section.

    python bench/report.py count FILE...                 # requests wrk completed, summed
    python bench/report.py write RESULTS_DIR [--markdown BENCHMARKS.md] [--strict]

`write` reads what run.sh left in RESULTS_DIR: {direct,floor,gateway}-c{1,16}-r{N}.txt (wrk output
with post.lua's BENCH_JSON line), .cpu files (server CPU ticks per run), ledger.json, noise.json,
commands.txt, meta.json and, when present, profile.md. It prints the tables and replaces only the
marked blocks in BENCHMARKS.md (the profile block only when this run profiled), leaving every other
section alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from statistics import median

OVERHEAD_MARKER = "<!-- bench:gateway-overhead -->"
PROFILE_MARKER = "<!-- bench:profile -->"

# The goals, for a 2-core machine.
GOAL_ADDED_P50_MS = 1.0
GOAL_ADDED_P99_MS = 3.0
GOAL_RPS_C16 = 2500.0

CONCURRENCIES = (1, 16)
_UNITS_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class Run:
    """One wrk run: latencies in milliseconds."""

    requests: int
    seconds: float
    p50: float
    p90: float
    p99: float
    max: float
    non_2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def parse_wrk(text: str) -> Run:
    """post.lua's BENCH_JSON line (exact microseconds); wrk's own text as a fallback."""
    for line in text.splitlines():
        if line.startswith("BENCH_JSON "):
            d = json.loads(line.removeprefix("BENCH_JSON "))
            return Run(
                requests=d["requests"],
                seconds=d["duration_us"] / 1e6,
                p50=d["p50_us"] / 1000,
                p90=d["p90_us"] / 1000,
                p99=d["p99_us"] / 1000,
                max=d["max_us"] / 1000,
                non_2xx=d["non_2xx"],
                socket_errors=d["socket_errors"],
            )
    return _parse_wrk_text(text)


def _duration_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if match is None:
        raise ValueError(f"not a wrk duration: {value!r}")
    return float(match[1]) * _UNITS_TO_MS[match[2]]


def _parse_wrk_text(text: str) -> Run:
    pct = {m[1]: _duration_ms(m[2]) for m in re.finditer(r"^\s+(50|90|99)(?:\.000)?%\s+(\S+)", text, re.M)}
    done = re.search(r"^\s+(\d+) requests in ([\d.]+\w+),", text, re.M)
    maximum = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)
    if done is None or set(pct) != {"50", "90", "99"} or maximum is None:
        raise ValueError("wrk output without --latency percentiles or a request count")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return Run(
        requests=int(done[1]),
        seconds=_duration_ms(done[2]) / 1000,
        p50=pct["50"],
        p90=pct["90"],
        p99=pct["99"],
        max=_duration_ms(maximum[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(g) for g in socket.groups()) if socket else 0,
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    out = (done.stdout + done.stderr).strip().splitlines()
    return out[0] if out else "unknown"


def package_versions() -> str:
    parts = []
    for name in ("faregate", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "orjson"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def machine() -> dict[str, str]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": f"{os.cpu_count()} logical CPUs ({affinity} usable by this process)",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "nginx": tool_version(["nginx", "-v"]).replace("nginx version: ", ""),
        "wrk": tool_version(["wrk", "-v"]).split(" Copyright")[0],
        "packages": package_versions(),
    }


TARGETS = ("direct", "floor", "gateway")


@dataclass(frozen=True)
class Figures:
    """One target at one concurrency: medians over the repeated runs, and their spread."""

    runs: list[Run]
    cpu_us: list[float]  # the server process's CPU time per request, one per run (none for nginx)

    @property
    def p50(self) -> float:
        return median(r.p50 for r in self.runs)

    @property
    def p99(self) -> float:
        return median(r.p99 for r in self.runs)

    @property
    def rps(self) -> float:
        return median(r.rps for r in self.runs)

    @property
    def cpu(self) -> float | None:
        return median(self.cpu_us) if self.cpu_us else None

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def failed(self) -> int:
        return sum(r.non_2xx + r.socket_errors for r in self.runs)


Results = dict[tuple[str, int], Figures]


def load_results(results: Path) -> Results:
    """RESULTS/{target}-c{c}-r{n}.txt, and .cpu next to it for the Python servers."""
    loaded: Results = {}
    for target in TARGETS:
        for c in CONCURRENCIES:
            runs, cpu = [], []
            for path in sorted(results.glob(f"{target}-c{c}-r*.txt")):
                run = parse_wrk(path.read_text(encoding="utf-8"))
                runs.append(run)
                ticks_file = path.with_suffix(".cpu")
                if ticks_file.exists() and run.requests:
                    ticks, per_second = ticks_file.read_text().split()
                    cpu.append(int(ticks) / int(per_second) / run.requests * 1e6)
            if runs:
                loaded[target, c] = Figures(runs, cpu)
    for needed in ("direct", "gateway"):
        for c in CONCURRENCIES:
            if (needed, c) not in loaded:
                raise SystemExit(f"{results}: no {needed}-c{c}-r*.txt")
    return loaded


def _ms(value: float) -> str:
    return f"{value:.3f} ms" if abs(value) < 10 else f"{value:.1f} ms"


def _rps(value: float) -> str:
    return f"{value:,.0f}"


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} µs"


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def evaluate(res: Results) -> list[tuple[str, str, bool]]:
    direct, gateway = res["direct", 1], res["gateway", 1]
    added_p50, added_p99 = gateway.p50 - direct.p50, gateway.p99 - direct.p99
    rps = res["gateway", 16].rps
    return [
        (
            f"added latency p50 at concurrency 1 <= {GOAL_ADDED_P50_MS:g} ms",
            _ms(added_p50),
            added_p50 <= GOAL_ADDED_P50_MS,
        ),
        (
            f"added latency p99 at concurrency 1 <= {GOAL_ADDED_P99_MS:g} ms",
            _ms(added_p99),
            added_p99 <= GOAL_ADDED_P99_MS,
        ),
        (
            f"throughput at concurrency 16 >= {GOAL_RPS_C16:,.0f} req/s",
            f"{_rps(rps)} req/s",
            rps >= GOAL_RPS_C16,
        ),
    ]


HEADERS = [
    "concurrency",
    "direct p50",
    "gateway p50",
    "added p50",
    "direct p99",
    "gateway p99",
    "added p99",
    "direct req/s",
    "gateway req/s",
]
FLOOR_HEADERS = [
    "concurrency",
    "floor p50",
    "floor p99",
    "floor req/s",
    "gateway - floor p50",
    "gateway - floor p99",
    "floor CPU/req",
    "gateway CPU/req",
]


def table_rows(res: Results) -> list[list[str]]:
    rows = []
    for c in CONCURRENCIES:
        d, g = res["direct", c], res["gateway", c]
        rows.append(
            [
                str(c),
                _ms(d.p50),
                _ms(g.p50),
                _ms(g.p50 - d.p50),
                _ms(d.p99),
                _ms(g.p99),
                _ms(g.p99 - d.p99),
                _rps(d.rps),
                _rps(g.rps),
            ]
        )
    return rows


def floor_rows(res: Results) -> list[list[str]]:
    rows = []
    for c in CONCURRENCIES:
        f, g = res["floor", c], res["gateway", c]
        rows.append(
            [
                str(c),
                _ms(f.p50),
                _ms(f.p99),
                _rps(f.rps),
                _ms(g.p50 - f.p50),
                _ms(g.p99 - f.p99),
                _us(f.cpu),
                _us(g.cpu),
            ]
        )
    return rows


def spread(res: Results) -> str:
    parts = []
    for c in CONCURRENCIES:
        runs = res["gateway", c].runs
        if len(runs) < 2:
            return ""
        p50s, p99s, rps = [r.p50 for r in runs], [r.p99 for r in runs], [r.rps for r in runs]
        parts.append(
            f"c{c} p50 {min(p50s):.3f}-{max(p50s):.3f} ms, p99 {min(p99s):.2f}-{max(p99s):.2f} ms, "
            f"{min(rps):,.0f}-{max(rps):,.0f} req/s"
        )
    return (
        f"Gateway spread over the {len(res['gateway', 1].runs)} rounds (min-max): " + "; ".join(parts) + "."
    )


def noise_line(results: Path) -> str:
    path = results / "noise.json"
    if not path.exists():
        return ""
    noise = json.loads(path.read_text(encoding="utf-8"))
    share = noise["other_share_of_machine"]
    top = ", ".join(f"{name} {secs:g} s" for name, secs in noise["top"]) or "nothing notable"
    verdict = (
        "the machine was otherwise quiet"
        if share < 0.02
        else "a shared machine: expect more noise than on a quiet one, in p99 most of all"
    )
    return (
        f"Other processes used {noise['other_cpu_s']:g} CPU-seconds during the measured runs "
        f"({share:.0%} of the machine over {noise['wall_s']:g} s; {top}): {verdict}."
    )


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def overhead_section(results: Path, res: Results) -> str:
    meta = json.loads((results / "meta.json").read_text(encoding="utf-8"))
    ledger = json.loads((results / "ledger.json").read_text(encoding="utf-8"))
    commands = (results / "commands.txt").read_text(encoding="utf-8").strip()
    m = machine()
    goal_lines = "\n".join(f"- {name}: **{value}**, {_mark(ok)}" for name, value, ok in evaluate(res))
    failed = sum(f.failed for f in res.values())
    measured = sum(res["gateway", c].requests for c in CONCURRENCIES)
    floor = ""
    if ("floor", 1) in res and ("floor", 16) in res:
        floor = f"""
The floor: a bare Starlette + uvicorn (uvloop, httptools) + aiohttp pass-through on the same
machine (`bench/passthrough.py`: read the body, POST it upstream, return the answer). Gateway -
floor is what FareGate's own code costs; CPU/req is the server process's CPU time (all threads,
ledger writer included) divided by the requests it served.

{markdown_table(FLOOR_HEADERS, floor_rows(res))}
"""
    ledger_line = (
        f"{ledger['rows']:,} rows for {ledger['expected']:,} requests that wrk saw completed through the "
        f"gateway (warm-up, probe{', profile' if (results / 'profile.md').exists() else ''} and "
        f"{measured:,} measured), {ledger['extra']} more for requests still in flight when wrk stopped "
        f"(allowed: up to {ledger['in_flight_allowance']}, one per open connection per run): "
        f"**{'OK' if ledger['ok'] else 'MISMATCH'}**; {ledger['priced_rows']:,} rows priced above zero"
    )
    rounds, seconds, warmup = meta["repeat"], meta["duration_s"], meta["warmup_s"]
    extra_lines = "\n".join(line for line in (spread(res), noise_line(results)) if line)
    return f"""{OVERHEAD_MARKER}
## Gateway overhead

What FareGate adds on top of a direct call to the same upstream: nginx returning a static
OpenAI `chat.completion` (with `usage.prompt_tokens_details.cached_tokens`) on loopback. wrk
POSTs the same small chat request (gpt-4o-mini, 2 messages, `X-FareGate-Feature`/`-Team`)
straight at nginx, through a bare pass-through (the floor) and through FareGate, in turn, at
concurrency 1 and 16. One gateway worker process, ledger on (SQLite, the default), default
logging. wrk, nginx (1 worker) and the gateway share the machine's cores; nothing is pinned.
Added latency = gateway percentile - direct percentile. Each figure is the median of
{rounds} interleaved rounds of {seconds} s runs, after a {warmup} s warm-up of each target.

Measured {meta["date"]} with `{meta["command"]}`.

{markdown_table(HEADERS, table_rows(res))}

Goals (2-core machine):
{goal_lines}
{floor}
{extra_lines}
Failed requests (non-2xx or socket errors) across all runs: {failed}.
Ledger check after SIGTERM: {ledger_line}.

| machine | |
|---|---|
| CPU | {m["cpu"]} |
| cores | {m["cores"]} |
| Python | {m["python"]} |
| OS | {m["os"]} |
| nginx | {m["nginx"]} |
| wrk | {m["wrk"]} |
| packages | {m["packages"]} |

wrk commands of one round (ports are picked at random on each run):
```
{commands}
```

Reference points from the issue (same kind of upstream, wrk, another machine): a widely used
Python gateway adds 10.7 ms at p50 and serves ~90 req/s per worker; a bare Starlette + uvicorn
(uvloop, httptools) + aiohttp pass-through adds 0.31 ms at p50 and serves 6,160 req/s at
concurrency 16 (the floor row above is that same stack measured here).
{OVERHEAD_MARKER}"""


def replace_block(document: str, marker: str, block: str) -> str:
    """Swap the text from the first `marker` through the second for `block` (which carries both)."""
    start = document.find(marker)
    end = document.find(marker, start + len(marker)) if start >= 0 else -1
    if start < 0 or end < 0:
        return document.rstrip("\n") + "\n\n" + block + "\n"
    return document[:start] + block + document[end + len(marker) :]


def write(results: Path, markdown: Path, strict: bool) -> int:
    res = load_results(results)
    print(text_table(HEADERS, table_rows(res)))
    if ("floor", 1) in res and ("floor", 16) in res:
        print()
        print(text_table(FLOOR_HEADERS, floor_rows(res)))
    print()
    goals = evaluate(res)
    for name, value, ok in goals:
        print(f"  {name}: {value} -> {_mark(ok)}")
    for line in (spread(res), noise_line(results)):
        if line:
            print(f"  {line}")
    failed = {f"{t}-c{c}": f.failed for (t, c), f in res.items() if f.failed}
    ledger = json.loads((results / "ledger.json").read_text(encoding="utf-8"))

    document = markdown.read_text(encoding="utf-8") if markdown.exists() else "# Benchmarks\n"
    document = replace_block(document, OVERHEAD_MARKER, overhead_section(results, res))
    profile = results / "profile.md"
    if profile.exists():
        body = profile.read_text(encoding="utf-8").strip()
        document = replace_block(document, PROFILE_MARKER, f"{PROFILE_MARKER}\n{body}\n{PROFILE_MARKER}")
    markdown.write_text(document, encoding="utf-8")
    print(f"\nwrote {markdown}")

    status = 0
    if failed:
        print(f"error: runs with failed requests: {failed}", file=sys.stderr)
        status = 1
    if not ledger["ok"]:
        print("error: the ledger does not hold one row per completed request", file=sys.stderr)
        status = 1
    if strict and not all(ok for _, _, ok in goals):
        print("error: goals not met (--strict)", file=sys.stderr)
        status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("count")
    p.add_argument("files", nargs="+", type=Path)
    p = sub.add_parser("write")
    p.add_argument("results", type=Path)
    p.add_argument("--markdown", type=Path, default=Path("BENCHMARKS.md"))
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is not met")
    args = parser.parse_args(argv)
    if args.command == "count":
        print(sum(parse_wrk(f.read_text(encoding="utf-8")).requests for f in args.files))
        return 0
    return write(args.results, args.markdown, args.strict)


if __name__ == "__main__":
    sys.exit(main())
