"""Packed sequences: several rows share one training sequence; each row's contribution is the sum
over its own tokens, and matches the gradient of its own share of the loss dotted with the update."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import rowtrail as rt  # noqa: E402


def test_packed_rows_get_their_own_tokens_contributions(tmp_store, write_jsonl):
    s = tmp_store
    s.sources.add("docs", kind="other")
    s.ingest(write_jsonl([{"id": i, "text": f"doc {i}"} for i in range(5)], "d.jsonl"), source="docs", key_field="id")
    s.commit("v1", tag="v1", sign=False)
    ids = s.rows("v1").column("row_id").to_pylist()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 7, 6)
    y = torch.randint(0, 3, (2, 7))
    # sequence 0 packs rows 0, 1, 2; sequence 1 packs rows 3, 4 and ends in padding
    tokens = torch.tensor([[0, 0, 1, 1, 1, 2, 2], [3, 3, 3, 4, 4, -1, -1]])
    live = tokens >= 0

    def token_losses(m):
        out = m(x)
        return torch.nn.functional.cross_entropy(out.reshape(-1, 3), y.reshape(-1), reduction="none").reshape(2, 7)

    before = [p.detach().clone() for p in model.parameters()]
    per_row_grads = []
    for r in range(5):  # each row's own share of the mean loss over live tokens
        model.zero_grad()
        (token_losses(model)[tokens == r].sum() / live.sum()).backward()
        per_row_grads.append([p.grad.detach().clone() for p in model.parameters()])
    with rt.training.record(s, "v1", model, opt, groups={"first": ["0"], "second": ["2"]}) as rec:
        opt.zero_grad()
        loss = token_losses(model)[live].mean()
        loss.backward()
        opt.step()
        rec.step(ids, tokens=tokens, loss=loss)
    delta = [p.detach() - b for p, b in zip(model.parameters(), before)]
    contrib = s.run(rec.run_id).table("contributions").to_pylist()
    got = {(bytes(c["row_id"]).hex(), c["group"]): c["dot"] for c in contrib}
    norms = {(bytes(c["row_id"]).hex(), c["group"]): c["grad_norm"] for c in contrib}
    for r in range(5):
        first = sum(float((gr * d).sum()) for gr, d in zip(per_row_grads[r][:2], delta[:2]))
        second = sum(float((gr * d).sum()) for gr, d in zip(per_row_grads[r][2:], delta[2:]))
        assert got[(ids[r], "first")] == pytest.approx(first, rel=1e-4, abs=1e-9)
        assert got[(ids[r], "second")] == pytest.approx(second, rel=1e-4, abs=1e-9)
        norm_first = sum(float((gr * gr).sum()) for gr in per_row_grads[r][:2]) ** 0.5
        assert norms[(ids[r], "first")] == pytest.approx(norm_first, rel=1e-4)
    with pytest.raises(ValueError, match="tokens"):
        with rt.training.record(s, "v1", model, opt) as rec:
            opt.zero_grad()
            token_losses(model)[live].mean().backward()
            opt.step()
            rec.step(ids, tokens=[[0, 9]])
