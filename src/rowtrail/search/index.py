"""Indexes of a version's text, stored in the store and bound to that version.

An index is a set of immutable objects (``.npy`` arrays, never pickle) named by a **manifest** (a JCS
JSON object, itself an object: its digest is the ``index_id``) and one ``index`` journal entry::

    {"kind": "index", "index_id", "index_kind": "spans"|"lexical"|"embedding", "version_id",
     "content_id", "corpus", "manifest", "stats": {"build_seconds", "bytes", "bytes_per_row", …}}

The manifest holds ``version_id``, ``content_id``, ``merkle_root`` and ``row_count`` of the version it
indexes, the text ``fields`` and the tokenizer (or model) config, and the objects. Document *k* of an
index is the version's *k*-th row in row-id order. Loading checks all of this against the version
asked for and refuses (``IndexMismatchError``) to answer for any other. An ``index.drop`` entry
(``{"index_id", "reason", "deleted": [digest…]}``) retires an index; a purge drops every index of a
version that held an erased row and deletes its objects (they are derived from the erased text).

Kinds:

- ``spans``: ``tokens`` (int32: each row's token ids followed by a 0 separator), ``sa`` (its suffix
  array, pydivsufsort, int32 or int64), ``offsets`` (int64: where each row starts in ``tokens``),
  ``counts`` (int64: corpus count of each token id), and the vocabulary (``vocab_bytes`` uint8 and
  ``vocab_offsets`` int64: token *i* is bytes ``[off[i], off[i+1])``; id 0 is the separator).
- ``lexical``: BM25 (bm25s's "lucene" variant, k1, b in the manifest) as a term × document CSC matrix
  of per-(term, document) scores: ``data`` (float32), ``indices`` (int32 document numbers),
  ``indptr`` (int64), ``doc_len`` (int32), and the (lower-cased) vocabulary as above.
- ``embedding``: ``vectors`` (float32 [rows, dim], L2-normalized) from a packaged sentence-embedding
  model named in the manifest; cosine top-k is an exact scan (a flat index).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..errors import RefError, RowtrailError
from ..hashing import jcs
from .tokenize import Tokenizer, Vocab

if TYPE_CHECKING:
    from ..records import VersionInfo
    from ..store import Store
    from ..versions.journal import State

INDEX_FORMAT = 1
# Loaded indexes, by (store, index id): their objects are immutable, so a process that queries again
# reuses the mapped arrays and the vocabulary table (the journal and manifest are checked every time).
LOADED_MAX = 4
COMPARE_BLOCK = 16  # tokens compared per step of a suffix comparison
_LOADED: dict[tuple[str, str], Any] = {}
KINDS = ("spans", "lexical", "embedding")


class IndexNotFoundError(RefError):
    """No live index of that kind for the version."""


class IndexMismatchError(RowtrailError):
    """An index asked to answer for a version it was not built from."""


# -- objects -----------------------------------------------------------------------------------------


def put_npy(store: Store, arr: np.ndarray) -> str:
    path = store.backend.new_tmp_path(".npy")
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return store.backend.put_file(path)


def load_npy(store: Store, digest: str, mmap: bool = True) -> np.ndarray:
    if not store.backend.has_object(digest):
        raise IndexMismatchError(
            f"index object {digest} is missing from the store (dropped by a purge?); rebuild with 'rowtrail index VERSION'"
        )
    path = store.backend.object_path(digest)
    if mmap and path.stat().st_size > 1 << 16:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    return np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)


def put_vocab(store: Store, vocab: Vocab) -> dict[str, str]:
    arr = vocab.to_arrow()
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=len(arr) + 1)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=int(offsets[-1])) if offsets[-1] else np.empty(0, np.uint8)
    return {"vocab_bytes": put_npy(store, data), "vocab_offsets": put_npy(store, offsets - offsets[0])}


def load_vocab(store: Store, objects: dict[str, str]) -> Vocab:
    data = load_npy(store, objects["vocab_bytes"], mmap=False)
    offsets = load_npy(store, objects["vocab_offsets"], mmap=False)
    arr = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets.astype(np.int64).tobytes()), pa.py_buffer(data.tobytes()))
    return Vocab(arr.to_pylist())


# -- the journal -------------------------------------------------------------------------------------


def index_entries(store: Store, *, live: bool = True, state: State | None = None) -> list[dict[str, Any]]:
    """``index`` journal entries, oldest first; with ``live`` only those no ``index.drop`` retired."""
    entries = (state if state is not None else store.state).entries
    dropped: dict[str, int] = {}  # index id → the last drop's seq (a rebuild after it is live again)
    if live:
        for e in entries:
            if e["kind"] == "index.drop":
                dropped[e["index_id"]] = e["seq"]
    return [e for e in entries if e["kind"] == "index" and dropped.get(e["index_id"], -1) < e["seq"]]


def list_indexes(store: Store, version: str | None = None, corpus: str = "main") -> list[dict[str, Any]]:
    """Live indexes (of one version, when given), as summaries."""
    vid = store.state.resolve(version, corpus).version_id if version is not None else None
    out = []
    for e in index_entries(store):
        if vid is None or e["version_id"] == vid:
            info = store.state.versions.get(e["version_id"])
            out.append(
                {
                    "index_id": e["index_id"],
                    "kind": e["index_kind"],
                    "version_id": e["version_id"],
                    "tag": info.tag if info else None,
                    "at": e["at"],
                    **e.get("stats", {}),
                }
            )
    return out


def find_entry(store: Store, info: VersionInfo, kind: str) -> dict[str, Any] | None:
    hits = [e for e in index_entries(store) if e["version_id"] == info.version_id and e["index_kind"] == kind]
    return hits[-1] if hits else None


def read_manifest(store: Store, index_id: str) -> dict[str, Any]:
    return orjson.loads(store.backend.read_bytes(index_id))


def check_binding(man: dict[str, Any], info: VersionInfo, index_id: str) -> None:
    """Refuse an index built from another version (or whose manifest disagrees with the version)."""
    label = info.tag or info.version_id[:12]
    if man.get("version_id") != info.version_id:
        raise IndexMismatchError(
            f"index {index_id[:12]} was built from version {str(man.get('version_id'))[:12]}, not {label}; "
            f"it cannot answer for {label} — build one with 'rowtrail index {label}'"
        )
    if man.get("content_id") != info.content_id or man.get("row_count") != info.row_count:
        raise IndexMismatchError(
            f"index {index_id[:12]} names version {label} but not its content (content_id or row count differ); rebuild with 'rowtrail index {label}'"
        )


def load_index(store: Store, version: str = "HEAD", kind: str = "spans", *, corpus: str = "main", index_id: str | None = None) -> Any:
    """The live index of ``kind`` for a version (or the index ``index_id``, which must be of that
    version): a ``SpanIndex``, ``LexicalIndex`` or ``EmbeddingIndex``."""
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose from {', '.join(KINDS)}")
    info = store.state.resolve(version, corpus)
    if index_id is None:
        entry = find_entry(store, info, kind)
        if entry is None:
            label = info.tag or info.version_id[:12]
            raise IndexNotFoundError(f"version {label} has no {kind} index; build it with 'rowtrail index {label} --kind {kind}'")
        index_id = entry["index_id"]
    man = read_manifest(store, index_id)
    if man.get("kind") != kind:
        raise IndexMismatchError(f"index {index_id[:12]} is a {man.get('kind')} index, not {kind}")
    check_binding(man, info, index_id)
    key = (str(store.path), index_id)
    hit = _LOADED.pop(key, None)
    if hit is None:
        cls = {"spans": SpanIndex, "lexical": LexicalIndex, "embedding": EmbeddingIndex}[kind]
        hit = cls(store, info, index_id, man)
    _LOADED[key] = hit  # most recent last
    while len(_LOADED) > LOADED_MAX:
        _LOADED.pop(next(iter(_LOADED)))
    return hit


# -- loaded indexes ----------------------------------------------------------------------------------


@dataclass
class _Loaded:
    store: Store
    info: VersionInfo
    index_id: str
    manifest: dict[str, Any]

    @property
    def version_id(self) -> str:
        return self.info.version_id

    def array(self, name: str) -> np.ndarray:
        return load_npy(self.store, self.manifest["objects"][name])

    @cached_property
    def row_ids(self) -> np.ndarray:
        """The version's row ids (32-byte, sorted): document k is row_ids[k]."""
        return self.store.version_rows(self.version_id)["id"]

    @cached_property
    def records(self) -> np.ndarray:
        return self.store.version_rows(self.version_id)


