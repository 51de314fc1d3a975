"""Scaling and memory bounds: 1 M → 10 M → 20 M small SFT-like rows through every big command.

For each size N, every phase runs in its own child process; its seconds (inside the child, around
exactly the work) and peak RSS (the child's own VmHWM, or the sampled RSS of its process tree when
larger — as ``bench/run.py`` measures) are recorded:

1. ``ingest``     — ``rt.init``, 101 sources, ``s.ingest(corpus.jsonl)`` (N rows, ~2 % exact duplicates)
2. ``apply``      — ``s.apply([filter, dedupe_exact, upsample])`` with full lineage
3. ``commit``     — ``s.commit(tag="v1")`` (manifest, chunks, Merkle caches)
4. ``stage_v2``   — ``s.remove(source="src-000")`` (1 % of rows) + ingest of N/100 new rows
5. ``commit_v2``  — ``s.commit(tag="v2")``: the input set changed, so it re-runs the pipeline first
6. ``diff``       — ``v2.provenance_set() - v1.provenance_set()``, both directions counted
7. ``verify``     — ``s.verify(sample=1000, allow_unsigned=True)`` (``rowtrail verify --sample 1000``)

    python bench/scale.py                         # 1 M, 10 M, 20 M rows (~25 min on 2 cores)
    python bench/scale.py --rows 1000000          # one size
    ROWTRAIL_MEMORY_LIMIT=2GB python bench/scale.py --rows 20000000

Rows are small (~180 bytes of JSONL: id, source, text, lane, score) so 20 M rows fit on disk
(~3.6 GB of JSONL, cached in ``bench/out/data``); the scratch store is deleted afterwards unless
``--keep``. Prints a table and appends to ``bench/out/results.json`` under ``"scale"``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

GEN = 1
SOURCES = 100  # equal-sized sources, so one source is 1 % of the rows
BOUND_MB = 4096
PHASES = ["ingest", "apply", "commit", "stage_v2", "commit_v2", "diff", "verify"]
LANES = [b"chat", b"code", b"math", b"reasoning", b"safety", b"tool-use"]
UPSAMPLED = [f"src-{k:03d}" for k in range(0, SOURCES, 10)]


# --- data -------------------------------------------------------------------------------------


def _write_rows(path: Path, rows: int, seed: int, id_prefix: bytes, source_of, dup_every: int) -> None:
    """JSONL of small rows; every ``dup_every``-th row repeats the previous row's text (exact dup)."""
    import corpus

    rng = np.random.default_rng(seed)
    pool, offsets = corpus._token_pool(rng, 4_000_000)
    tmp = path.with_suffix(".tmp")
    block = 200_000
    fmt = b'{"id":"%s%09d","source":"src-%03d","text":"%s","lane":"%s","score":%.4f}\n'
    with open(tmp, "wb", buffering=64 << 20) as f:
        for lo in range(0, rows, block):
            n = min(block, rows - lo)
            src = source_of(rng, lo, n)
            lane = rng.integers(0, len(LANES), size=n)
            score = rng.random(size=n)
            s, e = corpus._slices(rng, offsets, n, 90)
            if dup_every:
                i = np.arange(n)
                dup = ((lo + i) % dup_every == dup_every - 1) & (i > 0)
                s[dup], e[dup] = s[np.flatnonzero(dup) - 1], e[np.flatnonzero(dup) - 1]
            f.write(
                b"".join(
                    fmt % (id_prefix, lo + i, k, pool[a:b], LANES[ln], x)
                    for i, k, a, b, ln, x in zip(range(n), src.tolist(), s.tolist(), e.tolist(), lane.tolist(), score.tolist())
                )
            )
    os.replace(tmp, path)


