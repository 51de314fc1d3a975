"""One benchmark contender per function, each run by ``run.py`` in a fresh child process.

A child process per contender keeps peak-RSS figures apart (the parent reads each child's own
``ru_maxrss`` from ``os.wait4``) and makes every contender pay its own imports and cold caches the
same way. Heavy modules are imported inside the functions so a contender's RSS is its own.

Usage (by run.py): ``python bench/workers.py TASK ARGS.json RESULT.json``. A task fills ``out`` as
it goes, so when a later phase fails (say, commit is not implemented yet) the phases that ran are
still reported; the exception is added as ``out["error"]`` and the harness carries on.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SFT_SCHEMA = ('{"id":"VARCHAR","source":"VARCHAR","prompt":"VARCHAR","response":"VARCHAR",'
              '"teacher":"VARCHAR","lane":"VARCHAR","score":"DOUBLE"}')


def _rowtrail():
    """Import rowtrail from this checkout's src/ (the code under test), not a stale installed copy."""
    src = REPO / "src"
    if (src / "rowtrail").is_dir() and str(src) not in sys.path:
        sys.path.insert(0, str(src))
    import rowtrail as rt

    return rt


# --- ingest: the SFT JSONL corpus ------------------------------------------------------------


def hashlib_file(a: dict, out: dict) -> None:
    """The floor: SHA-256 of the whole file in 16 MB reads. Also warms the page cache for the rest."""
    t0 = time.perf_counter()
    h = hashlib.sha256()
    with open(a["corpus"], "rb", buffering=0) as f:
        while chunk := f.read(16 << 20):
            h.update(chunk)
    out["seconds"] = time.perf_counter() - t0
    out["sha256"] = h.hexdigest()


def duckdb_oneliner(a: dict, out: dict) -> None:
    """DESIGN.md's baseline: parse the JSON, SHA-256 of each raw line's text, COPY to Parquet.

    ``read_json`` does not expose a record's raw text, so we read with ``read_ndjson_objects`` (one
    JSON column holding each line's text verbatim), hash that text with DuckDB's ``sha256`` (checked
    equal to hashlib over the line's bytes), and parse it with ``json_transform`` — the JSON parser
    read_json uses — into typed columns, unnested to top level. One statement, on both cores.
    """
    import duckdb

    con = duckdb.connect()
    out["sql"] = q = (
        f"COPY (SELECT unnest(json_transform(json, '{SFT_SCHEMA}')), "
        f"sha256(json::VARCHAR) AS line_sha256 FROM read_ndjson_objects('{a['corpus']}')) "
        f"TO '{a['out']}' (FORMAT parquet)")
    t0 = time.perf_counter()
    con.execute(q)
    out["seconds"] = time.perf_counter() - t0
    out["rows"] = con.execute(f"SELECT count(*) FROM read_parquet('{a['out']}')").fetchone()[0]


def duckdb_read_json_to_json(a: dict, out: dict) -> None:
    """Variant for reference: ``read_json`` columns, SHA-256 of the record re-serialized by to_json."""
    import duckdb

    con = duckdb.connect()
    out["sql"] = q = (
        f"COPY (SELECT *, sha256(to_json(t)) AS row_sha256 FROM "
        f"read_json('{a['corpus']}', format='newline_delimited') t) TO '{a['out']}' (FORMAT parquet)")
    t0 = time.perf_counter()
    con.execute(q)
    out["seconds"] = time.perf_counter() - t0


def hf_datasets(a: dict, out: dict) -> None:
    """HF datasets: load_dataset('json') + batched map computing a SHA-256 per row + to_parquet.

    The hash is over the row's prompt and response text (NUL-separated) — raw text like the DuckDB
    baseline, not canonical JSON — the cheapest per-row hash a user would plausibly write.
    run.py points HF_DATASETS_CACHE at a fresh directory, so no Arrow cache is reused.
    """
    import datasets

    datasets.disable_progress_bars()

    def row_hashes(batch):
        return {"row_sha256": [hashlib.sha256((p + "\x00" + r).encode()).hexdigest()
                               for p, r in zip(batch["prompt"], batch["response"])]}

    t0 = time.perf_counter()
    ds = datasets.load_dataset("json", data_files=a["corpus"], split="train")
    t1 = time.perf_counter()
    ds = ds.map(row_hashes, batched=True)
    t2 = time.perf_counter()
    ds.to_parquet(a["out"])
    t3 = time.perf_counter()
    out.update(seconds=t3 - t0, load_seconds=t1 - t0, map_seconds=t2 - t1,
               to_parquet_seconds=t3 - t2, rows=ds.num_rows)


