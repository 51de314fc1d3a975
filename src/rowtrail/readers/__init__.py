"""Readers turn an input (a file, a byte range of a file, or an in-memory table) into batches of rows.

The contract: ``read_part(part)`` yields ``RawBatch``es in input order. A batch carries each row as a
Python dict (so it can be canonicalized exactly), the row's origin line (1-based line for JSONL and
CSV, 0-based row index for tables), and the lines that could not be parsed, with the reason. Readers
never drop a row silently: a line they cannot read comes back in ``bad``.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import IngestError

BATCH_ROWS = 20_000
READ_BLOCK = 8 << 20
TABLE_SPLIT_ROWS = 200_000  # in-memory tables larger than this are handed to workers in slices
SPLIT_BYTES = 64 << 20  # JSONL files larger than this are read in parallel byte ranges
PART_BYTES = 128 << 20  # ... of about this size (more parts than workers balance the load)


@dataclass
class RawBatch:
    file: str
    lines: list[int]
    rows: list[dict[str, Any]]
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, raw text)


@dataclass(frozen=True)
class Part:
    """A unit of reading: a whole file, a byte range of an uncompressed JSONL file, or a table."""

    name: str  # what errors and provenance call it
    path: str | None = None
    fmt: str = "jsonl"  # jsonl | csv | parquet | table | ipc
    start: int = 0  # byte offset (jsonl) or row index (ipc)
    end: int = -1
    first_line: int = 1
    table_index: int = 0  # index into the in-memory tables handed to the reader


def detect_format(path: str) -> str:
    p = path.lower()
    for suffix in (".gz", ".zst", ".zstd"):
        if p.endswith(suffix):
            p = p[: -len(suffix)]
    if p.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if p.endswith(".csv"):
        return "csv"
    if p.endswith((".parquet", ".pq")):
        return "parquet"
    raise IngestError("cannot tell the format from the file name; use .jsonl, .csv or .parquet (optionally .gz/.zst)", path)


def plan_parts(path: str, workers: int) -> list[Part]:
    """Split a large uncompressed JSONL file into line-aligned byte ranges, one per worker."""
    fmt = detect_format(path)
    size = os.path.getsize(path)
    plain = not path.lower().endswith((".gz", ".zst", ".zstd"))
    if fmt != "jsonl" or not plain or workers < 2 or size < SPLIT_BYTES:
        return [Part(name=path, path=path, fmt=fmt)]
    n = max(workers, -(-size // PART_BYTES))
    cuts = [0]
    with open(path, "rb") as fh:
        for i in range(1, n):
            fh.seek(size * i // n)
            fh.readline()
            pos = fh.tell()
            if pos > cuts[-1] and pos < size:
                cuts.append(pos)
    cuts.append(size)
    parts, line = [], 1
    with open(path, "rb") as fh:
        for a, b in zip(cuts, cuts[1:]):
            parts.append(Part(name=path, path=path, fmt="jsonl", start=a, end=b, first_line=line))
            fh.seek(a)
            line += _count_newlines(fh, b - a)
    return parts


def _count_newlines(fh: io.BufferedReader, n: int) -> int:
    count = 0
    while n > 0:
        block = fh.read(min(n, 1 << 24))
        if not block:
            break
        count += block.count(b"\n")
        n -= len(block)
    return count


def _open_binary(path: str) -> io.BufferedIOBase:
    p = path.lower()
    if p.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if p.endswith((".zst", ".zstd")):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")))  # type: ignore[arg-type]
    return open(path, "rb")


def read_part(part: Part, tables: list[Any] | None = None, batch_rows: int = BATCH_ROWS) -> Iterator[RawBatch]:
    if part.fmt == "jsonl":
        yield from _read_jsonl(part, batch_rows)
    elif part.fmt == "csv":
        yield from _read_csv(part, batch_rows)
    elif part.fmt == "parquet":
        import pyarrow.parquet as pq

        yield from _read_arrow_batches(part.name, pq.ParquetFile(part.path).iter_batches(batch_size=batch_rows))
    elif part.fmt == "table":
        assert tables is not None
        yield from _read_arrow_batches(part.name, tables[part.table_index].to_batches(max_chunksize=batch_rows))
    elif part.fmt == "ipc":  # a slice of an in-memory table handed to a worker through a temporary file
        import pyarrow as pa

        with pa.memory_map(part.path) as source:
            table = pa.ipc.open_file(source).read_all().slice(part.start, part.end - part.start)
            yield from _read_arrow_batches(part.name, table.to_batches(max_chunksize=batch_rows), part.start)
    else:  # pragma: no cover - plan_parts only makes the formats above
        raise ValueError(part.fmt)


def _iter_line_blocks(part: Part) -> Iterator[list[bytes]]:
    """Lines of a part, a block at a time (reading large blocks is much faster than readline); the
    last line may lack a newline."""
    with _open_binary(part.path) as fh:  # type: ignore[arg-type]
        if part.start:
            fh.seek(part.start)
        remaining = part.end - part.start if part.end >= 0 else -1
        carry = b""
        first = part.start == 0
        while remaining != 0:
            block = fh.read(READ_BLOCK if remaining < 0 else min(READ_BLOCK, remaining))
            if not block:
                break
            if remaining > 0:
                remaining -= len(block)
            if first:
                first = False
                block = block.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is not content
                if block.lstrip()[:1] == b"[" and part.name.lower().removesuffix(".gz").removesuffix(".zst").endswith(".json"):
                    raise IngestError(
                        "holds a JSON array, not JSON Lines (one object per line); convert it, e.g. jq -c '.[]' FILE > FILE.jsonl",
                        part.name,
                    )
            lines = (carry + block).split(b"\n")
            carry = lines.pop()
            yield lines
        if carry:
            yield [carry]


def _read_jsonl(part: Part, batch_rows: int) -> Iterator[RawBatch]:
    loads = orjson.loads
    line_no = part.first_line
    for lines in _iter_line_blocks(part):
        for at in range(0, len(lines), batch_rows):
            chunk = lines[at : at + batch_rows]
            first = line_no + at
            try:  # the common case: every line a JSON object, parsed in one C-level loop
                rows = list(map(loads, chunk))
                if all(type(r) is dict for r in rows):
                    yield RawBatch(part.name, list(range(first, first + len(chunk))), rows)
                    continue
            except orjson.JSONDecodeError:
                pass
            yield _read_lines_carefully(part.name, chunk, first)
        line_no += len(lines)


def _read_lines_carefully(name: str, lines: list[bytes], first: int) -> RawBatch:
    """Line by line, keeping every bad line with its reason (blank lines are skipped)."""
    batch = RawBatch(name, [], [])
    for line_no, raw in enumerate(lines, first):
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if raw.strip():
                batch.bad.append((line_no, f"malformed JSON ({exc})", raw.decode("utf-8", "replace")))
            continue
        if type(row) is not dict:
            batch.bad.append((line_no, f"a line must hold a JSON object, not {type(row).__name__}", raw.decode("utf-8", "replace")))
            continue
        batch.lines.append(line_no)
        batch.rows.append(row)
    return batch


def _read_csv(part: Part, batch_rows: int) -> Iterator[RawBatch]:
    with _open_binary(part.path) as fb:  # type: ignore[arg-type]
        text = io.TextIOWrapper(fb, encoding="utf-8-sig", newline="")  # type: ignore[type-var]  # -sig: Excel's BOM
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        batch = RawBatch(part.name, [], [])
        for fields in reader:
            line_no = reader.line_num
            if not fields:
                continue
            if len(fields) != len(header):
                batch.bad.append((line_no, f"has {len(fields)} fields, the header has {len(header)}", ",".join(fields)))
                continue
            batch.lines.append(line_no)
            batch.rows.append(dict(zip(header, fields)))
            if len(batch.rows) >= batch_rows:
                yield batch
                batch = RawBatch(part.name, [], [])
        if batch.rows or batch.bad:
            yield batch


class NanoDatetime(datetime.datetime):
    """A datetime that keeps the nanoseconds Python's datetime cannot (read by hashing.format_timestamp)."""

    nanosecond = 0


