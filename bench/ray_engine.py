"""Local vs Ray engine: ingest + a dedupe pipeline over the SFT corpus, both engines in one run.

For each corpus size (``--rows``, a comma-separated list: 1 M and 10 M by default, one after the
other in this one process), and for each engine, a fresh store: 200 sources, the corpus ingested
(plus every 50th row again under another source, so the dedupe has work), then ``apply`` of
filter + dedupe_exact + upsample (add ``--near`` for dedupe_near too), then an unsigned commit.
Timed: the ingest, the apply, and Ray's own start-up (``ray.init`` and one warm-up task per CPU that
imports rowtrail in the worker processes, outside the ratios). Ray is started after the local run
and shut down at the end of each size, so no local run shares the machine with an idle Ray. The inputs are read once
before each ingest (a warm page cache for both). The two versions' ``content_id`` must be equal, and
the two stores must hold the same segments (same parts, same row counts).

- local: ``store.ingest(..., engine="local")`` (its worker processes), ``apply(engine="local")``.
- ray: ``store.ingest(..., engine="ray")`` (each input part read by a Ray task) and
  ``apply(engine="ray")``, on a local Ray with ``--cpus`` CPUs. Both ingests plan the same parts
  (``workers`` = 2 here: the local default on this machine, the Ray default with ``--cpus 2``).

    python bench/ray_engine.py [--rows 1000000,10000000] [--cpus 2] [--repeat 2] [--repeat-ingest 0] [--near] [--json]

After both, each engine's ``apply`` is timed again ``--repeat`` times, alternating which goes first
(dry runs: the engine's work without publishing), so the machine's drift hits both alike; with
``--repeat-ingest N`` the ingest too (each into a fresh store, deleted after). A thread
samples the RSS of this process and of all its child processes (ingest workers, Ray's raylet and
workers) every 0.5 s: the peak of each phase is recorded, with the load average at its start.

Results are printed and appended to ``bench/out/results.json`` under ``"ray_engine"`` (one entry per
size).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import threading
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


class RssWatch:
    """The peak RSS of this process and of its whole process tree (ingest workers, Ray's raylet and
    workers), sampled every 0.5 s, per phase (``mark`` starts a new one)."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.phase = ""
        self.peaks: dict[str, dict] = {}
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def mark(self, phase: str) -> None:
        self.phase = phase
        self.peaks[phase] = {"tree_mb": 0, "driver_mb": 0, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}

    def _run(self) -> None:
        import corpus
        import psutil

        while not self.stop.wait(0.5):
            if not self.phase:
                continue
            try:
                driver = self.me.memory_info().rss
                tree = corpus.tree_rss(self.me)
            except psutil.Error:
                continue
            peak = self.peaks[self.phase]
            peak["tree_mb"] = max(peak["tree_mb"], round(tree / 2**20))
            peak["driver_mb"] = max(peak["driver_mb"], round(driver / 2**20))

    def take(self, phase: str) -> dict:
        return self.peaks.get(phase, {})


INGEST_OPTS = dict(
    source_field="source",
    key_field="id",
    content_fields=["prompt", "response"],
    attributes={"teacher": "teacher", "lane": "lane", "score": "score"},
)


def new_store(path: Path) -> rt.Store:
    shutil.rmtree(path, ignore_errors=True)
    s = rt.init(path)
    for k in range(200):
        s.sources.add(f"src-{k:03d}", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    return s


def timed_ingest(s: rt.Store, engine: str, files: list[Path]) -> float:
    """Seconds to ingest the corpus files (read once before: a warm page cache)."""
    warm_page_cache(files)
    t0 = time.perf_counter()
    for f in files:
        s.ingest(str(f), engine=engine, **INGEST_OPTS)
    return time.perf_counter() - t0


def run_engine(engine: str, files: list[Path], work: Path, near: bool, watch: RssWatch) -> tuple[rt.Store, dict]:
    s = new_store(work / f"store-{engine}")
    watch.mark(f"{engine} ingest")
    ingest_s = timed_ingest(s, engine, files)
    watch.mark(f"{engine} apply")
    t0 = time.perf_counter()
    rep = apply(s, pipeline(near), engine=engine)
    apply_s = time.perf_counter() - t0
    watch.mark(f"{engine} commit")
    v = s.commit(f"{engine} engine", sign=False)
    watch.mark("between")
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
        "segment_rows": [seg.rows for seg in s.state.segments],
        "peak_rss": {phase: watch.take(f"{engine} {phase}") for phase in ("ingest", "apply", "commit")},
    }


