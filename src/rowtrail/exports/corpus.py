"""Corpus exports: the rows of a version with their provenance, ready for a training job.

Formats:

- ``parquet``: a directory of shards ``part-00000.parquet`` … (``shard_rows`` rows each, the last one
  fewer) and a ``_rowtrail.json`` sidecar; or one file when the path ends with ``.parquet``. Every
  Parquet file also carries the sidecar's header in its schema metadata (key ``rowtrail``).
- ``jsonl``: one JSON object per line; ``.jsonl.gz`` / ``.jsonl.zst`` paths are compressed.
- ``hf``: a ``datasets.Dataset.save_to_disk`` directory (``datasets.load_from_disk`` reads it), with the
  sidecar beside the dataset's files. Needs ``pip install 'rowtrail[hf]'``.

Rows come in row-id order (a fixed pseudo-random shuffle; exporting a version again gives the same bytes)
with the columns of ``rowtrail.query.rows`` — content fields, then provenance — except that every
32-byte id or hash is a 64-character hex string. Timestamps (``ingested_at``) stay timestamps in
Parquet and ``hf``, and are RFC 3339 strings (UTC, ``Z``) in JSONL. A content field whose values share
no type is a column of JSON text (the sidecar marks it ``"json_text": true``); JSONL writes those
values as the JSON values they are.

Options (every format):

- ``provenance`` (default True): provenance columns; False keeps content fields, ``row_id`` and ``weight``.
- ``weights``: ``"column"`` (default) writes each row's weight in ``weight``; ``"apply"`` repeats each
  row as many times as its weight and drops the column — an error when a weight is not a whole number.
- ``source``: only the rows of this source. ``corpus``: the corpus a ref such as ``HEAD`` names.
- ``batch_rows``: rows per batch, which bounds memory (see ``rowtrail.query.rows``); by default sized
  to hold about 64 MiB of content (at most 65536 rows).
- ``shard_rows`` (parquet directories, default 262144): rows per shard.

The sidecar (``format: rowtrail.corpus-export/1``) holds the version's id, tag, corpus, content id and
digests (``merkle_root``, ``content_root``, ``weights_sha256``), its ``row_count`` and ``weight_total``;
the selection (``source``, ``rows``, ``weight_total``) and the options; ``rows`` written; the columns
(name, Arrow type, role ``content`` or ``provenance``, ``json_text``); and the files with their rows,
bytes and SHA-256.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..query.rows import RowStream, Selection, is_json_text, select
from ..segments import hex_array, ids_column_to_numpy
from .base import (
    Exporter,
    ExportError,
    ExportResult,
    HashingWriter,
    Progress,
    atomic_output,
    check_target,
    file_digest,
    register,
    resolve_version,
)

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.version import Version

FORMAT_ID = "rowtrail.corpus-export/1"
SIDECAR = "_rowtrail.json"
DEFAULT_SHARD_ROWS = 262_144
WEIGHT_MODES = ("column", "apply")
PARQUET_COMPRESSION = "zstd"
METADATA_KEY = b"rowtrail"


@dataclass(frozen=True)
class CorpusOptions:
    provenance: bool = True
    weights: str = "column"
    source: str | None = None
    corpus: str = "main"
    batch_rows: int | None = None  # None: sized to hold about DEFAULT_BATCH_BYTES of content
    shard_rows: int = DEFAULT_SHARD_ROWS


@dataclass
class _Job:
    """One export under way: the version, its selected rows and what has been written."""

    version: Version
    selection: Selection
    options: CorpusOptions
    header: dict[str, Any]
    target: Path
    stream: RowStream | None = None
    rows: int = 0
    total: int = 0  # rows to write (weights applied)

    def columns(self, schema: pa.Schema) -> list[dict[str, Any]]:
        content = set(self.stream.content if self.stream else ())
        return [
            {"name": f.name, "type": str(f.type), "role": "content" if f.name in content else "provenance", "json_text": is_json_text(f)}
            for f in schema
        ]

    def sidecar(self, schema: pa.Schema, files: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self.header, "rows": self.rows, "columns": self.columns(schema), "files": files}


class CorpusExporter(Exporter):
    """Shared steps of the corpus formats: check options, select rows, stream batches, write atomically."""

    options: ClassVar[frozenset[str]] = frozenset({"provenance", "weights", "source", "corpus", "batch_rows"})

    def write(self, store: Store, version: str | Version, path: str | os.PathLike[str] | None, *, overwrite: bool = False, progress: Progress | None = None, **options: Any) -> ExportResult:
        opts = self._check(options)
        if path is None:
            raise ExportError(f"format '{self.name}' writes files; give the output path (-o PATH)")
        check_target(path, overwrite)  # refuse before any work
        v = resolve_version(store, version, opts.corpus)
        sel = select(store, v.id, source=opts.source)
        if opts.source is not None and sel.num_rows == 0:
            raise ExportError(f"source '{opts.source}' has no rows in version {v.tag or v.id[:12]}; nothing to export (see 'rowtrail show {v.tag or v.id[:12]}')")
        weights = sel.records["w"].astype(np.float64)
        if opts.weights == "apply":
            whole = np.floor(weights) == weights
            if not whole.all():
                i = int(np.flatnonzero(~whole)[0])
                raise ExportError(
                    f"version {v.tag or v.id[:12]} has {int((~whole).sum())} row(s) with a fractional weight (e.g. {weights[i]!r} on row "
                    f"{bytes(sel.records['id'][i]).hex()}); 'apply' can only repeat rows a whole number of times — export with "
                    f"weights='column' (--weights column) and weight the loss in the trainer"
                )
        target = Path(path).expanduser()
        job = _Job(v, sel, opts, _header(self.name, v, sel, opts, weights), target)
        job.total = int(weights.sum()) if opts.weights == "apply" else sel.num_rows
        with atomic_output(target, overwrite) as tmp, tempfile.TemporaryDirectory(prefix=f".{target.name}.rowtrail-work-", dir=tmp.parent) as work:
            batch_rows = opts.batch_rows or sel.batch_rows_for()
            job.stream = sel.batches(provenance=opts.provenance, batch_rows=batch_rows, spill_dir=work, progress=progress)
            try:
                files = self._write(job, tmp, Path(work), _prepared(job, progress))
            finally:
                job.stream.close()
        return ExportResult(
            format=self.name,
            path=str(target),
            rows=job.rows,
            bytes=sum(int(f["bytes"]) for f in files),
            version_id=v.id,
            tag=v.tag,
            content_id=v.content_id,
            merkle_root=v.content["merkle_root"],
            files=files,
            details={"corpus": v.corpus, "source": opts.source, "provenance": opts.provenance, "weights": opts.weights},
        )

    def _check(self, options: dict[str, Any]) -> CorpusOptions:
        unknown = sorted(set(options) - self.options)
        if unknown:
            raise ExportError(f"format '{self.name}' has no option {', '.join(repr(u) for u in unknown)}; its options are: {', '.join(sorted(self.options))}")
        opts = CorpusOptions(**options)
        if opts.weights not in WEIGHT_MODES:
            raise ExportError(f"weights must be 'column' (a weight column) or 'apply' (repeat each row by its weight), not {opts.weights!r}")
        for name in ("batch_rows", "shard_rows"):
            value = getattr(opts, name)
            if name == "batch_rows" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ExportError(f"{name} must be a whole number ≥ 1, not {value!r}")
        return opts

    def _write(self, job: _Job, tmp: Path, work: Path, batches: Iterator[pa.Table]) -> list[dict[str, Any]]:
        raise NotImplementedError


def _header(fmt: str, v: Version, sel: Selection, opts: CorpusOptions, weights: np.ndarray) -> dict[str, Any]:
    from .. import __version__

    c = v.content
    return {
        "format": FORMAT_ID,
        "export_format": fmt,
        "version_id": v.id,
        "corpus": v.corpus,
        "tag": v.tag,
        "content_id": v.content_id,
        "merkle_root": c["merkle_root"],
        "content_root": c["content_root"],
        "weights_sha256": c["weights_sha256"],
        "row_count": c["row_count"],
        "weight_total": c["weight_total"],
        "signed": v.signed,
        "selection": {"source": opts.source, "rows": sel.num_rows, "weight_total": float(weights.sum())},
        "options": {k: val for k, val in asdict(opts).items() if k in ("provenance", "weights") or (fmt == "parquet" and k == "shard_rows")},
        "rowtrail_version": __version__,
    }


# -- batches as written ------------------------------------------------------------------------------


def _prepared(job: _Job, progress: Progress | None) -> Iterator[pa.Table]:
    """The stream's tables with ids as hex and, for weights='apply', rows repeated and no weight column."""
    assert job.stream is not None
    for table in job.stream:
        table = _hex_binary(table)
        if job.options.weights == "apply":
            w = table.column(job.stream.weight).to_numpy().astype(np.int64)
            table = table.drop_columns([job.stream.weight]).take(pa.array(np.repeat(np.arange(table.num_rows), w)))
        yield table
        job.rows += table.num_rows
        if progress:
            progress("write", job.rows, job.total)


