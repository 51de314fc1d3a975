"""Local vs Ray engine: ingest + a dedupe pipeline over the SFT corpus, both engines in one run.

For each engine, a fresh store: 200 sources, the corpus ingested (plus every 50th row again under
another source, so the dedupe has work), then ``apply`` of filter + dedupe_exact + upsample (add
``--near`` for dedupe_near too), then an unsigned commit. Timed: the ingest, the apply, and Ray's own
start-up (``ray.init``, once, outside the ratio). The inputs are read once before each ingest (a
warm page cache for both). The two versions' ``content_id`` must be equal.

- local: ``store.ingest`` with its worker processes, ``apply(engine="local")``.
- ray: the same ingest with its parts read by Ray tasks (``engines.ray.run_ingest_parts`` in place
  of the local worker processes; the bench swaps it in, the library's ``ingest`` does not take an
  engine yet), ``apply(engine="ray")`` on a local Ray with ``--cpus`` CPUs.

    python bench/ray_engine.py [--rows 1000000] [--cpus 2] [--repeat 3] [--near] [--json]

After both, each engine's ``apply`` is timed again ``--repeat`` times, alternating which goes first
(dry runs: the engine's work without publishing), so the machine's drift hits both alike.

Results are printed and appended to ``bench/out/results.json`` under ``"ray_engine"``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import rowtrail as rt  # noqa: E402
from rowtrail import steps  # noqa: E402
from rowtrail.ops.apply import apply  # noqa: E402

THRESHOLD = 600
UPSAMPLED = [f"src-{k:03d}" for k in range(0, 200, 10)]


def corpus_files(rows: int, out: Path) -> list[Path]:
    import corpus

    path = corpus.sft_corpus(out / "data", rows, 200, 0)
    return [path, corpus.cross_source_duplicates(path, out / "data" / f"ray-bench-dups-{rows}.jsonl")]


def warm_page_cache(files: list[Path]) -> None:
    """Read the inputs once, so neither engine's ingest pays for a cold disk the other did not."""
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(16 << 20):
                pass


def pipeline(near: bool) -> list[steps.Step]:
    out = [steps.filter(f"length(response) > {THRESHOLD}", reason="too-short"), steps.dedupe_exact(on="content_sha256", keep="earliest")]
    if near:
        out.append(steps.dedupe_near(on="response", threshold=0.8))
    out.append(steps.upsample(source=UPSAMPLED, factor=2))
    return out


def run_engine(engine: str, files: list[Path], work: Path, near: bool) -> dict:
    import rowtrail.ops.ingest as ingest_mod

    path = work / f"store-{engine}"
    shutil.rmtree(path, ignore_errors=True)
    s = rt.init(path)
    for k in range(200):
        s.sources.add(f"src-{k:03d}", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    opts = dict(
        source_field="source",
        key_field="id",
        content_fields=["prompt", "response"],
        attributes={"teacher": "teacher", "lane": "lane", "score": "score"},
    )
    local_parts = ingest_mod.run_parts
    if engine == "ray":
        from rowtrail.engines.ray import run_ingest_parts

        ingest_mod.run_parts = lambda spec, parts, tables, workers, progress=None: run_ingest_parts(spec, parts, tables, progress)
    warm_page_cache(files)
    try:
        t0 = time.perf_counter()
        for f in files:
            s.ingest(str(f), **opts)
        ingest_s = time.perf_counter() - t0
    finally:
        ingest_mod.run_parts = local_parts
    t0 = time.perf_counter()
    rep = apply(s, pipeline(near), engine=engine)
    apply_s = time.perf_counter() - t0
    v = s.commit(f"{engine} engine", sign=False)
    return s, {
        "ingest_seconds": round(ingest_s, 2),
        "apply_seconds": round(apply_s, 2),
        "total_seconds": round(ingest_s + apply_s, 2),
        "rows_in": rep.rows_in,
        "rows_out": rep.rows_out,
        "dropped": [x["dropped"] for x in rep.steps],
        "run": rep.run,
        "content_id": v.content_id,
        "segments": len(s.state.segments),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--near", action="store_true", help="add dedupe_near (MinHash LSH) to the pipeline")
    ap.add_argument("--repeat", type=int, default=3, help="then time each engine's apply again this many times, alternating (dry runs)")
    ap.add_argument("--keep", action="store_true", help="keep the two stores in bench/out/ray-bench-ROWS")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = HERE / "out"
    work = out / f"ray-bench-{a.rows}"
    work.mkdir(parents=True, exist_ok=True)
    files = corpus_files(a.rows, out)
    local_store, local = run_engine("local", files, work, a.near)
    from rowtrail.engines.ray import ensure_ray

    t0 = time.perf_counter()
    ray = ensure_ray(num_cpus=a.cpus)
    ray_init = time.perf_counter() - t0
    ray_store, remote = run_engine("ray", files, work, a.near)
    # the engines alone, alternating (dry runs: compute, no publish), against the machine's drift
    runs: dict[str, list[float]] = {"local": [], "ray": []}
    for r in range(a.repeat):
        for engine in ("ray", "local") if r % 2 == 0 else ("local", "ray"):
            t0 = time.perf_counter()
            apply(local_store if engine == "local" else ray_store, pipeline(a.near), engine=engine, dry_run=True)
            runs[engine].append(round(time.perf_counter() - t0, 2))
    ray.shutdown()
    result = {
        "bench": "ray_engine",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": a.rows,
        "input_rows": local["rows_in"],
        "cpus": a.cpus,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
        "pipeline": [s.name for s in pipeline(a.near)],
        "local": local,
        "ray": remote,
        "ray_init_seconds": round(ray_init, 2),
        "ratio_ingest": round(remote["ingest_seconds"] / local["ingest_seconds"], 2),
        "ratio_apply": round(remote["apply_seconds"] / local["apply_seconds"], 2),
        "ratio_total": round(remote["total_seconds"] / local["total_seconds"], 2),
        "dry_run_apply_seconds": runs,
        "ratio_dry_run_apply_median": round(statistics.median(runs["ray"]) / statistics.median(runs["local"]), 2) if a.repeat else None,
        "same_content_id": local["content_id"] == remote["content_id"],
        "same_run": local["run"] == remote["run"],
    }
    import corpus

    corpus.append_result(out, "ray_engine", result)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{a.rows:,} rows ({result['input_rows']:,} with duplicates), pipeline {' + '.join(result['pipeline'])}, Ray on {a.cpus} CPUs")
    print(f"{'':8} {'ingest s':>9} {'apply s':>9} {'total s':>9}")
    for name in ("local", "ray"):
        r = result[name]
        print(f"{name:8} {r['ingest_seconds']:9.2f} {r['apply_seconds']:9.2f} {r['total_seconds']:9.2f}")
    print(
        f"ray/local  ingest {result['ratio_ingest']:.2f}×  apply {result['ratio_apply']:.2f}×  total {result['ratio_total']:.2f}×  (ray.init {result['ray_init_seconds']:.1f} s, not in the ratio)"
    )
    if a.repeat:
        print(
            f"apply alone, alternating dry runs: local {runs['local']} s, ray {runs['ray']} s → median ratio {result['ratio_dry_run_apply_median']:.2f}×"
        )
    print(
        f"same content_id: {result['same_content_id']}; same run object: {result['same_run']}; rows {local['rows_in']:,} → {local['rows_out']:,}"
    )


if __name__ == "__main__":
    main()
