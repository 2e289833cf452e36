"""The `faregate cache` commands' input and output: evaluation files in, Rich tables or JSON out.

Kept apart from `evaluate` (which measures) and the CLI (which parses options), so that the bench
script and the tests read files and get dicts exactly as the commands do.

Input is strict: a missing file or any malformed line (bad JSON, a missing or mistyped field) is a
`BadInput` naming the lines, never skipped, because a silently smaller data set is a different
measurement. Blank lines are ignored.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import orjson
from rich import box
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from faregate.cache.embeddings import EmbeddingModelMissing
from faregate.cache.evaluate import DEFAULT_SWEEP, Pair, Policy, Query, eval_pairs, eval_stream
from faregate.cache.evaluate import Progress as OnProgress
from faregate.cache.precision import DEFAULT_THRESHOLD
from faregate.config import Config

LONG_RUN = 2000  # rows past which a terminal gets a progress bar
T = TypeVar("T")


class BadInput(ValueError):
    """An evaluation file that cannot be read as its format says (the CLI exits 2 with the message)."""


def policy_for(config: Config | None, feature: str | None) -> Policy:
    """The feature's threshold and guards as the gateway would apply them; no feature: the defaults."""
    if feature is None:
        return Policy()
    settings = config.features.get(feature) if config is not None else None
    if settings is None or settings.semantic_cache is None or not settings.semantic_cache.semantic:
        raise BadInput(f"feature {feature!r} has no semantic cache in the config")
    cache = settings.semantic_cache
    return Policy(DEFAULT_THRESHOLD if cache.threshold is None else cache.threshold, cache.guards)


def read_pairs(path: Path) -> list[Pair]:
    def parse(row: dict[str, Any]) -> Pair:
        a, b, duplicate = row.get("a"), row.get("b"), row.get("duplicate")
        if not (isinstance(a, str) and isinstance(b, str) and isinstance(duplicate, bool)):
            raise ValueError('want {"a": text, "b": text, "duplicate": true|false}')
        return Pair(a, b, duplicate)

    return _read_jsonl(path, parse)


def read_stream(path: Path) -> list[Query]:
    def parse(row: dict[str, Any]) -> Query:
        text, intent = row.get("text"), row.get("intent")
        if not (isinstance(text, str) and isinstance(intent, str)):
            raise ValueError('want {"text": text, "intent": label}')
        return Query(text, intent)

    return _read_jsonl(path, parse)


def _read_jsonl(path: Path, parse: Callable[[dict[str, Any]], T]) -> list[T]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    rows: list[T] = []
    bad: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            rows.append(parse(row))
        except orjson.JSONDecodeError as exc:
            bad.append(f"{path}:{number}: invalid JSON ({str(exc).partition(':')[0]})")
        except ValueError as exc:
            bad.append(f"{path}:{number}: {exc}")
    if bad:
        shown = "\n  ".join(bad[:5]) + (f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise BadInput(f"{len(bad)} malformed line(s) in {path} (nothing was evaluated):\n  {shown}")
    if not rows:
        raise BadInput(f"{path} holds no rows")
    return rows


def run_eval(
    *,
    pairs: Path | None,
    stream: Path | None,
    warm: Path | None,
    policy: Policy,
    model_dir: str | None,
    format: str,
    console: Console,
    err_console: Console,
) -> int:
    """Exit code 0 with the report printed; 2 (and a message on stderr) for unusable input."""
    from faregate.cache.embeddings import Embedder

    try:
        if (pairs is None) == (stream is None):
            raise BadInput("give exactly one of --pairs FILE or --stream FILE")
        if warm is not None and stream is None:
            raise BadInput("--warm goes with --stream")
        pair_rows = read_pairs(pairs) if pairs is not None else []
        queries = read_stream(stream) if stream is not None else []
        warm_rows = read_stream(warm) if warm is not None else []
        embedder = Embedder.load(Path(model_dir) if model_dir else None)
    except (BadInput, EmbeddingModelMissing) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    size = len(pair_rows) + len(queries) + len(warm_rows)
    with _progress(err_console, size) as on_progress:
        if pairs is not None:
            report = eval_pairs(embedder, pair_rows, policy, DEFAULT_SWEEP, on_progress)
        else:
            report = eval_stream(embedder, queries, warm_rows, policy, DEFAULT_SWEEP, on_progress)
    report["file"] = str(pairs or stream)
    if warm is not None:
        report["warm_file"] = str(warm)
    if format == "json":
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
    else:
        console.print(eval_summary(report))
        console.print(sweep_table(report))
    return 0


@contextmanager
def _progress(err_console: Console, size: int) -> Iterator[OnProgress | None]:
    """A Rich bar per phase on a terminal for long runs; nothing in pipes, CI logs and tests."""
    if size < LONG_RUN or not err_console.is_terminal:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done)

        yield update


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def eval_summary(report: dict[str, Any]) -> Table:
    stream = report["mode"] == "stream"
    guards = "on" if report["guards"] else "off"
    title = f"semantic cache, threshold {report['threshold']:.2f}, guards {guards}"
    table = Table("measure", "value", title=title, title_justify="left")
    table.add_row("file", str(report["file"]))
    if stream:
        table.add_row("queries (warmed with)", f"{report['queries']:,} ({report['warm']:,})")
    else:
        table.add_row("pairs (duplicates)", f"{report['pairs']:,} ({report['duplicates']:,})")
    table.add_row("hits", f"{report['hits']:,}")
    table.add_row("hit rate", _pct(report["hit_rate"]))
    table.add_row("precision", _pct(report["precision"]))
    table.add_row("recall", _pct(report["recall"]))
    if stream:
        table.add_row(
            "out-of-scope queries that hit",
            f"{report['oos_hits']:,} of {report['oos_queries']:,} "
            f"({report['oos_hits_in_scope']:,} on an in-scope entry)",
        )
        latency = report["latency_ms"]
        table.add_row("lookup latency p50 / p99", f"{latency['p50']:.1f} / {latency['p99']:.1f} ms")
    return table


