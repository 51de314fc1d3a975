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
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import RowtrailError, SigningError
from ..hashing import ID_DTYPE, jcs, mth, step_id
from ..segments import ids_column_to_numpy
from ..versions import manifest as manifest_mod
from ..versions import signing
from ..versions.journal import State
from ..versions.manifest import CACHE_LEVEL, RECORD_DTYPE, MerkleBuilder, chunk_cuts, decode_chunk, empty_records

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class VerifyReport:
    ok: bool = True
    problems: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=lambda: {"journal_entries": 0, "objects": 0, "versions": 0, "signatures": 0, "rows": 0})
    journal_state: str = ""
    journal_root: dict[str, Any] = field(default_factory=dict)  # the checked journal's RFC 9162 tree head

    def problem(self, what: str, message: str) -> None:
        self.ok = False
        self.problems.append({"object": what, "problem": message})

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "notes": self.notes,
            "checked": self.checked,
            "journal_state": self.journal_state,
            "journal_root": self.journal_root,
        }


def _check_journal(store: Store, rep: VerifyReport) -> list[bytes]:
    backend = store.backend
    data = backend.journal_bytes()  # first: on an object store this also re-reads the tip from the remote
    head = backend.read_head()
    if head is None:
        rep.problem("HEAD.json", "missing: the store has no committed journal head")
        return []
    if len(data) < head["bytes"]:
        rep.problem(
            "journal.jsonl", f"truncated: HEAD.json names entry {head['seq']} at {head['bytes']} bytes, the journal has {len(data)} bytes"
        )
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
        elif e["kind"] == "sign":
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


def _check_signings(store: Store, rep: VerifyReport, state: State, info: Any, commit: dict[str, Any], label: str, latest: dict[str, Any]) -> None:
    """A version's envelopes in journal order (its commit's, then each ``sign`` entry's) keep one
    payload and only ever gain signatures: a later envelope that drops one, or signs something else,
    is reported."""
    chain = [e["envelope"] for e in state.entries if e["kind"] == "sign" and e["version_id"] == info.version_id]
    first = commit.get("envelope")
    digests = ([first] if first else []) + chain
    before: dict[str, Any] | None = None
    for digest in digests:
        try:
            env = latest if digest == info.envelope else orjson.loads(store.backend.read_bytes(digest))
        except (RowtrailError, orjson.JSONDecodeError):
            continue  # a missing or damaged object is reported by the object check
        if before is not None:
            if env.get("payload") and before.get("payload") and signing._b64decode(env["payload"]) != signing._b64decode(before["payload"]):
                rep.problem(label, f"a 'sign' entry's envelope {digest[:12]} signs another statement than the version's first envelope")
            kept = {(s.get("keyid"), s.get("sig")) for s in env.get("signatures", [])}
            if any((s.get("keyid"), s.get("sig")) not in kept for s in before.get("signatures", [])):
                rep.problem(label, f"a 'sign' entry's envelope {digest[:12]} drops a signature the version had")
        before = env


