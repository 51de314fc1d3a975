"""Fixtures for the end-to-end tests of ``rowtrail serve``: the demo store (examples/demo, built once
per session in-process through the Python API, as examples/demo.sh builds it through the CLI, plus
one recorded training ledger), a real ``rowtrail serve`` subprocess on a free loopback port, and
headless Chromium (Debian's ``/usr/bin/chromium``) driven by Playwright.

Nothing is mocked: real Parquet, real DuckDB, real Ed25519 keys, a real uvicorn server, a real browser.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def build_demo_store(root: Path) -> dict[str, Any]:
    """The demo's v37 → v38 → v39 (pipeline) → v40 (opt-out), signed with a fresh key under
    ``root/home`` (the caller sets ROWTRAIL_HOME), and a training ledger on v39."""
    import numpy as np
    import pyarrow as pa

    import rowtrail as rt
    from rowtrail import hashing
    from rowtrail.ops.runs import save_run
    from rowtrail.steps import load_pipeline

    rt.keygen()
    store = rt.init(root / "store")
    store.sources.import_(DEMO / "sources.csv")
    sft = dict(
        source_field="benchmark",
        key_field="id",
        content_fields=["prompt", "response"],
        attributes=["teacher", "lane", "generated_at", "score"],
        hash_fields=["prompt"],
    )
    store.ingest(str(DEMO / "born-sft-v1.jsonl"), **sft)
    store.ingest(str(DEMO / "opus-traces.jsonl"), source="opus-traces", key_field="trace_id", content_fields=["prompt", "response"])
    store.commit("first mix: MBPP+, DS-1000, Opus traces", tag="v37")
    store.ingest(str(DEMO / "born-sft-v2.jsonl"), **sft)
    store.ingest(str(DEMO / "crawl-2024-09.csv"), source="crawl-2024-09", key_field="url", content_fields=["text"], attributes=["lang"])
    store.remove(source="opus-traces", reason="consent withdrawn by the dataset owner")
    store.commit("refresh MBPP+ lane 9, add crawl 2024-09, drop Opus traces", tag="v38")
    store.apply(load_pipeline(DEMO / "pipeline.toml"))
    store.commit("v39: filter, strip boilerplate, dedupe, upsample lane 9", tag="v39")

    # a training ledger on v39 (two optimizer steps, one parameter group), as the recorder writes it
    rows = store.rows("v39", source="mbpp-plus", limit=8)
    ids = rows.column("row_id").to_pylist()
    raw = hashing.ids_from_hex(ids)
    col = pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), len(raw), [None, pa.py_buffer(raw.tobytes())])
    step = pa.array([0] * 4 + [1] * 4, pa.int64())
    steps = pa.table({"step": step, "position": pa.array([0, 1, 2, 3] * 2, pa.int32()), "row_id": col, "weight": pa.array([1.0] * 8)})
    meta = pa.table(
        {"step": pa.array([0, 1], pa.int64()), "lr": [0.1, 0.1], "loss": [1.0, 0.6], "batch_size": pa.array([4, 4], pa.int32())}
    )
    dots = -np.arange(8, 0, -1, dtype=np.float64)  # the first row's gradient agrees most with the update
    contrib = pa.table(
        {"step": step, "row_id": col, "group": pa.array(["head.weight"] * 8), "dot": pa.array(dots), "grad_norm": pa.array([1.0] * 8)}
    )
    groups = pa.table(
        {"step": pa.array([0, 1], pa.int64()), "group": ["head.weight"] * 2, "delta_norm": [1.0, 1.0], "update_sq": [1.0, 1.0]}
    )
    run_id = save_run(
        store, version="v39", config={"lr": 0.1, "model": "demo-mlp"}, steps=steps, step_meta=meta, groups=groups, contributions=contrib
    )

    store.optout(source="crawl-2024-09", reason="site owner opt-out, ticket 17", tag="v40", steps=load_pipeline(DEMO / "pipeline.toml"))

    # output search over v39 (spans and BM25 indexes, stored in the store and bound to the version)
    from rowtrail.search import build_index

    build_index(store, "v39", ["spans", "lexical"])

    # helpfulness ratings with one drifting annotator, as their own corpus
    from rowtrail.feedback import annotations, guidelines, synth

    S = synth.generate()
    (root / "g1.md").write_text("# Helpfulness, v1\n\nRate 1 (useless) to 5 (excellent).\n")
    (root / "g2.md").write_text("# Helpfulness, v2\n\nRate 1 (useless) to 5 (excellent).\nA 5 needs a cited source.\n")
    guidelines.add(store, root / "g1.md", 1)
    guidelines.add(store, root / "g2.md", 2)
    store.sources.add("acme-ratings", kind="annotation-batch", license="LicenseRef-acme-internal", legal_basis="contract")
    annotations.import_annotations(store, synth.write_plain(S.records, root / "ratings.jsonl"), source="acme-ratings", corpus="feedback")
    store.commit("helpfulness ratings as collected", tag="ratings-1", corpus="feedback")
    return {"store": store.path, "run_id": run_id, "trained_row": ids[0], "drifter": S.truth["drifting"]}


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo store; ROWTRAIL_HOME and the working directory are changed only while it is built."""
    root = tmp_path_factory.mktemp("serve-demo")
    saved = {k: os.environ.get(k) for k in ("ROWTRAIL_HOME", "ROWTRAIL_STORE", "ROWTRAIL_SIGNING_KEY")}
    os.environ["ROWTRAIL_HOME"] = str(root / "home")
    os.environ.pop("ROWTRAIL_STORE", None)
    os.environ.pop("ROWTRAIL_SIGNING_KEY", None)
    cwd = os.getcwd()
    os.chdir(DEMO)  # the pipeline's user function is found relative to the pipeline file, the CSVs by name
    try:
        info = build_demo_store(root)
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    info["home"] = root / "home"
    info["root"] = root
    return info


