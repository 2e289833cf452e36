"""The one reading of a `database` URL: a SQLite file on this machine, or a PostgreSQL server.

Every store (ledger, caches, history, budgets, keys) opens the same URL forms, so they are read
here once: `sqlite:///relative.db` and `sqlite:////absolute.db` (three slashes then the path, as in
SQLAlchemy), a bare file path, and `postgresql://...` or `postgres://...`.
"""

from __future__ import annotations

from pathlib import Path


def sqlite_path(url: str, what: str) -> Path | None:
    """The SQLite file `url` names, or None when it names a PostgreSQL server.

    `what` names the store in the error for any other scheme, which echoes only the scheme: the
    rest of a URL may hold a password.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return Path(url).expanduser()
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValueError("a SQLite database URL needs a path: sqlite:///relative.db or sqlite:////abs.db")
        return Path(rest[1:]).expanduser()
    if scheme in ("postgresql", "postgres"):
        return None
    raise ValueError(
        f"unsupported {what} database URL scheme {scheme!r}: use sqlite:///path.db, "
        "a file path, or postgresql://user@host/dbname"
    )
