"""The built-in steps: filter, score, reweight, upsample, sample, mix, dedupe_exact, dedupe_near, rewrite.

Each is a ``Step`` (see ``base.py``). Their ``code`` fingerprint is the source text of their class,
so changing a built-in's implementation changes its step id; a step built on a user function
(``rewrite``, a callable ``filter`` or ``score``) is fingerprinted by that function's source.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StepError
from ..hashing import ID_DTYPE, id_bytes, jcs, sort_ids
from ..segments import ids_column_to_numpy
from . import sql
from .base import CONTENT_TEXT, Changes, Step, code_fingerprint, ids_of

KEEP_POLICIES = ("source-priority", "earliest", "row-id")


def function_ref(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', getattr(fn, '__name__', '?'))}"


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _selection(batch: pa.RecordBatch, source: list[str] | None, where: str | None, attributes: dict[str, Any] | None) -> np.ndarray:
    """Rows matching every given selector (all rows when none is given)."""
    mask = np.ones(batch.num_rows, dtype=bool)
    if source is not None:
        mask &= pc.is_in(batch.column("source_id"), pa.array(source, pa.string())).to_numpy(zero_copy_only=False)
    if attributes:
        for name, value in attributes.items():
            mask &= pc.equal(batch.column(name), pa.scalar(value)).fill_null(False).to_numpy(zero_copy_only=False)
    if where is not None:
        mask &= sql.predicate(batch, where)
    return mask


def _selector_needs(source: list[str] | None, where: str | None, attributes: dict[str, Any] | None) -> frozenset[str]:
    needs: set[str] = set()
    if source is not None:
        needs.add("source_id")
    if attributes:
        needs.update(attributes)
    if where is not None:
        needs.update(sql.referenced_columns(where))
    return frozenset(needs)


def _seed(value: str | int, kind: str) -> str:
    """Seeds are strings or integers: anything else has no stable text (never ``str(object())``)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise StepError(f"{kind}: seed {value!r} cannot be hashed; use a string or an integer")
    return str(value)


def _content_dicts(batch: pa.RecordBatch) -> list[Any]:
    loads = orjson.loads
    return [loads(t) for t in batch.column(CONTENT_TEXT).to_pylist()]


# -- filter and score ------------------------------------------------------------------------------
class Filter(Step):
    """Keep rows where a SQL predicate is true (or a Python callable returns true); drop the rest
    with the given reason code. A callable returns ``True`` / ``False`` / ``(False, reason)``."""

    kind = "filter"
    helpers = ("rowtrail.steps.sql",)

    def __init__(self, where: str | Callable[..., Any], reason: str = "filtered", *, name: str | None = None, version: str | None = None):
        self.fn: Callable[..., Any] | None = None
        if callable(where):
            self.fn = where
            super().__init__(str(name or getattr(where, "__name__", "filter")), {"reason": reason}, version=version or "1", code=code_fingerprint(where))
            self.function = function_ref(where)
        else:
            sql.check_expression(where)
            self.where = where
            super().__init__(name or "filter", {"where": where, "reason": reason}, version=version)
        self.reason = reason

    def definition(self) -> dict[str, Any]:
        d = super().definition()
        if self.fn is not None:
            d["function"] = self.function
        return d

    @property
    def needs(self) -> frozenset[str]:
        return frozenset([CONTENT_TEXT]) if self.fn is not None else sql.referenced_columns(self.where)

    @property
    def expressions(self) -> tuple[str, ...]:
        return () if self.fn is not None else (self.where,)

    def apply(self, batch: pa.RecordBatch, out: Changes, plan: Any = None) -> None:
        if self.fn is None:
            keep = sql.predicate(batch, self.where)
            out.drop(~keep, self.reason, f"filter '{self.name}': not ({self.where})")
            return
        idx, reasons = [], []
        for i, row in enumerate(_content_dicts(batch)):
            verdict = self.fn(row)
            ok, why = (verdict[0], verdict[1]) if isinstance(verdict, tuple) else (verdict, None)
            if not ok:
                idx.append(i)
                reasons.append(str(why) if why else f"rejected by {self.function}")
        out.drop(np.array(idx, dtype=np.int64), self.reason, reasons)


