"""Normative hashing (DESIGN "Normative formats" 1–6 and 9): shared vectors, value mapping, and
hypothesis properties for canonical JSON, RFC 6962 Merkle trees, inclusion/exclusion proofs and id sorting.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import decimal
import hashlib
import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import orjson
import pytest
import rfc8785
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rowtrail import hashing
from rowtrail.errors import ValueMappingError
from rowtrail.hashing import (
    EMPTY_ROOT,
    MAX_SAFE_INT,
    audit_path,
    audit_path_from_levels,
    content_sha256,
    derived_row_id,
    id_bytes,
    ids_from_hex,
    ids_hex,
    jcs,
    key_text,
    merkle_levels,
    merkle_root,
    mth,
    root_from_path,
    sort_ids,
    step_id,
    to_json_value,
    verify_exclusion,
    verify_inclusion,
    weights_sha256,
)

VECTORS = Path(os.environ.get("ROWTRAIL_VECTORS") or Path(__file__).resolve().parents[2] / "tests" / "vectors")

CHEAP = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MERKLE = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _load_jsonl(name: str) -> list[dict]:
    with open(VECTORS / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _load_json(name: str):
    with open(VECTORS / name, encoding="utf-8") as fh:
        return json.load(fh)


ROW_VECTORS = _load_jsonl("row_ids.jsonl")
MERKLE_VECTORS = _load_json("merkle.json")
RFC6962 = _load_json("rfc6962_reference.json")
DERIVED = _load_json("derived.json")


# --------------------------------------------------------------------------------------------------
# Helpers: id arrays and reference RFC 6962 structure


def as_ids(raw: list[bytes]) -> np.ndarray:
    """An 'S32' array holding exactly these raw 32-byte ids (trailing NULs preserved in the buffer)."""
    if not raw:
        return np.empty(0, dtype=hashing.ID_DTYPE)
    return np.frombuffer(b"".join(raw), dtype=hashing.ID_DTYPE).copy()


def raw_list(ids: np.ndarray) -> list[bytes]:
    return [id_bytes(ids, i) for i in range(len(ids))]


def sorted_ids(raw: list[bytes]) -> np.ndarray:
    ids = as_ids(raw)
    return ids[sort_ids(ids)]


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n]), transcribed directly (bottom-up order)."""
    n = len(leaves)
    if n <= 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return ref_path(m, leaves[:k]) + [mth(leaves[k:])]
    return ref_path(m - k, leaves[k:]) + [mth(leaves[:k])]


def shape(m: int, n: int) -> tuple[str, ...]:
    """The sibling sides ('R' sibling right of the running hash, 'L' left) along PATH(m, D[n])."""
    if n <= 1:
        return ()
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return shape(m, k) + ("R",)
    return shape(m - k, n - k) + ("L",)


def inclusion(
    ids: np.ndarray, levels: list[np.ndarray], root: str, i: int, leaf_key: str = "row_id", root_key: str = "merkle_root"
) -> dict:
    """A format-9 inclusion proof for leaf ``i``."""
    return {
        leaf_key: id_bytes(ids, i).hex(),
        "leaf_index": i,
        "tree_size": len(ids),
        "audit_path": audit_path_from_levels(levels, i),
        root_key: root,
        "version_id": "ab" * 32,
    }


def flip_hex(h: str, byte: int, mask: int = 0x01) -> str:
    b = bytearray.fromhex(h)
    b[byte] ^= mask
    return b.hex()


# --------------------------------------------------------------------------------------------------
# Vectors: row_ids.jsonl


@pytest.mark.parametrize("case", ROW_VECTORS, ids=[f"{c['source_id']}:{c['source_key']}" for c in ROW_VECTORS])
def test_row_vector(case):
    content = case["content"]
    expected_jcs = case["jcs"].encode("utf-8")
    assert jcs(content) == expected_jcs
    assert jcs(to_json_value(content)) == expected_jcs
    assert rfc8785.dumps(content) == expected_jcs  # the vectors agree with the reference package
    assert content_sha256(content) == case["content_sha256"]
    assert hashlib.sha256(expected_jcs).hexdigest() == case["content_sha256"]
    assert key_text(case["source_key"], "id") == case["source_key"]
    assert hashing.row_id(case["source_id"], case["source_key"], case["content_sha256"]) == case["row_id"]


def test_row_vectors_cover_the_documented_cases():
    # sanity: the file is what README.md describes (so the tests above really exercise these paths)
    assert len(ROW_VECTORS) >= 8
    all_jcs = "".join(c["jcs"] for c in ROW_VECTORS)
    for needle in ("1e+21", "1e-7", "\\u001f", "🙂", "😀"):
        assert needle in all_jcs


# --------------------------------------------------------------------------------------------------
# Vectors: derived.json


