"""``prov``: a version's history as a W3C PROV-JSON document (https://www.w3.org/submissions/prov-json/).

The document covers every journal entry that led to the version: its ancestry (parent versions, first
to last) and, for each commit, the ingests, removals and the pipeline run staged for the corpus since
the commit before it. ``rowtrail`` writes the JSON itself; any PROV reader loads it
(``prov.model.ProvDocument.deserialize(path, format="json")``).

Mapping (identifiers use the prefix ``rowtrail:`` = ``urn:rowtrail:``; types and attributes the
prefix ``rt:`` = ``https://rowtrail.dev/ns/prov#``):

========================================  =====================================================================
ledger                                    PROV
========================================  =====================================================================
source snapshot ``S@n``                   entity ``rowtrail:source/S@n`` (``rt:SourceSnapshot``; kind, uri,
                                          licence, legal basis, collection period, refreshed_at, owner, generator)
an ingested file                          entity ``rowtrail:file/<sha256>`` (``rt:InputFile``; name, bytes)
ingest ``ing-…``                          activity ``rowtrail:ingest/ing-…`` (start ``ingested_at``, end: its
                                          journal time; options, counts); ``used`` the source snapshots and files
segment ``n`` (rows one ingest or one     entity ``rowtrail:segment/n`` (``rt:Segment``; rows, object digests);
step wrote)                               ``wasGeneratedBy`` its ingest or step, ``wasDerivedFrom`` its source
                                          snapshots, ``wasAttributedTo`` the teacher models / annotators its rows name
removal (``rowtrail rm``)                 activity ``rowtrail:remove/<seq>`` (source, reason, rows)
input set of version V                    entity ``rowtrail:inputs/V`` (``prov:Collection``; ``inputs_root``),
                                          ``wasDerivedFrom`` the ingest segments that hold its rows
pipeline step k of the run behind V       activity ``rowtrail:run/<run>/step/k`` (step id, name, use, version,
                                          params as JSON, code fingerprint, rows in/out, drops); ``used`` the
                                          input set or step k-1's output, ``wasGeneratedBy`` step k's output
                                          entity ``rowtrail:run/<run>/after/k`` (the last step's output is the
                                          rows collection); ``wasAssociatedWith`` the generator a ``rewrite``
                                          names, when any
rows of version V                         entity ``rowtrail:rows/V`` (``prov:Collection``; row count, weight
                                          total, ``merkle_root``, ``content_root``, ``weights_sha256``)
commit of V                               activity ``rowtrail:commit/V`` (end ``created_at``; message);
                                          ``used`` the rows and the parent version; ``wasAssociatedWith`` the
                                          author (role ``rt:author``) and the signing key (role ``rt:signer``)
version V                                 entity ``rowtrail:version/V`` (``rt:CorpusVersion``; corpus, tag,
                                          content id, journal head, signed); ``wasGeneratedBy`` its commit,
                                          ``wasDerivedFrom`` its rows and (``prov:Revision``) its parent,
                                          ``wasAttributedTo`` its author
author                                    agent ``rowtrail:agent/author/<name>`` (``prov:Person``)
signing key                               agent ``rowtrail:agent/key/<keyid>`` (``rt:SigningKey``),
                                          ``actedOnBehalfOf`` the author of the first version it signed
teacher model / generator                 agent ``rowtrail:agent/model/<id>`` (``prov:SoftwareAgent``): a
                                          source's ``generator`` other than ``human``, and values of the row
                                          attributes in ``TEACHER_ATTRIBUTES``
annotator                                 agent ``rowtrail:agent/annotator/<id>`` (``prov:Person``): values of
                                          the row attribute ``annotator``
========================================  =====================================================================

Values that are not literals (parameters, option objects, counts) are JSON text. Relations have
blank-node ids (``_:u1``, ``_:g1`` …) numbered in document order, so a version exports to the same bytes
every time.

Options: ``corpus`` (the corpus a ref such as ``HEAD`` names; default ``main``). ``path=None`` writes to
stdout.

The helpers above the exporter (``history``, ``snapshot_records``, ``attribute_values``) walk a version's
journal history; the ``croissant`` and ``openlineage`` exporters use them too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import orjson

from .base import Exporter, ExportError, ExportResult, Progress, atomic_output, check_target, file_digest, register, resolve_version

if TYPE_CHECKING:
    from ..records import VersionInfo
    from ..store import Store
    from ..versions.version import Version

# Row attributes whose values name the model that made the row's content.
TEACHER_ATTRIBUTES = ("teacher", "teacher_model", "model", "generator", "item_generator")
# Row attributes whose values name the person who annotated the row.
ANNOTATOR_ATTRIBUTES = ("annotator",)
GUIDELINE_ATTRIBUTES = ("guideline_version", "guideline")
PLATFORM_ATTRIBUTES = ("platform", "annotation_platform")
HUMAN = "human"

PROV_ID_NS = "urn:rowtrail:"
PROV_RT_NS = "https://rowtrail.dev/ns/prov#"


# -- the history of a version (shared by the lineage exports) ----------------------------------------


@dataclass
class Commit:
    """One version on the way to the exported one, with the journal entries it recorded."""

    info: VersionInfo
    entry: dict[str, Any]  # the ``commit`` journal entry
    manifest: dict[str, Any]
    ingests: list[dict[str, Any]] = field(default_factory=list)
    removals: list[dict[str, Any]] = field(default_factory=list)
    pipeline: dict[str, Any] | None = None  # the ``pipeline`` entry whose run made the version
    keyid: str | None = None  # the key id of the version's signature (None when unsigned)

    @property
    def version_id(self) -> str:
        return self.info.version_id

    @property
    def record(self) -> dict[str, Any]:
        return dict(self.manifest["record"])

    def steps(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(step id, definition, report) of the pipeline steps, in pipeline order."""
        defs = self.manifest.get("steps") or {}
        lineage = self.manifest.get("lineage") or {}
        return [(sid, defs.get(sid, {}), (lineage.get(sid) or {}).get("report") or {}) for sid in self.record["content"]["pipeline"]]


