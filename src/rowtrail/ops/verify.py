"""Verify: find any damaged byte, broken chain link, wrong digest or untrusted signature.

Checks, in order: the journal (canonical lines, sequence numbers, the hash chain, HEAD, truncation,
an interrupted write past HEAD), every object (its bytes hash to its name) and every reference to an
object, then each version: record and content digests, the journal head it names, its parent, its
signature against trusted keys only, its chunks (sorted, cut where the chunking rule says), Merkle
roots, weights digest, per-source counts, and its rows (row ids and content hashes recomputed from
the provenance and content tables). Damage is reported, never raised.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import RowtrailError, SigningError
from ..hashing import distinct_sorted, exact_sums, jcs, step_id, weights_sha256
from ..segments import ids_column_to_numpy
from ..versions import signing
from ..versions.journal import State
from ..versions.manifest import CACHE_LEVEL, chunk_cuts, decode_chunk, upper_levels

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class VerifyReport:
    ok: bool = True
    problems: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=lambda: {"journal_entries": 0, "objects": 0, "versions": 0, "signatures": 0, "rows": 0})
    journal_state: str = ""

    def problem(self, what: str, message: str) -> None:
        self.ok = False
        self.problems.append({"object": what, "problem": message})

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "notes": self.notes, "checked": self.checked, "journal_state": self.journal_state}


def _check_journal(store: Store, rep: VerifyReport) -> list[bytes]:
    backend = store.backend
    data = backend.journal_bytes()  # first: on an object store this also re-reads the tip from the remote
    head = backend.read_head()
    if head is None:
        rep.problem("HEAD.json", "missing: the store has no committed journal head")
        return []
    if len(data) < head["bytes"]:
        rep.problem("journal.jsonl", f"truncated: HEAD.json names entry {head['seq']} at {head['bytes']} bytes, the journal has {len(data)} bytes")
    body, tail = data[: head["bytes"]], data[head["bytes"] :]
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        rep.problem("journal.jsonl", "the committed journal does not end with a newline (truncated or edited)")
    prev = None
    good: list[bytes] = []
    for i, line in enumerate(lines):
        where = f"journal.jsonl line {i + 1}"
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            rep.problem(where, f"not JSON ({exc})")
            break
        if jcs(entry) != line:
            rep.problem(where, "not in canonical form: the line was edited")
        if entry.get("seq") != i:
            rep.problem(where, f"sequence number {entry.get('seq')} where {i} belongs (entries removed or reordered)")
        if entry.get("prev") != prev:
            rep.problem(where, "does not chain to the previous entry's digest (an earlier entry was changed or removed)")
        prev = hashlib.sha256(line).hexdigest()
        good.append(line)
    if lines and prev != head.get("digest"):
        rep.problem("HEAD.json", "names a journal digest that is not the last entry's (journal or HEAD was changed)")
    if len(lines) != head.get("seq", -1) + 1:
        rep.problem("HEAD.json", f"says the journal has {head.get('seq', -1) + 1} entries; it has {len(lines)}")
    rep.checked["journal_entries"] = len(lines)
    if tail:
        rep.notes.append(
            f"an interrupted write left {len(tail)} bytes past the journal head; they were never committed, "
            "the store is as it was before that write, and the next write removes them"
        )
        rep.journal_state = "as before an interrupted write"
    else:
        rep.journal_state = "clean"
    return good


def _referenced(state: State) -> dict[str, str]:
    refs: dict[str, str] = {}
    for e in state.entries:
        where = f"journal entry {e['seq']} ({e['kind']})"
        if e["kind"] == "ingest":
            for s in e["segments"]:
                refs[s["provenance"]] = where
                refs[s["content"]] = where
            for k in ("drops", "edges", "quarantine"):
                if e.get(k):
                    refs[e[k]] = where
        elif e["kind"] == "remove" and e.get("drops"):
            refs[e["drops"]] = where
        elif e["kind"] == "optout":
            for k in ("drops", "contents"):
                if e.get(k):
                    refs[e[k]] = where
        elif e["kind"] == "run":
            for digest in (e.get("tables") or {}).values():
                if digest:
                    refs[digest] = where
            for block in e.get("features") or []:
                for k in ("rows", "block"):
                    if block.get(k):
                        refs[block[k]] = where
            for c in e.get("checkpoints") or []:
                for k in ("weights", "delta"):
                    refs[c[k]] = where
        elif e["kind"] == "purge":
            for f in e.get("features") or []:
                refs[f["block"]] = where
            for c in e["segments"]:
                refs[c["content"]] = where
                if c.get("tombstones"):
                    refs[c["tombstones"]] = where
            if e.get("envelope"):
                refs[e["envelope"]] = where
        elif e["kind"] == "receipt":
            for k in ("envelope", "row_ids", "content_hashes"):
                if e.get(k):
                    refs[e[k]] = where
        elif e["kind"] == "commit":
            refs[e["manifest"]] = where
            if e.get("envelope"):
                refs[e["envelope"]] = where
        if e["kind"] == "policy" and e.get("digest"):
            refs[e["digest"]] = where
        if e["kind"] == "guideline.add":  # feedback: a guideline's text; a model's registered outputs
            refs[e["digest"]] = where
        if e["kind"] == "model.add" and e.get("outputs"):
            refs[e["outputs"]] = where
        if e["kind"] in ("pipeline", "commit"):
            for s in e.get("segments") or []:
                refs[s["provenance"]] = where
                refs[s["content"]] = where
            if e.get("run"):
                refs[e["run"]] = where
    return refs


def _run_refs(store: Store, refs: dict[str, str], runs: set[str]) -> None:
    """Objects a pipeline run names: its output records, and per step drops, edges, weights, columns."""
    for digest in sorted(runs):
        try:
            doc = orjson.loads(store.backend.read_bytes(digest))
        except (RowtrailError, orjson.JSONDecodeError, OSError):
            continue  # a damaged run object is reported by the object check
        where = f"pipeline run {digest[:12]}"
        if doc.get("output"):
            refs.setdefault(doc["output"], where)
        for step in (doc.get("steps") or {}).values():
            for k in ("drops", "edges", "weights", "columns"):
                if step.get(k):
                    refs.setdefault(step[k], where)



def _check_objects(store: Store, rep: VerifyReport, only: set[str] | None, progress: Callable[[str, int, int], None] | None) -> set[str]:
    backend = store.backend
    names = list(backend.iter_objects())
    todo = names if only is None else [n for n in names if n in only]
    # the store's bytes (on an object store: the remote's, not a cached copy; fetched concurrently)
    for i, (digest, got) in enumerate(backend.hash_objects(todo)):
        if got != digest:
            rep.problem(f"object {digest}", "damaged: its bytes no longer hash to its name")
        if progress and i % 64 == 0:
            progress("objects", i, len(todo))
    rep.checked["objects"] = len(todo)
    return set(names)


def _check_version(store: Store, rep: VerifyReport, state: State, vid: str, keys: dict[str, Any], allow_unsigned: bool, sample: int | None, present: set[str]) -> None:
    info = state.versions[vid]
    label = f"version {info.tag or vid[:12]}"
    # positions, not sequence numbers: after a removed entry the two disagree (reported with the journal)
    at = next(i for i, e in enumerate(state.entries) if e.get("kind") == "commit" and e.get("version_id") == vid)
    entry = state.entries[at]
    try:
        man = orjson.loads(store.backend.read_bytes(info.manifest))
    except (RowtrailError, orjson.JSONDecodeError) as exc:
        rep.problem(label, f"manifest unreadable: {exc}")
        return
    record = man.get("record", {})
    if record != entry["record"]:
        rep.problem(label, "the manifest's record differs from the journal's")
    if hashlib.sha256(jcs(record)).hexdigest() != vid:
        rep.problem(label, "version id does not match the SHA-256 of its record")
    content = record.get("content", {})
    if hashlib.sha256(jcs(content)).hexdigest() != record.get("content_id"):
        rep.problem(label, "content_id does not match the SHA-256 of its content")
    pipeline = content.get("pipeline") or []
    defs = man.get("steps") or {}
    if sorted(defs) != sorted(pipeline):
        rep.problem(label, "its step definitions do not match the step ids of its pipeline")
    for sid, d in defs.items():
        try:
            ok = step_id(d["name"], d["version"], d["params"], d["code"]) == sid
        except (KeyError, RowtrailError):
            ok = False
        if not ok:
            rep.problem(label, f"step {sid[:12]}'s definition does not hash to its step id")
    expected_head = state.digests[at - 1] if at > 0 else None
    if record.get("journal_head") != expected_head:
        rep.problem(label, "names a journal head that is not the entry before its commit")
    earlier = [state.versions[v] for v in state.version_order if state.versions[v].seq < info.seq and state.versions[v].corpus == info.corpus]
    if record.get("parent") != (earlier[-1].version_id if earlier else None):
        rep.problem(label, "its parent is not the previous head of its corpus")
    # signature
    if info.envelope:
        try:
            env = orjson.loads(store.backend.read_bytes(info.envelope))
            stmt, good = signing.open_envelope(env, keys)
        except (RowtrailError, orjson.JSONDecodeError) as exc:
            rep.problem(label, f"attestation unreadable: {exc}")
        else:
            kids = ", ".join(s.get("keyid", "?")[:16] for s in env.get("signatures", []))
            if not good:
                rep.problem(label, f"signature does not verify with any trusted key (signed by key id {kids}); add the signer's public key with --pubkey or to ROWTRAIL_HOME/trusted_keys")
            else:
                rep.checked["signatures"] += 1
            subj = stmt.get("subject") or [{}]
            if (
                subj[0].get("digest", {}).get("sha256") != vid
                or subj[0].get("name") != f"{info.corpus}@{info.tag or vid}"
                or stmt.get("predicate") != record
                or stmt.get("predicateType") != signing.PREDICATE_TYPE
                or stmt.get("_type") != signing.STATEMENT_TYPE
            ):
                rep.problem(label, "the signed statement does not describe this version")
    elif not allow_unsigned:
        rep.problem(label, "is unsigned (committed with --no-sign); pass --allow-unsigned to accept unsigned versions")
    # rows
    try:
        recs = _load_chunks(store, rep, label, man["rows"]["chunks"], True)
        contents = _load_chunks(store, rep, label, man["contents"]["chunks"], False)
        inputs = recs if man["inputs"]["chunks"] == man["rows"]["chunks"] else _load_chunks(store, rep, label, man["inputs"]["chunks"], True)
    except (RowtrailError, KeyError, ValueError) as exc:
        rep.problem(label, f"chunks unreadable: {exc}")
        return
    if recs is None or contents is None or inputs is None:
        return
    ids = recs["id"]
    if man["rows"].get("level") != CACHE_LEVEL or man["contents"].get("level") != CACHE_LEVEL:
        rep.problem(label, f"its Merkle node cache is not at level {CACHE_LEVEL}")
    root, nodes = upper_levels(ids)
    if root != content.get("merkle_root"):
        rep.problem(label, "merkle_root does not match its rows")
    if man["rows"].get("nodes") in present and store.backend.read_bytes(man["rows"]["nodes"]) != nodes.tobytes():
        rep.problem(label, "the stored Merkle nodes do not match its rows")
    if len(recs) != content.get("row_count"):
        rep.problem(label, f"row_count says {content.get('row_count')}, the chunks hold {len(recs)}")
    weights = recs["w"].astype(np.float64)
    if weights_sha256(ids, weights) != content.get("weights_sha256"):
        rep.problem(label, "weights_sha256 does not match its rows")
    if (inputs is recs and root != content.get("inputs_root")) or (inputs is not recs and upper_levels(inputs["id"])[0] != content.get("inputs_root")):
        rep.problem(label, "inputs_root does not match its inputs")
    croot, cnodes = upper_levels(contents)
    if croot != content.get("content_root"):
        rep.problem(label, "content_root does not match its content hashes")
    if man["contents"].get("nodes") in present and store.backend.read_bytes(man["contents"]["nodes"]) != cnodes.tobytes():
        rep.problem(label, "the stored Merkle nodes do not match its content hashes")
    try:
        hashes, src, names = store.gather(recs, want_sources=True)
    except (RowtrailError, IndexError, OSError) as exc:
        rep.problem(label, f"cannot read its rows' provenance: {exc}")
        return
    distinct = distinct_sorted(hashes)
    if len(distinct) != len(contents) or not np.array_equal(distinct, contents):
        rep.problem(label, "its content hash list is not the distinct content hashes of its rows")
    counts = np.bincount(src, minlength=len(names))
    total, wsum = exact_sums(weights, src, len(names))
    if total != content.get("weight_total"):
        rep.problem(label, "weight_total does not match its rows")
    per_source = {s: [int(counts[i]), float(wsum[i])] for i, s in enumerate(names) if counts[i]}
    if per_source != content.get("per_source"):
        rep.problem(label, "per_source counts do not match its rows")
    _check_run(store, rep, label, man, content, recs)
    _check_rows(store, rep, label, recs, sample, content.get("pipeline") or [])
    rep.checked["versions"] += 1


def _check_run(store: Store, rep: VerifyReport, label: str, man: dict[str, Any], content: dict[str, Any], recs: np.ndarray) -> None:
    """A version built by a pipeline run: the run names the same steps, and its output is the version's rows."""
    from ..versions.manifest import RECORD_DTYPE

    digest = man.get("run")
    if not digest:
        if content.get("pipeline"):
            rep.problem(label, "has pipeline steps but names no run")
        return
    try:
        doc = orjson.loads(store.backend.read_bytes(digest))
        out = np.frombuffer(store.backend.read_bytes(doc["output"]), dtype=RECORD_DTYPE) if doc.get("rows") else np.empty(0, RECORD_DTYPE)
    except (RowtrailError, orjson.JSONDecodeError, KeyError, ValueError) as exc:
        rep.problem(label, f"its pipeline run cannot be read: {exc}")
        return
    if doc.get("pipeline") != content.get("pipeline"):
        rep.problem(label, "its run lists other steps than its pipeline")
    if sorted(man.get("lineage") or {}) != sorted(doc.get("steps") or {}) or any(
        (man["lineage"][sid] or {}).get(k) != doc["steps"][sid].get(k) for sid in (man.get("lineage") or {}) for k in ("drops", "edges", "weights", "columns")
    ):
        rep.problem(label, "its lineage differs from its run's step tables")
    if len(out) != len(recs) or not np.array_equal(out["id"], recs["id"]) or not np.array_equal(out["w"], recs["w"]):
        rep.problem(label, "its rows are not its pipeline run's output")


