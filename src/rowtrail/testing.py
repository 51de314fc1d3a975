"""Test doubles that ship with the library: a pytest plugin (registered as ``pytest11``) with

- ``rowtrail_home``: a fresh ``ROWTRAIL_HOME`` with a signing key (``rt.keygen()``) and its trust;
- ``tmp_store``: a new, empty store in a temporary directory, signing with that key;
- ``write_jsonl``: writes rows to a JSONL file and returns its path.

Everything is real: real files, a real store, real Ed25519 keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def rowtrail_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from .versions.signing import keygen

    home = tmp_path / "rowtrail-home"
    monkeypatch.setenv("ROWTRAIL_HOME", str(home))
    monkeypatch.delenv("ROWTRAIL_SIGNING_KEY", raising=False)
    monkeypatch.delenv("ROWTRAIL_STORE", raising=False)
    keygen()
    return home


@pytest.fixture
def tmp_store(tmp_path: Path, rowtrail_home: Path) -> Any:
    from . import init

    return init(tmp_path / "store")


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    def write(rows: Iterable[dict[str, Any]], name: str = "rows.jsonl") -> Path:
        path = tmp_path / name
        with open(path, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        return path

    return write
