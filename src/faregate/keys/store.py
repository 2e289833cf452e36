"""Virtual keys in the ledger's database: one row per key, the secret only as a salted hash.

The table has its own migrations table (`_faregate_key_migrations`), so it shares the ledger's
database (SQLite file or PostgreSQL) like the budget and cache stores do: every replica reads the
same keys, and a revocation made on one machine reaches all of them (each trusts a checked key
for `auth.key_cache_s`, see `faregate.server.auth`).

The SQL is written once here (`SqlKeyStore`); a backend supplies transactions and placeholders.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, Protocol

from faregate.config import BudgetSettings
from faregate.database_url import sqlite_path
from faregate.keys import credential
from faregate.sql_backends import Execute, SqliteBackend

MIGRATIONS_TABLE = "_faregate_key_migrations"
MAX_TEAM = 256
Period = Literal["day", "month"]
_COLUMNS = "id, salt, hash, team, name, budget_usd, budget_period, models, created_at, revoked_at"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One virtual key as stored: everything but the secret (`salt` and `hash` only verify it)."""

    id: str
    team: str
    name: str
    budget_usd: Decimal | None
    budget_period: Period
    models: tuple[str, ...] | None  # None: any model the gateway serves
    created_at: float
    revoked_at: float | None
    salt: str = field(repr=False)
    hash: str = field(repr=False)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def budget(self) -> BudgetSettings | None:
        """The key's own budget, as the budget stage enforces it: scope `key`, named by the key id."""
        if self.budget_usd is None:
            return None
        return BudgetSettings(scope="key", name=self.id, period=self.budget_period, limit_usd=self.budget_usd)

    def public(self) -> dict[str, Any]:
        """What `faregate keys list` and the admin API may show: never the salt or the hash."""
        return {
            "id": self.id,
            "team": self.team,
            "name": self.name,
            "budget_usd": None if self.budget_usd is None else str(self.budget_usd),
            "budget_period": self.budget_period if self.budget_usd is not None else None,
            "models": None if self.models is None else list(self.models),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


class KeyStore(Protocol):
    def create(
        self,
        team: str,
        *,
        name: str = "",
        budget_usd: Decimal | str | None = None,
        budget_period: str = "month",
        models: Sequence[str] | None = None,
    ) -> tuple[str, KeyRecord]: ...

    def get(self, key_id: str) -> KeyRecord | None: ...

    def list(self, team: str | None = None) -> list[KeyRecord]: ...

    def revoke(self, key_id: str) -> KeyRecord | None: ...

    def verify(self, key: str) -> KeyRecord | None: ...

    def close(self) -> None: ...


def migrations(real: str) -> list[tuple[str, list[str]]]:
    return [
        (
            "m001_create_keys",
            [
                f"""
                CREATE TABLE faregate_keys (
                    id TEXT PRIMARY KEY,
                    salt TEXT NOT NULL,
                    hash TEXT NOT NULL,
                    team TEXT NOT NULL,
                    name TEXT NOT NULL DEFAULT '',
                    budget_usd TEXT,
                    budget_period TEXT NOT NULL DEFAULT 'month',
                    models TEXT,
                    created_at {real} NOT NULL,
                    revoked_at {real}
                )
                """,
                "CREATE INDEX faregate_keys_team ON faregate_keys (team)",
            ],
        )
    ]


def check_budget(budget_usd: Decimal | str | None, period: str) -> Decimal | None:
    """The budget as a positive Decimal (or None), and a known period; ValueError says what is wrong."""
    if period not in ("day", "month"):
        raise ValueError(f"budget period must be day or month, not {period!r}")
    if budget_usd is None:
        return None
    try:
        amount = Decimal(str(budget_usd).strip().lstrip("$"))
    except InvalidOperation:
        raise ValueError(
            f"budget must be an amount in US dollars, like 25 or 0.50, not {budget_usd!r}"
        ) from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"budget must be a positive amount in US dollars, not {budget_usd!r}")
    return amount


def check_models(models: Sequence[str] | None) -> tuple[str, ...] | None:
    if models is None:
        return None
    cleaned = tuple(dict.fromkeys(m.strip() for m in models if m.strip()))
    if not cleaned:
        raise ValueError("models must name at least one model (omit it to allow every model)")
    return cleaned


