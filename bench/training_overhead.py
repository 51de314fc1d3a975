"""Training-recorder overhead: a plain PyTorch step vs the same step under rt.training.record.

Models: a three-Linear MLP 1024 → W → W → 10 with W = 3072 (12.6 M parameters) at batch 64, and the
attribution benchmark's MLP 64 → 64 → 10 (4,810 parameters) at batch 32; SGD and Adam. Variants, in
one process and alternating (best of 5 repetitions of 50 steps each):

- plain: no recorder;
- off: ``rt.training.record(..., enabled=False)`` (what ROWTRAIL_DISABLED=1 gives);
- ledger: the recorder with ``features=None`` (ids, lr, loss, group norms, per-example contributions);
- features: the ledger plus attribution features (``features=dict(dim=D, every=1)``, D = 1024 per
  Linear for the small MLP as in bench/attribution.py, 256 for the large one).

Times are the training thread's CPU time (``time.thread_time``, torch at one thread), which other
processes on a shared machine do not inflate; wall-clock ratios are printed beside them. Prints
ms/step and ratios to plain; the target is ledger ≤ 1.3× plain on the ≥ 10 M-parameter model.

    python bench/training_overhead.py [--json PATH] [--reps 5] [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import rowtrail as rt


def make(sizes: list[int]) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def loop(model: nn.Module, opt: Any, X: Any, Y: Any, ids: list[str], steps: int, rec: Any = None) -> tuple[float, float]:
    b = X.shape[1]
    t, w = time.thread_time(), time.perf_counter()
    for s in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X[s]), Y[s])
        loss.backward()
        opt.step()
        if rec is not None:
            rec.step(ids[s * b : (s + 1) * b], loss=loss)
    return time.thread_time() - t, time.perf_counter() - w


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default="bench/out/training_overhead.json")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    steps = args.steps
    work = tempfile.mkdtemp()
    store = rt.init(work + "/s")
    store.sources.add("s", kind="other", license="MIT", legal_basis="contract")
    path = work + "/r.jsonl"
    Path(path).write_text("".join(json.dumps({"id": i}) + "\n" for i in range(steps * 64)))
    store.ingest(path, source="s", key_field="id")
    store.commit("v1", tag="v1", sign=False)
    ids = store.rows("v1").column("row_id").to_pylist()
    configs = [
        ("MLP 1024-3072-3072-10", [1024, 3072, 3072, 10], 64, 256),
        ("MLP 64-64-10 (digits)", [64, 64, 10], 32, 1024),
    ]
    results = []
    g = torch.Generator().manual_seed(0)
    for label, sizes, batch, dim in configs:
        for optname in ("sgd", "adam"):
            X = torch.randn(steps, batch, sizes[0], generator=g)
            Y = torch.randint(0, sizes[-1], (steps, batch), generator=g)
            model = make(sizes)
            params = sum(p.numel() for p in model.parameters())
            opt = torch.optim.SGD(model.parameters(), lr=0.01) if optname == "sgd" else torch.optim.Adam(model.parameters(), lr=1e-4)
            loop(model, opt, X, Y, ids, steps)  # warm-up
            times: dict[str, list[tuple[float, float]]] = {"plain": [], "off": [], "ledger": [], "features": []}
            saves: dict[str, list[float]] = {"ledger": [], "features": []}
            for _ in range(args.reps):
                times["plain"].append(loop(model, opt, X, Y, ids, steps))
                with rt.training.record(store, "v1", model, opt, enabled=False) as rec:
                    times["off"].append(loop(model, opt, X, Y, ids, steps, rec))
                for variant, kw in (("ledger", {"features": None}), ("features", {"features": dict(dim=dim, every=1)})):
                    with rt.training.record(store, "v1", model, opt, **kw) as rec:
                        times[variant].append(loop(model, opt, X, Y, ids, steps, rec))
                        t1 = time.perf_counter()
                    saves[variant].append(time.perf_counter() - t1)
            best = {k: min(c for c, _ in v) / steps for k, v in times.items()}
            wall = {k: min(w for _, w in v) / steps for k, v in times.items()}
            row = {
                "model": label,
                "parameters": params,
                "batch": batch,
                "optimizer": optname,
                "steps": steps,
                "ms_per_step": {k: v * 1000 for k, v in best.items()},
                "ratio": {k: best[k] / best["plain"] for k in ("off", "ledger", "features")},
                "wall_ms_per_step": {k: v * 1000 for k, v in wall.items()},
                "wall_ratio": {k: wall[k] / wall["plain"] for k in ("off", "ledger", "features")},
                "save_ms": {k: min(v) * 1000 for k, v in saves.items()},
                "feature_dim_per_linear": dim,
            }
            results.append(row)
            r, ms = row["ratio"], row["ms_per_step"]
            print(
                f"{label} ({params / 1e6:.2f} M params), {optname}, batch {batch}: plain {ms['plain']:.2f} ms/step; "
                f"off {r['off']:.2f}x, ledger {r['ledger']:.2f}x, ledger+features(dim {dim}) {r['features']:.2f}x; "
                f"save at exit {row['save_ms']['ledger']:.0f} / {row['save_ms']['features']:.0f} ms "
                f"(wall: ledger {row['wall_ratio']['ledger']:.2f}x, features {row['wall_ratio']['features']:.2f}x)",
                flush=True,
            )
    out = {"results": results, "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}, "reps": args.reps}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
