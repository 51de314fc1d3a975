"""The ``bundle`` export: an auditor's directory checked by its own ``verify.py`` — run as a separate
Python process in isolated mode, and once in a fresh virtualenv that has only ``cryptography`` —
against real signed stores, then tampered with byte by byte."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

import rowtrail as rt
from rowtrail import exports, hashing, steps
from rowtrail.exports import bundle  # noqa: F401  (registers 'bundle' until rowtrail.exports imports it)
from rowtrail.exports import verify_bundle as vb
from rowtrail.exports.base import ExportError, ExportExistsError

VERIFY_TIMEOUT = 120


def _ids(store, ref: str) -> list[str]:
    return hashing.ids_hex(store.version_rows(store.version(ref).id)["id"])


def _hex(value) -> str:
    return value.hex() if isinstance(value, bytes) else value


@pytest.fixture
def store(tmp_store):
    """v1: 30 + 12 rows; v2: three rows removed and source beta reweighted by 0.35 (fractional sums)."""
    tmp_store.sources.add("alpha", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    tmp_store.sources.add("beta", kind="crawl", license="MIT", legal_basis="tdm-exception")
    tmp_store.ingest(pa.table({"id": list(range(30)), "text": [f"alpha text {i} «é»" for i in range(30)]}), source="alpha", key_field="id")
    tmp_store.ingest(pa.table({"id": list(range(12)), "text": [f"beta text {i}" for i in range(12)]}), source="beta", key_field="id")
    v1 = tmp_store.commit("first", tag="v1")
    ids = _ids(tmp_store, "v1")
    tmp_store.remove(row_ids=[ids[0], ids[10], ids[-1]], reason="opt-out")
    tmp_store.apply([steps.reweight(source="beta", factor=0.35)])
    v2 = tmp_store.commit("second", tag="v2")
    assert v1.signed and v2.signed and v2.row_count == 39
    assert v2.content["weight_total"] != int(v2.content["weight_total"])  # a float JCS must write exactly
    return tmp_store


def _content_hash(store, ref: str, row_id: str) -> str:
    for r in store.rows(ref).to_pylist():
        if _hex(r["row_id"]) == row_id:
            return _hex(r["content_sha256"])
    raise AssertionError(row_id)


def run_verify(directory: Path, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ROWTRAIL"))}
    return subprocess.run([python, "-I", "verify.py", *args], cwd=directory, capture_output=True, text=True, timeout=VERIFY_TIMEOUT, env=env)


@pytest.fixture
def made(store, tmp_path):
    """A bundle of v2 with a proof of each kind: (store, bundle dir, the ids used)."""
    v1 = _ids(store, "v1")
    v2 = _ids(store, "v2")
    present, gone = v2[5], v1[10]  # v1[10] was removed: it sorts between two rows of v2
    ids = {"present": present, "gone": gone, "present_content": _content_hash(store, "v2", present), "gone_content": _content_hash(store, "v1", gone)}
    out = tmp_path / "bundle"
    res = exports.export(store, "bundle", "v2", out, prove=[present], absent=gone, prove_content=[ids["present_content"]], absent_content=[ids["gone_content"]])
    assert res.format == "bundle" and res.path == str(out) and res.rows == 39 and res.tag == "v2"
    return store, out, ids, res


def test_bundle_layout_and_verify_py_says_ok(made):
    store, out, ids, res = made
    v = store.version("v2")
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    proofs = {f"proofs/row-in-{ids['present']}.json", f"proofs/row-absent-{ids['gone']}.json", f"proofs/content-in-{ids['present_content']}.json", f"proofs/content-absent-{ids['gone_content']}.json"}
    assert names == {"record.json", "envelope.json", "pubkey.pem", "ids.bin", "weights.bin", "contents.bin", "inputs.bin", "spec.md", "README.txt", "verify.py"} | proofs
    assert {f["path"] for f in res.files} == names
    assert res.details["signed"] and len(res.details["key_ids"]) == 1 and sorted(res.details["proofs"]) == sorted(proofs)
    # the layout the README describes
    assert hashlib.sha256((out / "record.json").read_bytes()).hexdigest() == v.id
    assert (out / "record.json").read_bytes() == rfc8785.dumps(v.record)
    ids_bin = (out / "ids.bin").read_bytes()
    assert [ids_bin[i : i + 32].hex() for i in range(0, len(ids_bin), 32)] == _ids(store, "v2")
    weights = [w for (w,) in struct.iter_unpack(">d", (out / "weights.bin").read_bytes())]
    assert math.fsum(weights) == v.content["weight_total"] and sorted(set(weights)) == [0.35, 1.0]
    assert json.loads((out / f"proofs/row-absent-{ids['gone']}.json").read_text()) == store.prove(ids["gone"], "v2", absent=True)
    assert (out / "verify.py").read_bytes() == Path(vb.__file__).read_bytes()
    assert (out / "spec.md").read_text(encoding="utf-8").startswith("# rowtrail formats")
    readme = (out / "README.txt").read_text()
    assert "python verify.py" in readme and v.id in readme and "--pubkey SIGNER.pem" in readme

    got = run_verify(out)
    assert got.returncode == 0, got.stdout + got.stderr
    lines = got.stdout.splitlines()
    assert lines[-1] == f"OK main@v2: 39 rows, version {v.id}"
    assert not [ln for ln in lines if ln.startswith(("FAIL", "warn"))]
    for check in ("signature", "statement subject", "statement predicate", "content_id", "merkle_root", "row_count", "weights_sha256", "weight_total", "content_root", "inputs_root"):
        assert any(ln.startswith(f"ok    {check}:") for ln in lines), check
    proof_lines = [ln for ln in lines if ln.startswith("ok    proof ")]
    assert len(proof_lines) == 4
    assert sum(" IS in the version" in ln for ln in proof_lines) == 2 and sum("between adjacent leaves" in ln for ln in proof_lines) == 2


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] = ord("0") if data[offset] != ord("0") else ord("1")
    path.write_bytes(bytes(data))


def test_one_tampered_byte_fails(made, tmp_path):
    store, out, ids, _ = made
    record = (out / "record.json").read_bytes()
    proof = out / f"proofs/row-in-{ids['present']}.json"
    cases = {
        "record.json": ("record.json", record.index(b'"merkle_root":"') + 20, ["FAIL  statement subject", "FAIL  statement predicate", "FAIL  merkle_root"]),
        "record.json tag": ("record.json", record.index(b'"tag":"v2"') + 8, ["FAIL  statement subject"]),
        "ids.bin": ("ids.bin", 32 * 7 + 5, ["FAIL  merkle_root", "FAIL  weights_sha256"]),
        "weights.bin": ("weights.bin", 8 * 3 + 7, ["FAIL  weights_sha256"]),
        "contents.bin": ("contents.bin", 32 * 20 + 9, ["FAIL  content_root"]),
        "inputs.bin": ("inputs.bin", 32 * 2 + 31, ["FAIL  inputs_root"]),
        "proof": (f"proofs/row-in-{ids['present']}.json", proof.read_bytes().index(b'"audit_path"') + 20, ["FAIL  proof"]),
        "absent proof": (f"proofs/row-absent-{ids['gone']}.json", (out / f"proofs/row-absent-{ids['gone']}.json").read_bytes().index(b'"left"') + 40, ["FAIL  proof"]),
        "envelope": ("envelope.json", (out / "envelope.json").read_bytes().index(b'"sig":"') + 10, ["FAIL  signature"]),
    }
    for name, (file, offset, expect) in cases.items():
        copy = tmp_path / f"tampered-{name.replace(' ', '-')}"
        shutil.copytree(out, copy)
        _flip(copy / file, offset)
        got = run_verify(copy)
        assert got.returncode == vb.EXIT_FAILED, (name, got.stdout, got.stderr)
        assert got.stdout.splitlines()[-1].startswith("FAILED"), name
        failed = [ln for ln in got.stdout.splitlines() if ln.startswith("FAIL ")]
        assert failed and all(any(ln.startswith(e) for ln in failed) for e in expect), (name, failed)


def test_a_proof_of_another_tree_size_or_version_fails(made, tmp_path):
    """Spec §12.1: a proof that verifies on its own must still match the record's root and size."""
    store, out, ids, _ = made
    copy = tmp_path / "relabelled"
    shutil.copytree(out, copy)
    last = _ids(store, "v2")[-1]
    p = store.prove(last, "v2")
    n = p["tree_size"]
    fake = dict(p, leaf_index=2 * n - 2, tree_size=2 * n - 1)  # the relabelling of spec §12.1
    assert rt.verify_inclusion(fake)
    (copy / "proofs" / "fake.json").write_text(json.dumps(fake))
    (copy / "proofs" / "other.json").write_text(json.dumps(store.prove(_ids(store, "v1")[0], "v1")))
    got = run_verify(copy)
    assert got.returncode == vb.EXIT_FAILED
    assert "FAIL  proof proofs/fake.json: tree_size" in got.stdout
    assert "FAIL  proof proofs/other.json: merkle_root" in got.stdout


