"""Lineage across pipeline runs: which runs exist, what each step did to one row, and the drops of a
version's pipeline (``rowtrail dropped``).

A run (``ops/apply.py``) records per step a drops table, an edges table (``parent → child``,
``modified`` / ``split`` / ``merged``), a weight-changes table and attached columns; a version's
manifest names the run it was built from. Lookups read only the Parquet row groups whose
statistics admit the row id, so a row's history costs a few small reads per run, not a scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import RefError
from ..hashing import ID_DTYPE, ids_hex, sort_ids
from ..segments import ids_column_to_numpy, lookup
from .apply import read_run

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class RunInfo:
    digest: str
    doc: dict[str, Any]
    corpus: str
    seq: int  # journal entry that staged or committed it
    versions: list[str]  # versions built from it


def runs(store: Store) -> list[RunInfo]:
    """Every pipeline run the journal names (applied or run at commit), oldest first."""
    state = store.state
    found: dict[str, RunInfo] = {}
    for e in state.entries:
        digest = None
        if e["kind"] == "pipeline":
            digest = e.get("run")
        elif e["kind"] == "commit":
            digest = store.manifest(e["version_id"]).get("run")
        if not digest:
            continue
        info = found.get(digest)
        if info is None:
            doc = _doc(store, digest)
            info = found[digest] = RunInfo(digest, doc, e["corpus"], e["seq"], [])
        if e["kind"] == "commit":
            info.versions.append(e["version_id"])
    return sorted(found.values(), key=lambda r: r.seq)


def _doc(store: Store, digest: str) -> dict[str, Any]:
    cache = store.__dict__.setdefault("_run_docs", {})
    if digest not in cache:
        cache[digest] = read_run(store, digest)[0]
    return cache[digest]


def _rows(store: Store, digest: str | None, column: str, raw: bytes) -> list[dict[str, Any]]:
    if not digest:
        return []
    table = lookup(str(store.backend.object_path(digest)), column, raw)
    out = []
    for row in table.to_pylist():
        out.append({k: (v.hex() if isinstance(v, bytes) else v) for k, v in row.items()})
    return out


def step_events(store: Store, rid: str) -> list[dict[str, Any]]:
    """What each pipeline step did to a row, in every run: dropped, merged, modified, split,
    reweighted, scored (a row a step passed unchanged has no event)."""
    raw = bytes.fromhex(rid)
    events: list[dict[str, Any]] = []
    for run in runs(store):
        for order, sid in enumerate(run.doc["pipeline"]):
            s = run.doc["steps"][sid]
            d = s["definition"]
            base = {"run": run.digest, "versions": run.versions, "corpus": run.corpus, "step_id": sid, "step": d["name"], "use": d.get("use"), "position": order + 1}
            for drop in _rows(store, s.get("drops"), "row_id", raw):
                events.append({**base, "event": "dropped", "reason_code": drop["reason_code"], "reason": drop["reason"]})
            for col in ("parent", "child"):
                for edge in _rows(store, s.get("edges"), col, raw):
                    kind = edge["kind"]
                    if col == "parent":
                        events.append({**base, "event": kind, "child": edge["child"]})
                    else:
                        events.append({**base, "event": "created" if kind != "merged" else "absorbed", "kind": kind, "parent": edge["parent"]})
            for w in _rows(store, s.get("weights"), "row_id", raw):
                events.append({**base, "event": "reweighted", "before": w["before"], "after": w["after"]})
            for c in _rows(store, s.get("columns"), "row_id", raw):
                c.pop("row_id", None)
                events.append({**base, "event": "scored", "values": c})
    return events


def ancestors(store: Store, rid: str, provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """For a row a step created, the chain back to the ingested row it came from."""
    from .trace import locate, read_provenance

    chain = []
    seen = {rid}
    prov = provenance
    while prov.get("parent_row_id"):
        parent = prov["parent_row_id"]
        chain.append({"row_id": parent, "child": prov["row_id"], "step_id": prov.get("step_id")})
        if parent in seen:
            break
        seen.add(parent)
        where, _ = locate(store, parent)
        if where is None:
            break
        prov = read_provenance(store, *where)
    return chain


def descendants(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"row_id": e["child"], "kind": e["event"], "step": e["step"], "step_id": e["step_id"], "run": e["run"]} for e in events if e["event"] in ("modified", "split", "merged")]


def dropped(store: Store, version: str = "HEAD", *, step: str | None = None, source: str | None = None, corpus: str = "main", rows: int = 0) -> dict[str, Any]:
    """Drops made by version V's pipeline: counts by step, reason and source, and (``rows`` > 0)
    up to that many dropped row ids with their reasons."""
    state = store.state
    info = state.resolve(version, corpus)
    manifest = store.manifest(info.version_id)
    digest = manifest.get("run")
    label = info.tag or info.version_id[:12]
    if not digest:
        return {"version_id": info.version_id, "run": None, "steps": [], "total": 0, "rows": []}
    doc = _doc(store, digest)
    defs = doc["steps"]
    if step is not None:
        wanted = [sid for sid in doc["pipeline"] if sid.startswith(step) or defs[sid]["definition"]["name"] == step]
        if not wanted:
            listed_names = ", ".join(s["definition"]["name"] for s in defs.values())
            raise RefError(f"version {label} has no step '{step}'; its steps: {listed_names}")
    else:
        wanted = list(doc["pipeline"])
    if source is not None:
        store.sources.get(source)
    lookup_ids, lookup_src, names = _id_sources(store, info.version_id, doc)
    out_steps = []
    listed: list[dict[str, Any]] = []
    total = 0
    for sid in wanted:
        s = defs[sid]
        if not s.get("drops"):
            out_steps.append({"step_id": sid, "step": s["definition"]["name"], "dropped": 0, "by_reason": {}, "by_source": {}})
            continue
        table = pq.read_table(store.backend.object_path(s["drops"]))
        ids = ids_column_to_numpy(table.column("row_id"))
        pos = np.searchsorted(lookup_ids, ids)
        pos[pos >= len(lookup_ids)] = 0
        known = lookup_ids[pos] == ids if len(lookup_ids) else np.zeros(len(ids), bool)
        src = np.where(known, lookup_src[pos] if len(lookup_src) else -1, -1)
        src_names = np.array([*names, "(unknown)"], dtype=object)[src]
        mask = np.ones(len(ids), dtype=bool) if source is None else src_names == source
        all_codes = np.array(table.column("reason_code").to_pylist(), dtype=object)
        codes = all_codes[mask]
        by_reason = {str(k): int(v) for k, v in zip(*np.unique(codes, return_counts=True))} if mask.any() else {}
        by_source = {str(k): int(v) for k, v in zip(*np.unique(src_names[mask], return_counts=True))} if mask.any() else {}
        n = int(mask.sum())
        total += n
        out_steps.append({"step_id": sid, "step": s["definition"]["name"], "dropped": n, "by_reason": by_reason, "by_source": by_source})
        if rows and len(listed) < rows:
            sel = np.flatnonzero(mask)[: rows - len(listed)]
            reasons = table.column("reason").take(pa.array(sel)).to_pylist()
            for i, r in zip(sel.tolist(), reasons):
                listed.append({"row_id": ids_hex(ids[i : i + 1])[0], "step": s["definition"]["name"], "reason_code": all_codes[i], "reason": r, "source_id": src_names[i]})
    return {"version_id": info.version_id, "tag": info.tag, "run": digest, "steps": out_steps, "total": total, "rows": listed}


def _id_sources(store: Store, version_id: str, doc: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Sorted ids of every row the version's run saw (its inputs and the rows its steps created),
    with each row's source (an index into the returned names)."""
    from ..versions.manifest import RECORD_DTYPE

    recs = [store.version_inputs(version_id)]
    for seg in doc.get("segments", []):
        ids = store.segment_column(seg["seg"], "row_id")
        r = np.empty(len(ids), dtype=RECORD_DTYPE)
        r["id"], r["w"], r["seg"], r["row"] = ids, 1.0, seg["seg"], np.arange(len(ids))
        recs.append(r)
    allrec = np.concatenate(recs) if len(recs) > 1 else recs[0]
    order = sort_ids(allrec["id"])
    allrec = allrec[order]
    _hashes, src, names = store.gather(allrec, want_sources=True)
    return allrec["id"].astype(ID_DTYPE), src, names


