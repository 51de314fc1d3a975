"""End to end: train a real model on a version's rows under the recorder, then ask which rows and
sources shaped a parameter group, with their governance; the run shows up in trace and runs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rowtrail as rt  # noqa: E402
from rowtrail.ops.runs import runs_consuming  # noqa: E402


def test_a_row_with_outsized_gradients_leads_the_group_attribution(tmp_store, write_jsonl):
    s = tmp_store
    s.sources.add("clean", kind="partner-dump", license="MIT", legal_basis="contract")
    s.sources.add("noisy", kind="crawl", license="CC-BY-4.0", legal_basis="tdm-exception")
    rng = np.random.default_rng(0)
    clean = [{"id": i, "x": rng.normal(size=4).round(3).tolist(), "y": int(i % 2)} for i in range(31)]
    noisy = [{"id": 0, "x": [40.0, -40.0, 40.0, -40.0], "y": 1}]  # a huge input: a huge share of the update
    s.ingest(write_jsonl(clean, "c.jsonl"), source="clean", key_field="id")
    s.ingest(write_jsonl(noisy, "n.jsonl"), source="noisy", key_field="id")
    v = s.commit("v1", tag="v1", sign=False)
    table = s.rows("v1")
    ids = table.column("row_id").to_pylist()
    X = torch.tensor(table.column("x").to_pylist(), dtype=torch.float32)
    Y = torch.tensor(table.column("y").to_pylist())
    planted = ids[table.column("source_id").to_pylist().index("noisy")]
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)  # logistic regression: groups "weight" and "bias"
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with rt.training.record(s, v, model, opt) as rec:
        for _epoch in range(3):
            for start in range(0, len(ids), 8):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(X[start : start + 8]), Y[start : start + 8])
                loss.backward()
                opt.step()
                rec.step(ids[start : start + 8], loss=loss)
    run = s.run(rec.run_id)
    res = run.attribute(group="weight", top=3)
    assert res["top"][0]["row_id"] == planted
    assert res["top"][0]["source_id"] == "noisy" and res["top"][0]["legal_basis"] == "tdm-exception"
    # under plain SGD the contributions of every step sum to the group's squared update
    assert res["total"] == pytest.approx(res["update_sq"], rel=1e-3)
    assert run.attribute(group="weight", by="source")["top"][0]["source_id"] == "noisy"
    assert [r["run_id"] for r in runs_consuming(s, source="noisy")] == [rec.run_id]
    batch = ids.index(planted) // 8
    assert s.trace(planted)["runs"][0]["steps"] == [batch, batch + 4, batch + 8]  # its batch in each epoch
    assert s.verify(allow_unsigned=True).ok
