"""The recorder beyond nn.Linear, with real CPU training and a real store: an Embedding (traced as a
Linear on one-hot inputs), a Conv1d, a LayerNorm and a user module (torch.func per-sample gradients)
give contributions equal to explicit per-sample gradients, satisfy the SGD identity, and record
features equal to the projection (Kronecker / CountSketch) of those gradients; test-example features
computed by attribution match the recorded ones; BatchNorm is listed as untraced; packed sequences
split Embedding and Linear features by row."""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.func import functional_call, grad, vmap  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import rowtrail as rt  # noqa: E402
from rowtrail.training.attribution import load_block, query_features  # noqa: E402
from rowtrail.training.features import LayerPlan  # noqa: E402

B, T, V, D, C, STEPS = 8, 6, 20, 8, 3, 3


class Gain(nn.Module):
    """A user module owning a parameter: an elementwise gain."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(d))

    def forward(self, h: Any) -> Any:
        return h * self.g


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D, padding_idx=0)
        self.conv = nn.Conv1d(D, D, 3, padding=1)
        self.norm = nn.LayerNorm(D)
        self.gain = Gain(D)
        self.head = nn.Linear(D, C)

    def forward(self, x: Any) -> Any:
        h = self.emb(x)
        h = torch.tanh(self.conv(h.transpose(1, 2)).transpose(1, 2))
        return self.head(self.gain(self.norm(h)))


def ce(out: Any, y: Any) -> Any:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


@pytest.fixture
def store(tmp_store, write_jsonl):
    tmp_store.sources.add("s", kind="other", license="MIT", legal_basis="contract")
    tmp_store.ingest(write_jsonl([{"id": i} for i in range(B * STEPS)]), source="s", key_field="id")
    tmp_store.commit("v1", tag="v1", sign=False)
    return tmp_store


def data(seed: int = 1) -> list[tuple[Any, Any]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(STEPS):
        x = torch.randint(0, V, (B, T), generator=g)
        x[0, -2:] = 0  # padding tokens: no gradient into the padding row
        out.append((x, torch.randint(0, C, (B, T), generator=g)))
    return out


def test_contributions_equal_explicit_per_sample_gradients_and_the_sgd_identity(store):
    ids = store.rows("v1").column("row_id").to_pylist()
    torch.manual_seed(0)
    model, lr = Tagger(), 0.1
    twin = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    ref = []
    with rt.training.record(store, "v1", model, opt) as rec:
        for k, (x, y) in enumerate(data()):
            pre = {n: p.detach().clone() for n, p in model.named_parameters()}
            opt.zero_grad()
            ce(model(x), y).backward()
            opt.step()
            rec.step(ids[k * B : (k + 1) * B])
            ref.append((pre, {n: p.detach() - pre[n] for n, p in model.named_parameters()}, x, y))
    run = store.run(rec.run_id)
    assert run.entry["config"]["untraced"] == {}
    t = run.table("contributions")
    got: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    for s, g, d, n in zip(*(t.column(c).to_pylist() for c in ("step", "group", "dot", "grad_norm"))):
        got[(s, g)].append((d, n))
    groups = run.table("groups")
    for s, g, usq in zip(groups.column("step").to_pylist(), groups.column("group").to_pylist(), groups.column("update_sq").to_pylist()):
        assert sum(d for d, _ in got[(s, g)]) == pytest.approx(-usq / lr, rel=1e-4), (s, g)
    for s, (pre, delta, x, y) in enumerate(ref):

        def loss_one(params: dict[str, Any], xi: Any, yi: Any) -> Any:
            return ce(functional_call(twin, params, (xi[None],)), yi[None]) / B

        per = vmap(grad(loss_one), in_dims=(None, 0, 0))(pre, x, y)
        for grp in ("emb", "conv", "norm", "gain", "head"):
            names = [n for n in per if n.split(".")[0] == grp]
            flat = torch.cat([per[n].reshape(B, -1) for n in names], 1).double()
            dvec = torch.cat([delta[n].reshape(-1) for n in names]).double()
            want_dot, want_norm = (flat @ dvec).numpy(), flat.norm(dim=1).numpy()
            dots = np.array([d for d, _ in got[(s, grp)]])
            norms = np.array([n for _, n in got[(s, grp)]])
            assert dots == pytest.approx(want_dot, rel=1e-4, abs=1e-6 * np.abs(want_dot).max()), (s, grp)
            assert norms == pytest.approx(want_norm, rel=1e-4), (s, grp)


def test_features_equal_projected_per_sample_gradients_and_query_features_match(store):
    ids = store.rows("v1").column("row_id").to_pylist()
    torch.manual_seed(0)
    model = Tagger()
    initial = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    (x, y), *_ = data()
    with rt.training.Recorder(store, "v1", model, opt, features=dict(dim=16, every=1, seed=3)) as rec:
        opt.zero_grad()
        ce(model(x), y).backward()
        opt.step()
        rec.step(ids[:B])
    run = store.run(rec.run_id)
    cfg = run.entry["config"]["features"]
    plans = [LayerPlan.from_json(d) for d in cfg["layers"]]
    kinds = {p.name: p.kind for p in plans}
    assert kinds == {"emb": "embedding", "conv": "func", "norm": "func", "gain": "func", "head": "linear"}
    conv = next(p for p in plans if p.name == "conv")
    assert (conv.n_in, conv.k_in) == (D * D * 3 + D, 16)  # 200 numbers sketched into 16 buckets
    norm = next(p for p in plans if p.name == "norm")
    assert (norm.n_in, norm.k_in, len(norm.matrices()[0])) == (2 * D, 16, 0)  # 16 numbers: the identity

    params = {n: p.detach() for n, p in initial.named_parameters()}

    def loss_one(p: dict[str, Any], xi: Any, yi: Any) -> Any:
        return ce(functional_call(initial, p, (xi[None],)), yi[None])  # the example's own loss

    per = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
    expected = []
    for p in plans:
        p_in, p_out = p.tensors()
        if p.kind == "embedding":  # W = Eᵀ: G_W = (∂E)ᵀ, d × V
            expected.append((p_out.T @ per[f"{p.name}.weight"].transpose(1, 2) @ p_in).reshape(B, -1))
        elif p.kind == "func":
            flat = torch.cat([per[f"{p.name}.{n}"].reshape(B, -1) for n in p.params], 1)
            if len(p_in):
                flat = torch.zeros(B, p.k_in).index_add_(1, p_in, flat * p_out)
            expected.append(flat)
        else:
            full = torch.cat([per[f"{p.name}.weight"], per[f"{p.name}.bias"][:, :, None]], 2)
            expected.append((p_out.T @ full @ p_in).reshape(B, -1))
    want = torch.cat(expected, 1).double().numpy()
    _, phi = load_block(run, run.feature_blocks()[0], cfg["dim_total"])
    np.testing.assert_allclose(phi, want, rtol=0, atol=2e-3 * np.abs(want).max())
    # the query side (attribution) projects the same way: ψ of −loss at the same weights is −φ
    psi = query_features(initial, plans, x, y, "loss")
    # per token the query measure is the mean over tokens, as the example's own training loss
    np.testing.assert_allclose(psi, -want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_batchnorm_is_untraced_and_packed_sequences_split_embedding_features(store):
    ids = store.rows("v1").column("row_id").to_pylist()
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = torch.optim.SGD(bn.parameters(), lr=0.1)
    with rt.training.record(store, "v1", bn, opt) as rec:
        opt.zero_grad()
        ce(bn(torch.randn(B, 4)), torch.randint(0, 2, (B,))).backward()
        opt.step()
        rec.step(ids[:B])
    assert store.run(rec.run_id).entry["config"]["untraced"] == {"1": ["1.weight", "1.bias"]}

    emb_model = nn.Sequential(nn.Embedding(V, D), nn.Linear(D, C))
    initial = copy.deepcopy(emb_model)
    opt = torch.optim.SGD(emb_model.parameters(), lr=0.1)
    x = torch.randint(0, V, (2, 7))
    y = torch.randint(0, C, (2, 7))
    tokens = torch.tensor([[0, 0, 1, 1, 1, 2, 2], [3, 3, 3, 4, 4, -1, -1]])  # 5 rows packed in 2 sequences
    live = tokens >= 0

    def token_losses(m: Any) -> Any:
        return F.cross_entropy(m(x).reshape(-1, C), y.reshape(-1), reduction="none").reshape(2, 7)

    with rt.training.Recorder(store, "v1", emb_model, opt, features=dict(dim=16)) as rec:
        opt.zero_grad()
        token_losses(emb_model)[live].mean().backward()
        opt.step()
        rec.step(ids[:5], tokens=tokens)
    run = store.run(rec.run_id)
    cfg = run.entry["config"]["features"]
    plans = [LayerPlan.from_json(d) for d in cfg["layers"]]
    _, phi = load_block(run, run.feature_blocks()[0], cfg["dim_total"])
    for r in range(5):  # the row's own loss: the sum over its tokens, times n = 5 rows / live tokens
        initial.zero_grad()
        (token_losses(initial)[tokens == r].sum() * 5 / live.sum()).backward()
        parts = []
        for p, mod in zip(plans, (initial[0], initial[1])):
            p_in, p_out = p.tensors()
            gw = mod.weight.grad.T if p.kind == "embedding" else torch.cat([mod.weight.grad, mod.bias.grad[:, None]], 1)
            parts.append((p_out.T @ gw @ p_in).reshape(-1))
        want = torch.cat(parts).double().numpy()
        np.testing.assert_allclose(phi[r], want, rtol=0, atol=3e-3 * np.abs(phi).max())
    with pytest.raises(ValueError, match="no per-token gradient"):
        model = Tagger()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with rt.training.record(store, "v1", model, opt) as rec:
            opt.zero_grad()
            ce(model(x), y).backward()
            opt.step()
            rec.step(ids[:5], tokens=tokens)
