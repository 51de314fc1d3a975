"""Output search: find the training rows behind a model output, from text alone.

A version's text can be indexed three ways (``build_index``), each stored in the store as immutable
``.npy`` objects named by a manifest and bound by an ``index`` journal entry to the version's id and
``content_id`` (see ``index.py``); an index refuses to answer for any other version:

- ``spans``: a suffix array over the version's tokens (a named, pinned tokenizer; ``regex-v1`` by
  default) for exact n-gram lookups — which rows contain this exact span, and how often;
- ``lexical``: BM25 over rows (bm25s's scoring, precomputed);
- ``embedding`` (extra ``[embed]``): sentence embeddings from a packaged offline model, cosine top-k.

Queries, each hit carrying ``row_id``, ``source_id``, ``source_key`` and provenance (licence, legal
basis, ingest, steps, versions, runs), grouped by source:

- ``search_output(store, text, version)``: the output's maximal verbatim spans (OLMoTrace-like),
  longest first, with the rows holding each, then the most similar rows overall;
- ``similar(store, text, version, k=20)``: nearest rows for a task, with curation scores;
- ``overlap(store, "eval.jsonl", version, n=13)``: n-gram contamination per eval item and per source.

``drop_for_purge`` retires the indexes a purge makes stale (called by ``ops/optout.py``);
``check_indexes`` is what ``verify`` checks of them.
"""

from __future__ import annotations

from .build import build_index
from .index import IndexMismatchError, IndexNotFoundError, LexicalIndex, SpanIndex, list_indexes, load_index
from .maintain import check_indexes, drop_for_purge, drop_index
from .query import maximal_spans, overlap, read_eval, search_output, similar
from .tokenize import Tokenizer

__all__ = [
    "IndexMismatchError",
    "IndexNotFoundError",
    "LexicalIndex",
    "SpanIndex",
    "Tokenizer",
    "build_index",
    "check_indexes",
    "drop_for_purge",
    "drop_index",
    "list_indexes",
    "load_index",
    "maximal_spans",
    "overlap",
    "read_eval",
    "search_output",
    "similar",
]