def test_step_id_vector():
    step = DERIVED["step"]
    code = hashing.sha256_hex(DERIVED["step_code_source"].encode("utf-8"))
    assert code == step["code"]
    assert step_id(step["name"], step["version"], step["params"], code) == DERIVED["step_id"]
    body = {"name": step["name"], "version": step["version"], "params": step["params"], "code": code}
    assert hashlib.sha256(rfc8785.dumps(body)).hexdigest() == DERIVED["step_id"]


def test_derived_row_vector():
    d = DERIVED["derived_row"]
    assert content_sha256(d["content"]) == d["content_sha256"]
    assert derived_row_id(DERIVED["step_id"], d["parents"], d["content_sha256"]) == d["row_id"]
    # parents are sorted before hashing: their order as given does not matter
    assert derived_row_id(DERIVED["step_id"], list(reversed(d["parents"])), d["content_sha256"]) == d["row_id"]
    assert derived_row_id(DERIVED["step_id"], iter(d["parents"]), d["content_sha256"]) == d["row_id"]


def test_weights_vector():
    w = DERIVED["weights"]
    ids = ids_from_hex(w["sorted_row_ids"])
    got = weights_sha256(ids, np.asarray(w["weights"], dtype=np.float64))
    assert got == w["weights_sha256"]
    manual = b"".join(bytes.fromhex(h) + struct.pack(">d", x) for h, x in zip(w["sorted_row_ids"], w["weights"]))
    assert hashlib.sha256(manual).hexdigest() == w["weights_sha256"]


def test_weights_sha256_keeps_trailing_nul_bytes():
    raw = [b"\x01" * 31 + b"\x00", b"\x02" * 30 + b"\x00\x00"]
    ids = as_ids(raw)
    manual = b"".join(r + struct.pack(">d", 1.0) for r in raw)
    assert weights_sha256(ids, np.ones(2)) == hashlib.sha256(manual).hexdigest()


def test_step_id_unhashable_params_raise():
    with pytest.raises(ValueMappingError, match="step 'bad'"):
        step_id("bad", "1", {"f": float("nan")}, "00" * 32)
    with pytest.raises(ValueMappingError):
        step_id("bad", "1", {"f": object()}, "00" * 32)
    with pytest.raises(ValueMappingError):
        step_id("bad", "1", {"n": 2**60}, "00" * 32)


# --------------------------------------------------------------------------------------------------
# Vectors: rfc6962_reference.json (variable-length leaves, given order)


