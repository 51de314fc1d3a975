"""Prove: RFC 9162 inclusion proofs, and exclusion proofs in sorted trees (DESIGN format 9).

A version's manifest keeps the Merkle tree's levels from level 10 up, so a proof hashes only the
≤ 1,024 leaves of the block that holds the row and reads the rest of its path: its cost does not grow
with the corpus.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ProofError
from ..hashing import ID_DTYPE, audit_path_from_levels, merkle_levels, verify_exclusion, verify_inclusion
from ..versions.manifest import find_in_chunks, split_levels

if TYPE_CHECKING:
    from ..store import Store

TREES = {
    False: ("rows", "row_id", "merkle_root"),
    True: ("contents", "content_sha256", "content_root"),
}


def normalize_id(value: str, what: str = "row id") -> str:
    v = (value or "").strip().lower()
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise ProofError(f"{what} {value!r} is not 64 hex digits")
    return v


class TreeView:
    """One sorted tree of a version (its rows, or its distinct content hashes), read by chunk."""

    def __init__(self, store: Store, version_id: str, content: bool):
        self.store = store
        self.version_id = version_id
        self.part, self.leaf_key, self.root_key = TREES[content]
        man = store.manifest(version_id)
        self.tree = man[self.part]
        self.root = man["record"]["content"][self.root_key]
        self.chunks = self.tree["chunks"]
        self.cum = np.concatenate([[0], np.cumsum([c[1] for c in self.chunks], dtype=np.int64)])
        self.size = int(self.cum[-1])
        self.level = int(self.tree["level"])

    def ids(self, i: int) -> np.ndarray:
        return self.store.chunks.ids(self.chunks[i][0], self.chunks[i][1])

    def locate(self, probe_hex: str) -> tuple[int, bool]:
        """(insertion index in the whole tree, present?)."""
        ci = find_in_chunks(self.chunks, probe_hex)
        if ci is None:
            return self.size, False
        ids = self.ids(ci)
        probe = np.frombuffer(bytes.fromhex(probe_hex), dtype=ID_DTYPE)[0]
        pos = int(np.searchsorted(ids, probe))
        present = pos < len(ids) and ids[pos : pos + 1].tobytes().hex() == probe_hex
        return int(self.cum[ci]) + pos, present

    def leaves(self, lo: int, hi: int) -> np.ndarray:
        first = int(np.searchsorted(self.cum, lo, side="right")) - 1
        parts, i = [], first
        while i < len(self.chunks) and self.cum[i] < hi:
            ids = self.ids(i)
            a = max(lo - int(self.cum[i]), 0)
            b = min(hi - int(self.cum[i]), len(ids))
            parts.append(ids[a:b])
            i += 1
        return np.concatenate(parts) if parts else np.empty(0, dtype=ID_DTYPE)

    def inclusion(self, index: int) -> dict[str, Any]:
        block = 1 << self.level
        b = index // block
        lo, hi = b * block, min((b + 1) * block, self.size)
        leaves = self.leaves(lo, hi)
        path = audit_path_from_levels(merkle_levels(leaves), index - lo)
        if self.size > block:
            nodes = np.frombuffer(self.store.backend.read_bytes(self.tree["nodes"]), dtype=ID_DTYPE)
            path += audit_path_from_levels(split_levels(nodes, self.size, self.level), b)
        return {
            self.leaf_key: leaves[index - lo : index - lo + 1].tobytes().hex(),
            "leaf_index": index,
            "tree_size": self.size,
            "audit_path": path,
            self.root_key: self.root,
            "version_id": self.version_id,
        }


def prove(store: Store, value: str, ref: str = "HEAD", absent: bool = False, content: bool = False, corpus: str = "main") -> dict[str, Any]:
    info = store.state.resolve(ref, corpus)
    what = "content hash" if content else "row id"
    probe = normalize_id(value, what)
    tree = TreeView(store, info.version_id, content)
    index, present = tree.locate(probe)
    label = info.tag or info.version_id[:12]
    if not absent:
        if not present:
            raise ProofError(f"{what} {probe[:16]}… is not in version {label}; ask for an exclusion proof with --absent")
        proof = tree.inclusion(index)
        if not verify_inclusion(proof):
            raise ProofError(f"the inclusion proof for {probe[:16]}… does not verify against {label}'s root; run 'rowtrail verify'")
        return proof
    if present:
        raise ProofError(f"{what} {probe[:16]}… IS in version {label} (leaf {index}); it cannot be proven absent")
    proof = {
        tree.leaf_key: probe,
        "tree_size": tree.size,
        tree.root_key: tree.root,
        "version_id": info.version_id,
        "left": tree.inclusion(index - 1) if index > 0 else None,
        "right": tree.inclusion(index) if index < tree.size else None,
    }
    if not verify_exclusion(proof):
        raise ProofError(f"the exclusion proof for {probe[:16]}… does not verify against {label}'s root; run 'rowtrail verify'")
    return proof


# -- the journal as an append-only log: tree heads and consistency proofs (RFC 9162 §2.1.4) ----------
#
# The journal's tree has one leaf per committed entry: its line (JCS bytes, no newline), in sequence
# order. Its head at size n — {tree_size: n, root: MTH(lines[0:n])} — is a compact commitment to the
# whole history up to entry n − 1; a consistency proof between two sizes shows the later journal
# extends the earlier one unchanged, with O(log n) hashes and without the entries themselves. An
# auditor keeps the head they saw and later checks a proof against it.


def journal_lines(store: Store) -> list[bytes]:
    lines, _residue = store.backend.read_journal()
    return lines


def _head(lines: list[bytes], n: int) -> dict[str, Any]:
    from ..hashing import mth

    if not 0 <= n <= len(lines):
        raise ProofError(f"the journal has {len(lines)} committed entries; no tree of size {n}")
    return {
        "tree_size": n,
        "root": mth(lines[:n]).hex(),
        "last_entry": hashlib.sha256(lines[n - 1]).hexdigest() if n else None,
    }


def journal_root(store: Store, size: int | None = None) -> dict[str, Any]:
    """The journal tree's head at ``size`` entries (default: all committed entries)."""
    lines = journal_lines(store)
    return _head(lines, len(lines) if size is None else size)


def prove_consistency(store: Store, old_size: int, new_size: int | None = None) -> dict[str, Any]:
    """A consistency proof that the journal's first ``old_size`` entries are, unchanged, the start of
    its first ``new_size`` (default: all committed entries)."""
    from ..hashing import consistency_path, verify_consistency

    lines = journal_lines(store)
    n = len(lines) if new_size is None else new_size
    if not 0 < old_size <= n <= len(lines):
        raise ProofError(f"a consistency proof needs 0 < old size ≤ new size ≤ {len(lines)} (the committed entries); got {old_size} and {n}")
    old, new = _head(lines, old_size), _head(lines, n)
    proof = {
        "kind": "journal-consistency",
        "old_size": old_size,
        "new_size": n,
        "old_root": old["root"],
        "new_root": new["root"],
        "consistency_path": consistency_path(lines[:n], old_size),
    }
    if not verify_consistency(proof):  # never hand out a proof that does not check
        raise ProofError("internal error: the consistency proof does not verify")
    return proof
