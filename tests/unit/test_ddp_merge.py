"""Data parallel: two ranks (simulated in one process exactly as DDP does it — same initial weights,
local backward, gradients averaged, the same step on both) each record their own ledger; merged,
the ledger credits every row of either shard and its contributions decompose the global update."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import rowtrail as rt  # noqa: E402
from rowtrail.ops.runs import merge_runs  # noqa: E402


def test_two_rank_ledgers_merge_into_one_run(tmp_store, write_jsonl):
    s = tmp_store
    s.sources.add("a", kind="other")
    s.ingest(write_jsonl([{"id": i, "t": f"row {i}"} for i in range(16)], "a.jsonl"), source="a", key_field="id")
    s.commit("v1", tag="v1", sign=False)
    ids = s.rows("v1").column("row_id").to_pylist()
    torch.manual_seed(0)
    X, Y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    base = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    replicas = [torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)) for _ in range(2)]
    for m in replicas:
        m.load_state_dict(base.state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in replicas]
    shards = [list(range(0, 16, 2)), list(range(1, 16, 2))]  # rank r takes every other row
    global_grads = []
    with rt.training.record(s, "v1", replicas[0], opts[0]) as r0, rt.training.record(s, "v1", replicas[1], opts[1]) as r1:
        recs = [r0, r1]
        for step in range(2):
            batch = [sh[step * 4 : step * 4 + 4] for sh in shards]
            for m, o, b in zip(replicas, opts, batch):
                o.zero_grad()
                torch.nn.functional.cross_entropy(m(X[b]), Y[b]).backward()
            for ps in zip(*(m.parameters() for m in replicas)):  # DDP's all-reduce: average the gradients
                avg = sum(p.grad for p in ps) / 2
                for p in ps:
                    p.grad = avg.clone()
            global_grads.append([p.grad.clone() for p in replicas[0].parameters()])
            before = [p.detach().clone() for p in replicas[0].parameters()]
            for o in opts:
                o.step()
            global_grads[-1] = (global_grads[-1], [p.detach() - b_ for p, b_ in zip(replicas[0].parameters(), before)])
            for rec, b in zip(recs, batch):
                rec.step([ids[i] for i in b])
    merged = s.run(merge_runs(s, [r0.run_id, r1.run_id]))
    steps = merged.table("steps")
    assert steps.num_rows == 16 and {bytes(r).hex() for r in steps.column("row_id").to_pylist()} == set(ids)
    per_step = {}
    for st, pos in zip(steps.column("step").to_pylist(), steps.column("position").to_pylist()):
        per_step.setdefault(st, []).append(pos)
    assert all(sorted(v) == list(range(8)) for v in per_step.values())  # ranks' shards side by side
    contrib = merged.table("contributions")
    groups = merged.table("groups").to_pylist()
    for step, (grads, delta) in enumerate(global_grads):
        for gname, sl in (("0", slice(0, 2)), ("2", slice(2, 4))):
            want = sum(float((g * d).sum()) for g, d in zip(grads[sl], delta[sl]))  # <∇L_global, Δθ_G>
            got = sum(c["dot"] for c in contrib.to_pylist() if c["step"] == step and c["group"] == gname)
            assert got == pytest.approx(want, rel=1e-4)
        assert [g["group"] for g in groups if g["step"] == step] == ["0", "2"]
    assert merged.entry["config"]["world_size"] == 2 and merged.entry["source"] == "merged"
