"""Small helpers for bench/run.sh: ports, config files, readiness, a probe and the ledger check.

Standard library only, so it runs before (and whether or not) FareGate itself imports.

    python bench/harness.py free-port
    python bench/harness.py nginx-conf TEMPLATE RESPONSE_JSON TMPDIR PORT > nginx.conf
    python bench/harness.py gateway-conf UPSTREAM_PORT DB_PATH > faregate.yaml
    python bench/harness.py wait URL --pid PID [--timeout 60]
    python bench/harness.py probe URL
    python bench/harness.py ledger DB_PATH --expected N [--in-flight M] [--json OUT]
    python bench/harness.py cpu-monitor --root PID --out FILE   # until SIGTERM
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PROBE_BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a concise support assistant."},
        {"role": "user", "content": "Where is my order?"},
    ],
}


def free_port() -> int:
    """A loopback port the kernel just handed out; the caller binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_conf(template: Path, response: Path, tmpdir: str, port: int) -> str:
    body = json.dumps(json.loads(response.read_text(encoding="utf-8")), separators=(",", ":"))
    # The body sits in a single-quoted nginx string, where `$` would start a variable.
    for bad in ("'", "\\", "$"):
        if bad in body:
            raise SystemExit(f"{response}: the upstream response must not contain {bad!r}")
    if "usage" not in json.loads(body) or "prompt_tokens_details" not in body:
        raise SystemExit(f"{response}: the upstream response needs a usage block with prompt_tokens_details")
    text = template.read_text(encoding="utf-8")
    for name, value in {"TMPDIR": tmpdir, "PORT": str(port), "RESPONSE": body}.items():
        text = text.replace(f"@{name}@", value)
    return text


def gateway_conf(upstream_port: int, db_path: str) -> str:
    # Everything else stays at its default: one process, SQLite ledger on, default logging.
    return (
        "server:\n"
        "  host: 127.0.0.1\n"
        f"database: sqlite:///{db_path}\n"
        "providers:\n"
        "  openai:\n"
        "    type: openai\n"
        f"    base_url: http://127.0.0.1:{upstream_port}/v1\n"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by the shell) still answers kill(0).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def wait(url: str, pid: int | None, timeout: float) -> None:
    """Poll `url` until it answers 2xx; fail early if the process behind it has died."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if pid is not None and not _alive(pid):
            raise SystemExit(f"process {pid} exited before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s (last: {last})")


def probe(url: str) -> None:
    """One request through the gateway, so a broken setup fails here and not as a 100% error rate."""
    request = urllib.request.Request(
        url,
        data=json.dumps(PROBE_BODY).encode(),
        headers={
            "content-type": "application/json",
            "authorization": "Bearer sk-bench-not-a-real-key",
            "x-faregate-feature": "bench-probe",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"probe: HTTP {exc.code} from {url}: {exc.read()[:500]!r}") from None
    data = json.loads(body)
    if status != 200 or "usage" not in data:
        raise SystemExit(f"probe: unexpected answer from {url}: HTTP {status} {body[:500]!r}")
    print(
        f"probe: HTTP {status}, request id {headers.get('x-faregate-request-id')}, "
        f"cost {headers.get('x-faregate-cost-usd')} USD"
    )


def ledger(db_path: Path, expected: int, in_flight: int, out: Path | None) -> int:
    """Rows in the ledger against requests the clients saw completed.

    wrk stops its clock with requests still in flight; the gateway finishes (and records) them
    although wrk no longer counts them, so up to `in_flight` extra rows are expected.
    """
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        (rows,) = conn.execute("SELECT count(*) FROM events").fetchone()
        by_status = dict(conn.execute("SELECT status, count(*) FROM events GROUP BY status").fetchall())
        (priced,) = conn.execute("SELECT count(*) FROM events WHERE cost_nusd > 0").fetchone()
    finally:
        conn.close()
    extra = rows - expected
    ok = 0 <= extra <= in_flight
    check = {
        "rows": rows,
        "expected": expected,
        "extra": extra,
        "in_flight_allowance": in_flight,
        "by_status": {str(k): v for k, v in by_status.items()},
        "priced_rows": priced,
        "ok": ok,
    }
    if out is not None:
        out.write_text(json.dumps(check, indent=2) + "\n", encoding="utf-8")
    verdict = "OK" if ok else "MISMATCH"
    print(
        f"ledger: {rows} rows, {expected} requests completed as seen by the clients "
        f"(+{extra}, allowance for in-flight requests at wrk's stop: {in_flight}) -> {verdict}; "
        f"by status {check['by_status']}, {priced} rows with a non-zero cost"
    )
    return 0 if ok else 1


def _cpu_snapshot(clock_ticks: int) -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds so far) for every process on the machine."""
    snapshot = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name, _, rest = raw.partition(" (")[2].rpartition(") ")
        fields = rest.split()
        if len(fields) < 13:
            continue
        snapshot[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / clock_ticks)
    return snapshot