def history(store: Store, version: Version) -> list[Commit]:
    """The versions from the corpus's first to ``version``, each with the ingests, removals and the
    pipeline run that the journal recorded for its corpus since the commit before it."""
    state = store.state
    chain: list[VersionInfo] = []
    vid: str | None = version.id
    while vid:
        info = state.versions[vid]
        chain.append(info)
        vid = info.parent
    chain.reverse()
    by_seq = {e["seq"]: e for e in state.entries}
    out: list[Commit] = []
    prev = -1
    for info in chain:
        manifest = store.manifest(info.version_id)
        c = Commit(info=info, entry=by_seq[info.seq], manifest=manifest)
        if info.envelope:
            sigs = orjson.loads(store.backend.read_bytes(info.envelope)).get("signatures") or []
            c.keyid = sigs[0].get("keyid") if sigs else None
        for seq in range(prev + 1, info.seq):
            e = by_seq.get(seq)
            if e is None or e.get("corpus") != info.corpus:
                continue
            if e["kind"] == "ingest":
                c.ingests.append(e)
            elif e["kind"] == "remove":
                c.removals.append(e)
            elif e["kind"] == "pipeline" and manifest.get("run") and e.get("run") == manifest["run"]:
                c.pipeline = e
        out.append(c)
        prev = info.seq
    return out


def snapshot_records(store: Store) -> dict[str, dict[str, Any]]:
    """Every source snapshot ever recorded: snapshot id → its source record (with ``at`` and ``seq``)."""
    out: dict[str, dict[str, Any]] = {}
    for e in store.state.entries:
        if e["kind"] in ("source.add", "source.refresh"):
            recs = [e["source"]]
        elif e["kind"] == "source.import":
            recs = e["sources"]
        else:
            continue
        for r in recs:
            out[r["snapshot"]] = {**r, "at": e["at"], "seq": e["seq"]}
    return out


def snapshot_at(snapshots: dict[str, dict[str, Any]], source_id: str, seq: int) -> str | None:
    """The snapshot of ``source_id`` current at journal entry ``seq`` (what an ingest there used)."""
    best: tuple[int, str] | None = None
    for sid, rec in snapshots.items():
        if rec["source_id"] == source_id and rec["seq"] < seq and (best is None or rec["seq"] > best[0]):
            best = (rec["seq"], sid)
    return best[1] if best else None


