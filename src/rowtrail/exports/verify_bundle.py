#!/usr/bin/env python3
"""Check a rowtrail audit bundle without rowtrail.

    python verify.py [BUNDLE_DIR] [--pubkey SIGNER.pem ...] [--allow-unsigned]

Needs Python 3.9+ and the ``cryptography`` package (``pip install cryptography``); everything else is
the standard library. It does not import rowtrail: the formats it checks are those of the bundle's
``spec.md`` (rowtrail's docs/spec.md), section numbers below refer to it.

Checks, one line each: the DSSE signature (Ed25519 over the pre-authentication encoding) with the
public key(s) in ``pubkey.pem`` or ``--pubkey``; the in-toto Statement (type, predicate type, subject
name and digest); that the statement's predicate is the record; ``content_id`` = SHA-256(JCS(content));
``merkle_root``, ``row_count``, ``weights_sha256``, ``weight_total`` from ``ids.bin`` and
``weights.bin``; ``content_root`` from ``contents.bin``; ``inputs_root`` from ``inputs.bin``; and every
inclusion or exclusion proof in ``proofs/`` against the record's roots and tree sizes.

Exit status: 0 every check passed; 3 a check failed; 2 the script could not check (usage, or a record
value its RFC 8785 canonicalizer cannot write exactly).

This file is rowtrail's ``rowtrail/exports/verify_bundle.py``, copied into each bundle as
``verify.py``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import math
import re
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://rowtrail.dev/attestation/corpus-version/v1"
RECORD_KEYS = {"content_id", "content", "parent", "tag", "message", "author", "created_at", "journal_head"}
CONTENT_KEYS = {"corpus", "merkle_root", "content_root", "row_count", "weight_total", "weights_sha256", "per_source", "pipeline", "inputs_root", "policy"}
MAX_SAFE_INT = 2**53 - 1
EMPTY_ROOT = hashlib.sha256(b"").digest()
ID = 32
READ_IDS = 1 << 15  # ids per read: bounded memory for any corpus size
PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
HEX64 = re.compile(r"[0-9a-f]{64}")

EXIT_OK, EXIT_REFUSED, EXIT_FAILED = 0, 2, 3


class Refused(Exception):
    """Input this script cannot check exactly (exit 2)."""


# -- RFC 8785 (JCS) ----------------------------------------------------------------------------------
# For JSON as parsed by load_json: null, booleans, strings, integers within ±(2^53 − 1), finite floats,
# arrays, objects. Numbers follow ECMAScript's Number::toString (RFC 8785 §3.2.2.3) from Python's
# shortest round-trip digits (repr), which is what the rfc8785 reference package does.


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical bytes of a parsed JSON value; ``Refused`` for anything it cannot write exactly."""
    parts: list[str] = []
    _jcs(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise Refused("a string holds a lone UTF-16 surrogate, which RFC 8785 cannot encode") from None


def _jcs(v: Any, out: list[str]) -> None:
    t = type(v)
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif t is int:
        if not -MAX_SAFE_INT <= v <= MAX_SAFE_INT:
            raise Refused(f"the integer {v} is outside ±(2^53 − 1), where JSON numbers are exact")
        out.append(str(v))
    elif t is float:
        out.append(number(v))
    elif t is str:
        out.append(_string(v))
    elif t is list:
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _jcs(item, out)
        out.append("]")
    elif t is dict:
        out.append("{")
        for i, key in enumerate(sorted(v, key=_utf16)):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _jcs(v[key], out)
        out.append("}")
    else:
        raise Refused(f"a value of type {t.__name__} is not JSON")


def _utf16(key: Any) -> bytes:
    if type(key) is not str:
        raise Refused("an object key is not a string")
    try:
        return key.encode("utf-16-be")  # big-endian code units compare like RFC 8785's UTF-16 order
    except UnicodeEncodeError:
        raise Refused("an object key holds a lone UTF-16 surrogate") from None


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def number(f: float) -> str:
    """ECMAScript Number::toString of a finite double (RFC 8785 §3.2.2.3)."""
    if not math.isfinite(f):
        raise Refused(f"{f} is not a JSON number")
    if f == 0:
        return "0"  # also -0
    if f < 0:
        return "-" + number(-f)
    text = repr(f)  # the shortest digits that round-trip, nearest to f
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    lead = len(digits) - len(digits.lstrip("0"))
    n = len(whole) + int(exp or 0) - lead  # f = 0.DIGITS × 10^n
    digits = digits.strip("0")
    k = len(digits)
    if not digits.isdigit() or float(f"0.{digits}e{n}") != f:
        raise Refused(f"cannot write {text} exactly")  # not reached for a CPython float; kept as a guard
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    return (digits[0] + ("." + digits[1:] if k > 1 else "")) + ("e+" if e >= 0 else "e-") + str(abs(e))


def load_json(data: bytes, what: str) -> Any:
    """Parse JSON strictly: duplicate keys, NaN/Infinity and numbers that no double holds exactly are
    ``Refused`` (they have no single canonical form); malformed JSON is a ``ValueError``."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise Refused(f"{what}: the key {k!r} appears twice in one object")
            out[k] = v
        return out

    def constant(name: str) -> Any:
        raise Refused(f"{what}: {name} is not a JSON number")

    def integer(text: str) -> int | float:
        n = int(text)
        if -MAX_SAFE_INT <= n <= MAX_SAFE_INT:
            return n
        f = float(text)  # JCS writes e.g. the double 1e20 as 100000000000000000000: accept its own text
        if math.isfinite(f) and number(f) == text:
            return f
        raise Refused(f"{what}: the number {text} is neither a safe integer nor the RFC 8785 form of a double")

    def floating(text: str) -> float:
        f = float(text)
        if not math.isfinite(f):
            raise Refused(f"{what}: the number {text} is out of a double's range")
        return f

    return json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant, parse_int=integer, parse_float=floating)


# -- RFC 6962 trees ----------------------------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(leaf: bytes) -> bytes:
    return sha256(b"\x00" + leaf)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


class TreeHasher:
    """RFC 6962 MTH over leaves given one at a time, in O(log n) memory: a stack of complete subtrees
    (sizes the binary digits of n), folded from the right at the end — each left subtree is the largest
    power of two below the size, as RFC 6962 §2.1 splits."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, bytes]] = []
        self.count = 0

    def add(self, leaf: bytes) -> None:
        size, h = 1, leaf_hash(leaf)
        while self.stack and self.stack[-1][0] == size:
            left = self.stack.pop()[1]
            size, h = 2 * size, node_hash(left, h)
        self.stack.append((size, h))
        self.count += 1

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        h = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            h = node_hash(left, h)
        return h


def read_ids(path: Path) -> Iterator[bytes]:
    """The 32-byte ids of a file of concatenated ids; ValueError when its size is not a multiple of 32."""
    size = path.stat().st_size
    if size % ID:
        raise ValueError(f"{path.name} has {size} bytes, not a whole number of {ID}-byte ids")
    with open(path, "rb") as fh:
        while block := fh.read(ID * READ_IDS):
            for i in range(0, len(block), ID):
                yield block[i : i + ID]


def sorted_tree(path: Path) -> tuple[int, bytes]:
    """(leaf count, MTH) of a file of ids, after checking they are strictly increasing (sorted, distinct)."""
    tree, prev = TreeHasher(), b""
    for leaf in read_ids(path):
        if leaf <= prev:
            raise ValueError(f"{path.name}: id {tree.count} ({leaf.hex()[:16]}…) is not greater than the one before it")
        tree.add(leaf)
        prev = leaf
    return tree.count, tree.root()


def root_from_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2 (spec §12.1): the root an audit path implies, or None when it cannot."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


# -- the checks --------------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.failed = 0
        self.warned = 0

    def line(self, ok: bool | None, name: str, detail: str) -> bool:
        """Print one check: ok True, FAIL False, or a warning (None) that does not fail the bundle."""
        mark = "ok  " if ok else "FAIL" if ok is False else "warn"
        print(f"{mark}  {name}: {detail}", flush=True)
        if ok is False:
            self.failed += 1
        elif ok is None:
            self.warned += 1
        return bool(ok)

    def info(self, name: str, detail: str) -> None:
        print(f"      {name}: {detail}", flush=True)


def _hex32(value: Any) -> bytes | None:
    return bytes.fromhex(value) if isinstance(value, str) and HEX64.fullmatch(value) else None


def _is_int(value: Any) -> bool:
    return type(value) is int


def _b64(text: Any) -> bytes:
    """Standard or URL-safe base64, with or without padding (spec §10)."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    text = text.strip()
    text += "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(text)
    return base64.b64decode(text, validate=True)


def load_keys(paths: list[Path]) -> dict[str, Any]:
    """key id (SHA-256 of the raw key) → Ed25519 public key, from every PEM block of every file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys: dict[str, Any] = {}
    for p in paths:
        blocks = PEM_BLOCK.findall(p.read_bytes())
        if not blocks:
            raise ValueError(f"{p} holds no PEM public key")
        for block in blocks:
            key = serialization.load_pem_public_key(block)
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"{p} holds a {type(key).__name__}, not an Ed25519 public key")
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            keys[hashlib.sha256(raw).hexdigest()] = key
    return keys


