"""Ingest: read rows, map values, hash content, assign row ids, and stage them with provenance.

The heavy work (parse, canonicalize, hash, write Parquet) runs without the store lock, in parallel
worker processes for large JSONL files (or, with ``engine="ray"``, in Ray tasks on a local Ray or a
cluster: same parts, same files, same code). Then, under the lock, the new rows are compared with the
corpus's current input set (same key and content: a no-op; same key, new content: the old row is
superseded), and one ``ingest`` journal entry publishes everything. Until that entry is written
nothing is visible; on any error the temporary files are removed and the store is unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import IngestError, SourceNotFoundError
from ..hashing import MAX_SAFE_INT, jcs, key_text, to_json_value
from ..readers import TABLE_SPLIT_ROWS, Part, as_arrow_table, describe_table, is_path, plan_parts, read_part
from ..segments import ATTR_PREFIX, CONTENT_ROW_GROUP_ROWS, CONTENT_SCHEMA, PARQUET_OPTS, PROVENANCE_BASE, ROW_GROUP_ROWS

if TYPE_CHECKING:
    from ..store import Store

QUARANTINE_SCHEMA = pa.schema(
    [("origin_file", pa.string()), ("origin_line", pa.int64()), ("field", pa.string()), ("reason", pa.string()), ("raw", pa.string())]
)
DROPS_SCHEMA = pa.schema([("row_id", pa.binary(32)), ("reason_code", pa.string()), ("reason", pa.string())])
EDGES_SCHEMA = pa.schema([("parent", pa.binary(32)), ("child", pa.binary(32)), ("kind", pa.string())])
REPLACE_CONFIRM_FRACTION = 0.01


@dataclass(frozen=True)
class IngestSpec:
    """Everything a worker needs to turn raw rows into provenance and content rows."""

    source: str | None
    source_field: str | None
    key_field: str | None
    content_fields: tuple[str, ...] | None
    attributes: tuple[tuple[str, str], ...]  # (attribute name, input column)
    hash_fields: tuple[str, ...]
    binary_fields: frozenset[str]
    quarantine: bool
    snapshots: dict[str, str]  # known source id → current snapshot
    ingest_id: str
    ingested_at: str
    tmp_dir: str

    def excluded(self) -> set[str]:
        out = {c for _, c in self.attributes}
        if self.source_field:
            out.add(self.source_field)
        if self.key_field:
            out.add(self.key_field)
        return out


@dataclass
class PartResult:
    name: str
    index: int
    provenance: str | None = None
    content: str | None = None
    rows: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    quarantine: list[tuple[str, int, str, str, str]] = field(default_factory=list)
    error: tuple[str, int, str, str] | None = None  # (file, line, field, message)


class _PartWriter:
    """Streams processed batches of one part into its provenance and content Parquet files."""

    def __init__(self, spec: IngestSpec, index: int):
        self.spec = spec
        base = Path(spec.tmp_dir) / f"{spec.ingest_id}-{index:04d}"
        self.prov_path = str(base) + ".prov.parquet"
        self.content_path = str(base) + ".content.parquet"
        self.prov_writer: pq.ParquetWriter | None = None
        self.content_writer: pq.ParquetWriter | None = None
        self.attr_types: dict[str, pa.DataType] = {}

    def write(self, cols: dict[str, list[Any]], attr_vals: dict[str, list[Any]], hashes: dict[str, list[bytes]], lines_for_err: list[int], file: str) -> None:
        n = len(cols["row_id"])
        if n == 0:
            return
        zeros = pa.array(np.zeros(n, dtype=np.int32))
        arrays: list[pa.Array] = [
            _fixed32(cols["row_id"]),
            pa.array(cols["source_id"], pa.string()),
            pa.array(cols["source_snapshot"], pa.string()),
            pa.array(cols["source_key"], pa.string()),
            _fixed32(cols["content_sha256"]),
            pa.array([self.spec.ingest_id], pa.string()).take(zeros),
            pa.array([self.spec.ingested_at], pa.string()).cast(pa.timestamp("us", tz="UTC")).take(zeros),
            pa.array([file], pa.string()).take(zeros),
            pa.array(np.fromiter(cols["origin_line"], dtype=np.int64, count=n)),
        ]
        names = list(PROVENANCE_BASE.names)
        for name, values in attr_vals.items():
            typ = self.attr_types.get(name)
            if typ is None:
                typ = self.attr_types[name] = _attr_type(values, name, file, cols["origin_line"])
            arrays.append(_attr_array(values, typ, name, file, cols["origin_line"]))
            names.append(ATTR_PREFIX + name)
        for fname, values in hashes.items():
            arrays.append(_fixed32(values))
            names.append(f"{fname}_sha256")
        prov = pa.Table.from_arrays(arrays, names=names)
        content = pa.Table.from_arrays([arrays[0], _utf8(cols["content"])], schema=CONTENT_SCHEMA)
        if self.prov_writer is None:
            self.prov_writer = pq.ParquetWriter(self.prov_path, prov.schema, **PARQUET_OPTS)
            self.content_writer = pq.ParquetWriter(self.content_path, CONTENT_SCHEMA, **PARQUET_OPTS)
        self.prov_writer.write_table(prov, row_group_size=ROW_GROUP_ROWS)
        assert self.content_writer is not None
        self.content_writer.write_table(content, row_group_size=CONTENT_ROW_GROUP_ROWS)

    def close(self) -> bool:
        if self.prov_writer is None:
            return False
        self.prov_writer.close()
        assert self.content_writer is not None
        self.content_writer.close()
        for path in (self.prov_path, self.content_path):  # made durable here, overlapping other parts' work
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return True


def _fixed32(values: list[bytes]) -> pa.Array:
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), len(values), [None, pa.py_buffer(b"".join(values))])


def _utf8(values: list[bytes]) -> pa.Array:
    """A string array from UTF-8 bytes we produced ourselves (canonical JSON of Python str: valid UTF-8)."""
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=len(values)), out=offsets[1:])
    arr = pa.LargeStringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(b"".join(values)))
    return arr.cast(pa.string()) if offsets[-1] < 2**31 else arr


_KIND = {bool: "bool", int: "number", float: "number", str: "string"}


def _attr_type(values: list[Any], name: str, file: str, lines: list[int]) -> pa.DataType:
    """The column type of an attribute, from its first batch; mixed scalar kinds are an error."""
    first = None
    for v, line in zip(values, lines):
        if v is None:
            continue
        kind = _KIND.get(type(v), "json")
        if first is None:
            first = kind
        elif kind != first:
            raise IngestError(
                f"attribute '{name}' holds {v!r} ({kind}), but earlier rows hold {first} values; clean the column",
                file,
                line,
                name,
            )
    if first == "bool":
        return pa.bool_()
    if first == "number":
        kinds = {type(v) for v in values if v is not None}
        return pa.int64() if kinds == {int} else pa.float64()
    return pa.string()  # strings, and nested values kept as canonical JSON text


def _attr_array(values: list[Any], typ: pa.DataType, name: str, file: str, lines: list[int]) -> pa.Array:
    if typ == pa.string():
        values = [v if v is None or type(v) is str else jcs(to_json_value(v, name)).decode() for v in values]
    try:
        return pa.array(values, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        for v, line in zip(values, lines):
            try:
                pa.array([v], typ)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                raise IngestError(
                    f"attribute '{name}' holds {v!r}, but earlier rows made it {typ}; "
                    "clean the column or ingest it as a string",
                    file,
                    line,
                    name,
                ) from None
        raise


def process_part(spec: IngestSpec, part: Part, index: int, tables: list[Any] | None = None) -> PartResult:
    """Read one part, canonicalize and hash every row, and stream the results to Parquet."""
    res = PartResult(part.name, index)
    writer = _PartWriter(spec, index)
    excluded = spec.excluded()
    attrs = spec.attributes
    try:
        for batch in read_part(part, tables):
            cols: dict[str, list[Any]] = {k: [] for k in ("row_id", "source_id", "source_snapshot", "source_key", "content_sha256", "origin_line", "content")}
            c_rid, c_sid, c_snap, c_key = cols["row_id"].append, cols["source_id"].append, cols["source_snapshot"].append, cols["source_key"].append
            c_ch, c_line, c_body = cols["content_sha256"].append, cols["origin_line"].append, cols["content"].append
            attr_vals: dict[str, list[Any]] = {a: [] for a, _ in attrs}
            hashes: dict[str, list[bytes]] = {f: [] for f in spec.hash_fields}
            bad = batch.bad
            if bad and not spec.quarantine:
                line, reason, _raw = bad[0]
                res.error = (part.name, line, "", reason)
                break
            res.quarantine += [(part.name, line, "", reason, raw) for line, reason, raw in bad]
            fast = _fast_batch(spec, batch.rows)
            if fast is not None:
                cols, attr_vals, hashes = fast
                cols["origin_line"] = batch.lines
                for sid, n in Counter(cols["source_id"]).items():
                    res.sources[sid] = res.sources.get(sid, 0) + n
                writer.write(cols, attr_vals, hashes, cols["origin_line"], part.name)
                res.rows += len(cols["row_id"])
                continue
            for line, row in zip(batch.lines, batch.rows):
                try:
                    sid, snap, key, ch, body, rid, avals, hvals = _hash_row(spec, row, excluded)
                except IngestError as exc:
                    if not spec.quarantine:
                        res.error = (part.name, line, exc.field or "", exc.reason)
                        break
                    res.quarantine.append((part.name, line, exc.field or "", exc.reason, _raw_text(row)))
                    continue
                c_rid(rid)
                c_sid(sid)
                c_snap(snap)
                c_key(key)
                c_ch(ch)
                c_line(line)
                c_body(body)  # canonical JSON bytes: Arrow takes them as UTF-8 strings as they are
                for (a, _), v in zip(attrs, avals):
                    attr_vals[a].append(v)
                for hf, hv in zip(spec.hash_fields, hvals):
                    hashes[hf].append(hv)
                res.sources[sid] = res.sources.get(sid, 0) + 1
            if res.error:
                break
            writer.write(cols, attr_vals, hashes, cols["origin_line"], part.name)
            res.rows += len(cols["row_id"])
    except IngestError as exc:
        res.error = (exc.file or part.name, exc.line if exc.line is not None else -1, exc.field or "", exc.reason)
    except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        res.error = (part.name, -1, "", f"cannot read: {exc}")
    finally:
        wrote = writer.close()
    if res.error:
        for p in (writer.prov_path, writer.content_path):
            if os.path.exists(p):
                os.unlink(p)
        return res
    if wrote:
        res.provenance, res.content = writer.prov_path, writer.content_path
    return res


def _hash_row(spec: IngestSpec, row: dict[str, Any], excluded: set[str]) -> tuple[str, str, str, bytes, bytes, bytes, list[Any], list[bytes]]:
    """One row, field by field: (source, snapshot, key, content hash, canonical content, row id,
    attribute values, extra hashes). An IngestError names the field that failed."""
    sha = hashlib.sha256
    fld = ""
    try:
        if spec.source is not None:
            sid = spec.source
        else:
            fld = spec.source_field or ""
            sid = row.get(fld)  # type: ignore[assignment]
            if not isinstance(sid, str) or not sid:
                raise IngestError(f"source field '{fld}' is missing or empty")
        snap = spec.snapshots.get(sid)
        if snap is None:
            raise IngestError(f"row names source '{sid}', which is not registered; run 'rowtrail source add {sid} …'")
        content = {}
        for f in spec.content_fields or [k for k in row if k not in excluded]:
            fld = f
            if f not in row:
                raise IngestError(f"content field '{f}' is missing")
            v = row[f]
            content[f] = v if type(v) is str else to_json_value(v, f, spec.binary_fields)
        fld = ""
        body = jcs(content)
        ch = sha(body).digest()
        if spec.key_field is not None:
            fld = spec.key_field
            if fld not in row:
                raise IngestError(f"key field '{fld}' is missing")
            key = key_text(row[fld], fld)
        else:
            key = ch.hex()
        rid = sha(jcs([sid, key, ch.hex()])).digest()
        avals = []
        for _a, c in spec.attributes:
            fld = c
            v = row.get(c)
            avals.append(v if v is None or type(v) in (str, int, float, bool) else to_json_value(v, c, spec.binary_fields))
        hvals = []
        for hf in spec.hash_fields:
            fld = hf
            if hf not in row:
                raise IngestError(f"hash field '{hf}' is missing")
            hvals.append(sha(jcs(to_json_value(row[hf], hf, spec.binary_fields))).digest())
    except IngestError as exc:
        exc.field = exc.field or fld
        raise
    return sid, snap, key, ch, body, rid, avals, hvals


_SCALARS = frozenset({str, int, bool, float, type(None)})


def _fast_batch(spec: IngestSpec, rows: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, list[bytes]]] | None:
    """The common case, column by column in comprehensions (about twice as fast as the row loop):
    declared ASCII content fields holding strings, booleans, nulls, safe integers or integral floats,
    string or safe-integer keys, known sources. Any surprise returns None and the batch goes through
    the row loop, which names the bad line."""
    cf = spec.content_fields
    if not cf or not all(f.isascii() for f in cf) or spec.hash_fields or spec.binary_fields:
        return None
    sha, dumps = hashlib.sha256, orjson.dumps
    cf = tuple(sorted(cf))  # JCS key order (ASCII names), so orjson need not sort: it is slow at that
    try:
        contents = [{f: r[f] for f in cf} for r in rows]
        kinds = {type(v) for c in contents for v in c.values()}
        if kinds != {str} and not _json_scalars(contents, kinds):
            return None
        if spec.source is not None:
            sids = [spec.source] * len(rows)
        else:
            sf = spec.source_field or ""
            sids = [r[sf] for r in rows]
        snaps_map = spec.snapshots
        if not all(type(s) is str and s in snaps_map for s in set(sids)):
            return None
        bodies = [dumps(c) for c in contents]
    except (KeyError, TypeError, orjson.JSONEncodeError):
        return None
    chs = [sha(b).digest() for b in bodies]
    chx = [h.hex() for h in chs]
    if spec.key_field is None:
        keys = chx
    else:
        kf = spec.key_field
        try:
            keys = [r[kf] for r in rows]
        except KeyError:
            return None
        kinds = {type(k) for k in keys}
        if kinds == {int}:
            if any(not -MAX_SAFE_INT <= k <= MAX_SAFE_INT for k in keys):  # type: ignore[operator]
                return None
            keys = [str(k) for k in keys]
        elif kinds != {str} or "" in keys:
            return None
    try:
        rids = [sha(dumps([s, k, x])).digest() for s, k, x in zip(sids, keys, chx)]
    except orjson.JSONEncodeError:
        return None
    attr_vals: dict[str, list[Any]] = {}
    for a, c in spec.attributes:
        vals = [r.get(c) for r in rows]
        if not {type(v) for v in vals} <= {str, int, float, bool, type(None)}:
            return None
        attr_vals[a] = vals
    cols: dict[str, list[Any]] = {
        "row_id": rids,
        "source_id": sids,
        "source_snapshot": [snaps_map[s] for s in sids],
        "source_key": keys,
        "content_sha256": chs,
        "content": bodies,
    }
    return cols, attr_vals, {}


def _json_scalars(contents: list[dict[str, Any]], kinds: set[type]) -> bool:
    """Whether orjson writes these contents as JCS does, once integral floats are made integers (in
    place): every value a string, boolean, null, integer within ±(2^53−1) or float equal to such an
    integer (JCS writes 4.0 as 4; other floats format differently, so they take the row loop)."""
    if not kinds <= _SCALARS:
        return False
    if int in kinds and any(type(v) is int and not -MAX_SAFE_INT <= v <= MAX_SAFE_INT for c in contents for v in c.values()):
        return False
    if float in kinds:
        for c in contents:
            for k, v in c.items():
                if type(v) is float:
                    if not (v.is_integer() and -MAX_SAFE_INT <= v <= MAX_SAFE_INT):
                        return False
                    c[k] = int(v)
    return True


def _raw_text(row: dict[str, Any]) -> str:
    try:
        return orjson.dumps(row, default=str).decode()
    except TypeError:
        return repr(row)


# --------------------------------------------------------------------------------------------------
# Parallel execution. Workers are fresh interpreters (``python -m rowtrail.ops._ingest_worker``) fed
# JSON on stdin: unlike multiprocessing's spawn/forkserver they never re-import the caller's
# ``__main__`` (scripts need no ``if __name__ == "__main__"`` guard), and unlike fork they never
# inherit another thread's locks (DuckDB and Arrow run thread pools in this process).


def spec_to_dict(spec: IngestSpec) -> dict[str, Any]:
    d = dataclasses.asdict(spec)
    d["binary_fields"] = sorted(spec.binary_fields)
    return d


def spec_from_dict(d: dict[str, Any]) -> IngestSpec:
    d = dict(d)
    d["content_fields"] = tuple(d["content_fields"]) if d["content_fields"] is not None else None
    d["attributes"] = tuple(tuple(a) for a in d["attributes"])
    d["hash_fields"] = tuple(d["hash_fields"])
    d["binary_fields"] = frozenset(d["binary_fields"])
    return IngestSpec(**d)


def result_from_dict(d: dict[str, Any]) -> PartResult:
    r = PartResult(**d)
    r.quarantine = [tuple(q) for q in r.quarantine]  # type: ignore[misc]
    r.error = tuple(r.error) if r.error else None  # type: ignore[assignment]
    return r


def default_workers() -> int:
    env = os.environ.get("ROWTRAIL_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def run_parts(spec: IngestSpec, parts: list[Part], tables: list[Any], workers: int, progress: Callable[[int], None] | None = None) -> list[PartResult]:
    if workers <= 1 or len(parts) == 1 or tables:
        results = []
        for i, p in enumerate(parts):
            results.append(process_part(spec, p, i, tables))
            if progress:
                progress(1)
        return results
    n = min(workers, len(parts))
    queues: list[list[list[Any]]] = [[] for _ in range(n)]
    for i, p in enumerate(parts):
        queues[i % n].append([i, dataclasses.asdict(p)])
    out: list[PartResult | None] = [None] * len(parts)
    procs: list[subprocess.Popen[bytes]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def collect(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            res = result_from_dict(orjson.loads(line))
            with lock:
                out[res.index] = res
            if progress:
                progress(1)

    threads = []
    try:
        for q in queues:
            proc = subprocess.Popen([sys.executable, "-m", "rowtrail.ops._ingest_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert proc.stdin is not None
            proc.stdin.write(orjson.dumps({"spec": spec_to_dict(spec), "parts": q}))
            proc.stdin.close()
            procs.append(proc)
            t = threading.Thread(target=collect, args=(proc,), daemon=True)
            t.start()
            threads.append(t)
        for proc, t in zip(procs, threads):
            t.join()
            assert proc.stderr is not None
            err = proc.stderr.read().decode("utf-8", "replace")
            if proc.wait() != 0:
                errors.append(err.strip().splitlines()[-1] if err.strip() else f"exit code {proc.returncode}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    if errors or any(r is None for r in out):
        raise IngestError(f"an ingest worker failed: {'; '.join(errors) or 'results missing'}")
    return [r for r in out if r is not None]


def ray_workers(address: str | None = None) -> int:
    """How many parts a Ray ingest plans for at least: the CPUs of the Ray it joins (or starts)."""
    from ..engines.ray import ensure_ray

    ray = ensure_ray(address)
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_parts_on_ray(
    spec: IngestSpec, parts: list[Part], tables: list[Any], progress: Callable[[int], None] | None, address: str | None
) -> list[PartResult]:
    """``run_parts`` with each part read by a Ray task (``engines.ray.run_ingest_parts``). A bad row
    comes back as the part's error, as from a local worker; a task Ray could not run (its worker died
    more often than Ray retries, the cluster went away) is an IngestError."""
    from ..engines.ray import ray_module, run_ingest_parts

    ray = ray_module()
    try:
        results = run_ingest_parts(spec, parts, tables, progress, address)
    except ray.exceptions.RayError as exc:
        for p in Path(spec.tmp_dir).glob(f"{spec.ingest_id}-*.parquet"):  # the parts that did finish
            p.unlink(missing_ok=True)
        raise IngestError(f"an ingest task failed on Ray: {exc}") from None
    written = [p for r in results for p in (r.provenance, r.content) if p]
    unseen = [p for p in written if not os.path.exists(p)]
    if unseen:
        for p in written:
            if os.path.exists(p):
                os.unlink(p)
        raise IngestError(
            f"Ray workers wrote {len(unseen)} part file(s) this process cannot see (first: {unseen[0]}); on a cluster, "
            f"the store's temporary directory {spec.tmp_dir} and the input files must be on a file system every node "
            "mounts at the same path — or ingest with --engine local"
        )
    return results


# --------------------------------------------------------------------------------------------------
# The verb

ENGINES = ("local", "ray")


@dataclass
class IngestReport:
    ingest_id: str
    rows: int
    new: int
    unchanged: int
    superseded: int
    refresh_dropped: int
    quarantined: int
    sources: dict[str, int]
    files: list[dict[str, Any]]
    entry_seq: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def normalize_attributes(attributes: Any) -> tuple[tuple[str, str], ...]:
    if attributes is None:
        return ()
    if isinstance(attributes, dict):
        return tuple((str(k), str(v)) for k, v in attributes.items())
    out = []
    for a in attributes:
        name, _, col = str(a).partition("=")
        out.append((name, col or name))
    return tuple(out)


def ingest(
    store: Store,
    inputs: Any,
    *,
    source: str | None = None,
    source_field: str | None = None,
    key_field: str | None = None,
    content_fields: Sequence[str] | None = None,
    attributes: Any = None,
    hash_fields: Sequence[str] = (),
    binary_fields: Sequence[str] = (),
    corpus: str = "main",
    on_error: str = "raise",
    replace: bool = False,
    yes: bool = False,
    workers: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    engine: str = "local",
    address: str | None = None,
) -> IngestReport:
    """Ingest files and tables (the module docstring says how). ``engine="ray"`` reads the input
    parts as Ray tasks (a local Ray, or the cluster at ``address``) instead of local worker processes;
    ``workers`` then defaults to the cluster's CPU count. The parts depend only on the inputs and
    ``workers``, so a Ray ingest writes the same segments as a local ingest with the same ``workers``
    — byte for byte, journal entry included, but for the ingest's id and time, which come from the
    clock — and the same rows, row ids and ``content_id`` with any ``workers``."""
    from ..versions.journal import now_rfc3339

    if engine not in ENGINES:
        raise IngestError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if address and engine != "ray":
        raise IngestError("--address is for the Ray engine; add --engine ray")
    if (source is None) == (source_field is None):
        raise IngestError("give exactly one of source= (every row from one source) or source_field= (a column naming it)")
    taken = set(PROVENANCE_BASE.names)
    if len(set(hash_fields)) != len(list(hash_fields)):
        raise IngestError(f"--hash-fields lists a field twice: {', '.join(hash_fields)}")
    for hf in hash_fields:
        if f"{hf}_sha256" in taken:
            raise IngestError(f"--hash-fields {hf} would make a column '{hf}_sha256', which rowtrail already keeps; hash another field")
    if on_error not in ("raise", "quarantine"):
        raise IngestError(f"on_error must be 'raise' or 'quarantine', not {on_error!r}")
    state = store.state
    if source is not None and source not in state.sources:
        raise SourceNotFoundError(f"no source '{source}'; see 'rowtrail source list' or add it with 'rowtrail source add {source} --kind …'")
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise IngestError("nothing to ingest: give at least one file or table")
    if workers is None:
        workers = ray_workers(address) if engine == "ray" else default_workers()
    spill: list[str] = []  # temporary files that hand in-memory tables to workers
    table_files: list[dict[str, Any]] = []
    parts: list[Part] = []
    tables: list[Any] = []
    for item in items:
        if is_path(item):
            path = str(item)
            if not os.path.isfile(path):
                raise IngestError("no such file", path)
            parts += plan_parts(path, workers)
        else:
            table = as_arrow_table(item)
            table_files.append({"name": describe_table(item), "sha256": None, "rows": table.num_rows})
            if workers > 1 and table.num_rows >= TABLE_SPLIT_ROWS:
                parts += _table_parts(store, table, describe_table(item), workers, spill)
            else:
                tables.append(table)
                parts.append(Part(name=describe_table(item), fmt="table", table_index=len(tables) - 1))
    at = now_rfc3339()
    opts = {
        "key_field": key_field,
        "content_fields": list(content_fields) if content_fields else None,
        "attributes": [list(a) for a in normalize_attributes(attributes)],
        "hash_fields": list(hash_fields),
        "binary_fields": sorted(binary_fields),
        "source": source,
        "source_field": source_field,
    }
    ingest_id = "ing-" + hashlib.sha256(jcs({"at": at, "inputs": [p.name for p in parts], "options": opts, "pid": os.getpid()})).hexdigest()[:20]
    spec = IngestSpec(
        source=source,
        source_field=source_field,
        key_field=key_field,
        content_fields=tuple(content_fields) if content_fields else None,
        attributes=normalize_attributes(attributes),
        hash_fields=tuple(hash_fields),
        binary_fields=frozenset(binary_fields),
        quarantine=on_error == "quarantine",
        snapshots={sid: rec.snapshot for sid, rec in state.sources.items()},
        ingest_id=ingest_id,
        ingested_at=at,
        tmp_dir=str(store.backend.ensure_tmp()),
    )
    file_digests: dict[str, str] = {}
    hasher = threading.Thread(target=_hash_files, args=([p for p in items if is_path(p)], file_digests), daemon=True)
    hasher.start()
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if progress:
            progress("read", done[0], len(parts))

    tmp_files = spill
    try:
        if engine == "ray":
            results = run_parts_on_ray(spec, parts, tables, tick, address)
        else:
            results = run_parts(spec, parts, tables, workers, tick)
        hasher.join()
        tmp_files = [p for r in results for p in (r.provenance, r.content) if p] + spill
        errors = [r.error for r in results if r.error]
        if errors:
            f, line, fld, msg = min(errors, key=lambda e: (e[0], e[1]))
            hint = " (or pass --on-error quarantine to record bad rows and continue)"
            raise IngestError(msg + (f" [field '{fld}']" if fld and fld not in msg else "") + hint, f, line if line >= 0 else None, fld or None)
        quarantine = [q for r in results for q in r.quarantine]
        dups = _duplicate_keys(results)
        if dups:
            if not spec.quarantine:
                f, line, first, sid, key = dups[0]
                raise IngestError(
                    f"duplicate key {key!r} for source '{sid}' (first seen at line {first}); keys must be unique "
                    "within one ingest",
                    f,
                    line,
                    key_field,
                )
            results = _drop_rows(results, {(d[0], d[1]) for d in dups})
            quarantine += [(f, line, key_field or "", f"duplicate key {key!r} (first at line {first})", "") for f, line, first, sid, key in dups]
        total = sum(r.rows for r in results)
        if total == 0 and not quarantine:
            raise IngestError("no rows found in the input", ", ".join(p.name for p in parts))
        files = [{"name": str(p), "sha256": file_digests.get(str(p)), "bytes": os.path.getsize(p)} for p in items if is_path(p)]
        files += table_files
        return publish(store, spec, results, quarantine, files, corpus, opts, replace, yes)
    finally:
        for p in tmp_files:
            if os.path.exists(p):
                os.unlink(p)


def _table_parts(store: Store, table: pa.Table, name: str, workers: int, spill: list[str]) -> list[Part]:
    path = str(store.backend.new_tmp_path(".arrow"))
    spill.append(path)
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    n = max(workers, -(-table.num_rows // TABLE_SPLIT_ROWS))
    cuts = [table.num_rows * i // n for i in range(n + 1)]
    return [Part(name=name, path=path, fmt="ipc", start=a, end=b, first_line=a) for a, b in zip(cuts, cuts[1:])]


def _hash_files(paths: list[Any], out: dict[str, str]) -> None:
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while block := fh.read(1 << 23):
                h.update(block)
        out[str(p)] = h.hexdigest()


def _duplicate_keys(results: list[PartResult]) -> list[tuple[str, int, int, str, str]]:
    """(file, line, first line, source, key) for every repeat of a (source, key) within the ingest."""
    import duckdb

    from ..memory import duckdb_config

    paths = [r.provenance for r in results if r.provenance]
    if not paths:
        return []
    con = duckdb.connect(config=duckdb_config(os.path.dirname(paths[0])))  # spills past the limit
    try:
        rows = con.execute(
            """
            WITH k AS (SELECT source_id, source_key, origin_file, origin_line,
                              row_number() OVER (PARTITION BY source_id, source_key ORDER BY origin_file, origin_line) AS n,
                              first_value(origin_line) OVER (PARTITION BY source_id, source_key ORDER BY origin_file, origin_line) AS first_line
                       FROM read_parquet($paths)
                       WHERE (source_id, source_key) IN (
                           SELECT source_id, source_key FROM read_parquet($paths) GROUP BY ALL HAVING count(*) > 1))
            SELECT origin_file, origin_line, first_line, source_id, source_key FROM k WHERE n > 1
            ORDER BY origin_file, origin_line
            """,
            {"paths": paths},
        ).fetchall()
    finally:
        con.close()
    return [(r[0], int(r[1]), int(r[2]), r[3], r[4]) for r in rows]


def _drop_rows(results: list[PartResult], drop: set[tuple[str, int]]) -> list[PartResult]:
    """Rewrite parts without the given (file, line) rows (quarantined duplicates)."""
    for r in results:
        if not r.provenance:
            continue
        prov = pq.read_table(r.provenance)
        content = pq.read_table(r.content)
        files = prov.column("origin_file").to_pylist()
        lines = prov.column("origin_line").to_pylist()
        keep = np.array([(f, ln) not in drop for f, ln in zip(files, lines)])
        if keep.all():
            continue
        mask = pa.array(keep)
        prov, content = prov.filter(mask), content.filter(mask)
        pq.write_table(prov, r.provenance, row_group_size=ROW_GROUP_ROWS, **PARQUET_OPTS)
        pq.write_table(content, r.content, row_group_size=CONTENT_ROW_GROUP_ROWS, **PARQUET_OPTS)
        r.rows = prov.num_rows
        counts = prov.group_by("source_id").aggregate([("source_id", "count")])
        r.sources = dict(zip(counts.column("source_id").to_pylist(), counts.column("source_id_count").to_pylist()))
    return results


def publish(
    store: Store,
    spec: IngestSpec,
    results: list[PartResult],
    quarantine: list[tuple[str, int, str, str, str]],
    files: list[dict[str, Any]],
    corpus: str,
    opts: dict[str, Any],
    replace: bool,
    yes: bool,
) -> IngestReport:
    """Under the lock: compare with the corpus's rows, record supersessions, append the entry."""
    import duckdb

    from ..versions.manifest import empty_records
    from .inputs import current_inputs

    backend = store.backend
    with store._write() as state:
        affected = sorted({s for r in results for s in r.sources})
        segs = [s.seg for s in state.segments if set(s.sources) & set(affected)]
        # the corpus's input set only matters when these sources already have rows (a new source's
        # first ingest does not build it: at 20 M rows that is gigabytes of records and sorts)
        current = current_inputs(store, state, corpus) if segs else empty_records()
        existing = current[np.isin(current["seg"], segs)] if len(current) and segs else current[:0]
        new_paths = [r.provenance for r in results if r.provenance]
        from .optout import refused_rows

        refused = refused_rows(store, state, new_paths)
        if refused:
            f, line, req = refused[0]
            raise IngestError(
                f"this content was opted out (request {req}) and is refused"
                + (f"; {len(refused) - 1} more row(s) too" if len(refused) > 1 else "")
                + "; see 'rowtrail optout --list'",
                file=f,
                line=line,
            )
        unchanged = superseded = refresh_dropped = 0
        drop_tables: list[pa.Table] = []
        edge_table: pa.Table | None = None
        if len(existing) and new_paths:
            from ..memory import duckdb_config

            ex = _existing_keys(store, existing)
            con = duckdb.connect(config=duckdb_config(spec.tmp_dir))
            try:
                con.register("ex", ex)
                new = con.sql(f"SELECT row_id, source_id, source_key FROM read_parquet({new_paths!r})")
                con.register("new_rows", new.to_arrow_table())
                ex_f = "SELECT * FROM ex WHERE source_id IN (SELECT DISTINCT source_id FROM new_rows)"
                unchanged = con.sql(f"SELECT count(*) FROM new_rows SEMI JOIN ({ex_f}) e USING (row_id)").fetchall()[0][0]
                sup = con.sql(
                    f"SELECT e.row_id AS parent, n.row_id AS child FROM ({ex_f}) e JOIN new_rows n "
                    "USING (source_id, source_key) WHERE e.row_id <> n.row_id ORDER BY parent"
                ).to_arrow_table()
                superseded = sup.num_rows
                if superseded:
                    edge_table = pa.table(
                        {"parent": sup.column("parent"), "child": sup.column("child"), "kind": pa.array(["modified"] * superseded)},
                        schema=EDGES_SCHEMA,
                    )
                    drop_tables.append(_drops(sup.column("parent"), "superseded", f"superseded by a new version of the same key in ingest {spec.ingest_id}"))
                if replace:
                    gone = con.sql(
                        f"SELECT e.row_id, e.source_id FROM ({ex_f}) e ANTI JOIN new_rows n USING (source_id, source_key) ORDER BY row_id"
                    ).to_arrow_table()
                    refresh_dropped = gone.num_rows
                    if refresh_dropped:
                        _confirm_replace(con, gone, yes)
                        drop_tables.append(_drops(gone.column("row_id"), "source-refresh", f"not in the replacing ingest {spec.ingest_id}"))
            finally:
                con.close()
        drops_digest = _put_table(store, pa.concat_tables(drop_tables) if drop_tables else None)
        edges_digest = _put_table(store, edge_table)
        q_digest = None
        if quarantine:
            qt = pa.table(
                {
                    "origin_file": [q[0] for q in quarantine],
                    "origin_line": [q[1] for q in quarantine],
                    "field": [q[2] for q in quarantine],
                    "reason": [q[3] for q in quarantine],
                    "raw": [q[4] for q in quarantine],
                },
                schema=QUARANTINE_SCHEMA,
            )
            q_digest = _put_table(store, qt)
        segments = []
        seg = state.next_seg()
        for r in results:
            if not r.provenance:
                continue
            prov = backend.put_file(r.provenance)
            content = backend.put_file(r.content)  # type: ignore[arg-type]
            segments.append({"seg": seg, "sources": sorted(r.sources), "provenance": prov, "content": content, "rows": r.rows})
            seg += 1
        total = sum(r.rows for r in results)
        counts = {
            "rows": total,
            "new": total - unchanged - superseded,
            "unchanged": unchanged,
            "superseded": superseded,
            "refresh_dropped": refresh_dropped,
            "quarantined": len(quarantine),
        }
        per_source: dict[str, int] = {}
        for r in results:
            for s, c in r.sources.items():
                per_source[s] = per_source.get(s, 0) + c
        entry = store._append(
            state,
            {
                "kind": "ingest",
                "corpus": corpus,
                "ingest_id": spec.ingest_id,
                "ingested_at": spec.ingested_at,
                "files": files,
                "options": opts | {"on_error": "quarantine" if spec.quarantine else "raise", "replace": replace},
                "sources": dict(sorted(per_source.items())),
                "segments": segments,
                "drops": drops_digest,
                "edges": edges_digest,
                "quarantine": q_digest,
                "counts": counts,
            },
        )
    return IngestReport(
        ingest_id=spec.ingest_id,
        rows=total,
        new=counts["new"],
        unchanged=unchanged,
        superseded=superseded,
        refresh_dropped=refresh_dropped,
        quarantined=len(quarantine),
        sources=per_source,
        files=files,
        entry_seq=entry["seq"],
    )


