"""The version-backed DataLoader: batches carry row ids, seeded shuffles repeat, weighted sampling
follows version weights, and a recorder fed from it records exactly the rows it served."""

from __future__ import annotations

import collections

import pytest

torch = pytest.importorskip("torch")

import rowtrail as rt  # noqa: E402
from rowtrail import steps  # noqa: E402


@pytest.fixture
def store(tmp_store, write_jsonl):
    tmp_store.sources.add("a", kind="other")
    tmp_store.sources.add("b", kind="other")
    tmp_store.ingest(write_jsonl([{"id": i, "x": [float(i), 1.0], "y": i % 2} for i in range(20)], "a.jsonl"), source="a", key_field="id")
    tmp_store.ingest(write_jsonl([{"id": i, "x": [float(-i), 1.0], "y": 1} for i in range(10)], "b.jsonl"), source="b", key_field="id")
    tmp_store.apply([steps.upsample(source="b", factor=4)])
    tmp_store.commit("v1", tag="v1", sign=False)
    return tmp_store


def test_batches_carry_row_ids_and_shuffles_repeat(store):
    ids = set(store.rows("v1").column("row_id").to_pylist())
    batches = list(rt.training.loader(store, "v1", fields=["x", "y"], batch_size=8))
    assert sum(len(b["row_id"]) for b in batches) == 30 and {r for b in batches for r in b["row_id"]} == ids
    first = [b["row_id"] for b in rt.training.loader(store, "v1", fields=["x"], batch_size=8, shuffle=7)]
    again = [b["row_id"] for b in rt.training.loader(store, "v1", fields=["x"], batch_size=8, shuffle=7)]
    assert first == again and first != [b["row_id"] for b in batches]
    with pytest.raises(rt.RowtrailError, match="no field"):
        rt.training.loader(store, "v1", fields=["nope"])


def test_weighted_sampling_follows_version_weights(store):
    src = dict(zip(store.rows("v1").column("row_id").to_pylist(), store.rows("v1").column("source_id").to_pylist()))
    counts = collections.Counter(src[r] for b in rt.training.loader(store, "v1", fields=["x"], batch_size=64, shuffle=1, weighted=True, num_samples=6000) for r in b["row_id"])
    assert counts["b"] / counts["a"] == pytest.approx(40 / 20, rel=0.15)  # b: 10 rows × weight 4; a: 20 × 1


def test_recorder_fed_by_the_loader_records_the_rows_it_served(store):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    served = []

    def to_tensors(row):
        return torch.tensor(row["x"], dtype=torch.float32), torch.tensor(row["y"])

    with rt.training.record(store, "v1", model, opt) as rec:
        for batch in rt.training.loader(store, "v1", fields=["x", "y"], batch_size=10, shuffle=0, transform=to_tensors):
            x, y = batch["inputs"]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            rec.step(batch["row_id"])
            served.extend(batch["row_id"])
    t = store.run(rec.run_id).table("steps")
    assert [bytes(r).hex() for r in t.column("row_id").to_pylist()] == served
