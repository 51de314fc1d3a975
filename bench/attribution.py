"""Linear datamodeling score (LDS) of rowtrail's test-example attribution vs TRAK and TracIn-CP.

    python bench/attribution.py [--quick] [--json PATH]

Data: scikit-learn's digits (1,797 8×8 images), standardized with the training rows' mean/std; a
fixed split (seed 0): 1,000 training rows, scored test queries (100; --quick 20) and separate tuning
queries (50; --quick 20). Models: (a) logistic regression, one nn.Linear(64, 10); (b) an MLP
64→64→10 (ReLU). Recipe: plain SGD (lr 0.05, no momentum), batch 32, 5 epochs, mean cross entropy;
seed s fixes both the initial weights (torch.manual_seed(s)) and the batch order
(np.random.default_rng(s)). The attributed model is the recipe with seed 0 on all 1,000 rows.

rowtrail: the rows are ingested into a fresh store (one source, content = 64 pixel values + label),
committed, and the seed-0 training is recorded with ``rt.training.record(..., features=dict(dim=K,
every=1))``; scores = ``store.run(id).attribute(model=final, measure="margin", damping=λ).scores()``.
K and λ are chosen on the tuning subsets and tuning queries, never on the scored ones.

Ground truth: M random 50 % subsets (100; --quick 20) plus separate tuning subsets (20; --quick 10);
each is retrained with the same recipe (logistic: seed 0; MLP: mean over 3 seeds, --quick 2) and the
correct-class margin (correct logit − largest other logit) of every query is measured. LDS = mean
over queries of Spearman(Σ_{i∈S} score(q, i), margin_S(q)) over subsets S. The seed-noise ceiling is
the same Spearman between two independent seed sets of the same size (seeds 0.. vs 1000..).

Baselines on the same final model / checkpoints: TRAK (``traker``, CPU BasicProjector, 2,048 dims,
task image_classification, fp32 unless --trak-half; λ tuned like ours; 1 model = the seed-0 model, 5 models = seeds 0–4)
and TracIn-CP (``captum.influence.TracInCP`` over the seed-0 run's end-of-epoch checkpoints, lr per
checkpoint, train loss = cross entropy, test "loss" = −margin, so positive = helps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:  # pragma: no cover
    sys.exit("bench/attribution.py needs torch")

from scipy.stats import spearmanr

import rowtrail as rt

LR, BATCH, EPOCHS = 0.05, 32, 5
N_TRAIN = 1000
DIMS = (64, 256, 1024)
DAMPING_RATIOS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)  # × the mean diagonal of the run Fisher
TRAK_RATIOS = (0.0, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)  # × the mean diagonal of TRAK's XᵀX (model 0)
TRAK_DEFAULT_DIM = 2048


# ---------------------------------------------------------------- data, models, training


def load_data(n_query: int, n_tune_query: int) -> dict[str, Any]:
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = d.data.astype(np.float64), d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(X))
    tr, rest = perm[:N_TRAIN], perm[N_TRAIN:]
    q, tq = rest[:n_query], rest[n_query : n_query + n_tune_query]
    mu, sd = X[tr].mean(0), X[tr].std(0)
    sd[sd == 0] = 1.0
    Z = ((X - mu) / sd).astype(np.float32)
    return {
        "raw_train": X[tr].astype(int),
        "y_train": y[tr],
        "Xtr": torch.from_numpy(Z[tr]),
        "Ytr": torch.from_numpy(y[tr]),
        "Xq": torch.from_numpy(np.concatenate([Z[q], Z[tq]])),
        "Yq": torch.from_numpy(np.concatenate([y[q], y[tq]])),
        "n_query": n_query,
        "n_tune_query": n_tune_query,
    }


def make_model(kind: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "logreg":
        return nn.Sequential(nn.Linear(64, 10))
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def train(kind: str, X: torch.Tensor, Y: torch.Tensor, idx: np.ndarray, seed: int, on_step: Any = None, on_epoch: Any = None) -> nn.Module:
    model = make_model(kind, seed)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    order = np.random.default_rng(seed)
    for epoch in range(EPOCHS):
        perm = idx[order.permutation(len(idx))]
        for start in range(0, len(perm), BATCH):
            b = perm[start : start + BATCH]
            bt = torch.from_numpy(b)
            opt.zero_grad()
            loss = F.cross_entropy(model(X[bt]), Y[bt])
            loss.backward()
            opt.step()
            if on_step is not None:
                on_step(b, loss)
        if on_epoch is not None:
            on_epoch(epoch, model)
    return model


@torch.no_grad()
def margins(model: nn.Module, X: torch.Tensor, Y: torch.Tensor) -> np.ndarray:
    out = model(X)
    correct = out.gather(1, Y[:, None])[:, 0]
    others = out.scatter(1, Y[:, None], float("-inf"))
    return (correct - others.max(1).values).double().numpy()


def lds(scores: np.ndarray, masks: np.ndarray, actual: np.ndarray) -> float:
    """scores [Q, N] (positive = helps), masks [M, N] bool, actual [M, Q] margins."""
    pred = masks.astype(np.float64) @ scores.T  # [M, Q]
    rhos = [spearmanr(pred[:, q], actual[:, q]).statistic for q in range(actual.shape[1])]
    return float(np.nanmean(rhos))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.nanmean([spearmanr(a[:, q], b[:, q]).statistic for q in range(a.shape[1])]))


# ---------------------------------------------------------------- ground truth


def ground_truth(kind: str, data: dict[str, Any], masks: np.ndarray, n_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean margins over seed set A (0..) and seed set B (1000..): each [M, Q_all]."""
    out = []
    for base in (0, 1000):
        acc = np.zeros((len(masks), len(data["Yq"])))
        for m, mask in enumerate(masks):
            idx = np.flatnonzero(mask)
            for s in range(n_seeds):
                acc[m] += margins(train(kind, data["Xtr"], data["Ytr"], idx, base + s), data["Xq"], data["Yq"])
        out.append(acc / n_seeds)
    return out[0], out[1]


