"""Rows of a version as one Arrow table: content fields, then provenance columns."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from ..segments import ATTR_PREFIX, hex_column, read_rows_at

if TYPE_CHECKING:
    from ..store import Store

ID_COLUMNS = ("row_id", "content_sha256")


def content_table(texts: list[str]) -> pa.Table:
    """Canonical JSON content objects as typed columns (one column of JSON text if they disagree)."""
    if not texts:
        return pa.table({})
    try:
        return pajson.read_json(io.BytesIO("\n".join(texts).encode()), read_options=pajson.ReadOptions(block_size=1 << 26))
    except pa.ArrowInvalid:
        return pa.table({"content": pa.array(texts, pa.string())})


def rows(store: Store, ref: str, source: str | None = None, corpus: str = "main", limit: int | None = None) -> pa.Table:
    from ..ops.remove import rows_of_source

    info = store.state.resolve(ref, corpus)
    recs = store.version_rows(info.version_id)
    if source is not None:
        store.sources.get(source)
        recs = recs[rows_of_source(store, recs, source)]
    if limit is not None:
        recs = recs[:limit]
    parts = []
    order = np.argsort(recs["seg"], kind="stable")
    bounds: Any = np.flatnonzero(np.diff(recs["seg"][order])) + 1 if len(recs) else []
    for idx in np.split(order, bounds) if len(recs) else []:
        segment = store.state.segments[int(recs["seg"][idx[0]])]
        at = recs["row"][idx].astype(np.int64)
        prov = read_rows_at(str(store.backend.object_path(segment.provenance)), at)
        cont = read_rows_at(str(store.backend.object_path(segment.content)), at, columns=["content"])
        prov = prov.append_column("weight", pa.array(recs["w"][idx].astype(np.float64)))
        prov = prov.append_column("_content", cont.column("content"))
        parts.append(prov)
    if not parts:
        return pa.table({"row_id": pa.array([], pa.string()), "source_id": pa.array([], pa.string())})
    table = pa.concat_tables(parts, promote_options="default").combine_chunks()
    table = table.take(pa.array(np.argsort(np.concatenate([recs["id"][i] for i in np.split(order, bounds)]), kind="stable")))
    content = content_table(table.column("_content").to_pylist())
    table = table.drop_columns(["_content"])
    for name in ID_COLUMNS:
        table = table.set_column(table.schema.get_field_index(name), name, hex_column(table.column(name)))
    names = set(content.column_names)
    renamed = [n[len(ATTR_PREFIX) :] if n.startswith(ATTR_PREFIX) and n[len(ATTR_PREFIX) :] not in names | set(table.column_names) else n for n in table.column_names]
    table = table.rename_columns(renamed)
    out = content
    for name, col in zip(table.column_names, table.columns):
        if name in out.column_names:
            name = f"_{name}"
        out = out.append_column(name, col)
    return out
