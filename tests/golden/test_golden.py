"""Golden digests of a tiny fixture corpus: a change to hashing, canonical JSON, Merkle trees, chunking
or the version content shows up here, so it is a visible decision (update the pins on purpose)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

import rowtrail as rt

HERE = Path(__file__).parent
PINS = json.loads((HERE / "pins.json").read_text())


def build(tmp_path: Path) -> rt.Version:
    s = rt.init(tmp_path / "golden")
    s.sources.add("partner-x", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    s.sources.add("crawl-2024", kind="crawl", license="LicenseRef-web", legal_basis="tdm-exception")
    s.ingest(str(HERE / "fixture.jsonl"), source="partner-x", key_field="id", content_fields=["prompt", "response"])
    s.ingest(pa.table({"url": ["https://example.org/a?b=1", "https://example.org/c"], "text": ["", "Ünïcödé \t text"]}), source="crawl-2024", key_field="url")
    return s.commit("golden", tag="g1", sign=False)


def test_golden_digests(tmp_path, rowtrail_home):
    v = build(tmp_path)
    got = {
        "content_id": v.content_id,
        "merkle_root": v.content["merkle_root"],
        "content_root": v.content["content_root"],
        "inputs_root": v.content["inputs_root"],
        "weights_sha256": v.content["weights_sha256"],
        "per_source": v.content["per_source"],
        "row_ids": sorted(rt.open(tmp_path / "golden").rows("g1").column("row_id").to_pylist()),
    }
    assert got == PINS
