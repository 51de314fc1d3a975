"""Opt-out: remove a consent holder's rows — and everything derived from them — from a corpus, commit
the new version, keep the request in the opt-out register, and issue a signed removal receipt.

One hold of the write lock, three journal entries:

1. ``optout``: the request (id, reason, criteria, duplicate policy) and the removal it stages — a
   drops table of the matched input rows (reason code ``opt-out``) and the content hashes it covers.
   From this entry on, ``ingest`` refuses rows whose ``content_sha256`` is in the register.
2. ``commit``: the new version; the corpus pipeline runs again over the smaller input set, so rows
   steps derived from removed rows (rewrites, splits) are gone too, and a duplicate that only
   survived as the removed row's merge partner is decided anew.
3. ``receipt``: the signed removal receipt (a DSSE envelope around an in-toto Statement whose
   predicate is the receipt): the request, the number and Merkle root of the removed row ids and of
   their content hashes, and the old and new version ids. Every removed id and content hash can then
   be proven absent from the new version (``rowtrail prove ROW V --absent [--content]``).

A crash between entries leaves a consistent store: after (1) the removal is staged and the request
registered (``rowtrail commit`` finishes it); after (2) the version exists without its receipt.

Matching: ``source`` (every row of a source), ``key`` (a source key; with ``source`` when several
sources share keys), ``content_hash`` (a content SHA-256, matched on the input rows and on rows steps
derived — which lead back to the input rows they came from), or ``match`` (a SQL predicate over the
``rows`` view, from the user's own command line). Rows with the same content under another source
(duplicates) are named, and removed (``duplicates="include"``) or kept (``"keep"``); with neither,
the opt-out stops and says which.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..errors import OptOutError, RefError, SigningError, VerificationError
from ..hashing import ID_DTYPE, distinct_sorted, ids_from_hex, ids_hex, jcs, merkle_root
from ..segments import ids_column_to_numpy, numpy_to_ids_column
from ..versions import signing
from ..versions.journal import now_rfc3339
from .ingest import _drops, _put_table
from .inputs import current_inputs, read_id_table

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.journal import State

RECEIPT_FORMAT = "rowtrail.removal-receipt/1"
RECEIPT_PREDICATE = "https://rowtrail.dev/attestation/removal-receipt/v1"


def _input_mask(store: Store, state: State, inputs: np.ndarray, *, source: str | None, key: str | None, content_hash: str | None, match: str | None) -> np.ndarray:
    from .remove import rows_of_source

    mask = np.zeros(len(inputs), dtype=bool)
    if source is not None:
        store.sources.get(source, state=state)
        mask = rows_of_source(store, inputs, source)
    if key is not None:
        keys = _column(store, inputs, "source_key")
        by_key = keys == key
        mask = (mask & by_key) if source is not None else by_key
    if content_hash is not None:
        try:
            probe = ids_from_hex([content_hash.strip().lower()])[0]
        except ValueError:
            raise RefError(f"content hash {content_hash!r} is not 64 hex digits") from None
        hashes, _, _ = store.gather(inputs)
        hit = hashes == probe
        mask |= hit | _ancestors_of_derived(store, state, inputs, probe)
    if match is not None:
        table = store.sql(f"SELECT row_id FROM rows WHERE {match}")
        wanted = ids_from_hex(table.column("row_id").to_pylist()) if table.num_rows else np.empty(0, ID_DTYPE)
        mask |= np.isin(inputs["id"], wanted)
    return mask


def _column(store: Store, records: np.ndarray, column: str) -> np.ndarray:
    out = np.empty(len(records), dtype=object)
    for seg in np.unique(records["seg"]) if len(records) else []:
        here = np.flatnonzero(records["seg"] == seg)
        out[here] = store.segment_column(int(seg), column)[records["row"][here].astype(np.int64)]
    return out


def _ancestors_of_derived(store: Store, state: State, inputs: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Input rows from which a step derived a row of the head version with content ``probe``."""
    mask = np.zeros(len(inputs), dtype=bool)
    for seg in state.segments:
        if not seg.ingest_id.startswith("step:"):
            continue
        ch = store.segment_column(seg.seg, "content_sha256")
        at = np.flatnonzero(ch == probe)
        if not len(at):
            continue
        # a derived row keeps its root ancestor's source and key (its provenance is copied)
        sources = store.segment_column(seg.seg, "source_id")[at]
        keys = store.segment_column(seg.seg, "source_key")[at]
        pairs = set(zip(sources.tolist(), keys.tolist()))
        in_src = _column(store, inputs, "source_id")
        in_key = _column(store, inputs, "source_key")
        mask |= np.array([(s, k) in pairs for s, k in zip(in_src, in_key)], dtype=bool)
    return mask


