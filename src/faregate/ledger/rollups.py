"""Hourly rollups of the ledger, kept current as events are written, and the dashboard's queries.

Every number the dashboard shows comes from these small tables (queried in
`faregate.ledger.rollup_queries`), so a page stays fast when the events table holds millions of
rows:

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

from collections.abc import Callable, Iterable, Sequence
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

MODEL_SQL = "COALESCE(model_used, model_requested, '')"


def _model(event: CostEvent) -> str:
    return event.model_used or event.model_requested or ""


def floor_sql(d: Dialect, column: str, size: int) -> str:
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
    hour = floor_sql(d, "ts", HOUR)
    day = floor_sql(d, "ts", DAY)
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
        f"SELECT {hour}, feature, team, template, cohort, {MODEL_SQL}, MIN(ts), {sums} FROM events "
        f"GROUP BY {hour}, feature, team, template, cohort, {MODEL_SQL}",
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
