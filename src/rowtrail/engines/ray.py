"""The Ray Data engine: the local engine's run, with the per-batch work on a Ray cluster.

Same frame, same steps, same results — byte for byte — as ``engines/local.py``; only where the
batches are decided differs. The driver (this process) keeps the frame (48 bytes a row: id, weight
and where the row lives), merges or makes each global step's plan (below), checks the accounting of
every batch, measures the distribution and publishes the run with one journal entry. Workers do
everything that reads row data:

- **row-local steps** (filter, rewrite, reweight, upsample, sample, score): one Ray Data
  ``map_batches`` over the frame's batches — the same batches, cut at the same places, as the local
  engine's. Each worker opens the store's backend itself (``backend_recipe``: the directory, or the
  object-store URL with the worker's own credentials and local mirror), reads the segments its batch
  lives in, evaluates the step, and returns what the step did:
  kept positions and weights, drops, edges and attached columns. Rows a step creates are written by
  the worker as content-addressed Parquet objects (provenance and content), exactly the bytes the
  local engine's publish writes; the driver only records their digests.
- **global steps** (dedupe_exact, dedupe_near, mix): a planning pass, then a deciding pass. How
  the plan is made depends on what the step declares (``steps/base.py``, ``engines/partition.py``):

  - *by partitions* (dedupe_exact, by its key): a two-phase hash partition on the workers. One Ray
    task per few batches of a segment computes their features and cuts them into P pieces by a hash
    of the key (Arrow IPC, one return object per piece, held by Ray's object store, which spills to
    disk); then one task per partition receives its pieces from every map task, plans them alone
    and returns its part of the plan (losers and their survivors). The driver only merges the parts'
    plans. P comes from the rows and the features size of the first batch's first rows against
    ``plan_budget`` (``partition.DEFAULT_BUDGET``, 64 MB a partition), or is forced by
    ``partitions`` / ``ROWTRAIL_PARTITIONS``; the plan is the same for every P.
  - *by partials* (mix): the map tasks reduce their features to partials (rows per group); the
    driver sums them. No features leave the workers.
  - *whole* (dedupe_near: LSH groups do not split by a key): ``map_batches`` computes the features
    (MinHash signatures, 512 B a row at 128 permutations) and the driver plans over all of them.

  The deciding pass is a second ``map_batches`` over the same batches, with the plan shipped once
  through Ray's object store. The plan itself (for dedupe, 64 B per duplicate row) is on the driver.

Results come back keyed by batch number and are assembled in frame order, so the output, its
lineage and its drops do not depend on which worker finished first. A batch whose worker dies is
run again by Ray (``max_retries``); its outputs are pure functions of its inputs and its objects are
content-addressed, so a retry writes the same bytes under the same digests and the driver takes
exactly one result per batch — a missing or repeated batch is an error, never a silent loss.

Nothing is committed by a worker: the run becomes visible only through the driver's one ``pipeline``
journal entry (the Delta/Iceberg pattern: workers write immutable files, one atomic commit publishes
them). Objects of a run that never commits are unreferenced and harmless.

``ray.init(num_cpus=N)`` starts a local Ray in this process when none is running and no address is
given; ``address`` (``auto``, ``ray://host:10001``) joins a cluster, whose workers must reach the
store's path (a shared file system or an object-store URL) and import the user's step functions.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import RowtrailError, StepError
from ..steps.base import Step, StepOutput
from .local import FRAME_DTYPE, PENDING, Frame, LocalEngine
from .partition import forced_partitions, partition_count, partitionable, split

if TYPE_CHECKING:
    from ..store import Store

RAY_HINT = "pip install 'rowtrail[ray]'"
GROUPS_PER_TASK = 4  # batches of one segment a task decides together (it reads the segment once)
# batches of one segment a map task of a partitioned plan cuts together: fewer map tasks, fewer
# pieces (tasks × partitions objects in Ray's object store), at ~16 × 65,536 rows of features a task
PARTITION_GROUPS_PER_TASK = 16
MAX_RETRIES = 3  # a task whose worker dies runs again this many times
PROBE_ROWS = 4096  # rows whose features size sets the number of partitions of a plan


def ray_module() -> Any:
    """``ray``, or an error that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RowtrailError(f"the Ray engine needs Ray Data; {RAY_HINT}") from None
    return ray


