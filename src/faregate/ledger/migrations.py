"""The ledger schema as an ordered list of migrations, recorded in `_faregate_migrations`.

Append a migration to change the schema; never edit one that has shipped, because databases in
the field have already recorded it as applied. Each migration is written once against logical
column types so SQLite and PostgreSQL get the same schema from the same text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MIGRATIONS_TABLE = "_faregate_migrations"


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the two backends: type names and the parameter placeholder."""

    name: str
    param: str
    text: str = "TEXT"
    integer: str = "INTEGER"
    bigint: str = "BIGINT"
    real: str = "DOUBLE PRECISION"
    boolean: str = "BOOLEAN"


# SQLite has no BOOLEAN storage class; integers are what it stores anyway and sum cleanly.
SQLITE = Dialect(name="sqlite", param="?", bigint="INTEGER", real="REAL", boolean="INTEGER")
POSTGRES = Dialect(name="postgresql", param="%s")

Execute = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
"""Run one statement and return its rows (empty for statements without a result)."""

Migration = Callable[[Dialect], list[str]]

MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` under its name; order of definition is order of application."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_create_events(d: Dialect) -> list[str]:
    return [
        f"""
        CREATE TABLE events (
            request_id {d.text} PRIMARY KEY,
            ts {d.real} NOT NULL,
            feature {d.text} NOT NULL,
            team {d.text} NOT NULL,
            template {d.text} NOT NULL,
            cohort {d.text} NOT NULL,
            "user" {d.text} NOT NULL,
            conversation {d.text} NOT NULL,
            task {d.text} NOT NULL,
            protocol {d.text} NOT NULL,
            provider {d.text},
            model_requested {d.text},
            model_used {d.text},
            stream {d.boolean} NOT NULL,
            status {d.integer} NOT NULL,
            error_kind {d.text},
            input_tokens {d.bigint} NOT NULL,
            cached_tokens {d.bigint} NOT NULL,
            cache_write_tokens {d.bigint} NOT NULL,
            cache_write_1h_tokens {d.bigint} NOT NULL,
            output_tokens {d.bigint} NOT NULL,
            reasoning_tokens {d.bigint} NOT NULL,
            usage_estimated {d.boolean} NOT NULL,
            price_known {d.boolean} NOT NULL,
            cost_nusd {d.bigint} NOT NULL,
            baseline_cost_nusd {d.bigint} NOT NULL,
            latency_ms {d.real} NOT NULL,
            upstream_ms {d.real},
            cache_status {d.text},
            tier {d.text}
        )
        """,
        "CREATE INDEX events_ts ON events (ts)",
        "CREATE INDEX events_feature_ts ON events (feature, ts)",
    ]


@migration
def m002_anatomy_columns(d: Dialect) -> list[str]:
    components = ("system", "tools", "history", "context", "query", "overhead")
    return [f"ALTER TABLE events ADD COLUMN {c}_tokens {d.bigint} NOT NULL DEFAULT 0" for c in components]


@migration
def m003_prompt_cache_columns(d: Dialect) -> list[str]:
    return [
        f"ALTER TABLE events ADD COLUMN prompt_cache_saving_nusd {d.bigint} NOT NULL DEFAULT 0",
        f"ALTER TABLE events ADD COLUMN prefix_hash {d.text}",
        f"ALTER TABLE events ADD COLUMN prefix_findings {d.text}",
        f"ALTER TABLE events ADD COLUMN prompt_cache_actions {d.text}",
    ]


@migration
def m004_response_cache_columns(d: Dialect) -> list[str]:
    return [
        f"ALTER TABLE events ADD COLUMN cache_similarity {d.real}",
        f"ALTER TABLE events ADD COLUMN cache_verified {d.boolean}",
    ]


@migration
def m005_history_and_cap_columns(d: Dialect) -> list[str]:
    return [
        f"ALTER TABLE events ADD COLUMN history_policy {d.text}",
        f"ALTER TABLE events ADD COLUMN history_tokens_before {d.bigint}",
        f"ALTER TABLE events ADD COLUMN history_tokens_after {d.bigint}",
        f"ALTER TABLE events ADD COLUMN history_note {d.text}",
        f"ALTER TABLE events ADD COLUMN output_cap {d.bigint}",
        f"ALTER TABLE events ADD COLUMN output_capped {d.boolean}",
    ]


@migration
def m006_routing_columns_and_feedback(d: Dialect) -> list[str]:
    return [
        f"ALTER TABLE events ADD COLUMN route_confidence {d.real}",
        f"ALTER TABLE events ADD COLUMN route_fallback {d.boolean}",
        f"ALTER TABLE events ADD COLUMN route_shadow_of {d.text}",
        f"ALTER TABLE events ADD COLUMN route_agreed {d.boolean}",
        # A user's rating of a request's answer (POST /faregate/v1/feedback); the latest one counts.
        f"CREATE TABLE feedback (request_id {d.text} PRIMARY KEY, ts {d.real} NOT NULL, "
        f"rating {d.real} NOT NULL)",
    ]


@migration
def m007_routing_and_history_savings(d: Dialect) -> list[str]:
    return [
        f"ALTER TABLE events ADD COLUMN routing_saving_nusd {d.bigint} NOT NULL DEFAULT 0",
        f"ALTER TABLE events ADD COLUMN history_saving_nusd {d.bigint} NOT NULL DEFAULT 0",
    ]


@migration
def m008_rollups(d: Dialect) -> list[str]:
    # Hourly rollups for the dashboard, task outcomes, and a backfill from the events stored so far.
    from faregate.ledger.rollups import migration_statements  # rollups imports Dialect from here

    return migration_statements(d)


@migration
def m009_reliability_auth_privacy(d: Dialect) -> list[str]:
    return [
        f"ALTER TABLE events ADD COLUMN key_id {d.text}",
        f"ALTER TABLE events ADD COLUMN upstream_retries {d.integer} NOT NULL DEFAULT 0",
        f"ALTER TABLE events ADD COLUMN upstream_fallbacks {d.text}",
        f"ALTER TABLE events ADD COLUMN partial {d.boolean}",
        f"ALTER TABLE events ADD COLUMN prompt_text {d.text}",
        f"ALTER TABLE events ADD COLUMN response_text {d.text}",
    ]


def migrate(execute: Execute, dialect: Dialect) -> list[str]:
    """Apply the pending migrations and return their names.

    The caller owns the transaction (and, on PostgreSQL, a lock), so that replicas starting
    together cannot apply the same migration twice and a failed migration leaves nothing behind.
    """
    execute(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
        f"(name {dialect.text} PRIMARY KEY, applied_at {dialect.real} NOT NULL)",
        (),
    )
    applied = {row[0] for row in execute(f"SELECT name FROM {MIGRATIONS_TABLE}", ())}
    done: list[str] = []
    record = f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES ({dialect.param}, {dialect.param})"
    for name, fn in MIGRATIONS:
        if name in applied:
            continue
        for statement in fn(dialect):
            execute(statement, ())
        execute(record, (name, time.time()))
        done.append(name)
    return done
