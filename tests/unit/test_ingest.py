"""Ingest: every input format, provenance columns, supersession, --replace, and every bad-input case."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rowtrail as rt
from rowtrail import hashing
from rowtrail.readers import plan_parts

ROWS = [{"id": f"k{i}", "prompt": f"prompt {i}", "response": f"réponse «{i}»\n", "teacher": "kimi", "score": i / 4} for i in range(50)]


def expected_row_id(source: str, row: dict) -> str:
    ch = hashing.content_sha256({"prompt": row["prompt"], "response": row["response"]})
    return hashing.row_id(source, row["id"], ch)


@pytest.fixture
def store(tmp_store):
    tmp_store.sources.add("src-a", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    tmp_store.sources.add("src-b", kind="crawl", license="MIT", legal_basis="tdm-exception")
    return tmp_store


def ingest_rows(store, path, **kw):
    kw.setdefault("source", "src-a")
    return store.ingest(path, key_field="id", content_fields=["prompt", "response"], **kw)


def committed_ids(store, ref="HEAD"):
    return set(store.rows(ref).column("row_id").to_pylist())


def test_jsonl_row_ids_and_provenance(store, write_jsonl):
    path = write_jsonl(ROWS)
    rep = ingest_rows(store, path, attributes={"teacher": "teacher", "score": "score"}, hash_fields=["prompt"])
    assert (rep.rows, rep.new) == (50, 50)
    store.commit("m", tag="v1")
    t = store.rows("v1")
    by_key = {r["source_key"]: r for r in t.to_pylist()}
    r7 = by_key["k7"]
    assert r7["row_id"] == expected_row_id("src-a", ROWS[7])
    assert r7["origin_line"] == 8 and r7["origin_file"] == str(path)
    assert r7["teacher"] == "kimi" and r7["score"] == 7 / 4
    assert r7["prompt"] == "prompt 7" and r7["response"] == "réponse «7»\n"
    assert r7["source_snapshot"] == "src-a@1"
    prov = store.sql("SELECT prompt_sha256 FROM rows WHERE source_key = 'k7'")
    assert prov.column(0)[0].as_py() == hashing.sha256_hex(hashing.jcs("prompt 7")).encode() or len(prov.column(0)[0].as_py()) == 32


@pytest.mark.parametrize("fmt", ["jsonl.gz", "jsonl.zst", "csv", "parquet", "arrow", "pandas", "polars", "datasets"])
def test_every_input_format_gives_the_same_rows(store, tmp_path, write_jsonl, fmt):
    rows = [{k: r[k] for k in ("id", "prompt", "response")} for r in ROWS]
    table = pa.Table.from_pylist(rows)
    if fmt == "jsonl.gz":
        src = tmp_path / "x.jsonl.gz"
        with gzip.open(src, "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    elif fmt == "jsonl.zst":
        import zstandard

        src = tmp_path / "x.jsonl.zst"
        src.write_bytes(zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    elif fmt == "csv":
        src = tmp_path / "x.csv"
        with open(src, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["id", "prompt", "response"])
            w.writeheader()
            w.writerows(rows)
    elif fmt == "parquet":
        src = tmp_path / "x.parquet"
        pq.write_table(table, src)
    elif fmt == "arrow":
        src = table
    elif fmt == "pandas":
        src = table.to_pandas()
    elif fmt == "polars":
        import polars as pl

        src = pl.from_arrow(table)
    else:
        import datasets

        src = datasets.Dataset(table)
    store.ingest(src if not hasattr(src, "suffix") else str(src), source="src-a", key_field="id", content_fields=["prompt", "response"])
    store.commit("m")
    assert committed_ids(store) == {expected_row_id("src-a", r) for r in ROWS}


def test_parallel_byte_ranges_match_serial(store, tmp_path, monkeypatch, write_jsonl):
    import rowtrail.readers as readers

    rows = [{"id": i, "prompt": "p" * (i % 17), "response": f"r{i}"} for i in range(3000)]
    path = write_jsonl(rows)
    monkeypatch.setattr(readers, "SPLIT_BYTES", 1000)
    monkeypatch.setattr(readers, "PART_BYTES", 20_000)
    parts = plan_parts(str(path), 2)
    assert len(parts) > 2 and parts[0].first_line == 1
    rep = store.ingest(str(path), source="src-a", key_field="id", content_fields=["prompt", "response"], workers=2)
    assert rep.rows == 3000
    store.commit("m")
    t = store.rows()
    lines = dict(zip(t.column("source_key").to_pylist(), t.column("origin_line").to_pylist()))
    assert all(lines[str(i)] == i + 1 for i in range(3000))  # numeric keys are their JCS text


def test_no_key_field_uses_content_hash(store, write_jsonl):
    path = write_jsonl([{"text": "a"}, {"text": "b"}])
    store.ingest(str(path), source="src-b")
    store.commit("m")
    keys = set(store.rows().column("source_key").to_pylist())
    assert keys == {hashing.content_sha256({"text": "a"}), hashing.content_sha256({"text": "b"})}


def test_source_field_and_unknown_source(store, write_jsonl):
    rows = [{"id": "1", "src": "src-a", "t": "x"}, {"id": "2", "src": "src-b", "t": "y"}]
    store.ingest(str(write_jsonl(rows)), source_field="src", key_field="id")
    v = store.commit("m")
    assert v.content["per_source"] == {"src-a": [1, 1.0], "src-b": [1, 1.0]}
    with pytest.raises(rt.IngestError, match=r"bad.jsonl:1: .*'nope'.*not registered"):
        store.ingest(str(write_jsonl([{"id": "3", "src": "nope", "t": "z"}], "bad.jsonl")), source_field="src", key_field="id")


def test_reingest_same_is_noop_new_content_supersedes(store, write_jsonl):
    ingest_rows(store, write_jsonl(ROWS))
    v1 = store.commit("m", tag="v1")
    changed = [dict(r) for r in ROWS[:5]]
    changed[0]["response"] = "new answer"
    rep = ingest_rows(store, write_jsonl(changed, "b.jsonl"))
    assert (rep.unchanged, rep.superseded, rep.new) == (4, 1, 0)
    v2 = store.commit("m2", tag="v2")
    d = v2.provenance_set() - v1.provenance_set()
    old, new = expected_row_id("src-a", ROWS[0]), expected_row_id("src-a", changed[0])
    assert d.rows_removed.to_pylist() == [old] and d.rows_added.to_pylist() == [new]
    t = store.trace(old)
    assert t["drops"][0]["reason_code"] == "superseded"
    assert t["lineage"][0] == {**t["lineage"][0], "parent": old, "child": new, "kind": "modified"}
    # re-ingesting the original supersedes row 0 back: the row set is v1's again
    ingest_rows(store, write_jsonl(ROWS, "c.jsonl"))
    assert store.commit("m3").content["merkle_root"] == v1.content["merkle_root"]
    # and re-ingesting it once more is a no-op: same content digests as the version before
    again = ingest_rows(store, write_jsonl(ROWS, "d.jsonl"))
    assert again.unchanged == 50
    assert store.commit("m4").content_id == store.version("HEAD~1").content_id


def test_replace_drops_missing_keys_and_needs_yes(store, write_jsonl):
    ingest_rows(store, write_jsonl(ROWS))
    store.commit("m")
    with pytest.raises(rt.IngestError, match=r"--replace would drop .*src-a: 10 of 50 rows .*--yes"):
        ingest_rows(store, write_jsonl(ROWS[:40], "b.jsonl"), replace=True)
    assert store.status()["clean"]  # the refused ingest wrote nothing
    rep = ingest_rows(store, write_jsonl(ROWS[:40], "b.jsonl"), replace=True, yes=True)
    assert rep.refresh_dropped == 10
    v = store.commit("m2")
    assert v.row_count == 40
    gone = expected_row_id("src-a", ROWS[45])
    assert store.trace(gone)["drops"][0]["reason_code"] == "source-refresh"


BAD_CASES = [
    ('{"id": "a", "prompt": "p", "response": "r"}\n{"id": "b", "prompt": "p"\n', 2, "malformed JSON"),
    ('{"id": "a", "prompt": "p", "response": "r"}\n{"prompt": "p", "response": "r"}\n', 2, "key field 'id' is missing"),
    ('{"id": "a", "prompt": "p"}\n', 1, "content field 'response' is missing"),
    ('{"id": null, "prompt": "p", "response": "r"}\n', 1, "null or empty"),
    ('{"id": "", "prompt": "p", "response": "r"}\n', 1, "null or empty"),
    ('{"id": "a", "prompt": "p", "response": "r"}\n{"id": "a", "prompt": "q", "response": "r"}\n', 2, "duplicate key 'a'"),
    ('{"id": "a", "prompt": 9007199254740993, "response": "r"}\n', 1, "2\\^53"),
    ('[1, 2]\n', 1, "JSON object"),
]


@pytest.fixture
def store_on_each_backend(any_store):
    """As ``store``, on a local directory and on S3 (moto on loopback) in turn."""
    any_store.sources.add("src-a", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    return any_store


@pytest.mark.parametrize("text,line,message", BAD_CASES)
def test_bad_input_names_file_line_and_writes_nothing(store_on_each_backend, tmp_path, text, line, message):
    store = store_on_each_backend
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    before = store.backend.journal_bytes()  # the journal as stored (on S3: the remote entries, not the mirror)
    objects = set(store.backend.iter_objects())
    with pytest.raises(rt.IngestError, match=rf"{path}:{line}: .*{message}") as err:
        ingest_rows(store, str(path))
    assert err.value.line == line and err.value.file == str(path)
    assert store.backend.journal_bytes() == before
    assert set(store.backend.iter_objects()) == objects
    assert not list((store.path / "tmp").glob("ing-*"))


def test_quarantine_records_bad_rows_and_continues(store, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(line.strip() for t, _, _ in BAD_CASES[:5] for line in t.strip().split("\n")) + "\n", encoding="utf-8")
    rep = ingest_rows(store, str(path), on_error="quarantine")
    assert rep.rows >= 1 and rep.quarantined >= 4
    entry = store.state.staged_for("main").entries[-1]
    q = pq.read_table(store.backend.object_path(entry["quarantine"])).to_pylist()
    assert len(q) == rep.quarantined and all(r["reason"] for r in q)
    assert {r["origin_line"] for r in q} >= {3, 5}
    view = store.sql("SELECT ingest_id, origin_line, reason FROM quarantine ORDER BY origin_line").to_pylist()
    assert [r["origin_line"] for r in view] == sorted(r["origin_line"] for r in q)
    assert {r["ingest_id"] for r in view} == {rep.ingest_id}


def test_value_mapping_from_typed_tables(store):
    table = pa.table(
        {
            "id": [1, 2],
            "when": pa.array([dt.datetime(2026, 1, 2, 3, 4, 5, 600000), dt.datetime(2026, 1, 2)], pa.timestamp("us")),
            "day": [dt.date(2026, 5, 1), dt.date(2026, 5, 2)],
            "x": [1.5, 2.0],
        }
    )
    store.ingest(table, source="src-a", key_field="id")
    store.commit("m")
    got = {r["source_key"]: r for r in store.rows().to_pylist()}
    expected = hashing.content_sha256({"when": "2026-01-02T03:04:05.6Z", "day": "2026-05-01", "x": 1.5})
    assert got["1"]["content_sha256"] == expected
    nan = pa.table({"id": [3], "x": [float("nan")]})
    with pytest.raises(rt.IngestError, match="NaN"):
        store.ingest(nan, source="src-a", key_field="id")
    blob = pa.table({"id": [4], "b": [b"\x00\x01"]})
    with pytest.raises(rt.IngestError, match="binary"):
        store.ingest(blob, source="src-a", key_field="id")
    store.ingest(blob, source="src-a", key_field="id", binary_fields=["b"])


def test_ingest_needs_exactly_one_source_option(store, write_jsonl):
    path = str(write_jsonl(ROWS))
    with pytest.raises(rt.IngestError, match="exactly one"):
        store.ingest(path, key_field="id")
    with pytest.raises(rt.SourceNotFoundError, match="rowtrail source list"):
        store.ingest(path, source="missing", key_field="id")
    with pytest.raises(rt.IngestError, match="no such file"):
        store.ingest("/nonexistent.jsonl", source="src-a")


def test_sources_license_validation_and_refresh(store, tmp_path):
    with pytest.raises(rt.LicenseError, match="did you mean"):
        store.sources.add("x1", kind="crawl", license="CC-BY-4")
    rec = store.sources.add("x2", kind="crawl", license="mit OR apache-2.0")
    assert rec.license == "MIT OR Apache-2.0"
    assert store.sources.add("x3", kind="other", license="LicenseRef-partner-terms").license == "LicenseRef-partner-terms"
    with pytest.raises(rt.SourceError, match="unknown source kind"):
        store.sources.add("x4", kind="crawler")
    with pytest.raises(rt.SourceExistsError):
        store.sources.add("x2", kind="crawl")
    ref = store.sources.refresh("x2", refreshed_at="2026-11-01T00:00:00Z")
    assert ref.snapshot == "x2@2" and ref.refreshed_at == "2026-11-01T00:00:00Z" and ref.license == "MIT OR Apache-2.0"
    lst = tmp_path / "sources.csv"
    with open(lst, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source_id", "kind", "license", "legal_basis", "collected"])
        for i in range(500):
            w.writerow([f"bulk-{i:03d}", "url-list", "CC0-1.0", "public-domain", "2025-01-01/2025-12-31"])
    seq = store.state.seq
    assert len(store.sources.import_(lst)) == 500
    assert store.state.seq == seq + 1  # one journal entry
    bad = tmp_path / "bad.csv"
    bad.write_text("source_id,kind,license\nok-1,crawl,MIT\nok-2,crawl,NotALicense\n")
    with pytest.raises(rt.IngestError, match=r"bad.csv:3: .*NotALicense"):
        store.sources.import_(bad)
    assert "ok-1" not in store.sources


def test_attribute_type_change_is_an_error_with_line(store, write_jsonl):
    rows = [{"id": str(i), "t": "x", "score": 0.5} for i in range(3)] + [{"id": "9", "t": "y", "score": "high"}]
    with pytest.raises(rt.IngestError, match=r":4: .*attribute 'score'"):
        store.ingest(str(write_jsonl(rows)), source="src-a", key_field="id", content_fields=["t"], attributes=["score"])


def test_segment_ids_match_rows(store, write_jsonl):
    ingest_rows(store, write_jsonl(ROWS))
    seg = store.state.segments[0]
    ids = store.segment_column(seg.seg, "row_id")
    assert sorted(hashing.ids_hex(np.sort(ids))) == sorted(expected_row_id("src-a", r) for r in ROWS)


def test_nanoseconds_maps_and_bad_arrow_rows(store):
    t = pa.table(
        {
            "id": [1, 2],
            "ts": pa.array([1_000_000_001, 1_000_000_002], pa.timestamp("ns")),
            "tm": pa.array([1_000_000_001, 1_000_000_002], pa.time64("ns")),
            "m": pa.array([[("a", 1)], [("b", 2)]], pa.map_(pa.string(), pa.int64())),
        }
    )
    store.ingest(t, source="src-a", key_field="id")
    store.commit("m")
    got = {r["source_key"]: r["content_sha256"] for r in store.rows().to_pylist()}
    assert got["1"] == hashing.content_sha256({"ts": "1970-01-01T00:00:01.000000001Z", "tm": "00:00:01.000000001", "m": {"a": 1}})
    assert got["1"] != got["2"]
    dup = pa.table({"id": [3, 4], "m": pa.array([[("k", 1), ("k", 2)], [("k", 3)]], pa.map_(pa.string(), pa.int64()))})
    with pytest.raises(rt.IngestError, match=r":0: .*repeats a key"):
        store.ingest(dup, source="src-a", key_field="id")
    rep = store.ingest(dup, source="src-a", key_field="id", on_error="quarantine")
    assert (rep.rows, rep.quarantined) == (1, 1)
    with pytest.raises(rt.IngestError, match="twice"):
        store.ingest(dup, source="src-a", key_field="id", hash_fields=["m", "m"])


def test_large_tables_are_split_across_workers_and_recorded(store):
    n = 210_000
    t = pa.table({"id": [f"r{i}" for i in range(n)], "text": [f"t{i}" for i in range(n)]})
    rep = store.ingest(t, source="src-a", key_field="id", workers=2)
    assert rep.rows == n and rep.files == [{"name": "<pyarrow.Table>", "sha256": None, "rows": n}]
    assert len(store.state.staged_for("main").entries[-1]["segments"]) >= 2
    v = store.commit("m")
    assert v.row_count == n
    last = store.rows(limit=None).to_pylist()
    assert {r["origin_line"] for r in last if r["source_key"] == f"r{n - 1}"} == {n - 1}


def test_bom_and_json_array_files(store, tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"id": "1", "t": "x"}\n')
    assert store.ingest(str(bom), source="src-a", key_field="id").rows == 1
    csvf = tmp_path / "bom.csv"
    csvf.write_bytes(b"\xef\xbb\xbfid,t\n2,y\n")
    assert store.ingest(str(csvf), source="src-a", key_field="id").rows == 1
    arr = tmp_path / "array.json"
    arr.write_text('[{"id": "3", "t": "z"}]')
    with pytest.raises(rt.IngestError, match="JSON array, not JSON Lines"):
        store.ingest(str(arr), source="src-a", key_field="id")


def test_the_fast_path_writes_what_the_row_loop_writes_for_every_scalar(store, write_jsonl, monkeypatch):
    """Batches whose content holds booleans, nulls, integers and floats take the column-wise path when
    orjson writes them as JCS does (integral floats as integers); the stored content, content hashes
    and row ids equal the row loop's, and a batch holding a float the fast path cannot write exactly
    (0.1, 1e-7, an integral float past 2^53) goes through the row loop, with the same result."""
    from rowtrail.ops import ingest as ingest_mod

    fast = ingest_mod._fast_batch
    took: list[bool] = []

    def spy(spec, batch):
        out = fast(spec, batch)
        took.append(out is not None)
        return out

    def stored(rows, name, path_taken):
        monkeypatch.setattr(ingest_mod, "_fast_batch", path_taken)
        s = rt.init(store.path.parent / name)
        s.sources.add("src-a", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
        s.ingest(write_jsonl(rows, f"{name}.jsonl"), source="src-a", key_field="id", content_fields=["a", "b"])
        s.commit("m")
        t = s.rows().sort_by("source_key")
        return [(r["source_key"], r["row_id"], r["content_sha256"], r["a"], r["b"]) for r in t.to_pylist()]

    exact = ["x", "é\u2028\x01\"\\/", True, False, None, 0, -7, 2**53 - 1, -(2**53 - 1), 4.0, -0.0, 2.0**52 + 1]
    inexact = [0.1, 1e-7, 1.5e16, 1e21, 123456.789]
    for name, values, fast_taken in (("exact", exact, True), ("inexact", exact + inexact, False)):
        rows = [{"id": i, "a": values[i % len(values)], "b": values[(3 * i + 1) % len(values)]} for i in range(4 * len(values))]
        took.clear()
        by_fast = stored(rows, f"{name}-fast", spy)
        assert took == [fast_taken]
        assert by_fast == stored(rows, f"{name}-rows", lambda spec, batch: None)
        texts = {r[3] for r in by_fast}  # a column of mixed JSON types reads back as each value's JSON text
        assert texts >= {"4", "0", "-7", str(2**53 - 1), "true", '"x"'} and not texts & {"4.0", "-0.0", "-0"}
