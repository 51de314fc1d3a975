"""The source registry: every upstream origin, with its licence, legal basis and refresh history.

A source id is a slug chosen once (``partner-x``, ``crawl-2024-09``) and never changed. Adding,
refreshing and importing sources are journal entries; a refresh records a new snapshot
(``<source_id>@<n>``) and never rewrites history.
"""

from __future__ import annotations

import builtins
import csv
import difflib
import io
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import IngestError, LicenseError, SourceError, SourceExistsError, SourceNotFoundError
from ..records import SOURCE_KINDS, SourceRecord

if TYPE_CHECKING:
    from ..store import Store

SOURCE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_REF_RE = re.compile(r"^(LicenseRef|DocumentRef)-[A-Za-z0-9.\-:]+$")
_OPERATORS = {"AND", "OR", "WITH"}
FIELDS = ("kind", "uri", "license", "legal_basis", "collected", "refreshed_at", "owner", "generator")


@lru_cache(maxsize=1)
def _licensing() -> Any:
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


@lru_cache(maxsize=1)
def _known_keys() -> dict[str, str]:
    lic = _licensing()
    out: dict[str, str] = {}
    for sym in lic.known_symbols.values():
        if not sym.key.startswith("LicenseRef-scancode"):
            out[sym.key.lower()] = sym.key
            for alias in sym.aliases:  # deprecated SPDX ids (GPL-3.0 → GPL-3.0-only)
                if not alias.startswith("LicenseRef-"):
                    out.setdefault(alias.lower(), sym.key)
    return out


def normalize_license(expr: str) -> str:
    """A validated SPDX expression in canonical case; unknown ids raise with close matches."""
    expr = (expr or "").strip()
    if not expr:
        raise LicenseError("licence is empty; give an SPDX expression such as 'CC-BY-4.0', or 'LicenseRef-<name>'")
    tokens = re.findall(r"\(|\)|[^\s()]+", expr)
    known = _known_keys()
    out, placeholders = [], []
    for tok in tokens:
        if tok in "()" or tok.upper() in _OPERATORS:
            out.append(tok.upper() if tok.upper() in _OPERATORS else tok)
            continue
        base = tok[:-1] if tok.endswith("+") else tok
        if _REF_RE.match(base):
            out.append(tok)
            placeholders.append("MIT")
            continue
        canon = known.get(base.lower())
        if canon is None:
            low = base.lower()
            close = [k for k in known if k.startswith(low)][:3] or difflib.get_close_matches(low, list(known), n=3, cutoff=0.6)
            hint = ", ".join(dict.fromkeys(known[c] for c in close))
            raise LicenseError(
                f"'{base}' is not an SPDX licence id"
                + (f"; did you mean {hint}?" if hint else "")
                + f" For a licence outside SPDX, write 'LicenseRef-{re.sub(r'[^A-Za-z0-9.-]', '-', base)}'."
            )
        out.append(canon + ("+" if tok.endswith("+") else ""))
    text = " ".join(out).replace("( ", "(").replace(" )", ")")
    check = " ".join("MIT" if _REF_RE.match(t.rstrip("+")) else t for t in out).replace("( ", "(").replace(" )", ")")
    errors = _licensing().validate(check).errors
    if errors:
        raise LicenseError(f"licence expression '{expr}' is not valid SPDX: {'; '.join(errors)}")
    return text


def validate_source_id(source_id: str) -> str:
    if not SOURCE_ID_RE.match(source_id or ""):
        raise SourceError(
            f"source id {source_id!r} is not a slug: use lowercase letters, digits and . _ - (at most 128), "
            "starting with a letter or digit"
        )
    return source_id


def validate_kind(kind: str) -> str:
    if kind not in SOURCE_KINDS:
        close = difflib.get_close_matches(kind or "", SOURCE_KINDS, n=1)
        raise SourceError(f"unknown source kind {kind!r}" + (f"; did you mean '{close[0]}'?" if close else "") + f" Kinds: {', '.join(SOURCE_KINDS)}")
    return kind


def make_record(source_id: str, fields: dict[str, Any], snapshot_n: int, created_at: str) -> dict[str, Any]:
    validate_source_id(source_id)
    fields = dict(fields)
    kind = validate_kind(fields.pop("kind", None) or "")
    license_ = fields.pop("license", None)
    rec: dict[str, Any] = {
        "source_id": source_id,
        "kind": kind,
        "uri": fields.pop("uri", None),
        "license": normalize_license(license_) if license_ else None,
        "legal_basis": fields.pop("legal_basis", None),
        "collected": _period(fields.pop("collected", None)),
        "refreshed_at": fields.pop("refreshed_at", None) or created_at,
        "owner": fields.pop("owner", None),
        "generator": fields.pop("generator", None) or "human",
        "snapshot": f"{source_id}@{snapshot_n}",
        "created_at": created_at,
    }
    attrs = dict(fields.pop("attributes", None) or {})
    attrs.update({k: v for k, v in fields.items() if v is not None})
    rec["attributes"] = attrs
    return rec