def _check_version(
    store: Store,
    rep: VerifyReport,
    state: State,
    vid: str,
    keys: dict[str, Any],
    allow_unsigned: bool,
    sample: int | None,
    present: set[str],
    threshold: int = 1,
) -> None:
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
    earlier = [
        state.versions[v] for v in state.version_order if state.versions[v].seq < info.seq and state.versions[v].corpus == info.corpus
    ]
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
            _check_signings(store, rep, state, info, entry, label, env)
            if not good and allow_unsigned:  # waived as for an unsigned version; the statement is still checked
                rep.notes.append(f"{label}: signed by key id {kids}, which no trusted key verifies; accepted (--allow-unsigned)")
            elif good and len(good) < threshold:
                rep.problem(
                    label,
                    f"signed by {len(good)} trusted key(s) ({', '.join(k[:16] for k in good)}); --threshold {threshold} asks for {threshold} "
                    "(add signatures with 'rowtrail sign')",
                )
            elif not good:
                rep.problem(
                    label,
                    f"signature does not verify with any trusted key (signed by key id {kids}); add the signer's public key with --pubkey "
                    "or to ROWTRAIL_HOME/trusted_keys, or pass --allow-unsigned to accept versions without a trusted signature",
                )
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
    # rows, streamed: each chunk list is read once in order and checked as it goes; what needs the rows
    # in another order (content hashes, sources, the sampled rows) is kept per segment, 12 B a row
    try:
        rows_chunks, content_chunks, input_chunks = man["rows"]["chunks"], man["contents"]["chunks"], man["inputs"]["chunks"]
        run = _open_run(store, man, content)
        rows = _RowsPass(run, sum(int(c[1]) for c in rows_chunks), sample)
        rows_list = _ChunkStream(store, rep, label, rows_chunks, True)
        for start, batch in rows_list.batches():
            rows.add(start, batch)
        contents = _ChunkStream(store, rep, label, content_chunks, False)
        content_hashes, cbuilder = _load_contents(contents)
        inputs_list, inputs = rows_list, None  # the same list: the rows' root is the inputs' root
        if input_chunks != rows_chunks:
            inputs_list, inputs = _ChunkStream(store, rep, label, input_chunks, True), MerkleBuilder(block=MERKLE_BLOCK)
            for _, batch in inputs_list.batches():
                inputs.add(batch["id"])
    except (RowtrailError, KeyError, ValueError) as exc:
        rep.problem(label, f"chunks unreadable: {exc}")
        return
    if rows_list.failed or contents.failed or inputs_list.failed:
        return
    if man["rows"].get("level") != CACHE_LEVEL or man["contents"].get("level") != CACHE_LEVEL:
        rep.problem(label, f"its Merkle node cache is not at level {CACHE_LEVEL}")
    root, nodes = rows.builder.finish()
    if root != content.get("merkle_root"):
        rep.problem(label, "merkle_root does not match its rows")
    if man["rows"].get("nodes") in present and store.backend.read_bytes(man["rows"]["nodes"]) != nodes.tobytes():
        rep.problem(label, "the stored Merkle nodes do not match its rows")
    if rows.count != content.get("row_count"):
        rep.problem(label, f"row_count says {content.get('row_count')}, the chunks hold {rows.count}")
    if rows.weights.hexdigest() != content.get("weights_sha256"):
        rep.problem(label, "weights_sha256 does not match its rows")
    if (inputs.finish()[0] if inputs is not None else root) != content.get("inputs_root"):
        rep.problem(label, "inputs_root does not match its inputs")
    croot, cnodes = cbuilder.finish()
    if croot != content.get("content_root"):
        rep.problem(label, "content_root does not match its content hashes")
    if man["contents"].get("nodes") in present and store.backend.read_bytes(man["contents"]["nodes"]) != cnodes.tobytes():
        rep.problem(label, "the stored Merkle nodes do not match its content hashes")
    try:
        same, counts, sums = _by_segment(store, rows.segments(), content_hashes)
    except (RowtrailError, IndexError, OSError) as exc:
        rep.problem(label, f"cannot read its rows' provenance: {exc}")
        return
    del content_hashes
    if not same:
        rep.problem(label, "its content hash list is not the distinct content hashes of its rows")
    if sums.total() != content.get("weight_total"):
        rep.problem(label, "weight_total does not match its rows")
    per_source = {s: [counts[s], sums.value(s)] for s in counts if counts[s]}
    if per_source != content.get("per_source"):
        rep.problem(label, "per_source counts do not match its rows")
    _check_run(store, rep, label, man, content, rows)
    pipeline = content.get("pipeline") or []
    if rows.picked is not None:
        _check_rows(store, rep, label, rows.picked, pipeline)
    else:  # every row: a pass over the chunks for each group of segments holding ROWS_PER_PASS rows
        for segs in _segment_groups(rows.per_segment):
            _check_rows(store, rep, label, _rows_in(store, rows_chunks, segs), pipeline)
    rep.checked["versions"] += 1


ROW_BATCH = 1 << 18  # a version's rows read this many at a time (whole chunks: ~12 MB of records)
ROWS_PER_PASS = 1 << 22  # full verify: rows (40 B each) whose provenance one pass over the chunks rechecks
READ_SLAB = 1 << 16  # provenance and content rows read at a time (the row groups holding a range of rows)
MERKLE_BLOCK = 1 << 18  # ids hashed at a time into the Merkle trees (the hashing holds ~200 B a row meanwhile)


