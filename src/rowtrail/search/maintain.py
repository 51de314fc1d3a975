"""Dropping indexes (by hand, or because a purge erased text they were built from) and checking them.

A purge erases rows' content; every index of a version that held one of those rows was derived from
that text (token ids, vocabulary, BM25 postings, embeddings), so ``drop_for_purge`` retires it with
an ``index.drop`` entry and deletes its objects (unless a live index that keeps them shares them).
Rebuild with ``rowtrail index VERSION``: the erased rows then index as empty text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from ..errors import RowtrailError
from .index import KINDS, index_entries, read_manifest

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.journal import State


def _objects(store: Store, index_id: str) -> set[str]:
    try:
        return set(read_manifest(store, index_id)["objects"].values()) | {index_id}
    except (RowtrailError, orjson.JSONDecodeError, KeyError):
        return {index_id}


def drop_locked(store: Store, state: State, index_ids: list[str], reason: str) -> list[dict[str, Any]]:
    """Retire indexes and delete their objects; the caller holds the write lock."""
    live = index_entries(store)
    going = set(index_ids)
    keep: set[str] = set()
    for e in live:
        if e["index_id"] not in going:
            keep |= _objects(store, e["index_id"])
    out = []
    for index_id in dict.fromkeys(index_ids):
        objs = sorted(_objects(store, index_id) - keep)
        store._append(state, {"kind": "index.drop", "index_id": index_id, "reason": reason, "deleted": objs})
        for d in objs:
            store.backend.delete_object(d)
        out.append({"index_id": index_id, "deleted_objects": len(objs)})
    return out


def drop_index(store: Store, index_id: str, reason: str = "dropped by request") -> dict[str, Any]:
    """Retire one live index (its id, or a unique prefix) and delete its objects."""
    hits = [e["index_id"] for e in index_entries(store) if e["index_id"].startswith(index_id.strip().lower())]
    if len(set(hits)) != 1:
        raise RowtrailError(f"no live index {index_id!r}" if not hits else f"index id prefix {index_id!r} is ambiguous; give more digits")
    with store._write() as state:
        return drop_locked(store, state, [hits[0]], reason)[0]


def drop_for_purge(store: Store, state: State, row_ids: np.ndarray, reason: str) -> list[dict[str, Any]]:
    """Drop every live index whose version holds one of the erased rows (sorted 32-byte ids); called
    by a purge under its write lock."""
    if not len(row_ids):
        return []
    hit = []
    for e in index_entries(store):
        ids = store.version_rows(e["version_id"])["id"]
        pos = np.searchsorted(ids, row_ids)
        pos[pos >= len(ids)] = 0
        if len(ids) and (ids[pos] == row_ids).any():
            hit.append(e["index_id"])
    return drop_locked(store, state, hit, reason) if hit else []


def check_indexes(store: Store, state: State | None = None) -> list[dict[str, str]]:
    """Problems with live indexes: a manifest or object missing, or a manifest that does not match
    the version its journal entry binds it to. (Object bytes are checked with every object.)"""
    problems = []
    state = state if state is not None else store.state
    for e in index_entries(store, state=state):
        what = f"index {e['index_id'][:12]} (journal entry {e['seq']})"
        if not store.backend.has_object(e["index_id"]):
            problems.append({"object": what, "problem": "its manifest object is missing"})
            continue
        try:
            man = read_manifest(store, e["index_id"])
        except (RowtrailError, orjson.JSONDecodeError) as exc:
            problems.append({"object": what, "problem": f"manifest unreadable: {exc}"})
            continue
        info = state.versions.get(e["version_id"])
        if info is None:
            problems.append({"object": what, "problem": f"names version {e['version_id'][:12]}, which the journal does not hold"})
            continue
        if man.get("kind") not in KINDS or man.get("kind") != e.get("index_kind"):
            problems.append(
                {"object": what, "problem": f"manifest kind {man.get('kind')!r} differs from the journal's {e.get('index_kind')!r}"}
            )
        for k, want in (("version_id", info.version_id), ("content_id", info.content_id), ("row_count", info.row_count)):
            if man.get(k) != want or (k == "content_id" and e.get("content_id") != want):
                problems.append({"object": what, "problem": f"{k} in the index does not match version {info.tag or info.version_id[:12]}"})
        for name, digest in (man.get("objects") or {}).items():
            if not store.backend.has_object(digest):
                problems.append({"object": what, "problem": f"object {name} ({digest[:12]}) is missing"})
    return problems
