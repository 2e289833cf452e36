"""The in-process vector index: nearest neighbours by cosine, one group of vectors per scope.

A lookup never crosses scopes, so each scope is its own small index. Most scopes are small (one
tenant's prompt template with a few hundred distinct questions): for them a NumPy matmul over a
contiguous matrix is exact and cheaper than any graph (4,096 x 384 floats: ~0.05 ms). Beyond
`hnsw_from` entries a scope moves to a usearch HNSW graph, which answers 100k entries in ~1.5 ms.

HNSW settings, chosen with `bench/cache_index_bench.py` (100k 384-d vectors, half random, half in
tight clusters; queries are stored vectors plus noise, cosine ~0.86, i.e. paraphrases):
connectivity (M) 32, expansion_add (efConstruction) 200, expansion_search (ef) 128 give recall@1
1.000 on both halves. M=16 reached only 0.97 on the random half even at ef=256, and M=32 with
expansion_add 128 0.98 at ef=128: random high-dimensional data needs the denser, better-built graph.
Vectors stay f32 so the score compared with the cache's threshold is the exact dot product.

Memory per entry: exact scopes 1,544 bytes (the f32 row and its uint64 key; capacity doubles, so up
to 2x while growing) plus a dict slot; HNSW scopes ~3,200 bytes measured at 100k (the f32 vector,
2 x 32 base-layer links, upper layers and usearch's arenas). Removed slots are reused by later adds.

Promotion to HNSW builds the graph on a background thread (usearch releases the GIL): building
100k entries takes minutes on a small machine, and a gateway that lazily reloads a big scope after
a restart must keep answering. Until the graph is ready the scope stays exact (and authoritative);
changes made meanwhile are replayed onto the graph before it takes over.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faregate.cache import _native_order  # noqa: F401  (before usearch: see that module)

from usearch.index import Index  # isort: skip

from faregate.cache.entry import Vector

log = logging.getLogger(__name__)

Matrix = npt.NDArray[np.float32]  # one vector a row

HNSW_CONNECTIVITY = 32
HNSW_EXPANSION_ADD = 200
HNSW_EXPANSION_SEARCH = 128
_BUILD_CHUNK = 256  # vectors added per usearch call while building: how often a build notices close()


class _Exact:
    """Rows of a growable matrix; removal moves the last row into the hole, so rows stay dense."""

    __slots__ = ("keys", "matrix", "n", "rows")

    def __init__(self, dim: int) -> None:
        self.matrix: npt.NDArray[np.float32] = np.empty((4, dim), dtype=np.float32)
        self.keys: npt.NDArray[np.uint64] = np.empty(4, dtype=np.uint64)
        self.rows: dict[int, int] = {}
        self.n = 0

    def add(self, key: int, vector: Vector) -> None:
        row = self.rows.get(key)
        if row is None:
            if self.n == len(self.keys):
                self.matrix = np.concatenate([self.matrix, np.empty_like(self.matrix)])
                self.keys = np.concatenate([self.keys, np.empty_like(self.keys)])
            row = self.n
            self.n += 1
            self.rows[key] = row
            self.keys[row] = key
        self.matrix[row] = vector

    def remove(self, key: int) -> bool:
        row = self.rows.pop(key, None)
        if row is None:
            return False
        last = self.n - 1
        if row != last:
            self.matrix[row] = self.matrix[last]
            moved = int(self.keys[last])
            self.keys[row] = moved
            self.rows[moved] = row
        self.n = last
        return True

    def search(self, vector: Vector, k: int) -> list[tuple[int, float]]:
        n = self.n
        if n == 0:
            return []
        scores = self.matrix[:n] @ vector
        top = np.argpartition(scores, n - k)[n - k :] if k < n else np.arange(n)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.keys[i]), float(scores[i])) for i in top]


@dataclass(slots=True)
class _Scope:
    exact: _Exact | None
    hnsw: Index | None = None
    # Keys changed while a background build runs (None when no build runs): replayed onto the graph.
    changed: set[int] | None = None
    size: int = 0


class ScopedIndex:
    """Vectors grouped by scope; exact (NumPy matmul) for small scopes, usearch HNSW beyond `hnsw_from`.

    Thread-safe: one lock guards every scope, since a search takes well under a millisecond and
    the gateway searches from a worker thread while the event loop adds entries. Vectors must be
    L2-normalised, so the dot product is the cosine. Keys are non-negative 64-bit integers.
    """

    def __init__(self, dim: int = 384, hnsw_from: int = 4096, *, background: bool = True) -> None:
        if dim <= 0 or hnsw_from <= 0:
            raise ValueError("dim and hnsw_from must be positive")
        self.dim = dim
        self.hnsw_from = hnsw_from
        self._background = background
        self._scopes: dict[str, _Scope] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._builds_pending = 0
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._closed = False

    def add(self, scope: str, key: int, vector: Vector) -> None:
        """Insert, or replace the vector of a key already in the scope."""
        v = self._check(vector)
        with self._lock:
            self._add(scope, key, v)

    def add_many(self, scope: str, keys: Sequence[int], vectors: Matrix) -> None:
        """Insert a batch (a scope loaded from disk): a scope that outgrows `hnsw_from` promotes once."""
        m = np.ascontiguousarray(vectors, dtype=np.float32)
        if m.shape != (len(keys), self.dim):
            raise ValueError(f"expected vectors of shape ({len(keys)}, {self.dim}), got {m.shape}")
        if not np.isfinite(m).all():
            raise ValueError("vectors have NaN or infinite components")
        with self._lock:
            for i, key in enumerate(keys):
                self._add(scope, key, m[i], promote=False)
            s = self._scopes.get(scope)
            if s is not None:
                self._maybe_promote(scope, s)

    def _add(self, scope: str, key: int, v: Vector, *, promote: bool = True) -> None:
        s = self._scopes.get(scope)
        if s is None:
            s = self._scopes[scope] = _Scope(exact=_Exact(self.dim))
        if s.exact is not None:
            known = key in s.exact.rows
            s.exact.add(key, v)
            if s.changed is not None:
                s.changed.add(key)
        else:
            assert s.hnsw is not None
            known = bool(s.hnsw.contains(key))
            if known:
                s.hnsw.remove(key)
            s.hnsw.add(key, v, threads=1)
        if not known:
            s.size += 1
            self._count += 1
        if promote:
            self._maybe_promote(scope, s)

    def _maybe_promote(self, scope: str, s: _Scope) -> None:
        if s.exact is not None and s.changed is None and s.size >= self.hnsw_from:
            self._promote(scope, s)

    def remove(self, scope: str, key: int) -> None:
        """Forget a key; unknown scopes and keys are ignored. An emptied scope is dropped."""
        with self._lock:
            s = self._scopes.get(scope)
            if s is None:
                return
            if s.exact is not None:
                removed = s.exact.remove(key)
                if s.changed is not None:
                    s.changed.add(key)
            else:
                assert s.hnsw is not None
                removed = bool(s.hnsw.remove(key))
            if removed:
                s.size -= 1
                self._count -= 1
                if s.size == 0:
                    del self._scopes[scope]

    def search(self, scope: str, vector: Vector, k: int = 4) -> list[tuple[int, float]]:
        """The k nearest keys of the scope and their cosine, best first; [] for an unknown scope."""
        v = np.ascontiguousarray(vector, dtype=np.float32)
        if v.shape != (self.dim,):
            raise ValueError(f"expected a vector of shape ({self.dim},), got {v.shape}")
        if k <= 0:
            return []
        with self._lock:
            s = self._scopes.get(scope)
            if s is None:
                return []
            if s.exact is not None:
                return s.exact.search(v, k)
            assert s.hnsw is not None
            matches = s.hnsw.search(v, k, threads=1)
            # Metric "ip" reports 1 - dot; give the caller the cosine back.
            return [
                (int(key), 1.0 - float(d)) for key, d in zip(matches.keys, matches.distances, strict=True)
            ]

    def drop_scope(self, scope: str) -> None:
        with self._lock:
            s = self._scopes.pop(scope, None)
            if s is not None:
                self._count -= s.size

    def scope_size(self, scope: str) -> int:
        with self._lock:
            s = self._scopes.get(scope)
            return 0 if s is None else s.size

    def is_hnsw(self, scope: str) -> bool:
        """Whether the scope is answered by its graph (False while the graph is still building)."""
        with self._lock:
            s = self._scopes.get(scope)
            return s is not None and s.exact is None

    def memory_usage(self) -> int:
        """Bytes held by vectors, keys and graphs (not Python's per-key dict overhead)."""
        with self._lock:
            total = 0
            for s in self._scopes.values():
                if s.exact is not None:
                    total += s.exact.matrix.nbytes + s.exact.keys.nbytes
                if s.hnsw is not None:
                    total += int(s.hnsw.memory_usage)
            return total

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for background graph builds to finish (tests, benchmarks); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._builds_pending == 0, timeout)

    def close(self) -> None:
        """Stop the build thread; builds in progress are abandoned and their scopes stay exact."""
        with self._lock:
            self._closed = True
            worker, self._worker = self._worker, None
        if worker is not None:
            self._queue.put(None)
            worker.join()

    def __len__(self) -> int:
        return self._count

    def _check(self, vector: Vector) -> Vector:
        v = np.ascontiguousarray(vector, dtype=np.float32)
        if v.shape != (self.dim,):
            raise ValueError(f"expected a vector of shape ({self.dim},), got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("vector has NaN or infinite components")
        return v

    def _promote(self, name: str, s: _Scope) -> None:
        """Start building the scope's graph (lock held)."""
        s.changed = set()
        if not self._background:
            self._build(name, s, locked=True)
            return
        if self._closed:
            s.changed = None
            return
        self._builds_pending += 1
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="faregate-hnsw-build", daemon=True)
            self._worker.start()
        self._queue.put(name)

    def _work(self) -> None:
        while (name := self._queue.get()) is not None:
            with self._lock:
                s = self._scopes.get(name)
            try:
                if s is not None and s.changed is not None:
                    self._build(name, s, locked=False)
            except Exception:  # a failed build leaves the scope exact; the next add retries
                log.exception("building the HNSW graph of a cache scope failed")
                with self._lock:
                    if s is not None:
                        s.changed = None
            finally:
                with self._idle:
                    self._builds_pending -= 1
                    self._idle.notify_all()

    def _build(self, name: str, s: _Scope, *, locked: bool) -> None:
        """Build a graph from a snapshot of the exact rows, then replay what changed meanwhile."""
        if locked:
            assert s.exact is not None
            keys, matrix = s.exact.keys[: s.exact.n], s.exact.matrix[: s.exact.n]
        else:
            with self._lock:
                if s.exact is None:
                    return
                keys, matrix = s.exact.keys[: s.exact.n].copy(), s.exact.matrix[: s.exact.n].copy()
        graph = Index(
            ndim=self.dim,
            metric="ip",
            dtype="f32",
            connectivity=HNSW_CONNECTIVITY,
            expansion_add=HNSW_EXPANSION_ADD,
            expansion_search=HNSW_EXPANSION_SEARCH,
        )
        for start in range(0, len(keys), _BUILD_CHUNK):
            if not locked and (self._closed or self._scopes.get(name) is not s):
                with self._lock:
                    s.changed = None
                return  # closing, or the scope was dropped: nobody will read this graph
            stop = start + _BUILD_CHUNK
            graph.add(keys[start:stop], matrix[start:stop], threads=1 if not locked else 0)
        if locked:
            self._swap(name, s, graph)
        else:
            with self._lock:
                self._swap(name, s, graph)

    def _swap(self, name: str, s: _Scope, graph: Index) -> None:
        if self._scopes.get(name) is not s or s.exact is None or s.changed is None:
            return
        for key in s.changed:
            if graph.contains(key):
                graph.remove(key)
            row = s.exact.rows.get(key)
            if row is not None:
                graph.add(key, s.exact.matrix[row], threads=1)
        s.hnsw, s.exact, s.changed = graph, None, None
