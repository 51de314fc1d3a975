"""The training-dynamics recorder: per optimizer step, which rows went in and what each did to the
update of each parameter group.

Contract. Inside ``with record(store, version, model, optimizer) as rec:`` the user calls
``rec.step(row_ids)`` once after every ``optimizer.step()``, with one row id per example of the batch,
in batch order. Per step the recorder keeps:

- the row ids (64 hex digits or 32 raw bytes) and their weights (1.0 unless given);
- the learning rate of the optimizer's first parameter group, read just before the step (so a
  scheduler stepped before ``rec.step`` does not shift it), and the loss if given;
- per group G: ‖Δθ_G‖ and ‖Δθ_G‖², where Δθ_G is the group's actual update (parameters after the
  step minus a snapshot taken by an optimizer step pre-hook);
- per example i and group G: ``dot`` = ⟨g_i, Δθ_G⟩ and ``grad_norm`` = ‖g_i‖, where g_i is the
  example's gradient restricted to G.

Per-example gradients. The batch loss must be the **mean** over examples (``reduction="mean"``; over
tokens too for sequences): then g_i is the example's share of the batch gradient, Σ_i g_i = ∇L, and

    Σ_i ⟨g_i, Δθ_G⟩ = ⟨∇L, Δθ_G⟩                      for any optimizer.

Under plain SGD (no momentum, no weight decay) Δθ_G = −lr·∇_G L, so Σ_i dot = −‖Δθ_G‖²/lr, exactly up
to rounding. Under Adam, momentum or weight decay the update is not −lr·∇L; ``dot`` is always taken
against the *actual* update, so the first identity still holds and the second does not.

g_i is never formed. For an ``nn.Linear`` with input a_i (T×in, T = 1 without a token axis) and output
gradient γ_i (T×out), caught by a forward hook and a hook on the output tensor, the weight's per-example
gradient is Σ_t γ_it a_itᵀ, so ⟨g_i, ΔW⟩ = Σ_t γ_itᵀ ΔW a_it (one matmul, the cost of the layer's
forward pass) and ‖g_i‖² = Σ_{t,s} (a_it·a_is)(γ_it·γ_is) (Gram matrices; for T = 1, ‖a_i‖²‖γ_i‖²; when
T·(in+out) > in·out the per-example gradients are formed in chunks instead); the bias adds
⟨Σ_t γ_it, Δb⟩ and ‖Σ_t γ_it‖². A Linear applied several times in one forward pass (shared weights) has
its calls joined along the token axis; several forward/backward passes before one optimizer step
(gradient accumulation) are joined along the batch axis, in call order.

Other modules. ``nn.Embedding`` is a Linear on one-hot inputs and is traced the same way (no
per-example gradient formed); any other module owning parameters directly (``LayerNorm``, convolutions,
a user's module) is traced by ``torch.func`` per-sample gradients, formed in chunks from the captured
inputs and output gradients (:mod:`rowtrail.training.modules`). Not traced — their update counts in the
group's ‖Δθ_G‖, but not in ``dot``/``grad_norm``, and the run's config lists them under ``untraced``:
BatchNorm (its batch statistics couple the examples), embeddings with ``scale_grad_by_freq`` or
``sparse``, and tied parameters (one tensor used by several modules). A group with no traced
parameter has no contribution rows. Packed sequences (``tokens=``) split Linear and Embedding terms by
token; a torch.func module in a group refuses them. ``torch.cuda.amp.GradScaler`` is not supported
yet: the captured output gradients would carry the loss scale, and a skipped step makes ``rec.step``
refuse.

Attribution features (``features=dict(dim=K, every=N, seed=S, budget_mb=B)``; on by default with
K = 256, N = 1, B = 512; ``features=None`` turns them off). At every N-th
recorded step (0, N, 2N, …) the recorder also keeps, per example, the Kronecker-projected gradient of
the example's **own** loss (n × its share of the mean batch loss) over each traced module's
parameters: K = k_in·k_out numbers per Linear or Embedding (Kronecker projections from the same
captured inputs and output gradients, :mod:`rowtrail.training.features`; the per-example gradient is
never formed), at most K per torch.func module (a CountSketch of its per-example gradient). With
packed sequences, a row's feature is the sum over its tokens. A step's block,
n × dim_total, is stored at save as a float16 ``.npy`` object (scaled by a power of two) with an
object of its row ids, both named in the run entry's ``features`` list with the step and its lr; the
projection plan (shapes, seeds, digests) goes into the run config. Memory until save: 2·dim_total
bytes per example per checkpoint, on the device, at most B MB: past it N doubles and only the blocks
of the steps the new N names are kept (with a warning; the config's ``every`` is the final N and
``every_asked`` the one given). Test-example attribution reads them:
``store.run(run_id).attribute(model=…, test_inputs=…, test_targets=…)``
(:mod:`rowtrail.training.attribution`). The model's weights at checkpoints are not stored.

Cost. Per step: one copy of the grouped parameters before the update and two passes after it
(Δθ, norms); per traced Linear one matmul the size of its forward pass (ΔWᵀγ for every example), plus
the Gram matrices when T > 1. Per-step results stay on the device until the run is saved.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from ..errors import RefError
from ..hashing import ID_DTYPE, jcs
from ..segments import ids_column_to_numpy, numpy_to_ids_column
from ..versions.journal import now_rfc3339
from . import DEFAULT_FEATURES
from .features import PROJECTION, FeatureOptions, LayerPlan, plan_func, plan_layer, project, project_tokens
from .modules import embedding_contrib, embedding_joined, embedding_project, func_per_example, kind_of, sketch

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.version import Version

DISABLE_ENV = "ROWTRAIL_DISABLED"
_TRUE = {"1", "true", "yes", "on"}
# Plain SGD: the rank-one probe of ∇W runs every this many recorded steps (the norm check every step).
_PROBE_EVERY = 16
# Per-example gradients of one Linear formed at once when the Gram route is dearer: elements per chunk.
_MATERIALIZE_CHUNK = 1 << 24


def disabled_by_env() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in _TRUE


class _Traced:
    """One module whose parameters (or some of them) belong to groups, and its captured calls.
    ``kind`` is "linear", "embedding" (weight and bias groups) or "func" (``pnames`` in ``pgroups``)."""

    __slots__ = ("name", "module", "kind", "weight_group", "bias_group", "pnames", "pgroups", "calls")

    def __init__(self, name: str, module: nn.Module, weight_group: int | None, bias_group: int | None, kind: str = "linear", pnames: Sequence[str] = (), pgroups: Sequence[int] = ()):
        self.name = name
        self.module = module
        self.kind = kind
        self.weight_group = weight_group
        self.bias_group = bias_group
        self.pnames = list(pnames)
        self.pgroups = list(pgroups)
        # (call order, input — the inputs tuple for "func" —, output grad)
        self.calls: list[tuple[int, Any, torch.Tensor]] = []


class Recorder:
    """Records a training run's ledger; use as a context manager (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        version: str | Version,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        groups: Mapping[str, Sequence[str]] | None = None,
        corpus: str = "main",
        config: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        features: Mapping[str, Any] | None = DEFAULT_FEATURES,
        checkpoints: int | None = None,
    ):
        self.enabled = (not disabled_by_env()) if enabled is None else bool(enabled)
        self.run_id: str | None = None
        self.steps = 0
        self.store = store
        self.model = model
        self.optimizer = optimizer
        self.corpus = corpus
        self._handles: list[Any] = []
        self._entered = False
        if not self.enabled:
            return
        self.version_id = version.id if hasattr(version, "id") and not isinstance(version, str) else store.version(str(version), corpus=corpus).id
        self.user_config = dict(config or {})
        try:
            jcs(self.user_config)
        except Exception as exc:
            raise ValueError(f"config= must be JSON (string keys; numbers, strings, lists, objects; no NaN): {exc}") from None
        self._resolve_groups(groups)
        self._features_opts = FeatureOptions.parse(features) if features is not None else None
        self._every = self._features_opts.every if self._features_opts is not None else 0  # doubled past the budget
        self._budget = self._features_opts.budget_mb * 1e6 if self._features_opts is not None else 0.0
        if checkpoints is not None and (isinstance(checkpoints, bool) or not isinstance(checkpoints, int) or checkpoints < 1):
            raise ValueError(f"checkpoints= is a positive integer (keep the weights and the update every N-th recorded step), not {checkpoints!r}")
        self._checkpoint_every = checkpoints
        self._sgd_groups = _plain_sgd_groups(optimizer, self._params)
        self._snapped = True
        self._group_lrs: list[float] = []
        self._plans: list[tuple[int, LayerPlan]] = []  # (index into self._traced, plan)
        if self._features_opts is not None:
            for k, tr in enumerate(self._traced):
                self._plans.append((k, _plan(tr, self._features_opts)))
        self._proj: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._started_at: str | None = None
        self._reset_ledger()

    # -- set-up ------------------------------------------------------------------------------------
    def _resolve_groups(self, spec: Mapping[str, Sequence[str]] | None) -> None:
        model = self.model
        in_optimizer = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        named = dict(model.named_parameters())
        trainable = {n for n, p in named.items() if p.requires_grad and id(p) in in_optimizer}
        modules = dict(model.named_modules())
        if spec is None:
            spec = {}
            for child, mod in model.named_children():
                own = [f"{child}.{n}" for n, _ in mod.named_parameters()]
                if any(n in trainable for n in own):
                    spec[child] = own
            for n, _ in model.named_parameters(recurse=False):
                if n in trainable:
                    spec[n] = [n]
        owner: dict[str, str] = {}
        resolved: dict[str, list[str]] = {}
        for gname, members in spec.items():
            if isinstance(members, str):
                members = [members]
            names: list[str] = []
            for m in members:
                if m in named:
                    names.append(m)
                elif m in modules:
                    prefix = f"{m}." if m else ""
                    names.extend(prefix + n for n, _ in modules[m].named_parameters())
                else:
                    raise ValueError(f"group {gname!r}: {m!r} is neither a parameter nor a module of {type(model).__name__}; see model.named_parameters() / named_modules()")
            names = [n for n in dict.fromkeys(names) if n in trainable]
            if not names:
                raise ValueError(f"group {gname!r} has no trainable parameter that the optimizer updates")
            for n in names:
                if n in owner:
                    raise ValueError(f"parameter {n!r} is in groups {owner[n]!r} and {gname!r}; a parameter belongs to one group")
                owner[n] = gname
            resolved[str(gname)] = names
        if not resolved:
            raise ValueError("the model has no trainable parameters that the optimizer updates")
        self.group_names = list(resolved)
        self.group_params = resolved
        gindex = {g: k for k, g in enumerate(self.group_names)}
        self._params = [named[n] for g in self.group_names for n in resolved[g]]
        self._param_group = [gindex[g] for g in self.group_names for _ in resolved[g]]
        slot = {id(p): k for k, p in enumerate(self._params)}
        self._slot = slot

        # Tied parameters (one tensor under several module names) get gradient from several places.
        uses: dict[int, int] = {}
        for _, p in model.named_parameters(remove_duplicate=False):
            uses[id(p)] = uses.get(id(p), 0) + 1
        self._traced: list[_Traced] = []
        traced_params: set[int] = set()
        for mname, mod in model.named_modules():
            kind = kind_of(mod)
            if kind is None:
                continue
            if kind == "func":
                own_params = [(n, p) for n, p in mod.named_parameters(recurse=False) if id(p) in slot and uses[id(p)] == 1]
                if own_params:
                    traced_params.update(id(p) for _, p in own_params)
                    self._traced.append(_Traced(mname, mod, None, None, "func", [n for n, _ in own_params], [self._param_group[slot[id(p)]] for _, p in own_params]))
                continue
            wg = bg = None
            if id(mod.weight) in slot and uses[id(mod.weight)] == 1:
                wg = self._param_group[slot[id(mod.weight)]]
                traced_params.add(id(mod.weight))
            bias = getattr(mod, "bias", None)
            if bias is not None and id(bias) in slot and uses[id(bias)] == 1:
                bg = self._param_group[slot[id(bias)]]
                traced_params.add(id(bias))
            if wg is not None or bg is not None:
                self._traced.append(_Traced(mname, mod, wg, bg, kind))
        self.untraced = {g: [n for n in resolved[g] if id(named[n]) not in traced_params] for g in self.group_names}
        self._contrib_groups = [k for k, g in enumerate(self.group_names) if len(self.untraced[g]) < len(resolved[g])]

    def _reset_ledger(self) -> None:
        self._ids: list[bytes] = []
        self._per_example: dict[int, list[torch.Tensor]] = {}  # this step's torch.func gradients, per traced module
        self._weights: list[np.ndarray] = []
        self._lrs: list[float] = []
        self._losses: list[Any] = []
        self._update_sq: list[torch.Tensor] = []
        self._dots: list[torch.Tensor] = []
        self._norm_sq: list[torch.Tensor] = []
        self._opt_steps = 0
        self._lr = math.nan
        self._calls = 0
        # per checkpoint: (step, lr, row ids, float16 block, its power-of-two scale as a 0-d tensor)
        self._blocks: list[tuple[int, float, bytes, torch.Tensor, torch.Tensor]] = []
        self._held = 0  # bytes of those blocks, against the features budget
        self._checkpoints: list[dict[str, Any]] = []  # stored objects: weights before the step, and Δθ

    def __enter__(self) -> Recorder:
        if self._entered:
            raise RuntimeError("a Recorder records one run; call rt.training.record(...) again for another")
        self._entered = True
        if not self.enabled:
            return self
        self._started_at = now_rfc3339()
        with torch.no_grad():
            self._snapshot = [p.detach().clone() for p in self._params]
        self._proj = [plan.tensors(next(self._traced[k].module.parameters()).device) for k, plan in self._plans]
        self._handles.append(self.optimizer.register_step_pre_hook(self._before_step))
        for k, tr in enumerate(self._traced):
            self._handles.append(tr.module.register_forward_hook(self._forward_hook(k), with_kwargs=True))
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._remove_hooks()
        if not self.enabled:
            return None
        if exc_type is not None:  # nothing of a failed run is written; the exception propagates
            self._discard()
            return None
        if self._opt_steps:
            warnings.warn(f"{self._opt_steps} optimizer step(s) after the last rec.step() were not recorded (call rec.step(row_ids) after each optimizer.step())", stacklevel=2)
        try:
            self.run_id = self._save()
        finally:
            self._discard()
        return None

    def _remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _discard(self) -> None:
        self._snapshot = []
        for tr in self._traced:
            tr.calls.clear()
        self._reset_ledger()

    # -- hooks -------------------------------------------------------------------------------------
    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._opt_steps += 1
        if self._opt_steps > 1:
            return  # rec.step will refuse: the snapshot must stay the one before the first update
        self._lr = float(optimizer.param_groups[0]["lr"])
        self._group_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        every = self._checkpoint_every
        # plain SGD: the update is −lr·grad, read after the step; no snapshot (but at a checkpoint)
        self._snapped = self._sgd_groups is None or bool(every and self.steps % every == 0)
        if self._snapped:
            with torch.no_grad():
                for buf, p in zip(self._snapshot, self._params):
                    buf.copy_(p)

    def _forward_hook(self, k: int) -> Callable[..., None]:
        tr = self._traced[k]
        sink = tr.calls

        def hook(module: nn.Module, inputs: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            if not torch.is_grad_enabled() or not isinstance(output, torch.Tensor) or not output.requires_grad:
                return
            if tr.kind == "func":
                if kwargs:
                    raise ValueError(f"rec: module {tr.name!r} was called with keyword arguments ({', '.join(kwargs)}); the recorder traces per-example gradients of positional calls only — put it in no group, or call it positionally")
                a: Any = tuple(x.detach() if isinstance(x, torch.Tensor) else x for x in inputs)
            else:
                a = inputs[0].detach()
            order = self._calls
            self._calls += 1

            def on_grad(g: torch.Tensor) -> None:
                sink.append((order, a, g.detach()))

            output.register_hook(on_grad)

        return hook

    # -- per step ----------------------------------------------------------------------------------
    def step(self, row_ids: Any, weights: Any = None, loss: Any = None, tokens: Any = None) -> None:
        """Record the optimizer step just taken: the batch's row ids (one per example, in batch
        order), optional per-row weights and the loss. For packed sequences, ``tokens`` (B × T
        integers) maps every token of the batch to the index of its row in ``row_ids`` (−1: a token
        of no row, e.g. padding), and each row's contribution is the sum over its tokens."""
        if not self.enabled:
            return
        if not self._handles:
            raise RuntimeError("rec.step() outside the 'with rt.training.record(...) as rec:' block")
        if self._opt_steps != 1:
            n_steps, self._opt_steps = self._opt_steps, 0
            for tr in self._traced:
                tr.calls.clear()
            if n_steps == 0:
                raise RuntimeError("rec.step() with no optimizer.step() since the last one; call it after optimizer.step()")
            raise RuntimeError(f"{n_steps} optimizer steps since the last rec.step(); call rec.step(row_ids) after each optimizer.step()")
        ids = row_ids_bytes(row_ids)
        n = len(ids) // 32
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(w) != n:
            raise ValueError(f"rec.step got {n} row ids and {len(w)} weights")
        if not np.isfinite(w).all():
            raise ValueError("rec.step: weights must be finite")
        token_rows = None
        if tokens is not None:
            token_rows = torch.as_tensor(np.asarray(tokens), dtype=torch.int64)
            if token_rows.dim() != 2 or int(token_rows.max()) >= n or int(token_rows.min()) < -1:
                self._opt_steps = 0
                for tr in self._traced:
                    tr.calls.clear()
                raise ValueError(f"rec.step: tokens must be B × T indexes into the {n} row ids (or −1)")
        try:
            every = self._checkpoint_every
            weights = self._flat(self._snapshot) if every and self.steps % every == 0 else None
            dots, norm_sq, update_sq = self._contributions(n, token_rows)
            if weights is not None:
                self._checkpoints.append({"step": self.steps, "lr": self._lr, "weights": self._put_array(weights), "delta": self._put_array(self._flat(self._snapshot)), "numel": int(weights.size)})
            opts = self._features_opts
            block = self._features(n, token_rows) if opts is not None and self.steps % self._every == 0 else None
        finally:
            self._opt_steps = 0
            self._per_example = {}
            for tr in self._traced:
                tr.calls.clear()
        self._ids.append(ids)
        self._weights.append(w)
        self._lrs.append(self._lr)
        self._losses.append(loss.detach() if isinstance(loss, torch.Tensor) else (None if loss is None else float(loss)))
        self._update_sq.append(update_sq)
        self._dots.append(dots)
        self._norm_sq.append(norm_sq)
        if block is not None:
            self._blocks.append((self.steps, self._lr, ids, *block))
            self._held += block[0].nbytes
            if self._held > self._budget:
                self._thin()
        self.steps += 1

    def _thin(self) -> None:
        """Past the features budget: double ``every`` and keep only the blocks of the steps it names
        (exactly what recording with the doubled ``every`` from the start would hold)."""
        opts = self._features_opts
        assert opts is not None
        first = self._every == opts.every
        while self._held > self._budget and len(self._blocks) > 1:
            every = self._every * 2
            self._blocks = [b for b in self._blocks if b[0] % every == 0]
            self._held = sum(b[3].nbytes for b in self._blocks)
            self._every = every
        if first and self._every != opts.every:  # warned once, when the stride first doubles
            warnings.warn(
                f"rowtrail: attribution features filled features budget_mb={opts.budget_mb:g}; they are now kept every {self._every} steps, "
                "a stride that doubles again each time the budget fills (raise budget_mb, lower dim, or pass features=None for the ledger alone)",
                stacklevel=3,
            )

    @torch.no_grad()
    def _contributions(self, n: int, token_rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device = self._snapshot[0].device
        update_sq = torch.zeros(len(self.group_names), dtype=torch.float64, device=device)
        grad_sq: list[torch.Tensor | None] = [None] * len(self._params)
        lrs: list[float] = []
        if self._snapped:
            delta: Any = self._snapshot
            for buf, p in zip(delta, self._params):
                torch.sub(p.detach(), buf, out=buf)  # the snapshot buffer now holds Δθ
            for buf, k in zip(delta, self._param_group):
                # float32 cascade summation is accurate here; a float64 reduction is ~30x slower on CPU
                update_sq[k] += torch.linalg.vector_norm(buf).double() ** 2
        else:  # plain SGD: Δθ = −lr·grad (up to the rounding of θ − lr·grad), formed only where needed
            assert self._sgd_groups is not None
            lrs = [self._group_lrs[k] for k in self._sgd_groups]
            delta = _SgdDelta(self._snapshot, self._params, lrs)
            for j, (p, k) in enumerate(zip(self._params, self._param_group)):
                if p.grad is not None:
                    sq = torch.linalg.vector_norm(p.grad.detach()).double() ** 2
                    grad_sq[j] = sq
                    update_sq[k] += lrs[j] ** 2 * sq
        dots = torch.zeros(n, len(self.group_names), dtype=torch.float64, device=device)
        norm_sq = torch.zeros_like(dots)
        self._per_example = {}
        for k, tr in enumerate(self._traced):
            if not tr.calls:
                continue  # not used in this batch: its per-example gradients are zero
            mod = tr.module
            if tr.kind == "func":
                if token_rows is not None:
                    raise ValueError(f"rec.step: packed sequences (tokens=) split Linear and Embedding contributions by token; module {tr.name!r} ({type(mod).__name__}) has no per-token gradient — put it in no group")
                per = func_per_example(mod, tr.pnames, tr.calls, n, tr.name)
                self._per_example[k] = per
                own = dict(mod.named_parameters(recurse=False))
                for pe, pname, grp in zip(per, tr.pnames, tr.pgroups):
                    d = delta[self._slot[id(own[pname])]].reshape(-1)
                    dots[:, grp] += pe.double() @ d.double()
                    norm_sq[:, grp] += torch.sum(pe.double() ** 2, 1)
                continue
            if tr.kind == "embedding":
                assert isinstance(mod, nn.Embedding)  # kind_of gives "embedding" only for an nn.Embedding
                x, g = embedding_joined(tr.calls, token_rows.shape[0] if token_rows is not None else n, tr.name, mod.embedding_dim)
                d, sq = embedding_contrib(x, g, delta[self._slot[id(mod.weight)]], mod.padding_idx, token_rows, n)
                dots[:, tr.weight_group] += d
                norm_sq[:, tr.weight_group] += sq
                continue
            assert isinstance(mod, nn.Linear)  # the remaining kind, "linear", is only an nn.Linear
            if token_rows is not None:
                a, g = _joined(tr, token_rows.shape[0])
                _packed(a, g, token_rows.to(a.device), n, tr, delta, self._slot, dots, norm_sq)
                continue
            a, g = _joined(tr, n)
            if tr.weight_group is not None:
                fast = None
                j = self._slot[id(mod.weight)]
                if not self._snapped and (gsq := grad_sq[j]) is not None:
                    probe = self.steps % _PROBE_EVERY == 0
                    grad = mod.weight.grad
                    assert grad is not None  # grad_sq[j] is set only for a parameter with a gradient
                    fast = _linear_weight_sgd(a, g, grad.detach(), lrs[j], float(gsq), probe)
                d, s = fast if fast is not None else _linear_weight(a, g, delta[j])
                dots[:, tr.weight_group] += d
                norm_sq[:, tr.weight_group] += s
            if tr.bias_group is not None:
                db = delta[self._slot[id(mod.bias)]]
                gs = g.sum(1)
                dots[:, tr.bias_group] += (gs @ db.to(gs.dtype)).double()
                norm_sq[:, tr.bias_group] += torch.sum(gs * gs, 1).double()
        return dots[:, self._contrib_groups], norm_sq[:, self._contrib_groups], update_sq

    @torch.no_grad()
    def _features(self, n: int, token_rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's n × dim_total feature block (float16) and its scale: per traced module the
        projected gradient of each example's own loss (n × its share of the mean batch loss); for
        packed sequences, of each row's tokens."""
        parts = []
        rows = token_rows.reshape(-1) if token_rows is not None else None
        for (k, plan), (p_in, p_out) in zip(self._plans, self._proj):
            tr = self._traced[k]
            if not tr.calls:  # not used in this batch: zero gradient
                parts.append(torch.zeros(n, plan.dim, dtype=torch.float32, device=p_in.device))
                continue
            if tr.kind == "func":
                flat = torch.cat(self._per_example[k], 1) * n
                parts.append(sketch(flat, p_in if len(p_in) else None, p_out if len(p_out) else None, plan.k_in))
                continue
            b = token_rows.shape[0] if token_rows is not None else n
            if tr.kind == "embedding":
                assert isinstance(tr.module, nn.Embedding)  # kind_of gives "embedding" only for an nn.Embedding
                x, g = embedding_joined(tr.calls, b, tr.name, tr.module.embedding_dim)
                per_token = embedding_project(x, g * n, p_in, p_out, tr.module.padding_idx)
            else:
                a, g = _joined(tr, b)
                if rows is None:
                    parts.append(project(a, g * n, p_in, p_out, plan).float())
                    continue
                per_token = project_tokens(a, g * n, p_in, p_out, plan)
            per_token = per_token.float().reshape(-1, plan.dim)
            if rows is None:
                parts.append(per_token.reshape(n, -1, plan.dim).sum(1))
            else:
                live = rows >= 0
                parts.append(torch.zeros(n, plan.dim, dtype=torch.float32, device=per_token.device).index_add_(0, rows[live], per_token[live]))
        phi = torch.cat(parts, 1)
        # a power-of-two scale maps the block's largest magnitude into [512, 1024): float16 keeps its
        # 11-bit precision for values down to ~1e-7 of the largest, and cannot overflow
        top = phi.abs().max().clamp_min(1e-30)
        scale = torch.exp2(torch.ceil(torch.log2(top)) - 10)
        return (phi / scale).to(torch.float16), scale

    @torch.no_grad()
    def _flat(self, tensors: list[torch.Tensor]) -> np.ndarray:
        return torch.cat([t.detach().reshape(-1).float() for t in tensors]).cpu().numpy()

    def _put_array(self, arr: np.ndarray) -> str:
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return self.store.backend.put_bytes(buf.getvalue())

    # -- saving ------------------------------------------------------------------------------------
    def _save(self) -> str:
        from ..ops.runs import save_run

        tables = self.tables()
        features = self._put_features()
        return save_run(
            self.store,
            version=self.version_id,
            corpus=self.corpus,
            config=self.run_config(),
            started_at=self._started_at,
            finished_at=now_rfc3339(),
            code=model_code_sha256(self.model),
            features=features,
            checkpoints=self._checkpoints if self._checkpoint_every else None,
            **tables,
        )

    def _put_features(self) -> list[dict[str, Any]] | None:
        """Write the feature blocks (``.npy``, float16) and their row ids (raw 32-byte ids) as objects."""
        if self._features_opts is None:
            return None
        backend = self.store.backend
        out = []
        for step, lr, ids, block, scale in self._blocks:
            arr = block.cpu().numpy()
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            out.append(
                {
                    "step": int(step),
                    "lr": float(lr),
                    "rows": backend.put_bytes(ids),
                    "block": backend.put_bytes(buf.getvalue()),
                    "dims": [int(arr.shape[0]), int(arr.shape[1])],
                    "scale": float(scale.item()),
                }
            )
        return out

    def tables(self) -> dict[str, pa.Table]:
        """The ledger so far as the Arrow tables ``save_run`` takes."""
        n_steps = len(self._ids)
        sizes = np.array([len(b) // 32 for b in self._ids], dtype=np.int64)
        step_of_row = np.repeat(np.arange(n_steps, dtype=np.int64), sizes)
        ids = np.frombuffer(b"".join(self._ids), dtype=ID_DTYPE)
        position = (np.arange(len(ids), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)).astype(np.int32)
        steps = pa.table(
            {
                "step": pa.array(step_of_row, pa.int64()),
                "position": pa.array(position, pa.int32()),
                "row_id": numpy_to_ids_column(ids),
                "weight": pa.array(np.concatenate(self._weights) if self._weights else np.empty(0), pa.float64()),
            }
        )
        losses = [None if x is None else float(x) for x in self._losses]
        step_meta = pa.table(
            {
                "step": pa.array(np.arange(n_steps, dtype=np.int64), pa.int64()),
                "lr": pa.array(np.array(self._lrs, dtype=np.float64), pa.float64()),
                "loss": pa.array(losses, pa.float64()),
                "batch_size": pa.array(sizes.astype(np.int32), pa.int32()),
            }
        )
        n_groups = len(self.group_names)
        update_sq = torch.stack(self._update_sq).cpu().numpy().reshape(-1) if self._update_sq else np.empty(0)
        groups = pa.table(
            {
                "step": pa.array(np.repeat(np.arange(n_steps, dtype=np.int64), n_groups), pa.int64()),
                "group": _strings(self.group_names, np.tile(np.arange(n_groups, dtype=np.int32), n_steps)),
                "delta_norm": pa.array(np.sqrt(update_sq), pa.float64()),
                "update_sq": pa.array(update_sq, pa.float64()),
            }
        )
        names = [self.group_names[k] for k in self._contrib_groups]
        n_c = len(names)
        dots = torch.cat(self._dots).cpu().numpy().reshape(-1) if self._dots else np.empty(0)
        norm_sq = torch.cat(self._norm_sq).cpu().numpy().reshape(-1) if self._norm_sq else np.empty(0)
        contributions = pa.table(
            {
                "step": pa.array(np.repeat(step_of_row, n_c), pa.int64()),
                "row_id": numpy_to_ids_column(np.repeat(ids, n_c)),
                "group": _strings(names, np.tile(np.arange(n_c, dtype=np.int32), len(ids))),
                "dot": pa.array(dots, pa.float64()),
                "grad_norm": pa.array(np.sqrt(norm_sq), pa.float64()),
            }
        )
        return {"steps": steps, "step_meta": step_meta, "groups": groups, "contributions": contributions}

    def run_config(self) -> dict[str, Any]:
        """What the run's journal entry records about the model, optimizer and groups."""
        model, opt = self.model, self.optimizer
        named = dict(model.named_parameters())
        return {
            "model": {
                "class": _qualname(type(model)),
                "parameters": int(sum(p.numel() for p in model.parameters())),
                "trainable": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
            },
            "optimizer": {"class": _qualname(type(opt)), "defaults": _jsonable(opt.defaults), "param_groups": len(opt.param_groups)},
            "groups": self.group_params,
            "group_parameters": {g: int(sum(named[n].numel() for n in names)) for g, names in self.group_params.items()},
            "untraced": {g: names for g, names in self.untraced.items() if names},
            "loss_reduction": "mean",
            "user": self.user_config,
            **({"features": self.features_config()} if self._features_opts is not None else {}),
            **({"checkpoints": self.checkpoints_config()} if self._checkpoint_every else {}),
        }

    def checkpoints_config(self) -> dict[str, Any]:
        """What a checkpoint holds: the grouped parameters, flattened in this order, as float32."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        return {
            "every": self._checkpoint_every,
            "dtype": "float32",
            "weights": "parameters before the step",
            "delta": "parameters after the step minus before",
            "parameters": [[names[id(p)], list(p.shape)] for p in self._params],
        }

    def features_config(self) -> dict[str, Any]:
        """The feature plan: options, and per Linear its projection's shapes, seed and digest."""
        opts = self._features_opts
        assert opts is not None
        plans = [plan for _, plan in self._plans]
        return {
            "projection": PROJECTION,
            "dim": opts.dim,
            "every": self._every,
            "seed": opts.seed,
            "budget_mb": opts.budget_mb,
            **({"every_asked": opts.every} if self._every != opts.every else {}),
            "dtype": "float16",
            "dim_total": int(sum(p.dim for p in plans)),
            "gradient_of": "each example's own loss (batch size x its share of the mean batch loss)",
            "layers": [p.to_json() for p in plans],
        }


# -- helpers -----------------------------------------------------------------------------------------
def _plan(tr: _Traced, opts: FeatureOptions) -> LayerPlan:
    mod = tr.module
    if tr.kind == "func":
        own = dict(mod.named_parameters(recurse=False))
        return plan_func(tr.name, tr.pnames, int(sum(own[n].numel() for n in tr.pnames)), opts)
    if tr.kind == "embedding":
        assert isinstance(mod, nn.Embedding)  # kind_of gives "embedding" only for an nn.Embedding
        return plan_layer(tr.name, mod.num_embeddings, mod.embedding_dim, True, False, opts, kind="embedding")
    assert isinstance(mod, nn.Linear)  # the remaining kind, "linear", is only an nn.Linear
    return plan_layer(tr.name, mod.in_features, mod.out_features, tr.weight_group is not None, tr.bias_group is not None, opts)


def _joined(tr: _Traced, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A Linear's captured calls as (input B×T×in, output grad B×T×out) for the step's n examples."""
    calls = sorted(tr.calls, key=lambda c: c[0])
    mod = tr.module
    assert isinstance(mod, nn.Linear)  # called for kind "linear" only
    parts = []
    for _, a, g in calls:
        if a.dim() == 1:
            a, g = a.reshape(1, 1, -1), g.reshape(1, 1, -1)
        parts.append((a.reshape(a.shape[0], -1, mod.in_features), g.reshape(g.shape[0], -1, mod.out_features)))
    sizes = [a.shape[0] for a, _ in parts]
    if len(parts) == 1 and sizes[0] == n:
        a, g = parts[0]
    elif len(parts) > 1 and all(b == n for b in sizes):  # one module used several times per example
        a, g = torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)
    elif len(parts) > 1 and sum(sizes) == n and len({p[0].shape[1] for p in parts}) == 1:  # accumulation
        a, g = torch.cat([p[0] for p in parts], 0), torch.cat([p[1] for p in parts], 0)
    else:
        raise ValueError(f"rec.step got {n} row ids, but the batch through layer {tr.name!r} had {' + '.join(map(str, sizes))} examples; pass one row id per example, in batch order")
    if a.dtype in (torch.float16, torch.bfloat16):
        a = a.float()
    return a, g.to(a.dtype)


def _packed(a: torch.Tensor, g: torch.Tensor, token_rows: torch.Tensor, n: int, tr: _Traced, delta: list[torch.Tensor], slot: dict[int, int], dots: torch.Tensor, norm_sq: torch.Tensor) -> None:
    """Contributions of a Linear on packed sequences: per-token terms summed into each token's row."""
    b, t, n_in = a.shape
    if tuple(token_rows.shape) != (b, t):
        raise ValueError(f"rec.step: tokens is {tuple(token_rows.shape)}, but layer {tr.name!r} saw {b} × {t} tokens")
    idx = token_rows.reshape(-1)
    live = idx >= 0
    same = (token_rows[:, :, None] == token_rows[:, None, :]) & (token_rows[:, :, None] >= 0)
    mod = tr.module
    if tr.weight_group is not None:
        dw = delta[slot[id(mod.weight)]]
        per_token = torch.sum((g.reshape(b * t, -1) @ dw.to(g.dtype)).reshape(b, t, n_in) * a, 2).reshape(-1).double()
        dots[:, tr.weight_group] += torch.zeros(n, dtype=torch.float64, device=a.device).index_add_(0, idx[live], per_token[live])
        pair = (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2)) * same).sum(2).reshape(-1).double()
        norm_sq[:, tr.weight_group] += torch.zeros(n, dtype=torch.float64, device=a.device).index_add_(0, idx[live], pair[live])
    if tr.bias_group is not None:
        db = delta[slot[id(mod.bias)]]
        g_rows = torch.zeros(n, g.shape[2], dtype=g.dtype, device=g.device).index_add_(0, idx[live], g.reshape(b * t, -1)[live])
        dots[:, tr.bias_group] += (g_rows @ db.to(g.dtype)).double()
        norm_sq[:, tr.bias_group] += torch.sum(g_rows * g_rows, 1).double()


class _SgdDelta:
    """Δθ = −lr·grad per parameter, written into the snapshot buffers on first use (plain SGD)."""

    def __init__(self, buffers: list[torch.Tensor], params: Sequence[torch.Tensor], lrs: list[float]):
        self.buffers, self.params, self.lrs = buffers, params, lrs
        self.done = [False] * len(buffers)

    def __getitem__(self, j: int) -> torch.Tensor:
        buf = self.buffers[j]
        if not self.done[j]:
            grad = self.params[j].grad
            if grad is None:
                buf.zero_()
            else:
                torch.mul(grad.detach(), -self.lrs[j], out=buf)
            self.done[j] = True
        return buf


def _plain_sgd_groups(optimizer: Any, params: Sequence[torch.Tensor]) -> list[int] | None:
    """Per parameter, the index of its optimizer group when the optimizer is plain SGD (no momentum,
    weight decay or maximize: the update is exactly −lr·grad); else None."""
    if type(optimizer) is not torch.optim.SGD:
        return None
    for g in optimizer.param_groups:
        if g.get("momentum", 0) or g.get("weight_decay", 0) or g.get("maximize", False) or isinstance(g.get("lr"), torch.Tensor):
            return None
    where = {id(p): k for k, g in enumerate(optimizer.param_groups) for p in g["params"]}
    return [where[id(p)] for p in params]


def _linear_weight_sgd(a: torch.Tensor, g: torch.Tensor, grad: torch.Tensor, lr: float, grad_sq: float, probe: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Under plain SGD, ΔW = −lr·∇W, and when ∇W is exactly Σ_j Σ_t γ_jt a_jtᵀ (no other gradient
    term, e.g. a penalty added to the loss) ⟨g_i, ΔW⟩ = −lr·Σ_j Σ_{t,s} (γ_it·γ_js)(a_it·a_js): Gram
    matrices of the batch, (B·T)²·(in + out) multiply-adds instead of B·T·in·out. Whether ∇W has
    that form is checked every step by its squared norm (‖∇W‖², already computed for the update,
    against the Grams' Σ), and on ``probe`` steps also by a random rank-one probe
    uᵀ∇W v = Σ (uᵀγ)(aᵀv) (Freivalds); None when a check fails or the Gram route is not cheaper."""
    b, t, n_in = a.shape
    n_out = g.shape[2]
    bt = b * t
    if bt * (n_in + n_out) >= n_in * n_out:
        return None
    af, gf = a.reshape(bt, n_in), g.reshape(bt, n_out).to(a.dtype)
    if probe:
        gen = torch.Generator(device=a.device).manual_seed(bt * 1_000_003 + n_in * 101 + n_out)
        u = torch.randn(n_out, generator=gen, device=a.device, dtype=a.dtype)
        v = torch.randn(n_in, generator=gen, device=a.device, dtype=a.dtype)
        gu, av = gf @ u, af @ v
        lhs = float(u @ (grad.to(a.dtype) @ v))
        rhs = float(gu @ av)
        if abs(lhs - rhs) > 1e-3 * float((gu.abs() * av.abs()).sum()) + 1e-30:
            return None
    pair = (gf @ gf.T).mul_(af @ af.T)  # (γ_x·γ_y)(a_x·a_y) for every two tokens of the batch
    if abs(float(pair.sum()) - grad_sq) > 1e-3 * grad_sq + 1e-30:  # ‖Σγaᵀ‖² must be ‖∇W‖²
        return None
    if t == 1:
        return (-lr * pair.sum(1)).double(), torch.diagonal(pair).double()
    per_row = pair.reshape(b, t, bt).sum(1)  # example i's tokens against every token
    sq = per_row.reshape(b, b, t).sum(2).diagonal()
    return (-lr * per_row.sum(1)).double(), sq.double()


def _linear_weight(a: torch.Tensor, g: torch.Tensor, dw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """⟨Σ_t g_t a_tᵀ, ΔW⟩ and ‖Σ_t g_t a_tᵀ‖² per example, without forming the per-example gradient
    unless the Gram route costs more."""
    b, t, n_in = a.shape
    n_out = g.shape[2]
    proj = (g.reshape(b * t, n_out) @ dw.to(g.dtype)).reshape(b, t, n_in)  # ΔWᵀγ_t for every token
    dot = torch.sum(proj.mul_(a), (1, 2)).double()
    if t == 1:
        sq = torch.sum(a * a, (1, 2)).double() * torch.sum(g * g, (1, 2)).double()
    elif t * (n_in + n_out) <= n_in * n_out:
        sq = torch.sum(torch.bmm(a, a.transpose(1, 2)).mul_(torch.bmm(g, g.transpose(1, 2))), (1, 2)).double()
    else:
        sq = torch.empty(b, dtype=torch.float64, device=a.device)
        chunk = max(1, _MATERIALIZE_CHUNK // (n_in * n_out))
        for i in range(0, b, chunk):
            per = torch.bmm(g[i : i + chunk].transpose(1, 2), a[i : i + chunk])
            sq[i : i + chunk] = torch.sum(per * per, (1, 2)).double()
    return dot, sq


def row_ids_bytes(row_ids: Any) -> bytes:
    """Row ids (64-hex strings or 32-byte values; a list, a numpy 'S32' or (n, 32) uint8 array, or
    an Arrow array) as their raw bytes, concatenated. Raises ``RefError`` naming a bad one."""
    if isinstance(row_ids, pa.ChunkedArray | pa.Array):
        if pa.types.is_fixed_size_binary(row_ids.type) and row_ids.type.byte_width == 32:
            return bytes(ids_column_to_numpy(row_ids).tobytes())
        row_ids = row_ids.to_pylist()
    elif isinstance(row_ids, np.ndarray):
        if row_ids.dtype == ID_DTYPE:
            return row_ids.tobytes()
        if row_ids.dtype == np.uint8 and row_ids.ndim == 2 and row_ids.shape[1] == 32:
            return np.ascontiguousarray(row_ids).tobytes()
        row_ids = row_ids.tolist()
    elif isinstance(row_ids, str | bytes):
        raise RefError("rec.step takes a sequence of row ids (one per example), not a single id")
    out = []
    for i, r in enumerate(row_ids):
        raw: bytes | None = None
        if isinstance(r, str):
            if len(r) == 64:
                try:
                    raw = bytes.fromhex(r)
                except ValueError:
                    raw = None
        elif isinstance(r, bytes | bytearray | memoryview):
            raw = bytes(r)
        if raw is None or len(raw) != 32:
            raise RefError(f"row id at batch position {i} is not a row id (64 hex digits or 32 bytes): {r!r}; take ids from store.rows(version).column('row_id')")
        out.append(raw)
    return b"".join(out)


def model_code_sha256(model: nn.Module) -> str | None:
    """SHA-256 of the model class's source text, or None when the source is not available."""
    try:
        source = inspect.getsource(type(model))
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()


def _strings(names: Sequence[str], codes: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(list(names), pa.string())).cast(pa.string())


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _jsonable(value: Any) -> Any:
    """Optimizer settings as JSON values (they are ours to describe, not to fingerprint)."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)