def segment_attribute_names(store: Store, seg: int) -> list[str]:
    """Declared attributes (without the ``attr.`` prefix) in a segment's provenance table."""
    import pyarrow.parquet as pq

    from ..segments import ATTR_PREFIX

    segment = store.state.segments[seg]
    names = pq.read_schema(store.backend.object_path(segment.provenance)).names
    return [n[len(ATTR_PREFIX) :] for n in names if n.startswith(ATTR_PREFIX)]


def attribute_values(store: Store, records: np.ndarray | None, names: Iterable[str], segments: Sequence[int] | None = None) -> dict[str, list[str]]:
    """Distinct non-null values of the declared row attributes ``names``: over the rows ``records``
    (a version's ``(id, w, seg, row)`` records), or over whole ``segments``."""
    from ..segments import ATTR_PREFIX

    wanted = set(names)
    found: dict[str, set[str]] = {}
    if records is not None:
        segs = np.unique(records["seg"]).astype(np.int64).tolist() if len(records) else []
    else:
        segs = list(segments or [])
    for seg in segs:
        have = [a for a in segment_attribute_names(store, seg) if a in wanted]
        if not have:
            continue
        at = None
        if records is not None:
            at = records["row"][records["seg"] == seg].astype(np.int64)
        for a in have:
            codes, values = store.segment_codes(seg, ATTR_PREFIX + a)
            used = np.unique(codes if at is None else codes[at])
            found.setdefault(a, set()).update(str(values[i]) for i in used.tolist() if i >= 0 and values[i] is not None)
    return {a: sorted(v) for a, v in sorted(found.items()) if v}


def machine_generators(values: dict[str, list[str]], sources: Iterable[dict[str, Any]]) -> list[str]:
    """Model ids that made content: sources' generators and teacher attribute values, never ``human``."""
    out = {s.get("generator") for s in sources}
    for a in TEACHER_ATTRIBUTES:
        out.update(values.get(a, []))
    return sorted(g for g in out if g and g.lower() != HUMAN)


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def check_options(name: str, options: dict[str, Any], accepted: dict[str, type | tuple[type, ...]]) -> None:
    """Reject unknown options and values of the wrong type, naming the accepted ones."""
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ExportError(f"format '{name}' has no option {', '.join(repr(u) for u in unknown)}; its options are: {', '.join(sorted(accepted))}")
    for key, value in options.items():
        if value is not None and not isinstance(value, accepted[key]):
            spec = accepted[key]
            kinds: tuple[type, ...] = spec if isinstance(spec, tuple) else (spec,)
            raise ExportError(f"option {key!r} of format '{name}' must be {' or '.join(k.__name__ for k in kinds)}, not {value!r}")


def write_document(fmt: str, store: Store, v: Version, path: str | os.PathLike[str] | None, data: bytes, overwrite: bool, details: dict[str, Any]) -> ExportResult:
    """Write one document's bytes to ``path`` atomically (or to stdout when ``path`` is None)."""
    import hashlib

    if path is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        files = [{"path": None, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
        out = None
    else:
        target = Path(path).expanduser()
        with atomic_output(target, overwrite) as tmp:
            tmp.write_bytes(data)
        size, digest = file_digest(target)
        files = [{"path": target.name, "bytes": size, "sha256": digest}]
        out = str(target)
    return ExportResult(
        format=fmt,
        path=out,
        rows=v.row_count,
        bytes=len(data),
        version_id=v.id,
        tag=v.tag,
        content_id=v.content_id,
        merkle_root=v.content["merkle_root"],
        files=files,
        details={"corpus": v.corpus, **details},
    )


# -- PROV-JSON ---------------------------------------------------------------------------------------


class _Doc:
    """A PROV-JSON document under construction (records keyed by id; relations numbered in order)."""

    RELATIONS = {
        "used": "u",
        "wasGeneratedBy": "g",
        "wasDerivedFrom": "d",
        "wasAssociatedWith": "a",
        "wasAttributedTo": "t",
        "actedOnBehalfOf": "b",
    }

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"prefix": {"rowtrail": PROV_ID_NS, "rt": PROV_RT_NS, "xsd": "http://www.w3.org/2001/XMLSchema#"}}
        self._seen: set[tuple[Any, ...]] = set()
        self._n: dict[str, int] = {}

    def node(self, kind: str, ident: str, attrs: dict[str, Any]) -> str:
        bucket = self.doc.setdefault(kind, {})
        clean = {k: _literal(v) for k, v in attrs.items() if v is not None and v != "" and v != [] and v != {}}
        if ident in bucket:
            bucket[ident].update(clean)
        else:
            bucket[ident] = clean
        return ident

    def relation(self, kind: str, attrs: dict[str, Any]) -> None:
        key = (kind, *sorted((k, str(v)) for k, v in attrs.items()))
        if key in self._seen:
            return
        self._seen.add(key)
        n = self._n.get(kind, 0) + 1
        self._n[kind] = n
        self.doc.setdefault(kind, {})[f"_:{self.RELATIONS[kind]}{n}"] = {k: _literal(v) for k, v in attrs.items() if v is not None}


def _literal(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)) or (isinstance(value, dict) and "$" in value):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _qname(text: str) -> dict[str, str]:
    return {"$": text, "type": "prov:QUALIFIED_NAME"}


