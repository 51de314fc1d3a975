"""What the explorer shows, as plain functions over a ``Store``: no HTTP here, so each is testable on
its own and the routes in ``api.py`` stay thin.

Everything is bounded by the page asked for, never by the store's size: a rows page loads only the
row chunks that hold it (a version's chunk list carries each chunk's count, so an offset finds its
chunk without reading the others); a page filtered by source reads chunks in order until it is full
and remembers each chunk's count of that source (so a page costs what precedes it once, then only
its own chunks); aggregates (transparency, EU AI Act, monitoring, drops) are DuckDB/Arrow
group-bys the library already runs, cached per version id (versions are immutable).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..errors import RefError

if TYPE_CHECKING:
    from ..store import Store

MAX_PAGE = 1000
SEARCH_HITS = 50
T = TypeVar("T")


class Memo:
    """A small thread-safe LRU for results keyed by immutable ids (version ids, pairs of them).
    Single-flight: callers asking for a key being computed wait for that computation."""

    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[Any, threading.Lock] = {}

    def get(self, key: Any, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[no-any-return]
            gate = self._making.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._items:  # made while this caller waited
                    return self._items[key]  # type: ignore[no-any-return]
            try:
                value = make()
            finally:
                with self._lock:
                    self._making.pop(key, None)
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
        return value


def warm(path: Any) -> None:
    """Compute what the first visitor of each corpus head would wait for (the governance facts
    behind the transparency table and EU AI Act summary, and the diff with its parent), so those
    pages answer from the cache."""
    from ..store import open as open_store

    try:
        store = open_store(path)
        for corpus, vid in list(store.state.heads.items()):
            v = store.version(vid)
            facts(store, v)
            if v.info.parent:  # the timeline's "diff with parent" of the newest version
                diff_summary(store, v.info.parent, vid, corpus)
    except Exception:  # best effort: a page that needs it computes it again and reports any error
        return


# -- values -------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A JSON-safe form of an Arrow/Python value: bytes as hex, datetimes as RFC 3339 strings,
    non-finite floats as strings."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return plain(float(value))
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return value


def version_label(store: Store, version_id: str) -> str:
    info = store.state.versions[version_id]
    return info.tag or version_id[:12]


# -- versions -----------------------------------------------------------------------------------------


def signer(store: Store, version: Any) -> dict[str, Any] | None:
    """Who signed a version: key ids from its envelope, and whether each is trusted here."""
    env = version.attestation()
    if env is None:
        return None
    from ..versions.signing import trusted_keys

    try:
        trusted = set(trusted_keys())
    except Exception:  # an unreadable trust directory: say untrusted rather than fail the page
        trusted = set()
    return {"keys": [{"keyid": s.get("keyid"), "trusted": s.get("keyid") in trusted} for s in env.get("signatures", [])]}


def version_summary(store: Store, version: Any) -> dict[str, Any]:
    s = version.summary()
    s["signer"] = signer(store, version)
    s["weight_total"] = version.content["weight_total"]
    s["pipeline_steps"] = len(version.content["pipeline"])
    return s


def version_detail(store: Store, version: Any) -> dict[str, Any]:
    man = version.manifest
    steps = man.get("steps") or {}
    return {
        **version_summary(store, version),
        "record": version.record,
        "per_source": {k: {"rows": int(v[0]), "weight": float(v[1])} for k, v in version.content["per_source"].items()},
        "steps": [{"step_id": sid, **_step_brief(steps.get(sid))} for sid in version.content["pipeline"]],
        "source_snapshots": man.get("source_snapshots", {}),
        "admission": man.get("admission"),
    }


def _step_brief(step: Any) -> dict[str, Any]:
    if not isinstance(step, dict):
        return {"name": None}
    d = step.get("definition", step)
    return {"name": d.get("name"), "use": d.get("use"), "version": d.get("version"), "params": plain(d.get("params"))}


# -- rows of a version --------------------------------------------------------------------------------


def _chunk_page(store: Store, version_id: str, offset: int, limit: int) -> tuple[np.ndarray, int]:
    """Records ``[offset, offset + limit)`` of a version in id order, reading only their chunks."""
    chunks = store.manifest(version_id)["rows"]["chunks"]
    counts = np.array([c[1] for c in chunks], dtype=np.int64)
    total = int(counts.sum())
    if offset >= total or limit <= 0:
        return store.chunks.load_all([]), total
    ends = np.cumsum(counts)
    first = int(np.searchsorted(ends, offset, side="right"))
    last = int(np.searchsorted(ends, min(offset + limit, total) - 1, side="right"))
    recs = store.chunks.load_all(chunks[first : last + 1])
    start = offset - (int(ends[first - 1]) if first else 0)
    return recs[start : start + limit], total


_SOURCE_COUNTS: dict[tuple[str, str, str], int] = {}  # (store, chunk digest, source) → rows of the source in the chunk
_SOURCE_COUNTS_MAX = 1 << 20


def _source_page(store: Store, version_id: str, source: str, offset: int, limit: int) -> tuple[np.ndarray, int]:
    """Records ``[offset, offset + limit)`` of one source's rows in a version, in id order: chunks
    are read in order until the page is full, and each chunk's count of the source's rows is kept
    (chunks are immutable and shared between versions), so a later page skips the chunks before it
    unread. The total comes from the version content's per-source counts."""
    from ..ops.remove import rows_of_source

    store.sources.get(source)  # an unknown source is a 404, not an empty page
    man = store.manifest(version_id)
    total = int(man["record"]["content"]["per_source"].get(source, [0])[0])
    parts: list[np.ndarray] = []
    want, seen = limit, 0
    for digest, *_ in man["rows"]["chunks"]:
        if want <= 0 or seen >= offset + limit:
            break
        key = (str(store.path), digest, source)
        count = _SOURCE_COUNTS.get(key)
        if count is not None and seen + count <= offset:
            seen += count
            continue
        recs = store.chunks.get(digest)
        mine = recs[rows_of_source(store, recs, source)]
        if len(_SOURCE_COUNTS) < _SOURCE_COUNTS_MAX:
            _SOURCE_COUNTS[key] = len(mine)
        start = max(0, offset - seen)
        take = mine[start : start + want]
        if len(take):
            parts.append(take)
            want -= len(take)
        seen += len(mine)
    return (np.concatenate(parts) if parts else store.chunks.load_all([])), total


