"""Runs: training runs bound to a corpus version, with their training-dynamics ledger.

A run is recorded by ``rt.training.record`` (or registered from outside with ``rowtrail run record``)
and saved in one ``run`` journal entry naming Parquet tables:

- ``steps``: ``step``, ``position`` (in the batch), ``row_id``, ``weight`` — which rows each optimizer
  step consumed;
- ``step_meta``: ``step``, ``lr``, ``loss``, ``batch_size``;
- ``groups``: ``step``, ``group``, ``delta_norm`` (‖Δθ_G‖), ``update_sq`` (‖Δθ_G‖²);
- ``contributions``: ``step``, ``row_id``, ``group``, ``dot`` (⟨g_i, Δθ_G⟩: the example's gradient
  against the group's actual update), ``grad_norm`` (‖g_i‖).

A run recorded with ``features=dict(dim=K, every=N)`` also names, under ``features`` in its entry, one
block per checkpoint step: ``{step, lr, rows, block, dims, scale}`` where ``rows`` is the object of the
step's row ids (32 raw bytes each, batch order), ``block`` the object of a float16 ``.npy`` array
``dims = [rows, dim_total]`` (projected per-example gradients divided by ``scale``, a power of two),
and the run config's ``features`` holds the projection plan (training/features.py). Test-example
attribution (``attribute(model=…, test_inputs=…, test_targets=…)``) reads them; see
training/attribution.py.

Group attribution ranks rows by their share of a group's update: with the batch loss a mean, the
batch gradient is Σ_i g_i, so Σ_i ⟨g_i, Δθ_G⟩ = ⟨∇L, Δθ_G⟩; a row's **contribution** to the update is
``−lr · dot`` (under plain SGD the contributions of a step sum to ‖Δθ_G‖² exactly; under Adam or
momentum the actual update is used, so contributions still sum to −lr·⟨∇L, Δθ_G⟩, which is no longer
‖Δθ_G‖² — see docs/spec.md).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import RefError, StoreError
from ..hashing import ID_DTYPE, ids_from_hex, ids_hex
from ..segments import ids_column_to_numpy
from ..versions.journal import now_rfc3339
from .ingest import _put_table

if TYPE_CHECKING:
    from ..store import Store

TABLES = ("steps", "step_meta", "groups", "contributions")


def save_run(
    store: Store,
    *,
    version: str,
    corpus: str = "main",
    config: dict[str, Any] | None = None,
    steps: pa.Table,
    step_meta: pa.Table | None = None,
    groups: pa.Table | None = None,
    contributions: pa.Table | None = None,
    started_at: str | None = None,
    finished_at: str | None = None,
    code: str | None = None,
    source: str = "recorder",
    features: list[dict[str, Any]] | None = None,
    checkpoints: list[dict[str, Any]] | None = None,
) -> str:
    """Store a run's ledger and journal it; returns the run id. ``features`` lists the run's
    attribution feature blocks, already stored as objects (see the module docstring)."""
    info = store.state.resolve(version, corpus)
    run_id = "run-" + secrets.token_hex(8)
    digests = {}
    for name, table in (("steps", steps), ("step_meta", step_meta), ("groups", groups), ("contributions", contributions)):
        digests[name] = _put_table(store, table) if table is not None and table.num_rows else None
    consumed = ids_column_to_numpy(steps.column("row_id")) if steps.num_rows else np.empty(0, ID_DTYPE)
    distinct = np.unique(consumed)
    outside = distinct[~np.isin(distinct, store.version_rows(info.version_id)["id"])]
    blocks = [_feature_block(store, b) for b in features or []]
    with store._write() as state:
        store._append(
            state,
            {
                "kind": "run",
                "run_id": run_id,
                "version_id": info.version_id,
                "corpus": info.corpus,
                "config": config or {},
                "code": code,
                "source": source,
                "started_at": started_at,
                "finished_at": finished_at or now_rfc3339(),
                "tables": digests,
                "steps": int(steps.column("step").to_numpy().max() + 1) if steps.num_rows else 0,
                "rows_consumed": int(len(consumed)),
                "distinct_rows": int(len(distinct)),
                "rows_outside_version": int(len(outside)),
                "consumed_digest": hashlib.sha256(np.sort(distinct).tobytes()).hexdigest(),
                **({"features": blocks} if features is not None else {}),
                **({"checkpoints": [_checkpoint(store, c) for c in checkpoints]} if checkpoints is not None else {}),
            },
        )
    return run_id


def _feature_block(store: Store, b: dict[str, Any]) -> dict[str, Any]:
    """A feature block's journal form, checked: its objects exist and its shape is two integers."""
    try:
        out: dict[str, Any] = {"step": int(b["step"]), "lr": float(b["lr"]), "rows": str(b["rows"]), "block": str(b["block"]), "dims": [int(d) for d in b["dims"]], "scale": float(b.get("scale", 1.0))}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a feature block needs step, lr, rows, block, dims (and optionally scale): {exc!r} in {b!r}") from None
    if len(out["dims"]) != 2:
        raise ValueError(f"a feature block's dims are [rows, dim_total], not {out['dims']}")
    for k in ("rows", "block"):
        if not store.backend.has_object(out[k]):
            raise ValueError(f"feature block of step {out['step']}: object {out[k]} ({k}) is not in the store")
    return out


