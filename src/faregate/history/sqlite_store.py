"""The embedded history store: SQLite (WAL) as the truth, an LRU of conversations' vectors in front.

The history stage reads every stored vector of a conversation on each of its requests, so the
vectors of recently used conversations are kept in process (`max_cached_vectors`, ~1.5 KiB each at
384 dimensions): a lookup is then a few dict reads and a small matrix product, no SQL. A
conversation not in the LRU is loaded with one indexed query on first use.

The copy must not go stale when another connection writes to the file: a second gateway, the CLI,
or the ledger and the cache (which may share the file). `PRAGMA data_version` says when anyone else
committed anything; only then does a lookup look further, and cheaply:

- rows are inserted in `seq` order (the rowid: one more than the largest, and inserts are serialised
  by SQLite's write lock), so another process's new turns are the rows with `seq` above the last seen;
- every transaction that deletes turns bumps `history_generation`; a new generation drops the whole
  copy (purge and clear are rare), and conversations reload from the file as they are used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from faregate.cache.store import migrate
from faregate.history import store as sql
from faregate.history.store import ConversationKey, Summary, Vector
from faregate.sqlite_transaction import connect, immediate_transaction

_S = sql.statements("?", "max")

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "m001_create_history",
        [
            """
            CREATE TABLE history_conversations (
                scope TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                feature TEXT NOT NULL,
                last_used_at REAL NOT NULL
            )
            """,
            "CREATE INDEX history_conversations_feature ON history_conversations (feature)",
            "CREATE INDEX history_conversations_last_used ON history_conversations (last_used_at)",
            # seq is the rowid: a plain table, since a 1.5 KiB row is too wide for WITHOUT ROWID.
            """
            CREATE TABLE history_turns (
                seq INTEGER PRIMARY KEY,
                scope TEXT NOT NULL,
                digest TEXT NOT NULL,
                tenant TEXT NOT NULL,
                feature TEXT NOT NULL,
                created_at REAL NOT NULL,
                embedding BLOB NOT NULL
            )
            """,
            "CREATE UNIQUE INDEX history_turns_scope_digest ON history_turns (scope, digest)",
            "CREATE INDEX history_turns_feature ON history_turns (feature)",
            """
            CREATE TABLE history_summaries (
                scope TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                feature TEXT NOT NULL,
                covered INTEGER NOT NULL,
                covered_digest TEXT NOT NULL,
                text TEXT NOT NULL,
                model TEXT NOT NULL,
                tokens INTEGER NOT NULL,
                created_at REAL NOT NULL
            )
            """,
            "CREATE INDEX history_summaries_feature ON history_summaries (feature)",
            """
            CREATE TABLE history_generation (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                generation INTEGER NOT NULL
            )
            """,
            "INSERT INTO history_generation (id, generation) VALUES (1, 0)",
        ],
    ),
]

_INSERT = (
    "INSERT INTO history_turns (scope, digest, tenant, feature, created_at, embedding) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, digest) DO NOTHING"
)
_LOAD = "SELECT digest, embedding FROM history_turns WHERE scope = ?"
_NEWER = "SELECT seq, scope, digest, embedding FROM history_turns WHERE seq > ? ORDER BY seq"
_GENERATION = "SELECT generation FROM history_generation WHERE id = 1"
_BUMP = "UPDATE history_generation SET generation = generation + 1 WHERE id = 1 RETURNING generation"
_MAX_SEQ = "SELECT coalesce(max(seq), 0) FROM history_turns"


def _purge(feature: bool) -> tuple[str, str, str]:
    idle = "last_used_at < ?" + (" AND feature = ?" if feature else "")
    conversations = f"SELECT scope FROM history_conversations WHERE {idle}"
    return (
        f"DELETE FROM history_turns WHERE scope IN ({conversations})",
        f"DELETE FROM history_summaries WHERE scope IN ({conversations})",
        f"DELETE FROM history_conversations WHERE {idle}",
    )


_PURGE = {False: _purge(False), True: _purge(True)}


class SqliteHistoryStore:
    """One connection and one lock, like the cache's and the ledger's SQLite stores.

    `max_cached_vectors` bounds the in-process copy (a conversation counts as at least one): the
    least recently used conversation goes first and reloads from SQLite when it is used again.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dim: int = 384,
        max_cached_vectors: int = 65_536,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = Path(path)
        self.dim = dim
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, dict[str, Vector]] = OrderedDict()
        self._cached = 0  # sum over the cache of max(1, len(vectors))
        self._max_cached = max_cached_vectors
        self._conn = connect(self.path, busy_timeout_ms)
        try:
            with self._transaction():
                migrate(self._execute, "?", "REAL", MIGRATIONS, table=sql.MIGRATIONS_TABLE)
            self._data_version = self._version()
            self._generation = int(self._conn.execute(_GENERATION).fetchone()[0])
            self._seq = int(self._conn.execute(_MAX_SEQ).fetchone()[0])
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteHistoryStore({str(self.path)!r})"

    def vectors(self, key: ConversationKey, digests: Sequence[str]) -> dict[str, Vector]:
        scope = key.scope
        with self._lock:
            self._catch_up()
            held = self._load(scope)
            return {d: v for d in digests if (v := held.get(d)) is not None}

    def put_vectors(self, key: ConversationKey, items: Sequence[tuple[str, Vector]], now: float) -> None:
        scope = key.scope
        rows = [(d, self._to_blob(v)) for d, v in items]  # every vector checked before anything is written
        added: list[tuple[int, str, bytes]] = []
        with self._lock:
            with self._transaction():
                # Under the write lock nobody else can commit: catching up now means every row with a
                # seq above ours after this transaction is one we know about.
                self._catch_up()
                self._conn.execute(_S.touch, sql.touch_params(key, scope, now))
                for digest, blob in rows:
                    cur = self._conn.execute(_INSERT, (scope, digest, key.tenant, key.feature, now, blob))
                    if cur.rowcount == 1 and cur.lastrowid is not None:
                        added.append((cur.lastrowid, digest, blob))
            # The copy follows only after COMMIT, so a rolled-back insert is never returned.
            held = self._cache.get(scope)
            for seq, digest, blob in added:
                self._seq = max(self._seq, seq)
                if held is not None:
                    self._add(scope, held, digest, blob)

    def nearest(
        self, key: ConversationKey, vector: Vector, digests: Sequence[str], k: int
    ) -> list[tuple[str, float]]:
        sql.check_k(k)
        q = sql.check_vector(vector, self.dim)
        if k == 0 or not digests:
            return []
        held = self.vectors(key, digests)
        if not held:
            return []
        names = sorted(held)  # ties keep digest order, as ORDER BY distance, digest does on PostgreSQL
        matrix = np.stack([held[d] for d in names])
        norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(q)
        # Cosine, not a bare dot product, so that both backends agree on vectors not quite unit length.
        scores = np.divide(matrix @ q, norms, out=np.zeros(len(names), dtype=np.float32), where=norms > 0)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(names[i], float(scores[i])) for i in order]

    def summary(self, key: ConversationKey) -> Summary | None:
        with self._lock:
            row = self._conn.execute(_S.get_summary, (key.scope,)).fetchone()
        return None if row is None else sql.row_to_summary(row)

    def put_summary(
        self, key: ConversationKey, summary: Summary, now: float, *, replaces: str | None = None
    ) -> None:
        scope = key.scope
        params = sql.summary_params(key, scope, summary, replaces)
        with self._lock, self._transaction():
            self._conn.execute(_S.touch, sql.touch_params(key, scope, now))
            self._conn.execute(_S.put_summary, params)

    def purge(self, idle_before: float, feature: str | None = None) -> int:
        turns, summaries, conversations = _PURGE[feature is not None]
        params = (idle_before,) if feature is None else (idle_before, feature)
        return self._delete([(turns, params), (summaries, params)], conversations, params)

    def clear(self, *, tenant: str | None = None, feature: str | None = None) -> int:
        cols, values = sql.clear_filters(tenant, feature)
        conversations, turns, summaries = (_S.clear(t, cols) for t in sql.CLEAR_ORDER)
        return self._delete([(turns, values), (summaries, values)], conversations, values)

    def stats(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(_S.stats).fetchall()
        return sql.stats_rows(rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._cache.clear()
            self._cached = 0

    @property
    def cached_vectors(self) -> int:
        """How many vectors the in-process copy holds (tests and benchmarks look at it)."""
        return self._cached

    def _delete(
        self, counted: Sequence[tuple[str, Sequence[Any]]], last: str, last_params: Sequence[Any]
    ) -> int:
        """Run the counted DELETEs then `last` in one transaction; a deleted turn bumps the generation."""
        with self._lock:
            with self._transaction():
                counts = [self._conn.execute(stmt, params).rowcount for stmt, params in counted]
                self._conn.execute(last, last_params)
                if counts[0]:
                    generation = int(self._conn.execute(_BUMP).fetchone()[0])
                    reset = (generation, int(self._conn.execute(_MAX_SEQ).fetchone()[0]))
            if counts[0]:
                # Our own commit leaves data_version alone: forget the copy here, as others will.
                self._reset(*reset)
        return sum(counts)

    def _catch_up(self) -> None:
        """Follow other connections' commits (lock held). Cheap when nobody else wrote."""
        version = self._version()
        if version == self._data_version:
            return
        self._data_version = version
        generation = int(self._conn.execute(_GENERATION).fetchone()[0])
        if generation != self._generation:
            self._reset(generation, int(self._conn.execute(_MAX_SEQ).fetchone()[0]))
            return
        # Our own rows since the last catch-up may come back too; adding a digest again is a no-op.
        for seq, scope, digest, blob in self._conn.execute(_NEWER, (self._seq,)):
            self._seq = max(self._seq, int(seq))
            held = self._cache.get(scope)
            if held is not None:
                self._add(scope, held, digest, blob)

    def _reset(self, generation: int, seq: int) -> None:
        self._cache.clear()
        self._cached = 0
        self._generation = generation
        self._seq = seq

    def _load(self, scope: str) -> dict[str, Vector]:
        """The conversation's vectors, from the copy or else from SQLite (lock held)."""
        held = self._cache.get(scope)
        if held is not None:
            self._cache.move_to_end(scope)
            return held
        held = {digest: self._from_blob(blob) for digest, blob in self._conn.execute(_LOAD, (scope,))}
        self._cache[scope] = held
        self._cached += max(1, len(held))
        while self._cached > self._max_cached and len(self._cache) > 1:
            _, gone = self._cache.popitem(last=False)
            self._cached -= max(1, len(gone))
        return held

    def _add(self, scope: str, held: dict[str, Vector], digest: str, blob: bytes) -> None:
        if digest not in held:
            if held:
                self._cached += 1
            held[digest] = self._from_blob(blob)

    def _to_blob(self, vector: Vector) -> bytes:
        return sql.check_vector(vector, self.dim).astype("<f4", copy=False).tobytes()

    def _from_blob(self, blob: bytes) -> Vector:
        if len(blob) != 4 * self.dim:
            raise ValueError(
                f"a stored embedding has {len(blob) / 4:g} dimensions, this store expects {self.dim}"
            )
        # Read-only (a view of the immutable bytes): a caller cannot change the shared copy.
        v: Vector = np.frombuffer(blob, dtype="<f4").astype(np.float32, copy=False)
        return v

    def _version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _execute(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._conn.execute(statement, params).fetchall()

    def _transaction(self) -> AbstractContextManager[None]:
        return immediate_transaction(self._conn)
