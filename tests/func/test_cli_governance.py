"""Governance through the CLI: policy set/show/check and an overridden commit, opt-out with its
receipt (JSON, register, check-receipt, a forged receipt exits 3), and every export format."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"

POLICY = """
[[rule]]
name = "open-licences"
licenses = ["Apache-2.0", "CC-BY-SA-4.0", "MIT"]

[[classify]]
applies_to = { kinds = ["benchmark"] }
set = { use = "evaluation-derived" }
"""


@pytest.fixture
def cli(tmp_path):
    env = dict(os.environ, ROWTRAIL_HOME=str(tmp_path / "home"), ROWTRAIL_STORE=str(tmp_path / "store"), COLUMNS="200")
    env.pop("ROWTRAIL_SIGNING_KEY", None)

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "rowtrail", *args], env=env, cwd=DEMO, capture_output=True, text=True, timeout=180)
        assert p.returncode == code, f"rowtrail {' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return p

    run("keygen")
    run("init")
    run("source", "import", "sources.csv")
    run("ingest", "born-sft-v1.jsonl", "--source-field", "benchmark", "--key-field", "id", "--content-fields", "prompt,response", "--attr", "teacher", "--attr", "lane")
    run("ingest", "crawl-2024-09.csv", "--source", "crawl-2024-09", "--key-field", "url", "--content-fields", "text", "--attr", "lang")
    return run


def j(p: subprocess.CompletedProcess):
    return json.loads(p.stdout)


def test_policy_blocks_then_override_is_recorded(cli, tmp_path):
    (tmp_path / "policy.toml").write_text(POLICY)
    cli("policy", "set", str(tmp_path / "policy.toml"))
    assert j(cli("policy", "show", "--json"))["policy"]["rule"][0]["name"] == "open-licences"
    err = cli("commit", "-m", "v1", code=1).stderr
    assert "crawl-2024-09" in err and "open-licences" in err and "--override-policy" in err
    cli("commit", "-m", "v1", "--tag", "v1", "--override-policy", "legal review 12 accepted the crawl")
    res = j(cli("policy", "check", "v1", "--json", code=1))
    assert not res["sources"]["crawl-2024-09"]["admitted"] and res["sources"]["mbpp-plus"]["classification"] == {"use": "evaluation-derived"}
    assert "REJECTED" in cli("policy", "check", "v1", code=1).stdout


def test_optout_receipt_and_exports(cli, tmp_path):
    cli("commit", "-m", "v1", "--tag", "v1")
    receipt = tmp_path / "receipt.json"
    out = j(cli("optout", "--source", "crawl-2024-09", "--reason", "owner request", "--tag", "v2", "-o", str(receipt), "--json"))
    assert out["receipt"]["removed"]["rows"] == 80
    ok = j(cli("check-receipt", str(receipt), "--json"))
    assert ok["ok"] and ok["receipt"]["new_version"] == out["version_id"]
    assert cli("optout", "--list", "--json").stdout.count("owner request") == 1
    forged = json.loads(receipt.read_text())
    forged["signatures"][0]["sig"] = forged["signatures"][0]["sig"][::-1]
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    cli("check-receipt", str(tmp_path / "forged.json"), code=3)
    err = cli("ingest", "crawl-2024-09.csv", "--source", "crawl-2024-09", "--key-field", "url", "--content-fields", "text", code=1).stderr
    assert "opted out" in err
    # every export format through the CLI
    rows = list(csv.DictReader(io.StringIO(cli("export", "transparency", "v2", "--format", "csv").stdout)))
    assert {r["name"] for r in rows if r["table"] == "sources"} == {"mbpp-plus", "ds-1000"}
    eu = tmp_path / "eu.json"
    cli("export", "eu-ai-act", "v1", "-o", str(eu))
    assert "crawl-2024-09" in json.dumps(json.loads(eu.read_text())["2.3"])
    assert "# " in cli("export", "datacard", "v2").stdout
    cli("export", "croissant", "v2", "-o", str(tmp_path / "croissant"))
    assert (tmp_path / "croissant" / "croissant.json").exists()
    assert "prov:" in cli("export", "prov", "v2").stdout or "entity" in cli("export", "prov", "v2").stdout
    cli("export", "openlineage", "v2", "-o", str(tmp_path / "events.openlineage.jsonl"))
    assert all(json.loads(line)["eventType"] for line in (tmp_path / "events.openlineage.jsonl").read_text().splitlines())
    bundle = tmp_path / "bundle"
    row = json.loads(cli("rows", "--version", "v2", "--limit", "1", "--json").stdout.splitlines()[0])["row_id"]
    cli("export", "bundle", "v2", "-o", str(bundle), "--prove", row)
    p = subprocess.run([sys.executable, "-I", "verify.py"], cwd=bundle, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "OK" in p.stdout
    cli("export", "transparency", "v2", "--set", "nonsense=1", code=1)
    cli("export", "nope", "v2", code=1)
