"""A corpus's input set: its head version's inputs, plus staged ingests, minus staged removals.

Sets are numpy record arrays sorted by row id (``versions.manifest.RECORD_DTYPE``), so union and
difference are vectorized sorts and merges, never Python loops over rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq

from ..hashing import ID_DTYPE, distinct_sorted, id_prefixes, sort_ids
from ..segments import ids_column_to_numpy
from ..versions.manifest import RECORD_DTYPE, empty_records

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.journal import State


def union_keep_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sorted union of record arrays by id; an id in both keeps ``a``'s record. ``b`` need not be
    sorted and is consumed (the caller must not use it afterwards)."""
    if len(b) == 0:
        return a
    b = take_sorted(b)
    keep = np.ones(len(b), dtype=bool)
    keep[1:] = b["id"][1:] != b["id"][:-1]
    if not keep.all():
        b = b[keep]
    del keep
    if len(a) == 0:
        return b
    # both sorted: b's rows whose ids a lacks go in by one merge (positions from searchsorted)
    b = difference(b, a["id"], distinct=True)
    if len(b) == 0:
        return a
    a_prefix, b_prefix = np.ascontiguousarray(id_prefixes(a["id"])), id_prefixes(b["id"])
    at = np.searchsorted(a_prefix, b_prefix, side="left")
    # equal prefixes with different ids: step past a's smaller ids within the tie (rare for digests)
    tied = np.flatnonzero((at < len(a)) & (a_prefix[np.minimum(at, len(a) - 1)] == b_prefix))
    del a_prefix
    for j in tied.tolist():
        while at[j] < len(a) and a["id"][at[j]] < b["id"][j]:
            at[j] += 1
    return np.insert(a, at, b)


def take_sorted(records: np.ndarray) -> np.ndarray:
    """The records sorted by id (stable), reordered in place one field at a time (at most one field's
    copy, 32 bytes a row, besides the array, instead of a second whole array of 48)."""
    order = sort_ids(records["id"])
    if len(order) and bool(np.all(order[1:] > order[:-1])):
        return records
    assert records.dtype.names is not None  # a structured array: its "id" field was read above
    for name in records.dtype.names:
        records[name] = records[name][order]
    return records


def difference(a: np.ndarray, ids: np.ndarray, distinct: bool = False) -> np.ndarray:
    """Records of ``a`` (sorted by id) whose id is not in ``ids`` (``distinct``: already sorted
    and without repeats); memory: 8 bytes a row of ``a`` and of ``ids``, plus what is kept."""
    if len(ids) == 0 or len(a) == 0:
        return a
    drop = ids if distinct else distinct_sorted(ids)
    prefix, drop_prefix = np.ascontiguousarray(id_prefixes(a["id"])), id_prefixes(drop)
    lo = np.searchsorted(prefix, drop_prefix, side="left")
    hi = np.searchsorted(prefix, drop_prefix, side="right")
    del prefix
    hit = np.zeros(len(a), dtype=bool)
    one = np.flatnonzero(hi - lo == 1)
    at = lo[one]
    hit[at[a["id"][at] == drop[one]]] = True  # several drop ids may share a row's prefix: set, never reset
    for j in np.flatnonzero(hi - lo > 1).tolist():  # ids sharing an 8-byte prefix: compare in full
        span = np.arange(lo[j], hi[j])
        hit[span[a["id"][span] == drop[j]]] = True
    if not hit.any():
        return a
    return a[~hit]


def segment_records(store: Store, seg: int, out: np.ndarray) -> None:
    """Write all rows of a segment as records (weight 1.0), in segment order, into ``out`` (a slice
    of a larger array, so segments are gathered without a concatenation)."""
    ids = store.segment_column(seg, "row_id")
    out["id"] = ids
    out["w"] = 1.0
    out["seg"] = seg
    out["row"] = np.arange(len(ids), dtype=np.uint32)


def read_id_table(store: Store, digest: str | None, column: str = "row_id") -> np.ndarray:
    if not digest:
        return np.empty(0, dtype=ID_DTYPE)
    table = pq.read_table(store.backend.object_path(digest), columns=[column])
    return ids_column_to_numpy(table.column(column)).copy()


def apply_entry(store: Store, current: np.ndarray, entry: dict[str, Any]) -> np.ndarray:
    """The input set after one staged journal entry."""
    kind = entry["kind"]
    if kind == "ingest":
        current = difference(current, read_id_table(store, entry.get("drops")))
        if entry["segments"]:  # one union (one sort) per ingest, however many segments it wrote
            sizes = [int(store.state.segments[s["seg"]].rows) for s in entry["segments"]]
            added = np.empty(sum(sizes), dtype=RECORD_DTYPE)
            for s, hi, n in zip(entry["segments"], np.cumsum(sizes).tolist(), sizes):
                segment_records(store, s["seg"], added[hi - n : hi])
            current = union_keep_first(current, added)
            del added
    elif kind in ("remove", "optout"):
        current = difference(current, read_id_table(store, entry.get("drops")))
    return current


def current_inputs(store: Store, state: State, corpus: str) -> np.ndarray:
    head = state.heads.get(corpus)
    current = store.version_inputs(head) if head else empty_records()
    for entry in state.staged_for(corpus).entries:
        current = apply_entry(store, current, entry)
    return current
