"""Canonical values, content hashes, row ids, step ids, and RFC 6962 Merkle trees with proofs.

Everything here is normative (DESIGN.md "Normative formats", written up in docs/spec.md): an outside
auditor recomputes these values with any RFC 8785 and RFC 6962 implementation.

- ``to_json_value`` maps a stored or ingested value to the JSON value it is hashed as (format 1).
- ``jcs`` is RFC 8785 canonical JSON. The fast path (orjson with sorted keys) is taken only for values
  where its bytes are proven identical to the ``rfc8785`` package (strings, safe integers, booleans,
  null, arrays and objects with ASCII keys); everything else goes through ``rfc8785``.
- ``row_id`` / ``derived_row_id`` / ``step_id`` are SHA-256 over JCS arrays and objects (formats 2–5).
- ``merkle_root`` / ``audit_path`` / ``verify_inclusion`` follow RFC 6962 §2.1 and RFC 9162 §2.1.3.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson
import rfc8785

from .errors import ProofError, ValueMappingError

MAX_SAFE_INT = 2**53 - 1
EMPTY_ROOT = hashlib.sha256(b"").digest()
# Below this many hashes a level is hashed with hashlib; above it, in DuckDB (vectorized, threaded).
_VECTOR_THRESHOLD = 20_000


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------
# Values (format 1) and canonical JSON


def to_json_value(value: Any, field: str = "", binary_fields: frozenset[str] = frozenset()) -> Any:
    """Map ``value`` to the JSON value it is hashed as; raise ValueMappingError naming ``field``."""
    t = type(value)
    if t is str or value is None or t is bool:
        return value
    if t is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        raise ValueMappingError(
            f"integer {value} in field '{field}' is beyond ±(2^53−1) and has no exact JSON form; "
            "declare the field a string in the source file or schema"
        )
    if t is float:
        if math.isnan(value) or math.isinf(value):
            raise ValueMappingError(f"field '{field}' holds {value!r}; NaN and infinities have no JSON form")
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueMappingError(f"field '{field}' has a non-string object key {k!r}")
            out[k] = to_json_value(v, f"{field}.{k}" if field else k, binary_fields)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, f"{field}[{i}]", binary_fields) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return [to_json_value(v, f"{field}[{i}]", binary_fields) for i, v in enumerate(value.tolist())]
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return to_json_value(int(value), field, binary_fields)
    if isinstance(value, (float, np.floating)):
        return to_json_value(float(value), field, binary_fields)
    if isinstance(value, _dt.datetime):
        return format_timestamp(value)
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, _dt.time):
        text = value.replace(microsecond=0).isoformat()
        nanos = value.microsecond * 1000 + int(getattr(value, "nanosecond", 0) or 0)
        return text + (f".{nanos:09d}".rstrip("0") if nanos else "")
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueMappingError(f"field '{field}' holds the decimal {value}; it has no JSON form")
        return format(value, "f")
    if isinstance(value, (bytes, bytearray, memoryview)):
        root = field.split(".", 1)[0].split("[", 1)[0]
        if root in binary_fields:
            return base64.b64encode(bytes(value)).decode("ascii")
        raise ValueMappingError(
            f"field '{field}' holds binary data; declare it with --binary-fields {root} to hash it as base64"
        )
    raise ValueMappingError(f"field '{field}' holds a {type(value).__name__}, which has no JSON form")


def format_timestamp(value: _dt.datetime) -> str:
    """RFC 3339 in UTC with ``Z``; naive datetimes are taken as UTC; fraction only when non-zero."""
    if value.tzinfo is not None:
        value = value.astimezone(_dt.UTC).replace(tzinfo=None)
    text = f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    nanos = value.microsecond * 1000 + int(getattr(value, "nanosecond", 0) or 0)  # pandas.Timestamp keeps ns
    if nanos:
        text += f".{nanos:09d}".rstrip("0")
    return text + "Z"


class _NotFast(Exception):
    pass


def _key_sorted(value: Any) -> Any:
    """``value`` with every object's keys in JCS order, or _NotFast when orjson's bytes for it could
    differ from RFC 8785's (floats, unsafe integers, non-ASCII keys, other types)."""
    t = type(value)
    if t is str or value is None or t is bool:
        return value
    if t is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        raise _NotFast
    if t is dict:
        keys = sorted(value)  # ASCII keys: code point order is UTF-16 order
        for k in keys:
            if type(k) is not str or not k.isascii():
                raise _NotFast
        return {k: _key_sorted(value[k]) for k in keys}
    if t is list:
        return [_key_sorted(v) for v in value]
    raise _NotFast