def rowtrail_ingest(a: dict, out: dict) -> None:
    """rowtrail: register the sources, ingest the JSONL with full provenance, commit v1 (unsigned).

    ``seconds`` is ingest + commit — what it takes to reach a committed version, as DuckDB's figure
    includes writing its Parquet; source registration is reported apart.
    """
    rt = _rowtrail()
    t0 = time.perf_counter()
    s = rt.init(a["store"])
    for sid in a["sources"]:
        s.sources.add(sid, kind="partner-dump", uri="https://example.org/" + sid,
                      license="CC-BY-4.0", legal_basis="contract")
    t1 = time.perf_counter()
    out["init_and_sources_seconds"] = t1 - t0
    s.ingest(a["corpus"], source_field="source", key_field="id",
             content_fields=["prompt", "response"],
             attributes={"teacher": "teacher", "lane": "lane", "score": "score"})
    t2 = time.perf_counter()
    out["ingest_seconds"] = t2 - t1
    v = s.commit("bench", tag="v1", sign=False)
    t3 = time.perf_counter()
    out["commit_seconds"] = t3 - t2
    out["seconds"] = t3 - t1
    out["version_id"] = v.id
    out["row_count"] = v.content["row_count"]


# --- two large versions: diff, trace, prove ---------------------------------------------------


def rowtrail_build_diff_store(a: dict, out: dict) -> None:
    """Build the large store: v1 = sources 0..9; v2 = v1 - source 0 + source 10 (90 % shared)."""
    import pyarrow.parquet as pq

    rt = _rowtrail()
    files = a["files"]
    t0 = time.perf_counter()
    s = rt.init(a["store"])
    for sid in files:
        s.sources.add(sid, kind="partner-dump", uri="https://example.org/" + sid,
                      license="CC-BY-4.0", legal_basis="contract")
    for sid in a["v1_sources"]:
        s.ingest(pq.read_table(files[sid], columns=["id", "text"]),
                 source=sid, key_field="id", content_fields=["text"])
    t1 = time.perf_counter()
    out["v1_ingest_seconds"] = t1 - t0
    s.commit("bench v1", tag="v1", sign=False)
    t2 = time.perf_counter()
    out["v1_commit_seconds"] = t2 - t1
    s.remove(source=a["removed_source"])
    s.ingest(pq.read_table(files[a["added_source"]], columns=["id", "text"]),
             source=a["added_source"], key_field="id", content_fields=["text"])
    t3 = time.perf_counter()
    out["v2_stage_seconds"] = t3 - t2
    s.commit("bench v2", tag="v2", sign=False)
    t4 = time.perf_counter()
    out["v2_commit_seconds"] = t4 - t3
    out["seconds"] = t4 - t0


def _hex_ids(arr) -> list[str]:
    """Row ids as hex strings, whether the library returns them as hex or as raw 32-byte values."""
    return [x.hex() if isinstance(x, (bytes, bytearray)) else x for x in arr.to_pylist()]


def rowtrail_diff(a: dict, out: dict) -> None:
    """Timed: both versions' provenance sets, their difference, and the added/removed counts."""
    import pyarrow.parquet as pq

    rt = _rowtrail()
    t0 = time.perf_counter()
    s = rt.open(a["store"])
    t1 = time.perf_counter()
    d = s.version("v2").provenance_set() - s.version("v1").provenance_set()
    n_added, n_removed = len(d.rows_added), len(d.rows_removed)
    t2 = time.perf_counter()
    out.update(seconds=t2 - t1, open_seconds=t1 - t0, rows_added=n_added, rows_removed=n_removed)
    # Untimed correctness check: the library's ids must be the ones DESIGN.md's formula gives.
    for name, src, arr in (("added", a["added_source"], d.rows_added),
                           ("removed", a["removed_source"], d.rows_removed)):
        ours = sorted(pq.read_table(a["files"][src], columns=["row_id"])["row_id"].to_pylist())
        out[f"{name}_ids_match"] = _hex_ids(arr) == ours


def duckdb_antijoin(a: dict, out: dict) -> None:
    """Baseline diff: DuckDB ANTI JOIN both ways over two Parquet files of hex row ids.

    Results are sorted and fetched as Arrow, to match what ProvenanceDiff hands back.
    """
    import duckdb

    con = duckdb.connect()
    v1, v2 = a["v1_ids"], a["v2_ids"]
    q = ("SELECT a.row_id FROM read_parquet('{}') a ANTI JOIN read_parquet('{}') b "
         "ON a.row_id = b.row_id ORDER BY a.row_id")
    t0 = time.perf_counter()
    # con.sql(...).to_arrow_table() streams to Arrow without the DB-API path's extra copy.
    added = con.sql(q.format(v2, v1)).to_arrow_table()
    removed = con.sql(q.format(v1, v2)).to_arrow_table()
    n_added, n_removed = added.num_rows, removed.num_rows
    out.update(seconds=time.perf_counter() - t0, rows_added=n_added, rows_removed=n_removed,
               sql=q)


