"""Screenshots of the explorer's main pages, for docs/serve.md and the README.

    python docs/img/make_screenshots.py            # writes docs/img/serve-*.png

Builds the demo store exactly as the browser tests do (tests/e2e/conftest.py: examples/demo through
v40, a training ledger, output-search indexes, annotator ratings) in a temporary directory, starts
``rowtrail serve`` on a free loopback port and drives Debian's chromium (Playwright) through the pages.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _fixtures():  # tests/e2e/conftest.py, loaded by path (it is not a package)
    spec = importlib.util.spec_from_file_location("serve_e2e_fixtures", ROOT / "tests" / "e2e" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def main(out: Path = HERE) -> list[Path]:
    from playwright.sync_api import sync_playwright

    fx = _fixtures()
    root = Path(tempfile.mkdtemp(prefix="rowtrail-shots-"))
    os.environ["ROWTRAIL_HOME"] = str(root / "home")
    os.environ.pop("ROWTRAIL_STORE", None)
    os.environ.pop("ROWTRAIL_SIGNING_KEY", None)
    cwd = os.getcwd()
    os.chdir(fx.DEMO)
    try:
        demo = fx.build_demo_store(root)
    finally:
        os.chdir(cwd)
    proc, url = fx.start_server(demo["store"], root / "home")
    written = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=fx.CHROMIUM, args=fx.CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 820})

            def shot(name: str, fragment: str | None = None, wait: str | None = None, full: bool = False) -> None:
                if fragment is not None:
                    page.goto(url + fragment)
                page.wait_for_selector("body[data-ready]")
                if wait:
                    page.wait_for_selector(wait)
                page.wait_for_timeout(250)
                path = out / f"serve-{name}.png"
                page.screenshot(path=str(path), full_page=full)
                written.append(path)

            page.goto(url + "#/")
            page.wait_for_selector("#timeline .badge:has-text('verified')")
            shot("timeline")
            shot("diff", "#/diff/v37/v38", "#diff-row-table a.row-link")
            page.click("#show-removed")
            page.wait_for_selector("#diff-row-table td:has-text('opus-traces')")
            page.locator("#diff-row-table a.row-link").first.click()
            page.wait_for_selector("#lineage-graph")
            page.wait_for_selector("#why p")
            shot("row", full=True)
            page.goto(url + "#/search?q=https%3A%2F%2Fexample.org%2Fdoc%2F42")
            page.wait_for_selector("#search-table a.row-link")
            page.locator("#search-table a.row-link").first.click()
            page.wait_for_selector("#lineage-graph")
            shot("row-pipeline", full=True)
            shot("transparency", "#/transparency/v39", "#transparency-table")
            shot("monitoring", "#/monitor/v39", "#counts-chart", full=True)
            shot("agreement", "#/agreement/ratings-1?by=week", "#agreement-chart", full=True)
            rows = page.evaluate("fetch('/api/versions/v39/rows?source=mbpp-plus&limit=1').then(r => r.json())")["rows"]
            page.goto(url + "#/output-search?version=v39")
            page.wait_for_selector("body[data-ready]")
            page.fill("#output-text", "Sure! " + rows[0]["content"]["response"][:160] + " Hope this helps.")
            page.click("#output-go")
            page.wait_for_selector("#spans-table a.row-link")
            shot("output-search", full=True)
            shot("run", f"#/run/{demo['run_id']}", "#attribution-table")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return written


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
