"""The README's first command ends by running examples/demo.sh: keep it working (and quick)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("rowtrail") is None, reason="the rowtrail command is not installed on PATH")
def test_demo_script_runs_end_to_end(tmp_path):
    env = dict(os.environ, ROWTRAIL_DEMO_DIR=str(tmp_path), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("ROWTRAIL_SIGNING_KEY", None)
    # ~35 s on a quiet 2-core machine; the timeout only guards against a hang (speed is bench/'s job)
    p = subprocess.run(["bash", str(ROOT / "examples" / "demo.sh")], env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "+110 rows" in out and "sources added: crawl-2024-09" in out  # the diff
    assert "inclusion proof verifies" in out and "exclusion proof verifies" in out
    assert "first bad change: #3 add step 'dedupe-exact'" in out  # bisect names the step that empties the crawl
    assert "folded it into the kept duplicate" in out  # why, along the lineage (rewrite, then dedupe)
    assert "exported 251 rows of v39" in out
    assert "sources behind group 0 of run-" in out and "harmful rows for test example prose page" in out  # the training run
    assert "training run run-" in out and "of the removed row(s)" in out  # the opt-out names the run that consumed crawl rows
    assert "OK: receipt opt-" in out and "exclusion proof verifies" in out  # the opt-out and its receipt
    assert "# Transparency table: main@v40" in out
    assert "OK:" in out  # verify
    assert "# Run card: run-" in out and "Annotators flagged for calibration drift" in out  # examples/feedback.sh
    assert "derives from model outputs" in out
