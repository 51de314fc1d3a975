"""Near-dedupe throughput and recall: rowtrail.steps.minhash against datasketch, in one run, one process.

    python bench/near_dedupe.py [--n 20000] [--threshold 0.5] [--subst 0.05] [--repeat 1] [--json]

Corpus (seeded): ``--n`` documents of ``--words`` words drawn Zipf-like from a ``--vocab``-word
vocabulary of random lowercase strings; ``--dup-frac`` of them are planted near-duplicates, each a
copy of a distinct base document with ``--subst`` of its words replaced by different words.

Contenders, both starting from the same Python list of ``str`` and ending with a group label per row:

* datasketch (baseline): per document ``re.findall(r"\\w+", text.lower())``, 5-word shingles
  joined by spaces and UTF-8 encoded, ``MinHash(num_perm=128)`` fed with ``update_batch`` (its
  fastest CPU path; ``--datasketch-update each`` calls ``update`` per shingle instead), then
  ``MinHashLSH.insert`` for every document, ``query`` for every document and a union-find over
  the results. Its candidates are not verified (as datasketch's query returns them); the recall
  after its own ``MinHash.jaccard >= threshold`` check is reported beside, untimed.
* rowtrail: ``signatures(texts)`` then ``groups(sigs, threshold=...)``.

Both get one untimed warm-up on 200 documents; each timed figure is the fastest of ``--repeat``
runs. Recall is the fraction of planted (base, copy) pairs that end in one group; precision the
fraction of grouped pairs (all pairs inside each group) that are planted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from rowtrail.steps.minhash import groups, lsh_params, signatures  # noqa: E402

T = TypeVar("T")
WORD = re.compile(r"\w+")
TARGET_RATIO = 5.0  # DESIGN.md: near-dedupe at >= 5x datasketch's throughput, same recall


def corpus(n: int, words: int, vocab: int, dup_frac: float, subst: float, seed: int) -> tuple[list[str], np.ndarray]:
    """Texts and the planted (base, copy) row pairs."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 11, vocab)
    letters = np.array(list(string.ascii_lowercase))
    names = np.array(["".join(letters[rng.integers(0, 26, k)]) for k in lengths])
    names = np.unique(names)  # random strings may repeat; keep distinct words only
    rank_weight = 1.0 / np.arange(1, len(names) + 1) ** 1.05
    p = rank_weight / rank_weight.sum()

    n_dup = int(round(n * dup_frac))
    n_base = n - n_dup
    base = rng.choice(len(names), (n_base, words), p=p)
    src = rng.choice(n_base, n_dup, replace=False)
    copies = base[src].copy()
    k = max(1, int(round(words * subst)))
    pos = rng.random((n_dup, words)).argsort(axis=1)[:, :k]
    rows = np.arange(n_dup)[:, None]
    copies[rows, pos] = (copies[rows, pos] + rng.integers(1, len(names), (n_dup, k))) % len(names)
    ids = np.vstack([base, copies])
    # Shuffle so copies are not all at the end (bucket order and labels then look like real data).
    order = rng.permutation(n)
    where = np.empty(n, dtype=np.int64)
    where[order] = np.arange(n)
    texts = [" ".join(names[row]) for row in ids[order]]
    pairs = np.sort(np.stack([where[src], where[n_base + np.arange(n_dup)]], axis=1), axis=1)
    return texts, pairs


def true_jaccard(texts: list[str], pairs: np.ndarray, shingle: int) -> np.ndarray:
    def shingles(text: str) -> set[tuple[str, ...]]:
        w = WORD.findall(text.lower())
        return {tuple(w[i : i + shingle]) for i in range(max(len(w) - shingle + 1, 1))}

    out = []
    for a, b in pairs.tolist():
        sa, sb = shingles(texts[a]), shingles(texts[b])
        out.append(len(sa & sb) / len(sa | sb))
    return np.array(out)