# ---------------------------------------------------------------- rowtrail


def make_store(root: Path, data: dict[str, Any]) -> tuple[Any, np.ndarray]:
    """A fresh store with the training rows; returns it and the row ids in training-index order."""
    s = rt.init(root / "store")
    s.sources.add("digits", kind="other", license="BSD-3-Clause", legal_basis="contract")
    path = root / "digits.jsonl"
    with path.open("w") as f:
        for i, (x, y) in enumerate(zip(data["raw_train"], data["y_train"])):
            f.write(json.dumps({"id": f"digit-{i:04d}", "x": x.tolist(), "y": int(y)}) + "\n")
    s.ingest(path, source="digits", key_field="id", content_fields=["x", "y"])
    s.commit("digits", tag="v1", sign=False)
    table = s.rows("v1")
    by_key = {k: r for k, r in zip(table.column("source_key").to_pylist(), table.column("row_id").to_pylist())}
    ids = np.array([by_key[f"digit-{i:04d}"] for i in range(N_TRAIN)])
    return s, ids


def record_run(s: Any, ids: np.ndarray, kind: str, data: dict[str, Any], dim: int) -> tuple[nn.Module, str, float]:
    model = make_model(kind, 0)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    order = np.random.default_rng(0)
    idx = np.arange(N_TRAIN)
    X, Y = data["Xtr"], data["Ytr"]
    t0 = time.perf_counter()
    with rt.training.record(s, "v1", model, opt, features=dict(dim=dim, every=1), checkpoints=1) as rec:
        for _epoch in range(EPOCHS):  # the recipe of train(), seed 0, with rec.step after each step
            perm = idx[order.permutation(N_TRAIN)]
            for start in range(0, N_TRAIN, BATCH):
                b = perm[start : start + BATCH]
                bt = torch.from_numpy(b)
                opt.zero_grad()
                loss = F.cross_entropy(model(X[bt]), Y[bt])
                loss.backward()
                opt.step()
                rec.step(ids[b].tolist(), loss=loss)
    return model, rec.run_id, time.perf_counter() - t0


def feature_bytes(s: Any, run: Any) -> dict[str, float]:
    blocks = run.feature_blocks()
    n = sum(b["dims"][0] for b in blocks)
    block = sum(len(s.backend.read_bytes(b["block"])) for b in blocks)
    rows = sum(len(s.backend.read_bytes(b["rows"])) for b in blocks)
    return {
        "values_per_example": run.entry["config"]["features"]["dim_total"],
        "bytes_features": block / n,
        "bytes_with_row_ids": (block + rows) / n,
        "checkpoints": len(blocks),
        "occurrences_per_example": n / N_TRAIN,
    }


