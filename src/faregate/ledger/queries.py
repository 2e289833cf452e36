"""The SQL both stores share, built once per dialect, so the two backends cannot drift apart.

Only names from fixed lists ever reach the SQL text; values always travel as parameters.
"""

from __future__ import annotations

import operator
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from faregate.call import ATTRIBUTION_DIMENSIONS
from faregate.ledger.events import CostEvent, nanos_to_usd
from faregate.ledger.migrations import Dialect

FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CostEvent))
_BOOL_FIELDS = frozenset(
    name for name, tp in typing.get_type_hints(CostEvent).items() if tp is bool or tp == bool | None
)
_BOOL_POSITIONS = tuple(i for i, name in enumerate(FIELDS) if name in _BOOL_FIELDS)

GROUP_KEYS: tuple[str, ...] = (
    *ATTRIBUTION_DIMENSIONS,
    "model_used",
    "model_requested",
    "provider",
    "protocol",
    "status",
)
_SUMMED = ("input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens")

# attrgetter returns the tuple in column order without dataclasses.astuple's deep copies,
# which matters when a batch holds thousands of events.
event_params: Callable[[CostEvent], tuple[Any, ...]] = operator.attrgetter(*FIELDS)


def quote(name: str) -> str:
    """Quote a column name: `user` is reserved in PostgreSQL."""
    return f'"{name}"'


_COLUMNS = ", ".join(quote(name) for name in FIELDS)


@dataclass(frozen=True, slots=True)
class Statements:
    insert: str
    select_events: str
    count: str
    feedback: str


def statements(dialect: Dialect) -> Statements:
    placeholders = ", ".join([dialect.param] * len(FIELDS))
    return Statements(
        # ON CONFLICT DO NOTHING is spelled the same in both: a retried batch is harmless.
        insert=(
            f"INSERT INTO events ({_COLUMNS}) VALUES ({placeholders}) ON CONFLICT (request_id) DO NOTHING"
        ),
        select_events=f"SELECT {_COLUMNS} FROM events",
        count="SELECT COUNT(*) FROM events",
        feedback=(
            f"INSERT INTO feedback (request_id, ts, rating) VALUES ({dialect.param}, {dialect.param}, "
            f"{dialect.param}) ON CONFLICT (request_id) "
            "DO UPDATE SET ts = excluded.ts, rating = excluded.rating"
        ),
    )


def events_query(dialect: Dialect, since: float | None, limit: int | None) -> tuple[str, list[Any]]:
    sql = statements(dialect).select_events
    params: list[Any] = []
    if since is not None:
        sql += f" WHERE ts >= {dialect.param}"
        params.append(since)
    sql += " ORDER BY ts, request_id"
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        sql += f" LIMIT {dialect.param}"
        params.append(limit)
    return sql, params


def row_to_event(row: Sequence[Any]) -> CostEvent:
    """Rebuild an event from a row in FIELDS order; SQLite hands booleans back as 0/1."""
    values = list(row)
    for i in _BOOL_POSITIONS:
        if values[i] is not None:
            values[i] = bool(values[i])
    return CostEvent(*values)


def validate_group_keys(by: Sequence[str]) -> tuple[str, ...]:
    """Keep the caller's order, drop repeats, refuse anything not in GROUP_KEYS."""
    if isinstance(by, str):
        raise ValueError(f"`by` must be a sequence of keys, not the string {by!r}")
    unknown = [key for key in by if key not in GROUP_KEYS]
    if unknown:
        raise ValueError(f"cannot group spend by {unknown!r}; allowed keys: {', '.join(GROUP_KEYS)}")
    return tuple(dict.fromkeys(by))


def spend_query(dialect: Dialect, by: Sequence[str], since: float | None) -> tuple[str, list[Any]]:
    keys = validate_group_keys(by)
    group = ", ".join(quote(key) for key in keys)
    sums = ", ".join(f"SUM({quote(col)})" for col in ("cost_nusd", *_SUMMED))
    sql = f"SELECT {group + ', ' if group else ''}COUNT(*), {sums} FROM events"
    params: list[Any] = []
    if since is not None:
        sql += f" WHERE ts >= {dialect.param}"
        params.append(since)
    if group:
        # Ties in cost are ordered by key so reports are stable from one run to the next; NULLS
        # LAST because the two databases disagree on where NULL sorts by default.
        order = ", ".join(f"{quote(key)} NULLS LAST" for key in keys)
        sql += f" GROUP BY {group} ORDER BY SUM(cost_nusd) DESC, {order}"
    return sql, params


def spend_rows(by: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Shape aggregate rows; sums arrive as int (SQLite), Decimal (PostgreSQL) or NULL (no rows)."""
    keys = validate_group_keys(by)
    out: list[dict[str, Any]] = []
    for row in rows:
        requests = int(row[len(keys)])
        if requests == 0:  # an ungrouped aggregate over no rows still returns one row
            continue
        cost, *tokens = (int(v or 0) for v in row[len(keys) + 1 :])
        item: dict[str, Any] = dict(zip(keys, row[: len(keys)], strict=True))
        item["requests"] = requests
        item["cost_usd"] = nanos_to_usd(cost)
        item.update(zip(_SUMMED, tokens, strict=True))
        out.append(item)
    return out
