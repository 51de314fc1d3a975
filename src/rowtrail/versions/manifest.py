"""Version manifests and the chunked, sorted id lists they point to.

A version's rows are a sorted list of ``(row_id, weight, seg, row)`` — the row id, its weight, and where
its provenance and content live (segment number and row index). The list is cut into chunks by content:
a chunk ends after every id whose last four bytes, read as a big-endian integer, are ≡ 0 mod
``CHUNK_MODULUS``. Boundaries depend only on the ids, so two versions that share most rows share most
chunk objects, and a diff skips chunks with equal digests. A chunk of n rows is stored column by
column: n 32-byte ids, then n weights (f64 big-endian), n segment numbers and n row indexes (u32
big-endian) — so the ids alone are one contiguous read. A version's distinct content hashes are chunked
the same way (n 32-byte hashes, nothing else).

``nodes`` objects keep the Merkle tree's levels from ``CACHE_LEVEL`` up to the root, concatenated, so an
inclusion proof hashes at most 2^CACHE_LEVEL leaves and reads the rest of its path.

The chunking never changes the digests in the version content (DESIGN format 6); it only decides how
the same sorted list is stored.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from ..hashing import ID_DTYPE, _next_level, id_bytes, leaf_hashes

if TYPE_CHECKING:
    from ..backends.local import LocalBackend
    from ..backends.objectstore import ObjectStoreBackend

RECORD_DTYPE = np.dtype([("id", "S32"), ("w", ">f8"), ("seg", ">u4"), ("row", ">u4")])
CHUNK_MODULUS = 1 << 13
READ_THREADS = 8
CACHE_LEVEL = 10  # manifests keep the Merkle levels from here up, so a proof hashes ≤ 2^10 leaves
HASH_BLOCK = 1 << 20  # rows hashed at a time when building a version's digests (a power of two)


def empty_records() -> np.ndarray:
    return np.empty(0, dtype=RECORD_DTYPE)


def chunk_cuts(ids: np.ndarray) -> np.ndarray:
    """End positions (exclusive) of the content-defined chunks of a sorted id array."""
    if len(ids) == 0:
        return np.empty(0, dtype=np.int64)
    # block by block: ``ids`` is often a field of a record array, whose whole copy would cost 32 B a row
    ends = np.concatenate(
        [
            np.flatnonzero((np.ascontiguousarray(ids[lo : lo + HASH_BLOCK], dtype=ID_DTYPE).view(">u4").reshape(-1, 8)[:, 7] % CHUNK_MODULUS) == 0) + (lo + 1)
            for lo in range(0, len(ids), HASH_BLOCK)
        ]
    )
    if len(ends) == 0 or ends[-1] != len(ids):
        ends = np.append(ends, len(ids))
    return ends.astype(np.int64)


def encode_chunk(arr: np.ndarray) -> bytes:
    """Bytes of a chunk: ids, then (for row records) weights, segments and rows, column by column."""
    if not arr.dtype.names:
        return np.ascontiguousarray(arr, dtype=ID_DTYPE).tobytes()
    return b"".join(
        [
            np.ascontiguousarray(arr["id"], dtype=ID_DTYPE).tobytes(),
            arr["w"].astype(">f8").tobytes(),
            arr["seg"].astype(">u4").tobytes(),
            arr["row"].astype(">u4").tobytes(),
        ]
    )


def decode_chunk(raw: bytes, records: bool = True) -> np.ndarray:
    width = RECORD_DTYPE.itemsize if records else 32
    if len(raw) % width:
        from ..errors import StoreError

        raise StoreError(f"a chunk of {len(raw)} bytes is not a whole number of {width}-byte rows; run 'rowtrail verify'")
    n = len(raw) // width
    if not records:
        return np.frombuffer(raw, dtype=ID_DTYPE, count=n)
    out = np.empty(n, dtype=RECORD_DTYPE)
    out["id"] = np.frombuffer(raw, dtype=ID_DTYPE, count=n)
    out["w"] = np.frombuffer(raw, dtype=">f8", count=n, offset=32 * n)
    out["seg"] = np.frombuffer(raw, dtype=">u4", count=n, offset=40 * n)
    out["row"] = np.frombuffer(raw, dtype=">u4", count=n, offset=44 * n)
    return out


def write_chunks(backend: LocalBackend | ObjectStoreBackend, arr: np.ndarray) -> list[list[Any]]:
    """Store a sorted record (or id) array as chunks; returns ``[[digest, count, first_hex, last_hex]…]``."""
    ids = arr["id"] if arr.dtype.names else arr
    out = []
    start = 0
    for end in chunk_cuts(ids):
        digest = backend.put_bytes(encode_chunk(arr[start:end]))
        out.append([digest, int(end - start), id_bytes(ids, start).hex(), id_bytes(ids, int(end) - 1).hex()])
        start = int(end)
    return out


class ChunkCache:
    """Loaded chunks by digest (a small LRU: chunks are shared between versions)."""

    def __init__(self, backend: LocalBackend, capacity: int = 512):
        self.backend = backend
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, bool], np.ndarray] = OrderedDict()

    def get(self, digest: str, records: bool = True) -> np.ndarray:
        key = (digest, records)
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        arr = decode_chunk(self.backend.read_bytes(digest), records)
        self._items[key] = arr
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return arr

    def ids(self, digest: str, count: int) -> np.ndarray:
        """Just the ids of a chunk (row or content chunk): its first 32·count bytes."""
        with open(self.backend.object_path(digest), "rb") as fh:
            raw = fh.read(32 * count)
        return np.frombuffer(raw, dtype=ID_DTYPE)

    def load_all(self, chunks: list[list[Any]], records: bool = True) -> np.ndarray:
        if not chunks:
            return empty_records() if records else np.empty(0, dtype=ID_DTYPE)
        if len(chunks) <= 4:  # a few chunks (a diff's changed ones): through the cache
            return np.concatenate([self.get(c[0], records) for c in chunks])
        # a whole version: decoded straight into one array (no cache entries, no concatenation)
        out = np.empty(sum(int(c[1]) for c in chunks), dtype=RECORD_DTYPE if records else ID_DTYPE)
        at = 0
        for c in chunks:
            hit = self._items.get((c[0], records))
            arr = hit if hit is not None else decode_chunk(self.backend.read_bytes(c[0]), records)
            if len(arr) != int(c[1]):
                from ..errors import StoreError

                raise StoreError(f"chunk {c[0][:12]} holds {len(arr)} rows, its manifest says {c[1]}; run 'rowtrail verify'")
            out[at : at + len(arr)] = arr
            at += len(arr)
        return out

    def record_at(self, digest: str, count: int, pos: int) -> tuple[float, int, int]:
        """(weight, seg, row) of row ``pos`` of a row chunk, read without loading the chunk."""
        with open(self.backend.object_path(digest), "rb") as fh:
            fh.seek(32 * count + 8 * pos)
            w = np.frombuffer(fh.read(8), dtype=">f8")[0]
            fh.seek(40 * count + 4 * pos)
            seg = np.frombuffer(fh.read(4), dtype=">u4")[0]
            fh.seek(44 * count + 4 * pos)
            row = np.frombuffer(fh.read(4), dtype=">u4")[0]
        return float(w), int(seg), int(row)

    def load_ids(self, chunks: list[list[Any]]) -> np.ndarray:
        """The ids of many chunks, read straight into one array (one copy, no concatenation), by
        several threads at once: reads release the GIL, and a deeper I/O queue reads cold files faster."""
        out = np.empty(sum(c[1] for c in chunks), dtype=ID_DTYPE)
        view = memoryview(out).cast("B")  # type: ignore[arg-type]
        starts = np.concatenate([[0], np.cumsum([32 * c[1] for c in chunks])]).tolist()

        def read(i: int) -> None:
            digest, count = chunks[i][0], chunks[i][1]
            with open(self.backend.object_path(digest), "rb") as fh:
                got = fh.readinto(view[starts[i] : starts[i] + 32 * count])
            if got != 32 * count:
                from ..errors import StoreError

                raise StoreError(f"chunk {digest} is shorter than its manifest says; run 'rowtrail verify'")

        if len(chunks) < 16:
            for i in range(len(chunks)):
                read(i)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
                list(pool.map(read, range(len(chunks))))
        return out


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


def level_sizes(n: int, level: int = CACHE_LEVEL) -> list[int]:
    """Sizes of the stored levels (``level`` up to the root) of a tree over n leaves."""
    if n == 0:
        return [1]
    size = -(-n // (1 << level))
    if n <= (1 << level):
        return [1]
    sizes = [size]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // 2))
    return sizes


def upper_levels(ids: np.ndarray, level: int = CACHE_LEVEL) -> tuple[str, np.ndarray]:
    """The Merkle root of ``ids`` and its levels from ``level`` up to the root, concatenated.

    Leaves are hashed ``HASH_BLOCK`` at a time, each block taken up to ``level`` alone: the tree
    pairs neighbours and promotes a lone last node, so a block whose size is a power of two at least
    2^level yields exactly its share of level ``level`` (only the last block can be short, and its
    lone nodes are the level's own). Memory stays one block's hashes whatever the version's size.
    """
    if len(ids) == 0:
        from ..hashing import EMPTY_ROOT

        return EMPTY_ROOT.hex(), np.frombuffer(EMPTY_ROOT, dtype=ID_DTYPE)
    block = max(HASH_BLOCK, 1 << level)
    if len(ids) > block:
        parts = []
        for start in range(0, len(ids), block):
            part = leaf_hashes(ids[start : start + block])
            for _ in range(level):
                part = _next_level(part)
            parts.append(part)
        cur = np.concatenate(parts)
        kept: list[np.ndarray] = [cur]
        while len(cur) > 1:
            cur = _next_level(cur)
            kept.append(cur)
        return id_bytes(cur, 0).hex(), np.concatenate(kept)
    cur = leaf_hashes(ids)
    depth = 0
    kept = [cur] if level == 0 else []
    while len(cur) > 1:
        cur = _next_level(cur)
        depth += 1
        if depth >= level:
            kept.append(cur)
    if len(ids) <= (1 << level):
        kept = [cur]
    return id_bytes(cur, 0).hex(), np.concatenate(kept)


def weights_digest(ids: np.ndarray, weights: np.ndarray) -> str:
    """``hashing.weights_sha256`` (each id, then its weight as a big-endian double), fed to SHA-256
    ``HASH_BLOCK`` rows at a time instead of through one copy of the whole table."""
    h = hashlib.sha256()
    for start in range(0, len(ids), HASH_BLOCK):
        end = min(start + HASH_BLOCK, len(ids))
        rec = np.empty(end - start, dtype=[("id", "S32"), ("w", ">f8")])
        rec["id"] = ids[start:end]
        rec["w"] = weights[start:end]
        h.update(memoryview(rec).cast("B"))  # type: ignore[arg-type]  # numpy's stubs give ndarray __buffer__ only for Python >= 3.12
    return h.hexdigest()


def split_levels(nodes: np.ndarray, n: int, level: int = CACHE_LEVEL) -> list[np.ndarray]:
    out, at = [], 0
    for size in level_sizes(n, level):
        out.append(nodes[at : at + size])
        at += size
    return out


class MerkleBuilder:
    """``upper_levels`` fed in pieces: ids in order through ``add``, then ``finish`` gives the same root
    and levels. Leaves are hashed ``block`` at a time (default ``HASH_BLOCK``; any power of two) up to
    ``level``, as ``upper_levels`` does, so it holds one block of ids and the level-``level`` nodes
    (N / 2^level hashes), never N leaves."""

    def __init__(self, level: int = CACHE_LEVEL, block: int | None = None):
        self.level = level
        self.block = max(block or HASH_BLOCK, 1 << level)
        if self.block & (self.block - 1):
            raise ValueError(f"a Merkle hashing block must be a power of two, not {self.block}")
        self.count = 0
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._parts: list[np.ndarray] = []

    def add(self, ids: np.ndarray) -> None:
        """The next ids of the sorted list (any number)."""
        self.count += len(ids)
        while len(ids):
            take = min(len(ids), self.block - self._pending_n)
            self._pending.append(ids[:take])
            self._pending_n += take
            ids = ids[take:]
            if self._pending_n == self.block:
                self._flush()

    def _flush(self) -> None:
        block = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending, self._pending_n = [], 0
        part = leaf_hashes(block)
        del block
        for _ in range(self.level):
            part = _next_level(part)
        self._parts.append(part)

    def finish(self) -> tuple[str, np.ndarray]:
        """``upper_levels`` of everything added: the root (hex) and the levels from ``level`` up."""
        if self._pending_n:
            self._flush()
        if self.count == 0:
            from ..hashing import EMPTY_ROOT

            return EMPTY_ROOT.hex(), np.frombuffer(EMPTY_ROOT, dtype=ID_DTYPE)
        cur = self._parts[0] if len(self._parts) == 1 else np.concatenate(self._parts)
        self._parts = []
        kept = [cur]
        while len(cur) > 1:
            cur = _next_level(cur)
            kept.append(cur)
        return id_bytes(cur, 0).hex(), np.concatenate(kept)
