"""Where conversation history state lives: the store protocol, the SQL both backends share, and
`open_history_store`.

The `retrieve` policy needs an embedding per earlier exchange of a conversation and the `summary`
policy one summary per conversation; both are derived data the gateway can always rebuild from the
request (the client sends the whole conversation every time), so losing rows costs re-embedding or
re-summarising, never a wrong answer. Three tables:

- `history_conversations`: one row per conversation (scope, tenant, feature, last_used_at): what
  `purge` ages out, and the row every write upserts first, which orders concurrent writers.
- `history_turns`: (scope, digest) -> embedding. The digest is the exchange's 32-hex digest; the
  embedding a float32 BLOB on SQLite, a pgvector `vector(dim)` on PostgreSQL. **No prompt text**:
  only digests and vectors (a vector is not the text, but it is derived from it: purge and clear
  delete them with the rest).
- `history_summaries`: scope -> the latest summary. **This holds text derived from the prompts** (it
  has to: it is sent upstream in place of the turns it covers). `clear(tenant=...)` and `purge`
  delete it; nothing else reads it.

Every row is keyed by `ConversationKey.scope`, a hash of tenant, feature and conversation id, so a
lookup can only ever reach its own tenant's rows; tenant and feature are also stored as plain
columns for `clear` and `stats`. The migrations are recorded in `_faregate_history_migrations`, apart
from the ledger's and the cache's, and no table name collides with theirs: the three can share one
SQLite file or one PostgreSQL database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from faregate.database_url import sqlite_path

__all__ = ["ConversationKey", "HistoryStore", "Summary", "Vector", "open_history_store"]

Vector = npt.NDArray[np.float32]  # one embedding, shape (dim,), L2-normalised by the embedder

MIGRATIONS_TABLE = "_faregate_history_migrations"
_SCOPE_PERSON = b"fg-history/1"  # BLAKE2b personalisation: no collision with any other hash of ours


@dataclass(slots=True, frozen=True)
class ConversationKey:
    """Who owns a conversation: its tenant (team or key), its feature and the client's conversation id."""

    tenant: str
    feature: str
    conversation: str

    @property
    def scope(self) -> str:
        """32 hex digits of BLAKE2b over the three, each prefixed by its length (unambiguous:
        ("a|b", "c") and ("a", "b|c") differ); every row is keyed by it."""
        h = hashlib.blake2b(digest_size=16, person=_SCOPE_PERSON)
        for part in (self.tenant, self.feature, self.conversation):
            data = part.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)
        return h.hexdigest()


@dataclass(slots=True, frozen=True)
class Summary:
    """A summary of a conversation's first `covered` exchanges.

    `covered_digest` is a digest over those exchanges' digests: a client that edited or rewrote an
    early turn no longer matches it, so it never gets a stale summary.
    """

    covered: int
    covered_digest: str
    text: str
    model: str
    tokens: int
    created_at: float


class HistoryStore(Protocol):
    """History persistence. Calls are synchronous and thread-safe: the history stage runs them in a
    worker thread. Vectors returned may be read-only arrays (the SQLite store shares them with its
    in-process copy); copy before writing to one."""

    def vectors(self, key: ConversationKey, digests: Sequence[str]) -> dict[str, Vector]:
        """The stored embeddings among `digests` for this conversation (absent digests are left out)."""

    def put_vectors(self, key: ConversationKey, items: Sequence[tuple[str, Vector]], now: float) -> None:
        """Store (digest, embedding) pairs; a digest already stored keeps its first vector (the
        embedding of an exchange is a function of its text). Marks the conversation used at `now`,
        also when `items` is empty. ValueError for a vector not of shape (dim,) or not finite."""

    def nearest(
        self, key: ConversationKey, vector: Vector, digests: Sequence[str], k: int
    ) -> list[tuple[str, float]]:
        """Among this conversation's stored rows whose digest is in `digests`, the k with the highest
        cosine similarity to `vector`, as (digest, cosine), best first; ties by digest."""

    def summary(self, key: ConversationKey) -> Summary | None: ...

    def put_summary(
        self, key: ConversationKey, summary: Summary, now: float, *, replaces: str | None = None
    ) -> None:
        """Replace the conversation's summary, unless the stored one covers more exchanges (two
        replicas racing: the longer summary wins) and is not the stale one the caller names by its
        `covered_digest` in `replaces` (a client that edited or cut its early turns: the shorter
        summary of the turns it really sends must win, or every request would summarise again).
        Marks the conversation used at `now`."""

    def purge(self, idle_before: float, feature: str | None = None) -> int:
        """Delete conversations (of `feature`, or of every feature) last used before `idle_before`;
        returns the turn and summary rows deleted."""

    def clear(self, *, tenant: str | None = None, feature: str | None = None) -> int:
        """Delete what matches every filter given (none: everything); returns the turn and summary
        rows deleted."""

    def stats(self) -> list[dict[str, Any]]:
        """Per feature, sorted: {"feature", "conversations", "turns", "summaries"}."""

    def close(self) -> None: ...