class _ChunkStream:
    """A chunk list read in order and checked as it goes: each chunk has the size its count says and
    spans the range its entry states, ids strictly increase over the whole list, and every chunk ends
    exactly where the cut rule puts a boundary (whether an id ends a chunk depends on that id alone, so
    each chunk is checked by itself: its last id must be a cut point unless it ends the list, and no other
    id may be). Problems are reported as ``_load_chunks`` reported them on the concatenated list."""

    def __init__(self, store: Store, rep: VerifyReport, label: str, chunks: list[list[Any]], records: bool):
        self.store, self.rep, self.label, self.chunks, self.records = store, rep, label, chunks, records
        self.failed = False

    def batches(self, size: int = ROW_BATCH) -> Iterator[tuple[int, np.ndarray]]:
        """(position of its first row, rows) for runs of whole chunks of about ``size`` rows."""
        width = 48 if self.records else 32
        prev: bytes | None = None
        ordered = cut = True
        pending: list[np.ndarray] = []
        held = start = 0
        for i, (digest, count, first, last) in enumerate(self.chunks):
            raw = self.store.backend.read_bytes(digest)
            if len(raw) != count * width:
                self.rep.problem(self.label, f"chunk {digest[:16]}… holds {len(raw)} bytes, not {count} rows")
                self.failed = True
                return
            arr = decode_chunk(raw, self.records)
            del raw
            ids = arr["id"] if self.records else arr
            if count and (ids[:1].tobytes().hex() != first or ids[-1:].tobytes().hex() != last):
                self.rep.problem(self.label, f"chunk {digest[:16]}… does not span the range its manifest states")
            if count and ordered:
                ordered = (prev is None or ids[:1].tobytes() > prev) and bool(np.all(ids[1:] > ids[:-1]))
                prev = ids[-1:].tobytes()
            if cut:  # no cut point before the last id; the last id is one, unless it ends the list
                ends_early = count == 0 or len(chunk_cuts(ids)) > 1
                last_cuts = count > 0 and int(np.frombuffer(ids[-1:].tobytes(), dtype=">u4")[7]) % manifest_mod.CHUNK_MODULUS == 0
                cut = not ends_early and (last_cuts or i == len(self.chunks) - 1)
            pending.append(arr)
            held += len(arr)
            if held >= size:
                yield start, pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, start, held = [], start + held, 0
        if pending:
            yield start, pending[0] if len(pending) == 1 else np.concatenate(pending)
        if not ordered:
            self.rep.problem(self.label, "ids are not strictly sorted (duplicated or out of order)")
            self.failed = True
        elif not cut:
            self.rep.problem(self.label, "chunks are not cut where the chunking rule puts boundaries")


def _load_contents(stream: _ChunkStream) -> tuple[np.ndarray, MerkleBuilder]:
    """A version's distinct content hashes, in one array (32 B each: the one list verify holds whole,
    to match each row's content hash against), and their Merkle tree."""
    out = np.empty(sum(int(c[1]) for c in stream.chunks), dtype=ID_DTYPE)
    builder = MerkleBuilder(block=MERKLE_BLOCK)
    for start, batch in stream.batches():
        out[start : start + len(batch)] = batch
        builder.add(out[start : start + len(batch)])
    return out, builder


@dataclass
class _Run:
    """A version's pipeline run: its record, and where its output rows are (read a range at a time)."""

    doc: dict[str, Any] | None = None
    error: str = ""
    output: Any = None
    rows: int = 0

    def output_is(self, start: int, recs: np.ndarray) -> bool:
        """Whether its output rows from ``start`` on are ``recs`` (ids and weights)."""
        if self.output is None:
            return len(recs) == 0
        with open(self.output, "rb") as fh:
            fh.seek(start * RECORD_DTYPE.itemsize)
            out = np.frombuffer(fh.read(len(recs) * RECORD_DTYPE.itemsize), dtype=RECORD_DTYPE)
        return np.array_equal(out["id"], recs["id"]) and np.array_equal(out["w"], recs["w"])