def _safe(text: str) -> str:
    """An identifier's local part: characters that would split or confuse a qualified name escaped."""
    from urllib.parse import quote

    return quote(str(text), safe="-._~@/")


def build_prov(store: Store, v: Version) -> dict[str, Any]:
    """The PROV-JSON document of ``v``'s history (see the module docstring)."""
    d = _Doc()
    commits = history(store, v)
    snapshots = snapshot_records(store)
    segments = store.state.segments

    def model(gen: str) -> str:
        return d.node("agent", f"rowtrail:agent/model/{_safe(gen)}", {"prov:type": _qname("prov:SoftwareAgent"), "prov:label": gen})

    def source(snap: str) -> str:
        rec = snapshots.get(snap, {"source_id": snap.split("@")[0]})
        ident = d.node(
            "entity",
            f"rowtrail:source/{_safe(snap)}",
            {
                "prov:type": _qname("rt:SourceSnapshot"),
                "prov:label": rec.get("source_id"),
                "rt:source_id": rec.get("source_id"),
                "rt:kind": rec.get("kind"),
                "prov:location": rec.get("uri"),
                "rt:license": rec.get("license"),
                "rt:legal_basis": rec.get("legal_basis"),
                "rt:collected": rec.get("collected"),
                "rt:refreshed_at": rec.get("refreshed_at"),
                "rt:owner": rec.get("owner"),
                "rt:generator": rec.get("generator"),
            },
        )
        gen = rec.get("generator")
        if gen and gen.lower() != HUMAN:
            d.relation("wasAttributedTo", {"prov:entity": ident, "prov:agent": model(gen)})
        return ident

    def segment(seg: int, activity: str, snaps: list[str]) -> str:
        s = segments[seg]
        ident = d.node(
            "entity",
            f"rowtrail:segment/{seg}",
            {"prov:type": _qname("rt:Segment"), "rt:rows": s.rows, "rt:provenance_object": s.provenance, "rt:content_object": s.content, "rt:sources": list(s.sources)},
        )
        d.relation("wasGeneratedBy", {"prov:entity": ident, "prov:activity": activity})
        for snap in snaps:
            d.relation("wasDerivedFrom", {"prov:generatedEntity": ident, "prov:usedEntity": source(snap), "prov:activity": activity})
        values = attribute_values(store, None, TEACHER_ATTRIBUTES + ANNOTATOR_ATTRIBUTES, segments=[seg])
        for a in TEACHER_ATTRIBUTES:
            for gen in values.get(a, []):
                if gen.lower() != HUMAN:
                    d.relation("wasAttributedTo", {"prov:entity": ident, "prov:agent": model(gen)})
        for a in ANNOTATOR_ATTRIBUTES:
            for who in values.get(a, []):
                agent = d.node("agent", f"rowtrail:agent/annotator/{_safe(who)}", {"prov:type": _qname("prov:Person"), "prov:label": who, "rt:role": "annotator"})
                d.relation("wasAttributedTo", {"prov:entity": ident, "prov:agent": agent})
        return ident

    key_owner: dict[str, str] = {}
    parent_entity: str | None = None
    for c in commits:
        vid = c.version_id
        rec = c.record
        content = rec["content"]
        for e in c.ingests:
            act = d.node(
                "activity",
                f"rowtrail:ingest/{_safe(e['ingest_id'])}",
                {
                    "prov:type": _qname("rt:Ingest"),
                    "prov:startTime": e.get("ingested_at") or e["at"],
                    "prov:endTime": e["at"],
                    "rt:corpus": e["corpus"],
                    "rt:journal_seq": e["seq"],
                    "rt:options": e.get("options"),
                    "rt:counts": e.get("counts"),
                },
            )
            snaps = [s for s in (snapshot_at(snapshots, sid, e["seq"]) for sid in sorted(e.get("sources") or {})) if s]
            for snap in snaps:
                d.relation("used", {"prov:activity": act, "prov:entity": source(snap)})
            for f in e.get("files") or []:
                if f.get("sha256"):
                    fid = d.node("entity", f"rowtrail:file/{f['sha256']}", {"prov:type": _qname("rt:InputFile"), "prov:label": f.get("name"), "rt:bytes": f.get("bytes"), "rt:sha256": f["sha256"]})
                    d.relation("used", {"prov:activity": act, "prov:entity": fid})
            for s in e.get("segments") or []:
                seg_snaps = [x for x in snaps if snapshots.get(x, {}).get("source_id") in s["sources"]]
                segment(s["seg"], act, seg_snaps)
        for e in c.removals:
            d.node(
                "activity",
                f"rowtrail:remove/{e['seq']}",
                {"prov:type": _qname("rt:Removal"), "prov:endTime": e["at"], "rt:source_id": e.get("source"), "rt:reason": e.get("reason"), "rt:reason_code": e.get("reason_code"), "rt:rows": e.get("rows")},
            )
        inputs = d.node("entity", f"rowtrail:inputs/{vid}", {"prov:type": _qname("prov:Collection"), "prov:label": f"input set of {rec['tag'] or vid[:12]}", "rt:inputs_root": content["inputs_root"]})
        input_segs = np.unique(store.version_inputs(vid)["seg"]).astype(np.int64).tolist()
        for seg in input_segs:
            if not segments[seg].ingest_id.startswith("step:"):
                d.relation("wasDerivedFrom", {"prov:generatedEntity": inputs, "prov:usedEntity": f"rowtrail:segment/{seg}"})
                if f"rowtrail:segment/{seg}" not in d.doc.get("entity", {}):
                    snaps = [s for s in (snapshot_at(snapshots, sid, segments[seg].seq) for sid in segments[seg].sources) if s]
                    segment(seg, f"rowtrail:ingest/{_safe(segments[seg].ingest_id)}", snaps)
        rows = d.node(
            "entity",
            f"rowtrail:rows/{vid}",
            {
                "prov:type": _qname("prov:Collection"),
                "prov:label": f"rows of {rec['tag'] or vid[:12]}",
                "rt:row_count": content["row_count"],
                "rt:weight_total": content["weight_total"],
                "rt:merkle_root": content["merkle_root"],
                "rt:content_root": content["content_root"],
                "rt:weights_sha256": content["weights_sha256"],
                "rt:per_source": content["per_source"],
            },
        )
        before = inputs
        steps = c.steps()
        run = c.manifest.get("run")
        when = c.pipeline["at"] if c.pipeline else c.entry["at"]
        step_segments: dict[str, list[int]] = {}
        for s in (c.pipeline or {}).get("segments") or []:
            step_segments.setdefault(s.get("step_id"), []).append(s["seg"])
        for k, (sid, definition, report) in enumerate(steps):
            act = d.node(
                "activity",
                f"rowtrail:run/{run}/step/{k}",
                {
                    "prov:type": _qname("rt:PipelineStep"),
                    "prov:label": definition.get("name"),
                    "prov:endTime": when,
                    "rt:step_id": sid,
                    "rt:use": definition.get("use"),
                    "rt:version": definition.get("version"),
                    "rt:params": definition.get("params"),
                    "rt:code": definition.get("code"),
                    "rt:function": definition.get("function"),
                    "rt:rowtrail_version": definition.get("rowtrail_version"),
                    "rt:rows_in": report.get("rows_in"),
                    "rt:rows_out": report.get("rows_out"),
                    "rt:dropped": report.get("dropped"),
                    "rt:edges": report.get("edges"),
                },
            )
            d.relation("used", {"prov:activity": act, "prov:entity": before})
            after = rows if k == len(steps) - 1 else d.node("entity", f"rowtrail:run/{run}/after/{k}", {"prov:type": _qname("prov:Collection"), "prov:label": f"rows after step {k} ({definition.get('name')})"})
            d.relation("wasGeneratedBy", {"prov:entity": after, "prov:activity": act})
            d.relation("wasDerivedFrom", {"prov:generatedEntity": after, "prov:usedEntity": before, "prov:activity": act})
            gen = (definition.get("params") or {}).get("generator") if isinstance(definition.get("params"), dict) else None
            if isinstance(gen, str) and gen.lower() != HUMAN:
                d.relation("wasAssociatedWith", {"prov:activity": act, "prov:agent": model(gen)})
            for seg in step_segments.get(sid, []):
                segment(seg, act, [])
            before = after
        if not steps:
            d.relation("wasDerivedFrom", {"prov:generatedEntity": rows, "prov:usedEntity": inputs})
        commit = d.node(
            "activity",
            f"rowtrail:commit/{vid}",
            {"prov:type": _qname("rt:Commit"), "prov:endTime": rec["created_at"], "rt:message": rec["message"], "rt:corpus": c.info.corpus, "rt:journal_seq": c.info.seq},
        )
        version = d.node(
            "entity",
            f"rowtrail:version/{vid}",
            {
                "prov:type": _qname("rt:CorpusVersion"),
                "prov:label": f"{c.info.corpus}@{rec['tag'] or vid}",
                "rt:version_id": vid,
                "rt:corpus": c.info.corpus,
                "rt:tag": rec["tag"],
                "rt:content_id": rec["content_id"],
                "rt:journal_head": rec["journal_head"],
                "rt:created_at": rec["created_at"],
                "rt:signed": c.info.envelope is not None,
            },
        )
        d.relation("used", {"prov:activity": commit, "prov:entity": rows})
        d.relation("wasGeneratedBy", {"prov:entity": version, "prov:activity": commit, "prov:time": rec["created_at"]})
        d.relation("wasDerivedFrom", {"prov:generatedEntity": version, "prov:usedEntity": rows, "prov:activity": commit})
        if parent_entity is not None:
            d.relation("used", {"prov:activity": commit, "prov:entity": parent_entity})
            d.relation("wasDerivedFrom", {"prov:generatedEntity": version, "prov:usedEntity": parent_entity, "prov:type": _qname("prov:Revision")})
        author = d.node("agent", f"rowtrail:agent/author/{_safe(rec['author'])}", {"prov:type": _qname("prov:Person"), "prov:label": rec["author"]})
        d.relation("wasAssociatedWith", {"prov:activity": commit, "prov:agent": author, "prov:role": _qname("rt:author")})
        d.relation("wasAttributedTo", {"prov:entity": version, "prov:agent": author})
        keyid = c.keyid
        if keyid:
            key = d.node("agent", f"rowtrail:agent/key/{_safe(keyid)}", {"prov:type": _qname("rt:SigningKey"), "prov:label": f"Ed25519 key {keyid}", "rt:keyid": keyid})
            d.relation("wasAssociatedWith", {"prov:activity": commit, "prov:agent": key, "prov:role": _qname("rt:signer")})
            if key_owner.setdefault(keyid, author) == author:
                d.relation("actedOnBehalfOf", {"prov:delegate": key, "prov:responsible": author, "prov:activity": commit})
        parent_entity = version
    return d.doc


@register
class ProvExporter(Exporter):
    name = "prov"
    suffixes = (".prov.json", ".provjson")
    description = "W3C PROV-JSON of a version's history (sources, ingests, steps, commits, agents)"
    writes_stdout = True
    options: ClassVar[dict[str, type | tuple[type, ...]]] = {"corpus": str}

    def write(self, store: Store, version: str | Version, path: str | os.PathLike[str] | None, *, overwrite: bool = False, progress: Progress | None = None, **options: Any) -> ExportResult:
        check_options(self.name, options, self.options)
        if path is not None:
            check_target(path, overwrite)
        v = resolve_version(store, version, options.get("corpus") or "main")
        doc = build_prov(store, v)
        if progress:
            progress("prov", 1, 1)
        counts = {k: len(doc.get(k, {})) for k in ("entity", "activity", "agent")}
        return write_document(self.name, store, v, path, dumps(doc), overwrite, {"records": counts})
