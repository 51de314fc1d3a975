"""``Version``: an immutable corpus snapshot as the Python API shows it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import pyarrow as pa

    from ..ops.diff import ProvenanceSet
    from ..records import VersionInfo
    from ..store import Store


class Version:
    """A committed version: ``.id``, ``.tag``, ``.record``, ``.content``, ``.content_id``."""

    def __init__(self, store: Store, info: VersionInfo):
        self._store = store
        self.info = info

    @property
    def id(self) -> str:
        return self.info.version_id

    @property
    def tag(self) -> str | None:
        return self.info.tag

    @property
    def corpus(self) -> str:
        return self.info.corpus

    @property
    def manifest(self) -> dict[str, Any]:
        return self._store.manifest(self.id)

    @property
    def record(self) -> dict[str, Any]:
        return self.manifest["record"]

    @property
    def content(self) -> dict[str, Any]:
        return self.record["content"]

    @property
    def content_id(self) -> str:
        return self.info.content_id

    @property
    def parent(self) -> Version | None:
        return self._store.version(self.info.parent) if self.info.parent else None

    @property
    def signed(self) -> bool:
        return self.info.envelope is not None

    @property
    def row_count(self) -> int:
        return self.info.row_count

    def attestation(self) -> dict[str, Any] | None:
        """The DSSE envelope that signs this version (with every co-signature 'rowtrail sign' added),
        or None while it is unsigned."""
        if self.info.envelope is None:
            return None
        return orjson.loads(self._store.backend.read_bytes(self.info.envelope))

    def provenance_set(self) -> ProvenanceSet:
        from ..ops.diff import ProvenanceSet

        return ProvenanceSet(self._store, self)

    def rows(self, source: str | None = None, limit: int | None = None) -> pa.Table:
        return self._store.rows(self.id, source=source, limit=limit)

    def prove(self, row_id: str, absent: bool = False, content: bool = False) -> dict[str, Any]:
        return self._store.prove(row_id, self.id, absent=absent, content=content)

    def summary(self) -> dict[str, Any]:
        rec = self.record
        return {
            "version_id": self.id,
            "corpus": self.corpus,
            "tag": self.tag,
            "message": rec["message"],
            "author": rec["author"],
            "created_at": rec["created_at"],
            "parent": rec["parent"],
            "signed": self.signed,
            "content_id": self.content_id,
            "row_count": self.content["row_count"],
            "sources": len(self.content["per_source"]),
            "merkle_root": self.content["merkle_root"],
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<rowtrail.Version {self.tag or self.id[:12]} of {self.corpus}: {self.row_count} rows>"
