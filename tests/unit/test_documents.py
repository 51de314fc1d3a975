"""Documents about a version — ``transparency``, ``eu-ai-act``, ``datacard`` — on real stores (the
demo corpus of examples/demo and built ones): every format written and read back with its own
parser, the EU summary's sections, the data card's pipeline, option errors, and 5,000 sources."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest

import rowtrail as rt
from rowtrail.errors import ExportError, ExportExistsError
from rowtrail.exports import base, datacard, eu_ai_act, transparency  # noqa: F401  (registers the documents)
from rowtrail.exports.documents import gather, md_cell
from rowtrail.steps import load_pipeline
from rowtrail.versions.signing import keygen

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
BORN = dict(source_field="benchmark", key_field="id", content_fields=["prompt", "response"], attributes=["teacher", "lane", "generated_at", "score"], hash_fields=["prompt"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo store of examples/demo.sh: v37 (MBPP+, DS-1000, Opus traces), v38 (MBPP+ refresh,
    crawl 2024-09 added, Opus traces removed), v39 (v38 through pipeline.toml). Built once: a real
    store, signed with a real key, as ``tmp_store`` makes them."""
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROWTRAIL_HOME", str(root / "home"))
        mp.delenv("ROWTRAIL_SIGNING_KEY", raising=False)
        keygen()
        s = rt.init(root / "store")
        s.sources.import_(DEMO / "sources.csv")
        s.ingest(str(DEMO / "born-sft-v1.jsonl"), **BORN)
        s.ingest(str(DEMO / "opus-traces.jsonl"), source="opus-traces", key_field="trace_id", content_fields=["prompt", "response"])
        s.commit("first mix: MBPP+, DS-1000, Opus traces", tag="v37")
        s.ingest(str(DEMO / "born-sft-v2.jsonl"), **BORN)
        s.ingest(str(DEMO / "crawl-2024-09.csv"), source="crawl-2024-09", key_field="url", content_fields=["text"], attributes=["lang"])
        s.remove(source="opus-traces", reason="consent withdrawn by the dataset owner")
        s.commit("refresh MBPP+ lane 9, add crawl 2024-09, drop Opus traces", tag="v38")
        mp.chdir(DEMO)  # pipeline.toml names cleaning.py relative to its directory
        s.apply(load_pipeline(DEMO / "pipeline.toml"))
        s.commit("v39: filter, strip boilerplate, dedupe, upsample lane 9", tag="v39")
    return s


def export(store, fmt, version, path=None, **options):
    return base.get(fmt).write(store, version, path, **options)


def read(store, fmt, version, path, **options) -> str:
    """Export to ``path`` and return the text written."""
    export(store, fmt, version, path, **options)
    return Path(path).read_text(encoding="utf-8")


# -- transparency ------------------------------------------------------------------------------------


