"""Commit: build the version (DESIGN formats 6–8) from the corpus's input set and pipeline, sign it,
and publish it with one journal entry.

Order of work: everything the version needs (chunks, Merkle caches, the manifest, the envelope) is
written as content-addressed objects first; the ``commit`` journal entry written last, under the lock,
is what makes the version exist. A crash before it leaves unreferenced objects and the old state.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..errors import NothingToCommitError, RefError, TagExistsError
from ..hashing import distinct_sorted, exact_sums, jcs
from ..versions import signing
from ..versions.journal import now_rfc3339
from ..versions.manifest import CACHE_LEVEL, upper_levels, weights_digest, write_chunks
from .apply import apply_locked, read_run, rebuild, reusable_run
from .inputs import current_inputs

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.journal import State

MANIFEST_FORMAT = "rowtrail.manifest/1"
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_HEXLIKE = re.compile(r"^[0-9a-f]{7,64}$")


def check_tag(tag: str, state: State) -> None:
    if not _TAG_RE.match(tag):
        raise RefError(f"tag {tag!r} is not allowed: use letters, digits and . _ + - (at most 128), starting with a letter or digit")
    if _HEXLIKE.match(tag):
        raise RefError(f"tag {tag!r} looks like a version id; choose a tag that is not 7+ hex digits (e.g. 'v{tag[:6]}')")
    if tag == "HEAD" or tag.startswith("HEAD~"):
        raise RefError("'HEAD' is reserved")
    if tag in state.tags:
        raise TagExistsError(f"tag '{tag}' already names version {state.tags[tag][:12]}; tags never move — pick a new tag")


def author_name() -> str:
    env = os.environ.get("ROWTRAIL_AUTHOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def inputs_part(store: Store, inputs: np.ndarray) -> tuple[str, list[list[Any]]]:
    """The version's input set as stored: its Merkle root and chunks. Built before the pipeline's
    output is read, so the two are never in memory together (48 bytes a row each); when they hold the
    same ids or records, the root or the chunk list is the rows' own (chunks are content-addressed)."""
    root = upper_levels(inputs["id"])[0]
    with store.backend.deferred_sync():
        chunks = write_chunks(store.backend, inputs)
    return root, chunks


