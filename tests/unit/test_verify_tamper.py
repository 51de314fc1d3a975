"""Tamper evidence (DESIGN "Quality bar": a crash leaves the store as before or as after, and ``verify``
says which; an outside auditor can tell an authentic version from a damaged one).

One small signed store (two sources, two ingests, two commits, a removal and a third commit) is built
once per module; every test works on its own copy, damages it the way an attacker or a failing disk
would, and checks that ``Store.verify`` reports the damage by name and never raises.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import rowtrail as rt
from rowtrail.backends.local import LocalBackend
from rowtrail.ops.verify import VerifyReport
from rowtrail.versions.journal import encode_entry, now_rfc3339

# -- the template store --------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(store, ROWTRAIL_HOME) of a small signed store with three versions; never modified."""
    base = tmp_path_factory.mktemp("tamper-template")
    home, path = base / "home", base / "store"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROWTRAIL_HOME", str(home))
        mp.delenv("ROWTRAIL_SIGNING_KEY", raising=False)
        mp.delenv("ROWTRAIL_STORE", raising=False)
        rt.keygen()
        store = rt.init(path)
        store.sources.add("partner-x", kind="partner-dump", uri="https://example.org/x", license="CC-BY-4.0", legal_basis="contract")
        store.sources.add("crawl", kind="crawl", license="MIT", legal_basis="tdm-exception")
        a = _write_jsonl(base / "a.jsonl", [{"id": i, "prompt": f"question {i}", "response": f"answer {i}"} for i in range(30)])
        b = _write_jsonl(base / "b.jsonl", [{"url": f"https://c.example/{i}", "text": f"page {i} " * 3} for i in range(25)])
        store.ingest(a, source="partner-x", key_field="id", content_fields=["prompt", "response"])
        store.commit("partner rows", tag="v1")
        store.ingest(b, source="crawl", key_field="url")
        store.commit("crawl rows", tag="v2")
        assert store.remove(source="partner-x", reason="contract ended") == 30
        store.commit("partner removed", tag="v3")
        rep = store.verify()
        assert rep.ok, rep.problems
    yield path, home


