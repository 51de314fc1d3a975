"""The Step contract: what every transformation step promises, whichever engine runs it.

A step takes Arrow record batches of the corpus's rows and returns, per batch, a ``StepOutput``:

- the rows that pass **unchanged** (they keep their row id and write no edge), with their weight,
  which a step may change (reweight, upsample; weight 0 is a drop, not a row);
- **drops**: ``row_id``, a reason code (``too-short``, ``duplicate``, ``sampled-out`` …) and a human
  reason;
- **lineage edges** ``parent → child`` of kind ``modified`` (a row's content changed: the child is a
  new derived row and replaces its parent), ``split`` (one parent, several children) or ``merged``
  (a duplicate folded into the surviving row; it also has a drop with reason ``duplicate``, so
  "B's copy survives as A's row" is answerable from either side);
- **new rows**, the children of ``modified``/``split`` edges, as canonical JSON content; their id is
  ``SHA-256(JCS(["derived", step_id, sorted parent ids, content_sha256]))`` (DESIGN format 4) and
  they inherit their first parent's provenance and weight;
- **columns**: values a step attaches to rows (``score``), stored with the version.

**Every parent is accounted for**: each input row is passed, dropped, or the parent of a
``modified``/``split`` edge — and never two of those at once. ``check_output`` enforces it; a step
that loses a row fails loudly with ``StepError``.

A step never knows which engine runs it. A **row-local** step (``scope = "row"``) decides each row
from that row alone, so any batch split gives the same answer. A **global** step (``scope =
"global"``: dedupe, mixing) first maps every batch to small per-row ``features`` (engine-agnostic,
batch-wise), sees all features once in ``plan`` (the only place with a global view), and then decides
each batch with the plan in ``apply``. A global step may say how its plan decomposes, so an engine
never has to hold every row's features at once (``engines/partition.py`` plans this way):

- **by partitions** (``partition_by``: a features column): rows whose values of that column differ
  never affect each other's decisions. An engine may split the features by a hash of that column
  modulo any P, plan each part from its own rows alone, and combine the parts' plans with
  ``merge_plans``, which must give exactly the plan ``plan`` gives over all features, whatever P
  and however rows fall into parts (dedupe_exact: its key);
- **by partials** (``by_partials = True``): the plan needs only a small summary of the
  features. ``partial`` maps one features batch to a summary, and ``plan_from_partials`` turns the
  summaries of every batch (in any grouping) into exactly the plan ``plan`` gives (mix: row counts
  per group);
- otherwise the plan sees all features at once (dedupe_near: its LSH bands link rows whose keys
  share nothing, so no key splits its groups).

Batches carry the columns a step names in ``needs``:

- ``row_id`` (32 bytes), ``weight`` (float64), ``source_id``, ``source_snapshot``, ``source_key``,
  ``content_sha256`` (32 bytes), ``ingest_id``, ``ingested_at``, ``ingest_seq`` (the journal entry
  that ingested the row: smaller is earlier), ``origin_file``, ``origin_line``, named extra hashes
  (``prompt_sha256``), declared attributes by their bare name (``lane``, ``teacher``), and columns
  attached by earlier steps (``score``);
- the content fields by name when ``needs`` holds ``CONTENT_FIELDS``, and the canonical JSON text as
  ``content`` when it holds ``CONTENT_TEXT``.

A step's identity is ``step_id = SHA-256(JCS({name, version, params, code}))`` (DESIGN format 5),
``code`` being the SHA-256 of the implementation's source text (for a user function, of that
function's source). Parameters that cannot be hashed raise; nothing ever falls back to a random id.
"""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from .. import __version__
from ..errors import StepError, ValueMappingError
from ..hashing import ID_DTYPE, id_bytes, jcs, sort_ids, step_id, to_json_value
from ..segments import ids_column_to_numpy, numpy_to_ids_column

CONTENT_FIELDS = "*content"  # every content field as its own typed column
CONTENT_TEXT = "content"  # the content object as canonical JSON text
EDGE_KINDS = ("modified", "split", "merged")
DROP_SCHEMA = pa.schema([("row_id", pa.binary(32)), ("reason_code", pa.string()), ("reason", pa.string())])
EDGE_SCHEMA = pa.schema([("parent", pa.binary(32)), ("child", pa.binary(32)), ("kind", pa.string())])


def source_text(obj: Any) -> str:
    """The source text a fingerprint is taken over (dedented, so nesting does not change it)."""
    try:
        return textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError) as exc:
        name = getattr(obj, "__qualname__", repr(obj))
        raise StepError(f"cannot read the source of {name} to fingerprint it ({exc}); define it in a .py file (not a lambda typed at a prompt)") from None


def code_fingerprint(obj: Any) -> str:
    """SHA-256 of an implementation's source text (DESIGN format 5's ``code``)."""
    return hashlib.sha256(source_text(obj).encode()).hexdigest()


