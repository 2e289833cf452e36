"""The PostgreSQL plumbing every store shares: its connection pool, and a statement's rows.

The ledger, the response cache, the history store and the budget store each keep a small pool
(one replica needs few connections; the pool replaces connections a failover broke) opened at
construction, so a database that cannot be reached stops the start instead of the first request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

Pool = ConnectionPool[psycopg.Connection[tuple[Any, ...]]]


def open_pool(
    url: str,
    *,
    name: str,
    max_connections: int,
    connect_timeout: float,
    configure: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> Pool:
    """A pool holding one connection at least, opened now (closed again if that fails)."""
    pool: Pool = ConnectionPool(
        url,
        min_size=1,
        max_size=max_connections,
        open=False,
        name=name,
        num_workers=1,
        configure=configure,
    )
    try:
        pool.open(wait=True, timeout=connect_timeout)
    except BaseException:
        pool.close()
        raise
    return pool


def fetch_all(
    conn: psycopg.Connection[tuple[Any, ...]], statement: str, params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """The statement's rows; [] for a statement that returns none (DDL, INSERT without RETURNING)."""
    cur = conn.execute(statement, params)
    return cur.fetchall() if cur.description is not None else []