def test_rfc6962_reference_roots():
    leaves = [bytes.fromhex(h) for h in RFC6962["leaves"]]
    roots = RFC6962["roots_by_size"]
    assert sorted(int(n) for n in roots) == list(range(1, len(leaves) + 1))
    for n_text, root in roots.items():
        n = int(n_text)
        assert mth(leaves[:n]).hex() == root
    assert mth([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_rfc6962_reference_paths_reproduce_roots():
    """root_from_path (RFC 9162 §2.1.3.2) recomputes every CT reference root from RFC 6962 PATHs."""
    leaves = [bytes.fromhex(h) for h in RFC6962["leaves"]]
    for n_text, root in RFC6962["roots_by_size"].items():
        n = int(n_text)
        for m in range(n):
            path = [p.hex() for p in ref_path(m, leaves[:n])]
            assert root_from_path(leaves[m], m, n, path).hex() == root
            assert root_from_path(leaves[m], m, n + 1, path) != bytes.fromhex(root) or shape(m, n) == shape(m, n + 1)


# --------------------------------------------------------------------------------------------------
# Vectors: merkle.json


@pytest.mark.parametrize("tree", MERKLE_VECTORS, ids=[f"n{t['tree_size']}" for t in MERKLE_VECTORS])
def test_merkle_vector(tree):
    ids = ids_from_hex(tree["sorted_row_ids"])
    n = tree["tree_size"]
    assert len(ids) == n
    assert ids_hex(ids) == tree["sorted_row_ids"]
    assert list(sort_ids(ids)) == list(range(n))  # the vector ids are already sorted
    assert merkle_root(ids) == tree["merkle_root"]
    assert mth(raw_list(ids)).hex() == tree["merkle_root"]
    assert len(tree["proofs"]) == n
    for p in tree["proofs"]:
        i = p["leaf_index"]
        assert id_bytes(ids, i).hex() == p["row_id"]
        assert audit_path(ids, i) == p["audit_path"]
        proof = {
            "row_id": p["row_id"],
            "leaf_index": i,
            "tree_size": n,
            "audit_path": p["audit_path"],
            "merkle_root": tree["merkle_root"],
            "version_id": "00" * 32,
        }
        assert verify_inclusion(proof)
        assert not verify_inclusion({**proof, "merkle_root": flip_hex(tree["merkle_root"], 0)})
        if n > 1:
            assert not verify_inclusion({**proof, "leaf_index": (i + 1) % n})


def test_merkle_vector_ids_are_the_row_vector_ids():
    known = {c["row_id"] for c in ROW_VECTORS}
    for tree in MERKLE_VECTORS:
        assert set(tree["sorted_row_ids"]) <= known
        assert tree["sorted_row_ids"] == sorted(tree["sorted_row_ids"])


def test_empty_tree():
    empty = np.empty(0, dtype=hashing.ID_DTYPE)
    assert merkle_root(empty) == EMPTY_ROOT.hex()
    assert merkle_levels(empty)[-1].tobytes() == EMPTY_ROOT
    proof = {"row_id": "11" * 32, "tree_size": 0, "merkle_root": EMPTY_ROOT.hex(), "left": None, "right": None}
    assert verify_exclusion(proof)
    assert not verify_exclusion({**proof, "merkle_root": "00" * 32})


# --------------------------------------------------------------------------------------------------
# Value mapping (format 1)


def test_safe_integers_pass_and_unsafe_raise_naming_the_field():
    assert to_json_value(MAX_SAFE_INT, "n") == MAX_SAFE_INT
    assert to_json_value(-MAX_SAFE_INT, "n") == -MAX_SAFE_INT
    assert to_json_value(np.int64(MAX_SAFE_INT), "n") == MAX_SAFE_INT
    for bad in (MAX_SAFE_INT + 1, -MAX_SAFE_INT - 1, 2**63, -(2**70), np.int64(2**60), np.uint64(2**64 - 1)):
        with pytest.raises(ValueMappingError, match="'big_n'"):
            to_json_value(bad, "big_n")
    with pytest.raises(ValueMappingError, match=r"meta\.counts\[1\]"):
        to_json_value({"meta": {"counts": [1, 2**53]}})
    with pytest.raises(ValueMappingError):
        jcs({"n": 2**53})
    with pytest.raises(ValueMappingError):
        content_sha256({"n": -(2**53)})


def test_bool_is_not_an_integer():
    assert to_json_value(True, "b") is True
    assert to_json_value(np.bool_(False), "b") is False
    assert jcs(to_json_value({"b": np.bool_(True)})) == b'{"b":true}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), np.float64("nan"), np.float32("inf"), np.float16("-inf")])
def test_nan_and_infinities_raise_naming_the_field(bad):
    with pytest.raises(ValueMappingError, match="'score'"):
        to_json_value(bad, "score")
    with pytest.raises(ValueMappingError, match=r"'row\.score'"):
        to_json_value({"row": {"score": bad}})
    with pytest.raises(ValueMappingError):
        jcs({"x": bad})


def test_finite_floats_and_numpy_scalars():
    assert to_json_value(0.1, "x") == 0.1
    assert jcs(to_json_value({"x": np.float32(0.5), "y": np.int16(-3), "z": np.float64(1e21)})) == b'{"x":0.5,"y":-3,"z":1e+21}'
    assert jcs(to_json_value(-0.0)) == b"0"


def test_bytes_raise_unless_declared_binary():
    for value in (b"\x00\xff", bytearray(b"ab"), memoryview(b"ab")):
        with pytest.raises(ValueMappingError, match="'blob'"):
            to_json_value(value, "blob")
        with pytest.raises(ValueMappingError, match="blob"):
            to_json_value({"blob": value})
        with pytest.raises(ValueMappingError):
            to_json_value(value, "blob", frozenset({"other"}))
    declared = frozenset({"blob"})
    assert to_json_value(b"\x00\xff", "blob", declared) == "AP8="
    assert to_json_value(bytearray(b"ab"), "blob", declared) == base64.b64encode(b"ab").decode()
    assert to_json_value(memoryview(b"ab"), "blob", declared) == "YWI="
    assert to_json_value(b"", "blob", declared) == ""
    # declaration applies to the top-level field, including values nested under it
    assert to_json_value({"blob": b"x", "t": "s"}, binary_fields=declared) == {"blob": "eA==", "t": "s"}
    assert to_json_value({"blob": {"parts": [b"x", b"yz"]}}, binary_fields=declared) == {"blob": {"parts": ["eA==", "eXo="]}}
    with pytest.raises(ValueMappingError):
        to_json_value({"other": {"blob": b"x"}}, binary_fields=declared)


def test_datetimes_map_to_rfc3339_utc_with_z():
    # naive = UTC
    assert to_json_value(dt.datetime(2024, 1, 2, 3, 4, 5), "t") == "2024-01-02T03:04:05Z"
    # tz-aware: converted to UTC (crossing a date boundary both ways)
    plus = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert to_json_value(dt.datetime(2024, 1, 1, 2, 0, 0, tzinfo=plus), "t") == "2023-12-31T20:30:00Z"
    minus = dt.timezone(dt.timedelta(hours=-8))
    assert to_json_value(dt.datetime(2024, 2, 28, 20, 0, 0, tzinfo=minus), "t") == "2024-02-29T04:00:00Z"
    assert to_json_value(dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC), "t") == "2024-06-01T12:00:00Z"
    # a naive and an aware datetime naming the same instant hash identically
    a = to_json_value(dt.datetime(2024, 6, 1, 12, 0), "t")
    b = to_json_value(dt.datetime(2024, 6, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), "t")
    assert a == b
    # sub-second precision is kept (without trailing zeros)
    assert to_json_value(dt.datetime(2024, 1, 2, 3, 4, 5, 500000), "t") == "2024-01-02T03:04:05.5Z"
    assert to_json_value(dt.datetime(2024, 1, 2, 3, 4, 5, 123), "t") == "2024-01-02T03:04:05.000123Z"
    # nested in a content object
    assert jcs(to_json_value({"at": dt.datetime(2024, 1, 2)})) == b'{"at":"2024-01-02T00:00:00Z"}'


def test_datetime_with_zoneinfo():
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        ny = zoneinfo.ZoneInfo("America/New_York")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz database")
    assert to_json_value(dt.datetime(2024, 7, 1, 8, 0, tzinfo=ny), "t") == "2024-07-01T12:00:00Z"  # EDT
    assert to_json_value(dt.datetime(2024, 1, 1, 8, 0, tzinfo=ny), "t") == "2024-01-01T13:00:00Z"  # EST


def test_timestamp_year_is_four_digits():
    # RFC 3339 date-fullyear = 4DIGIT
    assert to_json_value(dt.datetime(999, 1, 1), "t") == "0999-01-01T00:00:00Z"
    assert to_json_value(dt.datetime(5, 3, 4, 0, 0, 0, 120), "t") == "0005-03-04T00:00:00.00012Z"


RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d*[1-9])?Z$")