def ensure_ray(address: str | None = None, num_cpus: int | None = None, env: dict[str, str] | None = None) -> Any:
    """Connect to Ray: the running instance, the cluster at ``address``, or a new local one with
    ``num_cpus`` CPUs whose workers see this process's ``sys.path`` (so a step function importable
    here is importable there) and the extra environment variables ``env``."""
    ray = ray_module()
    if not ray.is_initialized():
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        else:
            path = os.pathsep.join(p for p in sys.path if p)
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="WARNING",
                runtime_env={"env_vars": {"PYTHONPATH": path, **(env or {})}},
            )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


class StoredPendingSegment:
    """A pending segment a worker has already written as objects; its tables are read on first use
    (in a worker, from the store opened by ``backend_recipe``)."""

    def __init__(self, backend: Any, step_id: str, provenance_object: str, content_object: str, sources: tuple[str, ...], rows: int):
        self._backend = backend
        self.recipe = backend_recipe(backend)
        self.step_id = step_id
        self.objects = (provenance_object, content_object)
        self.sources = tuple(sources)
        self.rows = rows
        self._tables: dict[int, pa.Table] = {}

    @property
    def backend(self) -> Any:
        if self._backend is None:
            self._backend = open_backend(self.recipe)
        return self._backend

    def _read(self, i: int) -> pa.Table:
        if i not in self._tables:
            self._tables[i] = pq.read_table(self.backend.object_path(self.objects[i]))
        return self._tables[i]

    @property
    def provenance(self) -> pa.Table:
        return self._read(0)

    @property
    def content(self) -> pa.Table:
        return self._read(1)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_backend": None, "_tables": {}}  # ship the digests and the recipe


def backend_recipe(backend: Any) -> tuple[str, str]:
    """How a worker opens the store's backend: its URL (an object store: credentials and endpoint
    come from the worker's own environment, as for any boto3/s3fs user; none travel through Ray) or
    its directory."""
    url = getattr(backend, "url", None)
    return ("url", str(url)) if url else ("path", str(backend.root))


_BACKENDS: dict[tuple[str, str], Any] = {}


def open_backend(recipe: tuple[str, str]) -> Any:
    """The backend a recipe names, opened once per worker process."""
    if recipe not in _BACKENDS:
        kind, where = recipe
        if kind == "url":
            from ..backends.objectstore import ObjectStoreBackend

            _BACKENDS[recipe] = ObjectStoreBackend(where)
        else:
            from ..backends.local import LocalBackend

            _BACKENDS[recipe] = LocalBackend(where)
    return _BACKENDS[recipe]