def _hex_binary(table: pa.Table) -> pa.Table:
    for i, f in enumerate(table.schema):
        if pa.types.is_fixed_size_binary(f.type) and f.type.byte_width == 32:
            col = table.column(i).combine_chunks()
            if col.null_count == 0:
                text = hex_array(ids_column_to_numpy(col))
            else:
                filled = col.fill_null(pa.scalar(b"\x00" * 32, f.type))
                text = pc.if_else(col.is_valid(), hex_array(ids_column_to_numpy(filled)), pa.scalar(None, pa.string()))
            table = table.set_column(i, pa.field(f.name, pa.string(), metadata=f.metadata), text)
        elif pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) or pa.types.is_fixed_size_binary(f.type):
            text = pa.array([None if b is None else b.hex() for b in table.column(i).to_pylist()], pa.string())
            table = table.set_column(i, pa.field(f.name, pa.string(), metadata=f.metadata), text)
    return table


def _with_metadata(schema: pa.Schema, job: _Job) -> pa.Schema:
    return schema.with_metadata({**(schema.metadata or {}), METADATA_KEY: orjson.dumps({**job.header, "columns": job.columns(schema)})})


def _write_sidecar(job: _Job, directory: Path, schema: pa.Schema, files: list[dict[str, Any]]) -> dict[str, Any]:
    path = directory / SIDECAR
    path.write_bytes(orjson.dumps(job.sidecar(schema, files), option=orjson.OPT_INDENT_2) + b"\n")
    size, digest = file_digest(path)
    return {"path": SIDECAR, "bytes": size, "sha256": digest}


