"""Ray engine apply, before/after global steps were planned on the workers, on bench/ray_engine.py's
1 M-row case (same corpus generator, same 200 sources + every 50th row again under another source,
same pipeline: filter + dedupe_exact(earliest) + upsample; plus a variant with mix).

"before" = the same code with ``rowtrail.engines.ray.partitionable`` patched to say no: features
of every batch come to the driver and it plans whole (exactly the path before this change).
"after" = the partitioned path (map tasks cut features by partition, one plan task per partition).
Dry-run applies, alternating which goes first; the driver's peak RSS sampled every 50 ms.

    python bench/ray_plan.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rowtrail as rt  # noqa: E402
import rowtrail.engines.ray as ray_engine  # noqa: E402
from rowtrail import steps  # noqa: E402
from rowtrail.ops.apply import apply  # noqa: E402

UPSAMPLED = [f"src-{k:03d}" for k in range(0, 200, 10)]


def pipeline(mix: bool):
    out = [steps.filter("length(response) > 600", reason="too-short"), steps.dedupe_exact(on="content_sha256", keep="earliest")]
    if mix:
        out.append(steps.mix({f"src-{k:03d}": 1.0 for k in range(0, 200, 2)}, seed="b", others="keep"))
    out.append(steps.upsample(source=UPSAMPLED, factor=2))
    return out


def rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Peak:
    def __enter__(self):
        self.peak, self.base, self.stop = 0, rss(), False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()
        return self

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, rss())
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.stop = True
        self.t.join()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default=str(Path(__file__).resolve().parent / "out" / "ray-plan"))
    a = ap.parse_args()
    import corpus

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    path = corpus.sft_corpus(work / "data", a.rows, 200, 0)
    files = [path, corpus.cross_source_duplicates(path, work / "data" / f"dups-{a.rows}.jsonl")]
    store_path = work / f"store-{a.rows}"
    if not (store_path / "journal").exists() and store_path.exists():
        shutil.rmtree(store_path)
    if store_path.exists():
        s = rt.open(store_path)
    else:
        s = rt.init(store_path)
        for k in range(200):
            s.sources.add(f"src-{k:03d}", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
        for f in files:
            s.ingest(str(f), source_field="source", key_field="id", content_fields=["prompt", "response"], attributes={"teacher": "teacher", "lane": "lane", "score": "score"})
    print(f"corpus + ingest {time.perf_counter() - t0:.1f} s", flush=True)
    ray = ray_engine.ensure_ray(num_cpus=2)

    @ray.remote(num_cpus=1)
    def warm() -> int:
        import rowtrail.engines.ray  # noqa: F401

        return os.getpid()

    ray.get([warm.remote() for _ in range(2)])
    real = ray_engine.partitionable
    import pyarrow as pa

    plan_phase: list[dict] = []
    real_plan = ray_engine.RayEngine._plan

    def measured_plan(self, frame, step, needs, found, stage):
        # the driver during one global step's planning: time, RSS growth and Arrow-allocated peak
        import tracemalloc

        state = {"rss": 0, "arrow": 0, "stop": False}
        start_rss, start_arrow = rss(), pa.total_allocated_bytes()

        def sample():
            while not state["stop"]:
                state["rss"] = max(state["rss"], rss() - start_rss)
                state["arrow"] = max(state["arrow"], pa.total_allocated_bytes() - start_arrow)
                time.sleep(0.01)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        tracemalloc.start()
        t = time.perf_counter()
        try:
            return real_plan(self, frame, step, needs, found, stage)
        finally:
            secs = time.perf_counter() - t
            _, py = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            state["stop"] = True
            th.join()
            plan_phase.append({"step": step.name, "seconds": round(secs, 2), "rss_growth_mb": round(state["rss"] / 2**20), "arrow_peak_mb": round(state["arrow"] / 2**20), "python_heap_peak_mb": round(py / 2**20)})

    ray_engine.RayEngine._plan = measured_plan
    results: dict[str, dict[str, list]] = {}
    for mix in (False, True):
        for r in range(a.repeat):
            for mode in ("before", "after") if r % 2 == 0 else ("after", "before"):
                ray_engine.partitionable = real if mode == "after" else (lambda step: False)
                with Peak() as p:
                    t = time.perf_counter()
                    rep = apply(s, pipeline(mix), engine="ray", dry_run=True)
                    secs = time.perf_counter() - t
                key = f"{mode}{' +mix' if mix else ''}"
                print("  plan phase:", plan_phase, flush=True)
                phases = list(plan_phase)
                plan_phase.clear()
                d = results.setdefault(key, {"plan_phase": [],"seconds": [], "driver_peak_rss_mb": [], "driver_rss_at_start_mb": [], "run": set(), "rows": set()})
                d["seconds"].append(round(secs, 2))
                d["plan_phase"].append(phases)
                d["driver_peak_rss_mb"].append(round(p.peak / 2**20))
                d["driver_rss_at_start_mb"].append(round(p.base / 2**20))
                d["run"].add(rep.run)
                d["rows"].add((rep.rows_in, rep.rows_out))
                print(key, round(secs, 2), round(p.peak / 2**20), round(p.base / 2**20), rep.rows_in, rep.rows_out, os.getloadavg(), flush=True)
    ray_engine.partitionable = real
    out = {k: {**v, "run": sorted(v["run"]), "rows": sorted(v["rows"]), "median_seconds": statistics.median(v["seconds"])} for k, v in results.items()}
    print(json.dumps(out, indent=1))
    Path(__file__).resolve().parent.joinpath("out", "ray_plan.json").write_text(json.dumps({"rows": a.rows, "results": out, "loadavg_end": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
