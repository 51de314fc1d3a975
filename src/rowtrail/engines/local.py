"""The local engine: runs a pipeline's steps over a corpus's input set in this process, with Arrow,
DuckDB and numpy.

The corpus in flight is a *frame*: one record per row (``id``, ``w``, ``seg``, ``row`` — where its
provenance and content live), kept in segment order so each step reads every segment once. Steps
see Arrow batches holding only the columns they need; a row-local step runs batch by batch, a
global step maps batches to features, plans once over all features, then decides batch by batch
(see ``steps/base.py``). Rows a step creates live in *pending* segments (in memory, numbered from
``PENDING``) until the run is published, when they become ordinary segments of the store.

After each step the engine checks the step's accounting, records its drops, edges, weight changes
and attached columns, and measures what it did to the distribution (rows and weights per source,
and the drift of the monitored columns).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StepError
from ..hashing import ID_DTYPE, id_bytes, jcs, sort_ids
from ..query.rows import content_table
from ..segments import ATTR_PREFIX, PROVENANCE_BASE, numpy_to_ids_column
from ..steps.base import CONTENT_FIELDS, CONTENT_TEXT, DROP_SCHEMA, EDGE_SCHEMA, Changes, Step, StepOutput, check_output, ids_of
from ..steps.pipeline import Pipeline
from ..steps.sql import referenced_columns

if TYPE_CHECKING:
    from ..store import Store

PENDING = 1 << 31  # segment numbers at or above this are a run's in-memory segments
BATCH_ROWS = 65536
PROVENANCE_NAMES = frozenset(PROVENANCE_BASE.names) | {"ingest_seq"}
# the frame's records: RECORD_DTYPE's fields in native byte order (Arrow reads them without swaps)
FRAME_DTYPE = np.dtype([("id", ID_DTYPE), ("w", np.float64), ("seg", np.uint32), ("row", np.uint32)])
WEIGHT_SCHEMA = pa.schema([("row_id", pa.binary(32)), ("before", pa.float64()), ("after", pa.float64())])


@dataclass
class PendingSegment:
    """Rows one step created from one parent segment: provenance and content tables, in row order."""

    step_id: str
    provenance: pa.Table
    content: pa.Table
    sources: tuple[str, ...]


@dataclass
class StepRun:
    """What one step did. Its lineage tables are Arrow tables, or — once the engine has written
    them to the store (``LocalEngine.write_tables``) — the digests of those objects (None: no rows)."""

    step: Step
    drops: pa.Table | str | None
    edges: pa.Table | str | None
    weights: pa.Table | str | None
    columns: pa.Table | str | None
    report: dict[str, Any]


@dataclass
class RunResult:
    records: np.ndarray  # the output rows (FRAME_DTYPE), sorted by id (pending rows have seg ≥ PENDING)
    pending: list[PendingSegment]
    steps: list[StepRun]
    inputs: int
    monitor: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def take_fields(records: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``records[order]`` as frame records, gathered one field at a time: besides the source and
    the result, at most one field's copy is in memory (not a second whole array of records)."""
    out = np.empty(len(order), dtype=FRAME_DTYPE)
    assert FRAME_DTYPE.names is not None  # a structured dtype
    for name in FRAME_DTYPE.names:
        out[name] = records[name][order]
    return out


