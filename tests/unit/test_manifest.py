"""Content-defined chunking of sorted id lists and the cached Merkle level of version manifests."""

from __future__ import annotations

import math
import zlib
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rowtrail.hashing import ID_DTYPE, id_bytes, merkle_root, mth, sort_ids
from rowtrail.versions.manifest import (
    CACHE_LEVEL,
    CHUNK_MODULUS,
    chunk_cuts,
    decode_chunk,
    encode_chunk,
    level_sizes,
    split_levels,
    upper_levels,
)

CHEAP = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_sorted_ids(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = np.frombuffer(rng.bytes(32 * n), dtype=ID_DTYPE).copy()
    return ids[sort_ids(ids)]


def tail_u32(raw: bytes) -> int:
    return int.from_bytes(raw[28:32], "big")


def expected_cuts(raw: list[bytes]) -> list[int]:
    ends = [i + 1 for i, r in enumerate(raw) if tail_u32(r) % CHUNK_MODULUS == 0]
    if raw and (not ends or ends[-1] != len(raw)):
        ends.append(len(raw))
    return ends


def chunk_contents(ids: np.ndarray) -> list[bytes]:
    out, start = [], 0
    for end in chunk_cuts(ids):
        out.append(ids[start:end].tobytes())
        start = int(end)
    return out


def raw_leaves(ids: np.ndarray) -> list[bytes]:
    return [id_bytes(ids, i) for i in range(len(ids))]


# --------------------------------------------------------------------------------------------------
# chunk_cuts


def test_chunk_modulus_is_the_documented_one():
    assert CHUNK_MODULUS == 1 << 13
    assert CACHE_LEVEL == 10


def test_chunk_cuts_empty_and_single():
    assert chunk_cuts(np.empty(0, dtype=ID_DTYPE)).tolist() == []
    one = np.frombuffer(b"\x01" * 32, dtype=ID_DTYPE).copy()
    assert chunk_cuts(one).tolist() == [1]
    boundary = np.frombuffer(b"\x01" * 28 + (5 * CHUNK_MODULUS).to_bytes(4, "big"), dtype=ID_DTYPE).copy()
    assert chunk_cuts(boundary).tolist() == [1]


def test_chunk_cuts_reads_the_last_four_bytes_big_endian():
    # tail 0x01000000 = 2^24: a boundary read big-endian; read little-endian (= 1) it would not be
    at = b"\x01\x00\x00\x00"
    assert int.from_bytes(at, "big") % CHUNK_MODULUS == 0
    assert int.from_bytes(at, "little") % CHUNK_MODULUS != 0
    raw = [b"\x00" * 28 + b"\x00\x00\x00\x07", b"\x01" * 28 + at, b"\x02" * 28 + b"\x00\x00\x00\x09", b"\x03" * 28 + b"\x00\x00\x00\x00"]
    ids = np.frombuffer(b"".join(raw), dtype=ID_DTYPE).copy()
    assert chunk_cuts(ids).tolist() == [2, 4]
    # the other bytes (including bytes 24..27) do not matter
    raw2 = [b"\xff" * 28 + b"\x00\x00\x00\x01", b"\xff" * 28 + b"\x00\x01\x00\x00"]
    ids2 = np.frombuffer(b"".join(raw2), dtype=ID_DTYPE).copy()
    assert chunk_cuts(ids2).tolist() == [2]
    assert (0x00010000 % CHUNK_MODULUS) == 0


_TAILS = st.one_of(
    st.integers(0, 2**32 - 1),
    st.integers(0, (2**32 - 1) // CHUNK_MODULUS).map(lambda k: k * CHUNK_MODULUS),  # boundaries
    st.integers(0, (2**32 - 1) // CHUNK_MODULUS).map(lambda k: k * CHUNK_MODULUS + 1),
    st.sampled_from([0, CHUNK_MODULUS - 1, CHUNK_MODULUS // 2, 2**32 - CHUNK_MODULUS, 2**32 - 1]),
)


@CHEAP
@given(st.lists(st.tuples(st.binary(min_size=28, max_size=28), _TAILS), max_size=200))
def test_chunk_cuts_exactly_after_boundary_ids(parts):
    raw = sorted(head + tail.to_bytes(4, "big") for head, tail in parts)
    ids = np.frombuffer(b"".join(raw), dtype=ID_DTYPE).copy() if raw else np.empty(0, dtype=ID_DTYPE)
    cuts = chunk_cuts(ids)
    assert cuts.dtype == np.int64
    assert cuts.tolist() == expected_cuts(raw)
    # the chunks partition the list, in order, with no empty chunk
    assert all(b > a for a, b in zip([0] + cuts.tolist(), cuts.tolist()))
    assert b"".join(chunk_contents(ids)) == b"".join(raw)


def test_chunk_sizes_on_random_ids():
    n = 100_000
    ids = random_sorted_ids(n, 1)
    cuts = chunk_cuts(ids)
    assert cuts[-1] == n
    assert cuts.tolist() == expected_cuts(raw_leaves(ids))
    # each id is a boundary with probability 1/CHUNK_MODULUS: ≈ n / 8192 ≈ 12 chunks
    assert 3 <= len(cuts) <= 30


# --------------------------------------------------------------------------------------------------
# content-defined chunking: one insertion changes at most two chunks


def _insert(ids: np.ndarray, new: bytes) -> np.ndarray:
    pos = int(np.searchsorted(ids, np.frombuffer(new, dtype=ID_DTYPE)[0]))
    assert pos == 0 or id_bytes(ids, pos - 1) < new
    assert pos == len(ids) or new < id_bytes(ids, pos)
    out = np.concatenate([ids[:pos], np.frombuffer(new, dtype=ID_DTYPE), ids[pos:]])
    return out


def _check_one_insert(ids: np.ndarray, new: bytes) -> None:
    before = chunk_contents(ids)
    after_ids = _insert(ids, new)
    after = chunk_contents(after_ids)
    gone = Counter(before) - Counter(after)
    came = Counter(after) - Counter(before)
    assert sum(gone.values()) <= 1, "an insertion rewrote more than one existing chunk"
    assert sum(came.values()) <= 2, "an insertion produced more than two new chunks"
    assert 1 <= sum(came.values())  # the chunk holding the new id is new
    # and a deletion is the mirror image
    assert chunk_contents(np.delete(after_ids, int(np.searchsorted(after_ids, np.frombuffer(new, dtype=ID_DTYPE)[0])))) == before


BIG = random_sorted_ids(120_000, 42)


@pytest.mark.parametrize(
    "how",
    ["random", "boundary", "below-all", "above-all", "just-after-a-boundary", "just-before-a-boundary"],
)
def test_insert_changes_at_most_two_chunks(how):
    ids = BIG
    rng = np.random.default_rng(zlib.crc32(how.encode()))
    cuts = chunk_cuts(ids)
    assert len(cuts) >= 5
    for _ in range(5):
        if how == "random":
            new = rng.bytes(32)
        elif how == "boundary":
            new = rng.bytes(28) + (int(rng.integers(0, 2**32 // CHUNK_MODULUS)) * CHUNK_MODULUS).to_bytes(4, "big")
        elif how == "below-all":
            new = b"\x00" * 31 + bytes([int(rng.integers(0, 256))])
        elif how == "above-all":
            new = b"\xff" * 31 + bytes([int(rng.integers(0, 256))])
        else:
            k = int(cuts[int(rng.integers(0, len(cuts) - 1))]) - 1  # index of a boundary id
            anchor = int.from_bytes(id_bytes(ids, k), "big")
            new = (anchor + 1 if how == "just-after-a-boundary" else anchor - 1).to_bytes(32, "big")
        if np.any(ids == np.frombuffer(new, dtype=ID_DTYPE)[0]):
            continue
        _check_one_insert(ids, new)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=28, max_size=28), st.integers(0, 2**32 - 1), st.booleans())
def test_insert_changes_at_most_two_chunks_property(head, tail, force_boundary):
    if force_boundary:
        tail -= tail % CHUNK_MODULUS
    new = head + tail.to_bytes(4, "big")
    if np.any(BIG == np.frombuffer(new, dtype=ID_DTYPE)[0]):
        return
    _check_one_insert(BIG, new)


# --------------------------------------------------------------------------------------------------
# upper_levels: the stored Merkle levels from CACHE_LEVEL up to the root


def _check_levels(ids: np.ndarray, level: int) -> None:
    n = len(ids)
    leaves = raw_leaves(ids)
    root, nodes = upper_levels(ids, level)
    assert root == merkle_root(ids) == mth(leaves).hex()
    assert nodes.dtype == ID_DTYPE and len(nodes) == sum(level_sizes(n, level))
    levels = split_levels(nodes, n, level)
    assert len(levels[-1]) == 1 and levels[-1].tobytes().hex() == root
    block = 1 << level
    if n <= block:
        assert len(levels) == 1
        return
    for k, lev in enumerate(levels):  # node b of stored level k covers leaves [b·2^(level+k), …) clipped to n
        width = block << k
        assert len(lev) == math.ceil(n / width)
        for b in range(len(lev)):
            assert id_bytes(lev, b) == mth(leaves[b * width : (b + 1) * width]), (k, b)


@pytest.mark.parametrize("n", [1, 2, 3, 1023, 1024, 1025, 4097, 8193, 20000, 3 * 1024 + 5])
def test_upper_levels_at_the_cache_level(n):
    _check_levels(random_sorted_ids(n, n), CACHE_LEVEL)


def test_upper_levels_empty():
    root, nodes = upper_levels(np.empty(0, dtype=ID_DTYPE))
    assert root == merkle_root(np.empty(0, dtype=ID_DTYPE)) and nodes.tobytes().hex() == root


@CHEAP
@given(st.integers(1, 150), st.integers(0, 9), st.integers(0, 2**32))
def test_upper_levels_any_level(n, level, seed):
    _check_levels(random_sorted_ids(n, seed), level)


def test_chunk_encoding_is_columnar_and_round_trips():
    from rowtrail.versions.manifest import RECORD_DTYPE

    rec = np.empty(3, dtype=RECORD_DTYPE)
    rec["id"] = random_sorted_ids(3, 7)
    rec["w"] = [1.0, 2.0, 0.5]
    rec["seg"] = [0, 1, 2**32 - 1]
    rec["row"] = [5, 6, 7]
    raw = encode_chunk(rec)
    assert raw[:96] == rec["id"].tobytes()
    assert raw[96:120] == np.array([1.0, 2.0, 0.5], dtype=">f8").tobytes()
    assert raw[120:132] == np.array([0, 1, 2**32 - 1], dtype=">u4").tobytes()
    back = decode_chunk(raw)
    assert back.tolist() == rec.tolist()
    assert decode_chunk(rec["id"].tobytes(), records=False).tobytes() == rec["id"].tobytes()
