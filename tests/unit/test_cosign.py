"""Co-signing: a version gains signatures from other keys (``rowtrail sign``), a version committed
unsigned gets its first one later, and ``verify --threshold K`` asks for K distinct trusted keys — on
local and S3 stores, from the CLI, and against an envelope that drops or changes what was signed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

import rowtrail as rt
from rowtrail.errors import SigningError
from rowtrail.hashing import jcs


def _two_versions(s: Any, write_jsonl: Any) -> None:
    s.sources.add("s", kind="synthetic", generator="model-x")
    s.ingest(write_jsonl([{"text": f"t{i}"} for i in range(5)]), source="s")
    s.commit("signed by the data lead", tag="v1")
    s.ingest(write_jsonl([{"text": f"u{i}"} for i in range(5)], name="more.jsonl"), source="s")
    s.commit("committed by CI, unsigned", tag="v2", sign=False)


def test_cosignatures_meet_a_threshold_and_sign_an_unsigned_version(any_store: Any, rowtrail_home: Path, write_jsonl: Any) -> None:
    s = any_store
    _two_versions(s, write_jsonl)
    rt.keygen("legal")  # a second person's key, trusted too
    rep = s.verify(threshold=2)
    assert not rep.ok and {p["object"] for p in rep.problems} == {"version v1", "version v2"}
    assert "signed by 1 trusted key(s)" in next(p["problem"] for p in rep.problems if p["object"] == "version v1")

    res = s.sign("v1", key="legal")
    assert res["signatures"] == 2 and res["tag"] == "v1"
    with pytest.raises(SigningError, match="already signed by key"):
        s.sign("v1", key="legal")
    s.sign("v2")  # its first signature, with the default key
    assert rt.open(s.path).version("v2").signed
    s.sign("v2", key="legal")
    rep = rt.open(s.path).verify(threshold=2)
    assert rep.ok, rep.problems
    env = rt.open(s.path).version("v1").attestation()
    assert len(env["signatures"]) == 2 and len({x["keyid"] for x in env["signatures"]}) == 2
    # the payload is the statement commit signed, byte for byte
    first = orjson.loads(s.backend.read_bytes(next(e for e in s.state.entries if e["kind"] == "commit")["envelope"]))
    assert env["payload"] == first["payload"]
    assert not rt.open(s.path).verify(threshold=3).ok


def test_an_envelope_that_drops_a_signature_or_signs_another_statement_is_reported(tmp_store: Any, rowtrail_home: Path, write_jsonl: Any) -> None:
    s = tmp_store
    _two_versions(s, write_jsonl)
    rt.keygen("legal")
    s.sign("v1", key="legal")
    v1 = s.version("v1").id
    env = s.version("v1").attestation()
    # a writer replaces the two-signature envelope by one holding only the second signature
    thinned = dict(env, signatures=env["signatures"][1:])
    with s._write() as state:
        digest = s.backend.put_bytes(jcs(thinned))
        s._append(state, {"kind": "sign", "corpus": "main", "version_id": v1, "envelope": digest, "keyid": env["signatures"][1]["keyid"]})
    rep = rt.open(s.path).verify()
    assert not rep.ok and any("drops a signature the version had" in p["problem"] for p in rep.problems)

    # another statement, signed by a trusted key, under a 'sign' entry of v1
    stmt = json.loads(base64.b64decode(env["payload"]))
    stmt["predicate"] = dict(stmt["predicate"], message="rewritten")
    from rowtrail.versions import signing

    other = signing.sign_envelope(stmt, signing.load_signing_key("legal"))
    other["signatures"] = env["signatures"] + other["signatures"]
    with s._write() as state:
        digest = s.backend.put_bytes(jcs(other))
        s._append(state, {"kind": "sign", "corpus": "main", "version_id": v1, "envelope": digest, "keyid": "x"})
    problems = [p["problem"] for p in rt.open(s.path).verify().problems]
    assert any("signs another statement" in p for p in problems) and any("does not describe this version" in p for p in problems)


def test_cli_sign_and_verify_threshold(tmp_path: Path, write_jsonl: Any) -> None:
    env = dict(os.environ, ROWTRAIL_HOME=str(tmp_path / "home"), ROWTRAIL_STORE=str(tmp_path / "store"), COLUMNS="200")
    env.pop("ROWTRAIL_SIGNING_KEY", None)

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([sys.executable, "-m", "rowtrail", *args], env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == code, p.stdout + p.stderr
        return p

    cli("keygen")
    cli("keygen", "--name", "legal")
    cli("init")
    cli("source", "add", "s", "--kind", "synthetic", "--generator", "model-x")
    cli("ingest", str(write_jsonl([{"text": "a"}, {"text": "b"}])), "--source", "s")
    cli("commit", "-m", "first", "--tag", "v1")
    cli("verify", "--threshold", "2", code=3)
    out = json.loads(cli("sign", "v1", "--key", "legal", "--json").stdout)
    assert out["signatures"] == 2
    assert "OK" in cli("verify", "--threshold", "2").stdout
    cli("sign", "v1", "--key", "legal", code=1)
