"""Feedback provenance on a real store with the seeded annotation set (rowtrail.feedback.synth):
six annotators, two guideline versions, one drifting annotator, items produced by a model (declared,
and planted exact / near copies of its registered outputs). Every expected figure is computed here
from the generator's raw records, independently of the code under test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import krippendorff
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

import rowtrail as rt
from rowtrail import steps
from rowtrail.errors import IngestError, SourceError
from rowtrail.feedback import analysis, annotations, contamination, data, guidelines, runcard, signal, synth
from rowtrail.feedback.guidelines import GuidelineError
from rowtrail.ops.runs import record_external

DATA = Path(__file__).parent.parent / "data" / "feedback"
KEEP_MIN = 2  # the pipeline's filter keeps ratings >= 2
FILTER = steps.filter("TRY_CAST(rating AS DOUBLE) IS NULL OR TRY_CAST(rating AS DOUBLE) >= 2", reason="low-rating")
UPSAMPLE = steps.upsample(attributes={"guideline_version": "2"}, factor=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feedback")
    S = synth.generate()
    (tmp / "g1.md").write_text("# Helpfulness, v1\n\nRate 1 (useless) to 5 (excellent).\n")
    (tmp / "g2.md").write_text("# Helpfulness, v2\n\nRate 1 (useless) to 5 (excellent).\nA 5 needs a cited source.\n")
    store = rt.init(tmp / "store")
    store.sources.add("sft-base", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    store.ingest(
        pa.table({"id": [f"r{i}" for i in range(40)], "text": [f"a human written answer number {i}" for i in range(40)]}),
        source="sft-base",
        key_field="id",
        content_fields=["text"],
    )
    store.commit("v37", tag="v37", sign=False)
    run = record_external(store, "v37", {"model": synth.MODEL}, store.rows("v37").column("row_id").to_pylist())
    contamination.add_model(
        store, synth.MODEL, run=run, outputs=contamination.read_outputs(synth.write_outputs(S.model_outputs, tmp / "outputs.jsonl"))
    )
    guidelines.add(store, tmp / "g1.md", 1)
    guidelines.add(store, tmp / "g2.md", 2)
    store.sources.add("acme-ratings", kind="annotation-batch", license="LicenseRef-acme-internal", legal_basis="contract")
    rep = annotations.import_annotations(store, synth.write_plain(S.records, tmp / "ratings.jsonl"), source="acme-ratings")
    store.commit("ratings as collected", tag="v38", sign=False)
    store.apply([FILTER, UPSAMPLE])
    store.commit("filter low ratings, upsample guideline v2", tag="v39", sign=False)
    return {"store": store, "S": S, "tmp": tmp, "run": run, "import": rep}


def _reliability(records, level_values=True):
    annotators = sorted({r["annotator"] for r in records})
    items = sorted({r["item_id"] for r in records})
    mat = np.full((len(annotators), len(items)), np.nan)
    for r in records:
        mat[annotators.index(r["annotator"]), items.index(r["item_id"])] = r["rating"]
    return mat, annotators


def test_import_makes_one_row_per_judgement(world):
    rep, S, store = world["import"], world["S"], world["store"]
    assert rep.judgements == rep.new == len(S.records) == 720
    assert rep.batches == ["b1", "b2", "b3", "b4"] and rep.guideline_versions == ["1", "2"] and rep.kinds == {"rating": 720}
    ann = data.load(store, "v38")
    assert len(ann) == 720 and set(ann.guideline) == {"1", "2"}
    row = store.rows("v38", source="acme-ratings", limit=1).to_pylist()[0]
    assert row["guideline_sha256"] == guidelines.get(store, row["guideline_version"]).digest  # the row binds the exact text
    assert row["export_file"] == "ratings.jsonl" and row["export_line"] >= 1
    # importing the same file again changes nothing
    again = annotations.import_annotations(store, world["tmp"] / "ratings.jsonl", source="acme-ratings")
    assert again.judgements == 720 and again.new == 0 and again.unchanged == 720


def test_agreement_equals_reference_libraries(world):
    S, store = world["S"], world["store"]
    rep = analysis.agreement(data.load(store, "v38"), by="guideline", cfg=analysis.DriftConfig(permutations=99))
    (task,) = rep["tasks"]
    assert task["task"] == "helpfulness" and task["level"] == "ordinal"
    mat, annotators = _reliability(S.records)
    assert task["overall"]["alpha"] == pytest.approx(krippendorff.alpha(reliability_data=mat, level_of_measurement="ordinal"), abs=1e-10)
    for g in task["groups"]:
        sub, _ = _reliability([r for r in S.records if r["guideline_version"] == g["group"]])
        assert g["alpha"] == pytest.approx(krippendorff.alpha(reliability_data=sub, level_of_measurement="ordinal"), abs=1e-10)
    kappas = []
    for i in range(len(annotators)):
        for j in range(i + 1, len(annotators)):
            common = ~np.isnan(mat[i]) & ~np.isnan(mat[j])
            if common.sum() >= analysis.MIN_COMMON:
                kappas.append(cohen_kappa_score(mat[i, common], mat[j, common], labels=[1.0, 2.0, 3.0, 4.0, 5.0], weights="quadratic"))
    assert task["overall"]["cohen_kappa_mean"] == pytest.approx(float(np.mean(kappas)), abs=1e-12)
    assert task["overall"]["cohen_pairs"] == len(kappas) == 15
    interval = analysis.agreement(data.load(store, "v38"), level="interval", cfg=analysis.DriftConfig(permutations=0))
    assert interval["tasks"][0]["overall"]["alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=mat, level_of_measurement="interval"), abs=1e-10
    )


def test_only_the_drifting_annotator_is_flagged(world):
    store, S = world["store"], world["S"]
    rep = analysis.agreement(data.load(store, "v38"), by="annotator")
    assert analysis.flagged(rep) == [S.truth["drifting"]]
    task = rep["tasks"][0]
    assert task["overall"]["alpha"] > 0.8  # overall agreement stays high while one annotator drifts
    dara = next(a for a in task["annotators"] if a["annotator"] == S.truth["drifting"])
    assert dara["bias"] > 0.3 and dara["tests"]["agreement"]["change"] < -0.3
    found = np.datetime64(dara["change_at"].rstrip("Z"))
    planted = np.datetime64(S.truth["drift_at"].rstrip("Z"))
    assert abs(found - planted) < np.timedelta64(7, "D")  # located within a week of the planted change
    assert task["reference_shift"]["shift"] is False  # the pool's scale did not move
    before = [p["bias"] for p in dara["timeline"] if p["week"] < "2026-W13"]
    after = [p["bias"] for p in dara["timeline"] if p["week"] >= "2026-W13"]
    assert max(before) < 0.3 < min(after)  # week by week, the scale moves up from the planted week
    by_week = analysis.agreement(data.load(store, "v38"), by="week", cfg=analysis.DriftConfig(permutations=0))
    assert [g["group"] for g in by_week["tasks"][0]["groups"]] == [f"2026-W{w:02d}" for w in range(10, 18)]


def test_contamination_shares_are_exact_on_planted_data(world):
    store, S = world["store"], world["S"]
    truth = S.truth
    planted = set(truth["planted_exact"]) | set(truth["planted_near"])
    base = 40  # the human rows of sft-base
    # v38, declared origins only
    rep = contamination.report(store, "v38")
    assert rep["generated_weight"] == truth["judgements_on_model_items"]
    assert rep["share"] == truth["judgements_on_model_items"] / (720 + base)
    # with the registered-outputs detector: the planted exact and near copies are found, nothing else
    rep = contamination.report(store, "v38", detector=contamination.RegisteredOutputs(store), chains=1000)
    assert rep["generated_weight"] == truth["judgements_on_model_items"] + truth["judgements_on_planted"]
    vias = rep["per_source"]["acme-ratings"]["via"]
    on_exact = sum(1 for r in S.records if r["item_id"] in set(truth["planted_exact"]))
    assert vias == {
        "detector:exact": on_exact,
        "detector:near": truth["judgements_on_planted"] - on_exact,
        "item_generator": truth["judgements_on_model_items"],
    }
    detected_items = {c["rating_row"] for c in rep["chains"] if c["match"].startswith("detector")}
    assert len(detected_items) == truth["judgements_on_planted"]
    assert rep["per_source"]["sft-base"]["generated_weight"] == 0
    (m,) = rep["models"]
    assert m["model"] == synth.MODEL and m["run_id"] == world["run"] and m["run_version_tag"] == "v37" and m["earlier"] is True
    # v39: per step, the weight share after the filter and after the upsample, from the raw records
    rep = contamination.report(store, "v39", detector=contamination.RegisteredOutputs(store), chains=5)
    assert rep["replay_matches_version"] is True
    gen = {r["item_id"] for r in S.records if r.get("item_generator") == synth.MODEL} | planted
    kept = [r for r in S.records if r["rating"] >= KEEP_MIN]
    w = {id(r): (2.0 if r["guideline_version"] == "2" else 1.0) for r in kept}
    shares = [
        (sum(1 for r in S.records if r["item_id"] in gen), 720 + base),
        (sum(1 for r in kept if r["item_id"] in gen), len(kept) + base),
        (sum(w[id(r)] for r in kept if r["item_id"] in gen), sum(w.values()) + base),
    ]
    assert [s["step"] for s in rep["steps"]] == ["inputs", "filter", "upsample"]
    for got, (num, den) in zip(rep["steps"], shares):
        assert got["generated_weight"] == num and got["weight"] == den and got["share"] == num / den
    chain = rep["chains"][0]
    assert chain["model"] == synth.MODEL and chain["run_id"] == world["run"] and chain["weight"] == 2.0 and chain["guideline"] == "2"


def test_near_match_detector_names_the_output(world):
    store, S = world["store"], world["S"]
    det = contamination.RegisteredOutputs(store)
    out = {o["output_id"]: o["text"] for o in S.model_outputs}
    near_item = S.truth["planted_near"][0]
    (m,) = det.detect([S.items[near_item]["response"]])
    assert m is not None and m.method == "near" and m.model == synth.MODEL and m.similarity >= 0.7
    assert out[m.output_id].split()[:5] == S.items[near_item]["response"].split()[:5]
    (exact,) = det.detect(["  " + S.items[S.truth["planted_exact"][0]]["response"].replace(" ", "\n ") + " "])
    assert exact is not None and exact.method == "exact"  # whitespace is normalized
    assert det.detect(["an unrelated sentence about gardening in the spring with tomatoes and beans"]) == [None]


def test_signal_per_step_and_guideline(world):
    store, S = world["store"], world["S"]
    rep = signal.monitor(store, "v39")
    (t,) = rep["tasks"]
    assert [s["step"] for s in t["steps"]] == ["inputs", "filter", "upsample"]
    kept = [r for r in S.records if r["rating"] >= KEEP_MIN]
    total = sum(2.0 if r["guideline_version"] == "2" else 1.0 for r in kept)
    for v in ("2", "3", "4", "5"):
        want = sum(2.0 if r["guideline_version"] == "2" else 1.0 for r in kept if str(r["rating"]) == v) / total
        assert t["steps"][-1]["shares"][v] == pytest.approx(want, abs=1e-12)
    assert "1" not in t["steps"][1]["shares"] or t["steps"][1]["shares"]["1"] == 0
    assert t["steps"][1]["drift"]["max_change_value"] == "1" and t["steps"][1]["drift"]["psi"] > 0.1
    assert t["steps"][2]["drift"]["psi"] < t["steps"][1]["drift"]["psi"]
    assert [g["guideline"] for g in t["per_guideline"]] == ["1", "2"] and "drift_from_previous" in t["per_guideline"][1]
    g2 = [r for r in kept if r["guideline_version"] == "2"]
    assert t["per_guideline"][1]["mean"] == pytest.approx(np.mean([r["rating"] for r in g2]))


def test_run_card_answers_the_three_questions(world):
    store = world["store"]
    card = runcard.run_card(store, version="v39")
    assert [g["guideline"] for g in card["annotations"]["by_guideline"]] == ["1", "2"]
    assert sum(b["judgements"] for g in card["annotations"]["by_guideline"] for b in g["batches"]) == card["annotations"]["judgements"]
    assert card["annotations"]["drifting_annotators"] == [world["S"].truth["drifting"]]
    assert [s["use"] for s in card["transformations"]["pipeline"]] == ["filter", "upsample"]
    assert all(len(s["step_id"]) == 64 and len(s["code"]) == 64 for s in card["transformations"]["pipeline"])
    (sig,) = card["signal"]
    assert sig["expected_basis"] == "collected" and sig["actual"]["1"] == 0 and sig["max_change_value"] == "1"
    assert sig["verdict"] == "major shift" and sig["psi"] > 0.25  # the filter removed every rating of 1
    md = runcard.markdown(card)
    for heading in ("## 1. Annotations included", "## 2. Transformations", "## 3. Expected vs actual"):
        assert heading in md
    collected = runcard.run_card(store, version="v38", detect=False)
    b1 = next(b for g in collected["annotations"]["by_guideline"] for b in g["batches"] if b["batch"] == "b1")
    mat, _ = _reliability([r for r in world["S"].records if r["batch"] == "b1"])
    assert b1["alpha"]["helpfulness"] == pytest.approx(krippendorff.alpha(reliability_data=mat, level_of_measurement="ordinal"), abs=1e-10)
    declared = runcard.run_card(store, version="v39", expected={"*": {"1": 0.0, "2": 0.2, "3": 0.3, "4": 0.3, "5": 0.2}})
    assert declared["signal"][0]["expected_basis"] == "declared" and declared["signal"][0]["expected"]["2"] == 0.2
    run = record_external(store, "v39", {"model": "model-v39"}, store.rows("v39").column("row_id").to_pylist())
    by_run = runcard.run_card(store, run)
    assert by_run["signal"][0]["expected_basis"] == "collected"  # the guidelines declare no expectation
    assert by_run["run"]["run_id"] == run and by_run["version"]["tag"] == "v39" and by_run["run"]["rows_outside_version"] == 0


def test_guidelines_are_immutable_and_diffable(world):
    store, tmp = world["store"], world["tmp"]
    g, new = guidelines.add(store, tmp / "g2.md", "2")
    assert not new and g.digest == guidelines.get(store, 2).digest
    (tmp / "g2b.md").write_text("something else\n")
    with pytest.raises(GuidelineError, match="register this text as a new version"):
        guidelines.add(store, tmp / "g2b.md", "2")
    d = guidelines.diff(store, 1, 2)
    assert "+A 5 needs a cited source." in d["diff"] and d["added_lines"] == 2 and d["removed_lines"] == 1
    assert d["batches"] == {"1": ["b1", "b2"], "2": ["b3", "b4"]}
    with pytest.raises(GuidelineError, match="rowtrail guideline add FILE --version 9"):
        guidelines.get(store, 9)


def test_verify_passes_with_feedback_entries(world):
    rep = world["store"].verify(allow_unsigned=True)
    assert rep.ok, rep.problems


def _store_with_guidelines(tmp_path):
    store = rt.init(tmp_path / "s")
    (tmp_path / "g.md").write_text("rate\n")
    for v in ("1", "2"):
        (tmp_path / f"g{v}.md").write_text(f"guideline {v}\n")
        guidelines.add(store, tmp_path / f"g{v}.md", v)
    store.sources.add("ann", kind="annotation-batch", license="MIT")
    return store


def test_pseudonyms_keep_the_key_out_of_the_store(tmp_path, monkeypatch):
    store = _store_with_guidelines(tmp_path)
    key = "k3y-that-never-lands-in-the-store"
    monkeypatch.setenv(annotations.KEY_ENV, key)
    rep = annotations.import_annotations(store, DATA / "plain.jsonl", source="ann", pseudonymize=True)
    assert rep.pseudonymized and len(rep.key_id) == 16
    store.commit("x", sign=False)
    names = set(data.load(store, "HEAD").annotator)
    assert all(n.startswith("anon-") for n in names) and len(names) == len(
        {json.loads(x)["annotator"] for x in (DATA / "plain.jsonl").read_text().splitlines()}
    )
    assert annotations.pseudonym("ana@acme.test", key.encode()) in names
    blob = b"".join(p.read_bytes() for p in Path(store.path).rglob("*") if p.is_file())
    assert key.encode() not in blob and b"acme.test" not in blob  # neither the key nor a raw annotator id
    entry = annotations.imports(store)[-1]
    assert entry["pseudonym_key_id"] == rep.key_id
    inside = Path(store.path) / "key.txt"
    inside.write_text(key)
    with pytest.raises(IngestError, match="inside the store"):
        annotations.import_annotations(store, DATA / "plain.jsonl", source="ann", pseudonymize=True, key_file=inside)
    monkeypatch.setenv(annotations.KEY_ENV, "short")
    with pytest.raises(IngestError, match="at least 16 bytes"):
        annotations.import_annotations(store, DATA / "plain.jsonl", source="ann", pseudonymize=True)


def _plain_pairs(path):
    return sorted((r["item_id"], r["annotator"], float(r["rating"])) for r in map(json.loads, path.read_text().splitlines()))


def test_argilla_and_label_studio_sample_exports(tmp_path):
    store = _store_with_guidelines(tmp_path)
    plain = _plain_pairs(DATA / "plain.jsonl")
    a = annotations.import_annotations(store, DATA / "argilla_records.json", source="ann", fmt="argilla", batch="argilla")
    assert a.judgements == len(plain) == 24  # the draft response and the suggestion are not judgements
    store.commit("argilla", tag="a", sign=False)
    ann = data.load(store, "a")
    assert sorted(zip(ann.item_id, ann.annotator, ann.rating.tolist())) == plain
    assert set(ann.platform) == {"argilla"} and set(ann.guideline) == {"1"}

    store2 = _store_with_guidelines(tmp_path / "ls")
    ls = annotations.import_annotations(store2, DATA / "label_studio_export.json", source="ann", fmt="label-studio")
    assert ls.judgements == 24  # the cancelled annotation and the prediction are skipped
    store2.commit("ls", tag="l", sign=False)
    ann = data.load(store2, "l")
    assert sorted(zip(ann.item_id, ann.annotator, ann.rating.tolist())) == plain
    assert set(ann.platform) == {"label-studio"}

    pw = annotations.import_annotations(store2, DATA / "label_studio_pairwise.json", source="ann", fmt="label-studio")
    assert pw.kinds == {"pair": 6, "label": 6}
    store2.commit("pairs", tag="p", sign=False)
    ann = data.load(store2, "p")
    pairs = ann.take(ann.kind == "pair")
    assert set(pairs.chosen) == {"resp-0-a", "resp-1-b", "resp-1-a", "resp-2-a"} and set(pairs.item_generator) == {"model-v37"}
    assert set(pairs.annotator) == {"ana@acme.test", "ben@acme.test"}
    rep = analysis.agreement(ann, cfg=analysis.DriftConfig(permutations=0))
    tasks = {t["task"]: t for t in rep["tasks"]}
    assert tasks["comparison"]["kind"] == "pair" and tasks["comparison"]["level"] == "nominal" and tasks["safety"]["kind"] == "label"


@pytest.mark.parametrize(
    ("text", "fmt", "line", "field", "message"),
    [
        (
            '{"item_id": "i1", "annotator": "a", "guideline_version": "1", "collected_at": "2026-01-01T00:00:00Z", "rating": 3}\n{"item_id": "i2", "guideline_version": "1", "collected_at": "2026-01-01T00:00:00Z", "rating": 3}\n',
            "jsonl",
            2,
            "annotator",
            "missing annotator",
        ),
        (
            '{"item_id": "i1", "annotator": "a", "guideline_version": "1", "collected_at": "2026-01-01T00:00:00Z", "rating": 3, "label": "x"}\n',
            "jsonl",
            1,
            "rating",
            "exactly one of",
        ),
        (
            '{"item_id": "i1", "annotator": "a", "guideline_version": "1", "collected_at": "yesterday", "rating": 3}\n',
            "jsonl",
            1,
            "collected_at",
            "RFC 3339",
        ),
        (
            '{"item_id": "i1", "annotator": "a", "guideline_version": "7", "collected_at": "2026-01-01T00:00:00Z", "rating": 3}\n',
            "jsonl",
            1,
            "guideline_version",
            "not registered",
        ),
        (
            '{"item_id": "i1", "annotator": "a", "guideline_version": "1", "collected_at": "2026-01-01T00:00:00Z", "rating": "high"}\n',
            "jsonl",
            1,
            "rating",
            "must be a number",
        ),
        (
            '{"item_id": "i1", "annotator": "a", "guideline_version": "1", "collected_at": "2026-01-01T00:00:00Z", "chosen": "x", "rejected": "x"}\n',
            "jsonl",
            1,
            "rejected",
            "the same item",
        ),
        (
            "item_id,annotator,guideline_version,collected_at,rating\ni1,a,1,2026-01-01T00:00:00Z,4\ni2,,1,2026-01-01T00:00:00Z,4\n",
            "csv",
            3,
            "annotator",
            "missing annotator",
        ),
        (
            '[\n  {"id": "r1", "fields": {}, "responses": {"q": [{"value": 1, "user_id": "u"}]}},\n  {"id": "r2", "fields": {}, "responses": {"q": [{"user_id": "u"}]}}\n]\n',
            "argilla",
            3,
            "q",
            "must be an object with 'value'",
        ),
        (
            '[\n  {"id": 1,\n   "data": {},\n   "annotations": [{"completed_by": 1, "result": [{"from_name": "c", "type": "choices", "value": {"choices": ["a", "b"]}}]}]}\n]\n',
            "label-studio",
            2,
            "c",
            "2 choices",
        ),
        (
            '[\n  {"id": 1, "data": {}, "annotations": []},\n  {"id": 2, "data": {}, "annotations": [}\n]\n',
            "label-studio",
            3,
            None,
            "malformed JSON",
        ),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path, text, fmt, line, field, message):
    store = _store_with_guidelines(tmp_path)
    path = tmp_path / f"bad.{'csv' if fmt == 'csv' else 'json'}"
    path.write_text(text)
    with pytest.raises(IngestError, match=message) as err:
        annotations.import_annotations(
            store,
            path,
            source="ann",
            fmt=fmt,
            collected_at="2026-01-01T00:00:00Z" if fmt in ("argilla", "label-studio") else None,
            guideline_version="1" if fmt in ("argilla", "label-studio") else None,
        )
    assert err.value.file == str(path) and err.value.line == line and err.value.field == field
    assert store.state.seq == rt.open(store.path).state.seq and not annotations.imports(store)  # nothing written


def test_jsonl_records_may_hold_raw_line_separators_json_allows(tmp_path):
    """U+2028, U+2029 and U+0085 are legal raw inside JSON strings: a record holding them is one
    record, and a bad line after it is still named by its physical line."""
    store = _store_with_guidelines(tmp_path)
    base = {"annotator": "a1", "guideline_version": "1", "collected_at": "2026-01-01T00:00:00Z", "platform": "p"}
    recs = [dict(base, item_id=f"item-{k}", label=f"ok\u2028{k}\u2029x\x85y") for k in range(3)]
    path = tmp_path / "sep.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    annotations.import_annotations(store, path, source="ann")
    store.commit("ratings", tag="r1", sign=False)
    labels = sorted(store.rows("r1").column("label").to_pylist())
    assert labels == [f"ok\u2028{k}\u2029x\x85y" for k in range(3)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text(encoding="utf-8") + '{"item_id": \n', encoding="utf-8")
    with pytest.raises(IngestError, match="malformed JSON") as err:
        annotations.import_annotations(store, bad, source="ann")
    assert err.value.line == 4


def test_import_refuses_a_source_of_another_kind(tmp_path):
    store = _store_with_guidelines(tmp_path)
    store.sources.add("web", kind="crawl", license="MIT")
    with pytest.raises(SourceError, match="annotation-batch"):
        annotations.import_annotations(store, DATA / "plain.jsonl", source="web")


def test_feedback_is_not_imported_by_rowtrail():
    import subprocess
    import sys

    code = "import sys, rowtrail; print(any(m.startswith('rowtrail.feedback') or m in ('sklearn', 'krippendorff') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True).stdout.strip()
    assert out == "False"


@pytest.mark.slow
def test_drift_flag_rate_over_seeds():
    """Twenty seeds of the default set with the planted drift, and twenty without: the drifting
    annotator is flagged in at least 18, a stable annotator in none (measured: 19/20 and 0/220)."""

    def flagged(S):
        n = len(S.records)
        cols = {"source_id": np.array(["x"] * n, dtype=object), "attr.annotation_kind": np.array(["rating"] * n, dtype=object)}
        for k in ("annotator", "guideline_version", "batch", "collected_at", "item_id", "task", "rating"):
            cols["attr." + k] = np.array([r[k] for r in S.records], dtype=object)
        ann = data.build("v", None, np.array([str(i) for i in range(n)], dtype=object), np.ones(n), cols)
        return analysis.flagged(analysis.agreement(ann))

    hits = false = 0
    for seed in range(20):
        f = flagged(synth.generate(seed=seed))
        hits += synth.DRIFTING in f
        false += len([x for x in f if x != synth.DRIFTING])
        false += len(flagged(synth.generate(seed=seed, drift=0.0)))
    assert hits >= 18 and false == 0


def test_pairs_over_corpus_rows_take_the_rows_origin(tmp_path):
    """Completions of a model ingested as rows of a source whose generator is the model; preference
    pairs name them by row id: a pair with a model-made side derives from the model (``item_row``)."""
    store = _store_with_guidelines(tmp_path)
    store.sources.add("completions", kind="teacher-model", license="MIT", generator="model-v37")
    store.sources.add("human-answers", kind="partner-dump", license="MIT")
    store.ingest(pa.table({"id": ["c1", "c2"], "text": ["model answer one", "model answer two"]}), source="completions", key_field="id")
    store.ingest(pa.table({"id": ["h1", "h2"], "text": ["human answer one", "human answer two"]}), source="human-answers", key_field="id")
    store.commit("answers", tag="a", sign=False)
    ids = {r["source_key"]: r["row_id"] for r in store.rows("a").to_pylist()}
    recs = [
        {
            "item_id": "p1",
            "annotator": "u1",
            "guideline_version": "1",
            "collected_at": "2026-01-01T00:00:00Z",
            "chosen": ids["c1"],
            "rejected": ids["h1"],
        },
        {
            "item_id": "p2",
            "annotator": "u1",
            "guideline_version": "1",
            "collected_at": "2026-01-01T00:00:00Z",
            "chosen": ids["h2"],
            "rejected": ids["h1"],
        },
        {
            "item_id": "p3",
            "annotator": "u1",
            "guideline_version": "1",
            "collected_at": "2026-01-01T00:00:00Z",
            "chosen": ids["h2"],
            "rejected": ids["c2"],
        },
    ]
    recs.append({**recs[0], "chosen": ids["c2"], "rejected": ids["h2"]})  # the same annotator, another pair of the same item
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    annotations.import_annotations(store, tmp_path / "pairs.jsonl", source="ann")
    store.commit("pairs", tag="b", sign=False)
    rep = contamination.report(store, "b", chains=10)
    assert rep["per_source"]["ann"]["generated_rows"] == 3 and rep["per_source"]["ann"]["via"] == {"item_row": 3}
    assert rep["per_source"]["completions"]["via"] == {"source": 2} and rep["per_source"]["human-answers"]["generated_rows"] == 0
    assert {c["output"] for c in rep["chains"] if c["match"] == "item_row"} == {ids["c1"], ids["c2"]}
    assert rep["share"] == 5 / 8


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "x", "left", "2026-01-01T00:00:00Z", "1"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["value", "user_id", "rank", "choices", "rating", "selected", "status"]), inner, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from(
    [
        "item_id",
        "annotator",
        "guideline_version",
        "collected_at",
        "label",
        "rating",
        "chosen",
        "rejected",
        "margin",
        "item",
        "id",
        "responses",
        "fields",
        "metadata",
        "data",
        "annotations",
        "result",
        "type",
        "from_name",
        "value",
        "completed_by",
        "was_cancelled",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(st.dictionaries(_keys, _json_values, max_size=8), min_size=1, max_size=4),
    fmt=st.sampled_from(["jsonl", "argilla", "label-studio"]),
)
def test_readers_of_untrusted_exports_fail_only_with_file_and_line(tmp_path, records, fmt):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(records, indent=1) if fmt != "jsonl" else "".join(json.dumps(r) + "\n" for r in records))
    try:
        _fmt, out = annotations.read(path, fmt, defaults={"guideline_version": "1", "collected_at": "2026-01-01T00:00:00Z"})
    except IngestError as exc:
        assert exc.file == str(path) and isinstance(exc.line, int) and 1 <= exc.line <= path.read_text().count("\n") + 1
    else:
        assert all(j.kind in ("label", "rating", "pair") and j.item_id and j.annotator for j in out)


@pytest.mark.parametrize(
    ("fmt", "records"),
    [
        (
            "argilla",
            [{"id": "r", "responses": {"q": [{"value": [{"value": "a", "rank": "x"}, {"value": "b", "rank": 1}], "user_id": "u"}]}}],
        ),
        ("argilla", [{"id": "r", "responses": {"q": 3}}]),
        ("argilla", [{"id": "r", "responses": {"q": [{"value": 1, "user_id": "u"}]}, "metadata": [1]}]),
        (
            "label-studio",
            [{"id": 1, "data": {}, "annotations": [{"completed_by": 1, "result": [{"type": "choices", "from_name": "c", "value": 3}]}]}],
        ),
        ("label-studio", [{"id": 1, "data": {}, "annotations": [{"completed_by": 1, "result": [1]}]}]),
        ("jsonl", [{"item_id": "i", "annotator": "u", "rating": 1, "collected_at": 1e30}]),
    ],
)
def test_malformed_structures_are_ingest_errors(tmp_path, fmt, records):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(records, indent=1) if fmt != "jsonl" else json.dumps(records[0]) + "\n")
    with pytest.raises(IngestError) as err:
        annotations.read(path, fmt, defaults={"guideline_version": "1", "collected_at": "2026-01-01T00:00:00Z"})
    assert err.value.file == str(path) and err.value.line in (1, 2)


def _in_memory(records):
    n = len(records)
    cols = {"source_id": np.array(["x"] * n, dtype=object), "attr.annotation_kind": np.array(["rating"] * n, dtype=object)}
    for k in ("annotator", "guideline_version", "batch", "collected_at", "item_id", "task", "rating"):
        cols["attr." + k] = np.array([r[k] for r in records], dtype=object)
    return data.build("v", None, np.array([str(i) for i in range(n)], dtype=object), np.ones(n), cols)


def test_a_shared_reference_shift_is_flagged_for_the_pool_not_for_annotators():
    """Everyone's scale moves up one point from week 5 on: agreement stays high and no annotator
    drifts against the others, but the pool's label distribution shifts."""
    S = synth.generate(drift=0.0)
    shifted = [{**r, "rating": min(5, r["rating"] + 1)} if r["collected_at"] >= "2026-03-30" else r for r in S.records]
    rep = analysis.agreement(_in_memory(shifted))
    task = rep["tasks"][0]
    assert analysis.flagged(rep) == [] and task["overall"]["alpha"] > 0.7
    ref = task["reference_shift"]
    assert ref["shift"] is True and ref["p"] <= 0.01
    assert abs(np.datetime64(ref["change_at"].rstrip("Z")) - np.datetime64("2026-03-30T00:00:00")) < np.timedelta64(3, "D")
    assert ref["labels_after"]["5"] > ref["labels_before"]["5"]
    assert analysis.agreement(_in_memory(S.records))["tasks"][0]["reference_shift"]["shift"] is False


