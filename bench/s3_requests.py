"""Requests and seconds per command on an S3 store, next to the same commands on a local store.

Starts moto's S3 server on loopback, counts every request it serves (by verb and by what it touches:
journal entries, objects, other), and runs one session of commands: init, source add, an ingest of N
rows, a commit, a 1,000-row ingest and commit, a 3-row ingest and commit (most chunks shared with the
parent), then a fresh reader (empty mirror) opening the
store, listing the log and reading the rows, a warm reader doing the same, and verify. The same
commands on a local store give the baseline seconds.

    python bench/s3_requests.py                # 200 k rows
    python bench/s3_requests.py --rows 1000000
    python bench/s3_requests.py --lock lease   # writers take the lease lock (servers without conditional writes)

With ``--lock lease`` every write also reads, claims, settles (``--settle``, default 1 s, rowtrail's
default) and releases ``locks/journal.json``, and each journal put is fenced by a read of the lock, a
HEAD of the entry and a read-back (docs/scale.md). Results are appended to ``OUT/results.json`` under
``"s3_requests"``.

Loopback has no network latency: on real S3 add ~10-30 ms per request round trip (requests in one
batch run concurrently), which is why the request counts are the figure that transfers.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Counter(logging.Handler):
    """Counts the requests moto's server (werkzeug) logs, one line each."""

    LINE = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) ([^ ]+) HTTP')

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        m = self.LINE.search(re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage()))  # non-2xx lines are coloured
        if not m:
            return
        verb, target = m.groups()
        path = target.split("?")[0]
        if "list-type=2" in target or (verb == "GET" and path.count("/") <= 1):
            what = "list"
        elif "/journal/" in path:
            what = "journal"
        elif "/locks/" in path:
            what = "lock"
        elif "/objects/" in path:
            what = "objects"
        else:
            what = "other"
        self.counts[f"{verb} {what}"] += 1

    def take(self) -> dict[str, int]:
        out = dict(sorted(self.counts.items()))
        self.counts.clear()
        return out


def rows(n: int, prefix: str) -> pa.Table:
    ids = pa.array(np.arange(n, dtype=np.int64))
    return pa.table(
        {
            "id": pc.binary_join_element_wise(prefix, pc.cast(ids, pa.string()), ""),
            "text": pc.binary_join_element_wise("row text ", pc.cast(ids, pa.string()), " of the benchmark", ""),
        }
    )


def session(where: str, n: int, counter: Counter | None, cache: Path | None) -> list[tuple[str, float, dict[str, int]]]:
    import rowtrail as rt
    from rowtrail import store as store_mod
    from rowtrail.backends.objectstore import ObjectStoreBackend

    out: list[tuple[str, float, dict[str, int]]] = []

    def step(name: str, fn):  # noqa: ANN001, ANN202
        if counter:
            counter.take()
        t = time.perf_counter()
        res = fn()
        out.append((name, time.perf_counter() - t, counter.take() if counter else {}))
        return res

    big, small = rows(n, "k"), rows(1000, "new")
    warm = rt.init(Path(tempfile.mkdtemp()) / "warmup")  # imports and first-use costs, outside the figures
    warm.sources.add("w", kind="crawl")
    warm.ingest(rows(100, "w"), source="w", key_field="id")
    warm.commit("w", sign=False)
    s = step("init", lambda: rt.init(where))
    step("source add", lambda: s.sources.add("alpha", kind="crawl"))
    step(f"ingest {n:,} rows", lambda: s.ingest(big, source="alpha", key_field="id"))
    step("commit (signed)", lambda: s.commit("one", tag="v1"))
    step("ingest 1,000 rows", lambda: s.ingest(small, source="alpha", key_field="id"))
    step("commit (signed)", lambda: s.commit("two", tag="v2"))
    step("ingest 3 rows", lambda: s.ingest(rows(3, "few"), source="alpha", key_field="id"))
    step("commit (signed; most chunks shared)", lambda: s.commit("three", tag="v3"))

    def reader(mirror: Path | None):  # noqa: ANN202
        if mirror is None:
            return rt.open(where)
        return store_mod.Store(where, _backend=ObjectStoreBackend(where, cache_root=mirror))

    fresh = cache / "fresh" if cache else None
    r = step("open + log (empty mirror)", lambda: (lambda st: (st, st.log()))(reader(fresh))[0])
    step("rows v2 (empty mirror)", lambda: r.rows("v2").num_rows)
    from rowtrail.backends import objectstore

    objectstore._VIEWS.clear()  # as a new process would: no journal view in memory, only the mirror on disk
    r2 = step("open + log (warm mirror)", lambda: (lambda st: (st, st.log()))(reader(fresh))[0])
    step("rows v2 (warm mirror)", lambda: r2.rows("v2").num_rows)
    step("diff v1 v2", lambda: len((r2.version("v2").provenance_set() - r2.version("v1").provenance_set()).rows_added))
    rep = step("verify", lambda: s.verify())
    assert rep.ok, rep.problems
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--lock", choices=["conditional", "lease"], default="conditional", help="how S3 writers keep each other out")
    ap.add_argument("--settle", type=float, default=1.0, help="lease mode: seconds a claim settles (ROWTRAIL_S3_LEASE_SETTLE)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = ap.parse_args()

    from moto.server import ThreadedMotoServer

    counter = Counter()
    log = logging.getLogger("werkzeug")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(counter)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    work = Path(tempfile.mkdtemp(prefix="rowtrail-s3bench-"))
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        ROWTRAIL_HOME=str(work / "home"),
        ROWTRAIL_CACHE=str(work / "cache"),
    )
    os.environ.pop("ROWTRAIL_SIGNING_KEY", None)
    import boto3

    boto3.client("s3").create_bucket(Bucket="rowtrail-bench")
    import rowtrail as rt

    rt.keygen()
    try:
        local = session(str(work / "local"), args.rows, None, None)
        counter.take()
        if args.lock == "lease":
            os.environ.update(ROWTRAIL_S3_LOCK="lease", ROWTRAIL_S3_LEASE_SETTLE=str(args.settle))
        s3 = session("s3://rowtrail-bench/store", args.rows, counter, work / "cache")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"rows: {args.rows:,}   lock: {args.lock}   python {sys.version.split()[0]}   load average {os.getloadavg()[0]:.1f}")
    print(f"{'command':44} {'local s':>8} {'s3 s':>8} {'ratio':>6}  requests on S3")
    for (name, tl, _), (_, ts, req) in zip(local, s3):
        total = sum(req.values())
        detail = ", ".join(f"{k} {v}" for k, v in req.items())
        print(f"{name:44} {tl:8.2f} {ts:8.2f} {ts / tl if tl > 0 else float('nan'):6.1f}  {total:5d}  ({detail})")
    sys.path.insert(0, str(Path(__file__).parent))
    from corpus import append_result

    entry = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": args.rows,
        "lock": args.lock,
        "settle": args.settle if args.lock == "lease" else None,
        "load_average": os.getloadavg()[0],
        "commands": [
            {"command": name, "local_s": round(tl, 3), "s3_s": round(ts, 3), "requests": sum(req.values()), "by_kind": req}
            for (name, tl, _), (_, ts, req) in zip(local, s3)
        ],
    }
    print("results:", append_result(args.out, "s3_requests", entry))


if __name__ == "__main__":
    main()