def _load_chunks(store: Store, rep: VerifyReport, label: str, chunks: list[list[Any]], records: bool) -> np.ndarray | None:
    parts = []
    width = 48 if records else 32
    for digest, count, first, last in chunks:
        raw = store.backend.read_bytes(digest)
        if len(raw) != count * width:
            rep.problem(label, f"chunk {digest[:16]}… holds {len(raw)} bytes, not {count} rows")
            return None
        arr = decode_chunk(raw, records)
        ids = arr["id"] if records else arr
        if count and (ids[:1].tobytes().hex() != first or ids[-1:].tobytes().hex() != last):
            rep.problem(label, f"chunk {digest[:16]}… does not span the range its manifest states")
        parts.append(arr)
    if not parts:
        return decode_chunk(b"", records)
    arr = np.concatenate(parts)
    ids = arr["id"] if records else arr
    if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        rep.problem(label, "ids are not strictly sorted (duplicated or out of order)")
        return None
    cuts = chunk_cuts(ids)
    if [c[1] for c in chunks] != np.diff(np.concatenate([[0], cuts])).tolist():
        rep.problem(label, "chunks are not cut where the chunking rule puts boundaries")
    return arr


def _check_rows(store: Store, rep: VerifyReport, label: str, recs: np.ndarray, sample: int | None, pipeline: list[str] | None = None) -> None:
    """Recompute row ids and content hashes from the provenance and content tables."""
    if sample is not None and sample < len(recs):
        pick = np.array(sorted(random.Random(0).sample(range(len(recs)), sample)), dtype=np.int64)
        recs = recs[pick]
    sha = hashlib.sha256
    for seg in np.unique(recs["seg"]) if len(recs) else []:
        segment = store.state.segments[int(seg)]
        here = recs["seg"] == seg
        order = np.argsort(recs["row"][here], kind="stable")  # row order: a whole segment needs no take
        at = recs["row"][here].astype(np.int64)[order]
        expected = recs["id"][here][order]
        try:
            derived = segment.ingest_id.startswith("step:")
            cols = ["row_id", "source_id", "source_key", "content_sha256", *(["parent_row_id", "step_id"] if derived else [])]
            prov = pq.read_table(store.backend.object_path(segment.provenance), columns=cols)
            cont = pq.read_table(store.backend.object_path(segment.content))
            if not (len(at) == prov.num_rows and bool(np.all(at == np.arange(len(at))))):  # whole segment in order: no take
                prov, cont = prov.take(at), cont.take(at)
        except (OSError, ValueError) as exc:
            rep.problem(f"segment {int(seg)}", f"unreadable: {exc}")
            continue
        rid = ids_column_to_numpy(prov.column("row_id"))
        ch = ids_column_to_numpy(prov.column("content_sha256"))
        if not np.array_equal(rid, expected):
            rep.problem(f"segment {int(seg)}", f"{label} locates rows whose provenance row ids differ")
        crid = ids_column_to_numpy(cont.column("row_id"))
        if not np.array_equal(crid, rid):
            rep.problem(f"segment {int(seg)}", "content table rows are not aligned with provenance rows")
        sids = prov.column("source_id").to_pylist()
        keys = prov.column("source_key").to_pylist()
        chs = [ch[i : i + 1].tobytes() for i in range(len(ch))]
        rids = [rid[i : i + 1].tobytes() for i in range(len(rid))]
        content_col = cont.column("content")
        erased = content_col.is_null().to_numpy(zero_copy_only=False) if content_col.null_count else None
        if erased is not None:  # purged rows: their content is gone; each must be tombstoned
            tomb_ids = _tombstoned(store, store.state, int(seg))
            erased_ids = {rid[i : i + 1].tobytes() for i in np.flatnonzero(erased)}
            if not erased_ids <= tomb_ids:
                rep.problem(f"segment {int(seg)}", f"{len(erased_ids - tomb_ids)} row(s) have no content and no tombstone")
            content_col = content_col.fill_null("")
        got_ch = [sha(b).digest() for b in _utf8_values(content_col)]
        if derived:  # DESIGN format 4: rows a step created
            parents = ids_column_to_numpy(prov.column("parent_row_id"))
            steps_ = prov.column("step_id").to_pylist()
            got_rid = [sha(jcs(["derived", st, [parents[i : i + 1].tobytes().hex()], c.hex()])).digest() for i, (st, c) in enumerate(zip(steps_, chs))]
            if pipeline is not None and not set(steps_) <= set(pipeline):
                rep.problem(f"segment {int(seg)}", f"{label} holds rows derived by a step that is not in its pipeline")
        else:
            got_rid = [sha(jcs([s_, k, c.hex()])).digest() for s_, k, c in zip(sids, keys, chs)]
        bad = sum(1 for k, (a, b, c, d) in enumerate(zip(got_ch, chs, got_rid, rids)) if (a != b and (erased is None or not erased[k])) or c != d)
        if bad:
            rep.problem(f"segment {int(seg)}", f"{bad} row(s) whose row id or content hash does not recompute")
        rep.checked["rows"] += len(at)


