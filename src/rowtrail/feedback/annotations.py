"""Annotations as rows: preference pairs, ratings, labels and thumbs, each one judgement per row.

An import reads an export file (the plain JSONL/CSV schema of docs/feedback.md, an Argilla
records export, or a Label Studio JSON export), checks every record (a bad one stops the import with
its file, line and field), turns each judgement into one row and ingests them all with
``store.ingest`` under an ``annotation-batch`` (or ``user-feedback``) source — so annotations get row
ids, lineage through pipeline steps, versions and proofs like any row. Then one
``annotations.import`` journal entry records the import's format, file digest, batch, guideline
versions and (when annotator ids were pseudonymized) the key's id.

A judgement row's **content** is ``{item_id, annotator, guideline_version, guideline_sha256,
collected_at, platform, batch, task, kind, label, rating, chosen, rejected, margin, item_generator,
item}`` (``kind`` is ``label``, ``rating`` or ``pair``; fields that do not apply are null; ``item``
is the rated content when the export carries it, as its JCS text). Its key is
``<platform>:<item_id>:<task>:<annotator>`` (for a pair, followed by ``:<side>|<side>``, the two
sides sorted) unless the record has its own id. The same names, except ``item``, are also declared
as row **attributes** (``kind`` as ``annotation_kind``), with ``export_file`` and ``export_line``
(where the judgement was in the export), so SQL, monitoring and the feedback reports read them from
the provenance tables without touching content.

**Pseudonyms.** With ``pseudonymize=True`` each annotator id becomes ``anon-`` + the first 16 hex
digits of HMAC-SHA256(key, id). The key comes from ``ROWTRAIL_PSEUDONYM_KEY`` (the key text) or a
key file outside the store; it is never written to the store. The import entry records only the
key id, HMAC-SHA256(key, ``"rowtrail pseudonym key id"``)[:16], so two imports can be checked to
share a key.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from ..errors import IngestError, SourceError
from ..hashing import jcs

if TYPE_CHECKING:
    from ..store import Store

FORMATS = ("jsonl", "csv", "argilla", "label-studio")
KINDS = ("label", "rating", "pair")
IMPORT_KIND = "annotations.import"
SOURCE_KINDS = ("annotation-batch", "user-feedback", "external-import")
KEY_ENV = "ROWTRAIL_PSEUDONYM_KEY"
KEY_FILE_ENV = "ROWTRAIL_PSEUDONYM_KEY_FILE"
CONTENT = (
    "item_id",
    "annotator",
    "guideline_version",
    "guideline_sha256",
    "collected_at",
    "platform",
    "batch",
    "task",
    "kind",
    "label",
    "rating",
    "chosen",
    "rejected",
    "margin",
    "item_generator",
    "item",
)
# attribute name → column of the import table
ATTRIBUTES = {
    "annotator": "annotator",
    "guideline_version": "guideline_version",
    "guideline_sha256": "guideline_sha256",
    "collected_at": "collected_at",
    "platform": "platform",
    "batch": "batch",
    "task": "task",
    "item_id": "item_id",
    "annotation_kind": "kind",
    "label": "label",
    "rating": "rating",
    "chosen": "chosen",
    "rejected": "rejected",
    "margin": "margin",
    "item_generator": "item_generator",
    "export_file": "export_file",
    "export_line": "export_line",
}
SCHEMA = pa.schema(
    [
        ("annotation_id", pa.string()),
        ("item_id", pa.string()),
        ("annotator", pa.string()),
        ("guideline_version", pa.string()),
        ("guideline_sha256", pa.string()),
        ("collected_at", pa.string()),
        ("platform", pa.string()),
        ("batch", pa.string()),
        ("task", pa.string()),
        ("kind", pa.string()),
        ("label", pa.string()),
        ("rating", pa.float64()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("margin", pa.float64()),
        ("item_generator", pa.string()),
        ("item", pa.string()),  # the rated content as JCS text (or null); parsed back to an object for hashing
        ("export_file", pa.string()),
        ("export_line", pa.int64()),
    ]
)


@dataclass
class Judgement:
    """One annotation, normalized, with where it came from."""

    item_id: str
    annotator: str
    guideline_version: str
    collected_at: str
    platform: str
    kind: str
    line: int
    label: str | None = None
    rating: float | None = None
    chosen: str | None = None
    rejected: str | None = None
    margin: float | None = None
    item_generator: str | None = None
    batch: str | None = None
    task: str | None = None
    item: Any = None
    id: str | None = None
    guideline_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportReport:
    source: str
    format: str
    file: str
    file_sha256: str
    judgements: int
    new: int
    unchanged: int
    batches: list[str]
    guideline_versions: list[str]
    kinds: dict[str, int]
    annotators: int
    pseudonymized: bool
    key_id: str | None
    ingest_id: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- pseudonyms -------------------------------------------------------------------------------------


def load_key(key_file: str | os.PathLike[str] | None = None, store: Store | None = None) -> bytes:
    """The pseudonymization key: a key file (outside the store), else ``ROWTRAIL_PSEUDONYM_KEY_FILE``,
    else the text of ``ROWTRAIL_PSEUDONYM_KEY``."""
    path = key_file or os.environ.get(KEY_FILE_ENV)
    if path:
        p = Path(path).expanduser().resolve()
        if store is not None and (p == store.path.resolve() or store.path.resolve() in p.parents):
            raise IngestError(
                f"the pseudonymization key file {p} is inside the store; keep the key outside it (the store must never hold it)"
            )
        if not p.is_file():
            raise IngestError(f"no pseudonymization key file at {p}")
        key = p.read_bytes().strip()
    else:
        key = os.environ.get(KEY_ENV, "").encode()
    if len(key) < 16:
        raise IngestError(
            f"pseudonymizing annotators needs a key of at least 16 bytes: set {KEY_ENV} or pass --key-file FILE (kept outside the store)"
        )
    return key


def pseudonym(annotator: str, key: bytes) -> str:
    return "anon-" + hmac.new(key, annotator.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def key_id(key: bytes) -> str:
    return hmac.new(key, b"rowtrail pseudonym key id", hashlib.sha256).hexdigest()[:16]


# -- readers ----------------------------------------------------------------------------------------


def _json_records(path: Path, text: str) -> list[tuple[int, Any]]:
    """The records of a JSON array file (with the line each starts on) or of a JSONL file."""
    stripped = text.lstrip()
    out: list[tuple[int, Any]] = []
    if stripped.startswith("["):
        dec = json.JSONDecoder()
        pos = text.index("[") + 1
        line, at = 1, 0

        def line_of(p: int) -> int:
            nonlocal line, at
            line += text.count("\n", at, p)
            at = p
            return line

        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text):
                raise IngestError("the JSON array is not closed", str(path), line_of(len(text)))
            if text[pos] == "]":
                break
            try:
                obj, end = dec.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise IngestError(f"malformed JSON ({exc.msg})", str(path), line_of(exc.pos)) from None
            out.append((line_of(pos), obj))
            pos = end
        return out
    # physical lines: split at "\n" only (str.splitlines would also split inside strings holding
    # U+2028, U+0085 or other separators JSON allows raw), numbered as the ingest reader numbers them
    for i, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            out.append((i, orjson.loads(raw)))
        except orjson.JSONDecodeError as exc:
            raise IngestError(f"malformed JSON ({exc.msg})", str(path), i) from None
    return out


def _time(value: Any, path: Path, line: int, name: str = "collected_at") -> str:
    if value is None or value == "":
        raise IngestError(f"no {name}: give an RFC 3339 time per record (or --collected-at for the whole file)", str(path), line, name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            dt = datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise IngestError(f"{name} {value!r} is not a time (seconds since 1970, or RFC 3339)", str(path), line, name) from None
    else:
        try:
            dt = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise IngestError(f"{name} {value!r} is not an RFC 3339 time (e.g. 2026-05-01T12:00:00Z)", str(path), line, name) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{dt.microsecond:06d}" if dt.microsecond else "") + "Z"


def _text(value: Any, path: Path, line: int, name: str, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise IngestError(f"missing {name}", str(path), line, name)
        return None
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise IngestError(f"{name} must be a string or number, not {json.dumps(value)[:60]}", str(path), line, name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _number(value: Any, path: Path, line: int, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise IngestError(f"{name} must be a number, not {value!r}", str(path), line, name)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise IngestError(f"{name} must be a number, not {value!r}", str(path), line, name) from None
    if out != out or out in (float("inf"), float("-inf")):
        raise IngestError(f"{name} must be finite, not {value!r}", str(path), line, name)
    return out


def _judgement(rec: dict[str, Any], path: Path, line: int, defaults: dict[str, Any], platform: str) -> Judgement:
    """A plain-schema record (docs/feedback.md) as a judgement, checked."""
    label = rec.get("label")
    rating = rec.get("rating")
    chosen, rejected = rec.get("chosen"), rec.get("rejected")
    given = [k for k, v in (("label", label), ("rating", rating), ("chosen", chosen)) if v not in (None, "")]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise IngestError(
            f"a judgement holds exactly one of label, rating, or chosen + rejected (this one has {what})",
            str(path),
            line,
            given[-1] if given else "label",
        )
    kind = {"label": "label", "rating": "rating", "chosen": "pair"}[given[0]]
    j = Judgement(
        item_id=_text(rec.get("item_id"), path, line, "item_id"),  # type: ignore[arg-type]
        annotator=_text(rec.get("annotator"), path, line, "annotator"),  # type: ignore[arg-type]
        guideline_version=_text(rec.get("guideline_version", defaults.get("guideline_version")), path, line, "guideline_version"),  # type: ignore[arg-type]
        collected_at=_time(rec.get("collected_at", defaults.get("collected_at")), path, line),
        platform=_text(rec.get("platform") or defaults.get("platform") or platform, path, line, "platform"),  # type: ignore[arg-type]
        kind=kind,
        line=line,
        item_generator=_text(rec.get("item_generator"), path, line, "item_generator", required=False),
        batch=_text(rec.get("batch") or defaults.get("batch"), path, line, "batch", required=False),
        task=_text(rec.get("task"), path, line, "task", required=False),
        id=_text(rec.get("id"), path, line, "id", required=False),
        margin=_number(rec.get("margin"), path, line, "margin"),
    )
    item = rec.get("item")
    if isinstance(item, str) and item.strip().startswith(("{", "[")):
        try:
            item = json.loads(item)
        except json.JSONDecodeError:
            pass
    j.item = item if item not in ("", None) else None
    if kind == "label":
        j.label = _text(label, path, line, "label")
    elif kind == "rating":
        j.rating = _number(rating, path, line, "rating")
    else:
        j.chosen = _text(chosen, path, line, "chosen")
        j.rejected = _text(rejected, path, line, "rejected")
        if j.chosen == j.rejected:
            raise IngestError("chosen and rejected are the same item", str(path), line, "rejected")
    return j


def read_plain(path: Path, fmt: str, defaults: dict[str, Any]) -> list[Judgement]:
    text = path.read_text(encoding="utf-8")
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = {"item_id", "annotator"} - set(reader.fieldnames or [])
        if missing:
            raise IngestError(f"the CSV header lacks {', '.join(sorted(missing))}", str(path), 1)
        return [
            _judgement({k: (v if v != "" else None) for k, v in row.items()}, path, reader.line_num, defaults, "import") for row in reader
        ]
    out = []
    for line, rec in _json_records(path, text):
        if not isinstance(rec, dict):
            raise IngestError("a line must hold a JSON object", str(path), line)
        out.append(_judgement(rec, path, line, defaults, "import"))
    return out


def _value_judgement(value: Any, path: Path, line: int, where: str) -> dict[str, Any]:
    """An Argilla / Label Studio answer value as label, rating or pair fields."""
    if isinstance(value, bool):
        return {"label": "yes" if value else "no"}
    if isinstance(value, (int, float)):
        return {"rating": float(value)}
    if isinstance(value, str):
        return {"label": value}
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, dict) and "value" in v and (v.get("rank") is None or type(v.get("rank")) in (int, float)) for v in value)
    ):
        ranked = sorted(value, key=lambda v: (v.get("rank") is None, v.get("rank") or 0))
        if len(ranked) != 2:
            raise IngestError(
                f"{where}: a ranking of {len(ranked)} options; rowtrail imports rankings of two as preference pairs", str(path), line
            )
        return {"chosen": str(ranked[0]["value"]), "rejected": str(ranked[1]["value"])}
    raise IngestError(f"{where}: an answer of this shape is not a label, rating or pair: {json.dumps(value)[:80]}", str(path), line)


def read_argilla(path: Path, defaults: dict[str, Any], question: str | None) -> list[Judgement]:
    """An Argilla records export: ``dataset.records.to_json(path)`` (or ``to_disk``'s
    ``records.json``): a JSON array of ``{id, fields, metadata, suggestions, responses: {question:
    [{value, user_id[, status]}]}, vectors, _server_id}``. Suggestions (model pre-annotations) are
    not judgements and are skipped; so are draft and discarded responses."""
    out: list[Judgement] = []
    for line, rec in _json_records(path, path.read_text(encoding="utf-8")):
        if not isinstance(rec, dict) or "responses" not in rec:
            raise IngestError("not an Argilla record: expected an object with 'fields' and 'responses'", str(path), line)
        responses = rec.get("responses") or {}
        if not isinstance(responses, dict):
            raise IngestError("'responses' must map question names to lists of responses", str(path), line, "responses")
        names = [question] if question else list(responses)
        if question is None and len(names) > 1:
            raise IngestError(
                f"the record answers several questions ({', '.join(names)}); choose one with --question", str(path), line, "responses"
            )
        meta = rec.get("metadata") or {}
        if not isinstance(meta, dict):
            raise IngestError("'metadata' must be an object", str(path), line, "metadata")
        rid = _text(rec.get("id") or rec.get("_server_id"), path, line, "id")
        for name in names:
            answers = responses.get(name) or []
            if not isinstance(answers, list):
                raise IngestError(f"the responses to '{name}' must be a list", str(path), line, name)
            for resp in answers:
                if not isinstance(resp, dict) or "value" not in resp:
                    raise IngestError(f"a response to '{name}' must be an object with 'value' and 'user_id'", str(path), line, name)
                if resp.get("status") in ("draft", "discarded"):
                    continue
                fields = _value_judgement(resp["value"], path, line, f"question '{name}'")
                if "chosen" in fields:
                    fields = {"chosen": f"{rid}/{fields['chosen']}", "rejected": f"{rid}/{fields['rejected']}"}
                plain = {
                    "item_id": meta.get("item_id") or rid,
                    "annotator": resp.get("user_id"),
                    "guideline_version": meta.get("guideline_version"),
                    "collected_at": meta.get("collected_at") or resp.get("updated_at") or resp.get("inserted_at"),
                    "platform": "argilla",
                    "item_generator": meta.get("item_generator") or meta.get("generator"),
                    "batch": meta.get("batch"),
                    "task": name,
                    "item": rec.get("fields") or None,
                    **fields,
                }
                out.append(_judgement({k: v for k, v in plain.items() if v is not None}, path, line, defaults, "argilla"))
    return out


LS_TYPES = {"choices": "choices", "rating": "rating", "number": "number", "pairwise": "selected", "textarea": None, "labels": None}


def read_label_studio(path: Path, defaults: dict[str, Any], question: str | None) -> list[Judgement]:
    """A Label Studio JSON export: a JSON array of tasks ``{id, data, annotations: [{id, completed_by,
    result: [{from_name, to_name, type, value}], was_cancelled, created_at, …}], predictions}``.
    ``choices`` (one choice) → label, ``rating``/``number`` → rating, ``pairwise`` (``value.selected``
    ``left``/``right``) → a pair. Cancelled annotations and predictions are skipped."""
    out: list[Judgement] = []
    for line, task in _json_records(path, path.read_text(encoding="utf-8")):
        if not isinstance(task, dict) or "annotations" not in task or "data" not in task:
            raise IngestError("not a Label Studio task: expected an object with 'data' and 'annotations'", str(path), line)
        data = task.get("data") or {}
        if not isinstance(data, dict) or not isinstance(task.get("annotations") or [], list):
            raise IngestError("a task's 'data' must be an object and its 'annotations' a list", str(path), line, "data")
        tid = _text(task.get("id"), path, line, "id")
        for ann in task.get("annotations") or []:
            if not isinstance(ann, dict):
                raise IngestError("an annotation must be an object", str(path), line, "annotations")
            if ann.get("was_cancelled"):
                continue
            who = ann.get("completed_by")
            if isinstance(who, dict):
                who = who.get("email") or who.get("id")
            results = ann.get("result") or []
            if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
                raise IngestError("an annotation's 'result' must be a list of objects", str(path), line, "result")
            for res in results:
                kind = res.get("type")
                name = res.get("from_name")
                if (question and name != question) or kind not in LS_TYPES or LS_TYPES[kind] is None:
                    continue
                value = res.get("value") or {}
                if not isinstance(value, dict):
                    raise IngestError(f"'{name}': 'value' must be an object", str(path), line, name)
                if kind == "choices":
                    choices = value.get("choices") or []
                    if not isinstance(choices, list) or len(choices) != 1:
                        raise IngestError(f"'{name}': {len(choices)} choices; rowtrail imports single-choice labels", str(path), line, name)
                    fields: dict[str, Any] = {"label": choices[0]}
                elif kind in ("rating", "number"):
                    fields = {"rating": value.get(kind)}
                else:
                    sel = value.get("selected")
                    if sel not in ("left", "right"):
                        raise IngestError(f"'{name}': pairwise 'selected' must be left or right, not {sel!r}", str(path), line, name)
                    other = "right" if sel == "left" else "left"
                    fields = {
                        "chosen": str(data.get(f"{sel}_id") or f"{tid}/{sel}"),
                        "rejected": str(data.get(f"{other}_id") or f"{tid}/{other}"),
                    }
                plain = {
                    "item_id": data.get("item_id") or tid,
                    "annotator": who,
                    "guideline_version": data.get("guideline_version"),
                    "collected_at": ann.get("created_at") or ann.get("updated_at"),
                    "platform": "label-studio",
                    "item_generator": data.get("item_generator") or data.get("generator"),
                    "batch": data.get("batch"),
                    "task": name,
                    "item": {k: v for k, v in data.items() if k not in ("guideline_version", "batch")} or None,
                    **fields,
                }
                out.append(_judgement({k: v for k, v in plain.items() if v is not None}, path, line, defaults, "label-studio"))
    return out


def read(
    path: str | os.PathLike[str], fmt: str | None = None, *, defaults: dict[str, Any] | None = None, question: str | None = None
) -> tuple[str, list[Judgement]]:
    """Parse an annotation export into judgements (the format from ``fmt`` or the file suffix)."""
    p = Path(path)
    if not p.is_file():
        raise IngestError("no such file", str(p))
    fmt = fmt or ("csv" if p.suffix.lower() == ".csv" else "jsonl")
    if fmt not in FORMATS:
        raise IngestError(f"unknown annotation format {fmt!r}; use one of {', '.join(FORMATS)}", str(p))
    defaults = defaults or {}
    if fmt in ("jsonl", "csv"):
        return fmt, read_plain(p, fmt, defaults)
    if fmt == "argilla":
        return fmt, read_argilla(p, defaults, question)
    return fmt, read_label_studio(p, defaults, question)


# -- import -----------------------------------------------------------------------------------------


def to_table(judgements: list[Judgement], file: str) -> pa.Table:
    cols: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    for j in judgements:
        task = j.task or j.kind
        pair = "" if j.kind != "pair" else ":" + "|".join(sorted((str(j.chosen), str(j.rejected))))
        cols["annotation_id"].append(j.id or f"{j.platform}:{j.item_id}:{task}:{j.annotator}{pair}")
        for name in CONTENT:
            if name == "item":
                cols["item"].append(None if j.item is None else jcs(j.item).decode())
            else:
                cols[name].append(getattr(j, name))
        cols["export_file"].append(file)
        cols["export_line"].append(j.line)
    return pa.table(cols, schema=SCHEMA)


def import_annotations(
    store: Store,
    path: str | os.PathLike[str],
    *,
    source: str,
    fmt: str | None = None,
    batch: str | None = None,
    guideline_version: str | None = None,
    collected_at: str | None = None,
    question: str | None = None,
    pseudonymize: bool = False,
    key_file: str | os.PathLike[str] | None = None,
    corpus: str = "main",
    progress: Any = None,
) -> ImportReport:
    """Import an annotation export as rows of ``source`` (staged until commit)."""
    from .guidelines import registered

    rec = store.sources.get(source)
    if rec.kind not in SOURCE_KINDS:
        raise SourceError(
            f"source '{source}' is a {rec.kind}; annotations belong to a source of kind {', '.join(SOURCE_KINDS)} (see 'rowtrail source add {source}-ann --kind annotation-batch')"
        )
    defaults = {"batch": batch, "guideline_version": guideline_version, "collected_at": collected_at}
    fmt, judgements = read(path, fmt, defaults=defaults, question=question)
    p = Path(path)
    if not judgements:
        raise IngestError("no judgements found in the export", str(p))
    guides = registered(store)
    for j in judgements:
        g = guides.get(j.guideline_version)
        if g is None:
            raise IngestError(
                f"guideline version {j.guideline_version} is not registered; add it first with 'rowtrail guideline add FILE --version {j.guideline_version}'",
                str(p),
                j.line,
                "guideline_version",
            )
        j.guideline_sha256 = g.digest
        if batch and not j.batch:
            j.batch = batch
        if not j.batch:
            j.batch = f"{p.stem}"
    kid = None
    if pseudonymize:
        key = load_key(key_file, store)
        kid = key_id(key)
        for j in judgements:
            j.annotator = pseudonym(j.annotator, key)
    seen: dict[str, int] = {}
    table = to_table(judgements, p.name)
    for k, line in zip(table.column("annotation_id").to_pylist(), (j.line for j in judgements)):
        if k in seen:
            raise IngestError(
                f"judgement {k!r} appears twice (first at line {seen[k]}): one annotator judges an item once per task",
                str(p),
                line,
                "annotator",
            )
        seen[k] = line
    rep = store.ingest(
        table,
        source=source,
        key_field="annotation_id",
        content_fields=list(CONTENT),
        attributes=ATTRIBUTES,
        corpus=corpus,
        progress=progress,
    )
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    batches = sorted({j.batch for j in judgements if j.batch})
    versions = sorted({j.guideline_version for j in judgements})
    kinds: dict[str, int] = {}
    for j in judgements:
        kinds[j.kind] = kinds.get(j.kind, 0) + 1
    with store._write() as state:
        store._append(
            state,
            {
                "kind": IMPORT_KIND,
                "corpus": corpus,
                "source": source,
                "ingest_id": rep.ingest_id,
                "format": fmt,
                "file": {"name": p.name, "sha256": digest},
                "batches": batches,
                "guideline_versions": versions,
                "judgements": len(judgements),
                "kinds": kinds,
                "pseudonym_key_id": kid,
            },
        )
    return ImportReport(
        source=source,
        format=fmt,
        file=str(p),
        file_sha256=digest,
        judgements=len(judgements),
        new=rep.new,
        unchanged=rep.unchanged,
        batches=batches,
        guideline_versions=versions,
        kinds=kinds,
        annotators=len({j.annotator for j in judgements}),
        pseudonymized=pseudonymize,
        key_id=kid,
        ingest_id=rep.ingest_id,
    )


def imports(store: Store) -> list[dict[str, Any]]:
    return [e for e in store.state.entries if e["kind"] == IMPORT_KIND]


def batches_by_guideline(store: Store, version: str | None = None) -> dict[str, list[str]]:
    """Annotation batches per guideline version: from a version's rows, or from every import."""
    out: dict[str, set[str]] = {}
    if version is not None:
        from .data import load

        ann = load(store, version)
        for g, b in zip(ann.guideline, ann.batch):
            out.setdefault(str(g), set()).add(str(b))
    else:
        from .data import ingested

        for g, b in ingested(store, ["guideline_version", "batch"]):
            out.setdefault(str(g), set()).add(str(b))
    return {k: sorted(v) for k, v in sorted(out.items())}