def rowtrail_method(kind: str, data: dict[str, Any], work: Path, tune: dict[str, Any], score: dict[str, Any], log: Any, weights: str = "checkpoints") -> dict[str, Any]:
    """``weights="checkpoints"``: test gradients at each step's weights (the run keeps them,
    ``checkpoints=1``); ``"final"``: with the final model at every step."""
    s, ids = make_store(work / f"rt-{kind}-{weights}", data)
    t0 = time.perf_counter()
    plain = train(kind, data["Xtr"], data["Ytr"], np.arange(N_TRAIN), 0)
    t_plain = time.perf_counter() - t0
    q_all = slice(None)
    grid = []
    best: tuple[float, int, float, Any, Any, float] | None = None
    for dim in DIMS:
        model, run_id, t_rec = record_run(s, ids, kind, data, dim)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values())), (
            "recording changed the training"
        )
        run = s.run(run_id)
        default = run.attribute(model=model, test_inputs=data["Xq"][q_all], test_targets=data["Yq"][q_all], measure="margin", weights=weights)
        mean_diag = default.damping[0] / 0.1
        for r in DAMPING_RATIOS:
            res = run.attribute(model=model, test_inputs=data["Xq"], test_targets=data["Yq"], measure="margin", damping=r * mean_diag, weights=weights)
            sc = res.scores(ids)
            v = lds(sc[tune["q"]], tune["masks"], tune["actual"][:, tune["q"]])
            grid.append({"dim": dim, "damping_ratio": r, "tune_lds": v})
            log(f"  rowtrail ({weights}) {kind} dim={dim} λ={r:g}×diag tune LDS {v:.3f}")
            if np.isfinite(v) and (best is None or v > best[0]):
                best = (v, dim, r, run_id, model, t_rec)
    assert best is not None
    _, dim, r, run_id, model, t_rec = best
    run = s.run(run_id)
    t0 = time.perf_counter()
    res = run.attribute(model=model, test_inputs=data["Xq"], test_targets=data["Yq"], measure="margin", damping=None, weights=weights)
    lam = res.damping[0] / 0.1 * r
    res = run.attribute(model=model, test_inputs=data["Xq"], test_targets=data["Yq"], measure="margin", damping=lam, weights=weights)
    sc = res.scores(ids)
    t_attr = time.perf_counter() - t0
    return {
        "method": "rowtrail" if weights == "checkpoints" else "rowtrail (final weights)",
        "model": kind,
        "lds": lds(sc[score["q"]], score["masks"], score["actual"][:, score["q"]]),
        "seconds": t_attr,
        "seconds_recording_overhead": max(t_rec - t_plain, 0.0),
        "dim": dim,
        "damping_ratio": r,
        "grid": grid,
        "storage": feature_bytes(s, run),
        "note": f"dim={dim} per Linear, λ={r:g}×mean diag(F), every=1, {len(run.feature_blocks())} recorded steps, test gradients at {'each step' if weights == 'checkpoints' else 'the final'} weights",
    }


# ---------------------------------------------------------------- TRAK


def trak_method(
    kind: str, data: dict[str, Any], work: Path, n_models: int, tune: dict[str, Any], score: dict[str, Any], log: Any, half: bool = False
) -> dict[str, Any]:
    import logging

    from trak import TRAKer

    models = [train(kind, data["Xtr"], data["Ytr"], np.arange(N_TRAIN), seed) for seed in range(n_models)]
    t0 = time.perf_counter()
    save = work / f"trak-{kind}-{n_models}"
    tr = TRAKer(
        model=make_model(kind, 0),
        task="image_classification",
        train_set_size=N_TRAIN,
        save_dir=str(save),
        device="cpu",
        proj_dim=TRAK_DEFAULT_DIM,
        logging_level=logging.ERROR,
        use_half_precision=half,
    )
    X, Y, Xq, Yq = data["Xtr"], data["Ytr"], data["Xq"], data["Yq"]
    for mid, m in enumerate(models):
        tr.load_checkpoint(m.state_dict(), model_id=mid)
        for start in range(0, N_TRAIN, 100):
            tr.featurize(batch=(X[start : start + 100], Y[start : start + 100]), num_samples=len(X[start : start + 100]))
    tr.projector.free_memory = lambda: None  # traker 0.3.2: BasicProjector.free_memory fails on a second finalize_features
    tr.finalize_features()
    t_feat = time.perf_counter() - t0
    tr.saver.load_current_store(0)
    g = np.asarray(tr.saver.current_store["grads"], dtype=np.float64)
    mean_diag = float((g**2).sum() / g.shape[1])
    t0 = time.perf_counter()
    for mid, m in enumerate(models):
        tr.start_scoring_checkpoint(exp_name="q", checkpoint=m.state_dict(), model_id=mid, num_targets=len(Xq))
        tr.score(batch=(Xq, Yq), num_samples=len(Xq))
    t_target = time.perf_counter() - t0
    grid, best = [], None
    for r in TRAK_RATIOS:
        t0 = time.perf_counter()
        tr.score_computer.lambda_reg = r * mean_diag
        for mid in range(n_models):
            tr.saver.model_ids[mid]["is_finalized"] = 0
        tr.finalize_features()
        sc = np.asarray(tr.finalize_scores(exp_name="q"), dtype=np.float64).T  # [Q, N]
        t_fin = time.perf_counter() - t0
        v = lds(sc[tune["q"]], tune["masks"], tune["actual"][:, tune["q"]])
        grid.append({"lambda_ratio": r, "tune_lds": v})
        log(f"  TRAK-{n_models} {kind} λ={r:g}×diag tune LDS {v:.3f}")
        if np.isfinite(v) and (best is None or v > best[0]):
            best = (v, r, sc, t_fin)
    assert best is not None
    _, r, sc, t_fin = best
    return {
        "method": f"TRAK ({n_models} model{'s' if n_models > 1 else ''})",
        "model": kind,
        "lds": lds(sc[score["q"]], score["masks"], score["actual"][:, score["q"]]),
        "seconds": t_feat + t_target + t_fin,
        "lambda_ratio": r,
        "grid": grid,
        "note": f"traker {_version('traker')}, BasicProjector (normal), proj_dim {TRAK_DEFAULT_DIM}, {'fp16' if half else 'fp32'}, λ={r:g}×mean diag(XᵀX); training of the extra models not timed",
    }