def rows_page(
    store: Store, ref: str, *, source: str | None = None, offset: int = 0, limit: int = 50, corpus: str = "main"
) -> dict[str, Any]:
    """One page of a version's rows in row-id order, with the total: each row's provenance columns
    (as stored: ``row_id``, ``source_id``, ``source_key``, …, ``attr.<name>``), its ``weight`` in the
    version and its ``content`` (the content fields as an object; null when a purge erased it)."""
    limit = max(0, min(int(limit), MAX_PAGE))
    info = store.state.resolve(ref, corpus)
    if source is None:
        recs, total = _chunk_page(store, info.version_id, offset, limit)
    else:
        recs, total = _source_page(store, info.version_id, source, offset, limit)
    rows = _read_records(store, recs)
    content_columns: dict[str, None] = {}
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(k for k in r if k != "content"))
        content_columns.update(dict.fromkeys(r["content"] or {}))
    return {
        "version_id": info.version_id,
        "tag": info.tag,
        "source": source,
        "offset": offset,
        "limit": limit,
        "total": total,
        "content_columns": list(content_columns),
        "columns": list(columns),
        "rows": rows,
    }


def _read_records(store: Store, recs: np.ndarray) -> list[dict[str, Any]]:
    """Provenance, weight and content of version records, in their order: one read per segment
    file of only the row groups that hold them."""
    import orjson

    from ..segments import read_rows_at

    out: list[dict[str, Any]] = [{} for _ in range(len(recs))]
    if not len(recs):
        return out
    segs = recs["seg"].astype(np.int64)
    for seg in np.unique(segs).tolist():
        pos = np.flatnonzero(segs == seg)
        at = recs["row"][pos].astype(np.int64)
        segment = store.state.segments[seg]
        prov = read_rows_at(str(store.backend.object_path(segment.provenance)), at).to_pylist()
        texts = read_rows_at(str(store.backend.object_path(segment.content)), at, columns=["content"]).column("content").to_pylist()
        for k, p, text, w in zip(pos.tolist(), prov, texts, recs["w"][pos].tolist()):
            out[k] = {**plain(p), "weight": float(w), "content": orjson.loads(text) if text is not None else None}
    return out


