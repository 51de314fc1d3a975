"""Pipeline benchmark: filter + exact dedupe + upsample over the 1 M-row SFT corpus.

rowtrail ``apply`` (full lineage: every drop with its reason, merged edges, weight changes, the
per-step monitoring report, all written as objects and staged) against two baselines measured in
the same run, alternating, median of ``--repeat`` runs:

- DESIGN.md's target, "the same steps without lineage": the same steps on the same engine as
  ``apply --dry-run``, which keeps no lineage (no drop, edge or weight table is written, no run
  object, no journal entry; only the per-step counts of the report);
- the same three steps in plain DuckDB SQL over the same stored Parquet segments, writing only
  the resulting (row_id, weight) table — a stricter reference (another engine, two threads
  throughout).

The steps are built (and their implementation fingerprints taken) before the clock starts, as the
SQL text is.

    python bench/pipeline.py [--rows 1000000] [--repeat 3] [--json]

The corpus is the one ``bench/run.py`` generates (cached in bench/out/data); the store is built
once and cached in bench/out/pipeline-store-<rows>.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import duckdb  # noqa: E402

import rowtrail as rt  # noqa: E402
from rowtrail import steps  # noqa: E402

THRESHOLD = 600  # drops about half of the bench corpus's rows
UPSAMPLED = [f"src-{k:03d}" for k in range(0, 200, 10)]


def build_store(rows: int, out: Path) -> Path:
    import corpus

    data = out / "data"
    path = corpus.sft_corpus(data, rows, 200, 0)
    store = out / f"pipeline-store-{rows}"
    if (store / "HEAD.json").exists():
        return store
    shutil.rmtree(store, ignore_errors=True)
    s = rt.init(store)
    for k in range(200):
        s.sources.add(f"src-{k:03d}", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    # every 50th row again under another source: exact duplicates across sources for the dedupe
    dup = corpus.cross_source_duplicates(path, out / f"pipeline-dups-{rows}.jsonl")
    opts = dict(
        source_field="source",
        key_field="id",
        content_fields=["prompt", "response"],
        attributes={"teacher": "teacher", "lane": "lane", "score": "score"},
    )
    s.ingest(str(path), **opts)
    s.ingest(str(dup), **opts)
    s.commit("inputs", tag="v1", sign=False)
    return store


def pipeline() -> list[steps.Step]:
    return [
        steps.filter(f"length(response) > {THRESHOLD}", reason="too-short"),
        steps.dedupe_exact(on="content_sha256", keep="earliest"),
        steps.upsample(source=UPSAMPLED, factor=2),
    ]


def run_rowtrail(store: Path, dry_run: bool = False) -> tuple[float, dict]:
    s = rt.open(store)
    steps = pipeline()
    t0 = time.perf_counter()
    rep = s.apply(steps, dry_run=dry_run)
    seconds = time.perf_counter() - t0
    return seconds, {
        "rows_in": rep.rows_in,
        "rows_out": rep.rows_out,
        "weight_out": rep.weight_out,
        "dropped": [x["dropped"] for x in rep.steps],
    }


def run_duckdb(store: Path, out: Path) -> tuple[float, dict]:
    s = rt.open(store)
    obj = s.backend.object_path
    segs = [x for x in s.state.segments if not x.ingest_id.startswith("step:")]  # the ingested rows only
    unions = " UNION ALL ".join(
        f"SELECT * FROM read_parquet('{obj(x.provenance)}') POSITIONAL JOIN (SELECT content FROM read_parquet('{obj(x.content)}'))"
        for x in segs
    )
    sources = ", ".join(f"'{x}'" for x in UPSAMPLED)
    target = out / "duckdb-pipeline.parquet"
    con = duckdb.connect()
    t0 = time.perf_counter()
    con.execute(
        f"""COPY (
        WITH r AS ({unions}),
        f AS (SELECT * FROM r WHERE length(json_extract_string(content, '$.response')) > {THRESHOLD}),
        d AS (SELECT * FROM f QUALIFY row_number() OVER (PARTITION BY content_sha256 ORDER BY ingested_at, row_id) = 1)
        SELECT row_id, CASE WHEN source_id IN ({sources}) THEN 2.0 ELSE 1.0 END AS weight FROM d
        ) TO '{target}' (FORMAT parquet)"""
    )
    seconds = time.perf_counter() - t0
    n, w = con.sql(f"SELECT count(*), sum(weight) FROM '{target}'").fetchall()[0]
    return seconds, {"rows_out": int(n), "weight_out": float(w)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    store = build_store(a.rows, out)
    build = time.perf_counter() - t0
    ours, bare, base = [], [], []
    info: dict = {}
    for _ in range(a.repeat):
        sec, info_b = run_duckdb(store, out)
        base.append(sec)
        sec, info_d = run_rowtrail(store, dry_run=True)
        bare.append(sec)
        sec, info = run_rowtrail(store)
        ours.append(sec)
    med = statistics.median
    result = {
        "rows": a.rows,
        "store_build_seconds": round(build, 2),
        "rowtrail_apply_seconds": [round(x, 3) for x in ours],
        "rowtrail_no_lineage_seconds": [round(x, 3) for x in bare],
        "duckdb_sql_seconds": [round(x, 3) for x in base],
        "rowtrail_median": round(med(ours), 3),
        "no_lineage_median": round(med(bare), 3),
        "duckdb_median": round(med(base), 3),
        "ratio": round(med(ours) / med(bare), 3),
        "ratio_to_duckdb": round(med(ours) / med(base), 3),
        "target_ratio": 1.2,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rowtrail": info,
        "duckdb": info_b,
        "same_output_size": info["rows_out"] == info_b["rows_out"] == info_d["rows_out"]
        and abs(info["weight_out"] - info_b["weight_out"]) < 1e-6
        and info["dropped"] == info_d["dropped"],
    }
    import corpus

    corpus.append_result(out, "pipeline", dict(result, at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"pipeline over {a.rows:,} rows (median of {a.repeat}): rowtrail apply {result['rowtrail_median']:.2f} s (full lineage) vs the same steps "
            f"without lineage (apply --dry-run) {result['no_lineage_median']:.2f} s → {result['ratio']:.2f}× (target ≤ 1.2×); "
            f"vs DuckDB SQL {result['duckdb_median']:.2f} s → {result['ratio_to_duckdb']:.2f}×; outputs agree: {result['same_output_size']}"
        )
        print(f"  rows {info['rows_in']:,} → {info['rows_out']:,}; drops per step {info['dropped']}")


if __name__ == "__main__":
    main()