class NanoTime(datetime.time):
    nanosecond = 0


def _nano_column(col: Any) -> list[Any]:
    """timestamp[ns] / time64[ns] values as Python objects that keep their nanoseconds."""
    import pyarrow as pa

    out: list[Any] = []
    ints = col.cast(pa.int64()).to_pylist()
    tz = datetime.UTC if pa.types.is_timestamp(col.type) and col.type.tz else None
    for v in ints:
        if v is None:
            out.append(None)
            continue
        us, ns = divmod(v, 1000)
        if pa.types.is_timestamp(col.type):
            base = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)
            obj: Any = NanoDatetime(base.year, base.month, base.day, base.hour, base.minute, base.second, base.microsecond, tzinfo=tz)
        else:
            t = (datetime.datetime.min + datetime.timedelta(microseconds=us)).time()
            obj = NanoTime(t.hour, t.minute, t.second, t.microsecond)
        obj.nanosecond = ns
        out.append(obj)
    return out


def _batch_rows(rb: Any, name: str, offset: int) -> RawBatch:
    """One Arrow record batch as rows; a row that cannot be converted comes back in ``bad``."""
    import pyarrow as pa

    nano = [f.name for f in rb.schema if (pa.types.is_timestamp(f.type) or pa.types.is_time64(f.type)) and f.type.unit == "ns"]
    plain = rb.drop_columns(nano) if nano else rb
    batch = RawBatch(name, [], [])
    try:
        rows = plain.to_pylist(maps_as_pydicts="strict")  # a map is an object (format 1), not a list of pairs
        keep = list(range(len(rows)))
    except (KeyError, ValueError):
        rows, keep = [], []
        for i in range(plain.num_rows):  # find the rows that cannot be converted, and say which
            try:
                rows.append(plain.slice(i, 1).to_pylist(maps_as_pydicts="strict")[0])
                keep.append(i)
            except KeyError as exc:
                batch.bad.append((offset + i, f"a map repeats a key ({exc.args[0]}); a map is hashed as an object, whose keys are unique", ""))
            except ValueError as exc:
                batch.bad.append((offset + i, f"a value cannot be read ({exc})", ""))
    for fname in nano:
        values = _nano_column(rb.column(fname))
        for r, i in zip(rows, keep):
            r[fname] = values[i]
    batch.rows = rows
    batch.lines = [offset + i for i in keep]
    return batch


def _read_arrow_batches(name: str, batches: Any, offset: int = 0) -> Iterator[RawBatch]:
    for rb in batches:
        yield _batch_rows(rb, name, offset)
        offset += rb.num_rows


def as_arrow_table(obj: Any) -> Any:
    """An Arrow table from a pyarrow Table/RecordBatch, pandas or polars DataFrame or datasets.Dataset."""
    import pyarrow as pa

    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    mod = type(obj).__module__
    if mod.startswith("pandas"):
        return pa.Table.from_pandas(obj, preserve_index=False)
    if mod.startswith("polars"):
        return obj.to_arrow()
    if mod.startswith("datasets"):
        data = obj.data  # datasets.table.Table wraps a pyarrow Table
        table = getattr(data, "table", data)
        if getattr(obj, "_indices", None) is not None:
            table = obj.flatten_indices().data.table
        return table
    raise TypeError(
        f"cannot ingest a {type(obj).__name__}; give a path, a pyarrow Table, a pandas or polars DataFrame, "
        "or a datasets.Dataset"
    )


def describe_table(obj: Any) -> str:
    return f"<{type(obj).__module__.split('.')[0]}.{type(obj).__name__}>"


def is_path(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike, Path))