def build_content(
    store: Store, corpus: str, rows: np.ndarray, inputs: tuple[str | None, list[list[Any]] | None], pipeline: list[str], policy: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The version content and the storage part of the manifest (chunks, Merkle caches); ``inputs``
    is what ``inputs_part`` made of the input set."""
    ids = rows["id"]
    root, nodes = upper_levels(ids)
    inputs_root, inputs_chunks = inputs
    inputs_root = inputs_root or root
    content_hashes, source_idx, source_names = store.gather(rows, want_sources=True)
    store._columns.clear()  # the whole-segment content hashes: 32 bytes a row, not read again
    distinct = distinct_sorted(content_hashes)
    del content_hashes  # 32 bytes a row: not kept while the rest is built
    content_root, content_nodes = upper_levels(distinct)
    weights = rows["w"].astype(np.float64)
    counts = np.bincount(source_idx, minlength=len(source_names))
    total, wsum = exact_sums(weights, source_idx, len(source_names))
    per_source = {s: [int(counts[i]), float(wsum[i])] for i, s in enumerate(source_names) if counts[i]}
    content = {
        "corpus": corpus,
        "merkle_root": root,
        "content_root": content_root,
        "row_count": int(len(rows)),
        "weight_total": total,
        "weights_sha256": weights_digest(ids, weights),
        "per_source": dict(sorted(per_source.items())),
        "pipeline": pipeline,
        "inputs_root": inputs_root,
        "policy": policy,
    }
    backend = store.backend
    with backend.deferred_sync():  # thousands of chunk objects, made durable by one syncfs
        row_chunks = write_chunks(backend, rows)
        storage = {
            "rows": {"chunks": row_chunks, "level": CACHE_LEVEL, "nodes": backend.put_bytes(nodes.tobytes())},
            "inputs": {"chunks": row_chunks if inputs_chunks is None else inputs_chunks},
            "contents": {
                "chunks": write_chunks(backend, distinct),
                "level": CACHE_LEVEL,
                "nodes": backend.put_bytes(content_nodes.tobytes()),
            },
        }
    return content, storage


def commit(
    store: Store,
    message: str,
    *,
    tag: str | None = None,
    corpus: str = "main",
    sign: bool = True,
    key: str | None = None,
    allow_empty: bool = False,
    progress: Any = None,
    override_policy: str | None = None,
) -> str:
    """Commit the corpus's staged work as a new version; returns its version id."""
    signing_key = signing.load_signing_key(key) if sign else None
    with store._write() as state:
        return commit_locked(store, state, message, tag=tag, corpus=corpus, signing_key=signing_key, allow_empty=allow_empty, progress=progress, override_policy=override_policy)


def commit_locked(store: Store, state: State, message: str, *, tag: str | None, corpus: str, signing_key: Any, allow_empty: bool = False, progress: Any = None, override_policy: str | None = None) -> str:
    """``commit`` for a caller that holds the write lock (``optout`` removes and commits in one hold)."""
    if tag is not None:
        check_tag(tag, state)
    staged = state.staged_for(corpus)
    parent = state.heads.get(corpus)
    if staged.empty and parent is not None and not allow_empty:
        raise NothingToCommitError(f"nothing staged for corpus '{corpus}'; ingest, remove or apply first (see 'rowtrail status')")
    defs = state.pipelines.get(corpus, [])
    step_ids = [d["step_id"] for d in defs]
    run_digest = reusable_run(state, corpus) if defs else None
    if run_digest is None and defs:
        # the input set changed since the last apply: run the pipeline now, recorded as its own
        # ``pipeline`` entry before the commit, so the version's journal_head covers the run
        run_digest = apply_locked(store, state, rebuild(store, state, corpus), corpus=corpus, progress=progress, strict=False).run
    # the input set is built after a pipeline run here (which builds its own), and stored and let go
    # before the run's rows are read: one of the three in memory at a time
    inputs = current_inputs(store, state, corpus)
    store._columns.clear()  # the whole-segment row ids it was read from: 32 bytes a row, not read again
    stored_inputs: tuple[str | None, list[list[Any]] | None] = (None, None)  # no pipeline: the rows are the inputs
    if run_digest is not None:
        stored_inputs = inputs_part(store, inputs)
        del inputs
        run_doc, rows = read_run(store, run_digest)
    else:
        rows, run_doc = inputs, None
    from .policy import admission

    policy_digest, admitted = admission(store, rows, override_policy)
    content, storage = build_content(store, corpus, rows, stored_inputs, step_ids, policy_digest)
    content_id = hashlib.sha256(jcs(content)).hexdigest()
    record = {
        "content_id": content_id,
        "content": content,
        "parent": parent,
        "tag": tag,
        "message": message,
        "author": author_name(),
        "created_at": now_rfc3339(),
        "journal_head": state.head_digest,
    }
    version_id = hashlib.sha256(jcs(record)).hexdigest()
    envelope_digest = None
    if signing_key is not None:
        stmt = signing.statement(f"{corpus}@{tag or version_id}", version_id, record)
        envelope_digest = store.backend.put_bytes(jcs(signing.sign_envelope(stmt, signing_key)))
    used = sorted({int(s) for s in np.unique(rows["seg"])}) if len(rows) else []
    manifest = {
        "format": MANIFEST_FORMAT,
        "version_id": version_id,
        "record": record,
        "steps": {sid: _definition(s["definition"]) for sid, s in run_doc["steps"].items()} if run_doc else {},
        "lineage": {sid: {k: s[k] for k in ("drops", "edges", "weights", "columns", "report")} for sid, s in run_doc["steps"].items()} if run_doc else {},
        "run": run_digest,
        "admission": admitted,
        "segments": {str(s): _segment_ref(state, s) for s in used},
        "source_snapshots": store.snapshots_of(rows),
        "rowtrail_version": __version__,
        **storage,
    }
    manifest_digest = store.backend.put_bytes(jcs(manifest))
    store._append(
        state,
        {
            "kind": "commit",
            "corpus": corpus,
            "version_id": version_id,
            "record": record,
            "manifest": manifest_digest,
            "envelope": envelope_digest,
        },
    )
    return version_id


def _definition(d: dict[str, Any]) -> dict[str, Any]:
    """A step as the version records it: name, params, code fingerprint, rowtrail version."""
    return {k: d[k] for k in ("name", "use", "version", "params", "code", "scope", "rowtrail_version", "function") if k in d}


def _segment_ref(state: State, seg: int) -> dict[str, Any]:
    s = state.segments[seg]
    return {"provenance": s.provenance, "content": s.content, "rows": s.rows, "sources": list(s.sources)}
