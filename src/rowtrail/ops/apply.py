"""Apply: set a corpus's pipeline, run it over the corpus's input set, and stage the result.

``apply`` runs the steps (engines/local.py), then publishes what they produced as objects — the
rows steps created (as segments), and per step its drops, lineage edges, weight changes, attached
columns and monitoring report — and one ``pipeline`` journal entry naming them. ``commit`` then
reuses that run when nothing was staged after it; otherwise it runs the pipeline again itself
(built-in steps only: a step that runs a user function is never rebuilt from the store, so a
changed input set needs another ``apply`` from the user's own code or pipeline file).

The whole run holds the store's write lock: segment numbers and the input set cannot move under it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StepError
from ..hashing import jcs
from ..segments import CONTENT_ROW_GROUP_ROWS, CONTENT_SCHEMA, PARQUET_OPTS, ROW_GROUP_ROWS
from ..steps.base import Step
from ..steps.pipeline import Pipeline, as_pipeline, from_definition
from ..versions.manifest import RECORD_DTYPE
from .inputs import current_inputs

if TYPE_CHECKING:
    from ..engines.local import LocalEngine, RunResult
    from ..store import Store
    from ..versions.journal import State

RUN_FORMAT = "rowtrail.run/1"


@dataclass
class ApplyReport:
    corpus: str
    pipeline: list[dict[str, Any]]
    rows_in: int
    rows_out: int
    weight_out: float
    steps: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    run: str | None = None  # the run object's digest (None for a dry run)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("corpus", "pipeline", "rows_in", "rows_out", "weight_out", "steps", "warnings", "run", "dry_run")}


ENGINES = ("local", "ray")


def make_engine(store: Store, engine: str = "local", *, address: str | None = None, progress: Callable[[str, int, int], None] | None = None, strict: bool = True) -> LocalEngine:
    """The engine that runs a pipeline: ``local`` (this process) or ``ray`` (Ray Data workers, on
    a local Ray or the cluster at ``address``). Both give the same run, byte for byte."""
    if engine == "local":
        if address:
            raise StepError("--address is for the Ray engine; add --engine ray")
        from ..engines.local import LocalEngine

        return LocalEngine(store, progress=progress, strict=strict)
    if engine == "ray":
        from ..engines.ray import RayEngine

        return RayEngine(store, progress=progress, strict=strict, address=address)
    raise StepError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")


def run_pipeline(
    store: Store,
    pipeline: Pipeline,
    inputs: np.ndarray | Callable[[], np.ndarray],
    progress: Callable[[str, int, int], None] | None = None,
    strict: bool = True,
    engine: str = "local",
    address: str | None = None,
    publish: bool = False,
) -> RunResult:
    """Run a pipeline; with ``publish`` (a run that will be published) each step's lineage tables
    are written to the store as soon as the step is done, so the run never holds them all."""
    runner = make_engine(store, engine, address=address, progress=progress, strict=strict)
    if publish:
        runner.write_tables = lambda table: put_table(store.backend, table)
    return runner.run(pipeline, inputs)


def _put_table(store: Store, table: pa.Table | str | None, row_group: int = ROW_GROUP_ROWS) -> str | None:
    """A step's lineage table as an object (a digest: the engine wrote it already)."""
    return table if isinstance(table, str) else put_table(store.backend, table, row_group)


def put_table(backend: Any, table: pa.Table | None, row_group: int = ROW_GROUP_ROWS) -> str | None:
    """Write a table as a content-addressed Parquet object; None for no rows."""
    if table is None or table.num_rows == 0:
        return None
    path = backend.new_tmp_path(".parquet")
    pq.write_table(table, path, row_group_size=row_group, **PARQUET_OPTS)
    return backend.put_file(path)


def put_pending(backend: Any, segment: Any) -> tuple[str, str]:
    """The provenance and content objects of a pending segment (written now, unless a worker
    already wrote them: ``segment.objects``). Every engine writes the same bytes for the same rows."""
    objects = getattr(segment, "objects", None)
    if objects:
        return objects[0], objects[1]
    prov = put_table(backend, segment.provenance)
    content = put_table(backend, segment.content.cast(CONTENT_SCHEMA), CONTENT_ROW_GROUP_ROWS)
    assert prov is not None and content is not None  # a pending segment holds rows
    return prov, content


def publish_run(store: Store, state: State, run: RunResult, corpus: str, pipeline: Pipeline) -> tuple[str, list[dict[str, Any]], np.ndarray]:
    """Write a run's objects; returns the run object's digest, the new segments (journal form) and
    the output records with real segment numbers."""
    from ..engines.local import PENDING

    first = state.next_seg()
    segments = []
    with store.backend.deferred_sync():
        for k, p in enumerate(run.pending):
            prov, content = put_pending(store.backend, p)
            segments.append(
                {
                    "seg": first + k,
                    "sources": list(p.sources),
                    "provenance": prov,
                    "content": content,
                    "rows": getattr(p, "rows", None) or p.provenance.num_rows,
                    "step_id": p.step_id,
                }
            )
        # the run's records become the output as stored: real segment numbers, big-endian fields
        # (converted field by field in place of the run's array: no whole copies of the rows)
        records = run.records
        pending = records["seg"] >= PENDING
        records["seg"][pending] = records["seg"][pending] - PENDING + first
        del pending
        records = as_stored_records(records)
        run.records = records
        steps = {}
        for sr in run.steps:
            steps[sr.step.id] = {
                "definition": sr.step.definition(),
                "drops": _put_table(store, sr.drops),
                "edges": _put_table(store, sr.edges),
                "weights": _put_table(store, sr.weights),
                "columns": _put_table(store, sr.columns),
                "report": sr.report,
            }
        doc = {
            "format": RUN_FORMAT,
            "corpus": corpus,
            "inputs": run.inputs,
            "pipeline": pipeline.step_ids,
            "monitor": pipeline.monitor,
            "steps": steps,
            "output": put_array(store.backend, records),
            "rows": int(len(records)),
            "segments": segments,
        }
        digest = store.backend.put_bytes(jcs(doc))
    return digest, segments, records


