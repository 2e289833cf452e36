"""Prompt-cache health per feature, from the ledger: cache-read ratio, saving, prefix churn, findings.

Computed from the ledger rather than from a replica's memory, so the numbers cover every replica:
prefix churn is the number of distinct `prefix_hash` values (tools + system prompt) per hour, and
findings are the `kind@location` entries the prefix stage recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from faregate.ledger.events import nanos_to_usd
from faregate.ledger.migrations import Dialect

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def _hour(dialect: Dialect) -> str:
    # SQLite's CAST truncates (ts is positive); PostgreSQL's rounds, so it needs FLOOR.
    return "CAST(ts / 3600 AS INTEGER)" if dialect.name == "sqlite" else "FLOOR(ts / 3600)"


def _where(dialect: Dialect, since: float | None, extra: str = "") -> tuple[str, list[Any]]:
    clauses = [extra] if extra else []
    params: list[Any] = []
    if since is not None:
        clauses.append(f"ts >= {dialect.param}")
        params.append(since)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def prompt_cache_report(run: Run, dialect: Dialect, since: float | None = None) -> list[dict[str, Any]]:
    """One entry per feature, most requests first; see docs/prompt-caching.md for each key."""
    where, params = _where(dialect, since)
    totals = run(
        "SELECT feature, COUNT(*), SUM(input_tokens), SUM(cached_tokens), SUM(cache_write_tokens), "
        f"SUM(prompt_cache_saving_nusd), COUNT(DISTINCT prefix_hash) FROM events{where} GROUP BY feature",
        params,
    )
    hourly = run(
        f"SELECT feature, {_hour(dialect)}, COUNT(DISTINCT prefix_hash) FROM events{where} "
        f"GROUP BY feature, {_hour(dialect)}",
        params,
    )
    where_found, params_found = _where(dialect, since, "prefix_findings IS NOT NULL")
    found = run(
        f"SELECT feature, prefix_findings, COUNT(*) FROM events{where_found} "
        "GROUP BY feature, prefix_findings",
        params_found,
    )
    churn: dict[str, list[int]] = {}
    for feature, _, distinct in hourly:
        churn.setdefault(feature, []).append(int(distinct or 0))
    # Offsets move when a span's length does ("9 May" / "10 May"): group by kind and place
    # ("system", "tools[2].description"), keep the busiest full location as the example.
    findings: dict[str, dict[tuple[str, str], dict[str, int]]] = {}
    for feature, text, count in found:
        per_feature = findings.setdefault(feature, {})
        for entry in str(text).split(";"):
            kind, _, location = entry.partition("@")
            places = per_feature.setdefault((kind, location.rpartition(":")[0] or location), {})
            places[location] = places.get(location, 0) + int(count)
    report = [_entry(row, churn.get(row[0], []), findings.get(row[0], {})) for row in totals]
    report.sort(key=lambda e: (-e["requests"], e["feature"]))
    return report


def _entry(
    row: tuple[Any, ...], churn: list[int], findings: dict[tuple[str, str], dict[str, int]]
) -> dict[str, Any]:
    feature, requests, input_tokens, cached, written, saving, distinct = row
    input_tokens, cached, written = int(input_tokens or 0), int(cached or 0), int(written or 0)
    return {
        "feature": feature,
        "requests": int(requests),
        "input_tokens": input_tokens,
        "cache_read_tokens": cached,
        "cache_write_tokens": written,
        "cache_read_ratio": cached / input_tokens if input_tokens else 0.0,
        "saving_usd": nanos_to_usd(int(saving or 0)),
        "distinct_prefixes": int(distinct or 0),
        "prefix_churn": {
            "hours": len(churn),
            "total": sum(churn),
            "peak_per_hour": max(churn, default=0),
        },
        "findings": sorted(
            (
                {
                    "kind": kind,
                    "location": min(places, key=lambda p: (-places[p], p)),
                    "requests": sum(places.values()),
                }
                for (kind, _), places in findings.items()
            ),
            key=lambda f: (-f["requests"], f["kind"], f["location"]),
        ),
    }
