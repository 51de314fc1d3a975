"""Attribution features: Kronecker-projected per-example gradients of ``nn.Linear`` layers (LoGra).

Contract. For a Linear with input a_t (``in``) and output gradient γ_t (``out``) at token t, an
example's gradient over the layer's traced parameters is G = Σ_t γ_t a'_tᵀ (``out × in'``), where a'
is a with a trailing 1 appended when the bias is traced (the bias gradient is then G's last column)
and without a when only the bias is. With fixed projections P_in (``in' × k_in``) and P_out
(``out × k_out``) the feature is

    vec(P_outᵀ G P_in) = vec(Σ_t (P_outᵀ γ_t)(P_inᵀ a'_t)ᵀ)         (row-major: index o·k_in + i)

computed from the projected a' and γ, never forming G: per example and token the cost is
``in'·k_in + out·k_out + k_in·k_out`` multiply-adds. A model's feature is its layers' features
concatenated in plan order.

Projections. k_in·k_out ≤ ``dim`` per layer (k_out ≈ √dim, capped by the layer's sizes). A side whose
k equals its size is the identity (that side is exact); otherwise its entries are N(0, 1/k), drawn
with NumPy's PCG64 (``np.random.default_rng(seed)``, ``standard_normal``, P_in then P_out, float64
rounded to float32) from a per-layer seed derived from the run's seed and the layer's name. The plan
(shapes, seeds and a SHA-256 of the matrices) goes into the run's config, so test examples are
projected identically; a regenerated matrix that does not match its digest is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

PROJECTION = "kronecker-gaussian-v1"
DEFAULT_DIM = 256
DEFAULT_EVERY = 1
DEFAULT_SEED = 0
DEFAULT_BUDGET_MB = 512
_OPTIONS = {"dim", "every", "seed", "budget_mb"}


@dataclass(frozen=True)
class FeatureOptions:
    """``features=dict(dim=K, every=N, seed=S, budget_mb=B)``: K projected dimensions per Linear,
    features at every N-th recorded step (steps 0, N, 2N, …), projections drawn from seed S, and at
    most B MB of feature blocks held until the run is saved (past it the recorder doubles N and keeps
    only the blocks of the steps the new N names: the run then holds exactly what ``every=2N`` from
    the start would have recorded)."""

    dim: int = DEFAULT_DIM
    every: int = DEFAULT_EVERY
    seed: int = DEFAULT_SEED
    budget_mb: float = DEFAULT_BUDGET_MB

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> FeatureOptions:
        unknown = set(spec) - _OPTIONS
        if unknown:
            raise ValueError(f"features= takes {', '.join(sorted(_OPTIONS))}; not {', '.join(sorted(unknown))}")
        opts = cls(**{k: spec[k] for k in _OPTIONS if k in spec})
        for name in ("dim", "every"):
            v = getattr(opts, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"features={name} must be a positive integer, not {v!r}")
        if isinstance(opts.seed, bool) or not isinstance(opts.seed, int) or opts.seed < 0:
            raise ValueError(f"features=seed must be a non-negative integer, not {opts.seed!r}")
        b = opts.budget_mb
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0:
            raise ValueError(f"features=budget_mb must be a positive number of megabytes, not {b!r}")
        return opts


@dataclass(frozen=True)
class LayerPlan:
    """One Linear's projection: which of its parameters count, the projected sizes and the seed."""

    name: str
    n_in: int
    n_out: int
    weight: bool
    bias: bool
    k_in: int
    k_out: int
    seed: int
    sha256: str = ""
    kind: str = "linear"  # "linear", "embedding" (one-hot inputs) or "func" (CountSketch; see .modules)
    params: tuple[str, ...] = ()  # "func": the module's traced parameters, in feature order

    @property
    def rows_in(self) -> int:
        return (self.n_in if self.weight else 0) + (1 if self.bias else 0)

    @property
    def dim(self) -> int:
        return self.k_in * self.k_out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"] = list(self.params)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LayerPlan:
        got = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        got["params"] = tuple(got.get("params") or ())
        return cls(**got)

    def matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """(P_in, P_out) as float32 arrays; for a "func" plan, the CountSketch's (buckets, signs),
        or two empty arrays when the sketch is the identity (k = P)."""
        if self.kind == "func":
            if self.k_in >= self.n_in:
                return np.empty(0, np.int64), np.empty(0, np.float32)
            from .modules import sketch_tables

            return sketch_tables(self.seed, self.n_in, self.k_in)
        rng = np.random.default_rng(self.seed)
        return _side(rng, self.rows_in, self.k_in), _side(rng, self.n_out, self.k_out)

    def tensors(self, device: torch.device | str | None = None, check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        p_in, p_out = self.matrices()
        if check and self.sha256 and self.digest(p_in, p_out) != self.sha256:
            raise ValueError(f"the projection of layer {self.name!r} regenerated from its seed differs from the recorded one (another NumPy?); features cannot be compared")
        return torch.from_numpy(p_in).to(device), torch.from_numpy(p_out).to(device)

    def digest(self, p_in: np.ndarray, p_out: np.ndarray) -> str:
        if self.kind == "func":
            from .modules import sketch_digest

            return sketch_digest(p_in, p_out)
        return _digest(p_in, p_out)


def _side(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    if k == rows:
        return np.eye(rows, dtype=np.float32)
    return (rng.standard_normal((rows, k)) / math.sqrt(k)).astype(np.float32)


def _digest(p_in: np.ndarray, p_out: np.ndarray) -> str:
    h = hashlib.sha256()
    for m in (p_in, p_out):
        h.update(np.ascontiguousarray(m, dtype="<f4").tobytes())
    return h.hexdigest()


def split_dim(rows_in: int, n_out: int, dim: int) -> tuple[int, int]:
    """(k_in, k_out) with k_in·k_out ≤ dim, k_in ≤ rows_in, k_out ≤ n_out, near-square."""
    k_out = min(n_out, max(1, math.isqrt(dim)))
    k_in = min(rows_in, max(1, dim // k_out))
    k_out = min(n_out, max(1, dim // k_in))
    return k_in, k_out


def layer_seed(seed: int, name: str) -> int:
    # 52 bits: a JSON number that every reader holds exactly (RFC 8785 safe integers are < 2**53)
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big") >> 12


def plan_layer(name: str, n_in: int, n_out: int, weight: bool, bias: bool, opts: FeatureOptions, kind: str = "linear") -> LayerPlan:
    """A Linear's (or, ``kind="embedding"``, an embedding's: ``n_in`` rows of ``n_out``) projection."""
    rows_in = (n_in if weight else 0) + (1 if bias else 0)
    k_in, k_out = split_dim(rows_in, n_out, opts.dim)
    plan = LayerPlan(name, n_in, n_out, weight, bias, k_in, k_out, layer_seed(opts.seed, name), kind=kind)
    return dataclasses.replace(plan, sha256=plan.digest(*plan.matrices()))


def plan_func(name: str, params: list[str], numel: int, opts: FeatureOptions) -> LayerPlan:
    """A CountSketch of the flattened gradient of a module's ``params`` (``numel`` numbers in all)."""
    k = min(opts.dim, numel)
    plan = LayerPlan(name, numel, 1, True, False, k, 1, layer_seed(opts.seed, name), kind="func", params=tuple(params))
    return dataclasses.replace(plan, sha256=plan.digest(*plan.matrices()))


def project(a: torch.Tensor, g: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, plan: LayerPlan) -> torch.Tensor:
    """Per-example vec(P_outᵀ (Σ_t γ_t a'_tᵀ) P_in) from inputs a (B×T×in) and output gradients
    g (B×T×out): a B × k_out·k_in tensor."""
    p_in = p_in.to(a.dtype)
    if plan.weight:
        pa = a @ p_in[: plan.n_in]
        if plan.bias:
            pa = pa + p_in[plan.n_in]
    else:  # bias only: a' is the constant 1
        pa = p_in[0].expand(a.shape[0], a.shape[1], plan.k_in)
    pg = g.to(a.dtype) @ p_out.to(a.dtype)
    return torch.einsum("bto,bti->boi", pg, pa).reshape(a.shape[0], plan.k_out * plan.k_in)


def project_tokens(a: torch.Tensor, g: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, plan: LayerPlan) -> torch.Tensor:
    """As :func:`project`, per token: B × T × k_out·k_in (packed sequences sum tokens by row)."""
    p_in = p_in.to(a.dtype)
    if plan.weight:
        pa = a @ p_in[: plan.n_in]
        if plan.bias:
            pa = pa + p_in[plan.n_in]
    else:
        pa = p_in[0].expand(a.shape[0], a.shape[1], plan.k_in)
    pg = g.to(a.dtype) @ p_out.to(a.dtype)
    return torch.einsum("bto,bti->btoi", pg, pa).reshape(a.shape[0], a.shape[1], plan.k_out * plan.k_in)
