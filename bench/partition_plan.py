"""Peak memory of dedupe_exact's plan: whole table (what the engines did before ``plan_global``: every
features batch kept, one plan) vs engines.partition.plan_global (spilled partitions), at N synthetic rows.

Each mode runs in its own child process; the child reports its VmHWM (peak RSS), the RSS after
imports and generation set-up (its baseline), the Arrow pool's peak, tracemalloc's peak (Python
heap: numpy arrays included) and the time. Features are generated batch by batch (65,536 rows:
random 32-byte row ids, keys drawn from 2N values so ~21% of rows are duplicates, 200
sources, ingest_seq 1..40).

    python bench/partition_plan.py [--rows 5000000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

BATCH = 65536


def vm(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def batches(rows: int, seed: int = 0):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    distinct = int(rows * 2)
    salt = hashlib.sha256(b"bench").digest()
    sources = pa.array([f"src-{k:03d}" for k in range(200)])
    for start in range(0, rows, BATCH):
        n = min(BATCH, rows - start)
        ids = rng.bytes(32 * n)
        # keys: SHA-256 of a drawn integer (fast: numpy bytes of a keyed mix, 32 bytes wide)
        k = rng.integers(0, distinct, n).astype(np.uint64)
        words = np.empty((n, 4), dtype=np.uint64)
        for j in range(4):
            x = (k + np.uint64(j + 1)) * np.uint64(0x9E3779B97F4A7C15)
            x ^= x >> np.uint64(31)
            x *= np.uint64(0xBF58476D1CE4E5B9)
            x ^= x >> np.uint64(29)
            words[:, j] = x ^ np.uint64(int.from_bytes(salt[8 * j : 8 * j + 8], "little"))
        yield pa.RecordBatch.from_pydict(
            {
                "row_id": pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), n, [None, pa.py_buffer(ids)]),
                "source_id": sources.take(pa.array(rng.integers(0, 200, n))),
                "ingest_seq": pa.array(rng.integers(1, 40, n)),
                "key": pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), n, [None, pa.py_buffer(words.tobytes())]),
            }
        )


def child(mode: str, rows: int, tmp: str, parts: int | None) -> dict:
    import pyarrow as pa

    from rowtrail.engines.partition import plan_global
    from rowtrail.steps.builtin import DedupeExact

    step = DedupeExact(keep="earliest")
    base = vm("VmRSS")
    tracemalloc.start()
    t0 = time.perf_counter()
    if mode == "whole":  # LocalEngine._plan before: every features batch held, then one plan
        feats = list(batches(rows))
        held = sum(b.nbytes for b in feats)
        plan = step.plan(pa.Table.from_batches(feats))
        del feats
    elif mode == "generate":  # the cost of producing the batches alone
        held = 0
        for _ in batches(rows):
            pass
        plan = (b"", b"")
    else:
        held = 0
        plan = plan_global(step, batches(rows), rows, Path(tmp), partitions=parts)
    seconds = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "mode": mode if parts is None else f"{mode} P={parts}",
        "rows": rows,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(vm("VmHWM") / 2**20),
        "rss_at_start_mb": round(base / 2**20),
        "tracemalloc_peak_mb": round(py_peak / 2**20),
        "arrow_pool_peak_mb": round(pa.default_memory_pool().max_memory() / 2**20),
        "features_mb": round(held / 2**20),
        "losers": len(plan[0]),
        "plan_sha256": hashlib.sha256(bytes(plan[0].tobytes()) + bytes(plan[1].tobytes())).hexdigest()[:16] if mode != "generate" else None,
    }


MODES = [("generate", None), ("whole", None), ("partitioned", None), ("partitioned", 2), ("partitioned", 8), ("partitioned", 32)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--child", default=None)
    ap.add_argument("--parts", type=int, default=None)
    ap.add_argument("--tmp", default=str(Path(__file__).resolve().parent / "out" / "partition-plan-tmp"))
    ap.add_argument("--only", default=None, help="comma-separated modes to run (generate,whole,partitioned)")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.rows, a.tmp, a.parts)))
        return
    Path(a.tmp).mkdir(parents=True, exist_ok=True)
    out = []
    for mode, parts in MODES:
        if a.only and mode not in a.only.split(","):
            continue
        cmd = [sys.executable, __file__, "--rows", str(a.rows), "--child", mode, "--tmp", a.tmp]
        if parts:
            cmd += ["--parts", str(parts)]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(json.dumps(res))
        out.append(res)
        assert not list(Path(a.tmp).iterdir()), "spill files left"
    Path(__file__).resolve().parent.joinpath("out", "partition_plan.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