def _tombstoned(store: Store, state: State, seg: int) -> set[bytes]:
    out: set[bytes] = set()
    for e in state.entries:
        if e["kind"] == "purge":
            for c in e["segments"]:
                if c["seg"] == seg and c.get("tombstones"):
                    t = pq.read_table(store.backend.object_path(c["tombstones"]), columns=["row_id"])
                    ids = ids_column_to_numpy(t.column("row_id"))
                    out.update(ids[i : i + 1].tobytes() for i in range(len(ids)))
    return out


def _utf8_values(col: pa.ChunkedArray) -> list[memoryview]:
    """The stored bytes of each value of a string column (no decode and re-encode)."""
    arr = col.combine_chunks()
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets: np.ndarray = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    data = memoryview(arr.buffers()[2]) if arr.buffers()[2] is not None else memoryview(b"")
    bounds = offsets.tolist()
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def verify(
    store: Store,
    allow_unsigned: bool = False,
    pubkeys: Sequence[str] | None = None,
    version: str | None = None,
    sample: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> VerifyReport:
    rep = VerifyReport()
    try:
        keys = signing.trusted_keys(list(pubkeys or []))
    except (SigningError, OSError) as exc:
        rep.problem("trusted keys", str(exc))
        keys = {}
    lines = _check_journal(store, rep)
    try:
        state = State.replay(lines)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        rep.problem("journal.jsonl", f"entries cannot be replayed: {exc}")
        return rep
    refs = _referenced(state)
    for vid in state.version_order:
        info = state.versions[vid]
        try:
            man = orjson.loads(store.backend.read_bytes(info.manifest))
        except (RowtrailError, orjson.JSONDecodeError):
            continue  # reported with the version below
        where = f"manifest of version {info.tag or vid[:12]}"
        for part in ("rows", "inputs", "contents"):
            for c in man.get(part, {}).get("chunks", []):
                refs.setdefault(c[0], where)
            if man.get(part, {}).get("nodes"):
                refs.setdefault(man[part]["nodes"], where)
        if man.get("run"):
            refs.setdefault(man["run"], where)
    runs = {e["run"] for e in state.entries if e.get("kind") == "pipeline" and e.get("run")}
    for vid in state.version_order:
        try:
            runs.add(orjson.loads(store.backend.read_bytes(state.versions[vid].manifest)).get("run"))
        except (RowtrailError, orjson.JSONDecodeError):
            pass
    _run_refs(store, refs, {r for r in runs if r})
    only: set[str] | None = None
    if version is not None or sample is not None:
        only = set(refs)
    present = _check_objects(store, rep, only, progress)
    for digest, where in sorted(refs.items()):
        if digest not in present and digest not in state.purged:
            rep.problem(f"object {digest}", f"missing (referenced by {where})")
    from ..search.maintain import check_indexes  # live search indexes: objects present, bound to their version

    for p in check_indexes(store, state):
        rep.problem(p["object"], p["problem"])
    if state.purged:
        rep.checked["purged_tables"] = len(state.purged)
        rep.notes.append(f"{len(state.purged)} content table(s) were purged (content erased, provenance kept); see the purge entries in the journal")
    if version is not None:
        targets = [state.resolve(version).version_id]
    else:
        targets = list(state.version_order)
    for i, vid in enumerate(targets):
        if progress:
            progress("versions", i, len(targets))
        try:
            _check_version(store, rep, state, vid, keys, allow_unsigned, sample, present)
        except Exception as exc:  # damage must be reported, never raised
            rep.problem(f"version {state.versions[vid].tag or vid[:12]}", f"cannot be checked: {type(exc).__name__}: {exc}")
    return rep