def start_ray(cpus: int):
    """``ray.init`` and one task per CPU that imports rowtrail's ingest and engine code in its worker
    (the first tasks of a fresh Ray otherwise pay for starting and importing in the timed work; the
    local ingest's worker processes pay for their imports in every ingest, so this favours Ray by at
    most a second or two per ingest)."""
    from rowtrail.engines.ray import ensure_ray

    ray = ensure_ray(num_cpus=cpus)

    @ray.remote(num_cpus=1)
    def warm() -> int:
        import rowtrail.engines.ray  # noqa: F401
        import rowtrail.ops.ingest  # noqa: F401

        return os.getpid()

    ray.get([warm.remote() for _ in range(cpus)])
    return ray


def run_size(rows: int, a: argparse.Namespace, out: Path, watch: RssWatch, ray_box: dict) -> dict:
    work = out / f"ray-bench-{rows}"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = corpus_files(rows, out)
    generate_s = time.perf_counter() - t0
    loadavg_start = [round(x, 2) for x in os.getloadavg()]
    local_store, local = run_engine("local", files, work, a.near, watch)  # no Ray running yet
    t0 = time.perf_counter()
    ray_box["ray"] = start_ray(a.cpus)
    ray_init = round(time.perf_counter() - t0, 2)
    ray_store, remote = run_engine("ray", files, work, a.near, watch)
    # the engines alone, alternating (dry runs: compute, no publish), against the machine's drift
    runs: dict[str, list[float]] = {"local": [], "ray": []}
    for r in range(a.repeat):
        for engine in ("ray", "local") if r % 2 == 0 else ("local", "ray"):
            t0 = time.perf_counter()
            apply(local_store if engine == "local" else ray_store, pipeline(a.near), engine=engine, dry_run=True)
            runs[engine].append(round(time.perf_counter() - t0, 2))
    # the ingest alone, alternating, each into a fresh store (then deleted), likewise
    ingests: dict[str, list[float]] = {"local": [], "ray": []}
    for r in range(a.repeat_ingest):
        for engine in ("ray", "local") if r % 2 == 0 else ("local", "ray"):
            s = new_store(work / "store-again")
            ingests[engine].append(round(timed_ingest(s, engine, files), 2))
            del s
            shutil.rmtree(work / "store-again", ignore_errors=True)
    ray_box.pop("ray").shutdown()  # the next size's local run has the machine without Ray
    result = {
        "bench": "ray_engine",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": rows,
        "input_rows": local["rows_in"],
        "input_bytes": sum(f.stat().st_size for f in files),
        "cpus": a.cpus,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg": os.getloadavg(),
            "loadavg_at_start": loadavg_start,
        },
        "pipeline": [s.name for s in pipeline(a.near)],
        "ingest_engines": {"local": "store.ingest(engine='local')", "ray": "store.ingest(engine='ray')"},
        "generate_seconds": round(generate_s, 2),
        "local": local,
        "ray": remote,
        "ray_init_seconds": ray_init,
        "ratio_ingest": round(remote["ingest_seconds"] / local["ingest_seconds"], 2),
        "ratio_apply": round(remote["apply_seconds"] / local["apply_seconds"], 2),
        "ratio_total": round(remote["total_seconds"] / local["total_seconds"], 2),
        "dry_run_apply_seconds": runs,
        "ratio_dry_run_apply_median": round(statistics.median(runs["ray"]) / statistics.median(runs["local"]), 2) if a.repeat else None,
        "repeated_ingest_seconds": ingests,
        "ratio_repeated_ingest_median": round(statistics.median(ingests["ray"]) / statistics.median(ingests["local"]), 2)
        if a.repeat_ingest
        else None,
        "same_content_id": local["content_id"] == remote["content_id"],
        "same_run": local["run"] == remote["run"],
        "same_segment_rows": local["segment_rows"] == remote["segment_rows"],
    }
    import corpus

    corpus.append_result(out, "ray_engine", result)
    del local_store, ray_store
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def print_result(result: dict) -> None:
    local = result["local"]
    print(
        f"\n{result['rows']:,} rows ({result['input_rows']:,} with duplicates, {result['input_bytes'] / 1e9:.1f} GB JSONL), "
        f"pipeline {' + '.join(result['pipeline'])}, Ray on {result['cpus']} CPUs; load average {result['machine']['loadavg_at_start']} → {[round(x, 2) for x in result['machine']['loadavg']]}"
    )
    print(f"{'':8} {'ingest s':>9} {'apply s':>9} {'total s':>9}   peak RSS MB (tree / driver): ingest, apply, commit")
    for name in ("local", "ray"):
        r = result[name]
        rss = ", ".join(
            f"{r['peak_rss'][p].get('tree_mb', 0)}/{r['peak_rss'][p].get('driver_mb', 0)}" for p in ("ingest", "apply", "commit")
        )
        print(f"{name:8} {r['ingest_seconds']:9.2f} {r['apply_seconds']:9.2f} {r['total_seconds']:9.2f}   {rss}")
    init = f"ray.init + warm-up {result['ray_init_seconds']:.1f} s, not in the ratios"
    print(
        f"ray/local  ingest {result['ratio_ingest']:.2f}×  apply {result['ratio_apply']:.2f}×  total {result['ratio_total']:.2f}×  ({init})"
    )
    runs = result["dry_run_apply_seconds"]
    if runs["local"]:
        print(
            f"apply alone, alternating dry runs: local {runs['local']} s, ray {runs['ray']} s → median ratio {result['ratio_dry_run_apply_median']:.2f}×"
        )
    ingests = result["repeated_ingest_seconds"]
    if ingests["local"]:
        print(
            f"ingest alone, alternating: local {ingests['local']} s, ray {ingests['ray']} s → median ratio {result['ratio_repeated_ingest_median']:.2f}×"
        )
    print(
        f"same content_id: {result['same_content_id']}; same run object: {result['same_run']}; same segments: {result['same_segment_rows']}; "
        f"rows {local['rows_in']:,} → {local['rows_out']:,}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1000000,10000000", help="corpus sizes, comma-separated, run one after the other")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--near", action="store_true", help="add dedupe_near (MinHash LSH) to the pipeline")
    ap.add_argument("--repeat", type=int, default=2, help="then time each engine's apply again this many times, alternating (dry runs)")
    ap.add_argument("--repeat-ingest", type=int, default=0, help="then time each engine's ingest again this many times, alternating")
    ap.add_argument("--keep", action="store_true", help="keep the two stores in bench/out/ray-bench-ROWS")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    sizes = [int(x.replace("_", "")) for x in a.rows.split(",") if x.strip()]
    out = HERE / "out"
    watch = RssWatch()
    ray_box: dict = {}
    results = []
    try:
        for rows in sizes:
            result = run_size(rows, a, out, watch, ray_box)
            results.append(result)
            if not a.json:
                print_result(result)
                sys.stdout.flush()
    finally:
        watch.stop.set()
        if "ray" in ray_box:
            ray_box["ray"].shutdown()
    if a.json:
        print(json.dumps(results, indent=2))
        return
    if len(results) > 1:
        print(
            "\nratios ray/local by size: "
            + "; ".join(
                f"{r['rows']:,}: ingest {r['ratio_ingest']:.2f}×, apply {r['ratio_apply']:.2f}×, total {r['ratio_total']:.2f}×"
                for r in results
            )
        )


if __name__ == "__main__":
    main()