def registered_hashes(store: Store, state: State | None = None) -> tuple[np.ndarray, list[str]]:
    """Sorted content hashes in the opt-out register, and for each the request id that holds it."""
    state = state or store.state
    parts, owners = [], []
    for e in state.entries:
        if e["kind"] == "optout" and e.get("contents"):
            h = read_id_table(store, e["contents"], "content_sha256")
            parts.append(h)
            owners.extend([e["request"]["id"]] * len(h))
    if not parts:
        return np.empty(0, ID_DTYPE), []
    hashes = np.concatenate(parts)
    order = np.argsort(hashes, kind="stable")
    return hashes[order], [owners[i] for i in order]


def register(store: Store) -> list[dict[str, Any]]:
    """The opt-out register: every request, its criteria, counts and receipt."""
    state = store.state
    receipts = {e["request_id"]: e for e in state.entries if e["kind"] == "receipt"}
    out = []
    for e in state.entries:
        if e["kind"] != "optout":
            continue
        r = receipts.get(e["request"]["id"], {})
        out.append({**e["request"], "corpus": e["corpus"], "rows": e["rows"], "contents": e["content_count"], "seq": e["seq"], "at": e["at"], "new_version": r.get("new_version"), "receipt": r.get("envelope")})
    return out


def optout(
    store: Store,
    *,
    reason: str,
    source: str | None = None,
    key: str | None = None,
    content_hash: str | None = None,
    match: str | None = None,
    duplicates: str | None = None,
    corpus: str = "main",
    tag: str | None = None,
    message: str | None = None,
    sign: bool = True,
    key_name: str | None = None,
    steps: Any = None,
    purge: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Remove the matching rows and their descendants, commit, register the request; returns the
    receipt (``receipt``), its DSSE ``envelope`` (None when ``sign=False``) and the new version id.
    With ``purge``, the removed rows' content is also erased from the store (``purge_locked``)."""
    from .commit import commit_locked

    if not reason or not reason.strip():
        raise OptOutError("an opt-out needs --reason (e.g. 'consent withdrawn, ticket 4711')")
    if source is None and key is None and content_hash is None and match is None:
        raise OptOutError("say what to remove: --source S, --key K, --content-hash H or --match SQL")
    if duplicates not in (None, "include", "keep"):
        raise OptOutError("duplicates is 'include' or 'keep'")
    from .apply import rebuild

    signing_key = signing.load_signing_key(key_name) if sign else None
    if steps is not None:  # live step objects (e.g. from the user's pipeline file) for user functions
        store._applied[corpus] = list(getattr(steps, "steps", steps))
    with store._write() as state:
        if state.pipelines.get(corpus):
            rebuild(store, state, corpus)  # fails now, before anything is written, if a step cannot run
        inputs = current_inputs(store, state, corpus)
        mask = _input_mask(store, state, inputs, source=source, key=key, content_hash=content_hash, match=match)
        if not mask.any():
            raise OptOutError(f"no row of corpus '{corpus}' matches this opt-out; nothing to remove (see 'rowtrail rows' / 'rowtrail sql')")
        hashes, src_idx, src_names = store.gather(inputs, want_sources=True)
        removed_hashes = distinct_sorted(hashes[mask])
        twins = np.isin(hashes, removed_hashes) & ~mask
        kept_twins = 0
        if twins.any():
            where = sorted({src_names[i] for i in src_idx[twins]})
            if duplicates is None:
                raise OptOutError(
                    f"{int(twins.sum())} other row(s) hold the same content under source(s) {', '.join(where)}: "
                    "add --include-duplicates to remove them too, or --keep-duplicates to keep them"
                )
            if duplicates == "include":
                mask |= twins
            else:
                kept_twins = int(twins.sum())
        old_version = state.heads.get(corpus)
        old_rows = store.version_rows(old_version) if old_version else None
        removed_inputs = inputs["id"][mask]
        request = {
            "id": "opt-" + secrets.token_hex(8),
            "reason": reason.strip(),
            "criteria": {k: v for k, v in (("source", source), ("key", key), ("content_hash", content_hash), ("match", match)) if v is not None},
            "duplicates": duplicates,
            "requested_at": now_rfc3339(),
        }
        drops = _put_table(store, _drops(numpy_to_ids_column(removed_inputs), "opt-out", f"opt-out {request['id']}: {request['reason']}"))
        contents = _put_table(store, pa.table({"content_sha256": numpy_to_ids_column(removed_hashes)}))
        store._append(
            state,
            {"kind": "optout", "corpus": corpus, "request": request, "drops": drops, "rows": int(mask.sum()), "contents": contents, "content_count": int(len(removed_hashes))},
        )
        vid = commit_locked(store, state, message or f"opt-out {request['id']}: {request['reason']}", tag=tag, corpus=corpus, signing_key=signing_key, progress=progress)
        new_rows = store.version_rows(vid)
        gone = _gone(store, old_rows, new_rows, inputs[mask]) if old_rows is not None else removed_inputs
        gone_hashes, _, _ = store.gather(old_rows[np.isin(old_rows["id"], gone)]) if old_rows is not None else (removed_hashes, None, None)
        new_content = store.version(vid).content
        absent = distinct_sorted(np.concatenate([removed_hashes, gone_hashes]))
        still = np.isin(absent, distinct_sorted(store.gather(new_rows)[0]))
        gone_sorted = distinct_sorted(np.concatenate([gone, removed_inputs]).astype(ID_DTYPE))  # derived rows and their inputs
        receipt = {
            "format": RECEIPT_FORMAT,
            "request": request,
            "corpus": corpus,
            "old_version": old_version,
            "new_version": vid,
            "new_merkle_root": new_content["merkle_root"],
            "new_content_root": new_content["content_root"],
            "removed": {
                "rows": int(len(gone_sorted)),
                "row_ids_root": merkle_root(gone_sorted),
                "content_hashes": int((~still).sum()),
                "content_root": merkle_root(absent[~still]),
            },
            "kept_duplicates": {"rows": kept_twins, "content_hashes": int(still.sum())},
        }
        from .runs import run_entries

        consumed_by = []
        for run in run_entries(store):
            t = _run_steps(store, run)
            if t is not None and np.isin(t, gone_sorted).any():
                consumed_by.append({"run_id": run["run_id"], "version_id": run["version_id"], "rows": int(np.isin(t, gone_sorted).sum())})
        receipt["runs_that_consumed"] = consumed_by
        ids_obj = store.backend.put_bytes(gone_sorted.tobytes())
        hashes_obj = store.backend.put_bytes(absent[~still].tobytes())
        envelope = None
        env_digest = None
        if signing_key is not None:
            envelope = signing.sign_envelope(receipt_statement(receipt), signing_key)
            env_digest = store.backend.put_bytes(jcs(envelope))
        store._append(
            state,
            {"kind": "receipt", "corpus": corpus, "request_id": request["id"], "receipt": receipt, "envelope": env_digest, "row_ids": ids_obj, "content_hashes": hashes_obj, "new_version": vid},
        )
        purged = purge_locked(store, state, request, gone_sorted, signing_key) if purge else None
    return {
        "purged": purged,"receipt": receipt, "envelope": envelope, "version_id": vid, "removed_ids": ids_hex(gone_sorted), "removed_content_hashes": ids_hex(absent[~still])}


def _gone(store: Store, old_rows: np.ndarray, new_rows: np.ndarray, removed_inputs: np.ndarray) -> np.ndarray:
    """Rows of the old version that the removal took away: the removed inputs and the rows steps
    derived from them (a derived row keeps its root ancestor's source and key)."""
    gone = old_rows["id"][~np.isin(old_rows["id"], new_rows["id"])]
    if not len(gone):
        return gone.astype(ID_DTYPE)
    gone_recs = old_rows[np.isin(old_rows["id"], gone)]
    direct = np.isin(gone_recs["id"], removed_inputs["id"])
    pairs = set(zip(_column(store, removed_inputs, "source_id").tolist(), _column(store, removed_inputs, "source_key").tolist()))
    src = _column(store, gone_recs, "source_id")
    keys = _column(store, gone_recs, "source_key")
    derived = np.array([(s, k) in pairs for s, k in zip(src, keys)], dtype=bool)
    return gone_recs["id"][direct | derived].astype(ID_DTYPE)


def _run_steps(store: Store, run: dict[str, Any]) -> np.ndarray | None:
    import pyarrow.parquet as pq

    digest = (run.get("tables") or {}).get("steps")
    if not digest:
        return None
    return ids_column_to_numpy(pq.read_table(store.backend.object_path(digest), columns=["row_id"]).column("row_id"))


def receipt_statement(receipt: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(jcs(receipt)).hexdigest()
    return {
        "_type": signing.STATEMENT_TYPE,
        "subject": [{"name": f"{receipt['corpus']}@{receipt['new_version']}:{receipt['request']['id']}", "digest": {"sha256": digest}}],
        "predicateType": RECEIPT_PREDICATE,
        "predicate": receipt,
    }


def verify_receipt(envelope: dict[str, Any], pubkeys: list[str] | None = None, store: Store | None = None) -> dict[str, Any]:
    """Check a removal receipt: a trusted signature, the subject digest over the receipt, and —
    with the store at hand — the new version's roots and that every removed id is absent from it.
    Returns the receipt; raises VerificationError naming the first failure."""
    keys = signing.trusted_keys(list(pubkeys or []))
    try:
        stmt, good = signing.open_envelope(envelope, keys)
    except SigningError as exc:
        raise VerificationError(f"receipt envelope: {exc}") from None
    if not good:
        raise VerificationError("the receipt's signature does not verify with any trusted key (see 'rowtrail keygen' / --pubkey)")
    if stmt.get("predicateType") != RECEIPT_PREDICATE:
        raise VerificationError(f"not a removal receipt (predicateType {stmt.get('predicateType')!r})")
    receipt = stmt.get("predicate") or {}
    digest = hashlib.sha256(jcs(receipt)).hexdigest()
    if [s.get("digest", {}).get("sha256") for s in stmt.get("subject", [])] != [digest]:
        raise VerificationError("the receipt's subject digest does not match its content")
    if store is not None:
        state = store.state
        vid = receipt.get("new_version")
        if vid not in state.versions:
            raise VerificationError(f"the receipt names version {vid}, which this store does not hold")
        content = store.version(vid).content
        if content["merkle_root"] != receipt.get("new_merkle_root") or content["content_root"] != receipt.get("new_content_root"):
            raise VerificationError("the receipt's roots differ from its version's")
        entry = next((e for e in state.entries if e["kind"] == "receipt" and e["request_id"] == receipt["request"]["id"]), None)
        if entry is None:
            raise VerificationError("this store has no record of the receipt's request")
        ids = np.frombuffer(store.backend.read_bytes(entry["row_ids"]), dtype=ID_DTYPE)
        if merkle_root(ids) != receipt["removed"]["row_ids_root"] or len(ids) != receipt["removed"]["rows"]:
            raise VerificationError("the removed row ids on record do not match the receipt")
        if len(ids) and np.isin(ids, store.version_rows(vid)["id"]).any():
            raise VerificationError("a row the receipt says was removed is still in its version")
        hashes = np.frombuffer(store.backend.read_bytes(entry["content_hashes"]), dtype=ID_DTYPE)
        if merkle_root(hashes) != receipt["removed"]["content_root"]:
            raise VerificationError("the removed content hashes on record do not match the receipt")
        present = distinct_sorted(store.gather(store.version_rows(vid))[0])
        if len(hashes) and np.isin(hashes, present).any():
            raise VerificationError("content the receipt says was removed is still in its version")
    return receipt


def refused_rows(store: Store, state: State, provenance_paths: list[str]) -> list[tuple[str, int, str]]:
    """Rows of freshly written provenance files whose content is in the opt-out register:
    (file, line, request id) for each."""
    hashes, owners = registered_hashes(store, state)
    if not len(hashes) or not provenance_paths:
        return []
    import pyarrow.parquet as pq

    out: list[tuple[str, int, str]] = []
    for path in provenance_paths:
        t = pq.read_table(path, columns=["content_sha256", "origin_file", "origin_line"])
        ch = ids_column_to_numpy(t.column("content_sha256"))
        pos = np.searchsorted(hashes, ch)
        pos[pos >= len(hashes)] = 0
        hit = np.flatnonzero(hashes[pos] == ch)
        if len(hit):
            files = t.column("origin_file").take(pa.array(hit)).to_pylist()
            lines = t.column("origin_line").take(pa.array(hit)).to_pylist()
            out.extend((f, int(ln), owners[int(pos[i])]) for f, ln, i in zip(files, lines, hit))
    return out


def receipt_of(store: Store, request_id: str) -> dict[str, Any]:
    """The stored receipt and envelope of a request."""
    for e in store.state.entries:
        if e["kind"] == "receipt" and e["request_id"] == request_id:
            env = orjson.loads(store.backend.read_bytes(e["envelope"])) if e.get("envelope") else None
            return {"receipt": e["receipt"], "envelope": env}
    raise RefError(f"no opt-out receipt for request '{request_id}'; see 'rowtrail optout --list'")



PURGE_PREDICATE = "https://rowtrail.dev/attestation/purge/v1"


def purge_locked(store: Store, state: State, request: dict[str, Any], row_ids: np.ndarray, signing_key: Any) -> dict[str, Any]:
    """Erase the content of the given rows from every segment that holds them: each affected content
    table is rewritten with those rows' ``content`` set to null, a tombstone table (row id, content
    hash, reason) and a signed purge statement record what was erased, one ``purge`` journal entry
    makes the new tables current, and the old tables' bytes are deleted. Provenance (ids, hashes,
    source, key) is untouched, so every digest a version depends on still verifies."""
    import pyarrow.parquet as pq

    from ..segments import CONTENT_ROW_GROUP_ROWS, PARQUET_OPTS

    changes: list[dict[str, Any]] = []
    wanted = np.sort(row_ids.astype(ID_DTYPE))
    for segment in list(state.segments):
        ids = store.segment_column(segment.seg, "row_id")
        pos = np.searchsorted(wanted, ids)
        pos[pos >= len(wanted)] = 0
        hit = np.flatnonzero(wanted[pos] == ids) if len(wanted) else np.empty(0, np.int64)
        if not len(hit):
            continue
        table = pq.read_table(store.backend.object_path(segment.content))
        erase = np.zeros(table.num_rows, dtype=bool)
        erase[hit] = True
        content = table.column("content").combine_chunks()
        kept = pa.compute.if_else(pa.array(erase), pa.nulls(len(content), pa.string()), content)
        new = table.set_column(table.schema.get_field_index("content"), pa.field("content", pa.string(), nullable=True), kept)
        path = store.backend.new_tmp_path(".parquet")
        pq.write_table(new, path, row_group_size=CONTENT_ROW_GROUP_ROWS, **PARQUET_OPTS)
        new_digest = store.backend.put_file(path)
        hashes = store.segment_column(segment.seg, "content_sha256")[hit]
        tomb = pa.table(
            {
                "row_id": numpy_to_ids_column(ids[hit]),
                "content_sha256": numpy_to_ids_column(hashes),
                "reason": pa.array([f"purged by opt-out {request['id']}: {request['reason']}"] * len(hit)),
            }
        )
        changes.append({"seg": segment.seg, "old_content": segment.content, "content": new_digest, "tombstones": _put_table(store, tomb), "rows": int(len(hit))})
    features = _purge_features(store, state, wanted)
    statement = {
        "_type": signing.STATEMENT_TYPE,
        "subject": [{"name": f"purge:{request['id']}", "digest": {"sha256": hashlib.sha256(jcs([changes, features])).hexdigest()}}],
        "predicateType": PURGE_PREDICATE,
        "predicate": {"request": request, "segments": changes, "features": features, "row_ids_root": merkle_root(wanted)},
    }
    envelope = store.backend.put_bytes(jcs(signing.sign_envelope(statement, signing_key))) if signing_key is not None else None
    store._append(state, {"kind": "purge", "request_id": request["id"], "segments": changes, "features": features, "envelope": envelope})
    for old in [c["old_content"] for c in changes] + [f["old_block"] for f in features]:
        store.backend.delete_object(old)  # the erased bytes go; nothing references them as current any more
    from ..search.maintain import drop_for_purge  # search indexes built from the erased text go too

    indexes = drop_for_purge(store, state, wanted, f"purge of opt-out {request['id']}")
    return {"segments": len(changes), "rows": int(sum(c["rows"] for c in changes)), "feature_blocks": len(features), "indexes_dropped": len(indexes), "envelope": envelope}


def _purge_features(store: Store, state: State, wanted: np.ndarray) -> list[dict[str, Any]]:
    """Training runs' feature blocks (projected gradients: data derived from the rows) rewritten with
    the erased rows' features set to zero."""
    import io

    out = []
    for e in state.entries:
        if e["kind"] != "run":
            continue
        for b in e.get("features") or []:
            current = state.purged.get(b["block"], b["block"])
            rows = np.frombuffer(store.backend.read_bytes(b["rows"]), dtype=ID_DTYPE)
            hit = np.isin(rows, wanted)
            if not hit.any():
                continue
            arr = np.load(io.BytesIO(store.backend.read_bytes(current)), allow_pickle=False).copy()
            arr[hit] = 0
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            out.append({"run_id": e["run_id"], "step": b["step"], "old_block": current, "block": store.backend.put_bytes(buf.getvalue()), "rows": int(hit.sum())})
    return out