def lineage_table(store: Store) -> pa.Table:
    """Every step edge of every run, as hex ids (the ``lineage`` SQL view)."""
    parts = []
    for run in runs(store):
        for sid in run.doc["pipeline"]:
            s = run.doc["steps"][sid]
            if not s.get("edges"):
                continue
            t = pq.read_table(store.backend.object_path(s["edges"]))
            n = t.num_rows
            parts.append(
                pa.table(
                    {
                        "run": pa.array([run.digest] * n),
                        "corpus": pa.array([run.corpus] * n),
                        "step_id": pa.array([sid] * n),
                        "step": pa.array([s["definition"]["name"]] * n),
                        "parent": pa.array(ids_hex(ids_column_to_numpy(t.column("parent")))),
                        "child": pa.array(ids_hex(ids_column_to_numpy(t.column("child")))),
                        "kind": t.column("kind"),
                    }
                )
            )
    if not parts:
        return pa.table({k: pa.array([], pa.string()) for k in ("run", "corpus", "step_id", "step", "parent", "child", "kind")})
    return pa.concat_tables(parts)


def step_drops_table(store: Store) -> pa.Table:
    """Every pipeline drop of every run (the ``step_drops`` SQL view)."""
    parts = []
    for run in runs(store):
        for sid in run.doc["pipeline"]:
            s = run.doc["steps"][sid]
            if not s.get("drops"):
                continue
            t = pq.read_table(store.backend.object_path(s["drops"]))
            n = t.num_rows
            parts.append(
                pa.table(
                    {
                        "run": pa.array([run.digest] * n),
                        "corpus": pa.array([run.corpus] * n),
                        "step_id": pa.array([sid] * n),
                        "step": pa.array([s["definition"]["name"]] * n),
                        "row_id": pa.array(ids_hex(ids_column_to_numpy(t.column("row_id")))),
                        "reason_code": t.column("reason_code"),
                        "reason": t.column("reason"),
                    }
                )
            )
    if not parts:
        return pa.table({k: pa.array([], pa.string()) for k in ("run", "corpus", "step_id", "step", "row_id", "reason_code", "reason")})
    return pa.concat_tables(parts)


