"""Queries over a version's indexes: trace a model output, similar rows for a task, eval overlap.

Every hit names the row (``row_id``, ``source_id``, ``source_key``) and its provenance — the source's
licence and legal basis, the ingest, the pipeline steps' events (including curation scores), the
versions that hold it and the training runs that consumed it (from ``store.trace``) — and results
are grouped by source (and by the rows' declared attributes, such as teacher model and lane).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from ..errors import IngestError, RowtrailError
from .index import IndexNotFoundError, SpanIndex, find_entry, load_index

if TYPE_CHECKING:
    from ..store import Store

MIN_SPAN_TOKENS = 6
COMMON_MASS = 0.5  # the most frequent tokens that make up this share of the version's tokens are "very common"
MAX_SPANS = 20
ROWS_PER_SPAN = 5
OVERLAP_N = 13
CHUNK = 256  # output positions searched at once


# -- provenance ---------------------------------------------------------------------------------------


class Provenance:
    """Condensed traces of hit rows, computed once per row."""

    def __init__(self, store: Store, version_id: str, full: bool = True) -> None:
        self.store, self.version_id, self.full = store, version_id, full
        self._cache: dict[str, dict[str, Any]] = {}
        self._light: dict[int, dict[str, Any]] = {}

    def light(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """row_id, source_id, source_key and declared attributes of version records (read in bulk:
        one read per segment)."""
        from ..segments import read_rows_at

        keys = [int(r["seg"]) << 32 | int(r["row"]) for r in rows]
        todo = sorted({k for k in keys if k not in self._light})
        by_seg: dict[int, list[int]] = defaultdict(list)
        for k in todo:
            by_seg[k >> 32].append(k & 0xFFFFFFFF)
        for seg, at in by_seg.items():
            segment = self.store.state.segments[seg]
            table = read_rows_at(str(self.store.backend.object_path(segment.provenance)), np.asarray(at, np.int64))
            for r, prov in zip(at, table.to_pylist()):
                self._light[seg << 32 | r] = {
                    "row_id": prov["row_id"].hex() if isinstance(prov["row_id"], bytes) else prov["row_id"],
                    "source_id": prov["source_id"],
                    "source_key": prov.get("source_key"),
                    "attributes": {k[len("attr.") :]: v for k, v in prov.items() if k.startswith("attr.") and v is not None},
                }
        return [self._light[k] for k in keys]

    def of(self, row_id: str) -> dict[str, Any]:
        hit = self._cache.get(row_id)
        if hit is None:
            t = self.store.trace(row_id)
            src = t["source"]
            scores: dict[str, Any] = {}
            for ev in t["steps"]:
                if ev["event"] == "scored" and self.version_id in (ev.get("versions") or [self.version_id]):
                    scores.update(ev["values"])
            prov = t["provenance"]
            hit = self._cache[row_id] = {
                "source": {
                    k: src.get(k) for k in ("source_id", "kind", "license", "legal_basis", "collected", "refreshed_at", "generator", "uri")
                },
                "ingest": {
                    "ingest_id": t["ingest"]["ingest_id"],
                    "at": t["ingest"]["at"],
                    "file": prov.get("origin_file"),
                    "line": prov.get("origin_line"),
                },
                "steps": [
                    {k: ev.get(k) for k in ("step", "step_id", "event", "reason_code", "reason", "values") if ev.get(k) is not None}
                    for ev in t["steps"]
                ],
                "scores": scores,
                "derived_from": [d["row_id"] for d in t["derived_from"]],
                "versions": [v["tag"] or v["version_id"][:12] for v in t["versions"]],
                "runs": [r["run_id"] for r in t["runs"]],
                "content_erased": t["content"] is None,
            }
        return hit

    def hit(self, rec: np.void | np.ndarray, **extra: Any) -> dict[str, Any]:
        base = dict(self.light(np.asarray([rec]))[0])
        base.update(extra)
        if self.full:
            base["provenance"] = self.of(base["row_id"])
        return base


def _group_by_source(store: Store, hits: list[dict[str, Any]], extra_sources: list[str] | None = None) -> list[dict[str, Any]]:
    """Hits per source: how many, the share, the source's kind, licence and legal basis, and the
    declared attributes' values among them (``extra_sources``: sources to list even without hits)."""
    groups: dict[str, dict[str, Any]] = {}

    def group(sid: str) -> dict[str, Any]:
        if sid not in groups:
            src = store.state.sources.get(sid)
            groups[sid] = {
                "source_id": sid,
                "kind": src.kind if src else None,
                "license": src.license if src else None,
                "legal_basis": src.legal_basis if src else None,
                "hits": 0,
                "rows": set(),
                "attributes": defaultdict(Counter),
                "weight": 0.0,
            }
        return groups[sid]

    for h in hits:
        g = group(h["source_id"])
        g["hits"] += 1
        g["rows"].add(h["row_id"])
        g["weight"] += 1.0
        for k, v in h.get("attributes", {}).items():
            g["attributes"][k][str(v)] += 1
    for sid in extra_sources or []:
        group(sid)
    total = sum(g["weight"] for g in groups.values()) or 1.0
    out = []
    for g in sorted(groups.values(), key=lambda g: (-g["weight"], g["source_id"])):
        out.append(
            {
                **{k: v for k, v in g.items() if k not in ("rows", "attributes", "weight")},
                "rows": len(g["rows"]),
                "share": round(g["weight"] / total, 4),
                "attributes": {k: dict(c.most_common()) for k, c in sorted(g["attributes"].items())},
            }
        )
    return out