def test_guidelines_declare_the_expected_distribution(tmp_path):
    store = _store_with_guidelines(tmp_path)  # versions 1 and 2 without an expectation
    (tmp_path / "g3.md").write_text("guideline 3\n")
    (tmp_path / "g4.md").write_text("guideline 4\n")
    g3, _ = guidelines.add(store, tmp_path / "g3.md", "3", expected={"2": 1, "3": 2, "4": 1})
    assert g3.expected == {"*": {"2": 0.25, "3": 0.5, "4": 0.25}}
    guidelines.add(store, tmp_path / "g4.md", "4", expected={"helpfulness": {"3": 0.5, "4": 0.5}})
    with pytest.raises(GuidelineError, match="another expected distribution"):
        guidelines.add(store, tmp_path / "g3.md", "3", expected={"2": 1})
    with pytest.raises(GuidelineError, match="non-negative"):
        guidelines.add(store, tmp_path / "g4.md", "5", expected={"2": -1})
    recs = [
        {
            "item_id": f"i{i}",
            "annotator": a,
            "guideline_version": "3" if i < 4 else "4",
            "collected_at": "2026-01-01T00:00:00Z",
            "task": "helpfulness",
            "rating": 3 + (i % 2),
        }
        for i in range(8)
        for a in ("u1", "u2")
    ]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    annotations.import_annotations(store, tmp_path / "r.jsonl", source="ann")
    store.commit("r", tag="r", sign=False)
    (sig,) = runcard.run_card(store, version="r", detect=False)["signal"]
    # each guideline holds half the weight: 0.5 × (0.25, 0.5, 0.25) + 0.5 × (0, 0.5, 0.5)
    assert sig["expected_basis"] == "guidelines"
    assert sig["expected"] == pytest.approx({"2": 0.125, "3": 0.5, "4": 0.375})
    assert sig["actual"] == {"2": 0.0, "3": 0.5, "4": 0.5}