class _Tokenized(_Loaded):
    """An index over token ids: its pinned tokenizer and its vocabulary."""

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_config(self.manifest["tokenizer"], self.store)

    @cached_property
    def vocab(self) -> Vocab:
        return load_vocab(self.store, self.manifest["objects"])


class SpanIndex(_Tokenized):
    """Exact n-gram lookups over the version's tokens: a suffix array with a row-offset table."""

    @cached_property
    def tokens(self) -> np.ndarray:
        return self.array("tokens")

    @cached_property
    def sa(self) -> np.ndarray:
        return self.array("sa")

    @cached_property
    def offsets(self) -> np.ndarray:
        return self.array("offsets")

    @cached_property
    def counts(self) -> np.ndarray:
        return self.array("counts")

    def common_tokens(self, mass: float) -> np.ndarray:
        """A mask over token ids: the most frequent tokens that together make up ``mass`` of the
        corpus's tokens (0: none)."""
        counts = np.asarray(self.counts, dtype=np.float64)
        mask = np.zeros(len(counts), bool)
        total = counts.sum()
        if mass <= 0 or total == 0:
            return mask
        order = np.argsort(-counts, kind="stable")
        before = np.cumsum(counts[order]) - counts[order]  # mass of the more frequent tokens
        mask[order[(before / total < mass) & (counts[order] > 0)]] = True
        return mask

    @property
    def total_tokens(self) -> int:
        return int(self.manifest["stats"]["tokens"])

    def encode(self, text: str) -> tuple[list[str], np.ndarray]:
        """A text's tokens and their ids (-1: a token the corpus never had)."""
        words = self.tokenizer.split(text)
        return words, self.vocab.lookup(words)

    # Vectorized binary search: all patterns step together; each step gathers the compared suffixes'
    # first tokens at once. Patterns are rows of a matrix with their lengths; an id of -1 (unknown
    # token) never equals a corpus token, and reads past the corpus end see its final separator.
    def _compare(self, starts: np.ndarray, pats: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sign of suffix − pattern over the pattern's length, common prefix length) per pattern.
        Compared a block of columns at a time: only rows still equal so far read the next block."""
        q, m = pats.shape
        n = len(self.tokens)
        tokens = np.asarray(self.tokens)
        sign = np.zeros(q, np.int64)
        first = np.asarray(lens, np.int64).copy()  # common prefix length; the full length if equal
        todo = np.arange(q)
        starts = starts.astype(np.int64)
        for lo in range(0, m, COMPARE_BLOCK):
            if not len(todo):
                break
            hi = min(m, lo + COMPARE_BLOCK)
            cols = np.arange(lo, hi)
            got = tokens[np.minimum(starts[todo, None] + cols, n - 1)].astype(np.int64)
            want = pats[todo, lo:hi]
            diff = (got != want) & (cols[None, :] < lens[todo, None])
            has = diff.any(axis=1)
            if has.any():
                rows = np.flatnonzero(has)
                at = diff[rows].argmax(axis=1)
                done = todo[rows]
                first[done] = lo + at
                sign[done] = np.sign(got[rows, at] - want[rows, at])
            todo = todo[~has & (lens[todo] > hi)]
        return sign, first

    def _bound(self, pats: np.ndarray, lens: np.ndarray, upper: bool) -> np.ndarray:
        """First suffix-array position whose suffix is ≥ the pattern (``upper``: > the pattern,
        comparing only the pattern's length)."""
        q = len(pats)
        lo = np.zeros(q, np.int64)
        hi = np.full(q, len(self.sa), np.int64)
        sa = np.asarray(self.sa)
        while True:
            active = lo < hi
            if not active.any():
                return lo
            a = np.flatnonzero(active)
            mid = (lo[a] + hi[a]) // 2
            sign, _ = self._compare(sa[mid], pats[a], lens[a])
            go_right = sign <= 0 if upper else sign < 0
            lo[a] = np.where(go_right, mid + 1, lo[a])
            hi[a] = np.where(go_right, hi[a], mid)

    def ranges(self, pats: np.ndarray, lens: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Suffix-array ranges [lo, hi) of the suffixes that start with each pattern (rows of
        ``pats``, of lengths ``lens``): hi − lo is the number of occurrences."""
        pats = np.atleast_2d(np.asarray(pats, dtype=np.int64))
        lens = np.full(len(pats), pats.shape[1], np.int64) if lens is None else np.asarray(lens, np.int64)
        return self._bound(pats, lens, False), self._bound(pats, lens, True)

    def count(self, ids: np.ndarray) -> int:
        lo, hi = self.ranges(np.asarray(ids)[None, :])
        return int(hi[0] - lo[0])

    def longest_matches(self, ids: np.ndarray, chunk: int = 256) -> np.ndarray:
        """For each position i of a token sequence, the length of the longest prefix of ids[i:] that
        occurs in the corpus (matching statistics): the suffix sharing the longest prefix with ids[i:]
        sits next to the insertion point of ids[i:] in the suffix array."""
        ids = np.asarray(ids, dtype=np.int64)
        t = len(ids)
        best = np.zeros(t, np.int64)
        if t == 0 or len(self.sa) == 0:
            return best
        sa = np.asarray(self.sa)
        for start in range(0, t, chunk):
            rows = min(chunk, t - start)
            rest = ids[start:]
            pats = np.full((rows, len(rest)), -1, np.int64)
            for i in range(rows):
                pats[i, : len(rest) - i] = rest[i:]
            lens = len(rest) - np.arange(rows)
            pos = self._bound(pats, lens, False)
            part = best[start : start + rows]
            for shift in (-1, 0):
                p = pos + shift
                ok = (p >= 0) & (p < len(sa))
                if ok.any():
                    _, lcp = self._compare(sa[p[ok]], pats[ok], lens[ok])
                    part[ok] = np.maximum(part[ok], lcp)
        return best

    def docs_of(self, lo: int, hi: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Documents (row numbers) holding the occurrences in suffix-array range [lo, hi), with how
        many times each holds it, most first."""
        positions = np.asarray(self.sa[lo:hi]).astype(np.int64)
        docs = np.searchsorted(self.offsets, positions, side="right") - 1
        uniq, n = np.unique(docs, return_counts=True)
        order = np.lexsort((uniq, -n))
        uniq, n = uniq[order], n[order]
        if limit is not None:
            uniq, n = uniq[:limit], n[:limit]
        return uniq, n


class LexicalIndex(_Tokenized):
    """BM25 over rows (bm25s's "lucene" variant): per-(term, row) scores precomputed in CSC form."""

    @cached_property
    def csc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.array("data"), self.array("indices"), self.array("indptr")

    def scores(self, text_or_tokens: str | list[str]) -> np.ndarray:
        """BM25 score of every row for a query (each query token counts as often as it occurs, as
        in bm25s; tokens the corpus never had score nothing)."""
        words = (
            self.tokenizer.split(text_or_tokens)
            if isinstance(text_or_tokens, str)
            else [w.lower() if self.tokenizer.lowercase else w for w in text_or_tokens]
        )
        ids = self.vocab.lookup(words)
        ids = ids[ids > 0]
        n = self.info.row_count
        if not len(ids):
            return np.zeros(n, np.float32)
        data, indices, indptr = self.csc
        uniq, mult = np.unique(ids, return_counts=True)
        parts_i, parts_w = [], []
        for t, m in zip(uniq.tolist(), mult.tolist()):
            s, e = int(indptr[t]), int(indptr[t + 1])
            parts_i.append(np.asarray(indices[s:e]))
            parts_w.append(np.asarray(data[s:e], dtype=np.float64) * m)
        out = np.bincount(np.concatenate(parts_i), weights=np.concatenate(parts_w), minlength=n)
        return out.astype(np.float32)

    def scores_of(self, text: str, docs: np.ndarray) -> np.ndarray:
        """BM25 scores of the given rows only (equal to ``scores(text)[docs]``): each query token's
        postings are searched for those rows instead of summed over every row."""
        ids = self.vocab.lookup(self.tokenizer.split(text))
        ids = ids[ids > 0]
        docs = np.asarray(docs, np.int64)
        out = np.zeros(len(docs), np.float64)
        if not len(ids) or not len(docs):
            return out.astype(np.float32)
        data, indices, indptr = self.csc
        for t, m in zip(*np.unique(ids, return_counts=True)):
            s, e = int(indptr[t]), int(indptr[t + 1])
            post = np.asarray(indices[s:e])
            at = np.searchsorted(post, docs)
            hit = at < len(post)
            hit[hit] = post[at[hit]] == docs[hit]
            out[hit] += np.asarray(data[s:e])[at[hit]].astype(np.float64) * m
        return out.astype(np.float32)

    def top(self, text: str, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """The k best rows (document numbers) and their scores, best first (ties: lower number)."""
        return top_k(self.scores(text), k)


class EmbeddingIndex(_Loaded):
    """Cosine similarity over L2-normalized sentence embeddings (an exact, flat scan)."""

    @cached_property
    def vectors(self) -> np.ndarray:
        return self.array("vectors")

    def scores(self, text: str) -> np.ndarray:
        from .embed import encode

        q = encode([text], self.manifest["model"])[0]
        return np.asarray(self.vectors) @ q

    def top(self, text: str, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
        return top_k(self.scores(text), k)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k highest scores (positive ones only), best first, ties by lower index."""
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, scores.dtype)
    cand = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    # widen to every index tied with the k-th score, so the order among ties is by index
    kth = scores[cand].min()
    cand = np.flatnonzero(scores >= kth)
    order = np.lexsort((cand, -scores[cand]))[:k]
    cand = cand[order]
    cand = cand[scores[cand] > 0]
    return cand, scores[cand]


# -- manifests ---------------------------------------------------------------------------------------


def make_manifest(
    info: VersionInfo, merkle_root: str, kind: str, config: dict[str, Any], objects: dict[str, str], stats: dict[str, Any]
) -> bytes:
    return jcs(
        {
            "format": INDEX_FORMAT,
            "kind": kind,
            "version_id": info.version_id,
            "content_id": info.content_id,
            "merkle_root": merkle_root,
            "row_count": info.row_count,
            **config,
            "objects": objects,
            "stats": stats,
        }
    )