class Score(Step):
    """Attach a curation score (a SQL expression or a callable over the content) as a column; with
    ``min``, rows scoring below it (or with no score) are dropped with reason ``below-<column>``."""

    kind = "score"
    helpers = ("rowtrail.steps.sql",)

    def __init__(self, column: str, expr: str | Callable[..., Any], *, min: float | None = None, name: str | None = None, version: str | None = None):  # noqa: A002
        self.column = column
        self.min = min
        self.fn: Callable[..., Any] | None = None
        params: dict[str, Any] = {"column": column, "min": min}
        if callable(expr):
            self.fn = expr
            super().__init__(name or f"score-{column}", params, version=version or "1", code=code_fingerprint(expr))
            self.function = function_ref(expr)
        else:
            sql.check_expression(expr)
            self.expr = expr
            super().__init__(name or f"score-{column}", {**params, "expr": expr}, version=version)

    def definition(self) -> dict[str, Any]:
        d = super().definition()
        if self.fn is not None:
            d["function"] = self.function
        return d

    @property
    def needs(self) -> frozenset[str]:
        return frozenset([CONTENT_TEXT]) if self.fn is not None else sql.referenced_columns(self.expr)

    @property
    def expressions(self) -> tuple[str, ...]:
        return () if self.fn is not None else (self.expr,)

    def apply(self, batch: pa.RecordBatch, out: Changes, plan: Any = None) -> None:
        if self.fn is None:
            values = sql.evaluate(batch, self.expr)
        else:
            values = pa.array([self.fn(row) for row in _content_dicts(batch)])
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_decimal(values.type) or pa.types.is_boolean(values.type) or pa.types.is_null(values.type)):
            raise StepError(f"score '{self.column}' gives {values.type}; a score is a number or a boolean gate")
        values = values.cast(pa.float64())
        out.set_column(self.column, values)
        if self.min is not None:
            low = ~pc.greater_equal(values, pa.scalar(float(self.min))).fill_null(False).to_numpy(zero_copy_only=False)
            out.drop(low, f"below-{self.column}", f"{self.column} below {self.min:g} (step '{self.name}')")


# -- weights ---------------------------------------------------------------------------------------
class Reweight(Step):
    """Set (``weight=``) or multiply (``factor=``) the weight of the rows chosen by source, attribute
    values and/or a SQL predicate. Weights live in the version, never as copies; weight 0 drops."""

    kind = "reweight"
    helpers = (_selection, _selector_needs, "rowtrail.steps.sql")

    def __init__(
        self,
        source: str | Sequence[str] | None = None,
        *,
        where: str | None = None,
        attributes: dict[str, Any] | None = None,
        factor: float | None = None,
        weight: float | None = None,
        reason: str | None = None,
        name: str | None = None,
        version: str | None = None,
    ):
        if (factor is None) == (weight is None):
            raise StepError(f"{self.kind}: give exactly one of factor= or weight=")
        for v in (factor, weight):
            if v is not None and (not np.isfinite(v) or v < 0):
                raise StepError(f"{self.kind}: weights and factors are finite and ≥ 0 (got {v})")
        if where is not None:
            sql.check_expression(where)
        self.source, self.where, self.attributes = _as_list(source), where, dict(attributes) if attributes else None
        self.factor, self.weight, self.reason = factor, weight, reason
        params = {"source": self.source, "where": where, "attributes": self.attributes, "factor": factor, "weight": weight, "reason": reason}
        super().__init__(name or self.kind, params, version=version)

    @property
    def needs(self) -> frozenset[str]:
        return _selector_needs(self.source, self.where, self.attributes)

    def apply(self, batch: pa.RecordBatch, out: Changes, plan: Any = None) -> None:
        chosen = np.flatnonzero(_selection(batch, self.source, self.where, self.attributes))
        current = out.weight[chosen]
        new = current * self.factor if self.factor is not None else np.full(len(chosen), self.weight, dtype=np.float64)
        zero = chosen[new == 0]
        out.set_weight(chosen[new != 0], new[new != 0])
        if len(zero):
            out.drop(zero, "zero-weight", self.reason or f"weight set to 0 by step '{self.name}'")


class Upsample(Reweight):
    """Multiply the weight of the chosen rows by ``factor`` ≥ 1 (weights, not copies)."""

    kind = "upsample"

    def __init__(self, source: str | Sequence[str] | None = None, *, factor: float, where: str | None = None, attributes: dict[str, Any] | None = None, name: str | None = None, version: str | None = None):
        if not factor >= 1:
            raise StepError(f"upsample: factor must be ≥ 1 (got {factor}); use reweight to lower weights")
        super().__init__(source, where=where, attributes=attributes, factor=factor, name=name, version=version)


