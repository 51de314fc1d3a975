"""Consent opt-out: removal of a source and its descendants, the register, the signed receipt (and a
forged one), exclusion proofs for removed ids and content hashes, duplicates, refused re-ingest."""

from __future__ import annotations

import base64
import json

import pytest

import rowtrail as rt
from rowtrail import hashing, steps
from rowtrail.errors import IngestError, OptOutError, StepError, VerificationError
from rowtrail.ops.optout import register, verify_receipt


def rows(prefix: str, n: int, shared: int = 0) -> list[dict]:
    out = [{"id": f"{prefix}{i}", "prompt": f"q{i}", "response": f"<think>hidden</think>{prefix} answer {i}"} for i in range(n)]
    out += [{"id": f"{prefix}-dup{i}", "prompt": "shared", "response": f"shared answer {i}"} for i in range(shared)]
    return out


def strip_think(text):
    return text.split("</think>")[-1]


@pytest.fixture
def store(tmp_store, write_jsonl):
    for s in ("alpha", "beta", "traces"):
        tmp_store.sources.add(s, kind="other", license="MIT", legal_basis="consent")
    opts = dict(key_field="id", content_fields=["prompt", "response"])
    tmp_store.ingest(write_jsonl(rows("a", 10, shared=2), "a.jsonl"), source="alpha", **opts)
    tmp_store.ingest(write_jsonl(rows("b", 10, shared=2), "b.jsonl"), source="beta", **opts)
    tmp_store.ingest(write_jsonl(rows("t", 6), "t.jsonl"), source="traces", **opts)
    tmp_store.apply([steps.rewrite(strip_think, name="strip-think", field="response")])
    tmp_store.commit("v1", tag="v1")
    return tmp_store


def test_optout_removes_a_source_and_its_rewritten_rows_with_a_verifiable_receipt(store, write_jsonl):
    before = store.version("v1")
    assert before.content["per_source"]["traces"][0] == 6
    res = store.optout(source="traces", reason="consent withdrawn", tag="v2")
    rec, env = res["receipt"], res["envelope"]
    v2 = store.version("v2")
    assert "traces" not in v2.content["per_source"] and rec["new_version"] == v2.id and rec["old_version"] == before.id
    assert rec["removed"]["rows"] == 12  # 6 inputs and the 6 rows the rewrite derived from them
    assert verify_receipt(env, store=store)["request"]["reason"] == "consent withdrawn"
    for rid in res["removed_ids"]:
        assert rt.verify_exclusion(store.prove(rid, "v2", absent=True))
    for h in res["removed_content_hashes"]:
        assert rt.verify_exclusion(store.prove(h, "v2", absent=True, content=True))
    present = store.rows("v2").column("row_id")[0].as_py()
    with pytest.raises(rt.ProofError):
        store.prove(present, "v2", absent=True)
    # the receipt's numbers recompute from the ids it names
    ids = hashing.ids_from_hex(res["removed_ids"])
    assert hashing.merkle_root(ids) == rec["removed"]["row_ids_root"]
    reg = register(store)
    assert reg[-1]["id"] == rec["request"]["id"] and reg[-1]["new_version"] == v2.id
    with pytest.raises(IngestError, match=rec["request"]["id"]):
        store.ingest(write_jsonl(rows("t", 6), "t2.jsonl"), source="traces", key_field="id", content_fields=["prompt", "response"])
    assert store.verify().ok


def test_a_forged_or_tampered_receipt_fails(store, tmp_path):
    res = store.optout(source="traces", reason="consent withdrawn")
    env = res["envelope"]
    stmt = json.loads(base64.b64decode(env["payload"]))
    stmt["predicate"]["removed"]["rows"] = 0
    forged = {**env, "payload": base64.b64encode(json.dumps(stmt).encode()).decode()}
    with pytest.raises(VerificationError, match="signature"):
        verify_receipt(forged)
    other = rt.keygen("mallory", home=tmp_path / "mallory-home")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from rowtrail.versions import signing

    mallory = load_pem_private_key(other.private_path.read_bytes(), password=None)
    resigned = signing.sign_envelope(stmt, mallory)  # type: ignore[arg-type]
    with pytest.raises(VerificationError):
        verify_receipt(resigned)  # signed, but not by a trusted key
    from rowtrail.ops.optout import receipt_statement

    fake = json.loads(json.dumps(res["receipt"]))
    fake["new_version"] = "0" * 64
    trusted_but_false = signing.sign_envelope(receipt_statement(fake), signing.load_signing_key())
    assert verify_receipt(trusted_but_false)["new_version"] == "0" * 64  # the signature alone holds …
    with pytest.raises(VerificationError, match="does not hold"):
        verify_receipt(trusted_but_false, store=store)  # … the store does not


def test_duplicates_under_another_source_must_be_decided(store):
    with pytest.raises(OptOutError, match="--include-duplicates"):
        store.optout(source="alpha", reason="r")
    res = store.optout(source="alpha", reason="r", duplicates="keep")
    assert res["receipt"]["kept_duplicates"]["rows"] == 2
    res = store.optout(source="beta", reason="r", duplicates="include")
    assert res["receipt"]["removed"]["rows"] >= 12


def test_optout_by_key_content_hash_and_sql(store):
    r = store.optout(source="alpha", key="a3", reason="key")
    assert r["receipt"]["removed"]["rows"] == 2  # the input and its rewrite
    t = store.rows("HEAD", source="beta")
    h = t.column("content_sha256")[0].as_py()
    r = store.optout(content_hash=h, reason="hash")  # a derived row's content leads back to its input
    assert r["receipt"]["removed"]["rows"] == 2
    r = store.optout(match="source_key LIKE 't%' AND origin_line <= 2", reason="sql")
    assert r["receipt"]["removed"]["rows"] == 4
    with pytest.raises(OptOutError, match="matches"):
        store.optout(source="alpha", key="nope", reason="x")
    with pytest.raises(OptOutError, match="reason"):
        store.optout(source="alpha", reason=" ")


def test_optout_with_a_user_function_pipeline_needs_the_steps(store):
    reopened = rt.open(store.path)
    n = len(reopened.state.entries)
    with pytest.raises(StepError, match="apply"):
        reopened.optout(source="traces", reason="x")
    assert len(rt.open(store.path).state.entries) == n  # nothing written
    res = reopened.optout(source="traces", reason="x", steps=[steps.rewrite(strip_think, name="strip-think", field="response")])
    assert res["receipt"]["removed"]["rows"] == 12


def test_purge_erases_the_content_and_the_store_still_verifies(store):
    marker = b"t answer 3"
    res = store.optout(source="traces", reason="erasure request", purge=True)
    assert res["purged"]["rows"] == 12  # 6 inputs and their 6 rewrites
    blobs = [p.read_bytes() for p in (store.path / "objects").rglob("*") if p.is_file()]
    assert not any(marker in b for b in blobs)  # the text is gone from every object …
    rep = store.verify()
    assert rep.ok, rep.problems
    assert any("purged" in n for n in rep.notes)
    old = store.version("v1")
    t = store.trace(res["removed_ids"][0])
    assert t["content"] is None and t["provenance"]["source_id"] == "traces"  # … the provenance stays
    table = store.rows(old.id, source="traces")
    assert table.num_rows == 6 and "response" not in table.column_names  # rows of the old version, content erased
    held = table.column("row_id")[0].as_py()
    assert held in res["removed_ids"] and rt.verify_inclusion(store.prove(held, old.id))  # and still provably in it
