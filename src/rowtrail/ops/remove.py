"""Remove: stage the removal of a source's rows, or of given rows, from a corpus.

Removed rows are recorded as drops with a reason; nothing is deleted from the store (the rows stay
in earlier versions, where they can still be traced and proven).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import RefError, RowtrailError
from ..hashing import ids_from_hex
from ..segments import numpy_to_ids_column
from .ingest import _drops, _put_table
from .inputs import current_inputs

if TYPE_CHECKING:
    from ..store import Store


def rows_of_source(store: Store, records: np.ndarray, source: str) -> np.ndarray:
    """Mask over ``records`` of the rows that come from ``source``."""
    mask = np.zeros(len(records), dtype=bool)
    segments = store.state.segments
    for seg in np.unique(records["seg"]) if len(records) else []:
        segment = segments[int(seg)]
        if source not in segment.sources:
            continue
        here = records["seg"] == seg
        if len(segment.sources) == 1:
            mask |= here
        else:
            pos = np.flatnonzero(here)
            codes, values = store.segment_codes(int(seg), "source_id")
            mask[pos[codes[records["row"][pos].astype(np.int64)] == values.index(source)]] = True
    return mask


def remove(store: Store, source: str | None = None, row_ids: Sequence[str] | None = None, reason: str | None = None, corpus: str = "main") -> int:
    if (source is None) == (row_ids is None):
        raise RowtrailError("give exactly one of source= or row_ids=")
    with store._write() as state:
        current = current_inputs(store, state, corpus)
        if source is not None:
            store.sources.get(source, state=state)
            mask = rows_of_source(store, current, source)
            if not mask.any():
                raise RowtrailError(f"source '{source}' has no rows in corpus '{corpus}'; nothing to remove (see 'rowtrail status')")
            code, text = "source-removed", reason or f"source '{source}' removed"
        else:
            try:
                wanted = ids_from_hex([r.strip().lower() for r in row_ids or []])
            except ValueError as exc:
                raise RefError(f"bad row id: {exc}") from None
            mask = np.isin(current["id"], wanted)
            found = int(mask.sum())
            if found != len(np.unique(wanted)):
                missing = np.setdiff1d(wanted, current["id"][mask])
                raise RefError(f"{len(missing)} row id(s) are not in corpus '{corpus}' (first: {missing[:1].tobytes().hex()}); see 'rowtrail trace ROW'")
            code, text = "removed", reason or "removed by request"
        ids = current["id"][mask]
        digest = _put_table(store, _drops(numpy_to_ids_column(ids), code, text))
        store._append(state, {"kind": "remove", "corpus": corpus, "source": source, "reason": text, "reason_code": code, "rows": int(len(ids)), "drops": digest})
    return int(len(ids))
