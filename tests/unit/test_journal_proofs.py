"""The journal as an append-only log: its RFC 9162 tree head and consistency proofs, against an
independent brute force (every pair of sizes up to 70 leaves), on local and S3 stores, from the CLI,
and against a forked history that rewrote one early entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import rowtrail as rt
from rowtrail.errors import ProofError
from rowtrail.hashing import consistency_path, mth, roots_from_consistency, verify_consistency


def test_consistency_paths_match_rfc_9162_for_every_pair_of_sizes() -> None:
    leaves = [f"entry {i}".encode() * (i % 3 + 1) for i in range(70)]
    roots = [mth(leaves[:n]) for n in range(71)]
    for n in range(1, 71):
        for m in range(1, n + 1):
            path = consistency_path(leaves[:n], m)
            assert roots_from_consistency(m, n, roots[m], path) == roots[n], (m, n)
            if m < n:
                assert roots_from_consistency(m, n, roots[m - 1] if m > 1 else roots[m + 1], path) != roots[n]  # another old tree
                bent = [h if i != len(path) - 1 else "00" * 32 for i, h in enumerate(path)]
                assert roots_from_consistency(m, n, roots[m], bent) != roots[n]
                assert roots_from_consistency(m, n, roots[m], path + ["11" * 32]) != roots[n]
    # RFC 9162 §2.1.4.3's example tree of 7 leaves: PROOF(3) has 4 hashes, PROOF(4) 1, PROOF(6) 3
    assert [len(consistency_path(leaves[:7], m)) for m in (3, 4, 6)] == [4, 1, 3]
    assert consistency_path(leaves[:5], 5) == [] and roots_from_consistency(5, 5, roots[5], []) == roots[5]
    with pytest.raises(ProofError):
        consistency_path(leaves[:5], 0)


def _grow(s: Any, names: list[str]) -> None:
    for name in names:
        s.sources.add(name, kind="other", license="MIT", legal_basis="contract")


def test_a_kept_head_checks_a_later_journal_and_refuses_a_forked_one(any_store: Any, tmp_path: Path) -> None:
    s = any_store
    _grow(s, ["a", "b", "c"])
    kept = s.journal_root()
    assert kept["tree_size"] == len(s.state.entries) and kept["root"] == mth(s.backend.read_journal()[0]).hex()
    _grow(s, ["d", "e", "f", "g"])
    proof = s.prove_consistency(kept["tree_size"])
    assert proof["new_size"] == len(s.state.entries) and proof["new_root"] == s.journal_root()["root"]
    assert verify_consistency(json.loads(json.dumps(proof)), old_root=kept["root"])
    assert s.journal_root(kept["tree_size"]) == kept  # the head of a prefix is the head that was kept
    head = s.journal_root()
    assert s.verify(allow_unsigned=True).journal_root == {"tree_size": head["tree_size"], "root": head["root"]}  # verify reports the head it checked

    # a history that differs in one early entry (another source added first) cannot prove it extends the kept head
    fork = rt.init(str(tmp_path / "fork"))
    _grow(fork, ["a", "b", "x", "d", "e", "f", "g"])
    forged = fork.prove_consistency(kept["tree_size"])
    assert verify_consistency(forged)  # consistent with itself…
    assert not verify_consistency(forged, old_root=kept["root"])  # …but not with the head the auditor kept
    forged["old_root"] = kept["root"]  # claiming the kept root does not help: the path leads elsewhere
    assert not verify_consistency(forged, old_root=kept["root"])
    with pytest.raises(ProofError, match="old size ≤ new size"):
        s.prove_consistency(kept["tree_size"] + 1, kept["tree_size"])


def test_cli_journal_root_prove_and_check_proof(tmp_path: Path) -> None:
    env = dict(os.environ, ROWTRAIL_HOME=str(tmp_path / "home"), ROWTRAIL_STORE=str(tmp_path / "store"), COLUMNS="200")

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([sys.executable, "-m", "rowtrail", *args], env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == code, p.stdout + p.stderr
        return p

    cli("init")
    cli("source", "add", "a", "--kind", "other", "--license", "MIT", "--legal-basis", "contract")
    kept = json.loads(cli("journal", "root", "--json").stdout)
    cli("source", "add", "b", "--kind", "other", "--license", "MIT", "--legal-basis", "contract")
    cli("source", "add", "c", "--kind", "other", "--license", "MIT", "--legal-basis", "contract")
    cli("journal", "prove", str(kept["tree_size"]), "-o", str(tmp_path / "c.json"))
    ok = cli("check-proof", str(tmp_path / "c.json"), "--old-root", kept["root"])
    assert "journal consistency proof verifies" in ok.stdout
    bad = cli("check-proof", str(tmp_path / "c.json"), "--old-root", "ab" * 32, "--json", code=3)
    assert json.loads(bad.stdout)["ok"] is False and "not the root you kept" in json.loads(bad.stdout)["problem"]
    unpinned = cli("check-proof", str(tmp_path / "c.json"))
    assert "pass --old-root" in unpinned.stderr
    cli("journal", "prove", "99", code=1)