def _checkpoint(store: Store, c: dict[str, Any]) -> dict[str, Any]:
    """A weight checkpoint's journal form, checked: its two ``.npy`` objects exist."""
    out: dict[str, Any] = {"step": int(c["step"]), "lr": float(c["lr"]), "weights": str(c["weights"]), "delta": str(c["delta"]), "numel": int(c["numel"])}
    for k in ("weights", "delta"):
        if not store.backend.has_object(out[k]):
            raise ValueError(f"checkpoint of step {out['step']}: object {out[k]} ({k}) is not in the store")
    return out


def record_external(store: Store, version: str, config: dict[str, Any], row_ids: list[str], corpus: str = "main") -> str:
    """Register a run made outside the recorder, with the rows it consumed (one step)."""
    try:
        ids = ids_from_hex([r.strip().lower() for r in row_ids if r.strip()])
    except ValueError as exc:
        raise RefError(f"bad row id: {exc}") from None
    steps = pa.table(
        {
            "step": pa.array(np.zeros(len(ids), np.int64)),
            "position": pa.array(np.arange(len(ids), dtype=np.int32)),
            "row_id": pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), len(ids), [None, pa.py_buffer(ids.tobytes())]),
            "weight": pa.array(np.ones(len(ids))),
        }
    )
    return save_run(store, version=version, corpus=corpus, config=config, steps=steps, source="external")


