"""Near-duplicate detection: MinHash signatures and LSH grouping, vectorized in numpy.

Two functions, used by the ``dedupe_near`` step: :func:`signatures` turns a batch of texts into
MinHash signatures (call it batch by batch), :func:`groups` labels near-duplicate rows of the
concatenated signatures (call it once, globally). Same purpose as datasketch's ``MinHash`` +
``MinHashLSH``, several times its throughput.

Tokenization
    Text is lowercased with Arrow's ``utf8_lower`` (Unicode simple case mapping: one code point to
    one, so ``"İ"`` becomes ``"i"`` and a final ``"Σ"`` becomes ``"σ"``, where ``str.lower`` would
    differ), then split into words: maximal runs of characters that Python's ``re`` matches with
    ``\\w`` (Unicode letters, digits and other numerics, underscore). Combining marks are not
    ``\\w`` and split words, as in ``re.findall(r"\\w+", ...)``. Lists of ``str`` go through Arrow
    too, so both input kinds tokenize identically. The word classes follow the Unicode database
    of the running Python (and the case mapping that of Arrow): characters newly assigned by a
    Unicode upgrade may tokenize differently.

Shingles
    A shingle is ``shingle`` consecutive words of a document; a document with fewer words has a
    single shingle of all its words; a document without words (``""``, ``None``, punctuation only)
    has none and gets the all-max signature :data:`EMPTY`, which :func:`groups` never groups.

Hashing (deterministic across processes, machines, numpy versions and batch splits)
    Every constant derives from ``seed`` through SHAKE-128; Python's ``hash()`` and numpy's random
    generators are never used. Texts are processed in slices of about 2 MB; each distinct word of
    a slice (Arrow ``dictionary_encode``, so hashing cost scales with the vocabulary, not the
    token count) is hashed once with BLAKE2b (8-byte digest, salted by the seed). A shingle of ``L`` words ``w_0 .. w_{L-1}`` hashes to
    ``fmix64(D_L + sum_j C_j * h(w_j)) mod 2**64`` (``C_j`` odd, ``fmix64`` MurmurHash3's
    finalizer); its top 32 bits ``x`` enter the permutations ``a_i * x + b_i mod 2**32``
    (``a_i`` odd, a bijection: datasketch's ``affine32`` scheme) and slot ``i`` keeps the minimum
    over the document's shingles. A row's signature depends only on its own text and the
    parameters.

Why classic k-permutation MinHash rather than one-permutation hashing (OPH)
    OPH hashes each shingle once instead of ``num_perm`` times, but 100-word documents (96 five-word
    shingles) leave about half of 128 bins empty, and filling them (optimal densification,
    Shrivastava 2017: an empty bin probes a fixed pseudo-random sequence of bins until it meets a
    full one) is a gather-heavy loop. Prototypes of both on 20k such documents were equally
    accurate (mean absolute Jaccard error 0.033 and 0.034 on planted pairs), but the k-permutation
    step, blocked uint32 multiply-add-min passes that SIMD handles well, took about half the time
    of OPH's binning plus densification, and tokenizing and hashing words, shared by both, cost
    more than either. k permutations also keep datasketch's variance at any document length
    (OPH's grows when a document has fewer shingles than bins).

Grouping
    Bands and rows per band minimize the equally weighted false positive and false negative
    probability mass, as datasketch's ``_optimal_param`` (:func:`lsh_params`, with exact
    Gauss-Legendre integrals). Rows sharing a band (a 64-bit key mixed from the band's slots) are
    candidates: all pairs in a bucket of at most ``_ALL_PAIRS_MAX`` rows, and in a larger bucket
    (many copies of one document) each member paired with the bucket's first row, so candidates
    stay linear in the bucket size. Rows of :data:`EMPTY` enter no bucket. Candidates are
    verified (estimated Jaccard, the fraction of equal slots, at least ``threshold``; datasketch's
    query returns candidates unverified); connected components of the verified pairs are the
    groups, labelled by their smallest row index.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DEFAULT_NUM_PERM",
    "DEFAULT_SEED",
    "DEFAULT_SHINGLE",
    "DEFAULT_THRESHOLD",
    "EMPTY",
    "estimated_jaccard",
    "groups",
    "lsh_params",
    "signatures",
]

DEFAULT_NUM_PERM = 128
DEFAULT_SHINGLE = 5
DEFAULT_SEED = 1
DEFAULT_THRESHOLD = 0.8

EMPTY = np.uint32(0xFFFFFFFF)
"""Value of every slot of a document without words (the maximum of the signature dtype)."""

# Buckets up to this size give all their pairs; larger ones give a star around the first member.
# 8 bounds the candidates at 3.5 pairs per row and band while keeping datasketch's all-pairs
# semantics for the small buckets that near-duplicates (rather than mass copies) produce.
_ALL_PAIRS_MAX = 8

# Texts are processed in slices of about this many bytes, so the per-byte and per-token scratch
# (about ten bytes per byte of text) stays bounded and is reused slice after slice, whatever the batch
# size. A word occurring in several slices is hashed once per slice: with 2 MB slices of
# Zipf-distributed text a per-call cache of word hashes measured no faster, so there is none.
_SLICE_BYTES = 2 << 20

# Shingles per block of the permutation step: the (num_perm x block) uint32 scratch of 4 MB
# stays in L2/L3 and the Python loop runs ~250 times per million shingles.
_BLOCK = 8192

# Candidate pairs verified per step: two (block x num_perm) gathers of 32 MB at 128 perms.
_VERIFY_BLOCK = 1 << 16

_WORD_CHAR = re.compile(r"\w")
_ASCII_WORD = np.array([_WORD_CHAR.match(chr(c)) is not None for c in range(256)], dtype=bool)
_ASCII_WORD[128:] = False  # non-ASCII bytes are classified by decoding, never byte by byte

_U64 = np.uint64


def signatures(
    texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
    *,
    num_perm: int = DEFAULT_NUM_PERM,
    shingle: int = DEFAULT_SHINGLE,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """MinHash signatures of ``texts``: a C-contiguous ``(len(texts), num_perm)`` uint32 array.

    ``texts`` is a sequence of ``str`` (``None`` for a missing text) or an Arrow string array or
    chunked array (nulls allowed). Row ``i``'s signature depends only on ``texts[i]``,
    ``num_perm``, ``shingle`` and ``seed``; a text without words gives a row of :data:`EMPTY`.
    """
    if num_perm < 1:
        raise ValueError(f"num_perm must be at least 1, got {num_perm}")
    if shingle < 1:
        raise ValueError(f"shingle must be at least 1 word, got {shingle}")
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed}")
    if isinstance(texts, pa.ChunkedArray):
        chunks = texts.chunks
    elif isinstance(texts, pa.Array):
        chunks = [texts]
    else:
        chunks = [pa.array(list(texts), type=pa.large_string())]
    # Perm-major, so the permutation step writes whole columns; transposed once at the end.
    out = np.full((num_perm, sum(len(c) for c in chunks)), EMPTY, dtype=np.uint32)
    col = 0
    for chunk in chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type) or str(chunk.type) == "string_view"):
            raise TypeError(f"texts must be strings, got an Arrow array of {chunk.type}")
        _fill_signatures(out[:, col : col + len(chunk)], chunk.cast(pa.large_string()), shingle, seed)
        col += len(chunk)
    return np.ascontiguousarray(out.T)


def lsh_params(threshold: float, num_perm: int = DEFAULT_NUM_PERM) -> tuple[int, int]:
    """``(bands, rows)`` with ``bands * rows <= num_perm`` minimizing false positive plus false negative mass.

    The false positive mass is the probability of becoming candidates integrated over Jaccard
    similarities below ``threshold``, the false negative mass the probability of not becoming
    candidates integrated above it, weighted equally (datasketch's ``_optimal_param``); the first
    minimum in ``(bands, rows)`` order wins.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be at least 2 for banding, got {num_perm}")
    return _lsh_params(float(threshold), int(num_perm))


def estimated_jaccard(sigs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity (fraction of equal slots) of each row pair ``pairs[k] = (i, j)``."""
    sigs = np.asarray(sigs)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.empty(len(pairs), dtype=np.float64)
    for lo in range(0, len(pairs), _VERIFY_BLOCK):
        block = pairs[lo : lo + _VERIFY_BLOCK]
        equal = np.count_nonzero(sigs[block[:, 0]] == sigs[block[:, 1]], axis=1)
        out[lo : lo + len(block)] = equal / sigs.shape[1]
    return out


def groups(sigs: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD, num_perm: int = DEFAULT_NUM_PERM) -> np.ndarray:
    """Near-duplicate group label of each row of ``sigs`` (int64): the smallest row index of its group.

    Two rows are linked when they share an LSH band (:func:`lsh_params`) and their estimated
    Jaccard similarity is at least ``threshold``; groups are the connected components of the
    links. Rows whose signature is all :data:`EMPTY` (texts without words) are never linked and
    label themselves, as do rows without near-duplicates.
    """
    sigs = np.asarray(sigs)
    if sigs.ndim != 2 or sigs.shape[1] != num_perm:
        raise ValueError(f"sigs must have shape (n, {num_perm}) for num_perm={num_perm}, got {sigs.shape}")
    if sigs.dtype.kind != "u":
        raise ValueError(f"sigs must be unsigned integers as signatures() returns, got {sigs.dtype}")
    bands, rows = lsh_params(threshold, num_perm)
    n = len(sigs)
    labels = np.arange(n, dtype=np.int64)
    live = np.flatnonzero((sigs != np.iinfo(sigs.dtype).max).any(axis=1))
    pairs = _candidate_pairs(sigs, live, bands, rows)
    pairs = pairs[estimated_jaccard(sigs, pairs) >= threshold]
    if len(pairs) == 0:
        return labels

    # Imported here: csgraph pulls in a good part of scipy.sparse, which `import rowtrail` should not pay for.
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    graph = coo_array((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    ncomp, comp = connected_components(graph, directed=False)
    smallest = np.full(ncomp, n, dtype=np.int64)
    np.minimum.at(smallest, comp, labels)
    return smallest[comp]


# --- signatures ------------------------------------------------------------------------------


def _slices(texts: pa.Array) -> list[tuple[int, int]]:
    """Row ranges of about ``_SLICE_BYTES`` of text each (a longer text is a range of its own)."""
    lengths = pc.fill_null(pc.binary_length(texts), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    ends = np.cumsum(lengths)
    if len(ends) == 0:
        return []
    cuts = np.searchsorted(ends, np.arange(_SLICE_BYTES, int(ends[-1]), _SLICE_BYTES), side="left") + 1
    bounds = np.unique(np.concatenate([[0], cuts, [len(texts)]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _fill_signatures(out: np.ndarray, texts: pa.Array, shingle: int, seed: int) -> None:
    """Write the signatures of ``texts`` (large_string) into the perm-major ``out`` (num_perm x len(texts))."""
    for lo, hi in _slices(texts):
        data, offsets = _lowered_utf8(texts.slice(lo, hi - lo))
        is_word, starts, ends = _word_spans(data, offsets)
        if len(starts) == 0:
            continue
        token_hashes = _word_hashes(data[is_word], ends - starts, seed)
        words_per_doc = np.diff(np.searchsorted(starts, offsets))
        shingle_hashes, shingle_start = _shingle_hashes(token_hashes, words_per_doc, shingle, seed)
        _min_permuted(out[:, lo:hi], (shingle_hashes >> _U64(32)).astype(np.uint32), shingle_start, out.shape[0], seed)


def _lowered_utf8(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of the lowercased texts (large_string), concatenated, and the int64 offsets of each text."""
    lowered = pc.utf8_lower(pc.fill_null(texts, ""))
    _, offsets_buf, data_buf = lowered.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64, count=len(lowered) + 1, offset=8 * lowered.offset)
    if data_buf is None:  # every text empty: Arrow may omit the data buffer
        return np.zeros(0, dtype=np.uint8), np.zeros(len(lowered) + 1, dtype=np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data, offsets - offsets[0]


def _word_spans(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which bytes of ``data`` belong to words, and the words' byte ranges ``[starts[k], ends[k])``.

    Words never span two texts.
    """
    is_word = _ASCII_WORD[data]
    if len(data) and data.max() >= 0x80:
        _classify_non_ascii(data, is_word)
    # A word starts where a word byte follows a non-word byte or a text boundary.
    boundary = offsets[(offsets > 0) & (offsets < len(data))]
    before = np.empty_like(is_word)
    before[:1] = False
    before[1:] = is_word[:-1]
    before[boundary] = False
    after = np.empty_like(is_word)
    after[-1:] = False
    after[:-1] = is_word[1:]
    after[boundary - 1] = False
    starts = np.flatnonzero(is_word & ~before)
    ends = np.flatnonzero(is_word & ~after) + 1
    return is_word, starts, ends


def _classify_non_ascii(data: np.ndarray, is_word: np.ndarray) -> None:
    """Mark the bytes of non-ASCII word characters in ``is_word`` (``data`` is valid UTF-8)."""
    pos = np.flatnonzero(data >= 0x80)
    lead = data[pos] >= 0xC0
    lead_pos = pos[lead]
    padded = np.concatenate([data, np.zeros(3, dtype=np.uint8)]).astype(np.uint32)
    b0, b1, b2, b3 = (padded[lead_pos + k] for k in range(4))
    code2 = ((b0 & 0x1F) << 6) | (b1 & 0x3F)
    code3 = ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F)
    code4 = ((b0 & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((b2 & 0x3F) << 6) | (b3 & 0x3F)
    codes = np.where(b0 < 0xE0, code2, np.where(b0 < 0xF0, code3, code4))
    # Classify each distinct code point once, with the regex engine that defines `\w`.
    distinct, inverse = np.unique(codes, return_inverse=True)
    word = np.array([_WORD_CHAR.match(chr(c)) is not None for c in distinct.tolist()], dtype=bool)
    # Continuation bytes take the class of the lead byte before them.
    is_word[pos] = word[inverse][np.cumsum(lead) - 1]


def _word_hashes(packed: np.ndarray, lengths: np.ndarray, seed: int) -> np.ndarray:
    """64-bit BLAKE2b hash of each word (``packed``: the words' bytes back to back), once per distinct word."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    words = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(packed)])
    encoded = pc.dictionary_encode(words)
    salt = _derived_bytes(seed, "word-salt", 16)
    digests = [hashlib.blake2b(w, digest_size=8, salt=salt, person=b"rowtrail.minhash").digest() for w in encoded.dictionary.to_pylist()]
    vocabulary = np.frombuffer(b"".join(digests), dtype="<u8").astype(np.uint64)
    return vocabulary[encoded.indices.to_numpy()]


def _shingle_hashes(token_hashes: np.ndarray, words_per_doc: np.ndarray, shingle: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hash of every shingle, grouped by document, and each document's first shingle index (n + 1 offsets)."""
    n, m = len(words_per_doc), len(token_hashes)
    mult = _derived_words(seed, "shingle-mult", shingle) | _U64(1)
    by_length = _derived_words(seed, "shingle-length", shingle + 1)
    token_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(words_per_doc, out=token_start[1:])
    full = words_per_doc >= shingle
    per_doc = np.where(full, words_per_doc - shingle + 1, words_per_doc > 0).astype(np.int64)
    shingle_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per_doc, out=shingle_start[1:])

    # Window sums over the flat token stream; windows crossing a document end are never read.
    window = np.full(m, by_length[shingle], dtype=np.uint64)
    for j in range(min(shingle, m)):
        window[: m - j] += token_hashes[j:] * mult[j]
    first_token = np.arange(shingle_start[-1], dtype=np.int64) - np.repeat(shingle_start[:-1] - token_start[:-1], per_doc)
    hashes = window[first_token]

    short = np.flatnonzero(~full & (words_per_doc > 0))
    if len(short):
        count = words_per_doc[short]
        acc = by_length[count]
        for j in range(shingle - 1):
            has = count > j
            acc[has] += token_hashes[token_start[short[has]] + j] * mult[j]
        hashes[shingle_start[short]] = acc
    return _fmix64(hashes), shingle_start


def _min_permuted(out: np.ndarray, x: np.ndarray, shingle_start: np.ndarray, num_perm: int, seed: int) -> None:
    """``out[i, d] = min over document d's shingles of a_i * x + b_i mod 2**32`` (``out`` is perm-major)."""
    a = (_derived_words(seed, "perm-a", num_perm).astype(np.uint32)) | np.uint32(1)
    b = _derived_words(seed, "perm-b", num_perm).astype(np.uint32)
    a_col, b_col = a[:, None], b[:, None]
    docs = np.flatnonzero(np.diff(shingle_start))
    first, stop = shingle_start[docs], shingle_start[docs + 1]
    scratch = np.empty((num_perm, _BLOCK), dtype=np.uint32)
    total = int(shingle_start[-1])
    # Blocks of shingles rather than of documents, so one huge document cannot blow up the scratch.
    for lo in range(0, total, _BLOCK):
        hi = min(lo + _BLOCK, total)
        d0 = int(np.searchsorted(stop, lo, side="right"))
        d1 = int(np.searchsorted(first, hi, side="left"))
        block = scratch[:, : hi - lo]
        np.multiply(a_col, x[lo:hi], out=block)
        block += b_col
        mins = np.minimum.reduceat(block, np.maximum(first[d0:d1], lo) - lo, axis=1)
        cols = docs[d0:d1]
        out[:, cols] = np.minimum(out[:, cols], mins)


# --- grouping --------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=np.float64)
    bands, rows = pairs[:, :1], pairs[:, 1:]
    # The candidate probability 1 - (1 - s**r)**b is a polynomial of degree b*r <= num_perm, which
    # Gauss-Legendre with num_perm // 2 + 1 nodes integrates exactly.
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)
    below = threshold * (nodes + 1) / 2
    above = threshold + (1 - threshold) * (nodes + 1) / 2
    false_pos = (1 - (1 - below**rows) ** bands) @ weights * threshold / 2
    false_neg = (1 - above**rows) ** bands @ weights * (1 - threshold) / 2
    best = int(np.argmin(0.5 * false_pos + 0.5 * false_neg))
    return int(pairs[best, 0]), int(pairs[best, 1])


def _candidate_pairs(sigs: np.ndarray, live: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Unique row pairs ``(i, j)``, ``i < j``, of ``live`` rows sharing at least one band."""
    n = len(sigs)
    found: list[np.ndarray] = []
    mult = _derived_words(0, "band-key", rows) | _U64(1)
    for band in range(bands):
        block = sigs[live, band * rows : (band + 1) * rows]
        key = np.full(len(live), _U64(band), dtype=np.uint64)
        for c in range(rows):
            key += block[:, c].astype(np.uint64) * mult[c]
        key = _fmix64(key)
        # Stable, so members of a bucket stay in row order: its first member is its smallest row.
        order = np.argsort(key, kind="stable")
        sorted_key, member = key[order], live[order]
        new_bucket = np.ones(len(order), dtype=bool)
        new_bucket[1:] = sorted_key[1:] != sorted_key[:-1]
        bucket_first = np.flatnonzero(new_bucket)
        size = np.diff(np.append(bucket_first, len(order)))
        bucket = np.cumsum(new_bucket) - 1
        first_pos = bucket_first[bucket]
        end_pos = first_pos + size[bucket]
        in_size = size[bucket]

        codes: list[np.ndarray] = []
        star = np.flatnonzero((in_size > _ALL_PAIRS_MAX) & ~new_bucket)
        codes.append(member[first_pos[star]] * n + member[star])
        pos = np.flatnonzero((in_size >= 2) & (in_size <= _ALL_PAIRS_MAX))
        step = 1
        while len(pos):
            pos = pos[pos + step < end_pos[pos]]
            codes.append(member[pos] * n + member[pos + step])
            step += 1
        found.append(np.unique(np.concatenate(codes)))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    code = np.unique(np.concatenate(found))
    return np.stack([code // n, code % n], axis=1)


# --- hashing helpers -------------------------------------------------------------------------


def _derived_bytes(seed: int, label: str, size: int) -> bytes:
    """``size`` bytes determined by ``(seed, label)`` alone (SHAKE-128), the source of every constant."""
    return hashlib.shake_128(f"rowtrail.steps.minhash/v1/{label}/{seed}".encode()).digest(size)


@lru_cache(maxsize=64)
def _derived_words(seed: int, label: str, count: int) -> np.ndarray:
    """``count`` uint64 constants determined by ``(seed, label)`` (read-only: cached and shared)."""
    words = np.frombuffer(_derived_bytes(seed, label, 8 * count), dtype="<u8").astype(np.uint64)
    words.flags.writeable = False
    return words


def _fmix64(h: Any) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, elementwise (wrapping uint64 arithmetic)."""
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xC4CEB9FE1A85EC53)
    return np.asarray(h ^ (h >> _U64(33)))