class RayEngine(LocalEngine):
    """Runs a pipeline like ``LocalEngine``, deciding batches on Ray Data workers (module docstring)."""

    partitions: int | None = None  # forces P of partitioned plans (else ROWTRAIL_PARTITIONS, else the budget)
    plan_budget: int | None = None  # bytes of features one partition's plan task may hold (partition.DEFAULT_BUDGET)

    def __init__(
        self,
        store: Store,
        progress: Callable[[str, int, int], None] | None = None,
        strict: bool = True,
        address: str | None = None,
        num_cpus: int | None = None,
    ):
        super().__init__(store, progress=progress, strict=strict)
        self.ray = ensure_ray(address, num_cpus)

    def _plan(self, frame: Frame, step: Step, needs: frozenset[str], found: set[str], stage: str) -> Any:
        """A global step's plan. A step whose plan decomposes (``steps/base.py``) is planned on the
        workers: map tasks compute the features of their batches and cut them by partition (or
        reduce them to partials), one task per partition plans it from the pieces it is handed,
        and this process merges the parts' plans; it never holds the features. Other steps: the
        features come here and are planned whole."""
        if not partitionable(step):
            feats = self._features(frame, step, needs, found, stage)  # computed on the workers
            return step.plan(pa.Table.from_batches(feats)) if feats else None
        groups = list(frame.groups())
        if not groups:
            return None
        parts = 0 if step.by_partials else self._partition_count(frame, step, needs, groups)
        blocks, ctx = self._tasks(frame, groups, step, "partition", None, needs, parts=parts)
        ray = self.ray
        mapper = ray.remote(_partition_task).options(num_cpus=1, max_retries=MAX_RETRIES, num_returns=1 + parts)
        outs = [mapper.remote(block, ctx) for block in blocks]
        heads = [o[0] if parts else o for o in outs]
        where = {h: i for i, h in enumerate(heads)}
        metas: list[Any] = [None] * len(heads)
        done, waiting = 0, list(heads)
        with self._worker_errors(step):
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1)
                for ref in ready:
                    meta = ray.get(ref)
                    metas[where[ref]] = meta
                    found.update(meta["found"])
                    done += meta["rows"]
                    self._tick(f"{stage} (features)", done, len(frame))
            if done != len(frame):
                raise StepError(
                    f"step '{step.name}': the Ray engine got features of {done} rows for {len(frame)}; the run is not published"
                )
            if step.by_partials:
                return step.plan_from_partials([p for meta in metas for p in meta["partials"]])
            planner = ray.remote(_plan_part).options(num_cpus=1, max_retries=MAX_RETRIES)
            plans = ray.get([planner.remote(ctx, *[o[1 + p] for o in outs]) for p in range(parts)])
        del outs, heads
        return step.merge_plans(plans)

    def _partition_count(self, frame: Frame, step: Step, needs: frozenset[str], groups: list[tuple[int, np.ndarray]]) -> int:
        """P: forced (``partitions``, ``ROWTRAIL_PARTITIONS``), or from the rows and the features size
        of the first rows of the first batch (computed here, once)."""
        forced = self.partitions or forced_partitions()
        if forced:
            return forced
        seg, pos = groups[0]
        probe = step.features(self.batch(frame, seg, pos[:PROBE_ROWS], needs))
        # the probe's segment columns are not needed here again
        self._prov_cache, self._field_cache, self._text_cache = {}, {}, (-1, None)
        return partition_count(len(frame), probe.nbytes / max(1, probe.num_rows), self.plan_budget)

    def _features(self, frame: Frame, step: Step, needs: frozenset[str], found: set[str], stage: str) -> list[pa.RecordBatch]:
        groups = list(frame.groups())
        feats: list[pa.RecordBatch] = []
        for row in self._map(frame, groups, step, "features", None, needs, f"{stage} (features)"):
            found.update(row["found"])
            feats.extend(_from_ipc(row["features"]).to_batches())
        return feats

    def _decide(
        self, frame: Frame, step: Step, plan: Any, needs: frozenset[str], found: set[str], stage: str
    ) -> Iterator[tuple[np.ndarray, StepOutput, tuple[np.ndarray, np.ndarray, int] | None]]:
        groups = list(frame.groups())
        rows = self._map(frame, groups, step, "decide", plan, needs, stage)
        for (_seg, pos), row in zip(groups, rows):
            found.update(row["found"])
            kept = np.frombuffer(row["kept"], dtype=np.int64)
            weights = np.frombuffer(row["weights"], dtype=np.float64)
            columns = _from_ipc(row["columns"]) if row["columns"] else None
            new = _from_ipc(row["new"])
            result = StepOutput(
                kept=kept,
                weights=weights,
                drops=_from_ipc(row["drops"]),
                edges=_from_ipc(row["edges"]),
                new_rows=new,
                columns={n: columns.column(n).combine_chunks() for n in columns.column_names} if columns is not None else {},
                accounted=True,
            )
            added = None
            if row["pending"]:
                d = orjson.loads(row["pending"])
                segment = StoredPendingSegment(
                    self.store.backend, d["step_id"], d["provenance"], d["content"], tuple(d["sources"]), d["rows"]
                )
                added = self.add_pending(segment, frame, pos, new)
            yield pos, result, added

    def _map(
        self, frame: Frame, groups: list[tuple[int, np.ndarray]], step: Step, mode: str, plan: Any, needs: frozenset[str], stage: str
    ) -> list[dict[str, Any]]:
        """Run ``mode`` (features or decide) over every batch on the workers; one result row per
        batch, in batch order."""
        if not groups:
            return []
        ray = self.ray
        blocks, ctx = self._tasks(frame, groups, step, mode, plan, needs)
        with warnings.catch_warnings():
            # bounded retries have no named parameter in Ray 2.60 (its default retries a dead
            # worker's task forever, which would hang on a step that always kills its worker)
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ray.data.from_arrow(blocks).map_batches(
                _run_task,
                batch_format="pyarrow",
                batch_size=None,
                zero_copy_batch=True,
                fn_kwargs={"ctx": ctx},
                num_cpus=1,
                ray_remote_args_fn=_remote_args,
            )
        out: dict[int, dict[str, Any]] = {}
        done = 0
        with self._worker_errors(step):
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                for row in batch.to_pylist():
                    k = row["k"]
                    if k in out:
                        raise StepError(f"step '{step.name}': the Ray engine got batch {k} twice; the run is not published")
                    row["found"] = orjson.loads(row["found"])
                    out[k] = row
                    done += len(groups[k][1])
                    self._tick(stage, done, len(frame))
        missing = [k for k in range(len(groups)) if k not in out]
        if missing:
            raise StepError(
                f"step '{step.name}': the Ray engine got no result for {len(missing)} batch(es) (first: {missing[0]}); the run is not published"
            )
        return [out[k] for k in range(len(groups))]

    @contextmanager
    def _worker_errors(self, step: Step) -> Iterator[None]:
        """A step's error on a worker reaches the caller as the same rowtrail error."""
        try:
            yield
        except self.ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
            if isinstance(cause, RowtrailError):
                raise type(cause)(*cause.args) from None
            raise StepError(f"step '{step.name}' failed on a Ray worker: {exc}") from None

    def _tasks(
        self,
        frame: Frame,
        groups: list[tuple[int, np.ndarray]],
        step: Step,
        mode: str,
        plan: Any,
        needs: frozenset[str],
        parts: int = 0,
    ) -> tuple[list[pa.Table], Any]:
        """The batches as task blocks (a few batches of one segment each: frame records and attached
        columns) and the context every task shares (in Ray's object store)."""
        attached = sorted(set(needs) & set(frame.columns))
        per_task = PARTITION_GROUPS_PER_TASK if mode == "partition" else GROUPS_PER_TASK
        blocks: list[pa.Table] = []
        current: list[dict[str, Any]] = []
        segs_used: set[int] = set()
        for k, (seg, pos) in enumerate(groups):
            if current and (current[-1]["seg"] != seg or len(current) >= per_task):
                blocks.append(pa.Table.from_pylist(current, schema=_TASK_SCHEMA))
                current = []
            cols = _to_ipc(pa.table({n: frame.columns[n].take(pa.array(pos)) for n in attached})) if attached else b""
            current.append({"k": k, "seg": seg, "rec": frame.rec[pos].tobytes(), "cols": cols})
            segs_used.add(seg)
        blocks.append(pa.Table.from_pylist(current, schema=_TASK_SCHEMA))
        segments = {s: self.store.state.segments[s] for s in segs_used if s < PENDING}
        pending = {s - PENDING: _stored(self.pending[s - PENDING], self.store.backend) for s in segs_used if s >= PENDING}
        ctx = self.ray.put(
            {
                "mode": mode,
                "step": step,
                "plan": plan,
                "needs": needs,
                "parts": parts,
                "backend": backend_recipe(self.store.backend),
                "segments": segments,
                "pending": pending,
            }
        )
        return blocks, ctx


