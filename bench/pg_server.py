"""A throwaway PostgreSQL (pgserver, with pgvector) for the benchmarks that measure the shared stores."""

from __future__ import annotations

import importlib
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg


@contextmanager
def pgserver_url() -> Iterator[str]:
    """A superuser URL on a server that lives for the block; durability off (it is thrown away)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset.
        pgserver: Any = importlib.import_module("pgserver")
    root = Path(tempfile.mkdtemp(prefix="faregate-bench-pg-"))
    server = pgserver.get_server(root / "data", cleanup_mode="delete")
    try:
        url: str = server.get_uri()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET fsync = off")
            conn.execute("ALTER SYSTEM SET synchronous_commit = off")
            conn.execute("SELECT pg_reload_conf()")
        yield url
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