class Frame:
    """The rows in flight, in segment order, with what each step needs to know about them."""

    def __init__(self, records: np.ndarray, sources: np.ndarray, names: list[str]):
        key = (records["seg"].astype(np.uint64) << np.uint64(32)) | records["row"].astype(np.uint64)
        order = np.argsort(key)  # keys are unique
        del key
        self.rec = take_fields(records, order)
        self.src = sources[order].astype(np.int32)
        self.names = names
        self.columns: dict[str, pa.Array] = {}  # attached by steps, aligned with rec
        self.monitors: dict[str, pa.Array] = {}

    def __len__(self) -> int:
        return len(self.rec)

    def groups(self, positions: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(segment, frame positions) per segment, each cut into batches of at most BATCH_ROWS."""
        if positions is None:  # every row: runs of one segment found on the records themselves
            segs = self.rec["seg"]
            cuts = [0, *(np.flatnonzero(segs[1:] != segs[:-1]) + 1).tolist(), len(segs)]
            for lo, hi in zip(cuts[:-1], cuts[1:]):
                for start in range(lo, hi, BATCH_ROWS):
                    yield int(segs[lo]), np.arange(start, min(start + BATCH_ROWS, hi))
            return
        if len(positions) == 0:
            return
        segs = self.rec["seg"][positions]
        bounds = np.flatnonzero(segs[1:] != segs[:-1]) + 1
        for part in np.split(positions, bounds):
            for start in range(0, len(part), BATCH_ROWS):
                yield int(self.rec["seg"][part[0]]), part[start : start + BATCH_ROWS]


class LocalEngine:
    def __init__(self, store: Store, progress: Callable[[str, int, int], None] | None = None, strict: bool = True):
        self.store = store
        # strict: a step reading a column no row has is an error (a typo, at apply); otherwise a
        # warning (a re-run at commit, opt-out or bisect, where a removal may have taken the column)
        self.strict = strict
        self.warnings: list[str] = []
        self.pending: list[PendingSegment] = []
        self.progress = progress
        # set by a caller that publishes the run: each step's lineage tables are written as objects
        # (content-addressed, harmless if the run is never committed) as soon as the step is measured
        self.write_tables: Callable[[Any], str | None] | None = None
        self._prov_cache: dict[int, pa.Table] = {}
        self._text_cache: tuple[int, pa.ChunkedArray | None] = (-1, None)
        self._field_cache: dict[int, pa.Table] = {}
        self._kind_cache: dict[int, dict[str, list[str]]] = {}
        self._push_cache: dict[tuple[int, str], pa.Array] = {}
        self._sql_con: Any = None  # user expressions: may read the store's objects, nothing else
        import duckdb

        # the engine's own queries over its own objects (user SQL runs elsewhere, without file access)
        from ..memory import duckdb_config

        self._con = duckdb.connect(config=duckdb_config(store.backend.ensure_tmp(), threads=2))

    # -- reading columns ---------------------------------------------------------------------------
    def _segment_schema(self, seg: int) -> pa.Schema:
        if seg >= PENDING:
            return self.pending[seg - PENDING].provenance.schema
        segment = self.store.state.segments[seg]
        return pq.ParquetFile(self.store.backend.object_path(segment.provenance)).schema_arrow

    def _provenance(self, seg: int, names: list[str]) -> pa.Table:
        if seg >= PENDING:
            return self.pending[seg - PENDING].provenance
        have = self._prov_cache.get(seg)
        missing = [n for n in names if have is None or n not in have.column_names]
        if missing:
            segment = self.store.state.segments[seg]
            extra = pq.read_table(self.store.backend.object_path(segment.provenance), columns=missing)
            have = extra if have is None else pa.Table.from_arrays([*have.columns, *extra.columns], names=[*have.column_names, *extra.column_names])
            # one segment's columns at a time: steps read segment by segment, and keeping every
            # segment's would hold whole columns of the corpus for the rest of the run
            self._prov_cache = {seg: have}
        return have

    def _content_texts(self, seg: int) -> pa.ChunkedArray:
        """A segment's canonical JSON texts, in row order, as read (one chunk per row group: callers
        take or slice the rows they need; the last segment read is kept)."""
        if seg >= PENDING:
            return self.pending[seg - PENDING].content.column("content")
        if self._text_cache[0] != seg:
            segment = self.store.state.segments[seg]
            col = pq.read_table(self.store.backend.object_path(segment.content), columns=["content"]).column("content")
            self._text_cache = (seg, col)
        return self._text_cache[1]

    def _relation(self, seg: int) -> str:
        if seg >= PENDING:
            self._con.register("_rt_texts", pa.table({"content": self._content_texts(seg)}))
            return "_rt_texts"
        path = os.path.abspath(self.store.backend.object_path(self.store.state.segments[seg].content)).replace("'", "''")
        return f"read_parquet('{path}')"

    def _kinds(self, seg: int, names: list[str]) -> dict[str, list[str]]:
        """The JSON kinds each named content field holds in a segment (cached under cache/ for
        stored segments: content objects never change)."""
        digest = None if seg >= PENDING else self.store.state.segments[seg].content
        known = self._kind_cache.get(seg)
        if known is None:
            known = orjson.loads(self.store.backend.cache_get(f"field-kinds/{digest}.json") or b"{}") if digest else {}
            self._kind_cache[seg] = known
        unknown = [n for n in names if n not in known]
        if unknown:
            known.update(field_kinds(self._relation(seg), unknown, self._con))
            if digest:
                self.store.backend.cache_put(f"field-kinds/{digest}.json", orjson.dumps(known, option=orjson.OPT_SORT_KEYS))
        return {n: known[n] for n in names}

    def _content_fields(self, seg: int, names: list[str]) -> pa.Table:
        """Named content fields of a whole segment as typed columns (cached per segment)."""
        have = self._field_cache.get(seg)
        missing = [n for n in names if have is None or n not in have.column_names]
        if missing:
            extra = extract_fields(self._relation(seg), self._kinds(seg, missing), self._con)
            if extra is None:  # fields whose JSON kinds disagree: parse every row (slow, exact)
                parsed = content_table(self._content_texts(seg))
                extra = pa.table({n: parsed.column(n) if n in parsed.column_names else pa.nulls(parsed.num_rows) for n in missing})
            have = extra if have is None else pa.Table.from_arrays([*have.columns, *extra.columns], names=[*have.column_names, *extra.column_names])
            self._field_cache = {k: v for k, v in self._field_cache.items() if k == seg}
            self._field_cache[seg] = have
        return have

    def _pushed(self, seg: int, expr: str, refs: frozenset[str]) -> pa.Array | None:
        """An expression over content fields only, evaluated for a whole segment from its content
        texts (no typed columns materialized); None when a field's kinds have no single SQL type."""
        key = (seg, expr)
        if key not in self._push_cache:
            types = {}
            for name, kinds in self._kinds(seg, sorted(refs)).items():
                sql_type = sql_type_of(kinds)
                if sql_type is None:
                    return None
                types[name] = sql_type
            from ..steps.sql import confined_connection, evaluate_over_content

            if self._sql_con is None:
                self._sql_con = confined_connection(os.path.abspath(self.store.backend.root / "objects"))
            if seg >= PENDING:
                self._sql_con.register("_rt_texts", pa.table({"content": self._content_texts(seg)}))
                relation = "_rt_texts"
            else:
                relation = self._relation(seg)
            self._push_cache = {k: v for k, v in self._push_cache.items() if k[0] == seg}
            self._push_cache[key] = evaluate_over_content(self._sql_con, relation, expr, types)
        return self._push_cache[key]

    def batch(self, frame: Frame, seg: int, pos: np.ndarray, needs: frozenset[str], found: set[str] | None = None, expressions: tuple[str, ...] = ()) -> pa.RecordBatch:
        """The batch a step sees for these frame positions: row_id, weight and what it needs. SQL
        ``expressions`` the step evaluates over content fields only are evaluated here, from the
        content texts, and handed over as columns (``steps.sql.pushed_name``) instead of the fields."""
        rows = frame.rec["row"][pos].astype(np.int64)
        contiguous = len(rows) > 0 and int(rows[-1]) - int(rows[0]) == len(rows) - 1 and bool(np.all(np.diff(rows) == 1))

        def pick(table: pa.Table | pa.Array) -> Any:
            return table.slice(int(rows[0]), len(rows)) if contiguous else table.take(pa.array(rows))

        cols: dict[str, pa.Array] = {"row_id": numpy_to_ids_column(frame.rec["id"][pos]), "weight": pa.array(frame.rec["w"][pos], pa.float64())}
        schema = self._segment_schema(seg)
        prov_names: dict[str, str] = {}
        content_names: list[str] = []
        want_text = CONTENT_TEXT in needs
        for name in sorted(needs - {"row_id", "weight", CONTENT_TEXT, CONTENT_FIELDS}):
            if name in frame.columns:
                cols[name] = frame.columns[name].take(pa.array(pos))
            elif name == "ingest_seq" and "ingest_seq" not in schema.names:
                cols[name] = pa.array(np.full(len(pos), self.store.state.segments[seg].seq, dtype=np.int64))
            elif name in schema.names and (name in PROVENANCE_NAMES or name.endswith("_sha256")):
                prov_names[name] = name
            elif ATTR_PREFIX + name in schema.names:
                prov_names[name] = ATTR_PREFIX + name
            elif name in schema.names:
                prov_names[name] = name
            else:
                content_names.append(name)
        pushed: dict[str, pa.Array] = {}
        for expr in expressions:
            refs = referenced_columns(expr)
            if refs and refs <= set(content_names):
                arr = self._pushed(seg, expr, refs)
                if arr is not None:
                    pushed[expr] = arr
                    if found is not None:
                        kinds = self._kinds(seg, sorted(refs))
                        found.update(n for n, k in kinds.items() if k != ["NULL"])
        if pushed:
            from ..steps.sql import pushed_name

            only_pushed = set().union(*(referenced_columns(e) for e in pushed)) - set().union(*(referenced_columns(e) for e in expressions if e not in pushed))
            content_names = [n for n in content_names if n not in only_pushed]
            for expr, arr in pushed.items():
                cols[pushed_name(expr)] = pick(arr)
        if found is not None:
            found.update(cols)
            found.update(prov_names)
        if prov_names:
            table = self._provenance(seg, sorted(set(prov_names.values())))
            taken = pick(table.select(sorted(set(prov_names.values()))))
            for name, col in prov_names.items():
                cols[name] = taken.column(col).combine_chunks()
        if want_text:
            cols[CONTENT_TEXT] = pick(self._content_texts(seg)).combine_chunks()
        if CONTENT_FIELDS in needs:
            parsed = content_table(pick(self._content_texts(seg)))
            for name in parsed.column_names:
                cols.setdefault(name, parsed.column(name).combine_chunks())
        if content_names:
            fields = pick(self._content_fields(seg, content_names))
            for name in content_names:
                col = fields.column(name).combine_chunks()
                cols[name] = col
                if found is not None and col.null_count < len(col):
                    found.add(name)
        return pa.RecordBatch.from_pydict(cols)

    # -- running -----------------------------------------------------------------------------------
    def run(self, pipeline: Pipeline, inputs: np.ndarray | Callable[[], np.ndarray]) -> RunResult:
        """Run the steps over the input set: the records, or a function that builds them (then the
        run holds them only until its frame is made: 48 bytes a row less for the rest of the run)."""
        records = inputs() if callable(inputs) else inputs
        del inputs
        n_inputs = len(records)
        _, src, names = self.store.gather(records, want_sources=True, want_hashes=False)
        # the store's cached whole-segment columns (the row ids the input set was built from: 32
        # bytes a row) are not read again by the steps, which read segment by segment
        self.store._columns.clear()
        frame = Frame(records, src, names)
        del records, src
        monitor = pipeline.monitor or {}
        exprs = [*monitor.get("numeric", []), *monitor.get("categorical", [])]
        self._evaluate_monitors(frame, exprs, None)
        runs = []
        warnings = self.warnings
        before: dict[str, Any] | None = None
        for i, step in enumerate(pipeline.steps):
            before = _snapshot(frame)
            frame, run = self._run_step(frame, step, f"step {i + 1}/{len(pipeline.steps)} {step.name}")
            self._evaluate_monitors(frame, exprs, run)
            run.report = _report(step, before, frame, run, monitor)
            for w in run.report.get("alerts", []):
                text = f"step '{step.name}': {w['figure']} of {w['column']} is {w['value']:.4g} (≥ {w['level']} threshold {w['threshold']:g})"
                if w["level"] == "fail":
                    raise StepError(f"monitoring threshold exceeded — {text}; relax [monitor.thresholds] or fix the step")
                warnings.append(text)
            if self.write_tables is not None:  # to the store now, not held until the run is published
                run.drops, run.edges, run.weights, run.columns = (self.write_tables(t) for t in (run.drops, run.edges, run.weights, run.columns))
            runs.append(run)
        before = None  # the last step's "before" frame
        order = sort_ids(frame.rec["id"])
        records = take_fields(frame.rec, order)
        del frame, order
        same = records["id"][1:] == records["id"][:-1]
        if same.any():
            dup = records["id"][1:][same]
            raise StepError(f"the pipeline produced row {id_bytes(dup, 0).hex()} twice; a derived row must have one origin per step")
        return RunResult(records=records, pending=self.pending, steps=runs, inputs=n_inputs, monitor=monitor, warnings=warnings)

    def _tick(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def _run_step(self, frame: Frame, step: Step, stage: str = "") -> tuple[Frame, StepRun]:
        found: set[str] = set()
        needs = step.needs
        plan = None
        if step.scope == "global":
            plan = self._plan(frame, step, needs, found, stage)
            needs = getattr(step, "apply_needs", frozenset())
            found.update(needs)
        kept_pos: list[np.ndarray] = []
        kept_w: list[np.ndarray] = []
        col_parts: dict[str, list[pa.Array]] = {}
        drops, edges, weights = [], [], []
        new_frames: list[tuple[np.ndarray, np.ndarray, int]] = []  # (records, src, pending index)
        for pos, result, new in self._decide(frame, step, plan, needs, found, stage):
            kept_pos.append(pos[result.kept])
            kept_w.append(result.weights)
            for name, arr in result.columns.items():
                col_parts.setdefault(name, []).append(arr)
            drops.append(result.drops)
            edges.append(result.edges)
            changed = np.flatnonzero(result.weights != frame.rec["w"][pos][result.kept])
            if len(changed):
                at = pos[result.kept][changed]
                weights.append(pa.table({"row_id": numpy_to_ids_column(frame.rec["id"][at]), "before": frame.rec["w"][at], "after": result.weights[changed]}, schema=WEIGHT_SCHEMA))
            if new is not None:
                new_frames.append(new)
        missing = {n for n in step.needs | needs if n not in found and n not in (CONTENT_TEXT, CONTENT_FIELDS, "row_id", "weight")}
        missing -= set(frame.columns)
        if missing and len(frame) and not self.strict:
            self.warnings.append(f"step '{step.name}' reads column(s) {', '.join(sorted(missing))}, which no row has now")
        elif missing and len(frame):
            raise StepError(f"step '{step.name}' reads column(s) {', '.join(sorted(missing))}, which no row has; check the names (content fields, provenance columns, attributes)")
        kp = np.concatenate(kept_pos) if kept_pos else np.empty(0, np.int64)
        rec = frame.rec[kp]  # a new array (fancy indexing copies)
        rec["w"] = np.concatenate(kept_w) if kept_w else np.empty(0)
        src = frame.src[kp]
        attached = {name: arr.take(pa.array(kp)) for name, arr in frame.columns.items()}
        for name, parts in col_parts.items():
            attached[name] = pa.concat_arrays([p.cast(parts[0].type) for p in parts]) if parts else pa.array([])
        monitors = {name: arr.take(pa.array(kp)) for name, arr in frame.monitors.items()}
        n_old = len(rec)
        if new_frames:
            rec = np.concatenate([rec, *[f[0] for f in new_frames]])
            src = np.concatenate([src, *[f[1] for f in new_frames]])
        out = Frame.__new__(Frame)
        out.rec, out.src, out.names = rec, src, frame.names
        n_new = len(rec) - n_old
        out.columns = {k: pa.concat_arrays([v, pa.nulls(n_new, v.type)]) if n_new else v for k, v in attached.items()}
        out.monitors = {k: pa.concat_arrays([v, pa.nulls(n_new, v.type)]) if n_new else v for k, v in monitors.items()}
        out.new_positions = np.arange(n_old, len(rec))  # type: ignore[attr-defined]
        run = StepRun(
            step=step,
            # one chunk per batch, not combined (a second copy): written as they are, they give the
            # same Parquet bytes as the combined table (row groups of ROW_GROUP_ROWS either way)
            drops=pa.concat_tables(drops) if drops else DROP_SCHEMA.empty_table(),
            edges=pa.concat_tables(edges) if edges else EDGE_SCHEMA.empty_table(),
            weights=pa.concat_tables(weights) if weights else WEIGHT_SCHEMA.empty_table(),
            columns=pa.table({"row_id": numpy_to_ids_column(rec["id"][: n_old]), **{k: v for k, v in attached.items() if k in col_parts}}) if col_parts else None,
            report={},
        )
        return out, run

    def _plan(self, frame: Frame, step: Step, needs: frozenset[str], found: set[str], stage: str) -> Any:
        """A global step's plan from the features of every batch (None for no rows: no batches to
        decide), made by ``engines.partition.plan_global``: features are computed batch by batch and,
        for a step whose plan decomposes, spilled by partition to the store's tmp directory and
        planned one partition at a time. Only the plan outlives this call, not the features."""
        from .partition import plan_global

        return plan_global(step, self._features(frame, step, needs, found, stage), len(frame), self.store.backend.ensure_tmp())

    def _features(self, frame: Frame, step: Step, needs: frozenset[str], found: set[str], stage: str) -> Iterable[pa.RecordBatch]:
        """A global step's features of every batch, in frame order (the input of ``step.plan``),
        one batch at a time."""
        done = 0
        for seg, pos in frame.groups():
            yield step.features(self.batch(frame, seg, pos, needs, found))
            done += len(pos)
            self._tick(f"{stage} (features)", done, len(frame))

    def _decide(self, frame: Frame, step: Step, plan: Any, needs: frozenset[str], found: set[str], stage: str) -> Iterator[tuple[np.ndarray, StepOutput, tuple[np.ndarray, np.ndarray, int] | None]]:
        """Per batch, in frame order: its frame positions, what the step did to it (checked), and
        the frame records of the rows it created (registered as a pending segment), if any."""
        done = 0
        for seg, pos in frame.groups():
            result = self.decide_batch(frame, seg, pos, step, plan, needs, found)
            done += len(pos)
            self._tick(stage, done, len(frame))
            yield pos, result, (self._pending(step, frame, seg, pos, result) if result.new_rows.num_rows else None)

    def decide_batch(self, frame: Frame, seg: int, pos: np.ndarray, step: Step, plan: Any, needs: frozenset[str], found: set[str]) -> StepOutput:
        """Run the step's ``apply`` over one batch and check its accounting."""
        batch = self.batch(frame, seg, pos, needs, found, tuple(getattr(step, "expressions", ())))
        changes = Changes(step, batch)
        step.apply(batch, changes, plan)
        result = changes.finish()
        if not result.accounted:
            check_output(step, frame.rec["id"][pos], result)
        elif len(result.weights) and (not np.all(np.isfinite(result.weights)) or np.any(result.weights <= 0)):
            raise StepError(f"step '{step.name}' returned weights that are not finite and > 0 for its passed rows")
        return result

    def _pending(self, step: Step, frame: Frame, seg: int, pos: np.ndarray, result: StepOutput) -> tuple[np.ndarray, np.ndarray, int]:
        """Rows a step created from one segment's batch: a pending segment inheriting parents' provenance."""
        segment = self.pending_segment(step, frame, seg, pos, result.new_rows)
        return self.add_pending(segment, frame, pos, result.new_rows)

    def pending_segment(self, step: Step, frame: Frame, seg: int, pos: np.ndarray, new: pa.Table) -> PendingSegment:
        """The provenance and content tables of the rows a step created (``StepOutput.new_rows``)
        from the batch at ``pos``: each inherits its parent's provenance."""
        parent_pos = pos[new.column("parent").to_numpy()]
        parent_rows = frame.rec["row"][parent_pos].astype(np.int64)
        if seg >= PENDING:
            prov = self.pending[seg - PENDING].provenance.take(pa.array(parent_rows))
        else:
            from ..segments import read_rows_at

            segment = self.store.state.segments[seg]
            prov = read_rows_at(str(self.store.backend.object_path(segment.provenance)), parent_rows)
            if "ingest_seq" not in prov.column_names:
                prov = prov.append_column("ingest_seq", pa.array(np.full(len(prov), segment.seq, dtype=np.int64)))
        prov = prov.set_column(prov.schema.get_field_index("row_id"), "row_id", new.column("row_id"))
        prov = prov.set_column(prov.schema.get_field_index("content_sha256"), "content_sha256", new.column("content_sha256"))
        extra = [n for n in prov.column_names if n.endswith("_sha256") and n != "content_sha256"]
        if extra:  # named extra hashes (DESIGN format 2) follow the derived row's own content
            contents = [orjson.loads(t) for t in new.column("content").to_pylist()]
            for name in extra:
                field = name[: -len("_sha256")]
                digests = [hashlib.sha256(jcs(c[field])).digest() if field in c else None for c in contents]
                prov = prov.set_column(prov.schema.get_field_index(name), name, pa.array(digests, pa.binary(32)))
        parent_ids = numpy_to_ids_column(frame.rec["id"][parent_pos])
        for name, col in (("parent_row_id", parent_ids), ("step_id", pa.array([step.id] * len(prov), pa.string()))):
            if name in prov.column_names:
                prov = prov.set_column(prov.schema.get_field_index(name), name, col)
            else:
                prov = prov.append_column(name, col)
        content = pa.table({"row_id": new.column("row_id"), "content": new.column("content")})
        srcs = tuple(sorted(set(prov.column("source_id").to_pylist())))
        return PendingSegment(step.id, prov, content, srcs)

    def add_pending(self, segment: Any, frame: Frame, pos: np.ndarray, new: pa.Table) -> tuple[np.ndarray, np.ndarray, int]:
        """Register a pending segment; the frame records (and sources) of its rows. ``new`` needs
        ``row_id``, ``weight`` and ``parent`` (index into the batch at ``pos``)."""
        parent_pos = pos[new.column("parent").to_numpy()]
        self.pending.append(segment)
        k = len(self.pending) - 1
        rec = np.empty(new.num_rows, dtype=FRAME_DTYPE)
        rec["id"] = ids_of(new)
        rec["w"] = new.column("weight").to_numpy()
        rec["seg"] = PENDING + k
        rec["row"] = np.arange(new.num_rows, dtype=np.uint32)
        return rec, frame.src[parent_pos], k

    # -- monitoring --------------------------------------------------------------------------------
    def _evaluate_monitors(self, frame: Frame, exprs: list[str], run: StepRun | None) -> None:
        """Values of each monitored expression for the frame's rows: computed for new rows, and
        for all rows when the expression reads a column a step attached."""
        from ..steps.sql import evaluate

        if not exprs or not len(frame):
            return
        for expr in exprs:
            refs = referenced_columns(expr)
            have = frame.monitors.get(expr)
            if have is None or refs & set(frame.columns):
                positions = np.arange(len(frame))
            else:
                positions = getattr(frame, "new_positions", np.empty(0, np.int64))
            if not len(positions):
                continue
            parts, at = [], []
            for seg, pos in frame.groups(positions):
                batch = self.batch(frame, seg, pos, refs)
                parts.append(evaluate(batch, expr))
                at.append(pos)
            values = pa.concat_arrays([p.cast(_monitor_type(parts)) for p in parts])
            if have is None or len(positions) == len(frame):
                order = np.argsort(np.concatenate(at))
                frame.monitors[expr] = values.take(pa.array(order))
            else:
                merged = have.cast(values.type) if have.type != values.type and not pa.types.is_null(values.type) else have
                py = merged.to_pylist()
                for p, v in zip(np.concatenate(at).tolist(), values.to_pylist()):
                    py[p] = v
                frame.monitors[expr] = pa.array(py, merged.type)


def _monitor_type(parts: list[pa.Array]) -> pa.DataType:
    types = {p.type for p in parts if not pa.types.is_null(p.type)}
    if not types:
        return pa.null()
    if len(types) == 1:
        return types.pop()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        return pa.float64()
    return pa.string()


_JSON_KINDS = {"VARCHAR": "string", "NULL": "null", "BOOLEAN": "bool", "UBIGINT": "int", "BIGINT": "int", "DOUBLE": "float"}


def field_kinds(relation: str, names: list[str], con: Any) -> dict[str, list[str]]:
    """The distinct JSON kinds (DuckDB ``json_type``; ``NULL`` when absent) of each named field of
    the canonical JSON ``content`` column of ``relation``."""
    paths = [_json_path(n) for n in names]
    cols = ", ".join(f"list_distinct(list(coalesce(json_type(content, {p}), 'NULL'))) AS k{i}" for i, p in enumerate(paths))
    row = con.sql(f"SELECT {cols} FROM {relation}").fetchall()[0]
    return {n: sorted(row[i] or []) for i, n in enumerate(names)}


def sql_type_of(kinds: list[str]) -> str | None:
    """The one SQL type a field's values share: strings, integers, numbers (ints and floats
    together) or booleans; None for objects, arrays or disagreeing kinds."""
    found = {_JSON_KINDS.get(k, "other") for k in kinds} - {"null"}
    if not found or found == {"string"}:
        return "VARCHAR"
    if found == {"int"}:
        return "BIGINT"
    if found <= {"int", "float"}:
        return "DOUBLE"
    if found == {"bool"}:
        return "BOOLEAN"
    return None


_ARROW = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64()}


