"""The README's quick starts must run as written (docs that work when copied)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def block(section: str, lang: str) -> str:
    text = (ROOT / "README.md").read_text()
    after = text[text.index(section) :]
    m = re.search(rf"```{lang}\n(.*?)```", after, re.S)
    assert m, f"no {lang} block after {section!r}"
    return m.group(1)


def test_python_quick_start_runs(tmp_path):
    script = tmp_path / "quick.py"
    script.write_text(block("## Quick start (Python)", "python"))
    p = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]


@pytest.mark.skipif(shutil.which("rowtrail") is None, reason="the rowtrail command is not installed on PATH")
def test_cli_quick_start_runs(tmp_path):
    script = tmp_path / "quick.sh"
    script.write_text("set -euo pipefail\n" + block("## Quick start (CLI)", "bash"))
    env = dict(os.environ, TMPDIR=str(tmp_path), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("ROWTRAIL_SIGNING_KEY", None)
    p = subprocess.run(["bash", str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "OK:" in p.stdout