def _headline(groups: list[dict[str, Any]], what: str) -> str | None:
    if not groups:
        return None
    g = groups[0]
    attrs = ", ".join(f"{k}={next(iter(v))}" for k, v in g["attributes"].items() if v and next(iter(v.values())) == sum(v.values()))
    return (
        f"{round(100 * g['share'])}% of {what} come from source {g['source_id']}"
        + (f" ({attrs})" if attrs else "")
        + (f", licence {g['license']}, legal basis {g['legal_basis']}" if g.get("license") or g.get("legal_basis") else "")
    )


# -- spans ---------------------------------------------------------------------------------------------


def maximal_spans(
    idx: SpanIndex, ids: np.ndarray, *, min_tokens: int = MIN_SPAN_TOKENS, common_mass: float = COMMON_MASS
) -> list[dict[str, Any]]:
    """Maximal spans of a token-id sequence that occur verbatim in the corpus, longest first.

    The longest match L_i starting at each position i is found in the suffix array; the match ends
    e_i = i + L_i never decrease, so span i is maximal (in no other match) exactly when e_i > e_{i−1}.
    Spans shorter than ``min_tokens``, and spans made only of very common tokens (the most frequent
    tokens that together make up ``common_mass`` of the version's tokens; 0 turns the filter off),
    are left out. Ties in length go to the span of lower unigram probability (the rarer one)."""
    ids = np.asarray(ids, dtype=np.int64)
    t = len(ids)
    lengths = idx.longest_matches(ids, chunk=CHUNK)
    ends = np.arange(t) + lengths
    prev = np.concatenate([[-1], ends[:-1]])
    starts = np.flatnonzero((ends > prev) & (lengths >= max(1, min_tokens)))
    total = max(idx.total_tokens, 1)
    p = np.asarray(idx.counts, dtype=np.float64) / total
    common = idx.common_tokens(common_mass)
    out = []
    for s in starts.tolist():
        span = ids[s : s + int(lengths[s])]
        if common[span].all():
            continue
        probs = p[span]
        out.append(
            {
                "start": s,
                "end": s + int(lengths[s]),
                "length": int(lengths[s]),
                "unigram_logprob": float(np.log(np.maximum(probs, 1e-300)).sum()),
            }
        )
    out.sort(key=lambda d: (-d["length"], d["unigram_logprob"], d["start"]))
    return out


def _read_text(text_or_file: str | Path) -> str:
    """A Path is a file to read; a string is always the text itself (the CLI turns a FILE argument
    into a Path), so text from a caller — a server request, say — can never name a file to read."""
    if not isinstance(text_or_file, Path):
        return text_or_file
    try:
        return text_or_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RowtrailError(f"cannot read {text_or_file}: {exc}") from None