# -- parquet -----------------------------------------------------------------------------------------


@register
class ParquetExporter(CorpusExporter):
    name = "parquet"
    suffixes = (".parquet",)
    description = "Parquet shards with a _rowtrail.json sidecar, or one .parquet file"
    options = CorpusExporter.options | {"shard_rows"}

    def _write(self, job: _Job, tmp: Path, work: Path, batches: Iterator[pa.Table]) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        single = job.target.name.lower().endswith(".parquet")
        files: list[dict[str, Any]] = []
        writer: pq.ParquetWriter | None = None
        schema: pa.Schema | None = None
        shard_path, shard_rows = tmp, 0

        def close() -> None:
            nonlocal writer
            if writer is not None:
                writer.close()
                writer = None
                size, digest = file_digest(shard_path)
                files.append({"path": job.target.name if single else shard_path.name, "rows": shard_rows, "bytes": size, "sha256": digest})

        if not single:
            tmp.mkdir()
        for table in batches:
            if schema is None:
                schema = _with_metadata(table.schema, job)
            start = 0
            while True:
                if writer is None:
                    shard_path = tmp if single else tmp / f"part-{len(files):05d}.parquet"
                    writer, shard_rows = pq.ParquetWriter(shard_path, schema, compression=PARQUET_COMPRESSION), 0
                take = table.num_rows - start if single else min(table.num_rows - start, job.options.shard_rows - shard_rows)
                if take:
                    writer.write_table(table.slice(start, take).replace_schema_metadata(schema.metadata))
                start, shard_rows = start + take, shard_rows + take
                if not single and shard_rows >= job.options.shard_rows:
                    close()
                if start >= table.num_rows:  # an empty selection still opens (and writes) one empty shard
                    break
        close()
        if single:
            return files
        assert schema is not None
        return [*files, _write_sidecar(job, tmp, schema, files)]


# -- jsonl -------------------------------------------------------------------------------------------


@register
class JsonlExporter(CorpusExporter):
    name = "jsonl"
    suffixes = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson", ".ndjson.gz", ".ndjson.zst")
    description = "JSON Lines, gzip or zstd compressed by a .gz / .zst suffix"

    def _write(self, job: _Job, tmp: Path, work: Path, batches: Iterator[pa.Table]) -> list[dict[str, Any]]:
        name = job.target.name
        compression = "gzip" if name.lower().endswith(".gz") else "zstd" if name.lower().endswith((".zst", ".zstd")) else None
        with open(tmp, "wb") as fh:
            raw = HashingWriter(fh)
            sink: Any
            if compression == "gzip":
                sink = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)  # mtime 0: equal rows, equal bytes
            elif compression == "zstd":
                import zstandard

                sink = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)  # type: ignore[arg-type]
            else:
                sink = raw
            lines = _JsonLines()
            for table in batches:
                sink.write(lines.encode(table))
            if sink is not raw:
                sink.close()
        job.header["compression"] = compression
        return [{"path": name, "rows": job.rows, "bytes": raw.bytes, "sha256": raw.sha256}]


