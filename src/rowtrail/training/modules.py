"""Per-example gradients of the modules the recorder traces beyond ``nn.Linear``.

Contract. The recorder catches, for every traced module call, the call's inputs and the gradient of
the loss with respect to its output (a forward hook plus a hook on the output tensor). From those two,
per example i, this module gives for the module's traced parameters θ_m:

- ``contributions``: ⟨g_i, Δθ_m⟩ and ‖g_i‖² (g_i the example's gradient over θ_m);
- ``features``: a projection of g_i of at most ``dim`` numbers;

for two kinds of module:

``embedding`` (``nn.Embedding`` without ``scale_grad_by_freq``/``sparse``). An embedding is a Linear
on one-hot inputs: the weight gradient is Σ_t onehot(x_t) γ_tᵀ, so ⟨g_i, ΔE⟩ = Σ_t γ_t·ΔE[x_t] and
‖g_i‖² = Σ_{t,s} [x_t = x_s] γ_t·γ_s; tokens equal to ``padding_idx`` carry no gradient. Features are
LoGra's Kronecker projection with the one-hot side projected by a row gather, P_in[x_t] (P_in is
``num_embeddings × k_in``): no per-example gradient is formed.

``func`` (any other module owning parameters directly, e.g. ``LayerNorm``, ``Conv1d/2d``,
``RMSNorm`` or a user's module, whose forward treats examples independently): per-example gradients
by ``torch.func`` — ``vmap`` over the batch of the parameters' vector-Jacobian product of
``functional_call(module, θ, (x_i,))`` with γ_i — formed in chunks of examples so that a chunk holds at
most ``_CHUNK`` numbers. Features are a CountSketch of the flattened gradient into k = min(dim, P)
buckets (the identity when P ≤ dim): coordinate j goes to bucket h(j) with sign s(j), both drawn
from the layer's seed with NumPy's PCG64; ⟨Sx, Sy⟩ is an unbiased estimate of ⟨x, y⟩, like the
Gaussian projections of the Linear layers. BatchNorm in training mode couples the examples of a batch,
so it is not traced (it is listed as untraced).

Calls of one module in one step are combined as for Linear layers: several calls over the whole
batch (a module applied several times) add up; calls whose batch sizes sum to the batch (gradient
accumulation) are joined in call order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

# Per-example gradients of a func module formed at once: numbers per chunk.
_CHUNK = 1 << 24

KINDS = ("linear", "embedding", "func")


def kind_of(module: nn.Module) -> str | None:
    """How the recorder traces a module that owns parameters directly, or None if it cannot."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Embedding):
        return None if module.scale_grad_by_freq or module.sparse else "embedding"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return None
    return "func"