@pytest.fixture
def signed_store(template: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the template store, with ROWTRAIL_HOME trusting its signing key."""
    src, home = template
    monkeypatch.setenv("ROWTRAIL_HOME", str(home))
    monkeypatch.delenv("ROWTRAIL_SIGNING_KEY", raising=False)
    monkeypatch.delenv("ROWTRAIL_STORE", raising=False)
    dest = tmp_path / "store"
    shutil.copytree(src, dest)
    return dest


def _verify(path: Path, **kwargs: Any) -> VerifyReport:
    """A fresh ``Store`` each time, so no cache hides a damaged byte."""
    return rt.open(path).verify(**kwargs)


def _names(rep: VerifyReport) -> list[str]:
    return [p["object"] for p in rep.problems]


def _objects(path: Path) -> list[str]:
    return list(LocalBackend(path).iter_objects())


def _flip(path: Path, at: int | None = None, mask: int = 0x01) -> tuple[int, int]:
    """XOR one byte (the middle one by default) of a file; returns (offset, original byte)."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    old = data[at]
    data[at] ^= mask
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    return at, old


def _restore(path: Path, at: int, old: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] = old
    path.write_bytes(bytes(data))
    os.chmod(path, 0o444)


def _journal_lines(path: Path) -> list[bytes]:
    return (path / "journal.jsonl").read_bytes().split(b"\n")[:-1]


def _write_journal(path: Path, lines: list[bytes]) -> None:
    (path / "journal.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def _verify_with_journal(path: Path, lines: list[bytes], rewrite_head: bool) -> VerifyReport:
    """Verify with the journal replaced by ``lines`` (and, if asked, a HEAD.json that matches them,
    as an editor covering their tracks would write); the store is restored afterwards."""
    original_journal = (path / "journal.jsonl").read_bytes()
    original_head = (path / "HEAD.json").read_bytes()
    _write_journal(path, lines)
    if rewrite_head:
        head = {"seq": len(lines) - 1, "digest": hashlib.sha256(lines[-1]).hexdigest(), "bytes": sum(len(x) + 1 for x in lines)}
        (path / "HEAD.json").write_bytes(orjson.dumps(head))
    try:
        return _verify(path)
    finally:
        (path / "journal.jsonl").write_bytes(original_journal)
        (path / "HEAD.json").write_bytes(original_head)


# -- the good store --------------------------------------------------------------------------------


def test_template_store_verifies(signed_store: Path) -> None:
    rep = _verify(signed_store)
    assert rep.ok, rep.problems
    assert rep.problems == [] and rep.notes == []
    assert rep.journal_state == "clean"
    assert rep.checked["versions"] == 3
    assert rep.checked["signatures"] == 3
    assert rep.checked["journal_entries"] == len(_journal_lines(signed_store))
    assert rep.checked["objects"] == len(_objects(signed_store))
    store = rt.open(signed_store)
    assert [v.tag for v in store.versions()] == ["v1", "v2", "v3"]
    assert [v.content["row_count"] for v in store.versions()] == [30, 55, 25]


# -- objects ---------------------------------------------------------------------------------------


def test_every_object_byte_flip_is_named(signed_store: Path) -> None:
    objects = _objects(signed_store)
    # the store holds every kind of object: segments, drops, chunks, Merkle nodes, manifests, envelopes
    entries = [orjson.loads(line) for line in _journal_lines(signed_store)]
    referenced = {e["manifest"] for e in entries if e["kind"] == "commit"} | {e["envelope"] for e in entries if e["kind"] == "commit"}
    referenced |= {e["drops"] for e in entries if e["kind"] == "remove"}
    referenced |= {s[k] for e in entries if e["kind"] == "ingest" for s in e["segments"] for k in ("provenance", "content")}
    assert referenced <= set(objects)
    assert len(objects) > len(referenced)  # chunks and Merkle nodes too

    backend = LocalBackend(signed_store)
    missed = []
    for digest in objects:
        obj = backend.object_path(digest)
        at, old = _flip(obj)
        try:
            rep = _verify(signed_store)
        finally:
            _restore(obj, at, old)
        if rep.ok or not any(digest in p["object"] or digest in p["problem"] for p in rep.problems):
            missed.append((digest, rep.ok, rep.problems))
    assert not missed, f"byte flips not reported by object digest: {missed}"
    assert _verify(signed_store).ok  # every byte was put back


def test_every_missing_object_is_named(signed_store: Path) -> None:
    backend = LocalBackend(signed_store)
    missed = []
    for digest in _objects(signed_store):
        obj = backend.object_path(digest)
        aside = obj.with_name(obj.name + ".aside")
        obj.rename(aside)
        try:
            rep = _verify(signed_store)
        finally:
            aside.rename(obj)
        if rep.ok or not any(p["object"] == f"object {digest}" and "missing" in p["problem"] for p in rep.problems):
            missed.append((digest, rep.problems))
    assert not missed, f"missing objects not reported: {missed}"


# -- the journal -----------------------------------------------------------------------------------


def _where_ok(rep: VerifyReport, n: int, last: bool) -> bool:
    """A damaged line n (1-based) is named as itself, as the next line (whose chain link breaks) or,
    for the last line, through HEAD.json."""
    allowed = {f"journal.jsonl line {n}", f"journal.jsonl line {n + 1}"}
    if last:
        allowed.add("HEAD.json")
    return any(name in allowed for name in _names(rep))


def _bump_digit_in_at(line: bytes) -> bytes:
    """Change the last digit of the entry's ``at`` timestamp: still canonical JSON, different bytes."""
    entry = orjson.loads(line)
    at = entry["at"]
    assert at.endswith("Z") and at[-2].isdigit()
    new_at = at[:-2] + str((int(at[-2]) + 1) % 10) + "Z"
    out = line.replace(f'"at":"{at}"'.encode(), f'"at":"{new_at}"'.encode(), 1)
    assert out != line and len(out) == len(line)
    return out


@pytest.mark.parametrize("damage", ["value", "invalid-json", "middle-byte"])
def test_every_journal_line_edit_is_named(signed_store: Path, damage: str) -> None:
    original = (signed_store / "journal.jsonl").read_bytes()
    lines = _journal_lines(signed_store)
    assert len(lines) == 9
    missed = []
    for i in range(len(lines)):
        edited = list(lines)
        if damage == "value":
            edited[i] = _bump_digit_in_at(lines[i])
        elif damage == "invalid-json":
            assert lines[i].endswith(b"}")
            edited[i] = lines[i][:-1] + b"]"
        else:
            b = bytearray(lines[i])
            b[len(b) // 2] ^= 0x01
            edited[i] = bytes(b)
        _write_journal(signed_store, edited)
        try:
            rep = _verify(signed_store)
        finally:
            (signed_store / "journal.jsonl").write_bytes(original)
        n, last = i + 1, i == len(lines) - 1
        if rep.ok or not _where_ok(rep, n, last):
            missed.append((n, rep.ok, rep.problems))
        if damage == "invalid-json" and not any(
            p["object"] == f"journal.jsonl line {n}" and "not JSON" in p["problem"] for p in rep.problems
        ):
            missed.append((n, "no 'not JSON' problem", rep.problems))
    assert not missed, f"journal edits not reported at their line: {missed}"
    assert _verify(signed_store).ok


@pytest.mark.parametrize("rewrite_head", [False, True], ids=["head-kept", "head-rewritten"])
def test_every_removed_entry_is_caught(signed_store: Path, rewrite_head: bool) -> None:
    """Dropping an entry breaks the chain and the sequence, even for an editor who rewrites HEAD.json.

    (Dropping the *last* entry and rewriting HEAD.json is a rollback to an earlier valid state, which the
    store alone cannot tell apart from that state; it is not tested here.)"""
    lines = _journal_lines(signed_store)
    missed = []
    for i in range(len(lines) - 1):
        rep = _verify_with_journal(signed_store, lines[:i] + lines[i + 1 :], rewrite_head)
        n = i + 1
        if rep.ok or not any(name in (f"journal.jsonl line {n}", f"journal.jsonl line {n + 1}") for name in _names(rep)):
            missed.append((n, rep.problems))
    assert not missed, missed


@pytest.mark.parametrize("rewrite_head", [False, True], ids=["head-kept", "head-rewritten"])
def test_swapped_entries_are_caught(signed_store: Path, rewrite_head: bool) -> None:
    lines = _journal_lines(signed_store)
    missed = []
    for i in range(len(lines) - 1):
        swapped = list(lines)
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        rep = _verify_with_journal(signed_store, swapped, rewrite_head)
        if rep.ok or f"journal.jsonl line {i + 1}" not in _names(rep):
            missed.append((i + 1, rep.problems))
    assert not missed, missed


@pytest.mark.parametrize("field", ["seq", "digest", "bytes"])
def test_edited_head_is_caught(signed_store: Path, field: str) -> None:
    head = orjson.loads((signed_store / "HEAD.json").read_bytes())
    if field == "seq":
        head["seq"] -= 1
    elif field == "digest":
        head["digest"] = hashlib.sha256(b"not an entry").hexdigest()
    else:
        head["bytes"] -= 7  # points inside the last line
    (signed_store / "HEAD.json").write_bytes(orjson.dumps(head))
    rep = _verify(signed_store)
    assert not rep.ok
    assert any(name in ("HEAD.json", "journal.jsonl") or name.startswith("journal.jsonl line") for name in _names(rep)), rep.problems


def test_truncated_journal_fails(signed_store: Path) -> None:
    lines = _journal_lines(signed_store)
    _write_journal(signed_store, lines[:-1])  # cut the last full line; HEAD.json still names it
    rep = _verify(signed_store)
    assert not rep.ok
    assert any(p["object"] == "journal.jsonl" and "truncated" in p["problem"] for p in rep.problems), rep.problems


def test_journal_cut_mid_line_fails(signed_store: Path) -> None:
    data = (signed_store / "journal.jsonl").read_bytes()
    (signed_store / "journal.jsonl").write_bytes(data[:-40])
    rep = _verify(signed_store)
    assert not rep.ok
    assert "journal.jsonl" in _names(rep)


@pytest.mark.parametrize("tail", ["partial-line", "whole-uncommitted-entry"])
def test_interrupted_write_is_a_note_and_the_next_write_removes_it(signed_store: Path, tail: str) -> None:
    store = rt.open(signed_store)
    before = [v.id for v in store.versions()]
    head = orjson.loads((signed_store / "HEAD.json").read_bytes())
    if tail == "partial-line":
        extra = b'{"at":"2030-01-01T00:00:00.000000Z","kind":"source.add","prev":"' + head["digest"][:20].encode()
    else:
        # what a crash between the journal fsync and the HEAD.json rename leaves behind
        entry = {
            "seq": head["seq"] + 1,
            "prev": head["digest"],
            "at": now_rfc3339(),
            "kind": "source.add",
            "source": {**rt.open(signed_store).sources.get("crawl").to_dict(), "source_id": "ghost", "snapshot": "ghost@1"},
        }
        extra = encode_entry(entry)[0] + b"\n"
    with open(signed_store / "journal.jsonl", "ab") as fh:
        fh.write(extra)

    rep = _verify(signed_store)
    assert rep.ok, rep.problems
    assert rep.journal_state == "as before an interrupted write"
    assert len(rep.notes) == 1 and f"{len(extra)} bytes past the journal head" in rep.notes[0]
    reopened = rt.open(signed_store)
    assert [v.id for v in reopened.versions()] == before
    assert "ghost" not in reopened.sources

    reopened.sources.add("after-crash", kind="other")
    data = (signed_store / "journal.jsonl").read_bytes()
    new_head = orjson.loads((signed_store / "HEAD.json").read_bytes())
    assert len(data) == new_head["bytes"] and new_head["seq"] == head["seq"] + 1
    assert extra.rstrip(b"\n") not in data
    rep = _verify(signed_store)
    assert rep.ok and rep.notes == [] and rep.journal_state == "clean", rep.to_dict()
    assert "after-crash" in rt.open(signed_store).sources and "ghost" not in rt.open(signed_store).sources


# -- signatures ------------------------------------------------------------------------------------


def test_swapped_trusted_key_fails_and_the_right_pubkey_restores_trust(
    template: tuple[Path, Path], signed_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, real_home = template
    home = tmp_path / "home"
    shutil.copytree(real_home, home)
    other = tmp_path / "other-home"
    rt.keygen(home=other)
    trusted = sorted((home / "trusted_keys").glob("*.pem"))
    assert trusted
    for pem in trusted:
        pem.write_bytes((other / "trusted_keys" / "default.pem").read_bytes())
    monkeypatch.setenv("ROWTRAIL_HOME", str(home))

    rep = _verify(signed_store)
    assert not rep.ok
    bad = [p for p in rep.problems if "signature does not verify with any trusted key" in p["problem"]]
    assert {p["object"] for p in bad} == {"version v1", "version v2", "version v3"}, rep.problems
    assert rep.checked["signatures"] == 0

    rep = _verify(signed_store, pubkeys=[str(real_home / "keys" / "default.pub.pem")])
    assert rep.ok, rep.problems
    assert rep.checked["signatures"] == 3

    # no trusted keys at all: also a failure, never a pass
    for pem in (home / "trusted_keys").glob("*.pem"):
        pem.unlink()
    rep = _verify(signed_store)
    assert not rep.ok and any("does not verify with any trusted key" in p["problem"] for p in rep.problems)

    # --allow-unsigned waives the trusted signature, as for an unsigned version, and says so per version
    rep = rt.open(signed_store).verify(allow_unsigned=True)
    assert rep.ok, rep.problems
    assert rep.checked["signatures"] == 0 and sum("no trusted key verifies; accepted (--allow-unsigned)" in n for n in rep.notes) == 3


def test_unsigned_version_fails_unless_allowed(rowtrail_home: Path, tmp_path: Path, write_jsonl: Any) -> None:
    store = rt.init(tmp_path / "unsigned")
    store.sources.add("s", kind="synthetic", generator="model-x")
    store.ingest(write_jsonl([{"text": f"t{i}"} for i in range(5)]), source="s")
    store.commit("signed", tag="v1")
    store.ingest(write_jsonl([{"text": f"u{i}"} for i in range(5)], name="more.jsonl"), source="s")
    v2 = store.commit("unsigned", tag="v2", sign=False)
    assert not v2.signed

    rep = store.verify()
    assert not rep.ok
    assert _names(rep) == ["version v2"]
    assert "unsigned" in rep.problems[0]["problem"] and "--allow-unsigned" in rep.problems[0]["problem"]
    rep = store.verify(allow_unsigned=True)
    assert rep.ok, rep.problems
    assert rep.checked["signatures"] == 1


# -- the CLI ---------------------------------------------------------------------------------------


def _cli_verify(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rowtrail", "--store", str(path), "verify", *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_verify_exits_0_on_a_good_store(signed_store: Path) -> None:
    good = _cli_verify(signed_store)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "OK" in good.stdout
    as_json = _cli_verify(signed_store, "--json")
    assert as_json.returncode == 0 and orjson.loads(as_json.stdout)["ok"] is True


@pytest.mark.parametrize("damage", ["object", "journal"])
def test_cli_verify_exits_3_on_a_tampered_store(signed_store: Path, damage: str) -> None:
    store = rt.open(signed_store)
    if damage == "object":
        manifest = store.state.versions[store.state.tags["v2"]].manifest
        _flip(LocalBackend(signed_store).object_path(manifest))
        named = manifest
    else:
        lines = _journal_lines(signed_store)
        lines[3] = _bump_digit_in_at(lines[3])
        _write_journal(signed_store, lines)
        named = "journal.jsonl line"
    # the damage is real: the library reports it
    assert not _verify(signed_store).ok
    bad = _cli_verify(signed_store, "--json")
    report = orjson.loads(bad.stdout)
    assert report["ok"] is False
    assert any(named in p["object"] for p in report["problems"])
    assert bad.returncode == 3, bad.stdout + bad.stderr
    plain = _cli_verify(signed_store)
    assert "verification FAILED" in plain.stdout
    assert plain.returncode == 3, plain.stdout + plain.stderr
