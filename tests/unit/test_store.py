"""Store, versions, refs, signing, diff, trace, proofs, SQL and removal through the Python API."""

from __future__ import annotations

import os
import stat

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rowtrail as rt
from rowtrail import hashing


def table(source_rows: int, prefix: str = "k", salt: str = "") -> pa.Table:
    return pa.table({"id": [f"{prefix}{i}" for i in range(source_rows)], "text": [f"text {prefix}{i}{salt}" for i in range(source_rows)]})


@pytest.fixture
def store(any_store):
    """A store with three sources, on a local directory and on S3 (tests/conftest.py)."""
    for s in ("alpha", "beta", "gamma"):
        any_store.sources.add(s, kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    return any_store


def test_init_open_and_errors(tmp_path, rowtrail_home, monkeypatch):
    with pytest.raises(rt.StoreNotFoundError, match="rowtrail init"):
        rt.open(tmp_path / "nothing")
    s = rt.init(tmp_path / "st")
    with pytest.raises(rt.StoreExistsError):
        rt.init(tmp_path / "st")
    monkeypatch.setenv("ROWTRAIL_STORE", str(tmp_path / "st"))
    assert rt.open().path == s.path
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROWTRAIL_STORE")
    assert rt.init().path.name == ".rowtrail"


def test_commit_records_format_fields(store):
    store.ingest(table(100), source="alpha", key_field="id")
    v = store.commit("first", tag="v37")
    rec = v.record
    assert set(rec) == {"content_id", "content", "parent", "tag", "message", "author", "created_at", "journal_head"}
    assert set(v.content) == {"corpus", "merkle_root", "content_root", "row_count", "weight_total", "weights_sha256", "per_source", "pipeline", "inputs_root", "policy"}
    assert v.id == hashing.sha256_hex(hashing.jcs(rec))
    assert v.content_id == hashing.sha256_hex(hashing.jcs(v.content))
    ids = hashing.ids_from_hex(sorted(store.rows("v37").column("row_id").to_pylist()))
    assert v.content["merkle_root"] == hashing.merkle_root(ids) == v.content["inputs_root"]
    assert v.content["weights_sha256"] == hashing.weights_sha256(ids, np.ones(len(ids)))
    assert v.content["per_source"] == {"alpha": [100, 100.0]}
    assert rec["journal_head"] == store.state.digests[-2]
    env = v.attestation()
    assert env["payloadType"] == "application/vnd.in-toto+json"
    stmt, good = rt.versions.signing.open_envelope(env, rt.versions.signing.trusted_keys())  # type: ignore[attr-defined]
    assert good and stmt["subject"] == [{"name": "main@v37", "digest": {"sha256": v.id}}]
    assert stmt["predicateType"] == "https://rowtrail.dev/attestation/corpus-version/v1" and stmt["predicate"] == rec


def test_content_id_is_deterministic_across_stores(tmp_path, rowtrail_home):
    ids = []
    for name in ("a", "b"):
        s = rt.init(tmp_path / name)
        s.sources.add("alpha", kind="crawl")
        s.ingest(table(300), source="alpha", key_field="id")
        s.ingest(table(50, "z"), source="alpha", key_field="id")
        ids.append(s.commit("x", sign=False).content_id)
    assert ids[0] == ids[1]


def test_tags_refs_and_head(store):
    store.ingest(table(10), source="alpha", key_field="id")
    v1 = store.commit("one", tag="v1")
    with pytest.raises(rt.NothingToCommitError, match="rowtrail status"):
        store.commit("again")
    store.ingest(table(5, "b"), source="beta", key_field="id")
    with pytest.raises(rt.TagExistsError, match="never move"):
        store.commit("two", tag="v1")
    with pytest.raises(rt.RefError, match="looks like a version id"):
        store.commit("two", tag="deadbeef")
    v2 = store.commit("two", tag="v2")
    assert store.version("HEAD") == v2 and store.version("HEAD~1") == v1 and store.version(v1.id[:10]) == v1
    assert store.version("v1") == v1 and v2.parent == v1
    assert [v.tag for v in store.log()] == ["v2", "v1"]
    with pytest.raises(rt.RefError, match="rowtrail log"):
        store.version("v9")
    with pytest.raises(rt.RefError, match="first version"):
        store.version("HEAD~2")
    other = store.commit("empty corpus", corpus="eval", sign=False)
    assert other.row_count == 0 and other.content["merkle_root"] == hashing.EMPTY_ROOT.hex()
    assert store.version("HEAD", corpus="eval") == other


def test_signing_needs_a_key(tmp_path, monkeypatch):
    monkeypatch.setenv("ROWTRAIL_HOME", str(tmp_path / "empty-home"))
    monkeypatch.delenv("ROWTRAIL_SIGNING_KEY", raising=False)
    s = rt.init(tmp_path / "st")
    s.sources.add("alpha", kind="crawl")
    s.ingest(table(3), source="alpha", key_field="id")
    with pytest.raises(rt.SigningError, match="rowtrail keygen"):
        s.commit("x")
    v = s.commit("x", sign=False)
    assert not v.signed and v.attestation() is None
    rep = s.verify()
    assert not rep.ok and "unsigned" in rep.problems[0]["problem"]
    assert s.verify(allow_unsigned=True).ok


def test_keygen_file_modes_and_env_key(tmp_path, monkeypatch):
    kp = rt.keygen("ci", home=tmp_path / "h")
    assert stat.S_IMODE(os.stat(kp.private_path).st_mode) == 0o600
    assert (tmp_path / "h" / "trusted_keys" / "ci.pem").read_bytes() == kp.public_path.read_bytes()
    with pytest.raises(rt.SigningError, match="exists"):
        rt.keygen("ci", home=tmp_path / "h")
    monkeypatch.setenv("ROWTRAIL_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("ROWTRAIL_SIGNING_KEY", kp.private_path.read_text())
    s = rt.init(tmp_path / "st")
    s.sources.add("alpha", kind="crawl")
    s.ingest(table(3), source="alpha", key_field="id")
    v = s.commit("x")
    assert v.attestation()["signatures"][0]["keyid"] == kp.key_id
    # the private key never enters the store
    pem = kp.private_path.read_bytes()
    for path in s.path.rglob("*"):
        if path.is_file():
            assert pem not in path.read_bytes()


def test_remove_and_diff_per_source(store):
    store.ingest(table(200), source="alpha", key_field="id")
    store.ingest(table(100, "b"), source="beta", key_field="id")
    v1 = store.commit("one", tag="v1")
    n = store.remove(source="beta", reason="opt-out")
    assert n == 100
    store.ingest(table(30, "g"), source="gamma", key_field="id")
    store.ingest(table(10, "k", salt="!"), source="alpha", key_field="id")  # 10 superseded
    v2 = store.commit("two", tag="v2")
    d = v2.provenance_set() - v1.provenance_set()
    assert d.sources_added == {"gamma"} and d.sources_dropped == {"beta"} and d.sources_changed == frozenset()
    assert len(d.rows_added) == 40 and len(d.rows_removed) == 110
    assert d.per_source == {"alpha": (200, 200), "beta": (100, 0), "gamma": (0, 30)}
    assert d.changes_per_source == {"alpha": {"added": 10, "removed": 10}, "beta": {"added": 0, "removed": 100}, "gamma": {"added": 30, "removed": 0}}
    assert d.rows_added.to_pylist() == sorted(d.rows_added.to_pylist())
    back = v1.provenance_set() - v2.provenance_set()
    assert back.rows_added.equals(d.rows_removed) and back.rows_removed.equals(d.rows_added)
    removed = d.rows_removed.to_pylist()
    beta_row = next(r for r in removed if store.trace(r)["source"]["source_id"] == "beta")
    t = store.trace(beta_row)
    assert set(t) == {"row_id", "source", "provenance", "content", "ingest", "derived_from", "steps", "descendants", "drops", "lineage", "versions", "runs"}
    assert t["source"]["license"] == "CC-BY-4.0" and t["source"]["legal_basis"] == "contract"
    assert t["drops"][0]["reason"] == "opt-out" and t["drops"][0]["effective_in"] == v2.id
    assert [v["tag"] for v in t["versions"]] == ["v1"]
    with pytest.raises(rt.RowtrailError, match="no rows"):
        store.remove(source="beta")
    with pytest.raises(rt.RefError, match="not in corpus"):
        store.remove(row_ids=["00" * 32])


def test_refresh_shows_as_changed_source(store):
    store.ingest(table(5), source="alpha", key_field="id")
    v1 = store.commit("one")
    store.sources.refresh("alpha")
    store.ingest(table(5, salt="+"), source="alpha", key_field="id")
    v2 = store.commit("two")
    d = v2.provenance_set() - v1.provenance_set()
    assert d.sources_changed == {"alpha"} and v2.manifest["source_snapshots"] == {"alpha": ["alpha@2"]}


def test_shared_chunks_make_small_diffs_cheap(store, monkeypatch):
    big = pa.table({"id": [f"r{i}" for i in range(60_000)], "text": [f"t{i}" for i in range(60_000)]})
    store.ingest(big, source="alpha", key_field="id")
    v1 = store.commit("one")
    store.ingest(table(3, "new"), source="beta", key_field="id")
    v2 = store.commit("two")
    assert len(v1.manifest["rows"]["chunks"]) > 3
    d = v2.provenance_set() - v1.provenance_set()
    assert len(d.rows_added) == 3 and len(d.rows_removed) == 0
    assert d.chunks_shared >= len(v1.manifest["rows"]["chunks"]) - 3


def test_prove_inclusion_and_exclusion(store):
    store.ingest(pa.table({"id": [f"r{i}" for i in range(20_000)], "text": [f"t{i}" for i in range(20_000)]}), source="alpha", key_field="id")
    v = store.commit("one", tag="v1")
    ids = store.rows("v1").column("row_id").to_pylist()
    for rid in ids[:3] + ids[8190:8194] + ids[-3:]:
        p = store.prove(rid, "v1")
        assert rt.verify_inclusion(p) and p["merkle_root"] == v.content["merkle_root"] and p["tree_size"] == 20_000
        assert set(p) == {"row_id", "leaf_index", "tree_size", "audit_path", "merkle_root", "version_id"}
        bad = dict(p, leaf_index=p["leaf_index"] ^ 1)
        assert not rt.verify_inclusion(bad)
    for absent in ("00" * 32, "ff" * 32, hashing.row_id("alpha", "nope", "00" * 32)):
        p = store.prove(absent, "v1", absent=True)
        assert rt.verify_exclusion(p)
        assert not rt.verify_exclusion(dict(p, row_id=ids[0]))
        side = "left" if p["left"] else "right"
        assert not rt.verify_exclusion(dict(p, **{side: dict(p[side], version_id="00" * 32)}))
    with pytest.raises(rt.ProofError, match="--absent"):
        store.prove("00" * 32, "v1")
    with pytest.raises(rt.ProofError, match="IS in version"):
        store.prove(ids[0], "v1", absent=True)
    ch = store.rows("v1", limit=1).column("content_sha256")[0].as_py()
    cp = store.prove(ch, "v1", content=True)
    assert rt.verify_inclusion(cp) and cp["content_root"] == v.content["content_root"]
    assert rt.verify_exclusion(store.prove(hashing.content_sha256({"text": "never"}), "v1", content=True, absent=True))


def test_sql_views(store):
    store.ingest(table(20), source="alpha", key_field="id")
    store.commit("one", tag="v1")
    store.remove(source="alpha", reason="gone")
    store.commit("two", tag="v2", sign=False)
    assert store.sql("SELECT count(*) FROM rows").column(0)[0].as_py() == 20
    assert store.sql("SELECT count(*) FROM sources").column(0)[0].as_py() == 3
    q = "SELECT v.tag, count(vr.row_id) AS n FROM versions v LEFT JOIN version_rows vr USING (version_id) GROUP BY 1 ORDER BY 1"
    assert store.sql(q).to_pylist() == [{"tag": "v1", "n": 20}, {"tag": "v2", "n": 0}]
    assert store.sql("SELECT DISTINCT reason FROM drops").column(0).to_pylist() == ["gone"]
    assert store.sql("SELECT kind FROM journal ORDER BY seq").column(0).to_pylist()[:2] == ["init", "source.add"]
    assert store.sql("SELECT content->>'text' AS t FROM rows WHERE source_key = 'k3'").column(0)[0].as_py() == "text k3"
    assert store.sql("SELECT ? + 1 AS x", [41]).column(0)[0].as_py() == 42


def test_rows_table_columns(store):
    store.ingest(table(7), source="alpha", key_field="id")
    store.commit("one")
    t = store.rows(source="alpha")
    assert t.num_rows == 7
    for col in ("text", "row_id", "source_id", "source_snapshot", "source_key", "content_sha256", "ingest_id", "ingested_at", "origin_file", "origin_line", "weight"):
        assert col in t.column_names
    with pytest.raises(rt.SourceNotFoundError):
        store.rows(source="nope")


IDS = st.lists(st.integers(min_value=0, max_value=400), max_size=120, unique=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=IDS, b=IDS)
def test_diff_algebra(tmp_store, a, b):
    """(a−b).rows_added == (b−a).rows_removed, and both agree with set difference."""
    corpus = f"c{abs(hash((tuple(a), tuple(b)))) % 10**9}"
    store = tmp_store  # diff algebra, not storage: the local store only (the S3 store runs the tests above)
    if "alpha" not in store.state.sources:
        store.sources.add("alpha", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")

    def version(keys):
        store.ingest(pa.table({"id": [f"k{k}" for k in keys] or ["none"], "text": [f"t{k}" for k in keys] or ["none"]}), source="alpha", key_field="id", corpus=corpus, replace=True, yes=True)
        return store.commit("v", corpus=corpus, sign=False, allow_empty=True)

    va, vb = version(a), version(b)
    ab = va.provenance_set() - vb.provenance_set()
    ba = vb.provenance_set() - va.provenance_set()
    def ids(keys):
        keys = keys or ["none"]
        return {hashing.row_id("alpha", f"k{k}" if k != "none" else k, hashing.content_sha256({"text": f"t{k}" if k != "none" else k})) for k in keys}

    assert set(ab.rows_added.to_pylist()) == ids(a) - ids(b)
    assert set(ab.rows_removed.to_pylist()) == ids(b) - ids(a)
    assert ab.rows_added.equals(ba.rows_removed) and ab.rows_removed.equals(ba.rows_added)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.binary(min_size=32, max_size=32), max_size=80), st.sets(st.binary(min_size=32, max_size=32), max_size=80), st.integers(1, 9))
def test_sorted_membership_matches_sets(xs, ys, block):
    import rowtrail.ops.diff as diff

    shared = set(list(xs)[: len(xs) // 2])
    ys = ys | shared
    a = np.array(sorted(xs), dtype="S32") if xs else np.empty(0, dtype="S32")
    b = np.array(sorted(ys), dtype="S32") if ys else np.empty(0, dtype="S32")
    old = diff.BLOCK
    diff.BLOCK = block  # many blocks, including empty ones on either side
    try:
        in_b, in_a = diff.sorted_membership(a, b)
    finally:
        diff.BLOCK = old
    raw = lambda arr: [bytes(arr[i : i + 1].tobytes()) for i in range(len(arr))]  # noqa: E731
    assert in_b.tolist() == [x in ys for x in raw(a)]
    assert in_a.tolist() == [y in xs for y in raw(b)]


def test_verify_reads_stored_utf8_bytes_exactly():
    from rowtrail.ops.verify import _utf8_values

    values = ["", "a", "données 模型 🙂", '{"k":"\\n"}'] * 3
    col = pa.chunked_array([pa.array(values[:5]), pa.array(values[5:])])
    assert [bytes(v) for v in _utf8_values(col)] == [v.encode() for v in values]
    sliced = pa.chunked_array([pa.array(values).slice(2, 6)])
    assert [bytes(v) for v in _utf8_values(sliced)] == [v.encode() for v in values[2:8]]
