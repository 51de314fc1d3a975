"""``croissant``: a version as a Croissant 1.1 dataset (https://docs.mlcommons.org/croissant/) — a
directory holding the rows as Parquet (written by the ``parquet`` exporter, under ``data/``, with its
``_rowtrail.json`` sidecar) and ``croissant.json``, the JSON-LD description that ``mlcroissant`` loads
(``mlcroissant.Dataset(jsonld="<dir>/croissant.json").records("rows")`` reads the rows offline).

Mapping (``croissant.json``):

- ``@context``: the spec's Appendix 1 context, plus ``samplingRate`` (``mlcroissant``'s standard context
  has it and warns when a key of it is missing) and ``prov`` (W3C PROV-O); ``conformsTo``
  ``http://mlcommons.org/croissant/1.1``.
- ``name`` (option, default ``<corpus>@<tag or id>``), ``description`` (option, default the commit message
  and a summary), ``version``: the tag, else the version id; ``identifier``: the version id; ``url``
  (option, default ``urn:rowtrail:version:<id>``); ``creator``: the commit author; ``datePublished``:
  the commit time; ``license``: the distinct SPDX expressions of the sources whose rows are in the
  version; ``citeAs`` (option ``cite_as``) when given.
- ``distribution``: one ``cr:FileObject`` per Parquet file — ``contentUrl`` relative to the directory,
  ``encodingFormat`` ``application/x-parquet``, ``sha256``, ``contentSize`` — and the sidecar
  (``application/json``). With more than one shard a ``cr:FileSet`` (``includes`` ``data/*.parquet``)
  is the record set's source.
- ``recordSet`` ``rows`` (key ``rows/row_id``): one ``cr:Field`` per content column, then ``row_id``,
  ``source_id``, ``source_key``, the declared row attributes and ``weight``; each with ``source``
  ``{fileObject|fileSet, extract: {column}}``. ``dataType`` from the Arrow type: strings ``sc:Text``,
  integers ``sc:Integer``, floats ``sc:Float``, booleans ``sc:Boolean``, timestamps ``sc:DateTime``, dates
  ``sc:Date``; a list of those ``isArray`` with the element's type; a struct a field whose ``subField``\\ s
  read the column through a ``jsonPath`` transform; anything else ``sc:Text``.
- RAI (``rai:``, only what the ledger knows; an unknown property is omitted, never guessed):
  ``dataCollection`` (one text, a paragraph per source: kind, uri, legal basis, owner, collection
  period, refresh, generator — the property takes a single value), ``dataCollectionType``
  (the source kinds), ``dataCollectionTimeframe`` (earliest start and latest end of the sources'
  collection periods), ``dataPreprocessingProtocol`` (the pinned pipeline: each step's name, use,
  version, params, step id and code fingerprint, from the version manifest), ``machineAnnotationTools``
  (source generators and teacher-model attribute values other than ``human``), ``dataAnnotationProtocol``
  / ``dataAnnotationPlatform`` (when rows carry ``annotator``, ``guideline_version`` or ``platform``
  attributes), ``annotationsPerItem`` (when rows are judgements, carrying both ``item_id`` and
  ``annotator`` attributes as annotation imports do: the mean, least and most judgements per
  ``item_id``, counted over the exported rows).
- PROV-O (identifiers as in the ``prov`` export, ``urn:rowtrail:…``):

  - dataset: ``prov:wasDerivedFrom`` the source snapshots (``prov:Entity`` ``urn:rowtrail:source/S@n``
    with label, location, licence); ``prov:wasGeneratedBy`` the commit (``prov:Activity``
    ``urn:rowtrail:commit/<id>`` with end time, associated with its author); ``prov:wasAttributedTo``
    the machine generators (``prov:SoftwareAgent`` ``urn:rowtrail:agent/model/<id>``).
  - each Parquet ``cr:FileObject``, the ``cr:FileSet`` (when sharded) and the record set:
    ``prov:wasDerivedFrom`` those source snapshots and ``prov:wasGeneratedBy`` the pipeline steps
    behind the version (``prov:Activity`` ``urn:rowtrail:run/<run>/step/<k>``, defined on the record
    set) and the commit (references by ``@id``).
  - a content field a model writes — ``response``, ``completion``, ``output``, ``generation``,
    ``answer`` (``MODEL_OUTPUT_FIELDS``) or ``item`` (a judgement's rated item) — when rows holding a
    value in it were made by a model: ``prov:wasAttributedTo`` those models (``prov:SoftwareAgent``):
    the ``generator`` of those rows' sources and the values of the teacher attributes
    (``TEACHER_ATTRIBUTES``, including ``item_generator``) on those rows, never ``human``. Prompts and
    other fields are not attributed: the ledger does not say who wrote them.

Options: ``corpus``, ``source`` (only that source's rows), ``shard_rows`` and ``batch_rows`` (as for
``parquet``); ``name``, ``description``, ``url``, ``cite_as`` (dataset-level text).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..segments import ATTR_PREFIX
from .base import Exporter, ExportError, ExportResult, Progress, atomic_output, check_target, file_digest, get, register, resolve_version
from .prov import (
    ANNOTATOR_ATTRIBUTES,
    GUIDELINE_ATTRIBUTES,
    HUMAN,
    PLATFORM_ATTRIBUTES,
    TEACHER_ATTRIBUTES,
    _safe,
    attribute_values,
    check_options,
    dumps,
    machine_generators,
    snapshot_records,
)

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.version import Version

CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
METADATA_FILE = "croissant.json"
DATA_DIR = "data"
RECORD_SET = "rows"
PARQUET_MIME = "application/x-parquet"
# Croissant 1.1, Appendix 1 (https://docs.mlcommons.org/croissant/docs/croissant-spec-1.1.html), plus
# samplingRate (in mlcroissant's standard context, which logs "JSON-LD @context is not standard" when a
# key of it is missing) and PROV-O.
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "prov": "http://www.w3.org/ns/prov#",
    "annotation": "cr:annotation",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "excludes": "cr:excludes",
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "readLines": "cr:readLines",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sdVersion": "cr:sdVersion",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "unArchive": "cr:unArchive",
    "value": "cr:value",
}
PROVENANCE_FIELDS = ("row_id", "source_id", "source_key")
# Content fields that hold what a model wrote in a generated row (the answer side of an SFT or
# distillation pair), and a judgement's rated item: attributed to the models that made their rows.
MODEL_OUTPUT_FIELDS = ("response", "completion", "output", "generation", "answer")
RATED_ITEM_FIELD = "item"


def data_type(t: pa.DataType) -> str:
    """The Croissant ``dataType`` of a primitive Arrow type."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "sc:Text"
    if pa.types.is_boolean(t):
        return "sc:Boolean"
    if pa.types.is_integer(t):
        return "sc:Integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "sc:Float"
    if pa.types.is_timestamp(t):
        return "sc:DateTime"
    if pa.types.is_date(t):
        return "sc:Date"
    return "sc:Text"