def sweep_table(report: dict[str, Any]) -> Table:
    stream = report["mode"] == "stream"
    table = Table("threshold", "precision", "recall", "hit rate", "hits", title="threshold sweep")
    if stream:
        table.add_column("oos hit rate")
    for row in report["sweep"]:
        cells = [
            f"{row['threshold']:.2f}",
            _pct(row["precision"]),
            _pct(row["recall"]),
            _pct(row["hit_rate"]),
            f"{row['hits']:,}",
        ]
        if stream:
            cells.append(_pct(row["oos_hit_rate"]))
        table.add_row(*cells, style="bold" if abs(row["threshold"] - report["threshold"]) < 1e-9 else None)
    return table


def cache_stats_report(
    entries: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    tightenings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The cache store's per-feature entries merged with the ledger's per-feature results.

    Either side can lack a feature: entries may outlive the ledger window (`--since`), and a feature
    may have requests but nothing stored (every answer a miss that was not cacheable).
    `threshold_tightened` is how far verification sampling has raised the feature's threshold.
    """
    features: dict[str, dict[str, Any]] = {}
    for row in entries:
        features[row["feature"]] = {
            "feature": row["feature"],
            "entries": row["entries"],
            "hits": row["hits"],
            "oldest_created_at": row["oldest_created_at"],
            "newest_created_at": row["newest_created_at"],
        }
    for row in requests:
        merged = features.setdefault(
            row["feature"],
            {
                "feature": row["feature"],
                "entries": 0,
                "hits": 0,
                "oldest_created_at": None,
                "newest_created_at": None,
            },
        )
        merged["requests"] = row["requests"]
        merged["hit_rate"] = row["hit_rate"]
        merged["saving_usd"] = (
            float(row["saving_usd"]) if isinstance(row["saving_usd"], Decimal) else row["saving_usd"]
        )
        merged["verification"] = row["verification"]
    for name, tightened in (tightenings or {}).items():
        if name in features:
            features[name]["threshold_tightened"] = tightened
    rows = sorted(features.values(), key=lambda f: (-sum((f.get("requests") or {}).values()), f["feature"]))
    return {"features": rows}


def stats_table(report: dict[str, Any]) -> RenderableType:
    if not report["features"]:
        return Text("No cache entries and no cached requests in the ledger.", style="dim")
    table = Table(title="Response caches by feature", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("feature")
    columns = ("entries", "entry hits", "requests", "hit rate", "exact", "semantic", "saved", "precision")
    for name in (*columns, "tightened"):
        table.add_column(name, justify="right")
    for f in report["features"]:
        requests = f.get("requests")
        verification = f.get("verification") or {}
        precision = verification.get("precision")
        table.add_row(
            str(f["feature"]),
            f"{f['entries']:,}",
            f"{f['hits']:,}",
            "-" if requests is None else f"{sum(requests.values()):,}",
            "-" if requests is None else _pct(f["hit_rate"]),
            "-" if requests is None else f"{requests.get('hit', 0):,}",
            "-" if requests is None else f"{requests.get('semantic-hit', 0):,}",
            "-" if requests is None else f"${f['saving_usd']:,.4f}",
            "-" if precision is None else _precision_cell(verification),
            f"+{f['threshold_tightened']:.2f}" if f.get("threshold_tightened") else "-",
        )
    note = Text(
        "entries, entry hits: in the cache store now; requests and the rest: the ledger's window. "
        "precision: verified semantic hits whose fresh answer agreed, with its 95% interval; "
        "tightened: how far that verification has raised the feature's threshold.",
        style="dim",
    )
    return Group(table, note)


def _precision_cell(verification: dict[str, Any]) -> str:
    low, high, n = verification["lower_bound_95"], verification["upper_bound_95"], verification["verified"]
    return f"{verification['precision']:.1%} ({low:.1%}-{high:.1%}, n={n:,})"
