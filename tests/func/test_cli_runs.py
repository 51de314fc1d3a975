"""Runs through the CLI: runs (and which consumed a source), run show, run record, run merge
errors, and attribute by row and by source."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import rowtrail as rt  # noqa: E402


def test_runs_commands(tmp_path, rowtrail_home, write_jsonl):
    store = rt.init(tmp_path / "store")
    store.sources.add("a", kind="other", license="MIT", legal_basis="contract")
    store.sources.add("b", kind="crawl", license="CC-BY-4.0", legal_basis="tdm-exception")
    store.ingest(write_jsonl([{"id": i, "x": [i / 8, 1.0], "y": i % 2} for i in range(8)], "a.jsonl"), source="a", key_field="id")
    store.ingest(write_jsonl([{"id": i, "x": [3.0, -3.0], "y": 1} for i in range(2)], "b.jsonl"), source="b", key_field="id")
    store.commit("v1", tag="v1", sign=False)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with rt.training.record(store, "v1", model, opt) as rec:
        for batch in rt.training.loader(store, "v1", fields=["x", "y"], batch_size=5, shuffle=0):
            opt.zero_grad()
            x = torch.tensor(batch["x"], dtype=torch.float32)
            torch.nn.functional.cross_entropy(model(x), torch.tensor(batch["y"])).backward()
            opt.step()
            rec.step(batch["row_id"])
    env = dict(os.environ, ROWTRAIL_STORE=str(tmp_path / "store"), COLUMNS="200")

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "rowtrail", *args], env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == code, p.stdout + p.stderr
        return p

    runs = json.loads(cli("runs", "--json").stdout)
    assert [r["run_id"] for r in runs] == [rec.run_id] and runs[0]["rows_consumed"] == 10
    assert json.loads(cli("runs", "--consumed-source", "b", "--json").stdout)[0]["rows"] == 2
    assert json.loads(cli("run", "show", rec.run_id, "--json").stdout)["steps"] == 2
    top = json.loads(cli("attribute", rec.run_id, "--group", "weight", "--top", "3", "--json").stdout)
    assert len(top["top"]) == 3 and top["top"][0]["license"] in ("MIT", "CC-BY-4.0")
    by_src = json.loads(cli("attribute", rec.run_id, "--group", "weight", "--by", "source", "--json").stdout)
    assert {t["source_id"] for t in by_src["top"]} == {"a", "b"}
    assert "rows behind group weight" in cli("attribute", rec.run_id, "--group", "weight").stdout
    cli("attribute", rec.run_id, "--group", "nope", code=1)
    (tmp_path / "cfg.json").write_text('{"framework": "jax"}')
    assert "registered run-" in cli("run", "record", "--version", "v1", "--config", str(tmp_path / "cfg.json")).stdout
    assert len(json.loads(cli("runs", "--json").stdout)) == 2
    cli("run", "merge", rec.run_id, code=1)