def corpus_files(data: Path, rows: int) -> tuple[Path, Path]:
    """The N-row corpus (sources src-000..src-099) and the N/100-row addition for v2 (src-100)."""
    data.mkdir(parents=True, exist_ok=True)
    main = data / f"scale-r{rows}-g{GEN}.jsonl"
    extra = data / f"scale-r{rows}-g{GEN}-add.jsonl"
    if not main.exists():
        _write_rows(main, rows, 1, b"r-", lambda rng, lo, n: (lo + np.arange(n)) % SOURCES, 50)
        print(f"  generated {main.name} ({main.stat().st_size / 1e9:.2f} GB)", flush=True)
    if not extra.exists():
        _write_rows(extra, rows // 100, 2, b"a-", lambda rng, lo, n: np.full(n, SOURCES), 0)
    return main, extra


# --- phases (each in a child process) ---------------------------------------------------------


def _rt():
    sys.path.insert(0, str(REPO / "src"))
    import rowtrail as rt

    return rt


def _pipeline():
    from rowtrail import steps

    return [
        steps.filter("length(text) > 60", reason="too-short"),
        steps.dedupe_exact(on="content_sha256", keep="earliest"),
        steps.upsample(source=UPSAMPLED, factor=2),
    ]


INGEST = dict(source_field="source", key_field="id", content_fields=["text"], attributes={"lane": "lane", "score": "score"})


def phase(name: str, a: dict, out: dict) -> None:
    rt = _rt()
    if name == "ingest":
        s = rt.init(a["store"])
        for k in range(SOURCES + 1):
            s.sources.add(f"src-{k:03d}", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
        t0 = time.perf_counter()
        rep = s.ingest(a["corpus"], **INGEST)
        out["seconds"] = time.perf_counter() - t0
        out["rows"] = getattr(rep, "rows", None)
        return
    s = rt.open(a["store"])
    t0 = time.perf_counter()
    if name == "apply":
        rep = s.apply(_pipeline())
        out.update(rows_in=rep.rows_in, rows_out=rep.rows_out, dropped=[x["dropped"] for x in rep.steps])
    elif name == "commit":
        v = s.commit("scale v1", tag="v1", sign=False)
        out.update(row_count=v.content["row_count"], content_id=v.content_id)
    elif name == "stage_v2":
        out["removed"] = s.remove(source="src-000", reason="scale bench")
        s.ingest(a["extra"], **INGEST)
    elif name == "commit_v2":
        v = s.commit("scale v2", tag="v2", sign=False)
        out.update(row_count=v.content["row_count"], content_id=v.content_id)
    elif name == "diff":
        d = s.version("v2").provenance_set() - s.version("v1").provenance_set()
        out.update(rows_added=len(d.rows_added), rows_removed=len(d.rows_removed))
    elif name == "verify":
        rep = s.verify(allow_unsigned=True, sample=1000)
        out["ok"] = bool(getattr(rep, "ok", False))
        if not out["ok"]:
            out["problems"] = [str(p) for p in (getattr(rep, "problems", None) or getattr(rep, "errors", []))][:5]
    out["seconds"] = time.perf_counter() - t0


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _watch_peaks(out: dict, step_mb: int = 64) -> threading.Event:
    """With ``ROWTRAIL_BENCH_PROFILE=1``: sample this process's RSS every 20 ms and keep the main
    thread's stack at each new peak (every ``step_mb`` MB higher), to say which code holds the peak."""
    import psutil

    main_id, me, stop = threading.main_thread().ident, psutil.Process(), threading.Event()
    peaks: list = []
    out["profile"] = peaks

    def watch() -> None:
        top = 0
        while not stop.wait(0.02):
            rss = me.memory_info().rss
            if rss > top + step_mb * 2**20:
                top = rss
                frame = sys._current_frames().get(main_id)
                stack = traceback.format_stack(frame)[-8:] if frame is not None else []
                peaks.append({"rss_mb": round(rss / 2**20), "stack": [" ".join(x.split()) for x in stack]})

    threading.Thread(target=watch, daemon=True).start()
    return stop


def child_main(name: str, args_path: str, result_path: str) -> None:
    out: dict = {}
    stop = _watch_peaks(out) if os.environ.get("ROWTRAIL_BENCH_PROFILE") else None
    try:
        phase(name, json.loads(Path(args_path).read_text()), out)
    except BaseException as e:  # reported in the table, never fatal to the harness
        traceback.print_exc()
        out["error"] = f"{type(e).__name__}: {e}".strip().splitlines()[0]
    if stop is not None:
        stop.set()
        out["profile"] = out["profile"][-6:]
    out["self_peak_rss_bytes"] = _peak_rss_bytes()
    Path(result_path).write_text(json.dumps(out, default=str))


def run_phase(name: str, args: dict, work: Path, kill_above_mb: int) -> dict:
    import corpus
    import psutil

    args_path, result_path, log_path = work / f"{name}.args.json", work / f"{name}.result.json", work / f"{name}.log"
    args_path.write_text(json.dumps(args))
    result_path.unlink(missing_ok=True)
    print(f"  {name} ...", end="", flush=True)
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", name, str(args_path), str(result_path)], stdout=log, stderr=subprocess.STDOUT
        )
    sampled, killed, done = [0], [False], threading.Event()

    def sample() -> None:
        try:
            ps = psutil.Process(proc.pid)
            while not done.is_set():
                sampled[0] = max(sampled[0], corpus.tree_rss(ps))
                if sampled[0] > kill_above_mb * 2**20:  # a shared machine: never run it out of memory
                    killed[0] = True
                    for q in [*ps.children(recursive=True), ps]:
                        q.kill()
                done.wait(0.1)
        except psutil.Error:
            pass

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    try:
        res = json.loads(result_path.read_text())
    except (OSError, ValueError):
        why = f"killed above {kill_above_mb} MB" if killed[0] else f"exit {os.waitstatus_to_exitcode(status)}"
        res = {"error": f"child died ({why}); see {log_path}"}
    own = res.pop("self_peak_rss_bytes", None) or usage.ru_maxrss * 1024
    res["peak_rss_mb"] = round(max(own, sampled[0]) / 2**20, 1)
    res["wall_seconds"] = round(wall, 2)
    if "seconds" in res:
        res["seconds"] = round(res["seconds"], 2)
    txt = f"error: {res['error']}" if "error" in res else f"{res.get('seconds', 0):.1f} s"
    print(f" {txt}  ({res['peak_rss_mb']:.0f} MB)", flush=True)
    return res


def run_size(rows: int, out: Path, keep: bool, phases: list[str], kill_above_mb: int) -> dict:
    print(f"{rows:,} rows", flush=True)
    t0 = time.perf_counter()
    main, extra = corpus_files(out / "data", rows)
    gen = time.perf_counter() - t0
    work = out / "scale-work" / f"r{rows}"
    store = work / "store"
    if "ingest" in phases:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    args = {"store": str(store), "corpus": str(main), "extra": str(extra)}
    res: dict = {"rows": rows, "corpus_bytes": main.stat().st_size, "data_ready_seconds": round(gen, 1), "phases": {}}
    for name in phases:
        res["phases"][name] = r = run_phase(name, args, work, kill_above_mb)
        if "error" in r:
            break
    res["store_bytes"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) if store.exists() else 0
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, action="append", help="rows (repeatable); default 1 M, 10 M, 20 M")
    ap.add_argument("--only", help="comma-separated phases (the store must exist from an earlier --keep run unless ingest is among them)")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--keep", action="store_true", help="keep the scratch stores in OUT/scale-work")
    ap.add_argument("--kill-above", type=int, default=12_000, help="kill a phase whose process tree passes this RSS (MB)")
    a = ap.parse_args()
    sizes = a.rows or [1_000_000, 10_000_000, 20_000_000]
    phases = a.only.split(",") if a.only else PHASES
    import duckdb
    import psutil

    machine = {
        "cpus": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "duckdb": duckdb.__version__,
        "memory_limit": os.environ.get("ROWTRAIL_MEMORY_LIMIT"),
        "arrow_memory_pool": os.environ.get("ARROW_DEFAULT_MEMORY_POOL"),
        "load_start": os.getloadavg(),
    }
    results = [run_size(n, a.out, a.keep, phases, a.kill_above) for n in sizes]
    machine["load_end"] = os.getloadavg()
    print(f"\n{'phase':10}" + "".join(f"{n / 1e6:>7.0f} M s {'RSS MB':>8}" for n in sizes))
    for name in phases:
        line = f"{name:10}"
        for r in results:
            p = r["phases"].get(name, {})
            mark = "!" if p.get("peak_rss_mb", 0) > BOUND_MB else " "
            line += f"{p.get('seconds', float('nan')):11.1f} {p.get('peak_rss_mb', float('nan')):7.0f}{mark}"
        print(line)
    worst = max((p.get("peak_rss_mb", 0), name, r["rows"]) for r in results for name, p in r["phases"].items())
    print(
        f"peak RSS bound {BOUND_MB} MB: worst {worst[0]:.0f} MB ({worst[1]} at {worst[2]:,} rows) → {'PASS' if worst[0] <= BOUND_MB else 'MISS'}"
    )
    import corpus

    corpus.append_result(a.out, "scale", {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine, "sizes": results})


if __name__ == "__main__":
    main()
