"""Lineage exports — ``croissant``, ``prov``, ``openlineage`` — read back with the format's own library
(mlcroissant, prov, openlineage-python) and checked against the store they describe."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import uuid

import pyarrow as pa
import pytest

from rowtrail import exports, hashing, steps
from rowtrail.errors import ExportError, ExportExistsError
from rowtrail.exports import croissant, openlineage, prov  # noqa: F401  (registers the formats)
from rowtrail.exports.base import file_digest

ALPHA = [
    {"id": f"a{i}", "prompt": f"prompt {i}", "response": "r" * (i % 12), "meta": {"day": "2026-05-01", "n": i}, "teacher": "kimi" if i % 2 else "opus"}
    for i in range(30)
]
BETA = pa.table(
    {
        "id": list(range(8)),
        "text": [f"beta text {i}" for i in range(8)],
        "annotator": [f"ann{i % 3}" for i in range(8)],
        "guideline_version": ["g1"] * 8,
        "platform": ["argilla"] * 8,
    }
)


@pytest.fixture
def store(tmp_store, write_jsonl):
    s = tmp_store
    s.sources.add("alpha", kind="teacher-model", uri="https://example.com/alpha", license="CC-BY-4.0", legal_basis="own model output", generator="kimi-k2", collected=["2025-01-01", "2025-03-31"])
    s.sources.add("beta", kind="annotation-batch", uri="s3://bucket/beta", license="MIT", legal_basis="consent", collected="2025-05-01/2025-06-30")
    s.ingest(str(write_jsonl(ALPHA)), source="alpha", key_field="id", content_fields=["prompt", "response", "meta"], attributes={"teacher": "teacher"})
    s.commit("first", tag="v1")
    s.ingest(BETA, source="beta", key_field="id", content_fields=["text"], attributes=["annotator", "guideline_version", "platform"])
    s.apply([steps.filter("response IS NULL OR length(response) > 2", reason="too-short")])
    s.commit("second", tag="v2")
    return s


def version_ids(store, ref="v2"):
    return sorted(hashing.ids_hex(store.version_rows(store.version(ref).id)["id"]))


# -- croissant ---------------------------------------------------------------------------------------


def load_croissant(path):
    import mlcroissant as mlc

    ds = mlc.Dataset(jsonld=str(path / "croissant.json"))
    assert not ds.metadata.ctx.issues.errors, ds.metadata.ctx.issues.report()
    return ds


def test_croissant_loads_in_mlcroissant_and_yields_the_versions_rows(store, tmp_path):
    out = tmp_path / "v2-croissant"
    res = exports.export(store, "croissant", "v2", out)
    ds = load_croissant(out)
    records = list(ds.records(record_set="rows"))
    assert sorted(r["rows/row_id"].decode() for r in records) == version_ids(store)
    assert res.rows == len(records) == store.version("v2").row_count
    by_id = {r["rows/row_id"].decode(): r for r in records}
    got = {r["id"]: r for r in ALPHA}
    alpha = [r for r in records if r["rows/source_id"] == b"alpha"]
    assert alpha and all(r["rows/weight"] == 1.0 for r in by_id.values())
    for r in alpha:  # content, including a struct read through subFields
        src = got[r["rows/source_key"].decode()]
        assert r["rows/prompt"].decode() == src["prompt"]
        assert r["rows/meta"]["rows/meta/n"] == src["meta"]["n"]
        assert r["rows/teacher"].decode() == src["teacher"]

    doc = json.loads((out / "croissant.json").read_text())
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    assert doc["version"] == "v2" and doc["identifier"] == store.version("v2").id
    assert doc["license"] == ["CC-BY-4.0", "MIT"]
    for f in doc["distribution"]:  # relative URLs, real digests
        assert (out / f["contentUrl"]).is_file()
        assert f["sha256"] == file_digest(out / f["contentUrl"])[1]
    assert {f["encodingFormat"] for f in doc["distribution"] if f["contentUrl"].endswith(".parquet")} == {"application/x-parquet"}
    assert any("teacher-model" in c and "https://example.com/alpha" in c for c in doc["rai:dataCollection"])
    assert doc["rai:dataCollectionTimeframe"] == ["2025-01-01", "2025-06-30"]
    assert len(doc["rai:dataPreprocessingProtocol"]) == 1 and "length(response) > 2" in doc["rai:dataPreprocessingProtocol"][0]
    assert doc["rai:machineAnnotationTools"] == ["kimi", "kimi-k2", "opus"]
    assert "3 annotator(s)" in doc["rai:dataAnnotationProtocol"] and "g1" in doc["rai:dataAnnotationProtocol"]
    assert doc["rai:dataAnnotationPlatform"] == ["argilla"]
    assert {e["prov:label"] for e in doc["prov:wasDerivedFrom"]} == {"alpha", "beta"}
    assert doc["prov:wasGeneratedBy"]["@id"].endswith(store.version("v2").id)


def test_croissant_without_annotations_omits_annotation_fields_and_reads_shards(store, tmp_path):
    out = tmp_path / "v1"
    exports.export(store, "croissant", "v1", out, shard_rows=7)
    ds = load_croissant(out)
    assert sorted(r["rows/row_id"].decode() for r in ds.records(record_set="rows")) == version_ids(store, "v1")
    doc = json.loads((out / "croissant.json").read_text())
    assert "rai:dataAnnotationProtocol" not in doc and "rai:dataAnnotationPlatform" not in doc
    assert "rai:dataPreprocessingProtocol" not in doc  # v1 had no pipeline
    assert len([f for f in doc["distribution"] if f["@type"] == "cr:FileObject" and f["contentUrl"].endswith(".parquet")]) == 5


def test_croissant_checks_options_and_target(store, tmp_path):
    with pytest.raises(ExportError, match="no option 'bogus'.*cite_as"):
        exports.export(store, "croissant", "v2", tmp_path / "x", bogus=1)
    with pytest.raises(ExportError, match="must be int"):
        exports.export(store, "croissant", "v2", tmp_path / "x", shard_rows="ten")
    assert not (tmp_path / "x").exists()
    (tmp_path / "taken").mkdir()
    with pytest.raises(ExportExistsError, match="--force"):
        exports.export(store, "croissant", "v2", tmp_path / "taken")
    exports.export(store, "croissant", "v2", tmp_path / "taken", overwrite=True, cite_as="@misc{x}")
    assert json.loads((tmp_path / "taken" / "croissant.json").read_text())["citeAs"] == "@misc{x}"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary leftovers


# -- prov --------------------------------------------------------------------------------------------


def test_prov_json_reads_back_with_the_prov_package(store, tmp_path):
    from prov.model import PROV_ATTR_ACTIVITY, ProvActivity, ProvAgent, ProvDocument, ProvEntity

    path = tmp_path / "v2.prov.json"
    assert exports.for_path(path).name == "prov"
    exports.export(store, "prov", "v2", path)
    doc = ProvDocument.deserialize(str(path), format="json")
    v1, v2 = store.version("v1").id, store.version("v2").id
    entities = {str(r.identifier) for r in doc.get_records(ProvEntity)}
    activities = {str(r.identifier) for r in doc.get_records(ProvActivity)}
    agents = {str(r.identifier) for r in doc.get_records(ProvAgent)}
    assert {f"rowtrail:version/{v1}", f"rowtrail:version/{v2}", f"rowtrail:rows/{v2}", f"rowtrail:inputs/{v2}", "rowtrail:source/alpha@1", "rowtrail:source/beta@1"} <= entities
    assert any(e.startswith("rowtrail:segment/") for e in entities)
    ingests = {e["ingest_id"] for e in store.state.entries if e["kind"] == "ingest"}
    assert {f"rowtrail:ingest/{i}" for i in ingests} | {f"rowtrail:commit/{v1}", f"rowtrail:commit/{v2}"} <= activities
    step = next(r for r in doc.get_records(ProvActivity) if "/step/" in str(r.identifier))
    attrs = {str(k): v for k, v in step.attributes}
    assert "length(response) > 2" in attrs["rt:params"]
    assert {"rowtrail:agent/model/kimi-k2", "rowtrail:agent/model/kimi", "rowtrail:agent/model/opus", "rowtrail:agent/annotator/ann0"} <= agents
    assert any(a.startswith("rowtrail:agent/author/") for a in agents)
    assert any(a.startswith("rowtrail:agent/key/") for a in agents)  # the fixture signs
    kinds = {r.get_type().localpart for r in doc.get_records()}
    assert {"Usage", "Generation", "Derivation", "Association", "Attribution", "Delegation"} <= kinds
    generated = {(str(r.get_attribute("prov:entity").pop()), str(r.get_attribute(PROV_ATTR_ACTIVITY).pop())) for r in doc.get_records() if r.get_type().localpart == "Generation"}
    assert (f"rowtrail:version/{v2}", f"rowtrail:commit/{v2}") in generated
    assert (f"rowtrail:rows/{v2}", str(step.identifier)) in generated  # the last step made the version's rows


def test_prov_writes_stdout_and_the_same_bytes_again(store, tmp_path, capsys):
    capsys.readouterr()
    res = exports.export(store, "prov", "v2", None)
    first = capsys.readouterr().out
    assert res.path is None and json.loads(first)["prefix"]["rowtrail"] == "urn:rowtrail:"
    exports.export(store, "prov", "v2", None)
    assert capsys.readouterr().out == first
    with pytest.raises(ExportError, match="no option 'rows'"):
        exports.export(store, "prov", "v2", tmp_path / "p.json", rows=True)


# -- openlineage -------------------------------------------------------------------------------------

REQUIRED = ("eventTime", "eventType", "producer", "schemaURL", "run", "job", "inputs", "outputs")


def check_event(e: dict) -> None:
    assert all(k in e for k in REQUIRED), sorted(e)
    assert e["eventType"] == "COMPLETE"
    uuid.UUID(e["run"]["runId"])
    assert e["job"]["namespace"] and e["job"]["name"]
    for facets in [e["run"]["facets"], e["job"]["facets"]] + [d.get("facets", {}) for d in e["inputs"] + e["outputs"]]:
        for f in facets.values():
            assert f["_producer"] and f["_schemaURL"].startswith("https://")


def test_openlineage_events_cover_ingests_steps_and_commits(store, tmp_path):
    from openlineage.client.event_v2 import RunEvent  # noqa: F401  (the library is there)

    path = tmp_path / "v2.openlineage.jsonl"
    assert exports.for_path(path).name == "openlineage"
    res = exports.export(store, "openlineage", "v2", path, namespace="rowtrail://test")
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert res.details["events"] == len(events) == 5
    for e in events:
        check_event(e)
    assert [e["job"]["facets"]["jobType"]["jobType"] for e in events] == ["INGEST", "COMMIT", "INGEST", "PIPELINE_STEP", "COMMIT"]
    v2 = store.version("v2")
    last = events[-1]["outputs"][0]
    assert last["name"] == f"main/versions/{v2.id}" and last["namespace"] == "rowtrail://test"
    assert last["facets"]["rowtrail"]["digests"]["merkle_root"] == v2.content["merkle_root"]
    assert last["facets"]["rowtrail"]["rows"] == v2.row_count == last["outputFacets"]["outputStatistics"]["rowCount"]
    assert {"row_id", "source_id", "weight"} <= {f["name"] for f in last["facets"]["schema"]["fields"]}
    step = events[3]
    assert step["outputs"][0]["facets"]["rowtrail"]["details"]["dropped"] == {"too-short": sum(1 for r in ALPHA if len(r["response"]) <= 2)}
    assert step["run"]["facets"]["rowtrail"]["details"]["definition"]["params"]["where"] == "response IS NULL OR length(response) > 2"
    src = events[0]["inputs"][0]
    assert src["name"] == "sources/alpha" and src["facets"]["version"]["datasetVersion"] == "alpha@1"
    assert src["facets"]["rowtrail"]["details"]["license"] == "CC-BY-4.0"
    # exporting again gives the same events (run ids come from the journal)
    again = tmp_path / "again.jsonl"
    exports.export(store, "openlineage", "v2", again, namespace="rowtrail://test")
    assert again.read_bytes() == path.read_bytes()


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Receiver.received
    server.shutdown()
    server.server_close()


def test_openlineage_posts_every_event_to_an_http_receiver(store, tmp_path, receiver):
    url, received = receiver
    path = tmp_path / "events.jsonl"
    res = exports.export(store, "openlineage", "v2", path, url=url)
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert res.details["posted"] == len(written) == len(received) == 5
    assert {p for p, _ in received} == {"/api/v1/lineage"}
    assert [e["run"]["runId"] for _, e in received] == [e["run"]["runId"] for e in written]
    for _, e in received:
        check_event(e)
    # url without a path: post only, nothing on stdout
    received.clear()
    res = exports.export(store, "openlineage", "v1", None, url=url, endpoint="lineage")
    assert res.path is None and res.details["posted"] == len(received) == 2
    assert {p for p, _ in received} == {"/lineage"}


def test_openlineage_rejects_bad_options_and_a_missing_library(store, tmp_path, monkeypatch):
    with pytest.raises(ExportError, match="no option 'topic'"):
        exports.export(store, "openlineage", "v2", tmp_path / "e.jsonl", topic="x")
    with pytest.raises(ExportError, match="http:// or https://"):
        exports.export(store, "openlineage", "v2", tmp_path / "e.jsonl", url="kafka://x")
    monkeypatch.setitem(sys.modules, "openlineage.client", None)
    with pytest.raises(ExportError, match=r"pip install 'rowtrail\[openlineage\]'"):
        exports.export(store, "openlineage", "v2", tmp_path / "e.jsonl")
    assert not (tmp_path / "e.jsonl").exists()
