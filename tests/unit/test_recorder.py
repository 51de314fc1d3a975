"""The torch training recorder, with real training on CPU and a real store: the ledger's tables, the
SGD identity Σ_i⟨g_i, Δθ_G⟩ = −‖Δθ_G‖²/lr, the optimizer-free identity Σ_i⟨g_i, Δθ_G⟩ = ⟨∇L, Δθ_G⟩
under Adam, hook-computed values equal to explicit per-sample gradients (torch.func), and the
no-op, error and exception paths."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.func import functional_call, grad, vmap  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import rowtrail as rt  # noqa: E402
from rowtrail import hashing  # noqa: E402
from rowtrail.errors import RefError  # noqa: E402

B, STEPS, N_IN, N_OUT, T = 16, 4, 6, 3, 5


@pytest.fixture
def store(tmp_store, write_jsonl):
    tmp_store.sources.add("s", kind="other", license="MIT", legal_basis="contract")
    tmp_store.ingest(write_jsonl([{"id": i, "text": f"row {i}"} for i in range(B * STEPS)]), source="s", key_field="id")
    tmp_store.commit("v1", tag="v1", sign=False)
    return tmp_store


@pytest.fixture
def ids(store):
    return store.rows("v1").column("row_id").to_pylist()


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    # in-place ReLU after a Linear: the output-gradient hook must still see the Linear's own output
    return nn.Sequential(nn.Linear(N_IN, 16), nn.ReLU(inplace=True), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, N_OUT))


def seq_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    # applied to (B, T, in): 6→16 and 16→3 form per-example gradients in chunks, 16→16 uses Gram matrices
    return nn.Sequential(nn.Linear(N_IN, 16), nn.GELU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, N_OUT))


class Shared(nn.Module):
    """One Linear applied twice per example (its calls are joined along the token axis)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.mid, self.out = nn.Linear(N_IN, 16), nn.Linear(16, 16), nn.Linear(16, N_OUT)

    def forward(self, x: Any) -> Any:
        h = torch.tanh(self.inp(x))
        return self.out(torch.tanh(self.mid(torch.tanh(self.mid(h)))))


def shared(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Shared()


MODELS = {"mlp": (mlp, False), "sequence": (seq_model, True), "shared": (shared, False)}


def ce(out: Any, y: Any) -> Any:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))  # the mean over examples (and tokens)


