"""Lineage exports — ``croissant``, ``prov``, ``openlineage`` — read back with the format's own library
(mlcroissant, prov, openlineage-python) and checked against the store they describe."""

from __future__ import annotations

import collections
import http.server
import json
import logging
import sys
import threading
import uuid

import pyarrow as pa
import pytest

from rowtrail import exports, hashing, steps
from rowtrail.errors import ExportError, ExportExistsError
from rowtrail.exports import croissant, openlineage, prov  # noqa: F401  (registers the formats)
from rowtrail.exports.base import file_digest
from rowtrail.feedback import annotations, guidelines

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


# judgements of three items, uneven per item: item-a 3, item-b 1, item-c 2 (mean 2.00, least 1, most 3)
JUDGEMENTS = [
    {"item_id": item, "annotator": who, "guideline_version": "1", "collected_at": "2026-03-02T10:00:00Z", "platform": "acme-labeling", "task": "helpfulness", "rating": r, "item_generator": gen, "item": {"prompt": f"q {item}", "response": f"a {item}"}}
    for item, who, r, gen in [
        ("item-a", "ana", 4, "model-x"),
        ("item-a", "ben", 3, "model-x"),
        ("item-a", "cy", 5, "model-x"),
        ("item-b", "ana", 2, "human"),
        ("item-c", "ben", 1, "human"),
        ("item-c", "cy", 2, "human"),
    ]
]


@pytest.fixture
def annotated(store, tmp_path):
    """The store with a third version, v3: v2's rows plus six judgements imported as annotation rows."""
    (tmp_path / "g1.md").write_text("rate helpfulness 1-5\n")
    guidelines.add(store, tmp_path / "g1.md", 1)
    store.sources.add("ratings", kind="annotation-batch", uri="https://label.example.com/p/1", license="MIT", legal_basis="contract")
    path = tmp_path / "ratings.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in JUDGEMENTS))
    annotations.import_annotations(store, path, source="ratings")
    store.commit("ratings", tag="v3")
    return store


def version_ids(store, ref="v2"):
    return sorted(hashing.ids_hex(store.version_rows(store.version(ref).id)["id"]))


# -- croissant ---------------------------------------------------------------------------------------

# what mlcroissant 1.1.1 says of any rowtrail export: tags are not MAJOR.MINOR.PATCH, citeAs is an option
KNOWN_WARNINGS = ("Version doesn't follow MAJOR.MINOR.PATCH", 'Property "http://mlcommons.org/croissant/citeAs" is recommended')


def load_croissant(path, caplog=None):
    """The export loaded by mlcroissant: no errors, and no warnings but the known ones (nor, with
    ``caplog``, the log line "JSON-LD @context is not standard" that mlcroissant writes outside its issues)."""
    import mlcroissant as mlc

    if caplog is not None:
        caplog.set_level(logging.WARNING)
        caplog.clear()
    ds = mlc.Dataset(jsonld=str(path / "croissant.json"))
    assert not ds.metadata.ctx.issues.errors, ds.metadata.ctx.issues.report()
    unknown = [w for w in ds.metadata.ctx.issues.warnings if not any(k in w for k in KNOWN_WARNINGS)]
    assert not unknown, unknown
    if caplog is not None:
        assert not [r.getMessage() for r in caplog.records if "not standard" in r.getMessage()]
    return ds


def test_croissant_loads_in_mlcroissant_and_yields_the_versions_rows(store, tmp_path, caplog):
    out = tmp_path / "v2-croissant"
    res = exports.export(store, "croissant", "v2", out)
    ds = load_croissant(out, caplog)
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
    # one text (the property has cardinality ONE), a paragraph per source
    alpha_text, beta_text = doc["rai:dataCollection"].split("\n\n")
    assert alpha_text.startswith("alpha (snapshot alpha@1)") and "teacher-model" in alpha_text and "https://example.com/alpha" in alpha_text and "kimi-k2" in alpha_text
    assert beta_text.startswith("beta (snapshot beta@1)") and "s3://bucket/beta" in beta_text
    assert doc["rai:dataCollectionTimeframe"] == ["2025-01-01", "2025-06-30"]
    assert len(doc["rai:dataPreprocessingProtocol"]) == 1 and "length(response) > 2" in doc["rai:dataPreprocessingProtocol"][0]
    assert doc["rai:machineAnnotationTools"] == ["kimi", "kimi-k2", "opus"]
    assert "3 annotator(s)" in doc["rai:dataAnnotationProtocol"] and "g1" in doc["rai:dataAnnotationProtocol"]
    assert doc["rai:dataAnnotationPlatform"] == ["argilla"]
    assert "rai:annotationsPerItem" not in doc  # beta's rows name annotators but no item_id: not judgements
    assert {e["prov:label"] for e in doc["prov:wasDerivedFrom"]} == {"alpha", "beta"}
    assert doc["prov:wasGeneratedBy"]["@id"].endswith(store.version("v2").id)