def test_transparency_in_every_format_reads_back_with_shares_summing_to_one(demo, tmp_path):
    v = demo.version("v39")
    per_source = v.content["per_source"]
    res = export(demo, "transparency", "v39", tmp_path / "t.csv")
    assert res.details["document_format"] == "csv" and res.rows == 251 and res.version_id == v.id
    assert res.files[0]["bytes"] == (tmp_path / "t.csv").stat().st_size
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    srcs = [r for r in table if r["table"] == "sources"]
    assert {r["name"]: (int(r["rows"]), float(r["weight"])) for r in srcs} == {k: (n, w) for k, (n, w) in per_source.items()}
    assert sum(float(r["row_share"]) for r in srcs) == pytest.approx(1.0, abs=1e-12)
    assert sum(float(r["weight_share"]) for r in srcs) == pytest.approx(1.0, abs=1e-12)
    crawl = next(r for r in srcs if r["name"] == "crawl-2024-09")
    assert (crawl["kind"], crawl["license"], crawl["legal_basis"], crawl["collected"], crawl["snapshots"], crawl["owner"]) == (
        "crawl",
        "LicenseRef-mixed-web",
        "tdm-exception",
        "2024-09-01/2024-09-30",
        "crawl-2024-09@1",
        "crawl-team",
    )
    for attr in ("teacher", "lane"):
        part = [r for r in table if r["table"] == f"by:{attr}"]
        assert part and sum(int(r["rows"]) for r in part) == 251
        assert sum(float(r["weight_share"]) for r in part) == pytest.approx(1.0, abs=1e-12)
    lane9 = next(r for r in table if r["table"] == "by:lane" and r["name"] == "lane-9")
    assert (int(lane9["rows"]), float(lane9["weight"])) == (30, 60.0)  # upsampled ×2 by the pipeline

    export(demo, "transparency", "v39", tmp_path / "t.json")
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["version"]["version_id"] == v.id and doc["totals"]["rows"] == 251 and doc["totals"]["weight"] == 281
    assert sum(s["row_share"] for s in doc["sources"]) == pytest.approx(1.0) and sum(s["weight_share"] for s in doc["sources"]) == pytest.approx(1.0)
    assert {x["value"] for x in doc["breakdowns"]["teacher"]} == {"kimi-k2.6", "deepseek-v4-pro", None}

    export(demo, "transparency", "v39", tmp_path / "t.md")
    md = (tmp_path / "t.md").read_text()
    assert "| mbpp-plus | 160 | 63.75 % | 190 | 67.62 % | Apache-2.0 | licence | benchmark | human |" in md
    assert "## Rows by teacher" in md and "| lane-9 | 30 |" in md
    export(demo, "transparency", "v39", tmp_path / "t.txt")  # any other suffix: Markdown
    assert (tmp_path / "t.txt").read_text() == md


def test_transparency_by_option_and_a_refresh_after_the_version(demo, tmp_store, write_jsonl, tmp_path):
    doc = json.loads(read(demo, "transparency", "v38", tmp_path / "a.json", by="score,lang"))
    assert set(doc["breakdowns"]) == {"teacher", "lane", "score", "lang"}
    assert {x["value"]: x["rows"] for x in doc["breakdowns"]["lang"]} == {"en": 80, None: 250}
    with pytest.raises(ExportError, match=r"no attribute 'colour'.*declared attributes: .*teacher"):
        export(demo, "transparency", "v38", tmp_path / "b.json", by=["colour"])
    assert not (tmp_path / "b.json").exists()

    # the record of a source as of the version: a later refresh does not rewrite an old version's table
    tmp_store.sources.add("p", kind="partner-dump", license="MIT", legal_basis="contract", owner="ann")
    tmp_store.ingest(write_jsonl([{"id": i, "text": f"t{i}"} for i in range(3)]), source="p", key_field="id")
    tmp_store.commit("v1", tag="v1")
    tmp_store.sources.refresh("p", license="Apache-2.0")
    old = json.loads(read(tmp_store, "transparency", "v1", tmp_path / "v1.json"))
    assert old["sources"][0]["license"] == "MIT" and old["sources"][0]["snapshots"] == ["p@1"]


def test_options_and_targets_are_checked_before_anything_is_written(demo, tmp_path, capsys):
    out = tmp_path / "x.md"
    with pytest.raises(ExportError, match=r"no option 'provenance'.*options are: by, corpus, format"):
        export(demo, "transparency", "v38", out, provenance=True)
    with pytest.raises(ExportError, match=r"writes markdown, csv, json, not 'xml'"):
        export(demo, "transparency", "v38", out, format="xml")
    with pytest.raises(ExportError, match=r"writes markdown, json, not csv .*ends with \.csv"):
        export(demo, "eu-ai-act", "v38", tmp_path / "x.csv")
    with pytest.raises(ExportError, match=r"writes markdown, json, not 'csv'"):
        export(demo, "datacard", "v38", out, format="csv")
    with pytest.raises(ExportError, match=r"large_share must be"):
        export(demo, "eu-ai-act", "v38", out, large_share=3)
    with pytest.raises(ExportError, match=r"top_domains must be"):
        export(demo, "eu-ai-act", "v38", out, top_domains=0)
    assert list(tmp_path.iterdir()) == []
    out.write_text("old")
    with pytest.raises(ExportExistsError, match="--force"):
        export(demo, "datacard", "v38", out)
    assert out.read_text() == "old"
    res = base.get("datacard").write(demo, "v38", out, overwrite=True, format="json")  # explicit format wins over the suffix
    assert json.loads(out.read_text())["format"] == "rowtrail.datacard/1" and res.path == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.md"]  # no temporary files left
    res = export(demo, "transparency", "HEAD")  # no path: Markdown on stdout
    assert res.path is None and res.files == []
    assert capsys.readouterr().out.startswith("# Transparency table: main@v39")
    assert base.get("transparency").writes_stdout and base.for_path("x.md") is None  # .md names several documents


