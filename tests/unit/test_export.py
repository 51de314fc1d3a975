"""Materialize: the row stream behind exports (``iter_batches``) and the corpus formats (parquet,
jsonl, hf), read back with their own readers and checked against the version."""

from __future__ import annotations

import gzip
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

import rowtrail as rt
from rowtrail import exports, hashing, steps
from rowtrail.exports import base
from rowtrail.query.rows import is_json_text, iter_batches, rows, select

ALPHA = [
    {
        "id": f"a{i}",
        "prompt": f"prompt {i} «é»",
        "response": f"response {i}\n",
        "meta": {"day": "2026-05-01", "n": i},  # a date-looking string must stay a string
        "teacher": "kimi" if i % 2 else "opus",
    }
    for i in range(60)
]
BETA = pa.table({"id": list(range(25)), "text": [f"beta text {i}" for i in range(25)]})
ALPHA_FIELDS = ["meta", "prompt", "response"]
PROVENANCE = ["row_id", "source_id", "source_snapshot", "source_key", "content_sha256", "ingest_id", "ingested_at", "origin_file", "origin_line"]


@pytest.fixture
def store(tmp_store, write_jsonl):
    tmp_store.sources.add("alpha", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    tmp_store.sources.add("beta", kind="crawl", license="MIT", legal_basis="tdm-exception")
    tmp_store.ingest(str(write_jsonl(ALPHA)), source="alpha", key_field="id", content_fields=["prompt", "response", "meta"], attributes={"teacher": "teacher"})
    tmp_store.ingest(BETA, source="beta", key_field="id")
    tmp_store.commit("first", tag="v1", sign=False)
    return tmp_store


def version_ids(store, ref="v1"):
    return sorted(hashing.ids_hex(store.version_rows(store.version(ref).id)["id"]))


def expected_content(store, ref="v1"):
    """row_id → content object, from what was ingested (recomputed ids, not read from the store)."""
    out = {}
    for r in ALPHA:
        content = {f: r[f] for f in ALPHA_FIELDS}
        out[hashing.row_id("alpha", r["id"], hashing.content_sha256(content))] = content
    for r in BETA.to_pylist():
        content = {"text": r["text"]}
        out[hashing.row_id("beta", str(r["id"]), hashing.content_sha256(content))] = content
    assert sorted(out) == version_ids(store, ref)
    return out


# -- the stream --------------------------------------------------------------------------------------


def test_iter_batches_streams_rows_in_id_order_through_a_spill(store, tmp_path):
    whole = rows(store, "v1")
    spill = tmp_path / "spill"
    spill.mkdir()
    parts = list(iter_batches(store, "v1", batch_rows=7, spill_dir=spill))
    assert [p.num_rows for p in parts] == [7] * 12 + [1]
    assert len({p.schema for p in parts}) == 1
    joined = pa.concat_tables(parts)
    assert joined.equals(whole)
    assert joined.column("row_id").to_pylist() == version_ids(store)
    assert list(spill.iterdir()) == []  # the spill is gone once the stream ends
    assert whole.column_names == ["meta", "prompt", "response", "text", *PROVENANCE, "teacher", "weight"]
    got = {r["row_id"]: r for r in whole.to_pylist()}
    for rid, content in expected_content(store).items():
        assert {k: got[rid][k] for k in content} == content
    assert whole.schema.field("meta").type == pa.struct([("day", pa.string()), ("n", pa.int64())])


def test_iter_batches_closed_early_removes_its_spill(store, tmp_path):
    spill = tmp_path / "spill"
    spill.mkdir()
    stream = iter_batches(store, "v1", batch_rows=10, spill_dir=spill)
    next(stream)
    assert len(list(spill.iterdir())) == 1
    stream.close()
    assert list(spill.iterdir()) == []


def test_fields_without_a_common_type_become_json_text(tmp_store, write_jsonl):
    tmp_store.sources.add("s", kind="other")
    # 'x' holds numbers and strings in one piece, 'y' is an integer in one segment and a string in
    # another (so the conflict appears across pieces), 'z' mixes integers and floats.
    rows_a = [{"id": i, "x": "high" if i == 5 else i, "y": i, "z": i if i % 2 else i + 0.5} for i in range(20)]
    rows_b = [{"id": 100 + i, "y": f"s{i}", "z": 1} for i in range(10)]
    tmp_store.ingest(str(write_jsonl(rows_a, "a.jsonl")), source="s", key_field="id")
    tmp_store.ingest(str(write_jsonl(rows_b, "b.jsonl")), source="s", key_field="id")
    tmp_store.commit("m", sign=False)
    parts = list(iter_batches(tmp_store, "HEAD", batch_rows=4))
    assert len({p.schema for p in parts}) == 1
    t = pa.concat_tables(parts)
    assert is_json_text(t.schema.field("x")) and is_json_text(t.schema.field("y"))
    assert t.schema.field("z").type == pa.float64() and not is_json_text(t.schema.field("z"))
    by_key = {r["source_key"]: r for r in t.to_pylist()}
    for r in rows_a:
        got = by_key[str(r["id"])]
        assert json.loads(got["x"]) == r["x"] and json.loads(got["y"]) == r["y"] and got["z"] == r["z"]
    for r in rows_b:
        got = by_key[str(r["id"])]
        assert got["x"] is None and json.loads(got["y"]) == r["y"] and got["z"] == 1


def test_rows_of_a_source_and_limit(store):
    t = rows(store, "v1", source="beta")
    assert set(t.column("source_id").to_pylist()) == {"beta"} and t.num_rows == 25
    assert t.column_names == ["text", *PROVENANCE, "weight"]  # no alpha fields, no teacher
    assert rows(store, "v1", limit=3).column("row_id").to_pylist() == version_ids(store)[:3]
    sel = select(store, "v1", source="alpha")
    assert sel.num_rows == 60 and 64 <= sel.batch_rows_for() <= 65536
    with pytest.raises(rt.SourceNotFoundError):
        rows(store, "v1", source="nope")


# -- parquet -----------------------------------------------------------------------------------------


def test_parquet_shards_with_sidecar(store, tmp_path):
    out = tmp_path / "v1"
    res = exports.export(store, "parquet", "v1", out, batch_rows=9, shard_rows=20)
    v = store.version("v1")
    side = json.loads((out / "_rowtrail.json").read_text())
    assert {k: side[k] for k in ("version_id", "tag", "content_id", "merkle_root", "row_count", "weight_total")} == {
        "version_id": v.id,
        "tag": "v1",
        "content_id": v.content_id,
        "merkle_root": v.content["merkle_root"],
        "row_count": 85,
        "weight_total": v.content["weight_total"],
    }
    assert side["rows"] == res.rows == 85 and side["format"] == "rowtrail.corpus-export/1"
    shards = side["files"]
    assert [s["path"] for s in shards] == [f"part-{i:05d}.parquet" for i in range(5)]
    assert [s["rows"] for s in shards] == [20, 20, 20, 20, 5]
    for s in shards:
        assert (s["bytes"], s["sha256"]) == base.file_digest(out / s["path"])
    assert sorted(p.name for p in out.iterdir()) == ["_rowtrail.json", *(s["path"] for s in shards)]
    cols = {c["name"]: c for c in side["columns"]}
    assert [c for c in cols if cols[c]["role"] == "content"] == ["meta", "prompt", "response", "text"]
    t = pa.concat_tables([pq.read_table(out / s["path"]) for s in shards])
    assert t.column("row_id").to_pylist() == version_ids(store)  # id order across shards
    assert t.schema.field("ingested_at").type == pa.timestamp("us", tz="UTC")
    assert t.schema.field("content_sha256").type == pa.string()
    got = {r["row_id"]: r for r in t.to_pylist()}
    for rid, content in expected_content(store).items():
        assert {k: got[rid][k] for k in content} == content
        assert got[rid]["weight"] == 1.0
    assert json.loads(pq.read_schema(out / "part-00000.parquet").metadata[b"rowtrail"])["version_id"] == v.id
    # a second export of the version gives the same bytes
    again = exports.export(store, "parquet", "v1", tmp_path / "again", batch_rows=9, shard_rows=20)
    assert [f["sha256"] for f in again.files] == [f["sha256"] for f in res.files]


def test_parquet_single_file_without_provenance(store, tmp_path):
    out = tmp_path / "v1.parquet"
    res = exports.export(store, "parquet", "v1", out, provenance=False)
    assert res.files[0]["path"] == "v1.parquet" and res.files[0]["sha256"] == base.file_digest(out)[1]
    t = pq.read_table(out)
    assert t.column_names == ["meta", "prompt", "response", "text", "row_id", "weight"]
    assert t.column("row_id").to_pylist() == version_ids(store)
    assert json.loads(t.schema.metadata[b"rowtrail"])["merkle_root"] == store.version("v1").content["merkle_root"]


def test_source_filter(store, tmp_path):
    res = exports.export(store, "parquet", "v1", tmp_path / "b.parquet", source="beta")
    t = pq.read_table(tmp_path / "b.parquet")
    assert res.rows == t.num_rows == 25 and set(t.column("source_id").to_pylist()) == {"beta"}
    with pytest.raises(rt.SourceNotFoundError, match="rowtrail source list"):
        exports.export(store, "parquet", "v1", tmp_path / "x.parquet", source="nope")


# -- jsonl -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["v1.jsonl", "v1.jsonl.gz", "v1.jsonl.zst"])
def test_jsonl(store, tmp_path, name):
    out = tmp_path / name
    res = exports.export(store, "jsonl", "v1", out, batch_rows=16)
    raw = out.read_bytes()
    assert res.files == [{"path": name, "rows": 85, "bytes": len(raw), "sha256": base.file_digest(out)[1]}]
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    elif name.endswith(".zst"):
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    lines = [json.loads(line) for line in raw.decode().splitlines()]
    assert [r["row_id"] for r in lines] == version_ids(store)
    want = expected_content(store)
    stamps = {r["row_id"]: r["ingested_at"] for r in rows(store, "v1").to_pylist()}
    for r in lines:
        content = {k: r[k] for k in want[r["row_id"]]}
        assert content == want[r["row_id"]]
        # the exported values are the hashed ones: the row's content hash recomputes
        assert hashing.content_sha256(content) == r["content_sha256"]
        assert r["ingested_at"] == hashing.format_timestamp(stamps[r["row_id"]]) and r["ingested_at"].endswith("Z")
        assert r["source_id"] in ("alpha", "beta") and r["weight"] == 1.0
    assert lines[0].keys() >= {"teacher", "origin_line", "source_snapshot"}


def test_jsonl_writes_json_text_fields_as_values(tmp_store, write_jsonl, tmp_path):
    tmp_store.sources.add("s", kind="other")
    tmp_store.ingest(str(write_jsonl([{"id": i, "label": ["x", i] if i % 3 else "plain"} for i in range(9)])), source="s", key_field="id")
    tmp_store.commit("m", sign=False)
    exports.export(tmp_store, "jsonl", "HEAD", tmp_path / "o.jsonl")
    got = {r["source_key"]: r["label"] for r in map(json.loads, (tmp_path / "o.jsonl").read_text().splitlines())}
    assert got == {str(i): (["x", i] if i % 3 else "plain") for i in range(9)}


# -- hf ----------------------------------------------------------------------------------------------


def test_hf_dataset(store, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "hf"
    res = exports.export(store, "hf", "v1", out, batch_rows=30)
    ds = datasets.load_from_disk(str(out))
    assert ds.num_rows == res.rows == 85
    assert ds["row_id"] == version_ids(store)
    assert ds.column_names == ["meta", "prompt", "response", "text", *PROVENANCE, "teacher", "weight"]
    side = json.loads((out / "_rowtrail.json").read_text())
    assert side["version_id"] == store.version("v1").id and side["export_format"] == "hf"
    want = expected_content(store)
    for r in ds:
        assert {k: r[k] for k in want[r["row_id"]]} == want[r["row_id"]]


def test_hf_without_datasets_says_how_to_install(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets → ImportError
    with pytest.raises(exports.ExportError, match=r"pip install 'rowtrail\[hf\]'"):
        exports.export(store, "hf", "v1", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    assert not any(p.name.startswith(".hf") for p in tmp_path.iterdir())  # no temporary output left


# -- weights -----------------------------------------------------------------------------------------


def test_weights_column_and_apply(store, tmp_path):
    store.apply([steps.upsample(source="beta", factor=3)])
    v2 = store.commit("upsample beta", tag="v2", sign=False)
    col = pq.read_table(exports.export(store, "parquet", "v2", tmp_path / "c.parquet").path)
    w = dict(zip(col.column("row_id").to_pylist(), col.column("weight").to_pylist()))
    assert sum(w.values()) == v2.content["weight_total"] == 60 + 3 * 25
    applied = pq.read_table(exports.export(store, "parquet", "v2", tmp_path / "a.parquet", weights="apply", batch_rows=8).path)
    assert "weight" not in applied.column_names
    ids = applied.column("row_id").to_pylist()
    assert len(ids) == 135 and sorted(set(ids)) == sorted(w) and ids == sorted(ids)
    assert {i: ids.count(i) for i in set(ids)} == {i: int(x) for i, x in w.items()}
    store.apply([steps.reweight(source="alpha", factor=0.5)])
    store.commit("halve alpha", tag="v3", sign=False)
    with pytest.raises(exports.ExportError, match=r"60 row\(s\) with a fractional weight.*--weights column"):
        exports.export(store, "jsonl", "v3", tmp_path / "f.jsonl", weights="apply")
    assert not (tmp_path / "f.jsonl").exists()


# -- output handling and the registry ----------------------------------------------------------------


def test_refuses_to_overwrite_unless_asked(store, tmp_path):
    out = tmp_path / "v1"
    exports.export(store, "parquet", "v1", out, shard_rows=50)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(exports.ExportExistsError, match="--force"):
        exports.export(store, "parquet", "v1", out)
    assert sorted(p.name for p in out.iterdir()) == before
    res = exports.export(store, "parquet", "v1", out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["_rowtrail.json", "part-00000.parquet"] and res.rows == 85
    (tmp_path / "f.jsonl").write_text("old\n")
    exports.export(store, "jsonl", "v1", tmp_path / "f.jsonl", overwrite=True)
    assert len((tmp_path / "f.jsonl").read_text().splitlines()) == 85
    assert not [p for p in tmp_path.iterdir() if ".rowtrail-" in p.name]


def test_a_failed_export_leaves_nothing(store, tmp_path, monkeypatch):
    from rowtrail.exports import corpus

    calls = []

    def fail_on_third(table):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return table

    monkeypatch.setattr(corpus, "_rfc3339", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        exports.export(store, "jsonl", "v1", tmp_path / "out" / "v1.jsonl", batch_rows=10)
    assert list((tmp_path / "out").iterdir()) == []


def test_unknown_format_and_options(store, tmp_path):
    with pytest.raises(exports.ExportError, match=r"unknown export format 'csv'; known formats: .*hf .*jsonl .*parquet"):
        exports.export(store, "csv", "v1", tmp_path / "x")
    with pytest.raises(exports.ExportError, match=r"no option 'shard_rows'.*batch_rows"):
        exports.export(store, "jsonl", "v1", tmp_path / "x.jsonl", shard_rows=3)
    with pytest.raises(exports.ExportError, match="'column'.*'apply'"):
        exports.export(store, "parquet", "v1", tmp_path / "x", weights="sample")
    with pytest.raises(exports.ExportError, match="give the output path"):
        exports.export(store, "parquet", "v1", None)
    with pytest.raises(rt.RefError, match="rowtrail log"):
        exports.export(store, "parquet", "v9", tmp_path / "x")
    assert list(tmp_path.glob("x*")) == []


def test_registry(monkeypatch, tmp_path):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    @exports.register
    class Card(exports.Exporter):
        name = "card"
        suffixes = (".card.md",)
        description = "a test document"
        writes_stdout = True

    assert "card" in exports.formats() and isinstance(exports.get("CARD"), Card)
    assert exports.for_path("x/v1.card.md") is exports.get("card")
    assert exports.for_path("v1.jsonl.zst") is exports.get("jsonl") and exports.for_path("v1.parquet") is exports.get("parquet")
    assert exports.for_path("v1.txt") is None
    with pytest.raises(ValueError, match="already registered"):

        @exports.register
        class Other(exports.Exporter):
            name = "card"


def test_empty_version_exports_an_empty_table(tmp_store, tmp_path):
    tmp_store.commit("nothing", sign=False, allow_empty=True)
    res = exports.export(tmp_store, "parquet", "HEAD", tmp_path / "e")
    t = pq.read_table(tmp_path / "e")
    assert res.rows == t.num_rows == 0 and {"row_id", "source_id", "weight"} <= set(t.column_names)
    assert json.loads((tmp_path / "e" / "_rowtrail.json").read_text())["files"][0]["rows"] == 0
    assert np.isclose(json.loads((tmp_path / "e" / "_rowtrail.json").read_text())["selection"]["weight_total"], 0)
