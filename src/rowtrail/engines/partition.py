"""A global step's plan without every row's features in memory at once: a two-phase hash partition.

``plan_global`` takes a global step's features batch by batch (an iterator: it never holds them
all) and returns the step's plan, by the decomposition the step declares (``steps/base.py``):

- **by partitions** (``partition_by``, dedupe_exact): phase one splits every features batch by a
  hash of that column modulo P and appends each piece to its part's Arrow IPC stream file in a
  temporary directory; phase two reads one part at a time, plans it from its own rows alone and
  frees it, and the step merges the parts' plans (``merge_plans``). P is chosen so that one part's
  features fit in a budget (``DEFAULT_BUDGET``, from the rows to plan and the size of the first
  batch's features); P = 1 plans in memory, with no files. The files are deleted when the plan is
  made or fails. Only the plan outlives the call, and it does not depend on P.
- **by partials** (``by_partials``, mix): each batch is reduced to a small summary (``partial``) as it
  arrives, and the plan is made from the summaries.
- otherwise (dedupe_near) the features are gathered and planned whole, as before.

The partition of a row is ``partition_of`` its value: for keys of 8 bytes or more of fixed width (the
32-byte digests) their leading 8 bytes as a big-endian integer, else DuckDB's ``hash`` of the value
(the same in every process, so Ray workers agree), modulo P. It needs to be consistent only within
one plan: the plan itself never depends on it. ``ROWTRAIL_PARTITIONS`` forces P (tests, tuning).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import RowtrailError, StepError
from ..steps.base import Step

DEFAULT_BUDGET = 64 * 2**20  # bytes of features one part may hold (its plan needs about 3 times that)
MAX_PARTITIONS = 512  # open files in phase one; past this a part holds more than the budget
PARTITIONS_ENV = "ROWTRAIL_PARTITIONS"


def partitionable(step: Step) -> bool:
    """Whether a global step's plan can be made without all its features at once."""
    return step.by_partials or step.partition_by is not None


def forced_partitions() -> int | None:
    """The number of parts ``ROWTRAIL_PARTITIONS`` forces, if it is set."""
    forced = os.environ.get(PARTITIONS_ENV, "").strip()
    if forced:
        if not forced.isdigit() or int(forced) < 1:
            raise RowtrailError(
                f"{PARTITIONS_ENV}={forced!r} is not a positive integer; unset it to choose the partitions from the memory budget"
            )
        return int(forced)
    return None


def partition_count(rows: int, row_bytes: float, budget_bytes: int | None = None) -> int:
    """How many parts ``rows`` rows of features of ``row_bytes`` each need so that one part fits in
    the budget (``ROWTRAIL_PARTITIONS`` overrides)."""
    forced = forced_partitions()
    if forced is not None:
        return forced
    budget = budget_bytes or DEFAULT_BUDGET
    return int(min(MAX_PARTITIONS, max(1, math.ceil(rows * row_bytes / budget))))


def partition_of(values: pa.Array | pa.ChunkedArray, parts: int) -> np.ndarray:
    """The part (0 … parts-1) of each value: equal values always share one, in any batch or process."""
    n = len(values)
    if parts == 1 or n == 0:
        return np.zeros(n, dtype=np.int64)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    t = values.type
    if pa.types.is_fixed_size_binary(t) and t.byte_width >= 8:
        width = t.byte_width
        raw = np.frombuffer(values.buffers()[1], dtype=np.uint8, count=width * (values.offset + n)).reshape(-1, width)[values.offset :]
        lead = np.ascontiguousarray(raw[:, :8]).view(">u8").reshape(-1)
        return (lead % np.uint64(parts)).astype(np.int64)
    con = _duckdb()
    con.register("_rt_part", pa.table({"k": values}))
    try:
        out = con.sql(f"SELECT (hash(k) % {int(parts)})::BIGINT AS p FROM _rt_part").to_arrow_table()
    finally:
        con.unregister("_rt_part")
    return out.column("p").to_numpy()


_CON: Any = None


def _duckdb() -> Any:
    global _CON
    if _CON is None:
        import duckdb

        _CON = duckdb.connect(config={"threads": 1})  # one thread keeps the rows in order, cheaply
    return _CON


def split(batch: pa.RecordBatch, column: str, parts: int) -> list[tuple[int, pa.RecordBatch]]:
    """The non-empty pieces of a features batch by part of ``column``'s values, rows in batch order."""
    part = partition_of(batch.column(column), parts)
    counts = np.bincount(part, minlength=parts)
    order = np.argsort(part, kind="stable")
    taken = batch.take(pa.array(order))
    starts = np.concatenate([[0], np.cumsum(counts)])
    return [(p, taken.slice(int(starts[p]), int(counts[p]))) for p in range(parts) if counts[p]]


def plan_global(
    step: Step,
    batches: Iterable[pa.RecordBatch],
    rows: int,
    tmp_dir: Path,
    budget_bytes: int | None = None,
    *,
    partitions: int | None = None,
) -> Any:
    """A global step's plan from its features batches (None when there are none); see the module
    docstring. ``rows`` is how many rows the batches hold in all (to choose P); ``partitions``
    forces P."""
    if step.by_partials:
        partials = [step.partial(b) for b in batches]
        return step.plan_from_partials(partials) if partials else None
    it = iter(batches)
    first = next(it, None)
    if first is None:
        return None
    column = step.partition_by
    if column is None:
        return step.plan(pa.Table.from_batches([first, *it]))
    if column not in first.schema.names:
        raise StepError(
            f"step '{step.name}' partitions its plan by '{column}', which its features do not have (they have {', '.join(first.schema.names)})"
        )
    parts = partitions or partition_count(rows, first.nbytes / max(1, first.num_rows), budget_bytes)
    if parts == 1:
        return step.plan(pa.Table.from_batches([first, *it]))
    work = Path(tempfile.mkdtemp(prefix="plan-", dir=tmp_dir))
    writers: dict[int, Any] = {}
    try:
        schema = first.schema
        for k, batch in enumerate(_chain(first, it)):
            if not batch.schema.equals(schema):
                raise StepError(
                    f"step '{step.name}': the features of batch {k} have columns {batch.schema}, those of batch 0 {schema}; a step's features have one schema"
                )
            for p, piece in split(batch, column, parts):
                if p not in writers:
                    writers[p] = pa.ipc.new_stream(str(work / f"{p}.arrow"), schema)
                writers[p].write_batch(piece)
        for w in writers.values():
            w.close()
        plans = []
        for p in sorted(writers):
            path = work / f"{p}.arrow"
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_stream(source).read_all()
            plans.append(step.plan(table))
            del table
            path.unlink()
        return step.merge_plans(plans)
    finally:
        for w in writers.values():
            try:
                w.close()
            except (OSError, pa.ArrowInvalid):
                pass
        shutil.rmtree(work, ignore_errors=True)


def _chain(first: pa.RecordBatch, rest: Iterable[pa.RecordBatch]) -> Iterable[pa.RecordBatch]:
    yield first
    yield from rest


__all__ = [
    "DEFAULT_BUDGET",
    "MAX_PARTITIONS",
    "forced_partitions",
    "partition_count",
    "partition_of",
    "partitionable",
    "plan_global",
    "split",
]
