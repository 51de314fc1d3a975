"""An outside auditor's check of a rowtrail store, written from docs/spec.md alone.

The store is built through the public API; everything after that is an independent implementation
of the spec (hashlib, rfc8785, cryptography, pyarrow, json, struct): nothing below the build step
imports or calls rowtrail, except ``store.prove`` to obtain proofs, which are then checked here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path

import pyarrow.parquet as pq
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import rowtrail as rt

# ------------------------------------------------------------------------------------------------
# The auditor's implementation of docs/spec.md

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://rowtrail.dev/attestation/corpus-version/v1"
ROW_RECORD = struct.Struct(">32sdII")  # spec §15.2: id | weight f64 | seg u32 | row u32, big-endian
CUT_MODULUS = 8192  # spec §15.2
NODE_LEVEL = 13  # spec §15.3


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


def mth_over_nodes(nodes: list[bytes]) -> bytes:
    """The same tree shape over already-hashed, power-of-two-aligned subtree roots."""
    if len(nodes) == 1:
        return nodes[0]
    k = 1 << ((len(nodes) - 1).bit_length() - 1)
    return sha(b"\x01" + mth_over_nodes(nodes[:k]) + mth_over_nodes(nodes[k:]))


def rfc6962_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n])."""
    n = len(leaves)
    if n <= 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return rfc6962_path(m, leaves[:k]) + [mth(leaves[k:])]
    return rfc6962_path(m - k, leaves[k:]) + [mth(leaves[:k])]


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


def check_inclusion_proof(proof: dict, leaf_key: str, root_key: str, signed_root: str, version_id: str) -> bool:
    """Spec §12.1: the proof's keys, its root equal to the signed root, and the RFC 9162 check."""
    if set(proof) != {leaf_key, "leaf_index", "tree_size", "audit_path", root_key, "version_id"}:
        return False
    if proof[root_key] != signed_root or proof["version_id"] != version_id:
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
        if side is not None and (side["tree_size"] != size or not check_inclusion_proof(side, leaf_key, root_key, signed_root, version_id)):
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


def level_nodes(leaves: list[bytes]) -> list[bytes]:
    """Spec §15.3: the tree's nodes at level 13 (one node, the root, for ≤ 8192 leaves)."""
    block = 1 << NODE_LEVEL
    if not leaves:
        return []
    if len(leaves) <= block:
        return [mth(leaves)]
    return [mth(leaves[i : i + block]) for i in range(0, len(leaves), block)]


