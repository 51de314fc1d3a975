"""Trace: everything the store knows about one row — its source (licence, legal basis), ingest and
origin line, content, steps, drops, lineage edges, every version that holds it, and runs that
trained on it.

Finding a row costs one chunk lookup per version (binary search over chunk ranges, then one chunk),
not a scan: only a row that is in no version at all (staged, or removed before any commit) falls
back to reading the staged segments' id columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..errors import RefError
from ..hashing import ID_DTYPE
from ..segments import lookup, read_rows_at
from ..versions.manifest import find_in_chunks
from .prove import normalize_id

if TYPE_CHECKING:
    from ..store import Store


def locate(store: Store, rid: str) -> tuple[tuple[int, int] | None, list[dict[str, Any]]]:
    """The row's (segment, row) locator and the versions that hold it (newest first)."""
    state = store.state
    probe = np.frombuffer(bytes.fromhex(rid), dtype=ID_DTYPE)[0]
    where: tuple[int, int] | None = None
    versions = []
    seen: dict[str, tuple[float, int, int] | None] = {}  # chunk digest → record (versions share chunks)
    for vid in reversed(state.version_order):
        chunks = store.manifest(vid)["rows"]["chunks"]
        ci = find_in_chunks(chunks, rid)
        if ci is None or chunks[ci][2] > rid:
            continue
        digest, count = chunks[ci][0], chunks[ci][1]
        if digest not in seen:
            ids = store.chunks.ids(digest, count)
            pos = int(np.searchsorted(ids, probe))
            seen[digest] = store.chunks.record_at(digest, count, pos) if pos < len(ids) and ids[pos] == probe else None
        rec = seen[digest]
        if rec is not None:
            info = state.versions[vid]
            versions.append({"version_id": vid, "tag": info.tag, "corpus": info.corpus, "created_at": info.created_at, "weight": rec[0]})
            if where is None:
                where = (rec[1], rec[2])
    if where is None:
        for segment in reversed(state.segments):
            ids = store.segment_column(segment.seg, "row_id")
            hits = np.flatnonzero(ids == probe)
            if len(hits):
                where = (segment.seg, int(hits[0]))
                break
    return where, versions


def _row_dict(table: pa.Table) -> dict[str, Any]:
    row = table.to_pylist()[0]
    out = {}
    for k, v in row.items():
        if isinstance(v, bytes):
            v = v.hex()
        elif hasattr(v, "isoformat"):
            v = v.isoformat().replace("+00:00", "Z")
        out[k] = v
    return out


def _matches(store: Store, digest: str | None, column: str, raw: bytes) -> list[dict[str, Any]]:
    if not digest:
        return []
    table = lookup(str(store.backend.object_path(digest)), column, raw)
    return [_row_dict(table.slice(i, 1)) for i in range(table.num_rows)]


def read_provenance(store: Store, seg: int, row: int) -> dict[str, Any]:
    segment = store.state.segments[seg]
    return _row_dict(read_rows_at(str(store.backend.object_path(segment.provenance)), np.array([row])))


def trace(store: Store, row_id: str) -> dict[str, Any]:
    from .lineage import ancestors, descendants, step_events
    from .runs import runs_consuming

    rid = normalize_id(row_id)
    state = store.state
    where, versions = locate(store, rid)
    if where is None:
        raise RefError(f"row {rid} is not in this store; check the id (see 'rowtrail rows')")
    seg, row = where
    segment = state.segments[seg]
    prov = read_provenance(store, seg, row)
    content_row = read_rows_at(str(store.backend.object_path(segment.content)), np.array([row]), columns=["content"])
    text = content_row.column("content")[0].as_py()
    content = orjson.loads(text) if text is not None else None  # None: erased by a purge (provenance stays)
    source = state.sources[prov["source_id"]]
    ingest = state.ingests.get(prov.get("ingest_id") or segment.ingest_id, {})
    events = step_events(store, rid)
    from .policy import row_admission

    for v in versions:  # the admission rule (and labels) under which each version holds the row
        v["admission"] = row_admission(store, v["version_id"], source.source_id)
    raw = bytes.fromhex(rid)
    drops, lineage = [], []
    for e in state.entries:
        if e["kind"] in ("ingest", "remove", "optout") and e.get("drops"):
            for d in _matches(store, e["drops"], "row_id", raw):
                drops.append({**d, "corpus": e["corpus"], "seq": e["seq"], "at": e["at"], "by": e.get("ingest_id") or (f"opt-out {e['request']['id']}" if e["kind"] == "optout" else f"rm (journal entry {e['seq']})")})
        if e["kind"] == "ingest" and e.get("edges"):
            for col in ("parent", "child"):
                for d in _matches(store, e["edges"], col, raw):
                    lineage.append({**d, "seq": e["seq"], "by": e["ingest_id"]})
    for d in drops:  # which version first stopped holding the row
        later = [state.versions[v] for v in state.version_order if state.versions[v].seq > d["seq"] and state.versions[v].corpus == d["corpus"]]
        d["effective_in"] = later[0].version_id if later else None
    return {
        "row_id": rid,
        "source": source.to_dict(),
        "provenance": prov,
        "content": content,
        "ingest": {
            "ingest_id": ingest.get("ingest_id", prov.get("ingest_id")),
            "at": ingest.get("ingested_at"),
            "files": ingest.get("files", []),
            "options": ingest.get("options", {}),
            "seq": ingest.get("seq", segment.seq),
        },
        # a row a step created: the chain of parents back to the ingested row
        "derived_from": ancestors(store, rid, prov),
        # what pipeline steps did to the row, run by run (passing a step unchanged is no event)
        "steps": events,
        "descendants": descendants(events),
        "drops": drops,  # ingest supersessions and staged removals (step drops are under "steps")
        "lineage": lineage,  # ingest-level edges (supersession)
        "versions": versions,
        "runs": runs_consuming(store, row=rid),
    }