@CHEAP
@given(
    st.datetimes(
        min_value=dt.datetime(1000, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.none() | st.timezones(),
    )
)
def test_timestamp_roundtrip(value):
    text = to_json_value(value, "t")
    assert RFC3339_Z.match(text), text
    back = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    # (compare in UTC: PEP 495 makes a local time in a DST gap unequal to every other-zone time)
    expected = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    assert back == expected


def test_dates():
    assert to_json_value(dt.date(2024, 2, 29), "d") == "2024-02-29"
    assert to_json_value(dt.date(1, 1, 1), "d") == "0001-01-01"
    assert jcs(to_json_value({"d": dt.date(2024, 12, 31)})) == b'{"d":"2024-12-31"}'


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1.10", "1.10"),
        ("0.1", "0.1"),
        ("-1.25", "-1.25"),
        ("1E+3", "1000"),
        ("1.5E-10", "0.00000000015"),
        ("123456789012345678901234567890.000000000000000000001", "123456789012345678901234567890.000000000000000000001"),
        ("0", "0"),
    ],
)
def test_decimals_are_exact_strings(text, expected):
    assert to_json_value(decimal.Decimal(text), "price") == expected


@pytest.mark.parametrize("text", ["NaN", "sNaN", "Infinity", "-Infinity"])
def test_non_finite_decimals_raise(text):
    with pytest.raises(ValueMappingError, match="'price'"):
        to_json_value(decimal.Decimal(text), "price")


@CHEAP
@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_string_is_exact(d):
    text = to_json_value(d, "x")
    assert isinstance(text, str)
    assert re.fullmatch(r"-?\d+(\.\d+)?", text), text
    assert decimal.Decimal(text) == d


def test_containers_and_unsupported_types():
    assert to_json_value((1, "a", None), "t") == [1, "a", None]
    assert to_json_value(np.array([1, 2, 3]), "a") == [1, 2, 3]
    assert to_json_value(np.array([0.5, 1.0]), "a") == [0.5, 1.0]
    with pytest.raises(ValueMappingError, match=r"'arr\[1\]'"):
        to_json_value(np.array([1.0, np.nan]), "arr")
    with pytest.raises(ValueMappingError, match="non-string"):
        to_json_value({1: "a"}, "m")
    with pytest.raises(ValueMappingError, match="'s'"):
        to_json_value({1, 2}, "s")
    with pytest.raises(ValueMappingError, match="'o'"):
        to_json_value(object(), "o")


def test_text_is_hashed_as_given_without_normalization():
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    assert content_sha256({"t": nfc}) != content_sha256({"t": nfd})
    assert jcs({"t": nfd}) == '{"t":"cafe\u0301"}'.encode("utf-8")


def test_lone_surrogates_raise():
    with pytest.raises(ValueMappingError):
        jcs({"t": "a\ud800b"})


# --------------------------------------------------------------------------------------------------
# key_text (format 3)


@pytest.mark.parametrize("bad", [None, ""])
def test_key_text_null_or_empty_raises(bad):
    with pytest.raises(ValueMappingError, match="'id'"):
        key_text(bad, "id")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("abc", "abc"),
        ("0", "0"),
        (" padded ", " padded "),
        ("https://example.org/a?b=1", "https://example.org/a?b=1"),
        (7, "7"),
        (0, "0"),
        (-3, "-3"),
        (MAX_SAFE_INT, "9007199254740991"),
        (7.0, "7"),
        (1.5, "1.5"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (np.int64(42), "42"),
        (np.float64(0.1), "0.1"),
    ],
)
def test_key_text_values(value, expected):
    assert key_text(value, "id") == expected