def _json_path(name: str) -> str:
    return "'$.\"" + name.replace('"', '\\"').replace("'", "''") + "\"'"


def extract_fields(relation: str, kinds: dict[str, list[str]], con: Any) -> pa.Table | None:
    """Content fields as typed columns (their ``sql_type_of``), parsed by DuckDB from the canonical
    JSON ``content`` column of ``relation`` (row order kept); None when a field has no single type."""
    names = list(kinds)
    types = {n: sql_type_of(kinds[n]) for n in names}
    if any(t is None for t in types.values()):
        return None
    table = con.sql("SELECT " + ", ".join(f"content ->> {_json_path(n)} AS v{i}" for i, n in enumerate(names)) + f" FROM {relation}").to_arrow_table()
    out = {}
    for i, name in enumerate(names):
        values = table.column(f"v{i}").combine_chunks()
        out[name] = pc.equal(values, "true") if types[name] == "BOOLEAN" else values.cast(_ARROW[str(types[name])])
    return pa.table(out)


# -- reports ---------------------------------------------------------------------------------------
def _snapshot(frame: Frame) -> dict[str, Any]:
    return {"rec": frame.rec, "src": frame.src, "monitors": dict(frame.monitors)}


def _per_source(src: np.ndarray, w: np.ndarray, names: list[str]) -> dict[str, tuple[int, float]]:
    counts = np.bincount(src, minlength=len(names))
    weights = np.bincount(src, weights=w, minlength=len(names))
    return {names[i]: (int(counts[i]), float(weights[i])) for i in range(len(names)) if counts[i]}


