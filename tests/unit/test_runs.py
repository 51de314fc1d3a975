"""The run ledger without torch: saving a run, the runs that consumed a row or a source, group
attribution with governance, external runs, trace and opt-out reporting runs, verify."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rowtrail import hashing
from rowtrail.errors import RefError
from rowtrail.ops.runs import record_external, runs_consuming, save_run


def ids_col(hexes):
    raw = hashing.ids_from_hex(hexes)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), len(raw), [None, pa.py_buffer(raw.tobytes())])


@pytest.fixture
def store(tmp_store, write_jsonl):
    tmp_store.sources.add("good", kind="other", license="MIT", legal_basis="contract")
    tmp_store.sources.add("other", kind="other", license="CC-BY-4.0", legal_basis="consent")
    tmp_store.ingest(write_jsonl([{"id": i, "text": f"good {i}"} for i in range(6)], "g.jsonl"), source="good", key_field="id")
    tmp_store.ingest(write_jsonl([{"id": i, "text": f"other {i}"} for i in range(4)], "o.jsonl"), source="other", key_field="id")
    tmp_store.commit("v1", tag="v1", sign=False)
    return tmp_store


def ledger(store):
    rows = store.rows("v1")
    ids = rows.column("row_id").to_pylist()
    src = rows.column("source_id").to_pylist()
    batches = [ids[:5], ids[5:]]
    steps = pa.table({"step": pa.array([s for s, b in enumerate(batches) for _ in b], pa.int64()), "position": pa.array([p for b in batches for p in range(len(b))], pa.int32()), "row_id": ids_col([r for b in batches for r in b]), "weight": pa.array([1.0] * len(ids))})
    meta = pa.table({"step": pa.array([0, 1], pa.int64()), "lr": [0.1, 0.1], "loss": [1.0, 0.5], "batch_size": pa.array([5, 5], pa.int32())})
    # the one 'good' row with the largest negative dot dominates the update
    dots = [-(10.0 if (s == "good" and i == 0) else 1.0) for i, s in enumerate(src)]
    contrib = pa.table({"step": steps.column("step"), "row_id": steps.column("row_id"), "group": pa.array(["layer1"] * len(ids)), "dot": pa.array(dots), "grad_norm": pa.array([1.0] * len(ids))})
    groups = pa.table({"step": pa.array([0, 1], pa.int64()), "group": ["layer1", "layer1"], "delta_norm": [1.0, 1.0], "update_sq": [1.0, 1.0]})
    return ids, src, save_run(store, version="v1", config={"lr": 0.1}, steps=steps, step_meta=meta, groups=groups, contributions=contrib)


def test_group_attribution_ranks_rows_and_sources_with_governance(store):
    ids, src, run_id = ledger(store)
    run = store.run(run_id)
    res = run.attribute(group="layer1", top=3)
    first = ids[src.index("good")]
    assert res["top"][0]["row_id"] == first and res["top"][0]["contribution"] == pytest.approx(1.0)
    assert res["top"][0]["source_id"] == "good" and res["top"][0]["license"] == "MIT"
    assert res["total"] == pytest.approx(0.1 * (10 + 9))
    by_src = run.attribute(group="layer1", by="source")
    assert by_src["top"][0]["source_id"] == "good"
    assert run.attribute(group="layer1", steps=(1, 2))["total"] == pytest.approx(0.5)
    with pytest.raises(RefError, match="no group"):
        run.attribute(group="nope")
    with pytest.raises(ValueError, match="needs model="):
        run.attribute(model=object())


def test_runs_consuming_trace_optout_and_verify(store):
    ids, src, run_id = ledger(store)
    ext = record_external(store, "v1", {"framework": "other"}, ids[:2])
    assert [r["run_id"] for r in runs_consuming(store, row=ids[0])] == [run_id, ext]
    by_other = [r["run_id"] for r in runs_consuming(store, source="other")]
    assert run_id in by_other and (ext in by_other) == ("other" in src[:2])
    assert store.trace(ids[0])["runs"][0]["run_id"] == run_id
    assert store.verify(allow_unsigned=True).ok
    res = store.optout(source="other", reason="consent withdrawn", sign=False)
    assert [r["run_id"] for r in res["receipt"]["runs_that_consumed"]] == by_other
    assert [r["run_id"] for r in store.runs()] == [run_id, ext]
    with pytest.raises(RefError):
        record_external(store, "v1", {}, ["not-hex"])
    assert np.all(np.array([r["rows_outside_version"] for r in store.runs()]) == 0)