SERVER_OUTPUT: dict[str, collections.deque[str]] = {}
"""The last lines each test server wrote (stdout and stderr), by base URL, for failure messages."""


def _drain(stream: Any, sink: collections.deque[str]) -> None:
    for line in stream:
        sink.append(line)


def start_server(store: Path, home: Path, *extra: str, timeout: float = 30.0) -> tuple[subprocess.Popen[str], str]:
    """``rowtrail serve`` on a free loopback port; returns the process and its base URL. Its output
    is read for as long as it runs (a pipe nobody reads would stop the server once full) and its
    last lines are kept in ``SERVER_OUTPUT[url]``."""
    env = dict(os.environ, ROWTRAIL_HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop("ROWTRAIL_STORE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rowtrail", "--store", str(store), "serve", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out: collections.deque[str] = collections.deque(maxlen=400)
    assert proc.stdout is not None and proc.stderr is not None
    threading.Thread(target=_drain, args=(proc.stderr, out), daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out.append(line)
        m = re.match(r"serving (http://\S+/)", line)
        if m:
            threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True).start()
            SERVER_OUTPUT[m.group(1)] = out
            return proc, m.group(1)
    proc.kill()
    proc.wait(timeout=10)
    raise RuntimeError(f"rowtrail serve did not start: {''.join(out)[-2000:]}")


@pytest.fixture(name="start_server", scope="session")
def start_server_fixture() -> Any:
    """``start_server(store, home, *args)`` → (process, base URL); the caller ends the process."""
    return start_server


@pytest.fixture(scope="session")
def server(demo: dict[str, Any]) -> Iterator[str]:
    proc, url = start_server(demo["store"], demo["home"])
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium before the tests")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("response", lambda r: problems.append(f"HTTP {r.status} from {r.url}") if r.status >= 500 else None)
    pg.problems = problems  # type: ignore[attr-defined]
    pg.server_output = SERVER_OUTPUT  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        ctx.close()