# -- sampling --------------------------------------------------------------------------------------
def hash_unit(ids: np.ndarray, seed: str) -> np.ndarray:
    """u = (n >> 11) / 2^53 where n is the first 8 bytes of SHA-256(seed ‖ 0x00 ‖ row_id) read as a
    big-endian integer: exact in binary64 and in [0, 1), the same for a row on any engine and in
    any batch."""
    base = hashlib.sha256(seed.encode() + b"\x00")
    out = np.empty(len(ids), dtype=">u8")
    raw = np.ascontiguousarray(ids, dtype=ID_DTYPE).tobytes()
    digests = bytearray()
    for i in range(len(ids)):
        h = base.copy()
        h.update(raw[32 * i : 32 * i + 32])
        digests += h.digest()[:8]
    out[:] = np.frombuffer(bytes(digests), dtype=">u8")
    return (out.astype(np.uint64) >> np.uint64(11)).astype(np.float64) / 2.0**53


class Sample(Step):
    """Keep each chosen row when H(seed ‖ row_id) < fraction (see ``hash_unit``); others pass."""

    kind = "sample"
    helpers = (hash_unit, _seed, _selection, _selector_needs, "rowtrail.steps.sql")

    def __init__(self, fraction: float, *, seed: str = "0", source: str | Sequence[str] | None = None, where: str | None = None, name: str | None = None, version: str | None = None):
        if not 0 <= fraction <= 1:
            raise StepError(f"sample: fraction must be in [0, 1] (got {fraction})")
        if where is not None:
            sql.check_expression(where)
        self.fraction, self.seed, self.source, self.where = float(fraction), _seed(seed, "sample"), _as_list(source), where
        super().__init__(name or "sample", {"fraction": self.fraction, "seed": self.seed, "source": self.source, "where": where}, version=version)

    @property
    def needs(self) -> frozenset[str]:
        return _selector_needs(self.source, self.where, None)

    def apply(self, batch: pa.RecordBatch, out: Changes, plan: Any = None) -> None:
        chosen = np.flatnonzero(_selection(batch, self.source, self.where, None))
        u = hash_unit(ids_of(batch)[chosen], self.seed)
        out.drop(chosen[u >= self.fraction], "sampled-out", f"not in the {self.fraction:g} sample (seed {self.seed!r})")