# -- embeddings ---------------------------------------------------------------------------------------
def embedding_joined(calls: Sequence[tuple[int, Any, torch.Tensor]], n: int, name: str, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An embedding's captured calls as (indices B×T, output grads B×T×dim)."""
    parts = []
    for _, x, g in sorted(calls, key=lambda c: c[0]):
        x = x[0] if isinstance(x, tuple) else x
        if x.dim() == 0:
            x, g = x.reshape(1, 1), g.reshape(1, 1, -1)
        elif x.dim() == 1:  # one index per example
            x, g = x.reshape(-1, 1), g.reshape(-1, 1, dim)
        parts.append((x.reshape(x.shape[0], -1), g.reshape(g.shape[0], -1, dim)))
    return _join(parts, n, name)


def embedding_contrib(x: torch.Tensor, g: torch.Tensor, d_e: torch.Tensor, padding_idx: int | None, token_rows: torch.Tensor | None = None, n: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(⟨g_i, ΔE⟩, ‖g_i‖²) per example — or per row of ``token_rows`` (packed sequences)."""
    g = g.float()
    live = torch.ones_like(x, dtype=torch.bool) if padding_idx is None else x != padding_idx
    g = g * live[..., None]
    per_token = torch.sum(g * d_e.float()[x], 2).double()  # γ_t · ΔE[x_t]
    same = (x[:, :, None] == x[:, None, :]).float()
    if token_rows is None:
        dot = per_token.sum(1)
        sq = torch.sum(torch.bmm(g, g.transpose(1, 2)) * same, (1, 2)).double()
        return dot, sq
    rows = token_rows.reshape(-1)
    ok = rows >= 0
    same = same * (token_rows[:, :, None] == token_rows[:, None, :]) * (token_rows[:, :, None] >= 0)
    pair = torch.sum(torch.bmm(g, g.transpose(1, 2)) * same, 2).reshape(-1).double()
    dot = torch.zeros(n, dtype=torch.float64, device=g.device).index_add_(0, rows[ok], per_token.reshape(-1)[ok])
    sq = torch.zeros(n, dtype=torch.float64, device=g.device).index_add_(0, rows[ok], pair[ok])
    return dot, sq


def embedding_project(x: torch.Tensor, g: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, padding_idx: int | None) -> torch.Tensor:
    """Per token, (P_outᵀγ_t) ⊗ P_in[x_t]: a B × T × k_out·k_in tensor (sum over T for an example)."""
    g = g.float()
    if padding_idx is not None:
        g = g * (x != padding_idx)[..., None]
    pa = p_in[x]  # the one-hot side: a row gather
    pg = g @ p_out.float()
    return torch.einsum("bto,bti->btoi", pg, pa).reshape(x.shape[0], x.shape[1], -1)


# -- torch.func modules -------------------------------------------------------------------------------
def func_per_example(module: nn.Module, names: Sequence[str], calls: Sequence[tuple[int, Any, torch.Tensor]], n: int, label: str) -> list[torch.Tensor]:
    """Per-example gradients (one ``n × numel`` tensor per name) of a module's parameters ``names``
    from its captured calls (inputs tuple, output grad), combined over calls."""
    parts = []
    for _, inputs, g in sorted(calls, key=lambda c: c[0]):
        b = g.shape[0] if g.dim() else 1
        parts.append((b, _func_call_grads(module, names, inputs, g, b, label)))
    sizes = [b for b, _ in parts]
    if all(b == n for b in sizes):
        out = parts[0][1]
        for _, more in parts[1:]:
            out = [a + m for a, m in zip(out, more)]
        return out
    if sum(sizes) == n:
        return [torch.cat([p[1][k] for p in parts], 0) for k in range(len(names))]
    raise ValueError(f"rec.step got {n} row ids, but the batch through module {label!r} had {' + '.join(map(str, sizes))} examples; pass one row id per example, in batch order")


def _func_call_grads(module: nn.Module, names: Sequence[str], inputs: tuple[Any, ...], gout: torch.Tensor, b: int, label: str) -> list[torch.Tensor]:
    from torch.func import functional_call, vjp, vmap

    params = {k: v.detach() for k, v in module.named_parameters(recurse=False) if k in names}
    batched = [isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == b for x in inputs]
    if not any(batched):
        raise ValueError(f"module {label!r}: none of its inputs has the batch's {b} examples on its first axis; it cannot be traced per example")
    numel = sum(v.numel() for v in params.values())
    chunk = max(1, _CHUNK // max(numel, 1))

    def one(*args: Any) -> tuple[torch.Tensor, ...]:
        *xs, g = args
        it = iter(xs)
        call = tuple(next(it).unsqueeze(0) if bt else x for x, bt in zip(inputs, batched))

        def f(p: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(module, p, call)

        _, pull = vjp(f, params)  # type: ignore[misc]  # torch annotates vjp as a 2- or 3-tuple, with no overload for has_aux=False
        grads = pull(g.unsqueeze(0))[0]
        return tuple(grads[k].reshape(-1) for k in names)

    per_ex = vmap(one)
    xs = [x for x, bt in zip(inputs, batched) if bt]
    outs: list[list[torch.Tensor]] = [[] for _ in names]
    with torch.enable_grad():
        for start in range(0, b, chunk):
            got = per_ex(*(x[start : start + chunk].detach() for x in xs), gout[start : start + chunk])
            for k, t in enumerate(got):
                outs[k].append(t.detach())
    return [torch.cat(o, 0) for o in outs]


def sketch_tables(seed: int, numel: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """CountSketch buckets (int64 in [0, k)) and signs (float32 ±1) of ``numel`` coordinates."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, size=numel, dtype=np.int64), (rng.integers(0, 2, size=numel, dtype=np.int8) * 2 - 1).astype(np.float32)


def sketch_digest(buckets: np.ndarray, signs: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(buckets, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(signs, dtype="<f4").tobytes())
    return h.hexdigest()


def sketch(flat: torch.Tensor, buckets: torch.Tensor | None, signs: torch.Tensor | None, k: int) -> torch.Tensor:
    """Rows of ``flat`` (B × P) sketched to B × k (identity when no tables: P ≤ k)."""
    if buckets is None or signs is None:
        return flat.float()
    out = torch.zeros(flat.shape[0], k, dtype=torch.float32, device=flat.device)
    return out.index_add_(1, buckets, flat.float() * signs)


def _join(parts: list[tuple[torch.Tensor, torch.Tensor]], n: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    sizes = [x.shape[0] for x, _ in parts]
    if len(parts) == 1 and sizes[0] == n:
        return parts[0]
    if len(parts) > 1 and all(b == n for b in sizes):  # used several times per example
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)
    if len(parts) > 1 and sum(sizes) == n and len({p[0].shape[1] for p in parts}) == 1:  # accumulation
        return torch.cat([p[0] for p in parts], 0), torch.cat([p[1] for p in parts], 0)
    raise ValueError(f"rec.step got {n} row ids, but the batch through module {name!r} had {' + '.join(map(str, sizes))} examples; pass one row id per example, in batch order")
