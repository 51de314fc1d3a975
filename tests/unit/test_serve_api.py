"""The HTTP API of ``rowtrail serve`` over a real store (FastAPI's TestClient drives the real app
in-process): answers agree with the library, pages are bounded, bad input gets 404/422 with a
message, the token guards every route, the store is never written, and the CLI refuses to expose a
store without a token."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import rowtrail as rt
from rowtrail import hashing
from rowtrail.ops.runs import save_run

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from rowtrail.serve import create_app  # noqa: E402

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture
def store(tmp_store, write_jsonl):
    s = tmp_store
    s.sources.add("docs", kind="crawl", license="CC-BY-4.0", legal_basis="tdm-exception", uri="https://example.org")
    s.sources.add("sft", kind="teacher-model", license="Apache-2.0", legal_basis="own model output", generator="teacher-1")
    s.ingest(
        write_jsonl([{"id": i, "text": f"document number {i} " + "x" * (i % 7)} for i in range(40)], "docs.jsonl"),
        source="docs",
        key_field="id",
        attributes=["lane=id"],
    )
    s.ingest(
        write_jsonl([{"id": i, "prompt": f"q{i}", "response": f"answer {i}"} for i in range(25)], "sft.jsonl"), source="sft", key_field="id"
    )
    s.commit("first", tag="v1")
    s.ingest(
        write_jsonl([{"id": i, "text": f"document number {i} " + "x" * (i % 7)} for i in range(30, 60)], "docs2.jsonl"),
        source="docs",
        key_field="id",
        replace=True,
        yes=True,
    )
    s.apply([rt.steps.filter("source_id <> 'docs' OR length(text) > 20", reason="too-short")])
    s.commit("second", tag="v2")
    return s


@pytest.fixture
def client(store):
    with TestClient(create_app(store.path, verify_on_start=False)) as c:
        yield c


def test_versions_diff_and_sources_agree_with_the_library(client, store):
    versions = client.get("/api/versions").json()
    assert [v["tag"] for v in versions] == ["v2", "v1"]
    assert versions[0]["signed"] and versions[0]["signer"]["keys"][0]["trusted"]
    v2 = client.get("/api/versions/v2").json()
    assert v2["record"]["content"]["merkle_root"] == store.version("v2").content["merkle_root"]
    assert v2["steps"][0]["name"] == "filter" and v2["per_source"]["sft"]["rows"] == 25
    assert client.get("/api/versions/v2/attestation").json()["payloadType"] == "application/vnd.in-toto+json"
    assert client.get(f"/api/versions/{v2['version_id'][:12]}").json()["tag"] == "v2"

    d = client.get("/api/diff", params={"a": "v1", "b": "v2"}).json()
    lib = store.version("v2").provenance_set() - store.version("v1").provenance_set()
    assert (d["rows_added"], d["rows_removed"]) == (len(lib.rows_added), len(lib.rows_removed)) and d["rows_removed"] > 0
    got = []
    for offset in range(0, d["rows_removed"], 7):
        page = client.get("/api/diff/rows", params={"a": "v1", "b": "v2", "kind": "removed", "offset": offset, "limit": 7}).json()
        assert page["total"] == d["rows_removed"]
        got += [r["row_id"] for r in page["rows"]]
        assert {r["source_id"] for r in page["rows"]} == {"docs"}
    assert got == lib.rows_removed.to_pylist()

    src = {s["source_id"]: s for s in client.get("/api/sources").json()}
    assert src["sft"]["legal_basis"] == "own model output" and src["docs"]["license"] == "CC-BY-4.0"
    assert client.get("/api/sources/nope").status_code == 404


def test_rows_pages_read_only_their_chunks_and_match_store_rows(client, store):
    want = store.rows("v2").column("row_id").to_pylist()
    got = []
    for offset in range(0, len(want) + 10, 13):
        page = client.get("/api/versions/v2/rows", params={"offset": offset, "limit": 13}).json()
        assert page["total"] == len(want)
        got += [r["row_id"] for r in page["rows"]]
    assert got == want
    want = store.rows("v2", source="docs").column("row_id").to_pylist()
    got = []
    for offset in (0, 7, 14, 21, 28, 35):  # pages of one source, in id order, and a page past its end
        page = client.get("/api/versions/v2/rows", params={"source": "docs", "offset": offset, "limit": 7}).json()
        assert page["total"] == len(want)
        got += [r["row_id"] for r in page["rows"]]
    assert got == want and len(want) < 35
    page = client.get("/api/versions/v2/rows", params={"source": "sft", "limit": 1000}).json()
    assert page["total"] == 25 and {r["source_id"] for r in page["rows"]} == {"sft"}
    assert page["content_columns"] == ["prompt", "response"] and page["rows"][0]["content"]["response"].startswith("answer")
    for bad in ({"limit": 1001}, {"limit": 0}, {"offset": -1}, {"source": "a b"}):
        r = client.get("/api/versions/v2/rows", params=bad)
        assert r.status_code == 422 and r.json()["message"], bad
    r = client.get("/api/versions/v9/rows")
    assert r.status_code == 404 and "no version, tag or ref 'v9'" in r.json()["detail"]


def test_row_trace_graph_why_and_proofs(client, store):
    rows = store.rows("v1", source="docs").to_pylist()
    short = next(r for r in rows if len(r["text"]) <= 20 and int(r["source_key"]) >= 30)  # re-ingested, then dropped by v2's filter
    rid = short["row_id"]
    t = client.get(f"/api/rows/{rid}").json()
    assert t["content"] == {"text": short["text"]} and t["source"]["source_id"] == "docs"
    g = client.get(f"/api/rows/{rid}/graph").json()
    kinds = {n["kind"] for n in g["nodes"]}
    assert {"source", "ingest", "focus", "version", "drop"} <= kinds
    ids = {n["id"] for n in g["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in g["edges"])
    assert any(n["kind"] == "drop" and "too-short" in n["label"] for n in g["nodes"])
    why = client.get(f"/api/rows/{rid}/why", params={"version": "v2"}).json()
    assert not why["in_version"] and "too-short" in why["explanation"]

    r = client.get(f"/api/rows/{rid}/proof", params={"version": "v1", "download": "true"})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert rt.verify_inclusion(r.json())
    assert rt.verify_exclusion(client.get(f"/api/rows/{rid}/proof", params={"version": "v2", "absent": "true"}).json())
    r = client.get(f"/api/rows/{rid}/proof", params={"version": "v2"})  # not in v2: no inclusion proof
    assert r.status_code == 400 and "exclusion" in r.json()["detail"]

    assert client.get("/api/rows/xyz").status_code == 422
    r = client.get("/api/rows/" + "ab" * 32)
    assert r.status_code == 404 and r.json()["error"] == "RefError" and "Traceback" not in r.text

    hits = client.get("/api/search", params={"q": short["source_key"]}).json()["hits"]
    assert rid in [h["row_id"] for h in hits if h["source_id"] == "docs"]
    hits = client.get("/api/search", params={"q": short["content_sha256"]}).json()["hits"]
    assert [h["row_id"] for h in hits] == [rid] and hits[0]["matched"] == "content_sha256"
    assert client.get("/api/search", params={"q": "x' OR 1=1 --"}).json()["hits"] == []


def _ledger(store):
    rows = store.rows("v2", source="sft", limit=6)
    ids = rows.column("row_id").to_pylist()
    raw = hashing.ids_from_hex(ids)
    col = pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), len(raw), [None, pa.py_buffer(raw.tobytes())])
    step = pa.array([0, 0, 0, 1, 1, 1], pa.int64())
    steps = pa.table({"step": step, "position": pa.array([0, 1, 2] * 2, pa.int32()), "row_id": col, "weight": pa.array([1.0] * 6)})
    meta = pa.table(
        {"step": pa.array([0, 1], pa.int64()), "lr": [0.5, 0.5], "loss": [1.0, 0.5], "batch_size": pa.array([3, 3], pa.int32())}
    )
    contrib = pa.table(
        {
            "step": step,
            "row_id": col,
            "group": pa.array(["fc"] * 6),
            "dot": pa.array(-np.array([1.0, 2, 3, 4, 5, 9])),
            "grad_norm": pa.array([1.0] * 6),
        }
    )
    groups = pa.table({"step": pa.array([0, 1], pa.int64()), "group": ["fc", "fc"], "delta_norm": [1.0, 1.0], "update_sq": [1.0, 1.0]})
    return ids, save_run(store, version="v2", config={"lr": 0.5}, steps=steps, step_meta=meta, groups=groups, contributions=contrib)


def test_governance_monitoring_and_runs(client, store):
    from rowtrail.exports.documents import gather
    from rowtrail.exports.transparency import _csv

    doc = client.get("/api/versions/v2/transparency").json()
    assert [s["source_id"] for s in doc["sources"]] == ["docs", "sft"] and doc["totals"]["rows"] == store.version("v2").row_count
    csv = client.get("/api/versions/v2/transparency.csv")
    assert csv.headers["content-type"].startswith("text/csv") and csv.content == _csv(gather(store, store.version("v2")))
    eu = client.get("/api/versions/v2/eu-ai-act").json()
    assert eu["markdown"].startswith("#") and eu["summary"]["version"]["tag"] == "v2"
    mon = client.get("/api/versions/v2/monitor").json()
    assert [s["name"] for s in mon["steps"]] == ["filter"] and mon["steps"][0]["rows_out"] < mon["steps"][0]["rows_in"]
    drops = client.get("/api/versions/v2/drops", params={"rows": 5}).json()
    assert drops["steps"][0]["by_reason"] == {"too-short": drops["total"]} and 0 < len(drops["rows"]) <= 5

    ids, run_id = _ledger(store)
    assert [r["run_id"] for r in client.get("/api/runs").json()] == [run_id]
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["groups"] == ["fc"] and run["version_id"] == store.version("v2").id
    top = client.get(f"/api/runs/{run_id}/attribution", params={"group": "fc", "top": 3}).json()["top"]
    assert top[0]["row_id"] == ids[5] and top[0]["contribution"] == pytest.approx(0.5 * 9) and top[0]["license"] == "Apache-2.0"
    by_src = client.get(f"/api/runs/{run_id}/attribution", params={"group": "fc", "by": "source"}).json()["top"]
    assert by_src[0]["source_id"] == "sft"
    assert client.get(f"/api/runs/{run_id}/attribution", params={"group": "nope"}).status_code == 404
    assert client.get("/api/runs/run-nope").status_code == 404
    assert client.get(f"/api/rows/{ids[5]}").json()["runs"][0]["run_id"] == run_id


def test_background_verify_reports_and_reruns_when_the_journal_moves(store, write_jsonl):
    with TestClient(create_app(store.path, verify_sample=None)) as c:
        st = _wait_verify(c)
        assert st["ok"] and st["report"]["checked"]["versions"] == 2 and st["sample"] is None
        store.ingest(write_jsonl([{"id": 1, "prompt": "p", "response": "r"}], "more.jsonl"), source="sft", key_field="id")
        store.commit("unsigned", tag="v3", sign=False)
        st = _wait_verify(c)
        assert st["ok"] is False and any("v3" in p["problem"] or "sign" in p["problem"] for p in st["report"]["problems"])


def _wait_verify(c: TestClient) -> dict:
    deadline = time.monotonic() + 120  # a full verify of this small store takes about a second; CI machines are shared
    st: dict = {}
    while time.monotonic() < deadline:
        st = c.get("/api/verify").json()
        if st["state"] in ("done", "failed"):
            return st
        time.sleep(0.05)
    raise AssertionError(f"verify did not finish: {st}")


def test_token_guards_every_route_and_is_set_as_a_cookie(store):
    with TestClient(create_app(store.path, token=TOKEN, verify_on_start=False)) as c:
        for path in ("/", "/api/versions", "/openapi.json", "/static/app.js"):
            r = c.get(path)
            assert r.status_code == 401 and "default-src 'self'" in r.headers["content-security-policy"], path
        assert c.get("/api/versions", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/versions", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/?token=wrong").status_code == 401
        r = c.get(f"/?token={TOKEN}", follow_redirects=False)
        assert (
            r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
        )
        assert c.get("/api/versions").status_code == 200  # the cookie now


def test_pages_and_headers(client):
    r = client.get("/")
    assert r.status_code == 200 and '<script src="/static/app.js"' in r.text and "<script>" not in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert client.get("/static/app.js").headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert client.get("/static/..%2Fapp.py").status_code == 404
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/docs").status_code == 404  # Swagger UI would pull a CDN
    js = (Path(rt.__file__).parent / "serve" / "static" / "app.js").read_text()
    assert "innerHTML" not in js.replace("no innerHTML", "") and "eval(" not in js


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def test_the_server_never_writes_to_the_store(store, client):
    before = _snapshot(store.path)
    rid = store.rows("v2", limit=1).column("row_id")[0].as_py()
    for path in (
        "/api/store",
        "/api/versions",
        "/api/versions/v2",
        "/api/versions/v2/manifest",
        "/api/versions/v2/rows",
        "/api/diff?a=v1&b=v2",
        f"/api/rows/{rid}",
        f"/api/rows/{rid}/graph",
        f"/api/rows/{rid}/why",
        f"/api/rows/{rid}/proof?version=v2",
        "/api/versions/v2/drops",
        "/api/versions/v2/monitor",
        "/api/versions/v2/transparency",
        "/api/versions/v2/eu-ai-act",
        "/api/runs",
        "/api/sources",
        "/api/verify",
    ):
        assert client.get(path).status_code == 200, path
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/api/versions").status_code == 405
    assert _snapshot(store.path) == before


def test_cli_refuses_to_expose_a_store_without_a_token(store, capsys):
    from rowtrail.cli.app import main
    from rowtrail.cli.serve import is_loopback

    for argv, message in (
        (["--store", str(store.path), "serve", "--host", "0.0.0.0"], "--token"),
        (["--store", str(store.path), "serve", "--host", "0.0.0.0", "--token", "short"], "at least 16"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 1 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--store", str(store.path), "serve", "--token", TOKEN, "--no-auth"])
    assert exc.value.code == 2
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("::1")
        and is_loopback("localhost")
        and not is_loopback("0.0.0.0")
        and not is_loopback("example.org")
    )


def test_importing_the_serve_package_does_not_import_fastapi():
    code = "import sys, rowtrail, rowtrail.serve, rowtrail.cli.app; print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def shout(text):
    return text.upper()


def test_lineage_graph_follows_a_row_a_step_rewrote_into_the_version(tmp_store, write_jsonl):
    s = tmp_store
    s.sources.add("docs", kind="crawl", license="CC0-1.0", legal_basis="public-domain")
    s.ingest(write_jsonl([{"id": i, "text": f"row {i}"} for i in range(3)]), source="docs", key_field="id")
    s.apply([rt.steps.rewrite(shout, name="shout", version="1", field="text")])
    s.commit("shouted", tag="v1")
    child = s.rows("v1").to_pylist()[0]
    with TestClient(create_app(s.path, verify_on_start=False)) as c:
        parent = c.get(f"/api/rows/{child['row_id']}").json()["derived_from"][0]["row_id"]
        g = c.get(f"/api/rows/{parent}/graph").json()
        nodes = {n["id"]: n for n in g["nodes"]}
        assert nodes[f"row:{parent}"]["kind"] == "focus" and nodes[f"row:{child['row_id']}"]["kind"] == "row"
        edges = {(e["source"], e["target"]): e["label"] for e in g["edges"]}
        assert "shout (modified)" in edges[(f"row:{parent}", f"row:{child['row_id']}")]
        v1 = s.version("v1").id
        assert (f"row:{child['row_id']}", f"version:{v1}") in edges and (f"row:{parent}", f"version:{v1}") not in edges
        g = c.get(f"/api/rows/{child['row_id']}/graph").json()  # from the child: back to its parent and source
        layers = {n["id"]: n["layer"] for n in g["nodes"]}
        assert layers["source:docs"] < layers[f"row:{parent}"] < layers[f"row:{child['row_id']}"] < layers[f"version:{v1}"]


def test_memo_computes_a_key_once_for_concurrent_callers():
    import threading

    from rowtrail.serve.queries import Memo

    memo, calls, out = Memo(4), [], []

    def make():
        calls.append(1)
        time.sleep(0.2)
        return "facts"

    threads = [threading.Thread(target=lambda: out.append(memo.get("v1", make))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == ["facts"] * 4 and len(calls) == 1
    for k in range(6):
        memo.get(k, lambda k=k: k)
    assert memo.get("v1", lambda: "again") == "again"  # evicted: capacity 4


def test_store_pool_lends_warm_stores_and_bounds_concurrent_readers(store):
    import threading

    from rowtrail.serve.app import StorePool

    pool = StorePool(store.path, size=2)
    with pool.lend() as a, pool.lend() as b:
        assert a is not b
        got = []
        t = threading.Thread(target=lambda: got.append(pool.lend().__enter__()))
        t.start()
        t.join(0.3)
        assert t.is_alive() and got == []  # a third reader waits for a free store
    t.join(5)
    assert got and got[0] in (a, b)
    with pool.lend() as c:
        assert c in (a, b)  # no new store: the pool reuses its warm ones