def _report(step: Step, before: dict[str, Any], frame: Frame, run: StepRun, monitor: dict[str, Any]) -> dict[str, Any]:
    from ..monitoring.drift import categorical_drift, check, numeric_drift

    # reported before write_tables turns the step's tables into digests
    assert isinstance(run.drops, pa.Table) and isinstance(run.edges, pa.Table) and isinstance(run.weights, pa.Table)
    b_src = _per_source(before["src"], before["rec"]["w"], frame.names)
    a_src = _per_source(frame.src, frame.rec["w"], frame.names)
    per_source = {
        s: {"rows_in": b_src.get(s, (0, 0.0))[0], "rows_out": a_src.get(s, (0, 0.0))[0], "weight_in": b_src.get(s, (0, 0.0))[1], "weight_out": a_src.get(s, (0, 0.0))[1]}
        for s in sorted(set(b_src) | set(a_src))
    }
    dropped: dict[str, int] = {}
    if run.drops.num_rows:
        for item in pc.value_counts(run.drops.column("reason_code")).to_pylist():
            dropped[item["values"]] = int(item["counts"])
    edges: dict[str, int] = {}
    if run.edges.num_rows:
        for item in pc.value_counts(run.edges.column("kind")).to_pylist():
            edges[item["values"]] = int(item["counts"])
    drift: dict[str, Any] = {}
    alerts: list[dict[str, Any]] = []
    wb, wa = before["rec"]["w"], frame.rec["w"]
    # per-source shares from the integer source codes: the same figures categorical_drift gives
    # for the source names, without comparing a million strings
    names = np.array(frame.names, dtype=object)
    used = sorted(set(b_src) | set(a_src))
    wb_src = np.array([b_src.get(x, (0, 0.0))[1] for x in used])
    wa_src = np.array([a_src.get(x, (0, 0.0))[1] for x in used])
    cat = categorical_drift(np.array(used, dtype=object), np.array(used, dtype=object), before_weights=wb_src, after_weights=wa_src)
    cat.update({"n_before": int(len(wb)), "n_after": int(len(wa))})
    drift["source_id"] = {"kind": "categorical", **cat}
    del names
    for expr in monitor.get("numeric", []):
        vb = _numeric(before["monitors"].get(expr), len(wb))
        va = _numeric(frame.monitors.get(expr), len(wa))
        drift[expr] = {"kind": "numeric", **numeric_drift(vb, va, before_weights=wb, after_weights=wa, bins=monitor.get("bins", 10))}
    for expr in monitor.get("categorical", []):
        vb = _labels(before["monitors"].get(expr), len(wb))
        va = _labels(frame.monitors.get(expr), len(wa))
        drift[expr] = {"kind": "categorical", **categorical_drift(vb, va, before_weights=wb, after_weights=wa), **_value_counts(vb, va, wb, wa)}
    thresholds = monitor.get("thresholds") or {}
    if thresholds:
        for column, figures in drift.items():
            for alert in check(figures, thresholds):
                alerts.append({**alert, "column": column})
    return {
        "step_id": step.id,
        "name": step.name,
        "use": step.kind,
        "rows_in": int(len(before["rec"])),
        "rows_out": int(len(frame)),
        "weight_in": float(np.sum(wb)),
        "weight_out": float(np.sum(wa)),
        "dropped": dict(sorted(dropped.items())),
        "edges": dict(sorted(edges.items())),
        "reweighted": int(run.weights.num_rows),
        "per_source": per_source,
        "drift": drift,
        "alerts": alerts,
    }