def test_croissant_context_holds_every_key_of_mlcroissants_standard_context(store, tmp_path, caplog):
    from mlcroissant._src.core.rdf import make_context

    exports.export(store, "croissant", "v1", tmp_path / "v1")
    doc = json.loads((tmp_path / "v1" / "croissant.json").read_text())
    assert set(make_context()) <= set(doc["@context"])
    assert doc["@context"]["samplingRate"] == "cr:samplingRate"
    load_croissant(tmp_path / "v1", caplog)


def test_croissant_prov_on_files_record_set_and_model_made_fields(store, tmp_path):
    v2 = store.version("v2")
    for shard_rows in (None, 7):  # one Parquet file, then shards read through a FileSet
        out = tmp_path / f"v2-{shard_rows}"
        exports.export(store, "croissant", "v2", out, shard_rows=shard_rows)
        ds = load_croissant(out)
        assert sum(1 for _ in ds.records(record_set="rows")) == v2.row_count
        doc = json.loads((out / "croissant.json").read_text())
        sources = {e["@id"] for e in doc["prov:wasDerivedFrom"]}
        assert sources == {"urn:rowtrail:source/alpha@1", "urn:rowtrail:source/beta@1"}
        run = v2.manifest["run"]
        made = [f"urn:rowtrail:run/{run}/step/0", f"urn:rowtrail:commit/{v2.id}"]  # the filter step, then the commit
        (rows,) = doc["recordSet"]
        parts = [d for d in doc["distribution"] if d["encodingFormat"] == "application/x-parquet"] + [rows]
        assert len(parts) == (2 if shard_rows is None else 7)  # the file, or five shards (29 rows) and the FileSet; the record set
        for node in parts:
            assert {r["@id"] for r in node["prov:wasDerivedFrom"]} == sources
            assert [r["@id"] for r in node["prov:wasGeneratedBy"]] == made
        step = rows["prov:wasGeneratedBy"][0]
        assert step["@type"] == "prov:Activity" and "filter" in step["prov:label"] and v2.content["pipeline"][0] in step["prov:label"]
        assert "prov:wasDerivedFrom" not in next(d for d in doc["distribution"] if d["contentUrl"].endswith("_rowtrail.json"))
        fields = {f["name"]: f for f in rows["field"]}
        # response: alpha's rows, made by alpha's generator and the models its teacher attribute names
        assert [(a["@type"], a["@id"], a["prov:label"]) for a in fields["response"]["prov:wasAttributedTo"]] == [
            ("prov:SoftwareAgent", f"urn:rowtrail:agent/model/{m}", m) for m in ("kimi", "kimi-k2", "opus")
        ]
        assert not [n for n, f in fields.items() if "prov:wasAttributedTo" in f and n != "response"]  # the prompt is not the model's
        assert {a["@id"] for a in doc["prov:wasAttributedTo"]} >= {a["@id"] for a in fields["response"]["prov:wasAttributedTo"]}