class SqlKeyStore:
    """The key logic over SQL both engines accept; subclasses supply `_transaction` and `_read`."""

    param = "?"

    def _transaction(self) -> AbstractContextManager[Execute]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Execute]:
        raise NotImplementedError

    def create(
        self,
        team: str,
        *,
        name: str = "",
        budget_usd: Decimal | str | None = None,
        budget_period: str = "month",
        models: Sequence[str] | None = None,
    ) -> tuple[str, KeyRecord]:
        """A new key for `team`: returns the key itself (shown once, never stored) and its record."""
        team = team.strip()
        if not team or len(team) > MAX_TEAM:
            raise ValueError(f"team must be 1 to {MAX_TEAM} characters")
        amount = check_budget(budget_usd, budget_period)
        allowed = check_models(models)
        key, parts = credential.generate()
        salt = credential.new_salt()
        record = KeyRecord(
            id=parts.id,
            team=team,
            name=name.strip(),
            budget_usd=amount,
            budget_period="day" if budget_period == "day" else "month",
            models=allowed,
            created_at=time.time(),
            revoked_at=None,
            salt=salt,
            hash=credential.hash_secret(salt, parts.secret),
        )
        p = self.param
        with self._transaction() as execute:
            execute(
                f"INSERT INTO faregate_keys ({_COLUMNS}) VALUES ({', '.join([p] * 10)})",
                (
                    record.id,
                    record.salt,
                    record.hash,
                    record.team,
                    record.name,
                    None if amount is None else str(amount),
                    record.budget_period,
                    None if allowed is None else json.dumps(list(allowed)),
                    record.created_at,
                    None,
                ),
            )
        return key, record

    def get(self, key_id: str) -> KeyRecord | None:
        with self._read() as execute:
            rows = execute(f"SELECT {_COLUMNS} FROM faregate_keys WHERE id = {self.param}", (key_id,))
        return _record(rows[0]) if rows else None

    def list(self, team: str | None = None) -> list[KeyRecord]:
        where, params = (f" WHERE team = {self.param}", (team,)) if team is not None else ("", ())
        with self._read() as execute:
            rows = execute(f"SELECT {_COLUMNS} FROM faregate_keys{where} ORDER BY created_at, id", params)
        return [_record(row) for row in rows]

    def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoke a key (idempotent: the first revocation's time stays); None when no such key."""
        p = self.param
        with self._transaction() as execute:
            execute(
                f"UPDATE faregate_keys SET revoked_at = {p} WHERE id = {p} AND revoked_at IS NULL",
                (time.time(), key_id),
            )
            rows = execute(f"SELECT {_COLUMNS} FROM faregate_keys WHERE id = {p}", (key_id,))
        return _record(rows[0]) if rows else None

    def verify(self, key: str) -> KeyRecord | None:
        """The record of a well-formed, known, unrevoked key whose secret matches; else None."""
        parts = credential.parse(key)
        if parts is None:
            return None
        record = self.get(parts.id)
        if record is None or record.revoked or not credential.matches(record.salt, record.hash, parts.secret):
            return None
        return record

    def close(self) -> None:
        raise NotImplementedError


def _record(row: Sequence[Any]) -> KeyRecord:
    key_id, salt, hashed, team, name, budget, period, models, created, revoked = row
    return KeyRecord(
        id=str(key_id),
        team=str(team),
        name=str(name or ""),
        budget_usd=None if budget is None else Decimal(str(budget)),
        budget_period="day" if period == "day" else "month",
        models=None if models is None else tuple(json.loads(models)),
        created_at=float(created),
        revoked_at=None if revoked is None else float(revoked),
        salt=str(salt),
        hash=str(hashed),
    )


class SqliteKeyStore(SqliteBackend, SqlKeyStore):
    """The embedded store: the ledger's SQLite file, one connection and a lock."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self._open(path, busy_timeout_ms, migrations, MIGRATIONS_TABLE)

    def __repr__(self) -> str:
        return f"SqliteKeyStore({str(self.path)!r})"


def open_key_store(url: str) -> KeyStore:
    """Open (and migrate) the key store in the database a config's `database` value names.

    The same URL forms as `faregate.ledger.open_store`: `sqlite:///relative.db`,
    `sqlite:////absolute.db`, a bare path, `postgresql://...` or `postgres://...`.
    """
    path = sqlite_path(url, "key")
    if path is not None:
        return SqliteKeyStore(path)
    from faregate.keys.postgres_store import PostgresKeyStore  # libpq only when asked for

    return PostgresKeyStore(url)