@pytest.mark.parametrize("bad", [2**53, -(2**53), float("nan"), float("inf"), True, False, [1], {"a": 1}, b"x", dt.date(2024, 1, 1)])
def test_key_text_rejects(bad):
    with pytest.raises(ValueMappingError, match="'id'"):
        key_text(bad, "id")


@CHEAP
@given(st.integers(-MAX_SAFE_INT, MAX_SAFE_INT) | st.floats(allow_nan=False, allow_infinity=False))
def test_key_text_number_is_its_jcs_text(x):
    assert key_text(x, "id") == rfc8785.dumps(x).decode()


# --------------------------------------------------------------------------------------------------
# (a) jcs == rfc8785 for arbitrary JSON values


SPECIAL_CHARS = (
    '\x00\x01\x08\t\n\x0b\x0c\r\x1b\x1f "\\/\x7f\x80\x9f\u00a0\u00e9\u2028\u2029\ud7ff\ue000\uffff\ufeff\U00010000\U0001f600\U0010ffff'
)
texts = st.text() | st.text(alphabet=st.sampled_from(SPECIAL_CHARS)) | st.text(alphabet=st.characters(min_codepoint=0x10000))
safe_ints = st.integers(-MAX_SAFE_INT, MAX_SAFE_INT) | st.sampled_from(
    [0, 1, -1, MAX_SAFE_INT, -MAX_SAFE_INT, 2**31, 2**32, -(2**63) // 2**11]
)
finite_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1e21, 1e-7, 1e20, 5e-324, 1.7976931348623157e308, 0.1, 100.0]
)
json_scalars = st.none() | st.booleans() | safe_ints | finite_floats | texts
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(texts, children, max_size=6),
    max_leaves=30,
)
# what the orjson fast path admits: no floats, ASCII keys
fast_scalars = st.none() | st.booleans() | safe_ints | texts
fast_values = st.recursive(
    fast_scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=0x7F)), children, max_size=6)
    ),
    max_leaves=30,
)


@CHEAP
@given(json_values)
def test_jcs_equals_rfc8785(value):
    assert jcs(value) == rfc8785.dumps(value)
    assert jcs(to_json_value(value)) == rfc8785.dumps(value)


@CHEAP
@given(fast_values)
def test_orjson_fast_path_bytes_equal_rfc8785(value):
    """The licence for the fast path: wherever ``_fast_ok`` admits a value, orjson's bytes are RFC 8785's."""
    assert hashing._fast_ok(value)
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == rfc8785.dumps(value)


@CHEAP
@given(st.dictionaries(texts, json_scalars, min_size=2, max_size=8))
def test_jcs_key_order_is_utf16(d):
    out = json.loads(jcs(d))
    assert list(out) == sorted(d, key=lambda k: k.encode("utf-16-be"))


# --------------------------------------------------------------------------------------------------
# (b) Merkle trees and inclusion proofs


def _seeded_ids(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return sorted(set(rng.bytes(32 * n)[i : i + 32] for i in range(0, 32 * n, 32)), key=lambda b: b[::-1])


# hypothesis-built lists shrink well but stay short; seeded sets cover the whole 1–300 range
id_sets = st.one_of(
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=300, unique=True),
    st.builds(_seeded_ids, st.integers(1, 300), st.integers(0, 2**32)),
)