def test_markdown_cells_escape_what_would_break_a_table():
    assert md_cell("a|b\nc <script>") == "a\\|b c &lt;script&gt;"
    assert md_cell(None) == "" and md_cell(["x", "y"]) == "x, y"


# -- EU AI Act ---------------------------------------------------------------------------------------


def test_eu_ai_act_summary_of_the_demo_corpus(demo, tmp_path):
    export(demo, "eu-ai-act", "v37", tmp_path / "v37.json")
    s37 = json.loads((tmp_path / "v37.json").read_text())
    assert {e["source_id"]: e["kind"] for e in s37["2.1"]["large_datasets"]} == {"mbpp-plus": "benchmark", "ds-1000": "benchmark"}
    assert all(e["uri"].startswith("https://") and e["rows"] > 0 for e in s37["2.1"]["large_datasets"])
    synth = {e["source_id"]: e["generator"] for e in s37["2.5"]["sources"]}
    assert synth == {"opus-traces": "claude-opus"}
    models = {m["model"]: m for m in s37["2.5"]["generating_models"]}
    assert models["claude-opus"]["sources"] == ["opus-traces"] and models["claude-opus"]["rows"] == 60
    assert {"kimi-k2.6", "deepseek-v4-pro"} <= set(models)  # teacher models declared on the rows
    assert not s37["2.3"]["used"] and not s37["2.2"]["used"] and not s37["2.4"]["used"]

    export(demo, "eu-ai-act", "v38", tmp_path / "v38.json")
    s38 = json.loads((tmp_path / "v38.json").read_text())
    facts = gather(demo, demo.version("v38"))
    assert set(s38) >= {"1.1", "1.2", "1.3", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "3.1", "3.2", "3.3"}
    s13 = s38["1.3"]
    assert s13["modalities"]["text"] and s13["text_size_band"] == "less than 1 billion tokens"
    assert s13["estimated_text_tokens"] == facts.bytes // 4 and s13["content_bytes"] == facts.bytes > 0
    assert re.fullmatch(r"\d\d/\d{4}", s13["latest_acquisition"])
    assert s13["languages"] == [{"language": "en", "rows": 80, "bytes": facts.source("crawl-2024-09").bytes}]
    crawl = s38["2.3"]
    assert [e["source_id"] for e in crawl["sources"]] == ["crawl-2024-09"] and crawl["sources"][0]["collection_period"] == "2024-09-01/2024-09-30"
    assert crawl["top_domains"][0]["domain"] == "example.org" and crawl["top_domains"][0]["rows"] == 80
    assert "opus-traces" not in json.dumps(s38["2.5"])  # removed in v38
    assert s38["3.1"]["optout_summary"] == "no opt-out requests recorded" and s38["3.1"]["sources_relying_on_tdm_exception"] == ["crawl-2024-09"]
    tbc = {(x["section"], x["field"]) for x in s38["to_be_completed_by_provider"]}
    assert ("1.1", "provider name and contact details") in tbc and any(sec == "1.2" and "model name" in f for sec, f in tbc)
    assert s38["1.1"]["provider_name_and_contact"] is None and s38["1.2"]["model_name"] is None  # never invented

    export(demo, "eu-ai-act", "v38", tmp_path / "v38.md")
    md = (tmp_path / "v38.md").read_text()
    for text in ("### 2.1 Publicly available datasets", "| mbpp-plus | benchmark | https://github.com/evalplus/mbppplus | 160 |", "| example.org | 80 |",
                 "Latest date of data acquisition: ", "no opt-out requests recorded", "## To be completed by the provider", "- 1.1 provider name and contact details"):
        assert text in md
    md37 = read(demo, "eu-ai-act", "v37", tmp_path / "v37.md")
    section25 = md37.split("### 2.5")[1].split("### 2.6")[0]
    assert "| opus-traces | external-import |" in section25 and "claude-opus" in section25


