"""``rowtrail serve`` on a large store (slow; ``-m slow``): every page is paged or aggregated on the
server, so its cost does not grow with the version's size the way loading the version does.

    ROWTRAIL_SERVE_SCALE_ROWS=10000000 ROWTRAIL_SERVE_SCALE_DIR=/tmp/serve-10m \\
        python -m pytest -m slow -s tests/unit/test_serve_scale.py

builds (once, kept in the directory) a store of N rows from five sources in v1 and v2 = v1 with 1 %
of one source replaced, then times each endpoint through the real app (FastAPI's TestClient) next to
two baselines measured in the same run: loading the version's row records (what any "load all rows"
page would start with) and a DuckDB scan of the rows view for one source key.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROWS = int(os.environ.get("ROWTRAIL_SERVE_SCALE_ROWS", "1000000"))
SOURCES = ["s0", "s1", "s2", "s3", "s4"]


def _build(root: Path, n: int) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import rowtrail as rt
    from rowtrail.versions.signing import keygen

    os.environ["ROWTRAIL_HOME"] = str(root / "home")
    os.environ.pop("ROWTRAIL_SIGNING_KEY", None)
    if (root / "done").exists():
        return root / "store"
    if (root / "store").exists():  # a build that did not finish
        import shutil

        shutil.rmtree(root / "store")
        shutil.rmtree(root / "home", ignore_errors=True)
    keygen()
    s = rt.init(root / "store")
    for sid in SOURCES:
        s.sources.add(sid, kind="crawl", license="CC-BY-4.0", legal_basis="tdm-exception")
    ids = np.arange(n)
    table = pa.table(
        {
            "id": pa.array(ids),
            "src": pa.array(np.array(SOURCES)[ids % len(SOURCES)]),
            "text": pa.array([f"document {i} about provenance and the rows that shaped a model" for i in range(n)]),
        }
    )
    pq.write_table(table, root / "rows.parquet", row_group_size=1 << 20)
    t = time.perf_counter()
    s.ingest(str(root / "rows.parquet"), source_field="src", key_field="id", content_fields=["text"])
    s.commit("v1", tag="v1")
    print(f"\nbuilt v1 ({n} rows) in {time.perf_counter() - t:.1f} s")
    k = n // 100
    changed = pa.table(
        {"id": pa.array(ids[:k] * 5), "src": pa.array(["s0"] * k), "text": pa.array([f"revised document {i}" for i in range(k)])}
    )
    pq.write_table(changed, root / "changed.parquet")
    s.ingest(str(root / "changed.parquet"), source_field="src", key_field="id", content_fields=["text"])
    s.commit("v2: 1 % of s0 revised", tag="v2")
    (root / "done").write_text("ok")
    return root / "store"


def _time(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def test_pages_stay_fast_on_a_large_store(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    import rowtrail as rt
    from rowtrail.serve import create_app

    root = Path(os.environ.get("ROWTRAIL_SERVE_SCALE_DIR") or tmp_path)
    root.mkdir(parents=True, exist_ok=True)
    path = _build(root, ROWS)
    store = rt.open(path)
    v2 = store.version("v2")
    n = v2.row_count

    base_load, _ = _time(lambda: rt.open(path).version_rows(v2.id), repeat=1)
    key = str(n // 2 + 1)
    base_scan, _ = _time(lambda: rt.open(path).sql(f"SELECT row_id FROM rows WHERE source_key = '{key}'"), repeat=1)

    c = TestClient(create_app(path, verify_on_start=False, warm=False))  # time the cold computations
    get = lambda url: (lambda r: (r.raise_for_status(), r.json())[1])(c.get(url))  # noqa: E731
    figures: dict[str, float] = {}

    figures["versions"], _ = _time(lambda: get("/api/versions"))
    figures["rows page, cold (offset n/2)"], _ = _time(lambda: get(f"/api/versions/v2/rows?offset={n // 2}&limit=50"), repeat=1)
    figures["rows page, warm (offset n/3)"], page = _time(lambda: get(f"/api/versions/v2/rows?offset={n // 3}&limit=50"))
    assert len(page["rows"]) == 50 and page["total"] == n
    figures["rows page by source, first"], _ = _time(lambda: get("/api/versions/v2/rows?source=s3&offset=1000&limit=50"), repeat=1)
    figures["rows page by source, next"], page = _time(lambda: get("/api/versions/v2/rows?source=s3&offset=5000&limit=50"))
    assert {r["source_id"] for r in page["rows"]} == {"s3"}
    figures["diff v1→v2"], d = _time(lambda: get("/api/diff?a=v1&b=v2"), repeat=1)
    assert d["rows_added"] == d["rows_removed"] == ROWS // 100 // 5 or d["rows_added"] > 0
    figures["diff rows page"], _ = _time(lambda: get("/api/diff/rows?a=v1&b=v2&kind=added&offset=100&limit=50"))
    rid = page["rows"][0]["row_id"]
    figures["row trace"], _ = _time(lambda: get(f"/api/rows/{rid}"))
    figures["row lineage graph"], _ = _time(lambda: get(f"/api/rows/{rid}/graph"))
    figures["row proof"], proof = _time(lambda: get(f"/api/rows/{rid}/proof?version=v2"))
    assert rt.verify_inclusion(proof)
    figures["search by source key"], hits = _time(lambda: get(f"/api/search?q={key}"), repeat=1)
    assert hits["hits"]
    figures["transparency, first"], _ = _time(lambda: get("/api/versions/v2/transparency"), repeat=1)
    figures["transparency, cached"], _ = _time(lambda: get("/api/versions/v2/transparency"))
    t = time.perf_counter()
    rep = rt.open(path).verify(sample=1000)
    figures["background verify (--verify-sample 1000)"] = time.perf_counter() - t
    assert rep.ok, rep.problems

    print(
        f"\nstore of {n:,} rows (v2); baselines: load the version's row records {base_load:.3f} s, DuckDB scan of rows for one key {base_scan:.3f} s"
    )
    for name, secs in figures.items():
        print(f"  {name:45s} {secs * 1000:9.1f} ms   ({base_load / secs:8.1f}x faster than loading the records)")
    # a page that reads one page answers within a second, and (on a large store) faster than loading the version
    for name in (
        "rows page, warm (offset n/3)",
        "rows page by source, next",
        "diff rows page",
        "row trace",
        "row proof",
        "transparency, cached",
    ):
        assert figures[name] < max(base_load, 1.0), name
