"""AI-content contamination: which part of a version's training signal derives from model outputs,
through which pipeline steps, and the chain model → run → output → rating → training row.

**Models.** ``rowtrail model add MODEL --run RUN [--outputs FILE]`` appends a ``model.add`` journal
entry ``{model, run_id, version_id, outputs, output_count}``: the model id that sources and rows name
as their generator, the training run that produced it (and the corpus version that run trained on),
and optionally the model's registered outputs — a Parquet object of ``output_id``, ``text_sha256``
(SHA-256 of the whitespace-normalized text) and ``text`` — which the built-in detector matches
against.

**Origin of a row.** Each input row of a version gets one origin, the first that applies:

1. ``declared``: the row's ``item_generator`` attribute (an annotation: who produced the rated item),
   else its ``generator`` attribute, else its source's ``generator`` when that is not ``human``, else
   — for a judgement whose ``item_id``, ``chosen`` or ``rejected`` is a corpus row id — that row's
   own generator (``item_row``);
2. ``detected``: a detector's match on the row's texts (for annotation rows, the string values of the
   rated ``item``; otherwise the string values of the content), only for rows with no declared origin;
3. ``human`` otherwise (declared human, or nothing found).

Rows a pipeline step derives (``modified``/``split`` edges) inherit their parent's origin.

**Detectors** implement ``detect(texts) -> list[Match | None]`` (one answer per text) and a ``name``.
The built-in ``RegisteredOutputs`` baseline is deliberately plain: exact match of the normalized
text's SHA-256 against every registered output, then near match by MinHash (``steps/minhash.py``,
word 3-shingles, 128 permutations) with an estimated Jaccard similarity ≥ ``threshold`` (default
0.7) against candidates sharing an LSH band (bands tuned for ``threshold − 0.2``, so that banding
loses few true matches). It finds copies and light edits of outputs it was
given; it cannot recognize generated text it was not given (no stylometry, no watermark reading).

**Shares.** The report replays the version's pipeline run from its input set (drops, weight
changes, lineage edges: docs/spec.md §15.9) and gives, after the inputs and after every step, the
weight of rows derived from model outputs over the total weight (weights, not row counts: an
upsampled generated row counts as often as it is upsampled), per model; per source for the version;
and the chains.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import IngestError, RefError, RowtrailError
from ..hashing import ID_DTYPE, ids_hex
from ..segments import ATTR_PREFIX, ids_column_to_numpy

if TYPE_CHECKING:
    from ..store import Store

MODEL_KIND = "model.add"
OUTPUTS_SCHEMA = pa.schema([("output_id", pa.string()), ("text_sha256", pa.binary(32)), ("text", pa.string())])
_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Whitespace-normalized text: runs of whitespace become one space, ends stripped."""
    return _WS.sub(" ", text).strip()


def text_hash(text: str) -> bytes:
    return hashlib.sha256(normalize(text).encode("utf-8")).digest()


# -- model registry ---------------------------------------------------------------------------------


def read_outputs(path: str | Path, text_field: str = "text", id_field: str = "output_id") -> pa.Table:
    """A model's outputs file (JSONL, one object per line, or CSV) as the outputs table."""
    import csv
    import io

    p = Path(path)
    if not p.is_file():
        raise IngestError("no such file", str(p))
    raw = p.read_text(encoding="utf-8")
    rows: list[tuple[int, dict[str, Any]]] = []
    if p.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(raw))
        rows = [(reader.line_num, dict(r)) for r in reader]
    else:
        for i, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IngestError(f"malformed JSON ({exc.msg})", str(p), i) from None
                if not isinstance(obj, dict):
                    raise IngestError("a line must hold a JSON object", str(p), i)
                rows.append((i, obj))
    ids, hashes, texts = [], [], []
    for at, r in rows:
        text = r.get(text_field)
        if not isinstance(text, str) or not text.strip():
            raise IngestError(f"no text in field '{text_field}' (choose the field with --text-field)", str(p), at, text_field)
        oid = r.get(id_field)
        ids.append(str(oid) if oid not in (None, "") else f"{p.name}:{at}")
        hashes.append(text_hash(text))
        texts.append(text)
    if not ids:
        raise IngestError("no outputs in the file", str(p))
    return pa.table({"output_id": ids, "text_sha256": pa.array(hashes, pa.binary(32)), "text": texts}, schema=OUTPUTS_SCHEMA)