def check_signature(rep: Report, bundle: Path, record: dict[str, Any], vid: str, pubkeys: list[Path], allow_unsigned: bool) -> None:
    """Spec §10: a trusted Ed25519 signature over PAE(payloadType, body); the Statement names the
    record. With ``allow_unsigned`` a missing or unverifiable signature is a warning."""
    soft: bool | None = None if allow_unsigned else False
    env_path = bundle / "envelope.json"
    if not env_path.exists():
        rep.line(soft, "signature", "no envelope.json: the version is unsigned" + ("" if allow_unsigned else " (--allow-unsigned checks the digests anyway)"))
        return
    key_files = pubkeys or ([bundle / "pubkey.pem"] if (bundle / "pubkey.pem").exists() else [])
    if not key_files:
        rep.line(soft, "signature", "no public key: the bundle has no pubkey.pem; give the signer's key with --pubkey SIGNER.pem")
        return
    try:
        keys = load_keys(key_files)
    except (OSError, ValueError) as exc:
        rep.line(False, "signature", f"cannot load the public key: {exc}")
        return
    from cryptography.exceptions import InvalidSignature

    try:
        env = load_json(env_path.read_bytes(), "envelope.json")
        if not isinstance(env, dict):
            raise ValueError("not a JSON object")
        body = _b64(env.get("payload"))
        ptype = env.get("payloadType")
        sigs = env.get("signatures")
        if not isinstance(sigs, list):
            raise ValueError("'signatures' is not a list")
    except (OSError, ValueError, binascii.Error, Refused) as exc:
        rep.line(False, "envelope", f"envelope.json is not a DSSE envelope: {exc}")
        return
    rep.line(ptype == PAYLOAD_TYPE, "envelope payloadType", repr(ptype))
    t = str(ptype).encode()
    message = b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)
    good: list[str] = []
    for sig in sigs:
        try:
            raw = _b64(sig.get("sig") if isinstance(sig, dict) else None)
        except (ValueError, binascii.Error):
            continue
        for kid, key in keys.items():  # the envelope's keyid is only a hint: try every key
            try:
                key.verify(raw, message)
            except InvalidSignature:
                continue
            if kid not in good:
                good.append(kid)
    source = ", ".join(str(p) for p in pubkeys) if pubkeys else "pubkey.pem"
    if good:
        rep.line(True, "signature", f"Ed25519 over the DSSE PAE verifies with key {', '.join(good)} ({source})")
    else:
        rep.line(soft, "signature", f"no signature verifies with the {len(keys)} key(s) of {source}")
    try:
        stmt = load_json(body, "the envelope's payload")
    except (Refused, ValueError) as exc:
        rep.line(False, "statement", f"the payload is not JSON: {exc}")
        return
    if not isinstance(stmt, dict):
        rep.line(False, "statement", "the payload is not a JSON object")
        return
    rep.line(stmt.get("_type") == STATEMENT_TYPE and stmt.get("predicateType") == PREDICATE_TYPE, "statement type", f"_type {stmt.get('_type')!r}, predicateType {stmt.get('predicateType')!r}")
    content = record["content"]  # verify() checked it is an object
    name = f"{content.get('corpus')}@{record.get('tag') or vid}"
    want = [{"name": name, "digest": {"sha256": vid}}]
    rep.line(stmt.get("subject") == want, "statement subject", f"{name} sha256 {vid} = SHA-256(JCS(record.json))" if stmt.get("subject") == want else f"{stmt.get('subject')!r} is not {want!r}")
    pred = stmt.get("predicate")
    try:
        same = isinstance(pred, dict) and jcs(pred) == jcs(record)
    except Refused:
        same = False
    rep.line(same, "statement predicate", "equals record.json" if same else "differs from record.json")