def field_node(record_set: str, column: str, arrow_field: pa.Field, source: dict[str, Any], path: tuple[str, ...] = (), description: str | None = None) -> dict[str, Any]:
    """A ``cr:Field`` reading ``column`` (or, with ``path``, a member of a struct column)."""
    name = "/".join((column, *path))
    node: dict[str, Any] = {"@type": "cr:Field", "@id": f"{record_set}/{name}", "name": name}
    if description:
        node["description"] = description
    t = arrow_field.type
    extract: dict[str, Any] = {**source, "extract": {"column": column}}
    if path:
        extract["transform"] = {"jsonPath": ".".join(path)}
    if pa.types.is_struct(t):  # no dataType of its own: a record of its members
        node["subField"] = [field_node(record_set, column, t.field(i), source, (*path, t.field(i).name)) for i in range(t.num_fields)]
        return node
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and not pa.types.is_nested(t.value_type):
        node["dataType"] = data_type(t.value_type)
        node["isArray"] = True
        node["arrayShape"] = "-1"
    else:
        node["dataType"] = data_type(t)
    node["source"] = extract
    return node


def _period_bounds(periods: list[str]) -> list[str] | None:
    starts, ends = [], []
    for p in periods:
        a, _, b = p.partition("/")
        if a:
            starts.append(a)
        ends.append(b or a)
    ends = [e for e in ends if e]
    if not starts and not ends:
        return None
    return [min(starts or ends), max(ends or starts)]