def test_a_record_it_cannot_canonicalize_is_refused(made, tmp_path):
    _, out, _, _ = made
    copy = tmp_path / "unsafe"
    shutil.copytree(out, copy)
    record = (copy / "record.json").read_bytes()
    (copy / "record.json").write_bytes(record.replace(b'"row_count":39', b'"row_count":9007199254740993'))
    got = run_verify(copy)
    assert got.returncode == vb.EXIT_REFUSED and "REFUSED" in got.stderr and "9007199254740993" in got.stderr


def test_the_auditors_own_key_replaces_pubkey_pem(made, tmp_path):
    store, out, _, _ = made
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from rowtrail.versions.signing import public_pem

    other = tmp_path / "other.pem"
    other.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    got = run_verify(out, "--pubkey", str(other))
    assert got.returncode == vb.EXIT_FAILED and "FAIL  signature: no signature verifies" in got.stdout
    signer = Path(os.environ["ROWTRAIL_HOME"]) / "keys" / "default.pub.pem"
    assert run_verify(out, "--pubkey", str(signer)).returncode == 0


def test_unsigned_versions_need_allow_unsigned(store, tmp_path):
    store.remove(row_ids=_ids(store, "v2")[:2], reason="opt-out")
    store.commit("unsigned", tag="v3", sign=False)
    out = tmp_path / "unsigned"
    with pytest.raises(ExportError, match="unsigned.*allow_unsigned=True"):
        exports.export(store, "bundle", "v3", out)
    assert not out.exists()
    res = exports.export(store, "bundle", "v3", out, allow_unsigned=True)
    assert not res.details["signed"] and not (out / "envelope.json").exists() and not (out / "pubkey.pem").exists()
    assert "python verify.py --allow-unsigned" in (out / "README.txt").read_text()
    got = run_verify(out)
    assert got.returncode == vb.EXIT_FAILED and "FAIL  signature: no envelope.json" in got.stdout
    got = run_verify(out, "--allow-unsigned")
    assert got.returncode == 0, got.stdout
    assert "warn  signature" in got.stdout and got.stdout.splitlines()[-1].startswith("OK main@v3: 37 rows")