def run_ingest_parts(
    spec: Any, parts: list[Any], tables: list[Any], progress: Callable[[int], None] | None = None, address: str | None = None
) -> list[Any]:
    """``ops.ingest.run_parts`` on Ray: one task per input part (about 128 MB of a file, see
    ``readers.plan_parts``), each reading, canonicalizing and hashing its rows into the same Parquet
    files the local ingest workers write (named by ingest id and part number, so a retried task
    rewrites the same file). Results come back in part order; the driver publishes them as the local
    ingest does. Parts read files by path: on a cluster every worker must see the input files.
    In-memory tables are ingested in this process."""
    from ..ops.ingest import run_parts

    if tables or not parts:
        return run_parts(spec, parts, tables, 1, progress)
    ray = ensure_ray(address)
    task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_ingest_part)
    refs = [task.remote(spec, part, i) for i, part in enumerate(parts)]
    where = {ref: i for i, ref in enumerate(refs)}
    out: list[Any] = [None] * len(parts)
    waiting = list(refs)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        for ref in ready:
            out[where[ref]] = ray.get(ref)
            if progress:
                progress(1)
    return out


def _ingest_part(spec: Any, part: Any, index: int) -> Any:
    from ..ops.ingest import process_part

    return process_part(spec, part, index)


def _stored(segment: Any, backend: Any) -> StoredPendingSegment:
    """A pending segment as workers can read it: written as objects (a no-op for one a worker wrote)."""
    if isinstance(segment, StoredPendingSegment):
        return segment
    from ..ops.apply import put_pending

    prov, content = put_pending(backend, segment)
    return StoredPendingSegment(backend, segment.step_id, prov, content, segment.sources, segment.provenance.num_rows)