def build_metadata(store: Store, v: Version, data_dir: Path, schema: pa.Schema, columns: list[dict[str, Any]], files: list[dict[str, Any]], options: dict[str, Any], source: str | None) -> dict[str, Any]:
    """The ``croissant.json`` document (see the module docstring) for the Parquet export in ``data_dir``
    (``files``: its files, relative to it)."""
    rec = v.record
    content = v.content
    label = f"{v.corpus}@{v.tag or v.id}"
    snaps = snapshot_records(store)
    used = v.manifest.get("source_snapshots") or {}
    source_ids = sorted(content["per_source"]) if source is None else [source]
    current = {sid: snaps.get((used.get(sid) or [""])[-1]) or _latest(snaps, sid) for sid in source_ids}
    sources = [s for s in current.values() if s]
    records = store.version_rows(v.id)
    if source is not None:
        from ..query.rows import select

        records = select(store, v.id, source=source).records
    values = attribute_values(store, records, TEACHER_ATTRIBUTES + ANNOTATOR_ATTRIBUTES + GUIDELINE_ATTRIBUTES + PLATFORM_ATTRIBUTES)

    parquet = [f for f in files if f["path"].endswith(".parquet")]
    # the Parquet files and the record set: derived from the sources, made by the pipeline steps and the commit
    steps = _step_activities(v)
    part_prov: dict[str, Any] = {"prov:wasDerivedFrom": [{"@id": _source_id(s)} for s in sources]} if sources else {}
    part_prov["prov:wasGeneratedBy"] = [{"@id": a["@id"]} for a in steps] + [{"@id": _commit_id(v)}]
    distribution: list[dict[str, Any]] = []
    for f in files:
        rel = f"{DATA_DIR}/{f['path']}"
        node = {
            "@type": "cr:FileObject",
            "@id": rel,
            "name": rel,
            "contentUrl": rel,
            "encodingFormat": PARQUET_MIME if rel.endswith(".parquet") else "application/json",
            "contentSize": f"{f['bytes']} B",
            "sha256": f["sha256"],
        }
        distribution.append(node | part_prov if rel.endswith(".parquet") else node)
    if len(parquet) == 1:
        ref: dict[str, Any] = {"fileObject": {"@id": f"{DATA_DIR}/{parquet[0]['path']}"}}
    else:
        shards = {"@type": "cr:FileSet", "@id": "parquet-shards", "name": "parquet-shards", "encodingFormat": PARQUET_MIME, "includes": f"{DATA_DIR}/*.parquet"}
        distribution.append(shards | part_prov)
        ref = {"fileSet": {"@id": "parquet-shards"}}

    roles = {c["name"]: c["role"] for c in columns}
    attrs = [n for n in schema.names if roles.get(n) == "provenance" and n not in PROVENANCE_FIELDS and n not in _BUILTIN_PROVENANCE and n != "weight"]
    wanted = [n for n in schema.names if roles.get(n) == "content"] + [n for n in PROVENANCE_FIELDS if n in schema.names] + attrs + (["weight"] if "weight" in schema.names else [])
    descriptions = {
        "row_id": "rowtrail row id: SHA-256 of JCS([source_id, source_key, content_sha256]), or of a derived row's step, parents and content",
        "source_id": "the upstream source of the row (see prov:wasDerivedFrom)",
        "source_key": "the row's key within its source",
        "weight": "the row's training weight in this version (1.0 unless reweighted)",
    }
    fields = [field_node(RECORD_SET, n, schema.field(n), ref, description=descriptions.get(n) or ("declared row attribute" if n in attrs else None)) for n in wanted]
    # attribute name → its Parquet column (``attr.<name>`` when a content field has the same name)
    attr_columns = {n.removeprefix(ATTR_PREFIX): n for n in attrs}
    paths = [data_dir / f["path"] for f in parquet]
    made_by = _field_models(paths, [n for n in (*MODEL_OUTPUT_FIELDS, RATED_ITEM_FIELD) if roles.get(n) == "content"], attr_columns, {s["source_id"]: s.get("generator") for s in sources})
    for node in fields:
        if made_by.get(node["name"]):
            node["prov:wasAttributedTo"] = [_model_agent(m) for m in made_by[node["name"]]]

    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": options.get("name") or label,
        "description": options.get("description") or _description(v, source),
        "version": v.tag or v.id,
        "identifier": v.id,
        "url": options.get("url") or f"urn:rowtrail:version:{v.id}",
        "creator": {"@type": "sc:Person", "name": rec["author"]},
        "datePublished": rec["created_at"],
        "license": sorted({s["license"] for s in sources if s.get("license")}),
    }
    if options.get("cite_as"):
        doc["citeAs"] = options["cite_as"]
    doc["distribution"] = distribution
    record_set = {"@type": "cr:RecordSet", "@id": RECORD_SET, "name": RECORD_SET, "description": f"the rows of {label}", "key": {"@id": f"{RECORD_SET}/row_id"}, "field": fields}
    record_set |= part_prov | {"prov:wasGeneratedBy": steps + [{"@id": _commit_id(v)}]}  # the steps defined here in full
    doc["recordSet"] = [record_set]
    doc.update(_rai(v, sources, values, _per_item(paths, attr_columns)))
    doc.update(_prov(v, sources, values))
    return doc


