"""Prompt-cache health per feature, from the ledger: cache-read ratio, saving, prefix churn, findings.

Computed from the ledger's hourly rollups rather than from a replica's memory, so the numbers cover
every replica and stay fast over millions of events:
prefix churn is the number of distinct `prefix_hash` values (tools + system prompt) per hour, and
findings are the `kind@location` entries the prefix stage recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from faregate.ledger.events import nanos_to_usd
from faregate.ledger.migrations import Dialect

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def _since(dialect: Dialect, since: float | None, extra: str = "") -> tuple[str, list[Any]]:
    """A WHERE clause on the rollups' `hour` (since floored to its hour: rollups are hourly)."""
    clauses = [extra] if extra else []
    params: list[Any] = []
    if since is not None:
        clauses.append(f"hour >= {dialect.param}")
        params.append(int(since // 3600) * 3600)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def prompt_cache_report(run: Run, dialect: Dialect, since: float | None = None) -> list[dict[str, Any]]:
    """One entry per feature, most requests first; see docs/prompt-caching.md for each key.

    Read from the hourly rollups (`faregate.ledger.rollups`), not the events: token sums from
    `rollup_hourly`, prefixes and findings from `rollup_prefix_hourly`.
    """
    where, params = _since(dialect, since)
    sums = run(
        "SELECT feature, SUM(requests), SUM(input_tokens), SUM(cached_tokens), SUM(cache_write_tokens), "
        f"SUM(prompt_cache_saving_nusd) FROM rollup_hourly{where} GROUP BY feature",
        params,
    )
    distinct: dict[str, int] = {
        feature: int(count or 0)
        for feature, count in run(
            f"SELECT feature, COUNT(DISTINCT NULLIF(prefix_hash, '')) FROM rollup_prefix_hourly{where} "
            "GROUP BY feature",
            params,
        )
    }
    hourly = run(
        f"SELECT feature, hour, COUNT(DISTINCT NULLIF(prefix_hash, '')) FROM rollup_prefix_hourly{where} "
        "GROUP BY feature, hour",
        params,
    )
    where_found, params_found = _since(dialect, since, "findings <> ''")
    found = run(
        f"SELECT feature, findings, SUM(requests) FROM rollup_prefix_hourly{where_found} "
        "GROUP BY feature, findings",
        params_found,
    )
    churn: dict[str, list[int]] = {}
    for feature, _, count in hourly:
        churn.setdefault(feature, []).append(int(count or 0))
    findings: dict[str, dict[tuple[str, str], dict[str, int]]] = {}
    for feature, text, count in found:
        per_feature = findings.setdefault(feature, {})
        for entry in str(text).split(";"):
            kind, _, location = entry.partition("@")
            places = per_feature.setdefault((kind, location.rpartition(":")[0] or location), {})
            places[location] = places.get(location, 0) + int(count)
    totals = [(*row, distinct.get(row[0], 0)) for row in sums]
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