def _open_run(store: Store, man: dict[str, Any], content: dict[str, Any]) -> _Run:
    digest = man.get("run")
    if not digest:
        return _Run()
    try:
        doc = orjson.loads(store.backend.read_bytes(digest))
        if not doc.get("rows"):
            return _Run(doc)
        path = store.backend.object_path(doc["output"])
        size = path.stat().st_size
    except (RowtrailError, orjson.JSONDecodeError, KeyError, OSError) as exc:
        return _Run(error=str(exc))
    if size % RECORD_DTYPE.itemsize:
        return _Run(error=f"its output of {size} bytes is not a whole number of {RECORD_DTYPE.itemsize}-byte rows")
    return _Run(doc, output=path, rows=size // RECORD_DTYPE.itemsize)


class _Sums:
    """Per-key sums of float64 weights fed in pieces, correctly rounded as ``hashing.exact_sums`` rounds
    them over all weights at once: each key keeps its exact running sum as a few floats (``math.fsum``
    of everything so far, then fsums of what that left over, until nothing is)."""

    def __init__(self) -> None:
        self.parts: dict[Any, list[float]] = {}

    def add(self, key: Any, weights: np.ndarray) -> None:
        if len(weights) == 0:
            return
        if bool(np.all(weights == np.round(weights))) and float(np.abs(weights).sum()) < 2**53:
            values = [float(weights.sum())]  # integers below 2^53: the float sum is exact
        else:
            values = weights.tolist()
        self.parts[key] = _exact(self.parts.get(key, []) + values)

    def value(self, key: Any) -> float:
        return math.fsum(self.parts.get(key, []))

    def total(self) -> float:
        return math.fsum([x for part in self.parts.values() for x in part])


def _exact(values: list[float]) -> list[float]:
    """A few floats whose exact sum is the exact sum of ``values`` (each fsum is the correctly rounded
    rest, so the rest shrinks below the last one's rounding error at every step)."""
    out: list[float] = []
    rest = math.fsum(values)
    while rest != 0.0:
        out.append(rest)
        if not math.isfinite(rest):
            break
        rest = math.fsum(values + [-x for x in out])
    return out


class _RowsPass:
    """What one pass over a version's rows, in id order, computes: the Merkle tree, weights_sha256, the
    run-output comparison, the sampled rows, and each row's (row, weight) filed under its segment."""

    def __init__(self, run: _Run, total: int, sample: int | None):
        self.run = run
        self.builder = MerkleBuilder(block=MERKLE_BLOCK)
        self.weights = hashlib.sha256()
        self.count = 0
        self.run_matches = run.rows == total
        self.per_segment: dict[int, int] = {}
        self._by_seg: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._pick: np.ndarray | None = None
        self._picked: list[np.ndarray] = []
        if sample is not None and sample < total:
            self._pick = np.array(sorted(random.Random(0).sample(range(total), sample)), dtype=np.int64)

    def add(self, start: int, recs: np.ndarray) -> None:
        ids = recs["id"]
        self.builder.add(ids)
        pair = np.empty(len(recs), dtype=[("id", "S32"), ("w", ">f8")])  # weights_sha256's bytes
        pair["id"], pair["w"] = ids, recs["w"]
        self.weights.update(memoryview(pair).cast("B"))  # type: ignore[arg-type]  # numpy's stubs give ndarray __buffer__ only for Python >= 3.12
        del pair
        if self.run_matches:
            self.run_matches = self.run.output_is(start, recs)
        order = np.argsort(recs["seg"], kind="stable")
        for part in np.split(order, np.flatnonzero(np.diff(recs["seg"][order])) + 1):
            seg = int(recs["seg"][part[0]])
            self._by_seg.setdefault(seg, []).append((recs["row"][part].astype(np.uint32), recs["w"][part].astype(np.float64)))
            self.per_segment[seg] = self.per_segment.get(seg, 0) + len(part)
        if self._pick is not None:
            lo, hi = np.searchsorted(self._pick, [start, start + len(recs)])
            self._picked.append(recs[self._pick[lo:hi] - start])
        self.count += len(recs)

    @property
    def picked(self) -> np.ndarray | None:
        """The sampled rows, in id order (None: no sample, every row is checked)."""
        if self._pick is None:
            return None
        return np.concatenate(self._picked) if self._picked else empty_records()

    def segments(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(segment, row indexes, weights) in segment order, each segment's pieces let go once read."""
        for seg in sorted(self._by_seg):
            parts = self._by_seg.pop(seg)
            rows, weights = np.concatenate([r for r, _ in parts]), np.concatenate([w for _, w in parts])
            del parts
            yield seg, rows, weights


def _by_segment(
    store: Store, segments: Iterator[tuple[int, np.ndarray, np.ndarray]], contents: np.ndarray
) -> tuple[bool, dict[Any, int], _Sums]:
    """One segment at a time: whether the rows' content hashes are exactly ``contents`` (sorted,
    distinct), and the rows and weights per source."""
    prefix = contents.view(">u8").reshape(-1, 4)[:, 0].astype(np.uint64)  # native: searchsorted would byte-swap a copy per call
    used = np.zeros(len(contents), dtype=bool)
    same = True
    counts: dict[Any, int] = {}
    sums = _Sums()
    for seg, rows, weights in segments:
        segment = store.state.segments[seg]
        col = pq.read_table(store.backend.object_path(segment.provenance), columns=["content_sha256"]).column("content_sha256")
        hashes = ids_column_to_numpy(col)[rows.astype(np.int64)]
        del col
        if same:
            at = _find(contents, prefix, hashes)
            same = bool(np.all(at >= 0))
            used[at[at >= 0]] = True
        if len(segment.sources) == 1:
            sid = segment.sources[0]
            counts[sid] = counts.get(sid, 0) + len(rows)
            sums.add(sid, weights)
            continue
        local, values = store.segment_codes(seg, "source_id")
        codes = local[rows.astype(np.int64)]
        order = np.argsort(codes, kind="stable")
        for part in np.split(order, np.flatnonzero(np.diff(codes[order])) + 1):
            if len(part):
                sid = values[int(codes[part[0]])]
                counts[sid] = counts.get(sid, 0) + len(part)
                sums.add(sid, weights[part])
    return same and bool(np.all(used)), counts, sums


def _find(contents: np.ndarray, prefix: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Position of each hash in the sorted ``contents``, or -1: by its first 8 bytes, then (for the few
    whose first 8 bytes are shared or absent) by all 32."""
    if len(contents) == 0:
        return np.full(len(hashes), -1, dtype=np.int64)
    probe = np.ascontiguousarray(hashes, dtype=ID_DTYPE).view(">u8").reshape(-1, 4)[:, 0].astype(np.uint64)
    order = np.argsort(probe)  # sorted probes search ~10× faster (each starts where the last ended)
    at = np.empty(len(probe), dtype=np.int64)
    at[order] = np.minimum(np.searchsorted(prefix, probe[order]), len(contents) - 1)
    miss = np.flatnonzero(contents[at] != hashes)
    if len(miss):
        again = np.minimum(np.searchsorted(contents, hashes[miss]), len(contents) - 1)
        at[miss] = np.where(contents[again] == hashes[miss], again, -1)
    return at


def _check_run(
    store: Store, rep: VerifyReport, label: str, man: dict[str, Any], content: dict[str, Any], rows: np.ndarray | _RowsPass
) -> None:
    """A version built by a pipeline run: the run names the same steps, and its output is the version's
    rows (``rows``: the records, or the pass over them that already compared them with the output)."""
    if isinstance(rows, np.ndarray):
        run = _open_run(store, man, content)
        matches = run.rows == len(rows) and run.output_is(0, rows)
    else:
        run, matches = rows.run, rows.run_matches
    if not man.get("run"):
        if content.get("pipeline"):
            rep.problem(label, "has pipeline steps but names no run")
        return
    if run.doc is None:
        rep.problem(label, f"its pipeline run cannot be read: {run.error}")
        return
    doc = run.doc
    if doc.get("pipeline") != content.get("pipeline"):
        rep.problem(label, "its run lists other steps than its pipeline")
    if sorted(man.get("lineage") or {}) != sorted(doc.get("steps") or {}) or any(
        (man["lineage"][sid] or {}).get(k) != doc["steps"][sid].get(k)
        for sid in (man.get("lineage") or {})
        for k in ("drops", "edges", "weights", "columns")
    ):
        rep.problem(label, "its lineage differs from its run's step tables")
    if not matches:
        rep.problem(label, "its rows are not its pipeline run's output")


def _segment_groups(per_segment: dict[int, int]) -> Iterator[set[int]]:
    """Segments in order, grouped so a group's rows stay near ``ROWS_PER_PASS`` (a bigger one alone)."""
    group: set[int] = set()
    held = 0
    for seg in sorted(per_segment):
        if group and held + per_segment[seg] > ROWS_PER_PASS:
            yield group
            group, held = set(), 0
        group.add(seg)
        held += per_segment[seg]
    if group:
        yield group


def _rows_in(store: Store, chunks: list[list[Any]], segs: set[int]) -> np.ndarray:
    """The version's rows (already checked) that live in ``segs``, in id order: one pass over its chunks."""
    want = np.zeros(max(segs) + 1, dtype=bool)
    want[list(segs)] = True
    parts = []
    for digest, *_ in chunks:
        recs = decode_chunk(store.backend.read_bytes(digest), True)
        seg = recs["seg"].astype(np.int64)
        keep = want[np.minimum(seg, len(want) - 1)] & (seg < len(want))
        parts.append(recs[keep])
    return np.concatenate(parts) if parts else decode_chunk(b"", True)


def _read_rows(path: Any, at: np.ndarray, columns: list[str] | None) -> pa.Table:
    """Rows ``at`` (sorted) of a Parquet table, reading only the row groups that hold them."""
    pf = pq.ParquetFile(path)
    sizes = np.array([pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)], dtype=np.int64)
    ends = np.cumsum(sizes)
    if len(at) and int(at[-1]) >= (int(ends[-1]) if len(ends) else 0):
        raise ValueError(f"row {int(at[-1])} is past the table's {int(ends[-1]) if len(ends) else 0} rows")
    group = np.searchsorted(ends, at, side="right")
    groups = np.unique(group)
    table = pf.read_row_groups(groups.tolist(), columns=columns)
    offsets = np.cumsum(sizes[groups]) - sizes[groups]  # where each read group starts in ``table``
    local = at - (ends[group] - sizes[group]) + offsets[np.searchsorted(groups, group)]
    if len(local) == table.num_rows and bool(np.all(local == np.arange(len(local)))):
        return table  # every row of the groups read, in order: no take
    return table.take(local)


def _check_rows(store: Store, rep: VerifyReport, label: str, recs: np.ndarray, pipeline: list[str] | None = None) -> None:
    """Recompute row ids and content hashes from the provenance and content tables, a segment at a
    time and within a segment ``READ_SLAB`` rows' range at a time (only the row groups holding them)."""
    for seg in np.unique(recs["seg"]) if len(recs) else []:
        segment = store.state.segments[int(seg)]
        here = recs["seg"] == seg
        order = np.argsort(recs["row"][here], kind="stable")  # row order
        at = recs["row"][here].astype(np.int64)[order]
        expected = recs["id"][here][order]
        derived = segment.ingest_id.startswith("step:")
        cols = ["row_id", "source_id", "source_key", "content_sha256", *(["parent_row_id", "step_id"] if derived else [])]
        found = _SegmentCheck()
        bounds = np.flatnonzero(np.diff(at // READ_SLAB)) + 1
        try:
            for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(at)]):
                prov = _read_rows(store.backend.object_path(segment.provenance), at[lo:hi], cols)
                cont = _read_rows(store.backend.object_path(segment.content), at[lo:hi], None)
                found.add(prov, cont, expected[lo:hi], derived, pipeline)
        except (OSError, ValueError) as exc:
            rep.problem(f"segment {int(seg)}", f"unreadable: {exc}")
            continue
        where = f"segment {int(seg)}"
        if found.ids_differ:
            rep.problem(where, f"{label} locates rows whose provenance row ids differ")
        if found.misaligned:
            rep.problem(where, "content table rows are not aligned with provenance rows")
        if found.erased:  # purged rows: their content is gone; each must be tombstoned
            tomb_ids = _tombstoned(store, store.state, int(seg))
            if not found.erased <= tomb_ids:
                rep.problem(where, f"{len(found.erased - tomb_ids)} row(s) have no content and no tombstone")
        if found.foreign_steps:
            rep.problem(where, f"{label} holds rows derived by a step that is not in its pipeline")
        if found.bad:
            rep.problem(where, f"{found.bad} row(s) whose row id or content hash does not recompute")
        rep.checked["rows"] += len(at)


@dataclass
class _SegmentCheck:
    """What the row checks of one segment found so far, over its slabs."""

    ids_differ: bool = False
    misaligned: bool = False
    foreign_steps: bool = False
    bad: int = 0
    erased: set[bytes] = field(default_factory=set)

    def add(self, prov: pa.Table, cont: pa.Table, expected: np.ndarray, derived: bool, pipeline: list[str] | None) -> None:
        sha = hashlib.sha256
        rid = ids_column_to_numpy(prov.column("row_id"))
        ch = ids_column_to_numpy(prov.column("content_sha256"))
        if not np.array_equal(rid, expected):
            self.ids_differ = True
        crid = ids_column_to_numpy(cont.column("row_id"))
        if not np.array_equal(crid, rid):
            self.misaligned = True
        chs = [ch[i : i + 1].tobytes() for i in range(len(ch))]
        rids = [rid[i : i + 1].tobytes() for i in range(len(rid))]
        content_col = cont.column("content")
        erased = content_col.is_null().to_numpy(zero_copy_only=False) if content_col.null_count else None
        if erased is not None:
            self.erased.update(rid[i : i + 1].tobytes() for i in np.flatnonzero(erased))
            content_col = content_col.fill_null("")
        got_ch = [sha(b).digest() for b in _utf8_values(content_col)]
        if derived:  # DESIGN format 4: rows a step created
            parents = ids_column_to_numpy(prov.column("parent_row_id"))
            steps_ = prov.column("step_id").to_pylist()
            got_rid = [
                sha(jcs(["derived", st, [parents[i : i + 1].tobytes().hex()], c.hex()])).digest()
                for i, (st, c) in enumerate(zip(steps_, chs))
            ]
            if pipeline is not None and not set(steps_) <= set(pipeline):
                self.foreign_steps = True
        else:
            sids = prov.column("source_id").to_pylist()
            keys = prov.column("source_key").to_pylist()
            got_rid = [sha(jcs([s_, k, c.hex()])).digest() for s_, k, c in zip(sids, keys, chs)]
        self.bad += sum(
            1 for k, (a, b, c, d) in enumerate(zip(got_ch, chs, got_rid, rids)) if (a != b and (erased is None or not erased[k])) or c != d
        )


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
    threshold: int = 1,
) -> VerifyReport:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ValueError(f"threshold is a number of distinct trusted keys (≥ 1), not {threshold!r}")
    rep = VerifyReport()
    try:
        keys = signing.trusted_keys(list(pubkeys or []))
    except (SigningError, OSError) as exc:
        rep.problem("trusted keys", str(exc))
        keys = {}
    lines = _check_journal(store, rep)
    # the head of what was just checked: kept, it lets a later 'journal prove' show history only grew
    rep.journal_root = {"tree_size": len(lines), "root": mth(lines).hex()}
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
        rep.notes.append(
            f"{len(state.purged)} content table(s) were purged (content erased, provenance kept); see the purge entries in the journal"
        )
    if version is not None:
        targets = [state.resolve(version).version_id]
    else:
        targets = list(state.version_order)
    for i, vid in enumerate(targets):
        if progress:
            progress("versions", i, len(targets))
        try:
            _check_version(store, rep, state, vid, keys, allow_unsigned, sample, present, threshold)
        except Exception as exc:  # damage must be reported, never raised
            rep.problem(f"version {state.versions[vid].tag or vid[:12]}", f"cannot be checked: {type(exc).__name__}: {exc}")
    return rep