def add_model(
    store: Store, model: str, *, run: str | None = None, outputs: pa.Table | None = None, note: str | None = None
) -> dict[str, Any]:
    """Register a model id: the run that produced it and (optionally) its outputs."""
    from ..ops.ingest import _put_table

    model = model.strip()
    if not model or model == "human":
        raise RowtrailError("a model id must be a non-empty name other than 'human'")
    version_id = None
    if run is not None:
        runs = {e["run_id"]: e for e in store.state.entries if e["kind"] == "run"}
        if run not in runs:
            raise RefError(f"no training run '{run}'; see 'rowtrail runs' (register an outside run with 'rowtrail run record')")
        version_id = runs[run]["version_id"]
    digest = _put_table(store, outputs) if outputs is not None else None
    with store._write() as state:
        return store._append(
            state,
            {
                "kind": MODEL_KIND,
                "model": model,
                "run_id": run,
                "version_id": version_id,
                "outputs": digest,
                "output_count": int(outputs.num_rows) if outputs is not None else 0,
                "note": note,
            },
        )


def models(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Registered models: every ``model.add`` entry per model id, in journal order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for e in store.state.entries:
        if e["kind"] == MODEL_KIND:
            out.setdefault(e["model"], []).append(e)
    return out


# -- detectors --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    model: str
    output_id: str
    method: str  # "exact" or "near"
    similarity: float


class Detector(Protocol):
    """Tells, for each text, whether it is a known model output (and which), or None."""

    name: str

    def detect(self, texts: Sequence[str]) -> list[Match | None]: ...


class RegisteredOutputs:
    """Exact and near match against the outputs registered with ``model add`` (see the module
    docstring for what it can and cannot find)."""

    name = "registered-outputs"
    SHINGLE = 3
    NUM_PERM = 128
    SEED = 1

    def __init__(self, store: Store, threshold: float = 0.7):
        from ..steps import minhash

        self.threshold = threshold
        ids, hashes, texts, owners = [], [], [], []
        for model, entries in models(store).items():
            for e in entries:
                if e.get("outputs"):
                    t = pq.read_table(store.backend.object_path(e["outputs"]))
                    ids += t.column("output_id").to_pylist()
                    hashes += t.column("text_sha256").to_pylist()
                    texts += t.column("text").to_pylist()
                    owners += [model] * t.num_rows
        self.ids, self.owners = ids, owners
        self.exact = {h: i for i, h in reversed(list(enumerate(hashes)))}
        self.sigs = (
            minhash.signatures(texts, num_perm=self.NUM_PERM, shingle=self.SHINGLE, seed=self.SEED)
            if texts
            else np.empty((0, self.NUM_PERM), np.uint32)
        )
        # candidates from bands tuned for a lower similarity, so few true matches escape banding;
        # every candidate is then checked against the threshold itself
        self.bands, self.rows = minhash.lsh_params(max(0.3, threshold - 0.2), self.NUM_PERM)
        self.buckets: dict[tuple[int, bytes], list[int]] = {}
        for i in range(len(texts)):
            for b in range(self.bands):
                self.buckets.setdefault((b, self.sigs[i, b * self.rows : (b + 1) * self.rows].tobytes()), []).append(i)

    def __len__(self) -> int:
        return len(self.ids)

    def detect(self, texts: Sequence[str]) -> list[Match | None]:
        from ..steps import minhash

        out: list[Match | None] = [None] * len(texts)
        todo = []
        for k, t in enumerate(texts):
            i = self.exact.get(text_hash(t))
            if i is not None:
                out[k] = Match(self.owners[i], self.ids[i], "exact", 1.0)
            else:
                todo.append(k)
        if not todo or not len(self.ids):
            return out
        sigs = minhash.signatures([texts[k] for k in todo], num_perm=self.NUM_PERM, shingle=self.SHINGLE, seed=self.SEED)
        for row, k in enumerate(todo):
            if sigs[row, 0] == minhash.EMPTY:
                continue
            cands = {
                i for b in range(self.bands) for i in self.buckets.get((b, sigs[row, b * self.rows : (b + 1) * self.rows].tobytes()), ())
            }
            if not cands:
                continue
            cand = np.fromiter(cands, dtype=np.int64)
            sim = (self.sigs[cand] == sigs[row]).mean(1)
            best = int(np.argmax(sim))
            if sim[best] >= self.threshold:
                i = int(cand[best])
                out[k] = Match(self.owners[i], self.ids[i], "near", float(sim[best]))
        return out


# -- origins and the report -------------------------------------------------------------------------


def _texts_of(content: str | None, is_annotation: bool) -> list[str]:
    if content is None:
        return []
    obj = json.loads(content)
    if is_annotation:
        item = obj.get("item")
        if isinstance(item, str):
            try:
                item = json.loads(item)
            except json.JSONDecodeError:
                return [item]
        obj = item if isinstance(item, dict) else {}
    return [v for v in obj.values() if isinstance(v, str) and len(v.split()) >= 3]


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _row_origins(store: Store, row_ids: set[str]) -> dict[str, str]:
    """The generator of each corpus row named (row id hex → its ``generator`` attribute, else its
    source's generator), looked up in every segment of the store."""
    from ..hashing import ids_from_hex
    from .data import segment_attributes

    if not row_ids:
        return {}
    want = ids_from_hex(sorted(row_ids))
    sources = store.state.sources
    out: dict[str, str] = {}
    for seg in store.state.segments:
        ids = store.segment_column(seg.seg, "row_id")
        hit = np.flatnonzero(np.isin(ids, want))
        if hit.size == 0:
            continue
        attrs = segment_attributes(store, seg.seg, hit, ["source_id", ATTR_PREFIX + "generator"])
        for rid, sid, g in zip(ids_hex(ids[hit]), attrs["source_id"], attrs[ATTR_PREFIX + "generator"]):
            out[rid] = str(g) if g is not None else ((sources[sid].generator or "human") if sid in sources else "human")
    return out


def origins(store: Store, recs: np.ndarray, detector: Detector | None = None) -> dict[str, np.ndarray]:
    """Origin of each ingested row locator: ``generator`` (model id or ``human``), ``via``
    (``item_generator``, ``attribute``, ``source``, ``item_row``, ``detector:exact``/``detector:near``,
    ``default``),
    ``output_id`` (the rated item or the matched output), ``similarity``, plus the row's source,
    annotator and guideline (for the chain)."""
    from .data import record_attributes, segment_attributes

    names = [
        "source_id",
        ATTR_PREFIX + "item_generator",
        ATTR_PREFIX + "generator",
        ATTR_PREFIX + "item_id",
        ATTR_PREFIX + "annotator",
        ATTR_PREFIX + "guideline_version",
        ATTR_PREFIX + "annotation_kind",
        ATTR_PREFIX + "chosen",
        ATTR_PREFIX + "rejected",
    ]
    cols = record_attributes(store, recs, names)
    n = len(recs)
    out_id = np.array(cols[ATTR_PREFIX + "item_id"], dtype=object)
    sim = np.full(n, np.nan)
    sources = store.state.sources
    ig, ga = cols[ATTR_PREFIX + "item_generator"], cols[ATTR_PREFIX + "generator"]
    has_ig = np.fromiter((v is not None for v in ig), dtype=bool, count=n)
    has_g = np.fromiter((v is not None for v in ga), dtype=bool, count=n)
    src_names, inv = np.unique(cols["source_id"].astype(str), return_inverse=True)
    by_source = np.array([(sources[x].generator or "human") if x in sources else "human" for x in src_names.tolist()] + ["human"], dtype=object)
    src_gen = by_source[inv.reshape(-1)] if n else np.empty(0, dtype=object)
    gen = np.where(has_ig, ig, np.where(has_g, ga, src_gen)).astype(str).astype(object)
    via = np.where(has_ig, "item_generator", np.where(has_g, "attribute", np.where(src_gen != "human", "source", "default"))).astype(object)
    undecided = np.flatnonzero(via == "default").tolist()
    # a judgement whose rated item (or a side of its pair) is a corpus row: that row's own origin
    refs = {
        i: [v for v in (cols[ATTR_PREFIX + k][i] for k in ("item_id", "chosen", "rejected")) if isinstance(v, str) and _HEX64.match(v)]
        for i in undecided
    }
    found = _row_origins(store, {v for vs in refs.values() for v in vs})
    for i, vs in refs.items():
        for v in vs:
            if v in found and found[v] != "human":
                gen[i], via[i], out_id[i] = found[v], "item_row", v
                break
    undecided = [i for i in undecided if via[i] == "default"]
    if detector is not None and undecided:
        und = np.array(undecided, dtype=np.int64)
        texts: list[str] = []
        owner: list[int] = []
        segs = recs["seg"][und].astype(np.int64)
        for seg in np.unique(segs):
            part = und[segs == seg]
            segment = store.state.segments[int(seg)]
            content = (
                pq.read_table(store.backend.object_path(segment.content), columns=["content"])
                .column("content")
                .take(pa.array(recs["row"][part].astype(np.int64)))
                .to_pylist()
            )
            kinds = segment_attributes(store, int(seg), recs["row"][part].astype(np.int64), [ATTR_PREFIX + "annotation_kind"])[
                ATTR_PREFIX + "annotation_kind"
            ]
            for i, c, k in zip(part.tolist(), content, kinds):
                for t in _texts_of(c, k is not None):
                    texts.append(t)
                    owner.append(i)
        for i, m in zip(owner, detector.detect(texts)):
            if m is not None and (via[i] == "default" or m.similarity > sim[i]):
                gen[i], via[i], out_id[i], sim[i] = m.model, f"detector:{m.method}", m.output_id, m.similarity
    return {
        "generator": gen,
        "via": via,
        "output_id": out_id,
        "similarity": sim,
        "source_id": cols["source_id"],
        "annotator": cols[ATTR_PREFIX + "annotator"],
        "guideline": cols[ATTR_PREFIX + "guideline_version"],
    }


def _read_ids(store: Store, digest: str | None, columns: list[str]) -> pa.Table | None:
    return pq.read_table(store.backend.object_path(digest), columns=columns) if digest else None


def _sorted_lookup(keys: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Index of each probe in ``keys`` (sorted bytewise), or -1."""
    if len(keys) == 0:
        return np.full(len(probe), -1, dtype=np.int64)
    at = np.searchsorted(keys, probe)
    at = np.minimum(at, len(keys) - 1)
    return np.where(keys[at] == probe, at, -1)


def replay(store: Store, version_id: str) -> list[dict[str, Any]]:
    """The version's rows after its inputs and after each pipeline step: ``{name, step_id, ids,
    weights, parent}`` where ``parent`` maps every row to the index of its ingested ancestor in the
    version's inputs list (docs/spec.md §15.9's replay)."""
    from ..ops.apply import read_run

    inputs = store.version_inputs(version_id)
    order = np.argsort(inputs["id"], kind="stable")
    ids = inputs["id"][order].astype(ID_DTYPE)
    w = inputs["w"][order].astype(np.float64)
    anc = order.astype(np.int64)
    stages = [{"name": "inputs", "step_id": None, "ids": ids, "weights": w, "ancestor": anc}]
    man = store.manifest(version_id)
    if not man.get("run"):
        return stages
    doc, _records = read_run(store, man["run"])
    for sid in doc["pipeline"]:
        st = doc["steps"][sid]
        drops = _read_ids(store, st.get("drops"), ["row_id"])
        if drops is not None and drops.num_rows:
            gone = ids_column_to_numpy(drops.column("row_id"))
            keep = ~np.isin(ids, gone)
            ids, w, anc = ids[keep], w[keep], anc[keep]
        weights = _read_ids(store, st.get("weights"), ["row_id", "after"])
        if weights is not None and weights.num_rows:
            at = _sorted_lookup(ids, ids_column_to_numpy(weights.column("row_id")))
            ok = at >= 0
            w = w.copy()
            w[at[ok]] = weights.column("after").to_numpy()[ok]
        edges = _read_ids(store, st.get("edges"), ["parent", "child", "kind"])
        if edges is not None and edges.num_rows:
            kinds = np.array(edges.column("kind").to_pylist(), dtype=object)
            sel = (kinds == "modified") | (kinds == "split")
            if sel.any():
                parents = ids_column_to_numpy(edges.column("parent"))[sel]
                children = ids_column_to_numpy(edges.column("child"))[sel]
                at = _sorted_lookup(ids, parents)
                ok = at >= 0
                new_ids, new_w, new_anc = children[ok], w[at[ok]], anc[at[ok]]
                keep = ~np.isin(ids, parents)
                ids = np.concatenate([ids[keep], new_ids])
                w = np.concatenate([w[keep], new_w])
                anc = np.concatenate([anc[keep], new_anc])
                o = np.argsort(ids, kind="stable")
                ids, w, anc = ids[o], w[o], anc[o]
        name = (st.get("definition") or {}).get("name") or sid[:12]
        stages.append({"name": name, "step_id": sid, "ids": ids, "weights": w, "ancestor": anc})
    return stages


def report(
    store: Store, version: str = "HEAD", *, detector: Detector | None = None, chains: int = 20, corpus: str = "main"
) -> dict[str, Any]:
    """The contamination report of a version (see the module docstring)."""
    info = store.state.resolve(version, corpus)
    vid = info.version_id
    inputs = store.version_inputs(vid)
    org = origins(store, inputs, detector)
    generated = org["generator"] != "human"
    stages = replay(store, vid)
    final = stages[-1]
    actual = store.version_rows(vid)
    by_id = np.argsort(actual["id"], kind="stable")
    exact = bool(
        len(actual) == len(final["ids"])
        and np.array_equal(actual["id"][by_id], final["ids"])
        and np.array_equal(actual["w"][by_id].astype(np.float64), final["weights"])
    )
    registry = models(store)
    pos = {v: i for i, v in enumerate(store.state.version_order)}

    def model_info(m: str) -> dict[str, Any]:
        entries = registry.get(m) or []
        e = entries[-1] if entries else None
        run_version = e.get("version_id") if e else None
        tag = store.state.versions[run_version].tag if run_version in store.state.versions else None
        return {
            "model": m,
            "registered": e is not None,
            "run_id": e.get("run_id") if e else None,
            "run_version": run_version,
            "run_version_tag": tag,
            "earlier": (pos.get(run_version, 1 << 60) < pos.get(vid, -1)) if run_version else None,
        }

    steps_out = []
    for st in stages:
        a = st["ancestor"]
        w = st["weights"]
        g = generated[a]
        total = float(w.sum())
        by_model: dict[str, float] = {}
        for m in sorted(set(org["generator"][a][g].tolist())):
            by_model[m] = float(w[g & (org["generator"][a] == m)].sum())
        steps_out.append(
            {
                "step": st["name"],
                "step_id": st["step_id"],
                "rows": int(len(w)),
                "weight": total,
                "generated_rows": int(g.sum()),
                "generated_weight": float(w[g].sum()),
                "share": float(w[g].sum()) / total if total > 0 else None,
                "by_model": by_model,
            }
        )
    a, w = final["ancestor"], final["weights"]
    per_source: dict[str, dict[str, Any]] = {}
    for s in sorted(set(org["source_id"][a].tolist())):
        sel = org["source_id"][a] == s
        gs = sel & generated[a]
        vias: dict[str, int] = {}
        for v in org["via"][a][gs].tolist():
            vias[v] = vias.get(v, 0) + 1
        per_source[s] = {
            "rows": int(sel.sum()),
            "weight": float(w[sel].sum()),
            "generated_rows": int(gs.sum()),
            "generated_weight": float(w[gs].sum()),
            "share": float(w[gs].sum() / w[sel].sum()) if w[sel].sum() > 0 else None,
            "via": dict(sorted(vias.items())),
        }
    ids_hexed = ids_hex(final["ids"]) if len(final["ids"]) else []
    in_hex = ids_hex(inputs["id"]) if len(inputs) else []
    chain_rows = []
    gen_idx = np.flatnonzero(generated[a])
    gen_idx = gen_idx[np.argsort(-w[gen_idx], kind="stable")]
    for k in gen_idx[:chains].tolist():
        i = int(a[k])
        m = str(org["generator"][i])
        chain_rows.append(
            {
                **model_info(m),
                "output": org["output_id"][i],
                "match": org["via"][i],
                "similarity": None if np.isnan(org["similarity"][i]) else float(org["similarity"][i]),
                "rating_row": in_hex[i],
                "annotator": org["annotator"][i],
                "guideline": org["guideline"][i],
                "training_row": ids_hexed[k],
                "weight": float(w[k]),
                "source": org["source_id"][i],
            }
        )
    found = sorted(set(org["generator"][generated].tolist()))
    return {
        "version_id": vid,
        "tag": info.tag,
        "detector": getattr(detector, "name", None),
        "replay_matches_version": exact,
        "share": steps_out[-1]["share"],
        "generated_weight": steps_out[-1]["generated_weight"],
        "weight": steps_out[-1]["weight"],
        "models": [model_info(m) for m in found],
        "steps": steps_out,
        "per_source": per_source,
        "chains": chain_rows,
        "chains_total": int(len(gen_idx)),
    }