def _label(pid: int, name: str) -> str:
    """`python` says little: name the script or module it runs (`python pytest`, `python -m x`)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return name
    args = [a.decode(errors="replace") for a in argv[1:] if a and not a.startswith(b"-")]
    if name.startswith("python") and args:
        return f"{name} {Path(args[0]).name}"
    return name


def cpu_monitor(root: int, out: Path, interval: float) -> None:
    """CPU used by processes outside `root`'s tree (other people's work on a shared machine).

    A process that starts and ends between two samples is missed, so this is a lower bound; it is
    there to say whether the figures were taken on a quiet machine, not to correct them.
    """
    clock_ticks = os.sysconf("SC_CLK_TCK")
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    started = time.monotonic()
    previous = _cpu_snapshot(clock_ticks)
    other: dict[str, float] = {}
    labels: dict[int, str] = {}
    while not stop:
        time.sleep(interval)
        current = _cpu_snapshot(clock_ticks)
        ours = {root, os.getpid()}
        changed = True
        while changed:  # the bench script's descendants, whatever their depth
            changed = False
            for pid, (ppid, _, _) in current.items():
                if ppid in ours and pid not in ours:
                    ours.add(pid)
                    changed = True
        for pid, (_, name, cpu) in current.items():
            if pid in ours:
                continue
            before = previous.get(pid)
            used = cpu - before[2] if before is not None and before[1] == name else 0.0
            if used > 0:
                label = labels.get(pid) or labels.setdefault(pid, _label(pid, name))
                other[label] = other.get(label, 0.0) + used
        previous = current
    wall = time.monotonic() - started
    total = sum(other.values())
    cpus = os.cpu_count() or 1
    report = {
        "wall_s": round(wall, 1),
        "other_cpu_s": round(total, 1),
        "other_share_of_machine": round(total / (wall * cpus), 3) if wall else 0.0,
        "top": sorted(((n, round(s, 1)) for n, s in other.items() if s >= 0.05), key=lambda x: -x[1])[:5],
    }
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("free-port")
    p = sub.add_parser("nginx-conf")
    p.add_argument("template", type=Path)
    p.add_argument("response", type=Path)
    p.add_argument("tmpdir")
    p.add_argument("port", type=int)
    p = sub.add_parser("gateway-conf")
    p.add_argument("upstream_port", type=int)
    p.add_argument("db_path")
    p = sub.add_parser("wait")
    p.add_argument("url")
    p.add_argument("--pid", type=int)
    p.add_argument("--timeout", type=float, default=60.0)
    p = sub.add_parser("probe")
    p.add_argument("url")
    p = sub.add_parser("ledger")
    p.add_argument("db_path", type=Path)
    p.add_argument("--expected", type=int, required=True)
    p.add_argument("--in-flight", type=int, default=0)
    p.add_argument("--json", type=Path)
    p = sub.add_parser("cpu-monitor")
    p.add_argument("--root", type=int, required=True, help="the bench script's pid: its tree is ours")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)

    if args.command == "free-port":
        print(free_port())
    elif args.command == "nginx-conf":
        sys.stdout.write(nginx_conf(args.template, args.response, args.tmpdir, args.port))
    elif args.command == "gateway-conf":
        sys.stdout.write(gateway_conf(args.upstream_port, args.db_path))
    elif args.command == "wait":
        wait(args.url, args.pid, args.timeout)
    elif args.command == "probe":
        probe(args.url)
    elif args.command == "cpu-monitor":
        cpu_monitor(args.root, args.out, args.interval)
    elif args.command == "ledger":
        return ledger(args.db_path, args.expected, args.in_flight, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