def test_untrusted_signatures_are_refused(store, tmp_path):
    for p in (Path(os.environ["ROWTRAIL_HOME"]) / "trusted_keys").glob("*.pem"):
        p.unlink()
    with pytest.raises(ExportError, match="no trusted key verifies"):
        exports.export(store, "bundle", "v2", tmp_path / "b")
    signer = Path(os.environ["ROWTRAIL_HOME"]) / "keys" / "default.pub.pem"
    res = exports.export(store, "bundle", "v2", tmp_path / "b", pubkeys=[signer])
    assert res.details["key_ids"] and (tmp_path / "b" / "pubkey.pem").read_bytes() == signer.read_bytes()


def test_options_are_checked_before_anything_is_written(store, tmp_path):
    out = tmp_path / "b"
    v1, v2 = _ids(store, "v1"), _ids(store, "v2")
    with pytest.raises(ExportError, match="no option 'prove_row'.*absent, absent_content"):
        exports.export(store, "bundle", "v2", out, prove_row=[v2[0]])
    with pytest.raises(ExportError, match="prove: row id 'abc' is not 64 hex digits"):
        exports.export(store, "bundle", "v2", out, prove=["abc"])
    with pytest.raises(ExportError, match="prove: .*not in version v2"):
        exports.export(store, "bundle", "v2", out, prove=[v1[0]])
    with pytest.raises(ExportError, match="absent: .*IS in version v2"):
        exports.export(store, "bundle", "v2", out, absent=[v2[0]])
    with pytest.raises(ExportError, match="allow_unsigned must be True or False"):
        exports.export(store, "bundle", "v2", out, allow_unsigned="yes")
    with pytest.raises(ExportError, match="writes a directory"):
        exports.export(store, "bundle", "v2", None)
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".b")] == []
    exports.export(store, "bundle", "v2", out)
    with pytest.raises(ExportExistsError, match="--force"):
        exports.export(store, "bundle", "v2", out)
    exports.export(store, "bundle", "v1", out, overwrite=True)
    assert hashlib.sha256((out / "record.json").read_bytes()).hexdigest() == store.version("v1").id
    assert run_verify(out).returncode == 0


