"""Test-example attribution: which training rows helped a model on given test examples.

Contract. ``store.run(run_id).attribute(model=model, test_inputs=X, test_targets=y, measure=…)``
returns an :class:`Attribution` whose ``scores(train_ids)`` is a ``[n_query, n_train]`` array:
**positive means the training row helps the query** (raises its margin / lowers its loss). It needs
a run recorded with ``features=dict(dim=K, every=N)`` (see :mod:`rowtrail.training.features`).

Score. With φ_i,c the recorded projected gradient of training row i's own loss at checkpoint step c
(learning rate lr_c), ψ_q the projected gradient of the query's measure f_q, and F the damped Fisher,

    score(q, i) = −Σ_c lr_c · ψ_qᵀ (F + λI)⁻¹ φ_i,c

— TracIn over the recorded steps (an SGD step −lr·∇ℓ_i changes f_q by −lr·⟨∇f_q, ∇ℓ_i⟩ to first
order) with a TRAK/LoGra-style Fisher preconditioner. f is ``−loss`` for ``measure="loss"`` (cross
entropy of the logits, the mean over tokens for sequence outputs) or, for ``"margin"``, the correct
class's logit minus the largest other logit (mean over tokens); a callable ``measure(outputs,
targets)`` returning one value per example (higher = better) is also accepted. A row seen at several
checkpoints gets the sum.

Fisher. ``fisher="run"`` (default): one F = ΦᵀΦ/N over every recorded feature row of the run (all
checkpoints) — with N ≫ dim this is a proper empirical Fisher, as TRAK's ΦᵀΦ over the training set.
``fisher="checkpoint"``: F_c = Φ_cᵀΦ_c/n_c from checkpoint c's own batch, the formula taken literally;
a batch's Fisher has rank ≤ n_c, so the damping dominates outside the batch's span and a row's score
becomes its share of the query gradient within its batch (computed exactly via
Φ_c(F_c+λI)⁻¹ = n_c(n_cλI + Φ_cΦ_cᵀ)⁻¹Φ_c). Measured on the planted-duplicate test (121 rows,
batches of 16, every=1): the run Fisher ranks the planted row 1st, 13× ahead of the next; the
per-batch Fisher ranks it 33rd — use it only with checkpoints that hold many rows. λ defaults to 0.1 × the mean diagonal of F (of each F_c);
``damping=`` sets it outright.

Weights. A run recorded with ``checkpoints=N`` keeps the grouped parameters (and the update) every
N-th step; then ψ_q for a feature block is computed at the weights of the latest checkpoint at or
before the block's step (``weights="auto"``/``"checkpoints"``), as TracIn-CP recomputes the test
gradient at each checkpoint. Without checkpoints (or with ``weights="final"``) ψ_q is computed with the
model as passed (normally the final weights) and reused at every step. The training features are
always from the weights each step actually saw. Under Adam or momentum the SGD-style step (−lr·∇ℓ_i)
is an approximation; the optimizer's preconditioner is not used (Adam's elementwise scaling does not
factor through the Kronecker projection), and the result says so in ``notes`` (with a warning).
Only the parameters that the recorder traced contribute (Linear, Embedding and torch.func modules;
see the run config's ``features.layers``).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import RefError, StoreError
from ..hashing import ID_DTYPE, ids_from_hex, ids_hex
from .features import PROJECTION, LayerPlan, project
from .modules import embedding_joined, embedding_project, func_per_example, sketch

if TYPE_CHECKING:
    from ..ops.runs import Run

MEASURES = ("loss", "margin")
DEFAULT_DAMPING_RATIO = 0.1
_QUERY_CHUNK = 256


@dataclass
class Attribution:
    """Scores of training rows (columns, in ``train_ids`` order) for test examples (rows)."""

    run: Run
    measure: str
    train_ids: list[str]
    damping: list[float]
    fisher: str
    _scores: np.ndarray = field(repr=False)
    _ids: np.ndarray = field(repr=False)
    notes: list[str] = field(default_factory=list)  # what the scores assume that the run did not do

    def scores(self, train_ids: Sequence[str] | np.ndarray | None = None) -> np.ndarray:
        """``[n_query, n_train]`` float64 scores; positive = the row helps. ``train_ids`` (hex or
        ``ID_DTYPE``) picks and orders the columns; default: ``self.train_ids``. A row the run's
        feature blocks never saw is refused."""
        if train_ids is None:
            return self._scores.copy()
        ids = train_ids if isinstance(train_ids, np.ndarray) and train_ids.dtype == ID_DTYPE else ids_from_hex([str(r).lower() for r in train_ids])
        pos = np.searchsorted(self._ids, ids)
        pos[pos >= len(self._ids)] = 0
        found = self._ids[pos] == ids if len(self._ids) else np.zeros(len(ids), bool)
        if not found.all():
            missing = ids_hex(ids[~found][:1])[0]
            raise RefError(f"row {missing} is not in run {self.run.id}'s feature blocks ({int((~found).sum())} such row(s)); see .train_ids")
        return self._scores[:, pos]

    def top(self, query: int, k: int = 10) -> list[dict[str, Any]]:
        """The k rows that helped test example ``query`` most, with their provenance (source,
        license, legal basis, admitting policy rule)."""
        if not 0 <= query < self._scores.shape[0]:
            raise IndexError(f"query {query} out of range: {self._scores.shape[0]} test example(s)")
        row = self._scores[query]
        order = np.argsort(-row, kind="stable")[:k]
        return [{"row_id": p.pop("row_id"), "score": float(row[i]), **p} for i, p in zip(order, self.run.provenance(self._ids[order]))]


    def counterfactual(self, rows: Sequence[str] | None = None, *, source: str | None = None, retrain: Callable[[list[str]], Any] | None = None) -> dict[str, Any]:
        """The predicted change of each test example's measure if ``rows`` — or every row of
        ``source`` — were left out of training: minus the sum of their scores (an additive,
        first-order prediction). With ``retrain`` (a function that trains a fresh model on the given
        row ids and returns its measure per test example), also the actual change: the measure
        retrained without those rows minus the measure retrained on all of them."""
        if (rows is None) == (source is None):
            raise ValueError("give rows= or source=")
        if source is not None:
            recs = self.run.store.version_rows(self.run.entry["version_id"])
            from ..ops.remove import rows_of_source

            self.run.store.sources.get(source)
            chosen = recs["id"][rows_of_source(self.run.store, recs, source)]
            removed = chosen[np.isin(chosen, self._ids)]
        else:
            removed = ids_from_hex([str(r).lower() for r in rows or []])
        predicted = -self.scores(removed).sum(axis=1) if len(removed) else np.zeros(self._scores.shape[0])
        out: dict[str, Any] = {"removed": int(len(removed)), "predicted": predicted.tolist()}
        if retrain is not None:
            keep = [r for r in self.train_ids if r not in set(ids_hex(removed))]
            full = np.asarray(retrain(list(self.train_ids)), dtype=np.float64)
            without = np.asarray(retrain(keep), dtype=np.float64)
            out["actual"] = (without - full).tolist()
        return out


def attribute_examples(
    run: Run,
    model: nn.Module,
    test_inputs: Any,
    test_targets: Any,
    *,
    measure: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "loss",
    damping: float | None = None,
    fisher: str = "run",
    weights: str = "auto",
) -> Attribution:
    """Score every training row of ``run``'s feature blocks for each test example (module docstring)."""
    cfg = (run.entry.get("config") or {}).get("features")
    blocks = run.entry.get("features") or []
    if not cfg or not blocks:
        raise RefError(f"run {run.id} recorded no attribution features (it was recorded with features=None); record it with the default features or features=dict(dim=256, every=1)")
    if cfg.get("projection") != PROJECTION:
        raise RefError(f"run {run.id} used projection {cfg.get('projection')!r}; this build reads {PROJECTION!r}")
    if fisher not in ("run", "checkpoint"):
        raise ValueError(f"fisher= is 'run' or 'checkpoint', not {fisher!r}")
    if isinstance(measure, str) and measure not in MEASURES:
        raise ValueError(f"measure= is one of {', '.join(MEASURES)} or a callable(outputs, targets) -> per-example values; not {measure!r}")
    if damping is not None and not damping > 0:
        raise ValueError(f"damping= must be positive, not {damping!r}")
    if weights not in ("auto", "checkpoints", "final"):
        raise ValueError(f"weights= is 'auto', 'checkpoints' or 'final', not {weights!r}")
    checkpoints = run.entry.get("checkpoints") or []
    if weights == "checkpoints" and not checkpoints:
        raise RefError(f"run {run.id} kept no weight checkpoints; record it with checkpoints=N, or use weights='final'")
    plans = [LayerPlan.from_json(d) for d in cfg["layers"]]
    dim_total = int(cfg["dim_total"])
    # ψ per feature block: at the weights of the latest checkpoint at or before the block's step
    # (TracIn's test gradient at each checkpoint), or with the model as passed
    use = sorted(checkpoints, key=lambda c: c["step"]) if weights != "final" else []
    kept_steps = np.array([c["step"] for c in use], dtype=np.int64)
    which = (np.searchsorted(kept_steps, [b["step"] for b in blocks], side="right") - 1).tolist()
    psis: dict[int, np.ndarray] = {}
    for k in sorted(set(which)):
        at = model if k < 0 else run.model_at(model, use[k]["step"])
        psis[k] = query_features(at, plans, test_inputs, test_targets, measure)  # [Q, D]

    loaded = [load_block(run, b, dim_total) for b in blocks]
    ids = np.unique(np.concatenate([r for r, _ in loaded])) if loaded else np.empty(0, ID_DTYPE)
    n_query = next(iter(psis.values())).shape[0]
    scores_t = np.zeros((len(ids), n_query))  # [train, query]: np.add.at on the leading axis
    lambdas: list[float] = []
    if fisher == "run":
        n_total = sum(len(r) for r, _ in loaded)
        fis = np.zeros((dim_total, dim_total))
        for _, phi in loaded:
            fis += phi.T @ phi
        fis /= max(n_total, 1)
        lam = damping if damping is not None else _default_damping(float(np.trace(fis)) / dim_total)
        lambdas.append(lam)
        inverse = np.linalg.inv(fis + lam * np.eye(dim_total))
        solved = {k: inverse @ psi.T for k, psi in psis.items()}  # (F + λI)⁻¹ψ: [D, Q]
        for b, (rows, phi), k in zip(blocks, loaded, which):
            np.add.at(scores_t, np.searchsorted(ids, rows), -float(b["lr"]) * (phi @ solved[k]))
    else:
        for b, (rows, phi), k in zip(blocks, loaded, which):
            psi = psis[k]
            n = len(rows)
            gram = phi @ phi.T
            lam = damping if damping is not None else _default_damping(float(np.trace(gram)) / (n * dim_total))
            lambdas.append(lam)
            # Φ(ΦᵀΦ/n + λI)⁻¹ψ = n(nλI + ΦΦᵀ)⁻¹Φψ (Woodbury): an n × n solve
            part = n * np.linalg.solve(gram + n * lam * np.eye(n), phi @ psi.T)
            np.add.at(scores_t, np.searchsorted(ids, rows), -float(b["lr"]) * part)
    name = measure if isinstance(measure, str) else getattr(measure, "__name__", "callable")
    notes = _optimizer_notes(run)
    for note in notes:
        warnings.warn(f"rowtrail: {note}", stacklevel=3)
    return Attribution(run=run, measure=name, train_ids=ids_hex(ids), damping=lambdas, fisher=fisher, _scores=scores_t.T.copy(), _ids=ids, notes=notes)