class Mix(Step):
    """Mix groups (sources, or values of a column) to target proportions of the rows, by hash.

    Each group g with c_g rows and target share p_g keeps rows with H(seed ‖ row_id) < f_g, where
    f_g = min(1, T·p_g / c_g) and T (the output size) is ``total`` or, by default, the largest size no
    group needs upsampling for: min over g of c_g / p_g. Groups not in ``targets`` are dropped
    (``others="drop"``) or passed untouched (``others="keep"``)."""

    kind = "mix"
    scope = "global"
    helpers = (hash_unit, _seed)

    def __init__(self, targets: dict[str, float], *, by: str = "source_id", seed: str = "0", total: int | None = None, others: str = "drop", name: str | None = None, version: str | None = None):
        if not targets or any(not (v >= 0) for v in targets.values()) or sum(targets.values()) <= 0:
            raise StepError("mix: targets are {group: share ≥ 0} with a positive sum")
        if others not in ("drop", "keep"):
            raise StepError("mix: others is 'drop' or 'keep'")
        s = math.fsum(sorted(float(v) for v in targets.values()))  # exact: independent of the order given
        self.targets = {str(k): float(v) / s for k, v in sorted(targets.items())}
        self.by, self.seed, self.total, self.others = by, _seed(seed, "mix"), total, others
        super().__init__(name or "mix", {"targets": dict(targets), "by": by, "seed": self.seed, "total": total, "others": others}, version=version)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset([self.by])

    @property
    def apply_needs(self) -> frozenset[str]:
        return frozenset([self.by])

    def features(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays([batch.column("row_id"), batch.column(self.by).cast(pa.string())], names=["row_id", "group"])

    by_partials = True  # the plan needs only the rows per group: engines sum them batch by batch

    def partial(self, features: pa.RecordBatch | pa.Table) -> dict[str, int]:
        """Rows per group (null groups are not counted: they keep or drop by ``others``)."""
        col = features.column("group")
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        return {str(k["values"]): int(k["counts"]) for k in pc.value_counts(col).to_pylist() if k["values"] is not None}

    def plan(self, features: pa.Table) -> dict[str, float]:
        return self.plan_from_partials([self.partial(features)])

    def plan_from_partials(self, partials: list[dict[str, int]]) -> dict[str, float]:
        counts: dict[str, int] = {}
        for part in partials:
            for g, n in part.items():
                counts[g] = counts.get(g, 0) + n
        present = {g: p for g, p in self.targets.items() if p > 0}
        missing = [g for g in present if counts.get(g, 0) == 0]
        if missing:
            raise StepError(f"mix: no rows for target group(s) {', '.join(missing)} in column '{self.by}'")
        total = float(self.total) if self.total is not None else min(counts[g] / p for g, p in present.items())
        return {g: min(1.0, total * self.targets.get(g, 0.0) / counts[g]) if g in self.targets else (1.0 if self.others == "keep" else 0.0) for g in counts}

    def apply(self, batch: pa.RecordBatch, out: Changes, plan: Any = None) -> None:
        groups = batch.column(self.by).cast(pa.string()).to_pylist()
        frac = np.array([plan.get(g, 1.0 if self.others == "keep" else 0.0) if g is not None else (1.0 if self.others == "keep" else 0.0) for g in groups], dtype=np.float64)
        u = hash_unit(ids_of(batch), self.seed)
        out.drop(u >= frac, "mixed-out", f"over the mix target for its {self.by} (seed {self.seed!r})")


# -- dedupe ----------------------------------------------------------------------------------------
def keep_order(ids: np.ndarray, sources: pa.Array, seqs: np.ndarray, keep: str, priority: list[str] | None) -> np.ndarray:
    """A rank per row: lower survives. Source priority (listed order, then unlisted), then the
    earliest ingest (journal order), then the smallest row id."""
    id_rank = np.empty(len(ids), dtype=np.int64)
    id_rank[sort_ids(ids)] = np.arange(len(ids))
    keys = [id_rank]
    if keep in ("source-priority", "earliest"):
        keys.append(seqs.astype(np.int64))
    if keep == "source-priority":
        order = {s: i for i, s in enumerate(priority or [])}
        codes = pc.dictionary_encode(sources)
        ranks = np.array([order.get(s, len(order)) for s in codes.dictionary.to_pylist()], dtype=np.int64)
        keys.append(ranks[codes.indices.to_numpy(zero_copy_only=False)] if len(ranks) else np.zeros(len(ids), np.int64))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.lexsort(keys)] = np.arange(len(ids))
    return rank


