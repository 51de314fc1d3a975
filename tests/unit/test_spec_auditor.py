"""An outside auditor's check of a rowtrail store, written from docs/spec.md alone.

The store is built through the public API; everything after that is an independent implementation
of the spec (hashlib, rfc8785, cryptography, pyarrow, json, struct, math): nothing below the build
step imports or calls rowtrail, except ``store.prove`` to obtain proofs, which are then checked here,
and ``rt.verify_inclusion`` / ``rt.verify_exclusion`` to show what they cannot check on their own
(spec §12.1: a proof's ``tree_size`` must be compared with the signed record). The last test runs the
hand-verification script of spec §16, as printed in docs/spec.md, against a fresh store.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
import math
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import rowtrail as rt

SPEC = Path(__file__).resolve().parents[2] / "docs" / "spec.md"

# ------------------------------------------------------------------------------------------------
# The auditor's implementation of docs/spec.md

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://rowtrail.dev/attestation/corpus-version/v1"
ROW_WIDTH = 48  # spec §15.2: a row chunk of n rows is 48·n bytes, four columns
ID_WIDTH = 32
CUT_MODULUS = 8192  # spec §15.2
NODE_LEVEL = 10  # spec §15.3
BLOCK = 1 << NODE_LEVEL


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def jcs(value) -> bytes:
    return rfc8785.dumps(value)


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 Merkle Tree Hash, transcribed."""
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def rfc6962_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n])."""
    n = len(leaves)
    if n <= 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return rfc6962_path(m, leaves[:k]) + [mth(leaves[k:])]
    return rfc6962_path(m - k, leaves[k:]) + [mth(leaves[:k])]


class Tree:
    """The same RFC 6962 definitions over one leaf list, memoized on (lo, hi): each subtree is hashed
    once, so every level of a 20,000-leaf tree and many audit paths stay cheap."""

    def __init__(self, leaves: list[bytes]):
        self.leaves = leaves
        self.n = len(leaves)
        self.memo: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int = 0, hi: int | None = None) -> bytes:
        hi = self.n if hi is None else hi
        size = hi - lo
        if size == 0:
            return sha(b"")
        got = self.memo.get((lo, hi))
        if got is None:
            if size == 1:
                got = sha(b"\x00" + self.leaves[lo])
            else:
                k = 1 << ((size - 1).bit_length() - 1)
                got = sha(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi))
            self.memo[(lo, hi)] = got
        return got

    def path(self, m: int, lo: int = 0, hi: int | None = None) -> list[bytes]:
        hi = self.n if hi is None else hi
        size = hi - lo
        if size <= 1:
            return []
        k = 1 << ((size - 1).bit_length() - 1)
        if m < k:
            return self.path(m, lo, lo + k) + [self.mth(lo + k, hi)]
        return self.path(m - k, lo + k, hi) + [self.mth(lo, lo + k)]


def expected_levels(tree: Tree) -> list[list[bytes]]:
    """Spec §15.3: levels 10 up to the root; node b of level k = MTH(D[b·2^k : min((b+1)·2^k, n)]).
    At most 1,024 leaves (or none): just the root."""
    n = tree.n
    if n <= BLOCK:
        return [[tree.mth()]]
    out: list[list[bytes]] = []
    k = NODE_LEVEL
    while not out or len(out[-1]) > 1:
        size = 1 << k
        out.append([tree.mth(b * size, min((b + 1) * size, n)) for b in range(-(-n // size))])
        k += 1
    return out


def rfc9162_verify(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2 inclusion verification, transcribed."""
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = sha(b"\x00" + leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha(b"\x01" + p + r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def check_inclusion_proof(proof: dict, leaf_key: str, root_key: str, signed_root: str, version_id: str, size: int) -> bool:
    """Spec §12.1: the proof's keys; its root equal to the signed root and its tree_size to the signed
    tree's size (row_count, or the number of content hashes); then the RFC 9162 check."""
    if set(proof) != {leaf_key, "leaf_index", "tree_size", "audit_path", root_key, "version_id"}:
        return False
    if proof[root_key] != signed_root or proof["version_id"] != version_id or proof["tree_size"] != size:
        return False
    path = [bytes.fromhex(p) for p in proof["audit_path"]]
    if any(len(p) != 32 for p in path):
        return False
    return rfc9162_verify(bytes.fromhex(proof[leaf_key]), proof["leaf_index"], proof["tree_size"], path, bytes.fromhex(signed_root))


def check_exclusion_proof(proof: dict, leaf_key: str, root_key: str, signed_root: str, version_id: str, size: int) -> bool:
    """Spec §12.2: bracketing inclusion proofs of adjacent leaves (or the edge leaf)."""
    if proof[root_key] != signed_root or proof["tree_size"] != size or proof["version_id"] != version_id:
        return False
    absent = bytes.fromhex(proof[leaf_key])
    left, right = proof["left"], proof["right"]
    if size == 0:
        return left is None and right is None and signed_root == sha(b"").hex()
    if left is None and right is None:
        return False
    for side in (left, right):
        if side is not None and not check_inclusion_proof(side, leaf_key, root_key, signed_root, version_id, size):
            return False
    if left is not None and not bytes.fromhex(left[leaf_key]) < absent:
        return False
    if right is not None and not absent < bytes.fromhex(right[leaf_key]):
        return False
    if left is None:
        return right["leaf_index"] == 0
    if right is None:
        return left["leaf_index"] == size - 1
    return right["leaf_index"] == left["leaf_index"] + 1


def pae(payload_type: str, body: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + str(len(body)).encode() + b" " + body


def cuts_ok(ids: list[bytes], counts: list[int]) -> bool:
    """Spec §15.2: a chunk ends after each id whose last 4 bytes (u32 BE) are 0 mod 8192, and at the end."""
    ends = [i + 1 for i, x in enumerate(ids) if int.from_bytes(x[28:], "big") % CUT_MODULUS == 0]
    if not ends or ends[-1] != len(ids):
        ends.append(len(ids))
    if not ids:
        ends = []
    sizes = [b - a for a, b in zip([0] + ends, ends)]
    return sizes == counts


def decode_row_chunk(raw: bytes, n: int) -> list[tuple[bytes, float, int, int]]:
    """Spec §15.2: n ids, then n weights (f64 BE), n segment numbers (u32 BE), n row indexes (u32 BE)."""
    assert len(raw) == ROW_WIDTH * n, f"a row chunk of {n} rows must be {ROW_WIDTH * n} bytes, not {len(raw)}"
    ids = [raw[ID_WIDTH * i : ID_WIDTH * (i + 1)] for i in range(n)]
    weights = struct.unpack_from(f">{n}d", raw, 32 * n)
    segs = struct.unpack_from(f">{n}I", raw, 40 * n)
    rows = struct.unpack_from(f">{n}I", raw, 44 * n)
    return list(zip(ids, weights, segs, rows))


class Auditor:
    """Reads a store directory as spec §13–§15 describe it."""

    def __init__(self, root: Path, home: Path):
        self.root = root
        self.home = home

    def obj_path(self, digest: str) -> Path:
        return self.root / "objects" / "sha256" / digest[:2] / digest[2:]

    def obj(self, digest: str) -> bytes:
        data = self.obj_path(digest).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, f"object {digest} is damaged"
        return data

    def checked_path(self, digest: str) -> Path:
        self.obj(digest)
        return self.obj_path(digest)

    def journal(self) -> tuple[list[dict], list[str]]:
        """Spec §14: committed lines up to HEAD.bytes, canonical, numbered, hash-chained to HEAD."""
        head = json.loads((self.root / "HEAD.json").read_bytes())
        assert set(head) == {"seq", "digest", "bytes"}
        data = (self.root / "journal.jsonl").read_bytes()
        assert len(data) >= head["bytes"]
        committed, tail = data[: head["bytes"]], data[head["bytes"] :]
        assert tail == b"", "bytes past HEAD are an interrupted write; this test makes none"
        assert committed.endswith(b"\n")
        lines = committed[:-1].split(b"\n")
        entries, digests, prev = [], [], None
        for i, line in enumerate(lines):
            entry = json.loads(line)
            assert jcs(entry) == line, f"journal line {i + 1} is not JCS"
            assert entry["seq"] == i and entry["prev"] == prev
            assert {"seq", "prev", "at", "kind"} <= set(entry)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", entry["at"])  # spec §0
            prev = hashlib.sha256(line).hexdigest()
            entries.append(entry)
            digests.append(prev)
        assert head["seq"] == len(lines) - 1 and head["digest"] == prev
        assert entries[0]["kind"] == "init" and entries[0]["format"] == 1
        return entries, digests

    def trusted_keys(self) -> dict[str, Ed25519PublicKey]:
        out = {}
        for p in sorted((self.home / "trusted_keys").glob("*.pem")):
            key = serialization.load_pem_public_key(p.read_bytes())
            assert isinstance(key, Ed25519PublicKey)
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            out[hashlib.sha256(raw).hexdigest()] = key
        return out

    def check_signature(self, envelope: dict, version_id: str, record: dict, subject_name: str) -> None:
        """Spec §10: DSSE over PAE, Ed25519 with a trusted key, Statement describing this version."""
        assert envelope["payloadType"] == PAYLOAD_TYPE
        body = base64.b64decode(envelope["payload"], validate=True)
        message = pae(PAYLOAD_TYPE, body)
        keys = self.trusted_keys()
        good = []
        for sig in envelope["signatures"]:
            raw = base64.b64decode(sig["sig"])
            for kid, key in keys.items():
                try:
                    key.verify(raw, message)
                except InvalidSignature:
                    continue
                good.append(kid)
                assert sig["keyid"] == kid  # the hint names the key that signed (spec §11)
        assert good, "no trusted key verifies the envelope"
        stmt = json.loads(body)
        assert body == jcs(stmt)
        assert stmt == {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": subject_name, "digest": {"sha256": version_id}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": record,
        }
        # a tampered message must not verify (guards against a vacuous check)
        for key in keys.values():
            try:
                key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), message + b" ")
            except InvalidSignature:
                pass
            else:  # pragma: no cover
                raise AssertionError("signature verified over altered bytes")

    def chunk_ids(self, digest: str, count: int) -> list[bytes]:
        """Spec §15.2: the ids of a row or content chunk are its first 32·count bytes, read alone."""
        with open(self.obj_path(digest), "rb") as fh:
            raw = fh.read(ID_WIDTH * count)
        return [raw[i : i + ID_WIDTH] for i in range(0, len(raw), ID_WIDTH)]

    def _check_list(self, chunks: list, ids: list[bytes]) -> None:
        assert all(a < b for a, b in zip(ids, ids[1:])), "ids are not strictly increasing"
        assert cuts_ok(ids, [c[1] for c in chunks]), "chunks are not cut where the rule says"

    def load_rows(self, chunks: list) -> list[tuple[bytes, float, int, int]]:
        """Spec §15.2: columnar row chunks, each `count` rows, spanning [first, last]."""
        out: list[tuple[bytes, float, int, int]] = []
        for digest, count, first, last in chunks:
            raw = self.obj(digest)
            recs = decode_row_chunk(raw, count)
            assert recs[0][0].hex() == first and recs[-1][0].hex() == last
            assert self.chunk_ids(digest, count) == [r[0] for r in recs]  # the id column alone
            # the columns are not interleaved: reading the chunk as 48-byte row records would not
            # give these ids (unless the chunk has a single row, where both layouts coincide)
            if count > 1:
                assert [raw[i : i + 32] for i in range(0, len(raw), ROW_WIDTH)] != [r[0] for r in recs]
            out += recs
        self._check_list(chunks, [r[0] for r in out])
        return out

    def load_hashes(self, chunks: list) -> list[bytes]:
        """Spec §15.2: content chunks, n raw 32-byte hashes each, nothing else."""
        out: list[bytes] = []
        for digest, count, first, last in chunks:
            raw = self.obj(digest)
            assert len(raw) == ID_WIDTH * count
            hashes = [raw[i : i + ID_WIDTH] for i in range(0, len(raw), ID_WIDTH)]
            assert hashes[0].hex() == first and hashes[-1].hex() == last
            out += hashes
        self._check_list(chunks, out)
        return out

    def check_levels(self, part: dict, tree: Tree, signed_root: str) -> list[list[bytes]]:
        """Spec §15.3: `level` is 10 and `nodes` holds every level from 10 up to the root, recomputed
        here level by level and compared byte for byte; returns the stored levels."""
        assert part["level"] == NODE_LEVEL
        raw = self.obj(part["nodes"])
        want = expected_levels(tree)
        sizes = [len(level) for level in want]
        n = tree.n
        if n > BLOCK:
            assert sizes == [-(-n // (1 << k)) for k in range(NODE_LEVEL, NODE_LEVEL + len(sizes))]
            assert sizes[-1] == 1 and sizes[-2] > 1
        else:
            assert sizes == [1]
        assert len(raw) == ID_WIDTH * sum(sizes), f"{len(raw)} bytes of nodes for level sizes {sizes}"
        stored, at = [], 0
        for k, size in enumerate(sizes):
            level = [raw[at + ID_WIDTH * i : at + ID_WIDTH * (i + 1)] for i in range(size)]
            assert level == want[k], f"stored level {NODE_LEVEL + k} differs from the recomputed one"
            stored.append(level)
            at += ID_WIDTH * size
        assert stored[-1] == [bytes.fromhex(signed_root)]
        # the second form of the check in §15.3: each level is the pairing of the one below
        for below, above in zip(stored, stored[1:]):
            assert above == [sha(b"\x01" + below[i] + below[i + 1]) if i + 1 < len(below) else below[i] for i in range(0, len(below), 2)]
        return stored

    def proof_path(self, chunks: list, stored: list[list[bytes]], n: int, index: int) -> list[bytes]:
        """Spec §12.1 (informative part): hash the ≤ 1,024 leaves of the index's level-10 block, read
        from the chunks' id columns alone, and append the siblings read from the stored levels."""
        b = index // BLOCK
        lo, hi = b * BLOCK, min((b + 1) * BLOCK, n)
        leaves, start = [], 0
        for digest, count, _first, _last in chunks:
            if start < hi and start + count > lo:
                ids = self.chunk_ids(digest, count)
                leaves += ids[max(lo - start, 0) : min(hi - start, count)]
            start += count
        assert len(leaves) == hi - lo <= BLOCK
        path = rfc6962_path(index - lo, leaves)
        if n > BLOCK:
            pos = b
            for level in stored[:-1]:
                if pos ^ 1 < len(level):
                    path.append(level[pos ^ 1])
                pos >>= 1
        return path


# ------------------------------------------------------------------------------------------------
# Independent derivation of expected ids from the input rows (spec §1–§5)


def expected_row(source_id: str, row: dict, content_fields: list[str]) -> tuple[str, str, bytes, str]:
    """(source_key, content JCS text, content_sha256, row_id hex) for one row already in JSON form."""
    key = row["id"]
    source_key = key if isinstance(key, str) else jcs(key).decode()
    body = jcs({f: row[f] for f in content_fields})
    ch = sha(body)
    rid = hashlib.sha256(jcs([source_id, source_key, ch.hex()])).hexdigest()
    return source_key, body.decode(), ch, rid


def expected_rows(source_id: str, rows: list[dict], fields: list[str]) -> dict[str, tuple[str, str, str, bytes]]:
    out = {}
    for r in rows:
        key, text, ch, rid = expected_row(source_id, r, fields)
        out[rid] = (source_id, key, text, ch)
    return out


PARTNER_FIELDS = ["prompt", "response", "meta"]
PARTNER_V1 = [
    {"id": 1, "prompt": "Write a haiku.", "response": "Leaves fall, code compiles.", "meta": {"lang": "en", "score": 0.5}},
    {
        "id": "k-é",
        "prompt": "données naïve 模型",
        "response": 'emoji 🙂 tab\t newline\n ctrl \u0001 del \u007f quote " backslash \\',
        "meta": {"nums": [1e21, 1e-7, 100.0, -0.0, 3, -7, 0.1, 2**53 - 1], "ok": True, "none": None},
    },
    {"id": 2.5, "prompt": "keys", "response": "order", "meta": {"\ue000": 1, "😀": 2, "a": 3, "é": {"z": [], "b": {}}}},
    {"id": 1e21, "prompt": "same", "response": "content", "meta": None},
    {"id": 7, "prompt": "same", "response": "content", "meta": None},
    {"id": -3, "prompt": "", "response": "empty prompt", "meta": [1, "two", [3.25]]},
]
PARTNER_V2 = [
    {"id": 1, "prompt": "Write a haiku.", "response": "Leaves fall; tests pass.", "meta": {"lang": "en", "score": 0.75}},
    {"id": 7, "prompt": "same", "response": "content", "meta": None},
    {"id": 99, "prompt": "new", "response": "row", "meta": {}},
]
CRAWL_ROWS = 20_000  # > 1024 leaves: six stored levels (20, 10, 5, 3, 2, 1); several content-defined chunks


def crawl_rows() -> list[dict]:
    rows = [
        {"id": f"doc-{i}", "text": f"document {i}: " + "lorem ipsum " * (i % 7), "lang": "en" if i % 3 else "fr"} for i in range(CRAWL_ROWS)
    ]
    rows[5]["text"] = rows[6]["text"] = "a duplicated text"
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def setup_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("ROWTRAIL_HOME", str(home))
    monkeypatch.delenv("ROWTRAIL_SIGNING_KEY", raising=False)
    monkeypatch.setenv("ROWTRAIL_AUTHOR", "spec-auditor-test")
    rt.keygen()
    return home


# ------------------------------------------------------------------------------------------------


PROV_TYPES = {  # spec §15.4: what a Parquet reader sees (no dictionary types, whatever the encoding)
    "row_id": pa.binary(32),
    "source_id": pa.string(),
    "source_snapshot": pa.string(),
    "source_key": pa.string(),
    "content_sha256": pa.binary(32),
    "ingest_id": pa.string(),
    "ingested_at": pa.timestamp("us", tz="UTC"),
    "origin_file": pa.string(),
    "origin_line": pa.int64(),
}


def audit_version(a: Auditor, entries: list[dict], digests: list[str], tag: str, expected: dict, corpus: str = "main") -> dict:
    """Verify one tagged version end to end; ``expected`` maps row id hex → (source, key, content, hash)."""
    commits = [(i, e) for i, e in enumerate(entries) if e["kind"] == "commit"]
    k, entry = next((i, e) for i, e in commits if e["record"]["tag"] == tag)
    record = entry["record"]
    content = record["content"]
    version_id = entry["version_id"]

    # §8–§9: content_id, version_id, journal_head, parent
    assert set(record) == {"content_id", "content", "parent", "tag", "message", "author", "created_at", "journal_head"}
    assert set(content) == {
        "corpus", "merkle_root", "content_root", "row_count", "weight_total", "weights_sha256",
        "per_source", "pipeline", "inputs_root", "policy",
    }  # fmt: skip
    assert hashlib.sha256(jcs(content)).hexdigest() == record["content_id"]
    assert hashlib.sha256(jcs(record)).hexdigest() == version_id
    assert record["journal_head"] == digests[k - 1]
    earlier = [e["version_id"] for i, e in commits if i < k and e["corpus"] == entry["corpus"]]
    assert record["parent"] == (earlier[-1] if earlier else None)
    assert content["corpus"] == entry["corpus"] == corpus
    assert content["pipeline"] == [] and content["policy"] is None

    # §15.1: the manifest
    manifest_bytes = a.obj(entry["manifest"])
    manifest = json.loads(manifest_bytes)
    assert jcs(manifest) == manifest_bytes
    assert manifest["format"] == "rowtrail.manifest/1"
    assert manifest["version_id"] == version_id and manifest["record"] == record
    assert manifest["steps"] == {}

    # §10: the signature, subject name <corpus>@<tag or version_id>
    envelope_bytes = a.obj(entry["envelope"])
    a.check_signature(json.loads(envelope_bytes), version_id, record, f"{entry['corpus']}@{tag}")

    # §15.2–§15.3: rows, weights, Merkle roots and stored levels
    recs = a.load_rows(manifest["rows"]["chunks"])
    ids = [r[0] for r in recs]
    weights = [r[1] for r in recs]
    tree = Tree(ids)
    assert content["row_count"] == len(recs)
    assert content["merkle_root"] == tree.mth().hex()
    assert content["weights_sha256"] == hashlib.sha256(b"".join(i + struct.pack(">d", w) for i, w in zip(ids, weights))).hexdigest()
    assert content["weight_total"] == math.fsum(weights)  # §8: the exact sum, correctly rounded
    row_levels = a.check_levels(manifest["rows"], tree, content["merkle_root"])
    if manifest["inputs"]["chunks"] == manifest["rows"]["chunks"]:
        inputs = ids
    else:
        inputs = [r[0] for r in a.load_rows(manifest["inputs"]["chunks"])]
    assert content["inputs_root"] == Tree(inputs).mth().hex()
    assert inputs == ids  # an empty pipeline: the version is its input set

    # §15.4–§15.5: every row's provenance and content, located by the chunks' seg and row columns
    seg_entries = {s["seg"]: s for e in entries if e["kind"] == "ingest" for s in e["segments"]}
    used = sorted({seg for _, _, seg, _ in recs})
    assert sorted(int(s) for s in manifest["segments"]) == used
    assert len({(seg, row) for _, _, seg, row in recs}) == len(recs), "two rows share a (seg, row) locator"
    tables: dict[int, tuple[dict, dict]] = {}
    per_source: dict[str, list[float]] = {}
    hashes: set[bytes] = set()
    snapshots: dict[str, set[str]] = {}
    for rid, w, seg, row in recs:
        if seg not in tables:
            ref = manifest["segments"][str(seg)]
            je = seg_entries[seg]
            assert ref == {"provenance": je["provenance"], "content": je["content"], "rows": je["rows"], "sources": je["sources"]}
            prov = pq.read_table(a.checked_path(ref["provenance"]))
            cont = pq.read_table(a.checked_path(ref["content"]))
            assert prov.num_rows == cont.num_rows == ref["rows"]
            assert prov.column_names[:9] == list(PROV_TYPES)
            for name, typ in PROV_TYPES.items():
                assert prov.schema.field(name).type == typ, (name, prov.schema.field(name).type)
            assert cont.schema == pa.schema([("row_id", pa.binary(32)), ("content", pa.string())])
            tables[seg] = (prov.to_pydict(), cont.to_pydict())
        prov, cont = tables[seg]
        assert row < len(prov["row_id"])
        assert prov["row_id"][row] == rid and cont["row_id"][row] == rid
        text = cont["content"][row]
        ch = prov["content_sha256"][row]
        assert sha(text.encode("utf-8")) == ch
        assert jcs(json.loads(text)) == text.encode("utf-8")
        sid, key = prov["source_id"][row], prov["source_key"][row]
        assert hashlib.sha256(jcs([sid, key, ch.hex()])).digest() == rid
        assert expected[rid.hex()] == (sid, key, text, ch), f"row {rid.hex()} is not the one its input gives"
        assert w == 1.0
        per_source.setdefault(sid, []).append(w)
        hashes.add(ch)
        snapshots.setdefault(sid, set()).add(prov["source_snapshot"][row])
    assert {r[0].hex() for r in recs} == set(expected), "the version's rows are not exactly the expected rows"
    assert content["per_source"] == {s: [len(ws), math.fsum(ws)] for s, ws in per_source.items()}
    assert manifest["source_snapshots"] == {s: sorted(v) for s, v in snapshots.items()}

    # §8 content_root over the distinct content hashes, and its chunks and stored levels
    distinct = sorted(hashes)
    assert a.load_hashes(manifest["contents"]["chunks"]) == distinct
    ctree = Tree(distinct)
    assert content["content_root"] == ctree.mth().hex()
    content_levels = a.check_levels(manifest["contents"], ctree, content["content_root"])
    return {
        "version_id": version_id,
        "content": content,
        "manifest": manifest,
        "ids": ids,
        "tree": tree,
        "row_levels": row_levels,
        "hashes": distinct,
        "ctree": ctree,
        "content_levels": content_levels,
    }


def check_row_proofs(a: Auditor, s, v: dict, ref: str, indexes, corpus: str = "main") -> None:
    """rowtrail's proofs at these leaf indexes: valid per §12.1 against the signed record, exactly
    RFC 6962 PATH, and equal to the path the auditor builds itself from the stored levels."""
    root, vid, ids, n = v["content"]["merkle_root"], v["version_id"], v["ids"], v["content"]["row_count"]
    for index in indexes:
        proof = s.prove(ids[index].hex(), ref, corpus=corpus)
        assert proof["leaf_index"] == index and proof["tree_size"] == n
        assert check_inclusion_proof(proof, "row_id", "merkle_root", root, vid, n)
        path = [bytes.fromhex(p) for p in proof["audit_path"]]
        assert path == v["tree"].path(index)
        assert path == a.proof_path(v["manifest"]["rows"]["chunks"], v["row_levels"], n, index)
        if path:
            flipped = proof["audit_path"][0][:-2] + ("00" if proof["audit_path"][0][-2:] != "00" else "01")
            assert not check_inclusion_proof(
                dict(proof, audit_path=[flipped] + proof["audit_path"][1:]), "row_id", "merkle_root", root, vid, n
            )
        if n > 1:
            assert not check_inclusion_proof(
                dict(proof, leaf_index=index ^ 1 if index ^ 1 < n else index - 1), "row_id", "merkle_root", root, vid, n
            )


def test_auditor_verifies_versions_from_the_spec(tmp_path, monkeypatch):
    home = setup_home(tmp_path, monkeypatch)

    # -- build a store through the public API ---------------------------------------------------
    s = rt.init(tmp_path / "st")
    s.sources.add("partner-x", kind="partner-dump", uri="https://partner.example/dump", license="CC-BY-4.0", legal_basis="contract")
    s.sources.add("crawl-a", kind="crawl", uri="https://crawl.example/", license="CC0-1.0", legal_basis="tdm-exception")
    p1 = write_jsonl(tmp_path / "partner-1.jsonl", PARTNER_V1)
    crawl = crawl_rows()
    c1 = write_jsonl(tmp_path / "crawl.jsonl", crawl)
    s.ingest(p1, source="partner-x", key_field="id", content_fields=PARTNER_FIELDS)
    s.ingest(c1, source="crawl-a", key_field="id", content_fields=["text"], attributes={"lang": "lang"})
    s.commit("first mix", tag="v1")
    p2 = write_jsonl(tmp_path / "partner-2.jsonl", PARTNER_V2)
    s.ingest(p2, source="partner-x", key_field="id", content_fields=PARTNER_FIELDS)
    s.commit("refresh partner-x", tag="v2")

    # -- what the spec says the versions must hold, from the input files alone -------------------
    v1_rows = expected_rows("partner-x", PARTNER_V1, PARTNER_FIELDS) | expected_rows("crawl-a", crawl, ["text"])
    superseded = expected_row("partner-x", PARTNER_V1[0], PARTNER_FIELDS)[3]
    v2_rows = {k: v for k, v in v1_rows.items() if k != superseded} | expected_rows("partner-x", PARTNER_V2, PARTNER_FIELDS)
    assert len(v1_rows) == len(PARTNER_V1) + CRAWL_ROWS and len(v2_rows) == len(v1_rows) + 1

    # -- the audit ---------------------------------------------------------------------------------
    a = Auditor(tmp_path / "st", home)
    assert (a.root / "rowtrail.toml").is_file() and (a.root / "lock").is_file()
    entries, digests = a.journal()
    assert [e["kind"] for e in entries] == ["init", "source.add", "source.add", "ingest", "ingest", "commit", "ingest", "commit"]
    for e in entries:
        if e["kind"] == "ingest":  # the file digest recorded in the journal is the input file's
            for f in e["files"]:
                assert f["sha256"] == hashlib.sha256(Path(f["name"]).read_bytes()).hexdigest()
    v1 = audit_version(a, entries, digests, "v1", v1_rows)
    v2 = audit_version(a, entries, digests, "v2", v2_rows)
    assert entries[7]["record"]["parent"] == v1["version_id"]
    n = len(v2["ids"])
    assert len(v2["hashes"]) < n  # the data has duplicated content
    assert [len(level) for level in v2["row_levels"]] == [20, 10, 5, 3, 2, 1]  # n = 20,006
    rows_chunks = v2["manifest"]["rows"]["chunks"]
    assert len(rows_chunks) > 1, "the test data should produce several content-defined chunks"
    assert len({seg for _, _, seg, _ in a.load_rows(rows_chunks)}) > 1, "rows from several segments"

    # the supersession is recorded as a drop and a 'modified' edge (spec §15.6)
    ing = entries[6]
    assert ing["counts"] == {"rows": 3, "new": 1, "unchanged": 1, "superseded": 1, "refresh_dropped": 0, "quarantined": 0}
    drops = pq.read_table(a.checked_path(ing["drops"])).to_pylist()
    edges = pq.read_table(a.checked_path(ing["edges"])).to_pylist()
    changed = expected_row("partner-x", PARTNER_V2[0], PARTNER_FIELDS)[3]
    assert drops == [{"row_id": bytes.fromhex(superseded), "reason_code": "superseded", "reason": drops[0]["reason"]}]
    assert edges == [{"parent": bytes.fromhex(superseded), "child": bytes.fromhex(changed), "kind": "modified"}]
    # the declared attribute is a provenance column
    crawl_seg = entries[4]["segments"][0]
    prov = pq.read_table(a.checked_path(crawl_seg["provenance"]))
    assert "attr.lang" in prov.column_names and prov.column("attr.lang").to_pylist()[:3] == ["fr", "en", "en"]

    # -- proofs from rowtrail, checked with the auditor's own RFC 9162 code -----------------------
    root, vid, ids = v2["content"]["merkle_root"], v2["version_id"], v2["ids"]
    check_row_proofs(a, s, v2, "v2", (0, 1, 1023, 1024, 8191, 8192, 12_345, 19_455, 19_456, n - 1))

    # §12.1: tree_size must be checked against row_count. The last leaf's proof relabelled as
    # (2n − 2, 2n − 1) passes the RFC 9162 steps and rowtrail's proof-only check, but not the auditor's.
    last = s.prove(ids[-1].hex(), "v2")
    forged = dict(last, leaf_index=2 * n - 2, tree_size=2 * n - 1)
    assert rfc9162_verify(ids[-1], 2 * n - 2, 2 * n - 1, [bytes.fromhex(p) for p in last["audit_path"]], bytes.fromhex(root))
    assert rt.verify_inclusion(forged)
    assert not check_inclusion_proof(forged, "row_id", "merkle_root", root, vid, n)
    assert check_inclusion_proof(last, "row_id", "merkle_root", root, vid, n)

    # the superseded row: in v1, provably absent from v2
    p_in = s.prove(superseded, "v1")
    assert check_inclusion_proof(p_in, "row_id", "merkle_root", v1["content"]["merkle_root"], v1["version_id"], v1["content"]["row_count"])
    assert not check_inclusion_proof(p_in, "row_id", "merkle_root", v1["content"]["merkle_root"], v1["version_id"], n)
    p_out = s.prove(superseded, "v2", absent=True)
    assert check_exclusion_proof(p_out, "row_id", "merkle_root", root, vid, n)
    assert not check_exclusion_proof(dict(p_out, row_id=ids[5].hex()), "row_id", "merkle_root", root, vid, n)
    for probe in ("00" * 32, "ff" * 32):  # the edges of the tree
        assert check_exclusion_proof(s.prove(probe, "v2", absent=True), "row_id", "merkle_root", root, vid, n)
    # §12.2: the same relabelling of an edge exclusion proof
    edge = s.prove("ff" * 32, "v2", absent=True)
    assert edge["right"] is None and edge["left"]["leaf_index"] == n - 1
    forged_ex = dict(edge, tree_size=2 * n - 1, left=dict(edge["left"], leaf_index=2 * n - 2, tree_size=2 * n - 1))
    assert rt.verify_exclusion(forged_ex)
    assert not check_exclusion_proof(forged_ex, "row_id", "merkle_root", root, vid, n)

    # a content hash against content_root; its tree size is the number of distinct content hashes,
    # i.e. the content chunks' counts summed (checked against content_root in audit_version)
    croot, hashes = v2["content"]["content_root"], v2["hashes"]
    csize = sum(c[1] for c in v2["manifest"]["contents"]["chunks"])
    assert csize == len(hashes)
    for index in (0, 1024, len(hashes) - 1):
        cp = s.prove(hashes[index].hex(), "v2", content=True)
        assert cp["tree_size"] == csize
        assert check_inclusion_proof(cp, "content_sha256", "content_root", croot, vid, csize)
        assert not check_inclusion_proof(cp, "content_sha256", "content_root", croot, vid, n)  # not row_count
        cpath = [bytes.fromhex(p) for p in cp["audit_path"]]
        assert cpath == v2["ctree"].path(index)
        assert cpath == a.proof_path(v2["manifest"]["contents"]["chunks"], v2["content_levels"], csize, index)
    gone_hash = expected_row("partner-x", PARTNER_V1[0], PARTNER_FIELDS)[2]  # the superseded row's content
    assert gone_hash not in hashes
    cx = s.prove(gone_hash.hex(), "v2", absent=True, content=True)
    assert check_exclusion_proof(cx, "content_sha256", "content_root", croot, vid, csize)


# Spec §1 for Arrow input, written out by hand: expected JSON values of each column
VALUE_ROWS = [
    {
        "id": 1,
        "ts": 1_000_000_001,
        "tz": 1_700_000_000_123_400,
        "old": dt.datetime(5, 1, 2, 3, 4, 5, 500_000),
        "m": [("k", 1), ("a", 2)],
        "lm": [[("x", "y")]],
        "d": dt.date(2024, 2, 29),
        "dec": decimal.Decimal("1.50"),
    },
    {
        "id": 2,
        "ts": 1_000_000_002,
        "tz": 0,
        "old": dt.datetime(2024, 1, 2, 3, 4, 5),
        "m": [],
        "lm": [],
        "d": dt.date(1, 1, 1),
        "dec": decimal.Decimal("100"),
    },
    {
        "id": 3,
        "ts": 1_000_000_120,
        "tz": 1,
        "old": dt.datetime(9999, 12, 31, 23, 59, 59, 999_999),
        "m": [("é", 3)],
        "lm": [[], [("a", "b"), ("c", "d")]],
        "d": dt.date(2000, 1, 1),
        "dec": decimal.Decimal("-0.01"),
    },
    {"id": 4, "ts": 1_000_000_000, "tz": 1_000, "old": dt.datetime(1970, 1, 1), "m": None, "lm": None, "d": None, "dec": None},
]
VALUE_JSON = [
    {
        "ts": "1970-01-01T00:00:01.000000001Z",
        "tz": "2023-11-14T22:13:20.1234Z",
        "old": "0005-01-02T03:04:05.5Z",
        "m": {"a": 2, "k": 1},
        "lm": [{"x": "y"}],
        "d": "2024-02-29",
        "dec": "1.50",
    },
    {
        "ts": "1970-01-01T00:00:01.000000002Z",
        "tz": "1970-01-01T00:00:00Z",
        "old": "2024-01-02T03:04:05Z",
        "m": {},
        "lm": [],
        "d": "0001-01-01",
        "dec": "100.00",
    },
    {
        "ts": "1970-01-01T00:00:01.00000012Z",
        "tz": "1970-01-01T00:00:00.000001Z",
        "old": "9999-12-31T23:59:59.999999Z",
        "m": {"é": 3},
        "lm": [{}, {"a": "b", "c": "d"}],
        "d": "2000-01-01",
        "dec": "-0.01",
    },
    {
        "ts": "1970-01-01T00:00:01Z",
        "tz": "1970-01-01T00:00:00.001Z",
        "old": "1970-01-01T00:00:00Z",
        "m": None,
        "lm": None,
        "d": None,
        "dec": None,
    },
]
VALUE_FIELDS = ["ts", "tz", "old", "m", "lm", "d", "dec"]


def value_table() -> pa.Table:
    col = lambda k: [r[k] for r in VALUE_ROWS]  # noqa: E731
    return pa.table(
        {
            "id": pa.array(col("id"), pa.int64()),
            "ts": pa.array(col("ts"), pa.timestamp("ns")),
            "tz": pa.array(col("tz"), pa.timestamp("us", tz="Europe/Paris")),
            "old": pa.array(col("old"), pa.timestamp("us")),
            "m": pa.array(col("m"), pa.map_(pa.string(), pa.int64())),
            "lm": pa.array(col("lm"), pa.list_(pa.map_(pa.string(), pa.string()))),
            "d": pa.array(col("d"), pa.date32()),
            "dec": pa.array(col("dec"), pa.decimal128(6, 2)),
        }
    )


def test_auditor_value_mapping_and_tree_sizes(tmp_path, monkeypatch):
    """Spec §1 for Arrow values (nanosecond and zoned timestamps, 4-digit years, maps as objects,
    dates, decimals), §2's refusal of a clashing extra hash, and §15.3 at the edges: an empty version
    (one node, SHA-256("")), exactly 1,024 leaves (the root alone), 1,025 (two levels) and 2,049."""
    home = setup_home(tmp_path, monkeypatch)
    s = rt.init(tmp_path / "st")
    s.sources.add("vals", kind="synthetic", uri="https://vals.example/", license="MIT", legal_basis="own-data")
    s.sources.add("edge", kind="synthetic", uri="https://edge.example/", license="MIT", legal_basis="own-data")
    with pytest.raises(rt.IngestError, match="content_sha256"):
        s.ingest(
            pa.table({"id": [1], "content": ["x"]}), source="vals", key_field="id", content_fields=["content"], hash_fields=["content"]
        )
    s.ingest(value_table(), source="vals", key_field="id", content_fields=VALUE_FIELDS)
    s.commit("values", tag="vals")
    s.commit("nothing", tag="e0", corpus="empty")
    edge = [{"id": i, "text": f"edge row {i}"} for i in range(2049)]
    tags = {}
    for tag, lo, hi in (("e1024", 0, 1024), ("e1025", 1024, 1025), ("e2049", 1025, 2049)):
        s.ingest(write_jsonl(tmp_path / f"{tag}.jsonl", edge[lo:hi]), source="edge", key_field="id", content_fields=["text"], corpus="edge")
        s.commit(tag, tag=tag, corpus="edge")
        tags[tag] = hi

    a = Auditor(tmp_path / "st", home)
    entries, digests = a.journal()

    # §1: each Arrow value hashed as the JSON value the spec's table gives
    want = {}
    for row, js in zip(VALUE_ROWS, VALUE_JSON):
        want |= expected_rows("vals", [{"id": row["id"], **js}], VALUE_FIELDS)
    v = audit_version(a, entries, digests, "vals", want)
    ing = next(e for e in entries if e["kind"] == "ingest")
    assert ing["options"]["hash_fields"] == [] and ing["files"] == [{"name": "<pyarrow.Table>", "sha256": None, "rows": 4}]
    check_row_proofs(a, s, v, "vals", range(4))

    # §15.3 at n = 0: the nodes object is the empty tree's root; exclusion proofs against it
    e0 = audit_version(a, entries, digests, "e0", {}, corpus="empty")
    assert e0["content"]["row_count"] == 0 and e0["content"]["merkle_root"] == sha(b"").hex()
    assert e0["content"]["weight_total"] == 0 and e0["content"]["per_source"] == {}
    assert e0["manifest"]["rows"]["chunks"] == [] and e0["manifest"]["contents"]["chunks"] == []
    assert a.obj(e0["manifest"]["rows"]["nodes"]) == sha(b"") == a.obj(e0["manifest"]["contents"]["nodes"])
    px = s.prove("ab" * 32, "e0", absent=True, corpus="empty")
    assert check_exclusion_proof(px, "row_id", "merkle_root", sha(b"").hex(), e0["version_id"], 0)

    # §15.3 at the block boundary
    for tag, n in tags.items():
        rows = expected_rows("edge", edge[:n], ["text"])
        ver = audit_version(a, entries, digests, tag, rows, corpus="edge")
        sizes = [len(level) for level in ver["row_levels"]]
        assert sizes == {1024: [1], 1025: [2, 1], 2049: [3, 2, 1]}[n], (tag, sizes)
        assert len(a.obj(ver["manifest"]["rows"]["nodes"])) == 32 * sum(sizes)
        check_row_proofs(a, s, ver, tag, sorted({0, 1023, min(1024, n - 1), n - 2, n - 1}), corpus="edge")


def test_spec_section_16_script_runs_on_a_fresh_store(tmp_path, monkeypatch):
    """The hand-verification script printed in spec §16, run as written against a fresh store, with a
    row proof and a content proof produced by the CLI; and it rejects a relabelled proof."""
    home = setup_home(tmp_path, monkeypatch)
    text = SPEC.read_text(encoding="utf-8")
    section = text[text.index("## 16. Verifying a version by hand") : text.index("## 17.")]
    script = tmp_path / "audit.py"
    script.write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1), encoding="utf-8")

    st = tmp_path / "st"
    s = rt.init(st)
    s.sources.add("docs", kind="crawl", uri="https://docs.example/", license="CC0-1.0", legal_basis="tdm-exception")
    rows = [{"id": f"d{i}", "text": f"text {i % 2900}"} for i in range(3000)]  # 3000 rows: levels [3, 2, 1]
    s.ingest(write_jsonl(tmp_path / "docs.jsonl", rows), source="docs", key_field="id", content_fields=["text"])
    s.commit("docs", tag="d1")
    rid = expected_row("docs", rows[1234], ["text"])[3]
    chash = expected_row("docs", rows[7], ["text"])[2].hex()
    env = dict(os.environ)
    cli = [sys.executable, "-m", "rowtrail", "--store", str(st)]
    for args, out in ((["prove", rid, "d1"], "row.json"), (["prove", chash, "d1", "--content"], "content.json")):
        res = subprocess.run(cli + args + ["-o", str(tmp_path / out)], env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr

    pub = home / "keys" / "default.pub.pem"
    for extra in ([], [str(tmp_path / "row.json")], [str(tmp_path / "content.json")]):
        res = subprocess.run([sys.executable, str(script), str(st), "d1", str(pub), *extra], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("OK main@d1: 3000 rows, version ")

    proof = json.loads((tmp_path / "row.json").read_text())
    (tmp_path / "bad.json").write_text(json.dumps(dict(proof, tree_size=proof["tree_size"] + 1)))
    res = subprocess.run([sys.executable, str(script), str(st), "d1", str(pub), str(tmp_path / "bad.json")], capture_output=True, text=True)
    assert res.returncode != 0 and "AssertionError" in res.stderr
