"""The dashboard's queries over the hourly rollups (`faregate.ledger.rollups` keeps them current).

Every number the admin API's overview, attribution, unit-economics, templates and anatomy
endpoints return comes from here, over `rollup_hourly`, `rollup_users_daily`, `rollup_dau` and
`task_outcomes`; only spend by user with filters other than `feature` reads the events table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faregate.call import UNATTRIBUTED
from faregate.ledger.migrations import Dialect
from faregate.ledger.rollups import (
    ATTRIBUTION_BY,
    BUCKETS,
    COMPONENTS,
    DAY,
    DIMENSIONS,
    HOUR,
    MODEL_SQL,
    TOP_SERIES,
    USER_ROWS,
    Run,
    floor_sql,
)


@dataclass(frozen=True, slots=True)
class Range:
    since: int
    until: int
    bucket: str

    @property
    def size(self) -> int:
        return BUCKETS[self.bucket]


def time_range(since: float, until: float, bucket: str | None = None) -> Range:
    """Widen [since, until) to whole hours; the bucket defaults to hours up to two days, else days."""
    if not (math.isfinite(since) and math.isfinite(until)):
        raise ValueError("since and until must be finite unix timestamps")
    start = int(since // HOUR) * HOUR
    end = int(-(-until // HOUR)) * HOUR
    if end <= start:
        end = start + HOUR
    if bucket is None:
        bucket = "hour" if end - start <= 2 * DAY else "day"
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be hour or day, not {bucket!r}")
    return Range(start, end, bucket)


def _usd(nanos: Any) -> float:
    return int(nanos or 0) / 1e9


def _int(value: Any) -> int:
    return int(value or 0)


def _bucket_sql(r: Range) -> str:
    return "hour" if r.bucket == "hour" else f"(hour / {DAY} * {DAY})"  # integer division


def _where(d: Dialect, r: Range, filters: Mapping[str, str] | None = None) -> tuple[str, list[Any]]:
    clauses = [f"hour >= {d.param}", f"hour < {d.param}"]
    params: list[Any] = [r.since, r.until]
    for key, value in sorted((filters or {}).items()):
        if key not in DIMENSIONS:
            raise ValueError(f"cannot filter by {key!r}; allowed: {', '.join(DIMENSIONS)}")
        clauses.append(f"{key} = {d.param}")
        params.append(value)
    return " WHERE " + " AND ".join(clauses), params


SAVINGS = (
    ("prompt_cache", "prompt_cache_saving_nusd"),
    ("semantic_cache", "semantic_saving_nusd"),
    ("routing", "routing_saving_nusd"),
    ("history", "history_saving_nusd"),
)


def overview(run: Run, d: Dialect, r: Range) -> dict[str, Any]:
    """Requests, cost, baseline and savings per bucket and in total; cache and routing mixes.

    `savings_usd.caps` is always 0: what an output cap saved was never generated, so there is no
    usage to price; the history report counts the requests a cap cut short instead.
    """
    cols = (
        "requests", "errors", "cost_nusd", "baseline_nusd", "input_tokens", "output_tokens",
        *(col for _, col in SAVINGS),
        "exact_hits", "semantic_hits", "cache_misses", "tier_small", "tier_medium", "tier_frontier",
    )  # fmt: skip
    where, params = _where(d, r)
    bucket = _bucket_sql(r)
    sums = ", ".join(f"SUM({c})" for c in cols)
    totals = dict.fromkeys(cols, 0)
    series = []
    for ts, *values in run(
        f"SELECT {bucket}, {sums} FROM rollup_hourly{where} GROUP BY {bucket} ORDER BY 1", params
    ):
        row = dict(zip(cols, (_int(v) for v in values), strict=True))
        for c in cols:
            totals[c] += row[c]
        series.append(
            {
                "ts": int(ts),
                "requests": row["requests"],
                "cost_usd": _usd(row["cost_nusd"]),
                "baseline_usd": _usd(row["baseline_nusd"]),
                "savings_usd": _savings(row),
            }
        )
    hits = totals["exact_hits"] + totals["semantic_hits"]
    looked = hits + totals["cache_misses"]
    return {
        "since": r.since,
        "until": r.until,
        "bucket": r.bucket,
        "series": series,
        "totals": {
            "requests": totals["requests"],
            "errors": totals["errors"],
            "cost_usd": _usd(totals["cost_nusd"]),
            "baseline_usd": _usd(totals["baseline_nusd"]),
            "input_tokens": totals["input_tokens"],
            "output_tokens": totals["output_tokens"],
            "savings_usd": _savings(totals),
        },
        "cache": {
            "exact_hits": totals["exact_hits"],
            "semantic_hits": totals["semantic_hits"],
            "misses": totals["cache_misses"],
            "hit_rate": hits / looked if looked else None,
        },
        "routing": {t: totals[f"tier_{t}"] for t in ("small", "medium", "frontier")},
    }


def _savings(row: Mapping[str, int]) -> dict[str, float]:
    out = {name: _usd(row[col]) for name, col in SAVINGS}
    out["caps"] = 0.0
    return out


def attribution(run: Run, d: Dialect, by: str, r: Range, filters: Mapping[str, str]) -> dict[str, Any]:
    """Spend grouped by one dimension within the drill-down `filters`, and the top keys over time.

    `by=user` reads `rollup_users_daily` (day buckets) when the only filter is a feature; with any
    other filter it reads the events table, which the per-user rollup cannot answer. Either way it
    returns the `USER_ROWS` most expensive users; the shares are of the whole filtered spend.
    """
    if by not in ATTRIBUTION_BY:
        raise ValueError(f"cannot attribute by {by!r}; allowed: {', '.join(ATTRIBUTION_BY)}")
    for key in filters:
        if key not in DIMENSIONS:
            raise ValueError(f"cannot filter by {key!r}; allowed: {', '.join(DIMENSIONS)}")
    where, params = _where(d, r, filters)
    ((total,),) = run(f"SELECT SUM(cost_nusd) FROM rollup_hourly{where}", params)
    total_nusd = _int(total)
    sums = "SUM(requests), SUM(cost_nusd), SUM(baseline_nusd), SUM(input_tokens), SUM(output_tokens)"
    limit = ""
    if by != "user":
        table, key, bucket, series_where, series_params = "rollup_hourly", by, _bucket_sql(r), where, params
    elif set(filters) <= {"feature"}:
        day_where = [f"day >= {d.param}", f"day < {d.param}"]
        series_params = [int(r.since // DAY) * DAY, r.until]
        if "feature" in filters:
            day_where.append(f"feature = {d.param}")
            series_params.append(filters["feature"])
        table, key, bucket = "rollup_users_daily", '"user"', "day"
        series_where = " WHERE " + " AND ".join(day_where)
        limit = f" LIMIT {USER_ROWS}"
    else:
        ev_where = [f"ts >= {d.param}", f"ts < {d.param}"]
        series_params = [r.since, r.until]
        for k, v in sorted(filters.items()):
            ev_where.append(f"{MODEL_SQL if k == 'model' else k} = {d.param}")
            series_params.append(v)
        table, key, bucket = "events", '"user"', floor_sql(d, "ts", r.size)
        series_where = " WHERE " + " AND ".join(ev_where)
        sums = "COUNT(*), SUM(cost_nusd), SUM(baseline_cost_nusd), SUM(input_tokens), SUM(output_tokens)"
        limit = f" LIMIT {USER_ROWS}"
    rows = []
    for k, requests, cost, baseline, inp, out in run(
        f"SELECT {key}, {sums} FROM {table}{series_where} GROUP BY {key} "
        f"ORDER BY SUM({'cost_nusd'}) DESC, {key}{limit}",
        series_params,
    ):
        rows.append(
            {
                "key": k,
                "requests": _int(requests),
                "cost_usd": _usd(cost),
                "baseline_usd": _usd(baseline),
                "input_tokens": _int(inp),
                "output_tokens": _int(out),
                "share": _int(cost) / total_nusd if total_nusd else 0.0,
            }
        )
    top = [row["key"] for row in rows[:TOP_SERIES]]
    series: list[dict[str, Any]] = []
    if top:
        marks = ", ".join([d.param] * len(top))
        cost_sum = "SUM(cost_nusd)"
        for ts, k, cost in run(
            f"SELECT {bucket}, {key}, {cost_sum} FROM {table}{series_where} AND {key} IN ({marks}) "
            f"GROUP BY {bucket}, {key} ORDER BY 1, 3 DESC",
            [*series_params, *top],
        ):
            series.append({"ts": int(ts), "key": k, "cost_usd": _usd(cost)})
    return {"by": by, "since": r.since, "until": r.until, "rows": rows, "series": series}


def unit_economics(run: Run, d: Dialect, r: Range) -> dict[str, Any]:
    """Per feature and bucket: cost, task completions and failures, cost per completion, DAU.

    Completions are the tasks whose latest reported outcome (bucketed by when it was reported) is a
    success; their cost is that of every event carrying the task id, whenever it ran. Daily active
    users (and cost per DAU) exist for day buckets only; with hour buckets they are null.
    """
    where, params = _where(d, r)
    bucket = _bucket_sql(r)
    cells: dict[tuple[int, str], dict[str, Any]] = {}

    def cell(ts: int, feature: str) -> dict[str, Any]:
        return cells.setdefault(
            (ts, feature), {"cost": 0, "done": 0, "failed": 0, "done_cost": 0, "dau": None}
        )

    for ts, feature, cost in run(
        f"SELECT {bucket}, feature, SUM(cost_nusd) FROM rollup_hourly{where} GROUP BY {bucket}, feature",
        params,
    ):
        cell(int(ts), feature)["cost"] = _int(cost)
    p = d.param
    for ts, feature, outcome, task_cost in run(
        f"SELECT {floor_sql(d, 'o.ts', r.size)}, o.feature, o.outcome, "
        f"(SELECT SUM(e.cost_nusd) FROM events e WHERE e.task = o.task_id AND e.task <> '{UNATTRIBUTED}') "
        f"FROM task_outcomes o WHERE o.ts >= {p} AND o.ts < {p}",
        [r.since, r.until],
    ):
        c = cell(int(ts), feature)
        if outcome == "success":
            c["done"] += 1
            c["done_cost"] += _int(task_cost)
        else:
            c["failed"] += 1
    if r.bucket == "day":
        for day, feature, users in run(
            f"SELECT day, feature, users FROM rollup_dau WHERE day >= {p} AND day < {p}", [r.since, r.until]
        ):
            cell(int(day), feature)["dau"] = _int(users)
    rows = []
    for (ts, feature), c in sorted(cells.items()):
        dau = c["dau"]
        if r.bucket == "day" and dau is None:
            dau = 0
        rows.append(
            {
                "ts": ts,
                "feature": feature,
                "cost_usd": _usd(c["cost"]),
                "completions": c["done"],
                "failures": c["failed"],
                "cost_per_completion": _usd(c["done_cost"]) / c["done"] if c["done"] else None,
                "dau": dau,
                "cost_per_dau": _usd(c["cost"]) / dau if dau else None,
            }
        )
    return {"since": r.since, "until": r.until, "bucket": r.bucket, "rows": rows}


def templates(
    run: Run, d: Dialect, r: Range, feature: str | None, threshold: float, min_requests: int = 20
) -> dict[str, Any]:
    """Per feature, each template version's cost, token anatomy and quality, with regressions.

    Quality is the mean user rating (`feedback`, joined by request id) where there are ratings, else
    the shadow-check agreement rate; a regression is the newest template costing more than
    `1 + threshold` times its predecessor per request, or with quality lower by more than
    `threshold` (`faregate.alerts.detect_template_regressions`).
    """
    from faregate.alerts import detect_template_regressions  # alerts imports the ledger package

    filters = {"feature": feature} if feature is not None else {}
    where, params = _where(d, r, filters)
    comps = ", ".join(f"SUM({c}_tokens)" for c in COMPONENTS)
    p = d.param
    ratings: dict[tuple[str, str], float] = {}
    fb_where = [f"e.ts >= {p}", f"e.ts < {p}"]
    fb_params: list[Any] = [r.since, r.until]
    if feature is not None:
        fb_where.append(f"e.feature = {p}")
        fb_params.append(feature)
    for f, t, mean in run(
        # CROSS JOIN makes SQLite start from the (small) feedback table; left to itself it walks
        # every event in the range by the ts index, ~1 s over a month of 5 million events.
        "SELECT e.feature, e.template, AVG(f.rating) FROM feedback f CROSS JOIN events e "
        f"WHERE e.request_id = f.request_id AND {' AND '.join(fb_where)} GROUP BY e.feature, e.template",
        fb_params,
    ):
        if mean is not None:
            ratings[(f, t)] = float(mean)
    features: dict[str, list[dict[str, Any]]] = {}
    detector_rows = []
    for f, t, requests, cost, first_ts, out, compared, agreed, *components in run(
        "SELECT feature, template, SUM(requests), SUM(cost_nusd), MIN(first_ts), SUM(output_tokens), "
        f"SUM(shadow_compared), SUM(shadow_agreed), {comps} FROM rollup_hourly{where} "
        "GROUP BY feature, template ORDER BY feature, MIN(first_ts)",
        params,
    ):
        n, compared_n = _int(requests), _int(compared)
        feedback_mean = ratings.get((f, t))
        agreement = _int(agreed) / compared_n if compared_n else None
        tokens = {c: _int(v) for c, v in zip(COMPONENTS, components, strict=True)}
        tokens["output"] = _int(out)
        features.setdefault(f, []).append(
            {
                "template": t,
                "requests": n,
                "cost_per_request_usd": _usd(cost) / n if n else None,
                "tokens": tokens,
                "feedback_mean": feedback_mean,
                "shadow_agreement": agreement,
                "first_seen": float(first_ts),
            }
        )
        quality = feedback_mean if feedback_mean is not None else agreement
        detector_rows.append(
            {
                "feature": f,
                "template": t,
                "requests": n,
                "cost_nusd": _int(cost),
                "first_ts": float(first_ts),
                "quality": quality,
            }
        )
    regressions: dict[str, list[dict[str, Any]]] = {}
    for reg in detect_template_regressions(detector_rows, threshold, min_requests=min_requests):
        regressions.setdefault(reg.feature, []).append(
            {
                "template": reg.template,
                "previous": reg.previous,
                "cost_increase": reg.cost_ratio - 1 if math.isfinite(reg.cost_ratio) else None,
                "quality_change": reg.quality_change,
                "reasons": list(reg.reasons),
                "message": reg.message,
            }
        )
    return {
        "since": r.since,
        "until": r.until,
        "features": [
            {"feature": f, "templates": rows, "regressions": regressions.get(f, [])}
            for f, rows in sorted(features.items())
        ],
    }


def anatomy(run: Run, d: Dialect, r: Range) -> dict[str, Any]:
    """Input tokens by prompt component per feature, with each component's share, most tokens first."""
    where, params = _where(d, r)
    comps = ", ".join(f"SUM({c}_tokens)" for c in COMPONENTS)
    out = []
    for feature, requests, *values in run(
        f"SELECT feature, SUM(requests), {comps} FROM rollup_hourly{where} GROUP BY feature", params
    ):
        tokens = {c: _int(v) for c, v in zip(COMPONENTS, values, strict=True)}
        total = sum(tokens.values())
        out.append(
            {
                "feature": feature,
                "requests": _int(requests),
                "tokens": tokens,
                "shares": {c: (v / total if total else 0.0) for c, v in tokens.items()},
            }
        )
    out.sort(key=lambda e: (-sum(e["tokens"].values()), e["feature"]))
    return {"since": r.since, "until": r.until, "features": out}
