"""Output search through the CLI (``python -m rowtrail`` in subprocesses): index, search-output,
similar and overlap with --json and as tables, exit codes and messages."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "search"


@pytest.mark.skipif(shutil.which("rowtrail") is None, reason="the rowtrail command is not installed on PATH")
def test_docs_commands_run_as_written(tmp_path):
    """docs/search.md's "Try it" block, run as a user would copy it (from the repository root)."""
    text = (ROOT / "docs" / "search.md").read_text()
    script = re.search(r"```bash\n(.*?)```", text[text.index("## Try it") :], re.S).group(1)
    env = dict(os.environ, TMPDIR=str(tmp_path), COLUMNS="200", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("ROWTRAIL_SIGNING_KEY", None)
    p = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "100% of the output's verbatim-matched tokens come from source teacher-x" in out
    assert "rows nearest the task (lexical)" in out and "tm-006" in out
    assert out.count("1 of 12 eval items share a 13-gram") == 2
    assert "OK:" in out


def test_search_commands(tmp_path):
    env = dict(os.environ, ROWTRAIL_HOME=str(tmp_path / "home"), ROWTRAIL_STORE=str(tmp_path / "store"), COLUMNS="200")
    env.pop("ROWTRAIL_SIGNING_KEY", None)

    def cli(*args: str, code: int = 0, input: str | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [sys.executable, "-m", "rowtrail", *args], env=env, cwd=DATA, capture_output=True, text=True, input=input, timeout=120
        )
        assert p.returncode == code, f"rowtrail {' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return p

    cli("init")
    cli("source", "add", "teacher-x", "--kind", "teacher-model", "--license", "MIT", "--legal-basis", "own model output")
    cli("source", "add", "py-docs", "--kind", "crawl", "--license", "CC-BY-4.0", "--legal-basis", "tdm-exception")
    cli(
        "ingest",
        "teacher.jsonl",
        "--source",
        "teacher-x",
        "--key-field",
        "id",
        "--content-fields",
        "prompt,response",
        "--attr",
        "teacher",
        "--attr",
        "lane",
    )
    cli("ingest", "crawl.jsonl", "--source", "py-docs", "--key-field", "url", "--content-fields", "text")
    cli("commit", "-m", "first", "--tag", "v1", "--no-sign")

    # no index yet: a user error that names the command to run
    p = cli("search-output", "output.txt", "--version", "v1", code=1)
    assert "rowtrail index v1" in p.stderr

    built = json.loads(cli("index", "v1", "--kind", "spans,lexical", "--json").stdout)
    assert {b["kind"] for b in built} == {"spans", "lexical"} and all(b["rows"] == 20 for b in built)
    listed = json.loads(cli("index", "--list", "--json").stdout)
    assert {r["index_id"] for r in listed} == {b["index_id"] for b in built}

    res = json.loads(cli("search-output", "output.txt", "--version", "v1", "--json").stdout)
    top = res["spans"][0]["rows"][0]
    assert top["source_id"] == "teacher-x" and top["source_key"] == "tm-007" and top["provenance"]["source"]["license"] == "MIT"
    assert res["by_source"][0]["source_id"] == "teacher-x"
    # text on standard input
    res = json.loads(cli("search-output", "-", "--version", "v1", "-k", "0", "--json", input=(DATA / "output.txt").read_text()).stdout)
    assert res["spans"][0]["rows"][0]["source_key"] == "tm-007" and res["similar"] == {}

    sim = json.loads(cli("similar", "greatest common divisor", "--version", "v1", "-k", "2", "--json").stdout)
    assert sim["hits"]["lexical"][0]["source_key"] == "tm-006" and len(sim["hits"]["lexical"]) <= 2

    ov = json.loads(cli("overlap", "eval.jsonl", "--version", "v1", "--n", "13", "--json").stdout)
    assert [i["id"] for i in ov["per_item"] if i["contaminated"]] == ["task/3"]
    ov2 = json.loads(
        cli("overlap", "eval_disjoint.jsonl", "--version", "v1", "--id-field", "qid", "--text-field", "question", "--json").stdout
    )
    assert ov2["contaminated_items"] == 0
    assert (
        "1 of 12 eval items" in cli("overlap", "tasks.jsonl", "--version", "v1", "--id-field", "task_id", "--text-field", "prompt").stdout
    )
    p = cli("overlap", "eval_disjoint.jsonl", "--version", "v1", code=1)  # wrong field names
    assert "eval_disjoint.jsonl:1" in p.stderr and "--text-field" in p.stderr

    p = cli("index", "--drop", built[0]["index_id"][:12], "--json")
    assert json.loads(p.stdout)["deleted_objects"] > 0
    assert len(json.loads(cli("index", "--list", "--json").stdout)) == 1
    cli("verify", "--allow-unsigned")
