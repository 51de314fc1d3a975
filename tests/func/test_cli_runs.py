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


MODEL_SCRIPT = '''
import torch

def load():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    m.load_state_dict(torch.load(__file__.replace("model.py", "final.pt"), weights_only=True))
    return m

def retrain(row_ids):
    import rowtrail as rt
    store = rt.open(__file__.replace("model.py", "store"))
    keep = set(row_ids)
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    t = store.rows("v1")
    rows = [(r, x, y) for r, x, y in zip(t.column("row_id").to_pylist(), t.column("x").to_pylist(), t.column("y").to_pylist()) if r in keep]
    x = torch.tensor([r[1] for r in rows], dtype=torch.float32)
    y = torch.tensor([r[2] for r in rows])
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    import numpy as np
    q = np.load(__file__.replace("model.py", "test.npz"))
    out = m(torch.tensor(q["inputs"]))
    return (-torch.nn.functional.cross_entropy(out, torch.tensor(q["targets"]), reduction="none")).tolist()
'''


def test_attribute_test_examples_with_governance_and_a_verified_counterfactual(tmp_path, rowtrail_home, write_jsonl):
    import numpy as np

    store = rt.init(tmp_path / "store")
    store.sources.add("main", kind="other", license="MIT", legal_basis="contract")
    store.sources.add("odd", kind="partner-dump", license="CC-BY-4.0", legal_basis="consent")
    rng = np.random.default_rng(0)
    rows = [{"id": i, "x": [float(v) for v in rng.normal(size=2) + (2 if i % 2 else -2)], "y": i % 2} for i in range(40)]
    store.ingest(write_jsonl(rows, "a.jsonl"), source="main", key_field="id")
    # the only rows that label a class-0 region as class 1: they hurt class-0 test examples there
    store.ingest(write_jsonl([{"id": i, "x": [-2.0, -2.0], "y": 1} for i in range(4)], "b.jsonl"), source="odd", key_field="id")
    store.commit("v1", tag="v1", sign=False)
    t = store.rows("v1")
    x = torch.tensor(t.column("x").to_pylist(), dtype=torch.float32)
    y = torch.tensor(t.column("y").to_pylist())
    ids = t.column("row_id").to_pylist()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with rt.training.record(store, "v1", model, opt, features=dict(dim=64), checkpoints=5) as rec:
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            rec.step(ids)
    torch.save(model.state_dict(), tmp_path / "final.pt")
    (tmp_path / "model.py").write_text(MODEL_SCRIPT)
    np.savez(tmp_path / "test.npz", inputs=np.array([[-2.0, -2.0], [2.0, 2.0]], np.float32), targets=np.array([0, 1]), names=np.array(["neg", "pos"]))
    env = dict(os.environ, ROWTRAIL_STORE=str(tmp_path / "store"), COLUMNS="200")

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "rowtrail", *args], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
        assert p.returncode == code, p.stdout + p.stderr
        return p

    base = ["attribute", rec.run_id, "--model", "model.py:load", "--test", "test.npz", "--measure", "loss"]
    got = json.loads(cli(*base, "--top", "4", "--json").stdout)
    neg = got["queries"][0]
    assert neg["name"] == "neg" and {h["source_id"] for h in neg["harmful"]} == {"odd"} and len(neg["harmful"]) == 4
    assert neg["harmful"][0]["license"] == "CC-BY-4.0" and neg["harmful"][0]["legal_basis"] == "consent"
    assert all(h["source_id"] == "main" for h in neg["helpful"])
    cf = json.loads(cli(*base, "--remove-source", "odd", "--verify", "model.py:retrain", "--json").stdout)["counterfactual"]
    assert cf["removed"] == 4 and cf["predicted"][0] > 0 and cf["actual"][0] > 0  # without them, "neg" does better
    assert "harmful rows for test example neg" in cli(*base, "--query", "0").stdout
    cli(*base, "--group", "0", code=2)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert "bad.npz" in cli("attribute", rec.run_id, "--model", "model.py:load", "--test", "bad.npz", code=1).stderr
