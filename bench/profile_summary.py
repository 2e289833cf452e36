"""Summarise a py-spy `--format raw` profile of the gateway under load, FareGate's code first.

    python bench/profile_summary.py PROFILE.raw --rate 250 --seconds 10 --wrk WRK_OUTPUT [--output profile.md]

Each raw line is `frame;frame;...;leaf COUNT`, a frame `function (package/module.py:line)`, outermost
first. Samples are taken only while a thread runs (py-spy without --idle), so the sampled seconds
are CPU seconds; divided by the requests served in the window they give a cost per request.

Three views of FareGate's functions:
- self: the sample's leaf frame is in FareGate (pure Python work in our modules);
- own + library: the innermost FareGate frame on the stack, which also charges each FareGate
  function for the stdlib / third-party code it calls directly (Decimal, datetime, aiohttp ...);
- inclusive: any FareGate frame on the stack (the function and everything under it).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
WORKER_THREAD = "concurrent/futures/thread.py"
TOP = 12


@dataclass(frozen=True)
class Frame:
    func: str
    file: str
    line: str

    @property
    def package(self) -> str:
        path = self.file.replace("\\", "/")
        if "/site-packages/" in path:
            path = path.split("/site-packages/", 1)[1]
        if "/src/faregate/" in path:
            return "faregate"
        head = path.lstrip("/").split("/", 1)[0]
        return head.removesuffix(".py") or "?"

    @property
    def is_faregate(self) -> bool:
        """FareGate's request-path code: not the console script or the CLI frame under every stack."""
        path = self.file.replace("\\", "/")
        return self.package == "faregate" and path.endswith(".py") and not path.endswith("faregate/cli.py")

    @property
    def label(self) -> str:
        path = self.file.replace("\\", "/")
        if "faregate/" in path:
            path = "faregate/" + path.rsplit("faregate/", 1)[1]
        where = f"{path}:{self.line}" if self.line else path
        return f"{self.func} ({where})"


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text.strip())
    if match is None:
        return Frame(text.strip(), "?", "")
    return Frame(match["func"], match["file"], match["line"] or "")


def load(path: Path) -> list[tuple[list[Frame], int]]:
    stacks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append(([parse_frame(f) for f in stack.split(";")], int(count)))
    return stacks


def wrk_rps(path: Path) -> float:
    match = re.search(r"^Requests/sec:\s+([\d.]+)", path.read_text(encoding="utf-8"), re.M)
    if match is None:
        raise SystemExit(f"{path}: no Requests/sec line")
    return float(match[1])


def summarise(stacks: list[tuple[list[Frame], int]], rate: float, seconds: float, rps: float) -> str:
    main = [(frames, n) for frames, n in stacks if not any(f.file.endswith(WORKER_THREAD) for f in frames)]
    worker_samples = sum(n for _, n in stacks) - sum(n for _, n in main)
    total = sum(n for _, n in main)
    if total == 0:
        raise SystemExit("the profile holds no samples of the event-loop thread")
    requests = rps * seconds
    by_package: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    in_faregate = 0
    for frames, n in main:
        leaf = frames[-1]
        by_package["faregate" if leaf.is_faregate else leaf.package] += n
        if frames[-1].is_faregate:
            self_time[frames[-1].label] += n
        ours = [f for f in frames if f.is_faregate]
        if ours:
            in_faregate += n
            own[ours[-1].label] += n
            for label in {f.label for f in ours}:
                inclusive[label] += n

    def us_per_request(samples: int) -> float:
        return samples / rate / requests * 1e6

    def table(counter: Counter[str], title: str) -> list[str]:
        rows = [f"{title}:", "", "| function | share of loop CPU | µs per request |", "|---|---:|---:|"]
        for label, n in counter.most_common(TOP):
            rows.append(f"| `{label}` | {n / total:.1%} | {us_per_request(n):.1f} |")
        return [*rows, ""]

    cpu_us = us_per_request(total)
    lines = [
        "## Profile of the gateway under load (concurrency 16)",
        "",
        f"py-spy, {rate:g} samples/s for {seconds:g} s of wrk -t2 -c16 through the gateway "
        f"({rps:,.0f} req/s while sampled, py-spy `--nonblocking`), CPU samples only.",
        f"Event-loop thread: {total:,} samples = {total / rate / seconds:.0%} of one core, "
        f"**{cpu_us:.0f} µs of CPU per request**; ledger writer thread (SQLite batches): "
        f"{worker_samples:,} samples = {worker_samples / rate / seconds:.0%} of one core.",
        f"Samples with a FareGate frame on the stack: {in_faregate / total:.1%} of the loop's CPU; "
        f"the rest is the ASGI server, the framework, the HTTP client and the event loop.",
        "",
        "Where the loop's CPU goes, by the package of the innermost Python frame (C code is charged to "
        "its Python caller):",
        "",
        "| package | share | µs per request |",
        "|---|---:|---:|",
    ]
    for package, n in by_package.most_common(TOP):
        lines.append(f"| {package} | {n / total:.1%} | {us_per_request(n):.1f} |")
    lines.append("")
    lines += table(self_time, "FareGate functions, self time (leaf frame in FareGate)")
    lines += table(
        own, "FareGate functions, own + the library code they call directly (innermost FareGate frame)"
    )
    lines += table(inclusive, "FareGate functions, inclusive (anywhere on the stack)")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path)
    parser.add_argument("--rate", type=float, required=True, help="py-spy's --rate")
    parser.add_argument("--seconds", type=float, required=True, help="py-spy's --duration")
    parser.add_argument("--wrk", type=Path, required=True, help="output of the wrk run that was sampled")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    text = summarise(load(args.profile), args.rate, args.seconds, wrk_rps(args.wrk))
    sys.stdout.write(text)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
