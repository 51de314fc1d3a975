"""The ``bundle`` export: an auditor's directory that proves a version authentic and untampered, and
chosen rows or texts in or out of it, without rowtrail (``rowtrail export bundle V -o DIR``).

Layout (``n`` rows, ``m`` distinct content hashes, ``k`` input rows; ids are raw 32-byte SHA-256 values
in ascending bytewise order, docs/spec.md §0):

- ``record.json``: the version record (spec §9) as its RFC 8785 bytes, so ``sha256sum record.json``
  prints the version id.
- ``envelope.json``: the DSSE envelope that signs it (spec §10), as stored.
- ``pubkey.pem``: the trusted public key(s) whose signature verifies — from
  ``ROWTRAIL_HOME/trusted_keys`` and ``pubkeys`` — concatenated PEM blocks.
- ``ids.bin``: the row ids, ``32·n`` bytes → ``merkle_root``, ``row_count``.
- ``weights.bin``: row i's weight, ``8·n`` bytes of big-endian binary64 → with ``ids.bin``,
  ``weights_sha256`` and ``weight_total``.
- ``contents.bin``: the distinct content hashes, ``32·m`` bytes → ``content_root``.
- ``inputs.bin``: the input set's row ids, ``32·k`` bytes → ``inputs_root``.
- ``proofs/``: format 9 proofs as JSON, ``row-in-<id>.json``, ``row-absent-<id>.json``,
  ``content-in-<hash>.json``, ``content-absent-<hash>.json``.
- ``spec.md``: docs/spec.md, when it can be found next to the package (else README.txt says so).
- ``verify.py``: ``verify_bundle.py`` of this package — Python's standard library and
  ``cryptography`` only — which checks all of the above; ``README.txt`` says how to run it.

Options:

- ``prove``: row ids to prove IN the version (inclusion proofs against ``merkle_root``).
- ``absent``: row ids to prove NOT in it (exclusion proofs, spec §12.2).
- ``prove_content`` / ``absent_content``: the same for content hashes against ``content_root``.
- ``allow_unsigned`` (default False): bundle a version with no signature from a trusted key (no
  ``pubkey.pem``; ``verify.py`` then needs ``--allow-unsigned`` or the signer's ``--pubkey``).
- ``pubkeys``: more trusted public-key PEM files, as ``rowtrail verify --pubkey``.
- ``corpus``: the corpus a ref such as ``HEAD`` names.

Before writing, the exporter recomputes the digests the bundle lets an auditor check, so a damaged
store fails here (run ``rowtrail verify``) rather than in the auditor's hands.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import orjson

from ..errors import ExportError, ProofError
from ..hashing import ID_DTYPE, jcs, merkle_root, weights_sha256
from ..ops.prove import normalize_id
from .base import Exporter, ExportResult, Progress, atomic_output, check_target, file_digest, register, resolve_version

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.version import Version

FORMAT_ID = "rowtrail.bundle/1"
VERIFY_SCRIPT = "verify_bundle.py"
SPEC_TITLE = "# rowtrail formats"
# (option, content tree?, absent?, file prefix)
PROOF_OPTIONS = (
    ("prove", False, False, "row-in"),
    ("absent", False, True, "row-absent"),
    ("prove_content", True, False, "content-in"),
    ("absent_content", True, True, "content-absent"),
)


@dataclass(frozen=True)
class BundleOptions:
    prove: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    prove_content: tuple[str, ...] = ()
    absent_content: tuple[str, ...] = ()
    allow_unsigned: bool = False
    pubkeys: tuple[str, ...] = ()
    corpus: str = "main"


@register
class BundleExporter(Exporter):
    name = "bundle"
    suffixes = ()
    description = "an auditor's directory: signed record, ids, proofs and a standalone verify.py"
    writes_stdout = False
    options: ClassVar[frozenset[str]] = frozenset(BundleOptions.__dataclass_fields__)

    def write(self, store: Store, version: str | Version, path: str | os.PathLike[str] | None, *, overwrite: bool = False, progress: Progress | None = None, **options: Any) -> ExportResult:
        opts = _check(options)
        if path is None:
            raise ExportError("format 'bundle' writes a directory; give the output path (-o DIR)")
        target = check_target(path, overwrite)
        v = resolve_version(store, version, opts.corpus)
        label = v.tag or v.id[:12]
        envelope, pem, key_ids = _signature(v, opts, label)
        proofs = _proofs(store, v, opts, progress)
        arrays = _arrays(store, v, label, progress)
        spec = _find_spec()
        files: list[dict[str, Any]] = []
        with atomic_output(target, overwrite) as tmp:
            tmp.mkdir()
            (tmp / "proofs").mkdir()

            def put(name: str, data: bytes | memoryview) -> None:
                (tmp / name).write_bytes(data)
                size, digest = file_digest(tmp / name)
                files.append({"path": name, "bytes": size, "sha256": digest})

            put("record.json", jcs(v.record))
            if envelope is not None:
                put("envelope.json", jcs(envelope))
            if pem:
                put("pubkey.pem", pem)
            for name, arr in arrays.items():
                put(name, memoryview(np.ascontiguousarray(arr)).cast("B"))  # type: ignore[arg-type]
            for name, proof in proofs.items():
                put(name, orjson.dumps(proof, option=orjson.OPT_INDENT_2) + b"\n")
            if spec is not None:
                put("spec.md", spec.read_bytes())
            put("verify.py", resources.files(__package__).joinpath(VERIFY_SCRIPT).read_bytes())
            put("README.txt", _readme(v, arrays, proofs, key_ids, envelope is not None, spec).encode())
            if progress:
                progress("write", len(files), len(files))
        return ExportResult(
            format=self.name,
            path=str(target),
            rows=int(v.content["row_count"]),
            bytes=sum(int(f["bytes"]) for f in files),
            version_id=v.id,
            tag=v.tag,
            content_id=v.content_id,
            merkle_root=v.content["merkle_root"],
            files=files,
            details={"bundle_format": FORMAT_ID, "corpus": v.corpus, "signed": envelope is not None, "key_ids": key_ids, "proofs": sorted(proofs), "spec": spec is not None},
        )


def _check(options: dict[str, Any]) -> BundleOptions:
    known = BundleExporter.options
    unknown = sorted(set(options) - known)
    if unknown:
        raise ExportError(f"format 'bundle' has no option {', '.join(repr(u) for u in unknown)}; its options are: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for name, content, _absent, _prefix in PROOF_OPTIONS:
        what = "content hash" if content else "row id"
        got = []
        for value in _strings(options.get(name), name):
            try:
                got.append(normalize_id(value, what))
            except ProofError as exc:
                raise ExportError(f"{name}: {exc}") from None
        values[name] = tuple(dict.fromkeys(got))
    allow = options.get("allow_unsigned", False)
    if not isinstance(allow, bool):
        raise ExportError(f"allow_unsigned must be True or False, not {allow!r}")
    keys = tuple(os.fspath(p) for p in _strings(options.get("pubkeys"), "pubkeys", paths=True))
    for p in keys:
        if not Path(p).is_file():
            raise ExportError(f"pubkeys: no public key file at {p}")
    corpus = options.get("corpus", "main")
    if not isinstance(corpus, str) or not corpus:
        raise ExportError(f"corpus must be a corpus name, not {corpus!r}")
    return BundleOptions(**values, allow_unsigned=allow, pubkeys=keys, corpus=corpus)


def _strings(value: Any, name: str, paths: bool = False) -> list[Any]:
    """One string (or path) or an iterable of them, as a list; None is empty."""
    if value is None:
        return []
    single = (str, os.PathLike) if paths else (str,)
    if isinstance(value, single):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, bytes | dict):
        items = list(value)
        if all(isinstance(x, single) for x in items):
            return items
    raise ExportError(f"{name} must be {'a path or a list of paths' if paths else 'a 64-hex-digit id or a list of them'}, not {value!r}")


def _signature(v: Version, opts: BundleOptions, label: str) -> tuple[dict[str, Any] | None, bytes, list[str]]:
    """(envelope or None, PEM of the trusted keys that verify it, their key ids); refuses an
    unsigned or untrusted version unless ``allow_unsigned``."""
    from ..versions.signing import open_envelope, public_pem, trusted_keys

    envelope = v.attestation()
    if envelope is None:
        if not opts.allow_unsigned:
            raise ExportError(
                f"version {label} is unsigned, so a bundle cannot show who vouches for it; bundle a signed version, "
                f"or pass allow_unsigned=True (--allow-unsigned) and have the auditor run 'python verify.py --allow-unsigned'"
            )
        return None, b"", []
    keys = trusted_keys(list(opts.pubkeys))
    stmt, good = open_envelope(envelope, keys)
    subject = stmt.get("subject") if isinstance(stmt, dict) else None
    if not subject or subject[0].get("digest", {}).get("sha256") != v.id:
        raise ExportError(f"the envelope of version {label} does not name it; the store is damaged — run 'rowtrail verify'")
    if not good:
        if not opts.allow_unsigned:
            raise ExportError(
                f"no trusted key verifies the signature of version {label} ({len(keys)} key(s) in ROWTRAIL_HOME/trusted_keys"
                f"{' and pubkeys' if opts.pubkeys else ''}); add the signer's public key there or with pubkeys=[PEM] (--pubkey), "
                f"or pass allow_unsigned=True (--allow-unsigned)"
            )
        return envelope, b"", []
    return envelope, b"".join(public_pem(keys[k]) for k in good), good


def _proofs(store: Store, v: Version, opts: BundleOptions, progress: Progress | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    total = sum(len(getattr(opts, name)) for name, *_ in PROOF_OPTIONS)
    for name, content, absent, prefix in PROOF_OPTIONS:
        for value in getattr(opts, name):
            try:
                out[f"proofs/{prefix}-{value}.json"] = store.prove(value, v.id, absent=absent, content=content)
            except ProofError as exc:
                raise ExportError(f"{name}: {exc}") from None
            if progress:
                progress("proofs", len(out), total)
    return out


def _arrays(store: Store, v: Version, label: str, progress: Progress | None) -> dict[str, np.ndarray]:
    """The bundle's binary files, after checking they recompute the record's digests."""
    c = v.content
    recs = store.version_rows(v.id)
    ids = np.ascontiguousarray(recs["id"], dtype=ID_DTYPE)
    weights = recs["w"].astype(">f8")
    contents = np.ascontiguousarray(store.chunks.load_all(v.manifest["contents"]["chunks"], records=False), dtype=ID_DTYPE)
    inputs = np.ascontiguousarray(store.version_inputs(v.id)["id"], dtype=ID_DTYPE)
    checks = [
        ("row_count", len(ids), c["row_count"]),
        ("merkle_root", merkle_root(ids), c["merkle_root"]),
        ("weights_sha256", weights_sha256(ids, weights), c["weights_sha256"]),
        ("content_root", merkle_root(contents), c["content_root"]),
        ("inputs_root", merkle_root(inputs), c["inputs_root"]),
    ]
    for i, (name, got, want) in enumerate(checks):
        if got != want:
            raise ExportError(f"the stored rows of version {label} do not recompute its {name}; the store is damaged — run 'rowtrail verify'")
        if progress:
            progress("check", i + 1, len(checks))
    return {"ids.bin": ids, "weights.bin": weights, "contents.bin": contents, "inputs.bin": inputs}


def _spec_candidates() -> list[Path]:
    pkg = Path(__file__).resolve().parents[1]  # src/rowtrail (or site-packages/rowtrail)
    return [pkg / "spec.md", pkg.parents[1] / "docs" / "spec.md"]


def _find_spec() -> Path | None:
    """docs/spec.md of this rowtrail: shipped in the package, or in the source checkout it runs from."""
    for p in _spec_candidates():
        try:
            if p.is_file() and p.read_text(encoding="utf-8").startswith(SPEC_TITLE):
                return p
        except (OSError, UnicodeDecodeError):
            continue
    return None


def _readme(v: Version, arrays: dict[str, np.ndarray], proofs: dict[str, dict[str, Any]], key_ids: list[str], signed: bool, spec: Path | None) -> str:
    c = v.content
    n, m, k = (len(arrays[f]) for f in ("ids.bin", "contents.bin", "inputs.bin"))
    signature = f"signed; verifies with key {', '.join(key_ids)}" if key_ids else "signed, but by no key trusted where it was exported (no pubkey.pem)" if signed else "UNSIGNED"
    lines = [
        f"rowtrail audit bundle ({FORMAT_ID}) for {v.corpus}@{v.tag or v.id}",
        "",
        f"  version_id  {v.id}",
        f"  content_id  {v.content_id}",
        f"  rows        {c['row_count']} ({len(c['per_source'])} sources), weight total {c['weight_total']}",
        f"  signature   {signature}",
        "",
        "Check it with Python 3.9 or later and the 'cryptography' package (pip install cryptography):",
        "",
        "    python verify.py" + ("" if key_ids else " --allow-unsigned"),
        "",
        "It prints one line per check and ends with 'OK …' (exit status 0), or 'FAILED: …' (exit 3) when",
        "any check fails; exit 2 means it could not check (usage, or a value it cannot canonicalize exactly).",
        "verify.py imports only the standard library and cryptography, never rowtrail.",
        "",
        "Trust: pubkey.pem travels with the bundle, so it proves nothing by itself. Compare the key id",
        "verify.py prints (SHA-256 of the raw Ed25519 key) with the one the signer published, or pass the",
        "key you obtained from the signer out of band:  python verify.py --pubkey SIGNER.pem",
        "",
        "Files (ids and hashes are raw 32-byte SHA-256 values, ascending bytewise, spec §0):",
        "",
        "  record.json    the version record (spec §9) as RFC 8785 canonical JSON: 'sha256sum record.json'",
        "                 prints the version id",
        "  envelope.json  the DSSE envelope signing the in-toto Statement whose subject is the version id (§10)"
        if signed
        else "  (no envelope.json: the version is unsigned)",
        "  pubkey.pem     the Ed25519 public key(s), PEM, whose signature verifies" if key_ids else "  (no pubkey.pem: no trusted key verifies this version)",
        f"  ids.bin        the {n} row ids, 32 bytes each: RFC 6962 tree (§6) -> merkle_root; count -> row_count",
        f"  weights.bin    the {n} weights, row i's as an 8-byte big-endian IEEE-754 double: with ids.bin",
        "                 -> weights_sha256 (§7) and weight_total (exact sum, §8)",
        f"  contents.bin   the {m} distinct content hashes (content_sha256), 32 bytes each -> content_root",
        f"  inputs.bin     the {k} row ids of the input set the pipeline ran over -> inputs_root (§8, §14.3)",
        f"  proofs/        {len(proofs)} proof(s), spec §12 (format 9): row-in-ID / content-in-HASH are inclusion",
        "                 proofs, row-absent-ID / content-absent-HASH exclusion proofs (two adjacent leaves",
        "                 that bracket the absent value); each is checked against the record's root and size",
        "  spec.md        rowtrail's format specification (docs/spec.md)" if spec is not None else "  (no spec.md: docs/spec.md was not found next to the rowtrail that wrote this bundle; see the",
        *([] if spec is not None else ["                 rowtrail source, docs/spec.md)"]),
        "  verify.py      the checker",
        "  README.txt     this file",
        "",
        "What verify.py checks: the Ed25519 signature over the DSSE pre-authentication encoding; the",
        "Statement's type, subject (name and digest = SHA-256 of the canonical record) and predicate (= the",
        "record); content_id = SHA-256(JCS(content)); merkle_root, row_count, weights_sha256, weight_total,",
        "content_root and inputs_root recomputed from the .bin files; every proof in proofs/.",
        "",
        "What it cannot check from this bundle (it needs the store; spec §16 does it): that each row id and",
        "content hash recomputes from the row's content and provenance, which row has which content hash,",
        "per_source, the pipeline's step definitions, and the journal chain that journal_head and parent bind.",
        "",
    ]
    return "\n".join(lines)