def _remote_args() -> dict[str, Any]:
    return {"max_retries": MAX_RETRIES}  # a dead worker's task runs again (Ray Data's default: forever)


_TASK_SCHEMA = pa.schema([("k", pa.int64()), ("seg", pa.int64()), ("rec", pa.binary()), ("cols", pa.binary())])


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


# -- the worker side ---------------------------------------------------------------------------------
class _WorkerState:
    def __init__(self, segments: dict[int, Any]):
        self.segments = segments


class _WorkerStore:
    """What the engine reads of a store inside a worker: the backend and the segments its batches name."""

    def __init__(self, backend: Any, segments: dict[int, Any]):
        self.backend = backend
        self.state = _WorkerState(segments)


def _worker_engine(ctx: dict[str, Any]) -> LocalEngine:
    """A local engine inside a worker, reading the store the context names."""
    engine = LocalEngine.__new__(LocalEngine)
    LocalEngine.__init__(engine, _WorkerStore(open_backend(ctx["backend"]), ctx["segments"]))  # type: ignore[arg-type]
    engine.pending = ctx["pending"]  # type: ignore[assignment]  # index → StoredPendingSegment
    return engine


def _worker_frame(row: dict[str, Any]) -> tuple[Frame, int, np.ndarray]:
    """One batch of a task block as a frame of its own: the frame, its segment and its positions."""
    rec = np.frombuffer(row["rec"], dtype=FRAME_DTYPE).copy()
    frame = Frame.__new__(Frame)
    frame.rec, frame.src, frame.names, frame.monitors = rec, np.zeros(len(rec), np.int64), [], {}
    frame.columns = {n: c.combine_chunks() for n, c in zip(*_columns(row["cols"]))}
    return frame, int(row["seg"]), np.arange(len(rec))


def _partition_task(block: pa.Table, ctx: dict[str, Any]) -> Any:
    """One Ray task of a partitioned plan (``RayEngine._plan``): the features of up to
    ``PARTITION_GROUPS_PER_TASK`` batches of one segment, cut into ``parts`` pieces by partition (Arrow IPC, b"" for an empty piece) or
    reduced to partials. Returns a summary (rows, columns found, partials) and then the pieces."""
    engine = _worker_engine(ctx)
    step: Step = ctx["step"]
    parts: int = ctx["parts"]
    found: set[str] = set()
    rows = 0
    partials: list[Any] = []
    pieces: list[list[pa.RecordBatch]] = [[] for _ in range(parts)]
    for row in block.to_pylist():
        frame, seg, pos = _worker_frame(row)
        feats = step.features(engine.batch(frame, seg, pos, ctx["needs"], found))
        rows += len(pos)
        if step.by_partials:
            partials.append(step.partial(feats))
        else:
            for p, piece in split(feats, str(step.partition_by), parts):
                pieces[p].append(piece)
    meta = {"rows": rows, "found": sorted(found), "partials": partials}
    if not parts:
        return meta
    return (meta, *[_to_ipc(pa.Table.from_batches(p)) if p else b"" for p in pieces])


