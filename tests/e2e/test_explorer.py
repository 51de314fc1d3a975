"""The web explorer in a real browser (headless Debian chromium, Playwright) against a real
``rowtrail serve`` on loopback over the demo store: the timeline, a diff of two versions, a row
opened from the diff with its lineage graph, its proof downloaded and verified, the transparency
table sorted, filtered and downloaded, monitoring, runs and search — with no script error and no
CSP violation on any page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

import rowtrail as rt


def wait(page: Any, selector: str) -> None:
    """Wait for ``selector``; on a timeout, fail with what the page shows, its script errors and
    failed requests, and the server's last output."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(selector)
    except PlaywrightTimeout:
        shown = page.locator("main").inner_text(timeout=5_000)[:2000]
        server = next((out for url, out in page.server_output.items() if page.url.startswith(url)), [])
        raise AssertionError(
            f"{selector!r} did not appear on {page.url}\npage shows: {shown}\nproblems: {page.problems}\n"
            f"server output: {''.join(server)[-4000:]}"
        ) from None


def ready(page: Any, fragment: str, base: str) -> None:
    page.goto(base + fragment)
    wait(page, "body[data-ready]")


def no_problems(page: Any) -> None:
    assert page.problems == [], page.problems


def test_timeline_diff_row_lineage_and_proof(page, server, demo, tmp_path):
    ready(page, "#/", server)
    tags = page.locator("#timeline li .tag").all_inner_texts()
    assert tags == ["v40", "v39", "v38", "v37"]
    assert page.locator("#timeline li").first.locator(".badge", has_text="signed by trusted key").count() == 1
    wait(page, "#timeline .badge:has-text('verified')")  # the background verify finished and passed

    # diff two versions picked on the timeline
    page.check("input[data-ref='v37']")
    page.check("input[data-ref='v38']")
    page.click("#compare")
    wait(page, "#diff-row-table a.row-link")
    assert page.locator("h1").inner_text() == "Diff v37 → v38"
    sources = page.locator("#diff-sources").inner_text()
    assert "crawl-2024-09" in sources and "opus-traces" in sources
    assert page.locator("#diff-bars rect.bar-added").count() == 3 and page.locator("#diff-bars text", has_text="+80").count() == 1
    page.click("#show-removed")
    wait(page, "#diff-row-table td:has-text('opus-traces')")
    removed = page.locator("#diff-row-table a.row-link").first.inner_text()

    # open a row from the diff: it left v38 (consent withdrawn), so it is in v37 only
    page.locator("#diff-row-table a.row-link").first.click()
    wait(page, "#lineage-graph")
    assert page.locator("#row-id").inner_text() == removed
    kinds = page.locator("#lineage-graph g.node").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert {"source", "ingest", "focus", "version", "drop"} <= set(kinds)
    assert page.locator("#lineage-graph g.node.version text", has_text="v37").count() == 1
    assert page.locator("#lineage-graph path.edge").count() >= 4
    assert "consent withdrawn" in page.locator("#lineage-graph").text_content()  # the drop, with its reason

    # download its inclusion proof for v37 and verify it, in Python and with the CLI
    page.select_option("#proof-version", label="v37 (holds it)")
    with page.expect_download() as dl:
        page.click("#download-proof")
    path = tmp_path / "proof.json"
    dl.value.save_as(path)
    proof = json.loads(path.read_text())
    assert proof["row_id"] == removed and rt.verify_inclusion(proof)
    env = dict(os.environ, ROWTRAIL_HOME=str(demo["home"]))
    p = subprocess.run(
        [sys.executable, "-m", "rowtrail", "--store", str(demo["store"]), "check-proof", str(path)], capture_output=True, text=True, env=env
    )
    assert p.returncode == 0 and "inclusion proof verifies" in p.stdout, p.stdout + p.stderr

    # and an exclusion proof for v38, which dropped it
    page.select_option("#proof-version", label="v38 (does not)")
    assert "exclusion" in page.locator("#proof-kind").inner_text()
    with page.expect_download() as dl:
        page.click("#download-proof")
    dl.value.save_as(path)
    assert rt.verify_exclusion(json.loads(path.read_text()))
    wait(page, "#why:has-text('is NOT in v38')")
    no_problems(page)


def test_transparency_table_sorts_filters_and_downloads(page, server):
    ready(page, "#/transparency/v39", server)
    table = "#transparency-table"
    first_col = f"{table} tbody tr td:first-child"
    page.click(f"{table} th[data-key='rows']")
    rows_asc = [int(x.replace(",", "")) for x in page.locator(f"{table} tbody tr td:nth-child(2)").all_inner_texts()]
    assert rows_asc == sorted(rows_asc) and len(rows_asc) == 3
    page.click(f"{table} th[data-key='rows']")
    rows_desc = [int(x.replace(",", "")) for x in page.locator(f"{table} tbody tr td:nth-child(2)").all_inner_texts()]
    assert rows_desc == sorted(rows_asc, reverse=True)
    assert page.locator(f"{table} th[data-key='rows']").get_attribute("class").endswith("sorted-desc")
    page.click(f"{table} th[data-key='source_id']")
    assert page.locator(first_col).all_inner_texts() == ["crawl-2024-09", "ds-1000", "mbpp-plus"]
    page.fill("#transparency-table-filter", "apache")
    assert page.locator(first_col).all_inner_texts() == ["mbpp-plus"]
    with page.expect_download() as dl:
        page.click("#transparency-csv")
    text = Path(dl.value.path()).read_text()
    assert text.startswith("table,name,rows,") and "sources,crawl-2024-09," in text
    no_problems(page)