def survivors(ids: np.ndarray, groups: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sharing a group (negative = no group), the losers' ids (sorted) and their survivors."""
    valid = np.flatnonzero(groups >= 0)
    order = valid[np.lexsort((rank[valid], groups[valid]))]
    g = groups[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    head = order[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
    losers, into = order[~first], head[~first]
    lost_ids, into_ids = ids[losers], ids[into]
    s = sort_ids(lost_ids)
    return lost_ids[s], into_ids[s]


def _hash_groups(keys: np.ndarray) -> np.ndarray:
    """A group number per row: rows with equal 32-byte keys share one."""
    order = sort_ids(keys)
    sk = keys[order]
    first = np.ones(len(sk), dtype=bool)
    first[1:] = sk[1:] != sk[:-1]
    groups = np.empty(len(keys), dtype=np.int64)
    groups[order] = np.cumsum(first) - 1
    return groups


def _prefix_repeats(key: pa.ChunkedArray) -> np.ndarray:
    """Positions of the 32-byte keys whose first 8 bytes occur more than once (8 bytes a row)."""
    prefix = np.empty(len(key), dtype=np.uint64)
    at = 0
    for chunk in key.chunks:
        n = len(chunk)
        raw = np.frombuffer(chunk.buffers()[1], dtype=">u8", count=4 * (chunk.offset + n))
        prefix[at : at + n] = raw.reshape(-1, 4)[chunk.offset :, 0]
        at += n
    order = np.argsort(prefix, kind="stable")
    sp = prefix[order]
    del prefix
    rep = np.zeros(len(sp), dtype=bool)
    same = sp[1:] == sp[:-1]
    rep[1:] |= same
    rep[:-1] |= same
    return np.sort(order[rep])


class _Dedupe(Step):
    scope = "global"
    helpers: ClassVar[tuple[Any, ...]] = (keep_order, survivors, _hash_groups)

    def _keep_params(self, keep: str, priority: Sequence[str] | None) -> None:
        if keep not in KEEP_POLICIES:
            raise StepError(f"{self.kind}: keep is one of {', '.join(KEEP_POLICIES)}")
        self.keep, self.priority = keep, _as_list(priority)

    def _base_features(self, batch: pa.RecordBatch) -> dict[str, Any]:
        return {"row_id": batch.column("row_id"), "source_id": batch.column("source_id"), "ingest_seq": batch.column("ingest_seq")}

    def _resolve(self, features: pa.Table, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = ids_of(features)
        rank = keep_order(ids, features.column("source_id").combine_chunks(), features.column("ingest_seq").to_numpy(), self.keep, self.priority)
        return survivors(ids, groups, rank)

    def apply(self, batch: pa.RecordBatch, out: Changes, plan: Any = None) -> None:
        lost, into = plan
        if len(lost) == 0:
            return
        ids = ids_of(batch)
        pos = np.searchsorted(lost, ids)
        pos[pos >= len(lost)] = 0
        hit = np.flatnonzero(lost[pos] == ids)
        out.merge(hit, into[pos[hit]], f"duplicate folded into a kept row by '{self.name}'")


class DedupeExact(_Dedupe):
    """Drop exact duplicates by ``content_sha256`` or a named hash/column, across sources; each
    loser gets a ``merged`` edge into the survivor and a ``duplicate`` drop (keep policy: see
    ``keep_order``)."""

    kind = "dedupe_exact"
    helpers: ClassVar[tuple[Any, ...]] = (keep_order, survivors, _hash_groups, _prefix_repeats)
    # rows with different keys never decide each other: a group's survivor is the best-ranked of
    # its own rows, and ranks compare the rows' own (priority, ingest, id) — so plans by key parts merge
    partition_by = "key"

    def __init__(self, on: str = "content_sha256", *, keep: str = "source-priority", priority: Sequence[str] | None = None, name: str | None = None, version: str | None = None):
        self.on = on
        self._keep_params(keep, priority)
        super().__init__(name or "dedupe-exact", {"on": on, "keep": keep, "priority": self.priority}, version=version)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset([self.on, "source_id", "ingest_seq"])

    def features(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        cols = self._base_features(batch)
        cols["key"] = batch.column(self.on)
        return pa.RecordBatch.from_pydict(cols)

    def plan(self, features: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        key = features.column("key")
        if pa.types.is_fixed_size_binary(key.type) and key.type.byte_width == 32 and not key.null_count:
            # only rows whose key shares its first 8 bytes with another row's can be duplicates: the
            # rest are set aside before the 32-byte sorts (ranks keep their order on any subset)
            features = features.take(pa.array(_prefix_repeats(key)))
            groups = _hash_groups(ids_column_to_numpy(features.column("key").combine_chunks()))  # one sort, no hashing of keys
        else:
            key = key.combine_chunks()
            enc = pc.dictionary_encode(key)
            groups = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        return self._resolve(features, groups)

    def merge_plans(self, plans: list[tuple[np.ndarray, np.ndarray] | None]) -> tuple[np.ndarray, np.ndarray]:
        """The plans of key partitions as one: every loser (in exactly one part) with its survivor,
        sorted. Empties ``plans`` as it goes (each part is freed once copied: 1.5× the plan at peak)."""
        n = sum(len(p[0]) for p in plans if p is not None)
        lost, into = np.empty(n, ID_DTYPE), np.empty(n, ID_DTYPE)
        at = 0
        while plans:
            part = plans.pop()
            if part is not None:
                k = len(part[0])
                lost[at : at + k], into[at : at + k] = part
                at += k
            del part
        order = sort_ids(lost)
        lost = lost[order]
        return lost, into[order]


class DedupeNear(_Dedupe):
    """Drop near duplicates (MinHash LSH over word shingles of one or more content fields, estimated
    Jaccard ≥ ``threshold``) with the same merge semantics as ``dedupe_exact``.

    Its plan sees every signature at once (no ``partition_by``): LSH bands link rows whose bands
    agree anywhere, and a group can chain through rows that share no one band value, so no single
    key splits the groups. An engine holds its features (512 B a row at 128 permutations) whole."""

    kind = "dedupe_near"
    helpers = (keep_order, survivors, "rowtrail.steps.minhash")

    def __init__(self, on: str | Sequence[str], *, threshold: float = 0.8, shingle: int = 5, num_perm: int = 128, seed: int = 1, keep: str = "source-priority", priority: Sequence[str] | None = None, name: str | None = None, version: str | None = None):
        if not 0 < threshold <= 1:
            raise StepError("dedupe_near: threshold is in (0, 1]")
        self.fields = _as_list(on) or []
        self.threshold, self.shingle, self.num_perm, self.seed = float(threshold), int(shingle), int(num_perm), int(seed)
        self._keep_params(keep, priority)
        params = {"on": self.fields, "threshold": self.threshold, "shingle": self.shingle, "num_perm": self.num_perm, "seed": self.seed, "keep": keep, "priority": self.priority}
        super().__init__(name or "dedupe-near", params, version=version)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset([*self.fields, "source_id", "ingest_seq"])

    def _texts(self, batch: pa.RecordBatch) -> pa.Array:
        cols = [batch.column(f).cast(pa.string()).fill_null("") for f in self.fields]
        return cols[0] if len(cols) == 1 else pc.binary_join_element_wise(*cols, "\n")

    def features(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        from .minhash import signatures

        sigs = np.ascontiguousarray(signatures(self._texts(batch), num_perm=self.num_perm, shingle=self.shingle, seed=self.seed))
        width = sigs.shape[1] * sigs.dtype.itemsize
        col = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(sigs), [None, pa.py_buffer(sigs.tobytes())])
        cols = self._base_features(batch)
        cols["sig"] = col
        self._sig_dtype = sigs.dtype
        return pa.RecordBatch.from_pydict(cols)

    def plan(self, features: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        from .minhash import groups as near_groups

        col = features.column("sig").combine_chunks()
        dtype = getattr(self, "_sig_dtype", np.uint32)
        sigs = np.frombuffer(col.buffers()[1], dtype=dtype).reshape(len(col), -1) if len(col) else np.empty((0, self.num_perm), dtype)
        labels = near_groups(sigs, threshold=self.threshold, num_perm=self.num_perm)
        return self._resolve(features, labels.astype(np.int64))


# -- rewrite ---------------------------------------------------------------------------------------
class Rewrite(Step):
    """Rewrite content with a pinned Python function. With ``field``, the function maps that
    field's value to its new value; without, it maps the content object to a new object (or a list
    of objects: a ``split``). Returning the input unchanged (or None) passes the row with its id;
    a changed row becomes a derived row with a ``modified`` edge from its original."""

    kind = "rewrite"

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, version: str = "1", field: str | None = None, params: dict[str, Any] | None = None):
        if not callable(fn):
            raise StepError("rewrite: give a function")
        self.fn, self.field, self.kwargs = fn, field, dict(params or {})
        all_params = {**({"field": field} if field is not None else {}), **self.kwargs}
        super().__init__(str(name or getattr(fn, "__name__", "rewrite")), all_params, version=version, code=code_fingerprint(fn))
        self.function = function_ref(fn)

    def definition(self) -> dict[str, Any]:
        return {**super().definition(), "function": self.function}

    @property
    def needs(self) -> frozenset[str]:
        return frozenset([CONTENT_TEXT])

    def apply(self, batch: pa.RecordBatch, out: Changes, plan: Any = None) -> None:
        texts = batch.column(CONTENT_TEXT).to_pylist()
        for i, text in enumerate(texts):
            row = orjson.loads(text)
            if self.field is not None:
                if self.field not in row:
                    continue
                new_value = self.fn(row[self.field], **self.kwargs)
                result: Any = None if new_value is None else {**row, self.field: new_value}
            else:
                result = self.fn(row, **self.kwargs)
            if result is None:
                continue
            children = result if isinstance(result, list) else [result]
            if not children or not all(isinstance(c, dict) for c in children):
                raise StepError(f"rewrite '{self.name}' returned {type(result).__name__} for row {id_bytes(out.ids, i).hex()}; return a dict, a list of dicts, or None")
            encoded = [jcs(c).decode() for c in children]
            if len(encoded) == 1 and encoded[0] == text:
                continue
            out.replace(i, encoded, "split" if isinstance(result, list) else "modified")


BUILTINS: dict[str, type[Step]] = {
    cls.kind: cls for cls in (Filter, Score, Reweight, Upsample, Sample, Mix, DedupeExact, DedupeNear, Rewrite)
}
USER_FUNCTION_KINDS = ("rewrite",)
