"""Train a tiny classifier on a corpus version under the rowtrail recorder (used by examples/demo.sh).

    python3 train.py VERSION OUT_DIR      # trains, prints the run id, writes OUT_DIR/model.pt and test.npz

The task: does a row's text hold a code block? Inputs are hashed character-trigram counts of the row's
content. The run is journaled with the rows of every step, the per-example contributions to each
parameter group's update, attribution features and weight checkpoints, so that

    rowtrail attribute RUN --group 0 --by source
    rowtrail attribute RUN --model train.py:load --test OUT_DIR/test.npz

can say which rows and sources shaped the model. ``load()`` rebuilds the trained model from
``$ROWTRAIL_DEMO_MODEL`` (the model.pt written here).
"""

from __future__ import annotations

import os
import sys
import zlib

import numpy as np
import torch
from torch import nn

import rowtrail as rt

DIM = 256
FIELDS = ["prompt", "response", "text"]


def featurize(texts: list[str]) -> torch.Tensor:
    out = np.zeros((len(texts), DIM), np.float32)
    for i, t in enumerate(texts):
        for k in range(len(t) - 2):
            out[i, zlib.crc32(t[k : k + 3].encode()) % DIM] += 1.0
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
    return torch.from_numpy(out)


def text_of(batch: dict[str, list], i: int) -> str:
    return " ".join(str(batch[f][i]) for f in FIELDS if f in batch and batch[f][i])


def build() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(DIM, 32), nn.Tanh(), nn.Linear(32, 2))


def load() -> nn.Module:
    model = build()
    model.load_state_dict(torch.load(os.environ["ROWTRAIL_DEMO_MODEL"], weights_only=True))
    return model


def main(version: str, out_dir: str) -> None:
    store = rt.open()  # ROWTRAIL_STORE
    have = set(store.rows(version, limit=1).column_names)
    fields = [f for f in FIELDS if f in have]
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with rt.training.record(store, version, model, opt, features=dict(dim=256), checkpoints=4, config={"task": "has a code block"}) as rec:
        for epoch in range(4):
            for batch in rt.training.loader(store, version, fields=fields, batch_size=16, shuffle=epoch):
                texts = [text_of(batch, i) for i in range(len(batch["row_id"]))]
                x = featurize(texts)
                y = torch.tensor([int("```" in t) for t in texts])
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                rec.step(batch["row_id"], loss=loss)
    torch.save(model.state_dict(), os.path.join(out_dir, "model.pt"))
    tests = ["Code:\n```python\ndef solve(x):\n    return sorted(x)\n```", "Document 7: a paragraph about data provenance."]
    np.savez(os.path.join(out_dir, "test.npz"), inputs=featurize(tests).numpy(), targets=np.array([1, 0]), names=np.array(["code answer", "prose page"]))
    print(rec.run_id)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
