"""Rows of a version as Arrow tables: content fields, then provenance columns.

- ``rows()``: the selection as one table (queries, ``rowtrail rows``, tests).
- ``iter_batches()``: the same columns as a stream of tables in row-id order, with bounded memory,
  for exports of versions larger than memory.

**Reading.** Row ids are hashes, so a version's rows in id order are spread uniformly over every
segment: reading "the next batch in id order" from each segment would touch nearly every row group
of every segment for every batch (I/O quadratic in the version's size). So the stream reads each
segment once, in storage order and only the row groups that hold selected rows, and spills the rows
to a temporary directory (Arrow IPC, lz4) partitioned by output batch — batch *k* is positions
``[k·batch_rows, (k+1)·batch_rows)`` of the selection in id order. It then loads one partition at a
time, sorts it by id and yields it. Memory holds one read piece or one batch; the spill holds one
copy of the selection and is deleted when the stream ends (or is closed). A selection that fits in
one batch is never spilled.

**Content values.** Content is stored as canonical JSON; each content field gets one Arrow type for
the whole selection, so every yielded table has the same schema. Each piece is parsed with pyarrow's
JSON reader and the pieces' types are unified with pyarrow's permissive promotion (null → any type,
integer → float, struct fields merged) *before* the first table is yielded. Values keep their JSON
types: a string that looks like a date stays a string (so SHA-256 of JCS of an exported row's content
fields is its ``content_sha256``). A field whose values share no type (a number in some rows, a
string in others) becomes a string column holding each value's RFC 8785 JSON text, marked with the
field metadata ``rowtrail.json = "1"`` (see ``is_json_text``): nothing is dropped or coerced. A key
absent from a row is null in its column, as in any table (inside structs too).

**Columns.** Content fields in JCS (UTF-16) key order, then the provenance columns in segment order
(``row_id``, ``source_id``, …, declared attributes without their ``attr.`` prefix, named extra hashes)
and ``weight`` last; a provenance name that a content field already uses gets a leading ``_``.
``row_id`` and ``content_sha256`` are 64-character hex strings; named extra hashes stay 32-byte binary.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ..hashing import MAX_SAFE_INT, jcs
from ..segments import ATTR_PREFIX, hex_column, parquet_file

if TYPE_CHECKING:
    from ..records import VersionInfo
    from ..store import Store

ID_COLUMNS = ("row_id", "content_sha256")
DEFAULT_BATCH_ROWS = 65536
# A batch is copied a few times on its way through (read, parse, spill, sort), so exports size batches
# by bytes: long documents get fewer rows per batch.
DEFAULT_BATCH_BYTES = 64 << 20
MIN_BATCH_ROWS = 64
PROVENANCE_ROW_BYTES = 300
JSON_TEXT_KEY = b"rowtrail.json"
JSON_TEXT_META = {JSON_TEXT_KEY: b"1"}
# A piece reads at most this many batches' worth of rows from a segment, so a sparse selection (a few
# rows in each of many row groups) cannot make one read hold a whole segment.
READ_SPAN_BATCHES = 4
SPILL_COMPRESSION = "lz4"

Progress = Callable[[str, int, int], None]


def is_json_text(field: pa.Field) -> bool:
    """True for a column that holds each value's canonical JSON text (a field with no common type)."""
    return bool(field.metadata) and field.metadata.get(JSON_TEXT_KEY) == b"1"


