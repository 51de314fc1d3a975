"""``datacard``: a data card for a version — what it is, what it holds, how it was made, what is known
to be missing, and how to check it.

Sections: the version (id, tag, corpus, created, author, message, parent, signature and signer key
id, content id and roots); counts (rows, weight, sources, estimated tokens, declared attributes);
the sources with their licences and legal bases; composition by teacher / lane and other breakdown
attributes; the pipeline in order (step name, kind, version, parameters, rows in and out, and what
each step dropped, merged, modified and reweighted — from the version manifest's
``lineage[step_id]["report"]``); known limitations (sources without a licence or legal basis,
machine-generated share, sources relying on the text-and-data-mining exception, rows without a
language, an unsigned version, the token estimate); how to verify (``rowtrail verify``, proofs).

Formats: ``markdown`` (default) and ``json`` (the same facts, ``format: rowtrail.datacard/1``).
Options: ``format``, ``corpus``, ``by`` (further attributes to break rows down by, as in
``transparency``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

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
from .transparency import breakdown_rows, parse_by, source_rows

FORMAT_ID = "rowtrail.datacard/1"


def card(facts: VersionFacts) -> dict[str, Any]:
    """The data card as a dict (the JSON form; Markdown renders it)."""
    v = facts.version
    env = v.attestation()
    signers = [s.get("keyid") for s in (env or {}).get("signatures", [])]
    sources = source_rows(facts)
    machine = [s for s in facts.sources if s.machine_generated]
    m_rows = sum(s.rows for s in machine)
    m_weight = sum(s.weight for s in machine)
    teacher_rows = sum(x["rows"] for a in ("teacher", "teacher_model") for x in facts.breakdowns.get(a, []) if x["value"] not in (None, "human"))
    no_lang = sum(x["rows"] for x in facts.languages if x["language"] is None) if facts.languages else facts.rows
    limitations = []
    no_license = [s.source_id for s in facts.sources if not s.record.license]
    no_basis = [s.source_id for s in facts.sources if not s.record.legal_basis]
    tdm = [s.source_id for s in facts.sources if (s.record.legal_basis or "").strip().lower() == "tdm-exception"]
    if no_license:
        limitations.append({"code": "no-licence", "text": f"{len(no_license)} source(s) have no licence recorded", "sources": no_license})
    if no_basis:
        limitations.append({"code": "no-legal-basis", "text": f"{len(no_basis)} source(s) have no legal basis recorded", "sources": no_basis})
    if machine:
        rs, ws = facts.share(m_rows, m_weight)
        limitations.append(
            {
                "code": "machine-generated",
                "text": f"{percent(rs)} of rows ({percent(ws)} of weight) come from machine-generated sources ({', '.join(sorted({s.record.generator for s in machine}))})",
                "sources": [s.source_id for s in machine],
            }
        )
    if teacher_rows:
        limitations.append({"code": "teacher-generated", "text": f"{percent(facts.share(teacher_rows, 0)[0])} of rows declare a teacher model that generated their content", "sources": []})
    if tdm:
        limitations.append({"code": "tdm-exception", "text": f"{len(tdm)} source(s) rely on the text-and-data-mining exception; rights reservations (opt-outs) apply to them", "sources": tdm})
    if facts.rows and no_lang:
        limitations.append({"code": "no-language", "text": f"{percent(no_lang / facts.rows)} of rows carry no language attribute", "sources": []})
    if not v.signed:
        limitations.append({"code": "unsigned", "text": "the version is not signed: its authenticity cannot be checked (verify needs --allow-unsigned)", "sources": []})
    limitations.append({"code": "token-estimate", "text": f"token counts are estimates (content bytes / {TOKEN_BYTES}), not a tokenizer's count", "sources": []})

    steps = []
    for pos, st in enumerate(facts.steps, 1):
        d, r = st["definition"], st["report"]
        steps.append(
            {
                "position": pos,
                "step_id": st["step_id"],
                "name": d.get("name") or r.get("name"),
                "use": d.get("use") or r.get("use"),
                "version": d.get("version"),
                "params": d.get("params") or {},
                "function": d.get("function"),
                "code": d.get("code"),
                "rows_in": r.get("rows_in"),
                "rows_out": r.get("rows_out"),
                "weight_in": r.get("weight_in"),
                "weight_out": r.get("weight_out"),
                "dropped": r.get("dropped") or {},
                "edges": r.get("edges") or {},
                "reweighted": r.get("reweighted") or 0,
                "alerts": r.get("alerts") or [],
            }
        )
    label = v.tag or v.id[:12]
    return {
        "format": FORMAT_ID,
        "version": {**version_header(facts), "signers": signers},
        "counts": {
            "rows": facts.rows,
            "weight": facts.weight,
            "sources": len(sources),
            "bytes": facts.bytes,
            "estimated_tokens": facts.tokens,
            "content_fields": facts.content_fields,
            "attributes": facts.attributes,
        },
        "sources": sources,
        "breakdowns": breakdown_rows(facts),
        "pipeline": steps,
        "limitations": limitations,
        "optouts": facts.optouts,
        "verify": [
            f"rowtrail verify --version {v.id}",
            f"rowtrail show {label} --attestation",
            f"rowtrail prove ROW_ID {label} -o proof.json && rowtrail check-proof proof.json",
            f"rowtrail prove ROW_ID {label} --absent -o absent.json && rowtrail check-proof absent.json",
            f"rowtrail prove CONTENT_SHA256 {label} --content --absent -o absent-text.json",
        ],
        "rowtrail_version": rowtrail_version(),
    }


@register
class DatacardExporter(DocumentExporter):
    name = "datacard"
    description = "a data card for a version: sources, pipeline, known limitations, how to verify (Markdown or JSON)"
    formats: ClassVar[tuple[str, ...]] = ("markdown", "json")
    options: ClassVar[frozenset[str]] = DocumentExporter.options | {"by"}

    def check(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"by": parse_by(options.get("by"))}

    def render(self, facts: VersionFacts, fmt: str, options: dict[str, Any]) -> bytes:
        doc = card(facts)
        if fmt == "json":
            return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
        return _markdown(doc).encode("utf-8")


def _compact(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _counts(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in d.items()) if d else "—"


def _markdown(doc: dict[str, Any]) -> str:
    v, c = doc["version"], doc["counts"]
    label = f"{v['corpus']}@{v['tag'] or v['version_id'][:12]}"
    out = [
        f"# Data card: {md_text(label)}",
        "",
        md_table(
            ["field", "value"],
            [
                ["version id", f"`{v['version_id']}`"],
                ["tag", v["tag"] or "—"],
                ["corpus", v["corpus"]],
                ["created", v["created_at"]],
                ["author", v["author"]],
                ["message", v["message"]],
                ["parent", f"`{v['parent']}`" if v["parent"] else "—"],
                ["signed", ("yes, key " + ", ".join(f"`{k}`" for k in v["signers"])) if v["signed"] else "no"],
                ["content id", f"`{v['content_id']}`"],
                ["merkle root", f"`{v['merkle_root']}`"],
                ["content root", f"`{v['content_root']}`"],
            ],
        ),
        "",
        "## Contents",
        "",
        f"- Rows: {c['rows']:,} (total weight {c['weight']:g})",
        f"- Sources: {c['sources']:,}",
        f"- Size: about {c['estimated_tokens']:,} tokens (content bytes / {TOKEN_BYTES}; {c['bytes']:,} bytes)",
        f"- Content fields: {md_text(', '.join(c['content_fields'])) or '—'}",
        f"- Declared row attributes: {md_text(', '.join(c['attributes'])) or '—'}",
        "",
        "## Sources",
        "",
        md_table(
            ["source", "kind", "rows", "share of rows", "share of weight", "licence", "legal basis", "generator", "collection period", "last refresh"],
            [
                [s["source_id"], s["kind"], f"{s['rows']:,}", percent(s["row_share"]), percent(s["weight_share"]), s["license"] or "—", s["legal_basis"] or "—", s["generator"], period(s["collected"]) or "—", s["refreshed_at"] or "—"]
                for s in doc["sources"]
            ],
            "llrrrlllll",
        ),
    ]
    for attr, values in doc["breakdowns"].items():
        out += [
            "",
            f"## Rows by {md_text(attr)}",
            "",
            md_table(
                [attr, "rows", "share of rows", "share of weight", "sources"],
                [[NOT_RECORDED if r["value"] is None else r["value"], f"{r['rows']:,}", percent(r["row_share"]), percent(r["weight_share"]), f"{r['sources']:,}"] for r in values],
                "lrrrr",
            ),
        ]
    out += ["", "## Pipeline", ""]
    if doc["pipeline"]:
        out.append(
            md_table(
                ["#", "step", "kind", "version", "parameters", "rows in → out", "dropped", "lineage edges", "reweighted"],
                [
                    [
                        s["position"],
                        s["name"],
                        s["use"],
                        s["version"],
                        _compact(s["params"]) + (f" function {s['function']}" if s["function"] else ""),
                        f"{s['rows_in']:,} → {s['rows_out']:,}" if s["rows_in"] is not None else "—",
                        _counts(s["dropped"]),
                        _counts(s["edges"]),
                        f"{s['reweighted']:,}",
                    ]
                    for s in doc["pipeline"]
                ],
                "rlllllllr",
            )
        )
        alerts = [(s["name"], a) for s in doc["pipeline"] for a in s["alerts"]]
        if alerts:
            out += ["", "Monitoring alerts:", ""] + [f"- {md_text(n)}: {md_text(_compact(a))}" for n, a in alerts]
    else:
        out.append("No pipeline: the version is its input set as ingested.")
    out += ["", "## Known limitations", ""]
    for lim in doc["limitations"]:
        out.append(f"- {md_text(lim['text'])}" + (f": {md_text(', '.join(lim['sources']))}" if lim["sources"] else ""))
    if doc["optouts"]:
        out.append(f"- {len(doc['optouts'])} opt-out request(s) are recorded in this store (`rowtrail optout list`)")
    out += ["", "## How to verify", "", "```sh", *doc["verify"], "```", ""]
    out += [
        "`verify` checks every object, the journal's hash chain, the signature against keys trusted outside the store, "
        "and recomputes the version's digests; a proof shows a row (or a text, by its content hash) is in or provably not in "
        "this version against its Merkle root (`rt.verify_inclusion(proof)` / `rt.verify_exclusion(proof)`).",
        "",
        f"Generated by rowtrail {doc['rowtrail_version']}.",
        "",
    ]
    return "\n".join(out)