def _field_models(paths: list[Path], names: list[str], attr_columns: dict[str, str], generators: dict[str, str | None]) -> dict[str, list[str]]:
    """For each content field in ``names``: the models that made the rows holding a value in it — their
    sources' generators and the teacher attributes' values on those rows, never ``human``."""
    if not names or not paths:
        return {}
    teachers = [attr_columns[a] for a in TEACHER_ATTRIBUTES if a in attr_columns]
    models: dict[str, set[Any]] = {name: set() for name in names}
    for batch in _batches(paths, [*names, "source_id", *teachers]):  # streamed: the fields may hold most of the corpus's text
        for name in names:
            has = pc.is_valid(batch.column(name))
            models[name].update(generators.get(sid) for sid in pc.unique(batch.column("source_id").filter(has)).to_pylist())
            for col in teachers:
                models[name].update(pc.unique(batch.column(col).filter(has)).to_pylist())
    out: dict[str, list[str]] = {}
    for name, found in models.items():
        made = sorted({str(m) for m in found if m is not None and str(m) and str(m).lower() != HUMAN})
        if made:
            out[name] = made
    return out


def _batches(paths: list[Path], columns: list[str]) -> Any:
    for path in paths:
        yield from pq.ParquetFile(path).iter_batches(columns=columns)


def _per_item(paths: list[Path], attr_columns: dict[str, str]) -> tuple[int, int, int, int] | None:
    """(judgements, items, least, most) over the rows that carry both ``item_id`` and ``annotator``
    (a judgement per row, as annotation imports store them), counted per ``item_id``; None without any."""
    item, annotator = attr_columns.get("item_id"), attr_columns.get(ANNOTATOR_ATTRIBUTES[0])
    if item is None or annotator is None or not paths:
        return None
    per_item: dict[Any, int] = {}
    for batch in _batches(paths, [item, annotator]):
        ids = batch.column(item).filter(pc.and_(pc.is_valid(batch.column(item)), pc.is_valid(batch.column(annotator))))
        counted = pc.value_counts(ids)
        for key, n in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()):
            per_item[key] = per_item.get(key, 0) + n
    if not per_item:
        return None
    return sum(per_item.values()), len(per_item), min(per_item.values()), max(per_item.values())


