"""Bisect through the Python API: planted bad sources and steps, skips, endpoint checks, step
alignment, user-function steps, and that bisect writes nothing to the store."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

import rowtrail as rt
from rowtrail import steps
from rowtrail.ops.bisect import BisectError, align_steps, bisect, pipeline_at

MARKER = "MARKER"


def rows(source: str, n: int = 12, marker: bool = False, lane: str = "chat") -> pa.Table:
    return pa.table(
        {
            "id": [f"{source}{i}" for i in range(n)],
            "text": [f"{source} row {i}" + (f" {MARKER}" if marker and i == 3 else "") for i in range(n)],
            "lane": [lane] * n,
        }
    )


def no_marker(table: pa.Table) -> bool:
    return not any(MARKER in t for t in table.column("text").to_pylist())


@pytest.fixture
def store(tmp_store):
    for s in "abcdef":
        tmp_store.sources.add(s, kind="other")
    return tmp_store


@pytest.fixture
def planted_source(store):
    """v1: sources a, b. v2: b removed, c and d added (good), e added with a marker row, f added."""
    store.ingest(rows("a"), source="a", key_field="id")
    store.ingest(rows("b"), source="b", key_field="id")
    store.apply([steps.filter("length(text) > 3", reason="too-short")])
    store.commit("v1", tag="v1", sign=False)
    store.remove(source="b")
    for s in "cdef":
        store.ingest(rows(s, marker=s == "e"), source=s, key_field="id")
    store.commit("v2", tag="v2", sign=False)
    return store


def test_planted_bad_source_is_named_and_store_is_untouched(planted_source):
    store = planted_source
    journal = list(store.state.digests)
    objects = sorted(p.name for p in (store.path / "objects").rglob("*"))
    seen = []
    rep = bisect(store, "v1", "v2", test=no_marker, log=seen.append)
    assert [(c.kind, c.source, c.status) for c in rep.changes] == [
        ("source", "b", "dropped"), ("source", "c", "added"), ("source", "d", "added"), ("source", "e", "added"), ("source", "f", "added"),
    ]
    assert rep.first_bad is not None and rep.first_bad.kind == "source" and rep.first_bad.source == "e"
    assert (rep.first_bad.rows_added, rep.first_bad.rows_removed) == (12, 0)
    assert rep.suspects == [rep.first_bad]
    assert [t.k for t in rep.log] == [0, 5, 2, 3, 4] and seen == rep.log and rep.tests == 5
    assert [t.result for t in rep.log] == ["good", "bad", "good", "good", "bad"]
    assert [t.rows for t in rep.log] == [24, 60, 24, 36, 48]
    assert rep.log[2].description.startswith("GOOD + #1–#2")
    d = rep.to_dict()
    assert d["first_bad"]["source"] == "e" and d["tests"] == 5 and len(d["log"]) == 5
    # read-only: no journal entry, no object
    assert store.state.digests == journal
    assert sorted(p.name for p in (store.path / "objects").rglob("*")) == objects


def test_candidate_table_columns(planted_source):
    tables = []
    bisect(planted_source, "v1", "v2", test=lambda t: tables.append(t) or no_marker(t))
    first = tables[0]
    assert first.column_names == ["lane", "text", "row_id", "source_id", "weight"]  # the key field is not content
    assert sorted(set(first.column("source_id").to_pylist())) == ["a", "b"]
    assert all(len(r) == 64 for r in first.column("row_id").to_pylist())
    assert first.column("row_id").to_pylist() == sorted(first.column("row_id").to_pylist())


def test_planted_bad_step_is_named(store):
    """v1: [filter]; v2 adds a good source and the steps upsample(a) and a reweight that zeroes source b."""
    store.ingest(rows("a"), source="a", key_field="id")
    store.ingest(rows("b", lane="code"), source="b", key_field="id")
    keep = steps.filter("length(text) > 3", reason="too-short")
    store.apply([keep])
    store.commit("v1", tag="v1", sign=False)
    store.ingest(rows("c"), source="c", key_field="id")
    store.apply([keep, steps.upsample(source="a", factor=2), steps.reweight(source="b", weight=0, name="zero-b")])
    store.commit("v2", tag="v2", sign=False)

    def has_code_lane(table: pa.Table) -> bool:
        return "code" in set(table.column("lane").to_pylist())

    rep = bisect(store, "v1", "v2", test=has_code_lane)
    assert [c.kind for c in rep.changes] == ["source", "add-step", "add-step"]
    assert rep.first_bad is not None and rep.first_bad.kind == "add-step"
    assert (rep.first_bad.name, rep.first_bad.use, rep.first_bad.position) == ("zero-b", "reweight", 3)
    assert "add step 'zero-b' (reweight" in rep.first_bad.label
    by_k = {t.k: t for t in rep.log}
    assert by_k[2].result == "good" and by_k[2].rows == 36  # source c and the upsample applied


def test_skips_take_a_neighbour_and_can_leave_suspects(planted_source):
    def skip_d_without_e(table: pa.Table) -> bool | str:
        src = set(table.column("source_id").to_pylist())
        if "d" in src and "e" not in src:
            return "skip"
        return no_marker(table)

    rep = bisect(planted_source, "v1", "v2", test=skip_d_without_e)
    assert [t.result for t in rep.log] == ["good", "bad", "good", "skip", "bad"]
    assert rep.first_bad is None and [c.source for c in rep.suspects] == ["d", "e"]


def test_endpoints_must_test_as_given(planted_source):
    with pytest.raises(BisectError, match="GOOD v2 tests bad"):
        bisect(planted_source, "v2", "v1", test=no_marker)
    with pytest.raises(BisectError, match="BAD v2 tests good"):
        bisect(planted_source, "v1", "v2", test=lambda t: True)
    with pytest.raises(BisectError, match="nothing to bisect"):
        bisect(planted_source, "v1", "v1", test=no_marker)
    with pytest.raises(BisectError, match="True .good., False .bad. or 'skip'"):
        bisect(planted_source, "v1", "v2", test=lambda t: None)
    with pytest.raises(rt.RefError):
        bisect(planted_source, "v1", "nope", test=no_marker)


def test_shell_command_codes_and_kept_files(planted_source, tmp_path):
    """The exit-code protocol, the file in $ROWTRAIL_BISECT_CORPUS and {corpus} (answers scripted in
    trial order; tests/func/test_cli_bisect.py reads the file's content)."""
    (tmp_path / "answers").write_text("0\n1\n0\n125\n1\n")
    script = tmp_path / "check.sh"
    script.write_text(
        '[ -s "$1" ] && [ "$ROWTRAIL_BISECT_CORPUS" = "$1" ] || exit 3\n'
        f'echo tested >> "{tmp_path}/count"\n'
        f'exit $(sed -n "$(wc -l < "{tmp_path}/count")p" "{tmp_path}/answers")\n'
    )
    rep = bisect(planted_source, "v1", "v2", test=f"sh {script} {{corpus}}", keep=True)
    assert [(t.k, t.exit_code, t.result) for t in rep.log] == [(0, 0, "good"), (5, 1, "bad"), (2, 0, "good"), (3, 125, "skip"), (4, 1, "bad")]
    assert rep.first_bad is None and [c.source for c in rep.suspects] == ["d", "e"]
    assert rep.workdir and all(t.corpus_path and os.path.exists(t.corpus_path) for t in rep.log)
    with pytest.raises(BisectError, match="exited with 3 on candidate 0 .GOOD v1."):
        bisect(planted_source, "v1", "v2", test="echo broken; exit 3")


def test_align_steps():
    good, bad = ["f", "u", "m", "x"], ["u", "f", "y", "x", "z"]
    changes, entries = align_steps(good, bad)
    assert changes == [("move-step", "u", 1), ("remove-step", "m", 3), ("add-step", "y", 3), ("add-step", "z", 5)]
    assert [pipeline_at(entries, k) for k in range(len(changes) + 1)] == [good, ["u", "f", "m", "x"], ["u", "f", "x"], ["u", "f", "y", "x"], bad]
    for k in range(len(changes) + 1):  # every candidate is a pipeline: each step at most once
        at = pipeline_at(entries, k)
        assert len(at) == len(set(at))
    changes, entries = align_steps(["a"], ["b"])  # a changed step: remove the old, then add the new
    assert [c[0] for c in changes] == ["remove-step", "add-step"]
    assert [pipeline_at(entries, k) for k in range(3)] == [["a"], [], ["b"]]


def shout(row):
    return {**row, "text": row["text"].upper()}


def test_user_function_steps_must_be_supplied(store):
    loud = steps.rewrite(shout, name="shout", version="1")
    store.ingest(rows("a"), source="a", key_field="id")
    store.apply([loud])
    store.commit("v1", tag="v1", sign=False)
    for s in "bcd":
        store.ingest(rows(s, marker=s == "c"), source=s, key_field="id")
    store.apply([loud])
    store.commit("v2", tag="v2", sign=False)
    with pytest.raises(rt.StepError, match="--pipeline FILE"):
        bisect(store, "v1", "v2", test=no_marker)
    rep = bisect(store, "v1", "v2", test=lambda t: MARKER not in " ".join(t.column("text").to_pylist()), steps=[loud])
    assert rep.first_bad is not None and rep.first_bad.source == "c"
    assert all(t.result in ("good", "bad") for t in rep.log)


def test_removed_steps_and_candidates_that_cannot_run(store):
    """GOOD [score, filter on the score] → BAD []: the candidate without the score cannot run, so it
    is skipped, and both removals stay suspects."""
    store.ingest(rows("a"), source="a", key_field="id")
    store.apply([steps.score("len", "length(text)"), steps.filter("len > 7", reason="short")])
    store.commit("v1", tag="v1", sign=False)
    store.apply([])
    store.commit("v2", tag="v2", sign=False)
    rep = bisect(store, "v1", "v2", test=lambda t: t.num_rows < 5)
    assert [(c.kind, c.use, c.position) for c in rep.changes] == [("remove-step", "score", 1), ("remove-step", "filter", 2)]
    assert [(t.k, t.result) for t in rep.log] == [(0, "good"), (2, "bad"), (1, "skip")]
    assert "cannot run" in (rep.log[2].note or "") and rep.tests == 2
    assert rep.first_bad is None and len(rep.suspects) == 2