def implementation_fingerprint(cls: type) -> str:
    """SHA-256 of a built-in step's implementation: the source of every class it inherits from
    below ``Step`` and of the helpers it names (functions, or modules by dotted name), in order —
    so a change anywhere in what the step runs changes its step id."""
    import importlib

    parts = [source_text(c) for c in cls.__mro__ if isinstance(c, type) and issubclass(c, Step) and c is not Step]
    for helper in getattr(cls, "helpers", ()):
        parts.append(source_text(importlib.import_module(helper) if isinstance(helper, str) else helper))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def canonical_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        value = to_json_value(params, "params")
        jcs(value)
    except (ValueMappingError, TypeError, ValueError) as exc:
        raise StepError(f"step '{name}': a parameter cannot be hashed ({exc}); use JSON values (strings, numbers, lists, objects)") from None
    return value


class Step:
    """Base class of every step; see the module docstring for the contract."""

    kind: ClassVar[str] = ""  # the built-in's name in pipeline files ("filter", "dedupe_exact" …)
    helpers: ClassVar[tuple[Any, ...]] = ()  # functions / module names a built-in runs (fingerprinted)
    scope: ClassVar[str] = "row"  # "row" (row-local) or "global"
    version: str = "1"

    def __init__(self, name: str, params: dict[str, Any], *, version: str | None = None, code: str | None = None):
        self.name = name
        if version is not None:
            self.version = str(version)
        self.params = canonical_params(name, params)
        self.code = code or implementation_fingerprint(type(self))
        self.id = step_id(self.name, self.version, self.params, self.code)

    def __repr__(self) -> str:
        return f"<step {self.name} v{self.version} {self.id[:12]}>"

    def definition(self) -> dict[str, Any]:
        """What the version records about the step (keyed by its id, outside the content)."""
        return {
            "step_id": self.id,
            "name": self.name,
            "use": self.kind or None,
            "version": self.version,
            "params": self.params,
            "code": self.code,
            "scope": self.scope,
            "rowtrail_version": __version__,
        }

    @property
    def needs(self) -> frozenset[str]:
        """Columns this step reads (besides ``row_id`` and ``weight``, always present)."""
        return frozenset()

    @property
    def expressions(self) -> tuple[str, ...]:
        """SQL expressions this step evaluates with ``steps.sql.evaluate``. An engine may evaluate
        them itself, over the same values, and hand them over as columns; a step that lists an
        expression reads the columns it names only through it."""
        return ()

    # global steps whose plan decomposes say how (module docstring); both are off by default
    partition_by: ClassVar[str | None] = None  # a features column rows of different values never interact by
    by_partials: ClassVar[bool] = False  # the plan is built from per-batch ``partial`` summaries

    # row-local steps implement apply(batch, out); global steps implement features/plan/apply
    def features(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    def plan(self, features: pa.Table) -> Any:
        return None

    def merge_plans(self, plans: list[Any]) -> Any:
        """The plan over all features from the plans of its parts (a step with ``partition_by``; None
        for a part without rows). It may empty the list, freeing each part once merged."""
        raise NotImplementedError(f"step '{self.name}' has partition_by but no merge_plans")

    def partial(self, features: pa.RecordBatch) -> Any:
        """A small summary of one features batch (a step with ``by_partials``)."""
        raise NotImplementedError(f"step '{self.name}' plans from partials but has no partial")

    def plan_from_partials(self, partials: list[Any]) -> Any:
        """The plan from the summaries of every features batch (a step with ``by_partials``)."""
        raise NotImplementedError(f"step '{self.name}' plans from partials but has no plan_from_partials")

    def apply(self, batch: pa.RecordBatch, out: Changes, plan: Any = None) -> None:
        raise NotImplementedError


def ids_of(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    return _ids_np(batch.column("row_id"))


@dataclass
class StepOutput:
    """What a step did to one batch (see the module docstring)."""

    kept: np.ndarray  # indices into the input batch of rows passed unchanged
    weights: np.ndarray  # their (possibly new) weights, aligned with ``kept``
    drops: pa.Table  # DROP_SCHEMA
    edges: pa.Table  # EDGE_SCHEMA
    new_rows: pa.Table  # row_id, content (JCS text), content_sha256, parent (index into the batch), weight
    columns: dict[str, pa.Array] = field(default_factory=dict)  # aligned with ``kept``
    accounted: bool = False  # built by Changes.finish, which checked the accounting on positions


class Changes:
    """Records what a step does to one batch; rows not mentioned pass unchanged."""

    def __init__(self, step: Step, batch: pa.RecordBatch):
        self.step = step
        self.n = batch.num_rows
        self.ids = ids_of(batch)
        self.weight = np.asarray(batch.column("weight").to_numpy(zero_copy_only=False), dtype=np.float64).copy()
        self.state = np.zeros(self.n, dtype=np.int8)  # 0 pass, 1 dropped, 2 replaced by children
        self._drops: list[tuple[np.ndarray, Any, Any]] = []
        self._merges: list[tuple[np.ndarray, np.ndarray]] = []
        self._children: list[tuple[int, str, str, str, str]] = []  # parent idx, child id, kind, content, content hash
        self.columns: dict[str, Any] = {}

    def _index(self, rows: Any) -> np.ndarray:
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return idx.astype(np.int64, copy=False)

    def _claim(self, idx: np.ndarray, state: int, what: str) -> None:
        busy = idx[self.state[idx] != 0]
        if len(busy):
            raise StepError(f"step '{self.step.name}' {what} row {id_bytes(self.ids, int(busy[0])).hex()}, which it already dropped or replaced")
        self.state[idx] = state

    def drop(self, rows: Any, code: str | Sequence[str], reason: str | Sequence[str]) -> None:
        """Drop rows (a mask or indices) with a reason code and a human reason (scalars or per row)."""
        idx = self._index(rows)
        if len(idx) == 0:
            return
        self._claim(idx, 1, "drops")
        self._drops.append((idx, code, reason))

    def merge(self, rows: Any, into: np.ndarray, reason: str = "duplicate of a kept row") -> None:
        """Fold duplicates into surviving rows (ids, aligned): a ``merged`` edge plus a ``duplicate`` drop."""
        idx = self._index(rows)
        if len(idx) == 0:
            return
        into = np.asarray(into, dtype=ID_DTYPE)
        self.drop(idx, "duplicate", reason)
        self._merges.append((idx, into))

    def set_weight(self, rows: Any, weights: Any) -> None:
        idx = self._index(rows)
        w = np.broadcast_to(np.asarray(weights, dtype=np.float64), idx.shape)
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise StepError(f"step '{self.step.name}' set a weight that is negative, NaN or infinite; weights are finite and ≥ 0 (0 drops the row)")
        self.weight[idx] = w

    def replace(self, row: int, contents: list[str], kind: str = "modified") -> list[str]:
        """Replace a row by derived rows with new content (canonical JSON texts); returns their ids."""
        if kind not in ("modified", "split"):
            raise StepError(f"edge kind {kind!r}: a step replaces a row by 'modified' or 'split' children")
        if self.state[row] != 0:
            self._claim(np.array([row]), 2, "replaces")  # raises, naming the row
        self.state[row] = 2
        parent = id_bytes(self.ids, row).hex()  # (a numpy bytes_ element would drop trailing zero bytes)
        out = []
        for text in contents:
            digest = hashlib.sha256(text.encode()).hexdigest()
            # DESIGN format 4 with one parent: the ids are lowercase hex, so this text is exactly
            # JCS(["derived", step_id, [parent], digest]) (hashing.derived_row_id, checked by the tests)
            child = hashlib.sha256(f'["derived","{self.step.id}",["{parent}"],"{digest}"]'.encode()).hexdigest()
            self._children.append((row, child, kind, text, digest))
            out.append(child)
        return out

    def set_column(self, name: str, values: pa.Array | Sequence[Any]) -> None:
        """Attach a column to this batch's rows (aligned with the input batch)."""
        arr = values if isinstance(values, pa.Array) else pa.array(values)
        if len(arr) != self.n:
            raise StepError(f"step '{self.step.name}': column '{name}' has {len(arr)} values for {self.n} rows")
        self.columns[name] = arr

    def finish(self) -> StepOutput:
        zero = np.flatnonzero((self.state == 0) & (self.weight == 0))
        if len(zero):
            self.drop(zero, "zero-weight", f"weight set to 0 by step '{self.step.name}'")
        # every parent accounted for, checked on positions (cheap): a row marked replaced must
        # have children, a dropped row exactly one drop (drop() refuses a second), merges are drops
        replaced = np.flatnonzero(self.state == 2)
        with_children = np.zeros(self.n, dtype=bool)
        with_children[[c[0] for c in self._children]] = True
        lost = replaced[~with_children[replaced]]
        if len(lost):
            raise StepError(f"step '{self.step.name}' lost {len(lost)} row(s) without a drop or an edge (first: {id_bytes(self.ids, int(lost[0])).hex()}); every parent must be passed, dropped with a reason, or replaced through an edge")
        dropped = np.zeros(self.n, dtype=np.int64)
        for idx, _code, _reason in self._drops:
            np.add.at(dropped, idx, 1)
        if np.any(dropped != (self.state == 1)):
            raise StepError(f"step '{self.step.name}' marked rows dropped without exactly one drop record each")
        kept = np.flatnonzero(self.state == 0)
        drops = _drop_table(self.ids, self._drops)
        parents, children, kinds = [], [], []
        for idx, into in self._merges:
            parents.append(self.ids[idx])
            children.append(into)
            kinds.extend(["merged"] * len(idx))
        new = self._children
        if new:
            parents.append(self.ids[np.array([c[0] for c in new])])
            children.append(np.array([bytes.fromhex(c[1]) for c in new], dtype=ID_DTYPE))
            kinds.extend(c[2] for c in new)
        edges = pa.table(
            {
                "parent": numpy_to_ids_column(np.concatenate(parents) if parents else np.empty(0, ID_DTYPE)),
                "child": numpy_to_ids_column(np.concatenate(children) if children else np.empty(0, ID_DTYPE)),
                "kind": pa.array(kinds, pa.string()),
            },
            schema=EDGE_SCHEMA,
        )
        new_rows = pa.table(
            {
                "row_id": numpy_to_ids_column(np.array([bytes.fromhex(c[1]) for c in new], dtype=ID_DTYPE)),
                "content": pa.array([c[3] for c in new], pa.string()),
                "content_sha256": numpy_to_ids_column(np.array([bytes.fromhex(c[4]) for c in new], dtype=ID_DTYPE)),
                "parent": pa.array([c[0] for c in new], pa.int64()),
                "weight": pa.array(self.weight[[c[0] for c in new]] if new else [], pa.float64()),
            }
        )
        cols = {k: v.take(pa.array(kept)) for k, v in self.columns.items()}
        return StepOutput(kept=kept, weights=self.weight[kept], drops=drops, edges=edges, new_rows=new_rows, columns=cols, accounted=True)


def _drop_table(ids: np.ndarray, drops: list[tuple[np.ndarray, Any, Any]]) -> pa.Table:
    if not drops:
        return DROP_SCHEMA.empty_table()
    parts = []
    for idx, code, reason in drops:
        n = len(idx)
        codes = pa.array([code] * n, pa.string()) if isinstance(code, str) else pa.array(list(code), pa.string())
        reasons = pa.array([reason] * n, pa.string()) if isinstance(reason, str) else pa.array(list(reason), pa.string())
        parts.append(pa.table({"row_id": numpy_to_ids_column(ids[idx]), "reason_code": codes, "reason": reasons}, schema=DROP_SCHEMA))
    return pa.concat_tables(parts).combine_chunks()


def check_output(step: Step, batch_ids: np.ndarray, out: StepOutput) -> None:
    """Every parent accounted for: passed, dropped or replaced — exactly one of them, no strangers."""
    n = len(batch_ids)
    seen = np.zeros(n, dtype=np.int64)
    kept = np.asarray(out.kept, dtype=np.int64)
    if len(kept) and (kept.min() < 0 or kept.max() >= n):
        raise StepError(f"step '{step.name}' passed a row index outside its batch")
    np.add.at(seen, kept, 1)
    dropped = _ids_np(out.drops.column("row_id"))
    replaced = _ids_np(out.edges.filter(pa.compute.is_in(out.edges.column("kind"), pa.array(["modified", "split"]))).column("parent"))
    order = sort_ids(batch_ids)
    sorted_ids = batch_ids[order]
    for ids, what in ((dropped, "dropped"), (np.unique(replaced), "replaced")):
        if len(ids) == 0:
            continue
        pos = np.searchsorted(sorted_ids, ids)
        pos[pos >= n] = 0
        strangers = sorted_ids[pos] != ids
        if strangers.any():
            raise StepError(f"step '{step.name}' {what} row {id_bytes(ids[strangers], 0).hex()}, which was not in its input")
        np.add.at(seen, order[pos], 1)
    merged = _ids_np(out.edges.filter(pa.compute.equal(out.edges.column("kind"), "merged")).column("parent"))
    if len(merged) and not np.isin(merged, dropped).all():
        raise StepError(f"step '{step.name}' merged a row without a 'duplicate' drop for it")
    lost = np.flatnonzero(seen == 0)
    if len(lost):
        raise StepError(f"step '{step.name}' lost {len(lost)} row(s) without a drop or an edge (first: {id_bytes(batch_ids, int(lost[0])).hex()}); every parent must be passed, dropped with a reason, or replaced through an edge")
    twice = np.flatnonzero(seen > 1)
    if len(twice):
        raise StepError(f"step '{step.name}' accounted for row {id_bytes(batch_ids, int(twice[0])).hex()} more than once (passed, dropped and replaced are exclusive)")
    if len(out.weights) != len(kept) or (len(out.weights) and (not np.all(np.isfinite(out.weights)) or np.any(out.weights <= 0))):
        raise StepError(f"step '{step.name}' returned weights that are not finite and > 0 for its passed rows")


def _ids_np(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return ids_column_to_numpy(col) if len(col) else np.empty(0, dtype=ID_DTYPE)


StepFactory = Callable[..., Step]
