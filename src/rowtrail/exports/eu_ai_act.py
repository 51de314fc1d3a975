"""``eu-ai-act``: the public summary of training content (AI Act Art. 53(1)(d); the European
Commission's template of July 2025), filled from the ledger as far as the ledger can.

What the ledger fills, section by section:

- 1.3: modality (text: every row is a JSON text object), the text size band from estimated tokens
  (content bytes / ``TOKEN_BYTES``; bands < 1 B, 1 B–10 T, > 10 T tokens), the latest acquisition
  date MM/YYYY (newest ``ingested_at`` of a row or ``refreshed_at`` of a source), languages (a
  ``lang`` / ``language`` attribute of rows or sources), the content fields recorded.
- 2.1 public datasets: sources of kind ``hf-dataset`` and ``benchmark``; the large ones (at least
  ``large_share`` — default 3 % — of the public datasets' content bytes) listed with uri, rows and
  licence, the rest summarised.
- 2.2 private third-party data: ``partner-dump`` sources; commercially licensed when their legal
  basis is ``licence`` or ``contract``, else "other private datasets".
- 2.3 crawled and scraped data: ``crawl`` and ``url-list`` sources with their collection periods, the
  crawler name, purpose and robots.txt / paywall behaviour when the source declares them (attributes
  ``crawler`` / ``crawler_name`` / ``crawlers`` / ``user_agent``, ``purpose`` / ``purposes``,
  ``robots_txt`` / ``robots`` / ``paywalls``; attribute names compared in lower case with ``-`` as
  ``_``), and the top domains by content size (the host of a URL-like ``url`` attribute, content
  field ``url`` or source key; the top ``top_domains`` — default the top 10 %, at least one). A
  crawled source that declares no crawler, purpose, behaviour or collection period is named under
  "To be completed by the provider" for that field.
- 2.4 user data: ``user-feedback`` sources, and sources of the kinds of 2.6 that declare a
  ``user_data`` attribute. The template's two sub-categories — (a) data from user interactions with
  the model, (b) data collected from the provider's other services or products — are told apart only
  by a source's ``user_data`` attribute (``model-interactions``, ``other-services``, or both, comma
  separated); the services of (b) by a ``service`` / ``services`` / ``product`` attribute. A
  sub-category no source declares is "no" when every user-data source declares its sub-categories,
  else "To be completed by the provider", naming the sources that do not.
- 2.5 synthetic data: ``synthetic`` and ``teacher-model`` sources and any source whose generator is
  not ``human``, with the generating models, plus the teacher models declared on rows (a
  ``teacher`` / ``teacher_model`` attribute); a synthetic source with neither is named under "To be
  completed by the provider". 2.6 other: the rest (``annotation-batch``, ``external-import`` by
  humans, ``other``).
- 3.1: the opt-out requests the store recorded (or "no opt-out requests recorded") and the sources
  relying on the text-and-data-mining exception.

Everything else (provider, model, dates placed on the market, measures, 3.2, 3.3 …) is listed
under "To be completed by the provider", never invented: every field the Markdown marks *To be
completed by the provider* is one entry of the JSON ``to_be_completed_by_provider`` list (and of the
Markdown's closing list), and each entry one such mark.

Formats: ``markdown`` (default) and ``json`` (keyed by the template's section numbers, ``"1.1"`` …
``"3.3"``, with ``"to_be_completed_by_provider"``). Options: ``format``, ``corpus``, ``large_share``
(0 < x ≤ 1), ``top_domains`` (a whole number ≥ 1).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, ClassVar

import orjson

from ..errors import ExportError
from .documents import (
    BREAKDOWN_ATTRIBUTES,
    CRAWL_KINDS,
    TOKEN_BYTES,
    DocumentExporter,
    SourceFacts,
    VersionFacts,
    human_bytes,
    md_table,
    md_text,
    percent,
    period,
    register,
    rowtrail_version,
    version_header,
)

FORMAT_ID = "rowtrail.eu-ai-act-summary/1"
TEMPLATE = "European Commission, template for the public summary of training content for general-purpose AI models (July 2025)"
TBC = "To be completed by the provider"
PUBLIC_KINDS = ("hf-dataset", "benchmark")
PRIVATE_KINDS = ("partner-dump",)
USER_KINDS = ("user-feedback",)
OTHER_KINDS = ("annotation-batch", "external-import", "other")  # 2.6, unless a source declares user_data
SYNTHETIC_KINDS = ("synthetic", "teacher-model")
LICENSED_BASES = ("licence", "license", "contract")
TEACHER_ATTRIBUTES = tuple(a for a in BREAKDOWN_ATTRIBUTES if a.startswith("teacher"))
DEFAULT_LARGE_SHARE = 0.03
DEFAULT_TOP_DOMAIN_FRACTION = 0.10
TEXT_BANDS = ((1e9, "less than 1 billion tokens"), (1e13, "1 billion to 10 trillion tokens"), (float("inf"), "more than 10 trillion tokens"))
CRAWLER_ATTRIBUTES = ("crawler", "crawler_name", "crawlers", "user_agent")
PURPOSE_ATTRIBUTES = ("purpose", "purposes")
ROBOTS_ATTRIBUTES = ("robots_txt", "robots", "paywalls")
SERVICE_ATTRIBUTES = ("service", "services", "product")
USER_DATA_ATTRIBUTE = "user_data"
# declared user_data value → the 2.4 sub-category (JSON key) and its wording
USER_DATA = {"model-interactions": "interactions_with_model", "other-services": "other_services"}
USER_DATA_LABELS = {
    "interactions_with_model": "Data from user interactions with the model",
    "other_services": "Data collected from other services or products of the provider",
}

# (section, field) the ledger never knows; summary() adds, per version, the fields it cannot fill
PROVIDER_FIELDS = [
    ("1.1", "provider name and contact details"),
    ("1.1", "authorised representative (name and contact details), if any"),
    ("1.2", "versioned model name(s)"),
    ("1.2", "model dependencies (the general-purpose AI model(s) this model is fine-tuned or modified from, with their summaries)"),
    ("1.2", "date the model was placed on the Union market"),
    ("1.3", "types of content (e.g. code, prose, dialogue) — the ledger records only the content field names shown in 1.3"),
    ("1.3", "other relevant characteristics of the training data"),
    ("3.1", "measures taken to identify and respect reservations of rights from text-and-data mining (e.g. robots.txt, machine-readable protocols)"),
    ("3.2", "measures taken to avoid or remove illegal content from the training data"),
    ("3.3", "other information (optional)"),
]


def size_band(tokens: int) -> str:
    return next(label for limit, label in TEXT_BANDS if tokens < limit)


def month_year(stamp: str | None) -> str | None:
    """An RFC 3339 stamp (or date) as MM/YYYY."""
    if not stamp:
        return None
    try:
        d = _dt.date.fromisoformat(stamp[:10])
    except ValueError:
        return None
    return f"{d.month:02d}/{d.year:04d}"


def _attr(s: SourceFacts, *names: str) -> str | None:
    """The first of ``names`` the source declares (attribute names compared in lower case, ``-`` as ``_``)."""
    attrs = {str(k).strip().lower().replace("-", "_"): v for k, v in s.record.attributes.items()}
    for n in names:
        v = attrs.get(n)
        if v not in (None, "", [], ()):
            return ", ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)
    return None


def _user_data(s: SourceFacts) -> list[str]:
    """The 2.4 sub-categories a source declares in its ``user_data`` attribute ([] when it declares
    none, or a value the template has no sub-category for: the ledger cannot tell)."""
    raw = _attr(s, USER_DATA_ATTRIBUTE)
    if raw is None:
        return []
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if not names or any(n not in USER_DATA for n in names):
        return []
    return sorted({USER_DATA[n] for n in names})


def _ids(ids: list[str]) -> str:
    return ", ".join(ids)


def _category(s: SourceFacts) -> str:
    kind = s.record.kind
    if kind in SYNTHETIC_KINDS or s.machine_generated:
        return "2.5"
    if kind in PUBLIC_KINDS:
        return "2.1"
    if kind in PRIVATE_KINDS:
        return "2.2"
    if kind in CRAWL_KINDS:
        return "2.3"
    if kind in USER_KINDS or (kind in OTHER_KINDS and _user_data(s)):
        return "2.4"
    return "2.6"


def _source_entry(s: SourceFacts, facts: VersionFacts) -> dict[str, Any]:
    r = s.record
    return {
        "source_id": s.source_id,
        "kind": r.kind,
        "uri": r.uri,
        "rows": s.rows,
        "bytes": s.bytes,
        "estimated_tokens": s.bytes // TOKEN_BYTES,
        "row_share": facts.share(s.rows, s.weight)[0],
        "license": r.license,
        "legal_basis": r.legal_basis,
        "collected": r.collected,
        "refreshed_at": r.refreshed_at,
        "generator": r.generator or "human",
    }


def summary(facts: VersionFacts, large_share: float = DEFAULT_LARGE_SHARE, top_domains: int | None = None) -> dict[str, Any]:
    """The summary as a dict keyed by section number (the JSON form; Markdown renders it)."""
    groups: dict[str, list[SourceFacts]] = {k: [] for k in ("2.1", "2.2", "2.3", "2.4", "2.5", "2.6")}
    for s in facts.sources:
        groups[_category(s)].append(s)
    by_size = {k: sorted(v, key=lambda s: (-s.bytes, s.source_id)) for k, v in groups.items()}

    tbc: list[tuple[str, str]] = [f for f in PROVIDER_FIELDS if f[0] in ("1.1", "1.2", "1.3")]  # then, section by section, what this version leaves open

    # 1.3
    langs = [x for x in facts.languages if x["language"] is not None]
    unrecorded = sum(x["rows"] for x in facts.languages if x["language"] is None) if facts.languages else facts.rows
    weighted_note = None
    if facts.weight != facts.rows:
        weighted_note = f"rows are weighted (total weight {facts.weight:g} over {facts.rows:,} rows); the estimate counts each row once"
    s13 = {
        "modalities": {"text": True, "image": False, "audio": False, "video": False, "other": False},
        "text_size_band": size_band(facts.tokens),
        "estimated_text_tokens": facts.tokens,
        "content_bytes": facts.bytes,
        "size_rule": f"UTF-8 bytes of each row's canonical JSON content / {TOKEN_BYTES}, each row once",
        "size_note": weighted_note,
        "types_of_content": None,
        "content_fields": facts.content_fields,
        "latest_acquisition": month_year(facts.last_acquired),
        "languages": [{"language": x["language"], "rows": x["rows"], "bytes": x["bytes"]} for x in langs],
        "rows_without_language": unrecorded,
        "other_characteristics": None,
    }
    if s13["latest_acquisition"] is None:
        tbc.append(("1.3", "latest date of data acquisition (MM/YYYY): no row or source records a date"))
    if not langs:
        tbc.append(("1.3", "languages: no row or source declares a language attribute"))

    # 2.1
    public = by_size["2.1"]
    public_bytes = sum(s.bytes for s in public)
    large = [s for s in public if public_bytes and s.bytes / public_bytes >= large_share] if public_bytes else list(public)
    others = [s for s in public if s not in large]
    s21 = {
        "used": bool(public),
        "modalities": ["text"] if public else [],
        "large_share_threshold": large_share,
        "large_datasets": [_source_entry(s, facts) for s in large],
        "other_datasets": {
            "count": len(others),
            "rows": sum(s.rows for s in others),
            "bytes": sum(s.bytes for s in others),
            "sources": [s.source_id for s in others],
        },
    }

    # 2.2
    private = by_size["2.2"]
    licensed = [s for s in private if (s.record.legal_basis or "").strip().lower() in LICENSED_BASES]
    s22 = {
        "used": bool(private),
        "commercially_licensed": [_source_entry(s, facts) for s in licensed],
        "other_private": [_source_entry(s, facts) for s in private if s not in licensed],
    }

    # 2.3
    crawled = by_size["2.3"]
    crawl_ids = {s.source_id for s in crawled}
    domains = [d for d in facts.domains if crawl_ids & set(d["sources"])]
    n_top = top_domains if top_domains is not None else max(1, -(-len(domains) * 10 // 100)) if domains else 0
    crawled_bytes = sum(s.bytes for s in crawled)
    declared = {
        key: {s.source_id: _attr(s, *names) for s in crawled}
        for key, names in (("crawler", CRAWLER_ATTRIBUTES), ("purpose", PURPOSE_ATTRIBUTES), ("robots_txt_and_paywalls", ROBOTS_ATTRIBUTES))
    }
    undeclared = {key: [sid for sid, v in values.items() if v is None] for key, values in declared.items()}
    undeclared["collection_period"] = [s.source_id for s in crawled if not s.record.collected]
    s23 = {
        "used": bool(crawled),
        "crawlers": sorted({c for c in declared["crawler"].values() if c}),
        "purposes": sorted({p for p in declared["purpose"].values() if p}),
        "robots_txt_and_paywalls": sorted({b for b in declared["robots_txt_and_paywalls"].values() if b}),
        "not_declared_by": undeclared,
        "types_of_sources": None,
        "sources": [
            {**_source_entry(s, facts), "collection_period": s.record.collected, **{k: v[s.source_id] for k, v in declared.items()}} for s in crawled
        ],
        "modalities": ["text"] if crawled else [],
        "domains_counted": len(domains),
        "top_domains_rule": (
            f"the top {n_top} of {len(domains)} domains"
            + (" (10 %, at least one)" if top_domains is None else "")
            + "; a row's domain is the host of its URL-like url attribute, content field url or source key, without a leading www."
        ),
        "top_domains": [
            {"domain": d["domain"], "rows": d["rows"], "bytes": d["bytes"], "share_of_crawled_bytes": d["bytes"] / crawled_bytes if crawled_bytes else 0.0, "sources": d["sources"]}
            for d in domains[:n_top]
        ],
    }
    if crawled:
        if undeclared["crawler"]:
            tbc.append(("2.3", f"crawler name(s), not declared by {_ids(undeclared['crawler'])}"))
        if undeclared["purpose"]:
            tbc.append(("2.3", f"purposes of the crawlers, not declared by {_ids(undeclared['purpose'])}"))
        if undeclared["robots_txt_and_paywalls"]:
            tbc.append(("2.3", f"crawler behaviour towards robots.txt, paywalls and other access restrictions, not declared by {_ids(undeclared['robots_txt_and_paywalls'])}"))
        tbc.append(("2.3", "types of online sources crawled (e.g. public websites, forums)"))
        tbc += [("2.3", f"period of data collection of {sid}") for sid in undeclared["collection_period"]]
        if not s23["top_domains"]:
            tbc.append(("2.3", "summary list of the top domains by content size: no crawled row carries a URL the ledger can read a domain from"))

    # 2.4
    users = by_size["2.4"]
    kinds = {s.source_id: _user_data(s) for s in users}
    no_kind = [s.source_id for s in users if not kinds[s.source_id]]
    s24: dict[str, Any] = {
        "used": bool(users),
        "modalities": ["text"] if users else [],
        "sub_category_rule": f"a source's {USER_DATA_ATTRIBUTE} attribute: {' or '.join(USER_DATA)} (or both, comma separated)",
        "sources_not_declaring_sub_category": no_kind,
    }
    for key, label in USER_DATA_LABELS.items():
        ids = [s.source_id for s in users if key in kinds[s.source_id]]
        # yes when a source declares it; no when every user-data source declares its sub-categories
        s24[key] = {"used": True if ids else (None if no_kind else False), "sources": ids}
        if s24[key]["used"] is None:
            tbc.append(("2.4", f"{label[0].lower()}{label[1:]}: used or not (yes/no), not declared by {_ids(no_kind)}"))
    other_services = [s for s in users if "other_services" in kinds[s.source_id]]
    services = {s.source_id: _attr(s, *SERVICE_ATTRIBUTES) for s in other_services}
    s24["other_services"]["services"] = sorted({v for v in services.values() if v})
    s24["other_services"]["services_not_declared_by"] = [sid for sid, v in services.items() if v is None]
    if s24["other_services"]["services_not_declared_by"]:
        tbc.append(("2.4", f"the provider's services or products the user data was collected from, not declared by {_ids(s24['other_services']['services_not_declared_by'])}"))
    s24["sources"] = [{**_source_entry(s, facts), "user_data": kinds[s.source_id], "service": services.get(s.source_id)} for s in users]

    # 2.5
    synthetic = by_size["2.5"]
    models: dict[str, dict[str, Any]] = {}
    for s in synthetic:
        if s.machine_generated:
            m = models.setdefault(s.record.generator, {"model": s.record.generator, "rows": 0, "sources": [], "declared_by": set()})
            m["rows"] += s.rows
            m["sources"].append(s.source_id)
            m["declared_by"].add("source generator")
    teacher_rows = 0
    for attr in TEACHER_ATTRIBUTES:
        for v in facts.breakdowns.get(attr, []):
            if v["value"] is None or v["value"] == "human":
                continue
            m = models.setdefault(v["value"], {"model": v["value"], "rows": 0, "sources": [], "declared_by": set()})
            if f"row attribute {attr}" not in m["declared_by"] and "source generator" not in m["declared_by"]:
                m["rows"] += v["rows"]
            m["declared_by"].add(f"row attribute {attr}")
            m["sources"] = sorted(set(m["sources"]) | set(v.get("example_sources") or []))
            teacher_rows += v["rows"]
    no_model = [s.source_id for s in synthetic if not any(s.source_id in m["sources"] for m in models.values())]
    s25 = {
        "used": bool(synthetic) or bool(models),
        "modalities": ["text"] if (synthetic or models) else [],
        "sources": [_source_entry(s, facts) for s in synthetic],
        "generating_models": [{**m, "declared_by": sorted(m["declared_by"])} for m in sorted(models.values(), key=lambda m: (-m["rows"], m["model"]))],
        "rows_with_teacher_attribute": teacher_rows,
        "sources_without_generating_model": no_model,
    }
    if no_model:
        tbc.append(("2.5", f"models used to generate the synthetic data of {_ids(no_model)}"))
    if s25["used"]:
        tbc.append(("2.5", "links to the public generating models, where applicable"))

    # 2.6
    other = by_size["2.6"]
    s26 = {"used": bool(other), "sources": [_source_entry(s, facts) for s in other]}

    # 3.1
    tdm = [s.source_id for s in facts.sources if (s.record.legal_basis or "").strip().lower() == "tdm-exception"]
    s31 = {
        "optout_requests": facts.optouts,
        "optout_summary": f"{len(facts.optouts)} opt-out request(s) recorded" if facts.optouts else "no opt-out requests recorded",
        "sources_relying_on_tdm_exception": tdm,
        "measures": None,
    }
    tbc += [f for f in PROVIDER_FIELDS if f[0] in ("3.1", "3.2", "3.3")]

    return {
        "format": FORMAT_ID,
        "template": TEMPLATE,
        "version": version_header(facts),
        "1.1": {"provider_name_and_contact": None, "authorised_representative": None},
        "1.2": {"model_name": None, "model_dependencies": None, "placement_on_market": None},
        "1.3": s13,
        "2.1": s21,
        "2.2": s22,
        "2.3": s23,
        "2.4": s24,
        "2.5": s25,
        "2.6": s26,
        "3.1": s31,
        "3.2": {"measures": None},
        "3.3": {"other_information": None},
        "to_be_completed_by_provider": [{"section": sec, "field": f} for sec, f in tbc],
        "rowtrail_version": rowtrail_version(),
    }


@register
class EUAIActExporter(DocumentExporter):
    name = "eu-ai-act"
    description = "the EU AI Act public summary of training content (Commission template, July 2025), Markdown or JSON"
    formats: ClassVar[tuple[str, ...]] = ("markdown", "json")
    options: ClassVar[frozenset[str]] = DocumentExporter.options | {"large_share", "top_domains"}

    def check(self, options: dict[str, Any]) -> dict[str, Any]:
        large = options.get("large_share", DEFAULT_LARGE_SHARE)
        if isinstance(large, bool) or not isinstance(large, (int, float)) or not 0 < float(large) <= 1:
            raise ExportError(f"large_share must be a number in (0, 1] (e.g. 0.03 for 3 %), not {large!r}")
        top = options.get("top_domains")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
            raise ExportError(f"top_domains must be a whole number ≥ 1, not {top!r}")
        return {"large_share": float(large), "top_domains": top}

    def render(self, facts: VersionFacts, fmt: str, options: dict[str, Any]) -> bytes:
        doc = summary(facts, options["large_share"], options["top_domains"])
        if fmt == "json":
            return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
        return _markdown(doc).encode("utf-8")


# -- Markdown ----------------------------------------------------------------------------------------


def _tbc(value: Any) -> str:
    return f"*{TBC}*" if value in (None, [], "") else md_text(value)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _declared(values: list[str], missing: list[str], sep: str = ", ") -> str:
    """What the sources declare, then one mark for the sources that declare nothing."""
    parts = [md_text(sep.join(values))] if values else []
    if missing:
        parts.append(f"*{TBC}* (not declared by {md_text(_ids(missing))})")
    return "; ".join(parts) or "—"


def _sources_table(entries: list[dict[str, Any]], extra: str | None = None) -> str:
    headers = ["source", "kind", "link / uri", "rows", "size", "licence", "legal basis"]
    if extra:
        headers.append(extra.replace("_", " "))
    rows = []
    for e in entries:
        row = [e["source_id"], e["kind"], e["uri"] or "—", f"{e['rows']:,}", human_bytes(e["bytes"]), e["license"] or "—", e["legal_basis"] or "—"]
        if extra:
            val = e.get(extra)
            if extra == "collection_period":
                val = period(val) or f"*{TBC}*"  # listed under 2.3 in to_be_completed_by_provider
            row.append(val)
        rows.append(row)
    return md_table(headers, rows, "lllrrll" + ("l" if extra else ""))


def _markdown(doc: dict[str, Any]) -> str:
    v = doc["version"]
    label = f"{v['corpus']}@{v['tag'] or v['version_id'][:12]}"
    out: list[str] = [
        f"# Public summary of training content: {md_text(label)}",
        "",
        f"Following the {TEMPLATE} (AI Act Art. 53(1)(d)). Prepared from rowtrail version `{v['version_id']}` "
        f"(created {md_text(v['created_at'])}, {'signed' if v['signed'] else 'unsigned'}; {v['row_count']:,} rows). "
        f"Fields the ledger cannot fill say *{TBC}* and are listed at the end.",
        "",
        "## 1. General information",
        "",
        "### 1.1 Provider identification",
        "",
        f"- Provider name and contact details: *{TBC}*",
        f"- Authorised representative: *{TBC}*",
        "",
        "### 1.2 Model identification",
        "",
        f"- Versioned model name(s): *{TBC}*",
        f"- Model dependencies: *{TBC}*",
        f"- Date placed on the market: *{TBC}*",
        "",
        "### 1.3 Modalities, overall training data size and other characteristics",
        "",
    ]
    s = doc["1.3"]
    mods = ", ".join(f"{k}: {_yes(x)}" for k, x in s["modalities"].items())
    out += [
        f"- Modalities: {mods}",
        f"- Training data size (text): **{s['text_size_band']}** — about {s['estimated_text_tokens']:,} tokens, estimated as {md_text(s['size_rule'])} ({human_bytes(s['content_bytes'])})"
        + (f"; {md_text(s['size_note'])}" if s["size_note"] else ""),
        f"- Types of content: *{TBC}* (content fields recorded: {md_text(', '.join(s['content_fields'])) or '—'})",
        f"- Latest date of data acquisition: {_tbc(s['latest_acquisition'])}",
    ]
    if s["languages"]:
        langs = ", ".join(f"{md_text(x['language'])} ({x['rows']:,} rows)" for x in s["languages"])
        out.append(f"- Languages: {langs}" + (f"; {s['rows_without_language']:,} rows carry no language attribute" if s["rows_without_language"] else ""))
    else:
        out.append(f"- Languages: *{TBC}* (no row or source declares a language attribute)")
    out += [f"- Other characteristics: *{TBC}*", "", "## 2. List of data sources", "", "### 2.1 Publicly available datasets", ""]

    s = doc["2.1"]
    out.append(f"- Used: {_yes(s['used'])}")
    if s["used"]:
        out.append(f"- Modalities: {', '.join(s['modalities'])}")
        out += ["", f"Large datasets (each at least {percent(s['large_share_threshold'])} of the publicly available datasets' content):", "", _sources_table(s["large_datasets"])]
        o = s["other_datasets"]
        out += ["", f"Other publicly available datasets: {o['count']:,}" + (f" ({o['rows']:,} rows, {human_bytes(o['bytes'])}): {md_text(', '.join(o['sources']))}" if o["count"] else "")]
    out += ["", "### 2.2 Private non-publicly available datasets obtained from third parties", "", f"- Used: {_yes(doc['2.2']['used'])}"]
    if doc["2.2"]["used"]:
        out += ["", "Commercially licensed (legal basis: licence or contract):", "", _sources_table(doc["2.2"]["commercially_licensed"])]
        if doc["2.2"]["other_private"]:
            out += ["", "Other private datasets:", "", _sources_table(doc["2.2"]["other_private"])]

    s = doc["2.3"]
    out += ["", "### 2.3 Data crawled and scraped from online sources", "", f"- Used: {_yes(s['used'])}"]
    if s["used"]:
        missing = s["not_declared_by"]
        out += [
            f"- Crawler name(s): {_declared(s['crawlers'], missing['crawler'])}",
            f"- Purposes: {_declared(s['purposes'], missing['purpose'])}",
            f"- Behaviour towards robots.txt and paywalls: {_declared(s['robots_txt_and_paywalls'], missing['robots_txt_and_paywalls'], '; ')}",
            f"- Types of sources: *{TBC}*",
            f"- Modalities: {', '.join(s['modalities'])}",
            "",
            "Sources and periods of collection:",
            "",
            _sources_table(s["sources"], "collection_period"),
            "",
            f"Top domains by content size ({md_text(s['top_domains_rule'])}):",
            "",
        ]
        if s["top_domains"]:
            out.append(
                md_table(
                    ["domain", "rows", "size", "share of crawled content", "sources"],
                    [[d["domain"], f"{d['rows']:,}", human_bytes(d["bytes"]), percent(d["share_of_crawled_bytes"]), d["sources"]] for d in s["top_domains"]],
                    "lrrrl",
                )
            )
        else:
            out.append(f"*{TBC}* (no crawled row carries a URL the ledger can read a domain from)")

    s = doc["2.4"]
    out += ["", "### 2.4 User data", "", f"- Used: {_yes(s['used'])}"]
    for key, label in USER_DATA_LABELS.items():
        sub = s[key]
        if sub["used"] is None:
            answer = f"*{TBC}* (sources that do not declare a {USER_DATA_ATTRIBUTE} attribute: {md_text(_ids(s['sources_not_declaring_sub_category']))})"
        else:
            answer = _yes(sub["used"]) + (f" ({md_text(_ids(sub['sources']))})" if sub["sources"] else "")
        out.append(f"- {label}: {answer}")
    if s["other_services"]["used"]:
        out.append(f"- Services or products of the provider the data was collected from: {_declared(s['other_services']['services'], s['other_services']['services_not_declared_by'])}")
    if s["used"]:
        out.append(f"- Modalities: {', '.join(s['modalities'])}")
        entries = [{**e, "user_data": ", ".join(USER_DATA_LABELS[k].lower() for k in e["user_data"]) or "not declared"} for e in s["sources"]]
        out += ["", _sources_table(entries, "user_data")]

    s = doc["2.5"]
    out += ["", "### 2.5 Synthetic data", "", f"- Used: {_yes(s['used'])}"]
    if s["used"]:
        out.append(f"- Modalities: {', '.join(s['modalities'])}")
        if s["sources"]:
            out += ["", "Machine-generated sources:", "", _sources_table(s["sources"], "generator")]
        if s["generating_models"]:
            out += [
                "",
                "Models used to generate content (from source generators and the teacher models declared on rows):",
                "",
                md_table(["model", "rows", "declared by", "sources"], [[m["model"], f"{m['rows']:,}", m["declared_by"], m["sources"] or "—"] for m in s["generating_models"]], "lrll"),
            ]
        out.append("")
        if s["sources_without_generating_model"]:
            out.append(f"- Models used to generate the content of {md_text(_ids(s['sources_without_generating_model']))}: *{TBC}*")
        out.append(f"- Links to public generating models: *{TBC}*")

    out += ["", "### 2.6 Other sources", "", f"- Used: {_yes(doc['2.6']['used'])}"]
    if doc["2.6"]["used"]:
        out += ["", _sources_table(doc["2.6"]["sources"])]

    s = doc["3.1"]
    out += ["", "## 3. Data processing aspects", "", "### 3.1 Respect of reservations of rights from text and data mining", ""]
    if s["optout_requests"]:
        out += [
            f"- Opt-out requests recorded in the ledger: {len(s['optout_requests'])}",
            "",
            md_table(
                ["request", "requested at", "corpus", "rows removed", "reason"],
                [[r.get("id"), r.get("requested_at"), r.get("corpus"), r.get("rows"), r.get("reason")] for r in s["optout_requests"]],
                "lllrl",
            ),
            "",
        ]
    else:
        out.append("- Opt-out requests: no opt-out requests recorded")
    if s["sources_relying_on_tdm_exception"]:
        out.append(f"- Sources relying on the text-and-data-mining exception: {md_text(', '.join(s['sources_relying_on_tdm_exception']))}")
    out += [
        f"- Measures taken to respect reservations of rights: *{TBC}*",
        "",
        "### 3.2 Removal of illegal content",
        "",
        f"*{TBC}* (the pipeline steps this version ran, with what each dropped, are in its data card: `rowtrail export datacard {v['tag'] or v['version_id'][:12]}`)",
        "",
        "### 3.3 Other information",
        "",
        f"*{TBC}* (optional)",
        "",
        "## To be completed by the provider",
        "",
    ]
    out += [f"- {sec} {md_text(field)}" for sec, field in ((x["section"], x["field"]) for x in doc["to_be_completed_by_provider"])]
    out += ["", f"Generated by rowtrail {doc['rowtrail_version']}; verify the version with `rowtrail verify --version {v['version_id']}`.", ""]
    return "\n".join(out)
