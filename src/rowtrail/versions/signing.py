"""Ed25519 keys, DSSE envelopes and the in-toto Statement that attests a corpus version (format 8).

Private keys live outside the store: ``ROWTRAIL_HOME/keys/<name>.pem`` (PKCS#8, mode 0600), or the PEM
text or path in ``ROWTRAIL_SIGNING_KEY``. Verification trusts only public keys kept outside the store:
``ROWTRAIL_HOME/trusted_keys/*.pem`` and keys passed explicitly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import SigningError
from ..hashing import jcs

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://rowtrail.dev/attestation/corpus-version/v1"


def rowtrail_home() -> Path:
    return Path(os.environ.get("ROWTRAIL_HOME") or Path.home() / ".config" / "rowtrail")


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class KeyPair:
    name: str
    private_path: Path
    public_path: Path
    key_id: str


def keygen(name: str = "default", home: str | os.PathLike[str] | None = None, force: bool = False) -> KeyPair:
    """Make an Ed25519 key pair under ROWTRAIL_HOME and trust its public key."""
    base = Path(home) if home else rowtrail_home()
    keys, trusted = base / "keys", base / "trusted_keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    trusted.mkdir(parents=True, exist_ok=True)
    priv_path = keys / f"{name}.pem"
    if priv_path.exists() and not force:
        raise SigningError(f"a key named '{name}' exists at {priv_path}; choose another --name or pass --force")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(priv_path, 0o600)
    pub = public_pem(private.public_key())
    pub_path = keys / f"{name}.pub.pem"
    pub_path.write_bytes(pub)
    (trusted / f"{name}.pem").write_bytes(pub)
    return KeyPair(name, priv_path, pub_path, key_id(private.public_key()))


def load_signing_key(name: str | None = None) -> Ed25519PrivateKey:
    """The key named, else ``ROWTRAIL_SIGNING_KEY`` (PEM text or a path), else the 'default' key."""
    env = os.environ.get("ROWTRAIL_SIGNING_KEY")
    if name is None and env:
        data = env.encode() if "-----BEGIN" in env else Path(env).expanduser().read_bytes()
        where = "ROWTRAIL_SIGNING_KEY"
    else:
        path = rowtrail_home() / "keys" / f"{name or 'default'}.pem"
        if not path.exists():
            raise SigningError(
                f"no signing key at {path}; run 'rowtrail keygen' (or set ROWTRAIL_SIGNING_KEY), "
                "or commit with --no-sign"
            )
        data, where = path.read_bytes(), str(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{where} does not hold an unencrypted PKCS#8 PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{where} holds a {type(key).__name__}; rowtrail signs with Ed25519 keys")
    return key


def load_public_key(data: bytes, where: str = "key") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SigningError(f"{where} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{where} is not an Ed25519 public key")
    return key


def trusted_keys(extra: list[str | os.PathLike[str]] | None = None) -> dict[str, Ed25519PublicKey]:
    """key id → public key, from ROWTRAIL_HOME/trusted_keys and ``extra`` PEM files."""
    out: dict[str, Ed25519PublicKey] = {}
    paths: list[Path] = []
    tdir = rowtrail_home() / "trusted_keys"
    if tdir.is_dir():
        paths += sorted(tdir.glob("*.pem"))
    paths += [Path(p) for p in extra or []]
    for p in paths:
        key = load_public_key(p.read_bytes(), str(p))
        out[key_id(key)] = key
    return out


def statement(subject_name: str, version_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject_name, "digest": {"sha256": version_id}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": record,
    }


def sign_envelope(stmt: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    body = jcs(stmt)
    sig = key.sign(pae(PAYLOAD_TYPE, body))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [{"keyid": key_id(key.public_key()), "sig": base64.b64encode(sig).decode()}],
    }


def _b64decode(text: str) -> bytes:
    text = text.strip()
    pad = "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + pad)
        return base64.b64decode(text + pad, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SigningError(f"bad base64 in envelope: {exc}") from exc


def open_envelope(envelope: dict[str, Any], keys: dict[str, Ed25519PublicKey]) -> tuple[dict[str, Any], list[str]]:
    """The statement inside ``envelope`` and the ids of trusted keys whose signatures verify.

    The keyid is only a hint: every trusted key is tried against every signature.
    """
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise SigningError(f"envelope payloadType is {envelope.get('payloadType')!r}, not {PAYLOAD_TYPE}")
    body = _b64decode(envelope.get("payload", ""))
    message = pae(PAYLOAD_TYPE, body)
    good: list[str] = []
    for sig in envelope.get("signatures", []):
        raw = _b64decode(sig.get("sig", ""))
        for kid, key in keys.items():
            try:
                key.verify(raw, message)
            except InvalidSignature:
                continue
            if kid not in good:
                good.append(kid)
    try:
        stmt = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SigningError(f"envelope payload is not JSON: {exc}") from exc
    return stmt, good