# -- selection ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Selection:
    """The rows of one version chosen for reading: its records, in id order, after the source filter
    and the limit. ``batches()`` streams their tables."""

    store: Store
    info: VersionInfo
    records: np.ndarray  # (id, w, seg, row), sorted by id
    source: str | None = None

    @property
    def num_rows(self) -> int:
        return len(self.records)

    def batch_rows_for(self, target_bytes: int = DEFAULT_BATCH_BYTES) -> int:
        """Rows per batch so that a batch holds about ``target_bytes`` of content (estimated from the
        segments' Parquet metadata), between MIN_BATCH_ROWS and DEFAULT_BATCH_ROWS."""
        if not self.num_rows:
            return DEFAULT_BATCH_ROWS
        segs, counts = np.unique(self.records["seg"], return_counts=True)
        total = 0.0
        for seg, count in zip(segs.tolist(), counts.tolist()):
            md = parquet_file(str(self.store.backend.object_path(self.store.state.segments[seg].content))).metadata
            size = sum(md.row_group(g).total_byte_size for g in range(md.num_row_groups))
            total += count * size / max(md.num_rows, 1)
        per_row = total / self.num_rows + PROVENANCE_ROW_BYTES
        return int(min(DEFAULT_BATCH_ROWS, max(MIN_BATCH_ROWS, target_bytes // per_row)))

    def batches(
        self,
        *,
        provenance: bool = True,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        spill_dir: str | Path | None = None,
        progress: Progress | None = None,
    ) -> RowStream:
        """Tables of at most ``batch_rows`` rows in row-id order, all with one schema (see the module
        docstring). ``provenance=False`` gives content fields, ``row_id`` and ``weight`` only. An
        empty selection yields one empty table, so consumers always see the schema."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        return RowStream(self, provenance, int(batch_rows), spill_dir, progress or _no_progress)


class RowStream:
    """An iterator of row tables (``Selection.batches``). Once the first table is out, ``content``
    names the content columns (the leading ones) and ``weight`` the weight column (the last one);
    ``close()`` ends the stream early and deletes its spill."""

    def __init__(self, sel: Selection, provenance: bool, batch_rows: int, spill_dir: str | Path | None, progress: Progress) -> None:
        self.content: list[str] = []
        self.weight = "weight"
        self._gen: Generator[pa.Table, None, None] = _stream(self, sel, provenance, batch_rows, spill_dir, progress)

    def __iter__(self) -> RowStream:
        return self

    def __next__(self) -> pa.Table:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()


def select(store: Store, ref: str, *, source: str | None = None, corpus: str = "main", limit: int | None = None) -> Selection:
    """The rows of version ``ref`` (of ``source`` only, when given; the first ``limit`` in id order)."""
    from ..ops.remove import rows_of_source

    info = store.state.resolve(ref, corpus)
    recs = store.version_rows(info.version_id)
    if source is not None:
        store.sources.get(source)
        recs = recs[rows_of_source(store, recs, source)]
    if limit is not None:
        recs = recs[:limit]
    return Selection(store, info, recs, source)


def iter_batches(
    store: Store,
    ref: str,
    *,
    source: str | None = None,
    corpus: str = "main",
    provenance: bool = True,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    spill_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> RowStream:
    """Rows of a version as a stream of tables in row-id order, with the columns of ``rows()`` (see
    the module docstring). A bad ref or source raises here, not at the first table."""
    return select(store, ref, source=source, corpus=corpus).batches(provenance=provenance, batch_rows=batch_rows, spill_dir=spill_dir, progress=progress)


def rows(store: Store, ref: str, source: str | None = None, corpus: str = "main", limit: int | None = None) -> pa.Table:
    """Rows of a version as one table: content fields, then provenance columns."""
    sel = select(store, ref, source=source, corpus=corpus, limit=limit)
    if sel.num_rows == 0:
        return pa.table({"row_id": pa.array([], pa.string()), "source_id": pa.array([], pa.string())})
    (table,) = sel.batches(batch_rows=sel.num_rows)
    return table


# -- content parsing ---------------------------------------------------------------------------------


def content_table(texts: pa.Array | pa.ChunkedArray | list[str]) -> pa.Table:
    """Canonical JSON content objects as typed columns. Strings stay strings (no timestamp guessing);
    a field whose values share no type becomes JSON text (``is_json_text``)."""
    if isinstance(texts, list):
        texts = pa.array(texts, pa.string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if len(texts) == 0:
        return pa.table({})
    if texts.null_count:  # rows whose content a purge erased: an object with no fields
        texts = texts.fill_null("{}")
    blob = _lines(texts)
    opts = pajson.ReadOptions(block_size=max(blob.size + 1, 1 << 20))  # one block: one type inference
    try:
        table = pajson.read_json(pa.BufferReader(blob), read_options=opts)
        if _has_temporal(table.schema):
            # The JSON reader guesses timestamps from strings ("2026-05-01" → timestamp[s]); content
            # values are JSON values, so parse those fields again as the strings they are.
            explicit = pa.schema([pa.field(f.name, _temporal_to_string(f.type)) for f in table.schema])
            table = pajson.read_json(pa.BufferReader(blob), read_options=opts, parse_options=pajson.ParseOptions(explicit_schema=explicit))
        if table.num_rows == len(texts):
            return table
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    return _content_table_slow(texts.to_pylist())


def _content_table_slow(texts: list[str]) -> pa.Table:
    """Field by field in Python, for pieces the JSON reader rejects (a field with mixed types)."""
    objs = [orjson.loads(t) for t in texts]
    names: dict[str, None] = {}
    for o in objs:
        names.update(dict.fromkeys(o))
    arrays, fields = [], []
    for name in names:
        values = [o.get(name) for o in objs]
        try:
            arr = pa.array(values)
            field = pa.field(name, arr.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arr = pa.array([None if v is None else _json_text(v) for v in values], pa.string())
            field = pa.field(name, pa.string(), metadata=JSON_TEXT_META)
        arrays.append(arr)
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _json_text(value: Any) -> str:
    """A content value parsed from canonical JSON, as its canonical text again."""
    return jcs(_as_written(value)).decode()


def _as_written(value: Any) -> Any:
    """An integer past ±(2^53−1) in stored content is a float JCS wrote without an exponent
    (1.5e16 as 15000000000000000): as that float again (exactly: it was one), ``jcs`` writes the
    same digits, where it refuses the integer."""
    t = type(value)
    if t is int and not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        return float(value)
    if t is list:
        return [_as_written(v) for v in value]
    if t is dict:
        return {k: _as_written(v) for k, v in value.items()}
    return value


def _lines(texts: pa.Array) -> pa.Buffer:
    """The values of a string array joined by newlines (canonical JSON has no raw newlines)."""
    joined = pc.binary_join_element_wise(texts.cast(pa.string()), pa.scalar(""), pa.scalar("\n"))
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32, count=len(joined) + 1, offset=4 * joined.offset)
    return joined.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def _has_temporal(schema: pa.Schema) -> bool:
    return any(_temporal_to_string(f.type) != f.type for f in schema)


def _temporal_to_string(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _temporal_to_string(f.type)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(_temporal_to_string(t.value_type))
    if pa.types.is_large_list(t):
        return pa.large_list(_temporal_to_string(t.value_type))
    return t


def json_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value's RFC 8785 JSON text (null stays null)."""
    return pa.array([None if v is None else jcs(v).decode() for v in arr.to_pylist()], pa.string())


def _unify_type(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The permissive promotion of two types, or None when they have none."""
    if a == b:
        return a
    try:
        return pa.unify_schemas([pa.schema([("x", a)]), pa.schema([("x", b)])], promote_options="permissive").field("x").type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def conform(arr: pa.Array | pa.ChunkedArray, source: pa.Field, target: pa.Field) -> pa.Array | pa.ChunkedArray:
    """A column of ``source``'s type as ``target``'s: a lossless cast, or JSON text for a target that
    is JSON text (``is_json_text``)."""
    if is_json_text(target):
        return arr if is_json_text(source) else json_text(arr)
    if arr.type == target.type:
        return arr
    try:
        return arr.cast(target.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Nested casts Arrow cannot do in place (structs inside lists gaining fields) go through Python.
        return pa.array(arr.to_pylist(), type=target.type)


class _Types:
    """One type per column name across pieces: permissive promotion, JSON text where there is none."""

    def __init__(self) -> None:
        self.order: dict[str, None] = {}  # first-seen order
        self.types: dict[str, pa.DataType] = {}
        self.json: set[str] = set()

    def add(self, schema: pa.Schema) -> None:
        for f in schema:
            self.order.setdefault(f.name)
            if f.name in self.json:
                continue
            if is_json_text(f):
                self.json.add(f.name)
                self.types.pop(f.name, None)
                continue
            have = self.types.get(f.name)
            if have is None:
                self.types[f.name] = f.type
                continue
            both = _unify_type(have, f.type)
            if both is None:
                self.json.add(f.name)
                del self.types[f.name]
            else:
                self.types[f.name] = both

    def field(self, name: str) -> pa.Field:
        if name in self.json:
            return pa.field(name, pa.string(), metadata=JSON_TEXT_META)
        return pa.field(name, self.types[name])

    def names(self) -> list[str]:
        return list(self.order)


def _jcs_order(name: str) -> bytes:
    return name.encode("utf-16-be")


# -- the stream --------------------------------------------------------------------------------------


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@lru_cache(maxsize=256)
def _group_starts(path: str) -> np.ndarray:
    md = parquet_file(path).metadata
    return np.concatenate([[0], np.cumsum([md.row_group(g).num_rows for g in range(md.num_row_groups)])]).astype(np.int64)


def _read_at(path: str, rows: np.ndarray, columns: list[str] | None) -> pa.Table:
    """Rows at sorted positions of a Parquet object, reading only the row groups that hold them."""
    starts = _group_starts(path)
    g = np.searchsorted(starts, rows, side="right") - 1
    groups = np.unique(g)
    table = parquet_file(path).read_row_groups(groups.tolist(), columns=columns)
    base = np.concatenate([[0], np.cumsum(starts[groups + 1] - starts[groups])])[:-1]
    local = base[np.searchsorted(groups, g)] + (rows - starts[g])
    if len(local) == table.num_rows:  # every row of the groups read, in order: nothing to pick
        return table
    return table.take(pa.array(local))


def _pieces(starts: np.ndarray, rows: np.ndarray, limit: int) -> Iterator[slice]:
    """Cut sorted row positions into pieces of ≤ ``limit`` rows that read ≤ READ_SPAN_BATCHES·limit
    rows of the object's row groups."""
    g = np.searchsorted(starts, rows, side="right") - 1
    first = np.ones(len(rows), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    read = np.cumsum(np.where(first, starts[g + 1] - starts[g], 0))
    i, n = 0, len(rows)
    while i < n:
        before = read[i - 1] if i else 0
        j = min(i + limit, n, int(np.searchsorted(read, before + READ_SPAN_BATCHES * limit, side="right")))
        j = max(j, i + 1)
        yield slice(i, j)
        i = j


def _provenance_types(store: Store, segs: np.ndarray) -> _Types:
    types = _Types()
    for seg in segs.tolist():
        segment = store.state.segments[seg]
        types.add(parquet_file(str(store.backend.object_path(segment.provenance))).schema_arrow)
    return types


class _MemorySpill:
    """Pieces kept in memory (a selection that is one batch)."""

    def __init__(self) -> None:
        self._parts: list[pa.Table] = []

    def add(self, table: pa.Table, bucket: np.ndarray) -> None:
        self._parts.append(table)

    def bucket(self, b: int) -> list[pa.Table]:
        return self._parts

    def close(self) -> None:
        self._parts = []


class _DiskSpill:
    """Pieces in Arrow IPC files, one record batch per (piece, output batch), read back memory-mapped."""

    def __init__(self, spill_dir: str | Path | None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="rowtrail-spill-", dir=spill_dir)
        self._index: defaultdict[int, list[tuple[str, int]]] = defaultdict(list)
        self._count = 0
        self._options = pa.ipc.IpcWriteOptions(compression=SPILL_COMPRESSION if pa.Codec.is_available(SPILL_COMPRESSION) else None)

    def add(self, table: pa.Table, bucket: np.ndarray) -> None:
        order = np.argsort(bucket, kind="stable")
        table = table.take(pa.array(order)).combine_chunks()
        b = bucket[order]
        cuts = [0, *(np.flatnonzero(np.diff(b)) + 1).tolist(), len(b)]
        path = str(Path(self._tmp.name) / f"{self._count:06d}.arrow")
        self._count += 1
        k = 0
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema, options=self._options) as writer:
            for lo, hi in zip(cuts[:-1], cuts[1:]):
                for batch in table.slice(lo, hi - lo).to_batches():
                    writer.write_batch(batch)
                    self._index[int(b[lo])].append((path, k))
                    k += 1

    def bucket(self, b: int) -> list[pa.Table]:
        out = []
        for path, k in self._index.pop(b, []):
            with pa.memory_map(path) as src:
                batch = pa.ipc.open_file(src).get_batch(k)
            out.append(pa.Table.from_batches([batch]))
        return out

    def close(self) -> None:
        self._tmp.cleanup()


_POS, _W = "\x00pos", "\x00w"
_C, _P = "c\x00", "p\x00"  # spill column prefixes: content fields and provenance columns


def _output_names(content: list[str], provenance: list[str]) -> list[str]:
    taken = set(content)
    every = set(provenance)
    out: list[str] = []
    for name in provenance:
        short = name[len(ATTR_PREFIX) :] if name.startswith(ATTR_PREFIX) else None
        if short and short not in taken and short not in every:
            name = short
        while name in taken:
            name = f"_{name}"
        taken.add(name)
        out.append(name)
    return out


def _stream(out: RowStream, sel: Selection, provenance: bool, batch_rows: int, spill_dir: str | Path | None, progress: Progress) -> Generator[pa.Table, None, None]:
    store, recs = sel.store, sel.records
    n = len(recs)
    n_batches = max(1, -(-n // batch_rows))
    by_seg = np.argsort(recs["seg"], kind="stable")
    segs = np.unique(recs["seg"]).astype(np.int64)
    cuts = np.flatnonzero(np.diff(recs["seg"][by_seg])) + 1
    prov_types = _provenance_types(store, segs) if provenance else None
    if prov_types is None:
        prov_fields = [pa.field("row_id", pa.binary(32))]
    elif n:
        prov_fields = [prov_types.field(name) for name in prov_types.names()]
    else:
        from ..segments import PROVENANCE_BASE

        prov_fields = list(PROVENANCE_BASE)
    content_types = _Types()
    attached = step_columns(store, sel.info.version_id)
    spill: _MemorySpill | _DiskSpill = _MemorySpill() if n_batches == 1 else _DiskSpill(spill_dir)
    try:
        done = 0
        for part in np.split(by_seg, cuts) if n else []:
            segment = store.state.segments[int(recs["seg"][part[0]])]
            part = part[np.argsort(recs["row"][part], kind="stable")]
            at = recs["row"][part].astype(np.int64)
            cpath = str(store.backend.object_path(segment.content))
            ppath = str(store.backend.object_path(segment.provenance))
            for piece in _pieces(_group_starts(cpath), at, batch_rows):
                idx, rows_at = part[piece], at[piece]
                cont = _read_at(cpath, rows_at, ["row_id", "content"] if not provenance else ["content"])
                parsed = content_table(cont.column("content"))
                content_types.add(parsed.schema)
                arrays: list[Any] = [pa.array(idx.astype(np.int64)), pa.array(recs["w"][idx].astype(np.float64))]
                names = [_POS, _W]
                if provenance:
                    prov = _read_at(ppath, rows_at, None)
                    for f in prov_fields:
                        if f.name in prov.column_names:
                            arrays.append(conform(prov.column(f.name), prov.schema.field(f.name), f))
                        else:
                            arrays.append(pa.nulls(len(idx), f.type))
                        names.append(_P + f.name)
                else:
                    arrays.append(cont.column("row_id"))
                    names.append(_P + "row_id")
                fields = [pa.field(nm, a.type) for nm, a in zip(names, arrays)]
                fields += [f.with_name(_C + f.name) for f in parsed.schema]
                table = pa.Table.from_arrays([*arrays, *parsed.columns], schema=pa.schema(fields))
                spill.add(table, idx // batch_rows)
                done += len(idx)
                progress("read", done, n)
        content_fields = [content_types.field(name) for name in sorted(content_types.names(), key=_jcs_order)]
        prov_names = [f.name for f in prov_fields] + ["weight"]
        out_prov = _output_names([f.name for f in content_fields], prov_names)
        out.content, out.weight = [f.name for f in content_fields], out_prov[-1]
        for b in range(n_batches):
            parts = [_conform_piece(t, content_fields) for t in spill.bucket(b)]
            if parts:
                table = pa.concat_tables(parts)
                table = table.take(pc.sort_indices(table.column(_POS)))
            else:
                table = pa.table({_POS: pa.array([], pa.int64()), _W: pa.array([], pa.float64())})
            yield _with_step_columns(_assemble(table, content_fields, prov_fields, out_prov), len(content_fields), attached)
    finally:
        spill.close()


def step_columns(store: Store, version_id: str) -> list[pa.Table]:
    """Columns the version's pipeline steps attached to rows (``score``), as (row_id hex, values…)
    tables in pipeline order."""
    import pyarrow.parquet as pq

    man = store.manifest(version_id)
    lineage = man.get("lineage") or {}
    out = []
    for sid in man["record"]["content"].get("pipeline", []):
        digest = (lineage.get(sid) or {}).get("columns")
        if digest:
            t = pq.read_table(store.backend.object_path(digest))
            out.append(t.set_column(0, "row_id", hex_column(t.column("row_id"))))
    return out


def _with_step_columns(table: pa.Table, id_at: int, attached: list[pa.Table]) -> pa.Table:
    """Append step-attached columns, matched by row id (null for rows a step did not see)."""
    if not attached:
        return table
    ids = table.column(id_at)
    for cols in attached:
        pos = pc.index_in(ids, value_set=cols.column("row_id").combine_chunks())
        for name in cols.column_names[1:]:
            out_name = name if name not in table.column_names else f"step.{name}"
            table = table.append_column(out_name, cols.column(name).combine_chunks().take(pos))
    return table


def _conform_piece(table: pa.Table, content_fields: list[pa.Field]) -> pa.Table:
    schema = table.schema
    keep = [f for f in schema if not f.name.startswith(_C)]
    arrays = [table.column(f.name) for f in keep]
    fields = list(keep)
    for target in content_fields:
        name = _C + target.name
        if name in schema.names:
            arrays.append(conform(table.column(name), schema.field(name), target))
        else:
            arrays.append(pa.nulls(table.num_rows, target.type))
        fields.append(target.with_name(name))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _assemble(table: pa.Table, content_fields: list[pa.Field], prov_fields: list[pa.Field], out_prov: list[str]) -> pa.Table:
    n = table.num_rows
    arrays: list[Any] = []
    fields: list[pa.Field] = []
    for f in content_fields:
        name = _C + f.name
        arrays.append(table.column(name) if name in table.column_names else pa.nulls(n, f.type))
        fields.append(f)
    sources: list[tuple[pa.Field, Any]] = []
    for f in prov_fields:
        name = _P + f.name
        col = table.column(name) if name in table.column_names else pa.nulls(n, f.type)
        sources.append((f, col))
    sources.append((pa.field("weight", pa.float64()), table.column(_W)))
    for (f, col), out_name in zip(sources, out_prov):
        if f.name in ID_COLUMNS and pa.types.is_fixed_size_binary(f.type):
            col, f = hex_column(col), pa.field(f.name, pa.string())
        arrays.append(col)
        fields.append(f.with_name(out_name))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