def as_stored_records(records: np.ndarray) -> np.ndarray:
    """Records in ``RECORD_DTYPE`` (big-endian): a frame's native-order records are byte-swapped in
    place, field by field, and reinterpreted — the same bytes ``astype`` would give, without a copy."""
    if records.dtype == RECORD_DTYPE:
        return records
    if records.dtype.names != RECORD_DTYPE.names or records.dtype.itemsize != RECORD_DTYPE.itemsize:
        return records.astype(RECORD_DTYPE)
    assert records.dtype.names is not None  # equal to RECORD_DTYPE.names, checked above
    for name in records.dtype.names:
        field = records[name]
        if field.dtype.str[0] == "<":
            field.byteswap(inplace=True)
    return records.view(RECORD_DTYPE)


def put_array(backend: Any, records: np.ndarray) -> str:
    """Store an array's raw bytes as an object, written from its memory (no bytes copy of it)."""
    path = backend.new_tmp_path(".bin")
    with open(path, "wb") as fh:
        fh.write(memoryview(np.ascontiguousarray(records)).cast("B"))  # type: ignore[arg-type]  # numpy's stubs give ndarray __buffer__ only for Python >= 3.12
    return backend.put_file(path)


def read_run(store: Store, digest: str) -> tuple[dict[str, Any], np.ndarray]:
    doc = orjson.loads(store.backend.read_bytes(digest))
    records = np.frombuffer(store.backend.read_bytes(doc["output"]), dtype=RECORD_DTYPE) if doc["rows"] else np.empty(0, RECORD_DTYPE)
    return doc, records


def reusable_run(state: State, corpus: str) -> str | None:
    """The staged pipeline run commit may reuse: the last staged entry that changes the corpus is
    an ``apply`` (nothing ingested or removed after it)."""
    for entry in reversed(state.staged_for(corpus).entries):
        if entry["kind"] == "pipeline":
            return entry.get("run")
        if entry["kind"] in ("ingest", "remove", "optout"):
            return None
    return None


def rebuild(store: Store, state: State, corpus: str) -> Pipeline:
    """The corpus pipeline as runnable steps: the objects this process applied, or built-ins rebuilt
    from their recorded definitions."""
    defs = state.pipelines.get(corpus, [])
    live = {s.id: s for s in store._applied.get(corpus, [])}
    steps = [live.get(d["step_id"]) or from_definition(d) for d in defs]
    return Pipeline(steps, state.monitors.get(corpus) or {})


def summary(run: RunResult) -> list[dict[str, Any]]:
    return [s.report for s in run.steps]


def apply(
    store: Store,
    steps: Pipeline | Sequence[Step],
    *,
    corpus: str = "main",
    monitor: dict[str, Any] | None = None,
    dry_run: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    engine: str = "local",
    address: str | None = None,
) -> ApplyReport:
    """Set the corpus pipeline, run it on ``engine`` (``local`` or ``ray``, see ``make_engine``)
    and stage the run."""
    pipeline = as_pipeline(steps, monitor)
    ids = pipeline.step_ids
    if len(set(ids)) != len(ids):
        raise StepError("the pipeline lists the same step twice (same name, version, params and code); give one a different name")
    with store._write() as state:
        report = apply_locked(store, state, pipeline, corpus=corpus, dry_run=dry_run, progress=progress, engine=engine, address=address)
        if not dry_run:
            store._applied[corpus] = list(pipeline.steps)
    return report


def apply_locked(
    store: Store,
    state: State,
    pipeline: Pipeline,
    *,
    corpus: str,
    dry_run: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    strict: bool = True,
    engine: str = "local",
    address: str | None = None,
) -> ApplyReport:
    """Run the pipeline over the corpus's input set and (unless a dry run) publish the run with one
    ``pipeline`` journal entry; the caller holds the write lock."""
    # the engine builds the input set itself and lets it go once its frame is made
    run = run_pipeline(store, pipeline, lambda: current_inputs(store, state, corpus), progress, strict=strict, engine=engine, address=address, publish=not dry_run)
    report = ApplyReport(
        corpus=corpus,
        pipeline=[s.definition() for s in pipeline.steps],
        rows_in=int(run.inputs),
        rows_out=int(len(run.records)),
        weight_out=float(run.records["w"].astype(np.float64).sum()) if len(run.records) else 0.0,
        steps=summary(run),
        warnings=run.warnings,
        dry_run=dry_run,
    )
    if dry_run:
        return report
    digest, segments, _records = publish_run(store, state, run, corpus, pipeline)
    store._append(
        state,
        {
            "kind": "pipeline",
            "corpus": corpus,
            "steps": report.pipeline,
            "monitor": pipeline.monitor,
            "run": digest,
            "rows": report.rows_out,
            "segments": segments,
        },
    )
    report.run = digest
    return report
