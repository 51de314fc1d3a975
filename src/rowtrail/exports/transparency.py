"""``transparency``: the transparency table of a version — one row per source, published with every
release — and breakdowns of its rows by teacher model, lane and other declared attributes.

Per source: rows, share of rows, weight, share of weight, licence, legal basis, kind, generator
(``human`` or the model id), collection period, last refresh, the source snapshot(s) the version
holds, owner and uri (the source record as of its newest snapshot in the version). Breakdowns: per
value of each declared attribute named ``teacher``, ``teacher_model``, ``lane``, ``benchmark`` or
``family`` (and those given with ``by``), rows, weight and their shares, and how many sources hold it;
rows without the attribute count under "(not recorded)", so every share column sums to 1.

Formats (option ``format``, else from the output suffix, else Markdown):

- ``markdown``: a heading with the version, the sources table, then one table per breakdown;
- ``csv``: one table with a leading ``table`` column — ``sources`` for source rows, ``by:<attribute>``
  for breakdown rows (``name`` is the source id or the attribute value; columns a breakdown row
  does not have are empty); shares are full-precision decimals;
- ``json``: ``{"format": "rowtrail.transparency/1", "version": {…}, "totals": {…}, "sources": [...],
  "breakdowns": {attribute: [...]}}``.

Options: ``format``, ``corpus``, ``by`` (a list of attribute names, or one comma-separated string).
"""

from __future__ import annotations

import csv
import io
from typing import Any, ClassVar

import orjson

from ..errors import ExportError
from .documents import (
    NOT_RECORDED,
    TOKEN_BYTES,
    DocumentExporter,
    VersionFacts,
    md_table,
    md_text,
    percent,
    period,
    register,
    rowtrail_version,
    version_header,
)

FORMAT_ID = "rowtrail.transparency/1"
SOURCE_COLUMNS = [
    "source_id",
    "rows",
    "row_share",
    "weight",
    "weight_share",
    "license",
    "legal_basis",
    "kind",
    "generator",
    "collected",
    "refreshed_at",
    "snapshots",
    "owner",
    "uri",
]
CSV_COLUMNS = ["table", "name", "rows", "row_share", "weight", "weight_share", "sources", *SOURCE_COLUMNS[5:]]


def parse_by(value: Any) -> tuple[str, ...]:
    """``by`` as attribute names: a list of names or one comma-separated string."""
    if value is None:
        return ()
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    else:
        raise ExportError(f"by must be a list of attribute names (or 'a,b'), not {value!r}")
    names = [n.removeprefix("attr.") for n in names if n]
    return tuple(dict.fromkeys(names))


def source_rows(facts: VersionFacts) -> list[dict[str, Any]]:
    out = []
    for s in facts.sources:
        r = s.record
        row_share, weight_share = facts.share(s.rows, s.weight)
        out.append(
            {
                "source_id": s.source_id,
                "rows": s.rows,
                "row_share": row_share,
                "weight": s.weight,
                "weight_share": weight_share,
                "license": r.license,
                "legal_basis": r.legal_basis,
                "kind": r.kind,
                "generator": r.generator or "human",
                "collected": r.collected,
                "refreshed_at": r.refreshed_at,
                "snapshots": s.snapshots,
                "owner": r.owner,
                "uri": r.uri,
                "bytes": s.bytes,
            }
        )
    return out


def breakdown_rows(facts: VersionFacts) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for attr, values in facts.breakdowns.items():
        rows = []
        for v in values:
            row_share, weight_share = facts.share(v["rows"], v["weight"])
            rows.append({"value": v["value"], "rows": v["rows"], "row_share": row_share, "weight": v["weight"], "weight_share": weight_share, "sources": v["sources"]})
        out[attr] = rows
    return out