@MERKLE
@given(id_sets, st.randoms(use_true_random=False))
def test_merkle_root_and_inclusion_proofs(raw, rnd):
    ids = sorted_ids(raw)
    leaves = sorted(raw)
    assert raw_list(ids) == leaves
    n = len(ids)
    root = merkle_root(ids)
    assert root == mth(leaves).hex()
    levels = merkle_levels(ids)
    assert levels[-1].tobytes().hex() == root

    for i in sorted({0, n - 1, n // 2, rnd.randrange(n)}):
        path = audit_path(ids, i)
        assert path == audit_path_from_levels(levels, i)
        assert path == [p.hex() for p in ref_path(i, leaves)]

    for i in range(n):
        proof = inclusion(ids, levels, root, i)
        assert verify_inclusion(proof), i
        assert len(proof["audit_path"]) == len(shape(i, n))

        # wrong leaf: another id of the tree, or one flipped bit of this one
        if n > 1:
            other = leaves[(i + 1 + rnd.randrange(n - 1)) % n]
            assert not verify_inclusion({**proof, "row_id": other.hex()})
        assert not verify_inclusion({**proof, "row_id": flip_hex(proof["row_id"], rnd.randrange(32), 1 << rnd.randrange(8))})

        # wrong index: any other index, in or out of range
        if n > 1:
            j = (i + 1 + rnd.randrange(n - 1)) % n
            assert not verify_inclusion({**proof, "leaf_index": j})
        for j in (-1, n, n + rnd.randrange(1, 5)):
            assert not verify_inclusion({**proof, "leaf_index": j})

        # wrong tree_size: RFC 9162 binds the size only through the path's shape, so a false size
        # verifies exactly when the claimed tree puts this leaf under the same siblings on the same
        # sides (e.g. leaf 0 of 8 as leaf 0 of 5); the version's signed row_count pins the real size.
        for m in {n - 1, n + 1, rnd.randrange(1, 2 * n + 2), 2 * n}:
            if m == n:
                continue
            expect = i < m and shape(i, m) == shape(i, n)
            assert verify_inclusion({**proof, "tree_size": m}) == expect, (i, n, m)
        assert not verify_inclusion({**proof, "tree_size": 0})

        # flipped byte anywhere in the path, or a truncated / extended path
        if proof["audit_path"]:
            k = rnd.randrange(len(proof["audit_path"]))
            bad_path = list(proof["audit_path"])
            bad_path[k] = flip_hex(bad_path[k], rnd.randrange(32), 1 << rnd.randrange(8))
            assert not verify_inclusion({**proof, "audit_path": bad_path})
            assert not verify_inclusion({**proof, "audit_path": proof["audit_path"][:-1]})
        assert not verify_inclusion({**proof, "audit_path": proof["audit_path"] + [proof["row_id"]]})

        # a different root
        assert not verify_inclusion({**proof, "merkle_root": flip_hex(root, rnd.randrange(32))})


def test_wrong_tree_size_can_verify_only_with_an_identical_path_shape():
    """Documents the RFC 9162 property the test above relies on, on a fixed example."""
    raw = [hashlib.sha256(bytes([i])).digest() for i in range(8)]
    ids = sorted_ids(raw)
    levels = merkle_levels(ids)
    proof = inclusion(ids, levels, merkle_root(ids), 0)
    assert shape(0, 8) == shape(0, 5) == ("R", "R", "R")
    assert verify_inclusion({**proof, "tree_size": 5})
    assert not verify_inclusion({**proof, "tree_size": 4})
    last = inclusion(ids, levels, merkle_root(ids), 7)
    assert not any(verify_inclusion({**last, "tree_size": m}) for m in range(1, 20) if m != 8)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: {k: v for k, v in p.items() if k != "audit_path"},
        lambda p: {k: v for k, v in p.items() if k != "leaf_index"},
        lambda p: {k: v for k, v in p.items() if k != "merkle_root"},
        lambda p: {**p, "row_id": "zz" * 32},
        lambda p: {**p, "row_id": p["row_id"][:62]},
        lambda p: {**p, "audit_path": ["nothex"] + p["audit_path"][1:]},
        lambda p: {**p, "audit_path": [p["audit_path"][0][:62]] + p["audit_path"][1:]},
        lambda p: {**p, "audit_path": None},
        lambda p: {**p, "leaf_index": "x"},
        lambda p: {**p, "tree_size": None},
        lambda p: {"something": "else"},
    ],
)
def test_malformed_inclusion_proofs_are_false_not_errors(mutate):
    raw = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    ids = sorted_ids(raw)
    proof = inclusion(ids, merkle_levels(ids), merkle_root(ids), 1)
    assert verify_inclusion(proof)
    assert verify_inclusion(mutate(proof)) is False


def test_content_root_proofs():
    raw = [hashlib.sha256(b"c%d" % i).digest() for i in range(7)]
    ids = sorted_ids(raw)
    root = merkle_root(ids)
    proof = inclusion(ids, merkle_levels(ids), root, 3, leaf_key="content_sha256", root_key="content_root")
    assert verify_inclusion(proof)
    assert not verify_inclusion({**proof, "content_root": flip_hex(root, 5)})


# --------------------------------------------------------------------------------------------------
# (c) exclusion proofs


def _plus(b: bytes, delta: int) -> bytes | None:
    v = int.from_bytes(b, "big") + delta
    return v.to_bytes(32, "big") if 0 <= v < 1 << 256 else None


@st.composite
def tree_and_absent(draw):
    raw = draw(id_sets)
    present = set(raw)
    how = draw(st.sampled_from(["random", "neighbour", "extreme"]))
    if how == "random":
        absent = draw(st.binary(min_size=32, max_size=32))
    elif how == "neighbour":
        absent = _plus(draw(st.sampled_from(raw)), draw(st.sampled_from([-1, 1])))
    else:
        absent = draw(st.sampled_from([b"\x00" * 32, b"\xff" * 32]))
    assume(absent is not None and absent not in present)
    return raw, absent


def exclusion(ids: np.ndarray, levels, root: str, absent: bytes, left: int | None, right: int | None, **over) -> dict:
    return {
        "row_id": absent.hex(),
        "tree_size": len(ids),
        "merkle_root": root,
        "version_id": "ab" * 32,
        "left": None if left is None else inclusion(ids, levels, root, left),
        "right": None if right is None else inclusion(ids, levels, root, right),
        **over,
    }