def _fast_ok(value: Any) -> bool:
    """True when orjson's bytes (keys sorted) equal RFC 8785's for ``value`` (already JSON-mapped)."""
    try:
        _key_sorted(value)
    except (_NotFast, TypeError):
        return False
    return True


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of a JSON value (see ``to_json_value``).

    The fast path sorts keys itself and lets orjson write them in that order: orjson's own
    OPT_SORT_KEYS is several times slower than the rest of the serialization on large values.
    """
    try:
        ordered = _key_sorted(value)
    except (_NotFast, TypeError):
        ordered = _NotFast
    if ordered is not _NotFast:
        try:
            return orjson.dumps(ordered)
        except orjson.JSONEncodeError:  # lone surrogates: let rfc8785 report them
            pass
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise ValueMappingError(str(exc)) from exc
    except UnicodeEncodeError as exc:
        raise ValueMappingError(f"text is not valid Unicode ({exc.reason})") from exc


def content_sha256(content: dict[str, Any]) -> str:
    return hashlib.sha256(jcs(content)).hexdigest()


def row_id(source_id: str, source_key: str, content_hash: str) -> str:
    return hashlib.sha256(jcs([source_id, source_key, content_hash])).hexdigest()


def derived_row_id(step: str, parents: Iterable[str], content_hash: str) -> str:
    return hashlib.sha256(jcs(["derived", step, sorted(parents), content_hash])).hexdigest()


def step_id(name: str, version: str, params: Any, code_sha256: str) -> str:
    try:
        body = jcs({"name": name, "version": version, "params": to_json_value(params, "params"), "code": code_sha256})
    except ValueMappingError as exc:
        raise ValueMappingError(f"step '{name}' has a parameter that cannot be hashed: {exc}") from exc
    return hashlib.sha256(body).hexdigest()


def key_text(value: Any, field: str) -> str:
    """A row's ``source_key``: the key field's value as a string; a number as its JCS text."""
    if value is None or value == "":
        raise ValueMappingError(f"key field '{field}' is null or empty")
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueMappingError(f"key field '{field}' holds a {type(value).__name__}; keys are strings or numbers")
    return jcs(to_json_value(value, field)).decode()


def weights_sha256(sorted_ids: np.ndarray, weights: np.ndarray) -> str:
    """SHA-256 over each 32-byte id followed by its weight as a big-endian IEEE-754 double."""
    rec = np.empty(len(sorted_ids), dtype=[("id", "S32"), ("w", ">f8")])
    rec["id"] = sorted_ids
    rec["w"] = weights
    return hashlib.sha256(rec.tobytes()).hexdigest()


def exact_sums(weights: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[float, np.ndarray]:
    """The total and per-group sums of ``weights``, correctly rounded and so independent of row order
    or engine: integer-valued weights sum exactly in float64; others go through ``math.fsum``."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0:
        return 0.0, np.zeros(n_groups)
    if bool(np.all(w == np.round(w))) and float(np.abs(w).sum()) < 2**53:
        return float(w.sum()), np.bincount(groups, weights=w, minlength=n_groups)
    order = np.argsort(groups, kind="stable")
    per = np.zeros(n_groups)
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    for part in np.split(order, bounds):
        per[int(groups[part[0]])] = math.fsum(w[part].tolist())
    return math.fsum(w.tolist()), per


# --------------------------------------------------------------------------------------------------
# Id arrays: sorted raw 32-byte ids as numpy 'S32' arrays (note: 'S' arrays strip trailing NUL bytes
# when items are read back one by one; always go through ``id_bytes``/``ids_hex`` to convert).

ID_DTYPE = np.dtype("S32")


def ids_from_hex(values: Sequence[str]) -> np.ndarray:
    if len(values) == 0:
        return np.empty(0, dtype=ID_DTYPE)
    raw = bytes.fromhex("".join(values))
    if len(raw) != 32 * len(values):
        raise ValueError("row ids must be 64 hex characters")
    return np.frombuffer(raw, dtype=ID_DTYPE).copy()