class _JsonLines:
    """Tables as JSON Lines bytes: vectorized through DuckDB's ``to_json``, with Python (orjson) for
    what DuckDB cannot name."""

    def __init__(self) -> None:
        import duckdb

        self._duckdb = duckdb
        self._con = duckdb.connect(":memory:")

    def encode(self, table: pa.Table) -> bytes | pa.Buffer:
        if table.num_rows == 0:
            return b""
        table = _rfc3339(table)
        try:
            return self._encode_duckdb(table)
        except self._duckdb.Error:
            return self._encode_python(table)

    def _encode_duckdb(self, table: pa.Table) -> pa.Buffer:
        cols = []
        for f in table.schema:
            q = '"' + f.name.replace('"', '""') + '"'
            cols.append(f"{q}::JSON AS {q}" if is_json_text(f) else q)
        self._con.register("export_batch", table)
        try:
            out = self._con.sql(f"SELECT to_json(x) AS line FROM (SELECT {', '.join(cols)} FROM export_batch) AS x").to_arrow_table()
        finally:
            self._con.unregister("export_batch")
        lines = out.column(0).combine_chunks().cast(pa.string())
        if len(lines) != table.num_rows or lines.null_count:
            raise self._duckdb.Error("to_json returned the wrong number of lines")
        joined = pc.binary_join_element_wise(lines, pa.scalar(""), pa.scalar("\n"))
        offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32, count=len(joined) + 1, offset=4 * joined.offset)
        return joined.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))

    def _encode_python(self, table: pa.Table) -> bytes:
        json_cols = {f.name for f in table.schema if is_json_text(f)}
        out = []
        for row in table.to_pylist():
            for k in json_cols:
                if row[k] is not None:
                    row[k] = orjson.Fragment(row[k])
            out.append(orjson.dumps(row))
        return b"\n".join(out) + b"\n"


def _rfc3339(table: pa.Table) -> pa.Table:
    """Timestamp columns as RFC 3339 strings in UTC with ``Z`` (fraction only when non-zero)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            col = table.column(i)
            if f.type.tz is not None:
                col = col.cast(pa.timestamp(f.type.unit, "UTC"))
            text = pc.strftime(col, format="%Y-%m-%dT%H:%M:%SZ")
            text = pc.replace_substring_regex(text, pattern=r"\.(\d*?)0+Z$", replacement=r".\1Z")
            text = pc.replace_substring_regex(text, pattern=r"\.Z$", replacement="Z")
            table = table.set_column(i, pa.field(f.name, pa.string(), metadata=f.metadata), text)
    return table


# -- Hugging Face datasets ---------------------------------------------------------------------------


@register
class HFExporter(CorpusExporter):
    name = "hf"
    suffixes = ()
    description = "a Hugging Face datasets directory (datasets.load_from_disk)"

    def _write(self, job: _Job, tmp: Path, work: Path, batches: Iterator[pa.Table]) -> list[dict[str, Any]]:
        try:
            import datasets
        except ImportError:
            raise ExportError("format 'hf' needs the Hugging Face datasets library: pip install 'rowtrail[hf]'") from None
        data = work / "rows.arrow"
        schema: pa.Schema | None = None
        sink = pa.OSFile(str(data), "wb")
        writer: Any = None
        try:
            for table in batches:
                if writer is None:
                    schema = table.schema
                    writer = pa.ipc.new_stream(sink, schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
            sink.close()
        assert schema is not None
        was_disabled = datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()  # the CLI shows its own progress
        try:
            ds = datasets.Dataset.from_file(str(data))
            ds.save_to_disk(str(tmp))
            del ds
        finally:
            if not was_disabled:
                datasets.enable_progress_bars()
        files = []
        for p in sorted(tmp.iterdir()):
            if p.is_file():
                size, digest = file_digest(p)
                files.append({"path": p.name, "bytes": size, "sha256": digest})
        return [*files, _write_sidecar(job, tmp, schema, files)]