@MERKLE
@given(tree_and_absent())
def test_exclusion_proofs(case):
    raw, absent = case
    ids = sorted_ids(raw)
    leaves = sorted(raw)
    n = len(ids)
    root = merkle_root(ids)
    levels = merkle_levels(ids)
    p = bisect.bisect_left(leaves, absent)
    assert hashing.searchsorted_ids(ids, absent) == p

    left = p - 1 if p > 0 else None
    right = p if p < n else None
    good = exclusion(ids, levels, root, absent, left, right)
    assert verify_exclusion(good)

    # the same against a content tree (keys content_sha256 / content_root)
    def as_content(d):
        if d is None:
            return None
        out = {("content_sha256" if k == "row_id" else "content_root" if k == "merkle_root" else k): v for k, v in d.items()}
        for side in ("left", "right"):
            if side in out:
                out[side] = as_content(out[side])
        return out

    assert verify_exclusion(as_content(good))

    # dropping a bracketing side that exists
    if left is not None:
        assert not verify_exclusion({**good, "left": None})
    if right is not None:
        assert not verify_exclusion({**good, "right": None})
    assert not verify_exclusion({**good, "left": None, "right": None})

    # non-adjacent leaves (still on the correct sides of the absent id)
    if left is not None and left > 0:
        assert not verify_exclusion(exclusion(ids, levels, root, absent, left - 1, right))
    if right is not None and right + 1 < n:
        assert not verify_exclusion(exclusion(ids, levels, root, absent, left, right + 1))
    if right is None and n > 1:  # absent is above every leaf: the left leaf must be the last one
        assert not verify_exclusion(exclusion(ids, levels, root, absent, n - 2, None))
    if left is None and n > 1:  # absent is below every leaf: the right leaf must be leaf 0
        assert not verify_exclusion(exclusion(ids, levels, root, absent, None, 1))

    # brackets on the wrong side / swapped
    if left is not None and right is not None:
        assert not verify_exclusion(exclusion(ids, levels, root, absent, right, left))

    # a smaller claimed tree_size making the left leaf look last (truncation attack)
    if left is not None and right is not None:
        m = left + 1
        lp = {**inclusion(ids, levels, root, left), "tree_size": m}
        assert not verify_exclusion({**good, "tree_size": m, "left": lp, "right": None})

    # the bracketing proofs must be against the same root and size as the exclusion claim
    other_root = flip_hex(root, 0)
    assert not verify_exclusion({**good, "merkle_root": other_root})
    assert not verify_exclusion({**good, "tree_size": n + 1})

    # a tampered side proof
    side = "left" if left is not None else "right"
    bad = dict(good[side])
    bad["row_id"] = flip_hex(bad["row_id"], 31)
    assert not verify_exclusion({**good, side: bad})


@MERKLE
@given(id_sets, st.randoms(use_true_random=False))
def test_exclusion_of_a_present_id_never_verifies(raw, rnd):
    ids = sorted_ids(raw)
    n = len(ids)
    root = merkle_root(ids)
    levels = merkle_levels(ids)
    leaves = raw_list(ids)
    for i in sorted({0, n - 1, rnd.randrange(n)}):
        x = leaves[i]
        candidates = [
            (i - 1 if i > 0 else None, i),
            (i, i + 1 if i + 1 < n else None),
            (i - 1 if i > 0 else None, i + 1 if i + 1 < n else None),
        ]
        if i == n - 1:
            candidates.append((i, None))
            candidates.append((i - 1 if i > 0 else None, None))
        if i == 0:
            candidates.append((None, 0))
            candidates.append((None, 1 if n > 1 else None))
        for lo, hi in candidates:
            assert not verify_exclusion(exclusion(ids, levels, root, x, lo, hi)), (i, n, lo, hi)


def test_exclusion_malformed_is_false():
    raw = [hashlib.sha256(bytes([i])).digest() for i in range(4)]
    ids = sorted_ids(raw)
    root = merkle_root(ids)
    levels = merkle_levels(ids)
    leaves = raw_list(ids)
    absent = _plus(leaves[1], 1)
    good = exclusion(ids, levels, root, absent, 1, 2)
    assert verify_exclusion(good)
    assert verify_exclusion({**good, "row_id": "zz" * 32}) is False
    assert verify_exclusion({**good, "row_id": absent.hex()[:62]}) is False
    assert verify_exclusion({k: v for k, v in good.items() if k != "tree_size"}) is False
    assert verify_exclusion({"nothing": 1}) is False


# --------------------------------------------------------------------------------------------------
# (d) sort_ids


PREFIXES = [b"\x00" * 8, b"\xff" * 8, b"\x80" + b"\x00" * 7, b"\x7f" + b"\xff" * 7, b"abcdefgh"]
# maps any byte to one of a few high/low-bit-heavy values, so suffixes collide on whole 8-byte words
_SKEW = bytes([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF][b % 6] for b in range(256))