def test_eu_ai_act_lists_opt_out_requests(tmp_store, write_jsonl, tmp_path):
    tmp_store.sources.add("site", kind="url-list", license="LicenseRef-web", legal_basis="tdm-exception", crawler="rowbot/1.0")
    tmp_store.sources.add("people", kind="user-feedback", license="LicenseRef-terms", legal_basis="consent")
    tmp_store.ingest(write_jsonl([{"url": f"https://www.Example.com/{i}", "text": "x" * (10 + i)} for i in range(5)] + [{"url": "http://b.net/p", "text": "y"}], "s.jsonl"),
                     source="site", key_field="url")
    tmp_store.ingest(write_jsonl([{"id": i, "text": f"u{i}"} for i in range(4)], "p.jsonl"), source="people", key_field="id")
    tmp_store.commit("v1", tag="v1")
    tmp_store.optout(source="people", reason="consent withdrawn, ticket 4711", tag="v2")
    doc = json.loads(read(tmp_store, "eu-ai-act", "v2", tmp_path / "s.json"))
    assert [r["reason"] for r in doc["3.1"]["optout_requests"]] == ["consent withdrawn, ticket 4711"] and doc["3.1"]["optout_requests"][0]["rows"] == 4
    assert doc["2.3"]["crawlers"] == ["rowbot/1.0"] and [d["domain"] for d in doc["2.3"]["top_domains"]] == ["example.com"]
    v1 = json.loads(read(tmp_store, "eu-ai-act", "v1", tmp_path / "v1.json", top_domains=5))
    assert [d["domain"] for d in v1["2.3"]["top_domains"]] == ["example.com", "b.net"] and v1["2.4"]["used"]


def tbc_agree(md: str, doc: dict) -> None:
    """Every field the Markdown marks *To be completed by the provider* is one entry of the JSON list,
    and each entry one mark, section by section; the Markdown's closing list is the JSON list."""
    body, _, closing = md.partition("\n## To be completed by the provider\n")
    marks: dict[str, int] = {}
    for part in body.split("\n### ")[1:]:
        marks[part.split(" ", 1)[0]] = part.count(f"*{eu_ai_act.TBC}*")
    listed: dict[str, int] = {}
    for x in doc["to_be_completed_by_provider"]:
        listed[x["section"]] = listed.get(x["section"], 0) + 1
    assert {k: n for k, n in marks.items() if n} == listed
    assert [line[2:] for line in closing.splitlines() if line.startswith("- ")] == [f"{x['section']} {md_cell(x['field'])}" for x in doc["to_be_completed_by_provider"]]


def both(store, version, tmp_path, **options) -> tuple[dict, str]:
    """The summary as JSON and as Markdown, checked to agree on what the provider must complete."""
    doc = json.loads(read(store, "eu-ai-act", version, tmp_path / f"{version}.json", **options))
    md = read(store, "eu-ai-act", version, tmp_path / f"{version}.md", **options)
    tbc_agree(md, doc)
    return doc, md