def open_history_store(url: str, dim: int = 384) -> HistoryStore:
    """Open (and migrate) the history store a config's `database` value names.

    The same URL forms as `faregate.cache.store.open_cache_store`: `sqlite:///relative.db`,
    `sqlite:////absolute.db`, a bare path, `postgresql://...` or `postgres://...`.
    """
    # Backends are imported on demand so an embedded install never loads libpq.
    path = sqlite_path(url, "history")
    if path is not None:
        from faregate.history.sqlite_store import SqliteHistoryStore

        return SqliteHistoryStore(path, dim=dim)
    from faregate.history.postgres_store import PostgresHistoryStore

    return PostgresHistoryStore(url, dim=dim)


# --- shared by both backends --------------------------------------------------------------------

SUMMARY_COLUMNS = "covered, covered_digest, text, model, tokens, created_at"


@dataclass(frozen=True, slots=True)
class Statements:
    """The SQL that reads the same on both backends, given the parameter placeholder."""

    touch: str
    get_summary: str
    put_summary: str
    stats: str
    clear: Callable[[str, Sequence[str]], str]


def statements(p: str, greatest: str) -> Statements:
    """`p` is `?` (sqlite3) or `%s` (psycopg); `greatest` is `max` (SQLite) or `greatest`."""
    return Statements(
        # A conversation is used at the latest time any replica says (clocks may disagree a little).
        touch=(
            "INSERT INTO history_conversations (scope, tenant, feature, last_used_at) "
            f"VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (scope) DO UPDATE SET "
            f"last_used_at = {greatest}(history_conversations.last_used_at, excluded.last_used_at)"
        ),
        get_summary=f"SELECT {SUMMARY_COLUMNS} FROM history_summaries WHERE scope = {p}",
        # Equal coverage replaces (a client that rewrote early turns gets a new digest); less does not,
        # unless the caller names the stored summary's digest as the stale one it replaces.
        put_summary=(
            f"INSERT INTO history_summaries (scope, tenant, feature, {SUMMARY_COLUMNS}) "
            f"VALUES ({', '.join([p] * 9)}) ON CONFLICT (scope) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in SUMMARY_COLUMNS.split(", "))
            + " WHERE excluded.covered >= history_summaries.covered"
            + f" OR history_summaries.covered_digest = {p}"
        ),
        stats=(
            "SELECT feature, sum(c), sum(t), sum(s) FROM ("
            "SELECT feature, count(*) AS c, 0 AS t, 0 AS s FROM history_conversations GROUP BY feature "
            "UNION ALL SELECT feature, 0, count(*), 0 FROM history_turns GROUP BY feature "
            "UNION ALL SELECT feature, 0, 0, count(*) FROM history_summaries GROUP BY feature"
            ") AS per_table GROUP BY feature ORDER BY feature"
        ),
        clear=lambda table, cols: (
            f"DELETE FROM {table}" + (" WHERE " + " AND ".join(f"{c} = {p}" for c in cols) if cols else "")
        ),
    )


# The order every write and delete touches the tables in: the conversation row first (on PostgreSQL
# its row lock queues a writer behind a purge or clear of the same conversation), then the rest.
CLEAR_ORDER = ("history_conversations", "history_turns", "history_summaries")


def clear_filters(tenant: str | None, feature: str | None) -> tuple[list[str], list[str]]:
    """The columns and values `clear` filters on (column names are fixed here, never from input)."""
    given = [(c, v) for c, v in (("tenant", tenant), ("feature", feature)) if v is not None]
    return [c for c, _ in given], [v for _, v in given]


def touch_params(key: ConversationKey, scope: str, now: float) -> tuple[Any, ...]:
    return (scope, key.tenant, key.feature, now)


def summary_params(key: ConversationKey, scope: str, s: Summary, replaces: str | None) -> tuple[Any, ...]:
    check_summary(s)
    return (
        scope,
        key.tenant,
        key.feature,
        s.covered,
        s.covered_digest,
        s.text,
        s.model,
        s.tokens,
        s.created_at,
        replaces,
    )


def row_to_summary(row: Sequence[Any]) -> Summary:
    covered, covered_digest, text, model, tokens, created_at = row
    return Summary(int(covered), covered_digest, text, model, int(tokens), float(created_at))


def stats_rows(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [
        {"feature": feature, "conversations": int(c), "turns": int(t), "summaries": int(s)}
        for feature, c, t, s in rows
    ]


def check_vector(vector: Vector, dim: int) -> Vector:
    """The vector as float32 of shape (dim,), or ValueError (pgvector refuses NaN and infinities;
    refusing them here too keeps both backends alike)."""
    v: Vector = np.asarray(vector, dtype=np.float32)
    if v.shape != (dim,):
        raise ValueError(f"expected an embedding of shape ({dim},), got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("an embedding must be finite (no NaN or infinity)")
    return v


def check_k(k: int) -> None:
    if k < 0:
        raise ValueError("k must be >= 0")


def check_summary(s: Summary) -> None:
    if s.covered < 0 or s.tokens < 0:
        raise ValueError("a summary's covered and tokens must be >= 0")