_BUILTIN_PROVENANCE = ("source_snapshot", "content_sha256", "ingest_id", "ingested_at", "origin_file", "origin_line")


def _latest(snaps: dict[str, dict[str, Any]], source_id: str) -> dict[str, Any] | None:
    mine = [r for r in snaps.values() if r["source_id"] == source_id]
    return max(mine, key=lambda r: r["seq"]) if mine else None


def _description(v: Version, source: str | None) -> str:
    c = v.content
    what = f"rows of source '{source}' in" if source else "rows of"
    return (
        f"{v.record['message']}\n\nThe {what} corpus version {v.corpus}@{v.tag or v.id} ({c['row_count']} rows, weight {c['weight_total']:g}, "
        f"{len(c['per_source'])} sources), exported by rowtrail. version_id {v.id}; merkle_root {c['merkle_root']}; content_root {c['content_root']}."
    )


def _rai(v: Version, sources: list[dict[str, Any]], values: dict[str, list[str]], per_item: tuple[int, int, int, int] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    collection = []
    for s in sources:
        parts = [f"kind {s['kind']}"]
        for key, label in (("uri", "from"), ("legal_basis", "legal basis"), ("owner", "owner"), ("collected", "collected"), ("refreshed_at", "refreshed")):
            if s.get(key):
                parts.append(f"{label} {s[key]}")
        if s.get("generator") and s["generator"] != "human":
            parts.append(f"generated by {s['generator']}")
        collection.append(f"{s['source_id']} (snapshot {s['snapshot']}): {'; '.join(parts)}")
    if collection:
        out["rai:dataCollection"] = "\n\n".join(collection)  # one text: the property takes a single value
        out["rai:dataCollectionType"] = sorted({s["kind"] for s in sources})
    bounds = _period_bounds([s["collected"] for s in sources if s.get("collected")])
    if bounds:
        out["rai:dataCollectionTimeframe"] = bounds
    steps = v.manifest.get("steps") or {}
    protocol = []
    for k, sid in enumerate(v.content["pipeline"]):
        d = steps.get(sid, {})
        params = orjson.dumps(d.get("params"), option=orjson.OPT_SORT_KEYS).decode()
        protocol.append(f"{k + 1}. {d.get('name')} ({d.get('use') or 'custom'} v{d.get('version')}) params {params}; step_id {sid}; code sha256 {d.get('code')}")
    if protocol:
        out["rai:dataPreprocessingProtocol"] = protocol
    tools = machine_generators(values, sources)
    if tools:
        out["rai:machineAnnotationTools"] = tools
    annotators = sorted({x for a in ANNOTATOR_ATTRIBUTES for x in values.get(a, [])})
    guidelines = sorted({x for a in GUIDELINE_ATTRIBUTES for x in values.get(a, [])})
    platforms = sorted({x for a in PLATFORM_ATTRIBUTES for x in values.get(a, [])})
    if annotators or guidelines:
        text = []
        if annotators:
            text.append(f"{len(annotators)} annotator(s)")
        if guidelines:
            text.append(f"guideline version(s) {', '.join(guidelines)}")
        out["rai:dataAnnotationProtocol"] = "Rows annotated by " + " under ".join(text) if annotators else "Annotated under " + ", ".join(text)
    if platforms:
        out["rai:dataAnnotationPlatform"] = platforms
    if per_item:
        judgements, items, least, most = per_item
        out["rai:annotationsPerItem"] = f"{judgements / items:.2f} judgements per item on average (least {least}, most {most}): {judgements} judgements of {items} items, by item_id"
    return out


def _source_id(s: dict[str, Any]) -> str:
    return f"urn:rowtrail:source/{s['snapshot']}"


def _commit_id(v: Version) -> str:
    return f"urn:rowtrail:commit/{v.id}"


def _model_agent(model: str) -> dict[str, Any]:
    return {"@type": "prov:SoftwareAgent", "@id": f"urn:rowtrail:agent/model/{_safe(model)}", "prov:label": model}


def _step_activities(v: Version) -> list[dict[str, Any]]:
    """The pipeline steps that made the version's rows, as ``prov:Activity`` nodes (ids as the ``prov`` export's)."""
    run = v.manifest.get("run")
    if not run:
        return []
    steps = v.manifest.get("steps") or {}
    out = []
    for k, sid in enumerate(v.content["pipeline"]):
        d = steps.get(sid, {})
        out.append({"@type": "prov:Activity", "@id": f"urn:rowtrail:run/{run}/step/{k}", "prov:label": f"pipeline step {k + 1}: {d.get('name')} ({d.get('use') or 'custom'} v{d.get('version')}); step_id {sid}"})
    return out


def _prov(v: Version, sources: list[dict[str, Any]], values: dict[str, list[str]]) -> dict[str, Any]:
    rec = v.record
    derived = []
    for s in sources:
        node: dict[str, Any] = {"@type": "prov:Entity", "@id": _source_id(s), "prov:label": s["source_id"]}
        if s.get("uri"):
            node["prov:atLocation"] = s["uri"]
        if s.get("license"):
            node["license"] = s["license"]
        derived.append(node)
    out: dict[str, Any] = {}
    if derived:
        out["prov:wasDerivedFrom"] = derived
    out["prov:wasGeneratedBy"] = {
        "@type": "prov:Activity",
        "@id": _commit_id(v),
        "prov:label": f"rowtrail commit: {rec['message']}",
        "prov:endedAtTime": rec["created_at"],
        "prov:wasAssociatedWith": {"@type": "prov:Agent", "prov:label": rec["author"]},
    }
    tools = machine_generators(values, sources)
    if tools:
        out["prov:wasAttributedTo"] = [_model_agent(t) for t in tools]
    return out


@register
class CroissantExporter(Exporter):
    name = "croissant"
    suffixes = ()
    description = "a Croissant 1.1 dataset directory: Parquet rows and croissant.json (mlcroissant loads it)"
    options: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "corpus": str,
        "source": str,
        "shard_rows": int,
        "batch_rows": int,
        "name": str,
        "description": str,
        "url": str,
        "cite_as": str,
    }

    def write(self, store: Store, version: str | Version, path: str | os.PathLike[str] | None, *, overwrite: bool = False, progress: Progress | None = None, **options: Any) -> ExportResult:
        check_options(self.name, options, self.options)
        if path is None:
            raise ExportError("format 'croissant' writes a directory; give the output path (-o DIR)")
        target = check_target(path, overwrite)
        v = resolve_version(store, version, options.get("corpus") or "main")
        parquet_opts = {k: options[k] for k in ("source", "shard_rows", "batch_rows") if options.get(k) is not None}
        with atomic_output(target, overwrite) as tmp:
            tmp.mkdir()
            res = get("parquet").write(store, v, tmp / DATA_DIR, progress=progress, provenance=True, weights="column", corpus=v.corpus, **parquet_opts)
            sidecar = orjson.loads((tmp / DATA_DIR / "_rowtrail.json").read_bytes())
            first = next(f for f in res.files if f["path"].endswith(".parquet"))
            schema = pq.read_schema(tmp / DATA_DIR / first["path"])
            doc = build_metadata(store, v, tmp / DATA_DIR, schema, sidecar["columns"], res.files, options, options.get("source"))
            (tmp / METADATA_FILE).write_bytes(dumps(doc))
            size, digest = file_digest(tmp / METADATA_FILE)
        files = [{**f, "path": f"{DATA_DIR}/{f['path']}"} for f in res.files] + [{"path": METADATA_FILE, "bytes": size, "sha256": digest}]
        return ExportResult(
            format=self.name,
            path=str(Path(target)),
            rows=res.rows,
            bytes=sum(int(f["bytes"]) for f in files),
            version_id=v.id,
            tag=v.tag,
            content_id=v.content_id,
            merkle_root=v.content["merkle_root"],
            files=files,
            details={"corpus": v.corpus, "source": options.get("source"), "record_set": RECORD_SET, "metadata": METADATA_FILE},
        )