def merge_runs(store: Store, run_ids: list[str]) -> str:
    """One run from the per-rank ledgers of a data-parallel run (one recorder per rank, ranks in
    order): every rank saw its own shard of each step and the same all-reduced update, so the steps
    tables are joined, the groups table is taken once, and each example's ``dot`` and ``grad_norm``
    are divided by the number of ranks (with averaged gradients, an example's share of the global
    batch gradient is its share of its rank's gradient over the world size)."""
    runs = [get(store, r) for r in run_ids]
    if len(runs) < 2:
        raise RefError("merge_runs needs the ledgers of two or more ranks")
    versions = {r.entry["version_id"] for r in runs}
    counts = {r.entry["steps"] for r in runs}
    if len(versions) != 1 or len(counts) != 1:
        raise RefError("the ranks' runs disagree on their version or their number of steps; they are not one data-parallel run")
    world = len(runs)
    steps_parts, contrib_parts = [], []
    offset = np.zeros(runs[0].entry["steps"], dtype=np.int64)
    for r in runs:
        t = r.table("steps")
        assert t is not None
        step = t.column("step").to_numpy()
        pos = t.column("position").to_numpy().astype(np.int64) + offset[step]
        np.maximum.at(offset, step, pos + 1)
        steps_parts.append(t.set_column(t.schema.get_field_index("position"), "position", pa.array(pos.astype(np.int32))))
        c = r.table("contributions")
        if c is not None:
            for name in ("dot", "grad_norm"):
                c = c.set_column(c.schema.get_field_index(name), name, pa.array(c.column(name).to_numpy() / world))
            contrib_parts.append(c)
    meta = runs[0].table("step_meta")
    if meta is not None:
        losses = np.mean([r.table("step_meta").column("loss").to_numpy(zero_copy_only=False).astype(float) for r in runs], axis=0)  # type: ignore[union-attr]
        sizes = np.sum([r.table("step_meta").column("batch_size").to_numpy() for r in runs], axis=0)  # type: ignore[union-attr]
        meta = meta.set_column(meta.schema.get_field_index("loss"), "loss", pa.array(losses)).set_column(meta.schema.get_field_index("batch_size"), "batch_size", pa.array(sizes.astype(np.int32)))
    config = {**runs[0].entry.get("config", {}), "merged_from": [r.id for r in runs], "world_size": world}
    return save_run(
        store,
        version=runs[0].entry["version_id"],
        corpus=runs[0].entry["corpus"],
        config=config,
        steps=pa.concat_tables(steps_parts),
        step_meta=meta,
        groups=runs[0].table("groups"),
        contributions=pa.concat_tables(contrib_parts) if contrib_parts else None,
        started_at=min(r.entry.get("started_at") or "" for r in runs) or None,
        finished_at=max(r.entry.get("finished_at") or "" for r in runs) or None,
        code=runs[0].entry.get("code"),
        source="merged",
    )


def run_entries(store: Store) -> list[dict[str, Any]]:
    return [e for e in store.state.entries if e["kind"] == "run"]


def _table(store: Store, entry: dict[str, Any], name: str) -> pa.Table | None:
    digest = (entry.get("tables") or {}).get(name)
    return pq.read_table(store.backend.object_path(digest)) if digest else None


def runs_consuming(store: Store, *, row: str | None = None, source: str | None = None) -> list[dict[str, Any]]:
    """Runs (with the steps) that consumed a row, or any row of a source."""
    out = []
    if row is not None:
        probe = ids_from_hex([row.strip().lower()])[0]
    for e in run_entries(store):
        t = _table(store, e, "steps")
        if t is None:
            continue
        ids = ids_column_to_numpy(t.column("row_id"))
        if row is not None:
            hit = ids == probe
        else:
            from .remove import rows_of_source

            recs = store.version_rows(e["version_id"])
            mine = recs["id"][rows_of_source(store, recs, source)] if source is not None else recs["id"]
            hit = np.isin(ids, mine)
        if hit.any():
            steps = np.unique(t.column("step").to_numpy()[hit])
            out.append({"run_id": e["run_id"], "version_id": e["version_id"], "finished_at": e["finished_at"], "rows": int(hit.sum()), "steps": steps.tolist()[:1000], "step_count": int(len(steps))})
    return out


def summary(e: dict[str, Any]) -> dict[str, Any]:
    out = {k: e.get(k) for k in ("run_id", "version_id", "corpus", "source", "started_at", "finished_at", "steps", "rows_consumed", "distinct_rows", "rows_outside_version", "config", "code")}
    out["feature_blocks"] = len(e.get("features") or [])
    out["checkpoints"] = [c["step"] for c in e.get("checkpoints") or []]
    return out


