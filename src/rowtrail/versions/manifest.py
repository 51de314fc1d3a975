"""Version manifests and the chunked, sorted id lists they point to.

A version's rows are a sorted list of 48-byte records ``(row_id[32], weight: f64 BE, seg: u32 BE,
row: u32 BE)`` — the row id, its weight, and where its provenance and content live (segment number and
row index). The list is cut into chunks by content: a chunk ends after every id whose last four bytes,
read as a big-endian integer, are ≡ 0 mod ``CHUNK_MODULUS``. Boundaries depend only on the ids, so two
versions that share most rows share most chunk objects, and a diff skips chunks with equal digests.
A version's distinct content hashes are chunked the same way (32-byte records).

The chunking never changes the digests in the version content (DESIGN format 6); it only decides how
the same sorted list is stored.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from ..hashing import ID_DTYPE, _next_level, id_bytes, leaf_hashes

if TYPE_CHECKING:
    from ..backends.local import LocalBackend

RECORD_DTYPE = np.dtype([("id", "S32"), ("w", ">f8"), ("seg", ">u4"), ("row", ">u4")])
CHUNK_MODULUS = 1 << 13
CACHE_LEVEL = 13  # manifests keep the Merkle nodes of this level, so a proof hashes ≤ 2^13 leaves


def empty_records() -> np.ndarray:
    return np.empty(0, dtype=RECORD_DTYPE)


def chunk_cuts(ids: np.ndarray) -> np.ndarray:
    """End positions (exclusive) of the content-defined chunks of a sorted id array."""
    if len(ids) == 0:
        return np.empty(0, dtype=np.int64)
    tail = np.ascontiguousarray(ids, dtype=ID_DTYPE).view(">u4").reshape(-1, 8)[:, 7]
    ends = np.flatnonzero((tail % CHUNK_MODULUS) == 0) + 1
    if len(ends) == 0 or ends[-1] != len(ids):
        ends = np.append(ends, len(ids))
    return ends.astype(np.int64)


def write_chunks(backend: LocalBackend, arr: np.ndarray) -> list[list[Any]]:
    """Store a sorted record (or id) array as chunks; returns ``[[digest, count, first_hex, last_hex]…]``."""
    if arr.dtype.names:
        # numpy concatenation yields native byte order; chunks are always written big-endian
        arr = arr.astype(RECORD_DTYPE, copy=False)
    ids = arr["id"] if arr.dtype.names else arr
    out = []
    start = 0
    for end in chunk_cuts(ids):
        part = np.ascontiguousarray(arr[start:end])
        digest = backend.put_bytes(part.tobytes())
        out.append([digest, int(end - start), id_bytes(ids, start).hex(), id_bytes(ids, int(end) - 1).hex()])
        start = int(end)
    return out


class ChunkCache:
    """Loaded chunks by digest (a small LRU: chunks are shared between versions)."""

    def __init__(self, backend: LocalBackend, capacity: int = 512):
        self.backend = backend
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def get(self, digest: str, dtype: np.dtype = RECORD_DTYPE) -> np.ndarray:
        key = (digest, dtype.str)
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        raw = self.backend.read_bytes(digest)
        if len(raw) % dtype.itemsize:
            from ..errors import StoreError

            raise StoreError(f"chunk {digest} has {len(raw)} bytes, not a whole number of records; run 'rowtrail verify'")
        arr = np.frombuffer(raw, dtype=dtype)
        self._items[key] = arr
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return arr

    def load_all(self, chunks: list[list[Any]], dtype: np.dtype = RECORD_DTYPE) -> np.ndarray:
        if not chunks:
            return np.empty(0, dtype=dtype)
        return np.concatenate([self.get(c[0], dtype) for c in chunks])


def find_in_chunks(chunks: list[list[Any]], probe_hex: str) -> int | None:
    """Index of the chunk whose [first, last] range could hold ``probe_hex`` (ids sort as hex does)."""
    lo, hi = 0, len(chunks)
    while lo < hi:
        mid = (lo + hi) // 2
        if chunks[mid][3] < probe_hex:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(chunks) else None


def level_nodes(ids: np.ndarray, level: int = CACHE_LEVEL) -> tuple[str, np.ndarray]:
    """The Merkle root of ``ids`` and the node hashes at ``level`` (each covers 2^level leaves)."""
    if len(ids) == 0:
        from ..hashing import EMPTY_ROOT

        return EMPTY_ROOT.hex(), np.empty(0, dtype=ID_DTYPE)
    cur = leaf_hashes(ids)
    kept = cur if level == 0 else None
    depth = 0
    while len(cur) > 1:
        cur = _next_level(cur)
        depth += 1
        if depth == level:
            kept = cur
    if kept is None:  # the tree is shorter than the cached level: keep its root as the single node
        kept = cur
    return id_bytes(cur, 0).hex(), kept


def levels_over_nodes(nodes: np.ndarray) -> list[np.ndarray]:
    """Levels of the tree above already-hashed nodes (no leaf hashing), nodes first."""
    levels = [nodes]
    while len(levels[-1]) > 1:
        levels.append(_next_level(levels[-1]))
    return levels