def _skewed(pre: bytes, reps: int, tail: bytes) -> bytes:
    head = pre * reps  # a shared 8-, 16- or 24-byte prefix
    return head + tail[: 32 - len(head)].translate(_SKEW)


_id_elements = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.builds(lambda p, s: p + s, st.sampled_from(PREFIXES), st.binary(min_size=24, max_size=24)),
    st.builds(_skewed, st.sampled_from(PREFIXES), st.sampled_from([1, 2, 3]), st.binary(min_size=24, max_size=24)),
)


@st.composite
def id_arrays(draw):
    raw = draw(st.lists(_id_elements, max_size=120))
    if raw:  # duplicates too: the order must still sort them next to each other
        raw += [raw[i] for i in draw(st.lists(st.integers(0, len(raw) - 1), max_size=8))]
    return draw(st.permutations(raw)) if raw else raw


@CHEAP
@given(id_arrays())
def test_sort_ids_equals_python_sorted(raw):
    ids = as_ids(raw)
    order = sort_ids(ids)
    assert order.dtype.kind == "i"
    assert sorted(order.tolist()) == list(range(len(raw)))
    assert [raw[i] for i in order] == sorted(raw)
    assert raw_list(ids[order]) == sorted(raw)
    # searchsorted over the sorted array agrees with bisect on the raw bytes
    if raw:
        s = sorted(raw)
        for probe in (raw[0], b"\x00" * 32, b"\xff" * 32, _plus(raw[-1], 1) or b"\xff" * 32):
            assert hashing.searchsorted_ids(ids[order], probe) == bisect.bisect_left(s, probe)


def test_sort_ids_all_same_prefix_and_trailing_nuls():
    raw = [b"P" * 8 + bytes([a]) * 8 + bytes([b]) * 16 for a in (0xFF, 0x00, 0x80) for b in (0x01, 0x00, 0xFF)]
    raw += [b"P" * 8 + b"\x00" * 24, b"P" * 8 + b"\x00" * 23 + b"\x01"]
    ids = as_ids(raw)
    assert [raw[i] for i in sort_ids(ids)] == sorted(raw)
    assert ids_hex(ids) == [r.hex() for r in raw]
    assert ids_from_hex([r.hex() for r in raw]).tobytes() == b"".join(raw)
    assert len(sort_ids(np.empty(0, dtype=hashing.ID_DTYPE))) == 0


# --------------------------------------------------------------------------------------------------
# Vectorized (DuckDB) hashing path


def test_vectorized_merkle_root_50001():
    n = 50_001
    assert hashing._VECTOR_THRESHOLD < n, "this test must cross the vectorized-hashing threshold"
    rng = np.random.default_rng(20240601)
    ids = np.frombuffer(rng.bytes(32 * n), dtype=hashing.ID_DTYPE).copy()
    ids = ids[sort_ids(ids)]
    leaves = raw_list(ids)
    assert leaves == sorted(leaves)
    expected = mth(leaves).hex()
    assert merkle_root(ids) == expected

    lh = hashing.leaf_hashes(ids)
    assert lh.tobytes()[: 32 * 3] == b"".join(hashlib.sha256(b"\x00" + x).digest() for x in leaves[:3])
    assert lh[-1:].tobytes() == hashlib.sha256(b"\x00" + leaves[-1]).digest()

    levels = merkle_levels(ids)
    assert levels[-1].tobytes().hex() == expected
    for i in (0, 1, 19_999, 20_000, 32_767, 32_768, 49_999, 50_000):
        proof = inclusion(ids, levels, expected, i)
        assert verify_inclusion(proof), i


def test_vectorized_and_hashlib_paths_agree(monkeypatch):
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 5, 64, 1000, 20_001):
        ids = np.frombuffer(rng.bytes(32 * n), dtype=hashing.ID_DTYPE).copy()
        ids = ids[sort_ids(ids)]
        monkeypatch.setattr(hashing, "_VECTOR_THRESHOLD", 1)  # force DuckDB everywhere
        vec = [lv.tobytes() for lv in merkle_levels(ids)]
        monkeypatch.setattr(hashing, "_VECTOR_THRESHOLD", 10**12)  # force hashlib everywhere
        ref = [lv.tobytes() for lv in merkle_levels(ids)]
        assert vec == ref, n
        assert ref[-1].hex() == mth(raw_list(ids)).hex()


def test_vectorized_path_handles_ids_with_nul_bytes(monkeypatch):
    raw = [b"\x00" * 32, b"\x00" * 31 + b"\x01", b"\x01" + b"\x00" * 31, b"\xff" * 31 + b"\x00"]
    ids = sorted_ids(raw)
    monkeypatch.setattr(hashing, "_VECTOR_THRESHOLD", 1)
    assert merkle_root(ids) == mth(sorted(raw)).hex()
