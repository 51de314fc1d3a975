"""Row tables: the provenance table and the content table of a segment, and reading rows back.

A segment is a pair of Parquet objects in the same row order:

- provenance: ``row_id`` (32 bytes), ``source_id``, ``source_snapshot``, ``source_key``,
  ``content_sha256`` (32 bytes), ``ingest_id``, ``ingested_at``, ``origin_file``, ``origin_line``,
  declared attributes (``attr.<name>``) and named extra hashes (``<field>_sha256``, 32 bytes);
- content: ``row_id`` and ``content``, the row's content object as RFC 8785 canonical JSON text, so
  SHA-256 of ``content`` is ``content_sha256`` (and a purge can replace it with a tombstone without
  touching any digest provenance depends on).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

ID = pa.binary(32)
ATTR_PREFIX = "attr."
PROVENANCE_BASE = pa.schema(
    [
        ("row_id", ID),
        ("source_id", pa.string()),
        ("source_snapshot", pa.string()),
        ("source_key", pa.string()),
        ("content_sha256", ID),
        ("ingest_id", pa.string()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
        ("origin_file", pa.string()),
        ("origin_line", pa.int64()),
    ]
)
CONTENT_SCHEMA = pa.schema([("row_id", ID), ("content", pa.string())])
# Small row groups keep single-row reads (trace, why, rows of one source) cheap: a lookup reads one
# group. Content rows are large (whole documents), so their groups are smaller still.
ROW_GROUP_ROWS = 4096
CONTENT_ROW_GROUP_ROWS = 1024
# Ids and hashes are random (dictionaries and heavy codecs only cost time on them); snappy is the
# fastest codec that still shrinks text well. Low-cardinality columns get dictionaries.
PARQUET_OPTS: dict[str, Any] = {
    "compression": "snappy",
    "use_dictionary": ["source_id", "source_snapshot", "ingest_id", "origin_file", "reason_code", "reason", "kind"],
}


def ids_column_to_numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed_size_binary(32) column as a numpy 'S32' array (zero-copy where Arrow allows)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:
        raise ValueError("row id column has nulls")
    buf = col.buffers()[1]
    arr = np.frombuffer(buf, dtype="S32", count=len(col) + col.offset)
    return arr[col.offset :]


def numpy_to_ids_column(ids: np.ndarray) -> pa.Array:
    raw = np.ascontiguousarray(ids, dtype="S32")
    return pa.FixedSizeBinaryArray.from_buffers(ID, len(raw), [None, pa.py_buffer(raw.tobytes())])


def hex_column(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """32-byte ids as 64-character lowercase hex strings, vectorized."""
    ids = ids_column_to_numpy(col)
    return hex_array(ids)


# Every byte value's two lowercase hex digits, as one uint16 in memory order: one gather per byte.
_HEX2 = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint16)


def hex_array(ids: np.ndarray) -> pa.Array:
    n = len(ids)
    raw = np.frombuffer(np.ascontiguousarray(ids, dtype="S32").tobytes(), dtype=np.uint8)
    out = _HEX2[raw]
    if n >= 33_000_000:  # pragma: no cover - beyond int32 offsets
        offsets64 = np.arange(0, 64 * (n + 1), 64, dtype=np.int64)
        return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets64), pa.py_buffer(out))
    offsets = np.arange(0, 64 * (n + 1), 64, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))


@lru_cache(maxsize=128)
def parquet_file(path: str) -> pq.ParquetFile:
    """An open Parquet object, kept: objects are immutable, and a footer read costs more than a lookup."""
    return pq.ParquetFile(path)


@lru_cache(maxsize=256)
def _parquet_meta(path: str) -> tuple[int, tuple[int, ...]]:
    md = parquet_file(path).metadata
    starts = [0]
    for i in range(md.num_row_groups):
        starts.append(starts[-1] + md.row_group(i).num_rows)
    return md.num_row_groups, tuple(starts)


def read_rows_at(path: str, rows: np.ndarray, columns: list[str] | None = None) -> pa.Table:
    """Rows at the given positions of a Parquet file, reading only the row groups that hold them."""
    rows = np.asarray(rows, dtype=np.int64)
    n_groups, starts_t = _parquet_meta(path)
    starts = np.array(starts_t, dtype=np.int64)
    if len(rows) == 0:
        return parquet_file(path).schema_arrow.empty_table() if columns is None else pq.read_table(path, columns=columns).slice(0, 0)
    if len(rows) > starts[-1] // 4:
        return pq.read_table(path, columns=columns).take(pa.array(rows))
    groups = np.unique(np.searchsorted(starts, rows, side="right") - 1)
    pf = parquet_file(path)
    table = pf.read_row_groups(list(groups.tolist()), columns=columns)
    base = np.concatenate([[0], np.cumsum([starts[g + 1] - starts[g] for g in groups])])
    gi = np.searchsorted(starts[groups], rows, side="right") - 1
    local = base[gi] + (rows - starts[groups][gi])
    return table.take(pa.array(local))


@lru_cache(maxsize=4096)
def _group_ranges(path: str, column: str) -> tuple[tuple[bytes | None, bytes | None, int], ...]:
    """(min, max, rows) of ``column`` in each row group of an immutable Parquet object."""
    md = parquet_file(path).metadata
    idx = md.schema.to_arrow_schema().get_field_index(column)
    out = []
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        st = rg.column(idx).statistics
        if st is not None and st.has_min_max:
            out.append((st.min, st.max, rg.num_rows))
        else:
            out.append((None, None, rg.num_rows))
    return tuple(out)


def lookup(path: str, column: str, value: bytes) -> pa.Table:
    """Rows of a Parquet object whose ``column`` equals ``value``, reading only the row groups whose
    statistics admit it (objects are immutable, so their statistics are cached)."""
    groups = [g for g, (lo, hi, _) in enumerate(_group_ranges(path, column)) if lo is None or hi is None or lo <= value <= hi]
    if not groups:
        return parquet_file(path).schema_arrow.empty_table()
    table = parquet_file(path).read_row_groups(groups)
    col = table.column(column)
    mask = pa.compute.equal(col, pa.scalar(value, col.type))
    return table.filter(mask)
