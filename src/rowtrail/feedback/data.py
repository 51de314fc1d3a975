"""Reading annotation rows back: a version's judgements (with their weights), and the attributes of
every annotation row ever ingested, from the provenance tables (content is not read)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..segments import ATTR_PREFIX

if TYPE_CHECKING:
    from ..store import Store

KIND_ATTR = ATTR_PREFIX + "annotation_kind"
FIELDS = (
    "annotator",
    "guideline_version",
    "batch",
    "collected_at",
    "item_id",
    "task",
    "label",
    "rating",
    "chosen",
    "rejected",
    "margin",
    "item_generator",
    "platform",
)


@dataclass
class Annotations:
    """The judgements of one version, one entry per row (aligned numpy arrays)."""

    version_id: str
    tag: str | None
    row_id: np.ndarray  # hex strings
    source_id: np.ndarray
    weight: np.ndarray  # float64: the row's weight in the version
    kind: np.ndarray  # label | rating | pair
    annotator: np.ndarray
    guideline: np.ndarray
    batch: np.ndarray
    collected_at: np.ndarray  # datetime64[us]
    item_id: np.ndarray
    task: np.ndarray
    label: np.ndarray  # object (None where not a label)
    rating: np.ndarray  # float64 (nan where not a rating)
    chosen: np.ndarray
    rejected: np.ndarray
    margin: np.ndarray  # float64 (nan when not given)
    item_generator: np.ndarray  # object (None when not given)
    platform: np.ndarray

    def __len__(self) -> int:
        return len(self.row_id)

    def take(self, mask: np.ndarray) -> Annotations:
        return Annotations(
            self.version_id, self.tag, **{k: getattr(self, k)[mask] for k in self.__dataclass_fields__ if k not in ("version_id", "tag")}
        )

    def unit(self) -> np.ndarray:
        """What two judgements must share to be comparable: the task and item, and for a pair the
        two sides (in sorted order)."""
        out = []
        for t, i, c, r in zip(self.task, self.item_id, self.chosen, self.rejected):
            pair = "" if c is None else "\x1f".join(sorted((str(c), str(r))))
            out.append(f"{t}\x1f{i}\x1f{pair}")
        return np.array(out, dtype=object)

    def value(self) -> np.ndarray:
        """The judgement's value: the label, the rating, or the chosen side of a pair."""
        out = self.label.astype(object).copy()
        pair = self.kind == "pair"
        out[pair] = self.chosen[pair]
        r = self.kind == "rating"
        out[r] = self.rating[r]
        return out

    def week(self) -> np.ndarray:
        """ISO week of each judgement (``2026-W07``)."""
        days = self.collected_at.astype("datetime64[D]")
        out = []
        for d in days.tolist():
            y, w, _ = d.isocalendar()
            out.append(f"{y}-W{w:02d}")
        return np.array(out, dtype=object)


def load(store: Store, version: str = "HEAD", corpus: str = "main") -> Annotations:
    """The annotation rows of a version (rows whose ``annotation_kind`` attribute is set), read
    from the provenance tables of the version's segments."""
    info = store.state.resolve(version, corpus)
    recs = store.version_rows(info.version_id)
    names = ["source_id", *(ATTR_PREFIX + f for f in ("annotation_kind", *FIELDS))]
    cols = record_attributes(store, recs, names)
    keep = np.array([k is not None for k in cols[KIND_ATTR]], dtype=bool)
    from ..hashing import ids_hex

    ids = np.array(ids_hex(recs["id"][keep]), dtype=object) if keep.any() else np.empty(0, dtype=object)
    return build(info.version_id, info.tag, ids, recs["w"][keep].astype(np.float64), {k: v[keep] for k, v in cols.items()})


def build(version_id: str, tag: str | None, row_id: np.ndarray, weight: np.ndarray, cols: dict[str, np.ndarray]) -> Annotations:
    def a(name: str) -> np.ndarray:
        return cols.get(ATTR_PREFIX + name, np.array([None] * len(row_id), dtype=object))

    def num(name: str) -> np.ndarray:
        return np.array([np.nan if x is None else float(x) for x in a(name)], dtype=np.float64)

    kind = a("annotation_kind")
    return Annotations(
        version_id=version_id,
        tag=tag,
        row_id=row_id,
        source_id=cols["source_id"],
        weight=weight,
        kind=kind,
        annotator=a("annotator"),
        guideline=a("guideline_version"),
        batch=a("batch"),
        collected_at=np.array([np.datetime64(str(t).rstrip("Z"), "us") for t in a("collected_at")], dtype="datetime64[us]"),
        item_id=a("item_id"),
        task=np.array([t if t is not None else k for t, k in zip(a("task"), kind)], dtype=object),
        label=a("label"),
        rating=num("rating"),
        chosen=a("chosen"),
        rejected=a("rejected"),
        margin=num("margin"),
        item_generator=a("item_generator"),
        platform=a("platform"),
    )


def record_attributes(store: Store, recs: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Provenance columns (``source_id``, ``attr.<name>``…) of row locators (``seg``, ``row``),
    aligned with ``recs``; a column a segment lacks reads as None."""
    out = {n: np.empty(len(recs), dtype=object) for n in names}
    if len(recs) == 0:
        return out
    segs = recs["seg"].astype(np.int64)
    order = np.argsort(segs, kind="stable")
    bounds = np.flatnonzero(np.diff(segs[order])) + 1
    for part in np.split(order, bounds):
        got = segment_attributes(store, int(segs[part[0]]), recs["row"][part].astype(np.int64), names)
        for n in names:
            out[n][part] = got[n]
    return out


def ingested(store: Store, names: list[str]) -> Iterator[tuple[Any, ...]]:
    """Attribute values of every ingested annotation row in the store (every ingest, committed or
    staged), as tuples in ``names`` order."""
    for seg in store.state.segments:
        schema = pq.read_schema(store.backend.object_path(seg.provenance))
        if KIND_ATTR not in schema.names or "step_id" in schema.names:
            continue
        cols = [ATTR_PREFIX + n for n in names if ATTR_PREFIX + n in schema.names]
        if len(cols) != len(names):
            continue
        t = pq.read_table(store.backend.object_path(seg.provenance), columns=cols)
        yield from zip(*(t.column(c).to_pylist() for c in cols))


def segment_attributes(store: Store, seg: int, rows: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Attribute (or provenance) columns of some rows of one segment; absent columns come back as
    all-None."""
    segment = store.state.segments[seg]
    path = store.backend.object_path(segment.provenance)
    have = set(pq.read_schema(path).names)
    out: dict[str, np.ndarray] = {}
    wanted = [n for n in names if n in have]
    t = pq.read_table(path, columns=wanted) if wanted else None
    idx = pa.array(rows.astype(np.int64))
    for n in names:
        if t is not None and n in have:
            out[n] = np.array(t.column(n).take(idx).to_pylist(), dtype=object)
        else:
            out[n] = np.array([None] * len(rows), dtype=object)
    return out
