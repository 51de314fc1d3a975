"""Documents about a version (``transparency``, ``eu-ai-act``, ``datacard``): the facts they share,
gathered once per export, and the exporter base that checks options, picks the output format and
writes atomically.

**Facts** (``gather``). The version's signed content gives rows and weight per source; one DuckDB
query over the provenance and content Parquet of the segments the version uses adds, per source,
content bytes, first and last ``ingested_at`` and the snapshots present; per declared attribute
value, rows and weight (breakdowns); per language, rows and bytes; per crawled domain, rows and
bytes. Nothing loops over rows in Python. Source records are taken as of the newest snapshot each
source has in the version (a later refresh does not rewrite what an old version was built from).

Conventions every document states where it uses them:

- **Size** is the UTF-8 length of each row's content as stored (its RFC 8785 canonical JSON text,
  field names included), each row once; **tokens are estimated as bytes / 4** (``TOKEN_BYTES``).
- **Domains** are the host of the first value that looks like a URL (``scheme://…``) among a row's
  ``url`` attribute, its content field ``url`` and its source key, lower-cased, without a leading
  ``www.``; only rows of ``crawl`` and ``url-list`` sources are counted.
- **Breakdown attributes**: any declared row attribute (or source attribute) named one of
  ``BREAKDOWN_ATTRIBUTES``, plus those asked for with ``by``. A row without the attribute counts
  under ``None`` (shown as "(not recorded)"), so a breakdown's shares sum to 1.
- **Languages** come from a ``lang`` / ``language`` row attribute, else the source's attribute.

**Exporter options** common to documents: ``format`` (one of the exporter's ``formats``; by default
from the output suffix ``.md`` / ``.markdown`` / ``.csv`` / ``.json``, else Markdown) and ``corpus``
(the corpus ``HEAD`` refers to). Documents claim no path suffixes in the registry (``for_path``):
``.md`` and ``.json`` name several document formats.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from ..errors import ExportError
from ..segments import ATTR_PREFIX, parquet_file
from .base import Exporter, ExportResult, Progress, atomic_output, check_target, register, resolve_version

if TYPE_CHECKING:
    from ..records import SourceRecord
    from ..store import Store
    from ..versions.version import Version

__all__ = [
    "BREAKDOWN_ATTRIBUTES",
    "CRAWL_KINDS",
    "DocumentExporter",
    "SourceFacts",
    "TOKEN_BYTES",
    "VersionFacts",
    "gather",
    "md_cell",
    "md_table",
    "register",
]

TOKEN_BYTES = 4  # estimated tokens = content bytes / TOKEN_BYTES
BREAKDOWN_ATTRIBUTES = ("teacher", "teacher_model", "lane", "benchmark", "family")
LANGUAGE_ATTRIBUTES = ("lang", "language")
URL_ATTRIBUTES = ("url",)
CRAWL_KINDS = ("crawl", "url-list")
NOT_RECORDED = "(not recorded)"
EXAMPLE_SOURCES = 20  # sources named per breakdown value (the count is always complete)
SUFFIX_FORMATS = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".json": "json"}
FORMAT_ALIASES = {"md": "markdown"}
_URL_RE = r"^[A-Za-z][A-Za-z0-9+.-]*://"
_HOST_RE = r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(\[[^\]/]*\]|[^/:?#]+)"


# -- facts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFacts:
    """One source as a version holds it."""

    source_id: str
    record: SourceRecord  # as of the newest snapshot in the version
    rows: int
    weight: float
    bytes: int
    snapshots: list[str]
    first_ingested: str | None  # RFC 3339, UTC
    last_ingested: str | None

    @property
    def machine_generated(self) -> bool:
        return (self.record.generator or "human") != "human"


@dataclass
class VersionFacts:
    """What every document about a version needs, gathered once (see the module docstring)."""

    version: Version
    rows: int
    weight: float
    bytes: int
    sources: list[SourceFacts]
    attributes: list[str]  # declared row attributes present in the version, sorted
    breakdowns: dict[str, list[dict[str, Any]]]  # attribute → [{value, rows, weight, sources, example_sources}], largest first
    languages: list[dict[str, Any]]  # [{language, rows, bytes}], largest first; language None = not recorded
    domains: list[dict[str, Any]]  # [{domain, rows, bytes, sources}] over crawl / url-list rows, largest first
    last_acquired: str | None  # RFC 3339: newest ingested_at of a row or refreshed_at of a source
    optouts: list[dict[str, Any]]  # opt-out requests recorded in the store (any corpus, any time)
    steps: list[dict[str, Any]] = field(default_factory=list)  # the pipeline, in order: definition and report
    content_fields: list[str] = field(default_factory=list)  # content fields named by the ingests of the version's rows

    @property
    def tokens(self) -> int:
        return self.bytes // TOKEN_BYTES

    def source(self, source_id: str) -> SourceFacts:
        return next(s for s in self.sources if s.source_id == source_id)

    def share(self, rows: float, weight: float) -> tuple[float, float]:
        """(share of rows, share of weight) of a part of the version."""
        return (rows / self.rows if self.rows else 0.0, weight / self.weight if self.weight else 0.0)


def gather(store: Store, version: Version, by: tuple[str, ...] = ()) -> VersionFacts:
    """The facts about ``version`` (``by``: further attributes to break the rows down by; each must
    be declared on the version's rows or sources — else an ``ExportError`` naming those that are)."""
    import duckdb

    state = store.state
    content = version.content
    recs = store.version_rows(version.id)
    per_source = {sid: (int(v[0]), float(v[1])) for sid, v in content["per_source"].items()}
    records = _records_as_of(store, version)
    segs = sorted(int(s) for s in np.unique(recs["seg"])) if len(recs) else []
    schemas = {s: parquet_file(str(store.backend.object_path(state.segments[s].provenance))).schema_arrow.names for s in segs}
    row_attrs = sorted({n[len(ATTR_PREFIX) :] for names in schemas.values() for n in names if n.startswith(ATTR_PREFIX)})
    source_attrs = sorted({k for sid in per_source if sid in records for k in records[sid].attributes})
    declared = set(row_attrs) | set(source_attrs)
    unknown = [b for b in by if b not in declared]
    if unknown:
        have = ", ".join(sorted(declared)) or "none"
        raise ExportError(f"no attribute {', '.join(repr(u) for u in unknown)} is declared on the rows or sources of version {_label(version)}; declared attributes: {have}")
    breakdown = [a for a in (*BREAKDOWN_ATTRIBUTES, *by) if a in declared]
    breakdown = list(dict.fromkeys(breakdown))
    langs = [a for a in LANGUAGE_ATTRIBUTES if a in declared]
    wanted = list(dict.fromkeys([*breakdown, *langs, *[a for a in URL_ATTRIBUTES if a in row_attrs]]))
    crawl_ids = sorted(sid for sid in per_source if sid in records and records[sid].kind in CRAWL_KINDS)

    con = duckdb.connect()
    try:
        con.register(
            "recs",
            pa.table({"seg": pa.array(recs["seg"].astype(np.int64)), "row": pa.array(recs["row"].astype(np.int64)), "w": pa.array(recs["w"].astype(np.float64))}),
        )
        con.register("src_attrs", _source_attribute_table(per_source, records, wanted))
        con.register("crawl_sources", pa.table({"source_id": pa.array(crawl_ids, pa.string())}))
        selects = [_segment_select(store, s, schemas[s], wanted, bool(crawl_ids) and bool(set(state.segments[s].sources) & set(crawl_ids))) for s in segs]
        if selects:
            con.execute(f"CREATE TEMP TABLE seg_rows AS {' UNION ALL BY NAME '.join(selects)}")
        else:
            cols = ", ".join(f'NULL::VARCHAR AS "a:{a}"' for a in wanted)
            con.execute(
                "CREATE TEMP TABLE seg_rows AS SELECT NULL::BIGINT AS seg, NULL::BIGINT AS row, NULL::VARCHAR AS source_id, NULL::VARCHAR AS source_snapshot, NULL::VARCHAR AS ingest_id, "
                f"NULL::TIMESTAMPTZ AS ingested_at, NULL::BIGINT AS bytes, NULL::VARCHAR AS url{', ' + cols if cols else ''} WHERE false"
            )
        attr_cols = ", ".join(f'coalesce(r."a:{_sql_ident(a)}", s."s:{_sql_ident(a)}") AS "a:{_sql_ident(a)}"' for a in wanted)
        con.execute(
            "CREATE TEMP TABLE facts AS SELECT r.source_id, r.source_snapshot, r.ingest_id, r.ingested_at, r.bytes, recs.w, "
            f"CASE WHEN r.source_id IN (SELECT source_id FROM crawl_sources) THEN nullif(regexp_replace(lower(regexp_extract(r.url, '{_HOST_RE}', 1)), '^www\\.', ''), '') END AS domain"
            f"{', ' + attr_cols if attr_cols else ''} "
            "FROM recs JOIN seg_rows r USING (seg, row) LEFT JOIN src_attrs s ON s.source_id = r.source_id"
        )
        by_source = con.sql(
            "SELECT source_id, sum(bytes)::BIGINT AS bytes, list(DISTINCT source_snapshot) AS snapshots, "
            "strftime(min(ingested_at) AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') AS first, strftime(max(ingested_at) AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') AS last "
            "FROM facts GROUP BY source_id"
        ).to_arrow_table().to_pylist()
        breakdowns = {
            a: con.sql(
                f'SELECT "a:{_sql_ident(a)}" AS value, count(*) AS rows, sum(w) AS weight, count(DISTINCT source_id) AS sources, list(DISTINCT source_id ORDER BY source_id)[1:{EXAMPLE_SOURCES}] AS example_sources FROM facts GROUP BY 1 ORDER BY rows DESC, weight DESC, value NULLS LAST'
            ).to_arrow_table().to_pylist()
            for a in breakdown
        }
        languages: list[dict[str, Any]] = []
        if langs:
            expr = "coalesce(" + ", ".join(f'"a:{_sql_ident(a)}"' for a in langs) + ", NULL)"
            languages = con.sql(f"SELECT {expr} AS language, count(*) AS rows, sum(bytes)::BIGINT AS bytes FROM facts GROUP BY 1 ORDER BY bytes DESC, language NULLS LAST").to_arrow_table().to_pylist()
        domains = con.sql(
            "SELECT domain, count(*) AS rows, sum(bytes)::BIGINT AS bytes, list(DISTINCT source_id ORDER BY source_id) AS sources FROM facts WHERE domain IS NOT NULL GROUP BY 1 ORDER BY bytes DESC, domain"
        ).to_arrow_table().to_pylist()
        ingest_ids = con.sql("SELECT DISTINCT ingest_id FROM facts WHERE ingest_id IS NOT NULL").to_arrow_table().column(0).to_pylist()
    finally:
        con.close()

    got = {r["source_id"]: r for r in by_source}
    sources = []
    for sid, (n, w) in sorted(per_source.items()):
        r = got.get(sid, {})
        snaps = sorted(r.get("snapshots") or [], key=_snapshot_order)
        rec = records.get(sid) or store.sources.get(sid)
        sources.append(SourceFacts(sid, rec, n, w, int(r.get("bytes") or 0), snaps, r.get("first"), r.get("last")))
    stamps = [t for t in [*(s.last_ingested for s in sources), *(s.record.refreshed_at for s in sources)] if t is not None and _dated(t)]
    return VersionFacts(
        version=version,
        rows=int(content["row_count"]),
        weight=float(content["weight_total"]),
        bytes=sum(s.bytes for s in sources),
        sources=sources,
        attributes=row_attrs,
        breakdowns=breakdowns,
        languages=languages,
        domains=domains,
        last_acquired=max(stamps, key=_instant) if stamps else None,
        optouts=_optouts(store),
        steps=_steps(version),
        content_fields=_content_fields(store, ingest_ids),
    )


def _content_fields(store: Store, ingest_ids: list[str]) -> list[str]:
    """Content field names the given ingests declared (from the journal; an ingest that kept every
    input field names none)."""
    state = store.state
    names: set[str] = set()
    for i in ingest_ids:
        ingest = state.ingests.get(i) or {}
        names.update((ingest.get("options") or {}).get("content_fields") or ())
    return sorted(names)


def _segment_select(store: Store, seg: int, names: list[str], wanted: list[str], urls: bool) -> str:
    """One segment's provenance beside its content sizes (same row order), as SQL."""
    segment = store.state.segments[seg]
    prov = _sql_text(str(store.backend.object_path(segment.provenance)))
    cont = _sql_text(str(store.backend.object_path(segment.content)))
    cols = [f'CAST(p."{_sql_ident(ATTR_PREFIX + a)}" AS VARCHAR) AS "a:{_sql_ident(a)}"' if ATTR_PREFIX + a in names else f'NULL::VARCHAR AS "a:{_sql_ident(a)}"' for a in wanted]
    if urls:  # the first value that looks like a URL: url attribute, content field url, source key
        cands = [f'CAST(p."{_sql_ident(ATTR_PREFIX + u)}" AS VARCHAR)' for u in URL_ATTRIBUTES if ATTR_PREFIX + u in names]
        cands += ["json_extract_string(c.content, '$.url')", "p.source_key"]
        url = "CASE " + " ".join(f"WHEN regexp_matches({c}, '{_URL_RE}') THEN {c}" for c in cands) + " END"
    else:
        url = "NULL::VARCHAR"
    return (
        f"SELECT {seg}::BIGINT AS seg, p.file_row_number::BIGINT AS row, p.source_id, p.source_snapshot, p.ingest_id, p.ingested_at, strlen(c.content)::BIGINT AS bytes, {url} AS url"
        f"{', ' + ', '.join(cols) if cols else ''} "
        f"FROM read_parquet('{prov}', file_row_number = true) AS p POSITIONAL JOIN (SELECT content FROM read_parquet('{cont}')) AS c"
    )


def _source_attribute_table(per_source: dict[str, Any], records: dict[str, SourceRecord], wanted: list[str]) -> pa.Table:
    ids = sorted(per_source)
    cols: dict[str, pa.Array] = {"source_id": pa.array(ids, pa.string())}
    for a in wanted:
        values = []
        for sid in ids:
            v = records[sid].attributes.get(a) if sid in records else None
            values.append(None if v is None or v == "" else str(v))
        cols[f"s:{a}"] = pa.array(values, pa.string())
    return pa.table(cols)


def _records_as_of(store: Store, version: Version) -> dict[str, SourceRecord]:
    """Each source's record as of the newest snapshot it has in the version (the journal keeps every
    snapshot's record); a source whose snapshots are unknown gets its current record."""
    from ..records import SourceRecord

    by_snapshot: dict[str, dict[str, Any]] = {}
    for e in store.state.entries:
        if e["kind"] in ("source.add", "source.refresh"):
            by_snapshot[e["source"]["snapshot"]] = e["source"]
        elif e["kind"] == "source.import":
            for rec in e["sources"]:
                by_snapshot[rec["snapshot"]] = rec
    snaps = version.manifest.get("source_snapshots") or {}
    out: dict[str, SourceRecord] = {}
    current = store.state.sources
    for sid in version.content["per_source"]:
        listed = sorted(snaps.get(sid) or [], key=_snapshot_order)
        if listed and listed[-1] in by_snapshot:
            out[sid] = SourceRecord.from_dict(by_snapshot[listed[-1]])
        elif sid in current:
            out[sid] = current[sid]
    return out


def _optouts(store: Store) -> list[dict[str, Any]]:
    """The opt-out register, read defensively (``state.optouts`` when this build keeps one, else the
    journal's ``optout`` entries): requests with id, reason, time, corpus and rows removed."""
    state = store.state
    register = getattr(state, "optouts", None)
    items: list[Any]
    if register is not None:
        items = list(register.values()) if isinstance(register, dict) else list(register)
    else:
        items = [e for e in state.entries if e.get("kind") == "optout"]
    out = []
    for item in items:
        request = _get(item, "request") or {}
        out.append(
            {
                "id": _get(item, "id") or _get(request, "id"),
                "reason": _get(item, "reason") or _get(request, "reason"),
                "requested_at": _get(item, "requested_at") or _get(request, "requested_at") or _get(item, "at"),
                "corpus": _get(item, "corpus"),
                "rows": _get(item, "rows"),
            }
        )
    return out


def _get(item: Any, name: str) -> Any:
    if isinstance(item, dict):
        return item.get(name)
    return getattr(item, name, None)


def _steps(version: Version) -> list[dict[str, Any]]:
    m = version.manifest
    defs = m.get("steps") or {}
    lineage = m.get("lineage") or {}
    out = []
    for sid in version.content.get("pipeline") or []:
        d = defs.get(sid) or {}
        report = (lineage.get(sid) or {}).get("report") or {}
        out.append({"step_id": sid, "definition": d, "report": report})
    return out


def _snapshot_order(snapshot: str) -> tuple[str, int]:
    base, _, n = snapshot.rpartition("@")
    return (base, int(n)) if n.isdigit() else (snapshot, 0)


def _dated(stamp: str) -> bool:
    """True for an RFC 3339 stamp or an ISO date (a free-text refreshed_at is left out)."""
    import datetime as _dt

    try:
        _dt.date.fromisoformat(stamp[:10])
        return True
    except ValueError:
        return False


def _instant(stamp: str) -> str:
    """A sortable form of an RFC 3339 stamp or a date (all ours are UTC with 'Z')."""
    return stamp.replace(" ", "T")


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _sql_ident(name: str) -> str:
    return name.replace('"', '""')


def _label(version: Version) -> str:
    return version.tag or version.id[:12]


# -- rendering helpers -------------------------------------------------------------------------------


def md_cell(value: Any) -> str:
    """A value as one Markdown table cell: pipes, newlines and HTML brackets escaped."""
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(text.split())


def md_text(value: Any) -> str:
    """A value inside Markdown prose (escaped like a cell)."""
    return md_cell(value)


def md_table(headers: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` is one letter per column (l or r)."""
    align = align or "l" * len(headers)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(md_cell(h) for h in headers) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def percent(share: float) -> str:
    return f"{100 * share:.2f} %"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def period(collected: str | None) -> str | None:
    """An ISO 8601 interval as 'start – end' (a single date as itself)."""
    if not collected:
        return None
    start, sep, end = collected.partition("/")
    return f"{start} – {end}" if sep else start


# -- the exporter base -------------------------------------------------------------------------------


class DocumentExporter(Exporter):
    """A document about one version: options checked first, facts gathered once, the chosen format
    rendered to bytes and written atomically (or to stdout when no path is given)."""

    writes_stdout = True
    formats: ClassVar[tuple[str, ...]] = ("markdown",)
    options: ClassVar[frozenset[str]] = frozenset({"format", "corpus"})

    def write(self, store: Store, version: str | Version, path: str | os.PathLike[str] | None, *, overwrite: bool = False, progress: Progress | None = None, **options: Any) -> ExportResult:
        unknown = sorted(set(options) - self.options)
        if unknown:
            raise ExportError(f"format '{self.name}' has no option {', '.join(repr(u) for u in unknown)}; its options are: {', '.join(sorted(self.options))}")
        fmt = self.output_format(options.get("format"), path)
        corpus = options.get("corpus") or "main"
        if not isinstance(corpus, str):
            raise ExportError(f"corpus must be a corpus name, not {corpus!r}")
        checked = self.check(options)
        if path is not None:
            check_target(path, overwrite)  # refuse before any work
        v = resolve_version(store, version, corpus)
        if progress:
            progress("gather", 0, 1)
        facts = gather(store, v, by=tuple(checked.get("by") or ()))
        if progress:
            progress("gather", 1, 1)
        data = self.render(facts, fmt, checked)
        if progress:
            progress("write", 0, 1)
        files: list[dict[str, Any]] = []
        if path is None:
            sys.stdout.write(data.decode("utf-8"))
            sys.stdout.flush()
            out_path = None
        else:
            target = Path(path).expanduser()
            with atomic_output(target, overwrite) as tmp:
                tmp.write_bytes(data)
            import hashlib

            files.append({"path": target.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            out_path = str(target)
        if progress:
            progress("write", 1, 1)
        return ExportResult(
            format=self.name,
            path=out_path,
            rows=facts.rows,
            bytes=len(data),
            version_id=v.id,
            tag=v.tag,
            content_id=v.content_id,
            merkle_root=v.content["merkle_root"],
            files=files,
            details={"corpus": v.corpus, "document_format": fmt, "sources": len(facts.sources)},
        )

    def output_format(self, given: Any, path: str | os.PathLike[str] | None) -> str:
        """The format asked for, else the one the output suffix names, else Markdown."""
        accepted = ", ".join(self.formats)
        if given is not None:
            if not isinstance(given, str):
                raise ExportError(f"format must be one of {accepted}, not {given!r}")
            fmt = FORMAT_ALIASES.get(given.lower(), given.lower())
            if fmt not in self.formats:
                raise ExportError(f"format '{self.name}' writes {accepted}, not {given!r} (--format)")
            return fmt
        if path is not None:
            suffix = Path(path).suffix.lower()
            fmt = SUFFIX_FORMATS.get(suffix, "markdown")
            if fmt not in self.formats:
                raise ExportError(f"format '{self.name}' writes {accepted}, not {fmt} (the output path ends with {suffix}); choose another path or pass --format")
            return fmt
        return "markdown"

    def check(self, options: dict[str, Any]) -> dict[str, Any]:
        """The exporter's own options, checked (unknown names are refused before this is called)."""
        return {}

    def render(self, facts: VersionFacts, fmt: str, options: dict[str, Any]) -> bytes:
        raise NotImplementedError


def version_header(facts: VersionFacts) -> dict[str, Any]:
    """The version a document describes, for its JSON form."""
    v = facts.version
    rec = v.record
    return {
        "version_id": v.id,
        "corpus": v.corpus,
        "tag": v.tag,
        "created_at": rec["created_at"],
        "author": rec["author"],
        "message": rec["message"],
        "parent": rec["parent"],
        "signed": v.signed,
        "content_id": v.content_id,
        "merkle_root": v.content["merkle_root"],
        "content_root": v.content["content_root"],
        "row_count": facts.rows,
        "weight_total": facts.weight,
    }


def rowtrail_version() -> str:
    from .. import __version__

    return __version__
