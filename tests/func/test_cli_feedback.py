"""Feedback provenance through the CLI: guideline add/list/diff, annotations import (and its errors),
agreement, signal, model add, contamination and run-card, on a store holding the seeded set."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import rowtrail as rt
from rowtrail.feedback import synth
from rowtrail.ops.runs import record_external


def test_feedback_commands(tmp_path):
    S = synth.generate(items=120, drift=0.9)
    store = rt.init(tmp_path / "store")
    store.sources.add("acme", kind="annotation-batch", license="MIT", legal_basis="contract")
    synth.write_plain(S.records, tmp_path / "ratings.jsonl")
    synth.write_outputs(S.model_outputs, tmp_path / "outputs.jsonl")
    (tmp_path / "g1.md").write_text("rate 1 to 5\n")
    (tmp_path / "g2.md").write_text("rate 1 to 5\na 5 needs a source\n")
    env = dict(os.environ, ROWTRAIL_STORE=str(tmp_path / "store"), COLUMNS="200")

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "rowtrail", *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert p.returncode == code, p.stdout + p.stderr
        return p

    assert json.loads(cli("guideline", "add", "g1.md", "--version", "1", "--json").stdout)["new"] is True
    assert "register this text as a new version" in cli("guideline", "add", "g2.md", "--version", "1", code=1).stderr
    g2 = json.loads(
        cli("guideline", "add", "g2.md", "--version", "2", "--expected", '{"1": 1, "2": 1, "3": 2, "4": 1, "5": 0}', "--json").stdout
    )
    assert g2["expected"] == {"*": {"1": 0.2, "2": 0.2, "3": 0.4, "4": 0.2, "5": 0.0}}
    (tmp_path / "bad.jsonl").write_text(json.dumps(S.records[0]) + "\n" + json.dumps({**S.records[1], "rating": "high"}) + "\n")
    err = cli("annotations", "import", "bad.jsonl", "--source", "acme", code=1).stderr
    assert "bad.jsonl:2" in err and "rating" in err
    rep = json.loads(cli("annotations", "import", "ratings.jsonl", "--source", "acme", "--json").stdout)
    assert rep["judgements"] == len(S.records) and rep["guideline_versions"] == ["1", "2"]
    store.commit("ratings", tag="v1", sign=False)
    run = record_external(store, "v1", {"model": synth.MODEL}, store.rows("v1").column("row_id").to_pylist()[:5])
    assert f"with {len(S.model_outputs)} output(s)" in cli("model", "add", synth.MODEL, "--run", run, "--outputs", "outputs.jsonl").stdout

    agreement = json.loads(cli("agreement", "v1", "--by", "annotator", "--json").stdout)
    annotators = agreement["tasks"][0]["annotators"]
    assert all(isinstance(a["drift"], bool) for a in annotators)
    assert [a["annotator"] for a in annotators if a["drift"]] == [synth.DRIFTING]
    cli("agreement", "v1", "--by", "month", code=2)

    diff = json.loads(cli("guideline", "diff", "1", "2", "--json").stdout)
    assert diff["batches"] == {"1": ["b1", "b2"], "2": ["b3", "b4"]} and "+a 5 needs a source" in diff["diff"]

    cont = json.loads(cli("contamination", "v1", "--json").stdout)
    want = S.truth["judgements_on_model_items"] + S.truth["judgements_on_planted"]
    assert cont["generated_weight"] == want and cont["share"] == want / len(S.records)
    assert cont["models"][0]["run_id"] == run

    sig = json.loads(cli("signal", run, "--json").stdout)  # a run stands for the version it trained on
    assert [g["guideline"] for g in sig["tasks"][0]["per_guideline"]] == ["1", "2"]

    cli("run-card", "--version", "v1", "-o", "card.md")
    md = (tmp_path / "card.md").read_text()
    for heading in ("## 1. Annotations included", "## 2. Transformations", "## 3. Expected vs actual", "## Model-derived signal"):
        assert heading in md
    card = json.loads(cli("run-card", run, "--expected", '{"1": 0.1, "2": 0.2, "3": 0.3, "4": 0.2, "5": 0.2}', "--json").stdout)
    assert card["run"]["run_id"] == run and card["signal"][0]["expected_basis"] == "declared"
    cli("verify", "--allow-unsigned")