def _optimizer_notes(run: Run) -> list[str]:
    """The scores take each step as plain SGD (−lr·∇ℓ_i); say so when the run's optimizer was not."""
    opt = (run.entry.get("config") or {}).get("optimizer") or {}
    name = str(opt.get("class", "")).rsplit(".", 1)[-1]
    d = opt.get("defaults") or {}
    plain = name == "SGD" and not d.get("momentum") and not d.get("weight_decay") and not d.get("nesterov")
    if plain or not name:
        return []
    what = name + (" with momentum" if name == "SGD" and d.get("momentum") else "") + (" with weight decay" if d.get("weight_decay") else "")
    return [
        f"run {run.id} trained with {what}: these scores take each recorded step as a plain SGD step (−lr·∇ℓ), not the "
        "optimizer's actual update or preconditioner, so read them as a ranking; the ledger's per-group contributions "
        f"(store.run('{run.id}').attribute(group=…)) are measured against the actual update"
    ]


def _default_damping(mean_diag: float) -> float:
    lam = DEFAULT_DAMPING_RATIO * mean_diag
    return lam if lam > 0 else 1e-12


def load_block(run: Run, b: dict[str, Any], dim_total: int) -> tuple[np.ndarray, np.ndarray]:
    """A feature block as (row ids ``ID_DTYPE`` [n], features float64 [n, dim_total]); its objects'
    digests are checked and the ``.npy`` is read without pickle."""
    backend = run.store.backend
    raw = {k: backend.read_bytes(b[k]) for k in ("rows", "block")}
    for k, data in raw.items():
        if hashlib.sha256(data).hexdigest() != b[k]:
            raise StoreError(f"run {run.id}: feature object {b[k]} ({k}, step {b['step']}) is damaged; run 'rowtrail verify'")
    rows = np.frombuffer(raw["rows"], dtype=ID_DTYPE)
    arr = np.load(io.BytesIO(raw["block"]), allow_pickle=False)
    if arr.dtype != np.float16 or arr.shape != (len(rows), dim_total) or list(arr.shape) != list(b["dims"]):
        raise StoreError(f"run {run.id}: feature block of step {b['step']} is {arr.dtype}{list(arr.shape)}, expected float16{[len(rows), dim_total]}")
    return rows, arr.astype(np.float64) * float(b.get("scale", 1.0))