def search_output(
    store: Store,
    output: str | Path,
    version: str = "HEAD",
    *,
    corpus: str = "main",
    min_tokens: int = MIN_SPAN_TOKENS,
    common_mass: float = COMMON_MASS,
    max_spans: int = MAX_SPANS,
    rows_per_span: int = ROWS_PER_SPAN,
    k: int = 10,
    provenance: bool = True,
) -> dict[str, Any]:
    """Trace a model output (text, or a file path) to the version's rows: its maximal verbatim spans
    (longest first, each with the rows that hold it — ranked by BM25 against the whole output when
    the version has a lexical index), then the rows most similar to the whole output (lexical, and
    embedding when built). Needs the version's ``spans`` index."""
    text = _read_text(output)
    idx: SpanIndex = load_index(store, version, "spans", corpus=corpus)
    info = idx.info
    prov = Provenance(store, info.version_id, full=provenance)
    words, ids = idx.encode(text)
    offsets = idx.tokenizer.spans(text)
    spans = maximal_spans(idx, ids, min_tokens=min_tokens, common_mass=common_mass)
    lex = _maybe(store, info, "lexical", corpus)
    lex_scores = lex.scores(text) if lex is not None and k else None  # every row's: the similar rows need them
    records = idx.records
    covered: dict[str, np.ndarray] = {}  # source → output tokens covered by spans found in its rows
    span_hits: list[dict[str, Any]] = []
    all_hits: list[dict[str, Any]] = []
    chosen = spans[:max_spans]
    if chosen:  # every span's suffix-array range in one vectorized search
        width = max(sp["length"] for sp in chosen)
        pats = np.full((len(chosen), width), -1, np.int64)
        for i, sp in enumerate(chosen):
            pats[i, : sp["length"]] = ids[sp["start"] : sp["end"]]
        los, his = idx.ranges(pats, np.array([sp["length"] for sp in chosen]))
    found = []
    for i, sp in enumerate(chosen):
        lo_i, hi_i = int(los[i]), int(his[i])
        docs, per_doc = idx.docs_of(lo_i, hi_i)
        bm25 = None
        if lex is not None and len(docs):  # rank the span's rows by BM25 against the whole output
            bm25 = lex_scores[docs] if lex_scores is not None else lex.scores_of(text, docs)
            order = np.lexsort((docs, -bm25))
            docs, per_doc, bm25 = docs[order], per_doc[order], bm25[order]
        found.append((sp, lo_i, hi_i, docs, per_doc, bm25))
    if found:
        prov.light(records[np.concatenate([f[3][:rows_per_span] for f in found])])
    for sp, lo_i, hi_i, docs, per_doc, bm25 in found:
        _, src_idx, src_names = store.gather(records[docs], want_sources=True, want_hashes=False)
        for s in np.unique(src_idx).tolist():
            mask = covered.setdefault(src_names[s], np.zeros(len(ids), bool))
            mask[sp["start"] : sp["end"]] = True
        rows = []
        for j, (d, c) in enumerate(zip(docs[:rows_per_span].tolist(), per_doc[:rows_per_span].tolist())):
            h = prov.hit(records[d], occurrences=int(c), **({"bm25": round(float(bm25[j]), 4)} if bm25 is not None else {}))
            rows.append(h)
            all_hits.append(h)
        span_hits.append(
            {
                **sp,
                "text": text[offsets[sp["start"]][0] : offsets[sp["end"] - 1][1]] if offsets else " ".join(words[sp["start"] : sp["end"]]),
                "occurrences": hi_i - lo_i,
                "rows_containing": int(len(docs)),
                "sources": dict(Counter(src_names[s] for s in src_idx.tolist()).most_common()),
                "rows": rows,
            }
        )
    similar_rows = _similar_hits(store, info, text, k, prov, corpus, lex=lex, lex_scores=lex_scores) if k else {}
    cover = {src: int(m.sum()) for src, m in covered.items()}
    any_cover = np.zeros(len(ids), bool)
    for m in covered.values():
        any_cover |= m
    by_source = _group_by_source(store, all_hits, sorted(cover))
    for g in by_source:
        g["output_tokens_covered"] = cover.get(g["source_id"], 0)
    by_source.sort(key=lambda g: (-g["output_tokens_covered"], -g["share"], g["source_id"]))
    if by_source and len(ids):
        total_cov = sum(g["output_tokens_covered"] for g in by_source) or 1
        for g in by_source:
            g["share"] = round(g["output_tokens_covered"] / total_cov, 4)
    return {
        "version_id": info.version_id,
        "tag": info.tag,
        "output_tokens": len(ids),
        "tokens_in_spans": int(any_cover.sum()),
        "spans_found": len(spans),
        "spans": span_hits,
        "similar": similar_rows,
        "by_source": by_source,
        "summary": _headline(by_source, "the output's verbatim-matched tokens"),
        "settings": {
            "min_tokens": min_tokens,
            "common_mass": common_mass,
            "max_spans": max_spans,
            "rows_per_span": rows_per_span,
            "tokenizer": idx.tokenizer.config,
        },
    }


