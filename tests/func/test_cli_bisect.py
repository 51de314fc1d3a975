"""``rowtrail bisect`` end to end: a shell test command on the candidate Parquet file, --json, the
line-per-test output, --pipeline for steps that run user functions, and errors."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pyarrow as pa
import pytest

import rowtrail as rt

# Registers the command when the CLI app does not list it yet, then runs the real entry point.
RUNNER = (
    "from rowtrail.cli import app as cli, bisect as b\n"
    "if not any(c.name == 'bisect' for c in cli.app.registered_commands):\n"
    "    cli.app.command('bisect')(b.bisect)\n"
    "cli.main()\n"
)
CHECK = "import os, sys, pyarrow.parquet as pq; t = pq.read_table(os.environ['ROWTRAIL_BISECT_CORPUS']); sys.exit(1 if any('MARKER' in x for x in t.column('text').to_pylist()) else 0)"
CHECK_ARG = "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); sys.exit(1 if any('MARKER' in x for x in t.column('text').to_pylist()) else 0)"
PIPELINE = '[[step]]\nuse = "rewrite"\nfunction = "cleaning.py:shout"\nname = "shout"\nversion = "1"\n'
CLEANING = "def shout(row):\n    return {**row, 'text': row['text'].upper()}\n"


def rows(source: str, marker: bool = False) -> pa.Table:
    return pa.table({"id": [f"{source}{i}" for i in range(10)], "text": [f"{source} row {i}" + (" marker" if marker and i == 2 else "") for i in range(10)]})


@pytest.fixture
def store(tmp_path, rowtrail_home):
    """v1: source a through a user-function rewrite (upper case); v2: sources b, c (its row 2 gets
    the marker once upper-cased), d added, same pipeline."""
    (tmp_path / "cleaning.py").write_text(CLEANING)
    (tmp_path / "pipeline.toml").write_text(PIPELINE)
    s = rt.init(tmp_path / "store")
    pipe = rt.steps.load_pipeline(tmp_path / "pipeline.toml")
    for src in "abcd":
        s.sources.add(src, kind="other")
    s.ingest(rows("a"), source="a", key_field="id")
    s.apply(pipe)
    s.commit("v1", tag="v1", sign=False)
    for src in "bcd":
        s.ingest(rows(src, marker=src == "c"), source=src, key_field="id")
    s.apply(pipe)
    s.commit("v2", tag="v2", sign=False)
    return s


def cli(store, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, ROWTRAIL_STORE=str(store.path), COLUMNS="200")
    p = subprocess.run([sys.executable, "-c", RUNNER, *args], env=env, cwd=store.path.parent, capture_output=True, text=True, timeout=120)
    assert p.returncode == code, f"rowtrail {' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def test_bisect_json_with_shell_command(store):
    test = f"{shlex.quote(sys.executable)} -c {shlex.quote(CHECK)}"
    p = cli(store, "bisect", "v1", "v2", "--test", test, "--pipeline", "pipeline.toml", "--json")
    rep = json.loads(p.stdout)
    assert rep["first_bad"]["kind"] == "source" and rep["first_bad"]["source"] == "c"
    assert rep["first_bad"]["rows_added"] == 10 and rep["suspects"] == [rep["first_bad"]]
    assert [(t["k"], t["result"], t["exit_code"]) for t in rep["log"]] == [(0, "good", 0), (3, "bad", 1), (1, "good", 0), (2, "bad", 1)]
    assert rep["tests"] == 4 and rep["good"]["tag"] == "v1" and rep["bad"]["tag"] == "v2"
    assert len(p.stderr.strip().splitlines()) == 4  # one progress line per test, kept off stdout


def test_bisect_human_output_and_errors(store):
    test = f"{shlex.quote(sys.executable)} -c {shlex.quote(CHECK_ARG)} {{corpus}}"
    out = cli(store, "bisect", "v1", "v2", "--test", test, "--pipeline", "pipeline.toml").stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith("[0/3] good") and "GOOD v1" in lines[0]
    assert lines[1].startswith("[3/3] bad") and "BAD v2" in lines[1]
    assert "first bad change: #2 source 'c' added (+10 rows)" in out
    # a step running a user function needs its pipeline file
    err = cli(store, "bisect", "v1", "v2", "--test", test, code=1).stderr
    assert "StepError" in err and "--pipeline FILE" in err
    # GOOD must test good
    err = cli(store, "bisect", "v2", "v1", "--test", test, "--pipeline", "pipeline.toml", code=1).stderr
    assert "BisectError" in err and "GOOD v2 tests bad" in err