def test_eu_ai_act_json_and_markdown_agree_on_what_the_provider_completes(demo, tmp_store, write_jsonl, tmp_path):
    s37, _ = both(demo, "v37", tmp_path)  # no crawl: no 2.3 field to complete
    assert not any(x["section"] == "2.3" for x in s37["to_be_completed_by_provider"])
    s38, md38 = both(demo, "v38", tmp_path)  # the demo crawl declares no crawler, purpose or behaviour
    tbc = [x["field"] for x in s38["to_be_completed_by_provider"] if x["section"] == "2.3"]
    assert "crawler name(s), not declared by crawl-2024-09" in tbc and s38["2.3"]["crawlers"] == []
    assert s38["2.3"]["not_declared_by"]["crawler"] == ["crawl-2024-09"] and s38["2.3"]["sources"][0]["crawler"] is None
    assert f"- Crawler name(s): *{eu_ai_act.TBC}* (not declared by crawl-2024-09)" in md38
    both(demo, "v39", tmp_path)

    # crawler and user agent as sources record them (any spelling of the attribute name), periods missing
    tmp_store.sources.add("cc", kind="crawl", license="LicenseRef-web", legal_basis="tdm-exception", collected="2025-01-01/2025-01-31",
                          attributes={"User-Agent": "CCBot/2.0", "purpose": "pre-training", "robots_txt": "obeyed"})
    tmp_store.sources.add("links", kind="url-list", license="LicenseRef-web", legal_basis="tdm-exception")
    tmp_store.sources.add("notes", kind="other", license="MIT")
    tmp_store.sources.add("gen", kind="synthetic", license="MIT")  # no generator recorded
    tmp_store.ingest(write_jsonl([{"url": f"https://a.example/{i}", "text": "x" * i} for i in range(1, 4)], "cc.jsonl"), source="cc", key_field="url")
    tmp_store.ingest(write_jsonl([{"id": 1, "text": "no url here"}], "links.jsonl"), source="links", key_field="id")
    tmp_store.ingest(write_jsonl([{"id": 1, "text": "a note"}], "notes.jsonl"), source="notes", key_field="id")
    tmp_store.ingest(write_jsonl([{"id": 1, "text": "generated"}], "gen.jsonl"), source="gen", key_field="id")
    tmp_store.commit("v1", tag="v1")
    doc, md = both(tmp_store, "v1", tmp_path)
    s23 = doc["2.3"]
    assert s23["crawlers"] == ["CCBot/2.0"] and {e["source_id"]: e["crawler"] for e in s23["sources"]} == {"cc": "CCBot/2.0", "links": None}
    assert s23["not_declared_by"] == {"crawler": ["links"], "purpose": ["links"], "robots_txt_and_paywalls": ["links"], "collection_period": ["links"]}
    tbc = {x["field"] for x in doc["to_be_completed_by_provider"]}
    assert {"crawler name(s), not declared by links", "period of data collection of links"} <= tbc
    assert f"- Crawler name(s): CCBot/2.0; *{eu_ai_act.TBC}* (not declared by links)" in md
    assert "| links | url-list | — | 1 |" in md and md.split("| links | url-list |")[1].split("\n")[0].endswith(f"| *{eu_ai_act.TBC}* |")
    assert "languages: no row or source declares a language attribute" in tbc
    assert f"- Languages: *{eu_ai_act.TBC}* (no row or source declares a language attribute)" in md
    assert doc["2.5"]["sources_without_generating_model"] == ["gen"] and "models used to generate the synthetic data of gen" in tbc
    assert f"- Models used to generate the content of gen: *{eu_ai_act.TBC}*" in md


