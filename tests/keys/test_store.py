"""The key store on both engines: keys hashed with a per-key salt, verified, listed and revoked."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from faregate.keys import KeyStore, credential, open_key_store


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    url: str = request.getfixturevalue("postgres_db_url")
    return url


@pytest.fixture
def open_store(database: str) -> Iterator[Callable[[], KeyStore]]:
    opened: list[KeyStore] = []

    def make() -> KeyStore:
        store = open_key_store(database)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[[], KeyStore]) -> KeyStore:
    return open_store()


def raw_rows(database: str) -> list[tuple[Any, ...]]:
    """Every stored column of every key, read behind the store's back."""
    if database.startswith("sqlite:///"):
        with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
            return conn.execute("SELECT * FROM faregate_keys").fetchall()
    with psycopg.connect(database) as conn:
        return conn.execute("SELECT * FROM faregate_keys").fetchall()


def test_a_created_key_verifies_and_carries_its_settings(store: KeyStore) -> None:
    key, record = store.create(
        "search", name="prod", budget_usd="12.50", budget_period="day", models=["gpt-4o-mini", "auto"]
    )

    assert key.startswith(f"fgk-{record.id}-") and len(key) == credential.KEY_LENGTH
    verified = store.verify(key)
    assert verified == record
    assert (verified.team, verified.name, verified.budget_usd, verified.budget_period) == (
        "search",
        "prod",
        Decimal("12.50"),
        "day",
    )
    assert verified.models == ("gpt-4o-mini", "auto")
    budget = verified.budget()
    assert budget is not None
    assert (budget.scope, budget.name, budget.period, budget.limit_usd) == (
        "key",
        record.id,
        "day",
        Decimal("12.50"),
    )


def test_wrong_secrets_and_malformed_keys_do_not_verify(store: KeyStore) -> None:
    key, record = store.create("search")
    other_key, _ = store.create("search")

    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None  # one character off
    assert store.verify(f"fgk-{record.id}-{other_key.split('-', 2)[2]}") is None  # another key's secret
    assert store.verify("fgk-000000000000-" + "x" * 43) is None  # unknown id
    assert store.verify("sk-not-a-faregate-key") is None
    assert store.verify("") is None


def test_the_database_holds_salted_hashes_never_the_secret(store: KeyStore, database: str) -> None:
    keys = [store.create("search")[0] for _ in range(3)]
    records = store.list()

    rows = raw_rows(database)
    dump = repr(rows)
    for key in keys:
        secret = key.split("-", 2)[2]
        assert secret not in dump and key not in dump
    assert len({r.salt for r in records}) == 3 and len({r.hash for r in records}) == 3
    # The same secret under two salts hashes differently: a leaked table has nothing to match on.
    salts = [credential.new_salt(), credential.new_salt()]
    assert credential.hash_secret(salts[0], "s") != credential.hash_secret(salts[1], "s")


def test_revoked_keys_stop_verifying_and_revoke_is_idempotent(store: KeyStore) -> None:
    key, record = store.create("search")

    revoked = store.revoke(record.id)
    assert revoked is not None and revoked.revoked
    assert store.verify(key) is None
    again = store.revoke(record.id)
    assert again is not None and again.revoked_at == revoked.revoked_at
    assert store.revoke("000000000000") is None


def test_list_filters_by_team_and_a_second_store_sees_the_same_keys(
    open_store: Callable[[], KeyStore],
) -> None:
    first, second = open_store(), open_store()  # two replicas on one database
    key, _ = first.create("search")
    first.create("ads")

    assert [r.team for r in second.list()] == ["search", "ads"]
    assert [r.team for r in second.list("ads")] == ["ads"]
    assert second.verify(key) is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget_usd": "-1"}, "positive"),
        ({"budget_usd": "ten"}, "US dollars"),
        ({"budget_usd": "NaN"}, "positive"),
        ({"budget_period": "week"}, "day or month"),
        ({"models": [" ", ""]}, "at least one model"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(
    store: KeyStore, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        store.create("search", **kwargs)
    with pytest.raises(ValueError, match="team"):
        store.create("  ")
    assert store.list() == []


def test_parse_accepts_only_the_key_format() -> None:
    key, parts = credential.generate()
    assert credential.parse(key) == parts
    assert credential.parse(key + "x") is None
    assert credential.parse("fgk-ZZZZZZZZZZZZ-" + "a" * 43) is None
    assert credential.parse("xxx-" + key[4:]) is None
