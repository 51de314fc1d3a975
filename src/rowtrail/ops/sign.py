"""Sign: add a signature to a committed version — a co-signature (a second person, a second key: the
two-person rule for releasing a corpus version) or the first signature of a version committed with
``--no-sign``.

The version's DSSE envelope keeps its payload byte for byte (the same in-toto Statement) and gains
one signature; the new envelope is an object, and one ``sign`` journal entry names it. From that entry
on it is the version's envelope. ``verify --threshold K`` then asks for K distinct trusted keys.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import SigningError
from ..hashing import jcs
from ..versions import signing

if TYPE_CHECKING:
    from ..store import Store


def sign_version(store: Store, ref: str = "HEAD", key: str | None = None, corpus: str = "main") -> dict[str, Any]:
    """Sign version ``ref`` with the key named ``key`` (default: ``ROWTRAIL_SIGNING_KEY`` or the
    'default' key); returns ``{version_id, keyid, envelope, signatures}``."""
    private = signing.load_signing_key(key)
    kid = signing.key_id(private.public_key())
    with store._write() as state:
        info = state.resolve(ref, corpus)
        record = next(e["record"] for e in state.entries if e["kind"] == "commit" and e["version_id"] == info.version_id)
        if info.envelope:
            env = orjson.loads(store.backend.read_bytes(info.envelope))
            stmt, ours = signing.open_envelope(env, {kid: private.public_key()})
            subject = (stmt.get("subject") or [{}])[0]
            if subject.get("digest", {}).get("sha256") != info.version_id or stmt.get("predicate") != record:
                raise SigningError(f"version {info.tag or info.version_id[:12]}'s envelope does not describe it; run 'rowtrail verify'")
            if ours:
                raise SigningError(f"version {info.tag or info.version_id[:12]} is already signed by key {kid[:16]}")
            body = signing._b64decode(env["payload"])  # signed again byte for byte
            signatures = list(env.get("signatures", []))
        else:  # committed with --no-sign: the statement commit would have signed
            stmt = signing.statement(f"{info.corpus}@{info.tag or info.version_id}", info.version_id, record)
            body = jcs(stmt)
            signatures = []
        sig = private.sign(signing.pae(signing.PAYLOAD_TYPE, body))
        signatures.append({"keyid": kid, "sig": base64.b64encode(sig).decode()})
        new = {"payloadType": signing.PAYLOAD_TYPE, "payload": base64.b64encode(body).decode(), "signatures": signatures}
        digest = store.backend.put_bytes(jcs(new))
        store._append(state, {"kind": "sign", "corpus": info.corpus, "version_id": info.version_id, "envelope": digest, "keyid": kid})
    return {"version_id": info.version_id, "tag": info.tag, "keyid": kid, "envelope": digest, "signatures": len(signatures)}
