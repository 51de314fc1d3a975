"""A corpus's input set: its head version's inputs, plus staged ingests, minus staged removals.

Sets are numpy record arrays sorted by row id (``versions.manifest.RECORD_DTYPE``), so union and
difference are vectorized sorts and merges, never Python loops over rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq

from ..hashing import ID_DTYPE, sort_ids
from ..segments import ids_column_to_numpy
from ..versions.manifest import RECORD_DTYPE, empty_records

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.journal import State


def union_keep_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sorted union of record arrays by id; an id in both keeps ``a``'s record."""
    if len(b) == 0:
        return a
    if len(a) == 0:
        both = b
    else:
        both = np.concatenate([a, b])
    order = sort_ids(both["id"])
    both = both[order]
    ids = both["id"]
    keep = np.ones(len(both), dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    return both[keep]


def difference(a: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Records of ``a`` whose id is not in ``ids``."""
    if len(ids) == 0 or len(a) == 0:
        return a
    return a[~np.isin(a["id"], ids)]


def segment_records(store: Store, seg: int) -> np.ndarray:
    """All rows of a segment as records (weight 1.0), in segment order."""
    segment = store.state.segments[seg]
    ids = store.segment_column(segment.seg, "row_id")
    rec = np.empty(len(ids), dtype=RECORD_DTYPE)
    rec["id"] = ids
    rec["w"] = 1.0
    rec["seg"] = seg
    rec["row"] = np.arange(len(ids), dtype=np.uint32)
    return rec


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
        added = [segment_records(store, s["seg"]) for s in entry["segments"]]
        if added:  # one union (one sort) per ingest, however many segments it wrote
            current = union_keep_first(current, np.concatenate(added) if len(added) > 1 else added[0])
    elif kind in ("remove", "optout"):
        current = difference(current, read_id_table(store, entry.get("drops")))
    return current


def current_inputs(store: Store, state: State, corpus: str) -> np.ndarray:
    head = state.heads.get(corpus)
    current = store.version_inputs(head) if head else empty_records()
    for entry in state.staged_for(corpus).entries:
        current = apply_entry(store, current, entry)
    return current
