"""Value objects: what the journal records, as frozen dataclasses.

These are derived from journal entries (the single source of truth) when a store is opened; nothing
here is written anywhere except through ``to_dict`` into a journal entry or a manifest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SOURCE_KINDS = (
    "crawl",
    "url-list",
    "partner-dump",
    "hf-dataset",
    "benchmark",
    "synthetic",
    "teacher-model",
    "annotation-batch",
    "external-import",
    "user-feedback",
    "other",
)

LEGAL_BASES_SUGGESTED = (
    "licence",
    "contract",
    "consent",
    "legitimate-interest",
    "public-domain",
    "tdm-exception",
    "own model output",
)


@dataclass(frozen=True)
class SourceRecord:
    """An upstream origin. ``source_id`` is a slug chosen once and never changed."""

    source_id: str
    kind: str
    uri: str | None = None
    license: str | None = None
    legal_basis: str | None = None
    collected: str | None = None  # ISO 8601 interval "2024-01-01/2024-09-30" or a single date
    refreshed_at: str | None = None
    owner: str | None = None
    generator: str = "human"
    attributes: dict[str, Any] = field(default_factory=dict)
    snapshot: str = ""  # current snapshot id, "<source_id>@<n>"
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Segment:
    """Rows written by one ingest part (or step): a provenance table and a content table in the same
    row order. ``seg`` is the store-wide number that row locators in version chunks refer to."""

    seg: int
    sources: tuple[str, ...]
    provenance: str  # object digest (Parquet)
    content: str  # object digest (Parquet)
    rows: int
    ingest_id: str
    seq: int  # journal entry that recorded it


@dataclass(frozen=True)
class VersionInfo:
    version_id: str
    corpus: str
    tag: str | None
    manifest: str  # object digest
    envelope: str | None  # object digest of the DSSE envelope, None when unsigned
    parent: str | None
    created_at: str
    message: str
    seq: int
    row_count: int
    content_id: str