# ---------------------------------------------------------------- TracIn-CP (Captum)


class NegMargin(nn.Module):
    """Captum's test 'loss': −(correct logit − largest other logit), summed over the batch."""

    reduction = "sum"

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        correct = out.gather(1, y[:, None])[:, 0]
        others = out.scatter(1, y[:, None], float("-inf"))
        return -(correct - others.max(1).values).sum()


def tracin_method(kind: str, data: dict[str, Any], work: Path, score: dict[str, Any]) -> dict[str, Any]:
    from captum.influence import TracInCP

    ckdir = work / f"ckpt-{kind}"
    ckdir.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []

    def save(epoch: int, model: nn.Module) -> None:
        p = ckdir / f"epoch{epoch}.pt"
        torch.save(model.state_dict(), p)
        paths.append(str(p))

    model = train(kind, data["Xtr"], data["Ytr"], np.arange(N_TRAIN), 0, on_epoch=save)

    def load(m: nn.Module, path: str) -> float:
        m.load_state_dict(torch.load(path, weights_only=True))
        return LR

    t0 = time.perf_counter()
    ds = torch.utils.data.TensorDataset(data["Xtr"], data["Ytr"])
    tracin = TracInCP(
        model,
        ds,
        checkpoints=paths,
        checkpoints_load_func=load,
        loss_fn=nn.CrossEntropyLoss(reduction="sum"),
        test_loss_fn=NegMargin(),
        batch_size=100,
        sample_wise_grads_per_batch=True,
    )
    sc = tracin.influence((data["Xq"], data["Yq"]), show_progress=False).double().numpy()  # [Q, N]
    secs = time.perf_counter() - t0
    return {
        "method": "TracIn-CP (Captum)",
        "model": kind,
        "lds": lds(sc[score["q"]], score["masks"], score["actual"][:, score["q"]]),
        "seconds": secs,
        "note": f"captum {_version('captum')}, {len(paths)} end-of-epoch checkpoints, all parameters, no tuning knob",
    }


