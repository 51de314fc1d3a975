"""The public surface: ``__all__`` holds exactly what DESIGN.md names, and importing rowtrail (or
running ``rowtrail --help``) does not import torch, ray or object-store backends."""

from __future__ import annotations

import subprocess
import sys

import rowtrail as rt

PUBLIC = {"init", "open", "keygen", "verify_inclusion", "verify_exclusion", "Store", "Version", "ProvenanceSet", "ProvenanceDiff", "steps", "training", "__version__"}
HEAVY = ("torch", "ray", "s3fs", "fsspec", "datasets", "pandas", "polars", "sklearn")


def test_all_is_the_public_surface():
    errors = {n for n in rt.__all__ if n.endswith("Error")}
    assert set(rt.__all__) == PUBLIC | errors
    assert errors >= {"RowtrailError", "IngestError", "RefError", "SigningError", "VerificationError", "StoreLockedError"}
    for name in rt.__all__:
        assert hasattr(rt, name), name
    for name in errors:
        assert issubclass(getattr(rt, name), rt.RowtrailError)
    assert sorted(rt.__all__) == rt.__all__


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_is_light():
    mods = _modules_after("import rowtrail")
    assert not {m.split(".")[0] for m in mods} & set(HEAVY)


def test_cli_help_is_light():
    mods = _modules_after("import sys; sys.argv=['rowtrail','--help']\nfrom rowtrail.cli.app import app\ntry:\n    app(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass")
    assert not {m.split(".")[0] for m in mods} & set(HEAVY)


def test_python_dash_m_is_the_cli():
    out = subprocess.run([sys.executable, "-m", "rowtrail", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "trace" in out.stdout and "verify" in out.stdout