def query_features(
    model: nn.Module,
    plans: list[LayerPlan],
    inputs: Any,
    targets: Any,
    measure: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "loss",
) -> np.ndarray:
    """ψ: the projected gradient of each test example's measure (``−loss``, ``margin`` or a
    callable), with the model's current weights, in eval mode: float64 [n_query, dim_total]."""
    modules = dict(model.named_modules())
    for p in plans:
        _check_module(modules.get(p.name), p)
    device = next(model.parameters()).device
    mats = [p.tensors(device) for p in plans]
    x_all = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
    y_all = targets if isinstance(targets, torch.Tensor) else torch.as_tensor(np.asarray(targets))
    if len(x_all) != len(y_all):
        raise ValueError(f"{len(x_all)} test inputs but {len(y_all)} test targets")
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    try:
        for start in range(0, len(x_all), _QUERY_CHUNK):
            x = x_all[start : start + _QUERY_CHUNK].to(device)
            y = y_all[start : start + _QUERY_CHUNK].to(device)
            out.append(_chunk_features(model, plans, mats, modules, x, y, measure))
    finally:
        model.train(was_training)
    return torch.cat(out).double().cpu().numpy() if out else np.zeros((0, sum(p.dim for p in plans)))


def _check_module(mod: nn.Module | None, p: LayerPlan) -> None:
    if p.kind == "embedding":
        ok = isinstance(mod, nn.Embedding) and (mod.num_embeddings, mod.embedding_dim) == (p.n_in, p.n_out)
        want = f"Embedding({p.n_in}, {p.n_out})"
    elif p.kind == "func":
        own = dict(mod.named_parameters(recurse=False)) if mod is not None else {}
        ok = all(n in own for n in p.params) and sum(own[n].numel() for n in p.params) == p.n_in
        want = f"a module with parameters {', '.join(p.params)} ({p.n_in} numbers)"
    else:
        ok = isinstance(mod, nn.Linear) and (mod.in_features, mod.out_features) == (p.n_in, p.n_out)
        want = f"Linear({p.n_in}, {p.n_out})"
    if not ok:
        raise ValueError(f"the run's features name layer {p.name!r} as {want}; the model given has {mod!r} there — pass the model the run trained")