def _maybe(store: Store, info: Any, kind: str, corpus: str) -> Any:
    if find_entry(store, info, kind) is None:
        return None
    return load_index(store, info.version_id, kind, corpus=corpus)


def _similar_hits(
    store: Store,
    info: Any,
    text: str,
    k: int,
    prov: Provenance,
    corpus: str,
    *,
    lex: Any = None,
    lex_scores: np.ndarray | None = None,
    method: str = "auto",
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    records = store.version_rows(info.version_id)
    if method in ("auto", "lexical"):
        lex = lex if lex is not None else _maybe(store, info, "lexical", corpus)
        if lex is None and method == "lexical":
            raise IndexNotFoundError(
                f"version {info.tag or info.version_id[:12]} has no lexical index; build it with 'rowtrail index {info.tag or info.version_id[:12]} --kind lexical'"
            )
        if lex is not None:
            from .index import top_k

            docs, sc = top_k(lex_scores if lex_scores is not None else lex.scores(text), k)
            prov.light(records[docs])
            out["lexical"] = [
                prov.hit(records[d], rank=i + 1, score=round(float(s), 4)) for i, (d, s) in enumerate(zip(docs.tolist(), sc.tolist()))
            ]
    if method in ("auto", "embedding"):
        emb = _maybe(store, info, "embedding", corpus)
        if emb is None and method == "embedding":
            raise IndexNotFoundError(
                f"version {info.tag or info.version_id[:12]} has no embedding index; build it with 'rowtrail index {info.tag or info.version_id[:12]} --kind embedding'"
            )
        if emb is not None:
            docs, sc = emb.top(text, k)
            prov.light(records[docs])
            out["embedding"] = [
                prov.hit(records[d], rank=i + 1, score=round(float(s), 4)) for i, (d, s) in enumerate(zip(docs.tolist(), sc.tolist()))
            ]
    return out


def similar(
    store: Store,
    text: str | Path,
    version: str = "HEAD",
    *,
    k: int = 20,
    method: str = "auto",
    corpus: str = "main",
    provenance: bool = True,
) -> dict[str, Any]:
    """The k training rows nearest a task text, by BM25 (``lexical``) or cosine over embeddings
    (``embedding``; ``auto``: every kind the version has an index of), each with its provenance and
    curation scores (step-attached columns and declared attributes), grouped by source."""
    if method not in ("auto", "lexical", "embedding"):
        raise RowtrailError(f"method is auto, lexical or embedding, not {method!r}")
    query = _read_text(text)
    info = store.state.resolve(version, corpus)
    prov = Provenance(store, info.version_id, full=provenance)
    hits = _similar_hits(store, info, query, k, prov, corpus, method=method)
    if not hits:
        label = info.tag or info.version_id[:12]
        raise IndexNotFoundError(
            f"version {label} has no lexical or embedding index; build one with 'rowtrail index {label} --kind lexical'"
        )
    groups = {m: _group_by_source(store, h) for m, h in hits.items()}
    first = next(iter(groups.values()))
    return {
        "version_id": info.version_id,
        "tag": info.tag,
        "k": k,
        "hits": hits,
        "by_source": groups,
        "summary": _headline(first, f"the {len(next(iter(hits.values())))} nearest rows"),
    }


# -- overlap --------------------------------------------------------------------------------------------


def read_eval(path: str | Path, id_field: str = "id", text_field: str = "text") -> list[tuple[str, str]]:
    """Eval items from JSONL: (id, text) per line; a bad line is an error naming file and line."""
    path = Path(path)
    items = []
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise IngestError(f"cannot read eval set: {exc}", file=str(path)) from None
    with fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise IngestError(f"not JSON ({exc})", file=str(path), line=n) from None
            if not isinstance(obj, dict):
                raise IngestError("an eval item is a JSON object", file=str(path), line=n)
            for f in (id_field, text_field):
                if f not in obj or obj[f] is None:
                    raise IngestError(f"no field {f!r} (set --id-field / --text-field)", file=str(path), line=n, field=f)
            if not isinstance(obj[text_field], str):
                raise IngestError(f"field {text_field!r} is not a string", file=str(path), line=n, field=text_field)
            items.append((str(obj[id_field]), obj[text_field]))
    return items


def overlap(
    store: Store,
    items: str | Path | list[tuple[str, str]],
    version: str = "HEAD",
    *,
    n: int = OVERLAP_N,
    id_field: str = "id",
    text_field: str = "text",
    corpus: str = "main",
    rows_per_item: int = 10,
    provenance: bool = False,
) -> dict[str, Any]:
    """The standard n-gram decontamination test: for each eval item, the training rows sharing at
    least one n-gram (n tokens, 13 by default) with it, with how many of the item's n-grams occur in
    the version; an item shorter than n tokens is tested as a whole. Reported per item and per
    training source. Needs the version's ``spans`` index (the same tokenizer)."""
    if n < 1:
        raise RowtrailError("--n must be at least 1")
    evals = read_eval(items, id_field, text_field) if not isinstance(items, list) else items
    idx: SpanIndex = load_index(store, version, "spans", corpus=corpus)
    info = idx.info
    records = idx.records
    prov = Provenance(store, info.version_id, full=provenance)
    per_item = []
    per_source: dict[str, dict[str, Any]] = {}
    for item_id, text in evals:
        _, ids = idx.encode(text)
        m = min(n, len(ids))
        if m == 0:
            per_item.append(
                {
                    "id": item_id,
                    "tokens": 0,
                    "ngrams": 0,
                    "ngrams_found": 0,
                    "contaminated": False,
                    "rows": 0,
                    "sources": {},
                    "examples": [],
                }
            )
            continue
        grams = np.lib.stride_tricks.sliding_window_view(ids, m)
        known = (grams >= 0).all(axis=1)  # an n-gram with a token the corpus never had cannot occur
        found = np.zeros(len(grams), bool)
        docs_all: list[np.ndarray] = []
        if known.any():
            lo, hi = idx.ranges(grams[known])
            found[np.flatnonzero(known)] = hi > lo
            for a, b in zip(lo[hi > lo].tolist(), hi[hi > lo].tolist()):
                docs_all.append(idx.docs_of(a, b)[0])
        docs = np.unique(np.concatenate(docs_all)) if docs_all else np.empty(0, np.int64)
        _, src_idx, src_names = store.gather(records[docs], want_sources=True, want_hashes=False)
        sources = Counter(src_names[s] for s in src_idx.tolist())
        for s, c in sources.items():
            g = per_source.setdefault(s, {"source_id": s, "items": 0, "rows": 0, "item_ids": []})
            g["items"] += 1
            g["rows"] += c
            g["item_ids"].append(item_id)
        examples = [prov.hit(records[d]) for d in docs[:rows_per_item].tolist()]
        per_item.append(
            {
                "id": item_id,
                "tokens": int(len(ids)),
                "ngrams": int(len(grams)),
                "ngrams_found": int(found.sum()),
                "fraction": round(float(found.mean()), 4),
                "contaminated": bool(found.any()),
                "rows": int(len(docs)),
                "sources": dict(sources.most_common()),
                "examples": examples,
            }
        )
    flagged = sum(1 for it in per_item if it["contaminated"])
    return {
        "version_id": info.version_id,
        "tag": info.tag,
        "n": n,
        "items": len(per_item),
        "contaminated_items": flagged,
        "contamination_rate": round(flagged / len(per_item), 4) if per_item else 0.0,
        "per_item": per_item,
        "per_source": sorted(per_source.values(), key=lambda g: (-g["items"], g["source_id"])),
        "tokenizer": idx.tokenizer.config,
    }
