"""The journal: an append-only, hash-chained list of every state change; the single source of truth.

Each line is the RFC 8785 canonical JSON of one entry::

    {"seq": n, "prev": <digest of entry n-1, or null>, "at": <RFC 3339>, "kind": <kind>, ...payload}

and an entry's digest is the SHA-256 of its line bytes (without the newline). Kinds: ``init``,
``source.add``, ``source.refresh``, ``source.import``, ``ingest``, ``remove``, ``pipeline``, ``commit``,
``optout`` (an opt-out request: registered, and its removal staged), ``receipt`` (its signed receipt),
``purge`` (content erased: segments' content tables replaced), ``policy`` (the admission policy) and
``run`` (a training run's ledger, bound to a version).
``State`` is what the entries mean, replayed in order: sources, segments, versions, tags, corpus heads
and what is staged for each corpus. Refs are never stored anywhere else.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import RefError
from ..hashing import jcs
from ..records import Segment, SourceRecord, VersionInfo


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_entry(entry: dict[str, Any]) -> tuple[bytes, str]:
    line = jcs(entry)
    return line, hashlib.sha256(line).hexdigest()


@dataclass
class Staged:
    """What a corpus holds beyond its head version: entries since its last commit."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.entries


@dataclass
class State:
    seq: int = -1
    head_digest: str | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    sources: dict[str, SourceRecord] = field(default_factory=dict)
    snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    ingests: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, VersionInfo] = field(default_factory=dict)
    version_order: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)
    staged: dict[str, Staged] = field(default_factory=dict)
    pipelines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    monitors: dict[str, dict[str, Any]] = field(default_factory=dict)
    purged: dict[str, str] = field(default_factory=dict)  # erased content object → its replacement

    # -- replay ------------------------------------------------------------------------------------
    @classmethod
    def replay(cls, lines: list[bytes]) -> State:
        st = cls()
        for line in lines:
            entry = orjson.loads(line)
            st.apply(entry, hashlib.sha256(line).hexdigest())
        return st

    def apply(self, e: dict[str, Any], digest: str) -> None:
        self.seq = e["seq"]
        self.head_digest = digest
        self.entries.append(e)
        self.digests.append(digest)
        kind = e["kind"]
        if kind in ("source.add", "source.refresh"):
            self._put_source(e["source"], e)
        elif kind == "source.import":
            for src in e["sources"]:
                self._put_source(src, e)
        elif kind == "ingest":
            self.ingests[e["ingest_id"]] = e
            self._add_segments(e)
            self.staged.setdefault(e["corpus"], Staged()).entries.append(e)
        elif kind == "purge":  # erased content: the segment's current content table is the purged one
            for c in e["segments"]:
                old = self.segments[c["seg"]]
                self.segments[c["seg"]] = dataclasses.replace(old, content=c["content"])
                self.purged[c["old_content"]] = c["content"]
            for f in e.get("features") or []:  # training runs' feature blocks with erased rows zeroed
                self.purged[f["old_block"]] = f["block"]
        elif kind in ("remove", "optout"):  # an opt-out stages its removal like ``rm`` does
            self.staged.setdefault(e["corpus"], Staged()).entries.append(e)
        elif kind == "pipeline":
            self.pipelines[e["corpus"]] = e["steps"]
            self.monitors[e["corpus"]] = e.get("monitor") or {}
            self._add_segments(e)
            self.staged.setdefault(e["corpus"], Staged()).entries.append(e)
        elif kind == "commit":
            self._add_segments(e)
            rec = e["record"]
            info = VersionInfo(
                version_id=e["version_id"],
                corpus=e["corpus"],
                tag=rec["tag"],
                manifest=e["manifest"],
                envelope=e.get("envelope"),
                parent=rec["parent"],
                created_at=rec["created_at"],
                message=rec["message"],
                seq=e["seq"],
                row_count=rec["content"]["row_count"],
                content_id=rec["content_id"],
            )
            self.versions[info.version_id] = info
            self.version_order.append(info.version_id)
            if info.tag:
                self.tags[info.tag] = info.version_id
            self.heads[e["corpus"]] = info.version_id
            self.staged[e["corpus"]] = Staged()
        elif kind == "sign":  # a co-signature (or a first signature): the version's envelope from now on
            vid = e["version_id"]
            self.versions[vid] = dataclasses.replace(self.versions[vid], envelope=e["envelope"])

    def _add_segments(self, e: dict[str, Any]) -> None:
        """Segments an entry wrote: an ingest's rows, or rows a pipeline step created
        (``ingest_id`` is then ``step:<step id>``; the rows' own provenance names their ingest)."""
        for s in e.get("segments") or []:
            if s["seg"] < len(self.segments):  # already registered by the writer that made them
                continue
            self.segments.append(
                Segment(
                    seg=s["seg"],
                    sources=tuple(s["sources"]),
                    provenance=s["provenance"],
                    content=s["content"],
                    rows=s["rows"],
                    ingest_id=e["ingest_id"] if e["kind"] == "ingest" else f"step:{s['step_id']}",
                    seq=e["seq"],
                )
            )

    def _put_source(self, data: dict[str, Any], e: dict[str, Any]) -> None:
        rec = SourceRecord.from_dict(data)
        self.sources[rec.source_id] = rec
        self.snapshots.setdefault(rec.source_id, []).append(
            {"snapshot": rec.snapshot, "at": e["at"], "refreshed_at": rec.refreshed_at, "seq": e["seq"]}
        )

    # -- lookups -----------------------------------------------------------------------------------
    def next_seg(self) -> int:
        return len(self.segments)

    def staged_for(self, corpus: str) -> Staged:
        return self.staged.get(corpus, Staged())

    def resolve(self, ref: str, corpus: str = "main") -> VersionInfo:
        """A version id (or unique prefix of ≥ 7 hex digits) first, then a tag, then HEAD[~n]."""
        ref = ref.strip()
        if ref in self.versions:
            return self.versions[ref]
        if len(ref) >= 7 and all(c in "0123456789abcdef" for c in ref):
            hits = [v for v in self.versions if v.startswith(ref)]
            if len(hits) == 1:
                return self.versions[hits[0]]
            if len(hits) > 1:
                raise RefError(f"'{ref}' is an ambiguous version id prefix; give more digits")
        if ref in self.tags:
            return self.versions[self.tags[ref]]
        base, _, back = ref.partition("~")
        if base == "HEAD" or base.endswith("@HEAD"):
            name = corpus if base == "HEAD" else base[: -len("@HEAD")]
            if name not in self.heads:
                raise RefError(f"corpus '{name}' has no versions yet; run 'rowtrail commit -m MESSAGE'")
            info = self.versions[self.heads[name]]
            for _ in range(int(back or 0) if back.isdigit() or not back else -1):
                if info.parent is None:
                    raise RefError(f"'{ref}' goes back past the first version of corpus '{name}'")
                info = self.versions[info.parent]
            if back and not back.isdigit():
                raise RefError(f"'{ref}': write HEAD~N with a whole number N")
            return info
        raise RefError(f"no version, tag or ref '{ref}'; see 'rowtrail log'")
