"""Admission policies: a rejecting rule blocks a commit naming rule and sources, an override is
recorded, admitted rows carry their rule and labels in trace, policy check, and bad policy files."""

from __future__ import annotations

import pytest

from rowtrail.errors import PolicyError
from rowtrail.ops.policy import check, license_satisfiable, set_policy

POLICY = """
[[rule]]
name = "commercial-licences"
licenses = ["MIT", "Apache-2.0", "CC-BY-4.0"]

[[rule]]
name = "legal-basis"
legal_basis = true

[[rule]]
name = "annotations-need-guidelines"
applies_to = { kinds = ["annotation-batch"] }
require_attributes = ["guideline_version"]

[[classify]]
applies_to = { licenses = ["MIT", "Apache-2.0"] }
set = { use = "commercial", sensitivity = "low" }

[[classify]]
set = { use = "research" }
"""


@pytest.fixture
def store(tmp_store, write_jsonl):
    s = tmp_store
    s.sources.add("ok-mit", kind="partner-dump", license="MIT", legal_basis="contract")
    s.sources.add("gpl-dump", kind="partner-dump", license="GPL-3.0-only", legal_basis="contract")
    s.sources.add("labels", kind="annotation-batch", license="CC-BY-4.0", legal_basis="consent")
    s.ingest(write_jsonl([{"id": i, "text": f"mit {i}"} for i in range(5)], "a.jsonl"), source="ok-mit", key_field="id")
    s.ingest(write_jsonl([{"id": i, "text": f"label {i}", "gv": "3" if i % 2 else None} for i in range(4)], "l.jsonl"), source="labels", key_field="id", content_fields=["text"], attributes={"guideline_version": "gv"})
    set_policy(s, POLICY)
    return s


def test_licence_expressions():
    assert license_satisfiable("MIT OR GPL-3.0-only", ["MIT"])
    assert not license_satisfiable("MIT AND GPL-3.0-only", ["MIT"])
    assert license_satisfiable("Apache-2.0 AND MIT", ["MIT", "Apache-2.0"])
    assert not license_satisfiable(None, ["MIT"])


def test_a_rejecting_rule_blocks_the_commit_naming_rule_and_sources(store, write_jsonl):
    with pytest.raises(PolicyError, match="labels.*annotations-need-guidelines.*2 row"):
        store.commit("v1")
    store.remove(source="labels")
    v1 = store.commit("v1", tag="v1")
    assert v1.content["policy"] == store.manifest(v1.id)["admission"]["policy"]
    store.ingest(write_jsonl([{"id": i, "text": f"gpl {i}"} for i in range(3)], "g.jsonl"), source="gpl-dump", key_field="id")
    with pytest.raises(PolicyError, match="gpl-dump.*commercial-licences.*GPL-3.0-only"):
        store.commit("v2")
    v2 = store.commit("v2", tag="v2", override_policy="legal approved GPL for research, ticket 9")
    adm = store.manifest(v2.id)["admission"]
    assert adm["override"].startswith("legal approved") and not adm["sources"]["gpl-dump"]["admitted"]
    res = check(store, "v2")
    assert not res["ok"] and res["sources"]["ok-mit"]["admitted"]
    assert check(store, "v1")["ok"]


def test_trace_shows_the_rule_and_labels_that_admitted_a_row(store):
    store.remove(source="labels")
    v = store.commit("v1")
    row = store.rows(v.id, source="ok-mit").column("row_id")[0].as_py()
    held = store.trace(row)["versions"][0]["admission"]
    assert held["admitted"] and held["rule"] == "legal-basis" and held["classification"] == {"use": "commercial", "sensitivity": "low"}
    assert [r["rule"] for r in held["rules"]] == ["commercial-licences", "legal-basis"]


def test_bad_policies_name_the_problem(store):
    with pytest.raises(PolicyError, match="unknown key"):
        set_policy(store, '[[rule]]\nname = "x"\nlicence = ["MIT"]\n')
    with pytest.raises(PolicyError, match="needs a name"):
        set_policy(store, '[[rule]]\nlicenses = ["MIT"]\n')
    with pytest.raises(PolicyError, match="unknown table"):
        set_policy(store, "[rules]\n")
