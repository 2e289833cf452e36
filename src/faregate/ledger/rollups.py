"""Hourly rollups of the ledger, kept current as events are written, and the dashboard's queries.

Every number the dashboard shows comes from three small tables, so a page stays fast when the
events table holds millions of rows:

- `rollup_hourly`: sums per (hour, feature, team, template, cohort, model), `model` being the model
  used (else the one asked for, else ""). The measures are `MEASURES` below, each defined once as a
  Python function (the incremental path) and as SQL (the rebuild), so the two cannot drift apart.
- `rollup_users_daily`: sums per (day, feature, user), and `rollup_dau`: the number of distinct users
  per (day, feature), counted as `rollup_users_daily` gains a row, for daily active users.
- `task_outcomes`: the latest outcome a client reported for a task (`POST /faregate/v1/events`);
  cost per completion joins it to the events carrying the same `X-FareGate-Task`.

The stores roll up only the events their insert actually stored (a retried batch, or a request id
already present, adds nothing), inside the transaction that stores them. Hours and days are UTC,
as unix seconds. A query's range is widened to whole hours: `since` is floored and `until` (which
is exclusive) is rounded up to the next hour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from faregate.call import UNATTRIBUTED
from faregate.ledger.events import CostEvent
from faregate.ledger.migrations import Dialect

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

HOUR = 3600
DAY = 86400
BUCKETS = {"hour": HOUR, "day": DAY}
KEYS = ("hour", "feature", "team", "template", "cohort", "model")
DIMENSIONS = ("feature", "team", "template", "cohort", "model")  # filters and `by` keys
ATTRIBUTION_BY = (*DIMENSIONS, "user")
COMPONENTS = ("system", "tools", "history", "context", "query", "overhead")
OUTCOMES = ("success", "failure")
TOP_SERIES = 8
USER_ROWS = 100

_CACHE_HITS = ("hit", "semantic-hit")


@dataclass(frozen=True, slots=True)
class Measure:
    name: str
    value: Callable[[CostEvent], int]  # the event's contribution, for the incremental path
    sql: str  # the same over an events row, for the rebuild


def _flag(test: Callable[[CostEvent], bool]) -> Callable[[CostEvent], int]:
    return lambda e: 1 if test(e) else 0


def _column(name: str) -> Measure:
    return Measure(name, lambda e: int(getattr(e, name, 0) or 0), name)


MEASURES: tuple[Measure, ...] = (
    Measure("requests", lambda e: 1, "1"),
    Measure("errors", _flag(lambda e: e.status >= 400), "CASE WHEN status >= 400 THEN 1 ELSE 0 END"),
    _column("input_tokens"),
    _column("output_tokens"),
    _column("cached_tokens"),
    _column("cache_write_tokens"),
    _column("cost_nusd"),
    Measure("baseline_nusd", lambda e: e.baseline_cost_nusd, "baseline_cost_nusd"),
    _column("prompt_cache_saving_nusd"),
    # What the response caches (exact and semantic) saved: the baseline cost of the requests they
    # answered, less the nothing those answers cost.
    Measure(
        "semantic_saving_nusd",
        lambda e: e.baseline_cost_nusd - e.cost_nusd if e.cache_status in _CACHE_HITS else 0,
        "CASE WHEN cache_status IN ('hit', 'semantic-hit') THEN baseline_cost_nusd - cost_nusd ELSE 0 END",
    ),
    _column("routing_saving_nusd"),
    _column("history_saving_nusd"),
    Measure(
        "exact_hits",
        _flag(lambda e: e.cache_status == "hit"),
        "CASE WHEN cache_status = 'hit' THEN 1 ELSE 0 END",
    ),
    Measure(
        "semantic_hits",
        _flag(lambda e: e.cache_status == "semantic-hit"),
        "CASE WHEN cache_status = 'semantic-hit' THEN 1 ELSE 0 END",
    ),
    Measure(
        "cache_misses",
        _flag(lambda e: e.cache_status == "miss"),
        "CASE WHEN cache_status = 'miss' THEN 1 ELSE 0 END",
    ),
    *(
        # Shadow calls are not routing decisions: the tier mix counts the routed requests only.
        Measure(
            f"tier_{tier}",
            _flag(lambda e, t=tier: e.tier == t and e.route_shadow_of is None),  # type: ignore[misc]
            f"CASE WHEN tier = '{tier}' AND route_shadow_of IS NULL THEN 1 ELSE 0 END",
        )
        for tier in ("small", "medium", "frontier")
    ),
    Measure(
        "capped",
        _flag(lambda e: e.output_cap is not None),
        "CASE WHEN output_cap IS NOT NULL THEN 1 ELSE 0 END",
    ),
    Measure("cut", _flag(lambda e: bool(e.output_capped)), "CASE WHEN output_capped THEN 1 ELSE 0 END"),
    *(_column(f"{c}_tokens") for c in COMPONENTS),
    Measure(
        "route_fallbacks",
        _flag(lambda e: bool(e.route_fallback) and e.route_shadow_of is None),
        "CASE WHEN route_fallback AND route_shadow_of IS NULL THEN 1 ELSE 0 END",
    ),
    Measure(
        "shadow_compared",
        _flag(lambda e: e.route_shadow_of is not None and e.route_agreed is not None),
        "CASE WHEN route_shadow_of IS NOT NULL AND route_agreed IS NOT NULL THEN 1 ELSE 0 END",
    ),
    Measure(
        "shadow_agreed",
        _flag(lambda e: e.route_shadow_of is not None and bool(e.route_agreed)),
        "CASE WHEN route_shadow_of IS NOT NULL AND route_agreed THEN 1 ELSE 0 END",
    ),
)
MEASURE_NAMES = tuple(m.name for m in MEASURES)
USER_MEASURES = ("requests", "input_tokens", "output_tokens", "cost_nusd", "baseline_nusd")
_USER_VALUES = tuple(next(m.value for m in MEASURES if m.name == n) for n in USER_MEASURES)
_MEASURE_VALUES = tuple(m.value for m in MEASURES)

_MODEL_SQL = "COALESCE(model_used, model_requested, '')"


def _model(event: CostEvent) -> str:
    return event.model_used or event.model_requested or ""


def _floor_sql(d: Dialect, column: str, size: int) -> str:
    """`column` (unix seconds, a double) floored to a multiple of `size`, as an integer."""
    if d.name == "sqlite":
        return f"(CAST({column} / {size} AS INTEGER) * {size})"
    return f"(FLOOR({column} / {size})::BIGINT * {size})"


# -- schema ---------------------------------------------------------------------------------------


def migration_statements(d: Dialect) -> list[str]:
    """The tables, an index for the task join, and a backfill from the events already stored."""
    sums = ", ".join(f"{name} {d.bigint} NOT NULL" for name in MEASURE_NAMES)
    user_sums = ", ".join(f"{name} {d.bigint} NOT NULL" for name in USER_MEASURES)
    return [
        f"CREATE TABLE rollup_hourly (hour {d.bigint} NOT NULL, feature {d.text} NOT NULL, "
        f"team {d.text} NOT NULL, template {d.text} NOT NULL, cohort {d.text} NOT NULL, "
        f"model {d.text} NOT NULL, first_ts {d.real} NOT NULL, {sums}, "
        "PRIMARY KEY (hour, feature, team, template, cohort, model))",
        f'CREATE TABLE rollup_users_daily (day {d.bigint} NOT NULL, feature {d.text} NOT NULL, "user" '
        f'{d.text} NOT NULL, {user_sums}, PRIMARY KEY (day, feature, "user"))',
        f"CREATE TABLE rollup_dau (day {d.bigint} NOT NULL, feature {d.text} NOT NULL, "
        f"users {d.bigint} NOT NULL, PRIMARY KEY (day, feature))",
        # Prompt-cache health: requests per (hour, feature, prefix hash, volatile-span findings), so
        # prefix churn (distinct hashes per hour) and findings need no scan of the events.
        f"CREATE TABLE rollup_prefix_hourly (hour {d.bigint} NOT NULL, feature {d.text} NOT NULL, "
        f"prefix_hash {d.text} NOT NULL, findings {d.text} NOT NULL, requests {d.bigint} NOT NULL, "
        "PRIMARY KEY (hour, feature, prefix_hash, findings))",
        f"CREATE TABLE task_outcomes (task_id {d.text} PRIMARY KEY, feature {d.text} NOT NULL, "
        f"outcome {d.text} NOT NULL, score {d.real}, ts {d.real} NOT NULL)",
        "CREATE INDEX task_outcomes_ts ON task_outcomes (ts)",
        # Partial: most events carry no task, and those need no index entry.
        f"CREATE INDEX events_task ON events (task) WHERE task <> '{UNATTRIBUTED}'",
        *rebuild_statements(d),
    ]


def rebuild_statements(d: Dialect) -> list[str]:
    """Empty the rollups and recompute them from the events table."""
    hour = _floor_sql(d, "ts", HOUR)
    day = _floor_sql(d, "ts", DAY)
    measures = ", ".join(MEASURE_NAMES)
    sums = ", ".join(f"SUM({m.sql})" for m in MEASURES)
    user_measures = ", ".join(USER_MEASURES)
    user_sums = ", ".join(f"SUM({m.sql})" for m in MEASURES if m.name in USER_MEASURES)
    # USER_MEASURES is in MEASURES order, so the two lists line up.
    assert tuple(m.name for m in MEASURES if m.name in USER_MEASURES) == USER_MEASURES
    return [
        "DELETE FROM rollup_hourly",
        "DELETE FROM rollup_users_daily",
        "DELETE FROM rollup_dau",
        "DELETE FROM rollup_prefix_hourly",
        f"INSERT INTO rollup_hourly ({', '.join(KEYS)}, first_ts, {measures}) "
        f"SELECT {hour}, feature, team, template, cohort, {_MODEL_SQL}, MIN(ts), {sums} FROM events "
        f"GROUP BY {hour}, feature, team, template, cohort, {_MODEL_SQL}",
        f'INSERT INTO rollup_users_daily (day, feature, "user", {user_measures}) '
        f'SELECT {day}, feature, "user", {user_sums} FROM events GROUP BY {day}, feature, "user"',
        "INSERT INTO rollup_dau (day, feature, users) "
        "SELECT day, feature, COUNT(*) FROM rollup_users_daily GROUP BY day, feature",
        "INSERT INTO rollup_prefix_hourly (hour, feature, prefix_hash, findings, requests) "
        f"SELECT {hour}, feature, COALESCE(prefix_hash, ''), COALESCE(prefix_findings, ''), COUNT(*) "
        f"FROM events GROUP BY {hour}, feature, COALESCE(prefix_hash, ''), COALESCE(prefix_findings, '')",
    ]


# -- maintenance ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statements:
    hourly: str  # upsert one rollup_hourly row: keys, first_ts, measures
    user_key: str  # insert a (day, feature, user) key with zero sums, if new
    users: str  # add sums to a (day, feature, user) row
    dau: str  # add new users to a (day, feature) count
    task: str  # record a task outcome (the latest wins)
    prefix: str  # add requests to an (hour, feature, prefix hash, findings) row


def statements(d: Dialect) -> Statements:
    p = d.param
    least = "MIN" if d.name == "sqlite" else "LEAST"
    adds = ", ".join(f"{n} = rollup_hourly.{n} + excluded.{n}" for n in MEASURE_NAMES)
    user_adds = ", ".join(f"{n} = rollup_users_daily.{n} + excluded.{n}" for n in USER_MEASURES)
    return Statements(
        hourly=(
            f"INSERT INTO rollup_hourly ({', '.join(KEYS)}, first_ts, {', '.join(MEASURE_NAMES)}) "
            f"VALUES ({', '.join([p] * (len(KEYS) + 1 + len(MEASURES)))}) "
            f"ON CONFLICT ({', '.join(KEYS)}) DO UPDATE SET "
            f"first_ts = {least}(rollup_hourly.first_ts, excluded.first_ts), {adds}"
        ),
        user_key=(
            f'INSERT INTO rollup_users_daily (day, feature, "user", {", ".join(USER_MEASURES)}) '
            f"VALUES ({p}, {p}, {p}, {', '.join(['0'] * len(USER_MEASURES))}) "
            'ON CONFLICT (day, feature, "user") DO NOTHING'
        ),
        users=(
            f'INSERT INTO rollup_users_daily (day, feature, "user", {", ".join(USER_MEASURES)}) '
            f"VALUES ({', '.join([p] * (3 + len(USER_MEASURES)))}) "
            f'ON CONFLICT (day, feature, "user") DO UPDATE SET {user_adds}'
        ),
        dau=(
            f"INSERT INTO rollup_dau (day, feature, users) VALUES ({p}, {p}, {p}) "
            "ON CONFLICT (day, feature) DO UPDATE SET users = rollup_dau.users + excluded.users"
        ),
        prefix=(
            "INSERT INTO rollup_prefix_hourly (hour, feature, prefix_hash, findings, requests) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (hour, feature, prefix_hash, findings) "
            "DO UPDATE SET requests = rollup_prefix_hourly.requests + excluded.requests"
        ),
        task=(
            "INSERT INTO task_outcomes (task_id, feature, outcome, score, ts) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}) "
            "ON CONFLICT (task_id) DO UPDATE SET feature = excluded.feature, outcome = excluded.outcome, "
            "score = excluded.score, ts = excluded.ts"
        ),
    )


@dataclass(slots=True)
class Aggregate:
    """A batch's contribution to the rollups, in key order (so concurrent writers lock alike)."""

    hourly: list[tuple[Any, ...]]  # keys, first_ts, measures: the `hourly` statement's parameters
    users: list[tuple[Any, ...]]  # day, feature, user, user measures
    prefixes: list[tuple[Any, ...]]  # hour, feature, prefix hash, findings, requests