def _plan_part(ctx: dict[str, Any], *pieces: bytes) -> Any:
    """One Ray task of a partitioned plan: the plan of one partition, from its pieces alone (None
    for a partition no row fell in)."""
    step: Step = ctx["step"]
    tables = [_from_ipc(p) for p in pieces if p]
    if not tables:
        return None
    try:
        features = pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise StepError(
            f"step '{step.name}': its features differ in columns between batches ({exc}); a step's features have one schema"
        ) from None
    del tables
    return step.plan(features)


def _run_task(block: pa.Table, ctx: dict[str, Any]) -> pa.Table:
    """One Ray task: features or decisions for a few batches of one segment (see ``RayEngine._map``)."""
    import ray

    from ..ops.apply import put_pending

    if isinstance(ctx, ray.ObjectRef):
        ctx = ray.get(ctx)
    engine = _worker_engine(ctx)
    backend = engine.store.backend
    step: Step = ctx["step"]
    needs: frozenset[str] = ctx["needs"]
    out: list[dict[str, Any]] = []
    for row in block.to_pylist():
        frame, seg, pos = _worker_frame(row)
        found: set[str] = set()
        res: dict[str, Any] = {
            "k": row["k"],
            "features": None,
            "kept": None,
            "weights": None,
            "drops": None,
            "edges": None,
            "columns": None,
            "new": None,
            "pending": None,
        }
        if ctx["mode"] == "features":
            res["features"] = _to_ipc(pa.Table.from_batches([step.features(engine.batch(frame, seg, pos, needs, found))]))
        else:
            result = engine.decide_batch(frame, seg, pos, step, ctx["plan"], needs, found)
            res["kept"] = np.ascontiguousarray(result.kept, dtype=np.int64).tobytes()
            res["weights"] = np.ascontiguousarray(result.weights, dtype=np.float64).tobytes()
            res["drops"] = _to_ipc(result.drops)
            res["edges"] = _to_ipc(result.edges)
            res["columns"] = _to_ipc(pa.table(result.columns)) if result.columns else None
            res["new"] = _to_ipc(result.new_rows.select(["row_id", "weight", "parent"]))
            if result.new_rows.num_rows:
                segment = engine.pending_segment(step, frame, seg, pos, result.new_rows)
                prov, content = put_pending(backend, segment)
                res["pending"] = orjson.dumps(
                    {
                        "step_id": segment.step_id,
                        "provenance": prov,
                        "content": content,
                        "sources": list(segment.sources),
                        "rows": segment.provenance.num_rows,
                    }
                ).decode()
        res["found"] = orjson.dumps(sorted(found)).decode()
        out.append(res)
    return pa.Table.from_pylist(out, schema=_RESULT_SCHEMA)


def _columns(data: bytes) -> tuple[list[str], list[pa.ChunkedArray]]:
    if not data:
        return [], []
    table = _from_ipc(data)
    return table.column_names, table.columns


_RESULT_SCHEMA = pa.schema(
    [
        ("k", pa.int64()),
        ("features", pa.binary()),
        ("kept", pa.binary()),
        ("weights", pa.binary()),
        ("drops", pa.binary()),
        ("edges", pa.binary()),
        ("columns", pa.binary()),
        ("new", pa.binary()),
        ("pending", pa.string()),
        ("found", pa.string()),
    ]
)

__all__ = ["RayEngine", "StoredPendingSegment", "backend_recipe", "ensure_ray", "open_backend", "run_ingest_parts"]