def _value_counts(vb: np.ndarray, va: np.ndarray, wb: np.ndarray, wa: np.ndarray) -> dict[str, Any]:
    """Rows and weight per value of a categorical column, before and after the step."""
    out: dict[str, Any] = {}
    for side, values, weights in (("before", vb, wb), ("after", va, wa)):
        labels = np.array(["(null)" if v is None else str(v) for v in values], dtype=object)
        keys, inverse = np.unique(labels, return_inverse=True) if len(labels) else (np.array([], dtype=object), np.array([], dtype=np.int64))
        out[f"rows_{side}"] = {str(k): int(n) for k, n in zip(keys, np.bincount(inverse, minlength=len(keys)))}
        out[f"weights_{side}"] = {str(k): float(w) for k, w in zip(keys, np.bincount(inverse, weights=weights, minlength=len(keys)))}
    return out


def _numeric(values: pa.Array | None, n: int) -> np.ndarray:
    if values is None or pa.types.is_null(values.type):
        return np.full(n, np.nan)
    if pa.types.is_boolean(values.type):
        values = values.cast(pa.int8())
    try:
        return values.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise StepError(f"monitored numeric expression gives {values.type}; list it under 'categorical'") from None


def _labels(values: pa.Array | None, n: int) -> np.ndarray:
    if values is None:
        return np.array([None] * n, dtype=object)
    return np.array(values.cast(pa.string()).to_pylist(), dtype=object)