def test_without_spec_md_the_readme_says_so(store, tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "_spec_candidates", lambda: [tmp_path / "nowhere.md"])
    res = exports.export(store, "bundle", "v2", tmp_path / "b")
    assert not res.details["spec"] and not (tmp_path / "b" / "spec.md").exists()
    assert "no spec.md: docs/spec.md was not found" in (tmp_path / "b" / "README.txt").read_text()


def test_verify_py_imports_only_the_standard_library_and_cryptography():
    tree = ast.parse(Path(vb.__file__).read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import would need the package"
            roots.add((node.module or "").split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"cryptography"}


# -- the script's own RFC 8785 against the reference package ----------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_verify_py_jcs_equals_rfc8785(value):
    try:
        want = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:  # lone surrogates
        with pytest.raises(vb.Refused):
            vb.jcs(value)
        return
    assert vb.jcs(value) == want
    assert vb.jcs(vb.load_json(want, "value")) == want  # parsing its own output is lossless


@settings(max_examples=400, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_verify_py_numbers_equal_rfc8785(f):
    assert vb.number(f).encode() == rfc8785.dumps(f)


def test_verify_py_refuses_what_has_no_single_canonical_form():
    for text in (b'{"a": 1, "a": 2}', b"[NaN]", b"[1e400]", b"[9007199254740993]"):
        with pytest.raises(vb.Refused):
            vb.load_json(text, "x")
    assert vb.jcs(vb.load_json(b"[100000000000000000000, -0.0, 1E-7, 20.0]", "x")) == b"[100000000000000000000,0,1e-7,20]"


# -- in a fresh virtualenv without rowtrail ----------------------------------------------------------


def test_verify_py_in_a_fresh_virtualenv_with_only_cryptography(made, tmp_path):
    _, out, _, _ = made
    venv = tmp_path / "venv"
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    py = venv / "bin" / "python"
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-q", "cryptography"], capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        text = pip.stdout + pip.stderr
        if any(s in text for s in ("NewConnectionError", "Temporary failure in name resolution", "No matching distribution", "Could not find a version", "Network is unreachable", "ConnectTimeout", "ProxyError")):
            pytest.skip(f"cannot install cryptography from PyPI (no network?): {text.strip().splitlines()[-1]}")
        raise AssertionError(text)
    has = subprocess.run([str(py), "-I", "-c", "import importlib.util as u; print(u.find_spec('rowtrail') is None, u.find_spec('rfc8785') is None, u.find_spec('pyarrow') is None)"], capture_output=True, text=True, check=True)
    assert has.stdout.split() == ["True", "True", "True"]
    got = run_verify(out, python=str(py))
    assert got.returncode == 0, got.stdout + got.stderr
    assert got.stdout.splitlines()[-1].startswith("OK main@v2: 39 rows")
    print(f"fresh virtualenv + pip install cryptography + verify: {time.monotonic() - start:.1f} s")
