"""pgvector's `vector` type over psycopg 3 in binary: NumPy float32 vectors in and out.

Binary format: uint16 dimension, uint16 unused, then big-endian float32s. Registered on each pooled
connection by the stores that keep vectors in PostgreSQL (the response cache, the history store),
so neither side formats or parses 384 decimals as text. Subclass `VectorDumper` with the `oid` of
the database's `vector` type (it differs per database: the extension creates it).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg.abc import Buffer
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format

Vector = npt.NDArray[np.float32]


class VectorDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> Buffer:
        v = np.asarray(obj, dtype=">f4")
        return struct.pack(">HH", v.shape[0], 0) + v.tobytes()


class VectorLoader(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> Vector:
        (dim,) = struct.unpack_from(">H", data)
        return np.frombuffer(data, dtype=">f4", count=dim, offset=4).astype(np.float32)


class VectorTextLoader(Loader):
    """For results psycopg fetches as text (`'[0.1,0.2,...]'`)."""

    format = Format.TEXT

    def load(self, data: Buffer) -> Vector:
        text = bytes(data).decode()
        return np.array([float(x) for x in text[1:-1].split(",")], dtype=np.float32)


class VectorAdapters:
    """The adapters for one database's `vector` type, registered on each pooled connection."""

    def __init__(self, oid: int) -> None:
        self.oid = oid
        self.dumper = type("VectorDumper", (VectorDumper,), {"oid": oid})

    def register(self, conn: Any) -> None:
        """A pool's `configure` hook: NumPy arrays go out as vectors, vectors come back as arrays."""
        conn.adapters.register_dumper(np.ndarray, self.dumper)
        conn.adapters.register_loader(self.oid, VectorLoader)
        conn.adapters.register_loader(self.oid, VectorTextLoader)
