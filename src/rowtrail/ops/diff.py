"""Diff: ``v38.provenance_set() - v37.provenance_set()`` → ``ProvenanceDiff``.

The diff compares the two versions' chunk lists first: a chunk object present in both holds the same
ids in both, so it is skipped unread. Only the remaining chunks are loaded, and their (sorted) ids are
matched with a vectorized search over 64-bit prefixes, checked on the full 32 bytes. A diff of versions
that share most chunks therefore costs in proportion to what changed.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..hashing import ID_DTYPE
from ..segments import hex_array

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.version import Version


def _prefix(ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=ID_DTYPE).view(">u8").reshape(-1, 4)[:, 0].astype(np.uint64)


BLOCK = 1 << 16


def sorted_membership(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For two sorted arrays of distinct 32-byte ids: which of ``a`` are in ``b``, and which of ``b`` in ``a``.

    Both arrays are cut at the same pivot ids into blocks of about 65 k ids, so every temporary array
    stays small (cache-resident, and reused by the allocator instead of faulting in fresh pages); each
    block is one linear merge of two sorted runs.
    """
    in_b = np.zeros(len(a), dtype=bool)
    in_a = np.zeros(len(b), dtype=bool)
    if len(a) == 0 or len(b) == 0:
        return in_b, in_a
    pivots = a[BLOCK::BLOCK]
    cut_a = np.arange(BLOCK, len(a), BLOCK)
    cut_b = np.searchsorted(b, pivots) if len(pivots) else np.empty(0, dtype=np.int64)
    lo_a = np.concatenate([[0], cut_a])
    hi_a = np.concatenate([cut_a, [len(a)]])
    lo_b = np.concatenate([[0], cut_b])
    hi_b = np.concatenate([cut_b, [len(b)]])
    for i in range(len(lo_a)):
        sa, sb = slice(int(lo_a[i]), int(hi_a[i])), slice(int(lo_b[i]), int(hi_b[i]))
        in_b[sa], in_a[sb] = _merge_membership(a[sa], b[sb])
    return in_b, in_a