def ids_hex(ids: np.ndarray) -> list[str]:
    raw = np.ascontiguousarray(ids, dtype=ID_DTYPE).tobytes().hex()
    return [raw[i : i + 64] for i in range(0, len(raw), 64)]


def id_bytes(ids: np.ndarray, i: int) -> bytes:
    return ids[i : i + 1].tobytes()


def id_prefixes(ids: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each 32-byte id as a big-endian ``uint64`` (so they sort as the ids do).

    ``ids`` may be a field of a record array (``records["id"]``): the prefixes are then read through
    a strided view of the records, without first copying every id (32 bytes a row)."""
    if ids.dtype != ID_DTYPE:
        raise TypeError(f"32-byte ids expected, not {ids.dtype}")
    if len(ids) and ids.strides[0] % 8 == 0 and ids.__array_interface__["data"][0] % 8 == 0:
        return np.lib.stride_tricks.as_strided(ids.view(np.dtype((np.void, 32)))[:1].view(">u8")[:1], shape=(len(ids),), strides=ids.strides, writeable=False)
    return np.ascontiguousarray(ids).view(">u8")[::4]


def sort_ids(ids: np.ndarray) -> np.ndarray:
    """Permutation that sorts 32-byte ids bytewise: one sort of their 8-byte prefixes (8 bytes a row
    of extra memory, whatever array the ids live in), and an exact sort of only the runs of rows whose
    prefixes tie (almost never, for digests)."""
    if len(ids) == 0:
        return np.empty(0, dtype=np.int64)
    prefix = id_prefixes(ids)
    order = np.argsort(prefix, kind="stable")
    sp = prefix[order]
    tie = sp[1:] == sp[:-1]
    del sp
    if bool(tie.any()):
        at = np.flatnonzero(np.r_[tie, False] | np.r_[False, tie])  # positions in a tied run
        rows = order[at]
        words = np.ascontiguousarray(ids[rows]).view(">u8").reshape(-1, 4)
        # runs are contiguous in ``order``: sort within each run by the full id (prefix first)
        order[at] = rows[np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0]))]
    return order


def distinct_sorted(ids: np.ndarray) -> np.ndarray:
    """The distinct ids, sorted (a prefix sort and a neighbour comparison; no hashing of 32-byte keys)."""
    if len(ids) == 0:
        return np.empty(0, dtype=ID_DTYPE)
    s = np.ascontiguousarray(ids, dtype=ID_DTYPE)[sort_ids(ids)]
    keep = np.ones(len(s), dtype=bool)
    keep[1:] = s[1:] != s[:-1]
    return s[keep]


def searchsorted_ids(sorted_ids: np.ndarray, probe: bytes) -> int:
    return int(np.searchsorted(sorted_ids, np.frombuffer(probe, dtype=ID_DTYPE)[0]))


# --------------------------------------------------------------------------------------------------
# RFC 6962 Merkle trees


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


_DUCK: Any = None


def _duckdb() -> Any:
    global _DUCK
    if _DUCK is None:
        import duckdb

        _DUCK = duckdb.connect(config={"enable_external_access": False})
    return _DUCK


def _sha256_many(records: np.ndarray) -> np.ndarray:
    """SHA-256 of each fixed-width record of ``records`` (a 'V'/'S' array) as an 'S32' array."""
    n = len(records)
    width = records.dtype.itemsize
    raw = np.ascontiguousarray(records).tobytes()
    if n < _VECTOR_THRESHOLD:
        sha = hashlib.sha256
        mv = memoryview(raw)
        out = b"".join([sha(mv[i : i + width]).digest() for i in range(0, n * width, width)])
        return np.frombuffer(out, dtype=ID_DTYPE)
    import pyarrow as pa

    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(raw)])
    tbl = pa.table({"b": arr.cast(pa.binary())})
    con = _duckdb().cursor()
    con.register("hash_input", tbl)
    res = con.sql("SELECT unhex(sha256(b)) AS h FROM hash_input").to_arrow_table().column("h").combine_chunks()
    con.close()
    data = res.buffers()[2]
    offsets = np.frombuffer(res.buffers()[1], dtype=np.int32)[res.offset : res.offset + n + 1]
    buf = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return buf.view(ID_DTYPE).copy()


def leaf_hashes(ids: np.ndarray) -> np.ndarray:
    rec = np.empty(len(ids), dtype=[("p", "u1"), ("d", "S32")])
    rec["p"] = 0
    rec["d"] = ids
    return _sha256_many(rec.view(np.dtype((np.void, 33))))


def _next_level(level: np.ndarray) -> np.ndarray:
    pairs = len(level) // 2
    rec = np.empty(pairs, dtype=[("p", "u1"), ("l", "S32"), ("r", "S32")])
    rec["p"] = 1
    rec["l"] = level[0 : 2 * pairs : 2]
    rec["r"] = level[1 : 2 * pairs : 2]
    up = _sha256_many(rec.view(np.dtype((np.void, 65))))
    if len(level) % 2:
        up = np.concatenate([up, level[-1:]])
    return up


def merkle_levels(ids: np.ndarray) -> list[np.ndarray]:
    """All levels of the RFC 6962 tree over 32-byte leaves, leaves' hashes first, root last.

    Pairing adjacent nodes and promoting a lone last node gives exactly RFC 6962's tree, where
    each left subtree is the largest complete tree of a power-of-two size.
    """
    if len(ids) == 0:
        return [np.frombuffer(EMPTY_ROOT, dtype=ID_DTYPE)]
    levels = [leaf_hashes(ids)]
    while len(levels[-1]) > 1:
        levels.append(_next_level(levels[-1]))
    return levels


def merkle_root(ids: np.ndarray) -> str:
    """RFC 6962 Merkle tree hash over sorted raw 32-byte ids (an 'S32' array)."""
    if len(ids) == 0:
        return EMPTY_ROOT.hex()
    level = leaf_hashes(ids)
    while len(level) > 1:
        level = _next_level(level)
    return id_bytes(level, 0).hex()


def mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH over arbitrary byte-string leaves, in the given order: level by level, pairing
    adjacent nodes and promoting a lone last one (the same tree, see ``merkle_levels``), in O(n)."""
    if len(leaves) == 0:
        return EMPTY_ROOT
    level = [leaf_hash(x) for x in leaves]
    while len(level) > 1:
        up = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            up.append(level[-1])
        level = up
    return level[0]


def audit_path_from_levels(levels: list[np.ndarray], index: int) -> list[str]:
    path = []
    m = index
    for level in levels[:-1]:
        sib = m ^ 1
        if sib < len(level):
            path.append(id_bytes(level, sib).hex())
        m //= 2
    return path


def audit_path(ids: np.ndarray, index: int) -> list[str]:
    return audit_path_from_levels(merkle_levels(ids), index)


def root_from_path(leaf: bytes, leaf_index: int, tree_size: int, path: Sequence[str]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the root an inclusion path implies, or None when the path is malformed."""
    if leaf_index >= tree_size or leaf_index < 0:
        return None
    fn, sn = leaf_index, tree_size - 1
    r = leaf_hash(leaf)
    for p_hex in path:
        try:
            p = bytes.fromhex(p_hex)
        except (ValueError, TypeError):
            return None
        if len(p) != 32 or sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def consistency_path(leaves: Sequence[bytes], old_size: int) -> list[str]:
    """RFC 9162 §2.1.4.1 PROOF(m, D[n]): the hashes showing that the tree over the first ``old_size``
    leaves is a prefix of the tree over all of ``leaves`` (leaf data, in order). Each subtree hash is
    computed once: O(n) hashes."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ProofError(f"a consistency proof needs 0 < old size ≤ new size; got {old_size} and {n}")
    hashes = [leaf_hash(x) for x in leaves]

    def subtree(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return hashes[lo]
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        return node_hash(subtree(lo, lo + k), subtree(lo + k, hi))

    path: list[bytes] = []

    def sub(m: int, lo: int, hi: int, whole: bool) -> None:  # SUBPROOF(m, D[lo:hi], b)
        if m == hi - lo:
            if not whole:
                path.append(subtree(lo, hi))
            return
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if m <= k:
            sub(m, lo, lo + k, whole)
            path.append(subtree(lo + k, hi))
        else:
            sub(m - k, lo + k, hi, False)
            path.append(subtree(lo, lo + k))

    sub(old_size, 0, n, True)
    return [h.hex() for h in path]


def roots_from_consistency(old_size: int, new_size: int, old_root: bytes, path: Sequence[str]) -> bytes | None:
    """RFC 9162 §2.1.4.2: the new tree's root a consistency path implies, given the old root it must
    also reproduce; None when the path does not reproduce ``old_root`` or is malformed."""
    if not 0 < old_size <= new_size:
        return None
    try:
        nodes = [bytes.fromhex(h) for h in path]
    except (ValueError, TypeError):
        return None
    if any(len(x) != 32 for x in nodes):
        return None
    if old_size == new_size:
        return old_root if not nodes else None
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old tree is a subtree of the path
        nodes = [old_root, *nodes]
    if not nodes:
        return None
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sr if fr == old_root and sn == 0 else None


def verify_consistency(proof: dict, old_root: str | None = None) -> bool:
    """True when ``proof`` (``rowtrail journal prove``) shows the journal tree of ``old_size`` entries
    with root ``old_root`` is a prefix of the tree of ``new_size`` entries with root ``new_root``.
    Pass the old root you kept (``rowtrail journal root`` at the time): the proof's own ``old_root``
    is only checked against it, never trusted in its place."""
    try:
        old_size, new_size = int(proof["old_size"]), int(proof["new_size"])
        stated_old, new = bytes.fromhex(proof["old_root"]), bytes.fromhex(proof["new_root"])
        kept = bytes.fromhex(old_root) if old_root is not None else stated_old
        path = proof["consistency_path"]
    except (KeyError, ValueError, TypeError):
        return False
    if kept != stated_old or not isinstance(path, list):
        return False
    return roots_from_consistency(old_size, new_size, kept, path) == new


# --------------------------------------------------------------------------------------------------
# Proofs (format 9). A proof is a plain dict so it can travel as JSON; the "kind" of tree is told by
# which key names the leaf: ``row_id`` against ``merkle_root``, ``content_sha256`` against ``content_root``.

_TREES = (("row_id", "merkle_root"), ("content_sha256", "content_root"))


def _tree_keys(proof: dict) -> tuple[str, str]:
    for leaf_key, root_key in _TREES:
        if leaf_key in proof or root_key in proof:
            return leaf_key, root_key
    raise ProofError("a proof names neither row_id/merkle_root nor content_sha256/content_root")


def verify_inclusion(proof: dict) -> bool:
    """True when ``proof`` shows its leaf at ``leaf_index`` of the tree with the stated root."""
    try:
        leaf_key, root_key = _tree_keys(proof)
        leaf = bytes.fromhex(proof[leaf_key])
        root = bytes.fromhex(proof[root_key])
        got = root_from_path(leaf, int(proof["leaf_index"]), int(proof["tree_size"]), proof["audit_path"])
    except (KeyError, ValueError, TypeError, ProofError):
        return False
    return len(leaf) == 32 and got is not None and got == root


def verify_exclusion(proof: dict) -> bool:
    """True when the bracketing leaves prove the absent value is not a leaf of the sorted tree."""
    try:
        leaf_key, root_key = _tree_keys(proof)
        absent = bytes.fromhex(proof[leaf_key])
        root = proof[root_key]
        size = int(proof["tree_size"])
        left, right = proof.get("left"), proof.get("right")
    except (KeyError, ValueError, TypeError, ProofError):
        return False
    if len(absent) != 32:
        return False
    if size == 0:
        return root == EMPTY_ROOT.hex() and left is None and right is None
    for side in (left, right):
        if side is not None and (
            side.get(root_key) != root
            or int(side.get("tree_size", -1)) != size
            or side.get("version_id") != proof.get("version_id")
            or not verify_inclusion(side)
        ):
            return False
    if left is None and right is None:
        return False
    if left is not None:
        if not bytes.fromhex(left[leaf_key]) < absent:
            return False
        if right is None and int(left["leaf_index"]) != size - 1:
            return False
    if right is not None:
        if not absent < bytes.fromhex(right[leaf_key]):
            return False
        if left is None and int(right["leaf_index"]) != 0:
            return False
    if left is not None and right is not None and int(right["leaf_index"]) != int(left["leaf_index"]) + 1:
        return False
    return True
