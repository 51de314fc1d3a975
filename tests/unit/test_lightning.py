"""A Lightning fit recorded through the callback: every optimizer step (with gradient accumulation)
names the rows of the batches it consumed."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

import rowtrail as rt  # noqa: E402


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def training_step(self, batch, batch_idx):
        x = torch.tensor(batch["x"], dtype=torch.float32) if not isinstance(batch["x"], torch.Tensor) else batch["x"].float()
        return torch.nn.functional.cross_entropy(self.lin(x), torch.as_tensor(batch["y"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_fit_is_recorded(tmp_store, write_jsonl, tmp_path):
    s = tmp_store
    s.sources.add("a", kind="other")
    s.ingest(write_jsonl([{"id": i, "x": [i / 10, 1.0], "y": i % 2} for i in range(24)], "a.jsonl"), source="a", key_field="id")
    s.commit("v1", tag="v1", sign=False)
    loader = rt.training.loader(s, "v1", fields=["x", "y"], batch_size=4, shuffle=0)
    cb = rt.training.lightning_callback(s, "v1", features=dict(dim=4), checkpoints=2)
    trainer = pl.Trainer(callbacks=[cb], max_epochs=1, accumulate_grad_batches=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(Tiny(), loader)
    run = s.run(cb.run_id)
    steps = run.table("steps")
    assert steps.column("step").to_numpy().max() + 1 == 3  # 6 batches of 4, 2 per optimizer step
    assert {bytes(r).hex() for r in steps.column("row_id").to_pylist()} == set(s.rows("v1").column("row_id").to_pylist())
    assert run.table("contributions").num_rows == 24 and set(run.table("contributions").column("group").to_pylist()) == {"lin"}
    assert [b["dims"] for b in run.feature_blocks()] == [[8, 4]] * 3 and [c["step"] for c in run.entry["checkpoints"]] == [0, 2]