def _chunk_features(
    model: nn.Module,
    plans: list[LayerPlan],
    mats: list[tuple[torch.Tensor, torch.Tensor]],
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    measure: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    q = len(x)
    calls: list[list[tuple[Any, torch.Tensor]]] = [[] for _ in plans]

    def hook_for(k: int) -> Callable[..., None]:
        func = plans[k].kind == "func"

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.requires_grad:
                a = tuple(v.detach() if isinstance(v, torch.Tensor) else v for v in args) if func else args[0].detach()
                calls[k].append((a, output))

        return hook

    handles = [modules[p.name].register_forward_hook(hook_for(k)) for k, p in enumerate(plans)]
    try:
        with torch.enable_grad():
            values = _measure(model(x), y, measure)
            outputs = [o for c in calls for _, o in c]
            if not outputs:
                raise ValueError("no traced layer took part in the forward pass with gradients; are the model's parameters frozen?")
            # autograd.grad, not backward(): the model's .grad buffers stay untouched
            grads = torch.autograd.grad(values.sum(), outputs, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    parts = []
    it = iter(grads)
    for plan, (p_in, p_out), c in zip(plans, mats, calls):
        got = [(a, torch.zeros_like(o) if g is None else g.detach()) for (a, o), g in zip(c, it)]
        if not got:
            parts.append(torch.zeros(q, plan.dim, dtype=torch.float32, device=p_in.device))
        elif plan.kind == "func":
            per = func_per_example(modules[plan.name], plan.params, [(k, a, g) for k, (a, g) in enumerate(got)], q, plan.name)
            parts.append(sketch(torch.cat(per, 1), p_in if len(p_in) else None, p_out if len(p_out) else None, plan.k_in))
        elif plan.kind == "embedding":
            emb = modules[plan.name]
            assert isinstance(emb, nn.Embedding)  # checked against the plan when the modules were matched
            idx, g = embedding_joined([(k, a, g) for k, (a, g) in enumerate(got)], q, plan.name, plan.n_out)
            parts.append(embedding_project(idx, g, p_in, p_out, emb.padding_idx).sum(1))
        else:
            a = torch.cat([a.reshape(q, -1, plan.n_in) for a, _ in got], 1).float()  # shared weights: calls joined on the token axis
            g = torch.cat([g.reshape(q, -1, plan.n_out) for _, g in got], 1).float()
            parts.append(project(a, g, p_in, p_out, plan))
    return torch.cat(parts, 1)


def _measure(out: torch.Tensor, y: torch.Tensor, measure: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Per-example values of the measure, higher = better."""
    q = len(out)
    if callable(measure):
        v = measure(out, y)
        if v.shape != (q,):
            raise ValueError(f"measure(outputs, targets) must return one value per example, shape ({q},); got {tuple(v.shape)}")
        return v
    logits = out.reshape(-1, out.shape[-1])
    labels = y.reshape(-1).long()
    if len(labels) != len(logits):
        raise ValueError(f"targets {tuple(y.shape)} do not match outputs {tuple(out.shape)} (class indices, one per example or token)")
    if measure == "loss":
        per = -F.cross_entropy(logits, labels, reduction="none")
    else:
        correct = logits.gather(1, labels[:, None])[:, 0]
        others = logits.scatter(1, labels[:, None], float("-inf"))
        per = correct - others.max(1).values
    return per.reshape(q, -1).mean(1)
