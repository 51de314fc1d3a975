"""Test-example attribution from recorded features, with real CPU training and a real store:
Kronecker-projected features equal P_outᵀ·G_i·P_in from explicit per-sample gradients (torch.func),
feature blocks are float16 .npy objects read without pickle, and a planted training row — the only
one with a rare label, duplicated as the test query — ranks first for that query, with its source's
governance."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.func import functional_call, grad, vmap  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import rowtrail as rt  # noqa: E402
from rowtrail.errors import RefError  # noqa: E402
from rowtrail.hashing import ID_DTYPE  # noqa: E402
from rowtrail.training.attribution import load_block  # noqa: E402
from rowtrail.training.features import LayerPlan  # noqa: E402

B, N_IN, N_OUT, T = 8, 12, 9, 5


def ce(out: Any, y: Any) -> Any:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


@pytest.fixture
def small_store(tmp_store, write_jsonl):
    tmp_store.sources.add("s", kind="other", license="MIT", legal_basis="contract")
    tmp_store.ingest(write_jsonl([{"id": i} for i in range(3 * B)]), source="s", key_field="id")
    tmp_store.commit("v1", tag="v1", sign=False)
    return tmp_store


@pytest.mark.parametrize("seq", [False, True], ids=["linear", "sequence"])
def test_projected_features_equal_projected_per_sample_gradients(small_store, seq):
    s = small_store
    ids = s.rows("v1").column("row_id").to_pylist()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(N_IN, 16), nn.Tanh(), nn.Linear(16, N_OUT))
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    shape = (B, T, N_IN) if seq else (B, N_IN)
    xs = [torch.randn(shape, generator=g) for _ in range(3)]
    ys = [torch.randint(0, N_OUT, shape[:-1], generator=g) for _ in range(3)]
    # dim=16 < both sides of both layers: Gaussian projections on each side (no identity shortcut)
    with rt.training.Recorder(s, "v1", model, opt, features=dict(dim=16, every=2, seed=7)) as rec:
        for k in range(3):
            opt.zero_grad()
            ce(model(xs[k]), ys[k]).backward()
            opt.step()
            rec.step(ids[k * B : (k + 1) * B])
    run = s.run(rec.run_id)
    cfg = run.entry["config"]["features"]
    blocks = run.feature_blocks()
    assert [b["step"] for b in blocks] == [0, 2]  # every=2
    plans = [LayerPlan.from_json(d) for d in cfg["layers"]]
    assert [(p.name, p.k_in, p.k_out) for p in plans] == [("0", 4, 4), ("2", 4, 4)]
    assert cfg["dim_total"] == 32 and all(p.seed for p in plans)

    # explicit per-sample gradients of each example's own loss at the weights step 0 saw
    def loss_one(params: dict[str, Any], x: Any, y: Any) -> Any:
        return ce(functional_call(model, params, (x[None],)), y[None])

    per = vmap(grad(loss_one), in_dims=(None, 0, 0))(initial, xs[0], ys[0])
    expected = []
    for p in plans:
        p_in, p_out = p.tensors()
        full = torch.cat([per[f"{p.name}.weight"], per[f"{p.name}.bias"][:, :, None]], 2)  # G' = [G_W | g_b]
        expected.append((p_out.T @ full @ p_in).reshape(B, -1))
    expected_np = torch.cat(expected, 1).double().numpy()
    rows, phi = load_block(run, blocks[0], cfg["dim_total"])
    assert rows.tobytes() == b"".join(bytes.fromhex(r) for r in ids[:B])
    # float16 storage: ~1e-3 relative to the block's largest value
    np.testing.assert_allclose(phi, expected_np, rtol=0, atol=2e-3 * np.abs(expected_np).max())
    assert np.corrcoef(phi.ravel(), expected_np.ravel())[0, 1] > 0.9999


def blobs(seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Three common classes as Gaussian blobs in 10-d, and one row of a rare class 3 planted inside
    class 0's blob (the only class-3 row)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(3, 10))
    rows = [{"id": f"c{c}-{i}", "x": (centers[c] + rng.normal(size=10)).round(4).tolist(), "y": c} for c in range(3) for i in range(40)]
    planted = {"id": "rare-0", "x": (centers[0] + rng.normal(size=10)).round(4).tolist(), "y": 3}
    return rows, planted


def train_with_features(s: Any, v: Any, fdim: int = 64) -> tuple[Any, list[str], Any, Any]:
    table = s.rows("v1")
    ids = table.column("row_id").to_pylist()
    X = torch.tensor(table.column("x").to_pylist(), dtype=torch.float32)
    Y = torch.tensor(table.column("y").to_pylist())
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    order = np.random.default_rng(1)
    with rt.training.Recorder(s, v, model, opt, features=dict(dim=fdim, every=1)) as rec:
        for _epoch in range(15):
            perm = torch.from_numpy(order.permutation(len(ids)))
            for start in range(0, len(ids), 16):
                idx = perm[start : start + 16]
                opt.zero_grad()
                loss = ce(model(X[idx]), Y[idx])
                loss.backward()
                opt.step()
                rec.step([ids[i] for i in idx.tolist()], loss=loss)
    return model, ids, X, Y


@pytest.fixture
def trained(tmp_store, write_jsonl):
    s = tmp_store
    s.sources.add("blobs", kind="other", license="MIT", legal_basis="contract")
    s.sources.add("rare", kind="partner-dump", license="CC-BY-4.0", legal_basis="consent")
    rows, planted = blobs()
    s.ingest(write_jsonl(rows, "b.jsonl"), source="blobs", key_field="id")
    s.ingest(write_jsonl([planted], "r.jsonl"), source="rare", key_field="id")
    v = s.commit("v1", tag="v1", sign=False)
    model, ids, X, Y = train_with_features(s, v)
    table = s.rows("v1")
    planted_id = ids[table.column("source_id").to_pylist().index("rare")]
    return s, model, ids, X, Y, planted_id


def test_a_planted_duplicate_with_a_rare_label_ranks_first(trained):
    s, model, ids, X, Y, planted = trained
    k = ids.index(planted)
    c0 = next(i for i, y in enumerate(Y.tolist()) if y == 0)
    queries = torch.stack([X[k], X[c0]])  # the planted row's copy, and an ordinary class-0 row
    run = s.run(s.runs()[-1]["run_id"])
    labels = Y.numpy()
    for measure in ("loss", "margin"):
        res = run.attribute(model=model, test_inputs=queries, test_targets=torch.tensor([3, 0]), measure=measure)
        assert sorted(res.train_ids) == sorted(set(ids)) and res.fisher == "run"
        scores = res.scores()
        assert scores.shape == (2, len(ids)) and np.isfinite(scores).all()
        first = res.top(0, 3)
        assert first[0]["row_id"] == planted and first[0]["score"] > 2 * first[1]["score"] > 0
        assert first[0]["source_id"] == "rare" and first[0]["legal_basis"] == "consent" and first[0]["license"] == "CC-BY-4.0"
        # the ordinary query: its own class helps more than another class, and the planted row hurts it
        col = res.scores(ids)
        assert col[1, labels == 0].mean() > col[1, labels == 1].mean()
        assert col[1, k] < 0
        assert col[1, k] == scores[1, res.train_ids.index(planted)]
    # the brief's per-checkpoint (one batch) Fisher runs, but is much weaker here (see attribution.py)
    per_batch = run.attribute(model=model, test_inputs=queries, test_targets=torch.tensor([3, 0]), fisher="checkpoint")
    assert np.isfinite(per_batch.scores()).all() and len(per_batch.damping) == len(run.feature_blocks())


def test_feature_blocks_are_float16_npy_without_pickle(trained):
    s, model, ids, X, Y, planted = trained
    run = s.run(s.runs()[-1]["run_id"])
    cfg = run.entry["config"]["features"]
    blocks = run.feature_blocks()
    steps = run.table("steps")
    assert len(blocks) == run.entry["steps"]  # every=1
    dim = cfg["dim_total"]
    # Linear(10,32): [W|b] is 32x11, projected to 8x8; Linear(32,4): 4x33 to 4x16 (k_out = out, identity)
    assert [(d["k_out"], d["k_in"]) for d in cfg["layers"]] == [(8, 8), (4, 16)] and dim == 128
    for b in blocks[:5]:
        raw = s.backend.read_bytes(b["block"])
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
        assert arr.dtype == np.float16 and list(arr.shape) == b["dims"] and arr.shape[1] == dim
        assert len(raw) == arr.nbytes + 128  # the .npy header: 2 bytes per value, nothing else
        rows = np.frombuffer(s.backend.read_bytes(b["rows"]), dtype=ID_DTYPE)
        mine = steps.filter(np.asarray(steps.column("step")) == b["step"])
        assert rows.tobytes() == b"".join(mine.column("row_id").to_pylist())
        assert b["lr"] == 0.05 and b["scale"] > 0
    assert s.verify(allow_unsigned=True).ok


def test_attribution_errors_name_the_fix(trained):
    s, model, ids, X, Y, planted = trained
    run = s.run(s.runs()[-1]["run_id"])
    with pytest.raises(RefError, match="not in run"):
        run.attribute(model=model, test_inputs=X[:1], test_targets=Y[:1]).scores(["00" * 32])
    with pytest.raises(ValueError, match="pass the model the run trained"):
        run.attribute(model=nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 4)), test_inputs=X[:1], test_targets=Y[:1])
    with pytest.raises(ValueError, match="measure"):
        run.attribute(model=model, test_inputs=X[:1], test_targets=Y[:1], measure="accuracy")
    with pytest.raises(ValueError, match="either group"):
        run.attribute(group="0", model=model, test_inputs=X[:1], test_targets=Y[:1])
    # a run recorded without features
    m = nn.Linear(10, 4)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with rt.training.Recorder(s, "v1", m, opt, features=None) as rec:
        opt.zero_grad()
        ce(m(X[:2]), Y[:2]).backward()
        opt.step()
        rec.step(ids[:2])
    assert "features" not in s.run(rec.run_id).entry and "features" not in s.run(rec.run_id).entry["config"]
    with pytest.raises(RefError, match="features=dict"):
        s.run(rec.run_id).attribute(model=m, test_inputs=X[:1], test_targets=Y[:1])
    with pytest.raises(ValueError, match="features="):
        rt.training.Recorder(s, "v1", m, opt, features=dict(dims=3))
    with pytest.raises(ValueError, match="budget_mb must be a positive number"):
        rt.training.Recorder(s, "v1", m, opt, features=dict(budget_mb=0))


def test_the_design_example_attributes_with_the_recorders_defaults(trained):
    """DESIGN.md's example as written: ``record(store, version, model, optimizer)`` with no options,
    then ``attribute(model=, test_inputs=, test_targets=, measure="margin")``: the default features
    are enough, and the planted row still ranks first for its copy."""
    s, _, ids, X, Y, planted = trained
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    order = np.random.default_rng(1)
    with rt.training.record(s, "v1", model, optimizer) as rec:
        for _epoch in range(15):
            perm = order.permutation(len(ids))
            for start in range(0, len(ids), 16):
                idx = torch.from_numpy(perm[start : start + 16])
                optimizer.zero_grad()
                ce(model(X[idx]), Y[idx]).backward()
                optimizer.step()
                rec.step([ids[i] for i in idx.tolist()])
    cfg = s.run(rec.run_id).entry["config"]["features"]
    assert (cfg["dim"], cfg["every"], cfg["budget_mb"]) == (256, 1, 512) and "every_asked" not in cfg
    k = ids.index(planted)
    res = s.run(rec.run_id).attribute(model=model, test_inputs=X[k : k + 1], test_targets=torch.tensor([3]), measure="margin")
    scores = res.scores(ids)
    assert scores.shape == (1, len(ids)) and int(np.argmax(scores[0])) == k and scores[0, k] > 0


def test_features_past_their_budget_keep_what_a_doubled_every_would_have_kept(small_store):
    """Over ``budget_mb`` the recorder doubles ``every`` (as often as needed) and drops the blocks of
    the other steps: the saved blocks are byte for byte those of a run recorded with the final
    ``every`` from the start, the config says both, and one warning names the new stride."""
    s = small_store
    ids = s.rows("v1").column("row_id").to_pylist()

    def train(features: dict[str, Any]) -> Any:
        torch.manual_seed(0)
        model = nn.Linear(N_IN, N_OUT)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        g = torch.Generator().manual_seed(1)
        with rt.training.Recorder(s, "v1", model, opt, features=features) as rec:
            for k in range(11):
                x, y = torch.randn(B, N_IN, generator=g), torch.randint(0, N_OUT, (B,), generator=g)
                opt.zero_grad()
                ce(model(x), y).backward()
                opt.step()
                rec.step(ids[(k % 3) * B : (k % 3 + 1) * B])
        return s.run(rec.run_id)

    # one block: 8 examples × (13 · 9 = 117 numbers) × 2 bytes = 1,872 bytes; 4 blocks fit in 8 kB
    with pytest.warns(UserWarning, match="now kept every 2 steps, a stride that doubles again") as caught:
        thinned = train(dict(dim=117, budget_mb=0.008))
    assert len([w for w in caught if "features budget" in str(w.message)]) == 1
    cfg = thinned.entry["config"]["features"]
    assert (cfg["every"], cfg["every_asked"], cfg["budget_mb"]) == (4, 1, 0.008)
    blocks = thinned.feature_blocks()
    assert [b["step"] for b in blocks] == [0, 4, 8]
    direct = train(dict(dim=117, every=4)).feature_blocks()
    assert [(b["step"], b["block"], b["rows"], b["scale"]) for b in blocks] == [(b["step"], b["block"], b["rows"], b["scale"]) for b in direct]


def test_counterfactual_predicts_the_sign_of_a_real_retrain(trained):
    s, model, ids, X, Y, planted = trained
    k = ids.index(planted)
    run = s.run(s.runs()[-1]["run_id"])
    res = run.attribute(model=model, test_inputs=X[k : k + 1], test_targets=torch.tensor([3]), measure="margin")

    def retrain(train_ids: list[str]) -> list[float]:
        keep = [ids.index(r) for r in train_ids]
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        order = np.random.default_rng(1)
        for _epoch in range(15):
            perm = [keep[i] for i in order.permutation(len(keep))]
            for start in range(0, len(perm), 16):
                idx = torch.tensor(perm[start : start + 16])
                opt.zero_grad()
                ce(m(X[idx]), Y[idx]).backward()
                opt.step()
        with torch.no_grad():
            out = m(X[k : k + 1])
        other = out.clone()
        other[0, 3] = -float("inf")
        return [float(out[0, 3] - other.max())]

    cf = res.counterfactual([planted], retrain=retrain)
    assert cf["removed"] == 1 and cf["predicted"][0] < 0 and cf["actual"][0] < 0  # the row held the query up
    by_source = res.counterfactual(source="rare")
    assert by_source["predicted"] == cf["predicted"]
    with pytest.raises(ValueError):
        res.counterfactual()


def test_purge_zeroes_the_erased_rows_features(trained):
    s, model, ids, X, Y, planted = trained
    run_id = s.runs()[-1]["run_id"]
    res = s.optout(source="rare", reason="erasure", purge=True, sign=False)
    assert res["purged"]["feature_blocks"] >= 1
    run = s.run(run_id)
    from rowtrail.training.attribution import load_block

    dim = run.entry["config"]["features"]["dim_total"]
    for b in run.feature_blocks():
        rows, feats = load_block(run, b, dim)
        hit = rows == bytes.fromhex(planted)
        assert not feats[hit].any()  # the erased row's gradient projections are gone
    assert s.verify(allow_unsigned=True).ok


def test_weight_checkpoints_are_kept_and_test_gradients_use_them(tmp_store, write_jsonl):
    s = tmp_store
    s.sources.add("blobs", kind="other", license="MIT", legal_basis="contract")
    rows, _ = blobs()
    s.ingest(write_jsonl(rows, "b.jsonl"), source="blobs", key_field="id")
    s.commit("v1", tag="v1", sign=False)
    table = s.rows("v1")
    ids = table.column("row_id").to_pylist()
    X = torch.tensor(table.column("x").to_pylist(), dtype=torch.float32)
    Y = torch.tensor(table.column("y").to_pylist())
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = {}
    with rt.training.Recorder(s, "v1", model, opt, features=dict(dim=32, every=1), checkpoints=3) as rec:
        for step in range(7):
            idx = torch.arange(step * 16, step * 16 + 16) % len(ids)
            seen[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            opt.zero_grad()
            ce(model(X[idx]), Y[idx]).backward()
            opt.step()
            rec.step([ids[i] for i in idx.tolist()])
    run = s.run(rec.run_id)
    assert [c["step"] for c in run.entry["checkpoints"]] == [0, 3, 6]
    kept = run.checkpoint(3)
    after = {k: v.detach().clone() for k, v in run.model_at(model, 6).state_dict().items()}
    for name, arrays in kept.items():
        np.testing.assert_array_equal(arrays["weights"], seen[3][name].numpy())
        np.testing.assert_allclose(arrays["delta"], (seen[4][name] - seen[3][name]).numpy(), atol=1e-7)
        assert torch.equal(after[name], seen[6][name])
    with pytest.raises(RefError, match="no checkpoint at step 2"):
        run.checkpoint(2)
    q = X[:3], Y[:3]
    at_checkpoints = run.attribute(model=model, test_inputs=q[0], test_targets=q[1], measure="loss").scores()
    final = run.attribute(model=model, test_inputs=q[0], test_targets=q[1], measure="loss", weights="final").scores()
    assert not np.allclose(at_checkpoints, final)
    # by hand: ψ at the checkpoint before each block, one run Fisher
    from rowtrail.training.attribution import query_features

    cfg = run.entry["config"]["features"]
    plans = [LayerPlan.from_json(d) for d in cfg["layers"]]
    loaded = [load_block(run, b, cfg["dim_total"]) for b in run.feature_blocks()]
    phi_all = np.concatenate([p for _, p in loaded])
    fis = phi_all.T @ phi_all / len(phi_all)
    inv = np.linalg.inv(fis + 0.1 * np.trace(fis) / cfg["dim_total"] * np.eye(cfg["dim_total"]))
    want = np.zeros((3, len(run.attribute(model=model, test_inputs=q[0], test_targets=q[1]).train_ids)))
    train_ids = np.array(sorted(set(np.concatenate([r for r, _ in loaded]).tolist())), dtype=ID_DTYPE)
    for b, (rows, phi) in zip(run.feature_blocks(), loaded):
        psi = query_features(run.model_at(model, b["step"] // 3 * 3), plans, q[0], q[1], "loss")
        np.add.at(want.T, np.searchsorted(train_ids, rows), -b["lr"] * phi @ inv @ psi.T)
    np.testing.assert_allclose(at_checkpoints, want, rtol=1e-6, atol=1e-9 * np.abs(want).max())
    assert s.verify(allow_unsigned=True).ok


def test_scores_say_when_the_run_was_not_plain_sgd(small_store):
    """Test-example scores take each step as plain SGD; a run trained with Adam (or SGD with momentum)
    gets a note and a warning saying so, a plain SGD run none."""
    s = small_store
    ids = s.rows("v1").column("row_id").to_pylist()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(B, N_IN, generator=g), torch.randint(0, N_OUT, (B,), generator=g)

    def run_with(make_opt):
        torch.manual_seed(0)
        model = nn.Linear(N_IN, N_OUT)
        opt = make_opt(model.parameters())
        with rt.training.record(s, "v1", model, opt) as rec:
            for _ in range(2):
                opt.zero_grad()
                ce(model(x), y).backward()
                opt.step()
                rec.step(ids[:B])
        return s.run(rec.run_id), model

    run, model = run_with(lambda p: torch.optim.SGD(p, lr=0.1))
    assert run.attribute(model=model, test_inputs=x[:2], test_targets=y[:2]).notes == []
    for make, said in ((lambda p: torch.optim.Adam(p, lr=0.01), "Adam"), (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), "SGD with momentum")):
        run, model = run_with(make)
        with pytest.warns(UserWarning, match=f"trained with {said}: these scores take each recorded step as a plain SGD step"):
            res = run.attribute(model=model, test_inputs=x[:2], test_targets=y[:2])
        assert len(res.notes) == 1 and "actual update" in res.notes[0] and np.isfinite(res.scores()).all()
