"""The Ray Data engine (engines/ray.py) against the local engine: the same pipeline over the same
inputs gives the same version (content id, Merkle roots), the same lineage, drops and weight
changes, and the same run objects; a worker killed in the middle of a step is retried by Ray and
leaves no row missing or repeated; an ingest on Ray writes the same objects and journal entry as a
local ingest, and reports bad input the same way. One local Ray (2 CPUs) serves the whole module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rowtrail as rt
from rowtrail import steps
from rowtrail.engines import local as local_engine
from rowtrail.ops.apply import apply, read_run

ray = pytest.importorskip("ray")

LANES = ["math", "code", "chat", "poetry"]


@pytest.fixture(scope="module")
def ray_session(s3_server, tmp_path_factory):
    """A local Ray for the module; its workers see the S3 test server's endpoint and keys (as a
    cluster's workers see their own credentials) and keep their store mirrors in a temporary dir."""
    from rowtrail.engines.ray import ensure_ray

    started = not ray.is_initialized()
    ensure_ray(num_cpus=2, env={**s3_server, "ROWTRAIL_CACHE": str(tmp_path_factory.mktemp("ray-mirrors"))})
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def small_batches(monkeypatch):
    """Cut the frame into many batches (both engines cut at the same places), so a step runs as
    many Ray tasks and a global step plans over many batches' features."""
    monkeypatch.setattr(local_engine, "BATCH_ROWS", 16)