def aggregate(events: Iterable[CostEvent]) -> Aggregate:
    hourly: dict[tuple[Any, ...], list[Any]] = {}
    users: dict[tuple[Any, ...], list[int]] = {}
    prefixes: dict[tuple[Any, ...], int] = {}
    for e in events:
        ts = e.ts
        hour = int(ts // HOUR) * HOUR
        pkey = (hour, e.feature, e.prefix_hash or "", e.prefix_findings or "")
        prefixes[pkey] = prefixes.get(pkey, 0) + 1
        key = (hour, e.feature, e.team, e.template, e.cohort, _model(e))
        values = [fn(e) for fn in _MEASURE_VALUES]
        row = hourly.get(key)
        if row is None:
            hourly[key] = [ts, *values]
        else:
            if ts < row[0]:
                row[0] = ts
            for i, v in enumerate(values, 1):
                row[i] += v
        ukey = (int(ts // DAY) * DAY, e.feature, e.user)
        uvalues = [fn(e) for fn in _USER_VALUES]
        urow = users.get(ukey)
        if urow is None:
            users[ukey] = uvalues
        else:
            for i, v in enumerate(uvalues):
                urow[i] += v
    return Aggregate(
        hourly=[(*k, *v) for k, v in sorted(hourly.items())],
        users=[(*k, *v) for k, v in sorted(users.items())],
        prefixes=[(*k, n) for k, n in sorted(prefixes.items())],
    )


def dau_increments(new_user_keys: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """(day, feature, users) for the (day, feature, user) keys a batch added to the rollups."""
    counts: dict[tuple[Any, Any], int] = {}
    for day, feature, *_ in new_user_keys:
        counts[(day, feature)] = counts.get((day, feature), 0) + 1
    return [(*k, n) for k, n in sorted(counts.items())]


def unique_events(events: Sequence[CostEvent]) -> list[CostEvent]:
    """The batch without repeated request ids; the first wins, as ON CONFLICT DO NOTHING keeps it."""
    seen: set[str] = set()
    out: list[CostEvent] = []
    for e in events:
        if e.request_id not in seen:
            seen.add(e.request_id)
            out.append(e)
    return out


# -- queries --------------------------------------------------------------------------------------


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
            ev_where.append(f"{_MODEL_SQL if k == 'model' else k} = {d.param}")
            series_params.append(v)
        table, key, bucket = "events", '"user"', _floor_sql(d, "ts", r.size)
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
        f"SELECT {_floor_sql(d, 'o.ts', r.size)}, o.feature, o.outcome, "
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