def test_eu_ai_act_user_data_sub_categories(tmp_store, write_jsonl, tmp_path):
    from rowtrail.feedback import annotations, guidelines

    (tmp_path / "g1.md").write_text("thumbs up when the answer helps\n")
    guidelines.add(tmp_store, tmp_path / "g1.md", "1")
    # thumbs on the model's answers, imported as annotations; the source says they are interactions with the model
    tmp_store.sources.add("chat-thumbs", kind="user-feedback", license="LicenseRef-terms", legal_basis="consent", user_data="model-interactions")
    thumbs = [{"item_id": f"answer-{i}", "annotator": f"user-{i}", "guideline_version": "1", "collected_at": "2026-02-01T10:00:00Z",
               "platform": "chat-app", "label": "up" if i % 2 else "down", "item_generator": "our-model-v1"} for i in range(4)]
    annotations.import_annotations(tmp_store, write_jsonl(thumbs, "thumbs.jsonl"), source="chat-thumbs")
    # user data whose sub-category the ledger cannot tell
    tmp_store.sources.add("forum", kind="user-feedback", license="LicenseRef-terms", legal_basis="consent")
    tmp_store.ingest(write_jsonl([{"id": i, "text": f"post {i}"} for i in range(3)], "forum.jsonl"), source="forum", key_field="id")
    tmp_store.commit("v1", tag="v1")

    doc, md = both(tmp_store, "v1", tmp_path)
    s24 = doc["2.4"]
    assert s24["used"] and s24["interactions_with_model"] == {"used": True, "sources": ["chat-thumbs"]}
    assert s24["other_services"]["used"] is None and s24["sources_not_declaring_sub_category"] == ["forum"]  # not invented
    assert {e["source_id"]: e["user_data"] for e in s24["sources"]} == {"chat-thumbs": ["interactions_with_model"], "forum": []}
    assert [x["field"] for x in doc["to_be_completed_by_provider"] if x["section"] == "2.4"] == [
        "data collected from other services or products of the provider: used or not (yes/no), not declared by forum"
    ]
    section = md.split("### 2.4")[1].split("### 2.5")[0]
    assert "- Data from user interactions with the model: yes (chat-thumbs)" in section
    assert f"- Data collected from other services or products of the provider: *{eu_ai_act.TBC}* (sources that do not declare a user_data attribute: forum)" in section
    assert "| forum | user-feedback | — | 3 |" in section and section.count("not declared |") == 1

    # every user-data source declares: a sub-category none declares is "no"; the services of (b) come from the source
    tmp_store.remove(source="forum", reason="sub-category unknown")
    tmp_store.sources.add("shop-reviews", kind="user-feedback", license="LicenseRef-terms", legal_basis="consent", user_data="other-services", service="example-shop product reviews")
    tmp_store.sources.add("survey", kind="annotation-batch", license="LicenseRef-terms", legal_basis="consent", user_data="Other-Services, model-interactions")
    tmp_store.ingest(write_jsonl([{"id": i, "text": f"review {i}"} for i in range(2)], "shop.jsonl"), source="shop-reviews", key_field="id")
    tmp_store.ingest(write_jsonl([{"id": 0, "text": "survey answer"}], "survey.jsonl"), source="survey", key_field="id")
    tmp_store.commit("v2", tag="v2")
    doc, md = both(tmp_store, "v2", tmp_path)
    s24 = doc["2.4"]
    assert s24["interactions_with_model"] == {"used": True, "sources": ["chat-thumbs", "survey"]} and s24["sources_not_declaring_sub_category"] == []
    assert s24["other_services"] == {"used": True, "sources": ["shop-reviews", "survey"], "services": ["example-shop product reviews"], "services_not_declared_by": ["survey"]}
    assert not doc["2.6"]["used"]  # an annotation batch that declares user data is user data
    assert [x["field"] for x in doc["to_be_completed_by_provider"] if x["section"] == "2.4"] == [
        "the provider's services or products the user data was collected from, not declared by survey"
    ]
    assert f"- Services or products of the provider the data was collected from: example-shop product reviews; *{eu_ai_act.TBC}* (not declared by survey)" in md

    tmp_store.remove(source="shop-reviews", reason="x")
    tmp_store.remove(source="survey", reason="x")
    tmp_store.commit("v3", tag="v3")
    doc, md = both(tmp_store, "v3", tmp_path)
    assert doc["2.4"]["interactions_with_model"]["used"] is True and doc["2.4"]["other_services"]["used"] is False
    assert "- Data collected from other services or products of the provider: no" in md
    assert not any(x["section"] == "2.4" for x in doc["to_be_completed_by_provider"])