def batches(ids: list[str], seq: bool = False, seed: int = 1) -> list[tuple[list[str], Any, Any]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(STEPS):
        shape = (B, T) if seq else (B,)
        x = torch.randn(*shape, N_IN, generator=g)
        y = torch.randint(0, N_OUT, shape, generator=g)
        out.append((ids[s * B : (s + 1) * B], x, y))
    return out


def train(store, model, opt, data, **kwargs) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Train with the recorder and keep, per step, what the test needs to check it independently."""
    ref = []
    with rt.training.record(store, "v1", model, opt, **kwargs) as rec:
        for bids, x, y in data:
            pre = {k: v.detach().clone() for k, v in model.named_parameters()}
            opt.zero_grad()
            loss = ce(model(x), y)
            loss.backward()
            grads = {k: v.grad.detach().clone() for k, v in model.named_parameters()}
            opt.step()
            delta = {k: v.detach() - pre[k] for k, v in model.named_parameters()}
            rec.step(bids, loss=loss)
            ref.append({"pre": pre, "grads": grads, "delta": delta, "x": x, "y": y, "loss": loss.item()})
    assert rec.run_id is not None
    return rec, store.run(rec.run_id), ref


def by_step_group(run, column: str) -> dict[tuple[int, str], np.ndarray]:
    t = run.table("contributions")
    out: dict[tuple[int, str], list[float]] = defaultdict(list)
    for s, g, v in zip(t.column("step").to_pylist(), t.column("group").to_pylist(), t.column(column).to_pylist()):
        out[(s, g)].append(v)
    return {k: np.array(v) for k, v in out.items()}


def group_of(name: str) -> str:
    return name.split(".")[0]


def ref_group_sums(ref: list[dict[str, Any]], f: Callable[[str, dict[str, Any]], float]) -> dict[tuple[int, str], float]:
    out: dict[tuple[int, str], float] = defaultdict(float)
    for s, r in enumerate(ref):
        for name in r["delta"]:
            out[(s, group_of(name))] += f(name, r)
    return out


def test_tables_and_config(store, ids):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec, run, ref = train(store, model, opt, batches(ids), config={"epochs": 1})
    steps = run.table("steps")
    assert steps.schema.field("row_id").type == pa.binary(32) and steps.schema.field("position").type == pa.int32()
    assert hashing.ids_hex(np.frombuffer(steps.column("row_id").combine_chunks().buffers()[1], dtype="S32")) == ids[: B * STEPS]
    assert steps.column("step").to_pylist() == [s for s in range(STEPS) for _ in range(B)]
    assert steps.column("position").to_pylist() == list(range(B)) * STEPS
    assert steps.column("weight").to_pylist() == [1.0] * (B * STEPS)
    meta = run.table("step_meta")
    assert meta.column("lr").to_pylist() == [0.1] * STEPS and meta.column("batch_size").to_pylist() == [B] * STEPS
    assert meta.column("loss").to_pylist() == pytest.approx([r["loss"] for r in ref])
    groups = run.table("groups")
    assert groups.column("group").to_pylist() == ["0", "2", "4"] * STEPS
    want = ref_group_sums(ref, lambda n, r: float((r["delta"][n].double() ** 2).sum()))
    got = {(s, g): v for s, g, v in zip(groups.column("step").to_pylist(), groups.column("group").to_pylist(), groups.column("update_sq").to_pylist())}
    # under plain SGD the recorder takes Δθ = −lr·grad, the update before θ − lr·grad is rounded
    assert got == pytest.approx(want, rel=1e-5)
    assert groups.column("delta_norm").to_numpy() == pytest.approx(np.sqrt(groups.column("update_sq").to_numpy()))
    contrib = run.table("contributions")
    assert contrib.num_rows == B * STEPS * 3 and contrib.schema.field("row_id").type == pa.binary(32)
    entry = run.entry
    assert entry["config"]["user"] == {"epochs": 1} and entry["config"]["optimizer"]["class"] == "torch.optim.sgd.SGD"
    assert entry["config"]["groups"]["0"] == ["0.weight", "0.bias"] and entry["config"]["untraced"] == {}
    assert entry["config"]["model"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert entry["code"] and len(entry["code"]) == 64 and entry["started_at"] and entry["rows_consumed"] == B * STEPS
    assert entry["version_id"] == store.version("v1").id
    assert all(not m._forward_hooks for m in model.modules()) and not opt._optimizer_step_pre_hooks


@pytest.mark.parametrize("kind", MODELS)
def test_sgd_identity(store, ids, kind):
    make, seq = MODELS[kind]
    model = make()
    lr = 0.1
    _, run, ref = train(store, model, torch.optim.SGD(model.parameters(), lr=lr), batches(ids, seq=seq))
    dots = by_step_group(run, "dot")
    groups = run.table("groups")
    for s, g, usq in zip(groups.column("step").to_pylist(), groups.column("group").to_pylist(), groups.column("update_sq").to_pylist()):
        assert len(dots[(s, g)]) == B
        assert dots[(s, g)].sum() == pytest.approx(-usq / lr, rel=1e-4), (s, g)


def test_adam_contributions_sum_to_the_gradient_against_the_update(store, ids):
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    _, run, ref = train(store, model, opt, batches(ids))
    dots = by_step_group(run, "dot")
    want = ref_group_sums(ref, lambda n, r: float((r["grads"][n].double() * r["delta"][n].double()).sum()))
    usq = ref_group_sums(ref, lambda n, r: float((r["delta"][n].double() ** 2).sum()))
    for key, value in want.items():
        assert dots[key].sum() == pytest.approx(value, rel=1e-4), key
    # the SGD identity is not expected to hold under Adam's preconditioned update
    assert any(abs(dots[k].sum() - (-usq[k] / 0.01)) > 0.1 * abs(usq[k] / 0.01) for k in want)


@pytest.mark.parametrize("kind", MODELS)
def test_hooks_match_explicit_per_sample_gradients(store, ids, kind):
    make, seq = MODELS[kind]
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    _, run, ref = train(store, model, opt, batches(ids, seq=seq))
    dots, norms = by_step_group(run, "dot"), by_step_group(run, "grad_norm")
    twin = make()  # the same architecture without the recorder's hooks

    for s, r in enumerate(ref):

        def loss_one(params: dict[str, Any], x: Any, y: Any) -> Any:
            return ce(functional_call(twin, params, (x.unsqueeze(0),)), y.unsqueeze(0)) / B  # the example's share

        per = vmap(grad(loss_one), in_dims=(None, 0, 0))(r["pre"], r["x"], r["y"])
        want_dot: dict[str, Any] = defaultdict(lambda: torch.zeros(B, dtype=torch.float64))
        want_sq: dict[str, Any] = defaultdict(lambda: torch.zeros(B, dtype=torch.float64))
        for name, g in per.items():
            flat = g.reshape(B, -1).double()
            want_dot[group_of(name)] += flat @ r["delta"][name].reshape(-1).double()
            want_sq[group_of(name)] += (flat**2).sum(1)
        for grp in want_dot:
            scale = float(want_dot[grp].abs().max())
            assert dots[(s, grp)] == pytest.approx(want_dot[grp].numpy(), rel=1e-4, abs=1e-5 * scale), (s, grp)
            assert norms[(s, grp)] == pytest.approx(want_sq[grp].sqrt().numpy(), rel=1e-4), (s, grp)


def test_gradient_accumulation_joins_micro_batches(store, ids):
    model = mlp()
    lr = 0.1
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with rt.training.record(store, "v1", model, opt) as rec:
        for bids, x, y in batches(ids)[:2]:
            opt.zero_grad()
            for half in (slice(0, B // 2), slice(B // 2, B)):
                (ce(model(x[half]), y[half]) / 2).backward()
            opt.step()
            rec.step(bids)
    run = store.run(rec.run_id)
    dots = by_step_group(run, "dot")
    groups = run.table("groups")
    for s, g, usq in zip(groups.column("step").to_pylist(), groups.column("group").to_pylist(), groups.column("update_sq").to_pylist()):
        assert dots[(s, g)].sum() == pytest.approx(-usq / lr, rel=1e-4)


def test_groups_by_module_and_parameter_and_untraced_layers(store, ids):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(N_IN, 16), nn.BatchNorm1d(16), nn.Linear(16, N_OUT))  # BatchNorm couples examples: untraced
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _, run, _ = train(store, model, opt, batches(ids)[:1], groups={"body": ["0", "1"], "head_w": ["2.weight"]})
    cfg = run.entry["config"]
    assert cfg["groups"] == {"body": ["0.weight", "0.bias", "1.weight", "1.bias"], "head_w": ["2.weight"]}
    assert cfg["untraced"] == {"body": ["1.weight", "1.bias"]}
    assert set(run.table("contributions").column("group").to_pylist()) == {"body", "head_w"}
    with pytest.raises(ValueError, match="neither a parameter nor a module"):
        rt.training.record(store, "v1", model, opt, groups={"x": ["nope"]})
    with pytest.raises(ValueError, match="one group"):
        rt.training.record(store, "v1", model, opt, groups={"a": ["0"], "b": ["0.weight"]})


def test_row_id_forms(store, ids):
    raw = hashing.ids_from_hex(ids[:B])
    forms = [
        [bytes.fromhex(i) for i in ids[:B]],
        raw,
        np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(B, 32),
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), B, [None, pa.py_buffer(raw.tobytes())]),
        pa.array([i.upper() for i in ids[:B]]),
    ]
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _, x, y = batches(ids)[0]
    with rt.training.record(store, "v1", model, opt) as rec:
        for form in forms:
            opt.zero_grad()
            ce(model(x), y).backward()
            opt.step()
            rec.step(form, weights=np.full(B, 0.5))
    t = store.run(rec.run_id).table("steps")
    got = hashing.ids_hex(np.frombuffer(t.column("row_id").combine_chunks().buffers()[1], dtype="S32"))
    assert got == ids[:B] * len(forms)
    assert set(t.column("weight").to_pylist()) == {0.5}


@pytest.mark.parametrize("bad", ["z" * 64, "ab" * 31, b"\x00" * 31, 7])
def test_bad_row_id_is_a_clear_error_and_nothing_is_written(store, ids, bad):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    bids, x, y = batches(ids)[0]
    seq = store.state.seq
    with pytest.raises(RefError, match="batch position 3 is not a row id"):
        with rt.training.record(store, "v1", model, opt) as rec:
            opt.zero_grad()
            ce(model(x), y).backward()
            opt.step()
            rec_ids: list[Any] = list(bids)
            rec_ids[3] = bad
            rec.step(rec_ids)
    assert store.state.seq == seq and store.runs() == []
    assert all(not m._forward_hooks for m in model.modules()) and not opt._optimizer_step_pre_hooks


def test_misuse_errors(store, ids):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    bids, x, y = batches(ids)[0]
    with pytest.raises(ValueError, match="one row id per example"):
        with rt.training.record(store, "v1", model, opt) as rec:
            opt.zero_grad()
            ce(model(x), y).backward()
            opt.step()
            rec.step(bids[:-1])
    with pytest.raises(RuntimeError, match="after optimizer.step"):
        with rt.training.record(store, "v1", model, opt) as rec:
            rec.step(bids)
    with pytest.raises(ValueError, match="weights"):
        with rt.training.record(store, "v1", model, opt) as rec:
            opt.zero_grad()
            ce(model(x), y).backward()
            opt.step()
            rec.step(bids, weights=[1.0, 2.0])
    with pytest.raises(RefError):
        rt.training.record(store, "no-such-tag", model, opt)
    assert store.runs() == []


def test_exception_inside_the_block_writes_nothing(store, ids):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seq = store.state.seq
    with pytest.raises(KeyError, match="boom"):
        with rt.training.record(store, "v1", model, opt) as rec:
            for bids, x, y in batches(ids)[:2]:
                opt.zero_grad()
                ce(model(x), y).backward()
                opt.step()
                rec.step(bids)
            raise KeyError("boom")
    assert rec.run_id is None and store.state.seq == seq and store.runs() == []
    assert all(not m._forward_hooks for m in model.modules()) and not opt._optimizer_step_pre_hooks


@pytest.mark.parametrize("how", ["env", "argument"])
def test_disabled_recorder_adds_no_hooks_and_writes_nothing(store, ids, monkeypatch, how):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs: dict[str, Any] = {}
    if how == "env":
        monkeypatch.setenv("ROWTRAIL_DISABLED", "1")
    else:
        kwargs["enabled"] = False
    seq = store.state.seq
    with rt.training.record(store, "v1", model, opt, **kwargs) as rec:
        assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
        assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
        for _bids, x, y in batches(ids)[:2]:
            opt.zero_grad()
            ce(model(x), y).backward()
            opt.step()
            rec.step(["not a row id"])  # returns at once: nothing is checked or kept
    assert rec.run_id is None and rec.steps == 0
    assert store.state.seq == seq and store.runs() == []


def test_version_object_and_bare_linear(store, ids):
    torch.manual_seed(0)
    model = nn.Linear(N_IN, N_OUT)
    lr = 0.05
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with rt.training.record(store, store.version("v1"), model, opt) as rec:
        for bids, x, y in batches(ids)[:2]:
            opt.zero_grad()
            ce(model(x), y).backward()
            opt.step()
            rec.step(bids)
    run = store.run(rec.run_id)
    assert run.entry["config"]["groups"] == {"weight": ["weight"], "bias": ["bias"]}
    dots = by_step_group(run, "dot")
    groups = run.table("groups")
    for s, g, usq in zip(groups.column("step").to_pylist(), groups.column("group").to_pylist(), groups.column("update_sq").to_pylist()):
        assert dots[(s, g)].sum() == pytest.approx(-usq / lr, rel=1e-4)


@pytest.mark.parametrize("seq", [False, True], ids=["flat", "tokens"])
@pytest.mark.parametrize("penalty", [0.0, 0.05], ids=["plain", "l2-in-loss"])
def test_plain_sgd_gram_route_equals_explicit_per_sample_gradients(store, ids, seq, penalty):
    """Wide layers, small batch: under plain SGD the recorder takes the Gram route (B·T·(in+out) <
    in·out); an extra gradient term in ∇W (an L2 penalty in the loss) fails its probe and falls back
    to ΔWᵀγ. Either way dot = ⟨g_i, Δθ⟩ with g_i the example's share of the data loss's gradient."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(48, 64), nn.Tanh(), nn.Linear(64, 40))
    twin = nn.Sequential(nn.Linear(48, 64), nn.Tanh(), nn.Linear(64, 40))
    lr, b = 0.2, 4
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(3)
    shape = (b, 3) if seq else (b,)
    with rt.training.record(store, "v1", model, opt) as rec:
        ref = []
        for s in range(3):
            x, y = torch.randn(*shape, 48, generator=g), torch.randint(0, 40, shape, generator=g)
            pre = {k: v.detach().clone() for k, v in model.named_parameters()}
            opt.zero_grad()
            loss = ce(model(x), y) + penalty * sum((p**2).sum() for p in model.parameters())
            loss.backward()
            opt.step()
            rec.step(ids[s * b : (s + 1) * b])
            ref.append((pre, {k: v.detach() - pre[k] for k, v in model.named_parameters()}, x, y))
    dots = by_step_group(store.run(rec.run_id), "dot")
    for s, (pre, delta, x, y) in enumerate(ref):

        def loss_one(params: dict[str, Any], xi: Any, yi: Any) -> Any:
            return ce(functional_call(twin, params, (xi.unsqueeze(0),)), yi.unsqueeze(0)) / b

        per = vmap(grad(loss_one), in_dims=(None, 0, 0))(pre, x, y)
        for grp in ("0", "2"):
            want = sum(per[n].reshape(b, -1).double() @ delta[n].reshape(-1).double() for n in per if n.startswith(grp + "."))
            assert dots[(s, grp)] == pytest.approx(want.numpy(), rel=2e-3, abs=1e-4 * float(want.abs().max())), (s, grp)