def test_croissant_judgements_give_annotations_per_item_and_the_rated_items_model(annotated, tmp_path):
    out = tmp_path / "v3"
    exports.export(annotated, "croissant", "v3", out)
    ds = load_croissant(out)
    records = list(ds.records(record_set="rows"))
    assert len(records) == annotated.version("v3").row_count
    doc = json.loads((out / "croissant.json").read_text())
    per_item = collections.Counter(r["item_id"] for r in JUDGEMENTS)
    mean = len(JUDGEMENTS) / len(per_item)
    assert doc["rai:annotationsPerItem"] == f"{mean:.2f} judgements per item on average (least 1, most 3): 6 judgements of 3 items, by item_id"
    assert (mean, min(per_item.values()), max(per_item.values())) == (2.0, 1, 3)
    # the read-back records agree: judgements are the rows carrying an item_id
    assert collections.Counter(r["rows/item_id"].decode() for r in records if r["rows/item_id"] is not None) == per_item
    fields = {f["name"]: f for f in doc["recordSet"][0]["field"]}
    assert [a["prov:label"] for a in fields["item"]["prov:wasAttributedTo"]] == ["model-x"]  # item_generator; "human" is not an agent
    assert len(doc["rai:dataCollection"].split("\n\n")) == 3


def test_croissant_without_annotations_omits_annotation_fields_and_reads_shards(store, tmp_path):
    out = tmp_path / "v1"
    exports.export(store, "croissant", "v1", out, shard_rows=7)
    ds = load_croissant(out)
    assert sorted(r["rows/row_id"].decode() for r in ds.records(record_set="rows")) == version_ids(store, "v1")
    doc = json.loads((out / "croissant.json").read_text())
    assert "rai:dataAnnotationProtocol" not in doc and "rai:dataAnnotationPlatform" not in doc
    assert "rai:dataPreprocessingProtocol" not in doc  # v1 had no pipeline
    assert len([f for f in doc["distribution"] if f["@type"] == "cr:FileObject" and f["contentUrl"].endswith(".parquet")]) == 5
    assert "\n\n" not in doc["rai:dataCollection"] and doc["rai:dataCollection"].startswith("alpha (snapshot alpha@1)")  # one source
    assert [r["@id"] for r in doc["recordSet"][0]["prov:wasGeneratedBy"]] == [f"urn:rowtrail:commit/{store.version('v1').id}"]  # no steps


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
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState

    assert all(k in e for k in REQUIRED), sorted(e)
    assert e["eventType"] in ("START", "COMPLETE")
    uuid.UUID(e["run"]["runId"])
    assert e["job"]["namespace"] and e["job"]["name"]
    for facets in [e["run"]["facets"], e["job"]["facets"]] + [d.get("facets", {}) for d in e["inputs"] + e["outputs"]]:
        for f in facets.values():
            assert f["_producer"] and f["_schemaURL"].startswith("https://")
    # the client's own classes accept it (their validators check the event time, run id and state)
    RunEvent(
        eventType=RunState(e["eventType"]),
        eventTime=e["eventTime"],
        run=Run(runId=e["run"]["runId"]),
        job=Job(namespace=e["job"]["namespace"], name=e["job"]["name"]),
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in e["inputs"]],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in e["outputs"]],
        producer=e["producer"],
    )


def check_runs(events: list[dict]) -> list[dict]:
    """Every run is a START then a COMPLETE (same run id, job, inputs and output names, START no later);
    returns the COMPLETE events in order."""
    by_run: dict[str, list[dict]] = {}
    for e in events:
        by_run.setdefault(e["run"]["runId"], []).append(e)
    for pair in by_run.values():
        assert [e["eventType"] for e in pair] == ["START", "COMPLETE"]
        start, done = pair
        assert start["job"] == done["job"] and start["inputs"] == done["inputs"] and start["run"] == done["run"]
        assert [(o["namespace"], o["name"]) for o in start["outputs"]] == [(o["namespace"], o["name"]) for o in done["outputs"]]
        assert openlineage._parse_time(start["eventTime"]) <= openlineage._parse_time(done["eventTime"])
    assert [e["eventType"] for e in events[::2]] == ["START"] * len(by_run)  # each START right before its COMPLETE
    return [e for e in events if e["eventType"] == "COMPLETE"]


