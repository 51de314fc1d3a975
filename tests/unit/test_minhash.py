"""MinHash signatures and LSH grouping (rowtrail.steps.minhash), checked against datasketch where it applies."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rowtrail.steps import minhash
from rowtrail.steps.minhash import EMPTY, estimated_jaccard, groups, lsh_params, signatures

# Pinned so that any change to tokenization or hashing is a visible decision: signatures are
# recorded with the steps that use them and must come out the same on every machine.
FIXTURE = [
    "The quick brown fox jumps over the lazy dog.",
    "the QUICK brown fox -- jumps over the lazy dog!",
    "Ünïcödé wörds, CAFÉ au lait, 東京 and नमस्ते — 42 times_2",
    "",
    None,
    "one",
    "two words",
    "  punctuation only ... !!! ",
]
FIXTURE_SHA256 = "d0b0eb81f72f584a84b0c42eb1325457266ac93467b43d7f3bbb25e963867ccf"


def _digest(sigs: np.ndarray) -> str:
    return hashlib.sha256(sigs.astype("<u4").tobytes()).hexdigest()


def _random_docs(n: int, *, words: int = 100, vocab: int = 5000, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{i}" for i in row) for row in rng.integers(0, vocab, (n, words))]


def _planted(n_base: int, n_dup: int, *, subst: int, words: int = 100, vocab: int = 5000, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Random documents plus, for ``n_dup`` of them, a copy with ``subst`` words replaced; returns texts and (base, copy) pairs."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, vocab, (n_base, words))
    src = rng.choice(n_base, n_dup, replace=False)
    copies = base[src].copy()
    pos = rng.random((n_dup, words)).argsort(axis=1)[:, :subst]
    rows = np.arange(n_dup)[:, None]
    copies[rows, pos] = (copies[rows, pos] + rng.integers(1, vocab, (n_dup, subst))) % vocab  # never the same word
    texts = [" ".join(f"w{i}" for i in row) for row in np.vstack([base, copies])]
    return texts, np.stack([src, n_base + np.arange(n_dup)], axis=1)


def _recall(labels: np.ndarray, pairs: np.ndarray) -> float:
    return float(np.mean(labels[pairs[:, 0]] == labels[pairs[:, 1]]))


def _grouped_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label).tolist()
        out.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
    return out


# --- signatures: shape, determinism, independence from the batch -----------------------------


def test_shape_dtype_and_same_input_twice() -> None:
    texts = _random_docs(50)
    a = signatures(texts)
    assert a.shape == (50, 128) and a.dtype == np.uint32 and a.flags.c_contiguous
    np.testing.assert_array_equal(a, signatures(texts))
    assert signatures(texts, num_perm=7).shape == (50, 7)
    assert signatures([]).shape == (0, 128)


def test_pinned_digest() -> None:
    assert _digest(signatures(FIXTURE)) == FIXTURE_SHA256


def test_same_signatures_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import hashlib, sys, json; from rowtrail.steps.minhash import signatures; "
        "texts = json.loads(sys.stdin.read()); "
        "print(hashlib.sha256(signatures(texts).astype('<u4').tobytes()).hexdigest())"
    )
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], input=json.dumps(FIXTURE), env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == _digest(signatures(FIXTURE))


def test_row_signature_does_not_depend_on_its_neighbours() -> None:
    texts = _random_docs(40, seed=1) + FIXTURE
    whole = signatures(texts)
    for i in (0, 17, 41, len(texts) - 1):
        np.testing.assert_array_equal(signatures([texts[i]])[0], whole[i])
    order = np.random.default_rng(2).permutation(len(texts))
    np.testing.assert_array_equal(signatures([texts[i] for i in order]), whole[order])


def test_split_batches_concatenate_to_one_batch() -> None:
    texts = _random_docs(300, seed=3) + FIXTURE
    whole = signatures(texts)
    for cut in (1, 150, 301):
        parts = np.concatenate([signatures(texts[:cut]), signatures(texts[cut:])])
        np.testing.assert_array_equal(parts, whole)
    chunked = pa.chunked_array([pa.array(texts[:100]), pa.array(texts[100:])])
    np.testing.assert_array_equal(signatures(chunked), whole)


def test_internal_slices_do_not_change_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _random_docs(300, seed=3) + FIXTURE + [" ".join(_random_docs(30, seed=4))]  # the last text spans many slices
    whole = signatures(texts)
    monkeypatch.setattr(minhash, "_SLICE_BYTES", 997)
    assert len(minhash._slices(pa.array(texts, type=pa.large_string()))) > 100
    np.testing.assert_array_equal(signatures(texts), whole)


def test_arrow_inputs_agree_with_lists() -> None:
    texts = FIXTURE + _random_docs(20, seed=4)
    expected = signatures(texts)
    np.testing.assert_array_equal(signatures(pa.array(texts)), expected)
    np.testing.assert_array_equal(signatures(pa.array(texts, type=pa.large_string())), expected)
    np.testing.assert_array_equal(signatures(pa.array(["pad", *texts])[1:]), expected)  # sliced: non-zero offset
    np.testing.assert_array_equal(signatures(pa.chunked_array([], type=pa.string())), expected[:0])
    if hasattr(pa, "string_view"):
        np.testing.assert_array_equal(signatures(pa.array(texts, type=pa.string_view())), expected)
    with pytest.raises(TypeError, match="strings"):
        signatures(pa.array([1, 2]))


def test_parameters_change_signatures() -> None:
    texts = _random_docs(5)
    base = signatures(texts)
    for other in (signatures(texts, seed=2), signatures(texts, shingle=4)):
        assert estimated_jaccard(np.concatenate([base, other]), [(i, i + 5) for i in range(5)]).max() < 0.2
    with pytest.raises(ValueError):
        signatures(texts, num_perm=0)
    with pytest.raises(ValueError):
        signatures(texts, shingle=0)
    with pytest.raises(ValueError):
        signatures(texts, seed=-1)


# --- tokenization ----------------------------------------------------------------------------


def _arrow_lower(text: str) -> str:
    return pc.utf8_lower(pa.array([text]))[0].as_py()


def _normalized(text: str | None) -> str:
    """The documented tokenization done the slow way: Arrow lowercase, then re.findall(r"\\w+")."""
    return " ".join(re.findall(r"\w+", _arrow_lower(text or "")))


def test_case_punctuation_and_unicode_words() -> None:
    sigs = signatures(
        [
            "Hello, World! It's a fine day.",
            "hello world it s a FINE   day",
            "Café au lait 東京 ÉTÉ",
            "café-au-lait\t東京\néTé",
            "नमस्ते",  # the virama and vowel sign are combining marks, not \w: three words
            "नमस त",
        ],
        shingle=2,
    )
    np.testing.assert_array_equal(sigs[0], sigs[1])
    np.testing.assert_array_equal(sigs[2], sigs[3])
    np.testing.assert_array_equal(sigs[4], sigs[5])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=30), min_size=1, max_size=4), st.integers(1, 4))
def test_tokenization_is_arrow_lowercase_then_regex_words(texts: list[str], shingle: int) -> None:
    normalized = [_normalized(t) for t in texts]
    assume(all(_arrow_lower(t) == t for t in normalized))
    np.testing.assert_array_equal(signatures(texts, num_perm=16, shingle=shingle), signatures(normalized, num_perm=16, shingle=shingle))


def test_long_document_equals_min_of_its_overlapping_halves() -> None:
    # Longer than several permutation blocks; the shingles of words[:m + 4] and words[m:] cover it.
    words = [f"w{i}" for i in np.random.default_rng(5).integers(0, 50_000, 3 * minhash._BLOCK)]
    m = len(words) // 2 + 123
    whole, left, right = signatures([" ".join(words), " ".join(words[: m + 4]), " ".join(words[m:])])
    np.testing.assert_array_equal(whole, np.minimum(left, right))
    batch = signatures(["a b c d e f", " ".join(words), "g h"])
    np.testing.assert_array_equal(batch[1], whole)


# --- empty and short documents ---------------------------------------------------------------


def test_empty_none_and_wordless_docs_are_empty_and_never_grouped() -> None:
    texts = ["", None, "  ... !!! ", "", None, *_random_docs(3), "", "-"]
    sigs = signatures(texts)
    empty = (sigs == EMPTY).all(axis=1)
    np.testing.assert_array_equal(empty, [True, True, True, True, True, False, False, False, True, True])
    np.testing.assert_array_equal(groups(sigs, threshold=0.5), np.arange(len(texts)))


def test_short_docs_are_one_shingle() -> None:
    texts = ["hello world", "x", "Hello,  WORLD", "world hello", "hello world and then some more words", "x"]
    sigs = signatures(texts)
    assert not (sigs == EMPTY).all(axis=1).any()
    np.testing.assert_array_equal(groups(sigs, threshold=0.8), [0, 1, 0, 3, 4, 1])


# --- grouping --------------------------------------------------------------------------------


def test_identical_docs_grouped_under_the_smallest_index() -> None:
    texts = _random_docs(200, seed=6)
    dup = texts[10]
    for i in (30, 77, 150, 199):
        texts[i] = dup
    labels = groups(signatures(texts))
    expected = np.arange(200)
    expected[[30, 77, 150, 199]] = 10
    np.testing.assert_array_equal(labels, expected)


def test_huge_bucket_gives_linear_candidates() -> None:
    texts = _random_docs(100, seed=7)
    texts[50:50] = [texts[0]] * 3000
    sigs = signatures(texts)
    bands, rows = lsh_params(0.8, 128)
    pairs = minhash._candidate_pairs(sigs, np.arange(len(texts)), bands, rows)
    assert len(pairs) < 3100  # a star per band, deduplicated; all pairs would be 4.5 million
    labels = groups(sigs)
    copies = np.r_[0, 50:3050]
    assert (labels[copies] == 0).all()
    others = np.setdiff1d(np.arange(len(texts)), copies)
    np.testing.assert_array_equal(labels[others], others)


def test_unrelated_docs_not_grouped() -> None:
    sigs = signatures(_random_docs(2000, seed=8))
    for threshold in (0.4, 0.8):
        np.testing.assert_array_equal(groups(sigs, threshold=threshold), np.arange(2000))


def test_planted_near_duplicates_recall_not_below_datasketch() -> None:
    # 5 of 100 words replaced leaves true Jaccard 0.59-0.75 over 5-word shingles; at threshold 0.4 the
    # banding S-curve (datasketch's too) sits below those, at 0.5 it cuts into them (recall ~0.9 for both).
    datasketch = pytest.importorskip("datasketch")
    texts, pairs = _planted(2000, 500, subst=5, seed=9)
    threshold = 0.4
    labels = groups(signatures(texts), threshold=threshold)
    ours = _recall(labels, pairs)
    planted = {tuple(p) for p in pairs.tolist()}
    false_pairs = _grouped_pairs(labels) - planted
    assert ours >= 0.9
    assert len(false_pairs) <= 5

    lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=128)
    sketches = []
    for i, text in enumerate(texts):
        words = re.findall(r"\w+", text.lower())
        sketch = datasketch.MinHash(num_perm=128)
        sketch.update_batch([" ".join(words[j : j + 5]).encode() for j in range(len(words) - 4)])
        lsh.insert(i, sketch)
        sketches.append(sketch)
    parent = np.arange(len(texts))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return int(i)

    for i, sketch in enumerate(sketches):
        for j in lsh.query(sketch):
            a, b = root(i), root(j)
            parent[max(a, b)] = min(a, b)
    theirs = _recall(np.array([root(i) for i in range(len(texts))]), pairs)
    assert ours >= theirs - 0.03, (ours, theirs)


def test_estimated_jaccard_close_to_true_jaccard() -> None:
    # Pairs of windows over runs of distinct words, so the shingle overlap (and Jaccard) is known.
    rng = np.random.default_rng(10)
    texts, true = [], []
    for k, shift in enumerate(rng.integers(1, 80, 300)):
        words = [f"p{k}x{i}" for i in range(100 + shift)]
        texts += [" ".join(words[:100]), " ".join(words[shift : shift + 100])]
        true.append((96 - shift) / (96 + shift))
    sigs = signatures(texts)
    estimate = estimated_jaccard(sigs, np.arange(len(texts)).reshape(-1, 2))
    assert np.abs(estimate - np.array(true)).mean() < 0.05
    assert abs(float(np.mean(estimate - np.array(true)))) < 0.01  # unbiased


def test_lsh_params_match_datasketch() -> None:
    lsh = pytest.importorskip("datasketch.lsh")
    optimal = getattr(lsh, "_optimal_param", None)
    if optimal is None:
        pytest.skip("datasketch no longer exposes _optimal_param")
    for num_perm in (16, 128):
        for threshold in (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95):
            assert lsh_params(threshold, num_perm) == optimal(threshold, num_perm, 0.5, 0.5)
    with pytest.raises(ValueError):
        lsh_params(0.0)


def test_band_collisions_are_verified() -> None:
    bands, rows = lsh_params(0.8, 128)
    sigs = np.random.default_rng(12).integers(0, 2**32 - 1, (6, 128), dtype=np.uint32)
    sigs[1, :rows] = sigs[0, :rows]  # one shared band: a candidate with estimated Jaccard rows/128
    sigs[3, : bands * rows] = sigs[2, : bands * rows]  # equal in every band, random in the leftover slots
    sigs[5, :103] = sigs[4, :103]  # estimated Jaccard 0.805
    np.testing.assert_array_equal(groups(sigs, threshold=0.8), [0, 1, 2, 2, 4, 4])
    np.testing.assert_array_equal(groups(sigs, threshold=0.81), [0, 1, 2, 2, 4, 5])


def test_labels_are_component_minima() -> None:
    texts, _ = _planted(300, 100, subst=2, seed=11)
    texts += [texts[5]] * 3 + [texts[300]]  # copies of a base and of a near-duplicate join its group
    labels = groups(signatures(texts), threshold=0.5)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        assert label == members.min() and labels[label] == label
    assert labels[-1] == labels[300] and labels[-4] == 5


def test_groups_rejects_mismatched_signatures() -> None:
    sigs = signatures(_random_docs(3), num_perm=64)
    with pytest.raises(ValueError, match="num_perm=128"):
        groups(sigs)
    with pytest.raises(ValueError, match="unsigned"):
        groups(sigs.astype(np.int64), num_perm=64)
    assert groups(sigs[:0], num_perm=64).shape == (0,)