@register
class TransparencyExporter(DocumentExporter):
    name = "transparency"
    description = "the transparency table of a version: every source with rows, shares, licence and legal basis (Markdown, CSV or JSON)"
    formats: ClassVar[tuple[str, ...]] = ("markdown", "csv", "json")
    options: ClassVar[frozenset[str]] = DocumentExporter.options | {"by"}

    def check(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"by": parse_by(options.get("by"))}

    def render(self, facts: VersionFacts, fmt: str, options: dict[str, Any]) -> bytes:
        if fmt == "json":
            return _json(facts)
        if fmt == "csv":
            return _csv(facts)
        return _markdown(facts)


def _json(facts: VersionFacts) -> bytes:
    sources = source_rows(facts)
    doc = {
        "format": FORMAT_ID,
        "version": version_header(facts),
        "totals": {
            "sources": len(sources),
            "rows": facts.rows,
            "weight": facts.weight,
            "bytes": facts.bytes,
            "estimated_tokens": facts.tokens,
            "token_rule": f"content bytes / {TOKEN_BYTES}",
            "machine_generated_sources": sum(1 for s in facts.sources if s.machine_generated),
        },
        "sources": sources,
        "breakdowns": breakdown_rows(facts),
        "rowtrail_version": rowtrail_version(),
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def _csv(facts: VersionFacts) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for s in source_rows(facts):
        w.writerow({**s, "table": "sources", "name": s["source_id"], "sources": "", "snapshots": " ".join(s["snapshots"]), **_floats(s)})
    for attr, rows in breakdown_rows(facts).items():
        for r in rows:
            w.writerow({**r, "table": f"by:{attr}", "name": NOT_RECORDED if r["value"] is None else r["value"], **_floats(r)})
    return buf.getvalue().encode("utf-8")


def _floats(row: dict[str, Any]) -> dict[str, str]:
    # repr keeps every digit, so the shares read back sum to 1 as exactly as floats allow
    return {k: repr(float(row[k])) for k in ("row_share", "weight", "weight_share")}


def _markdown(facts: VersionFacts) -> bytes:
    v = facts.version
    label = f"{v.corpus}@{v.tag or v.id[:12]}"
    parts = [
        f"# Transparency table: {md_text(label)}",
        "",
        f"Version `{v.id}` (content `{v.content_id}`), created {md_text(v.record['created_at'])}, "
        f"{'signed' if v.signed else 'unsigned'}. {len(facts.sources):,} sources, {facts.rows:,} rows, total weight {facts.weight:g}, "
        f"about {facts.tokens:,} tokens (content bytes / {TOKEN_BYTES}).",
        "",
        "## Sources",
        "",
    ]
    rows = []
    for s in source_rows(facts):
        rows.append(
            [
                s["source_id"],
                f"{s['rows']:,}",
                percent(s["row_share"]),
                f"{s['weight']:g}",
                percent(s["weight_share"]),
                s["license"] or "—",
                s["legal_basis"] or "—",
                s["kind"],
                s["generator"],
                period(s["collected"]) or "—",
                s["refreshed_at"] or "—",
                s["snapshots"],
                s["owner"] or "—",
                s["uri"] or "—",
            ]
        )
    headers = ["source", "rows", "share of rows", "weight", "share of weight", "licence", "legal basis", "kind", "generator", "collection period", "last refresh", "snapshots", "owner", "uri"]
    parts.append(md_table(headers, rows, "lrrrrlllllllll"))
    for attr, values in breakdown_rows(facts).items():
        parts += ["", f"## Rows by {md_text(attr)}", ""]
        body = [
            [NOT_RECORDED if r["value"] is None else r["value"], f"{r['rows']:,}", percent(r["row_share"]), f"{r['weight']:g}", percent(r["weight_share"]), f"{r['sources']:,}"]
            for r in values
        ]
        parts.append(md_table([attr, "rows", "share of rows", "weight", "share of weight", "sources"], body, "lrrrrr"))
    parts += ["", f"Generated by rowtrail {rowtrail_version()} from the signed version record; verify with `rowtrail verify --version {v.id}`.", ""]
    return "\n".join(parts).encode("utf-8")