def make_rows(n: int, prefix: str, shared: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        who = "alpha" if i < shared else prefix
        topic = " ".join(f"w{(i * 7 + j * 13 + ord(who[0]) * 5) % 97}" for j in range(10))
        text = f"{who} response number {i} on {topic} " + "with extra words " * (i % 3)
        rows.append({"id": f"{prefix}-{i}", "prompt": f"question {i}", "response": text, "lane": LANES[i % 4], "score": (i % 10) / 10})
    return rows


def near_copy(row: dict, prefix: str) -> dict:
    return {**row, "id": f"{prefix}-near-{row['id']}", "response": row["response"] + " ok"}


@pytest.fixture
def stores(tmp_store, write_jsonl, tmp_path):
    """Two identical stores (one copied from the other after ingest): one per engine."""
    s = tmp_store
    for src in ("alpha", "beta", "gamma"):
        s.sources.add(src, kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    opts = dict(key_field="id", content_fields=["prompt", "response"], attributes=["lane", "score"], hash_fields=["prompt"])
    alpha = make_rows(60, "alpha")
    s.ingest(write_jsonl(alpha, "alpha.jsonl"), source="alpha", **opts)
    beta = make_rows(40, "beta", shared=15) + [near_copy(r, "beta") for r in alpha[20:30]]
    s.ingest(write_jsonl(beta, "beta.jsonl"), source="beta", **opts)
    s.ingest(write_jsonl(make_rows(25, "gamma"), "gamma.jsonl"), source="gamma", **opts)
    copy = tmp_path / "store-ray"
    shutil.copytree(s.path, copy)
    return s, rt.open(copy)


def strip_words(text):
    return text.replace("with extra words ", "").strip()


def splitter(row):
    if " number 7 " in row["response"]:
        return [{**row, "response": "part one"}, {**row, "response": "part two"}]
    return None


def pipeline():
    return [
        steps.filter("length(response) > 70", reason="too-short", name="too-short"),
        steps.rewrite(strip_words, name="strip-words", version="1", field="response"),
        steps.rewrite(splitter, name="split-sevens", version="1"),
        steps.dedupe_exact(on="content_sha256", keep="source-priority", priority=["beta", "alpha"]),
        steps.dedupe_near(on="response", threshold=0.7, shingle=3),
        steps.score("len", "length(response)"),
        steps.upsample(source="gamma", factor=2),
        steps.sample(0.8, seed="s"),
        steps.mix({"alpha": 0.5, "beta": 0.3, "gamma": 0.2}, seed="m"),
    ]


def _tables(store, doc, kind):
    out = {}
    for sid, s in doc["steps"].items():
        digest = s[kind]
        out[sid] = set() if digest is None else {tuple(r.values()) for r in pq.read_table(store.backend.object_path(digest)).to_pylist()}
    return out


def test_ray_and_local_engines_give_the_same_version_lineage_and_drops(ray_session, stores, small_batches):
    local, remote = stores
    monitor = {"numeric": ["length(response)", "len"], "categorical": ["lane"]}
    rep_l = apply(local, pipeline(), engine="local", monitor=monitor)
    rep_r = apply(remote, pipeline(), engine="ray", monitor=monitor)
    assert rep_l.rows_out == rep_r.rows_out and rep_l.steps == rep_r.steps
    doc_l, rec_l = read_run(local, rep_l.run)
    doc_r, rec_r = read_run(remote, rep_r.run)
    # the pipeline did something of every kind, over many batches
    reports = {s["name"]: s for s in rep_l.steps}
    assert reports["too-short"]["dropped"] and reports["strip-words"]["edges"].get("modified")
    assert reports["split-sevens"]["edges"].get("split")
    assert reports["dedupe-exact"]["edges"].get("merged") and reports["dedupe-near"]["edges"].get("merged")
    assert reports["strip-words"]["drift"]["length(response)"]["n_after"] and reports["mix"]["drift"]["lane"]
    assert reports["upsample"]["reweighted"] and reports["sample"]["dropped"] and reports["mix"]["dropped"]
    assert rep_l.rows_in > 8 * local_engine.BATCH_ROWS
    # lineage, drops and weight changes as sets, then byte for byte (same objects)
    for kind in ("edges", "drops", "weights", "columns"):
        assert _tables(local, doc_l, kind) == _tables(remote, doc_r, kind), kind
    assert doc_l == doc_r and rep_l.run == rep_r.run
    assert np.array_equal(rec_l, rec_r)
    # derived rows became the same segment objects
    for seg in doc_r["segments"]:
        assert remote.backend.has_object(seg["provenance"]) and remote.backend.has_object(seg["content"])
    v_l = local.commit("local engine")
    v_r = remote.commit("ray engine")
    assert v_l.content_id == v_r.content_id
    assert v_l.content["merkle_root"] == v_r.content["merkle_root"] and v_l.content["content_root"] == v_r.content["content_root"]
    assert v_l.content["row_count"] == rep_l.rows_out
    report = remote.verify()
    assert report.ok, report.problems


def test_the_same_with_global_steps_planned_in_several_partitions_on_ray(ray_session, stores, small_batches, monkeypatch):
    """The equivalence above with dedupe_exact's plan forced into 5 partitions (map tasks cut its
    features by key hash, one Ray task plans each partition) and mix planned from partials."""
    monkeypatch.setenv("ROWTRAIL_PARTITIONS", "5")
    test_ray_and_local_engines_give_the_same_version_lineage_and_drops(ray_session, stores, small_batches)


def kill_once_filter(marker: str, victim: str):
    """A filter predicate whose first call on ``victim``'s row kills its own worker process, once (a
    marker file records that it happened); Ray then runs the task again."""

    def keep_row(row):
        if row["response"].startswith(victim) and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os._exit(1)  # the worker dies mid-step, without cleanup
        return True

    return keep_row


def test_a_worker_killed_mid_step_is_retried_without_lost_or_repeated_rows(ray_session, stores, small_batches, tmp_path):
    local, remote = stores
    marker = tmp_path / "killed"
    steps_ = [
        steps.rewrite(strip_words, name="strip-words", version="1", field="response"),
        steps.filter(kill_once_filter(str(marker), "gamma response number 3"), reason="never", name="killer"),
        steps.dedupe_exact(on="content_sha256"),
    ]
    rep_r = apply(remote, steps_, engine="ray")
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker, not the driver, died
    rep_l = apply(local, steps_, engine="local")
    doc_l, rec_l = read_run(local, rep_l.run)
    doc_r, rec_r = read_run(remote, rep_r.run)
    ids = rec_r["id"]
    assert len(np.unique(ids)) == len(ids) == rep_l.rows_out  # nothing repeated, nothing missing
    assert np.array_equal(rec_l["id"], rec_r["id"]) and doc_l == doc_r
    assert remote.commit("after a retry").content_id == local.commit("no failure").content_id


def test_import_rowtrail_does_not_import_ray():
    code = "import sys, rowtrail, rowtrail.ops.apply, rowtrail.engines.local; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


PIPELINE_TOML = """
[[step]]
use = "filter"
where = "length(response) > 70"
reason = "too-short"

[[step]]
use = "dedupe_exact"
on = "content_sha256"
keep = "earliest"

[[step]]
use = "upsample"
source = "gamma"
factor = 3

[[step]]
use = "sample"
fraction = 0.9
seed = "cli"
"""


def _rowtrail(store, *args: str, cwd=None, code: int = 0) -> subprocess.CompletedProcess:
    """``rowtrail --store STORE ARGS`` in a child process; its exit code must be ``code``."""
    p = subprocess.run(
        [sys.executable, "-m", "rowtrail", "--store", str(store.path), *args],
        cwd=cwd,
        env=dict(os.environ, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == code, p.stderr
    return p


def test_cli_apply_on_a_ray_cluster_stages_the_same_run_as_the_local_engine(ray_session, stores, tmp_path):
    local, remote = stores
    (tmp_path / "pipeline.toml").write_text(PIPELINE_TOML)

    def cli(store, *args, code=0):
        return _rowtrail(store, "apply", "pipeline.toml", *args, cwd=tmp_path, code=code)

    address = ray.get_runtime_context().gcs_address  # join this session's Ray (a cluster address is just that)
    rep_l = json.loads(cli(local, "--json").stdout)
    rep_r = json.loads(cli(remote, "--engine", "ray", "--address", address, "--json").stdout)
    assert rep_l["run"] == rep_r["run"] and rep_l["steps"] == rep_r["steps"] and rep_l["rows_out"] < rep_l["rows_in"]
    assert "--engine ray" in cli(local, "--address", address, code=2).stderr


# -- ingest on Ray ------------------------------------------------------------------------------------
# An ingest's id and the provenance column ``ingested_at`` come from the clock, so two ingests of the
# same input differ in those bytes whatever the engine; these tests pin the clock (one fixed instant
# for both engines) and then ask for the same objects, byte for byte.

INGEST_AT = "2026-01-02T03:04:05.000006Z"
INGEST_OPTS = dict(source_field="src", key_field="id", content_fields=["prompt", "response"], attributes=["lane", "score"], workers=2)


def file_rows(n: int, prefix: str, tag: str) -> list[dict]:
    rows = make_rows(n, prefix)
    for r in rows:
        r["id"], r["src"] = f"{tag}-{r['id']}", prefix
    return rows


@pytest.fixture
def ingest_inputs(write_jsonl, monkeypatch):
    """Three JSONL files, one of them cut into many parts (parts of ~4 KB), and the clock pinned."""
    import rowtrail.readers as readers
    import rowtrail.versions.journal as journal

    monkeypatch.setattr(readers, "SPLIT_BYTES", 4096)  # the two small files stay one part each …
    monkeypatch.setattr(readers, "PART_BYTES", 4096)  # … the big one is cut into parts of ~4 KB
    monkeypatch.setattr(journal, "now_rfc3339", lambda: INGEST_AT)
    files = [
        write_jsonl(file_rows(30, "alpha", "a"), "a.jsonl"),
        write_jsonl(file_rows(20, "beta", "b"), "b.jsonl"),
        write_jsonl(file_rows(200, "alpha", "m") + file_rows(40, "beta", "m"), "mixed.jsonl"),
    ]
    return files


@pytest.fixture
def ray_parts(monkeypatch):
    """Counts the parts each Ray ingest hands to ``engines.ray.run_ingest_parts`` (proof that the
    Ray path ran, and how many tasks it made)."""
    import rowtrail.engines.ray as ray_engine

    calls: list[int] = []
    real = ray_engine.run_ingest_parts

    def counted(spec, parts, tables, progress=None, address=None):
        calls.append(len(parts))
        return real(spec, parts, tables, progress, address)

    monkeypatch.setattr(ray_engine, "run_ingest_parts", counted)
    return calls


def new_store(path):
    s = rt.init(path)
    for src in ("alpha", "beta"):
        s.sources.add(src, kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    return s


def staged_row_ids(store) -> list[bytes]:
    return [
        i
        for entry in ingest_entries(store)
        for seg in entry["segments"]
        for i in pq.read_table(store.backend.object_path(seg["provenance"]), columns=["row_id"]).column("row_id").to_pylist()
    ]


def ingest_entries(store) -> list[dict]:
    """The store's ingest journal entries without the chain fields (``prev`` names the previous
    entry, whose ``at`` is the source registration's time)."""
    return [{k: v for k, v in e.items() if k not in ("prev", "at")} for e in store.state.entries if e["kind"] == "ingest"]


def test_ray_ingest_writes_the_same_objects_and_journal_entries_as_the_local_ingest(
    ray_session, ingest_inputs, ray_parts, tmp_path, write_jsonl
):
    changed = [{**r, "response": r["response"] + " (revised)"} for r in file_rows(5, "alpha", "a")]
    again = write_jsonl(changed, "revised.jsonl")  # the second ingest supersedes five rows
    stores = {}
    for engine in ("local", "ray"):
        s = new_store(tmp_path / f"store-{engine}")
        first = s.ingest([str(f) for f in ingest_inputs], engine=engine, **INGEST_OPTS)
        second = s.ingest(str(again), engine=engine, **INGEST_OPTS)
        assert (first.rows, second.rows, second.superseded, second.new) == (290, 5, 5, 0)
        stores[engine] = (s, first, second)
    (local, l1, l2), (remote, r1, r2) = stores["local"], stores["ray"]
    assert ray_parts and ray_parts[0] > 6  # the Ray ingest ran, over many parts (2 files + the cut one)
    assert l1.to_dict() == r1.to_dict() and l2.to_dict() == r2.to_dict()
    entries = ingest_entries(local)
    assert entries == ingest_entries(remote) and len(entries[0]["segments"]) == ray_parts[0]
    for entry in entries:  # every object an entry names is in both stores, with the same bytes
        digests = [d for seg in entry["segments"] for d in (seg["provenance"], seg["content"])]
        digests += [entry[k] for k in ("drops", "edges") if entry[k]]
        for d in digests:
            assert local.backend.object_path(d).read_bytes() == remote.backend.object_path(d).read_bytes()
    assert entries[1]["drops"] and entries[1]["edges"]
    v_l, v_r = local.commit("local ingest", sign=False), remote.commit("ray ingest", sign=False)
    assert v_l.content_id == v_r.content_id and v_l.row_count == 290
    ids_l = local.rows(version="HEAD").column("row_id").to_pylist()
    assert sorted(ids_l) == sorted(remote.rows(version="HEAD").column("row_id").to_pylist())
    assert remote.verify(allow_unsigned=True).ok


def test_ray_ingest_reports_bad_input_and_quarantines_as_the_local_ingest(ray_session, ingest_inputs, ray_parts, tmp_path):
    mixed = ingest_inputs[2]
    lines = mixed.read_text().splitlines()
    lines[150] = '{"id": "broken", '  # not JSON, in a middle part
    lines[170] = json.dumps({"id": "m-alpha-x", "src": "alpha", "prompt": "no response field"})
    lines[190] = lines[20]  # a duplicate key
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    errors, entries = {}, {}
    for engine in ("local", "ray"):
        s = new_store(tmp_path / f"store-{engine}")
        with pytest.raises(rt.errors.IngestError) as exc:
            s.ingest([str(ingest_inputs[0]), str(bad)], engine=engine, **INGEST_OPTS)
        errors[engine] = (str(exc.value), exc.value.file, exc.value.line, exc.value.field)
        assert not [e for e in s.state.entries if e["kind"] == "ingest"]  # nothing staged
        rep = s.ingest([str(ingest_inputs[0]), str(bad)], engine=engine, on_error="quarantine", **INGEST_OPTS)
        assert (rep.rows, rep.quarantined) == (30 + 240 - 3, 3)
        entries[engine] = (ingest_entries(s), s.backend.object_path(ingest_entries(s)[0]["quarantine"]).read_bytes())
    assert errors["local"] == errors["ray"] and errors["ray"][1:3] == (str(bad), 151)
    assert len(ray_parts) == 2 and entries["local"] == entries["ray"]  # same entry, same quarantine table
    quarantined = pq.read_table(pa.BufferReader(entries["ray"][1])).to_pylist()
    assert [(q["origin_line"], q["field"]) for q in quarantined] == [(151, ""), (171, "response"), (191, "id")]


def test_a_large_in_memory_table_is_read_in_slices_by_ray_tasks_into_the_same_segments(
    ray_session, ingest_inputs, ray_parts, tmp_path, monkeypatch
):
    import rowtrail.ops.ingest as ingest_mod

    monkeypatch.setattr(ingest_mod, "TABLE_SPLIT_ROWS", 50)  # a table this long is spilled and sliced
    table = pa.Table.from_pylist(file_rows(120, "alpha", "t") + file_rows(80, "beta", "t"))
    entries = {}
    for engine in ("local", "ray"):
        s = new_store(tmp_path / f"store-{engine}")
        assert s.ingest(table, engine=engine, **INGEST_OPTS).rows == 200
        entries[engine] = ingest_entries(s)
    assert ray_parts == [4] and len(entries["ray"][0]["segments"]) == 4 and entries["local"] == entries["ray"]


def test_ray_ingest_refuses_part_files_the_driver_cannot_see(ray_session, ingest_inputs, tmp_path, monkeypatch):
    """On a cluster whose nodes do not share the store's temporary directory, a worker's part file
    is not on the driver's disk: the ingest stops with an error that says so, and leaves nothing."""
    import rowtrail.engines.ray as ray_engine

    real = ray_engine.run_ingest_parts

    def on_another_node(spec, parts, tables, progress=None, address=None):
        results = real(spec, parts, tables, progress, address)
        os.unlink(results[1].provenance)  # as if part 1 had been written on another machine
        return results

    monkeypatch.setattr(ray_engine, "run_ingest_parts", on_another_node)
    s = new_store(tmp_path / "store")
    with pytest.raises(rt.errors.IngestError, match="part file.* this process cannot see .*mounts at the same path"):
        s.ingest([str(f) for f in ingest_inputs], engine="ray", **INGEST_OPTS)
    assert not [e for e in s.state.entries if e["kind"] == "ingest"]
    assert not [p for p in s.backend.ensure_tmp().iterdir() if p.name.endswith(".parquet")]


def test_cli_ingest_on_a_ray_cluster_stages_the_same_rows_as_the_local_ingest(ray_session, ingest_inputs, tmp_path):
    args = [
        "ingest",
        *map(str, ingest_inputs),
        "--source-field",
        "src",
        "--key-field",
        "id",
        "--content-fields",
        "prompt,response",
        "--workers",
        "2",
    ]

    def cli(store, *extra, code=0):
        return _rowtrail(store, *args, *extra, code=code)

    local, remote = new_store(tmp_path / "store-local"), new_store(tmp_path / "store-ray")
    address = ray.get_runtime_context().gcs_address
    rep_l = json.loads(cli(local, "--json").stdout)
    rep_r = json.loads(cli(remote, "--engine", "ray", "--address", address, "--json").stdout)
    assert rep_r["rows"] == rep_l["rows"] == 290 and rep_r["sources"] == rep_l["sources"] == {"alpha": 230, "beta": 60}
    segs = [[(g["rows"], g["sources"]) for g in ingest_entries(rt.open(s.path))[0]["segments"]] for s in (local, remote)]
    assert segs[0] == segs[1] and len(segs[0]) > 2  # the same parts (the clock differs between processes)
    ids = [sorted(staged_row_ids(rt.open(s.path))) for s in (local, remote)]
    assert ids[0] == ids[1] and len(ids[0]) == 290
    assert "--engine ray" in cli(local, "--address", address, code=2).stderr
    assert "--engine is one of local, ray" in cli(local, "--engine", "spark", code=2).stderr


def test_ingest_engine_and_address_are_checked_before_any_work(tmp_store, write_jsonl):
    tmp_store.sources.add("alpha", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    path = write_jsonl(file_rows(3, "alpha", "a"), "a.jsonl")
    with pytest.raises(rt.errors.IngestError, match="unknown engine 'spark'; use one of local, ray"):
        tmp_store.ingest(path, engine="spark", **INGEST_OPTS)
    with pytest.raises(rt.errors.IngestError, match="--address is for the Ray engine; add --engine ray"):
        tmp_store.ingest(path, address="auto", **INGEST_OPTS)
    assert not [e for e in tmp_store.state.entries if e["kind"] == "ingest"]


def bad_rewrite(value):
    return 42  # a rewrite must return a dict, a list of dicts or None


def test_a_step_error_on_a_worker_reaches_the_caller_as_the_same_error(ray_session, stores):
    _local, remote = stores
    with pytest.raises(rt.errors.StepError, match="rewrite 'bad' returned int for row"):
        apply(remote, [steps.rewrite(bad_rewrite, name="bad")], engine="ray")
    with pytest.raises(rt.errors.StepError, match="reads column"):
        apply(remote, [steps.filter("length(no_such_field) > 3")], engine="ray")
    assert remote.state.pipelines.get("main") is None  # nothing staged


def test_ray_workers_read_and_write_a_store_on_s3(ray_session, s3_url, rowtrail_home, write_jsonl):
    """Workers get the store's backend (S3 through fsspec, each with its own local mirror), read
    segments from it and upload the rows they create; the run equals the local engine's."""
    s = rt.init(s3_url)
    for src in ("alpha", "beta"):
        s.sources.add(src, kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    opts = dict(key_field="id", content_fields=["prompt", "response"], attributes=["lane"])
    s.ingest(write_jsonl(make_rows(30, "alpha"), "a.jsonl"), source="alpha", **opts)
    s.ingest(write_jsonl(make_rows(20, "beta", shared=10), "b.jsonl"), source="beta", **opts)
    pipe = [steps.rewrite(strip_words, name="strip-words", version="1", field="response"), steps.dedupe_exact(on="content_sha256")]
    runs = []
    for engine in ("ray", "local"):
        rep = apply(s, pipe, engine=engine)
        doc, records = read_run(s, rep.run)
        for seg in doc["segments"]:
            seg.pop("seg")  # the second apply numbers its new segments after the first's
        runs.append((rep.steps, doc["steps"], doc["segments"], records["id"], records["w"]))
    (steps_r, objs_r, segs_r, ids_r, w_r), (steps_l, objs_l, segs_l, ids_l, w_l) = runs
    assert steps_r == steps_l and objs_r == objs_l and segs_r == segs_l and segs_r
    assert np.array_equal(ids_r, ids_l) and np.array_equal(w_r, w_l)
    assert s.commit("on s3", sign=False).content["row_count"] == len(ids_l)