def test_monitoring_drops_runs_and_search(page, server, demo):
    ready(page, "#/monitor/v39", server)
    assert page.locator("#counts-chart rect").count() >= 10
    assert page.locator("svg.proportions-chart").count() >= 1
    ready(page, "#/drops/v39", server)
    assert "too-short" in page.locator("main").inner_text()
    ready(page, "#/eu-ai-act/v40", server)
    assert "crawl" in page.locator("#eu-ai-act").inner_text().lower()

    ready(page, "#/runs", server)
    page.click(f"#runs-table a:has-text('{demo['run_id']}')")
    wait(page, "#attribution-table")
    first = page.locator("#attribution-table tbody tr").first
    assert demo["trained_row"][:16] in first.inner_text() and "mbpp-plus" in first.inner_text() and "Apache-2.0" in first.inner_text()

    page.fill("#search-input", "https://example.org/doc/42")
    page.press("#search-input", "Enter")
    wait(page, "#search-table a.row-link")
    assert "crawl-2024-09" in page.locator("#search-table").inner_text()
    no_problems(page)


HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def test_row_content_is_text_never_markup(page, demo, tmp_path, write_jsonl, start_server, monkeypatch):
    """A row whose content is HTML is shown as its text: no element is made from it, nothing runs."""
    monkeypatch.setenv("ROWTRAIL_HOME", str(demo["home"]))  # sign with the demo's key
    monkeypatch.delenv("ROWTRAIL_SIGNING_KEY", raising=False)
    s = rt.init(tmp_path / "hostile")
    s.sources.add("web", kind="crawl", license="CC0-1.0", legal_basis="public-domain")
    s.ingest(write_jsonl([{"id": 1, "text": HOSTILE}]), source="web", key_field="id")
    s.commit("hostile content", tag="h1")
    rid = s.rows("h1").column("row_id")[0].as_py()
    proc, url = start_server(s.path, demo["home"])
    try:
        page.goto(f"{url}#/row/{rid}")
        wait(page, "pre.content-field")
        assert page.locator("pre.content-field").inner_text() == HOSTILE
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
        r = httpx.get(url)
        assert "default-src 'self'" in r.headers["content-security-policy"] and "unsafe-inline" not in r.headers["content-security-policy"]
        no_problems(page)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_agreement_over_time_and_output_search(page, server, demo):
    ready(page, "#/agreement/ratings-1?by=week", server)
    assert page.locator("#agreement-chart polyline.series").count() >= 2
    drifting = page.locator("#annotators-table tbody tr", has=page.locator(".badge.bad"))
    assert drifting.count() == 1 and demo["drifter"] in drifting.inner_text()
    assert page.locator("#annotator-chart polyline.series").count() == 6  # one line per annotator, week by week
    assert page.locator("#annotator-chart text", has_text=f"{demo['drifter']} (drift)").count() == 1

    rows = httpx.get(server + "api/versions/v39/rows", params={"source": "mbpp-plus", "limit": 1}).json()["rows"]
    ready(page, "#/output-search?version=v39", server)
    assert "spans" in page.locator("main").inner_text()
    page.fill("#output-text", "Sure! " + rows[0]["content"]["response"][:160] + " Hope this helps.")
    page.click("#output-go")
    wait(page, "#spans-table a.row-link")
    assert page.locator("#spans-table a.row-link").first.inner_text() == rows[0]["row_id"][:16]
    assert "Apache-2.0" in page.locator("#spans-table").inner_text()
    no_problems(page)


def test_real_server_guards_host_and_token(demo, start_server):
    """The loopback server answers only loopback Host headers (DNS rebinding); with --token, nothing
    without the token — over real HTTP, against the real uvicorn process."""
    proc, url = start_server(demo["store"], demo["home"])
    try:
        assert httpx.get(url + "api/store").status_code == 200
        r = httpx.get(url + "api/store", headers={"Host": "attacker.example"})
        assert r.status_code == 400 and "store" not in r.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    token = "e2e-token-0123456789abcdef"
    proc, url = start_server(demo["store"], demo["home"], "--token", token)
    try:
        r = httpx.get(url + "api/versions")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(url + "api/versions", headers={"Authorization": f"Bearer {token}"}).json()[0]["tag"] == "v40"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