class Auditor:
    """Reads a store directory as spec §13–§15 describe it."""

    def __init__(self, root: Path, home: Path):
        self.root = root
        self.home = home

    def obj(self, digest: str) -> bytes:
        data = (self.root / "objects" / "sha256" / digest[:2] / digest[2:]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, f"object {digest} is damaged"
        return data

    def obj_path(self, digest: str) -> Path:
        self.obj(digest)
        return self.root / "objects" / "sha256" / digest[:2] / digest[2:]

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

    def load_chunks(self, chunks: list, width: int) -> list[bytes]:
        """Spec §15.2: chunk objects, each `count` records, spanning [first, last]."""
        out: list[bytes] = []
        for digest, count, first, last in chunks:
            raw = self.obj(digest)
            assert len(raw) == count * width
            recs = [raw[i : i + width] for i in range(0, len(raw), width)]
            assert recs[0][:32].hex() == first and recs[-1][:32].hex() == last
            out += recs
        ids = [r[:32] for r in out]
        assert all(a < b for a, b in zip(ids, ids[1:])), "ids are not strictly increasing"
        assert cuts_ok(ids, [c[1] for c in chunks]), "chunks are not cut where the rule says"
        return out


# ------------------------------------------------------------------------------------------------
# Independent derivation of expected ids from the input files (spec §1–§5)


def expected_row(source_id: str, row: dict, content_fields: list[str]) -> tuple[str, str, bytes, str]:
    """(source_key, content JCS text, content_sha256, row_id hex) for one JSONL row."""
    key = row["id"]
    source_key = key if isinstance(key, str) else jcs(key).decode()
    body = jcs({f: row[f] for f in content_fields})
    ch = sha(body)
    rid = hashlib.sha256(jcs([source_id, source_key, ch.hex()])).hexdigest()
    return source_key, body.decode(), ch, rid


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
CRAWL_ROWS = 20_000  # > 8192 leaves: several level-13 nodes; the ids give several content-defined chunks


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


# ------------------------------------------------------------------------------------------------


def audit_version(a: Auditor, entries: list[dict], digests: list[str], tag: str, expected: dict[str, tuple[str, str, bytes, str]]) -> dict:
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
    assert content["corpus"] == entry["corpus"] == "main"
    assert content["pipeline"] == [] and content["policy"] is None

    # §15.1: the manifest
    manifest_bytes = a.obj(entry["manifest"])
    manifest = json.loads(manifest_bytes)
    assert jcs(manifest) == manifest_bytes
    assert manifest["format"] == "rowtrail.manifest/1"
    assert manifest["version_id"] == version_id and manifest["record"] == record

    # §10: the signature
    envelope_bytes = a.obj(entry["envelope"])
    a.check_signature(json.loads(envelope_bytes), version_id, record, f"{entry['corpus']}@{tag}")

    # §15.2–§15.3: rows, weights, Merkle roots and nodes
    recs = [ROW_RECORD.unpack(r) for r in a.load_chunks(manifest["rows"]["chunks"], ROW_RECORD.size)]
    ids = [r[0] for r in recs]
    weights = [r[1] for r in recs]
    assert content["row_count"] == len(recs)
    assert content["merkle_root"] == mth(ids).hex()
    assert content["weights_sha256"] == hashlib.sha256(b"".join(i + struct.pack(">d", w) for i, w in zip(ids, weights))).hexdigest()
    assert content["weight_total"] == sum(weights)
    nodes = level_nodes(ids)
    assert manifest["rows"]["level"] == NODE_LEVEL
    assert a.obj(manifest["rows"]["nodes"]) == b"".join(nodes)
    assert mth_over_nodes(nodes).hex() == content["merkle_root"]
    inputs = [ROW_RECORD.unpack(r)[0] for r in a.load_chunks(manifest["inputs"]["chunks"], ROW_RECORD.size)]
    assert content["inputs_root"] == mth(inputs).hex()
    assert inputs == ids  # an empty pipeline: the version is its input set

    # §15.4–§15.5: every row's provenance and content, recomputed
    seg_entries = {s["seg"]: s for e in entries if e["kind"] == "ingest" for s in e["segments"]}
    tables: dict[int, tuple[dict, dict]] = {}
    per_source: dict[str, list] = {}
    hashes: set[bytes] = set()
    snapshots: dict[str, set[str]] = {}
    for rid, w, seg, row in recs:
        if seg not in tables:
            ref = manifest["segments"][str(seg)]
            je = seg_entries[seg]
            assert ref == {"provenance": je["provenance"], "content": je["content"], "rows": je["rows"], "sources": je["sources"]}
            prov = pq.read_table(a.obj_path(ref["provenance"]))
            cont = pq.read_table(a.obj_path(ref["content"]))
            assert prov.num_rows == cont.num_rows == ref["rows"]
            assert prov.column_names[:9] == [
                "row_id", "source_id", "source_snapshot", "source_key", "content_sha256",
                "ingest_id", "ingested_at", "origin_file", "origin_line",
            ]  # fmt: skip
            assert cont.column_names == ["row_id", "content"]
            tables[seg] = (prov.to_pydict(), cont.to_pydict())
        prov, cont = tables[seg]
        assert prov["row_id"][row] == rid and cont["row_id"][row] == rid
        text = cont["content"][row]
        ch = prov["content_sha256"][row]
        assert sha(text.encode("utf-8")) == ch
        assert jcs(json.loads(text)) == text.encode("utf-8")
        sid, key = prov["source_id"][row], prov["source_key"][row]
        assert hashlib.sha256(jcs([sid, key, ch.hex()])).digest() == rid
        assert expected[rid.hex()] == (sid, key, text, ch), f"row {rid.hex()} is not the one its input line gives"
        assert w == 1.0
        ps = per_source.setdefault(sid, [0, 0.0])
        ps[0] += 1
        ps[1] += w
        hashes.add(ch)
        snapshots.setdefault(sid, set()).add(prov["source_snapshot"][row])
    assert {r[0].hex() for r in recs} == set(expected), "the version's rows are not exactly the expected rows"
    assert content["per_source"] == per_source
    assert manifest["source_snapshots"] == {s: sorted(v) for s, v in snapshots.items()}

    # §8 content_root over the distinct content hashes, and its chunks and nodes
    distinct = sorted(hashes)
    assert len(distinct) < len(recs)  # the data has duplicated content
    assert a.load_chunks(manifest["contents"]["chunks"], 32) == distinct
    assert content["content_root"] == mth(distinct).hex()
    assert a.obj(manifest["contents"]["nodes"]) == b"".join(level_nodes(distinct))
    return {"version_id": version_id, "content": content, "ids": ids, "hashes": distinct}


def test_auditor_verifies_versions_from_the_spec(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("ROWTRAIL_HOME", str(home))
    monkeypatch.delenv("ROWTRAIL_SIGNING_KEY", raising=False)
    monkeypatch.setenv("ROWTRAIL_AUTHOR", "spec-auditor-test")

    # -- build a store through the public API ---------------------------------------------------
    rt.keygen()
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
    def exp(source_id: str, rows: list[dict], fields: list[str]) -> dict:
        out = {}
        for r in rows:
            key, text, ch, rid = expected_row(source_id, r, fields)
            out[rid] = (source_id, key, text, ch)
        return out

    v1_rows = exp("partner-x", PARTNER_V1, PARTNER_FIELDS) | exp("crawl-a", crawl, ["text"])
    superseded = expected_row("partner-x", PARTNER_V1[0], PARTNER_FIELDS)[3]
    v2_rows = {k: v for k, v in v1_rows.items() if k != superseded} | exp("partner-x", PARTNER_V2, PARTNER_FIELDS)
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
    assert len(v2["ids"]) > 2 * 8192  # several level-13 nodes
    rows_chunks = json.loads(a.obj(entries[7]["manifest"]))["rows"]["chunks"]
    assert len(rows_chunks) > 1, "the test data should produce several content-defined chunks"

    # the supersession is recorded as a drop and a 'modified' edge (spec §15.6)
    ing = entries[6]
    assert ing["counts"] == {"rows": 3, "new": 1, "unchanged": 1, "superseded": 1, "refresh_dropped": 0, "quarantined": 0}
    drops = pq.read_table(a.obj_path(ing["drops"])).to_pylist()
    edges = pq.read_table(a.obj_path(ing["edges"])).to_pylist()
    changed = expected_row("partner-x", PARTNER_V2[0], PARTNER_FIELDS)[3]
    assert drops == [{"row_id": bytes.fromhex(superseded), "reason_code": "superseded", "reason": drops[0]["reason"]}]
    assert edges == [{"parent": bytes.fromhex(superseded), "child": bytes.fromhex(changed), "kind": "modified"}]
    # the declared attribute is a provenance column
    crawl_seg = entries[4]["segments"][0]
    prov = pq.read_table(a.obj_path(crawl_seg["provenance"]))
    assert "attr.lang" in prov.column_names and prov.column("attr.lang").to_pylist()[:3] == ["fr", "en", "en"]

    # -- proofs from rowtrail, checked with the auditor's own RFC 9162 code -----------------------
    root, vid, ids = v2["content"]["merkle_root"], v2["version_id"], v2["ids"]
    for index in (0, 1, 8191, 8192, 12_345, len(ids) - 1):
        proof = s.prove(ids[index].hex(), "v2")
        assert proof["leaf_index"] == index and proof["tree_size"] == len(ids)
        assert check_inclusion_proof(proof, "row_id", "merkle_root", root, vid)
        assert [bytes.fromhex(p) for p in proof["audit_path"]] == rfc6962_path(index, ids)
        bad = dict(
            proof,
            audit_path=[proof["audit_path"][0][:-2] + ("00" if proof["audit_path"][0][-2:] != "00" else "01")] + proof["audit_path"][1:],
        )
        assert not check_inclusion_proof(bad, "row_id", "merkle_root", root, vid)
        assert not check_inclusion_proof(dict(proof, leaf_index=index ^ 1), "row_id", "merkle_root", root, vid)

    # the superseded row: in v1, provably absent from v2
    p_in = s.prove(superseded, "v1")
    assert check_inclusion_proof(p_in, "row_id", "merkle_root", v1["content"]["merkle_root"], v1["version_id"])
    p_out = s.prove(superseded, "v2", absent=True)
    assert check_exclusion_proof(p_out, "row_id", "merkle_root", root, vid, len(ids))
    assert not check_exclusion_proof(dict(p_out, row_id=ids[5].hex()), "row_id", "merkle_root", root, vid, len(ids))
    for probe in ("00" * 32, "ff" * 32):  # the edges of the tree
        assert check_exclusion_proof(s.prove(probe, "v2", absent=True), "row_id", "merkle_root", root, vid, len(ids))

    # a content hash against content_root
    croot, hashes = v2["content"]["content_root"], v2["hashes"]
    cp = s.prove(hashes[-1].hex(), "v2", content=True)
    assert check_inclusion_proof(cp, "content_sha256", "content_root", croot, vid)
    assert [bytes.fromhex(p) for p in cp["audit_path"]] == rfc6962_path(len(hashes) - 1, hashes)
    gone_hash = expected_row("partner-x", PARTNER_V1[0], PARTNER_FIELDS)[2]  # the superseded row's content
    assert gone_hash not in hashes
    cx = s.prove(gone_hash.hex(), "v2", absent=True, content=True)
    assert check_exclusion_proof(cx, "content_sha256", "content_root", croot, vid, len(hashes))
