"""Pipelines through the CLI: apply (dry run, staged), status, commit, dropped, monitor (table,
JSON and a plotted PNG), trace and why along the lineage, and errors for bad pipeline files."""

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

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "rowtrail", *args], env=env, cwd=DEMO, capture_output=True, text=True, timeout=180)
        assert p.returncode == code, f"rowtrail {' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return p

    run("keygen")
    run("init")
    run("source", "import", "sources.csv")
    run("ingest", "born-sft-v2.jsonl", "--source-field", "benchmark", "--key-field", "id", "--content-fields", "prompt,response", "--attr", "lane", "--attr", "score")
    run("ingest", "crawl-2024-09.csv", "--source", "crawl-2024-09", "--key-field", "url", "--content-fields", "text", "--attr", "lang")
    run("commit", "-m", "inputs", "--tag", "v1")
    return run


def j(p: subprocess.CompletedProcess):
    return json.loads(p.stdout)


def test_apply_commit_dropped_monitor_trace(cli, tmp_path):
    dry = j(cli("apply", "pipeline.toml", "--dry-run", "--json"))
    assert dry["dry_run"] and dry["run"] is None and [s["use"] for s in dry["pipeline"]] == ["filter", "rewrite", "dedupe_exact", "upsample"]
    assert j(cli("status", "--json"))["pipeline"] == []  # a dry run stages nothing
    rep = j(cli("apply", "pipeline.toml", "--json"))
    assert rep["run"] and rep["steps"][0]["dropped"] == {"too-short": 10} and rep["steps"][2]["edges"] == {"merged": 69}
    st = j(cli("status", "--json"))
    assert [p["name"] for p in st["pipeline"]] == ["filter", "strip-boilerplate", "dedupe-exact", "upsample"] and not st["commit_runs_pipeline"]
    v = j(cli("commit", "-m", "pipeline", "--tag", "v2", "--json"))
    assert v["row_count"] == rep["rows_out"]
    d = j(cli("dropped", "--version", "v2", "--rows", "3", "--json"))
    assert d["total"] == 79 and {s["step"]: s["dropped"] for s in d["steps"]}["dedupe-exact"] == 69 and len(d["rows"]) == 3
    only = j(cli("dropped", "--version", "v2", "--step", "filter", "--source", "crawl-2024-09", "--json"))
    assert [s["by_reason"] for s in only["steps"]] == [{"too-short": 10}]
    assert "too-short" in cli("dropped", "--version", "v2").stdout
    cli("dropped", "--version", "v2", "--step", "nope", code=1)
    m = j(cli("monitor", "v2", "--json"))
    assert [s["name"] for s in m["steps"]] == ["filter", "strip-boilerplate", "dedupe-exact", "upsample"]
    assert m["steps"][2]["drift"]["source_id"]["proportions_after"]["crawl-2024-09"] < m["steps"][2]["drift"]["source_id"]["proportions_before"]["crawl-2024-09"]
    lane = m["steps"][3]["drift"]["lane"]
    assert lane["rows_before"] == lane["rows_after"] and lane["weights_after"]["lane-9"] == 2 * lane["weights_before"]["lane-9"]
    assert "PSI" in cli("monitor", "v2").stdout
    png = tmp_path / "monitor.png"
    cli("monitor", "v2", "--plot", "-o", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = j(cli("sql", "SELECT row_id FROM rows WHERE source_key = 'https://example.org/doc/42' AND parent_row_id IS NULL", "--json"))[0]["row_id"]
    t = j(cli("trace", page, "--json"))
    child = t["descendants"][0]["row_id"]
    assert t["steps"][0]["event"] == "modified" and t["steps"][0]["step"] == "strip-boilerplate"
    ct = j(cli("trace", child, "--json"))
    assert ct["derived_from"][0]["row_id"] == page and any(e["event"] == "merged" for e in ct["steps"])
    why = j(cli("why", child, "--version", "v2", "--json"))
    assert not why["in_version"] and "folded it into the kept duplicate" in why["explanation"]
    text = cli("trace", child).stdout
    assert "pipeline steps" in text and "derived from" in text and "merged" in text
    out = j(cli("sql", "SELECT kind, count(*) AS n FROM lineage GROUP BY 1 ORDER BY 1", "--json"))
    assert out == [{"kind": "merged", "n": 69}, {"kind": "modified", "n": 70}]
    cli("verify")


def test_bad_pipeline_files_name_the_problem(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[step]]\nuse = "filter"\nwhere = "length(text) >"\n')
    assert "does not parse" in cli("apply", str(bad), code=1).stderr
    bad.write_text('[[step]]\nuse = "rewrite"\nfunction = "nowhere.py:fn"\n')
    assert "no file" in cli("apply", str(bad), code=1).stderr
    # a function file imports the modules next to it, as 'python file.py' would; a missing one is named
    (tmp_path / "helpers_mod.py").write_text("def clean(t):\n    return t.strip()\n")
    (tmp_path / "fns.py").write_text("import helpers_mod\n\ndef fn(t):\n    return helpers_mod.clean(t)\n")
    (tmp_path / "broken.py").write_text("import no_such_helper_mod\n")
    bad.write_text('[[step]]\nuse = "rewrite"\nfunction = "broken.py:fn"\nfield = "text"\n')
    err = " ".join(cli("apply", str(bad), code=1).stderr.split())  # the console wraps long lines
    assert "failed to import 'no_such_helper_mod'" in err and "Traceback" not in err
    bad.write_text('[[step]]\nuse = "rewrite"\nfunction = "fns.py:fn"\nfield = "text"\n')
    cli("apply", str(bad), "--dry-run")
    bad.write_text('[[step]]\nuse = "filter"\nwhere = "no_such_column > 1"\n')
    assert "no_such_column" in cli("apply", str(bad), code=1).stderr
    cli("apply", str(tmp_path / "missing.toml"), code=1)
