"""Training-recorder overhead: a plain PyTorch step vs the same step under rt.training.record.

Three-Linear MLP (1024 → W → W → 10), batch 64, 50 steps, SGD and Adam, widths for ~6 M and
~13 M parameters; plain and recorded loops alternate in one process, best of 5. Prints ms/step and
the ratio (target ≤ 1.3× on a ≥ 10 M-parameter model with batch ≥ 64).

    python bench/training_overhead.py
"""
import json
import tempfile
import time

import torch
from torch import nn

import rowtrail as rt

STEPS, B = 50, 64
d = tempfile.mkdtemp()
store = rt.init(d + "/s")
store.sources.add("s", kind="other", license="MIT", legal_basis="contract")
p = d + "/r.jsonl"
open(p, "w").write("".join(json.dumps({"id": i}) + "\n" for i in range(STEPS * B)))
store.ingest(p, source="s", key_field="id")
store.commit("v1", tag="v1", sign=False)
ids = store.rows("v1").column("row_id").to_pylist()

def make(width, depth_in=1024):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(depth_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))

def run(model, opt, X, Y, rec=None):
    t = time.perf_counter()
    for s in range(STEPS):
        x, y = X[s], Y[s]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if rec is not None:
            rec.step(ids[s * B:(s + 1) * B], loss=loss)
    return time.perf_counter() - t

g = torch.Generator().manual_seed(0)
for width, optname in [(2048, "sgd"), (2048, "adam"), (3072, "sgd"), (3072, "adam")]:
    X = torch.randn(STEPS, B, 1024, generator=g)
    Y = torch.randint(0, 10, (STEPS, B), generator=g)
    model = make(width)
    nparams = sum(p.numel() for p in model.parameters())
    mk = (lambda m: torch.optim.SGD(m.parameters(), lr=0.01)) if optname == "sgd" else (lambda m: torch.optim.Adam(m.parameters(), lr=1e-4))
    opt = mk(model)
    run(model, opt, X, Y)  # warm-up
    plain, recd, saves = [], [], []
    for _rep in range(5):
        plain.append(run(model, opt, X, Y))
        t0 = time.perf_counter()
        with rt.training.record(store, "v1", model, opt) as rec:
            recd.append(run(model, opt, X, Y, rec))
            t1 = time.perf_counter()
        saves.append(time.perf_counter() - t1)
    pm, rm = min(plain), min(recd)
    print(f"{nparams/1e6:.1f}M params, {optname}, batch {B}, {STEPS} steps: plain {pm*1000/STEPS:.1f} ms/step, recorder {rm*1000/STEPS:.1f} ms/step, ratio {rm/pm:.2f}x (median ratio {sorted(r/p for r,p in zip(recd,plain))[2]:.2f}); save at exit {min(saves)*1000:.0f} ms")
