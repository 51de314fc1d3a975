"""End to end through the CLI (``python -m rowtrail`` in subprocesses): the README's demo flow,
--json on read commands, exit codes, and error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


@pytest.fixture
def cli(tmp_path):
    env = dict(os.environ, ROWTRAIL_HOME=str(tmp_path / "home"), ROWTRAIL_STORE=str(tmp_path / "store"), COLUMNS="200")
    env.pop("ROWTRAIL_SIGNING_KEY", None)

    def run(*args: str, code: int = 0, input: str | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "rowtrail", *args], env=env, cwd=DEMO, capture_output=True, text=True, input=input, timeout=120)
        assert p.returncode == code, f"rowtrail {' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return p

    run.tmp = tmp_path  # type: ignore[attr-defined]
    return run


def j(p: subprocess.CompletedProcess):
    return json.loads(p.stdout)


def test_demo_flow(cli):
    cli("keygen")
    cli("init")
    cli("source", "import", "sources.csv")
    assert len(j(cli("source", "list", "--json"))) == 4
    rep = j(cli("ingest", "born-sft-v1.jsonl", "--source-field", "benchmark", "--key-field", "id", "--content-fields", "prompt,response", "--attr", "teacher", "--attr", "lane", "--json"))
    assert rep["rows"] == 240 and rep["sources"] == {"ds-1000": 90, "mbpp-plus": 150}
    cli("ingest", "opus-traces.jsonl", "--source", "opus-traces", "-k", "trace_id", "-c", "prompt,response")
    v37 = j(cli("commit", "-m", "first", "--tag", "v37", "--json"))
    assert v37["row_count"] == 300 and v37["signed"]
    cli("ingest", "born-sft-v2.jsonl", "--source-field", "benchmark", "-k", "id", "-c", "prompt,response", "-a", "teacher", "-a", "lane")
    cli("ingest", "crawl-2024-09.csv", "--source", "crawl-2024-09", "-k", "url", "-c", "text")
    cli("rm", "--source", "opus-traces", "--reason", "consent withdrawn")
    st = j(cli("status", "--json"))
    assert st["per_source"]["opus-traces"]["removed"] == 60
    cli("commit", "-m", "second", "--tag", "v38")
    log = j(cli("log", "--json"))
    assert [v["tag"] for v in log] == ["v38", "v37"]
    d = j(cli("diff", "v37", "v38", "--json"))
    assert d["sources_added"] == ["crawl-2024-09"] and d["sources_dropped"] == ["opus-traces"]
    assert (d["rows_added"], d["rows_removed"]) == (110, 80)
    assert d["per_source"]["mbpp-plus"] == {"before": 150, "after": 160, "added": 30, "removed": 20}
    human = cli("diff", "v37", "v38").stdout
    assert "crawl-2024-09" in human and "+110 rows" in human
    # a row from the removed source: trace, why, proofs
    row = json.loads(cli("rows", "--version", "v37", "--source", "opus-traces", "--limit", "1", "--json").stdout.splitlines()[0])
    t = j(cli("trace", row["row_id"], "--json"))
    assert t["source"]["license"] == "MIT" and t["provenance"]["origin_file"] == "opus-traces.jsonl"
    assert t["drops"][0]["reason"] == "consent withdrawn"
    w = j(cli("why", row["row_id"], "--version", "v38", "--json"))
    assert not w["in_version"] and "consent withdrawn" in w["explanation"]
    proof = cli.tmp / "p.json"
    cli("prove", row["row_id"], "v37", "-o", str(proof))
    cli("check-proof", str(proof))
    data = json.loads(proof.read_text())
    data["audit_path"][0] = "00" * 32
    proof.write_text(json.dumps(data))
    cli("check-proof", str(proof), code=3)
    # a path alone does not pin the tree size: the last leaf's proof relabelled (2n-2 of 2n-1) still
    # passes rt.verify_inclusion, but check-proof compares it with the version in the store
    import rowtrail as rt

    last = max(r["row_id"] for r in map(json.loads, cli("rows", "--version", "v37", "--json").stdout.splitlines()))
    p_last = j(cli("prove", last, "v37"))
    n = p_last["tree_size"]
    forged = dict(p_last, leaf_index=2 * n - 2, tree_size=2 * n - 1)
    assert rt.verify_inclusion(forged)
    proof.write_text(json.dumps(forged))
    bad = cli("check-proof", str(proof), code=3)
    assert "tree_size" in bad.stderr
    absent = j(cli("prove", row["row_id"], "v38", "--absent"))
    assert absent["left"] or absent["right"]
    cli("prove", row["row_id"], "v38", code=1)
    out = j(cli("sql", "SELECT source_id, count(*) AS n FROM rows GROUP BY 1 ORDER BY 1", "--json"))
    assert {r["source_id"]: r["n"] for r in out}["opus-traces"] == 60
    assert "v37" in cli("show", "v37").stdout
    env = j(cli("show", "v38", "--attestation"))
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert j(cli("verify", "--json"))["ok"]
    # rows to files
    for suffix in ("parquet", "jsonl", "csv"):
        cli("rows", "--version", "v38", "-o", str(cli.tmp / f"rows.{suffix}"))
        assert (cli.tmp / f"rows.{suffix}").stat().st_size > 0


def test_store_option_before_or_after_command(cli):
    other = str(cli.tmp / "other")
    cli("--store", other, "init")
    cli("source", "add", "s1", "--kind", "crawl", "--store", other)
    assert j(cli("--store", other, "source", "list", "--json"))[0]["source_id"] == "s1"


def test_exit_codes_and_messages(cli):
    p = cli("status", code=1)
    assert "rowtrail init" in p.stderr
    cli("init")
    p = cli("source", "add", "Bad Id", "--kind", "crawl", code=1)
    assert "slug" in p.stderr
    p = cli("source", "add", "s1", "--kind", "crawl", "--license", "GPL-3", code=1)
    assert "GPL-3.0" in p.stderr  # a close match is suggested
    cli("source", "add", "s1", "--kind", "crawl")
    p = cli("ingest", "born-sft-v1.jsonl", "--source", "s1", "--key-field", "nope", code=1)
    assert "born-sft-v1.jsonl:1:" in p.stderr and "'nope'" in p.stderr
    p = cli("commit", "-m", "x", code=1)
    assert "keygen" in p.stderr
    cli("frobnicate", code=2)
    cli("diff", code=2)
    p = cli("trace", "xyz", code=1)
    assert "64 hex" in p.stderr


def test_quarantine_via_cli(cli, tmp_path):
    cli("init")
    cli("source", "add", "s1", "--kind", "crawl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "t": "a"}\nnot json\n{"id": "2", "t": "b"}\n')
    p = cli("ingest", str(bad), "--source", "s1", "-k", "id", code=1)
    assert f"{bad}:2:" in p.stderr and "quarantine" in p.stderr
    rep = j(cli("ingest", str(bad), "--source", "s1", "-k", "id", "--on-error", "quarantine", "--json"))
    assert rep["rows"] == 2 and rep["quarantined"] == 1
