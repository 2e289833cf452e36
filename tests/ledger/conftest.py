"""The ledger store on both engines: the contract and rollup tests run each test on SQLite and on
PostgreSQL (modules with a store of their own, e.g. a recording one, define `store` themselves)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faregate.ledger import LedgerStore, open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    url: str = request.getfixturevalue("postgres_db_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[LedgerStore]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()