def test_openlineage_events_cover_ingests_steps_and_commits(store, tmp_path):
    from openlineage.client.event_v2 import RunEvent  # noqa: F401  (the library is there)

    path = tmp_path / "v2.openlineage.jsonl"
    assert exports.for_path(path).name == "openlineage"
    res = exports.export(store, "openlineage", "v2", path, namespace="rowtrail://test")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert res.details["events"] == len(lines) == 10
    for e in lines:
        check_event(e)
    events = check_runs(lines)
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
    # START times: an ingest's ingested_at, a commit's created_at; COMPLETE: the journal time
    ingests = [e for e in store.state.entries if e["kind"] == "ingest"]
    starts = {e["run"]["runId"]: e["eventTime"] for e in lines if e["eventType"] == "START"}
    assert [starts[e["run"]["runId"]] for e in events if e["job"]["name"].startswith("main.ingest.")] == [e["ingested_at"] for e in ingests]
    assert [e["eventTime"] for e in events if e["job"]["name"].startswith("main.ingest.")] == [e["at"] for e in ingests]
    assert starts[events[-1]["run"]["runId"]] == v2.record["created_at"]
    assert not lines[-2]["outputs"][0].get("outputFacets") and lines[-2]["outputs"][0]["name"] == last["name"]  # START: outputs by name
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
    assert res.details["posted"] == len(written) == len(received) == 10
    assert {p for p, _ in received} == {"/api/v1/lineage"}
    assert [(e["eventType"], e["run"]["runId"]) for _, e in received] == [(e["eventType"], e["run"]["runId"]) for e in written]
    for _, e in received:
        check_event(e)
    check_runs([e for _, e in received])
    # url without a path: post only, nothing on stdout
    received.clear()
    res = exports.export(store, "openlineage", "v1", None, url=url, endpoint="lineage")
    assert res.path is None and res.details["posted"] == len(received) == 4
    assert {p for p, _ in received} == {"/lineage"}


def test_openlineage_names_input_files_by_their_recorded_path(store, tmp_path):
    path = tmp_path / "e.jsonl"
    exports.export(store, "openlineage", "v2", path)
    files = [d for e in map(json.loads, path.read_text().splitlines()) if e["eventType"] == "COMPLETE" for d in e["inputs"] if d["namespace"] != openlineage.default_namespace(store)]
    recorded = [f for e in store.state.entries if e["kind"] == "ingest" for f in e["files"] if f.get("sha256")]
    assert len(files) == len(recorded) == 1  # beta came in as a table: no file
    (f,) = files
    assert (f["namespace"], f["name"]) == ("file", recorded[0]["name"]) and f["name"] == str(tmp_path / "rows.jsonl")  # absolute, as ingested
    assert f["facets"]["rowtrail"]["digests"]["sha256"] == file_digest(tmp_path / "rows.jsonl")[1]


@pytest.mark.parametrize(
    ("recorded", "namespace", "name"),
    [
        ("/data/in/rows.jsonl", "file", "/data/in/rows.jsonl"),
        ("file:///data/in/rows.jsonl", "file", "/data/in/rows.jsonl"),
        ("s3://bucket/in/rows.jsonl", "s3://bucket", "in/rows.jsonl"),
        ("gs://bucket/in/rows.jsonl", "gs://bucket", "in/rows.jsonl"),
        ("file://nas/in/rows.jsonl", "file://nas", "/in/rows.jsonl"),
        ("rows.jsonl", "file", "rows.jsonl"),  # relative as recorded: the store keeps no working directory
    ],
)
def test_openlineage_file_naming_follows_the_convention(recorded, namespace, name):
    assert openlineage.file_name(recorded) == (namespace, name)


def test_openlineage_rejects_bad_options_and_a_missing_library(store, tmp_path, monkeypatch):
    with pytest.raises(ExportError, match="no option 'topic'"):
        exports.export(store, "openlineage", "v2", tmp_path / "e.jsonl", topic="x")
    with pytest.raises(ExportError, match="http:// or https://"):
        exports.export(store, "openlineage", "v2", tmp_path / "e.jsonl", url="kafka://x")
    monkeypatch.setitem(sys.modules, "openlineage.client", None)
    with pytest.raises(ExportError, match=r"pip install 'rowtrail\[openlineage\]'"):
        exports.export(store, "openlineage", "v2", tmp_path / "e.jsonl")
    assert not (tmp_path / "e.jsonl").exists()