class ExactSum:
    """The exact sum of positive doubles, rounded once to the nearest double (spec §8 *Sums*; what
    math.fsum returns), in bounded memory: each weight as an integer multiple of 2^-1074, the smallest
    double step, added exactly; int / int division in Python rounds correctly."""

    SCALE = 1 << 1074

    def __init__(self) -> None:
        self.total = 0
        self._scaled: dict[bytes, int] = {}

    def add(self, raw: bytes, w: float) -> None:
        scaled = self._scaled.get(raw)
        if scaled is None:
            num, den = w.as_integer_ratio()  # den is a power of two ≤ 2^1074
            scaled = num * (self.SCALE // den)
            if len(self._scaled) < 4096:  # weights repeat (1.0, a step's factor): cache a few
                self._scaled[raw] = scaled
        self.total += scaled

    def value(self) -> float:
        return self.total / self.SCALE


def check_rows(rep: Report, bundle: Path, content: dict[str, Any]) -> int | None:
    """merkle_root and row_count from ids.bin; weights_sha256 and weight_total with weights.bin. The row count, or None."""
    ids_path, w_path = bundle / "ids.bin", bundle / "weights.bin"
    try:
        n, root = sorted_tree(ids_path)
    except (OSError, ValueError) as exc:
        rep.line(False, "merkle_root", str(exc))
        return None
    rep.line(root.hex() == content.get("merkle_root"), "merkle_root", f"MTH over the {n} sorted row ids of ids.bin = {root.hex()}" + ("" if root.hex() == content.get("merkle_root") else f", record says {content.get('merkle_root')}"))
    rep.line(n == content.get("row_count"), "row_count", f"{n} ids" + ("" if n == content.get("row_count") else f", record says {content.get('row_count')!r}"))
    try:
        size = w_path.stat().st_size
        if size != 8 * n:
            raise ValueError(f"weights.bin has {size} bytes, not 8 × {n}")
        digest, total = hashlib.sha256(), ExactSum()
        with open(w_path, "rb") as wf:
            for i, leaf in enumerate(read_ids(ids_path)):
                raw = wf.read(8)
                (w,) = struct.unpack(">d", raw)
                if not (math.isfinite(w) and w > 0):
                    raise ValueError(f"weights.bin: weight {i} is {w!r}; every weight is finite and > 0 (spec §7)")
                digest.update(leaf + raw)
                total.add(raw, w)
    except (OSError, ValueError) as exc:
        rep.line(False, "weights_sha256", str(exc))
        return n
    got = digest.hexdigest()
    rep.line(got == content.get("weights_sha256"), "weights_sha256", f"SHA-256 of (id ‖ weight) over ids.bin and weights.bin = {got}" + ("" if got == content.get("weights_sha256") else f", record says {content.get('weights_sha256')}"))
    want, value = content.get("weight_total"), total.value()
    ok = type(want) in (int, float) and value == want
    rep.line(ok, "weight_total", f"exact sum of the weights, rounded once = {number(value)}" + ("" if ok else f", record says {want!r}"))
    return n


def check_tree(rep: Report, bundle: Path, name: str, file: str, content: dict[str, Any], what: str) -> int | None:
    try:
        n, root = sorted_tree(bundle / file)
    except (OSError, ValueError) as exc:
        rep.line(False, name, str(exc))
        return None
    ok = root.hex() == content.get(name)
    rep.line(ok, name, f"MTH over the {n} sorted {what} of {file} = {root.hex()}" + ("" if ok else f", record says {content.get(name)}"))
    return n if ok else None


def check_inclusion(p: Any, leaf_key: str, root_key: str, root: str, size: int | None, vid: str) -> str | None:
    """Spec §12.1 against the record: None when ``p`` is a valid inclusion proof, else the reason."""
    if not isinstance(p, dict):
        return "not a JSON object"
    leaf = _hex32(p.get(leaf_key))
    path = p.get("audit_path")
    if leaf is None:
        return f"{leaf_key} is not 64 lowercase hex digits"
    if not (_is_int(p.get("leaf_index")) and _is_int(p.get("tree_size"))):
        return "leaf_index and tree_size must be integers"
    if not isinstance(path, list) or any(_hex32(x) is None for x in path):
        return "audit_path must be a list of 64-hex-digit hashes"
    if p.get(root_key) != root:
        return f"{root_key} {p.get(root_key)} is not the record's {root}"
    if p.get("version_id") != vid:
        return f"version_id {p.get('version_id')} is not the bundle's {vid}"
    if size is None:
        return f"the size of the {root_key} tree is unknown (its file failed its check)"
    if p["tree_size"] != size:
        return f"tree_size {p['tree_size']} is not the tree's {size} leaves (spec §12.1 size check)"
    got = root_from_path(leaf, p["leaf_index"], p["tree_size"], [bytes.fromhex(x) for x in path])
    if got is None or got.hex() != root:
        return "the audit path does not lead to the root"
    return None


def check_proof(rep: Report, name: str, p: Any, content: dict[str, Any], vid: str, rows: int | None, contents: int | None) -> None:
    if not isinstance(p, dict):
        rep.line(False, f"proof {name}", "not a JSON object")
        return
    if ("row_id" in p) == ("content_sha256" in p):
        rep.line(False, f"proof {name}", "names neither (or both) row_id and content_sha256")
        return
    leaf_key, root_key, size, tree = ("row_id", "merkle_root", rows, "row") if "row_id" in p else ("content_sha256", "content_root", contents, "content hash")
    root = content.get(root_key)
    value = p.get(leaf_key)
    if "left" not in p and "right" not in p:  # inclusion, spec §12.1
        why = check_inclusion(p, leaf_key, root_key, str(root), size, vid)
        rep.line(why is None, f"proof {name}", f"{tree} {value} IS in the version: leaf {p.get('leaf_index')} of {p.get('tree_size')} under {root_key}" if why is None else why)
        return
    # exclusion, spec §12.2
    absent = _hex32(value)
    left, right = p.get("left"), p.get("right")
    why = None
    if absent is None:
        why = f"{leaf_key} is not 64 lowercase hex digits"
    elif p.get(root_key) != root:
        why = f"{root_key} {p.get(root_key)} is not the record's {root}"
    elif p.get("version_id") != vid:
        why = f"version_id {p.get('version_id')} is not the bundle's {vid}"
    elif size is None:
        why = f"the size of the {root_key} tree is unknown (its file failed its check)"
    elif p.get("tree_size") != size or not _is_int(p.get("tree_size")):
        why = f"tree_size {p.get('tree_size')!r} is not the tree's {size} leaves (spec §12.1 size check)"
    elif size == 0:
        if root != EMPTY_ROOT.hex() or left is not None or right is not None:
            why = "an empty tree has the empty root and no bracketing leaves"
    elif left is None and right is None:
        why = "neither a left nor a right bracketing leaf"
    else:
        for side_name, side in (("left", left), ("right", right)):
            if side is not None and why is None:
                reason = check_inclusion(side, leaf_key, root_key, str(root), size, vid)
                if reason is not None:
                    why = f"{side_name}: {reason}"
        if why is None and left is not None and not bytes.fromhex(left[leaf_key]) < absent:
            why = "the left leaf is not below the absent value"
        if why is None and right is not None and not absent < bytes.fromhex(right[leaf_key]):
            why = "the right leaf is not above the absent value"
        if why is None and left is not None and right is not None and right["leaf_index"] != left["leaf_index"] + 1:
            why = "the bracketing leaves are not adjacent"
        if why is None and right is None and left is not None and left["leaf_index"] != size - 1:
            why = "only a left leaf, but it is not the last leaf"
        if why is None and left is None and right is not None and right["leaf_index"] != 0:
            why = "only a right leaf, but it is not the first leaf"
    if why is None:
        where = "between adjacent leaves" if left is not None and right is not None else "beyond the last leaf" if left is not None else "before the first leaf" if right is not None else "in an empty tree"
        rep.line(True, f"proof {name}", f"{tree} {value} is NOT in the version: it sorts {where} of {size} under {root_key}")
    else:
        rep.line(False, f"proof {name}", why)


def verify(bundle: Path, pubkeys: list[Path], allow_unsigned: bool) -> int:
    rep = Report()
    try:
        record = load_json((bundle / "record.json").read_bytes(), "record.json")
    except (OSError, ValueError) as exc:
        rep.line(False, "record", f"cannot read record.json: {exc}")
        print("FAILED: nothing else can be checked without the record")
        return EXIT_FAILED
    if not isinstance(record, dict) or not isinstance(record.get("content"), dict):
        rep.line(False, "record", "record.json is not a version record (an object with a 'content' object)")
        print("FAILED: nothing else can be checked without the record")
        return EXIT_FAILED
    canonical = jcs(record)
    vid = hashlib.sha256(canonical).hexdigest()
    content = record["content"]
    rep.info("version_id", f"SHA-256(JCS(record.json)) = {vid}")
    if (bundle / "record.json").read_bytes() != canonical:
        rep.line(None, "record.json bytes", "the file is not byte-for-byte canonical (JCS); its parsed value is what is checked")
    rep.line(set(record) == RECORD_KEYS and set(content) == CONTENT_KEYS, "record members", "the members of spec §9 and §8" if set(record) == RECORD_KEYS and set(content) == CONTENT_KEYS else f"record {sorted(record)}, content {sorted(content)}")
    cid = hashlib.sha256(jcs(content)).hexdigest()
    rep.line(cid == record.get("content_id"), "content_id", f"SHA-256(JCS(content)) = {cid}" + ("" if cid == record.get("content_id") else f", record says {record.get('content_id')}"))
    check_signature(rep, bundle, record, vid, pubkeys, allow_unsigned)
    rows = check_rows(rep, bundle, content)
    contents = check_tree(rep, bundle, "content_root", "contents.bin", content, "distinct content hashes")
    check_tree(rep, bundle, "inputs_root", "inputs.bin", content, "input row ids")
    proofs = sorted((bundle / "proofs").glob("*.json")) if (bundle / "proofs").is_dir() else []
    if not proofs:
        rep.info("proofs", "none in proofs/")
    for path in proofs:
        name = f"proofs/{path.name}"
        try:
            p = load_json(path.read_bytes(), name)
        except Refused as exc:
            rep.line(False, f"proof {name}", str(exc))
            continue
        except (OSError, ValueError) as exc:
            rep.line(False, f"proof {name}", f"not JSON: {exc}")
            continue
        check_proof(rep, name, p, content, vid, rows, contents)
    label = f"{content.get('corpus')}@{record.get('tag') or vid}"
    if rep.failed:
        print(f"FAILED: {rep.failed} check(s) of {label} failed")
        return EXIT_FAILED
    note = f" ({rep.warned} warning(s): see 'warn' lines)" if rep.warned else ""
    print(f"OK {label}: {rows} rows, version {vid}{note}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="verify.py", description="Check a rowtrail audit bundle (see README.txt).")
    ap.add_argument("bundle", nargs="?", type=Path, default=Path(__file__).resolve().parent, help="the bundle directory (default: this script's)")
    ap.add_argument("--pubkey", action="append", type=Path, default=[], help="the signer's public key PEM, obtained out of band (instead of the bundle's pubkey.pem); repeatable")
    ap.add_argument("--allow-unsigned", action="store_true", help="report a missing or unverifiable signature as a warning instead of a failure")
    args = ap.parse_args(argv)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        print("verify.py needs the 'cryptography' package: pip install cryptography", file=sys.stderr)
        return EXIT_REFUSED
    try:
        return verify(args.bundle, args.pubkey, args.allow_unsigned)
    except Refused as exc:
        print(f"REFUSED: {exc}; this script cannot canonicalize it exactly, so it checks nothing", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
