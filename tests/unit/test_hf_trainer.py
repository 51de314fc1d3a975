"""A Hugging Face Trainer run recorded through the callback and collator: every optimizer step
names the rows of its micro-batches, with gradient accumulation, and the run is in the store."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import rowtrail as rt  # noqa: E402


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, x=None, labels=None):
        logits = self.lin(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def test_trainer_run_is_recorded_with_its_rows(tmp_store, write_jsonl, tmp_path):
    s = tmp_store
    s.sources.add("a", kind="other")
    s.ingest(write_jsonl([{"id": i, "x": [i / 10, 1.0], "y": i % 2} for i in range(24)], "a.jsonl"), source="a", key_field="id")
    s.commit("v1", tag="v1", sign=False)
    ds = rt.training.dataset(s, "v1", fields=["x", "y"], transform=None)
    examples = [{"row_id": r["row_id"], "x": torch.tensor(r["x"], dtype=torch.float32), "labels": r["y"]} for r in (ds[i] for i in range(len(ds)))]
    callback, collator = rt.training.hf_trainer(s, "v1")
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=2, num_train_epochs=2,
        learning_rate=0.1, report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no", remove_unused_columns=False, seed=0,
    )
    transformers.Trainer(model=Tiny(), args=args, train_dataset=examples, data_collator=collator, callbacks=[callback]).train()
    run = s.run(callback.run_id)
    steps = run.table("steps")
    assert steps.column("step").to_numpy().max() + 1 == 6  # 24 rows / (4 × 2) per step × 2 epochs
    per_step = {}
    for st, rid in zip(steps.column("step").to_pylist(), steps.column("row_id").to_pylist()):
        per_step.setdefault(st, []).append(bytes(rid).hex())
    assert all(len(v) == 8 for v in per_step.values())
    all_ids = {e["row_id"] for e in examples}
    assert set(per_step[0] + per_step[1] + per_step[2]) == all_ids  # the first epoch saw every row once
    contrib = run.table("contributions")
    assert contrib.num_rows > 0 and run.entry["config"]["user"]["trainer"]["gradient_accumulation_steps"] == 2