# -- diff ---------------------------------------------------------------------------------------------

_DIFFS = Memo(8)


def provenance_diff(store: Store, a: str, b: str, corpus: str = "main") -> Any:
    va, vb = store.version(a, corpus), store.version(b, corpus)
    return _DIFFS.get((str(store.path), va.id, vb.id), lambda: vb.provenance_set() - va.provenance_set())


def diff_summary(store: Store, a: str, b: str, corpus: str = "main") -> dict[str, Any]:
    d = provenance_diff(store, a, b, corpus)
    out = d.to_dict()
    out["before_tag"], out["after_tag"] = d.before.version.tag, d.after.version.tag
    out["chunks_shared"] = d.chunks_shared
    return out


def diff_rows(
    store: Store, a: str, b: str, *, kind: str = "added", offset: int = 0, limit: int = 50, corpus: str = "main"
) -> dict[str, Any]:
    """Row ids added to (or removed from) ``b`` relative to ``a``, one page, each with its source."""
    from ..hashing import ids_hex

    d = provenance_diff(store, a, b, corpus)
    added, removed = d._records
    recs = added if kind == "added" else removed
    limit = max(0, min(int(limit), MAX_PAGE))
    page = recs[offset : offset + limit]
    _, src, names = store.gather(page, want_sources=True, want_hashes=False)
    rows = [
        {"row_id": rid, "source_id": names[src[i]] if names else None, "weight": float(page["w"][i])}
        for i, rid in enumerate(ids_hex(page["id"]))
    ]
    return {
        "before": d.before.version.id,
        "after": d.after.version.id,
        "kind": kind,
        "offset": offset,
        "limit": limit,
        "total": len(recs),
        "rows": rows,
    }


# -- a row ---------------------------------------------------------------------------------------------


def row_detail(store: Store, row_id: str) -> dict[str, Any]:
    """The row's trace (content, provenance, source, steps, drops, versions with their admission
    rule, runs), JSON-safe."""
    return plain(store.trace(row_id))  # type: ignore[no-any-return]


