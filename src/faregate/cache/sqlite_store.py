"""The embedded cache store: entries in SQLite (WAL), their vectors also in an in-process ScopedIndex.

SQLite is the truth and the index a per-process copy of it, so a restarted gateway keeps its cache:
a scope's vectors are loaded on its first search, not at start-up (most scopes are never searched
again). The copy follows this process's own writes directly. Writes by another process sharing the
file (`faregate cache clear` from the CLI, a second gateway) are picked up too: every candidate the
index returns is re-read from SQLite, so a deleted or expired entry never answers, and new rows are
found by a monotonic `seq` column whenever `PRAGMA data_version` says someone else committed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from faregate.cache import store as sql
from faregate.cache.entry import CacheEntry, Vector
from faregate.cache.index import ScopedIndex
from faregate.sqlite_transaction import connect, immediate_transaction

_S = sql.statements("?")
_IN_CHUNK = 500  # ids per `WHERE id IN (...)`: far below SQLite's variable limit

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "m001_create_cache_entries",
        [
            # id is the rowid (random 63-bit, unique across replicas); seq orders inserts, so another
            # process's new rows are one index range away.
            """
            CREATE TABLE cache_entries (
                id INTEGER PRIMARY KEY,
                seq INTEGER NOT NULL,
                scope TEXT NOT NULL,
                exact_key TEXT NOT NULL,
                tenant TEXT NOT NULL,
                feature TEXT NOT NULL,
                template TEXT NOT NULL,
                query TEXT NOT NULL,
                answer_protocol TEXT NOT NULL,
                answer_model TEXT NOT NULL,
                answer_text TEXT NOT NULL,
                stop_reason TEXT NOT NULL,
                input_tokens INTEGER NOT NULL,
                output_tokens INTEGER NOT NULL,
                cost_nusd INTEGER NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                last_used_at REAL NOT NULL,
                hits INTEGER NOT NULL,
                embedding BLOB
            )
            """,
            "CREATE UNIQUE INDEX cache_entries_seq ON cache_entries (seq)",
            "CREATE INDEX cache_entries_scope_key ON cache_entries (scope, exact_key)",
            "CREATE INDEX cache_entries_feature_lru ON cache_entries (feature, last_used_at, created_at)",
            "CREATE INDEX cache_entries_expires ON cache_entries (expires_at)",
        ],
    ),
    ("m002_create_cache_thresholds", [sql.thresholds_table("REAL")]),
]
_RAISE_TIGHTENING = sql.raise_tightening_sql("?", "max")

_INSERT = (
    f"INSERT INTO cache_entries ({sql.COLUMNS}, embedding, seq) "
    f"VALUES ({', '.join(['?'] * 19)}, (SELECT coalesce(max(seq), 0) + 1 FROM cache_entries)) "
    "ON CONFLICT (id) DO NOTHING"
)


class SqliteCacheStore(sql.Invalidation):
    """One connection and one lock, like the ledger's store; the index has its own lock inside.

    `max_loaded_scopes` bounds how many scopes keep vectors (or an empty marker) in memory: scopes
    include a hash of the preceding turns, so there can be one per conversation. The least recently
    searched scope is forgotten first and reloaded from SQLite if it is searched again.
    """

    _statements = _S

    def __init__(
        self,
        path: str | Path,
        *,
        dim: int = 384,
        hnsw_from: int = 4096,
        max_loaded_scopes: int = 100_000,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = Path(path)
        self.dim = dim
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._index = ScopedIndex(dim, hnsw_from)
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self._max_loaded = max_loaded_scopes
        self._conn = connect(self.path, busy_timeout_ms)
        try:
            with self._transaction():
                sql.migrate(self._execute, "?", "REAL", MIGRATIONS)
            self._seq = int(
                self._conn.execute("SELECT coalesce(max(seq), 0) FROM cache_entries").fetchone()[0]
            )
            self._data_version = self._version()
        except BaseException:
            self._conn.close()
            self._index.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteCacheStore({str(self.path)!r})"

    def put(self, entry: CacheEntry, max_entries: int | None = None) -> None:
        blob = None if entry.embedding is None else self._blob(entry.embedding)
        if max_entries is not None:
            sql.check_max_entries(max_entries)
        with self._lock:
            with self._transaction():
                inserted = self._conn.execute(_INSERT, (*sql.entry_params(entry), blob)).rowcount == 1
                gone = [] if max_entries is None else self._execute(_S.evict, (entry.feature, max_entries))
            # The index follows only after COMMIT, so a rolled-back insert never answers.
            if inserted and entry.embedding is not None and entry.scope in self._loaded:
                self._index.add(entry.scope, entry.id, entry.embedding)
            self._forget(gone)

    def get_exact(self, scope: str, exact_key: str, now: float) -> CacheEntry | None:
        with self._lock:
            row = self._conn.execute(_S.get_exact, (scope, exact_key, now)).fetchone()
        return None if row is None else self._entry(row)

    def search(self, scope: str, vector: Vector, k: int, now: float) -> list[tuple[CacheEntry, float]]:
        sql.check_k(k)
        if k == 0:
            return []
        with self._lock:
            self._catch_up()
            self._load(scope)
            # Ask the index for a few more than k: expired entries stay in it until purged, and
            # each candidate is confirmed against SQLite. Widen until k survive or the scope is spent.
            want = k + 4
            while True:
                hits = self._index.search(scope, vector, want)
                rows = self._rows([key for key, _ in hits])
                found: list[tuple[CacheEntry, float]] = []
                for key, score in hits:
                    row = rows.get(key)
                    if row is None:  # deleted by another process
                        self._index.remove(scope, key)
                    elif (entry := self._entry(row)).expires_at > now:
                        found.append((entry, score))
                if len(found) >= k or len(hits) < want:
                    return found[:k]
                want *= 4

    def touch(self, entry_id: int, now: float) -> None:
        with self._lock, self._transaction():
            self._conn.execute(_S.touch, (now, entry_id))

    def stats(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(_S.stats).fetchall()
        return sql.stats_rows(rows)

    def tightenings(self) -> dict[str, float]:
        with self._lock:
            return {str(f): float(t) for f, t in self._conn.execute(sql.TIGHTENINGS).fetchall()}

    def raise_tightening(self, feature: str, tightened: float, now: float) -> None:
        with self._lock, self._transaction():
            self._conn.execute(_RAISE_TIGHTENING, (feature, tightened, now))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        self._index.close()

    @property
    def index(self) -> ScopedIndex:
        """The in-memory copy (benchmarks and tests look at it; nothing should write to it)."""
        return self._index

    def _delete(self, statement: str, params: Sequence[Any]) -> int:
        with self._lock:
            with self._transaction():
                gone = self._execute(statement, params)
            self._forget(gone)
        return len(gone)

    def _forget(self, gone: Sequence[tuple[Any, ...]]) -> None:
        for entry_id, scope in gone:
            if scope in self._loaded:
                self._index.remove(scope, int(entry_id))

    def _load(self, scope: str) -> None:
        """Copy a scope's vectors into the index on its first search (lock held)."""
        if scope in self._loaded:
            self._loaded.move_to_end(scope)
            return
        # Expired rows too: `now` is the caller's clock, not ours, and purge removes them anyway.
        rows = self._conn.execute(
            "SELECT id, embedding FROM cache_entries WHERE scope = ? AND embedding IS NOT NULL", (scope,)
        ).fetchall()
        if rows:
            vectors = np.frombuffer(b"".join(self._check_blob(blob) for _, blob in rows), dtype="<f4")
            self._index.add_many(scope, [int(i) for i, _ in rows], vectors.reshape(len(rows), self.dim))
        self._loaded[scope] = None
        if len(self._loaded) > self._max_loaded:
            oldest, _ = self._loaded.popitem(last=False)
            self._index.drop_scope(oldest)

    def _catch_up(self) -> None:
        """Index rows other connections inserted into loaded scopes since we last looked (lock held)."""
        version = self._version()
        if version == self._data_version:
            return
        self._data_version = version
        # Our own rows since the last catch-up come back too; adding a key again is harmless.
        rows = self._conn.execute(
            "SELECT seq, id, scope, embedding FROM cache_entries WHERE seq > ? ORDER BY seq", (self._seq,)
        ).fetchall()
        for seq, entry_id, scope, blob in rows:
            self._seq = max(self._seq, int(seq))
            if blob is not None and scope in self._loaded:
                self._index.add(scope, int(entry_id), np.frombuffer(self._check_blob(blob), dtype="<f4"))

    def _rows(self, ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
        out: dict[int, tuple[Any, ...]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            for row in self._conn.execute(_S.by_ids(len(chunk)), chunk):
                out[int(row[0])] = row
        return out

    def _entry(self, row: Sequence[Any]) -> CacheEntry:
        blob = row[-1]
        vec = None if blob is None else np.frombuffer(self._check_blob(blob), dtype="<f4").astype(np.float32)
        return sql.row_to_entry(row, vec)

    def _blob(self, vector: Vector) -> bytes:
        v = np.asarray(vector, dtype="<f4")
        if v.shape != (self.dim,):
            raise ValueError(f"expected an embedding of shape ({self.dim},), got {v.shape}")
        return v.tobytes()

    def _check_blob(self, blob: bytes) -> bytes:
        if len(blob) != 4 * self.dim:
            raise ValueError(
                f"a stored embedding has {len(blob) // 4} dimensions, this store expects {self.dim}"
            )
        return blob

    def _version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _execute(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._conn.execute(statement, params).fetchall()

    def _transaction(self) -> AbstractContextManager[None]:
        return immediate_transaction(self._conn)