@dataclass
class Run:
    """A recorded training run: its ledger, and attribution over it."""

    store: Store
    entry: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.entry["run_id"])

    def table(self, name: str) -> pa.Table | None:
        if name not in TABLES:
            raise ValueError(f"a run has tables {', '.join(TABLES)}")
        return _table(self.store, self.entry, name)

    def attribute(
        self,
        group: str | None = None,
        *,
        steps: tuple[int, int] | None = None,
        top: int = 20,
        by: str = "row",
        model: Any = None,
        test_inputs: Any = None,
        test_targets: Any = None,
        measure: Any = "loss",
        damping: float | None = None,
        fisher: str = "run",
        weights: str = "auto",
    ) -> Any:
        """Two questions, by the arguments given.

        ``group=``: rows (or sources, ``by="source"``) ranked by their contribution to a parameter
        group's update (−lr·⟨g_i, Δθ_G⟩ summed over the steps), with their provenance; a dict.

        ``model=, test_inputs=, test_targets=``: which training rows helped each test example
        (``measure="loss"`` or ``"margin"``), from the run's feature blocks; an ``Attribution``
        (``.scores(train_ids)``, ``.top(query, k)``) — see :mod:`rowtrail.training.attribution`.
        ``weights="auto"`` computes the test gradients at the run's weight checkpoints when it kept
        them (``checkpoints=N``), else with ``model``; ``"final"`` always uses ``model``."""
        if model is not None or test_inputs is not None or test_targets is not None:
            if group is not None or steps is not None:
                raise ValueError("attribute() takes either group= (the update ledger) or model=, test_inputs=, test_targets= (test examples), not both")
            if model is None or test_inputs is None or test_targets is None:
                raise ValueError("test-example attribution needs model=, test_inputs= and test_targets=")
            if not self.entry.get("features"):
                raise RefError(f"run {self.id} recorded no attribution features (it was recorded with features=None); record it with rt.training.record(...) and its default features, or features=dict(dim=256, every=1)")
            from ..training.attribution import attribute_examples

            return attribute_examples(self, model, test_inputs, test_targets, measure=measure, damping=damping, fisher=fisher, weights=weights)
        contrib = self.table("contributions")
        meta = self.table("step_meta")
        if contrib is None or meta is None:
            raise RefError(f"run {self.id} recorded no contributions (a run registered from outside has only the rows it consumed)")
        groups = sorted(set(contrib.column("group").to_pylist()))
        if group is None:
            if len(groups) != 1:
                raise RefError(f"run {self.id} has groups {', '.join(groups)}; name one with group=")
            group = groups[0]
        if group not in groups:
            raise RefError(f"run {self.id} has no group '{group}'; its groups: {', '.join(groups)}")
        mask = pa.compute.equal(contrib.column("group"), group)
        t = contrib.filter(mask)
        step = t.column("step").to_numpy()
        if steps is not None:
            keep = (step >= steps[0]) & (step < steps[1])
            t, step = t.filter(pa.array(keep)), step[keep]
        lr = dict(zip(meta.column("step").to_pylist(), meta.column("lr").to_pylist()))
        share = -np.array([lr[s] for s in step.tolist()]) * t.column("dot").to_numpy()
        ids = ids_column_to_numpy(t.column("row_id"))
        uniq, inv = np.unique(ids, return_inverse=True)
        total_by_row = np.bincount(inv, weights=share, minlength=len(uniq))
        grp = self.table("groups")
        update_sq = 0.0
        if grp is not None:
            g = grp.filter(pa.compute.equal(grp.column("group"), group))
            gs = g.column("step").to_numpy()
            sel = np.ones(len(gs), bool) if steps is None else (gs >= steps[0]) & (gs < steps[1])
            update_sq = float(g.column("update_sq").to_numpy()[sel].sum())
        if by == "source":
            _, src, names = self.store.gather(self._records(uniq), want_sources=True)
            per = np.bincount(src, weights=total_by_row, minlength=len(names))
            order = np.argsort(-per)[:top]
            return {"run_id": self.id, "group": group, "by": "source", "total": float(total_by_row.sum()), "update_sq": update_sq, "top": [{"source_id": names[i], "contribution": float(per[i])} for i in order]}
        order = np.argsort(-total_by_row)[:top]
        out = [{"row_id": p.pop("row_id"), "contribution": float(total_by_row[i]), **p} for i, p in zip(order, self.provenance(uniq[order]))]
        return {"run_id": self.id, "group": group, "by": "row", "total": float(total_by_row.sum()), "update_sq": update_sq, "top": out}

    def provenance(self, ids: np.ndarray) -> list[dict[str, Any]]:
        """Per row id (``ID_DTYPE``): its source, license, legal basis and the policy rule that admitted it."""
        from .policy import row_admission

        _, src, names = self.store.gather(self._records(ids), want_sources=True)
        out = []
        for k, rid in enumerate(ids_hex(ids)):
            sid = names[src[k]] if len(names) else None
            source = self.store.state.sources.get(sid) if sid else None
            adm = row_admission(self.store, self.entry["version_id"], sid) if sid else None
            out.append(
                {
                    "row_id": rid,
                    "source_id": sid,
                    "license": source.license if source else None,
                    "legal_basis": source.legal_basis if source else None,
                    "admitted_by": adm.get("rule") if adm else None,
                    "classification": adm.get("classification") if adm else None,
                }
            )
        return out

    def checkpoint(self, step: int) -> dict[str, dict[str, Any]]:
        """The weight checkpoint kept at ``step`` (``checkpoints=N`` when recording): per parameter,
        ``{"weights": array before the step, "delta": the step's update}`` (float32 numpy arrays)."""
        got = next((c for c in self.entry.get("checkpoints") or [] if c["step"] == step), None)
        if got is None:
            kept = [c["step"] for c in self.entry.get("checkpoints") or []]
            raise RefError(f"run {self.id} kept no checkpoint at step {step}; kept: {kept[:20] or 'none (record with checkpoints=N)'}")
        flat = {k: self._array(got[k]) for k in ("weights", "delta")}
        out, at = {}, 0
        for name, shape in self.entry["config"]["checkpoints"]["parameters"]:
            size = int(np.prod(shape)) if shape else 1
            out[name] = {k: v[at : at + size].reshape(shape) for k, v in flat.items()}
            at += size
        return out

    def model_at(self, model: Any, step: int) -> Any:
        """A copy of ``model`` holding the weights kept at checkpoint ``step`` (parameters outside
        the run's groups keep the values of ``model``)."""
        import copy

        import torch

        twin = copy.deepcopy(model)
        named = dict(twin.named_parameters())
        with torch.no_grad():
            for name, arrays in self.checkpoint(step).items():
                named[name].copy_(torch.from_numpy(arrays["weights"]))
        return twin

    def _array(self, digest: str) -> np.ndarray:
        import io

        data = self.store.backend.read_bytes(digest)
        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"run {self.id}: object {digest} is damaged; run 'rowtrail verify'")
        return np.load(io.BytesIO(data), allow_pickle=False)

    def feature_blocks(self) -> list[dict[str, Any]]:
        """The run's feature block entries (empty when it was recorded without ``features=``)."""
        purged = self.store.state.purged  # a purge replaced blocks holding erased rows' features
        return [{**b, "block": purged.get(b["block"], b["block"])} for b in self.entry.get("features") or []]

    def _records(self, ids: np.ndarray) -> np.ndarray:
        recs = self.store.version_rows(self.entry["version_id"])
        pos = np.searchsorted(recs["id"], ids)
        pos[pos >= len(recs)] = 0
        found = recs["id"][pos] == ids
        if not found.all():
            raise RefError(f"{int((~found).sum())} row(s) the run consumed are not in its version")
        return recs[pos]


def get(store: Store, run_id: str) -> Run:
    for e in run_entries(store):
        if e["run_id"] == run_id or (len(run_id) >= 8 and e["run_id"].startswith(run_id)):
            return Run(store, e)
    raise RefError(f"no run '{run_id}'; see 'rowtrail runs'")
