"""Build a version's indexes in one streaming pass over its rows (see index.py for the formats).

The rows come from the query layer (``Selection.batches``) in row-id order, a batch at a time, as
Arrow tables; each batch is tokenized by Arrow kernels and turned into numpy id arrays. Only the
derived arrays (token ids, per-(row, term) counts, embeddings) are kept, never the rows' text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import RowtrailError
from .index import KINDS, index_entries, make_manifest, put_npy, put_vocab
from .tokenize import TOKENIZERS, Tokenizer, Vocab

if TYPE_CHECKING:
    from ..store import Store

Progress = Callable[[str, int, int], None]
BM25_K1 = 1.5
BM25_B = 0.75
BATCH_ROWS = 16384


def text_of(table: pa.Table, fields: Sequence[str]) -> pa.Array:
    """The index text of each row: the named content fields joined by newlines (null → empty)."""
    cols = []
    for f in fields:
        col = table.column(f).combine_chunks() if f in table.column_names else pa.nulls(table.num_rows, pa.string())
        if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
            col = (
                pc.cast(col, pa.string())
                if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)
                else pa.nulls(table.num_rows, pa.string())
            )
        cols.append(col.fill_null(""))
    if not cols:
        return pa.array([""] * table.num_rows, pa.string())
    if len(cols) == 1:
        return cols[0].cast(pa.string())
    return pc.binary_join_element_wise(*[c.cast(pa.string()) for c in cols], "\n")


def _default_fields(table: pa.Table, content: list[str]) -> list[str]:
    return [f for f in content if pa.types.is_string(table.schema.field(f).type) or pa.types.is_large_string(table.schema.field(f).type)]


class _Spans:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab = Vocab()
        self.parts: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []

    def add(self, tokens: pa.Array, counts: np.ndarray) -> None:
        ids = self.vocab.add(tokens)
        n = len(counts)
        out = np.zeros(len(ids) + n, dtype=np.int32)  # each row's ids, then a 0 separator
        row_of = np.repeat(np.arange(n, dtype=np.int64), counts)
        out[np.arange(len(ids), dtype=np.int64) + row_of] = ids
        self.parts.append(out)
        self.lengths.append(counts)

    def finish(self, store: Store, progress: Progress) -> tuple[dict[str, str], dict[str, Any]]:
        import pydivsufsort

        tokens = np.concatenate(self.parts) if self.parts else np.zeros(0, np.int32)
        self.parts = []
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths + 1, out=offsets[1:])
        progress("suffix array", 0, 1)
        sa = pydivsufsort.divsufsort(tokens) if len(tokens) else np.zeros(0, np.int32)
        progress("suffix array", 1, 1)
        counts = np.bincount(tokens, minlength=len(self.vocab)).astype(np.int64)
        counts[0] = 0
        objects = {
            "tokens": put_npy(store, tokens),
            "sa": put_npy(store, sa),
            "offsets": put_npy(store, offsets),
            "counts": put_npy(store, counts),
            **put_vocab(store, self.vocab),
        }
        return objects, {"tokens": int(lengths.sum()), "vocab": len(self.vocab) - 1}


class _Lexical:
    def __init__(self, tokenizer: Tokenizer, k1: float, b: float) -> None:
        self.tokenizer = tokenizer
        self.k1, self.b = k1, b
        self.vocab = Vocab()
        self.docs: list[np.ndarray] = []
        self.terms: list[np.ndarray] = []
        self.tfs: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.n = 0

    def add(self, tokens: pa.Array, counts: np.ndarray) -> None:
        ids = self.vocab.add(pc.utf8_lower(tokens) if self.tokenizer.lowercase else tokens).astype(np.int64)
        docs = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        keys, tf = np.unique(docs << 32 | ids, return_counts=True)
        self.docs.append((keys >> 32).astype(np.int32) + np.int32(self.n))
        self.terms.append((keys & 0xFFFFFFFF).astype(np.int32))
        self.tfs.append(tf.astype(np.int32))
        self.lengths.append(counts.astype(np.int32))
        self.n += len(counts)

    def finish(self, store: Store, progress: Progress) -> tuple[dict[str, str], dict[str, Any]]:
        docs = np.concatenate(self.docs) if self.docs else np.zeros(0, np.int32)
        terms = np.concatenate(self.terms) if self.terms else np.zeros(0, np.int32)
        tf = np.concatenate(self.tfs).astype(np.float32) if self.tfs else np.zeros(0, np.float32)
        doc_len = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int32)
        self.docs, self.terms, self.tfs = [], [], []
        v, n = len(self.vocab), self.n
        progress("bm25", 0, 1)
        df = np.bincount(terms, minlength=v)
        # bm25s "lucene": idf = ln(1 + (N − df + 0.5)/(df + 0.5)); tfc = tf / (k1·(1 − b + b·|d|/avgdl) + tf)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        avgdl = float(doc_len.mean()) if n and doc_len.sum() else 1.0
        norm = (self.k1 * ((1 - self.b) + self.b * doc_len.astype(np.float32) / np.float32(avgdl))).astype(np.float32)
        data = (idf[terms].astype(np.float32) * (tf / (norm[docs] + tf))).astype(np.float32)
        order = np.argsort(terms, kind="stable")  # by term, documents ascending within a term
        indptr = np.zeros(v + 1, np.int64)
        np.cumsum(df, out=indptr[1:])
        objects = {
            "data": put_npy(store, data[order]),
            "indices": put_npy(store, docs[order]),
            "indptr": put_npy(store, indptr),
            "doc_len": put_npy(store, doc_len),
            **put_vocab(store, self.vocab),
        }
        progress("bm25", 1, 1)
        return objects, {"postings": int(len(data)), "vocab": v - 1, "avgdl": avgdl}


class _Embedding:
    def __init__(self, model: dict[str, Any], batch_size: int = 64) -> None:
        self.model = model
        self.parts: list[np.ndarray] = []
        self.batch_size = batch_size

    def add(self, texts: pa.Array) -> None:
        from .embed import encode

        self.parts.append(encode(texts.to_pylist(), self.model, batch_size=self.batch_size))

    def finish(self, store: Store, progress: Progress) -> tuple[dict[str, str], dict[str, Any]]:
        vecs = np.concatenate(self.parts) if self.parts else np.zeros((0, self.model["dim"]), np.float32)
        return {"vectors": put_npy(store, vecs)}, {"dim": int(vecs.shape[1])}


def build_index(
    store: Store,
    version: str = "HEAD",
    kinds: Sequence[str] = ("spans", "lexical"),
    *,
    corpus: str = "main",
    fields: Sequence[str] | None = None,
    tokenizer: str = "regex-v1",
    k1: float = BM25_K1,
    b: float = BM25_B,
    model: str | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Build the indexes ``kinds`` (``spans``, ``lexical``, ``embedding``) of a version in one pass
    over its rows, store them and journal them; returns one summary per index (``index_id``,
    ``kind``, build seconds, bytes, bytes per row). ``fields``: the content fields whose text is
    indexed, joined by newlines (default: every string content field)."""
    from ..query.rows import select

    progress = progress or (lambda stage, done, total: None)
    kinds = list(dict.fromkeys(kinds))
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise RowtrailError(f"unknown index kind(s) {', '.join(bad) or '(none)'}; choose from {', '.join(KINDS)}")
    for name, value in (("k1", k1), ("b", b)):
        if not math.isfinite(value) or value < 0:
            raise RowtrailError(f"BM25 {name} must be a finite number ≥ 0, not {value}")
    if "spans" in kinds:
        try:
            import pydivsufsort  # noqa: F401
        except ImportError:
            raise RowtrailError("the spans index needs pydivsufsort: pip install 'rowtrail[search]'") from None
    sel = select(store, version, corpus=corpus)
    info = sel.info
    t0 = time.perf_counter()
    if tokenizer in TOKENIZERS and tokenizer != "hf-tokenizers":
        base = Tokenizer(tokenizer)
    else:  # a model's tokenizer.json
        try:
            base = Tokenizer.from_file(store, tokenizer)
        except ValueError as exc:
            raise RowtrailError(f"{exc}; --tokenizer is regex-v1, whitespace-v1 or a tokenizer.json file") from None
    spans = _Spans(base.with_case(False)) if "spans" in kinds else None
    lexical = _Lexical(base.with_case(True), k1, b) if "lexical" in kinds else None
    embedding = None
    if "embedding" in kinds:
        from .embed import DEFAULT_MODEL, model_config

        try:
            embedding = _Embedding(model_config(model or DEFAULT_MODEL))
        except ImportError as exc:
            raise RowtrailError(str(exc)) from None
    expected = sel.records["id"]
    used_fields: list[str] | None = list(fields) if fields is not None else None
    seconds = dict.fromkeys(kinds, 0.0)
    done = 0
    stream = sel.batches(provenance=False, batch_rows=batch_rows, progress=progress)
    read_time = 0.0
    t_read = time.perf_counter()
    for table in stream:
        if used_fields is None:
            used_fields = _default_fields(table, stream.content)
        elif done == 0:
            missing = [f for f in used_fields if f not in stream.content]
            if missing and table.num_rows:
                raise RowtrailError(
                    f"no content field {', '.join(missing)} in version {info.tag or info.version_id[:12]}; its fields are {', '.join(stream.content)}"
                )
        n = table.num_rows
        if n:  # document k is the k-th row id of the version: check the stream agrees
            got = table.column("row_id").combine_chunks()
            if got[0].as_py() != bytes(expected[done]).hex() or got[n - 1].as_py() != bytes(expected[done + n - 1]).hex():
                raise RowtrailError("rows came back out of id order while indexing; this is a bug in rowtrail")
        text = text_of(table, used_fields)
        read_time += time.perf_counter() - t_read
        t1 = time.perf_counter()
        tok = spans.tokenizer if spans is not None else lexical.tokenizer if lexical is not None else None
        tokens, counts = tok.tokenize(text) if tok is not None else (pa.array([], pa.string()), np.zeros(n, np.int64))
        tok_time = time.perf_counter() - t1
        if spans is not None:
            t2 = time.perf_counter()
            spans.add(tokens, counts)
            seconds["spans"] += time.perf_counter() - t2 + tok_time
        if lexical is not None:
            t2 = time.perf_counter()
            lexical.add(tokens, counts)
            seconds["lexical"] += time.perf_counter() - t2 + (tok_time if spans is None else 0.0)
        if embedding is not None:
            t2 = time.perf_counter()
            embedding.add(text)
            seconds["embedding"] += time.perf_counter() - t2
        done += n
        progress("index", done, sel.num_rows)
        t_read = time.perf_counter()
    merkle_root = store.version(info.version_id).content["merkle_root"]
    built: list[tuple[str, bytes, dict[str, Any]]] = []
    for kind, builder in (("spans", spans), ("lexical", lexical), ("embedding", embedding)):
        if builder is None:
            continue
        t2 = time.perf_counter()
        objects, stats = builder.finish(store, progress)
        seconds[kind] += time.perf_counter() - t2
        config: dict[str, Any] = {"fields": used_fields or []}
        if kind == "spans":
            config["tokenizer"] = spans.tokenizer.config  # type: ignore[union-attr]
        elif kind == "lexical":
            config["tokenizer"] = lexical.tokenizer.config  # type: ignore[union-attr]
            config["bm25"] = {"method": "lucene", "k1": k1, "b": b}
        else:
            config["model"] = embedding.model  # type: ignore[union-attr]
        if (config.get("tokenizer") or {}).get("file_sha256"):  # a model's tokenizer.json, stored
            objects = {**objects, "tokenizer": config["tokenizer"]["file_sha256"]}
        size = sum(store.backend.object_path(d).stat().st_size for d in set(objects.values()))
        entry_stats = {
            "rows": info.row_count,
            "build_seconds": round(seconds[kind] + read_time, 4),
            "read_seconds": round(read_time, 4),
            "bytes": int(size),
            "bytes_per_row": round(size / max(info.row_count, 1), 2),
        }
        built.append((kind, make_manifest(info, merkle_root, kind, config, objects, stats), entry_stats))
    out = []
    with store._write() as state:
        if info.version_id not in state.versions:
            raise RowtrailError(f"version {info.version_id[:12]} is gone from the store")
        live = {e["index_id"] for e in index_entries(store)}
        for kind, manifest, entry_stats in built:
            index_id = store.backend.put_bytes(manifest)
            if index_id in live:  # the same index (same version, config and text) is already live
                out.append(
                    {"index_id": index_id, "kind": kind, "version_id": info.version_id, "tag": info.tag, **entry_stats, "existing": True}
                )
                continue
            store._append(
                state,
                {
                    "kind": "index",
                    "index_id": index_id,
                    "index_kind": kind,
                    "version_id": info.version_id,
                    "content_id": info.content_id,
                    "corpus": info.corpus,
                    "manifest": index_id,
                    "stats": entry_stats,
                },
            )
            out.append({"index_id": index_id, "kind": kind, "version_id": info.version_id, "tag": info.tag, **entry_stats})
    out_total = time.perf_counter() - t0
    for o in out:
        o["total_seconds"] = round(out_total, 4)
    return out