# ---------------------------------------------------------------- main


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 subsets, 20 queries, 10 tuning subsets, 2 MLP seeds")
    ap.add_argument("--subsets", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the results here (default bench/out/attribution[-quick].json)")
    ap.add_argument("--trak-models", default="1,5")
    ap.add_argument("--models", default="logreg,mlp")
    ap.add_argument(
        "--trak-half", action="store_true", help="TRAK in its default fp16 (on CPU its features overflow at large λ); default fp32"
    )
    ap.add_argument("--skip", default="", help="comma list of: trak, tracin")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    q = args.quick
    n_sub = args.subsets or (20 if q else 100)
    n_tune_sub = 10 if q else 20
    n_query, n_tune_query = (20, 20) if q else (100, 50)
    mlp_seeds = 2 if q else 3
    data = load_data(n_query, n_tune_query)
    rng = np.random.default_rng(1)
    masks = np.zeros((n_sub + n_tune_sub, N_TRAIN), bool)
    for m in range(len(masks)):
        masks[m, rng.choice(N_TRAIN, N_TRAIN // 2, replace=False)] = True
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    results: list[dict[str, Any]] = []
    ceilings: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="rt-attr-"))
    try:
        for kind in args.models.split(","):
            seeds = 1 if kind == "logreg" else mlp_seeds
            t0 = time.perf_counter()
            A, B = ground_truth(kind, data, masks, seeds)
            sq, tq = np.arange(n_query), np.arange(n_query, n_query + n_tune_query)
            score = {"q": sq, "masks": masks[:n_sub], "actual": A[:n_sub]}
            tune = {"q": tq, "masks": masks[n_sub:], "actual": A[n_sub:]}
            ceilings[kind] = {
                "seeds_per_subset": seeds,
                "ceiling": agreement(A[:n_sub][:, sq], B[:n_sub][:, sq]),
                "seconds": time.perf_counter() - t0,
            }
            full = train(kind, data["Xtr"], data["Ytr"], np.arange(N_TRAIN), 0)
            acc = float((full(data["Xq"][sq]).argmax(1) == data["Yq"][sq]).float().mean())
            ceilings[kind]["test_accuracy"] = acc
            log(
                f"{kind}: ground truth {len(masks)} subsets × {seeds} seed(s) × 2 sets, ceiling {ceilings[kind]['ceiling']:.3f}, test acc {acc:.3f}"
            )
            jobs: list[tuple[str, Any]] = [
                ("rowtrail", partial(rowtrail_method, kind, data, work, tune, score, log, "checkpoints")),
                ("rowtrail (final weights)", partial(rowtrail_method, kind, data, work, tune, score, log, "final")),
            ]
            if "trak" not in args.skip:
                for n in [int(x) for x in args.trak_models.split(",")]:
                    jobs.append(
                        (
                            f"TRAK ({n} model{'s' if n > 1 else ''})",
                            partial(trak_method, kind, data, work, n, tune, score, log, args.trak_half),
                        )
                    )
            if "tracin" not in args.skip:
                jobs.append(("TracIn-CP (Captum)", partial(tracin_method, kind, data, work, score)))
            for name, job in jobs:
                try:
                    r = job()
                except Exception as exc:  # a failing contender is reported, the run goes on
                    traceback.print_exc()
                    r = {"method": name, "model": kind, "lds": None, "seconds": None, "error": f"{type(exc).__name__}: {exc}"}
                results.append(r)
                log(f"{r['method']:22s} {kind:6s} LDS {r['lds'] if r['lds'] is None else round(r['lds'], 3)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"LDS on digits, {n_sub} subsets of 50 %, {n_query} queries (margin); tuning on {n_tune_sub} other subsets and {n_tune_query} other queries"
    )
    print(f"{'method':24s} {'model':7s} {'LDS':>7s} {'seconds':>8s}  notes")
    for r in results:
        v = "  —  " if r["lds"] is None else f"{r['lds']:7.3f}"
        t = "   —" if r["seconds"] is None else f"{r['seconds']:8.2f}"
        print(f"{r['method']:24s} {r['model']:7s} {v:>7s} {t:>8s}  {r.get('error') or r.get('note', '')}")
    for kind, c in ceilings.items():
        print(
            f"{'seed-noise ceiling':22s} {kind:7s} {c['ceiling']:7.3f} {'':8s}  Spearman between two independent sets of {c['seeds_per_subset']} seed(s)/subset"
        )
    print()
    print("storage per example per checkpoint")
    for r in results:
        if r["method"] == "rowtrail" and "storage" in r:
            st = r["storage"]
            print(
                f"  rowtrail {r['model']:7s} {st['values_per_example']} fp16 values: {st['bytes_features']:.1f} B (+ row id: {st['bytes_with_row_ids']:.1f} B) per example per recorded step it is in; {st['checkpoints']} recorded steps, {st['occurrences_per_example']:g} per example (every=1, {EPOCHS} epochs)"
            )
    print(f"  TRAK default: {TRAK_DEFAULT_DIM} fp16 values = {TRAK_DEFAULT_DIM * 2} B per example per checkpoint (model)")
    out = {
        "settings": {
            "quick": q,
            "subsets": n_sub,
            "tune_subsets": n_tune_sub,
            "queries": n_query,
            "tune_queries": n_tune_query,
            "mlp_seeds": mlp_seeds,
            "lr": LR,
            "batch": BATCH,
            "epochs": EPOCHS,
            "n_train": N_TRAIN,
            "dims": DIMS,
            "damping_ratios": DAMPING_RATIOS,
            "trak_ratios": TRAK_RATIOS,
            "trak_half": args.trak_half,
        },
        "results": results,
        "ceilings": ceilings,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
        },
        "seconds_total": time.perf_counter() - t_start,
    }
    path = Path(args.json or f"bench/out/attribution{'-quick' if q else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=float))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