def _existing_keys(store: Store, existing: np.ndarray) -> pa.Table:
    from ..segments import numpy_to_ids_column

    ids, sids, keys = [], [], []
    order = np.argsort(existing["seg"], kind="stable")
    bounds = np.flatnonzero(np.diff(existing["seg"][order])) + 1
    for part in np.split(order, bounds):
        seg = int(existing["seg"][part[0]])
        at = existing["row"][part].astype(np.int64)
        ids.append(existing["id"][part])
        sids.append(store.segment_column(seg, "source_id")[at])
        keys.append(store.segment_column(seg, "source_key")[at])
    return pa.table(
        {
            "row_id": numpy_to_ids_column(np.concatenate(ids)),
            "source_id": pa.array(np.concatenate(sids).tolist(), pa.string()),
            "source_key": pa.array(np.concatenate(keys).tolist(), pa.string()),
        }
    )


def _confirm_replace(con: Any, gone: pa.Table, yes: bool) -> None:
    con.register("gone", gone)
    rows = con.sql(
        "SELECT g.source_id, count(*) AS n, (SELECT count(*) FROM ex WHERE ex.source_id = g.source_id) AS total "
        "FROM gone g GROUP BY g.source_id ORDER BY g.source_id"
    ).fetchall()
    over = [(s, n, t) for s, n, t in rows if t and n / t > REPLACE_CONFIRM_FRACTION]
    if over and not yes:
        summary = "; ".join(f"{s}: {n} of {t} rows ({100 * n / t:.1f} %)" for s, n, t in over)
        raise IngestError(f"--replace would drop rows missing from this ingest — {summary}; re-run with --yes to confirm")


def _drops(ids: Any, code: str, reason: str) -> pa.Table:
    n = len(ids)
    return pa.table({"row_id": ids, "reason_code": pa.array([code] * n), "reason": pa.array([reason] * n)}, schema=DROPS_SCHEMA)


def _put_table(store: Store, table: pa.Table | None) -> str | None:
    if table is None or table.num_rows == 0:
        return None
    path = store.backend.new_tmp_path(".parquet")
    pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS, **PARQUET_OPTS)
    return store.backend.put_file(path)