def lineage_graph(store: Store, row_id: str, trace: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row's lineage as a layered graph: source → ingest → ancestor rows → the row → rows a step
    made from it → versions that hold it → runs that trained on it; drops as end nodes.

    Each node has ``id``, ``kind``, ``label``, ``layer`` (left to right) and, for rows, ``row_id``;
    each edge ``source``, ``target`` and ``label`` (the step or event)."""
    t = trace if trace is not None else row_detail(store, row_id)
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []

    def node(nid: str, kind: str, label: str, layer: int, **extra: Any) -> str:
        if nid not in nodes:
            nodes[nid] = {"id": nid, "kind": kind, "label": label, "layer": layer, **extra}
        return nid

    def edge(a: str, b: str, label: str) -> None:
        if not any(e["source"] == a and e["target"] == b and e["label"] == label for e in edges):
            edges.append({"source": a, "target": b, "label": label})

    rid = t["row_id"]
    chain = list(reversed(t.get("derived_from") or []))  # oldest ancestor first
    src = t["source"]["source_id"]
    s = node(f"source:{src}", "source", src, 0, license=t["source"].get("license"), legal_basis=t["source"].get("legal_basis"))
    ing = t["ingest"].get("ingest_id") or "ingest"
    i = node(f"ingest:{ing}", "ingest", f"ingest {str(ing)[:18]}", 1)
    edge(s, i, "snapshot " + str(t["provenance"].get("source_snapshot") or ""))
    layer = 2
    prev = i
    step_names = {e.get("step_id"): e.get("step") for e in t.get("steps") or []}
    for link in chain:
        a = node(f"row:{link['row_id']}", "row", link["row_id"][:12], layer, row_id=link["row_id"])
        edge(prev, a, "ingested" if prev == i else "")
        prev = a
        layer += 1
    me = node(f"row:{rid}", "focus", rid[:12], layer, row_id=rid)
    if chain:
        last = chain[-1]
        edge(prev, me, step_names.get(last.get("step_id")) or f"step {str(last.get('step_id') or '')[:8]}")
    else:
        edge(prev, me, "ingested")
    out_layer = layer + 1
    for e in t.get("steps") or []:
        ev = e["event"]
        label = f"#{e['position']} {e['step']}"
        if ev in ("modified", "split", "merged"):
            c = node(f"row:{e['child']}", "row", e["child"][:12], out_layer, row_id=e["child"])
            edge(me, c, f"{label} ({ev})")
        elif ev == "absorbed":
            p = node(f"row:{e['parent']}", "row", e["parent"][:12], layer - 1 if layer > 2 else 2, row_id=e["parent"])
            edge(p, me, f"{label} (merged duplicate)")
        elif ev == "dropped":
            d = node(f"drop:{e['step_id']}", "drop", f"dropped: {e.get('reason_code')}", out_layer)
            edge(me, d, label)
    for d in t.get("drops") or []:
        n = node(f"drop:{d.get('seq')}", "drop", f"{d.get('reason_code')}: {str(d.get('reason') or '')[:40]}", out_layer)
        edge(me, n, str(d.get("by") or "removed"))
    v_layer = out_layer + 1
    for v in t.get("versions") or []:
        label = v.get("tag") or v["version_id"][:12]
        adm = v.get("admission") or {}
        n = node(
            f"version:{v['version_id']}",
            "version",
            label,
            v_layer,
            version_id=v["version_id"],
            admitted_by=adm.get("rule") if isinstance(adm, dict) else None,
        )
        edge(me, n, f"weight {v['weight']:g}")
    for r in t.get("runs") or []:
        n = node(f"run:{r['run_id']}", "run", f"run {str(r['run_id'])[:14]}", v_layer + 1, run_id=r["run_id"])
        vn = f"version:{r['version_id']}"
        edge(vn if vn in nodes else me, n, f"{r['rows']} step(s)" if r.get("rows") else "trained")
    # descendants' own versions: where the row's content went when a step replaced it
    from ..ops.trace import locate

    for child in [x for x in nodes.values() if x["kind"] == "row" and x["layer"] == out_layer]:
        _, held = locate(store, child["row_id"])
        for v in held:
            vid = node(f"version:{v['version_id']}", "version", v.get("tag") or v["version_id"][:12], v_layer, version_id=v["version_id"])
            edge(child["id"], vid, f"weight {v['weight']:g}")
    return {"row_id": rid, "nodes": list(nodes.values()), "edges": edges}


# -- search --------------------------------------------------------------------------------------------


def search(store: Store, q: str, limit: int = SEARCH_HITS) -> dict[str, Any]:
    """Rows by row id, content hash (64 hex digits) or source key: reads the provenance columns
    it needs from each segment (DuckDB, projection only), never the content."""
    import duckdb

    q = q.strip()
    limit = max(1, min(int(limit), SEARCH_HITS))
    segments = store.state.segments
    if not q or not segments:
        return {"query": q, "hits": []}
    files = [str(store.backend.object_path(s.provenance)) for s in segments]
    is_hex = len(q) == 64 and all(c in "0123456789abcdefABCDEF" for c in q)
    con = duckdb.connect()
    try:
        base = "SELECT DISTINCT lower(hex(row_id)) AS row_id, source_id, source_key, lower(hex(content_sha256)) AS content_sha256 FROM read_parquet(?, union_by_name = true)"
        if is_hex:
            raw = bytes.fromhex(q)
            rel = con.execute(f"{base} WHERE row_id = ? OR content_sha256 = ? OR source_key = ? LIMIT {limit}", [files, raw, raw, q])
        else:
            rel = con.execute(f"{base} WHERE source_key = ? LIMIT {limit}", [files, q])
        names = [d[0] for d in rel.description]
        hits = [dict(zip(names, row)) for row in rel.fetchall()]
    finally:
        con.close()
    for h in hits:
        h["matched"] = "row_id" if h["row_id"] == q.lower() else "content_sha256" if h["content_sha256"] == q.lower() else "source_key"
    return {"query": q, "hits": hits}


# -- documents -----------------------------------------------------------------------------------------

_FACTS = Memo(8)


def facts(store: Store, version: Any) -> Any:
    from ..exports.documents import gather

    return _FACTS.get((str(store.path), version.id), lambda: gather(store, version))


def transparency(store: Store, version: Any) -> dict[str, Any]:
    import orjson

    from ..exports.transparency import _json

    return orjson.loads(_json(facts(store, version)))  # type: ignore[no-any-return]


def transparency_csv(store: Store, version: Any) -> bytes:
    from ..exports.transparency import _csv

    return _csv(facts(store, version))


def eu_ai_act(store: Store, version: Any) -> dict[str, Any]:
    from ..exports.eu_ai_act import _markdown, summary

    doc = summary(facts(store, version))
    return {"summary": plain(doc), "markdown": _markdown(doc)}


# -- runs ----------------------------------------------------------------------------------------------


def run_groups(store: Store, run_id: str) -> list[str]:
    run = store.run(run_id)
    t = run.table("contributions")
    return sorted(set(t.column("group").to_pylist())) if t is not None else []


def run_detail(store: Store, run_id: str) -> dict[str, Any]:
    from ..ops.runs import summary

    run = store.run(run_id)
    out = plain(summary(run.entry))
    out["groups"] = run_groups(store, run_id)
    out["features"] = bool(run.entry.get("features"))
    return out  # type: ignore[no-any-return]


def attribute_group(store: Store, run_id: str, group: str, *, by: str = "row", top: int = 20) -> dict[str, Any]:
    run = store.run(run_id)
    if group not in run_groups(store, run_id):
        raise RefError(f"run {run_id} has no parameter group '{group}'; its groups: {', '.join(run_groups(store, run_id)) or 'none'}")
    return plain(run.attribute(group=group, by=by, top=top))  # type: ignore[no-any-return]


# -- annotator agreement (rowtrail.feedback) and output search (rowtrail.search) ---------------------------

_AGREEMENT = Memo(16)
MAX_OUTPUT_CHARS = 20_000


def agreement(
    store: Store, ref: str, *, by: str = "week", level: str | None = None, permutations: int = 199, corpus: str = "main"
) -> dict[str, Any]:
    """Inter-annotator agreement of a version's annotation rows per ``by`` group (``week``: over
    time), each annotator's agreement with the pool and calibration-drift flag (cached per version)."""
    from ..feedback import analysis
    from ..feedback.data import load

    info = store.state.resolve(ref, corpus)

    def run() -> dict[str, Any]:
        ann = load(store, info.version_id, corpus)
        return plain(analysis.agreement(ann, by=by, level=level, cfg=analysis.DriftConfig(permutations=permutations)))  # type: ignore[no-any-return]

    return _AGREEMENT.get((str(store.path), info.version_id, by, level, permutations), run)


def indexes(store: Store, ref: str, corpus: str = "main") -> list[dict[str, Any]]:
    from ..search import list_indexes

    return plain(list_indexes(store, ref, corpus=corpus))  # type: ignore[no-any-return]


def search_output(store: Store, text: str, ref: str = "HEAD", *, k: int = 10, corpus: str = "main") -> dict[str, Any]:
    """A pasted model output's maximal verbatim spans in the version's rows, and its most similar
    rows, each with provenance (needs the version's ``spans`` index: ``rowtrail index V``)."""
    try:
        from ..search import search_output as trace_output
    except ImportError as exc:
        from ..errors import RowtrailError

        raise RowtrailError(f"output search needs its extra ({exc.name} is missing): pip install 'rowtrail[search]'") from None

    # a str is always text to search_output (only a Path is read), so no path is ever read here
    return plain(trace_output(store, text, ref, corpus=corpus, k=k))  # type: ignore[no-any-return]