# -- data card ---------------------------------------------------------------------------------------


def test_datacard_pipeline_limitations_and_verification(demo, tmp_path):
    v = demo.version("v39")
    export(demo, "datacard", "v39", tmp_path / "card.md")
    md = (tmp_path / "card.md").read_text()
    keyid = v.attestation()["signatures"][0]["keyid"]
    for text in (f"`{v.id}`", "| tag | v39 |", keyid, "| 1 | filter | filter |", "too-short 10", "| 3 | dedupe-exact |", "duplicate 69", "modified 70",
                 "330 → 320", "rely on the text-and-data-mining exception", f"rowtrail verify --version {v.id}", "rowtrail prove ROW_ID v39"):
        assert text in md, text
    card = json.loads(read(demo, "datacard", "v39", tmp_path / "card.json"))
    assert [s["name"] for s in card["pipeline"]] == ["filter", "strip-boilerplate", "dedupe-exact", "upsample"]
    assert card["pipeline"][0]["dropped"] == {"too-short": 10} and card["pipeline"][3]["reweighted"] == 30
    assert card["version"]["signers"] == [keyid] and card["counts"]["content_fields"] == ["prompt", "response", "text"]
    v37 = json.loads(read(demo, "datacard", "v37", tmp_path / "v37.json"))
    machine = next(x for x in v37["limitations"] if x["code"] == "machine-generated")
    assert machine["sources"] == ["opus-traces"] and "20.00 % of rows" in machine["text"] and v37["pipeline"] == []


# -- scale -------------------------------------------------------------------------------------------


def test_transparency_of_5000_sources_renders_in_seconds(tmp_store, tmp_path):
    n = 5000
    kinds = ["crawl", "hf-dataset", "partner-dump", "synthetic", "benchmark"]
    with open(tmp_path / "sources.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source_id", "kind", "uri", "license", "legal_basis", "collected", "owner", "generator"])
        for i in range(n):
            w.writerow([f"s{i:05d}", kinds[i % 5], f"https://host{i % 97}.example/{i}", "CC-BY-4.0", "licence", "2025-01-01/2025-02-01", "team", "gen-model" if i % 5 == 3 else "human"])
    tmp_store.sources.import_(tmp_path / "sources.csv")
    with open(tmp_path / "rows.jsonl", "w") as fh:
        for i in range(n):
            for j in range(2):
                fh.write(json.dumps({"src": f"s{i:05d}", "id": f"https://host{i % 97}.example/{i}/{j}", "text": f"row {j} of source {i}", "teacher": f"t{i % 3}"}) + "\n")
    tmp_store.ingest(str(tmp_path / "rows.jsonl"), source_field="src", key_field="id", content_fields=["text"], attributes=["teacher"])
    tmp_store.commit("5000 sources", tag="big", sign=False)
    timings = {}
    for suffix in ("md", "csv", "json"):
        t0 = time.perf_counter()
        export(tmp_store, "transparency", "big", tmp_path / f"big.{suffix}")
        timings[suffix] = time.perf_counter() - t0
    print(f"transparency of {n:,} sources × 2 rows: " + ", ".join(f"{k} {t:.2f} s" for k, t in timings.items()))
    assert max(timings.values()) < 10
    with open(tmp_path / "big.csv", newline="") as fh:
        srcs = [r for r in csv.DictReader(fh) if r["table"] == "sources"]
    assert len(srcs) == n and all(r["rows"] == "2" for r in srcs)
    assert sum(float(r["row_share"]) for r in srcs) == pytest.approx(1.0, abs=1e-9)
    assert (tmp_path / "big.md").read_text().count("\n| s0") == n
    t0 = time.perf_counter()
    export(tmp_store, "eu-ai-act", "big", tmp_path / "big-eu.md")
    export(tmp_store, "datacard", "big", tmp_path / "big-card.md")
    assert time.perf_counter() - t0 < 10