def _period(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{value[0]}/{value[1]}"
    return str(value)


class SourceRegistry:
    """``store.sources``: add, list, show, refresh and import sources."""

    def __init__(self, store: Store):
        self._store = store

    def add(self, source_id: str, kind: str = "other", **fields: Any) -> SourceRecord:
        from ..versions.journal import now_rfc3339

        at = now_rfc3339()
        with self._store._write() as state:
            if source_id in state.sources:
                raise SourceExistsError(f"source '{source_id}' exists; use 'rowtrail source refresh {source_id}' to record a new snapshot")
            rec = make_record(source_id, {"kind": kind, **fields}, 1, at)
            self._store._append(state, {"kind": "source.add", "source": rec})
        return SourceRecord.from_dict(rec)

    def refresh(self, source_id: str, **changes: Any) -> SourceRecord:
        from ..versions.journal import now_rfc3339

        at = now_rfc3339()
        with self._store._write() as state:
            old = self.get(source_id, state=state)
            n = len(state.snapshots.get(source_id, [])) + 1
            base = old.to_dict()
            base.pop("snapshot", None)
            base.pop("source_id", None)
            base["refreshed_at"] = changes.pop("refreshed_at", None) or at
            attrs = dict(base.pop("attributes") or {})
            attrs.update(changes.pop("attributes", None) or {})
            for k in FIELDS:
                if k in changes and changes[k] is not None:
                    base[k] = changes.pop(k)
            attrs.update({k: v for k, v in changes.items() if v is not None})
            base["attributes"] = attrs
            created = base.pop("created_at")
            rec = make_record(source_id, base, n, created)
            rec["refreshed_at"] = base["refreshed_at"]
            self._store._append(state, {"kind": "source.refresh", "source": rec})
        return SourceRecord.from_dict(rec)

    def get(self, source_id: str, state: Any = None) -> SourceRecord:
        state = state or self._store.state
        try:
            return state.sources[source_id]
        except KeyError:
            close = difflib.get_close_matches(source_id, list(state.sources), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise SourceNotFoundError(f"no source '{source_id}'{hint}; see 'rowtrail source list'") from None

    def list(self) -> list[SourceRecord]:
        return sorted(self._store.state.sources.values(), key=lambda s: s.source_id)

    def __iter__(self) -> Iterable[SourceRecord]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._store.state.sources)

    def __contains__(self, source_id: object) -> bool:
        return source_id in self._store.state.sources

    def import_(self, path: str | Path, update: bool = False) -> builtins.list[SourceRecord]:
        """Register many sources from a CSV or JSONL list in one journal entry (all or nothing)."""
        from ..versions.journal import now_rfc3339

        path = Path(path)
        items = _read_source_list(path)
        at = now_rfc3339()
        with self._store._write() as state:
            recs, seen = [], set()
            for line, item in items:
                sid = item.pop("source_id", None) or item.pop("id", None)
                try:
                    if not sid:
                        raise SourceError("has no source_id")
                    if sid in seen:
                        raise SourceError(f"lists source '{sid}' twice")
                    seen.add(sid)
                    if sid in state.sources and not update:
                        raise SourceExistsError(f"source '{sid}' exists (pass --update to record new snapshots)")
                    n = len(state.snapshots.get(sid, [])) + 1
                    attrs = item.pop("attributes", None)
                    if isinstance(attrs, str) and attrs:
                        attrs = orjson.loads(attrs)
                    fields = {k: (v if v != "" else None) for k, v in item.items()}
                    recs.append(make_record(sid, {**fields, "attributes": attrs or {}}, n, at))
                except (SourceError, LicenseError, orjson.JSONDecodeError) as exc:
                    raise IngestError(str(exc), str(path), line) from None
            if not recs:
                raise IngestError("lists no sources", str(path))
            self._store._append(state, {"kind": "source.import", "sources": recs})
        return [SourceRecord.from_dict(r) for r in recs]


def _read_source_list(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise IngestError("no such file", str(path))
    text = path.read_text(encoding="utf-8")
    out = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise IngestError(f"malformed JSON ({exc})", str(path), i) from None
            if not isinstance(item, dict):
                raise IngestError("a line must hold a JSON object", str(path), i)
            out.append((i, item))
    else:
        reader = csv.DictReader(io.StringIO(text))
        for item in reader:
            out.append((reader.line_num, dict(item)))
    return out