def _merge_membership(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One linear merge: a stable sort of the two concatenated 64-bit-prefix runs (timsort merges two
    sorted runs in O(n)); equal neighbours are candidate matches, confirmed on all 32 bytes."""
    in_b = np.zeros(len(a), dtype=bool)
    in_a = np.zeros(len(b), dtype=bool)
    if len(a) == 0 or len(b) == 0:
        return in_b, in_a
    pa_, pb = _prefix(a), _prefix(b)
    if (len(pa_) > 1 and bool(np.any(pa_[1:] == pa_[:-1]))) or (len(pb) > 1 and bool(np.any(pb[1:] == pb[:-1]))):
        return np.isin(a, b), np.isin(b, a)  # shared prefixes within one side: the exact, slower path
    both = np.concatenate([pa_, pb])
    order = np.argsort(both, kind="stable")
    merged = both[order]
    hit = np.flatnonzero(merged[1:] == merged[:-1])
    ia, ib = order[hit], order[hit + 1] - len(pa_)  # stable: a's element comes first
    same = a[ia] == b[ib]
    in_b[ia[same]] = True
    in_a[ib[same]] = True
    return in_b, in_a


class ProvenanceSet:
    """What a version is made of: its sources (with snapshots) and its rows (as chunked id lists)."""

    def __init__(self, store: Store, version: Version):
        self._store = store
        self.version = version

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(self.version.content["per_source"])

    @property
    def snapshots(self) -> dict[str, list[str]]:
        return self.version.manifest.get("source_snapshots", {})

    @property
    def per_source(self) -> dict[str, list[Any]]:
        return self.version.content["per_source"]

    def __len__(self) -> int:
        return int(self.version.content["row_count"])

    def __sub__(self, other: ProvenanceSet) -> ProvenanceDiff:
        if not isinstance(other, ProvenanceSet):
            return NotImplemented
        return ProvenanceDiff(self._store, before=other, after=self)

    def __repr__(self) -> str:
        return f"<ProvenanceSet {self.version.tag or self.version.id[:12]}: {len(self)} rows, {len(self.sources)} sources>"


class ProvenanceDiff:
    """What changed from ``before`` to ``after``: sources added, dropped and changed (snapshot),
    row ids added and removed (sorted Arrow arrays of hex ids), and per-source row counts."""

    def __init__(self, store: Store, before: ProvenanceSet, after: ProvenanceSet):
        self._store = store
        self.before = before
        self.after = after
        b, a = before.sources, after.sources
        self.sources_added: frozenset[str] = a - b
        self.sources_dropped: frozenset[str] = b - a
        bs, as_ = before.snapshots, after.snapshots
        self.sources_changed: frozenset[str] = frozenset(s for s in a & b if bs.get(s) != as_.get(s))
        self.per_source: dict[str, tuple[int, int]] = {
            s: (int(before.per_source.get(s, [0])[0]), int(after.per_source.get(s, [0])[0])) for s in sorted(a | b)
        }

    @cached_property
    def _changed(self) -> tuple[list[list[Any]], list[list[Any]], np.ndarray, np.ndarray, int]:
        """Chunks not shared by the two versions, masks of their added and removed ids, and how many
        chunks were skipped as shared. Only ids are read here."""
        store = self._store
        ca = self.after.version.manifest["rows"]["chunks"]
        cb = self.before.version.manifest["rows"]["chunks"]
        shared = {c[0] for c in ca} & {c[0] for c in cb}
        ca = [c for c in ca if c[0] not in shared]
        cb = [c for c in cb if c[0] not in shared]
        ia, ib = store.chunks.load_ids(ca), store.chunks.load_ids(cb)
        in_b, in_a = sorted_membership(ia, ib)
        self._ids = (ia[~in_b], ib[~in_a])
        return ca, cb, ~in_b, ~in_a, len(shared)

    @property
    def added_ids(self) -> np.ndarray:
        """Added row ids as a sorted numpy 'S32' array (raw bytes)."""
        _ = self._changed
        return self._ids[0]

    @property
    def removed_ids(self) -> np.ndarray:
        _ = self._changed
        return self._ids[1]

    @cached_property
    def _records(self) -> tuple[np.ndarray, np.ndarray]:
        """Full records (id, weight, seg, row) of the added and removed rows."""
        ca, cb, add, rem, _ = self._changed
        return self._store.chunks.load_all(ca)[add], self._store.chunks.load_all(cb)[rem]

    @cached_property
    def rows_added(self) -> pa.Array:
        return hex_array(self.added_ids)

    @cached_property
    def rows_removed(self) -> pa.Array:
        return hex_array(self.removed_ids)

    @property
    def chunks_shared(self) -> int:
        return self._changed[4]

    @cached_property
    def changes_per_source(self) -> dict[str, dict[str, int]]:
        """Rows added and removed per source."""
        out: dict[str, dict[str, int]] = {}
        for key, rec in (("added", self._records[0]), ("removed", self._records[1])):
            if len(rec) == 0:
                continue
            _, idx, names = self._store.gather(rec, want_sources=True)
            counts = np.bincount(idx, minlength=len(names))
            for i, name in enumerate(names):
                if counts[i]:
                    out.setdefault(name, {"added": 0, "removed": 0})[key] = int(counts[i])
        return dict(sorted(out.items()))

    @property
    def unchanged(self) -> bool:
        return self.before.version.content_id == self.after.version.content_id

    def to_dict(self, ids: bool = False, limit: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "before": self.before.version.id,
            "after": self.after.version.id,
            "sources_added": sorted(self.sources_added),
            "sources_dropped": sorted(self.sources_dropped),
            "sources_changed": sorted(self.sources_changed),
            "rows_added": len(self.added_ids),
            "rows_removed": len(self.removed_ids),
            "per_source": {s: {"before": b, "after": a, **self.changes_per_source.get(s, {"added": 0, "removed": 0})} for s, (b, a) in self.per_source.items()},
        }
        if ids:
            out["row_ids_added"] = self.rows_added.to_pylist()[:limit]
            out["row_ids_removed"] = self.rows_removed.to_pylist()[:limit]
        return out

    def __repr__(self) -> str:
        return (
            f"<ProvenanceDiff +{len(self.sources_added)}/-{len(self.sources_dropped)} sources, "
            f"+{len(self.added_ids)}/-{len(self.removed_ids)} rows>"
        )


__all__ = ["ProvenanceDiff", "ProvenanceSet", "sorted_membership"]