def run_datasketch(texts: list[str], threshold: float, num_perm: int, shingle: int, update: str) -> tuple[np.ndarray, np.ndarray, list]:
    """datasketch MinHash + MinHashLSH insert + query + union-find: labels, candidate pairs and sketches."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sketches = []
    for i, text in enumerate(texts):
        w = WORD.findall(text.lower())
        items = [" ".join(w[j : j + shingle]).encode() for j in range(max(len(w) - shingle + 1, 1))]
        m = MinHash(num_perm=num_perm, seed=1)
        if update == "batch":
            m.update_batch(items)
        else:
            for item in items:
                m.update(item)
        lsh.insert(i, m)
        sketches.append(m)
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    candidates = []
    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            if j > i:
                candidates.append((i, j))
                a, b = root(i), root(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    labels = np.array([root(i) for i in range(len(texts))], dtype=np.int64)
    return labels, np.array(candidates, dtype=np.int64).reshape(-1, 2), sketches


def run_rowtrail(texts: list[str], threshold: float, num_perm: int, shingle: int) -> np.ndarray:
    return groups(signatures(texts, num_perm=num_perm, shingle=shingle), threshold=threshold, num_perm=num_perm)


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Smallest-index label per row of the graph given by ``pairs``."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    graph = coo_array((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    ncomp, comp = connected_components(graph, directed=False)
    smallest = np.full(ncomp, n)
    np.minimum.at(smallest, comp, np.arange(n))
    return smallest[comp]


def quality(labels: np.ndarray, pairs: np.ndarray) -> dict[str, float | int]:
    found = int(np.count_nonzero(labels[pairs[:, 0]] == labels[pairs[:, 1]]))
    sizes = np.bincount(labels, minlength=len(labels))
    grouped = int((sizes * (sizes - 1) // 2).sum())
    return {
        "recall": found / len(pairs) if len(pairs) else 1.0,
        "precision": found / grouped if grouped else 1.0,
        "planted_found": found,
        "grouped_pairs": grouped,
    }


def timed(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Fastest wall time of ``repeat`` calls, and the last result."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="documents (default 20000)")
    ap.add_argument("--words", type=int, default=100, help="words per document (default 100)")
    ap.add_argument("--vocab", type=int, default=50000, help="vocabulary size (default 50000)")
    ap.add_argument("--dup-frac", type=float, default=0.2, help="fraction of documents that are planted near-duplicates")
    ap.add_argument("--subst", type=float, default=0.05, help="fraction of words replaced in a near-duplicate (default 0.05)")
    ap.add_argument("--threshold", type=float, default=0.5, help="Jaccard threshold for both contenders (default 0.5)")
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="fastest of N timed runs per contender")
    ap.add_argument("--datasketch-update", choices=["batch", "each"], default="batch", help="update_batch (default) or update per shingle")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args(argv)

    import datasketch

    texts, pairs = corpus(args.n, args.words, args.vocab, args.dup_frac, args.subst, args.seed)
    jac = true_jaccard(texts, pairs, args.shingle)
    load_start = os.getloadavg()

    warm = texts[:200]
    run_rowtrail(warm, args.threshold, args.num_perm, args.shingle)
    run_datasketch(warm, args.threshold, args.num_perm, args.shingle, args.datasketch_update)

    ours_s, ours_labels = timed(lambda: run_rowtrail(texts, args.threshold, args.num_perm, args.shingle), args.repeat)
    ds_s, (ds_labels, candidates, sketches) = timed(
        lambda: run_datasketch(texts, args.threshold, args.num_perm, args.shingle, args.datasketch_update), args.repeat
    )

    # Untimed: datasketch's candidates filtered by its own Jaccard estimate, as its docs suggest.
    keep = np.array([sketches[i].jaccard(sketches[j]) >= args.threshold for i, j in candidates.tolist()], dtype=bool)
    ds_verified_labels = components(len(texts), candidates[keep] if len(candidates) else candidates)

    ours_q, ds_q, dsv_q = quality(ours_labels, pairs), quality(ds_labels, pairs), quality(ds_verified_labels, pairs)
    bands, rows = lsh_params(args.threshold, args.num_perm)
    result = {
        "n": args.n,
        "words": args.words,
        "vocab": args.vocab,
        "planted_pairs": len(pairs),
        "subst": args.subst,
        "planted_jaccard": {"min": float(jac.min()), "mean": float(jac.mean()), "max": float(jac.max())} if len(jac) else None,
        "threshold": args.threshold,
        "num_perm": args.num_perm,
        "shingle": args.shingle,
        "bands_rows": [bands, rows],
        "repeat": args.repeat,
        "datasketch_update": args.datasketch_update,
        "datasketch": {"seconds": ds_s, "docs_per_s": args.n / ds_s, **ds_q},
        "datasketch_verified": dsv_q,
        "rowtrail": {"seconds": ours_s, "docs_per_s": args.n / ours_s, **ours_q},
        "ratio": ds_s / ours_s,
        "target_ratio": TARGET_RATIO,
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "datasketch": datasketch.__version__,
            "cpus": os.cpu_count(),
            "load_start": load_start,
            "load_end": os.getloadavg(),
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return result

    jr = result["planted_jaccard"]
    print(f"{args.n} docs of {args.words} words, {len(pairs)} planted near-duplicates ({args.subst:.0%} words replaced;", end=" ")
    print(f"true Jaccard {jr['min']:.2f}-{jr['max']:.2f}, mean {jr['mean']:.2f})" if jr else "none)")
    print(f"threshold {args.threshold}, {args.num_perm} perms, {args.shingle}-word shingles, {bands} bands x {rows} rows")
    print(f"{'contender':<34}{'seconds':>9}{'docs/s':>10}{'recall':>8}{'precision':>11}")
    for name, r in (("datasketch MinHash+LSH (baseline)", result["datasketch"]), ("rowtrail signatures+groups", result["rowtrail"])):
        print(f"{name:<34}{r['seconds']:>9.2f}{r['docs_per_s']:>10.0f}{r['recall']:>8.3f}{r['precision']:>11.3f}")
    print(f"{'  datasketch + jaccard check':<34}{'':>9}{'':>10}{dsv_q['recall']:>8.3f}{dsv_q['precision']:>11.3f}   (untimed)")
    verdict = "PASS" if result["ratio"] >= TARGET_RATIO else "MISS"
    print(f"throughput ratio rowtrail/datasketch: {result['ratio']:.1f}x (target >= {TARGET_RATIO:g}x): {verdict}")
    print(
        f"recall rowtrail - datasketch: {ours_q['recall'] - ds_q['recall']:+.3f}"
        f" (- datasketch with its jaccard check: {ours_q['recall'] - dsv_q['recall']:+.3f})"
    )
    print(f"load average {load_start[0]:.2f} -> {result['machine']['load_end'][0]:.2f}")
    return result


if __name__ == "__main__":
    main()