def rowtrail_lookup(a: dict, out: dict) -> None:
    """Mean time of s.trace(id), or of s.prove(id, "v2") then rt.verify_inclusion, over sample ids.

    The first call is also reported apart (it may load an index); the mean is over all calls.
    """
    rt = _rowtrail()
    t0 = time.perf_counter()
    s = rt.open(a["store"])
    out["open_seconds"] = time.perf_counter() - t0
    times, verify_times, failures = [], [], 0
    for rid in a["ids"]:
        t0 = time.perf_counter()
        if a["mode"] == "trace":
            s.trace(rid)
            times.append(time.perf_counter() - t0)
        else:
            proof = s.prove(rid, "v2")
            times.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            failures += not rt.verify_inclusion(proof)
            verify_times.append(time.perf_counter() - t1)
    out.update(seconds=sum(times) / len(times), first_call_seconds=times[0],
               max_seconds=max(times), calls=len(times))
    if verify_times:
        out["verify_seconds"] = sum(verify_times) / len(verify_times)
        out["verify_failures"] = failures
        if failures:
            raise AssertionError(f"verify_inclusion returned False for {failures} of "
                                 f"{len(verify_times)} proofs")


def duckdb_scan_lookup(a: dict, out: dict) -> None:
    """Full-scan baselines over flat Parquet copies of the same rows (ingest order, no index).

    trace: the row's record (source, key, text, hashes) from the rows of both versions, plus which
    version's id list holds it — three scans, ~31 M rows for 10 M-row versions.
    prove: one scan of v2's id list for presence and leaf index (count of smaller ids); it does not
    build the audit path, which flatters the baseline.
    Row groups hold random ids, so min/max statistics cannot prune; there are no bloom filters.
    """
    import duckdb

    con = duckdb.connect()
    rows = "[" + ", ".join(f"'{f}'" for f in a["row_files"]) + "]"
    if a["mode"] == "trace":
        queries = [f"SELECT * FROM read_parquet({rows}) WHERE row_id = $1",
                   f"SELECT 'v1' FROM read_parquet('{a['v1_ids']}') WHERE row_id = $1 UNION ALL "
                   f"SELECT 'v2' FROM read_parquet('{a['v2_ids']}') WHERE row_id = $1"]
    else:
        queries = [f"SELECT count(*) FILTER (WHERE row_id = $1), "
                   f"count(*) FILTER (WHERE row_id < $1) FROM read_parquet('{a['v2_ids']}')"]
    out["sql"] = queries
    times = []
    for rid in a["ids"]:
        t0 = time.perf_counter()
        found = [con.execute(q, [rid]).fetchall() for q in queries]
        times.append(time.perf_counter() - t0)
        if not found[0] or found[0][0][0] == 0:
            raise AssertionError(f"baseline did not find row {rid}")
    out.update(seconds=sum(times) / len(times), first_call_seconds=times[0], calls=len(times))


TASKS = {f.__name__: f for f in (
    hashlib_file, duckdb_oneliner, duckdb_read_json_to_json, hf_datasets, rowtrail_ingest,
    rowtrail_build_diff_store, rowtrail_diff, duckdb_antijoin, rowtrail_lookup, duckdb_scan_lookup,
)}


def _peak_rss_bytes() -> int | None:
    """This process's own peak RSS (VmHWM).

    Not ru_maxrss: Linux carries the parent's high-water mark across fork+exec into the child's
    ru_maxrss, so a big parent would inflate every contender's figure. VmHWM belongs to the
    address space exec created, so it is the contender's alone.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main() -> None:
    task, args_path, result_path = sys.argv[1:4]
    args = json.loads(Path(args_path).read_text())
    out: dict = {}
    try:
        TASKS[task](args, out)
    except BaseException as e:  # reported as the contender's result, never fatal to the harness
        traceback.print_exc()
        lines = f"{type(e).__name__}: {e}".strip().splitlines()
        out["error"] = lines[0] if lines else type(e).__name__
    out["self_peak_rss_bytes"] = _peak_rss_bytes()
    Path(result_path).write_text(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
